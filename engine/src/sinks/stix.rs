//! Alerts as STIX 2.1 objects, for sector sharing over TAXII.
//!
//! Each alert becomes:
//! - the rule as an `indicator` (`pattern_type: sigma`, the rule's YAML as
//!   its pattern);
//! - a `sighting` of it: `count`, `first_seen`/`last_seen`,
//!   `where_sighted_refs` to the organisation's `identity` (for a sector
//!   campaign, every organisation's), `created_by_ref` the sending
//!   organisation, `object_marking_refs` the alert's TLP;
//! - those `identity` objects and the TLP 2.0 `marking-definition`.
//!
//! Ids are UUIDv5 of what they stand for (the rule id, the organisation,
//! the alert id) and versions are event times, so sending the same alert
//! again yields the same objects and a TAXII server keeps one copy. A
//! follow-up of suppressed repeats is a new version of its first alert's
//! sighting, with the group's count and last time.
//!
//! Where `pseudonymise` is set, organisation, host and user names become
//! keyed hashes ([`crate::warning::pseudonym`]). The raw event travels
//! only when `include_events` is set and the alert is TLP:AMBER or more
//! restrictive: never at CLEAR or GREEN.

use std::collections::HashMap;

use serde_json::{json, Value};
use uuid::Uuid;

use crate::alert::Alert;
use crate::warning::pseudonym::Pseudonymiser;
use crate::warning::suppress::find_field;
use crate::warning::tlp::Tlp;

/// vagt's namespace for UUIDv5 STIX ids.
const NAMESPACE: Uuid = Uuid::from_u128(0x5a7e_0c1d_9f2b_4e3a_8d6c_1b0a_7f4e_2d91);

/// The version timestamp of vagt's indicators and identities: they
/// change only with their content's id.
const FIXED_TIME: &str = "2026-01-01T00:00:00.000Z";

/// The TLP 2.0 extension definition OASIS publishes for the markings.
const TLP_EXTENSION: &str = "extension-definition--60a3c5c5-0d10-413e-aab3-9e08dde9e88d";

/// Event fields holding user names.
const USER_FIELDS: [&str; 5] = [
    "TargetUserName",
    "SubjectUserName",
    "User",
    "user.name",
    "UserName",
];

/// Builds the STIX objects of alerts.
#[derive(Debug)]
pub(crate) struct StixEncoder {
    /// The sending organisation.
    producer: String,
    pseudonyms: Option<Pseudonymiser>,
    include_events: bool,
    host_fields: Vec<String>,
    /// Rule texts by `file:line`, read once.
    rules: HashMap<String, Option<String>>,
}

/// A STIX id of `kind` for `what`.
pub(crate) fn stix_id(kind: &str, what: &str) -> String {
    format!(
        "{kind}--{}",
        Uuid::new_v5(&NAMESPACE, format!("{kind}:{what}").as_bytes())
    )
}

impl StixEncoder {
    pub fn new(
        producer: String,
        pseudonyms: Option<Pseudonymiser>,
        include_events: bool,
        host_fields: Vec<String>,
    ) -> StixEncoder {
        StixEncoder {
            producer,
            pseudonyms,
            include_events,
            host_fields,
            rules: HashMap::new(),
        }
    }

    fn name(&self, kind: &str, value: &str) -> String {
        match &self.pseudonyms {
            Some(p) => p.name(kind, value),
            None => value.to_string(),
        }
    }

    /// The objects of one alert, as a JSON array.
    pub fn encode(&mut self, alert: &Alert, out: &mut Vec<u8>) {
        serde_json::to_writer(&mut *out, &self.objects(alert)).expect("STIX JSON");
    }

