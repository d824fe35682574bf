//! Windowed rule documents, parsed and validated but not yet resolved
//! against the rules they reference: Sigma correlation rules
//! (specification v2.1: `event_count`, `value_count`, `temporal`,
//! `temporal_ordered`, `value_sum`, `value_avg`, `value_percentile`) and
//! vagt's statistical rules (`baseline`, `first_seen`, `absence`).
//!
//! A statistical rule reads like Sigma: the events it watches are either
//! selected by an inline `logsource` + `detection`, or by the rules named
//! in `statistic.rules`; the `statistic` section says what to learn.
//!
//! ```yaml
//! title: Logons per account far above its normal
//! logsource: {product: windows, service: security}
//! detection:
//!   selection: {EventID: 4624}
//!   condition: selection
//! statistic:
//!   type: baseline
//!   group-by: [TargetUserName]
//!   bucket: 1h        # the metric is aggregated per bucket of event time
//!   history: 24       # buckets remembered (median and MAD over them)
//!   warmup: 6         # buckets learned before it may fire
//!   threshold: 3.5    # robust z-score
//! level: medium
//! ```

use std::collections::BTreeMap;
use std::fmt;

use serde_yaml_ng::{Mapping, Value};

use crate::error::RuleError;
use crate::sigma::document::{get_str, parse_meta, parse_rule, string_list};
use crate::sigma::{Placeholders, RuleMeta, SigmaRule};

/// Milliseconds of event time.
pub type Millis = i64;

/// What a windowed rule computes.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub enum WindowKind {
    /// Sigma `event_count`: events per group within the timespan.
    EventCount,
    /// Sigma `value_count`: distinct values of `fields` (together) per group.
    ValueCount {
        /// The field(s) whose distinct values are counted.
        fields: Vec<String>,
    },
    /// Sigma `temporal`: how many of the referenced rules matched within
    /// the timespan (all of them, unless a condition says otherwise).
    Temporal,
    /// Sigma `temporal_ordered`: the referenced rules matched in order
    /// within the timespan.
    TemporalOrdered,
    /// Sigma `value_sum`: sum of a numeric field.
    ValueSum {
        /// The numeric field.
        field: String,
    },
    /// Sigma `value_avg`: average of a numeric field.
    ValueAvg {
        /// The numeric field.
        field: String,
    },
    /// Sigma `value_percentile`: the share, in percent, of the group's
    /// events in the timespan that carry the current event's value of
    /// `field` (`lte: 1` finds values rarer than 1 %).
    ValuePercentile {
        /// The field.
        field: String,
    },
    /// vagt `baseline`: a per-group metric per bucket, compared with its
    /// learned normal.
    Baseline(BaselineSpec),
    /// vagt `first_seen`: a value never seen before for the group, once
    /// the learning period is over.
    FirstSeen {
        /// The field(s) whose value (together) must be new.
        fields: Vec<String>,
        /// Learning period from the first event the rule sees.
        learning: Millis,
    },
    /// vagt `absence`: a group (a host, a log source) that stops reporting
    /// for longer than the timespan.
    Absence,
}

impl WindowKind {
    /// The type name as written in rules.
    pub fn name(&self) -> &'static str {
        match self {
            WindowKind::EventCount => "event_count",
            WindowKind::ValueCount { .. } => "value_count",
            WindowKind::Temporal => "temporal",
            WindowKind::TemporalOrdered => "temporal_ordered",
            WindowKind::ValueSum { .. } => "value_sum",
            WindowKind::ValueAvg { .. } => "value_avg",
            WindowKind::ValuePercentile { .. } => "value_percentile",
            WindowKind::Baseline(_) => "baseline",
            WindowKind::FirstSeen { .. } => "first_seen",
            WindowKind::Absence => "absence",
        }
    }

    /// The fields whose values the rule reads besides its group-by fields.
    pub fn value_fields(&self) -> Vec<String> {
        match self {
            WindowKind::ValueCount { fields } | WindowKind::FirstSeen { fields, .. } => {
                fields.clone()
            }
            WindowKind::ValueSum { field }
            | WindowKind::ValueAvg { field }
            | WindowKind::ValuePercentile { field } => vec![field.clone()],
            WindowKind::Baseline(b) => b.field.iter().cloned().collect(),
            _ => Vec::new(),
        }
    }
}

