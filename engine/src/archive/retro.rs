//! Retro-hunts: after a reload swaps in new or changed rules (told apart
//! by [`vagt_rules::RuleSet::digest`]), those rules are run over the
//! archive's last `archive.retro_hunt`, on a thread of their own while the
//! stream goes on. Their alerts are marked `retrospective` and go to
//! delivery like any other, each id at most once: an id this run already
//! emitted (the stream's own, or an earlier retro-hunt's) is not sent
//! again.

use std::collections::{HashSet, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::mpsc;
use vagt_connectors::DecoderConfig;
use vagt_rules::window::{TimestampSpec, WindowPlan};
use vagt_rules::{RuleMatch, RuleSet};

use super::input::{ArchiveInput, ScanReport};
use super::layout::ArchiveError;
use super::ledger::{not_in, EmittedLog, Ledger};
use super::scan::scan;
use super::StoreConfig;
use crate::alert::{now_rfc3339, Alert, AlertBuilder, FieldCandidates};
use crate::catalog::Catalog;
use crate::sinks::Delivery;
use crate::windows::WindowStage;

/// Alert ids remembered, at most: beyond it the oldest are forgotten.
const REMEMBERED: usize = 1_000_000;

/// The alert ids this run emitted, oldest first.
#[derive(Debug, Clone, Default)]
pub(crate) struct Emitted(Arc<Mutex<EmittedIds>>);

#[derive(Debug, Default)]
struct EmittedIds {
    ids: HashSet<String>,
    order: VecDeque<String>,
    /// Where the ids are kept for later runs.
    log: Option<EmittedLog>,
}

impl EmittedIds {
    /// Remembers `id`; whether it is new.
    fn insert(&mut self, id: &str) -> bool {
        if !self.ids.insert(id.to_string()) {
            return false;
        }
        self.order.push_back(id.to_string());
        if self.order.len() > REMEMBERED {
            if let Some(old) = self.order.pop_front() {
                self.ids.remove(&old);
            }
        }
        true
    }
}

impl Emitted {
    /// Remembers `earlier` (ids sent by earlier runs), and keeps the ids
    /// sent from now on in `log` too.
    pub fn resumed(earlier: Vec<String>, log: EmittedLog) -> Emitted {
        let mut ids = EmittedIds::default();
        for id in &earlier {
            ids.insert(id);
        }
        ids.log = Some(log);
        Emitted(Arc::new(Mutex::new(ids)))
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, EmittedIds> {
        self.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Remembers the ids of `alerts`, sent.
    pub fn record(&self, alerts: &[Alert]) {
        let mut emitted = self.lock();
        let new: Vec<&str> = alerts
            .iter()
            .filter(|a| emitted.insert(&a.id))
            .map(|a| a.id.as_str())
            .collect();
        if let Some(log) = &mut emitted.log {
            log.append(new.into_iter());
        }
    }

    /// Keeps the alerts whose ids were not emitted before, and remembers
    /// them; how many were dropped.
    pub fn keep_new(&self, alerts: &mut Vec<Alert>) -> usize {
        let before = alerts.len();
        let mut emitted = self.lock();
        alerts.retain(|a| emitted.insert(&a.id));
        before - alerts.len()
    }

    /// Keeps `ids`, sent, for later runs (after [`Emitted::keep_new`],
    /// once delivery took their alerts).
    pub fn sent(&self, ids: &[String]) {
        if let Some(log) = &mut self.lock().log {
            log.append(ids.iter().map(String::as_str));
        }
    }
}

/// What a retro-hunt needs besides the rules.
#[derive(Debug, Clone)]
pub(crate) struct RetroHunts {
    pub dir: std::path::PathBuf,
    pub span: Duration,
    pub decoder: DecoderConfig,
    pub timestamp: TimestampSpec,
    pub emitted: Emitted,
    /// The archive's record of the rules that hunted it, and its
    /// generations: the number of the last set given out and of the last
    /// recorded (an older set's hunt ending late records nothing).
    pub ledger: Ledger,
    generations: Arc<(AtomicU64, Mutex<u64>)>,
    /// The hunts started, which the run's end waits for.
    running: Arc<Mutex<Vec<std::thread::JoinHandle<RetroHuntReport>>>>,
    /// Window stages for hunts of windowed rules.
    stages: StageMaker,
    /// The object store the archive's files are uploaded to, if any.
    store: Option<StoreConfig>,
    /// The indicators that hunted the archive, and those being hunted.
    indicators: Arc<Mutex<IndicatorLedger>>,
    /// Held while the indicators' record is written.
    indicators_writer: Arc<Mutex<()>>,
}

/// What the retro-hunts know of the feeds' indicators.
#[derive(Debug, Default)]
struct IndicatorLedger {
    /// The keys of those that hunted the archive (from the ledger, once
    /// looked at).
    known: Option<HashSet<u64>>,
    /// The keys of those whose hunt is on.
    hunting: HashSet<u64>,
    /// The feeds in force.
    intel: Option<Arc<crate::intel::Intel>>,
}

/// Makes a window stage over one finite input (the archive) for a plan.
#[derive(Clone)]
pub(crate) struct StageMaker(pub Arc<dyn Fn(WindowPlan) -> WindowStage + Send + Sync>);

impl std::fmt::Debug for StageMaker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("StageMaker")
    }
}

/// The rules a hunt runs: detection rules and windowed rules (indices
/// into the set and the plan).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Selection {
    pub rules: Vec<usize>,
    pub windows: Vec<usize>,
}

