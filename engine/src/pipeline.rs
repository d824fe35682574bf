//! The pipeline runtime: sources → decode → detect → alert sinks, as tokio
//! tasks joined by bounded channels (the channels provide backpressure: a
//! slow sink slows detection, which slows reading).
//!
//! ```text
//!  inputs (see `inputs`: files, stdin, tails, listeners, Kafka; each
//!  framing + parsing + JSON→Arrow on a blocking thread)
//!      │ batches + acks (bounded)
//!      ▼
//!  detect (blocking: RuleSet::evaluate, windows, catalog) ──► alerts, acks, state (bounded)
//!      │                                                           │
//!      └► dead letters ──► dead-letter sink ◄── barrier ── alert sink: writes alerts, then
//!                                                          runs acks (Kafka offsets) once
//!                                                          their dead letters are written,
//!                                                          and writes the state file
//! ```
//! A stop signal makes the inputs that run until stopped stop taking input
//! and hand on what they took; then `Work::Stop` ends detection after it.
//! CPU-heavy stages run on blocking threads, not on the I/O workers.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::value::RawValue;
use tokio::io::{AsyncWrite, AsyncWriteExt, BufWriter};
use tokio::sync::mpsc;
use vagt_connectors::live::Ack;
use vagt_connectors::{DeadLetter, EventBatch, FileId, Origin};
use vagt_rules::window::{format_millis, RestoreReport, TimestampSpec};
use vagt_rules::{
    load_paths, Compiled, LoadError, Profile, ProfileError, Rejection, RuleMatch, RuleSet,
    RuleSetBuilder, Unroutable,
};

use crate::alert::{
    alert_id, alert_rule, compact_json, now_rfc3339, severity, Alert, EventSource, EventTime,
    FieldCandidates,
};
use crate::catalog::{Catalog, CatalogError};
use crate::config::{ConfigError, InputKind, RunConfig};
use crate::inputs::{self, InputBatch, Outputs, Started};
use crate::signals::StopSignals;

/// How long a stopping run waits for its listeners, tails and Kafka
/// consumers to hand on what they took in.
const DRAIN_PATIENCE: Duration = Duration::from_secs(10);
use crate::progress::{Counters, Progress};
use crate::telemetry::{self, DetectionMetrics, MetricsError, SinkMetrics, SourceMetrics};
use crate::windows::{write_state, StageInput, StateError, WindowReport, WindowStage};

