//! How an alert is written: vagt's alert JSON, an OCSF Detection Finding
//! (class 2004, OCSF 1.3), or one readable line for a terminal.
//!
//! OCSF mapping: the rule is the finding's analytic (`finding_info.analytic`,
//! type Rule), its ATT&CK techniques `finding_info.attacks`, the matched
//! assets `resources`, the matching event `evidences[0].data`; severity maps
//! one to one (informational 1 … critical 5). What OCSF has no place for
//! (the actor that must act, the critical processes, a window's group and
//! count) is kept under `unmapped`, as the schema intends.

use std::io::Write;

use serde::Serialize;
use serde_json::value::RawValue;
use vagt_rules::Level;

use super::config::Encoding;
use crate::alert::{Alert, WindowEvidence};

/// Appends one alert, without a trailing newline.
pub(crate) fn encode(alert: &Alert, encoding: Encoding, out: &mut Vec<u8>) {
    match encoding {
        // Serialising owned, valid data into memory cannot fail.
        Encoding::Json => serde_json::to_writer(&mut *out, alert).expect("alert JSON"),
        Encoding::Ocsf => serde_json::to_writer(&mut *out, &Ocsf::of(alert)).expect("OCSF JSON"),
        Encoding::Text => text_line(alert, out),
    }
}

/// `TIME SEVERITY rule title  actor=... processes=a,b  id=...`
fn text_line(alert: &Alert, out: &mut Vec<u8>) {
    let time = alert
        .event_time
        .last
        .as_deref()
        .unwrap_or(alert.detected_at.as_str());
    let _ = write!(
        out,
        "{time} {:<8} {}  actor={}",
        alert.severity.as_str().to_uppercase(),
        alert.rule.title,
        alert.actor.as_deref().unwrap_or("-"),
    );
    if !alert.critical_processes.is_empty() {
        let _ = write!(out, " processes={}", alert.critical_processes.join(","));
    }
    if alert.count > 1 {
        let _ = write!(out, " events={}", alert.count);
    }
    let _ = write!(out, "  id={}", alert.id);
}

/// OCSF's severity ids.
fn severity_id(level: Level) -> u8 {
    match level {
        Level::Informational => 1,
        Level::Low => 2,
        Level::Medium => 3,
        Level::High => 4,
        Level::Critical => 5,
    }
}

fn severity_name(level: Level) -> &'static str {
    match level {
        Level::Informational => "Informational",
        Level::Low => "Low",
        Level::Medium => "Medium",
        Level::High => "High",
        Level::Critical => "Critical",
    }
}

/// Milliseconds since the epoch of an RFC 3339 time.
fn epoch_ms(time: &str) -> Option<i64> {
    chrono::DateTime::parse_from_rfc3339(time)
        .ok()
        .map(|t| t.timestamp_millis())
}

/// An OCSF Detection Finding, borrowing from the alert.
#[derive(Serialize)]
struct Ocsf<'a> {
    activity_id: u8,
    activity_name: &'static str,
    category_uid: u8,
    category_name: &'static str,
    class_uid: u16,
    class_name: &'static str,
    type_uid: u32,
    type_name: &'static str,
    severity_id: u8,
    severity: &'static str,
    status_id: u8,
    status: &'static str,
    time: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    start_time: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    end_time: Option<i64>,
    count: u64,
    message: &'a str,
    metadata: Metadata<'a>,
    finding_info: FindingInfo<'a>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    resources: Vec<Resource<'a>>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    evidences: Vec<Evidence<'a>>,
    unmapped: Unmapped<'a>,
}

#[derive(Serialize)]
struct Metadata<'a> {
    version: &'static str,
    uid: &'a str,
    product: Product,
    #[serde(skip_serializing_if = "Option::is_none")]
    original_time: Option<&'a str>,
    log_name: &'a str,
}

#[derive(Serialize)]
struct Product {
    name: &'static str,
    vendor_name: &'static str,
    version: &'static str,
}

#[derive(Serialize)]
struct FindingInfo<'a> {
    uid: &'a str,
    title: &'a str,
    analytic: Analytic<'a>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    attacks: Vec<Attack<'a>>,
    types: &'a [String],
    #[serde(skip_serializing_if = "Option::is_none")]
    first_seen_time: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    last_seen_time: Option<i64>,
    data_sources: [&'a str; 1],
}

#[derive(Serialize)]
struct Analytic<'a> {
    uid: &'a str,
    name: &'a str,
    type_id: u8,
    #[serde(rename = "type")]
    kind: &'static str,
    desc: &'a str,
}

#[derive(Serialize)]
struct Attack<'a> {
    technique: Technique<'a>,
    version: &'static str,
}

#[derive(Serialize)]
struct Technique<'a> {
    uid: &'a str,
}

#[derive(Serialize)]
struct Resource<'a> {
    uid: &'a str,
    #[serde(rename = "type")]
    kind: &'static str,
}

#[derive(Serialize)]
struct Evidence<'a> {
    data: &'a RawValue,
}

#[derive(Serialize)]
struct Unmapped<'a> {
    actor: Option<&'a str>,
    actors: &'a [String],
    critical_processes: &'a [String],
    rule_level: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    group: Option<&'a serde_json::Map<String, serde_json::Value>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    window: Option<&'a WindowEvidence>,
    source: &'a crate::alert::EventSource,
}

impl<'a> Ocsf<'a> {
    fn of(alert: &'a Alert) -> Ocsf<'a> {
        let first = alert.event_time.first.as_deref().and_then(epoch_ms);
        let last = alert.event_time.last.as_deref().and_then(epoch_ms);
        Ocsf {
            activity_id: 1,
            activity_name: "Create",
            category_uid: 2,
            category_name: "Findings",
            class_uid: 2004,
            class_name: "Detection Finding",
            type_uid: 200_401,
            type_name: "Detection Finding: Create",
            severity_id: severity_id(alert.severity),
            severity: severity_name(alert.severity),
            status_id: 1,
            status: "New",
            time: epoch_ms(&alert.detected_at),
            start_time: first,
            end_time: last,
            count: alert.count,
            message: &alert.rule.title,
            metadata: Metadata {
                version: "1.3.0",
                uid: &alert.id,
                product: Product {
                    name: "vagt",
                    vendor_name: "vagt",
                    version: env!("CARGO_PKG_VERSION"),
                },
                original_time: alert.event_time.last.as_deref(),
                log_name: &alert.source.input,
            },
            finding_info: FindingInfo {
                uid: &alert.id,
                title: &alert.rule.title,
                analytic: Analytic {
                    uid: &alert.rule.id,
                    name: &alert.rule.title,
                    type_id: 1,
                    kind: "Rule",
                    desc: &alert.rule.source,
                },
                attacks: alert
                    .rule
                    .attack_techniques
                    .iter()
                    .map(|t| Attack {
                        technique: Technique { uid: t },
                        version: "v15",
                    })
                    .collect(),
                types: &alert.rule.tags,
                first_seen_time: first,
                last_seen_time: last,
                data_sources: [&alert.source.input],
            },
            resources: alert
                .assets
                .iter()
                .map(|a| Resource {
                    uid: a,
                    kind: "Asset",
                })
                .collect(),
            evidences: alert
                .event
                .as_deref()
                .map(|data| Evidence { data })
                .into_iter()
                .collect(),
            unmapped: Unmapped {
                actor: alert.actor.as_deref(),
                actors: &alert.actors,
                critical_processes: &alert.critical_processes,
                rule_level: alert.rule.level.as_str(),
                group: alert.group.as_ref(),
                window: alert.evidence.as_ref(),
                source: &alert.source,
            },
        }
    }
}