impl Selection {
    pub fn is_empty(&self) -> bool {
        self.rules.is_empty() && self.windows.is_empty()
    }

    pub fn len(&self) -> usize {
        self.rules.len() + self.windows.len()
    }
}

/// The windowed rules of `plan` to hunt: those `known` does not know
/// (by key), those a hunted detection rule feeds, and the windowed rules
/// they feed in turn.
fn windows_to_hunt(plan: &WindowPlan, known: &dyn Fn(&str) -> bool, rules: &[usize]) -> Vec<usize> {
    let mut hunted: Vec<bool> = plan.rules.iter().map(|r| !known(&r.key)).collect();
    let mut queue: Vec<usize> = rules
        .iter()
        .flat_map(|&r| plan.base_feeds(r).iter().map(|f| f.window))
        .chain((0..hunted.len()).filter(|&w| hunted[w]))
        .collect();
    while let Some(window) = queue.pop() {
        hunted[window] = true;
        for feed in plan.window_feeds(window) {
            if !hunted[feed.window] {
                queue.push(feed.window);
            }
        }
    }
    (0..hunted.len()).filter(|&w| hunted[w]).collect()
}
/// The rules of `new` (and windowed rules of `new_plan`) that `old`
/// (`old_plan`) does not have with the same detection.
pub(crate) fn new_or_changed(
    (old, old_plan): (&RuleSet, &WindowPlan),
    (new, new_plan): (&RuleSet, &WindowPlan),
) -> Selection {
    let known: HashSet<[u8; 32]> = (0..old.len()).map(|i| old.digest(i)).collect();
    let rules: Vec<usize> = (0..new.len())
        .filter(|&i| !known.contains(&new.digest(i)))
        .collect();
    let keys: HashSet<&str> = old_plan.rules.iter().map(|r| r.key.as_str()).collect();
    let windows = windows_to_hunt(new_plan, &|key| keys.contains(key), &rules);
    Selection { rules, windows }
}

