//! Detection: the stage between the sources and the sinks. It hands each
//! batch to the evaluation workers (several batches are evaluated with the
//! compiled rule set at once), then, batch by batch in the order they came
//! in, feeds the windowed rules, builds the alerts, and hands alerts,
//! acknowledgements and state snapshots to the sinks in order (an
//! acknowledgement after the alerts of its batch; a snapshot before the
//! acknowledgements it vouches for). It runs on a blocking thread.
//!
//! ```text
//!  Work::Batch ──► skip what an earlier run processed ──► workers ──► queue, in order ──► alerts
//!       │                                                    │
//!       │                                   windows: observe, release ──► alerts, dead letters
//!       └─ acks ── queue, in order ──────────────────────────────────────► after the alerts
//!  Work::Tick (idle sources), ended inputs, the end: windows decided outside a batch
//! ```

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::mpsc;
use vagt_connectors::live::Ack;
use vagt_connectors::{DeadLetter, EventBatch, SharedProjection};
use vagt_rules::window::{TimestampSpec, WindowPlan};
use vagt_rules::workers::{Evaluation, Pending, Workers};
use vagt_rules::{RuleMatch, RuleSet};

use crate::alert::{now_rfc3339, Alert, AlertBuilder, FieldCandidates};
use crate::archive::retro::{new_or_changed, Hunt, RetroHuntReport, RetroHunts, Selection};
use crate::archive::writer::ArchiveItem;
use crate::catalog::Catalog;
use crate::pipeline::{DetectionReport, PipelineError};
use crate::projection::Readers;
use crate::sinks::{DeadItem, Delivery};
use crate::sources::InputBatch;
use crate::telemetry::{self, DetectionMetrics, SourceMetrics};
use crate::windows::{WindowReport, WindowStage};

/// What flows from the readers to detection.
pub(crate) enum Work {
    Batch(InputBatch),
    /// A stop signal: save state and end without finishing the input.
    Stop,
    /// A clock tick: lets detection notice idle input.
    Tick,
    /// A new version of rules, catalog and routing (SIGHUP).
    Reload(Box<crate::reload::Reload>),
}

/// How detection ended, for the summary.
#[derive(Debug, Default)]
pub(crate) struct DetectOutcome {
    pub events: u64,
    pub stopped: bool,
    pub sink_gone: bool,
    pub state_saved: bool,
    pub late_events: u64,
    pub evicted_keys: u64,
    pub windows: WindowReport,
    pub detection: DetectionReport,
    /// What retro-hunts did (with `archive.retro_hunt`).
    pub retro_hunts: Option<RetroHuntReport>,
    /// What the threat intelligence feeds in force at the end did, with
    /// the hits of those a reload replaced.
    pub intel: Option<crate::intel::IntelReport>,
    /// Detection could not go on (the files' ordering failed).
    pub error: Option<PipelineError>,
}

/// Everything detection works with.
pub(crate) struct Detector {
    pub set: Arc<RuleSet>,
    pub catalog: Arc<Catalog>,
    pub fields: FieldCandidates,
    pub windows: Option<WindowStage>,
    pub timestamps: Vec<TimestampSpec>,
    pub source_metrics: Vec<SourceMetrics>,
    /// Events evaluated, for the progress display.
    pub evaluated: Arc<AtomicU64>,
    pub dead: mpsc::Sender<DeadItem>,
    pub sinks: mpsc::Sender<Delivery>,
    /// Set by a stop signal: the run ends as stopped.
    pub stop: Arc<AtomicBool>,
    /// How long, after a stop, a batch may still be evaluated (for the
    /// dead letters' reason).
    pub stop_evaluation: Duration,
    /// The state file's snapshots, if one is configured: their interval.
    pub snapshots: Option<Duration>,
    /// Makes a window stage for a reload that brings the first windowed
    /// rules to a run without one.
    pub new_stage: Box<dyn Fn(WindowPlan) -> WindowStage + Send>,
    /// The threads that evaluate batches (they give up once `give_up`
    /// is set).
    pub workers: Workers,
    /// The archive writer, if events are archived.
    pub archive: Option<mpsc::Sender<ArchiveItem>>,
    /// Retro-hunts of new and changed rules after a reload, if configured.
    pub retro: Option<RetroHunts>,
    /// Threat intelligence feeds matched against every batch.
    pub intel: Option<Arc<crate::intel::Intel>>,
    /// Alerts raised by feeds a reload replaced.
    pub intel_hits_before: u64,
    /// The columns the inputs decode, and what reads them.
    pub projection: SharedProjection,
    pub readers: Readers,
}

