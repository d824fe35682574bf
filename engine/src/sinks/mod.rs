//! Sinks: the outputs alerts are delivered to (stdout, files, Kafka,
//! webhooks, syslog), the dead-letter output, and what they share.
//!
//! Each output runs as its own task, fed by the delivery stage
//! (`delivery.rs`) with the alerts routed to it and with barriers. An
//! output answers a barrier once every alert before it is *taken*:
//! delivered (written to a file, confirmed by Kafka, sent to syslog) or
//! safe in its outbox (webhook), or handed to the dead letters with the
//! reason. Input positions, Kafka offsets and window state advance only
//! after every output answered.
//!
//! ```text
//!  delivery ──SinkItem──► output task (one per output) ──► its destination
//!                │                      │
//!                │                      └─ refused alerts ──► dead-letter sink
//!                └─ Barrier{sync} ◄── answered when everything before it is taken
//! ```

pub mod config;
pub(crate) mod dead_letters;
pub(crate) mod encode;
pub(crate) mod file;
pub(crate) mod kafka;
pub(crate) mod outbox;
pub(crate) mod running;
pub(crate) mod stix;
pub(crate) mod syslog;
pub(crate) mod taxii;
pub mod template;
pub(crate) mod webhook;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use metrics::{counter, gauge, histogram, Counter, Gauge, Histogram};
use serde::Serialize;
use serde_json::value::RawValue;
use tokio::io::{AsyncWrite, AsyncWriteExt, BufWriter};
use tokio::sync::{mpsc, oneshot};
use vagt_connectors::live::Ack;
use vagt_connectors::DeadLetter;

use crate::alert::Alert;
use crate::pipeline::PipelineError;
use crate::telemetry::SinkMetrics;
use config::{Encoding, OutputConfig, SinkConfig};

/// What flows from detection to delivery. State goes through delivery so
/// that it is saved only after the alerts before it are taken.
pub(crate) enum Delivery {
    /// Alerts, with when the first event behind them was read.
    Alerts(Vec<Alert>, Instant),
    /// Run once everything before is taken (Kafka offsets to commit).
    Acks(Vec<Ack>),
    /// The state file's content, written once everything before is on disk.
    State(Vec<u8>),
    /// A reloaded version's outputs, routes and warning settings, for the
    /// alerts after it; the answer says whether it runs (detection swaps
    /// its rules only then).
    Reroute(
        Box<crate::delivery::DeliveryPolicy>,
        oneshot::Sender<Result<(), String>>,
    ),
}

/// What flows to the dead-letter sink.
pub(crate) enum DeadItem {
    Letter(DeadLetter),
    /// An alert an output could not deliver, kept whole.
    Alert(UndeliveredAlert),
    /// Answered once everything sent before it is written (and, when
    /// `sync`, on disk).
    Barrier {
        written: oneshot::Sender<()>,
        sync: bool,
    },
}

/// An alert an output could not deliver, as written to the dead letters.
#[derive(Debug, Serialize)]
pub(crate) struct UndeliveredAlert {
    /// `output NAME`.
    pub source: String,
    /// Why.
    pub reason: String,
    /// The alert, as the output encodes it (vagt's alert JSON unless the
    /// output writes OCSF).
    pub alert: Box<RawValue>,
}

/// What flows from delivery to one output.
pub(crate) enum SinkItem {
    /// Alerts routed to it, with when the first event behind them was read.
    Alerts(Vec<Arc<Alert>>, Instant),
    /// Answered once every alert before it is taken (and, with `sync`, on
    /// disk where the output writes to disk).
    Barrier {
        sync: bool,
        taken: oneshot::Sender<()>,
    },
}

/// How an output task ended without failing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum SinkEnd {
    /// Every alert taken.
    Done,
    /// Its reader went away (a closed pipe): the run ends quietly.
    ReaderGone,
}

/// What an output did, for the run summary.
#[derive(Debug, Default, Clone, Serialize, PartialEq, Eq)]
pub struct OutputReport {
    /// `stdout`, `file`, `kafka`, `webhook` or `syslog`.
    #[serde(rename = "type")]
    pub kind: String,
    /// Alerts delivered (for a webhook: accepted by the receiver).
    pub delivered: u64,
    /// Attempts repeated after a failure.
    pub retried: u64,
    /// Alerts refused for good, sent to the dead letters.
    pub failed: u64,
    /// Alerts left in the outbox at the end, delivered by the next run.
    pub pending: u64,
    /// Repeats held back by suppression (each is in a follow-up's count).
    pub suppressed: u64,
    /// Follow-ups sent, reporting held-back repeats.
    pub follow_ups: u64,
    /// Alerts refused because their TLP excludes the output's audience.
    pub refused_tlp: u64,
}