/// The rules, the catalog and the place to send alerts, for one hunt.
pub(crate) struct Hunt {
    /// Of the set, from [`RetroHunts::generation`].
    pub generation: u64,
    /// Set when the run is stopping: the hunt gives up.
    pub stop: Arc<std::sync::atomic::AtomicBool>,
    /// Answered once the archive committed what came before the reload.
    pub committed: Option<tokio::sync::oneshot::Receiver<()>>,
    pub set: Arc<RuleSet>,
    pub plan: Arc<WindowPlan>,
    pub selection: Selection,
    pub catalog: Arc<Catalog>,
    pub fields: FieldCandidates,
    pub sinks: mpsc::Sender<Delivery>,
    /// A hunt of indicators newly in force instead of rules: the feeds,
    /// and the new indicators compiled.
    pub intel: Option<(Arc<crate::intel::Intel>, Arc<crate::intel::Loaded>)>,
}

impl RetroHunts {
    /// Retro-hunts over the archive in `dir`, resuming its ledger: the
    /// ids sent within `span` are not sent again.
    ///
    /// # Errors
    /// The ledger cannot be read.
    pub fn open(
        dir: std::path::PathBuf,
        span: Duration,
        decoder: DecoderConfig,
        timestamp: TimestampSpec,
        stages: StageMaker,
        store: Option<StoreConfig>,
    ) -> Result<RetroHunts, ArchiveError> {
        let ledger = Ledger::open(&dir)?;
        let earlier = ledger.emitted_since(span, chrono::Utc::now().date_naive())?;
        Ok(RetroHunts {
            emitted: Emitted::resumed(earlier, ledger.log()),
            dir,
            span,
            decoder,
            timestamp,
            ledger,
            generations: Arc::default(),
            running: Arc::default(),
            stages,
            store,
            indicators: Arc::default(),
            indicators_writer: Arc::default(),
        })
    }

    /// Has `intel` (the feeds now in force: at start, or after a reload
    /// replaced them) hunt the indicators in force that no run recorded
    /// as having hunted the archive and no hunt is on: those that came
    /// while vagt was down, and those of feeds new to it. When the archive
    /// has no record and there are feeds, those in force are recorded,
    /// not hunted; with no feeds yet, any that come later are new.
    pub fn indicators_not_yet_hunted(&self, intel: Option<&Arc<crate::intel::Intel>>) {
        let in_force = intel.map(|i| i.keyed_in_force());
        let keys = in_force.as_ref().map(|f| f.keys()).unwrap_or_default();
        let mut state = self.lock_indicators();
        state.intel = intel.cloned();
        if state.known.is_none() {
            match self.ledger.known_indicators() {
                Ok(Some(keys)) => state.known = Some(keys),
                outcome => {
                    if let Err(e) = outcome {
                        tracing::error!(error = %e, "retro-hunts: the record of earlier indicators cannot be read; the indicators in force are recorded, not hunted");
                    } else if intel.is_some() {
                        tracing::info!("retro-hunts: no earlier record of indicators in the archive; the indicators in force are recorded, not hunted");
                    }
                    state.known = Some(keys);
                    drop(state);
                    if intel.is_some() {
                        self.write_indicators();
                    }
                    return;
                }
            }
        }
        let (Some(intel), Some(in_force)) = (intel, in_force) else {
            return;
        };
        let known = state.known.as_ref().map_or(0, HashSet::len);
        let new: HashSet<u64> = keys
            .into_iter()
            .filter(|k| {
                !state.known.as_ref().is_some_and(|known| known.contains(k))
                    && !state.hunting.contains(k)
            })
            .collect();
        state.hunting.extend(&new);
        drop(state);
        let count = intel.hunt_these(&in_force, &new);
        if count > 0 {
            tracing::info!(
                indicators = count,
                recorded = known,
                "retro-hunts: indicators in force that have not hunted the archive (new while vagt was down, or of a new feed) are hunted"
            );
        }
    }

