//! Suppression: the first alert of a kind goes out at once; its repeats
//! within a window are held back and counted, and a follow-up alert says
//! how many there were and when the first and last happened. Nothing is
//! dropped silently: every held-back alert is in a follow-up's count, in
//! `vagt_output_suppressed_total` and in the summary.
//!
//! Suppression is decided per output, so a pager can be quiet while an
//! archive file gets every alert. For each (alert, output) the spec is the
//! first of: the output's `suppress`, the `suppress` of the first route
//! it took to that output that has one, the first matching
//! `suppression.policies` entry, and for windowed (correlation) rules
//! `suppression.correlation` (by actor and group-by values over 1 h,
//! unless set otherwise).
//!
//! A group is one rule and the `by` values, within one output and scope.
//! Its window starts at the event time of its first alert; an alert of
//! the group whose event time is past the window starts a new group (it
//! goes out at once, after the old group's follow-up). A group whose
//! window has passed on the wall clock as well is closed by a timer, with
//! its follow-up. At the end of a run, repeats not yet reported get a
//! follow-up (`closed: false`) and the group is kept, in the state file
//! when there is one: a restart in the middle of a spray sends no second
//! first alert, and the follow-ups add up.

use std::collections::HashMap;
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use vagt_connectors::ConfigDuration;

use crate::alert::{alert_id, Alert, AlertFacts};
use crate::routes::{self, Condition, RouteMatch};

/// `suppress:` of an output, a route or a policy.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SuppressSpec {
    /// What makes two alerts of one rule the same: `actor`, `host`,
    /// `group` (every group-by value), `group.FIELD`, `event.FIELD`,
    /// `assets`, `processes`. The rule is always part of it.
    #[serde(default)]
    pub by: Vec<String>,
    /// How long repeats are held back after the first (`10m`, `1h`).
    pub window: ConfigDuration,
}

/// A `suppression.policies` entry: a spec for the alerts it matches.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SuppressPolicy {
    /// Shown in follow-ups (`scope: policy:NAME`) and errors.
    pub name: String,
    /// Which alerts (as a route's `match`; every alert if absent).
    #[serde(default, rename = "match")]
    pub when: Option<RouteMatch>,
    /// What counts as a repeat.
    #[serde(default)]
    pub by: Vec<String>,
    /// How long repeats are held back.
    pub window: ConfigDuration,
}

/// The `suppression:` section.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SuppressionConfig {
    /// For windowed (correlation) rules without another spec (default: by
    /// `actor` and `group` over `1h`; `window: 0s` turns it off).
    #[serde(default = "default_correlation")]
    pub correlation: SuppressSpec,
    /// Specs for the alerts they match, tried in order.
    #[serde(default)]
    pub policies: Vec<SuppressPolicy>,
}

impl Default for SuppressionConfig {
    fn default() -> Self {
        SuppressionConfig {
            correlation: default_correlation(),
            policies: Vec::new(),
        }
    }
}

fn default_correlation() -> SuppressSpec {
    SuppressSpec {
        by: vec!["actor".into(), "group".into()],
        window: ConfigDuration::from_secs(3600),
    }
}

/// One part of a group's key.
#[derive(Debug, Clone, PartialEq)]
enum KeyPart {
    Actor,
    Host,
    Group,
    GroupField(String),
    EventField(String),
    Assets,
    Processes,
}

impl KeyPart {
    fn parse(text: &str) -> Result<KeyPart, String> {
        Ok(match text {
            "rule" => return Err("the rule is always part of the key; leave `rule` out".into()),
            "actor" => KeyPart::Actor,
            "host" => KeyPart::Host,
            "group" => KeyPart::Group,
            "assets" => KeyPart::Assets,
            "processes" => KeyPart::Processes,
            _ => {
                if let Some(field) = text.strip_prefix("group.").filter(|f| !f.is_empty()) {
                    KeyPart::GroupField(field.to_string())
                } else if let Some(field) = text.strip_prefix("event.").filter(|f| !f.is_empty()) {
                    KeyPart::EventField(field.to_string())
                } else {
                    return Err(format!(
                        "'{text}' is not a key: actor, host, group, group.FIELD, event.FIELD, assets, processes"
                    ));
                }
            }
        })
    }
}

