//! Event-time progress per source, and the gates that decide when an
//! observation may be applied and when a window's timer may fire.
//!
//! A *source* is who an event comes from: an input, and within it a sender
//! (the organisation and the host the profile names). Each source has its
//! own watermark, the latest event time it sent minus the allowed
//! lateness; an event is late only when it is older than its own source's
//! watermark. Sources are grouped in *domains*, one per organisation:
//! group keys always carry the organisation, so a window lives in exactly
//! one domain and no organisation's clock decides another's windows.
//!
//! ```text
//!  observation of key K ─► gate: the active contributors of K (the sources
//!  timer of key K ──────►        that fed it) whose watermark is behind
//!                                 │ all caught up            │ one behind: wait in its queue,
//!                                 ▼                          │ re-gated when it advances or
//!                               ready (event-time order) ◄───┘ goes idle
//!  timer of a key whose contributors are all idle or finished:
//!      waits for its domain's clock (the furthest watermark of the domain)
//! ```
//!
//! So a window is decided in event-time order of its own events, whichever
//! sources they come from; a source that is far behind holds back only the
//! keys it feeds; an idle (no event for `idle_after` of wall clock) or
//! finished source holds back no observation. A timer of a key whose
//! sources are idle waits until the organisation's clock has passed it
//! *and* the idle source's own time would have (its latest event plus the
//! wall-clock time it has been silent): a source pausing in a backlog is
//! not taken for silent by a clock hours ahead of it.

use std::collections::{BTreeMap, HashMap};

use serde::{Deserialize, Serialize};

use super::spec::Millis;

/// Index of a source.
pub type SourceId = u32;

/// Index of a domain (an organisation, or none).
pub type DomainId = u32;

/// Who an event comes from, for event-time progress.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct SourceKey {
    /// The input's name.
    pub input: String,
    /// The organisation that sent it, if known.
    pub actor: Option<String>,
    /// The host it comes from (the profile's host field), if known.
    pub host: Option<String>,
}

/// The order in which gated items are applied: event time, then class
/// (an observation before a timer due at the same time), then the
/// observation's tie-breakers and arrival sequence.
pub(crate) type Order = (Millis, u8, u64, usize, usize, u64);

/// Class of an observation in [`Order`].
pub(crate) const OBSERVATION: u8 = 0;
/// Class of a timer in [`Order`].
pub(crate) const TIMER: u8 = 1;

/// The watermark an item needs its gates to have reached: past its time,
/// so that every event of that time (not late: not before the watermark)
/// has arrived and equal times are applied in their tie-breaking order.
fn needs(order: &Order) -> Millis {
    order.0.saturating_add(1)
}

/// Whether a source still holds back what it feeds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Status {
    /// Sending: its watermark gates the keys it feeds.
    Active,
    /// Nothing for `idle_after` of wall clock: gates nothing until it sends
    /// again.
    Idle,
    /// Its input ended: gates nothing.
    Finished,
}

#[derive(Debug, Clone)]
pub(crate) struct Source {
    pub key: SourceKey,
    pub domain: DomainId,
    pub max_seen: Option<Millis>,
    /// A replayed history in event-time order: nothing is late, nothing
    /// waits for lateness.
    pub ordered: bool,
    pub status: Status,
    /// Wall clock (ms) of its last observation.
    last_arrival: u64,
}

#[derive(Debug)]
struct Domain<T> {
    /// The furthest watermark of its sources (idle and finished ones at
    /// their latest event): the clock for timers no source gates.
    clock: Option<Millis>,
    queue: BTreeMap<Order, T>,
}

/// What the clock needs to know of a gated item: the sources that feed its
/// key and the key's domain. `None`: its key is gone (the item is stale).
pub(crate) trait Gated<T> {
    fn gates(&self, item: &T) -> Option<(&[SourceId], DomainId)>;
}