/// What one pass of the loop decided.
enum Next {
    Go,
    End,
}

/// The loop's own state.
struct Progress {
    outcome: DetectOutcome,
    saved: Instant,
    /// Acknowledgements waiting for the next snapshot.
    held: Vec<Ack>,
    /// Events processed since the last snapshot.
    unsaved: bool,
    /// Work taken in and not yet processed, oldest first.
    queued: VecDeque<Queued>,
}

/// Work taken in, waiting for its turn.
enum Queued {
    /// A batch with the workers.
    Evaluating {
        input: usize,
        batch: EventBatch,
        acks: Vec<Ack>,
        pending: Pending,
    },
    /// Acknowledgements (and an input's end), due after the batches taken
    /// in before them.
    Acks {
        input: usize,
        ended: bool,
        acks: Vec<Ack>,
    },
}

impl Detector {
    /// With windowed rules and a state file, an event is safe only once the
    /// window state holding it is saved: acknowledgements wait for the
    /// next snapshot.
    fn holds_acks(&self) -> bool {
        self.snapshots.is_some() && self.windows.as_ref().is_some_and(|w| w.plan().active() > 0)
    }

    /// Runs until the work ends, a stop, or a failed sink.
    pub fn run(mut self, mut work: mpsc::Receiver<Work>) -> DetectOutcome {
        let mut metrics = DetectionMetrics::new(&self.set);
        let mut state = Progress {
            outcome: DetectOutcome {
                detection: DetectionReport {
                    workers: self.workers.count(),
                    ..DetectionReport::default()
                },
                ..DetectOutcome::default()
            },
            saved: Instant::now(),
            held: Vec::new(),
            unsaved: false,
            queued: VecDeque::new(),
        };
        // Enough batches with the workers that none waits for the next
        // while the oldest is turned into alerts.
        let depth = 2 * self.workers.count();
        self.retro_hunt_at_start();
        loop {
            // Work is taken in while the workers have room and some is at
            // hand; otherwise the oldest batch is taken to its end.
            let item = if state.queued.is_empty() {
                work.blocking_recv()
            } else if state.queued.len() < depth {
                work.try_recv().ok()
            } else {
                None
            };
            let Some(item) = item else {
                if state.queued.is_empty() {
                    break;
                }
                match self.next_queued(&metrics, &mut state) {
                    Next::Go => continue,
                    Next::End => break,
                }
            };
            // The sinks failed (ticks bring this here even when no input
            // does): their error ends the run.
            if self.sinks.is_closed() {
                break;
            }
            let next = match item {
                Work::Batch(InputBatch {
                    input,
                    events: Some(events),
                    acks,
                    ..
                }) => self.submit(input, events, acks, &mut state),
                Work::Batch(InputBatch {
                    input,
                    events: None,
                    acks,
                    ended,
                }) => {
                    state.queued.push_back(Queued::Acks { input, ended, acks });
                    Next::Go
                }
                Work::Stop => match self.drain(&metrics, &mut state) {
                    Next::Go => {
                        state.outcome.stopped = true;
                        Next::End
                    }
                    Next::End => Next::End,
                },
                // Batches queued behind the tick, or with the workers:
                // their sources are not idle, only waiting to be processed.
                Work::Tick if !work.is_empty() || !state.queued.is_empty() => Next::Go,
                Work::Tick => self.tick(&mut state),
                // Between two batches: the batches before were evaluated
                // with the old rules, those after with the new.
                Work::Reload(reload) => match self.drain(&metrics, &mut state) {
                    Next::End => Next::End,
                    Next::Go => match self.reload(*reload) {
                        Some(true) => {
                            metrics = DetectionMetrics::new(&self.set);
                            Next::Go
                        }
                        Some(false) => Next::Go,
                        None => Next::End,
                    },
                },
            };
            if let Next::End = next {
                break;
            }
        }
        self.end(state)
    }

