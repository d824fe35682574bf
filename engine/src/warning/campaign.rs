//! Sector campaigns: the coordinating role of the sector unit. When the
//! same rule (or ATT&CK technique) fires at `min_organisations` or more
//! distinct organisations within `window` (event time), vagt raises one
//! sector alert naming them (by pseudonym where configured) to outputs of
//! its own. It is raised once per window: further organisations joining
//! within it do not raise another.
//!
//! The sector alert carries the rule, the organisations, how many alerts
//! and when, and no event, asset or source: its TLP is the campaign's own
//! (`tlp`, default GREEN), not its contributors'.

use std::collections::{BTreeMap, HashMap};

use serde::{Deserialize, Serialize};
use vagt_connectors::ConfigDuration;
use vagt_rules::Level;

use super::pseudonym::Pseudonymiser;
use super::suppress::event_millis;
use super::tlp::Tlp;
use crate::alert::{alert_id, Alert, EventSource, EventTime};

/// What makes alerts at several organisations one campaign.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CampaignKey {
    /// The same rule (default).
    #[default]
    Rule,
    /// The same ATT&CK technique, whichever rule.
    Technique,
}

/// `campaigns:` in the config.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CampaignConfig {
    /// `rule` (default) or `technique`.
    #[serde(default)]
    pub by: CampaignKey,
    /// Distinct organisations that make a campaign (default 3).
    #[serde(default = "default_min")]
    pub min_organisations: usize,
    /// Within how long, in event time (default `24h`).
    #[serde(default = "default_window")]
    pub window: ConfigDuration,
    /// Where sector alerts go (output names).
    pub outputs: Vec<String>,
    /// Name the organisations by pseudonym (needs `pseudonyms`).
    #[serde(default)]
    pub pseudonymise: bool,
    /// The sector alert's TLP (default GREEN).
    #[serde(default = "default_tlp")]
    pub tlp: Tlp,
}

fn default_min() -> usize {
    3
}
fn default_window() -> ConfigDuration {
    ConfigDuration::from_secs(24 * 3600)
}
fn default_tlp() -> Tlp {
    Tlp::Green
}

/// What a sector alert says of its campaign.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct CampaignReport {
    /// `rule:ID` or `technique:T1110`.
    pub key: String,
    /// The organisations (pseudonyms where configured), sorted.
    pub organisations: Vec<String>,
    /// Whether they are pseudonyms.
    pub pseudonymised: bool,
    /// Alerts behind it.
    pub alerts: u64,
    /// The window (`24h`).
    pub window: String,
}

/// What is known of one key's alerts within the window.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct Track {
    /// By organisation.
    seen: BTreeMap<String, Seen>,
    /// No second sector alert before this event time (ms).
    raised_until: Option<i64>,
}

/// One organisation's alerts of a key within the window.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize)]
struct Seen {
    /// Event time (ms) of its latest alert.
    last: i64,
    /// Its alerts.
    alerts: u64,
}

/// Campaign detection over the alert stream.
#[derive(Debug)]
pub struct Campaigns {
    config: CampaignConfig,
    /// Output indices.
    pub outputs: Vec<usize>,
    pseudonyms: Option<Pseudonymiser>,
    tracks: HashMap<String, Track>,
}

impl Campaigns {
    /// Campaign detection sending to `outputs` (indices).
    pub fn new(
        config: CampaignConfig,
        outputs: Vec<usize>,
        pseudonyms: Option<Pseudonymiser>,
    ) -> Campaigns {
        Campaigns {
            config,
            outputs,
            pseudonyms,
            tracks: HashMap::new(),
        }
    }

