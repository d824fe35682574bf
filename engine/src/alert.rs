//! Alerts: one per detection, following the alert contract (see README):
//! deterministic id, rule metadata, severity raised by the criticality of
//! the processes at risk, actor, critical processes, event time, detection
//! time and the matching event.

use arrow_array::cast::AsArray;
use arrow_array::types::{Float64Type, Int64Type, UInt64Type};
use arrow_array::{Array, RecordBatch};
use arrow_schema::DataType;
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use sha2::{Digest, Sha256};
use vagt_connectors::EventBatch;
use vagt_rules::window::{format_millis, TimestampSpec};
use vagt_rules::{Level, LogSource, Profile, RuleInfo, RuleMatch, RuleSet};

use crate::catalog::{Catalog, EventFacts, Guidance, Impact};
use crate::warning::campaign::CampaignReport;
use crate::warning::suppress::SuppressionReport;
use crate::warning::tlp::Tlp;

/// The rule part of an alert.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AlertRule {
    /// Rule id (UUID in SigmaHQ) or, lacking one, its title.
    pub id: String,
    /// Title.
    pub title: String,
    /// Sigma level.
    pub level: Level,
    /// Tags, e.g. `attack.t1059.001`.
    pub tags: Vec<String>,
    /// ATT&CK technique ids from the tags, e.g. `T1059.001`.
    pub attack_techniques: Vec<String>,
    /// Logsource.
    pub logsource: LogSource,
    /// Where the rule was loaded from (`file:line`).
    pub source: String,
}

/// First and last event time (equal for single-event rules).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct EventTime {
    /// Earliest contributing event.
    pub first: Option<String>,
    /// Latest contributing event.
    pub last: Option<String>,
}

/// Where the event came from.
#[derive(Debug, Clone, Serialize, serde::Deserialize)]
pub struct EventSource {
    /// Input name (file path, `stdin`).
    pub input: String,
    /// Line where the event starts.
    pub line: u64,
    /// Byte offset where the event starts.
    pub offset: u64,
}

/// One alert, serialised as one JSON line.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Alert {
    /// Deterministic: hash of rule id and event text.
    pub id: String,
    /// The rule that fired.
    pub rule: AlertRule,
    /// Rule level raised by the criticality of the processes at risk.
    pub severity: Level,
    /// How far it may be shared (TLP 2.0): the most restrictive that the
    /// rule's `tlp.*` tag, the catalog and the routes it took set, else
    /// the config's default.
    pub tlp: Option<Tlp>,
    /// The organisation that must act (owner of the first matched asset,
    /// or the input's configured actor), if known.
    pub actor: Option<String>,
    /// Every organisation owning a matched asset.
    pub actors: Vec<String>,
    /// Critical processes at risk (ids), empty if none.
    pub critical_processes: Vec<String>,
    /// Matched assets (ids).
    pub assets: Vec<String>,
    /// What to do, from the catalog: for each asset and process at risk
    /// that names a response (else the organisation's), whom to call, how
    /// fast, and the procedure.
    #[serde(default)]
    pub response: Vec<Guidance>,
    /// Event time, first/last.
    pub event_time: EventTime,
    /// When vagt detected it (RFC 3339, UTC).
    pub detected_at: String,
    /// Group-by values of a windowed rule (null for single-event rules).
    pub group: Option<serde_json::Map<String, serde_json::Value>>,
    /// Number of events behind the alert.
    pub count: u64,
    /// Where the event came from.
    pub source: EventSource,
    /// The matching event, verbatim (for a windowed rule: the event that
    /// completed it).
    pub event: Option<Box<RawValue>>,
    /// For a windowed rule: what was measured and the contributing events.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub evidence: Option<WindowEvidence>,
    /// Found by a retro-hunt over the archive (a new or changed rule run
    /// over past events), not as the event came in.
    #[serde(skip_serializing_if = "std::ops::Not::not", default)]
    pub retrospective: bool,
    /// A follow-up: the repeats of an earlier alert that suppression held
    /// back.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub suppression: Option<SuppressionReport>,
    /// A sector campaign: the organisations where the same rule fired.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub campaign: Option<CampaignReport>,
    /// An indicator of a threat intelligence feed that the event hit.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub indicator: Option<IndicatorHit>,
}