/// A source or domain clock reading for metrics.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ClockReading {
    /// Sources known.
    pub sources: usize,
    /// Of them, idle.
    pub idle: usize,
    /// Of them, finished.
    pub finished: usize,
    /// The lowest watermark of an active source (the one furthest behind).
    pub lowest_active: Option<Millis>,
    /// The furthest clock of any domain.
    pub highest: Option<Millis>,
}

/// Sources, domains and the queues of what waits for them.
#[derive(Debug)]
pub(crate) struct Clock<T> {
    lateness: Millis,
    idle_after: u64,
    max_sources: usize,
    sources: Vec<Source>,
    queues: Vec<BTreeMap<Order, T>>,
    index: HashMap<SourceKey, SourceId>,
    domains: Vec<Domain<T>>,
    domain_index: HashMap<Option<String>, DomainId>,
    ready: BTreeMap<Order, T>,
    /// Sources whose watermark or gate moved: what they hold is re-gated
    /// up to it.
    dirty_sources: Vec<SourceId>,
    /// Sources that went idle or finished: everything they hold is
    /// re-gated.
    dirty_full: Vec<SourceId>,
    dirty_domains: Vec<DomainId>,
    wall: u64,
    /// Sources refused by `max_sources` (their events counted under the
    /// input's and organisation's catch-all source).
    pub over_limit: u64,
}

/// An event older than its source's watermark.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Late {
    /// The watermark of its source it fell behind.
    pub watermark: Millis,
}

impl<T> Clock<T> {
    pub fn new(lateness: Millis, idle_after: Millis, max_sources: usize) -> Self {
        Clock {
            lateness,
            idle_after: idle_after.max(0) as u64,
            max_sources: max_sources.max(1),
            sources: Vec::new(),
            queues: Vec::new(),
            index: HashMap::new(),
            domains: Vec::new(),
            domain_index: HashMap::new(),
            ready: BTreeMap::new(),
            dirty_sources: Vec::new(),
            dirty_full: Vec::new(),
            dirty_domains: Vec::new(),
            wall: 0,
            over_limit: 0,
        }
    }

    /// The source for `key`, created on first use. Beyond `max_sources`, a
    /// new host is counted under its input's and organisation's source
    /// without a host.
    pub fn source(&mut self, key: SourceKey, ordered: bool) -> SourceId {
        if let Some(&id) = self.index.get(&key) {
            return id;
        }
        if self.sources.len() >= self.max_sources && key.host.is_some() {
            self.over_limit += 1;
            return self.source(SourceKey { host: None, ..key }, ordered);
        }
        let domain = self.domain(key.actor.clone());
        let id = self.sources.len() as SourceId;
        self.sources.push(Source {
            key: key.clone(),
            domain,
            max_seen: None,
            ordered,
            status: if ordered {
                Status::Finished
            } else {
                Status::Active
            },
            last_arrival: self.wall,
        });
        self.queues.push(BTreeMap::new());
        self.index.insert(key, id);
        id
    }

    /// The domain of an organisation, created on first use.
    pub fn domain(&mut self, actor: Option<String>) -> DomainId {
        if let Some(&d) = self.domain_index.get(&actor) {
            return d;
        }
        let d = self.domains.len() as DomainId;
        self.domains.push(Domain {
            clock: None,
            queue: BTreeMap::new(),
        });
        self.domain_index.insert(actor, d);
        d
    }

    pub fn sources(&self) -> &[Source] {
        &self.sources
    }

    pub fn domain_of(&self, source: SourceId) -> DomainId {
        self.sources[source as usize].domain
    }

    /// The organisation of a domain.
    pub fn actor_of(&self, domain: DomainId) -> Option<&str> {
        self.domain_index
            .iter()
            .find(|(_, d)| **d == domain)
            .and_then(|(actor, _)| actor.as_deref())
    }

    /// Sets the wall clock (ms, any epoch) that arrivals are stamped with.
    pub fn set_wall(&mut self, wall: u64) {
        self.wall = wall;
    }