    /// Takes every queued batch to its end.
    fn drain(&mut self, metrics: &DetectionMetrics, state: &mut Progress) -> Next {
        while !state.queued.is_empty() {
            if let Next::End = self.next_queued(metrics, state) {
                return Next::End;
            }
        }
        Next::Go
    }

    /// Takes the oldest queued work to its end: waits for its evaluation
    /// and turns it into alerts, or runs its acknowledgements.
    fn next_queued(&mut self, metrics: &DetectionMetrics, state: &mut Progress) -> Next {
        match state.queued.pop_front() {
            None => Next::Go,
            Some(Queued::Acks { input, ended, acks }) => {
                let started = Instant::now();
                let next = self.ended(input, ended, acks, state);
                state.outcome.detection.ordered += started.elapsed();
                next
            }
            Some(Queued::Evaluating {
                input,
                batch,
                acks,
                pending,
            }) => match pending.wait() {
                Ok(evaluation) => {
                    let started = Instant::now();
                    state.outcome.detection.evaluation += evaluation.elapsed;
                    state.outcome.detection.batches += 1;
                    let next = self.evaluated(input, batch, acks, evaluation, metrics, state);
                    state.outcome.detection.ordered += started.elapsed();
                    next
                }
                Err(gone) => {
                    state.outcome.error = Some(PipelineError::Internal(gone.to_string()));
                    Next::End
                }
            },
        }
    }

    /// Swaps a reloaded version in, all or none: windows must be able to
    /// take it, then delivery its outputs; only then rules, catalog and
    /// windowed rules change. Some(whether it did), None once the sinks
    /// are gone.
    fn reload(&mut self, reload: crate::reload::Reload) -> Option<bool> {
        let crate::reload::Reload {
            set,
            rejected,
            windows,
            catalog,
            fields,
            policy,
            intel,
            applied,
        } = reload;
        let windows_stay = self
            .windows
            .as_ref()
            .map_or(windows.is_empty(), |w| w.plan().same_rules(&windows));
        if let Some(stage) = self.windows.as_ref().filter(|_| !windows_stay) {
            if let Err(e) = stage.can_replan() {
                let _ = applied.send(Err(e));
                return Some(false);
            }
        }
        let (answer, answered) = tokio::sync::oneshot::channel();
        if self
            .sinks
            .blocking_send(Delivery::Reroute(policy, answer))
            .is_err()
        {
            return None;
        }
        match answered.blocking_recv() {
            Ok(Ok(())) => {}
            Ok(Err(e)) => {
                let _ = applied.send(Err(e));
                return Some(false);
            }
            Err(_) => return None,
        }
        let empty = WindowPlan::default();
        let old_plan = self.windows.as_ref().map_or(&empty, |w| w.plan());
        let hunted = self
            .retro
            .as_ref()
            .map(|_| new_or_changed((&self.set, old_plan), (&set, &windows)));
        self.set = set;
        self.catalog = catalog;
        self.fields = fields;
        if let Some(intel) = intel {
            if let Some(old) = std::mem::replace(&mut self.intel, intel) {
                self.intel_hits_before += old.report().hits;
            }
            // A new feed's indicators are new to the archive.
            if let Some(retro) = &self.retro {
                retro.indicators_not_yet_hunted(self.intel.as_ref());
            }
            tracing::info!(
                feeds = self.intel.as_ref().map_or(0, |i| i.report().feeds.len()),
                "reload: the threat intelligence feeds changed; the new ones are in force"
            );
        }
        if let (Some(retro), Some(selection)) = (&self.retro, hunted) {
            let generation = retro.generation();
            let plan = Arc::new(windows.clone());
            if selection.is_empty() {
                retro.record(&self.set, &plan, generation);
            } else {
                self.retro_hunt(retro, selection, plan, generation, true);
            }
        }
        match self.windows.as_mut() {
            Some(stage) => {
                let report = stage.replan(windows);
                if !windows_stay {
                    tracing::info!(
                        kept = report.rules,
                        dropped = report.dropped_rules,
                        "reload: window state of unchanged windowed rules kept"
                    );
                }
            }
            None if !windows.is_empty() => {
                self.windows = Some((self.new_stage)(windows));
            }
            None => {}
        }
        self.project();
        telemetry::rules(self.set.len(), rejected);
        let _ = applied.send(Ok(()));
        Some(true)
    }