/// Why a run could not start or finish.
#[derive(Debug, thiserror::Error)]
pub enum PipelineError {
    /// Rules could not be read.
    #[error(transparent)]
    Rules(#[from] LoadError),
    /// The profile is invalid.
    #[error(transparent)]
    Profile(#[from] ProfileError),
    /// The catalog is invalid.
    #[error(transparent)]
    Catalog(#[from] CatalogError),
    /// An output could not be opened or written.
    #[error("output {path}: {source}")]
    Output {
        /// Path.
        path: PathBuf,
        /// Cause.
        #[source]
        source: std::io::Error,
    },
    /// The metrics endpoint could not start.
    #[error(transparent)]
    Metrics(#[from] MetricsError),
    /// The configuration is invalid.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The window state file cannot be read or written.
    #[error(transparent)]
    State(#[from] StateError),
    /// Files' events cannot be ordered by event time (the spill folder).
    #[error(transparent)]
    History(#[from] vagt_rules::window::HistoryError),
    /// An input cannot start (a busy port, unusable TLS files, Kafka).
    #[error(transparent)]
    Input(#[from] vagt_connectors::live::LiveError),
    /// SIGTERM and Ctrl-C cannot be listened for.
    #[error("cannot listen for stop signals: {0}")]
    Signals(#[source] std::io::Error),
    /// The dead-letter output failed (its own error is returned instead
    /// where known).
    #[error("the dead-letter output failed")]
    DeadLettersFailed,
    /// A pipeline task failed unexpectedly.
    #[error("internal: {0}")]
    Internal(String),
}

/// What a run did (also written as JSON with `--stats FILE`).
#[derive(Debug, Default, Clone, serde::Serialize)]
pub struct RunSummary {
    /// Rules that can match.
    pub rules_loaded: usize,
    /// Rules rejected.
    pub rules_rejected: usize,
    /// Rules whose logsource the profile cannot route.
    pub rules_unroutable: usize,
    /// Windowed rules (correlations and statistics) planned.
    pub windowed_rules: usize,
    /// Events refused by windowed rules as later than the allowed lateness.
    pub late_events: u64,
    /// Window group keys evicted to respect `windows.max_keys`.
    pub evicted_keys: u64,
    /// What the windowed rules did with event time: late events per input,
    /// events ordered, reordered or too many to order, sources tracked.
    pub windows: WindowReport,
    /// The run was stopped by a signal (input not finished).
    pub stopped: bool,
    /// Window state and input positions were written to the state file.
    pub state_saved: bool,
    /// Events decoded and evaluated.
    pub events: u64,
    /// Bytes read.
    pub bytes: u64,
    /// Alerts written.
    pub alerts: u64,
    /// Records that went to the dead-letter output.
    pub dead_letters: u64,
    /// Records dropped because a queue was full (UDP syslog only; every
    /// other source waits instead).
    pub dropped_records: u64,
    /// Inputs that could not be read, with the reason.
    pub failed_inputs: Vec<String>,
    /// Loading the profile, rules and catalog, and compiling the rules.
    #[serde(rename = "startup_seconds", serialize_with = "seconds")]
    pub startup: Duration,
    /// From the first read to the last alert written.
    #[serde(rename = "processing_seconds", serialize_with = "seconds")]
    pub elapsed: Duration,
}

fn seconds<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_f64(d.as_secs_f64())
}

impl std::fmt::Display for RunSummary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let secs = self.elapsed.as_secs_f64().max(1e-9);
        write!(
            f,
            "vagt: {} events ({:.1} MB) in {:.2}s ({:.0} events/s, {:.0} MB/s; startup {:.2}s), {} alerts, {} dead letters, {} rules loaded ({} rejected, {} not routable, {} windowed)",
            self.events,
            self.bytes as f64 / 1e6,
            secs,
            self.events as f64 / secs,
            self.bytes as f64 / 1e6 / secs,
            self.startup.as_secs_f64(),
            self.alerts,
            self.dead_letters,
            self.rules_loaded,
            self.rules_rejected,
            self.rules_unroutable,
            self.windowed_rules
        )?;
        if self.windowed_rules > 0 {
            write!(
                f,
                "\nvagt: windows: {} late events, {} keys evicted",
                self.late_events, self.evicted_keys
            )?;
            write_window_report(f, &self.windows)?;
        }
        if self.dropped_records > 0 {
            write!(
                f,
                "\nvagt: {} records dropped: the pipeline was full (UDP)",
                self.dropped_records
            )?;
        }
        if self.stopped {
            write!(f, "\nvagt: stopped by signal")?;
        }
        if self.state_saved {
            write!(f, "\nvagt: window state and input positions saved")?;
        }
        for failed in &self.failed_inputs {
            write!(f, "\nvagt: input failed: {failed}")?;
        }
        Ok(())
    }
}

/// The event-time part of the windows line of the summary.
fn write_window_report(f: &mut std::fmt::Formatter<'_>, w: &WindowReport) -> std::fmt::Result {
    if !w.late.is_empty() {
        let per_input: Vec<String> = w.late.iter().map(|(i, n)| format!("{i}: {n}")).collect();
        write!(f, " (late per input: {})", per_input.join(", "))?;
    }
    write!(f, ", {} sources", w.sources)?;
    if w.ordered > 0 {
        write!(f, ", {} events from files ordered by event time", w.ordered)?;
        if w.spilled_bytes > 0 {
            write!(f, " ({:.1} MB on disk)", w.spilled_bytes as f64 / 1e6)?;
        }
    }
    if w.unordered > 0 {
        write!(
            f,
            ", {} events not applied: too many to order (windows.history_spill_bytes)",
            w.unordered
        )?;
    }
    if w.reordered > 0 {
        write!(
            f,
            ", {} events reached their window after later ones",
            w.reordered
        )?;
    }
    if w.sources_over_limit > 0 {
        write!(
            f,
            ", {} hosts beyond windows.max_sources",
            w.sources_over_limit
        )?;
    }
    Ok(())
}

/// Resolves the profile setting: `windows`, `passthrough`, or a file.
pub fn load_profile(setting: &str) -> Result<Profile, ProfileError> {
    match setting {
        "windows" => Profile::windows(),
        "passthrough" => Ok(Profile::passthrough()),
        path => Profile::from_file(Path::new(path)),
    }
}

/// Loads and compiles the configured rules.
pub fn compile_rules(config: &RunConfig, profile: &Profile) -> Result<Compiled, PipelineError> {
    let collection = load_paths(&config.rules, &config.placeholders)?;
    Ok(RuleSetBuilder::new(profile.clone()).build(&collection))
}

/// What flows from the readers to detection.
enum Work {
    Batch(InputBatch),
    /// A stop signal: save state and end without finishing the input.
    Stop,
    /// A clock tick: lets detection notice idle input.
    Tick,
}

/// What flows to the dead-letter sink.
enum DeadItem {
    Letter(DeadLetter),
    /// Answered once everything sent before it is written (and, when
    /// `sync`, on disk).
    Barrier {
        written: tokio::sync::oneshot::Sender<()>,
        sync: bool,
    },
}

/// What flows from detection to the alert sink. State goes through the
/// sink so that it is saved only after the alerts before it are written.
enum SinkItem {
    Alerts(Vec<Alert>, Instant),
    /// Run once everything before is written (Kafka offsets to commit).
    Acks(Vec<Ack>),
    State(Vec<u8>),
}

/// What a run tells its caller before events flow.
pub trait RunObserver {
    /// A rule was rejected.
    fn rejected(&self, _rejection: &Rejection) {}
    /// A rule's logsource cannot be routed by the profile.
    fn unroutable(&self, _rule: &Unroutable) {}
    /// Rules and catalog are loaded; inputs are about to be read.
    fn ready(&self, _summary: &RunSummary) {}
    /// Window state was restored from the state file.
    fn restored(&self, _report: &RestoreReport) {}
    /// Something the operator should know (a fallback taken).
    fn notice(&self, _message: &str) {}
    /// A listener input is bound and accepting.
    fn listening(&self, _input: &str, _addr: std::net::SocketAddr) {}
}

/// Runs a whole pipeline to completion, telling `observer` about rejected
/// rules and readiness before events flow. It stops on SIGTERM or Ctrl-C
/// (listened to from the start), or when its inputs end.
pub async fn run(
    config: RunConfig,
    observer: &dyn RunObserver,
) -> Result<RunSummary, PipelineError> {
    let mut signals = StopSignals::listen().map_err(PipelineError::Signals)?;
    run_until(config, observer, async move {
        signals.next().await;
    })
    .await
}

/// As [`run`], stopping when `stop` resolves instead of on signals: inputs
/// that run until stopped hand on what they took in, then the run ends.
pub async fn run_until(
    config: RunConfig,
    observer: &dyn RunObserver,
    stop_requested: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<RunSummary, PipelineError> {
    let started = Instant::now();
    let mut config = config;
    config.validate()?;
    config.expand_folders()?;
    let profile = load_profile(&config.profile)?;
    let compiled = compile_rules(&config, &profile)?;
    compiled.rejected.iter().for_each(|r| observer.rejected(r));
    compiled
        .unroutable
        .iter()
        .for_each(|u| observer.unroutable(u));
    let catalog = match &config.catalog {
        Some(path) => Catalog::from_file(path)?,
        None => Catalog::empty(),
    };
    check_actors(&config, &catalog)?;
    if let Some(addr) = config.metrics_listen {
        telemetry::install(addr)?;
    }
    telemetry::rules(compiled.set.len(), compiled.rejected.len());
    let names: Vec<String> = config.inputs.iter().map(|i| i.name()).collect();
    // Sizes and identities of the files read or followed, to tell whether
    // a saved position still applies.
    let files: Vec<(Option<u64>, Option<FileId>)> = config
        .inputs
        .iter()
        .map(|i| match i.kind() {
            Ok(InputKind::File(p) | InputKind::Tail(p)) => match std::fs::metadata(p) {
                Ok(m) => (Some(m.len()), vagt_connectors::tail::identity(&m)),
                Err(_) => (None, None),
            },
            _ => (None, None),
        })
        .collect();
    let limits = config.windows.limits()?;
    let snapshot_interval = config.windows.snapshot_interval()?;
    let max_ahead = config.windows.max_ahead()?;
    let state_file = config.windows.state_file.clone();
    // A state file keeps input positions even without windowed rules.
    let timestamps: Vec<TimestampSpec> = config
        .inputs
        .iter()
        .map(|i| {
            i.timestamp
                .clone()
                .unwrap_or_else(|| profile.timestamp.clone())
        })
        .collect();
    let mut windows = (!compiled.windows.is_empty() || state_file.is_some()).then(|| {
        let inputs = config
            .inputs
            .iter()
            .zip(&names)
            .map(|(i, name)| StageInput {
                name: name.clone(),
                actor: i.actor.clone(),
                finite: matches!(i.kind(), Ok(InputKind::File(_))),
            })
            .collect();
        WindowStage::new(
            compiled.windows.clone(),
            limits,
            timestamps.clone(),
            profile.host.clone(),
            inputs,
        )
        .with_max_ahead(max_ahead)
        .with_history(config.windows.history())
    });
    if let (Some(stage), Some(path)) = (windows.as_mut(), state_file.as_deref()) {
        if let Some(restored) = stage.restore(path, &files)? {
            if let Some(note) = &restored.note {
                observer.notice(note);
            }
            observer.restored(&restored.report);
        }
    }
    let mut summary = RunSummary {
        windowed_rules: compiled.windows.active(),
        rules_loaded: compiled.set.len(),
        rules_rejected: compiled.rejected.len(),
        rules_unroutable: compiled.unroutable.len(),
        ..RunSummary::default()
    };

    summary.startup = started.elapsed();
    observer.ready(&summary);
    let started = Instant::now();
    let counters = Counters::default();
    // A bar for files read to their end; a followed file has no end.
    let total_bytes: Option<u64> = config
        .inputs
        .iter()
        .zip(&files)
        .map(|(i, (size, _))| size.filter(|_| matches!(i.kind(), Ok(InputKind::File(_)))))
        .sum();
    let (progress_stop, mut progress_stopped) = tokio::sync::watch::channel(false);
    let progress = Progress::start(config.progress, total_bytes, counters.clone()).map(|mut p| {
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_millis(250));
            loop {
                tokio::select! {
                    _ = tick.tick() => p.tick(),
                    _ = progress_stopped.changed() => break,
                }
            }
            p.finish();
        })
    });
    let (batch_tx, mut batch_rx) = mpsc::channel::<Work>(config.channel_capacity);
    let (dead_tx, dead_rx) = mpsc::channel::<DeadItem>(1024);
    let (alert_tx, mut alert_rx) = mpsc::channel::<SinkItem>(config.channel_capacity);
    // Inputs stop taking input; detection stops at the `Work::Stop` sent
    // after what they had taken in.
    let stop = Arc::new(AtomicBool::new(false));
    // While no event arrives, what waits for the watermark would wait for
    // ever; ticks let detection apply it once the input has been idle for
    // the allowed lateness.
    let ticks = {
        let batch_tx = batch_tx.downgrade();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_millis(250));
            loop {
                tick.tick().await;
                let Some(tx) = batch_tx.upgrade() else { break };
                // A full channel means detection is busy, not idle.
                let _ = tx.try_send(Work::Tick);
            }
        })
    };
    let source_metrics: Vec<SourceMetrics> = names.iter().map(|n| SourceMetrics::new(n)).collect();

