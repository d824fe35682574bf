//! The windowed-rule runtime: state per rule and group key, advanced over
//! event time.
//!
//! Observations (a detection rule's match feeding a window) come from
//! sources (see [`clock`](super::clock)): an observation older than its
//! own source's watermark is late and refused (the caller reports it).
//! The others wait until every active source that feeds their group key
//! has passed them, and are then applied in event-time order (ties broken
//! by the event's content hash). So a key's alerts depend only on its
//! events, not on batch sizes, on the arrival order within the allowed
//! lateness, or on other sources' clocks. Conditions with a lower bound
//! fire on the event that completes them; those that can only be decided
//! when a window ends (`lt`, `lte`, `neq`, a baseline `below`, an
//! absence) fire when the key's clock passes the window's end.
//!
//! An event that reaches a key after the key has applied later ones (its
//! source was idle, or new to the key) is applied at the key's latest time
//! and counted (`reordered`), never merged out of order.
//!
//! State is bounded: at most `max_keys` groups over all rules (the least
//! recently updated is evicted and counted), `max_values_per_key` distinct
//! values per group, `max_evidence` evidence items per group,
//! `max_pending` observations waiting (beyond it the oldest of the source
//! holding most is applied early and counted) and `max_sources` sources.
//! The whole state serialises into a [`WindowSnapshot`] that a restarted
//! runtime resumes from.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::Arc;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use super::clock::{
    Clock, ClockReading, DomainId, Gated, Late, Order, SourceId, SourceKey, OBSERVATION, TIMER,
};
use super::kinds::{self, Fire, Input, KindState};
use super::plan::{FieldSource, WindowPlan};
use super::spec::{Millis, WindowKind};

/// Group-by values, in the rule's `group-by` order (`None`: field absent).
pub type GroupKey = Vec<Option<String>>;

/// Bounds and timing of the runtime.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct WindowLimits {
    /// How far behind its source's latest event time an event may arrive
    /// and still be applied in order.
    pub allowed_lateness: Millis,
    /// Group keys held over all rules.
    pub max_keys: usize,
    /// Distinct values remembered per group (`value_count`,
    /// `value_percentile`, `first_seen`).
    pub max_values_per_key: usize,
    /// Evidence items kept per group and put in an alert.
    pub max_evidence: usize,
    /// Observations waiting for their sources' watermarks.
    pub max_pending: usize,
    /// Wall-clock ms after which a source that sent nothing stops holding
    /// back the keys it feeds.
    pub idle_after: Millis,
    /// Sources (input, organisation, host) tracked.
    pub max_sources: usize,
}

impl Default for WindowLimits {
    fn default() -> Self {
        WindowLimits {
            allowed_lateness: 5_000,
            max_keys: 100_000,
            max_values_per_key: 10_000,
            max_evidence: 10,
            max_pending: 100_000,
            idle_after: 5_000,
            max_sources: 10_000,
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
    pub detail: serde_json::Map<String, serde_json::Value>,
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
    /// Observations applied before their sources' watermarks passed them,
    /// to respect `max_pending`.
    pub forced: u64,
    /// Observations that reached their key after later ones were applied,
    /// applied at the key's latest time.
    #[serde(default)]
    pub reordered: u64,
    /// Hosts beyond `max_sources`, counted under their input's and
    /// organisation's source.
    #[serde(default)]
    pub sources_over_limit: u64,
}

/// What a restore kept and dropped.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RestoreReport {
    /// Rules whose state was restored.
    pub rules: usize,
    /// Rules in the snapshot that are no longer loaded (or changed); their
    /// state was dropped.
    pub dropped_rules: usize,
    /// Observations still waiting for their sources.
    pub pending: usize,
    /// Sources whose progress was restored.
    pub sources: usize,
}

/// A group key held by the runtime: a slot and its generation, so that a
/// reference to an evicted key is recognised.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct KeyRef {
    slot: u32,
    generation: u32,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct GroupState<E> {
    touch: u64,
    evidence: VecDeque<(Millis, E)>,
    kind: KindState,
}

/// A window's group key: its state, the sources that feed it and what
/// waits for them.
#[derive(Debug)]
struct KeyEntry<E> {
    window: usize,
    group: GroupKey,
    generation: u32,
    /// None until its first observation is applied, and after eviction.
    state: Option<GroupState<E>>,
    contributors: Vec<SourceId>,
    domain: DomainId,
    /// The latest time applied.
    applied: Option<Millis>,
    /// Observations waiting.
    waiting: u32,
    /// The scheduled timer: its due time and order.
    timer: Option<(Millis, Order)>,
}

/// Sources tracked per key; further sources feeding the same key are not
/// waited for (their events may then be reordered, and are counted).
const MAX_CONTRIBUTORS: usize = 32;

#[derive(Debug)]
struct KeyTable<E> {
    slots: Vec<Option<KeyEntry<E>>>,
    generations: Vec<u32>,
    free: Vec<u32>,
    /// Per windowed rule: group key → slot.
    index: Vec<HashMap<GroupKey, u32>>,
}

/// What waits for the clock.
#[derive(Debug)]
enum Item<E> {
    Observation(KeyRef, Observation<E>),
    Timer(KeyRef),
}

impl<E> Item<E> {
    fn key(&self) -> KeyRef {
        match self {
            Item::Observation(k, _) | Item::Timer(k) => *k,
        }
    }
}

impl<E> KeyTable<E> {
    fn new(rules: usize) -> Self {
        KeyTable {
            slots: Vec::new(),
            generations: Vec::new(),
            free: Vec::new(),
            index: (0..rules).map(|_| HashMap::new()).collect(),
        }
    }