    /// The watermark a source gates with while active.
    fn watermark(&self, s: SourceId) -> Millis {
        let source = &self.sources[s as usize];
        match source.max_seen {
            None => Millis::MIN,
            Some(m) if source.ordered => m,
            Some(m) => m.saturating_sub(self.lateness),
        }
    }

    /// What a source has reached for its domain's clock: while active its
    /// watermark, once idle or finished its latest event.
    fn reached(&self, s: SourceId) -> Option<Millis> {
        let source = &self.sources[s as usize];
        match source.status {
            Status::Active => source.max_seen.map(|_| self.watermark(s)),
            Status::Idle | Status::Finished => source.max_seen,
        }
    }

    /// The time an idle source would have reached had it gone on sending:
    /// its latest event plus the wall-clock time since, never beyond its
    /// organisation's clock.
    fn extrapolated(&self, s: SourceId) -> Millis {
        let source = &self.sources[s as usize];
        let Some(max_seen) = source.max_seen else {
            return Millis::MIN;
        };
        let silent = self.wall.saturating_sub(source.last_arrival);
        let own = max_seen.saturating_add(Millis::try_from(silent).unwrap_or(Millis::MAX));
        let domain = self.domains[source.domain as usize]
            .clock
            .unwrap_or(max_seen);
        own.min(domain.max(max_seen))
    }

    /// The watermark with which `s` holds back an item of `class`, if it
    /// does: an active source its watermark; an idle one its extrapolated
    /// time, for timers only; a finished one nothing.
    fn gate(&self, s: SourceId, class: u8) -> Option<Millis> {
        match self.sources[s as usize].status {
            Status::Active => Some(self.watermark(s)),
            Status::Idle if class == TIMER => Some(self.extrapolated(s)),
            Status::Idle | Status::Finished => None,
        }
    }

    fn raise_domain(&mut self, s: SourceId) {
        let Some(reached) = self.reached(s) else {
            return;
        };
        let d = self.sources[s as usize].domain;
        let domain = &mut self.domains[d as usize];
        if domain.clock.is_none_or(|c| reached > c) {
            domain.clock = Some(reached);
            self.dirty_domains.push(d);
        }
    }

    /// An event of `s` at `time` arrives: refused if older than the
    /// source's watermark, else the source's progress moves on.
    pub fn arrive(&mut self, s: SourceId, time: Millis) -> Result<(), Late> {
        let wall = self.wall;
        let watermark = self.watermark(s);
        let source = &mut self.sources[s as usize];
        if !source.ordered && source.max_seen.is_some() && time < watermark {
            return Err(Late { watermark });
        }
        source.last_arrival = wall;
        let mut moved = false;
        if source.status != Status::Active {
            source.status = Status::Active;
            moved = true;
        }
        if source.max_seen.is_none_or(|m| time > m) {
            source.max_seen = Some(time);
            moved = true;
        }
        if moved {
            self.dirty_sources.push(s);
            self.raise_domain(s);
        }
        Ok(())
    }

    /// Sources that sent nothing for `idle_after` of wall clock stop
    /// holding back observations; the timers idle sources hold are looked
    /// at again as wall-clock time passes.
    pub fn idle_check(&mut self, wall: u64) {
        self.wall = wall;
        for s in 0..self.sources.len() {
            let source = &mut self.sources[s];
            match source.status {
                Status::Active
                    if !source.ordered
                        && source.last_arrival.saturating_add(self.idle_after) <= wall =>
                {
                    source.status = Status::Idle;
                    self.dirty_full.push(s as SourceId);
                    self.raise_domain(s as SourceId);
                }
                Status::Idle if !self.queues[s].is_empty() => {
                    self.dirty_sources.push(s as SourceId);
                }
                _ => {}
            }
        }
    }