    // Inputs.
    let resume: Vec<Option<(Origin, Option<FileId>)>> = (0..config.inputs.len())
        .map(|i| windows.as_ref().and_then(|w| w.resume_at(i)))
        .collect();
    if let Some(w) = windows.as_mut() {
        for (i, input) in config.inputs.iter().enumerate() {
            if matches!(input.kind(), Ok(InputKind::Tail(_))) {
                w.seeking(i);
            }
        }
    }
    let mut started_inputs = inputs::start(
        &config,
        &resume,
        Outputs {
            batches: batch_tx.clone(),
            wrap: Work::Batch,
            dead: dead_tx.clone(),
            wrap_dead: DeadItem::Letter,
            bytes: counters.bytes.clone(),
            metrics: source_metrics.clone(),
            stop: stop.clone(),
        },
        &|name, addr| observer.listening(name, addr),
    )
    .await?;
    // On SIGTERM or Ctrl-C: inputs that run until stopped stop taking
    // input and hand on what they took; then detection halts, and files
    // not yet read to their end are left where they are (the state file
    // says where).
    // Set when a stopping run gives up on the batch being evaluated.
    let give_up = Arc::new(AtomicBool::new(false));
    let signals = {
        let stop = stop.clone();
        let stopping = started_inputs.stopping.clone();
        let drained = started_inputs.drained.take();
        let batch_tx = batch_tx.downgrade();
        let give_up = give_up.clone();
        let patience = Duration::from_millis(config.stop_evaluation_ms);
        tokio::spawn(async move {
            stop_requested.await;
            Started::drain(&stop, &stopping, drained, DRAIN_PATIENCE).await;
            // The stop waits behind the batches before it; a batch that
            // takes too long to evaluate is given up.
            let abandon = async {
                tokio::time::sleep(patience).await;
                give_up.store(true, Ordering::SeqCst);
            };
            let stop_detection = async {
                // No sender left: the inputs have ended, and detection ends
                // after what they sent.
                if let Some(tx) = batch_tx.upgrade() {
                    let _ = tx.send(Work::Stop).await;
                }
            };
            tokio::join!(abandon, stop_detection);
        })
    };
    let readers = std::mem::take(&mut started_inputs.readers);
    let dropped = started_inputs.dropped.clone();
    drop(batch_tx);