    /// Takes an alert in; the sector alerts it completes.
    pub fn observe(&mut self, alert: &Alert, now: i64, now_text: &str) -> Vec<Alert> {
        let Some(actor) = alert.actor.as_deref() else {
            return Vec::new();
        };
        // Follow-ups and sector alerts are not new sightings.
        if alert.suppression.is_some() || alert.campaign.is_some() {
            return Vec::new();
        }
        let at = event_millis(alert).unwrap_or(now);
        let window = self.config.window.millis();
        let keys: Vec<String> = match self.config.by {
            CampaignKey::Rule => vec![format!("rule:{}", alert.rule.id)],
            CampaignKey::Technique => alert
                .rule
                .attack_techniques
                .iter()
                .map(|t| format!("technique:{}", t.to_ascii_uppercase()))
                .collect(),
        };
        let mut raised = Vec::new();
        for key in keys {
            let track = self.tracks.entry(key.clone()).or_default();
            let since = at.saturating_sub(window);
            track.seen.retain(|_, seen| seen.last >= since);
            let seen = track.seen.entry(actor.to_string()).or_insert(Seen {
                last: at,
                alerts: 0,
            });
            seen.last = seen.last.max(at);
            seen.alerts += 1;
            if track.raised_until.is_some_and(|until| at < until) {
                continue;
            }
            if track.seen.len() < self.config.min_organisations {
                continue;
            }
            track.raised_until = Some(at.saturating_add(window));
            let track = track.clone();
            raised.push(self.sector_alert(&key, &track, alert, now_text));
        }
        raised
    }

    fn sector_alert(&self, key: &str, track: &Track, alert: &Alert, now_text: &str) -> Alert {
        let mut organisations: Vec<String> = track
            .seen
            .keys()
            .map(|a| match &self.pseudonyms {
                Some(p) if self.config.pseudonymise => p.name("org", a),
                _ => a.clone(),
            })
            .collect();
        organisations.sort();
        let first = track
            .seen
            .values()
            .map(|s| s.last)
            .min()
            .unwrap_or_default();
        let last = track
            .seen
            .values()
            .map(|s| s.last)
            .max()
            .unwrap_or_default();
        let alerts: u64 = track.seen.values().map(|s| s.alerts).sum();
        let time = |ms: i64| vagt_rules::window::format_millis(ms);
        let mut group = serde_json::Map::new();
        group.insert(
            "campaign".into(),
            serde_json::Value::String(key.to_string()),
        );
        let mut rule = alert.rule.clone();
        if self.config.by == CampaignKey::Technique {
            rule.title = format!("Sector campaign: {}", &key["technique:".len()..]);
        } else {
            rule.title = format!("Sector campaign: {}", rule.title);
        }
        Alert {
            id: alert_id(&format!("campaign|{key}"), &first.to_string()),
            rule,
            severity: alert.severity.max(Level::High),
            tlp: Some(self.config.tlp),
            actor: None,
            actors: organisations.clone(),
            critical_processes: Vec::new(),
            assets: Vec::new(),
            response: Vec::new(),
            event_time: EventTime {
                first: Some(time(first)),
                last: Some(time(last)),
            },
            detected_at: now_text.to_string(),
            group: Some(group),
            count: alerts,
            source: EventSource {
                input: "campaign".into(),
                line: 0,
                offset: 0,
            },
            event: None,
            evidence: None,
            retrospective: false,
            indicator: None,
            suppression: None,
            campaign: Some(CampaignReport {
                key: key.to_string(),
                organisations,
                pseudonymised: self.config.pseudonymise && self.pseudonyms.is_some(),
                alerts,
                window: self.config.window.to_string(),
            }),
        }
    }

    /// Takes over another's tracks (a reload).
    pub fn adopt(&mut self, other: &mut Campaigns) {
        self.tracks = std::mem::take(&mut other.tracks);
    }

    /// The tracks, for the state file.
    pub fn snapshot(&self) -> serde_json::Value {
        serde_json::to_value(&self.tracks).expect("campaign state JSON")
    }

    /// Restores the tracks from a state file.
    ///
    /// # Errors
    /// They cannot be read.
    pub fn restore(&mut self, saved: serde_json::Value) -> Result<(), String> {
        self.tracks = serde_json::from_value(saved).map_err(|e| format!("campaign tracks: {e}"))?;
        Ok(())
    }
}