/// A compiled spec.
#[derive(Debug, Clone)]
pub struct Spec {
    /// `output:NAME`, `route:NAME`, `policy:NAME` or `correlation`.
    scope: String,
    parts: Vec<(String, KeyPart)>,
    window: ConfigDuration,
}

impl Spec {
    /// Compiles `by` and `window` for `scope`: None for a zero window
    /// (suppression off).
    ///
    /// # Errors
    /// An unknown key part.
    fn compile(
        scope: String,
        by: &[String],
        window: ConfigDuration,
    ) -> Result<Option<Spec>, String> {
        let mut parts = Vec::with_capacity(by.len());
        for b in by {
            parts.push((
                b.clone(),
                KeyPart::parse(b).map_err(|e| format!("by: {e}"))?,
            ));
        }
        if window.is_zero() {
            return Ok(None);
        }
        Ok(Some(Spec {
            scope,
            parts,
            window,
        }))
    }

    /// The group key of an alert: its rule and the `by` values.
    fn key(&self, alert: &Alert, host_fields: &[String]) -> Map<String, Value> {
        let mut key = Map::new();
        key.insert("rule".into(), Value::String(alert.rule.id.clone()));
        let reads_event = self
            .parts
            .iter()
            .any(|(_, p)| matches!(p, KeyPart::Host | KeyPart::EventField(_)));
        let event: Option<Value> = alert
            .event
            .as_ref()
            .filter(|_| reads_event)
            .and_then(|e| serde_json::from_str(e.get()).ok());
        for (name, part) in &self.parts {
            let value = match part {
                KeyPart::Actor => alert.actor.clone().map_or(Value::Null, Value::String),
                KeyPart::Host => event
                    .as_ref()
                    .and_then(|e| host_fields.iter().find_map(|f| find_field(e, f)))
                    .cloned()
                    .unwrap_or(Value::Null),
                KeyPart::Group => alert.group.clone().map_or(Value::Null, Value::Object),
                KeyPart::GroupField(f) => alert
                    .group
                    .as_ref()
                    .and_then(|g| g.get(f))
                    .cloned()
                    .unwrap_or(Value::Null),
                KeyPart::EventField(f) => event
                    .as_ref()
                    .and_then(|e| find_field(e, f))
                    .cloned()
                    .unwrap_or(Value::Null),
                KeyPart::Assets => sorted(&alert.assets),
                KeyPart::Processes => sorted(&alert.critical_processes),
            };
            key.insert(name.clone(), value);
        }
        key
    }
}

fn sorted(items: &[String]) -> Value {
    let mut items = items.to_vec();
    items.sort();
    Value::from(items)
}

/// The `suppress` specs of outputs or routes, by index; `setting` names
/// them in errors (`outputs[2].suppress`).
fn named_specs(
    kind: &str,
    setting: &str,
    items: &[(String, Option<SuppressSpec>)],
) -> Result<Vec<Option<Spec>>, (String, String)> {
    items
        .iter()
        .enumerate()
        .map(|(i, (name, spec))| match spec {
            Some(s) => Spec::compile(format!("{kind}:{name}"), &s.by, s.window)
                .map_err(|m| (format!("{setting}[{i}].suppress"), format!("({name}): {m}"))),
            None => Ok(None),
        })
        .collect()
}

/// A field of an event: by its dotted path, else the first field of that
/// name at any depth (a nested Windows event's `Computer`).
pub fn find_field<'v>(event: &'v Value, name: &str) -> Option<&'v Value> {
    let mut at = event;
    let mut found = true;
    for step in name.split('.') {
        match at.get(step) {
            Some(next) => at = next,
            None => {
                found = false;
                break;
            }
        }
    }
    if found && !at.is_null() {
        return Some(at);
    }
    fn search<'v>(value: &'v Value, name: &str, depth: usize) -> Option<&'v Value> {
        if depth > 8 {
            return None;
        }
        let object = value.as_object()?;
        if let Some(v) = object.get(name).filter(|v| !v.is_null()) {
            return Some(v);
        }
        object.values().find_map(|v| search(v, name, depth + 1))
    }
    search(event, name, 0)
}

/// Where the suppression of an (alert, output) comes from.
#[derive(Debug)]
pub struct SuppressionPlan {
    /// By output index.
    outputs: Vec<Option<Spec>>,
    /// By route index.
    routes: Vec<Option<Spec>>,
    policies: Vec<(Vec<Condition>, Spec)>,
    correlation: Option<Spec>,
}