    // Detection.
    let set = Arc::new(compiled.set);
    let catalog = Arc::new(catalog);
    let detect = {
        let set = set.clone();
        let catalog = catalog.clone();
        let profile = profile.clone();
        let source_metrics = source_metrics.clone();
        let evaluated = counters.events.clone();
        let dead_tx = dead_tx.clone();
        let stop = stop.clone();
        let saving = state_file.is_some();
        let summary_windowed = summary.windowed_rules;
        // With windowed rules and a state file, an event is safe only once
        // the window state holding it is saved: acknowledgements wait for
        // the next snapshot.
        let hold_acks = saving && summary_windowed > 0;
        let give_up = give_up.clone();
        let patience = config.stop_evaluation_ms;
        tokio::task::spawn_blocking(move || {
            let fields = FieldCandidates::new(&catalog, &profile);
            let metrics = DetectionMetrics::new(&set);
            let mut scratch = set.scratch();
            scratch.cancel_when(give_up);
            let mut outcome = DetectOutcome::default();
            let mut saved = Instant::now();
            let mut held: Vec<Ack> = Vec::new();
            // Alerts of windows decided outside a batch (ticks, ended
            // inputs, the replay of files): false once the sink is gone.
            let send_alerts = |alerts: Vec<Alert>| {
                alerts.is_empty()
                    || alert_tx
                        .blocking_send(SinkItem::Alerts(alerts, Instant::now()))
                        .is_ok()
            };
            while let Some(work) = batch_rx.blocking_recv() {
                // The alert sink failed (ticks bring this here even when
                // no input does): its error ends the run.
                if alert_tx.is_closed() {
                    break;
                }
                let (input, batch, acks) = match work {
                    Work::Batch(InputBatch {
                        input,
                        events: Some(events),
                        acks,
                        ..
                    }) => (input, events, acks),
                    Work::Batch(InputBatch {
                        input,
                        events: None,
                        acks,
                        ended,
                    }) => {
                        if ended {
                            if let Some(w) = windows.as_mut() {
                                let mut gone = false;
                                let ended = w.input_ended(input, &mut |alerts| {
                                    gone |= !send_alerts(alerts);
                                });
                                telemetry::windows(w);
                                if let Err(e) = ended {
                                    outcome.error = Some(e.into());
                                    break;
                                }
                                if gone {
                                    break;
                                }
                            }
                        }
                        if !acknowledge(&alert_tx, &mut held, acks, hold_acks) {
                            break;
                        }
                        continue;
                    }
                    Work::Stop => {
                        outcome.stopped = true;
                        break;
                    }
                    Work::Tick => {
                        // Batches queued behind the tick: their sources are
                        // not idle, only waiting to be processed.
                        if !batch_rx.is_empty() {
                            continue;
                        }
                        if let Some(w) = windows.as_mut() {
                            let alerts = w.tick(&now_rfc3339());
                            telemetry::windows(w);
                            if !send_alerts(alerts) {
                                break;
                            }
                            // Held acknowledgements wait for a snapshot,
                            // which a quiet input would otherwise not bring.
                            if saving && !held.is_empty() && saved.elapsed() >= snapshot_interval {
                                let _ = alert_tx.blocking_send(SinkItem::State(w.snapshot()));
                                let _ = alert_tx
                                    .blocking_send(SinkItem::Acks(std::mem::take(&mut held)));
                                saved = Instant::now();
                            }
                        }
                        continue;
                    }
                };
                let batch = match windows.as_mut() {
                    Some(w) => match w.skip_processed(input, batch) {
                        Some(batch) => batch,
                        None => {
                            if !acknowledge(&alert_tx, &mut held, acks, hold_acks) {
                                break;
                            }
                            continue;
                        }
                    },
                    None => batch,
                };
                let rows = batch.batch.num_rows();
                outcome.events += rows as u64;
                let evaluating = Instant::now();
                let matches = set.evaluate(&batch.batch, &mut scratch);
                if scratch.was_cancelled() {
                    // Stopping, and this batch took too long: its events
                    // are not lost but reported, and not acknowledged.
                    for letter in abandoned(&batch, patience) {
                        source_metrics[input].dead_letter();
                        let _ = dead_tx.blocking_send(DeadItem::Letter(letter));
                    }
                    outcome.events -= rows as u64;
                    outcome.stopped = true;
                    break;
                }
                metrics.batch(evaluating.elapsed());
                scratch.drain_rule_stats(|rule, stats| metrics.rule(rule, stats));
                source_metrics[input].evaluated(rows);
                evaluated.fetch_add(rows as u64, Ordering::Relaxed);
                let detected_at = now_rfc3339();
                let emitted: Vec<RuleMatch> = match windows.as_ref() {
                    Some(w) => matches
                        .iter()
                        .filter(|m| w.plan().base_emits(m.rule))
                        .copied()
                        .collect(),
                    None => matches.clone(),
                };
                let mut alerts = build_alerts(
                    &set,
                    &catalog,
                    &fields,
                    &batch,
                    &emitted,
                    &timestamps[input],
                    &detected_at,
                );
                if let Some(w) = windows.as_mut() {
                    match w.observe(&set, &catalog, &fields, input, &batch, &matches) {
                        Ok(dead) => {
                            for letter in dead {
                                source_metrics[input].dead_letter();
                                let _ = dead_tx.blocking_send(DeadItem::Letter(letter));
                            }
                        }
                        Err(e) => {
                            outcome.error = Some(e.into());
                            break;
                        }
                    }
                    alerts.extend(w.release(&detected_at));
                    telemetry::windows(w);
                }
                if !alerts.is_empty()
                    && alert_tx
                        .blocking_send(SinkItem::Alerts(alerts, batch.received))
                        .is_err()
                {
                    break;
                }
                // After the batch's alerts, so that they run once those are out.
                if !acknowledge(&alert_tx, &mut held, acks, hold_acks) {
                    break;
                }
                if let Some(w) = windows.as_ref().filter(|_| saving) {
                    if saved.elapsed() >= snapshot_interval {
                        let _ = alert_tx.blocking_send(SinkItem::State(w.snapshot()));
                        let _ = alert_tx.blocking_send(SinkItem::Acks(std::mem::take(&mut held)));
                        saved = Instant::now();
                    }
                }
            }
            // Inputs drained after a stop signal end the loop as a stop too.
            outcome.stopped |= stop.load(Ordering::SeqCst);
            // The alert sink failed: its error ends the run.
            outcome.sink_gone = alert_tx.is_closed();
            if let Some(w) = windows.as_mut() {
                if !outcome.stopped && outcome.error.is_none() {
                    if let Err(e) = w.finish(&mut |alerts| {
                        send_alerts(alerts);
                    }) {
                        outcome.error = Some(e.into());
                    }
                }
                telemetry::windows(w);
                if saving && outcome.error.is_none() {
                    let _ = alert_tx.blocking_send(SinkItem::State(w.snapshot()));
                    let _ = alert_tx.blocking_send(SinkItem::Acks(std::mem::take(&mut held)));
                }
                outcome.late_events = w.late_events();
                outcome.state_saved = saving && outcome.error.is_none();
                outcome.evicted_keys = w.stats().evicted_keys;
                outcome.windows = w.report();
            }
            outcome
        })
    };

