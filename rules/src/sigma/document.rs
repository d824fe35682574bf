//! Sigma YAML documents: detection rules, global filters and (through
//! [`crate::window::spec`]) correlation and statistical rules, with their
//! metadata.

use std::fmt;

use serde::{Deserialize, Serialize};
use serde_yaml_ng::{Mapping, Value};

use crate::error::RuleError;
use crate::sigma::detection::lower_detection;
use crate::sigma::modifiers::Placeholders;
use crate::sigma::predicate::Cond;
use crate::window::spec::{parse_window_rule, WindowRule};

/// Rule severity level as defined by Sigma.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Level {
    /// `informational`.
    #[serde(alias = "info")]
    Informational,
    /// `low`.
    Low,
    /// `medium` (the default when a rule names none).
    Medium,
    /// `high`.
    High,
    /// `critical`.
    Critical,
}

impl Level {
    /// Parses a Sigma level name.
    pub fn parse(s: &str) -> Option<Level> {
        Some(match s.to_ascii_lowercase().as_str() {
            "informational" | "info" => Level::Informational,
            "low" => Level::Low,
            "medium" => Level::Medium,
            "high" => Level::High,
            "critical" => Level::Critical,
            _ => return None,
        })
    }

    /// Rank 0 (informational) to 4 (critical).
    pub fn rank(self) -> u8 {
        self as u8
    }

    /// The level of a rank, saturating at critical.
    pub fn from_rank(rank: u8) -> Level {
        match rank {
            0 => Level::Informational,
            1 => Level::Low,
            2 => Level::Medium,
            3 => Level::High,
            _ => Level::Critical,
        }
    }
}

impl Level {
    /// Its Sigma name.
    pub fn as_str(self) -> &'static str {
        match self {
            Level::Informational => "informational",
            Level::Low => "low",
            Level::Medium => "medium",
            Level::High => "high",
            Level::Critical => "critical",
        }
    }
}

impl fmt::Display for Level {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A rule's `logsource`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, PartialOrd, Ord, Deserialize)]
pub struct LogSource {
    /// e.g. `windows`.
    #[serde(default)]
    pub product: Option<String>,
    /// e.g. `process_creation`.
    #[serde(default)]
    pub category: Option<String>,
    /// e.g. `security`.
    #[serde(default)]
    pub service: Option<String>,
}

/// In JSON (alerts, reports) the attributes a rule leaves unset are left
/// out; a binary format (the rules cache) has no names to tell which
/// are there, so it gets all three.
impl Serialize for LogSource {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeStruct;
        let readable = serializer.is_human_readable();
        let mut out = serializer.serialize_struct("LogSource", 3)?;
        for (name, value) in [
            ("product", &self.product),
            ("category", &self.category),
            ("service", &self.service),
        ] {
            if readable && value.is_none() {
                out.skip_field(name)?;
            } else {
                out.serialize_field(name, value)?;
            }
        }
        out.end()
    }
}

impl fmt::Display for LogSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let parts: Vec<String> = [
            ("product", &self.product),
            ("category", &self.category),
            ("service", &self.service),
        ]
        .iter()
        .filter_map(|(k, v)| v.as_ref().map(|v| format!("{k}={v}")))
        .collect();
        if parts.is_empty() {
            f.write_str("(any)")
        } else {
            f.write_str(&parts.join(","))
        }
    }
}

/// Descriptive metadata carried into alerts.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RuleMeta {
    /// The rule's `id` (a UUID in SigmaHQ), if any.
    pub id: Option<String>,
    /// The rule's `name` (used by correlations and filters), if any.
    pub name: Option<String>,
    /// `title`.
    pub title: String,
    /// `level` (medium when absent).
    pub level: Level,
    /// `status`.
    pub status: Option<String>,
    /// `tags`, e.g. `attack.t1059.001`.
    pub tags: Vec<String>,
    /// `description`.
    pub description: Option<String>,
    /// `author`.
    pub author: Option<String>,
    /// `references`.
    pub references: Vec<String>,
    /// `falsepositives`.
    pub falsepositives: Vec<String>,
}

/// A parsed and lowered Sigma detection rule.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SigmaRule {
    /// Metadata.
    pub meta: RuleMeta,
    /// Which events the rule applies to.
    pub logsource: LogSource,
    /// The detection, lowered.
    pub condition: Cond,
}

/// A Sigma global filter: tuning applied to the rules it names.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SigmaFilter {
    /// `id`.
    pub id: Option<String>,
    /// `title`.
    pub title: String,
    /// `logsource`.
    pub logsource: LogSource,
    /// Ids or names of the rules it applies to.
    pub rules: Vec<String>,
    /// The filter's condition; a rule keeps only events for which it holds
    /// (pySigma semantics: `rule and filter`), so filters usually say
    /// `condition: not selection`.
    pub condition: Cond,
}

/// One YAML document of a rules file.
#[derive(Debug, Clone, PartialEq)]
pub enum Document {
    /// A detection rule.
    Rule(Box<SigmaRule>),
    /// A global filter.
    Filter(SigmaFilter),
    /// A windowed rule (Sigma correlation or vagt statistic), with the
    /// detection rule it defines inline, if any.
    Window(Box<WindowRule>, Option<Box<SigmaRule>>),
}