    fn get(&self, key: KeyRef) -> Option<&KeyEntry<E>> {
        self.slots
            .get(key.slot as usize)?
            .as_ref()
            .filter(|e| e.generation == key.generation)
    }

    fn get_mut(&mut self, key: KeyRef) -> Option<&mut KeyEntry<E>> {
        self.slots
            .get_mut(key.slot as usize)?
            .as_mut()
            .filter(|e| e.generation == key.generation)
    }

    /// The key of `group` in `window`, created (in `domain`) if new.
    fn intern(&mut self, window: usize, group: &GroupKey, domain: DomainId) -> KeyRef {
        if let Some(&slot) = self.index[window].get(group) {
            return KeyRef {
                slot,
                generation: self.generations[slot as usize],
            };
        }
        let slot = match self.free.pop() {
            Some(slot) => slot,
            None => {
                self.slots.push(None);
                self.generations.push(0);
                (self.slots.len() - 1) as u32
            }
        };
        let generation = self.generations[slot as usize].wrapping_add(1);
        self.generations[slot as usize] = generation;
        self.slots[slot as usize] = Some(KeyEntry {
            window,
            group: group.clone(),
            generation,
            state: None,
            contributors: Vec::new(),
            domain,
            applied: None,
            waiting: 0,
            timer: None,
        });
        self.index[window].insert(group.clone(), slot);
        KeyRef { slot, generation }
    }

    /// Forgets a key that holds nothing any more.
    fn release_if_empty(&mut self, key: KeyRef) {
        let empty = self
            .get(key)
            .is_some_and(|e| e.state.is_none() && e.waiting == 0 && e.timer.is_none());
        if empty {
            let entry = self.slots[key.slot as usize].take().expect("checked");
            self.index[entry.window].remove(&entry.group);
            self.free.push(key.slot);
        }
    }

    fn entries(&self) -> impl Iterator<Item = (KeyRef, &KeyEntry<E>)> {
        self.slots.iter().enumerate().filter_map(|(slot, e)| {
            e.as_ref().map(|e| {
                (
                    KeyRef {
                        slot: slot as u32,
                        generation: e.generation,
                    },
                    e,
                )
            })
        })
    }
}

impl<E> Gated<Item<E>> for KeyTable<E> {
    fn gates(&self, item: &Item<E>) -> Option<(&[SourceId], DomainId)> {
        self.get(item.key())
            .map(|e| (e.contributors.as_slice(), e.domain))
    }
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct RuleMeta {
    learning_until: Option<Millis>,
    evicted: u64,
    keys: usize,
}

/// The windowed-rule runtime over the observations of any number of
/// sources.
#[derive(Debug)]
pub struct WindowRuntime<E> {
    plan: Arc<WindowPlan>,
    limits: WindowLimits,
    keys: KeyTable<E>,
    clock: Clock<Item<E>>,
    lru: BTreeMap<u64, KeyRef>,
    rules: Vec<RuleMeta>,
    seq: u64,
    pending: usize,
    /// Keys whose observation is being applied (innermost last).
    applying: Vec<KeyRef>,
    stats: WindowStats,
}

/// The name of the source a replayed history is read as.
pub const HISTORY_INPUT: &str = "(history)";

impl<E: Clone + Serialize + DeserializeOwned> WindowRuntime<E> {
    /// A runtime with empty state.
    pub fn new(plan: Arc<WindowPlan>, limits: WindowLimits) -> Self {
        let limits = WindowLimits {
            max_keys: limits.max_keys.max(1),
            max_pending: limits.max_pending.max(1),
            max_values_per_key: limits.max_values_per_key.max(1),
            ..limits
        };
        WindowRuntime {
            keys: KeyTable::new(plan.rules.len()),
            clock: Clock::new(
                limits.allowed_lateness,
                limits.idle_after,
                limits.max_sources,
            ),
            lru: BTreeMap::new(),
            rules: vec![RuleMeta::default(); plan.rules.len()],
            plan,
            limits,
            seq: 0,
            pending: 0,
            applying: Vec::new(),
            stats: WindowStats::default(),
        }
    }

    /// The plan it runs.
    pub fn plan(&self) -> &WindowPlan {
        &self.plan
    }