    fn lock_indicators(&self) -> std::sync::MutexGuard<'_, IndicatorLedger> {
        self.indicators
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Records the indicators of `hunted` (of `intel`, which a reload may
    /// have replaced since) as having hunted the archive, with those
    /// recorded before that the feeds now in force still hold.
    fn record_indicators(&self, intel: &crate::intel::Intel, hunted: &crate::intel::Loaded) {
        let keys = intel.keys_of(hunted, chrono::Utc::now().timestamp_millis());
        let current = self.lock_indicators().intel.clone();
        let in_force = current.map(|i| i.keyed_in_force().keys());
        {
            let mut state = self.lock_indicators();
            state.hunting.retain(|k| !keys.contains(k));
            let known = state.known.get_or_insert_default();
            known.extend(keys);
            if let Some(in_force) = in_force {
                known.retain(|k| in_force.contains(k));
            }
        }
        self.write_indicators();
    }

    /// Writes the record as it is now; one writer at a time, so that an
    /// older record never replaces a newer.
    fn write_indicators(&self) {
        let _writer = self
            .indicators_writer
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let keys = self.lock_indicators().known.clone().unwrap_or_default();
        if let Err(e) = self.ledger.record_indicators(&keys) {
            tracing::error!(error = %e, "retro-hunts: the indicators in force cannot be recorded; the next start hunts them again");
        }
    }

    /// A number for a rule set newly in force, greater than the last.
    pub fn generation(&self) -> u64 {
        self.generations.0.fetch_add(1, Ordering::Relaxed) + 1
    }

    /// The rules of `set` and windowed rules of `plan` (generation
    /// `generation`, the first) that no earlier run recorded as having
    /// hunted the archive; none when no run recorded any (nothing to
    /// compare with) or all did, and the rules are then recorded at once.
    pub fn not_yet_hunted(&self, set: &RuleSet, plan: &WindowPlan, generation: u64) -> Selection {
        let selection = match self.ledger.known_rules() {
            Ok(Some(known)) => {
                let rules = not_in(&known.rules, set);
                let windows = windows_to_hunt(plan, &|key| known.windows.contains(key), &rules);
                Selection { rules, windows }
            }
            Ok(None) => {
                tracing::info!("retro-hunts: no earlier record of rules in the archive; the rules in force are recorded, not hunted");
                Selection::default()
            }
            Err(e) => {
                tracing::error!(error = %e, "retro-hunts: the record of earlier rules cannot be read; the rules in force are recorded, not hunted");
                Selection::default()
            }
        };
        if selection.is_empty() {
            self.record(set, plan, generation);
        }
        selection
    }

    /// Records `set` and `plan` as having hunted the archive, unless a
    /// later set was recorded already.
    pub fn record(&self, set: &RuleSet, plan: &WindowPlan, generation: u64) {
        let mut recorded = self
            .generations
            .1
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if *recorded > generation {
            return;
        }
        match self.ledger.record_rules(set, plan) {
            Ok(()) => *recorded = generation,
            Err(e) => {
                tracing::error!(error = %e, "retro-hunts: the rules in force cannot be recorded; the next start hunts them again");
            }
        }
    }

    /// Starts hunting `hunt.rules` of `hunt.set` over the archive's last
    /// `span`, on a thread of its own.
    pub fn start(&self, hunt: Hunt) {
        let settings = self.clone();
        let handle = std::thread::spawn(move || settings.run(hunt));
        self.running
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .push(handle);
    }

    /// Waits for the hunts started (a stopping run's give up at their
    /// next batch); what they did.
    pub fn wait(&self) -> RetroHuntReport {
        let running = std::mem::take(
            &mut *self
                .running
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner),
        );
        let mut total = RetroHuntReport::default();
        for handle in running {
            match handle.join() {
                Ok(report) => total.add(&report),
                Err(_) => {
                    tracing::error!("a retro-hunt failed unexpectedly");
                    total.hunts += 1;
                    total.unfinished += 1;
                }
            }
        }
        total
    }

