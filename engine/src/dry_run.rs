//! `vagt routes test`: the delivery stage's decisions for alerts read from
//! a file, sending nothing. Each alert goes through what a run does
//! ([`crate::delivery::decide`]): the catalog's TLP and response guidance,
//! routes, the TLP against each output's audience, and suppression, whose
//! clock is the alert's own detection time, so a file of alerts replays
//! its repeats as they happened. At the end, the follow-ups the open
//! groups would report.

use serde::Serialize;

use crate::alert::{Alert, AlertFacts};
use crate::config::RunConfig;
use crate::delivery::{decide, DeliveryPolicy, Verdict};
use crate::pipeline::PipelineError;
use crate::sinks::config::OutputConfig;

/// Where one alert of a dry run goes.
#[derive(Debug, Serialize)]
pub struct RouteTest {
    /// The alert's id.
    pub id: String,
    /// Its TLP after routing.
    pub tlp: String,
    /// The routes it takes.
    pub routes: Vec<String>,
    /// The outputs it is routed to, and what each does with it.
    pub outputs: Vec<RouteTarget>,
}

/// What one output does with an alert.
#[derive(Debug, Serialize)]
pub struct RouteTarget {
    /// The output's name.
    pub output: String,
    /// `send`, `held` (a repeat, counted in a follow-up), `refused` (its
    /// TLP excludes the output's audience) or `dead_letter` (no target).
    pub verdict: &'static str,
    /// The file, topic, URL or address.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub target: Option<String>,
    /// Why it is refused or becomes a dead letter.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// Repeats reported by the follow-up sent before it (it ends a
    /// suppression group).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub follow_up: Option<u64>,
}

/// A follow-up the end of the alerts would report.
#[derive(Debug, Serialize)]
pub struct FollowUpTest {
    /// The output.
    pub output: String,
    /// The first alert of its group.
    pub of: String,
    /// Repeats it reports.
    pub suppressed: u64,
}

/// The delivery decisions of a config, over alerts one at a time.
pub struct DryRun {
    policy: DeliveryPolicy,
    outputs: Vec<OutputConfig>,
}

impl std::fmt::Debug for DryRun {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DryRun")
            .field("version", &self.policy.version)
            .field("outputs", &self.outputs.len())
            .finish()
    }
}

impl DryRun {
    /// Loads the config's catalog, outputs, routes and warning settings.
    ///
    /// # Errors
    /// They are invalid.
    pub fn new(config: &RunConfig) -> Result<DryRun, PipelineError> {
        let outputs = config.alert_outputs();
        // A dry run runs no version: it has no name.
        let (_, policy) = crate::pipeline::load_policy(config, &outputs, String::new())?;
        Ok(DryRun { policy, outputs })
    }

    /// What delivery would do with the alert in `line` (vagt's alert JSON).
    ///
    /// # Errors
    /// The line is not an alert.
    pub fn test(&mut self, line: &str) -> Result<RouteTest, String> {
        let mut alert: Alert = serde_json::from_str(line).map_err(|e| e.to_string())?;
        let now = chrono::DateTime::parse_from_rfc3339(&alert.detected_at)
            .map_err(|e| format!("detected_at: {e}"))?
            .timestamp_millis();
        let now_text = alert.detected_at.clone();
        self.policy.warning.prepare(&mut alert);
        let DeliveryPolicy {
            routes, warning, ..
        } = &mut self.policy;
        let decision = decide(routes, warning, &mut alert, now, &now_text);
        let facts = AlertFacts::of(&alert);
        let outputs = decision
            .outputs
            .into_iter()
            .map(|(o, verdict)| {
                let output = &self.outputs[o];
                let target = output.target(&facts);
                let mut t = RouteTarget {
                    output: output.name.clone(),
                    verdict: "send",
                    target: target.as_ref().ok().cloned(),
                    reason: None,
                    follow_up: None,
                };
                match verdict {
                    Verdict::Refused(audience) => {
                        t.verdict = "refused";
                        t.reason = Some(format!(
                            "{} excludes its audience ({})",
                            decision.tlp,
                            audience.as_str()
                        ));
                    }
                    Verdict::Held => t.verdict = "held",
                    Verdict::Send(follow_up) => {
                        t.follow_up = follow_up.and_then(|f| f.suppression.map(|s| s.suppressed));
                        if let Err(why) = target {
                            t.verdict = "dead_letter";
                            t.reason = Some(why);
                        }
                    }
                }
                t
            })
            .collect();
        Ok(RouteTest {
            id: alert.id.clone(),
            tlp: decision.tlp.to_string(),
            routes: decision.routes.iter().map(|r| r.to_string()).collect(),
            outputs,
        })
    }

    /// The follow-ups the open suppression groups would report at the end.
    pub fn finish(&mut self) -> Vec<FollowUpTest> {
        let now = crate::alert::now_rfc3339();
        self.policy
            .warning
            .suppressor
            .flush(&now)
            .into_iter()
            .filter_map(|(o, alert)| {
                let report = alert.suppression?;
                Some(FollowUpTest {
                    output: self.outputs[o].name.clone(),
                    of: report.of,
                    suppressed: report.suppressed,
                })
            })
            .collect()
    }
}
