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
use vagt_rules::window::TimestampSpec;
use vagt_rules::{RuleMatch, RuleSet};

use super::input::{ArchiveInput, ScanReport};
use super::layout::ArchiveError;
use super::ledger::{not_in, EmittedLog, Ledger};
use super::scan::scan;
use crate::alert::{now_rfc3339, Alert, AlertBuilder, FieldCandidates};
use crate::catalog::Catalog;
use crate::sinks::Delivery;

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
        if let Some(log) = &mut emitted.log {
            log.append(alerts.iter().map(|a| a.id.as_str()));
        }
        before - alerts.len()
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
}
/// The rules of `new` that `old` does not have with the same detection.
pub(crate) fn new_or_changed(old: &RuleSet, new: &RuleSet) -> Vec<usize> {
    let known: HashSet<[u8; 32]> = (0..old.len()).map(|i| old.digest(i)).collect();
    (0..new.len())
        .filter(|&i| !known.contains(&new.digest(i)))
        .collect()
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
    pub rules: Vec<usize>,
    pub catalog: Arc<Catalog>,
    pub fields: FieldCandidates,
    pub sinks: mpsc::Sender<Delivery>,
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
        })
    }

    /// A number for a rule set newly in force, greater than the last.
    pub fn generation(&self) -> u64 {
        self.generations.0.fetch_add(1, Ordering::Relaxed) + 1
    }

    /// The rules of `set` (generation `generation`, the first) that no
    /// earlier run recorded as having hunted the archive; none when no
    /// run recorded any (nothing to compare with) or all did, and the set
    /// is then recorded at once.
    pub fn not_yet_hunted(&self, set: &RuleSet, generation: u64) -> Vec<usize> {
        let rules = match self.ledger.known_rules() {
            Ok(Some(known)) => not_in(&known, set),
            Ok(None) => {
                tracing::info!("retro-hunts: no earlier record of rules in the archive; the rules in force are recorded, not hunted");
                Vec::new()
            }
            Err(e) => {
                tracing::error!(error = %e, "retro-hunts: the record of earlier rules cannot be read; the rules in force are recorded, not hunted");
                Vec::new()
            }
        };
        if rules.is_empty() {
            self.record(set, generation);
        }
        rules
    }

    /// Records `set` as having hunted the archive, unless a later set was
    /// recorded already.
    pub fn record(&self, set: &RuleSet, generation: u64) {
        let mut recorded = self
            .generations
            .1
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if *recorded > generation {
            return;
        }
        match self.ledger.record_rules(set) {
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
        let mut outcome = RetroHuntReport {
            hunts: 1,
            rules: hunt.rules.len(),
            unfinished: 1,
            ..RetroHuntReport::default()
        };
        if let Some(committed) = hunt.committed.take() {
            // A writer that stopped answers no more: the run is ending.
            if committed.blocking_recv().is_err() {
                return outcome;
            }
        }
        let started = Instant::now();
        let input = ArchiveInput {
            dir: self.dir.clone(),
            since: Some(humantime::format_duration(self.span).to_string()),
            until: None,
            actors: Vec::new(),
        };
        let report = Mutex::new(ScanReport::default());
        let mut scratch = hunt.set.scratch();
        let mut gone = false;
        let result = scan(
            &input,
            &self.decoder,
            &report,
            &AtomicU64::new(0),
            |batch| {
                // A stopped run does not wait for its hunts; the next
                // start hunts again.
                gone = gone || hunt.stop.load(Ordering::Relaxed);
                if gone {
                    return;
                }
                let matches: Vec<RuleMatch> = hunt
                    .set
                    .evaluate(&batch.batch, &mut scratch)
                    .into_iter()
                    .filter(|m| hunt.rules.contains(&m.rule))
                    .collect();
                if matches.is_empty() {
                    return;
                }
                let detected_at = now_rfc3339();
                let builder = AlertBuilder::new(&hunt.catalog, &hunt.fields, &detected_at);
                let mut alerts = builder.single_event(&hunt.set, &batch, &matches, &self.timestamp);
                outcome.already_emitted += self.emitted.keep_new(&mut alerts) as u64;
                alerts.iter_mut().for_each(|a| a.retrospective = true);
                outcome.alerts += alerts.len() as u64;
                if !alerts.is_empty()
                    && hunt
                        .sinks
                        .blocking_send(Delivery::Alerts(alerts, Instant::now()))
                        .is_err()
                {
                    gone = true;
                }
            },
            |letter| {
                tracing::warn!(source = %letter.source, line = letter.line, reason = %letter.reason, "retro-hunt: an archived event does not decode");
            },
        );
        let report = report
            .into_inner()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        outcome.events = report.rows;
        match result {
            Ok(()) if !gone => {
                self.record(&hunt.set, hunt.generation);
                outcome.unfinished = 0;
                tracing::info!(
                    rules = hunt.rules.len(),
                    span = %humantime::format_duration(self.span),
                    files = report.files,
                    skipped = report.skipped.len(),
                    events = report.rows,
                    alerts = outcome.alerts,
                    already_emitted = outcome.already_emitted,
                    seconds = started.elapsed().as_secs_f64(),
                    "retro-hunt of new and changed rules finished"
                );
            }
            Ok(()) => tracing::warn!(
                alerts = outcome.alerts,
                "retro-hunt given up: the run is stopping; the next start hunts these rules again"
            ),
            Err(e) => tracing::error!(error = %e, "retro-hunt failed"),
        }
        outcome
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