    /// Counters so far.
    pub fn stats(&self) -> WindowStats {
        WindowStats {
            sources_over_limit: self.clock.over_limit,
            ..self.stats
        }
    }

    /// Group keys held, per rule.
    pub fn keys_per_rule(&self) -> Vec<usize> {
        self.rules.iter().map(|r| r.keys).collect()
    }

    /// Keys evicted so far, per rule.
    pub fn evictions_per_rule(&self) -> Vec<u64> {
        self.rules.iter().map(|r| r.evicted).collect()
    }

    /// Observations waiting for their sources.
    pub fn pending(&self) -> usize {
        self.pending
    }

    /// Sources and how far they are.
    pub fn clock(&self) -> ClockReading {
        self.clock.reading()
    }

    /// The source of events from `key`, created on first use.
    pub fn source(&mut self, key: SourceKey) -> SourceId {
        self.clock.source(key, false)
    }

    /// The source a history replayed in event-time order is read as, per
    /// organisation: nothing it sends is late or waits for lateness.
    pub fn history_source(&mut self, actor: Option<String>) -> SourceId {
        self.clock.source(
            SourceKey {
                input: HISTORY_INPUT.into(),
                actor,
                host: None,
            },
            true,
        )
    }

    /// The wall clock (ms, any epoch) arrivals are stamped with, for
    /// idleness.
    pub fn set_wall(&mut self, wall_ms: u64) {
        self.clock.set_wall(wall_ms);
    }

    /// Accepts an observation from `source`, or refuses it as late.
    /// Nothing is applied until [`release`](Self::release).
    pub fn ingest(&mut self, obs: Observation<E>, source: SourceId) -> Result<(), Late> {
        if let Err(late) = self.clock.arrive(source, obs.time) {
            self.stats.late += 1;
            return Err(late);
        }
        let domain = self.clock.domain_of(source);
        let key = self.keys.intern(obs.window, &obs.group, domain);
        let entry = self.keys.get_mut(key).expect("just interned");
        if !entry.contributors.contains(&source) && entry.contributors.len() < MAX_CONTRIBUTORS {
            entry.contributors.push(source);
        }
        entry.waiting += 1;
        self.pending += 1;
        self.seq += 1;
        let order = observation_order(&obs, self.seq);
        let item = Item::Observation(key, obs);
        let gates = self.keys.gates(&item);
        self.clock.place(order, item, gates);
        Ok(())
    }

    /// Applies every observation and fires every timer that its sources
    /// no longer hold back, in event-time order. Beyond `max_pending`
    /// waiting observations, the oldest of the source holding most are
    /// applied ahead of their gates (counted).
    pub fn release(&mut self, out: &mut Vec<WindowAlert<E>>) {
        self.clock.settle(&self.keys);
        self.apply_ready(out);
        while self.pending > self.limits.max_pending && self.clock.force_observation() {
            self.stats.forced += 1;
            self.apply_ready(out);
            self.clock.settle(&self.keys);
            self.apply_ready(out);
        }
    }

    /// Wall clock now (ms): sources idle for `idle_after` stop holding
    /// back; what they held is applied.
    pub fn tick(&mut self, wall_ms: u64, out: &mut Vec<WindowAlert<E>>) {
        self.clock.idle_check(wall_ms);
        self.release(out);
    }

    /// An input ended: its sources hold back nothing from now on.
    pub fn finish_input(&mut self, input: &str, out: &mut Vec<WindowAlert<E>>) {
        self.clock.finish_input(input);
        self.release(out);
    }

    /// A source has ended (a replayed history): it holds back nothing from
    /// now on. Applied at the next release.
    pub fn finish_source(&mut self, source: SourceId) {
        self.clock.finish_source(source);
    }

    /// End of input: applies everything still waiting and fires the
    /// windows that ended before each organisation's last event. Windows
    /// still open stay open (in the snapshot, should the stream continue).
    pub fn finish(&mut self, out: &mut Vec<WindowAlert<E>>) {
        self.clock.finish_all();
        self.release(out);
    }

    /// Applies what is ready, in order.
    fn apply_ready(&mut self, out: &mut Vec<WindowAlert<E>>) {
        while let Some((order, item)) = self.clock.pop_ready() {
            let key = item.key();
            match item {
                Item::Observation(key, obs) => {
                    self.pending -= 1;
                    if let Some(entry) = self.keys.get_mut(key) {
                        entry.waiting -= 1;
                    }
                    self.apply(key, obs, out);
                }
                Item::Timer(key) => {
                    let scheduled = self.keys.get(key).and_then(|e| e.timer);
                    if scheduled.is_some_and(|(_, o)| o == order) {
                        self.fire_timer(key, out);
                    }
                }
            }
            self.keys.release_if_empty(key);
        }
    }