    /// Hunts the indicators that came into force since the last tick over
    /// the archive's last span (with retro-hunts and intel feeds).
    fn retro_hunt_new_indicators(&self) {
        let (Some(retro), Some(intel)) = (&self.retro, &self.intel) else {
            return;
        };
        let Some(added) = intel.take_added() else {
            return;
        };
        tracing::info!(
            indicators = added.len(),
            span = %humantime::format_duration(retro.span),
            "retro-hunt of new indicators started"
        );
        let committed = self.archive.as_ref().map(|archive| {
            let (done, committed) = tokio::sync::oneshot::channel();
            let _ = archive.blocking_send(ArchiveItem::Commit);
            let _ = archive.blocking_send(ArchiveItem::Barrier(done));
            committed
        });
        retro.start(Hunt {
            generation: 0,
            stop: self.stop.clone(),
            committed,
            set: self.set.clone(),
            plan: Arc::new(WindowPlan::default()),
            selection: Selection::default(),
            catalog: self.catalog.clone(),
            fields: self.fields.clone(),
            sinks: self.sinks.clone(),
            intel: Some((intel.clone(), added)),
        });
    }

    /// At start: hunts the rules and indicators no earlier run hunted the
    /// archive with (the indicators at the next tick).
    fn retro_hunt_at_start(&self) {
        if let Some(retro) = &self.retro {
            retro.indicators_not_yet_hunted(self.intel.as_ref());
            let generation = retro.generation();
            let plan = Arc::new(
                self.windows
                    .as_ref()
                    .map(|w| w.plan().clone())
                    .unwrap_or_default(),
            );
            let selection = retro.not_yet_hunted(&self.set, &plan, generation);
            if !selection.is_empty() {
                // The archive holds nothing uncommitted of this run yet.
                self.retro_hunt(retro, selection, plan, generation, false);
            }
        }
    }

    /// Hunts the `selection` of the rules and windowed rules (`plan`) in
    /// force over the archive's last span, on a thread of its own; with
    /// `commit_first`, once the archive has committed what it holds, so
    /// that the hunt reads every event the rules before did.
    fn retro_hunt(
        &self,
        retro: &RetroHunts,
        selection: Selection,
        plan: Arc<WindowPlan>,
        generation: u64,
        commit_first: bool,
    ) {
        tracing::info!(
            rules = selection.rules.len(),
            windowed_rules = selection.windows.len(),
            span = %humantime::format_duration(retro.span),
            "retro-hunt of new and changed rules started"
        );
        let committed = self
            .archive
            .as_ref()
            .filter(|_| commit_first)
            .map(|archive| {
                let (done, committed) = tokio::sync::oneshot::channel();
                let _ = archive.blocking_send(ArchiveItem::Commit);
                let _ = archive.blocking_send(ArchiveItem::Barrier(done));
                committed
            });
        retro.start(Hunt {
            generation,
            stop: self.stop.clone(),
            committed,
            set: self.set.clone(),
            plan,
            selection,
            catalog: self.catalog.clone(),
            fields: self.fields.clone(),
            sinks: self.sinks.clone(),
            intel: None,
        });
    }