    // Sinks. A run with a state file resumes: its outputs are appended to.
    let resuming = state_file.is_some();
    let dead_path = config.dead_letters.clone();
    let dead_count = Arc::new(AtomicU64::new(0));
    let dead_counted = dead_count.clone();
    // A failed dead-letter output ends the run, as a failed alert output
    // does: the alert sink watches for it.
    let (dead_failed, mut dead_failure) = tokio::sync::watch::channel(false);
    let dead_sink = tokio::spawn(async move {
        let result = write_dead_letters(dead_path, resuming, dead_rx, dead_counted).await;
        if result.is_err() {
            let _ = dead_failed.send(true);
        }
        result
    });
    let dead_barrier = dead_tx.clone();
    let dead_end = dead_tx.clone();
    let output = config.output.clone();
    let state_path = state_file.clone();
    let alerts_written = counters.alerts.clone();
    drop(dead_tx);
    let alert_sink = tokio::spawn(async move {
        let sink = SinkMetrics::new("alerts");
        let path = (output.as_os_str() != "-").then_some(output.as_path());
        let mut out = open_output(path, false, resuming).await?;
        let mut count = 0u64;
        let mut buf = Vec::with_capacity(64 * 1024);
        let mut watching_dead_letters = true;
        loop {
            let item = tokio::select! {
                item = alert_rx.recv() => match item {
                    Some(item) => item,
                    None => break,
                },
                failed = dead_failure.wait_for(|failed| *failed), if watching_dead_letters => {
                    match failed {
                        Ok(_) => return Err(PipelineError::DeadLettersFailed),
                        // The dead-letter sink finished without failing.
                        Err(_) => watching_dead_letters = false,
                    }
                    continue;
                }
            };
            let (alerts, received) = match item {
                SinkItem::Alerts(alerts, received) => (alerts, received),
                SinkItem::Acks(acks) => {
                    // The alerts before them are written and flushed; so
                    // must be the dead letters of what they cover, which
                    // were sent before their batch.
                    if acks.is_empty() {
                        continue;
                    }
                    if !dead_letters_written(&dead_barrier, false).await {
                        // The dead-letter sink failed: what it did not
                        // write must not be acknowledged.
                        return Err(PipelineError::DeadLettersFailed);
                    }
                    acks.into_iter().for_each(|ack| ack());
                    continue;
                }
                SinkItem::State(bytes) => {
                    // The positions it saves vouch for the alerts and dead
                    // letters before it: they reach the disk first.
                    out.sync().await.map_err(|e| io_error(path, e))?;
                    if !dead_letters_written(&dead_barrier, true).await {
                        return Err(PipelineError::DeadLettersFailed);
                    }
                    if let Some(path) = &state_path {
                        let path = path.clone();
                        tokio::task::spawn_blocking(move || write_state(&path, &bytes))
                            .await
                            .map_err(|e| PipelineError::Internal(format!("state writer: {e}")))??;
                    }
                    continue;
                }
            };
            buf.clear();
            for alert in &alerts {
                serde_json::to_writer(&mut buf, alert).map_err(|e| io_error(path, e.into()))?;
                buf.push(b'\n');
            }
            count += alerts.len() as u64;
            write_flushed(&mut *out.out, &buf, &sink, path).await?;
            sink.delivered(received.elapsed());
            // Counted once written, after the latency metrics, so that a
            // scrape seeing the count also sees how they were delivered.
            for alert in &alerts {
                telemetry::alert(&alert.severity.to_string());
            }
            alerts_written.fetch_add(alerts.len() as u64, Ordering::Relaxed);
        }
        Ok::<u64, PipelineError>(count)
    });