    /// Fires the key's scheduled timer.
    fn fire_timer(&mut self, key: KeyRef, out: &mut Vec<WindowAlert<E>>) {
        let plan = self.plan.clone();
        let Some(entry) = self.keys.get_mut(key) else {
            return;
        };
        let Some((due, order)) = entry.timer.take() else {
            return;
        };
        // Decided up to its due time: later arrivals before it are
        // reordered, not merged into a decided window.
        entry.applied = Some(entry.applied.map_or(due, |a| a.max(due)));
        // Fired ahead of its turn (by an event of its key after it): it no
        // longer waits anywhere.
        self.clock.take(&order, &entry.contributors, entry.domain);
        let rule = &plan.rules[entry.window].rule;
        let Some(group) = entry.state.as_mut() else {
            return;
        };
        let fire = kinds::on_timer(rule, &mut group.kind, due);
        // A state that still asks for the same moment is not asked again.
        if kinds::next_due(rule, &group.kind) != Some(due) {
            self.reschedule(key);
        }
        if let Some(fire) = fire {
            self.emit(
                key,
                Fire {
                    decided_at: due,
                    ..fire
                },
                out,
            );
        }
    }

    /// Applies one observation to its key, in the key's event-time order.
    fn apply(&mut self, key: KeyRef, obs: Observation<E>, out: &mut Vec<WindowAlert<E>>) {
        let plan = self.plan.clone();
        let window = obs.window;
        let rule = &plan.rules[window].rule;
        let Some(entry) = self.keys.get_mut(key) else {
            return;
        };
        let (now, reordered) = match entry.applied {
            Some(applied) if obs.time < applied => (applied, true),
            _ => (obs.time, false),
        };
        if reordered {
            self.stats.reordered += 1;
            // Moving it later would invent an order between the steps of
            // a sequence: it does not count there.
            if matches!(rule.kind, WindowKind::TemporalOrdered) {
                return;
            }
        }
        entry.applied = Some(now);
        // This key is not evicted while its observation is applied (its
        // alert may feed chained keys, whose updates evict others).
        self.applying.push(key);
        self.apply_to(key, window, now, obs, out);
        self.applying.pop();
    }

    fn apply_to(
        &mut self,
        key: KeyRef,
        window: usize,
        now: Millis,
        obs: Observation<E>,
        out: &mut Vec<WindowAlert<E>>,
    ) {
        let plan = self.plan.clone();
        let rule = &plan.rules[window].rule;
        let Some(entry) = self.keys.get_mut(key) else {
            return;
        };
        // The key's window that ended before this event is decided first.
        if entry.timer.is_some_and(|(due, _)| due < now) {
            self.fire_timer(key, out);
        }
        let Some(input) = Input::read(&rule.kind, &obs.values) else {
            return;
        };
        if let WindowKind::FirstSeen { learning, .. } = rule.kind {
            self.rules[window]
                .learning_until
                .get_or_insert(now.saturating_add(learning));
        }
        let learning_until = self.rules[window].learning_until;
        let limits = self.limits;
        let Some(entry) = self.keys.get_mut(key) else {
            return;
        };
        if entry.state.is_none() {
            self.rules[window].keys += 1;
        }
        let group = entry.state.get_or_insert_with(|| GroupState {
            touch: 0,
            evidence: VecDeque::new(),
            kind: kinds::initial_state(&rule.kind, rule.rules.len(), now),
        });
        for e in obs.evidence {
            group.evidence.push_back((now, e));
            if group.evidence.len() > limits.max_evidence {
                group.evidence.pop_front();
            }
        }
        let update = kinds::update(
            rule,
            &mut group.kind,
            now,
            obs.slot,
            &input,
            &limits,
            learning_until,
        );
        self.stats.evicted_values += update.evicted_values;
        self.reschedule(key);
        self.touch(key);
        if let Some(fire) = update.fire {
            self.emit(key, fire, out);
        }
    }

    /// Schedules the key's timer for what its state now needs decided.
    fn reschedule(&mut self, key: KeyRef) {
        let plan = self.plan.clone();
        let Some(entry) = self.keys.get_mut(key) else {
            return;
        };
        let due = entry
            .state
            .as_ref()
            .and_then(|g| kinds::next_due(&plan.rules[entry.window].rule, &g.kind));
        if entry.timer.map(|(d, _)| d) == due {
            return;
        }
        if let Some((_, order)) = entry.timer.take() {
            self.clock.take(&order, &entry.contributors, entry.domain);
        }
        if let Some(due) = due {
            self.seq += 1;
            let order: Order = (due, TIMER, 0, entry.window, 0, self.seq);
            entry.timer = Some((due, order));
            self.clock.place(
                order,
                Item::Timer(key),
                Some((&entry.contributors, entry.domain)),
            );
        }
    }

    /// Marks a group as just used and evicts the least recently used
    /// groups beyond `max_keys`.
    fn touch(&mut self, key: KeyRef) {
        self.seq += 1;
        let seq = self.seq;
        let Some(group) = self.keys.get_mut(key).and_then(|e| e.state.as_mut()) else {
            return;
        };
        let old = std::mem::replace(&mut group.touch, seq);
        self.lru.remove(&old);
        self.lru.insert(seq, key);
        while self.lru.len() > self.limits.max_keys {
            // The least recently used key not being applied right now.
            let Some((&touch, &gone)) = self.lru.iter().find(|(_, k)| !self.applying.contains(k))
            else {
                break;
            };
            self.lru.remove(&touch);
            self.evict(gone);
        }
    }