    /// The objects of one alert.
    pub fn objects(&mut self, alert: &Alert) -> Vec<Value> {
        let tlp = alert.tlp.unwrap_or(Tlp::Amber);
        let producer = identity(&self.producer, &self.producer);
        let producer_id = producer["id"].clone();
        // A campaign's organisations are already named as it should.
        let organisations: Vec<String> = match &alert.campaign {
            Some(c) => c.organisations.clone(),
            None => alert.actor.iter().map(|a| self.name("org", a)).collect(),
        };
        let identities: Vec<Value> = organisations.iter().map(|o| identity(o, o)).collect();
        // A hit of a feed's STIX indicator is a sighting of that
        // indicator, reported back; any other alert sights its rule.
        let feed_indicator = alert
            .indicator
            .as_ref()
            .map(|i| i.origin.as_str())
            .filter(|origin| origin.starts_with("indicator--"));
        let indicator = match feed_indicator {
            Some(id) => json!({ "id": id }),
            None => self.indicator(alert),
        };
        let sighting = self.sighting(alert, tlp, &indicator, &producer_id, &identities);
        let mut objects = vec![marking(tlp), producer];
        if feed_indicator.is_none() {
            objects.push(indicator);
        }
        objects.extend(identities);
        objects.push(sighting);
        objects
    }

    fn indicator(&mut self, alert: &Alert) -> Value {
        let rule = &alert.rule;
        let pattern = self.rule_text(&rule.source).unwrap_or_else(|| {
            // The file is gone: the rule's identity, as Sigma YAML.
            format!(
                "title: {}\nid: {}\nlevel: {}\n",
                yaml_text(&rule.title),
                rule.id,
                rule.level.as_str()
            )
        });
        let kill_chain: Vec<Value> = rule
            .attack_techniques
            .iter()
            .map(|t| json!({"kill_chain_name": "mitre-attack", "phase_name": t.to_lowercase()}))
            .collect();
        let mut indicator = json!({
            "type": "indicator",
            "spec_version": "2.1",
            "id": stix_id("indicator", &rule.id),
            "created": FIXED_TIME,
            "modified": FIXED_TIME,
            "name": rule.title,
            "indicator_types": ["malicious-activity"],
            "pattern": pattern,
            "pattern_type": "sigma",
            "valid_from": FIXED_TIME,
            "labels": rule.tags,
        });
        if !kill_chain.is_empty() {
            indicator["kill_chain_phases"] = Value::from(kill_chain);
        }
        indicator
    }

    fn sighting(
        &self,
        alert: &Alert,
        tlp: Tlp,
        indicator: &Value,
        producer: &Value,
        identities: &[Value],
    ) -> Value {
        // A follow-up is a new version of its first alert's sighting.
        let (of, count, first, last) = match &alert.suppression {
            Some(s) => (
                s.of.as_str(),
                s.total,
                s.since.clone().or_else(|| s.first.clone()),
                s.last.clone(),
            ),
            None => (
                alert.id.as_str(),
                match &alert.campaign {
                    Some(c) => c.alerts,
                    None => 1,
                },
                alert.event_time.first.clone(),
                alert.event_time.last.clone(),
            ),
        };
        let first = stix_time(first.as_deref().unwrap_or(&alert.detected_at));
        let last = stix_time(last.as_deref().unwrap_or(&alert.detected_at));
        let mut sighting = json!({
            "type": "sighting",
            "spec_version": "2.1",
            "id": stix_id("sighting", of),
            "created": first,
            "modified": last,
            "created_by_ref": producer,
            "sighting_of_ref": indicator["id"],
            "where_sighted_refs": identities.iter().map(|i| i["id"].clone()).collect::<Vec<_>>(),
            "count": count,
            "first_seen": first,
            "last_seen": last,
            "description": alert.rule.title,
            "object_marking_refs": [tlp.stix_marking_id()],
            "x_vagt_alert_id": of,
            "x_vagt_severity": alert.severity.as_str(),
            "x_vagt_critical_processes": alert.critical_processes,
        });
        let event: Option<Value> = alert
            .event
            .as_ref()
            .and_then(|e| serde_json::from_str(e.get()).ok());
        if let Some(event) = &event {
            let hosts = self.names(event, "host", self.host_fields.iter().map(String::as_str));
            if !hosts.is_empty() {
                sighting["x_vagt_hosts"] = Value::from(hosts);
            }
            let users = self.names(event, "user", USER_FIELDS);
            if !users.is_empty() {
                sighting["x_vagt_users"] = Value::from(users);
            }
            if self.include_events && tlp >= Tlp::Amber {
                sighting["x_vagt_event"] = event.clone();
            }
        }
        sighting
    }

