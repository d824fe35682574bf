//! The kinds of windowed rule and what one group of each keeps: sliding
//! windows (`event_count`, `value_count`, `value_sum`, `value_avg`,
//! `value_percentile`), `temporal`, `temporal_ordered`, `baseline`,
//! `first_seen` and `absence`. An observation updates a group's state and
//! may fire; a window's end (its timer) may fire too. Event-time order and
//! timers themselves are the runtime's business.

use std::collections::{HashMap, VecDeque};

use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};

use super::runtime::WindowLimits;
use super::spec::{BaselineSpec, Direction, Millis, Range, WindowKind, WindowRule};
use super::time::format_millis;

#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct Entry {
    time: Millis,
    value: Option<String>,
    number: f64,
}

/// What one group of a rule keeps.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) enum KindState {
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

/// A decision to alert.
#[derive(Debug)]
pub(crate) struct Fire {
    pub first: Millis,
    pub last: Millis,
    /// When it was decided (the completing event's time, or the end of the
    /// window): chained rules see the alert at this time, which keeps
    /// them in event-time order.
    pub decided_at: Millis,
    pub count: u64,
    pub value: f64,
    pub detail: Map<String, Value>,
    /// The group starts afresh after it.
    pub reset: bool,
}

/// The values an observation brings to its rule.
#[derive(Debug)]
pub(crate) struct Input {
    /// The value fields joined (a distinct value).
    value: Option<String>,
    /// The value read as a number.
    number: Option<f64>,
}

impl Input {
    /// What an observation with `values` brings to a rule of `kind`; None
    /// when the rule cannot use it (a value field missing, a sum or average
    /// of something that is not a number).
    pub fn read(kind: &WindowKind, values: &[Option<String>]) -> Option<Input> {
        let value = (!values.is_empty())
            .then(|| {
                values
                    .iter()
                    .map(|v| v.as_deref())
                    .collect::<Option<Vec<&str>>>()
                    .map(|v| v.join("\u{1f}"))
            })
            .flatten();
        let needs_value = !kind.value_fields().is_empty();
        if needs_value && value.is_none() && !matches!(kind, WindowKind::Baseline(_)) {
            return None;
        }
        // `NaN`, `inf` and `1e309` parse, but no window can use them (and
        // the state file could not hold them).
        let number = value
            .as_deref()
            .and_then(|v| v.trim().parse::<f64>().ok())
            .filter(|n| n.is_finite());
        let needs_number = match kind {
            WindowKind::ValueSum { .. } | WindowKind::ValueAvg { .. } => true,
            WindowKind::Baseline(spec) => spec.field.is_some(),
            _ => false,
        };
        (!needs_number || number.is_some()).then_some(Input { value, number })
    }
}