/// An output's counters: Prometheus metrics and the summary's figures.
#[derive(Debug, Clone)]
pub(crate) struct OutputMetrics {
    delivered: Counter,
    retried: Counter,
    failed: Counter,
    outbox_bytes: Gauge,
    latency: Histogram,
    suppressed: Counter,
    follow_ups: Counter,
    refused_tlp: Counter,
    stats: Arc<OutputStats>,
}

#[derive(Debug, Default)]
pub(crate) struct OutputStats {
    delivered: AtomicU64,
    retried: AtomicU64,
    failed: AtomicU64,
    pending: AtomicU64,
    suppressed: AtomicU64,
    follow_ups: AtomicU64,
    refused_tlp: AtomicU64,
}

impl OutputMetrics {
    pub fn new(output: &str) -> OutputMetrics {
        let label = output.to_string();
        OutputMetrics {
            delivered: counter!("vagt_output_delivered_total", "output" => label.clone()),
            retried: counter!("vagt_output_retried_total", "output" => label.clone()),
            failed: counter!("vagt_output_failed_total", "output" => label.clone()),
            outbox_bytes: gauge!("vagt_output_outbox_bytes", "output" => label.clone()),
            latency: histogram!("vagt_output_delivery_seconds", "output" => label.clone()),
            suppressed: counter!("vagt_output_suppressed_total", "output" => label.clone()),
            follow_ups: counter!("vagt_output_follow_ups_total", "output" => label.clone()),
            refused_tlp: counter!("vagt_output_refused_total", "output" => label, "reason" => "tlp"),
            stats: Arc::default(),
        }
    }

    /// `n` alerts delivered; `received`, when known, is when the first
    /// event behind them was read.
    pub fn delivered(&self, n: usize, received: Option<Instant>) {
        if let Some(received) = received {
            self.latency.record(received.elapsed().as_secs_f64());
        }
        self.delivered.increment(n as u64);
        self.stats.delivered.fetch_add(n as u64, Ordering::Relaxed);
    }

    pub fn retried(&self) {
        self.retried.increment(1);
        self.stats.retried.fetch_add(1, Ordering::Relaxed);
    }

    pub fn failed(&self, n: usize) {
        self.failed.increment(n as u64);
        self.stats.failed.fetch_add(n as u64, Ordering::Relaxed);
    }

    /// A repeat held back.
    pub fn suppressed(&self) {
        self.suppressed.increment(1);
        self.stats.suppressed.fetch_add(1, Ordering::Relaxed);
    }

    /// A follow-up sent.
    pub fn follow_up(&self) {
        self.follow_ups.increment(1);
        self.stats.follow_ups.fetch_add(1, Ordering::Relaxed);
    }

    /// An alert its audience may not see.
    pub fn refused_tlp(&self) {
        self.refused_tlp.increment(1);
        self.stats.refused_tlp.fetch_add(1, Ordering::Relaxed);
    }

    pub fn outbox(&self, bytes: u64) {
        self.outbox_bytes.set(bytes as f64);
    }

    pub fn pending(&self, alerts: u64) {
        self.stats.pending.store(alerts, Ordering::Relaxed);
    }

    pub fn report(&self, kind: &str) -> OutputReport {
        OutputReport {
            kind: kind.to_string(),
            delivered: self.stats.delivered.load(Ordering::Relaxed),
            retried: self.stats.retried.load(Ordering::Relaxed),
            failed: self.stats.failed.load(Ordering::Relaxed),
            pending: self.stats.pending.load(Ordering::Relaxed),
            suppressed: self.stats.suppressed.load(Ordering::Relaxed),
            follow_ups: self.stats.follow_ups.load(Ordering::Relaxed),
            refused_tlp: self.stats.refused_tlp.load(Ordering::Relaxed),
        }
    }
}