/// What an indicator hit: the feed, the indicator, and where.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct IndicatorHit {
    /// The feed's name.
    pub feed: String,
    /// `ip`, `domain`, `url`, `hash` or `user_agent`.
    pub kind: String,
    /// The indicator, as the feed gave it.
    pub value: String,
    /// The event field and value it hit.
    pub field: String,
    pub matched: String,
    /// The feed's confidence, 0-100.
    pub confidence: u8,
    /// When the indicator stops being in force, if it says.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub valid_until: Option<String>,
    /// Where in the feed (line, or STIX object id).
    pub origin: String,
}

/// What routes match on and templates name: a view of an alert, built
/// from one in memory or from its JSON (`vagt routes test`).
#[derive(Debug, Clone)]
pub struct AlertFacts<'a> {
    /// The alert's id.
    pub id: &'a str,
    /// The organisation that must act.
    pub actor: Option<&'a str>,
    /// The alert's severity.
    pub severity: Level,
    /// The rule's level.
    pub level: Level,
    /// The rule's id.
    pub rule_id: &'a str,
    /// Critical processes at risk.
    pub processes: Vec<&'a str>,
    /// The rule's tags.
    pub tags: Vec<&'a str>,
    /// ATT&CK technique ids.
    pub techniques: Vec<&'a str>,
    /// Its TLP, once the warning service gave it one.
    pub tlp: Option<Tlp>,
}

impl<'a> AlertFacts<'a> {
    /// The facts of an alert.
    pub fn of(alert: &'a Alert) -> AlertFacts<'a> {
        AlertFacts {
            id: &alert.id,
            actor: alert.actor.as_deref(),
            severity: alert.severity,
            level: alert.rule.level,
            rule_id: &alert.rule.id,
            processes: alert
                .critical_processes
                .iter()
                .map(String::as_str)
                .collect(),
            tags: alert.rule.tags.iter().map(String::as_str).collect(),
            techniques: alert
                .rule
                .attack_techniques
                .iter()
                .map(String::as_str)
                .collect(),
            tlp: alert.tlp,
        }
    }
}

/// The evidence of a windowed alert.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct WindowEvidence {
    /// The rule type, e.g. `event_count` or `baseline`.
    pub kind: String,
    /// The measured value (events, distinct values, sum, average, percent,
    /// bucket value, or the silence limit in ms for `absence`).
    pub value: f64,
    /// Type-specific facts (distinct values, baseline median, new value).
    #[serde(flatten)]
    pub detail: serde_json::Map<String, serde_json::Value>,
    /// Contributing events (at most `windows.max_evidence`, the most
    /// recent last).
    pub events: Vec<EvidenceEvent>,
    /// Contributing events not listed.
    pub omitted: u64,
}

/// One contributing event of a windowed alert.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct EvidenceEvent {
    /// Where it came from.
    pub source: EventSource,
    /// Its event time.
    pub time: String,
    /// The event, verbatim.
    pub event: Box<RawValue>,
}

/// Reads the values of named columns from rows of a batch.
#[derive(Debug, Clone)]
pub struct FieldCandidates {
    host: Vec<String>,
    ip: Vec<String>,
    application: Vec<String>,
    time: Vec<String>,
}

const TIME_FIELDS: &[&str] = &[
    "TimeCreated_SystemTime",
    "@timestamp",
    "timestamp",
    "EventTime",
    "UtcTime",
    "time",
];

impl FieldCandidates {
    /// Column candidates for the catalog's fields and event time.
    pub fn new(catalog: &Catalog, profile: &Profile) -> Self {
        let resolve = |names: &[String]| profile_columns(profile, names);
        let time: Vec<String> = TIME_FIELDS.iter().map(|s| s.to_string()).collect();
        FieldCandidates {
            host: resolve(&catalog.fields().host),
            ip: resolve(&catalog.fields().ip),
            application: resolve(&catalog.fields().application),
            time: resolve(&time),
        }
    }

    /// Every column they name.
    pub fn columns(&self) -> impl Iterator<Item = &str> {
        [&self.host, &self.ip, &self.application, &self.time]
            .into_iter()
            .flatten()
            .map(String::as_str)
    }