/// Which side of the baseline is anomalous.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum Direction {
    /// More than normal (fires on the event that crosses the threshold).
    Above,
    /// Less than normal (decided when the bucket closes).
    Below,
}

/// Settings of a `baseline` rule.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct BaselineSpec {
    /// Bucket length.
    pub bucket: Millis,
    /// Numeric field summed per bucket; events are counted when absent.
    pub field: Option<String>,
    /// Buckets remembered.
    pub history: usize,
    /// Buckets that must have been seen before the rule may fire.
    pub warmup: usize,
    /// Robust z-score: (value − median) / (1.4826 · MAD), with the spread
    /// floored at 5 % of the median and at 1.
    pub threshold: f64,
    /// Which deviations count.
    pub direction: Direction,
}

/// A correlation condition: every bound present must hold.
#[derive(Debug, Clone, Copy, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Range {
    /// `gt`.
    pub gt: Option<f64>,
    /// `gte`.
    pub gte: Option<f64>,
    /// `lt`.
    pub lt: Option<f64>,
    /// `lte`.
    pub lte: Option<f64>,
    /// `eq`.
    pub eq: Option<f64>,
    /// `neq`.
    pub neq: Option<f64>,
}

impl Range {
    /// `gte: n`.
    pub fn at_least(n: f64) -> Range {
        Range {
            gte: Some(n),
            ..Range::default()
        }
    }

    /// Whether `x` satisfies every bound.
    pub fn holds(&self, x: f64) -> bool {
        self.gt.is_none_or(|b| x > b)
            && self.gte.is_none_or(|b| x >= b)
            && self.lt.is_none_or(|b| x < b)
            && self.lte.is_none_or(|b| x <= b)
            && self.eq.is_none_or(|b| x == b)
            && self.neq.is_none_or(|b| x != b)
    }

    /// A condition with a lower bound is decided on the event that
    /// completes it; one with only upper bounds (`lt`, `lte`, `neq`) can
    /// only be decided when the window closes.
    pub fn decided_on_event(&self) -> bool {
        self.gt.is_some() || self.gte.is_some() || self.eq.is_some()
    }
}

impl fmt::Display for Range {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let parts: Vec<String> = [
            ("gt", self.gt),
            ("gte", self.gte),
            ("lt", self.lt),
            ("lte", self.lte),
            ("eq", self.eq),
            ("neq", self.neq),
        ]
        .iter()
        .filter_map(|(k, v)| v.map(|v| format!("{k} {v}")))
        .collect();
        f.write_str(&parts.join(" and "))
    }
}

/// A windowed rule as written.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct WindowRule {
    /// Metadata (title, id, name, level, tags, ...).
    pub meta: RuleMeta,
    /// What it computes.
    pub kind: WindowKind,
    /// Referenced rules, by id or name, in order.
    pub rules: Vec<String>,
    /// Group-by fields (or aliases).
    pub group_by: Vec<String>,
    /// Alias → referenced rule (name or id) → field in that rule's events.
    pub aliases: BTreeMap<String, BTreeMap<String, String>>,
    /// Window length (`timespan`; the absence limit for `absence`; unused
    /// by `baseline` and `first_seen`).
    pub timespan: Millis,
    /// When it fires, for the Sigma types.
    pub condition: Option<Range>,
    /// Whether the referenced rules also alert on their own (`generate`).
    pub generate: bool,
}

/// Parses a timespan: a number and a unit, `s`, `m`, `h`, `d` or `w`.
pub fn parse_timespan(text: &str) -> Result<Millis, String> {
    let text = text.trim();
    let unit_at = text
        .find(|c: char| !c.is_ascii_digit())
        .ok_or_else(|| format!("'{text}' has no unit (use s, m, h, d or w, e.g. 5m)"))?;
    let (number, unit) = text.split_at(unit_at);
    let n: i64 = number
        .parse()
        .map_err(|_| format!("'{text}' does not start with a whole number (e.g. 5m)"))?;
    let scale = match unit {
        "s" => 1_000,
        "m" => 60_000,
        "h" => 3_600_000,
        "d" => 86_400_000,
        "w" => 7 * 86_400_000,
        _ => {
            return Err(format!(
                "'{text}': unknown unit '{unit}' (use s, m, h, d or w)"
            ))
        }
    };
    if n == 0 {
        return Err(format!("'{text}' must be longer than zero"));
    }
    // A century bounds every window: times stay far from overflowing.
    n.checked_mul(scale)
        .filter(|ms| *ms <= 100 * 366 * 86_400_000)
        .ok_or_else(|| format!("'{text}' is too long (at most 100 years)"))
}