/// What every output task works with.
#[derive(Clone)]
pub(crate) struct SinkContext {
    /// The output's name.
    pub name: Arc<str>,
    pub encoding: Encoding,
    /// Where alerts it cannot deliver go.
    pub dead: mpsc::Sender<DeadItem>,
    pub metrics: OutputMetrics,
    /// A run resuming from a state file appends to its files.
    pub append: bool,
}

impl SinkContext {
    /// Hands an alert that cannot be delivered to the dead letters, with
    /// the reason, and counts it.
    pub async fn refuse(&self, alert: Arc<Alert>, reason: String) {
        tracing::warn!(output = %self.name, alert = %alert.id, "alert not delivered: {reason}");
        let record = serde_json::value::to_raw_value(&*alert).expect("alert JSON");
        self.refuse_record(record, reason).await;
    }

    /// Hands an encoded alert that cannot be delivered to the dead letters.
    pub async fn refuse_encoded(&self, payload: &[u8], reason: String) {
        let record = serde_json::from_slice::<Box<RawValue>>(payload).unwrap_or_else(|_| {
            let text = String::from_utf8_lossy(payload);
            serde_json::value::to_raw_value(&text).expect("a JSON string")
        });
        tracing::warn!(output = %self.name, "alert not delivered: {reason}");
        self.refuse_record(record, reason).await;
    }

    async fn refuse_record(&self, alert: Box<RawValue>, reason: String) {
        self.metrics.failed(1);
        let _ = self
            .dead
            .send(DeadItem::Alert(UndeliveredAlert {
                source: format!("output {}", self.name),
                reason,
                alert,
            }))
            .await;
    }
}

/// A running output.
pub(crate) struct SinkHandle {
    pub name: Arc<str>,
    pub kind: &'static str,
    pub items: mpsc::Sender<SinkItem>,
    pub task: tokio::task::JoinHandle<Result<SinkEnd, PipelineError>>,
    pub metrics: OutputMetrics,
}

/// Why an output cannot start or went wrong for good.
#[derive(Debug, thiserror::Error)]
pub enum OutputError {
    /// Its file cannot be opened or written.
    #[error("output {name}: {}: {source}", path.display())]
    Io {
        /// The output.
        name: String,
        /// The file.
        path: PathBuf,
        /// Cause.
        #[source]
        source: std::io::Error,
    },
    /// Its client cannot be set up (TLS files, Kafka settings).
    #[error("output {name}: {message}")]
    Setup {
        /// The output.
        name: String,
        /// What is wrong.
        message: String,
    },
}

/// What outputs take from the run beyond their own config.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct SinkEnv {
    /// The key for pseudonyms, if configured.
    pub pseudonyms: Option<crate::warning::pseudonym::Pseudonymiser>,
    /// Event fields naming the host (the catalog's).
    pub host_fields: Vec<String>,
}

/// Starts the task of one output.
///
/// # Errors
/// It cannot start (a file that cannot be opened, a bad TLS file).
pub(crate) async fn start(
    config: &OutputConfig,
    dead: mpsc::Sender<DeadItem>,
    append: bool,
    capacity: usize,
    env: &SinkEnv,
) -> Result<SinkHandle, PipelineError> {
    start_with(config, dead, append, capacity, env, None).await
}

/// Starts the task of one output, counting with `metrics` if given (a
/// reloaded output goes on with its counters).
///
/// # Errors
/// It cannot start (a file that cannot be opened, a bad TLS file).
pub(crate) async fn start_with(
    config: &OutputConfig,
    dead: mpsc::Sender<DeadItem>,
    append: bool,
    capacity: usize,
    env: &SinkEnv,
    metrics: Option<OutputMetrics>,
) -> Result<SinkHandle, PipelineError> {
    let name: Arc<str> = Arc::from(config.name.as_str());
    let metrics = metrics.unwrap_or_else(|| OutputMetrics::new(&name));
    let stdout_is_terminal = std::io::IsTerminal::is_terminal(&std::io::stdout());
    let encoding = config.encoding.unwrap_or(match config.sink {
        SinkConfig::Stdout if stdout_is_terminal => Encoding::Text,
        _ => Encoding::Json,
    });
    let context = SinkContext {
        name: name.clone(),
        encoding,
        dead,
        metrics: metrics.clone(),
        append,
    };
    let (items, rx) = mpsc::channel(capacity);
    let task = match &config.sink {
        SinkConfig::Stdout => tokio::spawn(file::run_stdout(context, rx)),
        // Opened by its task: a FIFO's open waits for its reader.
        SinkConfig::File(c) => {
            let c = c.clone();
            tokio::spawn(async move { file::FileSink::open(c, context).await?.run(rx).await })
        }
        SinkConfig::Kafka(c) => {
            let sink = kafka::KafkaSink::new(c, context)?;
            tokio::spawn(sink.run(rx))
        }
        SinkConfig::Webhook(c) => {
            let sink = webhook::WebhookSink::open(c.clone(), context, env).await?;
            tokio::spawn(sink.run(rx))
        }
        SinkConfig::Syslog(c) => {
            let sink = syslog::SyslogSink::new(c.clone(), context)?;
            tokio::spawn(sink.run(rx))
        }
    };
    Ok(SinkHandle {
        name,
        kind: config.sink.kind(),
        items,
        task,
        metrics,
    })
}