    /// Drops a key's state and timer; it is forgotten once nothing waits
    /// for it.
    fn evict(&mut self, key: KeyRef) {
        let Some(entry) = self.keys.get_mut(key) else {
            return;
        };
        if entry.state.take().is_none() {
            return;
        }
        if let Some((_, order)) = entry.timer.take() {
            self.clock.take(&order, &entry.contributors, entry.domain);
        }
        let window = entry.window;
        self.rules[window].evicted += 1;
        self.rules[window].keys -= 1;
        self.stats.evicted_keys += 1;
        self.keys.release_if_empty(key);
    }

    fn emit(&mut self, key: KeyRef, fire: Fire, out: &mut Vec<WindowAlert<E>>) {
        let plan = self.plan.clone();
        let Some(entry) = self.keys.get_mut(key) else {
            return;
        };
        let window = entry.window;
        let planned = &plan.rules[window];
        let group_key = entry.group.clone();
        let domain = entry.domain;
        let Some(group) = entry.state.as_mut() else {
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
            group.kind =
                kinds::initial_state(&planned.rule.kind, planned.rule.rules.len(), fire.last);
            self.reschedule(key);
        }
        let alert = WindowAlert {
            window,
            group: planned
                .rule
                .group_by
                .iter()
                .cloned()
                .zip(group_key.iter().cloned())
                .collect(),
            first: fire.first,
            last: fire.last,
            count: fire.count,
            value: fire.value,
            detail: fire.detail,
            evidence,
        };
        // Chained rules see the alert as an event at its decision time, fed
        // by the same sources.
        for feed in plan.window_feeds(window) {
            let pick = |sources: &[FieldSource]| -> Vec<Option<String>> {
                sources
                    .iter()
                    .map(|s| match s {
                        FieldSource::ChildGroup(i) => group_key.get(*i).cloned().flatten(),
                        FieldSource::Columns(_) => None,
                    })
                    .collect()
            };
            // Key parts beyond the group-by fields (the organisation the
            // events came from) carry over to the chained rule.
            let mut group = pick(&feed.group);
            group.extend(group_key.iter().skip(planned.rule.group_by.len()).cloned());
            let contributors = self
                .keys
                .get(key)
                .map(|e| e.contributors.clone())
                .unwrap_or_default();
            let chained = self.keys.intern(feed.window, &group, domain);
            if let Some(entry) = self.keys.get_mut(chained) {
                for c in &contributors {
                    if !entry.contributors.contains(c)
                        && entry.contributors.len() < MAX_CONTRIBUTORS
                    {
                        entry.contributors.push(*c);
                    }
                }
            }
            let obs = Observation {
                time: fire.decided_at,
                tie: 0,
                window: feed.window,
                slot: feed.slot,
                group,
                values: pick(&feed.values),
                evidence: alert.evidence.clone(),
            };
            // Through the clock like any observation: it waits for the
            // chained key's other sources, so that a step from a slower
            // source is still applied in its event-time order.
            let Some(entry) = self.keys.get_mut(chained) else {
                continue;
            };
            entry.waiting += 1;
            self.pending += 1;
            self.seq += 1;
            let order = observation_order(&obs, self.seq);
            self.clock.place(
                order,
                Item::Observation(chained, obs),
                Some((&entry.contributors, entry.domain)),
            );
        }
        if planned.emits {
            out.push(alert);
        }
    }

    /// The state, for writing to disk.
    pub fn snapshot(&self) -> WindowSnapshot<E> {
        let sources = self
            .clock
            .sources()
            .iter()
            .map(|s| SavedSource {
                key: s.key.clone(),
                max_seen: s.max_seen,
                ordered: s.ordered,
            })
            .collect();
        let keys = self
            .keys
            .entries()
            .map(|(_, e)| SavedKey {
                window: e.window,
                group: e.group.clone(),
                actor: self.clock.actor_of(e.domain).map(str::to_string),
                state: e.state.clone(),
                contributors: e.contributors.clone(),
                applied: e.applied,
            })
            .collect();
        let pending = self
            .clock
            .waiting()
            .filter_map(|(order, item)| match item {
                Item::Observation(_, obs) => Some(SavedPending {
                    seq: order.5,
                    obs: obs.clone(),
                }),
                Item::Timer(_) => None,
            })
            .collect();
        WindowSnapshot {
            rule_keys: self.plan.rules.iter().map(|r| r.key.clone()).collect(),
            state: SavedState {
                sources,
                keys,
                pending,
                rules: self.rules.clone(),
                seq: self.seq,
                stats: self.stats,
            },
        }
    }