    /// Facts about one row for the catalog.
    pub fn facts(&self, batch: &RecordBatch, row: usize) -> EventFacts {
        EventFacts {
            hosts: values(batch, &self.host, row),
            ips: values(batch, &self.ip, row)
                .iter()
                .filter_map(|v| parse_ip(v))
                .collect(),
            applications: values(batch, &self.application, row),
        }
    }

    /// The event time of a row, normalised to RFC 3339 when parseable.
    pub fn event_time(&self, batch: &RecordBatch, row: usize) -> Option<String> {
        let raw = values(batch, &self.time, row).into_iter().next()?;
        Some(normalise_time(&raw).unwrap_or(raw))
    }
}

/// An address as events write it (brackets allowed), IPv4-mapped IPv6
/// addresses as IPv4.
/// The columns that may hold the Sigma fields `names` under `profile`
/// (nested and flat shapes), each once, in order.
pub(crate) fn profile_columns(profile: &Profile, names: &[impl AsRef<str>]) -> Vec<String> {
    let mut out = Vec::new();
    for n in names {
        for c in profile.columns_for(n.as_ref(), &LogSource::default()) {
            if !out.contains(&c) {
                out.push(c);
            }
        }
    }
    out
}

pub(crate) fn parse_ip(v: &str) -> Option<std::net::IpAddr> {
    let ip: std::net::IpAddr = v
        .trim()
        .trim_matches(|c| c == '[' || c == ']')
        .parse()
        .ok()?;
    Some(match ip {
        std::net::IpAddr::V6(v6) => v6.to_ipv4_mapped().map(std::net::IpAddr::V4).unwrap_or(ip),
        v4 => v4,
    })
}

fn normalise_time(raw: &str) -> Option<String> {
    use chrono::{DateTime, NaiveDateTime, SecondsFormat, Utc};
    if let Ok(dt) = DateTime::parse_from_rfc3339(raw.trim()) {
        return Some(
            dt.with_timezone(&Utc)
                .to_rfc3339_opts(SecondsFormat::AutoSi, true),
        );
    }
    for f in ["%Y-%m-%d %H:%M:%S%.f", "%Y-%m-%dT%H:%M:%S%.f"] {
        if let Ok(n) = NaiveDateTime::parse_from_str(raw.trim().trim_end_matches('Z'), f) {
            return Some(n.and_utc().to_rfc3339_opts(SecondsFormat::AutoSi, true));
        }
    }
    None
}

/// The first value of the first candidate column present and non-null.
pub(crate) fn first_value(
    batch: &RecordBatch,
    candidates: &[String],
    row: usize,
) -> Option<String> {
    values(batch, candidates, row).into_iter().next()
}

/// String values of the first candidate columns present and non-null.
fn values(batch: &RecordBatch, candidates: &[String], row: usize) -> Vec<String> {
    let schema = batch.schema();
    let mut out = Vec::new();
    for name in candidates {
        // Not `index_of`: its error formats every field name.
        let Some((index, _)) = schema.column_with_name(name) else {
            continue;
        };
        let array = batch.column(index);
        if array.is_null(row) {
            continue;
        }
        match array.data_type() {
            DataType::Utf8 => out.push(array.as_string::<i32>().value(row).to_string()),
            DataType::Int64 => out.push(array.as_primitive::<Int64Type>().value(row).to_string()),
            DataType::UInt64 => out.push(array.as_primitive::<UInt64Type>().value(row).to_string()),
            DataType::Float64 => {
                out.push(array.as_primitive::<Float64Type>().value(row).to_string())
            }
            DataType::Boolean => out.push(array.as_boolean().value(row).to_string()),
            DataType::List(_) => {
                let list = array.as_list::<i32>().value(row);
                if let Some(strings) = list.as_string_opt::<i32>() {
                    out.extend(strings.iter().flatten().map(str::to_string));
                }
            }
            _ => {}
        }
    }
    out
}

/// What an alert tells about its detection, beyond the rule, the
/// organisations and the processes at risk.
#[derive(Debug)]
pub struct AlertBody {
    /// Event time, first/last.
    pub event_time: EventTime,
    /// Group-by values of a windowed rule.
    pub group: Option<serde_json::Map<String, serde_json::Value>>,
    /// Number of events behind the alert.
    pub count: u64,
    /// Where the (last) event came from.
    pub source: EventSource,
    /// The (last) event.
    pub event: Option<Box<RawValue>>,
    /// What a windowed rule measured.
    pub evidence: Option<WindowEvidence>,
}