    let outcome = detect
        .await
        .map_err(|e| PipelineError::Internal(format!("detection task: {e}")))?;
    summary.events = outcome.events;
    summary.late_events = outcome.late_events;
    summary.evicted_keys = outcome.evicted_keys;
    summary.windows = outcome.windows;
    summary.stopped = outcome.stopped;
    summary.state_saved = outcome.state_saved;
    if let Some(error) = outcome.error {
        // Nothing will read what the inputs still bring.
        stop.store(true, Ordering::SeqCst);
        let _ = started_inputs.stopping.send(true);
        return Err(error);
    }
    if outcome.sink_gone {
        // Nothing will read what the inputs still bring.
        stop.store(true, Ordering::SeqCst);
        let _ = started_inputs.stopping.send(true);
    }
    for reader in readers {
        // After a stop, a reader may still wait on its input (stdin);
        // those that ended (drained listeners, tails) are counted.
        if (outcome.stopped || outcome.sink_gone) && !reader.is_finished() {
            continue;
        }
        match reader.await {
            Ok(Ok(stats)) => summary.bytes += stats.bytes,
            Ok(Err(message)) => summary.failed_inputs.push(message),
            Err(e) => return Err(PipelineError::Internal(format!("reader task: {e}"))),
        }
    }
    summary.alerts = match alert_sink.await {
        Ok(Err(PipelineError::DeadLettersFailed)) => {
            // Its own error says what went wrong.
            drop(dead_end);
            return Err(dead_sink
                .await
                .map_err(|e| PipelineError::Internal(format!("dead-letter sink: {e}")))?
                .err()
                .unwrap_or(PipelineError::DeadLettersFailed));
        }
        result => result.map_err(|e| PipelineError::Internal(format!("alert sink: {e}")))??,
    };
    // Everything acknowledged has run: commit it, then stop the listeners.
    summary
        .failed_inputs
        .extend(started_inputs.close(&stop).await);
    summary.dropped_records = dropped.load(Ordering::Relaxed);
    if outcome.stopped {
        // A reader still waiting on its input (stdin) holds the dead-letter
        // channel open: write what was sent so far, then go.
        let (written, barrier) = tokio::sync::oneshot::channel();
        if dead_end
            .send(DeadItem::Barrier {
                written,
                sync: false,
            })
            .await
            .is_ok()
        {
            let _ = tokio::time::timeout(Duration::from_secs(5), barrier).await;
        }
    } else {
        drop(dead_end);
        dead_sink
            .await
            .map_err(|e| PipelineError::Internal(format!("dead-letter sink: {e}")))??;
    }
    summary.dead_letters = dead_count.load(Ordering::Relaxed);
    signals.abort();
    ticks.abort();
    summary.elapsed = started.elapsed();
    let _ = progress_stop.send(true);
    if let Some(task) = progress {
        let _ = task.await;
    }
    Ok(summary)
}

