//! The report's figures for one period, counted from alerts: every count
//! keeps the organisations behind it, so that an edition can hide a
//! figure that fewer than three organisations make up.
//!
//! Definitions (see `docs/report.md`):
//! - an *incident* is an alert of severity high or critical with a
//!   critical process at risk;
//! - a *near-miss* is any other alert with a critical process at risk;
//! - the *time to detect* is from the first event behind an alert to its
//!   detection; alerts a retro-hunt found are counted apart.

use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, NaiveDate, Utc};
use serde::Serialize;
use vagt_rules::Level;

use crate::alert::Alert;
use crate::catalog::Catalog;

/// Alerts and the organisations they concern.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Count {
    pub alerts: u64,
    pub organisations: BTreeSet<String>,
}

impl Count {
    fn add(&mut self, actor: &str) {
        self.alerts += 1;
        self.organisations.insert(actor.to_string());
    }
}

/// Upper bounds of the time-to-detect buckets, in seconds (the last is
/// open).
pub const DETECT_BUCKETS: [u64; 5] = [1, 10, 60, 600, 3600];

/// What the detections of one period say.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Figures {
    pub alerts: Count,
    pub incidents: Count,
    pub near_misses: Count,
    /// Found later by retro-hunts.
    pub retrospective: u64,
    /// By ATT&CK tactic (`execution`, `credential-access`, ...).
    pub by_tactic: BTreeMap<String, Count>,
    /// By ATT&CK technique (`T1059.001`).
    pub by_technique: BTreeMap<String, Count>,
    /// The tactics each technique was seen under.
    pub technique_tactics: BTreeMap<String, BTreeSet<String>>,
    /// By critical process (its id).
    pub by_process: BTreeMap<String, Count>,
    /// Incidents by critical process.
    pub incidents_by_process: BTreeMap<String, Count>,
    /// By kind of organisation (`hospital`, ...; `unknown`).
    pub by_kind: BTreeMap<String, Count>,
    /// By organisation.
    pub by_actor: BTreeMap<String, Count>,
    /// By rule title.
    pub by_rule: BTreeMap<String, Count>,
    /// Warnings sent, by TLP label.
    pub by_tlp: BTreeMap<String, Count>,
    /// Alerts detected within each of [`DETECT_BUCKETS`], and beyond.
    pub time_to_detect: [Count; 6],
    /// Median and 95th percentile of the time to detect, seconds.
    pub detect_median: Option<f64>,
    pub detect_p95: Option<f64>,
    /// Inputs the alerts came from, with their organisations.
    pub sources: BTreeMap<String, Count>,
}

/// The organisation an alert counts for.
fn actor_of(alert: &Alert) -> &str {
    alert.actor.as_deref().unwrap_or("unknown")
}

/// When an alert's events happened (else when it was detected), as a day.
pub fn day_of(alert: &Alert) -> Option<NaiveDate> {
    let when = alert
        .event_time
        .first
        .as_deref()
        .unwrap_or(&alert.detected_at);
    parse_time(when).map(|t| t.date_naive())
}

fn parse_time(text: &str) -> Option<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(text)
        .ok()
        .map(|t| t.with_timezone(&Utc))
}

/// ATT&CK tactics named by a rule's tags (`attack.credential-access`,
/// `attack.credential_access`).
pub fn tactics_of(tags: &[String]) -> Vec<String> {
    tags.iter()
        .filter_map(|t| t.strip_prefix("attack."))
        .map(|t| t.replace('_', "-"))
        .filter(|t| TACTICS.iter().any(|(id, _, _)| id == t))
        .collect()
}

/// The ATT&CK Enterprise tactics, in kill-chain order: id, English and
/// Danish name.
pub const TACTICS: [(&str, &str, &str); 14] = [
    ("reconnaissance", "Reconnaissance", "Rekognoscering"),
    (
        "resource-development",
        "Resource development",
        "Ressourceudvikling",
    ),
    ("initial-access", "Initial access", "Første adgang"),
    ("execution", "Execution", "Afvikling"),
    ("persistence", "Persistence", "Fodfæste"),
    (
        "privilege-escalation",
        "Privilege escalation",
        "Rettighedsudvidelse",
    ),
    (
        "defense-evasion",
        "Defence evasion",
        "Undvigelse af forsvar",
    ),
    (
        "credential-access",
        "Credential access",
        "Adgang til legitimationer",
    ),
    ("discovery", "Discovery", "Udforskning"),
    ("lateral-movement", "Lateral movement", "Lateral bevægelse"),
    ("collection", "Collection", "Indsamling"),
    ("command-and-control", "Command and control", "Fjernstyring"),
    ("exfiltration", "Exfiltration", "Dataudtræk"),
    ("impact", "Impact", "Påvirkning"),
];

/// Whether an alert puts a critical process at risk (of the catalog's
/// processes with criticality critical or high).
fn process_at_risk(alert: &Alert) -> bool {
    !alert.critical_processes.is_empty()
}