    /// Alerts decided outside a batch; false once the sinks are gone.
    fn send_alerts(&self, alerts: Vec<Alert>) -> bool {
        self.remember(&alerts);
        alerts.is_empty()
            || self
                .sinks
                .blocking_send(Delivery::Alerts(alerts, Instant::now()))
                .is_ok()
    }

    /// Remembers the ids of alerts sent, which retro-hunts do not send
    /// again.
    fn remember(&self, alerts: &[Alert]) {
        if let Some(retro) = &self.retro {
            retro.emitted.record(alerts);
        }
    }

    /// Hands acknowledgements to the sinks, after the alerts before them,
    /// or holds them for the next state snapshot; false if the sinks are
    /// gone.
    fn acknowledge(&self, state: &mut Progress, acks: Vec<Ack>) -> bool {
        if self.holds_acks() {
            state.held.extend(acks);
            return true;
        }
        acks.is_empty() || self.sinks.blocking_send(Delivery::Acks(acks)).is_ok()
    }

    /// Saves the window state (and then runs the acknowledgements it
    /// covers) when the snapshot interval has passed.
    fn snapshot_if_due(&self, state: &mut Progress) {
        let (Some(interval), Some(w)) = (self.snapshots, self.windows.as_ref()) else {
            return;
        };
        if state.saved.elapsed() >= interval {
            let _ = self.sinks.blocking_send(Delivery::State(w.snapshot()));
            let _ = self
                .sinks
                .blocking_send(Delivery::Acks(std::mem::take(&mut state.held)));
            state.saved = Instant::now();
            state.unsaved = false;
        }
    }

    /// A batch a stopping run gave up evaluating: its events become dead
    /// letters.
    fn abandon(&self, input: usize, batch: &EventBatch) {
        for letter in abandoned(batch, self.stop_evaluation) {
            self.dead_letter(input, letter);
        }
    }

    fn dead_letter(&self, input: usize, letter: DeadLetter) {
        self.source_metrics[input].dead_letter();
        let _ = self.dead.blocking_send(DeadItem::Letter(letter));
    }

    /// An input ended, or only acknowledgements are due.
    fn ended(&mut self, input: usize, ended: bool, acks: Vec<Ack>, state: &mut Progress) -> Next {
        if ended {
            if let Some(mut w) = self.windows.take() {
                let mut gone = false;
                let result = w.input_ended(input, &mut |alerts| {
                    gone |= !self.send_alerts(alerts);
                });
                telemetry::windows(&w);
                self.windows = Some(w);
                if let Err(e) = result {
                    state.outcome.error = Some(e.into());
                    return Next::End;
                }
                if gone {
                    return Next::End;
                }
            }
        }
        if self.acknowledge(state, acks) {
            Next::Go
        } else {
            Next::End
        }
    }

    /// A clock tick: sources idle long enough stop holding back, and
    /// indicators newly in force are hunted over the archive.
    fn tick(&mut self, state: &mut Progress) -> Next {
        self.retro_hunt_new_indicators();
        let Some(w) = self.windows.as_mut() else {
            return Next::Go;
        };
        let alerts = w.tick(&now_rfc3339());
        telemetry::windows(w);
        if !self.send_alerts(alerts) {
            return Next::End;
        }
        // Held acknowledgements, and positions past the last snapshot,
        // wait for a snapshot, which a quiet input would otherwise not
        // bring.
        if !state.held.is_empty() || state.unsaved {
            self.snapshot_if_due(state);
        }
        Next::Go
    }