fn io_error(path: Option<&Path>, source: std::io::Error) -> PipelineError {
    PipelineError::Output {
        path: path
            .map(Path::to_path_buf)
            .unwrap_or_else(|| PathBuf::from("-")),
        source,
    }
}

/// An alert or dead-letter output: a file, whose content can be synced to
/// disk, or stdout or stderr.
struct Output {
    out: Box<dyn AsyncWrite + Unpin + Send>,
    /// The file again, to sync it.
    file: Option<tokio::fs::File>,
}

impl Output {
    /// Flushes, and puts what was written on disk (for a file).
    async fn sync(&mut self) -> std::io::Result<()> {
        self.out.flush().await?;
        match &self.file {
            Some(file) => file.sync_data().await,
            None => Ok(()),
        }
    }
}

/// Opens an output; its folder must exist (a mistyped path is an error,
/// not a new folder). A run that resumes from a state file appends to its
/// outputs (what earlier runs wrote stays); another starts them afresh.
async fn open_output(
    path: Option<&Path>,
    stderr: bool,
    append: bool,
) -> Result<Output, PipelineError> {
    Ok(match path {
        Some(p) => {
            let file = tokio::fs::OpenOptions::new()
                .write(true)
                .create(true)
                .append(append)
                .truncate(!append)
                .open(p)
                .await
                .map_err(|e| io_error(Some(p), e))?;
            let sync = file.try_clone().await.map_err(|e| io_error(Some(p), e))?;
            Output {
                out: Box::new(BufWriter::new(file)),
                file: Some(sync),
            }
        }
        None if stderr => Output {
            out: Box::new(tokio::io::stderr()),
            file: None,
        },
        None => Output {
            out: Box::new(BufWriter::new(tokio::io::stdout())),
            file: None,
        },
    })
}

/// Waits until the dead-letter sink has written (and with `sync`, synced)
/// everything sent to it so far; false if it failed.
async fn dead_letters_written(dead: &mpsc::Sender<DeadItem>, sync: bool) -> bool {
    let (written, barrier) = tokio::sync::oneshot::channel();
    dead.send(DeadItem::Barrier { written, sync }).await.is_ok() && barrier.await.is_ok()
}

#[derive(Debug, Default)]
struct DetectOutcome {
    events: u64,
    stopped: bool,
    sink_gone: bool,
    state_saved: bool,
    late_events: u64,
    evicted_keys: u64,
    windows: WindowReport,
    /// Detection could not go on (the files' ordering failed).
    error: Option<PipelineError>,
}

/// Hands acknowledgements to the alert sink, after the alerts before
/// them, or holds them for the next state snapshot; false if the sink is
/// gone.
fn acknowledge(
    alert_tx: &mpsc::Sender<SinkItem>,
    held: &mut Vec<Ack>,
    acks: Vec<Ack>,
    hold: bool,
) -> bool {
    if hold {
        held.extend(acks);
        return true;
    }
    acks.is_empty() || alert_tx.blocking_send(SinkItem::Acks(acks)).is_ok()
}