    /// Every source of `input` has ended.
    pub fn finish_input(&mut self, input: &str) {
        for s in 0..self.sources.len() {
            if self.sources[s].key.input == input {
                self.finish_source(s as SourceId);
            }
        }
    }

    pub fn finish_source(&mut self, s: SourceId) {
        if self.sources[s as usize].status != Status::Finished {
            self.sources[s as usize].status = Status::Finished;
            self.dirty_full.push(s);
            self.raise_domain(s);
        }
    }

    /// Every source has ended.
    pub fn finish_all(&mut self) {
        for s in 0..self.sources.len() {
            self.finish_source(s as SourceId);
        }
    }

    /// Where an item goes now: the queue of the contributor furthest
    /// behind that it must wait for, its domain's queue (a timer no source
    /// gates), or ready.
    pub fn place(&mut self, order: Order, item: T, gates: Option<(&[SourceId], DomainId)>) {
        let Some((contributors, domain)) = gates else {
            self.ready.insert(order, item);
            return;
        };
        let need = needs(&order);
        let mut behind: Option<(Millis, SourceId)> = None;
        let mut gated = false;
        for &c in contributors {
            let Some(gate) = self.gate(c, order.1) else {
                continue;
            };
            gated = true;
            if gate < need && behind.is_none_or(|(b, _)| gate < b) {
                behind = Some((gate, c));
            }
        }
        // A timer of a key no source gates follows its domain.
        let domain_behind = !gated
            && order.1 == TIMER
            && self
                .domains
                .get(domain as usize)
                .is_some_and(|d| d.clock.is_none_or(|clock| clock < need));
        if let Some((_, c)) = behind {
            self.queues[c as usize].insert(order, item);
        } else if domain_behind {
            self.domains[domain as usize].queue.insert(order, item);
        } else {
            self.ready.insert(order, item);
        }
    }

    /// Takes an item back from wherever it waits (a rescheduled timer).
    pub fn take(&mut self, order: &Order, contributors: &[SourceId], domain: DomainId) -> bool {
        for &c in contributors {
            if self.queues[c as usize].remove(order).is_some() {
                return true;
            }
        }
        self.domains
            .get_mut(domain as usize)
            .is_some_and(|d| d.queue.remove(order).is_some())
            || self.ready.remove(order).is_some()
    }

    /// Moves on everything that the sources and domains that advanced,
    /// went idle or finished no longer hold back.
    pub fn settle(&mut self, keys: &impl Gated<T>) {
        loop {
            if let Some(s) = self.dirty_full.pop() {
                for (order, item) in std::mem::take(&mut self.queues[s as usize]) {
                    let gates = keys.gates(&item);
                    self.place(order, item, gates);
                }
            } else if let Some(s) = self.dirty_sources.pop() {
                let limit = match self.sources[s as usize].status {
                    Status::Active => self.watermark(s),
                    Status::Idle => self.extrapolated(s),
                    Status::Finished => Millis::MAX,
                };
                while let Some(entry) = self.queues[s as usize].first_entry() {
                    if needs(entry.key()) > limit {
                        break;
                    }
                    let (order, item) = entry.remove_entry();
                    let gates = keys.gates(&item);
                    self.place(order, item, gates);
                }
            } else if let Some(d) = self.dirty_domains.pop() {
                let Some(clock) = self.domains[d as usize].clock else {
                    continue;
                };
                while let Some(entry) = self.domains[d as usize].queue.first_entry() {
                    if needs(entry.key()) > clock {
                        break;
                    }
                    // Its key's sources may have come back since: gated
                    // again, not simply ready.
                    let (order, item) = entry.remove_entry();
                    let gates = keys.gates(&item);
                    self.place(order, item, gates);
                }
            } else {
                break;
            }
        }
    }

    /// The next item to apply, in event-time order.
    pub fn pop_ready(&mut self) -> Option<(Order, T)> {
        self.ready.pop_first()
    }