impl SuppressionPlan {
    /// Compiles the specs of the config.
    ///
    /// # Errors
    /// `(setting, message)` for the first bad spec.
    pub fn compile(
        config: &SuppressionConfig,
        outputs: &[(String, Option<SuppressSpec>)],
        routes: &[(String, Option<SuppressSpec>)],
        catalog: &crate::catalog::Catalog,
    ) -> Result<SuppressionPlan, (String, String)> {
        let mut plan = SuppressionPlan {
            outputs: named_specs("output", "outputs", outputs)?,
            routes: named_specs("route", "routes", routes)?,
            policies: Vec::new(),
            correlation: Spec::compile(
                "correlation".into(),
                &config.correlation.by,
                config.correlation.window,
            )
            .map_err(|m| ("suppression.correlation".to_string(), m))?,
        };
        for (i, policy) in config.policies.iter().enumerate() {
            let at = |key: &str| format!("suppression.policies[{i}]{key}");
            if policy.name.trim().is_empty() {
                return Err((at(".name"), "name is empty".into()));
            }
            let conditions = match &policy.when {
                Some(when) => routes::conditions(when, catalog).map_err(|(key, m)| {
                    (
                        at(&format!(".match.{key}")),
                        format!("({}): {m}", policy.name),
                    )
                })?,
                None => Vec::new(),
            };
            let spec = Spec::compile(format!("policy:{}", policy.name), &policy.by, policy.window)
                .map_err(|m| (at(""), format!("({}): {m}", policy.name)))?;
            if let Some(spec) = spec {
                plan.policies.push((conditions, spec));
            }
        }
        Ok(plan)
    }

    /// The spec for an alert at output `output`, reached by the routes
    /// `taken` (indices, in order, with their outputs).
    pub fn spec_for<'p>(
        &'p self,
        output: usize,
        taken: &[(usize, &[usize])],
        global: Option<&'p Spec>,
    ) -> Option<&'p Spec> {
        if let Some(spec) = self.outputs.get(output).and_then(Option::as_ref) {
            return Some(spec);
        }
        for (route, outputs) in taken {
            if outputs.contains(&output) {
                if let Some(spec) = self.routes.get(*route).and_then(Option::as_ref) {
                    return Some(spec);
                }
            }
        }
        global
    }

    /// The spec from the policies or the correlation default, the same
    /// for every output; `windowed` for an alert of a windowed rule.
    pub fn global(&self, alert: &AlertFacts<'_>, windowed: bool) -> Option<&Spec> {
        self.policies
            .iter()
            .find(|(conditions, _)| conditions.iter().all(|c| c.holds(alert)))
            .map(|(_, spec)| spec)
            .or(self.correlation.as_ref().filter(|_| windowed))
    }
}

/// What a follow-up says of the repeats it reports.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct SuppressionReport {
    /// The id of the alert that went out first.
    pub of: String,
    /// `output:NAME`, `route:NAME`, `policy:NAME` or `correlation`.
    pub scope: String,
    /// The rule and the `by` values.
    pub key: Map<String, Value>,
    /// Event time of the first alert of the group.
    pub since: Option<String>,
    /// Repeats held back since the last report.
    pub suppressed: u64,
    /// Events behind those repeats.
    pub events: u64,
    /// Alerts of the group so far, the first included.
    pub total: u64,
    /// Event time of the first repeat reported.
    pub first: Option<String>,
    /// Event time of the last repeat reported.
    pub last: Option<String>,
    /// The window (`1h`).
    pub window: String,
    /// Whether the group's window is over (false: a run ended within it,
    /// and further repeats may follow).
    pub closed: bool,
}

/// An open group.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Group {
    /// The first alert, without its event and evidence.
    first: Alert,
    scope: String,
    key: Map<String, Value>,
    window: ConfigDurationText,
    /// Event time (ms) the window started at.
    start: i64,
    /// Wall time (ms) the group opened at.
    opened: i64,
    total: u64,
    unreported: u64,
    unreported_events: u64,
    first_seen: Option<String>,
    last_seen: Option<String>,
    reports: u32,
}