impl Alert {
    /// The one place an alert is put together, whichever rule raised it:
    /// `key` and `identity` make its id (the same detection, the same id),
    /// the impact raises its severity, and its organisation is the sender
    /// of the event(s), else the owner of the first matched asset.
    pub fn assemble(
        info: &RuleInfo,
        key: &str,
        identity: &str,
        sender: Option<String>,
        impact: Impact,
        body: AlertBody,
        detected_at: &str,
    ) -> Alert {
        Alert {
            id: alert_id(key, identity),
            rule: alert_rule(info),
            severity: severity(info.meta.level, &impact),
            tlp: Tlp::from_tags(info.meta.tags.iter().map(String::as_str)),
            actor: sender.or_else(|| impact.actors.first().cloned()),
            actors: impact.actors,
            critical_processes: impact.processes,
            assets: impact.assets,
            response: Vec::new(),
            event_time: body.event_time,
            detected_at: detected_at.to_string(),
            group: body.group,
            count: body.count,
            source: body.source,
            event: body.event,
            evidence: body.evidence,
            retrospective: false,
            suppression: None,
            campaign: None,
            indicator: None,
        }
    }
}

/// Builds the alerts of single-event rules from their matches.
#[derive(Debug)]
pub struct AlertBuilder<'a> {
    catalog: &'a Catalog,
    fields: &'a FieldCandidates,
    detected_at: &'a str,
}

impl<'a> AlertBuilder<'a> {
    /// A builder stamping `detected_at` on its alerts.
    pub fn new(catalog: &'a Catalog, fields: &'a FieldCandidates, detected_at: &'a str) -> Self {
        AlertBuilder {
            catalog,
            fields,
            detected_at,
        }
    }

    /// An alert per match of a batch; `timestamp` reads the event time.
    pub fn single_event(
        &self,
        set: &RuleSet,
        batch: &EventBatch,
        matches: &[RuleMatch],
        timestamp: &TimestampSpec,
    ) -> Vec<Alert> {
        let raw = batch.raw();
        matches
            .iter()
            .map(|m| self.for_row(set.rule(m.rule), batch, raw, m.row, timestamp))
            .collect()
    }

    /// The alert of the rule `info` on row `row` of a batch (whose raw
    /// texts are `raw`); `timestamp` reads the event time.
    pub fn for_row(
        &self,
        info: &RuleInfo,
        batch: &EventBatch,
        raw: Option<&arrow_array::StringArray>,
        row: usize,
        timestamp: &TimestampSpec,
    ) -> Alert {
        let text = raw.map(|r| r.value(row)).unwrap_or("{}");
        let facts = self.fields.facts(&batch.batch, row);
        let origin = &batch.origins[row];
        let impact = self
            .catalog
            .impact(&facts, &info.logsource, origin.actor.as_deref());
        let rule_id = info.meta.id.as_deref().unwrap_or(&info.meta.title);
        // The input's timestamp, as windowed rules read it; a value it
        // cannot read is shown as found.
        let time = match timestamp.read(&batch.batch, &[row]).pop() {
            Some(Ok(ms)) => Some(format_millis(ms)),
            _ => self.fields.event_time(&batch.batch, row),
        };
        // The text was validated as a JSON object when decoded; should
        // it not be, the alert carries it as a JSON string instead.
        let event = RawValue::from_string(compact_json(text).into_owned())
            .or_else(|_| serde_json::value::to_raw_value(text))
            .ok();
        // The same event text from two organisations is two detections.
        let key = match origin.actor.as_deref() {
            Some(actor) => format!("{rule_id}|{actor}"),
            None => rule_id.to_string(),
        };
        let body = AlertBody {
            event_time: EventTime {
                first: time.clone(),
                last: time,
            },
            group: None,
            count: 1,
            source: EventSource {
                input: origin.source.to_string(),
                line: origin.line,
                offset: origin.offset,
            },
            event,
            evidence: None,
        };
        let sender = origin.actor.as_deref().map(str::to_string);
        Alert::assemble(info, &key, text, sender, impact, body, self.detected_at)
    }
}

/// The wall-clock time now, as alerts' `detected_at` says it.
pub fn now_rfc3339() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