/// A fresh group's state.
pub(crate) fn initial_state(kind: &WindowKind, slots: usize, now: Millis) -> KindState {
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

/// When the group's state needs deciding without an event: the end of an
/// open window, an absence's limit, a `below` baseline bucket's end.
pub(crate) fn next_due(rule: &WindowRule, state: &KindState) -> Option<Millis> {
    match (&rule.kind, state) {
        (_, KindState::Sliding { opened, .. }) => opened.map(|o| o + rule.timespan),
        (_, KindState::Absence { last_seen, silent }) => {
            (!*silent).then(|| *last_seen + rule.timespan)
        }
        (
            WindowKind::Baseline(spec),
            KindState::Baseline {
                bucket: Some(b),
                open: true,
                ..
            },
        ) if spec.direction == Direction::Below => Some((*b + 1) * spec.bucket),
        _ => None,
    }
}

/// The group's timer at `due` is reached.
pub(crate) fn on_timer(rule: &WindowRule, state: &mut KindState, due: Millis) -> Option<Fire> {
    match (&rule.kind, &mut *state) {
        (_, KindState::Sliding { opened, .. }) if *opened == Some(due - rule.timespan) => {
            close_sliding(rule, state, due)
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
                    "silent_since": format_millis(*last_seen),
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
        ) if (*b + 1) * spec.bucket == due => close_bucket(spec, state, due),
        _ => None,
    }
}

/// What an observation did to a group.
#[derive(Debug, Default)]
pub(crate) struct Update {
    pub fire: Option<Fire>,
    /// Distinct values forgotten to respect `max_values_per_key`.
    pub evicted_values: u64,
}

/// An observation at `now` (of the rule's referenced rule `slot`) arrives
/// in a group: updates its state and says whether it fires.
pub(crate) fn update(
    rule: &WindowRule,
    state: &mut KindState,
    now: Millis,
    slot: usize,
    input: &Input,
    limits: &WindowLimits,
    learning_until: Option<Millis>,
) -> Update {
    let condition = rule
        .condition
        .unwrap_or_else(|| Range::at_least(rule.rules.len() as f64));
    match (&rule.kind, state) {
        (WindowKind::Absence, KindState::Absence { last_seen, silent }) => {
            *last_seen = now;
            *silent = false;
            Update::default()
        }
        (WindowKind::FirstSeen { .. }, KindState::FirstSeen { values }) => {
            first_seen(values, now, input, limits, learning_until)
        }
        (WindowKind::Baseline(spec), state) => Update {
            fire: baseline(spec, state, now, input),
            evicted_values: 0,
        },
        (WindowKind::Temporal, KindState::Temporal { latest, times }) => Update {
            fire: temporal(rule, &condition, latest, times, now, slot),
            evicted_values: 0,
        },
        (WindowKind::TemporalOrdered, KindState::Ordered { starts, times }) => Update {
            fire: temporal_ordered(rule, starts, times, now, slot),
            evicted_values: 0,
        },
        (_, state @ KindState::Sliding { .. }) => {
            sliding(rule, &condition, state, now, input, limits)
        }
        _ => Update::default(),
    }
}

fn first_seen(
    values: &mut HashMap<String, Millis>,
    now: Millis,
    input: &Input,
    limits: &WindowLimits,
    learning_until: Option<Millis>,
) -> Update {
    let Some(value) = input.value.clone() else {
        return Update::default();
    };
    let new = values.insert(value.clone(), now).is_none();
    let mut evicted_values = 0;
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
    let fire = (new && learning_until.is_some_and(|until| now >= until)).then(|| Fire {
        first: now,
        last: now,
        count: 1,
        value: values.len() as f64,
        detail: obj(
            json!({ "new_value": value.replace('\u{1f}', " | "), "known_values": values.len() - 1 }),
        ),
        reset: false,
        decided_at: now,
    });
    Update {
        fire,
        evicted_values,
    }
}

fn baseline(
    spec: &BaselineSpec,
    state: &mut KindState,
    now: Millis,
    input: &Input,
) -> Option<Fire> {
    let b = now.div_euclid(spec.bucket);
    let mut fire = None;
    let KindState::Baseline { bucket, open, .. } = state else {
        return None;
    };
    match *bucket {
        Some(current) if b > current => {
            if *open {
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
                let gap = (b - bucket.unwrap_or(b) - 1).clamp(0, spec.history as i64);
                for _ in 0..gap {
                    push_history(history, 0.0, spec.history);
                }
                *bucket = Some(b);
                *open = true;
                *value = 0.0;
                *events = 0;
                *fired = false;
            }
        }
        None => {
            *bucket = Some(b);
            *open = true;
        }
        _ => {}
    }
    let KindState::Baseline {
        history,
        value,
        events,
        fired,
        ..
    } = state
    else {
        return fire;
    };
    *value += input.number.unwrap_or(1.0);
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
    fire
}

fn temporal(
    rule: &WindowRule,
    condition: &Range,
    latest: &mut [Option<Millis>],
    times: &mut VecDeque<Millis>,
    now: Millis,
    slot: usize,
) -> Option<Fire> {
    latest[slot] = Some(now);
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
        detail: obj(json!({ "rules_matched": matched as u64, "rules": rule.rules.len() })),
        reset: true,
        decided_at: now,
    })
}

