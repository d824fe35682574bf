//! The windowed-rule runtime: state per rule and group key, advanced over
//! event time.
//!
//! Observations (a detection rule's match feeding a window) wait in a
//! reorder buffer until the watermark — the latest event time seen minus
//! the allowed lateness — passes them, and are then applied in event-time
//! order (ties broken by the event's content hash). The set of alerts
//! therefore depends only on the set of events, not on batch sizes or on
//! the arrival order within the allowed lateness. An observation older
//! than the watermark is late: it is refused (the caller reports it), not
//! merged. Conditions with a lower bound fire on the event that completes
//! them; those that can only be decided when a window ends (`lt`, `lte`,
//! `neq`, a baseline `below`, an absence) fire when the watermark passes
//! the window's end.
//!
//! State is bounded: at most `max_keys` groups over all rules (the least
//! recently updated is evicted and counted), `max_values_per_key` distinct
//! values per group, `max_evidence` evidence items per group, and
//! `max_pending` observations waiting for the watermark (beyond it the
//! oldest is applied early and counted). The whole state serialises into
//! a [`WindowSnapshot`] that a restarted runtime resumes from.

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::sync::Arc;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};

use super::plan::{FieldSource, WindowPlan};
use super::spec::{Direction, Millis, Range, WindowKind};

/// Group-by values, in the rule's `group-by` order (`None`: field absent).
pub type GroupKey = Vec<Option<String>>;

/// Bounds and timing of the runtime.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct WindowLimits {
    /// How far behind the latest event time an event may arrive and still
    /// be applied in order.
    pub allowed_lateness: Millis,
    /// Group keys held over all rules.
    pub max_keys: usize,
    /// Distinct values remembered per group (`value_count`,
    /// `value_percentile`, `first_seen`).
    pub max_values_per_key: usize,
    /// Evidence items kept per group and put in an alert.
    pub max_evidence: usize,
    /// Observations waiting for the watermark.
    pub max_pending: usize,
}

impl Default for WindowLimits {
    fn default() -> Self {
        WindowLimits {
            allowed_lateness: 5_000,
            max_keys: 100_000,
            max_values_per_key: 10_000,
            max_evidence: 10,
            max_pending: 100_000,
        }
    }
}

/// One input to a windowed rule: an event (or a chained alert) with the
/// values the rule reads.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Observation<E> {
    /// Event time.
    pub time: Millis,
    /// Order among equal times: a hash of the event's content.
    pub tie: u64,
    /// The windowed rule.
    pub window: usize,
    /// Which of its referenced rules matched.
    pub slot: usize,
    /// Group-by values, in the rule's `group-by` order; values after them
    /// (e.g. the organisation) keep groups apart without being shown.
    pub group: GroupKey,
    /// Value-field values.
    pub values: Vec<Option<String>>,
    /// What to show as evidence (the event, or a chained alert's evidence).
    pub evidence: Vec<E>,
}

/// An alert of a windowed rule.
#[derive(Debug, Clone, PartialEq)]
pub struct WindowAlert<E> {
    /// The windowed rule.
    pub window: usize,
    /// Group-by field names and values.
    pub group: Vec<(String, Option<String>)>,
    /// Earliest contributing event time.
    pub first: Millis,
    /// Latest contributing event time (the event that completed it).
    pub last: Millis,
    /// Events in the window.
    pub count: u64,
    /// The measured value (count, distinct values, sum, average, percent,
    /// bucket value, silence in ms).
    pub value: f64,
    /// Type-specific facts (distinct values, baseline median, new value).
    pub detail: Map<String, Value>,
    /// Contributing events, the most recent last, at most `max_evidence`.
    pub evidence: Vec<E>,
}

/// Counters of the runtime, for metrics and summaries.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct WindowStats {
    /// Observations refused as late.
    pub late: u64,
    /// Group keys evicted to respect `max_keys`.
    pub evicted_keys: u64,
    /// Distinct values forgotten to respect `max_values_per_key`.
    pub evicted_values: u64,
    /// Observations applied before the watermark passed them, to respect
    /// `max_pending`.
    pub forced: u64,
}

/// An observation refused because it is older than the watermark.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Late {
    /// The watermark it fell behind.
    pub watermark: Millis,
}