/// A duration kept in the state file as text.
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
#[serde(into = "String", try_from = "String")]
struct ConfigDurationText(ConfigDuration);

impl From<ConfigDurationText> for String {
    fn from(d: ConfigDurationText) -> String {
        d.0.to_string()
    }
}

impl TryFrom<String> for ConfigDurationText {
    type Error = String;
    fn try_from(s: String) -> Result<Self, String> {
        s.parse().map(ConfigDurationText).map_err(|e| e.to_string())
    }
}

impl Group {
    fn end(&self) -> i64 {
        self.start.saturating_add(self.window.0.millis())
    }

    /// The follow-up reporting the repeats since the last report.
    fn follow_up(&mut self, closed: bool, now: &str) -> Option<Alert> {
        if self.unreported == 0 {
            return None;
        }
        self.reports += 1;
        let mut alert = self.first.clone();
        alert.id = alert_id(
            &format!("{}|follow-up|{}", self.first.id, self.scope),
            &self.reports.to_string(),
        );
        alert.detected_at = now.to_string();
        alert.event_time.first.clone_from(&self.first_seen);
        alert.event_time.last.clone_from(&self.last_seen);
        alert.count = self.unreported_events;
        alert.suppression = Some(SuppressionReport {
            of: self.first.id.clone(),
            scope: self.scope.clone(),
            key: self.key.clone(),
            since: self.first.event_time.first.clone(),
            suppressed: self.unreported,
            events: self.unreported_events,
            total: self.total,
            first: self.first_seen.take(),
            last: self.last_seen.take(),
            window: self.window.0.to_string(),
            closed,
        });
        self.unreported = 0;
        self.unreported_events = 0;
        Some(alert)
    }
}

/// What to do with an alert at one output.
#[derive(Debug)]
pub enum Offer {
    /// Send it; first the follow-up of the group it ends, if any.
    Send(Option<Box<Alert>>),
    /// A repeat: held back and counted.
    Held,
}

/// The open groups of every output.
#[derive(Debug, Default)]
pub struct Suppressor {
    groups: HashMap<(usize, String), Group>,
    /// Event fields naming the host (the catalog's), for `by: [host]`.
    host_fields: Vec<String>,
}

/// One group in the state file.
#[derive(Debug, Serialize, Deserialize)]
struct SavedGroup {
    output: String,
    id: String,
    group: Group,
}

impl Suppressor {
    /// No open groups; `host_fields` name the host in events.
    pub fn new(host_fields: Vec<String>) -> Suppressor {
        Suppressor {
            groups: HashMap::new(),
            host_fields,
        }
    }

    /// Offers an alert to output `output` under `spec`; `now` is the wall
    /// time in ms and `now_text` as RFC 3339.
    pub fn offer(
        &mut self,
        output: usize,
        spec: &Spec,
        alert: &Alert,
        now: i64,
        now_text: &str,
    ) -> Offer {
        let key = spec.key(alert, &self.host_fields);
        let id = format!(
            "{}|{}",
            spec.scope,
            serde_json::to_string(&key).expect("key JSON")
        );
        let at = event_millis(alert).unwrap_or(now);
        let mut ended = None;
        if let Some(group) = self.groups.get_mut(&(output, id.clone())) {
            if at < group.end() && at >= group.start {
                group.total += 1;
                group.unreported += 1;
                group.unreported_events += alert.count;
                if group.first_seen.is_none() {
                    group.first_seen.clone_from(&alert.event_time.first);
                }
                group.last_seen.clone_from(&alert.event_time.last);
                return Offer::Held;
            }
            ended = group.follow_up(true, now_text).map(Box::new);
        }
        let mut first = alert.clone();
        first.event = None;
        first.evidence = None;
        self.groups.insert(
            (output, id),
            Group {
                first,
                scope: spec.scope.clone(),
                key,
                window: ConfigDurationText(spec.window),
                start: at,
                opened: now,
                total: 1,
                unreported: 0,
                unreported_events: 0,
                first_seen: None,
                last_seen: None,
                reports: 0,
            },
        );
        Offer::Send(ended)
    }