/// Writes dead letters to `dead_path` (stderr if none) as they come;
/// a barrier is answered once everything before it is written.
async fn write_dead_letters(
    dead_path: Option<PathBuf>,
    append: bool,
    mut dead_rx: mpsc::Receiver<DeadItem>,
    dead_counted: Arc<AtomicU64>,
) -> Result<u64, PipelineError> {
    let sink = SinkMetrics::new("dead_letters");
    let mut out = open_output(dead_path.as_deref(), true, append).await?;
    let mut count = 0u64;
    while let Some(item) = dead_rx.recv().await {
        let dead = match item {
            DeadItem::Letter(dead) => dead,
            DeadItem::Barrier { written, sync } => {
                // Everything sent before it is written and flushed.
                if sync {
                    out.sync()
                        .await
                        .map_err(|e| io_error(dead_path.as_deref(), e))?;
                }
                let _ = written.send(());
                continue;
            }
        };
        count += 1;
        dead_counted.fetch_add(1, Ordering::Relaxed);
        let mut line =
            serde_json::to_vec(&dead).map_err(|e| io_error(dead_path.as_deref(), e.into()))?;
        line.push(b'\n');
        write_flushed(&mut *out.out, &line, &sink, dead_path.as_deref()).await?;
    }
    Ok(count)
}

/// Writes `bytes` to the output at `path` and flushes, timing it; a
/// failure is counted and named by the path.
async fn write_flushed(
    out: &mut (dyn AsyncWrite + Unpin + Send),
    bytes: &[u8],
    sink: &SinkMetrics,
    path: Option<&Path>,
) -> Result<(), PipelineError> {
    let writing = Instant::now();
    let written = match out.write_all(bytes).await {
        Ok(()) => out.flush().await,
        Err(e) => Err(e),
    };
    if let Err(e) = written {
        sink.failed();
        return Err(io_error(path, e));
    }
    sink.wrote(writing.elapsed());
    Ok(())
}

/// Dead letters for the events of a batch whose evaluation a stopping run
/// gave up.
fn abandoned(batch: &EventBatch, patience: u64) -> Vec<DeadLetter> {
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
                "not evaluated: the run was stopping and its batch was still being evaluated {} ms after the stop (stop_evaluation_ms)",
                patience
            ),
            excerpt: raw
                .as_ref()
                .map(|r| r.value(row).chars().take(vagt_connectors::EXCERPT_BYTES).collect())
                .unwrap_or_default(),
        })
        .collect()
}

/// Every organisation an input stamps on events must be one the catalog
/// knows (when it declares any): a misspelt actor would otherwise match
/// none of its own assets.
fn check_actors(config: &RunConfig, catalog: &Catalog) -> Result<(), ConfigError> {
    if !catalog.has_actors() {
        return Ok(());
    }
    for (index, input) in config.inputs.iter().enumerate() {
        if let Some(unknown) = input
            .actors()
            .into_iter()
            .find(|a| catalog.actor(a).is_none())
        {
            return Err(config.locate(ConfigError::setting(
                format!("inputs[{index}]"),
                format!(
                    "({}): actor '{unknown}' is not an actor in the catalog",
                    input.name()
                ),
            )));
        }
    }
    Ok(())
}

fn build_alerts(
    set: &RuleSet,
    catalog: &Catalog,
    fields: &FieldCandidates,
    batch: &EventBatch,
    matches: &[RuleMatch],
    timestamp: &TimestampSpec,
    detected_at: &str,
) -> Vec<Alert> {
    let raw = batch.raw();
    let mut alerts = Vec::with_capacity(matches.len());
    for m in matches {
        let info = set.rule(m.rule);
        let text = raw.as_ref().map(|r| r.value(m.row)).unwrap_or("{}");
        let facts = fields.facts(&batch.batch, m.row);
        let origin = &batch.origins[m.row];
        let impact = catalog.impact(&facts, &info.logsource, origin.actor.as_deref());
        let rule = alert_rule(info);
        // The input's timestamp, as windowed rules read it; a value it
        // cannot read is shown as found.
        let time = match timestamp.read(&batch.batch, &[m.row]).pop() {
            Some(Ok(ms)) => Some(format_millis(ms)),
            _ => fields.event_time(&batch.batch, m.row),
        };
        // The text was validated as a JSON object when decoded; should it
        // not be, the alert carries it as a JSON string instead.
        let event = RawValue::from_string(compact_json(text).into_owned())
            .or_else(|_| serde_json::value::to_raw_value(text))
            .ok();
        // The same event text from two organisations is two detections.
        let id = match origin.actor.as_deref() {
            Some(actor) => alert_id(&format!("{}|{actor}", rule.id), text),
            None => alert_id(&rule.id, text),
        };
        alerts.push(Alert {
            id,
            severity: severity(info.meta.level, &impact),
            actor: origin
                .actor
                .as_deref()
                .map(str::to_string)
                .or_else(|| impact.actors.first().cloned()),
            actors: impact.actors.clone(),
            critical_processes: impact.processes.clone(),
            assets: impact.assets.clone(),
            event_time: EventTime {
                first: time.clone(),
                last: time,
            },
            detected_at: detected_at.to_string(),
            group: None,
            count: 1,
            source: EventSource {
                input: origin.source.to_string(),
                line: origin.line,
                offset: origin.offset,
            },
            event,
            evidence: None,
            rule,
        });
    }
    alerts
}

#[cfg(test)]
mod tests {
    #[test]
    fn connectors_and_rules_agree_on_special_columns() {
        assert_eq!(vagt_connectors::RAW_COLUMN, vagt_rules::RAW_COLUMN);
        assert_eq!(vagt_connectors::NULLS_COLUMN, vagt_rules::NULLS_COLUMN);
    }
}