/// (time, tie, window, reversed slot, sequence): the order of application.
/// A later slot of the same event goes first, so that one event never
/// completes two steps of an ordered sequence.
type PendingKey = (Millis, u64, usize, usize, u64);
type Timer = (Millis, usize, GroupKey);

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Entry {
    time: Millis,
    value: Option<String>,
    number: f64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
enum KindState {
    Sliding {
        entries: VecDeque<Entry>,
        distinct: HashMap<String, u32>,
        sum: f64,
        opened: Option<Millis>,
    },
    Temporal {
        latest: Vec<Option<Millis>>,
        times: VecDeque<Millis>,
    },
    Ordered {
        starts: Vec<Option<Millis>>,
        times: VecDeque<Millis>,
    },
    Baseline {
        history: VecDeque<f64>,
        bucket: Option<i64>,
        open: bool,
        value: f64,
        events: u64,
        fired: bool,
    },
    FirstSeen {
        values: HashMap<String, Millis>,
    },
    Absence {
        last_seen: Millis,
        silent: bool,
    },
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct GroupState<E> {
    touch: u64,
    evidence: VecDeque<(Millis, E)>,
    kind: KindState,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(bound(serialize = "E: Serialize", deserialize = "E: DeserializeOwned"))]
struct RuleState<E> {
    #[serde(with = "as_pairs")]
    groups: HashMap<GroupKey, GroupState<E>>,
    learning_until: Option<Millis>,
    evicted: u64,
}

impl<E> Default for RuleState<E> {
    fn default() -> Self {
        RuleState {
            groups: HashMap::new(),
            learning_until: None,
            evicted: 0,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(bound(serialize = "E: Serialize", deserialize = "E: DeserializeOwned"))]
struct State<E> {
    max_seen: Option<Millis>,
    released: Option<Millis>,
    seq: u64,
    #[serde(with = "as_pairs")]
    pending: BTreeMap<PendingKey, Observation<E>>,
    rules: Vec<RuleState<E>>,
    timers: BTreeSet<Timer>,
    #[serde(with = "as_pairs")]
    lru: BTreeMap<u64, (usize, GroupKey)>,
    stats: WindowStats,
}

/// The serialisable state of a runtime, tagged with the rules it belongs to.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(bound(serialize = "E: Serialize", deserialize = "E: DeserializeOwned"))]
pub struct WindowSnapshot<E> {
    rule_keys: Vec<String>,
    state: State<E>,
}

/// What a restore kept and dropped.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RestoreReport {
    /// Rules whose state was restored.
    pub rules: usize,
    /// Rules in the snapshot that are no longer loaded (or changed); their
    /// state was dropped.
    pub dropped_rules: usize,
    /// Observations still waiting for the watermark.
    pub pending: usize,
}

/// The windowed-rule runtime over one stream of observations.
#[derive(Debug)]
pub struct WindowRuntime<E> {
    plan: Arc<WindowPlan>,
    limits: WindowLimits,
    state: State<E>,
}

struct Fire {
    first: Millis,
    last: Millis,
    /// When it was decided (the completing event's time, or the end of the
    /// window): chained rules see the alert at this time, which keeps
    /// them in event-time order.
    decided_at: Millis,
    count: u64,
    value: f64,
    detail: Map<String, Value>,
    reset: bool,
}

impl<E: Clone + Serialize + DeserializeOwned> WindowRuntime<E> {
    /// A runtime with empty state.
    pub fn new(plan: Arc<WindowPlan>, limits: WindowLimits) -> Self {
        let rules = (0..plan.rules.len())
            .map(|_| RuleState::default())
            .collect();
        WindowRuntime {
            plan,
            limits: WindowLimits {
                max_keys: limits.max_keys.max(1),
                max_pending: limits.max_pending.max(1),
                max_values_per_key: limits.max_values_per_key.max(1),
                ..limits
            },
            state: State {
                max_seen: None,
                released: None,
                seq: 0,
                pending: BTreeMap::new(),
                rules,
                timers: BTreeSet::new(),
                lru: BTreeMap::new(),
                stats: WindowStats::default(),
            },
        }
    }

    /// The plan it runs.
    pub fn plan(&self) -> &WindowPlan {
        &self.plan
    }

    /// Counters so far.
    pub fn stats(&self) -> WindowStats {
        self.state.stats
    }

    /// Group keys held, per rule.
    pub fn keys_per_rule(&self) -> Vec<usize> {
        self.state.rules.iter().map(|r| r.groups.len()).collect()
    }

    /// Keys evicted so far, per rule.
    pub fn evictions_per_rule(&self) -> Vec<u64> {
        self.state.rules.iter().map(|r| r.evicted).collect()
    }

    /// Observations waiting for the watermark.
    pub fn pending(&self) -> usize {
        self.state.pending.len()
    }

    /// The watermark: events older than this are late.
    pub fn watermark(&self) -> Option<Millis> {
        let wm = self
            .state
            .max_seen?
            .saturating_sub(self.limits.allowed_lateness);
        Some(self.state.released.map_or(wm, |r| r.max(wm)))
    }

    /// Accepts an observation, or refuses it as late. Nothing is applied
    /// until [`release`](Self::release).
    pub fn ingest(&mut self, obs: Observation<E>) -> Result<(), Late> {
        if let Some(watermark) = self.watermark().filter(|wm| obs.time < *wm) {
            self.state.stats.late += 1;
            return Err(Late { watermark });
        }
        self.state.max_seen = Some(self.state.max_seen.map_or(obs.time, |m| m.max(obs.time)));
        self.state.seq += 1;
        let key = (
            obs.time,
            obs.tie,
            obs.window,
            usize::MAX - obs.slot,
            self.state.seq,
        );
        self.state.pending.insert(key, obs);
        Ok(())
    }

    /// Applies every observation the watermark has passed, in event-time
    /// order, and fires the windows that ended before it.
    pub fn release(&mut self, out: &mut Vec<WindowAlert<E>>) {
        while self.state.pending.len() > self.limits.max_pending {
            let (_, obs) = self.state.pending.pop_first().expect("non-empty");
            self.state.stats.forced += 1;
            self.apply(obs, out);
        }
        let Some(watermark) = self.watermark() else {
            return;
        };
        self.release_until(watermark, out);
    }

    /// End of input, or an idle input: applies everything still waiting
    /// (as if the allowed lateness had passed) and fires windows that ended
    /// before the last event. Windows still open stay open (in the
    /// snapshot, should the stream continue); an event older than the last
    /// one applied is late from now on.
    pub fn finish(&mut self, out: &mut Vec<WindowAlert<E>>) {
        if let Some(max_seen) = self.state.max_seen {
            self.release_until(max_seen, out);
        }
    }

    fn release_until(&mut self, limit: Millis, out: &mut Vec<WindowAlert<E>>) {
        while let Some(entry) = self.state.pending.first_entry() {
            if entry.key().0 > limit {
                break;
            }
            let obs = entry.remove();
            self.apply(obs, out);
        }
        self.fire_timers(limit, out);
    }

    fn apply(&mut self, obs: Observation<E>, out: &mut Vec<WindowAlert<E>>) {
        // Windows that ended before this event are decided first.
        self.fire_timers(obs.time, out);
        self.state.released = Some(self.state.released.map_or(obs.time, |r| r.max(obs.time)));
        self.process(obs, out);
    }

    /// Fires timers due strictly before `limit`.
    fn fire_timers(&mut self, limit: Millis, out: &mut Vec<WindowAlert<E>>) {
        while let Some(first) = self.state.timers.first() {
            if first.0 >= limit {
                break;
            }
            let (due, window, key) = self.state.timers.pop_first().expect("non-empty");
            if let Some(fire) = self.on_timer(due, window, &key) {
                let fire = Fire {
                    decided_at: due,
                    ..fire
                };
                self.emit(window, &key, fire, out);
            }
        }
    }

    fn on_timer(&mut self, due: Millis, window: usize, key: &GroupKey) -> Option<Fire> {
        let plan = self.plan.clone();
        let rule = &plan.rules[window].rule;
        let group = self.state.rules[window].groups.get_mut(key)?;
        match (&rule.kind, &mut group.kind) {
            (_, KindState::Sliding { opened, .. }) if *opened == Some(due - rule.timespan) => {
                close_sliding(rule, &mut group.kind, due)
            }
            (_, KindState::Absence { last_seen, silent })
                if !*silent && *last_seen + rule.timespan == due =>
            {
                *silent = true;
                Some(Fire {
                    first: *last_seen,
                    last: *last_seen,
                    count: 0,
                    value: rule.timespan as f64,
                    detail: obj(json!({
                        "silent_since": super::time::format_millis(*last_seen),
                        "limit_seconds": rule.timespan / 1000,
                    })),
                    reset: false,
                    decided_at: due,
                })
            }
            (
                WindowKind::Baseline(spec),
                KindState::Baseline {
                    bucket: Some(b),
                    open: true,
                    ..
                },
            ) if (*b + 1) * spec.bucket == due => close_bucket(spec, &mut group.kind, due),
            _ => None,
        }
    }

    fn process(&mut self, obs: Observation<E>, out: &mut Vec<WindowAlert<E>>) {
        let plan = self.plan.clone();
        let window = obs.window;
        let rule = &plan.rules[window].rule;
        let now = obs.time;
        let limits = self.limits;
        let value_key = (!obs.values.is_empty())
            .then(|| {
                obs.values
                    .iter()
                    .map(|v| v.as_deref())
                    .collect::<Option<Vec<&str>>>()
                    .map(|v| v.join("\u{1f}"))
            })
            .flatten();
        let needs_value = !rule.kind.value_fields().is_empty();
        if needs_value && value_key.is_none() && !matches!(rule.kind, WindowKind::Baseline(_)) {
            return;
        }
        let number = value_key
            .as_deref()
            .and_then(|v| v.trim().parse::<f64>().ok());
        if matches!(
            rule.kind,
            WindowKind::ValueSum { .. } | WindowKind::ValueAvg { .. }
        ) && number.is_none()
        {
            return;
        }
        if let WindowKind::Baseline(spec) = &rule.kind {
            if spec.field.is_some() && number.is_none() {
                return;
            }
        }
        let rule_state = &mut self.state.rules[window];
        if let WindowKind::FirstSeen { learning, .. } = rule.kind {
            rule_state
                .learning_until
                .get_or_insert(now.saturating_add(learning));
        }
        let learning_until = rule_state.learning_until;
        let is_new = !rule_state.groups.contains_key(&obs.group);
        let group = rule_state
            .groups
            .entry(obs.group.clone())
            .or_insert_with(|| GroupState {
                touch: 0,
                evidence: VecDeque::new(),
                kind: initial_state(&rule.kind, rule.rules.len(), now),
            });
        for e in obs.evidence {
            group.evidence.push_back((now, e));
            if group.evidence.len() > limits.max_evidence {
                group.evidence.pop_front();
            }
        }
        let mut timers_add: Vec<Millis> = Vec::new();
        let mut timers_remove: Vec<Millis> = Vec::new();
        let mut evicted_values = 0u64;
        let condition = rule
            .condition
            .unwrap_or_else(|| Range::at_least(rule.rules.len() as f64));
        let fire: Option<Fire> = match (&rule.kind, &mut group.kind) {
            (WindowKind::Absence, KindState::Absence { last_seen, silent }) => {
                if !is_new && !*silent {
                    timers_remove.push(*last_seen + rule.timespan);
                }
                *last_seen = now;
                *silent = false;
                timers_add.push(now + rule.timespan);
                None
            }
            (WindowKind::FirstSeen { .. }, KindState::FirstSeen { values }) => {
                let value = value_key.clone().expect("checked above");
                let new = values.insert(value.clone(), now).is_none();
                if values.len() > limits.max_values_per_key {
                    if let Some(oldest) = values
                        .iter()
                        .min_by_key(|(_, t)| **t)
                        .map(|(v, _)| v.clone())
                    {
                        values.remove(&oldest);
                        evicted_values += 1;
                    }
                }
                (new && learning_until.is_some_and(|until| now >= until)).then(|| Fire {
                    first: now,
                    last: now,
                    count: 1,
                    value: values.len() as f64,
                    detail: obj(json!({ "new_value": value.replace('\u{1f}', " | "), "known_values": values.len() - 1 })),
                    reset: false,
                    decided_at: now,
                })
            }
            (WindowKind::Baseline(spec), state) => {
                let b = now.div_euclid(spec.bucket);
                let mut fire = None;
                if let KindState::Baseline { bucket, open, .. } = state {
                    match *bucket {
                        Some(current) if b > current => {
                            if *open {
                                timers_remove.push((current + 1) * spec.bucket);
                                fire = close_bucket(spec, state, now);
                            }
                            if let KindState::Baseline {
                                history,
                                bucket,
                                open,
                                value,
                                events,
                                fired,
                            } = state
                            {
                                let gap =
                                    (b - bucket.unwrap_or(b) - 1).clamp(0, spec.history as i64);
                                for _ in 0..gap {
                                    push_history(history, 0.0, spec.history);
                                }
                                *bucket = Some(b);
                                *open = true;
                                *value = 0.0;
                                *events = 0;
                                *fired = false;
                            }
                            if spec.direction == Direction::Below {
                                timers_add.push((b + 1) * spec.bucket);
                            }
                        }
                        None => {
                            *bucket = Some(b);
                            *open = true;
                            if spec.direction == Direction::Below {
                                timers_add.push((b + 1) * spec.bucket);
                            }
                        }
                        _ => {}
                    }
                }
                if let KindState::Baseline {
                    history,
                    value,
                    events,
                    fired,
                    ..
                } = state
                {
                    *value += number.unwrap_or(1.0);
                    *events += 1;
                    if fire.is_none()
                        && spec.direction == Direction::Above
                        && !*fired
                        && history.len() >= spec.warmup
                    {
                        let (median, spread) = robust_centre(history);
                        if *value > median + spec.threshold * spread {
                            *fired = true;
                            fire = Some(Fire {
                                first: b * spec.bucket,
                                last: now,
                                count: *events,
                                value: *value,
                                detail: baseline_detail(spec, median, spread, b),
                                reset: false,
                                decided_at: now,
                            });
                        }
                    }
                }
                fire
            }
            (WindowKind::Temporal, KindState::Temporal { latest, times }) => {
                latest[obs.slot] = Some(now);
                times.push_back(now);
                let start = now - rule.timespan;
                while times.front().is_some_and(|t| *t < start) {
                    times.pop_front();
                }
                let present: Vec<Millis> = latest
                    .iter()
                    .flatten()
                    .copied()
                    .filter(|t| *t >= start)
                    .collect();
                let matched = present.len() as f64;
                condition.holds(matched).then(|| Fire {
                    first: present.iter().copied().min().unwrap_or(now),
                    last: now,
                    count: times.len() as u64,
                    value: matched,
                    detail: obj(
                        json!({ "rules_matched": matched as u64, "rules": rule.rules.len() }),
                    ),
                    reset: true,
                    decided_at: now,
                })
            }
            (WindowKind::TemporalOrdered, KindState::Ordered { starts, times }) => {
                let start = now - rule.timespan;
                for s in starts.iter_mut() {
                    if s.is_some_and(|s| s < start) {
                        *s = None;
                    }
                }
                times.push_back(now);
                while times.front().is_some_and(|t| *t < start) {
                    times.pop_front();
                }
                if obs.slot == 0 {
                    starts[0] = Some(now);
                } else if let Some(begun) = starts[obs.slot - 1] {
                    starts[obs.slot] = Some(starts[obs.slot].map_or(begun, |s| s.max(begun)));
                }
                let last_step = starts.len() - 1;
                starts[last_step]
                    .filter(|_| obs.slot == last_step)
                    .map(|begun| Fire {
                        first: begun,
                        last: now,
                        count: times.iter().filter(|t| **t >= begun).count() as u64,
                        value: starts.len() as f64,
                        detail: obj(json!({ "steps": starts.len() })),
                        reset: true,
                        decided_at: now,
                    })
            }
            (_, state @ KindState::Sliding { .. }) => {
                let mut fire = None;
                // A percentile is about the current event's value: it is
                // always decided on the event.
                let decided_on_event = condition.decided_on_event()
                    || matches!(rule.kind, WindowKind::ValuePercentile { .. });
                if !decided_on_event {
                    if let KindState::Sliding {
                        opened: Some(o), ..
                    } = state
                    {
                        if now > *o + rule.timespan {
                            timers_remove.push(*o + rule.timespan);
                            fire = close_sliding(rule, state, now);
                        }
                    }
                }
                if let KindState::Sliding {
                    entries,
                    distinct,
                    sum,
                    opened,
                } = state
                {
                    if !decided_on_event && opened.is_none() {
                        *opened = Some(now);
                        timers_add.push(now + rule.timespan);
                    }
                    // Beyond the bound, a new value is counted as an event
                    // but not remembered.
                    let mut value = value_key.clone();
                    if let Some(v) = &value {
                        if !distinct.contains_key(v) && distinct.len() >= limits.max_values_per_key
                        {
                            evicted_values += 1;
                            value = None;
                        }
                    }
                    if let Some(v) = &value {
                        *distinct.entry(v.clone()).or_insert(0) += 1;
                    }
                    entries.push_back(Entry {
                        time: now,
                        value,
                        number: number.unwrap_or(0.0),
                    });
                    *sum += number.unwrap_or(0.0);
                }
                if decided_on_event {
                    let start = now - rule.timespan;
                    if let KindState::Sliding {
                        entries,
                        distinct,
                        sum,
                        ..
                    } = state
                    {
                        while entries.front().is_some_and(|e| e.time < start) {
                            let gone = entries.pop_front().expect("non-empty");
                            forget(distinct, sum, &gone);
                        }
                    }
                    let (metric, detail) = sliding_metric(&rule.kind, state, value_key.as_deref());
                    if !metric.is_nan() && condition.holds(metric) {
                        if let KindState::Sliding { entries, .. } = state {
                            fire = Some(Fire {
                                first: entries.front().map_or(now, |e| e.time),
                                last: now,
                                count: entries.len() as u64,
                                value: metric,
                                detail,
                                reset: true,
                                decided_at: now,
                            });
                        }
                    }
                }
                fire
            }
            _ => None,
        };
        self.state.stats.evicted_values += evicted_values;
        for due in timers_remove {
            self.state.timers.remove(&(due, window, obs.group.clone()));
        }
        for due in timers_add {
            self.state.timers.insert((due, window, obs.group.clone()));
        }
        self.touch(window, &obs.group);
        if let Some(fire) = fire {
            self.emit(window, &obs.group, fire, out);
        }
    }

    /// Marks a group as just used and evicts the least recently used
    /// groups beyond `max_keys`.
    fn touch(&mut self, window: usize, key: &GroupKey) {
        self.state.seq += 1;
        let seq = self.state.seq;
        let Some(group) = self.state.rules[window].groups.get_mut(key) else {
            return;
        };
        let old = std::mem::replace(&mut group.touch, seq);
        self.state.lru.remove(&old);
        self.state.lru.insert(seq, (window, key.clone()));
        while self.state.lru.len() > self.limits.max_keys {
            let (_, (w, k)) = self.state.lru.pop_first().expect("non-empty");
            if let Some(gone) = self.state.rules[w].groups.remove(&k) {
                let timespan = self.plan.rules[w].rule.timespan;
                let due = match (&self.plan.rules[w].rule.kind, gone.kind) {
                    (
                        _,
                        KindState::Sliding {
                            opened: Some(o), ..
                        },
                    ) => Some(o + timespan),
                    (
                        _,
                        KindState::Absence {
                            last_seen,
                            silent: false,
                        },
                    ) => Some(last_seen + timespan),
                    (
                        WindowKind::Baseline(spec),
                        KindState::Baseline {
                            bucket: Some(b),
                            open: true,
                            ..
                        },
                    ) => Some((b + 1) * spec.bucket),
                    _ => None,
                };
                if let Some(due) = due {
                    self.state.timers.remove(&(due, w, k));
                }
                self.state.rules[w].evicted += 1;
                self.state.stats.evicted_keys += 1;
            }
        }
    }

    fn emit(&mut self, window: usize, key: &GroupKey, fire: Fire, out: &mut Vec<WindowAlert<E>>) {
        let plan = self.plan.clone();
        let planned = &plan.rules[window];
        let Some(group) = self.state.rules[window].groups.get_mut(key) else {
            return;
        };
        // The events in the window; for an absence, the last one seen.
        let evidence: Vec<E> = if fire.count == 0 {
            group
                .evidence
                .back()
                .map(|(_, e)| e.clone())
                .into_iter()
                .collect()
        } else {
            group
                .evidence
                .iter()
                .filter(|(t, _)| *t >= fire.first)
                .map(|(_, e)| e.clone())
                .collect()
        };
        if fire.reset {
            group.evidence.clear();
            group.kind = initial_state(&planned.rule.kind, planned.rule.rules.len(), fire.last);
        }
        let alert = WindowAlert {
            window,
            group: planned
                .rule
                .group_by
                .iter()
                .cloned()
                .zip(key.iter().cloned())
                .collect(),
            first: fire.first,
            last: fire.last,
            count: fire.count,
            value: fire.value,
            detail: fire.detail,
            evidence,
        };
        // Chained rules see the alert as an event at its last time.
        for feed in plan.window_feeds(window) {
            let pick = |sources: &[FieldSource]| -> Vec<Option<String>> {
                sources
                    .iter()
                    .map(|s| match s {
                        FieldSource::ChildGroup(i) => key.get(*i).cloned().flatten(),
                        FieldSource::Columns(_) => None,
                    })
                    .collect()
            };
            // Key parts beyond the group-by fields (the organisation the
            // events came from) carry over to the chained rule.
            let mut group = pick(&feed.group);
            group.extend(key.iter().skip(planned.rule.group_by.len()).cloned());
            let obs = Observation {
                time: fire.decided_at,
                tie: 0,
                window: feed.window,
                slot: feed.slot,
                group,
                values: pick(&feed.values),
                evidence: alert.evidence.clone(),
            };
            self.process(obs, out);
        }
        if planned.emits {
            out.push(alert);
        }
    }

    /// The state, for writing to disk.
    pub fn snapshot(&self) -> WindowSnapshot<E> {
        WindowSnapshot {
            rule_keys: self.plan.rules.iter().map(|r| r.key.clone()).collect(),
            state: self.state.clone(),
        }
    }

    /// Resumes from a snapshot. State of rules that are no longer loaded
    /// (or whose definition changed) is dropped; rules new since the
    /// snapshot start empty.
    pub fn restore(&mut self, snapshot: WindowSnapshot<E>) -> RestoreReport {
        let index: HashMap<&str, usize> = self
            .plan
            .rules
            .iter()
            .enumerate()
            .map(|(i, r)| (r.key.as_str(), i))
            .collect();
        let map: Vec<Option<usize>> = snapshot
            .rule_keys
            .iter()
            .map(|k| index.get(k.as_str()).copied())
            .collect();
        let old = snapshot.state;
        let mut rules: Vec<RuleState<E>> = (0..self.plan.rules.len())
            .map(|_| RuleState::default())
            .collect();
        let mut report = RestoreReport::default();
        for (old_index, state) in old.rules.into_iter().enumerate() {
            match map[old_index] {
                Some(new_index) => {
                    rules[new_index] = state;
                    report.rules += 1;
                }
                None => report.dropped_rules += 1,
            }
        }
        let remap = |w: usize| map.get(w).copied().flatten();
        self.state = State {
            max_seen: old.max_seen,
            released: old.released,
            seq: old.seq,
            pending: old
                .pending
                .into_iter()
                .filter_map(|((t, tie, w, slot, seq), mut obs)| {
                    let w = remap(w)?;
                    obs.window = w;
                    Some(((t, tie, w, slot, seq), obs))
                })
                .collect(),
            rules,
            timers: old
                .timers
                .into_iter()
                .filter_map(|(due, w, key)| Some((due, remap(w)?, key)))
                .collect(),
            lru: old
                .lru
                .into_iter()
                .filter_map(|(seq, (w, key))| Some((seq, (remap(w)?, key))))
                .collect(),
            stats: old.stats,
        };
        report.pending = self.state.pending.len();
        report
    }
}

fn initial_state(kind: &WindowKind, slots: usize, now: Millis) -> KindState {
    match kind {
        WindowKind::Temporal => KindState::Temporal {
            latest: vec![None; slots],
            times: VecDeque::new(),
        },
        WindowKind::TemporalOrdered => KindState::Ordered {
            starts: vec![None; slots],
            times: VecDeque::new(),
        },
        WindowKind::Baseline(_) => KindState::Baseline {
            history: VecDeque::new(),
            bucket: None,
            open: false,
            value: 0.0,
            events: 0,
            fired: false,
        },
        WindowKind::FirstSeen { .. } => KindState::FirstSeen {
            values: HashMap::new(),
        },
        WindowKind::Absence => KindState::Absence {
            last_seen: now,
            silent: false,
        },
        _ => KindState::Sliding {
            entries: VecDeque::new(),
            distinct: HashMap::new(),
            sum: 0.0,
            opened: None,
        },
    }
}

fn forget(distinct: &mut HashMap<String, u32>, sum: &mut f64, gone: &Entry) {
    if let Some(v) = &gone.value {
        if let Some(n) = distinct.get_mut(v) {
            *n -= 1;
            if *n == 0 {
                distinct.remove(v);
            }
        }
    }
    *sum -= gone.number;
}

/// The measured value of a sliding window (and what to tell about it).
fn sliding_metric(
    kind: &WindowKind,
    state: &KindState,
    current: Option<&str>,
) -> (f64, Map<String, Value>) {
    let KindState::Sliding {
        entries,
        distinct,
        sum,
        ..
    } = state
    else {
        return (0.0, Map::new());
    };
    let n = entries.len() as f64;
    match kind {
        WindowKind::ValueCount { .. } => {
            let mut values: Vec<&str> = distinct.keys().map(String::as_str).collect();
            values.sort_unstable();
            values.truncate(20);
            let values: Vec<String> = values.iter().map(|v| v.replace('\u{1f}', " | ")).collect();
            (
                distinct.len() as f64,
                obj(json!({ "distinct_values": values })),
            )
        }
        WindowKind::ValueSum { .. } => (*sum, Map::new()),
        WindowKind::ValueAvg { .. } => (if n > 0.0 { *sum / n } else { 0.0 }, Map::new()),
        WindowKind::ValuePercentile { .. } => {
            // A value beyond `max_values_per_key` is not remembered: its
            // share is unknown, and NaN satisfies no bound.
            let share = current
                .and_then(|v| distinct.get(v))
                .map_or(f64::NAN, |c| 100.0 * *c as f64 / n.max(1.0));
            let value = current.unwrap_or_default().replace('\u{1f}', " | ");
            (
                share,
                obj(json!({ "field_value": value, "percent_of_events": share })),
            )
        }
        _ => (n, Map::new()),
    }
}

/// Decides a window that only closes at its end.
fn close_sliding(
    rule: &super::spec::WindowRule,
    state: &mut KindState,
    decided_at: Millis,
) -> Option<Fire> {
    let condition = rule.condition?;
    let (metric, detail) = sliding_metric(&rule.kind, state, None);
    let KindState::Sliding {
        entries,
        distinct,
        sum,
        opened,
    } = state
    else {
        return None;
    };
    let fire = (condition.holds(metric) && !entries.is_empty()).then(|| Fire {
        first: entries.front().map_or(0, |e| e.time),
        last: entries.back().map_or(0, |e| e.time),
        count: entries.len() as u64,
        value: metric,
        detail,
        reset: true,
        decided_at,
    });
    entries.clear();
    distinct.clear();
    *sum = 0.0;
    *opened = None;
    fire
}

/// Closes a baseline bucket: judges it (direction `below`) and adds it to
/// the history.
fn close_bucket(
    spec: &super::spec::BaselineSpec,
    state: &mut KindState,
    decided_at: Millis,
) -> Option<Fire> {
    let KindState::Baseline {
        history,
        bucket,
        open,
        value,
        events,
        ..
    } = state
    else {
        return None;
    };
    *open = false;
    let b = (*bucket)?;
    let mut fire = None;
    if spec.direction == Direction::Below && history.len() >= spec.warmup {
        let (median, spread) = robust_centre(history);
        if *value < median - spec.threshold * spread {
            fire = Some(Fire {
                first: b * spec.bucket,
                last: (b + 1) * spec.bucket - 1,
                count: *events,
                value: *value,
                detail: baseline_detail(spec, median, spread, b),
                reset: false,
                decided_at,
            });
        }
    }
    push_history(history, *value, spec.history);
    fire
}

fn push_history(history: &mut VecDeque<f64>, value: f64, cap: usize) {
    history.push_back(value);
    while history.len() > cap {
        history.pop_front();
    }
}

fn baseline_detail(
    spec: &super::spec::BaselineSpec,
    median: f64,
    spread: f64,
    bucket: i64,
) -> Map<String, Value> {
    obj(json!({
        "baseline_median": median,
        "baseline_spread": spread,
        "threshold": spec.threshold,
        "bucket_start": super::time::format_millis(bucket * spec.bucket),
    }))
}

/// Median and robust spread (1.4826 · MAD, floored at 5 % of the median
/// and at 1) of the history.
pub fn robust_centre(history: &VecDeque<f64>) -> (f64, f64) {
    let mut values: Vec<f64> = history.iter().copied().collect();
    let median = median_of(&mut values);
    let mut deviations: Vec<f64> = values.iter().map(|v| (v - median).abs()).collect();
    let mad = median_of(&mut deviations);
    (median, (1.4826 * mad).max(0.05 * median.abs()).max(1.0))
}

fn median_of(values: &mut [f64]) -> f64 {
    if values.is_empty() {
        return 0.0;
    }
    values.sort_by(f64::total_cmp);
    let mid = values.len() / 2;
    if values.len() % 2 == 1 {
        values[mid]
    } else {
        (values[mid - 1] + values[mid]) / 2.0
    }
}

fn obj(value: Value) -> Map<String, Value> {
    match value {
        Value::Object(map) => map,
        _ => Map::new(),
    }
}

/// Serde for maps whose keys are not strings: a list of pairs.
mod as_pairs {
    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    pub fn serialize<'a, M, K, V, S>(map: &'a M, s: S) -> Result<S::Ok, S::Error>
    where
        &'a M: IntoIterator<Item = (&'a K, &'a V)>,
        K: Serialize + 'a,
        V: Serialize + 'a,
        S: Serializer,
    {
        s.collect_seq(map)
    }

    pub fn deserialize<'de, M, K, V, D>(d: D) -> Result<M, D::Error>
    where
        M: FromIterator<(K, V)>,
        K: Deserialize<'de>,
        V: Deserialize<'de>,
        D: Deserializer<'de>,
    {
        let pairs: Vec<(K, V)> = Vec::deserialize(d)?;
        Ok(pairs.into_iter().collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{load_text, Placeholders, Profile, RuleCollection, RuleSetBuilder};

    fn plan(windows: &str) -> Arc<WindowPlan> {
        let text = format!(
            "title: base\nname: base\nlogsource: {{product: test}}\ndetection: {{sel: {{a: 1}}, condition: sel}}\n---\n{windows}"
        );
        let mut rules = RuleCollection::default();
        load_text("t.yml".as_ref(), &text, &Placeholders::new(), &mut rules);
        assert!(rules.rejected.is_empty(), "{:?}", rules.rejected);
        let compiled = RuleSetBuilder::new(Profile::passthrough()).build(&rules);
        assert!(compiled.rejected.is_empty(), "{:?}", compiled.rejected);
        Arc::new(compiled.windows)
    }

    fn obs(time: Millis, group: &str, value: Option<&str>) -> Observation<u32> {
        Observation {
            time,
            tie: time as u64,
            window: 0,
            slot: 0,
            group: vec![Some(group.into())],
            values: value.map(|v| vec![Some(v.into())]).unwrap_or_default(),
            evidence: vec![time as u32],
        }
    }

    fn run(
        runtime: &mut WindowRuntime<u32>,
        events: Vec<Observation<u32>>,
    ) -> Vec<WindowAlert<u32>> {
        let mut out = Vec::new();
        for e in events {
            runtime.ingest(e).unwrap();
            runtime.release(&mut out);
        }
        runtime.finish(&mut out);
        out
    }

    const FEW: &str = "title: few\ncorrelation: {type: event_count, rules: [base], group-by: [host], timespan: 10s, condition: {lt: 3}}\n";

    #[test]
    fn an_upper_bound_is_decided_when_the_window_ends() {
        let limits = WindowLimits {
            allowed_lateness: 0,
            ..WindowLimits::default()
        };
        let mut runtime = WindowRuntime::new(plan(FEW), limits);
        // h1: 2 events in its window (fires at its end); h2: 3 (does not).
        let out = run(
            &mut runtime,
            vec![
                obs(0, "h1", None),
                obs(1_000, "h2", None),
                obs(2_000, "h1", None),
                obs(3_000, "h2", None),
                obs(4_000, "h2", None),
                obs(30_000, "h3", None),
            ],
        );
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].group[0].1.as_deref(), Some("h1"));
        assert_eq!((out[0].first, out[0].last, out[0].count), (0, 2_000, 2));
        assert_eq!(out[0].evidence, vec![0, 2_000]);
    }

    #[test]
    fn keys_beyond_the_bound_are_evicted_and_counted() {
        let limits = WindowLimits {
            allowed_lateness: 0,
            max_keys: 2,
            ..WindowLimits::default()
        };
        let many = "title: many\ncorrelation: {type: event_count, rules: [base], group-by: [host], timespan: 1h, condition: {gte: 2}}\n";
        let mut runtime = WindowRuntime::new(plan(many), limits);
        // h1 is evicted by h2 and h3 before its second event: no alert.
        let out = run(
            &mut runtime,
            vec![
                obs(0, "h1", None),
                obs(1, "h2", None),
                obs(2, "h3", None),
                obs(3, "h1", None),
            ],
        );
        assert!(out.is_empty());
        assert_eq!(runtime.stats().evicted_keys, 2);
        assert_eq!(runtime.keys_per_rule(), vec![2]);
    }

    #[test]
    fn a_baseline_below_fires_when_the_bucket_closes() {
        let below = "title: quiet\nlogsource: {product: test}\ndetection: {sel: {a: 2}, condition: sel}\nstatistic: {type: baseline, group-by: [host], bucket: 1m, history: 5, warmup: 3, direction: below}\n";
        let mut runtime = WindowRuntime::new(
            plan(below),
            WindowLimits {
                allowed_lateness: 0,
                ..WindowLimits::default()
            },
        );
        let mut events = Vec::new();
        for minute in 0..4 {
            for i in 0..20 {
                events.push(obs(minute * 60_000 + i * 1_000, "h1", None));
            }
        }
        events.push(obs(4 * 60_000, "h1", None)); // one event in minute 4
        events.push(obs(6 * 60_000, "h2", None)); // moves the watermark
        let out = run(&mut runtime, events);
        assert_eq!(out.len(), 1, "{out:?}");
        assert_eq!((out[0].first, out[0].value), (4 * 60_000, 1.0));
    }

    #[test]
    fn a_chained_rule_sees_a_window_end_alert_when_it_was_decided() {
        // `few` decides at its window's end (10 s); the sequence needs it
        // before an `other` event, so the `other` at 5 s does not count and
        // the one at 12 s completes it.
        let rules = "title: other\nname: other\nlogsource: {product: test}\ndetection: {sel: {a: 2}, condition: sel}\n---\ntitle: few\nname: few\ncorrelation: {type: event_count, rules: [base], group-by: [host], timespan: 10s, condition: {lt: 3}}\n---\ntitle: then\ncorrelation: {type: temporal_ordered, rules: [few, other], group-by: [host], timespan: 1m}\n";
        let mut runtime = WindowRuntime::new(
            plan(rules),
            WindowLimits {
                allowed_lateness: 0,
                ..WindowLimits::default()
            },
        );
        let other = |time| Observation {
            window: 1,
            slot: 1,
            ..obs(time, "h1", None)
        };
        let out = run(
            &mut runtime,
            vec![obs(0, "h1", None), other(5_000), other(12_000)],
        );
        let then: Vec<_> = out.iter().filter(|a| a.window == 1).collect();
        assert_eq!(then.len(), 1, "{out:?}");
        assert_eq!((then[0].first, then[0].last), (10_000, 12_000));
    }

    #[test]
    fn snapshots_round_trip_through_json() {
        let mut runtime = WindowRuntime::new(plan(FEW), WindowLimits::default());
        runtime.ingest(obs(0, "h1", None)).unwrap();
        let text = serde_json::to_string(&runtime.snapshot()).unwrap();
        let mut restored = WindowRuntime::<u32>::new(plan(FEW), WindowLimits::default());
        let report = restored.restore(serde_json::from_str(&text).unwrap());
        assert_eq!(
            report,
            RestoreReport {
                rules: 1,
                dropped_rules: 0,
                pending: 1
            }
        );
        let other = "title: other\ncorrelation: {type: event_count, rules: [base], group-by: [host], timespan: 10s, condition: {gte: 3}}\n";
        let mut changed = WindowRuntime::<u32>::new(plan(other), WindowLimits::default());
        let report = changed.restore(serde_json::from_str(&text).unwrap());
        assert_eq!(
            report,
            RestoreReport {
                rules: 0,
                dropped_rules: 1,
                pending: 0
            }
        );
    }
}