/// The JSON text without insignificant whitespace, so that an alert with
/// a pretty-printed event stays on one line. The input is valid JSON (it
/// was decoded); only whitespace outside strings is removed, so key order
/// and number spelling are kept.
pub fn compact_json(text: &str) -> std::borrow::Cow<'_, str> {
    if !text.bytes().any(|b| matches!(b, b'\n' | b'\r' | b'\t')) {
        return std::borrow::Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len());
    let mut in_string = false;
    let mut escape = false;
    for c in text.chars() {
        if in_string {
            out.push(c);
            if escape {
                escape = false;
            } else if c == '\\' {
                escape = true;
            } else if c == '"' {
                in_string = false;
            }
        } else if !matches!(c, ' ' | '\n' | '\r' | '\t') {
            if c == '"' {
                in_string = true;
            }
            out.push(c);
        }
    }
    std::borrow::Cow::Owned(out)
}

/// Deterministic alert id: the same rule on the same event text always
/// gets the same id, formatted like a UUID.
pub fn alert_id(rule_key: &str, event_text: &str) -> String {
    let mut h = Sha256::new();
    h.update(rule_key.as_bytes());
    h.update([0u8]);
    h.update(event_text.as_bytes());
    let d = h.finalize();
    let hex: String = d.iter().take(16).map(|b| format!("{b:02x}")).collect();
    format!(
        "{}-{}-{}-{}-{}",
        &hex[0..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..32]
    )
}

/// Severity: the rule level raised one step for a high-criticality process
/// and two for a critical one, capped at critical; never lowered.
pub fn severity(level: Level, impact: &Impact) -> Level {
    let raise = impact
        .max_criticality
        .map(|c| c.severity_raise())
        .unwrap_or(0);
    Level::from_rank(level.rank().saturating_add(raise))
}

/// The rule section of an alert.
pub fn alert_rule(info: &RuleInfo) -> AlertRule {
    AlertRule {
        id: info
            .meta
            .id
            .clone()
            .unwrap_or_else(|| info.meta.title.clone()),
        title: info.meta.title.clone(),
        level: info.meta.level,
        tags: info.meta.tags.clone(),
        attack_techniques: info
            .meta
            .tags
            .iter()
            .filter_map(|t| t.strip_prefix("attack.t"))
            .map(|t| format!("T{}", t.to_ascii_uppercase()))
            .collect(),
        logsource: info.logsource.clone(),
        source: info.origin.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalog::Criticality;

    #[test]
    fn ids_are_deterministic_and_distinct() {
        let a = alert_id("rule-1", "{\"a\":1}");
        assert_eq!(a, alert_id("rule-1", "{\"a\":1}"));
        assert_ne!(a, alert_id("rule-2", "{\"a\":1}"));
        assert_ne!(a, alert_id("rule-1", "{\"a\":2}"));
        assert_eq!(a.len(), 36);
    }

    #[test]
    fn severity_is_raised_by_criticality() {
        let mut impact = Impact::default();
        assert_eq!(severity(Level::Medium, &impact), Level::Medium);
        impact.max_criticality = Some(Criticality::High);
        assert_eq!(severity(Level::Medium, &impact), Level::High);
        impact.max_criticality = Some(Criticality::Critical);
        assert_eq!(severity(Level::Medium, &impact), Level::Critical);
        assert_eq!(severity(Level::High, &impact), Level::Critical);
        impact.max_criticality = Some(Criticality::Low);
        assert_eq!(severity(Level::Low, &impact), Level::Low);
    }

    #[test]
    fn compaction_keeps_strings_and_order() {
        let pretty = "{\n  \"b\": \"a  b\\\" }\",\n  \"a\": [1, 2]\n}";
        assert_eq!(compact_json(pretty), "{\"b\":\"a  b\\\" }\",\"a\":[1,2]}");
        assert!(matches!(
            compact_json("{\"a\": 1}"),
            std::borrow::Cow::Borrowed(_)
        ));
    }

    #[test]
    fn times_are_normalised() {
        assert_eq!(
            normalise_time("2025-11-27T07:40:10.165324Z").as_deref(),
            Some("2025-11-27T07:40:10.165324Z")
        );
        assert_eq!(
            normalise_time("2025-11-27 07:40:10.132").as_deref(),
            Some("2025-11-27T07:40:10.132Z")
        );
    }
}
