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
use tokio::sync::mpsc;
use vagt_connectors::{FileId, Origin, SharedProjection};
use vagt_rules::window::{RestoreReport, TimestampSpec};
use vagt_rules::{
    load_paths_with, Compiled, LoadError, Profile, ProfileError, Rejection, RuleSetBuilder,
    Unroutable,
};

use crate::alert::FieldCandidates;
use crate::catalog::{Catalog, CatalogError};
use crate::config::{ConfigError, RunConfig, SourceConfig};
use crate::delivery::{DeliveryPolicy, DeliveryStage};
use crate::detect::{Detector, Work};
use crate::projection::Readers;
use crate::routes::RouteTable;
use crate::signals::StopSignals;
use crate::sinks::dead_letters::write_dead_letters;
use crate::sinks::{DeadItem, Delivery, OutputReport};
use crate::sources::{self, Outputs, Started};

/// How long a stopping run waits for its listeners, tails and Kafka
/// consumers to hand on what they took in.
const DRAIN_PATIENCE: Duration = Duration::from_secs(10);
use crate::progress::{Counters, Progress};
use crate::telemetry::{self, MetricsError, SourceMetrics};
use crate::warning::Warning;
use crate::windows::{StageInput, StateError, WindowReport, WindowStage};

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
    /// An alert output could not start or failed.
    #[error(transparent)]
    Sink(#[from] crate::sinks::OutputError),
    /// The dead-letter output could not be opened or written.
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
    #[error(transparent)]
    Archive(#[from] crate::archive::ArchiveError),
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
    /// What the rules cache did: files taken from it and parsed, whether
    /// it was written, what went wrong (none with `rules_cache: off`).
    pub rules_cache: Option<vagt_rules::CacheUse>,
    /// Windowed rules (correlations and statistics) planned.
    pub windowed_rules: usize,
    /// Events refused by windowed rules as later than the allowed lateness.
    pub late_events: u64,
    /// Window group keys evicted to respect `windows.max_keys`.
    pub evicted_keys: u64,
    /// What the windowed rules did with event time: late events per input,
    /// events ordered, reordered or too many to order, sources tracked.
    pub windows: WindowReport,
    /// Where detection's time went: the workers, and the ordered stage.
    pub detection: DetectionReport,
    /// The run was stopped by a signal (input not finished).
    pub stopped: bool,
    /// Window state and input positions were written to the state file.
    pub state_saved: bool,
    /// Events decoded and evaluated.
    pub events: u64,
    /// Bytes read.
    pub bytes: u64,
    /// Alerts raised.
    pub alerts: u64,
    /// Alerts no route took (sent to the dead letters).
    pub alerts_unrouted: u64,
    /// Alerts whose TLP no output they were routed to may see (sent to
    /// the dead letters).
    pub alerts_refused_tlp: u64,
    /// Sector campaign alerts raised.
    pub campaigns: u64,
    /// What each output did, by name.
    pub outputs: std::collections::BTreeMap<String, OutputReport>,
    /// Records that went to the dead-letter output.
    pub dead_letters: u64,
    /// Records dropped because a queue was full (UDP syslog only; every
    /// other source waits instead).
    pub dropped_records: u64,
    /// Inputs that could not be read, with the reason.
    pub failed_inputs: Vec<String>,
    /// What the archive committed (with `--archive`).
    pub archive: Option<crate::archive::ArchiveReport>,
    /// What the threat intelligence feeds did (with `intel`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub intel: Option<crate::intel::IntelReport>,
    /// What retro-hunts of new and changed rules did (with
    /// `archive.retro_hunt`).
    pub retro_hunts: Option<crate::archive::retro::RetroHuntReport>,
    /// What each archive input's scan read and skipped, by input.
    pub archive_scans: std::collections::BTreeMap<String, crate::archive::input::ScanReport>,
    /// Loading the profile, rules and catalog, and compiling the rules.
    #[serde(rename = "startup_seconds", serialize_with = "seconds")]
    pub startup: Duration,
    /// From the first read to the last alert written.
    #[serde(rename = "processing_seconds", serialize_with = "seconds")]
    pub elapsed: Duration,
}

/// Where detection's time went (for `--stats`): the workers evaluate in
/// parallel; the ordered stage (alerts, windows, acknowledgements) runs
/// on one thread, and bounds how far more workers can take a run.
#[derive(Debug, Default, Clone, serde::Serialize)]
pub struct DetectionReport {
    /// Evaluation workers that ran.
    pub workers: usize,
    /// Batches evaluated (the events divided by this is the mean batch,
    /// see `decoder.batch_size` and `decoder.batch_bytes`).
    pub batches: u64,
    /// Time the workers spent evaluating batches, summed over workers.
    #[serde(rename = "evaluation_seconds", serialize_with = "seconds")]
    pub evaluation: Duration,
    /// Time the ordered stage spent on evaluated batches (not waiting).
    #[serde(rename = "ordered_seconds", serialize_with = "seconds")]
    pub ordered: Duration,
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

/// Loads and compiles the configured rules, their `%feed:NAME%` values
/// resolved to `intel`'s feeds; also the digest of the rule files read
/// (see [`vagt_rules::RuleCollection::digest`]).
pub fn compile_rules(
    config: &RunConfig,
    profile: &Profile,
    intel: Option<&crate::intel::Intel>,
) -> Result<LoadedRules, PipelineError> {
    let mut collection = load_rules(config)?;
    let digest = collection.digest;
    let cache = collection.cache.take();
    Ok(LoadedRules {
        compiled: compile_collection(collection, config, profile, intel),
        digest,
        cache,
    })
}

/// The configured rules, compiled.
#[derive(Debug)]
pub struct LoadedRules {
    /// The rule set and windowed rules.
    pub compiled: Compiled,
    /// The digest of the rule files read.
    pub digest: [u8; 32],
    /// What the rules cache did, if one was used.
    pub cache: Option<vagt_rules::CacheUse>,
}

/// Compiles loaded rules, their `%feed:NAME%` values resolved to
/// `intel`'s feeds, and marked with the TLP of the feeds they read.
pub(crate) fn compile_collection(
    mut collection: vagt_rules::RuleCollection,
    config: &RunConfig,
    profile: &Profile,
    intel: Option<&crate::intel::Intel>,
) -> Compiled {
    let mut builder = RuleSetBuilder::new(profile.clone());
    if let (Some(intel), Some(settings)) = (intel, &config.intel) {
        crate::intel::mark_rules_with_feed_tlp(&mut collection, settings);
        builder = builder.feeds(intel.lists());
    }
    builder.build_from(collection)
}

/// Loads the configured rules, not yet compiled: unchanged files from the
/// rules cache, whose problems are warned of, never fatal.
pub(crate) fn load_rules(config: &RunConfig) -> Result<vagt_rules::RuleCollection, PipelineError> {
    let cache = config.rules_cache.cache();
    let collection = load_paths_with(&config.rules, &config.placeholders, cache.as_ref())?;
    if let Some(used) = &collection.cache {
        for problem in &used.problems {
            tracing::warn!("{problem}");
        }
        tracing::debug!(
            file = %used.file.display(),
            files = used.files,
            hits = used.hits,
            parsed = used.parsed,
            written = used.written,
            "rules cache"
        );
    }
    Ok(collection)
}

/// The catalog, and the routes and warning service over it and the
/// outputs, checked together: at start and for a reload; `version` names
/// them (see [`crate::reload::version`]).
pub(crate) fn load_policy(
    config: &RunConfig,
    outputs: &[crate::sinks::config::OutputConfig],
    version: String,
) -> Result<(Arc<Catalog>, DeliveryPolicy), PipelineError> {
    let catalog = match &config.catalog {
        Some(path) => Catalog::from_file(path)?,
        None => Catalog::empty(),
    };
    check_actors(config, &catalog)?;
    let routes = RouteTable::compile(&config.routes, outputs, &catalog)
        .map_err(|e| config.locate(ConfigError::setting(e.key, e.message)))?;
    let catalog = Arc::new(catalog);
    let warning = Warning::new(config, outputs, catalog.clone())?;
    Ok((
        catalog,
        DeliveryPolicy {
            routes,
            warning,
            version,
            outputs: outputs.to_vec(),
        },
    ))
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
    // The feeds first: rules may refer to them.
    let intel = crate::intel::start_configured(config.intel.as_ref(), &profile)?;
    let LoadedRules {
        compiled,
        digest: rules_digest,
        cache: rules_cache,
    } = compile_rules(&config, &profile, intel.as_deref())?;
    compiled.rejected.iter().for_each(|r| observer.rejected(r));
    compiled
        .unroutable
        .iter()
        .for_each(|u| observer.unroutable(u));
    let outputs = config.alert_outputs();
    let version = crate::reload::version(&config, &rules_digest);
    let (catalog, mut policy) = load_policy(&config, &outputs, version)?;
    if let Some(addr) = config.metrics_listen {
        telemetry::install(addr)?;
    }
    crate::reload::announce(&policy.version, None);
    let version = policy.version.clone();
    telemetry::rules(compiled.set.len(), compiled.rejected.len());
    let names: Vec<String> = config.inputs.iter().map(|i| i.name()).collect();
    let files = input_files(&config);
    let timestamps: Vec<TimestampSpec> = config
        .inputs
        .iter()
        .map(|i| {
            i.timestamp
                .clone()
                .unwrap_or_else(|| profile.timestamp.clone())
        })
        .collect();
    let state_file = config.windows.state_file.clone();
    let snapshot_interval = config.windows.snapshot_interval();
    // Window stages for this run's inputs: one now, and one later should a
    // reload bring the first windowed rules.
    let new_stage = stage_maker(&config, &profile, &names, &timestamps)?;
    let (mut windows, saved_warning) =
        window_stage(&config, &compiled, &new_stage, &files, observer)?;
    if let (Some(saved), Some(path)) = (saved_warning, &state_file) {
        restore_warning(&mut policy.warning, &saved, path, &outputs, observer)?;
    }
    let mut summary = RunSummary {
        windowed_rules: compiled.windows.active(),
        rules_loaded: compiled.set.len(),
        rules_rejected: compiled.rejected.len(),
        rules_unroutable: compiled.unroutable.len(),
        rules_cache,
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
        .map(|(i, (size, _))| match &i.source {
            SourceConfig::File(_) => *size,
            SourceConfig::Archive(archive) => archive.selected_bytes(),
            _ => None,
        })
        .sum();
    let (progress_stop, progress) = spawn_progress(config.progress, total_bytes, &counters);
    let (batch_tx, batch_rx) = mpsc::channel::<Work>(config.channel_capacity);
    let (dead_tx, dead_rx) = mpsc::channel::<DeadItem>(1024);
    let (alert_tx, alert_rx) = mpsc::channel::<Delivery>(config.channel_capacity);
    // Inputs stop taking input; detection stops at the `Work::Stop` sent
    // after what they had taken in.
    let stop = Arc::new(AtomicBool::new(false));
    let ticks = spawn_ticks(&batch_tx);
    let source_metrics: Vec<SourceMetrics> = names.iter().map(|n| SourceMetrics::new(n)).collect();

    // The archive, before delivery: acknowledgements wait for it.
    let archive = match &config.archive {
        Some(settings) => Some(crate::archive::writer::start(
            settings,
            timestamps.clone(),
            profile.clone(),
        )?),
        None => None,
    };

    // Outputs and delivery. A run with a state file resumes: its outputs
    // are appended to.
    let Delivering {
        delivery,
        dead_sink,
        dead_count,
        output_metrics,
    } = start_delivery(
        &config,
        &outputs,
        policy,
        DeliveryChannels {
            dead_tx: dead_tx.clone(),
            dead_rx,
            alert_rx,
            archive: archive.as_ref().map(|a| a.items.clone()),
        },
        counters.alerts.clone(),
    )
    .await?;

    // Inputs.
    let resume: Vec<Option<(Origin, Option<FileId>)>> = (0..config.inputs.len())
        .map(|i| windows.as_ref().and_then(|w| w.resume_at(i)))
        .collect();
    if let Some(w) = windows.as_mut() {
        for (i, input) in config.inputs.iter().enumerate() {
            if matches!(input.source, SourceConfig::Tail(_)) {
                w.seeking(i);
            }
        }
    }
    // The columns the inputs decode: those read now.
    let fields = FieldCandidates::new(&catalog, &profile);
    let column_readers = Readers::new(&profile, &timestamps);
    let projection = SharedProjection::new(Some(column_readers.projection(
        &compiled.set,
        windows.as_ref().map(|w| w.plan()),
        &fields,
        intel.as_deref(),
    )));
    let mut started_inputs = sources::start(
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
            projection: projection.clone(),
        },
        &|name, addr| observer.listening(name, addr),
    )
    .await?;
    // Set when a stopping run gives up on the batch being evaluated.
    let give_up = Arc::new(AtomicBool::new(false));
    let signals = spawn_stop_handler(
        stop_requested,
        &mut started_inputs,
        &stop,
        &batch_tx,
        &give_up,
        config.stop_evaluation.get(),
    );
    let readers = std::mem::take(&mut started_inputs.readers);
    let dropped = started_inputs.dropped.clone();
    // A run started from a config file reloads it (SIGHUP, watch, HTTP).
    let reloads = match config.source.as_ref().map(|s| s.path.clone()) {
        Some(path) => {
            let reloading = crate::reload::start(
                path,
                config.clone(),
                version.clone(),
                profile.clone(),
                intel.clone(),
                &batch_tx,
            )
            .await?;
            if let Some(addr) = reloading.http {
                observer.listening("reload", addr);
            }
            Some(reloading)
        }
        None => None,
    };
    drop(batch_tx);

    // Detection.
    let set = Arc::new(compiled.set);
    let retro = match config.archive.as_ref() {
        Some(a) => match a.retro_hunt {
            Some(span) => Some(crate::archive::retro::RetroHunts::open(
                a.dir.clone(),
                span.get(),
                config.decoder.clone(),
                profile.timestamp.clone(),
                retro_stage_maker(&config, &profile)?,
                a.store.clone(),
            )?),
            None => None,
        },
        None => None,
    };
    let new_stage = Box::new(new_stage);
    let detector = Detector {
        // The detector and the reloader hold the feeds from here on: a
        // reload that replaces them stops the old ones.
        intel,
        intel_hits_before: 0,
        set: set.clone(),
        catalog: catalog.clone(),
        fields,
        windows,
        timestamps,
        source_metrics: source_metrics.clone(),
        evaluated: counters.events.clone(),
        dead: dead_tx.clone(),
        sinks: alert_tx,
        stop: stop.clone(),
        stop_evaluation: config.stop_evaluation.get(),
        snapshots: state_file.is_some().then_some(snapshot_interval),
        new_stage,
        workers: vagt_rules::workers::Workers::new(
            config.detection_workers(),
            Some(give_up.clone()),
        ),
        archive: archive.as_ref().map(|a| a.items.clone()),
        retro,
        projection,
        readers: column_readers,
    };
    let detect = tokio::task::spawn_blocking(move || detector.run(batch_rx));

    let dead_end = dead_tx.clone();
    drop(dead_tx);

    let outcome = detect
        .await
        .map_err(|e| PipelineError::Internal(format!("detection task: {e}")))?;
    summary.events = outcome.events;
    summary.late_events = outcome.late_events;
    summary.detection = outcome.detection;
    summary.intel = outcome.intel;
    summary.retro_hunts = outcome.retro_hunts;
    summary.evicted_keys = outcome.evicted_keys;
    summary.windows = outcome.windows;
    summary.stopped = outcome.stopped;
    summary.state_saved = outcome.state_saved;
    if let Some(error) = outcome.error {
        // Nothing will read what the inputs still bring.
        stop.store(true, Ordering::SeqCst);
        let _ = started_inputs.stopping.send(true);
        // The archive's own error says why it stopped.
        if let Some(archive) = archive.filter(|a| a.done.is_finished()) {
            if let Ok(Err(e)) = archive.done.await {
                return Err(e.into());
            }
        }
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
    let delivered = match delivery.await {
        Ok(Err(PipelineError::DeadLettersFailed)) => {
            // Its own error says what went wrong.
            drop(dead_end);
            return Err(dead_sink
                .await
                .map_err(|e| PipelineError::Internal(format!("dead-letter sink: {e}")))?
                .err()
                .unwrap_or(PipelineError::DeadLettersFailed));
        }
        result => result.map_err(|e| PipelineError::Internal(format!("delivery: {e}")))??,
    };
    // Delivery is over: the writer commits what it holds and ends.
    if let Some(archive) = archive {
        drop(archive.items);
        summary.archive = Some(
            archive
                .done
                .await
                .map_err(|e| PipelineError::Internal(format!("archive writer: {e}")))??,
        );
    }
    summary.archive_scans = started_inputs
        .scans
        .iter()
        .map(|(name, report)| {
            let report = report.lock().map(|r| r.clone()).unwrap_or_default();
            (name.clone(), report)
        })
        .collect();
    summary.alerts = delivered.alerts + delivered.unrouted + delivered.refused_tlp;
    summary.alerts_unrouted = delivered.unrouted;
    summary.alerts_refused_tlp = delivered.refused_tlp;
    summary.campaigns = delivered.campaigns;
    summary.outputs = output_metrics
        .lock()
        .expect("output registry")
        .iter()
        .map(|(name, kind, metrics)| (name.clone(), metrics.report(kind)))
        .collect();
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
    if let Some(reloads) = reloads {
        reloads.abort();
    }
    summary.elapsed = started.elapsed();
    let _ = progress_stop.send(true);
    if let Some(task) = progress {
        let _ = task.await;
    }
    Ok(summary)
}

/// The progress display, ticking until told to stop.
fn spawn_progress(
    mode: crate::progress::ProgressMode,
    total_bytes: Option<u64>,
    counters: &Counters,
) -> (
    tokio::sync::watch::Sender<bool>,
    Option<tokio::task::JoinHandle<()>>,
) {
    let (progress_stop, mut progress_stopped) = tokio::sync::watch::channel(false);
    let progress = Progress::start(mode, total_bytes, counters.clone()).map(|mut p| {
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
    (progress_stop, progress)
}

/// While no event arrives, what waits for the watermark would wait for
/// ever; ticks let detection apply it once the input has been idle for the
/// allowed lateness (and save a quiet input's position).
fn spawn_ticks(batch_tx: &mpsc::Sender<Work>) -> tokio::task::JoinHandle<()> {
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
}

/// On SIGTERM or Ctrl-C (`stop_requested`): inputs that run until stopped
/// stop taking input and hand on what they took; then detection halts,
/// and files not yet read to their end are left where they are (the state
/// file says where). A batch still being evaluated `patience` after that
/// is given up.
fn spawn_stop_handler(
    stop_requested: impl std::future::Future<Output = ()> + Send + 'static,
    inputs: &mut Started,
    stop: &Arc<AtomicBool>,
    batch_tx: &mpsc::Sender<Work>,
    give_up: &Arc<AtomicBool>,
    patience: Duration,
) -> tokio::task::JoinHandle<()> {
    let stop = stop.clone();
    let stopping = inputs.stopping.clone();
    let drained = inputs.drained.take();
    let batch_tx = batch_tx.downgrade();
    let give_up = give_up.clone();
    tokio::spawn(async move {
        stop_requested.await;
        Started::drain(&stop, &stopping, drained, DRAIN_PATIENCE).await;
        // The stop waits behind the batches before it; a batch that takes
        // too long to evaluate is given up.
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
}

/// Sizes and identities of the files read or followed, to tell whether a
/// saved position still applies.
fn input_files(config: &RunConfig) -> Vec<(Option<u64>, Option<FileId>)> {
    config
        .inputs
        .iter()
        .map(|i| match &i.source {
            SourceConfig::File(p) | SourceConfig::Tail(p) => match std::fs::metadata(p) {
                Ok(m) => (Some(m.len()), vagt_connectors::tail::identity(&m)),
                Err(_) => (None, None),
            },
            _ => (None, None),
        })
        .collect()
}

/// The windowed rules' stage (also kept, without windowed rules, for a
/// state file's input positions), restored from the state file.
fn window_stage(
    config: &RunConfig,
    compiled: &Compiled,
    new_stage: &dyn Fn(vagt_rules::window::WindowPlan) -> WindowStage,
    files: &[(Option<u64>, Option<FileId>)],
    observer: &dyn RunObserver,
) -> Result<(Option<WindowStage>, Option<Box<RawValue>>), PipelineError> {
    let state_file = config.windows.state_file.as_deref();
    if compiled.windows.is_empty() && state_file.is_none() {
        return Ok((None, None));
    }
    let mut stage = new_stage(compiled.windows.clone());
    let mut saved_warning = None;
    if let Some(path) = state_file {
        if let Some(restored) = stage.restore(path, files)? {
            if let Some(note) = &restored.note {
                observer.notice(note);
            }
            observer.restored(&restored.report);
            saved_warning = restored.warning;
        }
    }
    Ok((Some(stage), saved_warning))
}

/// Makes window stages for this run's inputs, from a plan.
fn stage_maker(
    config: &RunConfig,
    profile: &Profile,
    names: &[String],
    timestamps: &[TimestampSpec],
) -> Result<
    impl Fn(vagt_rules::window::WindowPlan) -> WindowStage + Send + Sync + 'static,
    PipelineError,
> {
    let inputs: Vec<StageInput> = config
        .inputs
        .iter()
        .zip(names)
        .map(|(i, name)| StageInput {
            name: name.clone(),
            actor: i.actor.clone(),
            finite: matches!(i.source, SourceConfig::File(_) | SourceConfig::Archive(_)),
        })
        .collect();
    stage_maker_for(config, profile, inputs, timestamps.to_vec())
}

/// Window stages for retro-hunts: one finite input, the archive, whose
/// events are ordered by event time with the profile's timestamps.
fn retro_stage_maker(
    config: &RunConfig,
    profile: &Profile,
) -> Result<crate::archive::retro::StageMaker, PipelineError> {
    let input = StageInput {
        name: "retro-hunt".into(),
        actor: None,
        finite: true,
    };
    let make = stage_maker_for(
        config,
        profile,
        vec![input],
        vec![profile.timestamp.clone()],
    )?;
    Ok(crate::archive::retro::StageMaker(Arc::new(make)))
}

fn stage_maker_for(
    config: &RunConfig,
    profile: &Profile,
    inputs: Vec<StageInput>,
    timestamps: Vec<TimestampSpec>,
) -> Result<
    impl Fn(vagt_rules::window::WindowPlan) -> WindowStage + Send + Sync + 'static,
    PipelineError,
> {
    let limits = config.windows.limits()?;
    let (max_ahead, history) = (config.windows.max_ahead(), config.windows.history());
    let host = profile.host.clone();
    Ok(move |plan| {
        WindowStage::new(
            plan,
            limits,
            timestamps.clone(),
            host.clone(),
            inputs.clone(),
        )
        .with_max_ahead(max_ahead)
        .with_history(history.clone())
    })
}

/// Brings back the suppression groups and campaign tracks a state file
/// kept.
fn restore_warning(
    warning: &mut Warning,
    saved: &RawValue,
    path: &Path,
    outputs: &[crate::sinks::config::OutputConfig],
    observer: &dyn RunObserver,
) -> Result<(), PipelineError> {
    let invalid = |message: String| {
        PipelineError::from(StateError::Invalid {
            path: path.to_path_buf(),
            message,
        })
    };
    let state: crate::warning::WarningState =
        serde_json::from_str(saved.get()).map_err(|e| invalid(format!("warning: {e}")))?;
    let names: Vec<Arc<str>> = outputs.iter().map(|o| Arc::from(o.name.as_str())).collect();
    if let Some(note) = warning.restore(state, &names).map_err(invalid)? {
        observer.notice(&note);
    }
    Ok(())
}

/// The delivery side of a run, started.
struct Delivering {
    delivery: tokio::task::JoinHandle<Result<crate::delivery::DeliveryOutcome, PipelineError>>,
    dead_sink: tokio::task::JoinHandle<Result<u64, PipelineError>>,
    dead_count: Arc<AtomicU64>,
    output_metrics: crate::sinks::running::OutputRegistry,
}

/// What delivery takes from and hands to the other stages.
struct DeliveryChannels {
    dead_tx: mpsc::Sender<DeadItem>,
    dead_rx: mpsc::Receiver<DeadItem>,
    alert_rx: mpsc::Receiver<Delivery>,
    /// The archive writer, whose barrier acknowledgements wait for.
    archive: Option<mpsc::Sender<crate::archive::writer::ArchiveItem>>,
}

/// Starts the dead-letter sink, every output and the delivery stage that
/// routes alerts to them. A run with a state file resumes: its outputs are
/// appended to.
async fn start_delivery(
    config: &RunConfig,
    outputs: &[crate::sinks::config::OutputConfig],
    policy: DeliveryPolicy,
    channels: DeliveryChannels,
    routed: Arc<AtomicU64>,
) -> Result<Delivering, PipelineError> {
    let DeliveryChannels {
        dead_tx,
        dead_rx,
        alert_rx,
        archive,
    } = channels;
    let state_file = config.windows.state_file.clone();
    let resuming = state_file.is_some();
    let dead_path = config.dead_letters.clone();
    let dead_count = Arc::new(AtomicU64::new(0));
    let dead_counted = dead_count.clone();
    // A failed dead-letter output ends the run, as a failed alert output
    // does: delivery watches for it.
    let (dead_failed, dead_failure) = tokio::sync::watch::channel(false);
    let dead_sink = tokio::spawn(async move {
        let result = write_dead_letters(dead_path, resuming, dead_rx, dead_counted).await;
        if result.is_err() {
            let _ = dead_failed.send(true);
        }
        result
    });
    let env = crate::sinks::SinkEnv {
        pseudonyms: policy.warning.pseudonyms.clone(),
        host_fields: policy.warning.catalog_host_fields(),
    };
    let mut sinks = Vec::with_capacity(outputs.len());
    for output in outputs {
        sinks.push(
            crate::sinks::start(
                output,
                dead_tx.clone(),
                resuming,
                config.channel_capacity,
                &env,
            )
            .await?,
        );
    }
    let output_metrics: crate::sinks::running::OutputRegistry = Arc::new(std::sync::Mutex::new(
        sinks
            .iter()
            .map(|s| (s.name.to_string(), s.kind, s.metrics.clone()))
            .collect(),
    ));
    let delivery = tokio::spawn(
        DeliveryStage {
            policy,
            sinks,
            capacity: config.channel_capacity,
            env,
            registry: output_metrics.clone(),
            dead: dead_tx,
            dead_failed: dead_failure,
            state_file,
            routed,
            archive,
        }
        .run(alert_rx),
    );
    Ok(Delivering {
        delivery,
        dead_sink,
        dead_count,
        output_metrics,
    })
}

/// Every organisation an input stamps on events must be one the catalog
/// knows (when it declares any): a misspelt actor would otherwise match
/// none of its own assets.
pub(crate) fn check_actors(config: &RunConfig, catalog: &Catalog) -> Result<(), ConfigError> {
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

#[cfg(test)]
mod tests {
    #[test]
    fn connectors_and_rules_agree_on_special_columns() {
        assert_eq!(vagt_connectors::RAW_COLUMN, vagt_rules::RAW_COLUMN);
        assert_eq!(vagt_connectors::NULLS_COLUMN, vagt_rules::NULLS_COLUMN);
    }
}