fn attr(attribute: &str, message: impl Into<String>) -> RuleError {
    RuleError::Attribute {
        attribute: attribute.into(),
        message: message.into(),
    }
}

fn timespan_attr(section: &Mapping, prefix: &str, key: &str) -> Result<Option<Millis>, RuleError> {
    let attribute = format!("{prefix}.{key}");
    match section.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => parse_timespan(s).map(Some).map_err(|m| attr(&attribute, m)),
        Some(Value::Number(n)) => Err(attr(
            &attribute,
            format!("'{n}' has no unit (use s, m, h, d or w, e.g. {n}m)"),
        )),
        Some(_) => Err(attr(&attribute, "must be a duration such as 5m")),
    }
}

fn field_list(section: &Mapping, prefix: &str, key: &str) -> Result<Vec<String>, RuleError> {
    string_list(section.get(key), &format!("{prefix}.{key}"))
}

fn number(value: &Value, attribute: &str) -> Result<f64, RuleError> {
    value
        .as_f64()
        .ok_or_else(|| attr(attribute, "must be a number"))
}

/// Parses a correlation (`correlation:`) or statistical (`statistic:`)
/// rule document, returning the rule and the detection rule it defines
/// inline (statistics only).
pub fn parse_window_rule(
    map: &Mapping,
    placeholders: &Placeholders,
) -> Result<(WindowRule, Option<SigmaRule>), RuleError> {
    let title = get_str(map, "title")?.ok_or(RuleError::Missing("title".into()))?;
    let meta = parse_meta(map, title)?;
    let generate =
        ["generate", "correlation", "statistic"]
            .iter()
            .try_fold(false, |any, key| {
                let value = if *key == "generate" {
                    map.get("generate")
                } else {
                    map.get(*key).and_then(|s| s.get("generate"))
                };
                match value {
                    None | Some(Value::Null) => Ok(any),
                    Some(Value::Bool(b)) => Ok(any || *b),
                    Some(_) => Err(attr("generate", "must be true or false")),
                }
            })?;
    if let Some(section) = map.get("correlation") {
        let Value::Mapping(section) = section else {
            return Err(attr("correlation", "must be a map"));
        };
        let rule = parse_correlation(meta, section, generate)?;
        return Ok((rule, None));
    }
    let Some(Value::Mapping(section)) = map.get("statistic") else {
        return Err(attr("statistic", "must be a map"));
    };
    parse_statistic(map, meta, section, generate, placeholders)
}