/// Parses one YAML document (already loaded) into a Sigma document.
pub fn parse_document(doc: &Value, placeholders: &Placeholders) -> Result<Document, RuleError> {
    let Value::Mapping(map) = doc else {
        return Err(RuleError::Attribute {
            attribute: "(document)".into(),
            message: "a Sigma document must be a map".into(),
        });
    };
    if map.contains_key("correlation") || map.contains_key("statistic") {
        let (rule, inline) = parse_window_rule(map, placeholders)?;
        return Ok(Document::Window(Box::new(rule), inline.map(Box::new)));
    }
    if let Some(filter) = map.get("filter") {
        return parse_filter(map, filter, placeholders).map(Document::Filter);
    }
    parse_rule(map, placeholders).map(|r| Document::Rule(Box::new(r)))
}

fn parse_filter(
    map: &Mapping,
    filter: &Value,
    placeholders: &Placeholders,
) -> Result<SigmaFilter, RuleError> {
    let title = get_str(map, "title")?.ok_or(RuleError::Missing("title".into()))?;
    let Value::Mapping(filter_map) = filter else {
        return Err(RuleError::Attribute {
            attribute: "filter".into(),
            message: "must be a map with rules, search identifiers and a condition".into(),
        });
    };
    let rules = string_list(filter_map.get("rules"), "filter.rules")?;
    if rules.is_empty() {
        return Err(RuleError::Missing("filter.rules".into()));
    }
    let mut detection = filter_map.clone();
    detection.remove("rules");
    let condition = lower_detection(&Value::Mapping(detection), placeholders)?;
    Ok(SigmaFilter {
        id: get_str(map, "id")?,
        title,
        logsource: parse_logsource(map.get("logsource"))?,
        rules,
        condition,
    })
}

/// Parses a detection rule (or the inline detection of a statistical rule).
pub(crate) fn parse_rule(
    map: &Mapping,
    placeholders: &Placeholders,
) -> Result<SigmaRule, RuleError> {
    let title = get_str(map, "title")?.ok_or(RuleError::Missing("title".into()))?;
    let logsource = parse_logsource(map.get("logsource"))?;
    let detection = map
        .get("detection")
        .ok_or(RuleError::Missing("detection".into()))?;
    if map.get("logsource").is_none() {
        return Err(RuleError::Missing("logsource".into()));
    }
    let condition = lower_detection(detection, placeholders)?;
    Ok(SigmaRule {
        meta: parse_meta(map, title)?,
        logsource,
        condition,
    })
}

/// The descriptive attributes shared by every kind of rule.
pub(crate) fn parse_meta(map: &Mapping, title: String) -> Result<RuleMeta, RuleError> {
    let level = match get_str(map, "level")? {
        None => Level::Medium,
        Some(l) => Level::parse(&l).ok_or_else(|| RuleError::Attribute {
            attribute: "level".into(),
            message: format!("'{l}' is not one of informational, low, medium, high, critical"),
        })?,
    };
    Ok(RuleMeta {
        id: get_str(map, "id")?,
        name: get_str(map, "name")?,
        title,
        level,
        status: get_str(map, "status")?,
        tags: string_list(map.get("tags"), "tags")?,
        description: get_str(map, "description")?,
        author: get_str(map, "author")?,
        references: string_list(map.get("references"), "references")?,
        falsepositives: string_list(map.get("falsepositives"), "falsepositives")?,
    })
}

pub(crate) fn get_str(map: &Mapping, key: &'static str) -> Result<Option<String>, RuleError> {
    match map.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(Value::Number(n)) => Ok(Some(n.to_string())),
        Some(Value::Bool(b)) => Ok(Some(b.to_string())),
        Some(_) => Err(RuleError::Attribute {
            attribute: key.into(),
            message: "must be a string".into(),
        }),
    }
}

pub(crate) fn string_list(
    value: Option<&Value>,
    attribute: &str,
) -> Result<Vec<String>, RuleError> {
    match value {
        None | Some(Value::Null) => Ok(Vec::new()),
        Some(Value::String(s)) => Ok(vec![s.clone()]),
        Some(Value::Sequence(seq)) => seq
            .iter()
            .map(|v| match v {
                Value::String(s) => Ok(s.clone()),
                Value::Number(n) => Ok(n.to_string()),
                Value::Null => Ok(String::new()),
                _ => Err(RuleError::Attribute {
                    attribute: attribute.into(),
                    message: "must be a list of strings".into(),
                }),
            })
            .collect(),
        Some(_) => Err(RuleError::Attribute {
            attribute: attribute.into(),
            message: "must be a list of strings".into(),
        }),
    }
}

fn parse_logsource(value: Option<&Value>) -> Result<LogSource, RuleError> {
    let Some(value) = value else {
        return Ok(LogSource::default());
    };
    let Value::Mapping(map) = value else {
        return Err(RuleError::Attribute {
            attribute: "logsource".into(),
            message: "must be a map".into(),
        });
    };
    let lower = |k: &'static str| -> Result<Option<String>, RuleError> {
        Ok(get_str(map, k)?.map(|s| s.to_ascii_lowercase()))
    };
    Ok(LogSource {
        product: lower("product")?,
        category: lower("category")?,
        service: lower("service")?,
    })
}