    /// Makes the oldest waiting observation of the source holding most
    /// ready ahead of its gates (to bound what waits). False when no
    /// observation waits.
    pub fn force_observation(&mut self) -> bool {
        let mut fullest: Vec<usize> = (0..self.queues.len())
            .filter(|&q| !self.queues[q].is_empty())
            .collect();
        fullest.sort_unstable_by_key(|&q| std::cmp::Reverse(self.queues[q].len()));
        for q in fullest {
            let Some(order) = self.queues[q].keys().find(|o| o.1 == OBSERVATION).copied() else {
                continue;
            };
            let item = self.queues[q].remove(&order).expect("just found");
            self.ready.insert(order, item);
            return true;
        }
        false
    }

    /// Everything still waiting (for snapshots).
    pub fn waiting(&self) -> impl Iterator<Item = (&Order, &T)> {
        self.queues
            .iter()
            .flat_map(|q| q.iter())
            .chain(self.domains.iter().flat_map(|d| d.queue.iter()))
            .chain(self.ready.iter())
    }

    pub fn reading(&self) -> ClockReading {
        let mut reading = ClockReading {
            sources: self.sources.len(),
            ..ClockReading::default()
        };
        for (s, source) in self.sources.iter().enumerate() {
            match source.status {
                Status::Idle => reading.idle += 1,
                Status::Finished => reading.finished += 1,
                Status::Active if source.max_seen.is_some() => {
                    let wm = self.watermark(s as SourceId);
                    reading.lowest_active = Some(reading.lowest_active.map_or(wm, |l| l.min(wm)));
                }
                Status::Active => {}
            }
        }
        reading.highest = self.domains.iter().filter_map(|d| d.clock).max();
        reading
    }