/// Counts `alerts` (already those of the period and edition).
pub fn count(alerts: &[&Alert], catalog: &Catalog) -> Figures {
    let mut f = Figures::default();
    let mut delays: Vec<f64> = Vec::new();
    for alert in alerts {
        let actor = actor_of(alert);
        f.alerts.add(actor);
        if alert.retrospective {
            f.retrospective += 1;
        }
        let incident = process_at_risk(alert) && alert.severity >= Level::High;
        if incident {
            f.incidents.add(actor);
        } else if process_at_risk(alert) {
            f.near_misses.add(actor);
        }
        let tactics = tactics_of(&alert.rule.tags);
        for tactic in &tactics {
            f.by_tactic.entry(tactic.clone()).or_default().add(actor);
        }
        for technique in &alert.rule.attack_techniques {
            f.by_technique
                .entry(technique.clone())
                .or_default()
                .add(actor);
            f.technique_tactics
                .entry(technique.clone())
                .or_default()
                .extend(tactics.iter().cloned());
        }
        for process in &alert.critical_processes {
            f.by_process.entry(process.clone()).or_default().add(actor);
            if incident {
                f.incidents_by_process
                    .entry(process.clone())
                    .or_default()
                    .add(actor);
            }
        }
        let kind = catalog
            .actor(actor)
            .map(|a| kind_name(a.kind).to_string())
            .unwrap_or_else(|| "unknown".into());
        f.by_kind.entry(kind).or_default().add(actor);
        f.by_actor.entry(actor.to_string()).or_default().add(actor);
        f.by_rule
            .entry(alert.rule.title.clone())
            .or_default()
            .add(actor);
        let tlp = alert.tlp.map_or("none".to_string(), tlp_name);
        f.by_tlp.entry(tlp).or_default().add(actor);
        f.sources
            .entry(alert.source.input.clone())
            .or_default()
            .add(actor);
        if !alert.retrospective {
            let first = alert.event_time.first.as_deref().and_then(parse_time);
            if let (Some(first), Some(detected)) = (first, parse_time(&alert.detected_at)) {
                let seconds = (detected - first).num_milliseconds().max(0) as f64 / 1000.0;
                let bucket = DETECT_BUCKETS
                    .iter()
                    .position(|b| seconds <= *b as f64)
                    .unwrap_or(DETECT_BUCKETS.len());
                f.time_to_detect[bucket].add(actor);
                delays.push(seconds);
            }
        }
    }
    delays.sort_by(f64::total_cmp);
    f.detect_median = percentile(&delays, 0.5);
    f.detect_p95 = percentile(&delays, 0.95);
    f
}

/// The value below which `share` of the sorted `values` lie (nearest
/// rank).
fn percentile(values: &[f64], share: f64) -> Option<f64> {
    if values.is_empty() {
        return None;
    }
    let rank = ((share * values.len() as f64).ceil() as usize).clamp(1, values.len());
    Some(values[rank - 1])
}

/// A TLP label in lower case without its prefix: `amber+strict`.
pub fn tlp_name(tlp: crate::warning::tlp::Tlp) -> String {
    tlp.label().trim_start_matches("TLP:").to_ascii_lowercase()
}

/// The catalog's name of a kind of organisation.
pub fn kind_name(kind: crate::catalog::ActorKind) -> &'static str {
    use crate::catalog::ActorKind;
    match kind {
        ActorKind::Region => "region",
        ActorKind::Hospital => "hospital",
        ActorKind::Municipality => "municipality",
        ActorKind::GpClinic => "gp_clinic",
        ActorKind::Supplier => "supplier",
    }
}

/// The five steps of the national threat scale, lowest first.
pub const LEVELS: [(&str, &str); 5] = [
    ("ingen", "none"),
    ("lav", "low"),
    ("middel", "medium"),
    ("høj", "high"),
    ("meget høj", "very high"),
];

/// The threat level (an index into [`LEVELS`]) that `incidents` and
/// `near_misses` of one category give:
/// - very high: incidents at three or more organisations;
/// - high: an incident;
/// - medium: near-misses at two or more organisations, or three or more;
/// - low: a near-miss, or any detection;
/// - none: nothing detected.
pub fn threat_level(incidents: &Count, near_misses: &Count, detections: u64) -> usize {
    if incidents.organisations.len() >= 3 {
        4
    } else if incidents.alerts > 0 {
        3
    } else if near_misses.organisations.len() >= 2 || near_misses.alerts >= 3 {
        2
    } else if near_misses.alerts > 0 || detections > 0 {
        1
    } else {
        0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tactics_are_read_from_tags_in_both_spellings() {
        let tags: Vec<String> = [
            "attack.execution",
            "attack.t1059.001",
            "attack.credential_access",
            "attack.g0032",
            "cve.2021-1",
        ]
        .map(String::from)
        .to_vec();
        assert_eq!(tactics_of(&tags), ["execution", "credential-access"]);
    }

    #[test]
    fn levels_follow_the_documented_steps() {
        let orgs = |n: usize, alerts: u64| Count {
            alerts,
            organisations: (0..n).map(|i| format!("o{i}")).collect(),
        };
        assert_eq!(threat_level(&orgs(3, 3), &orgs(0, 0), 3), 4);
        assert_eq!(threat_level(&orgs(1, 1), &orgs(0, 0), 1), 3);
        assert_eq!(threat_level(&orgs(0, 0), &orgs(2, 2), 2), 2);
        assert_eq!(threat_level(&orgs(0, 0), &orgs(1, 1), 1), 1);
        assert_eq!(threat_level(&orgs(0, 0), &orgs(0, 0), 5), 1);
        assert_eq!(threat_level(&orgs(0, 0), &orgs(0, 0), 0), 0);
        assert_eq!(percentile(&[1.0, 2.0, 3.0, 4.0], 0.5), Some(2.0));
        assert_eq!(percentile(&[1.0, 2.0, 3.0, 4.0], 0.95), Some(4.0));
    }
}