fn parse_correlation(
    meta: RuleMeta,
    section: &Mapping,
    generate: bool,
) -> Result<WindowRule, RuleError> {
    const KEYS: &[&str] = &[
        "type",
        "rules",
        "group-by",
        "timespan",
        "condition",
        "aliases",
        "generate",
    ];
    reject_unknown(section, "correlation", KEYS)?;
    let type_name =
        get_str(section, "type")?.ok_or(RuleError::Missing("correlation.type".into()))?;
    let rules = field_list(section, "correlation", "rules")?;
    if rules.is_empty() {
        return Err(RuleError::Missing("correlation.rules".into()));
    }
    let group_by = field_list(section, "correlation", "group-by")?;
    let timespan = timespan_attr(section, "correlation", "timespan")?
        .ok_or(RuleError::Missing("correlation.timespan".into()))?;
    let aliases = parse_aliases(section.get("aliases"))?;
    let (condition, fields) = match section.get("condition") {
        None | Some(Value::Null) => (None, Vec::new()),
        Some(Value::Mapping(c)) => parse_condition(c)?,
        Some(_) => {
            return Err(attr(
                "correlation.condition",
                "must be a map such as {gte: 10}",
            ))
        }
    };
    let one_field = |fields: &[String]| -> Result<String, RuleError> {
        match fields {
            [one] => Ok(one.clone()),
            [] => Err(RuleError::Missing("correlation.condition.field".into())),
            _ => Err(attr(
                "correlation.condition.field",
                format!("{type_name} takes one field"),
            )),
        }
    };
    let kind = match type_name.as_str() {
        "event_count" => WindowKind::EventCount,
        "value_count" => {
            if fields.is_empty() {
                return Err(RuleError::Missing("correlation.condition.field".into()));
            }
            WindowKind::ValueCount { fields }
        }
        "temporal" => WindowKind::Temporal,
        "temporal_ordered" => WindowKind::TemporalOrdered,
        "value_sum" => WindowKind::ValueSum {
            field: one_field(&fields)?,
        },
        "value_avg" => WindowKind::ValueAvg {
            field: one_field(&fields)?,
        },
        "value_percentile" => WindowKind::ValuePercentile {
            field: one_field(&fields)?,
        },
        other => {
            return Err(attr(
                "correlation.type",
                format!(
                    "unknown correlation type '{other}' (event_count, value_count, temporal, temporal_ordered, value_sum, value_avg, value_percentile)"
                ),
            ))
        }
    };
    let condition = match (&kind, condition) {
        (WindowKind::Temporal | WindowKind::TemporalOrdered, None) => None,
        (WindowKind::TemporalOrdered, Some(_)) => {
            return Err(attr(
                "correlation.condition",
                "temporal_ordered takes no condition: every rule must match, in order",
            ))
        }
        (_, Some(c)) => Some(c),
        (_, None) => return Err(RuleError::Missing("correlation.condition".into())),
    };
    if matches!(kind, WindowKind::Temporal) && condition.is_some_and(|c| !c.decided_on_event()) {
        return Err(attr(
            "correlation.condition",
            "unsupported: a temporal condition needs a lower bound (gt, gte or eq): how many of the rules must match",
        ));
    }
    if matches!(kind, WindowKind::TemporalOrdered) && rules.len() < 2 {
        return Err(attr(
            "correlation.rules",
            "temporal_ordered needs at least two rules",
        ));
    }
    Ok(WindowRule {
        meta,
        kind,
        rules,
        group_by,
        aliases,
        timespan,
        condition,
        generate,
    })
}

fn reject_unknown(section: &Mapping, prefix: &str, keys: &[&str]) -> Result<(), RuleError> {
    for key in section.keys() {
        let name = key.as_str().unwrap_or("?");
        if !keys.contains(&name) {
            return Err(attr(
                &format!("{prefix}.{name}"),
                format!("unknown attribute (expected one of: {})", keys.join(", ")),
            ));
        }
    }
    Ok(())
}

fn parse_condition(c: &Mapping) -> Result<(Option<Range>, Vec<String>), RuleError> {
    let mut range = Range::default();
    let mut fields = Vec::new();
    for (key, value) in c {
        let key = key.as_str().unwrap_or("?");
        let attribute = format!("correlation.condition.{key}");
        let slot = match key {
            "gt" => &mut range.gt,
            "gte" => &mut range.gte,
            "lt" => &mut range.lt,
            "lte" => &mut range.lte,
            "eq" => &mut range.eq,
            "neq" => &mut range.neq,
            "field" => {
                fields = string_list(Some(value), &attribute)?;
                continue;
            }
            other => {
                return Err(attr(
                    "correlation.condition",
                    format!("unknown operator '{other}' (gt, gte, lt, lte, eq, neq, field)"),
                ))
            }
        };
        *slot = Some(number(value, &attribute)?);
    }
    let any = [
        range.gt, range.gte, range.lt, range.lte, range.eq, range.neq,
    ]
    .iter()
    .any(Option::is_some);
    Ok((any.then_some(range), fields))
}

fn parse_aliases(
    value: Option<&Value>,
) -> Result<BTreeMap<String, BTreeMap<String, String>>, RuleError> {
    let mut out = BTreeMap::new();
    let Some(value) = value.filter(|v| !v.is_null()) else {
        return Ok(out);
    };
    let Value::Mapping(map) = value else {
        return Err(attr("correlation.aliases", "must map alias → rule → field"));
    };
    for (alias, per_rule) in map {
        let alias = alias.as_str().unwrap_or("?").to_string();
        let attribute = format!("correlation.aliases.{alias}");
        let Value::Mapping(per_rule) = per_rule else {
            return Err(attr(&attribute, "must map rule name → field"));
        };
        let mut fields = BTreeMap::new();
        for (rule, field) in per_rule {
            let (Some(rule), Some(field)) = (rule.as_str(), field.as_str()) else {
                return Err(attr(&attribute, "must map rule name → field name"));
            };
            fields.insert(rule.to_string(), field.to_string());
        }
        out.insert(alias, fields);
    }
    Ok(out)
}