    /// Takes over another suppressor's open groups (a reload):
    /// `moved[o]` is the new index of old output `o`. The groups of an
    /// output the new version no longer has close: their follow-ups are
    /// returned, by old index, to be sent before that output stops.
    pub fn adopt(
        &mut self,
        other: Suppressor,
        moved: &[Option<usize>],
        now_text: &str,
    ) -> Vec<(usize, Alert)> {
        let mut closing = Vec::new();
        for ((output, id), mut group) in other.groups {
            match moved.get(output).copied().flatten() {
                Some(index) => {
                    self.groups.insert((index, id), group);
                }
                None => closing.extend(group.follow_up(true, now_text).map(|a| (output, a))),
            }
        }
        sort_follow_ups(&mut closing);
        closing
    }

    /// Closes the groups whose window has passed on the wall clock too:
    /// their follow-ups, by output.
    pub fn due(&mut self, now: i64, now_text: &str) -> Vec<(usize, Alert)> {
        let mut out = Vec::new();
        self.groups.retain(|(output, _), group| {
            if now < group.opened.saturating_add(group.window.0.millis()) {
                return true;
            }
            out.extend(group.follow_up(true, now_text).map(|a| (*output, a)));
            false
        });
        sort_follow_ups(&mut out);
        out
    }

    /// At the end of a run: a follow-up for every group with repeats not
    /// yet reported; the groups stay open.
    pub fn flush(&mut self, now_text: &str) -> Vec<(usize, Alert)> {
        let mut out: Vec<(usize, Alert)> = self
            .groups
            .iter_mut()
            .filter_map(|((output, _), g)| g.follow_up(false, now_text).map(|a| (*output, a)))
            .collect();
        sort_follow_ups(&mut out);
        out
    }

    /// The open groups, for the state file; outputs by name.
    pub fn snapshot(&self, outputs: &[Arc<str>]) -> Value {
        let saved: Vec<SavedGroup> = self
            .groups
            .iter()
            .map(|((output, id), group)| SavedGroup {
                output: outputs[*output].to_string(),
                id: id.clone(),
                group: group.clone(),
            })
            .collect();
        serde_json::to_value(saved).expect("suppression state JSON")
    }

    /// Restores groups from a state file; those of outputs no longer
    /// configured are dropped (returned count).
    ///
    /// # Errors
    /// The saved groups cannot be read.
    pub fn restore(&mut self, saved: Value, outputs: &[Arc<str>]) -> Result<usize, String> {
        let saved: Vec<SavedGroup> =
            serde_json::from_value(saved).map_err(|e| format!("suppression groups: {e}"))?;
        let mut dropped = 0;
        for s in saved {
            match outputs.iter().position(|o| **o == *s.output) {
                Some(index) => {
                    self.groups.insert((index, s.id), s.group);
                }
                None => dropped += 1,
            }
        }
        Ok(dropped)
    }

    /// Whether no group is open.
    pub fn is_empty(&self) -> bool {
        self.groups.is_empty()
    }
}

/// Follow-ups in a stable order: by output, then event time.
fn sort_follow_ups(items: &mut [(usize, Alert)]) {
    items.sort_by(|a, b| {
        (a.0, &a.1.event_time.last, &a.1.id).cmp(&(b.0, &b.1.event_time.last, &b.1.id))
    });
}

/// An alert's (last) event time in ms, if it has one that parses.
pub fn event_millis(alert: &Alert) -> Option<i64> {
    let text = alert.event_time.last.as_deref()?;
    chrono::DateTime::parse_from_rfc3339(text)
        .ok()
        .map(|t| t.timestamp_millis())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_parts_parse_and_refuse_unknown_ones() {
        assert_eq!(
            KeyPart::parse("group.IpAddress").unwrap(),
            KeyPart::GroupField("IpAddress".into())
        );
        assert!(KeyPart::parse("colour").unwrap_err().contains("not a key"));
        assert!(KeyPart::parse("rule").is_err());
        assert!(KeyPart::parse("event.").is_err());
    }

    #[test]
    fn fields_are_found_by_path_or_by_name_at_any_depth() {
        let event: Value = serde_json::json!({
            "Event": {"System": {"Computer": "HN-LAB-01"}},
            "host": {"name": "x"}
        });
        assert_eq!(
            find_field(&event, "Computer"),
            Some(&Value::from("HN-LAB-01"))
        );
        assert_eq!(find_field(&event, "host.name"), Some(&Value::from("x")));
        assert_eq!(find_field(&event, "missing"), None);
    }
}