    fn run(self, mut hunt: Hunt) -> RetroHuntReport {
        let mut out = HuntOutput {
            emitted: &self.emitted,
            sinks: &hunt.sinks,
            report: RetroHuntReport {
                hunts: 1,
                rules: hunt.selection.len(),
                unfinished: 1,
                ..RetroHuntReport::default()
            },
            gone: false,
        };
        if let Some(committed) = hunt.committed.take() {
            // A writer that stopped answers no more: the run is ending.
            if committed.blocking_recv().is_err() {
                return out.report;
            }
        }
        let started = Instant::now();
        // The folder holds what waits to be uploaded, the store what was
        // (a file in both for a moment gives the same alert ids, sent once).
        let since = Some(humantime::format_duration(self.span).to_string());
        let folder = ArchiveInput {
            dir: self.dir.clone(),
            since,
            until: None,
            actors: Vec::new(),
            store: None,
        };
        // The folder first: a file uploaded (and removed) while it is
        // read is then still found in the store.
        let inputs: Vec<ArchiveInput> = std::iter::once(folder.clone())
            .chain(self.store.iter().map(|store| ArchiveInput {
                store: Some(store.clone()),
                ..folder.clone()
            }))
            .collect();
        let report = Mutex::new(ScanReport::default());
        let mut scratch = hunt.set.scratch();
        // The windowed rules hunted, by the id their alerts carry; their
        // stage holds the whole plan, since windowed rules feed each other.
        let window_ids: HashSet<String> = hunt
            .selection
            .windows
            .iter()
            .map(|&w| {
                let meta = &hunt.plan.rules[w].rule.meta;
                meta.id.clone().unwrap_or_else(|| meta.title.clone())
            })
            .collect();
        let mut stage = (!window_ids.is_empty()).then(|| (self.stages.0)((*hunt.plan).clone()));
        let fields = &hunt.fields;
        let mut on_batch = |batch: vagt_connectors::EventBatch| {
            // A stopped run does not wait for its hunts; the next
            // start hunts again.
            out.gone = out.gone || hunt.stop.load(Ordering::Relaxed);
            if out.gone {
                return;
            }
            let detected_at = now_rfc3339();
            let builder = AlertBuilder::new(&hunt.catalog, fields, &detected_at);
            if let Some((intel, added)) = &hunt.intel {
                out.send(intel.alerts_of(added, &builder, &batch, &self.timestamp));
                return;
            }
            let all = hunt.set.evaluate(&batch.batch, &mut scratch);
            let matches: Vec<RuleMatch> = all
                .iter()
                .filter(|m| hunt.selection.rules.contains(&m.rule) && hunt.plan.base_emits(m.rule))
                .copied()
                .collect();
            let mut alerts = builder.single_event(&hunt.set, &batch, &matches, &self.timestamp);
            if let Some(stage) = stage.as_mut() {
                match stage.observe(&hunt.set, &hunt.catalog, fields, 0, &batch, &all) {
                        Ok(dead) => dead.into_iter().for_each(|l| {
                            tracing::warn!(source = %l.source, line = l.line, reason = %l.reason, "retro-hunt: an archived event was refused by the windowed rules");
                        }),
                        Err(e) => {
                            tracing::error!(error = %e, "retro-hunt: the windowed rules failed");
                            out.gone = true;
                        }
                    }
                let mut fired = stage.release(&detected_at);
                fired.retain(|a| window_ids.contains(&a.rule.id));
                alerts.extend(fired);
            }
            out.send(alerts);
        };
        let mut on_dead = |letter: vagt_connectors::DeadLetter| {
            tracing::warn!(source = %letter.source, line = letter.line, reason = %letter.reason, "retro-hunt: an archived event does not decode");
        };
        let mut result = Ok(());
        for input in &inputs {
            result = scan(
                input,
                &self.decoder,
                &report,
                &AtomicU64::new(0),
                &mut on_batch,
                &mut on_dead,
            );
            if result.is_err() {
                break;
            }
        }
        if let (Some(stage), Ok(()), false) = (stage.as_mut(), &result, out.gone) {
            let mut fired = Vec::new();
            if let Err(e) = stage.finish(&mut |alerts| fired.extend(alerts)) {
                tracing::error!(error = %e, "retro-hunt: the windowed rules failed");
                out.gone = true;
            }
            fired.retain(|a| window_ids.contains(&a.rule.id));
            out.send(fired);
        }
        let report = report
            .into_inner()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let mut outcome = out.report.clone();
        let gone = out.gone;
        outcome.events = report.rows;
        match result {
            Ok(()) if !gone => {
                match &hunt.intel {
                    None => self.record(&hunt.set, &hunt.plan, hunt.generation),
                    Some((intel, added)) => self.record_indicators(intel, added),
                }
                outcome.unfinished = 0;
                let what = if hunt.intel.is_some() {
                    "retro-hunt of new indicators finished"
                } else {
                    "retro-hunt of new and changed rules finished"
                };
                tracing::info!(
                    rules = hunt.selection.rules.len(),
                    windowed_rules = hunt.selection.windows.len(),
                    span = %humantime::format_duration(self.span),
                    files = report.files,
                    skipped = report.skipped.len(),
                    events = report.rows,
                    alerts = outcome.alerts,
                    already_emitted = outcome.already_emitted,
                    seconds = started.elapsed().as_secs_f64(),
                    "{what}"
                );
            }
            Ok(()) => tracing::warn!(
                alerts = outcome.alerts,
                "retro-hunt given up: the run is stopping or its windowed rules failed; the next start hunts these rules again"
            ),
            Err(e) => tracing::error!(error = %e, "retro-hunt failed"),
        }
        outcome
    }
}