fn temporal_ordered(
    rule: &WindowRule,
    starts: &mut [Option<Millis>],
    times: &mut VecDeque<Millis>,
    now: Millis,
    slot: usize,
) -> Option<Fire> {
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
    if slot == 0 {
        starts[0] = Some(now);
    } else if let Some(begun) = starts[slot - 1] {
        starts[slot] = Some(starts[slot].map_or(begun, |s| s.max(begun)));
    }
    let last_step = starts.len() - 1;
    starts[last_step]
        .filter(|_| slot == last_step)
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

fn sliding(
    rule: &WindowRule,
    condition: &Range,
    state: &mut KindState,
    now: Millis,
    input: &Input,
    limits: &WindowLimits,
) -> Update {
    let mut update = Update::default();
    // A percentile is about the current event's value: it is always
    // decided on the event.
    let decided_on_event =
        condition.decided_on_event() || matches!(rule.kind, WindowKind::ValuePercentile { .. });
    if !decided_on_event {
        if let KindState::Sliding {
            opened: Some(o), ..
        } = state
        {
            // The window ended before this event (its timer had not fired).
            if now > *o + rule.timespan {
                update.fire = close_sliding(rule, state, now);
            }
        }
    }
    let number = input.number.unwrap_or(0.0);
    if let KindState::Sliding {
        entries,
        distinct,
        sum,
        opened,
    } = state
    {
        if !decided_on_event && opened.is_none() {
            *opened = Some(now);
        }
        // Beyond the bound, a new value is counted as an event but not
        // remembered.
        let mut value = input.value.clone();
        if let Some(v) = &value {
            if !distinct.contains_key(v) && distinct.len() >= limits.max_values_per_key {
                update.evicted_values += 1;
                value = None;
            }
        }
        if let Some(v) = &value {
            *distinct.entry(v.clone()).or_insert(0) += 1;
        }
        entries.push_back(Entry {
            time: now,
            value,
            number,
        });
        *sum += number;
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
        let current = input.value.as_deref();
        let metric = sliding_metric(&rule.kind, state, current);
        if !metric.is_nan() && condition.holds(metric) {
            let detail = sliding_detail(&rule.kind, state, current, metric);
            if let KindState::Sliding { entries, .. } = state {
                update.fire = Some(Fire {
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
    update
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

/// The measured value of a sliding window.
fn sliding_metric(kind: &WindowKind, state: &KindState, current: Option<&str>) -> f64 {
    let KindState::Sliding {
        entries,
        distinct,
        sum,
        ..
    } = state
    else {
        return 0.0;
    };
    let n = entries.len() as f64;
    match kind {
        WindowKind::ValueCount { .. } => distinct.len() as f64,
        WindowKind::ValueSum { .. } => *sum,
        WindowKind::ValueAvg { .. } if n > 0.0 => *sum / n,
        WindowKind::ValueAvg { .. } => 0.0,
        // A value beyond `max_values_per_key` is not remembered: its share
        // is unknown, and NaN satisfies no bound.
        WindowKind::ValuePercentile { .. } => current
            .and_then(|v| distinct.get(v))
            .map_or(f64::NAN, |c| 100.0 * *c as f64 / n.max(1.0)),
        _ => n,
    }
}

/// What an alert of a sliding window tells about its value (built only
/// when it fires).
fn sliding_detail(
    kind: &WindowKind,
    state: &KindState,
    current: Option<&str>,
    metric: f64,
) -> Map<String, Value> {
    let KindState::Sliding { distinct, .. } = state else {
        return Map::new();
    };
    match kind {
        WindowKind::ValueCount { .. } => {
            let mut values: Vec<&str> = distinct.keys().map(String::as_str).collect();
            values.sort_unstable();
            values.truncate(20);
            let values: Vec<String> = values.iter().map(|v| v.replace('\u{1f}', " | ")).collect();
            obj(json!({ "distinct_values": values }))
        }
        WindowKind::ValuePercentile { .. } => {
            let value = current.unwrap_or_default().replace('\u{1f}', " | ");
            obj(json!({ "field_value": value, "percent_of_events": metric }))
        }
        _ => Map::new(),
    }
}

/// Decides a window that only closes at its end.
fn close_sliding(rule: &WindowRule, state: &mut KindState, decided_at: Millis) -> Option<Fire> {
    let condition = rule.condition?;
    let metric = sliding_metric(&rule.kind, state, None);
    let detail = sliding_detail(&rule.kind, state, None, metric);
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
fn close_bucket(spec: &BaselineSpec, state: &mut KindState, decided_at: Millis) -> Option<Fire> {
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
    spec: &BaselineSpec,
    median: f64,
    spread: f64,
    bucket: i64,
) -> Map<String, Value> {
    obj(json!({
        "baseline_median": median,
        "baseline_spread": spread,
        "threshold": spec.threshold,
        "bucket_start": format_millis(bucket * spec.bucket),
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