    /// Takes a reloaded plan: with the same windowed rules everything is
    /// kept (the plan's links to the new rule set change); otherwise the
    /// state of rules whose key is unchanged carries over, as a restart
    /// would keep it, without going through a file.
    pub fn replan(&mut self, plan: Arc<WindowPlan>, wall_ms: u64) -> RestoreReport {
        if self.plan.same_rules(&plan) {
            self.plan = plan;
            return RestoreReport {
                rules: self.rules.len(),
                pending: self.pending,
                sources: self.clock.sources().len(),
                ..RestoreReport::default()
            };
        }
        let snapshot = self.snapshot();
        self.plan = plan;
        self.restore(snapshot, wall_ms)
    }

    /// Resumes from a snapshot (taken at wall clock `wall_ms` now), of an
    /// earlier run or of this one before a reload. State of rules that are
    /// no longer loaded (or whose definition changed) is dropped; rules new
    /// since the snapshot start empty. Sources resume their progress and
    /// hold back what they feed as if they had just sent.
    pub fn restore(&mut self, snapshot: WindowSnapshot<E>, wall_ms: u64) -> RestoreReport {
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
        let remap = |w: usize| map.get(w).copied().flatten();
        let old = snapshot.state;
        let mut fresh = WindowRuntime::new(self.plan.clone(), self.limits);
        fresh.clock.set_wall(wall_ms);
        let sources: Vec<SourceId> = old
            .sources
            .into_iter()
            .map(|s| fresh.clock.restore_source(s.key, s.max_seen, s.ordered))
            .collect();
        let mut report = RestoreReport {
            sources: sources.len(),
            ..RestoreReport::default()
        };
        for (old_index, meta) in old.rules.into_iter().enumerate() {
            match remap(old_index) {
                Some(new_index) => {
                    fresh.rules[new_index] = RuleMeta { keys: 0, ..meta };
                    report.rules += 1;
                }
                None => report.dropped_rules += 1,
            }
        }
        let mut by_touch: Vec<(u64, KeyRef)> = Vec::new();
        for saved in old.keys {
            let Some(window) = remap(saved.window) else {
                continue;
            };
            let contributors: Vec<SourceId> = saved
                .contributors
                .iter()
                .filter_map(|c| sources.get(*c as usize).copied())
                .collect();
            let domain = fresh.clock.domain(saved.actor);
            let key = fresh.keys.intern(window, &saved.group, domain);
            let entry = fresh.keys.get_mut(key).expect("just interned");
            entry.contributors = contributors;
            entry.applied = saved.applied;
            if let Some(state) = saved.state {
                by_touch.push((state.touch, key));
                entry.state = Some(state);
                fresh.rules[window].keys += 1;
            }
        }
        by_touch.sort_unstable_by_key(|(touch, _)| *touch);
        for (touch, key) in by_touch {
            fresh.lru.insert(touch, key);
            fresh.reschedule(key);
        }
        fresh.seq = fresh.seq.max(old.seq);
        for SavedPending { seq, mut obs } in old.pending {
            let Some(window) = remap(obs.window) else {
                continue;
            };
            obs.window = window;
            // Saved keys include every key something waits for.
            let key = fresh.keys.intern(window, &obs.group, 0);
            fresh.keys.get_mut(key).expect("just interned").waiting += 1;
            fresh.pending += 1;
            let order = observation_order(&obs, seq);
            let item = Item::Observation(key, obs);
            let gates = fresh.keys.gates(&item);
            fresh.clock.place(order, item, gates);
            report.pending += 1;
        }
        fresh.stats = old.stats;
        *self = fresh;
        report
    }
}

/// The order an observation is applied in among equal times: by the
/// event's hash, then a later slot of the same event first (so that one
/// event never completes two steps of an ordered sequence), then arrival.
fn observation_order<E>(obs: &Observation<E>, seq: u64) -> Order {
    (
        obs.time,
        OBSERVATION,
        obs.tie,
        obs.window,
        usize::MAX - obs.slot,
        seq,
    )
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct SavedSource {
    key: SourceKey,
    max_seen: Option<Millis>,
    ordered: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(bound(serialize = "E: Serialize", deserialize = "E: DeserializeOwned"))]
struct SavedKey<E> {
    window: usize,
    group: GroupKey,
    /// The organisation whose clock it follows.
    actor: Option<String>,
    state: Option<GroupState<E>>,
    contributors: Vec<SourceId>,
    applied: Option<Millis>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(bound(serialize = "E: Serialize", deserialize = "E: DeserializeOwned"))]
struct SavedPending<E> {
    seq: u64,
    obs: Observation<E>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(bound(serialize = "E: Serialize", deserialize = "E: DeserializeOwned"))]
struct SavedState<E> {
    sources: Vec<SavedSource>,
    keys: Vec<SavedKey<E>>,
    pending: Vec<SavedPending<E>>,
    rules: Vec<RuleMeta>,
    seq: u64,
    stats: WindowStats,
}

/// The serialisable state of a runtime, tagged with the rules it belongs to.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(bound(serialize = "E: Serialize", deserialize = "E: DeserializeOwned"))]
pub struct WindowSnapshot<E> {
    rule_keys: Vec<String>,
    state: SavedState<E>,
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

    fn source(runtime: &mut WindowRuntime<u32>, host: &str) -> SourceId {
        runtime.source(SourceKey {
            input: "test".into(),
            actor: None,
            host: Some(host.into()),
        })
    }

    /// Every observation from one source, released after each.
    fn run(
        runtime: &mut WindowRuntime<u32>,
        events: Vec<Observation<u32>>,
    ) -> Vec<WindowAlert<u32>> {
        let s = source(runtime, "one");
        let mut out = Vec::new();
        for e in events {
            runtime.ingest(e, s).unwrap();
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
        let s = source(&mut runtime, "h1");
        runtime.ingest(obs(0, "h1", None), s).unwrap();
        let text = serde_json::to_string(&runtime.snapshot()).unwrap();
        let mut restored = WindowRuntime::<u32>::new(plan(FEW), WindowLimits::default());
        let report = restored.restore(serde_json::from_str(&text).unwrap(), 0);
        assert_eq!(
            report,
            RestoreReport {
                rules: 1,
                dropped_rules: 0,
                pending: 1,
                sources: 1,
            }
        );
        // The source's progress came back: an event older than its
        // watermark is late.
        let s = source(&mut restored, "h1");
        restored.ingest(obs(30_000, "h1", None), s).unwrap();
        assert!(restored.ingest(obs(20_000, "h1", None), s).is_err());
        let other = "title: other\ncorrelation: {type: event_count, rules: [base], group-by: [host], timespan: 10s, condition: {gte: 3}}\n";
        let mut changed = WindowRuntime::<u32>::new(plan(other), WindowLimits::default());
        let report = changed.restore(serde_json::from_str(&text).unwrap(), 0);
        assert_eq!(
            report,
            RestoreReport {
                rules: 0,
                dropped_rules: 1,
                pending: 0,
                sources: 1,
            }
        );
    }

    const THREE: &str = "title: three\ncorrelation: {type: event_count, rules: [base], group-by: [host], timespan: 1m, condition: {gte: 3}}\n";

    #[test]
    fn a_source_far_behind_is_not_late_and_holds_back_only_its_own_keys() {
        let mut runtime = WindowRuntime::new(plan(THREE), WindowLimits::default());
        let now = source(&mut runtime, "now");
        let backlog = source(&mut runtime, "backlog");
        let hour = 3_600_000;
        let mut out = Vec::new();
        for i in 0..3 {
            runtime
                .ingest(obs(10 * hour + i * 1_000, "now", None), now)
                .unwrap();
            // Two hours behind, from its own sender: not late.
            runtime
                .ingest(obs(8 * hour + i * 1_000, "backlog", None), backlog)
                .unwrap();
        }
        // Each key's third event waits only for its own source's lateness.
        runtime
            .ingest(obs(10 * hour + 10_000, "now", None), now)
            .unwrap();
        runtime.release(&mut out);
        let fired: Vec<_> = out.iter().map(|a| a.group[0].1.clone()).collect();
        assert_eq!(fired, vec![Some("now".to_string())]);
        runtime
            .ingest(obs(8 * hour + 10_000, "backlog", None), backlog)
            .unwrap();
        runtime.release(&mut out);
        assert_eq!(out.len(), 2);
        assert_eq!(out[1].first, 8 * hour);
        assert_eq!(runtime.stats().late, 0);
    }

    #[test]
    fn a_key_fed_by_several_sources_is_decided_in_event_time_order() {
        // A sequence `base` then `other` within 1 m, grouped by user; the
        // steps come from two hosts whose events arrive out of order.
        let rules = "title: other\nname: other\nlogsource: {product: test}\ndetection: {sel: {a: 2}, condition: sel}\n---\ntitle: then\ncorrelation: {type: temporal_ordered, rules: [base, other], group-by: [user], timespan: 1m}\n";
        let limits = WindowLimits {
            allowed_lateness: 0,
            ..WindowLimits::default()
        };
        let mut runtime = WindowRuntime::new(plan(rules), limits);
        let a = source(&mut runtime, "a");
        let b = source(&mut runtime, "b");
        let other = |time| Observation {
            slot: 1,
            ..obs(time, "bob", None)
        };
        let mut out = Vec::new();
        // Both hosts have fed bob's key before.
        runtime.ingest(other(1_000), a).unwrap();
        runtime.ingest(other(2_000), b).unwrap();
        runtime.release(&mut out);
        // Host b's `other` at 20 s arrives first; a's `base` at 10 s later.
        runtime.ingest(other(20_000), b).unwrap();
        runtime.ingest(obs(5_000, "x", None), a).unwrap();
        runtime.release(&mut out);
        runtime.ingest(obs(10_000, "bob", None), a).unwrap();
        runtime.ingest(obs(30_000, "x", None), a).unwrap();
        runtime.ingest(obs(30_000, "x", None), b).unwrap();
        runtime.release(&mut out);
        let then: Vec<_> = out.iter().filter(|a| a.window == 0).collect();
        assert_eq!(then.len(), 1, "{out:?}");
        assert_eq!((then[0].first, then[0].last), (10_000, 20_000));
        assert_eq!(runtime.stats().reordered, 0);
    }

    const THEN: &str = "title: other\nname: other\nlogsource: {product: test}\ndetection: {sel: {a: 2}, condition: sel}\n---\ntitle: then\ncorrelation: {type: temporal_ordered, rules: [base, other], group-by: [user], timespan: 1m}\n";

    /// Two events of the same time are applied in the order of their hash,
    /// whichever arrives first.
    #[test]
    fn equal_times_are_ordered_by_the_event_not_by_arrival() {
        for (base_tie, other_tie, fires) in [(5, 3, false), (3, 5, true)] {
            let limits = WindowLimits {
                allowed_lateness: 0,
                ..WindowLimits::default()
            };
            let mut runtime = WindowRuntime::new(plan(THEN), limits);
            let s = source(&mut runtime, "h");
            let mut out = Vec::new();
            let base = Observation {
                tie: base_tie,
                ..obs(1_000, "bob", None)
            };
            let other = Observation {
                tie: other_tie,
                slot: 1,
                ..obs(1_000, "bob", None)
            };
            runtime.ingest(base, s).unwrap();
            runtime.release(&mut out);
            runtime.ingest(other, s).unwrap();
            runtime.release(&mut out);
            runtime.finish(&mut out);
            assert_eq!(out.len(), usize::from(fires), "{out:?}");
        }
    }

    /// A brute force on one host followed by a logon recorded on another: the
    /// chained sequence sees the steps in event-time order, even when the
    /// logon's host is slower to send.
    #[test]
    fn a_chained_step_waits_for_the_other_sources_of_its_key() {
        let rules = "title: other\nname: other\nlogsource: {product: test}\ndetection: {sel: {a: 2}, condition: sel}\n---\ntitle: burst\nname: burst\ncorrelation: {type: event_count, rules: [base], group-by: [user], timespan: 1m, condition: {gte: 3}}\n---\ntitle: then\ncorrelation: {type: temporal_ordered, rules: [burst, other], group-by: [user], timespan: 5m}\n";
        for (logon_at, fires) in [(10_000, false), (50_000, true)] {
            let mut runtime = WindowRuntime::new(plan(rules), WindowLimits::default());
            let dc1 = source(&mut runtime, "dc1");
            let dc2 = source(&mut runtime, "dc2");
            let mut out = Vec::new();
            let logon = |time| Observation {
                window: 1,
                slot: 1,
                ..obs(time, "bob", None)
            };
            // The logon host has sent before (it feeds the key), and sends
            // its logon first.
            runtime.ingest(logon(1_000), dc2).unwrap();
            runtime.ingest(logon(logon_at), dc2).unwrap();
            // The brute force host runs ahead: three failures by 30 s.
            for t in [20_000, 25_000, 30_000, 40_000, 60_000] {
                runtime.ingest(obs(t, "bob", None), dc1).unwrap();
                runtime.release(&mut out);
            }
            runtime.ingest(obs(70_000, "x", None), dc2).unwrap();
            runtime.release(&mut out);
            runtime.finish(&mut out);
            let then: Vec<_> = out.iter().filter(|a| a.window == 1).collect();
            assert_eq!(
                then.len(),
                usize::from(fires),
                "logon at {logon_at}: {out:?}"
            );
            assert_eq!(runtime.stats().reordered, 0);
        }
    }

    #[test]
    fn an_idle_host_is_found_silent_by_its_organisations_other_hosts() {
        let silent = "title: quiet\nlogsource: {product: test}\ndetection: {sel: {a: 2}, condition: sel}\nstatistic: {type: absence, group-by: [host], timespan: 10m}\n";
        let mut runtime = WindowRuntime::new(plan(silent), WindowLimits::default());
        let quiet = source(&mut runtime, "quiet");
        let busy = source(&mut runtime, "busy");
        let minute = 60_000;
        let mut out = Vec::new();
        runtime.set_wall(0);
        runtime.ingest(obs(minute, "quiet", None), quiet).unwrap();
        // A live stream: a minute of event time per minute of wall clock.
        for m in 1..30 {
            let wall = m as u64 * 60_000;
            runtime.set_wall(wall);
            runtime.ingest(obs(m * minute, "busy", None), busy).unwrap();
            runtime.tick(wall, &mut out);
            // Not before the silence has lasted 10 minutes (due at 11 min).
            assert_eq!(out.len(), usize::from(m >= 12), "minute {m}: {out:?}");
        }
        assert_eq!(out.len(), 1, "{out:?}");
        assert_eq!(out[0].group[0].1.as_deref(), Some("quiet"));
        assert_eq!(out[0].first, minute);
    }
}