/// Where a hunt's alerts go: each id at most once, marked retrospective.
struct HuntOutput<'a> {
    emitted: &'a Emitted,
    sinks: &'a mpsc::Sender<Delivery>,
    report: RetroHuntReport,
    /// The sinks are gone, the run is stopping, or the hunt failed.
    gone: bool,
}

impl HuntOutput<'_> {
    fn send(&mut self, mut alerts: Vec<Alert>) {
        if self.gone || alerts.is_empty() {
            return;
        }
        self.report.already_emitted += self.emitted.keep_new(&mut alerts) as u64;
        if alerts.is_empty() {
            return;
        }
        alerts.iter_mut().for_each(|a| a.retrospective = true);
        let ids: Vec<String> = alerts.iter().map(|a| a.id.clone()).collect();
        if self
            .sinks
            .blocking_send(Delivery::Alerts(alerts, Instant::now()))
            .is_err()
        {
            // Not delivered: not kept as sent either.
            self.gone = true;
            return;
        }
        self.report.alerts += ids.len() as u64;
        self.emitted.sent(&ids);
    }
}

/// What retro-hunts did (for `--stats`).
#[derive(Debug, Default, Clone, serde::Serialize)]
pub struct RetroHuntReport {
    /// Hunts started (at start and at reloads).
    pub hunts: u64,
    /// New and changed rules hunted, summed over hunts.
    pub rules: usize,
    /// Archived events read.
    pub events: u64,
    /// Retrospective alerts sent.
    pub alerts: u64,
    /// Alerts found that were sent before (by this run or an earlier
    /// one), not sent again.
    pub already_emitted: u64,
    /// Hunts that failed or were given up (their rules are hunted again
    /// at the next start).
    pub unfinished: u64,
}

impl RetroHuntReport {
    /// Adds `other`'s figures.
    pub fn add(&mut self, other: &RetroHuntReport) {
        self.hunts += other.hunts;
        self.rules += other.rules;
        self.events += other.events;
        self.alerts += other.alerts;
        self.already_emitted += other.already_emitted;
        self.unfinished += other.unfinished;
    }
}