/// Exponential backoff with full jitter: the `attempt`-th wait (from 0)
/// is a random share, at least half, of `initial * 2^attempt`, capped.
pub(crate) fn backoff(initial: Duration, max: Duration, attempt: u32) -> Duration {
    let ceiling = initial
        .saturating_mul(1u32.checked_shl(attempt.min(20)).unwrap_or(u32::MAX))
        .min(max);
    let half = ceiling / 2;
    half + half.mul_f64(fastrand::f64())
}

pub(crate) fn io_error(path: Option<&Path>, source: std::io::Error) -> PipelineError {
    PipelineError::Output {
        path: path
            .map(Path::to_path_buf)
            .unwrap_or_else(|| PathBuf::from("-")),
        source,
    }
}

/// The dead-letter output: a file, whose content can be synced to disk,
/// or stderr.
pub(crate) struct Output {
    pub out: Box<dyn AsyncWrite + Unpin + Send>,
    /// The file again, to sync it.
    file: Option<tokio::fs::File>,
}

impl Output {
    /// Flushes, and puts what was written on disk (for a file).
    pub async fn sync(&mut self) -> std::io::Result<()> {
        self.out.flush().await?;
        match &self.file {
            Some(file) => file.sync_data().await,
            None => Ok(()),
        }
    }
}

/// Opens an output file (or stderr, for `None`); its folder must exist (a
/// mistyped path is an error, not a new folder). A run that resumes from
/// a state file appends (what earlier runs wrote stays); another starts
/// afresh.
pub(crate) async fn open_output(
    path: Option<&Path>,
    append: bool,
) -> Result<Output, PipelineError> {
    Ok(match path {
        Some(p) => {
            let file = open_file(p, append)
                .await
                .map_err(|e| io_error(Some(p), e))?;
            let sync = file.try_clone().await.map_err(|e| io_error(Some(p), e))?;
            Output {
                out: Box::new(BufWriter::new(file)),
                file: Some(sync),
            }
        }
        None => Output {
            out: Box::new(tokio::io::stderr()),
            file: None,
        },
    })
}

/// Opens a file to write: appended to, or started afresh.
pub(crate) async fn open_file(path: &Path, append: bool) -> std::io::Result<tokio::fs::File> {
    tokio::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .append(append)
        .truncate(!append)
        .open(path)
        .await
}

/// Waits until the dead-letter sink has written (and with `sync`, synced)
/// everything sent to it so far; false if it failed.
pub(crate) async fn dead_letters_written(dead: &mpsc::Sender<DeadItem>, sync: bool) -> bool {
    let (written, barrier) = oneshot::channel();
    dead.send(DeadItem::Barrier { written, sync }).await.is_ok() && barrier.await.is_ok()
}

/// Writes `bytes` to the output at `path` and flushes, timing it; a
/// failure is counted and named by the path.
pub(crate) async fn write_flushed(
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_with_jitter_up_to_its_cap() {
        let initial = Duration::from_millis(100);
        let max = Duration::from_secs(2);
        for attempt in 0..40 {
            let wait = backoff(initial, max, attempt);
            let ceiling = (initial * 2u32.pow(attempt.min(20))).min(max);
            assert!(
                wait >= ceiling / 2 && wait <= ceiling,
                "{attempt}: {wait:?}"
            );
        }
    }
}