fn parse_statistic(
    map: &Mapping,
    meta: RuleMeta,
    section: &Mapping,
    generate: bool,
    placeholders: &Placeholders,
) -> Result<(WindowRule, Option<SigmaRule>), RuleError> {
    const KEYS: &[&str] = &[
        "type",
        "rules",
        "group-by",
        "field",
        "timespan",
        "bucket",
        "history",
        "warmup",
        "threshold",
        "direction",
        "learning",
        "generate",
    ];
    reject_unknown(section, "statistic", KEYS)?;
    let type_name = get_str(section, "type")?.ok_or(RuleError::Missing("statistic.type".into()))?;
    let mut rules = field_list(section, "statistic", "rules")?;
    let group_by = field_list(section, "statistic", "group-by")?;
    let fields = field_list(section, "statistic", "field")?;
    let count = |key: &str, default: usize| -> Result<usize, RuleError> {
        match section.get(key) {
            None => Ok(default),
            Some(v) => v
                .as_u64()
                .filter(|n| *n > 0)
                .map(|n| n as usize)
                .ok_or_else(|| {
                    attr(
                        &format!("statistic.{key}"),
                        "must be a whole number above 0",
                    )
                }),
        }
    };
    let allowed = |allowed: &[&str]| -> Result<(), RuleError> {
        for key in section.keys().filter_map(Value::as_str) {
            if !allowed.contains(&key) && !["type", "rules", "group-by", "generate"].contains(&key)
            {
                return Err(attr(
                    &format!("statistic.{key}"),
                    format!("not used by type {type_name}"),
                ));
            }
        }
        Ok(())
    };
    let mut timespan = 0;
    let kind = match type_name.as_str() {
        "baseline" => {
            allowed(&[
                "field",
                "bucket",
                "history",
                "warmup",
                "threshold",
                "direction",
            ])?;
            let history = count("history", 24)?;
            let warmup = count("warmup", history.min(6))?;
            if warmup > history {
                return Err(attr(
                    "statistic.warmup",
                    format!("{warmup} buckets cannot be learned with a history of {history}"),
                ));
            }
            let threshold = match section.get("threshold") {
                None => 3.5,
                Some(v) => number(v, "statistic.threshold")?,
            };
            if threshold <= 0.0 {
                return Err(attr("statistic.threshold", "must be above 0"));
            }
            let direction = match get_str(section, "direction")?.as_deref() {
                None | Some("above") => Direction::Above,
                Some("below") => Direction::Below,
                Some(other) => {
                    return Err(attr(
                        "statistic.direction",
                        format!("'{other}' is not above or below"),
                    ))
                }
            };
            if fields.len() > 1 {
                return Err(attr("statistic.field", "baseline sums one numeric field"));
            }
            WindowKind::Baseline(BaselineSpec {
                bucket: timespan_attr(section, "statistic", "bucket")?
                    .ok_or(RuleError::Missing("statistic.bucket".into()))?,
                field: fields.first().cloned(),
                history,
                warmup,
                threshold,
                direction,
            })
        }
        "first_seen" => {
            allowed(&["field", "learning"])?;
            if fields.is_empty() {
                return Err(RuleError::Missing("statistic.field".into()));
            }
            WindowKind::FirstSeen {
                fields,
                learning: timespan_attr(section, "statistic", "learning")?
                    .ok_or(RuleError::Missing("statistic.learning".into()))?,
            }
        }
        "absence" => {
            allowed(&["timespan"])?;
            timespan = timespan_attr(section, "statistic", "timespan")?
                .ok_or(RuleError::Missing("statistic.timespan".into()))?;
            WindowKind::Absence
        }
        other => {
            return Err(attr(
                "statistic.type",
                format!("unknown statistic type '{other}' (baseline, first_seen, absence)"),
            ))
        }
    };
    let inline = if map.contains_key("detection") {
        if !rules.is_empty() {
            return Err(attr(
                "statistic.rules",
                "give either an inline detection or statistic.rules, not both",
            ));
        }
        let mut detection_doc = map.clone();
        detection_doc.remove("statistic");
        let mut rule = parse_rule(&detection_doc, placeholders)?;
        // The inline detection is referenced by this hidden name and never
        // alerts on its own (unless `generate: true`).
        let hidden = format!("{}#events", meta.id.as_deref().unwrap_or(&meta.title));
        rule.meta.id = None;
        rule.meta.name = Some(hidden.clone());
        rules.push(hidden);
        Some(rule)
    } else {
        if rules.is_empty() {
            return Err(RuleError::Missing("detection (or statistic.rules)".into()));
        }
        None
    };
    Ok((
        WindowRule {
            meta,
            kind,
            rules,
            group_by,
            aliases: BTreeMap::new(),
            timespan,
            condition: None,
            generate,
        },
        inline,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<(WindowRule, Option<SigmaRule>), RuleError> {
        let value: Value = serde_yaml_ng::from_str(text).unwrap();
        parse_window_rule(value.as_mapping().unwrap(), &Placeholders::new())
    }

    #[test]
    fn timespans() {
        assert_eq!(parse_timespan("90m"), Ok(90 * 60_000));
        assert_eq!(parse_timespan("1d"), Ok(86_400_000));
        assert!(parse_timespan("5").unwrap_err().contains("no unit"));
        assert!(parse_timespan("5y").unwrap_err().contains("unknown unit"));
        assert!(parse_timespan("m").unwrap_err().contains("whole number"));
        assert!(parse_timespan("0s")
            .unwrap_err()
            .contains("longer than zero"));
    }

    #[test]
    fn a_correlation_parses() {
        let (rule, inline) = parse(
            "title: t\ncorrelation:\n  type: value_count\n  rules: [a, b]\n  group-by: [Host]\n  timespan: 10m\n  condition: {field: User, gt: 3, lte: 10}\n",
        )
        .unwrap();
        assert!(inline.is_none());
        assert_eq!(
            rule.kind,
            WindowKind::ValueCount {
                fields: vec!["User".into()]
            }
        );
        assert_eq!(rule.timespan, 600_000);
        let c = rule.condition.unwrap();
        assert!(c.holds(4.0) && !c.holds(3.0) && !c.holds(11.0));
        assert!(c.decided_on_event());
    }

    #[test]
    fn errors_name_the_attribute() {
        let cases = [
            ("correlation:\n  type: event_cnt\n  rules: [a]\n  timespan: 1h\n  condition: {gte: 1}\n", "unknown correlation type 'event_cnt'"),
            ("correlation:\n  type: event_count\n  rules: [a]\n  timespan: 1 hour\n  condition: {gte: 1}\n", "correlation.timespan"),
            ("correlation:\n  type: event_count\n  rules: [a]\n  timespan: 1h\n", "correlation.condition"),
            ("correlation:\n  type: value_sum\n  rules: [a]\n  timespan: 1h\n  condition: {gte: 1}\n", "correlation.condition.field"),
            ("correlation:\n  type: event_count\n  rules: [a]\n  timespan: 1h\n  condition: {more: 1}\n", "unknown operator 'more'"),
            ("correlation:\n  type: event_count\n  rule: [a]\n  timespan: 1h\n", "correlation.rule"),
            ("statistic:\n  type: absence\n  rules: [a]\n", "statistic.timespan"),
            ("statistic:\n  type: baseline\n  rules: [a]\n  bucket: 1h\n  learning: 2d\n", "not used by type baseline"),
            ("statistic:\n  type: wobble\n  rules: [a]\n", "unknown statistic type 'wobble'"),
        ];
        for (body, expected) in cases {
            let e = parse(&format!("title: t\n{body}")).unwrap_err().to_string();
            assert!(e.contains(expected), "{body}: {e}");
        }
    }

    #[test]
    fn a_statistic_with_inline_detection_defines_a_hidden_rule() {
        let (rule, inline) = parse(
            "title: t\nid: s1\nlogsource: {product: windows}\ndetection:\n  sel: {EventID: 4624}\n  condition: sel\nstatistic:\n  type: first_seen\n  group-by: [Computer]\n  field: TargetUserName\n  learning: 1d\n",
        )
        .unwrap();
        let inline = inline.unwrap();
        assert_eq!(inline.meta.name.as_deref(), Some("s1#events"));
        assert_eq!(rule.rules, vec!["s1#events".to_string()]);
    }
}