    /// One batch of events, handed to the workers (less the rows an
    /// earlier run processed) and queued behind the work before it.
    fn submit(
        &mut self,
        input: usize,
        batch: EventBatch,
        acks: Vec<Ack>,
        state: &mut Progress,
    ) -> Next {
        let batch = match self.windows.as_mut() {
            Some(w) => match w.skip_processed(input, batch) {
                Some(batch) => batch,
                None => {
                    state.queued.push_back(Queued::Acks {
                        input,
                        ended: false,
                        acks,
                    });
                    return Next::Go;
                }
            },
            None => batch,
        };
        let batch = self.with_columns_read(batch);
        let pending = self.workers.submit(self.set.clone(), batch.batch.clone());
        state.queued.push_back(Queued::Evaluating {
            input,
            batch,
            acks,
            pending,
        });
        Next::Go
    }

    /// `batch` with every column read now: a batch decoded before a reload
    /// brought rules reading more columns is decoded again.
    fn with_columns_read(&self, batch: EventBatch) -> EventBatch {
        let needed = self.projection.get();
        if batch.covers(needed.as_deref()) {
            return batch;
        }
        match batch.decoded_again(needed) {
            Some(again) => again,
            None => {
                tracing::warn!(
                    rows = batch.batch.num_rows(),
                    "a batch could not be decoded again for the columns the rules now read; evaluated as it was"
                );
                batch
            }
        }
    }

    /// The columns the rules, windows, catalog and feeds read now, for
    /// the inputs' decoders from their next batch on.
    pub(crate) fn project(&self) {
        let projection = self.readers.projection(
            &self.set,
            self.windows.as_ref().map(|w| w.plan()),
            &self.fields,
            self.intel.as_deref(),
        );
        if self.projection.get().as_deref() != Some(&projection) {
            self.projection.set(Some(projection));
        }
    }

    /// A batch the workers evaluated: its alerts, the windows, then its
    /// acknowledgements.
    fn evaluated(
        &mut self,
        input: usize,
        batch: EventBatch,
        acks: Vec<Ack>,
        evaluation: Evaluation,
        metrics: &DetectionMetrics,
        state: &mut Progress,
    ) -> Next {
        if evaluation.cancelled {
            // Stopping, and this batch took too long: its events are not
            // lost but reported, and not acknowledged.
            self.abandon(input, &batch);
            state.outcome.stopped = true;
            return Next::End;
        }
        let rows = batch.batch.num_rows();
        let matches = evaluation.matches;
        state.outcome.events += rows as u64;
        metrics.batch(evaluation.elapsed);
        for (rule, stats) in evaluation.rule_stats {
            metrics.rule(rule, stats);
        }
        self.source_metrics[input].evaluated(rows);
        self.evaluated.fetch_add(rows as u64, Ordering::Relaxed);
        let detected_at = now_rfc3339();
        let emitted: Vec<RuleMatch> = match self.windows.as_ref() {
            Some(w) => matches
                .iter()
                .filter(|m| w.plan().base_emits(m.rule))
                .copied()
                .collect(),
            None => matches.clone(),
        };
        let builder = AlertBuilder::new(&self.catalog, &self.fields, &detected_at);
        let mut alerts = builder.single_event(&self.set, &batch, &emitted, &self.timestamps[input]);
        if let Some(intel) = &self.intel {
            alerts.extend(intel.alerts(&builder, &batch, &self.timestamps[input]));
        }
        if let Some(mut w) = self.windows.take() {
            let observed = w.observe(
                &self.set,
                &self.catalog,
                &self.fields,
                input,
                &batch,
                &matches,
            );
            let released = w.release(&detected_at);
            telemetry::windows(&w);
            self.windows = Some(w);
            match observed {
                Ok(dead) => dead.into_iter().for_each(|l| self.dead_letter(input, l)),
                Err(e) => {
                    state.outcome.error = Some(e.into());
                    return Next::End;
                }
            }
            alerts.extend(released);
        }
        self.remember(&alerts);
        if !alerts.is_empty()
            && self
                .sinks
                .blocking_send(Delivery::Alerts(alerts, batch.received))
                .is_err()
        {
            return Next::End;
        }
        // Before its acknowledgements: delivery's barrier for them reaches
        // the archive after the batch.
        if let Some(archive) = &self.archive {
            let item = ArchiveItem::Batch {
                input,
                batch,
                catalog: self.catalog.clone(),
            };
            if archive.blocking_send(item).is_err() {
                state.outcome.error =
                    Some(PipelineError::Internal("the archive writer stopped".into()));
                return Next::End;
            }
        }
        // After the batch's alerts, so that they run once those are out.
        if !self.acknowledge(state, acks) {
            return Next::End;
        }
        state.unsaved = true;
        self.snapshot_if_due(state);
        Next::Go
    }