    /// The values of the first of `fields` in an event, pseudonymised.
    fn names<'f>(
        &self,
        event: &Value,
        kind: &str,
        fields: impl IntoIterator<Item = &'f str>,
    ) -> Vec<String> {
        let mut out: Vec<String> = Vec::new();
        for f in fields {
            if let Some(v) = find_field(event, f).and_then(Value::as_str) {
                let name = self.name(kind, v);
                if !out.contains(&name) {
                    out.push(name);
                }
            }
        }
        out
    }

    /// The rule's YAML document from its `file:line`, cached.
    fn rule_text(&mut self, source: &str) -> Option<String> {
        self.rules
            .entry(source.to_string())
            .or_insert_with(|| read_rule(source))
            .clone()
    }
}

/// Reads the YAML document starting at `file:line`.
fn read_rule(source: &str) -> Option<String> {
    let (file, line) = source.rsplit_once(':')?;
    let line: usize = line.parse().ok()?;
    let text = std::fs::read_to_string(file).ok()?;
    let mut doc = String::new();
    for l in text.lines().skip(line.saturating_sub(1)) {
        if l.trim_end() == "---" && !doc.is_empty() {
            break;
        }
        if l.trim_end() == "---" {
            continue;
        }
        doc.push_str(l);
        doc.push('\n');
    }
    (!doc.trim().is_empty()).then_some(doc)
}

fn yaml_text(text: &str) -> String {
    serde_json::to_string(text).expect("a JSON string is a YAML string")
}

fn identity(key: &str, name: &str) -> Value {
    json!({
        "type": "identity",
        "spec_version": "2.1",
        "id": stix_id("identity", key),
        "created": FIXED_TIME,
        "modified": FIXED_TIME,
        "name": name,
        "identity_class": "organization",
        "sectors": ["healthcare"],
    })
}

/// The TLP 2.0 marking definition, as OASIS publishes it.
pub(crate) fn marking(tlp: Tlp) -> Value {
    let level = tlp.label()["TLP:".len()..].to_lowercase();
    json!({
        "type": "marking-definition",
        "spec_version": "2.1",
        "id": tlp.stix_marking_id(),
        "created": "2022-10-01T00:00:00.000Z",
        "name": tlp.label(),
        "extensions": {
            TLP_EXTENSION: {"extension_type": "property-extension", "tlp_2_0": level}
        }
    })
}

/// An RFC 3339 time as STIX writes it: UTC, milliseconds, `Z`.
fn stix_time(text: &str) -> String {
    chrono::DateTime::parse_from_rfc3339(text)
        .map(|t| {
            t.with_timezone(&chrono::Utc)
                .to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
        })
        .unwrap_or_else(|_| FIXED_TIME.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_uuid_v5_of_what_they_stand_for() {
        let a = stix_id("sighting", "alert-1");
        assert_eq!(a, stix_id("sighting", "alert-1"));
        assert_ne!(a, stix_id("sighting", "alert-2"));
        assert!(a.starts_with("sighting--") && a.len() == "sighting--".len() + 36);
        let uuid = Uuid::parse_str(&a["sighting--".len()..]).unwrap();
        assert_eq!(uuid.get_version_num(), 5);
    }

    #[test]
    fn a_rule_document_is_read_from_its_line() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("r.yml");
        std::fs::write(
            &path,
            "title: a\nid: 1\n---\ntitle: b\nid: 2\n---\ntitle: c\n",
        )
        .unwrap();
        let text = read_rule(&format!("{}:4", path.display())).unwrap();
        assert_eq!(text, "title: b\nid: 2\n");
        assert_eq!(read_rule("/nonexistent:1"), None);
    }

    #[test]
    fn times_are_utc_milliseconds() {
        assert_eq!(
            stix_time("2026-03-02T11:00:00+01:00"),
            "2026-03-02T10:00:00.000Z"
        );
    }
}