    /// Restores a source's progress from a snapshot: it holds back what it
    /// feeds until it sends again or goes idle, as if it had just sent.
    pub fn restore_source(
        &mut self,
        key: SourceKey,
        max_seen: Option<Millis>,
        ordered: bool,
    ) -> SourceId {
        let s = self.source(key, ordered);
        let source = &mut self.sources[s as usize];
        source.max_seen = max_seen.max(source.max_seen);
        source.last_arrival = self.wall;
        self.raise_domain(s);
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Items are (key contributors); the key table is a plain list.
    struct Keys(Vec<Vec<SourceId>>);

    impl Gated<usize> for Keys {
        fn gates(&self, item: &usize) -> Option<(&[SourceId], DomainId)> {
            self.0.get(*item).map(|c| (c.as_slice(), 0))
        }
    }

    fn key(host: &str) -> SourceKey {
        SourceKey {
            input: "in".into(),
            actor: None,
            host: Some(host.into()),
        }
    }

    fn order(time: Millis, class: u8, seq: u64) -> Order {
        (time, class, 0, 0, 0, seq)
    }

    fn drain(clock: &mut Clock<usize>, keys: &Keys) -> Vec<(Millis, usize)> {
        clock.settle(keys);
        std::iter::from_fn(|| clock.pop_ready().map(|(o, i)| (o.0, i))).collect()
    }

    #[test]
    fn lateness_is_judged_against_the_events_own_source() {
        let mut clock: Clock<usize> = Clock::new(5_000, 1_000, 100);
        let ahead = clock.source(key("ahead"), false);
        let behind = clock.source(key("behind"), false);
        clock.arrive(ahead, 1_000_000).unwrap();
        // Hours behind the other source, but its own first event.
        clock.arrive(behind, 10_000).unwrap();
        clock.arrive(behind, 6_000).unwrap();
        assert_eq!(clock.arrive(behind, 4_000), Err(Late { watermark: 5_000 }));
    }

    #[test]
    fn a_key_waits_for_every_active_source_that_feeds_it_and_no_other() {
        let mut clock: Clock<usize> = Clock::new(0, 1_000, 100);
        let a = clock.source(key("a"), false);
        let b = clock.source(key("b"), false);
        let slow = clock.source(key("slow"), false);
        // Key 0 is fed by a and b; key 1 only by a.
        let keys = Keys(vec![vec![a, b], vec![a]]);
        clock.arrive(slow, 0).unwrap();
        clock.arrive(a, 101).unwrap();
        clock.arrive(b, 50).unwrap();
        clock.place(order(100, OBSERVATION, 1), 0, keys.gates(&0));
        clock.place(order(100, OBSERVATION, 2), 1, keys.gates(&1));
        // Key 1 is ready (a is past 100); key 0 waits for b. The slow
        // source feeds neither and holds back nothing.
        assert_eq!(drain(&mut clock, &keys), vec![(100, 1)]);
        // At 100, b may still send events of time 100: not yet.
        clock.arrive(b, 100).unwrap();
        assert!(drain(&mut clock, &keys).is_empty());
        clock.arrive(b, 101).unwrap();
        assert_eq!(drain(&mut clock, &keys), vec![(100, 0)]);
    }

    #[test]
    fn an_idle_source_holds_back_no_observation_and_its_timers_wait_for_its_own_time() {
        let mut clock: Clock<usize> = Clock::new(5_000, 1_000, 100);
        let quiet = clock.source(key("quiet"), false);
        let busy = clock.source(key("busy"), false);
        let keys = Keys(vec![vec![quiet]]);
        clock.set_wall(0);
        clock.arrive(quiet, 10_000).unwrap();
        clock.place(order(10_000, OBSERVATION, 1), 0, keys.gates(&0));
        // A timer of the quiet host's key, due an hour after its event.
        clock.place(order(3_610_000, TIMER, 2), 0, keys.gates(&0));
        assert!(drain(&mut clock, &keys).is_empty());
        clock.set_wall(500);
        clock.arrive(busy, 7_200_000).unwrap();
        clock.idle_check(1_200);
        // Idle: its observation is applied. Its timer does not follow the
        // busy host two hours ahead: it may be pausing in a backlog.
        assert_eq!(drain(&mut clock, &keys), vec![(10_000, 0)]);
        clock.idle_check(1_800_000);
        assert!(drain(&mut clock, &keys).is_empty());
        // Silent for an hour of wall clock too: the timer fires.
        clock.idle_check(3_601_000);
        assert_eq!(drain(&mut clock, &keys), vec![(3_610_000, 0)]);
    }

    #[test]
    fn a_timer_on_the_domain_clock_is_gated_again_once_its_source_is_back() {
        let mut clock: Clock<usize> = Clock::new(0, 1_000, 100);
        let host = clock.source(key("host"), false);
        let other = clock.source(key("other"), false);
        let keys = Keys(vec![vec![host]]);
        clock.arrive(host, 1_000).unwrap();
        clock.finish_source(host);
        clock.place(order(5_000, TIMER, 1), 0, keys.gates(&0));
        assert!(drain(&mut clock, &keys).is_empty());
        // The host sends again (behind), then the domain passes the timer:
        // the timer waits for the host.
        clock.arrive(host, 2_000).unwrap();
        clock.arrive(other, 9_000).unwrap();
        assert!(drain(&mut clock, &keys).is_empty());
        clock.arrive(host, 6_000).unwrap();
        assert_eq!(drain(&mut clock, &keys), vec![(5_000, 0)]);
    }

    #[test]
    fn beyond_the_source_limit_hosts_share_their_inputs_source() {
        let mut clock: Clock<usize> = Clock::new(0, 1_000, 2);
        let a = clock.source(key("a"), false);
        let b = clock.source(key("b"), false);
        let c = clock.source(key("c"), false);
        let d = clock.source(key("d"), false);
        assert_ne!(a, b);
        assert_eq!(c, d);
        assert_eq!(clock.sources()[c as usize].key.host, None);
        assert_eq!(clock.over_limit, 2);
    }
}