    /// The loop is over: windows decided at the end (unless stopped), the
    /// last snapshot.
    fn end(mut self, mut state: Progress) -> DetectOutcome {
        // Inputs drained after a stop signal end the loop as a stop too.
        state.outcome.stopped |= self.stop.load(Ordering::SeqCst);
        // What the archive holds is committed now, not when its files
        // are old enough: the acknowledgements still to come wait for it.
        if let Some(archive) = self.archive.take() {
            let _ = archive.blocking_send(ArchiveItem::Commit);
        }
        // A stopping run gave up while later batches were with the
        // workers: they are reported too, not lost.
        if state.outcome.stopped {
            for queued in std::mem::take(&mut state.queued) {
                if let Queued::Evaluating { input, batch, .. } = queued {
                    self.abandon(input, &batch);
                }
            }
        }
        // The sinks failed: their error ends the run.
        state.outcome.sink_gone = self.sinks.is_closed();
        if let Some(mut w) = self.windows.take() {
            if !state.outcome.stopped && state.outcome.error.is_none() {
                if let Err(e) = w.finish(&mut |alerts| {
                    self.send_alerts(alerts);
                }) {
                    state.outcome.error = Some(e.into());
                }
            }
            telemetry::windows(&w);
            let saving = self.snapshots.is_some() && state.outcome.error.is_none();
            if saving {
                let _ = self.sinks.blocking_send(Delivery::State(w.snapshot()));
                let _ = self
                    .sinks
                    .blocking_send(Delivery::Acks(std::mem::take(&mut state.held)));
            }
            state.outcome.late_events = w.late_events();
            state.outcome.state_saved = saving;
            state.outcome.evicted_keys = w.stats().evicted_keys;
            state.outcome.windows = w.report();
        }
        if let Some(retro) = &self.retro {
            state.outcome.retro_hunts = Some(retro.wait());
        }
        state.outcome.intel = self.intel.as_ref().map(|intel| {
            let mut report = intel.report();
            report.hits += self.intel_hits_before;
            report
        });
        state.outcome
    }
}

/// Dead letters for the events of a batch whose evaluation a stopping run
/// gave up.
fn abandoned(batch: &EventBatch, patience: Duration) -> Vec<DeadLetter> {
    let raw = batch.raw();
    batch
        .origins
        .iter()
        .enumerate()
        .map(|(row, origin)| DeadLetter {
            source: origin.source.to_string(),
            line: origin.line,
            offset: origin.offset,
            reason: format!(
                "not evaluated: the run was stopping and its batch was still being evaluated {} ms after the stop (stop_evaluation)",
                patience.as_millis()
            ),
            excerpt: raw
                .as_ref()
                .map(|r| {
                    r.value(row)
                        .chars()
                        .take(vagt_connectors::EXCERPT_BYTES)
                        .collect()
                })
                .unwrap_or_default(),
        })
        .collect()
}
