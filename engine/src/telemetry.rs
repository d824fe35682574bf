//! Operational metrics, exported for Prometheus when `metrics_listen` (or
//! `--metrics ADDR`) is set. Every metric is named here once; the pipeline
//! records through these helpers on the hot path (atomic increments on
//! handles registered up front).
//!
//! | metric | kind | labels |
//! |---|---|---|
//! | `vagt_events_in_total` | counter | `source` |
//! | `vagt_bytes_in_total` | counter | `source` |
//! | `vagt_dead_letters_total` | counter | `source` |
//! | `vagt_events_out_total` | counter (events through detection) | `source` |
//! | `vagt_alerts_total` | counter | `severity` |
//! | `vagt_rule_matches_total` | counter | `rule` |
//! | `vagt_rule_evaluations_total` | counter (batches evaluated) | `rule` |
//! | `vagt_rule_eval_microseconds_total` | counter | `rule` |
//! | `vagt_batch_eval_seconds` | histogram | |
//! | `vagt_ingest_to_alert_seconds` | histogram | |
//! | `vagt_sink_write_seconds` | histogram | `sink` |
//! | `vagt_sink_failures_total` | counter | `sink` |
//! | `vagt_rules_loaded`, `vagt_rules_rejected` | gauge | |
//! | `vagt_window_keys` | gauge (group keys held) | `rule` |
//! | `vagt_window_evictions_total` | counter (keys evicted by `max_keys`) | `rule` |
//! | `vagt_window_evicted_values_total` | counter (values beyond `max_values_per_key`) | |
//! | `vagt_window_late_events_total` | counter (older than their source's watermark: dead letters) | `source` (input) |
//! | `vagt_window_pending_events` | gauge (waiting for their sources) | |
//! | `vagt_window_reordered_total` | counter (reached their window after later ones) | |
//! | `vagt_window_sources` | gauge (sources tracked) | `state` (active, idle, finished) |
//! | `vagt_window_lowest_watermark_seconds` | gauge (the active source furthest behind, Unix seconds) | |
//! | `vagt_window_forced_total` | counter (applied early by `max_pending`) | |
//! | `vagt_window_watermark_seconds` | gauge (the furthest organisation's clock, Unix seconds) | |
//! | `vagt_archive_uploads_total` | counter (files uploaded to the object store) | |
//! | `vagt_archive_upload_failures_total` | counter (failed attempts, each retried) | |
//! | `vagt_archive_upload_pending` | gauge (committed files waiting in the local folder) | |

use std::net::SocketAddr;
use std::time::Duration;

use metrics::{counter, gauge, histogram, Counter, Histogram};
use metrics_exporter_prometheus::PrometheusBuilder;
use vagt_rules::{RuleSet, RuleStats};

/// Latency buckets in seconds, 50 µs to 10 s.
const LATENCY_BUCKETS: &[f64] = &[
    0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0,
    2.5, 5.0, 10.0,
];

/// The exporter could not start.
#[derive(Debug, thiserror::Error)]
#[error("metrics endpoint {addr}: {message}")]
pub struct MetricsError {
    /// The listen address.
    pub addr: SocketAddr,
    /// What failed.
    pub message: String,
}

/// Starts the Prometheus endpoint on `addr` (call inside the runtime).
pub fn install(addr: SocketAddr) -> Result<(), MetricsError> {
    let err = |message: String| MetricsError { addr, message };
    let mut builder = PrometheusBuilder::new().with_http_listener(addr);
    for name in [
        "vagt_batch_eval_seconds",
        "vagt_ingest_to_alert_seconds",
        "vagt_sink_write_seconds",
    ] {
        builder = builder
            .set_buckets_for_metric(
                metrics_exporter_prometheus::Matcher::Full(name.into()),
                LATENCY_BUCKETS,
            )
            .map_err(|e| err(e.to_string()))?;
    }
    builder.install().map_err(|e| err(e.to_string()))
}

/// Per-source counters.
#[derive(Debug, Clone)]
pub struct SourceMetrics {
    events_in: Counter,
    bytes_in: Counter,
    dead_letters: Counter,
    events_out: Counter,
}

impl SourceMetrics {
    /// Handles for one source.
    pub fn new(source: &str) -> Self {
        let label = source.to_string();
        SourceMetrics {
            events_in: counter!("vagt_events_in_total", "source" => label.clone()),
            bytes_in: counter!("vagt_bytes_in_total", "source" => label.clone()),
            dead_letters: counter!("vagt_dead_letters_total", "source" => label.clone()),
            events_out: counter!("vagt_events_out_total", "source" => label),
        }
    }

    /// A batch was decoded.
    pub fn decoded(&self, events: usize) {
        self.events_in.increment(events as u64);
    }

    /// Bytes were read.
    pub fn read(&self, bytes: u64) {
        self.bytes_in.increment(bytes);
    }

    /// A record went to the dead letters.
    pub fn dead_letter(&self) {
        self.dead_letters.increment(1);
    }

    /// A batch left detection.
    pub fn evaluated(&self, events: usize) {
        self.events_out.increment(events as u64);
    }
}

/// Per-rule and detection-stage metrics.
#[derive(Debug)]
pub struct DetectionMetrics {
    matches: Vec<Counter>,
    evaluations: Vec<Counter>,
    micros: Vec<Counter>,
    batch_eval: Histogram,
}

impl DetectionMetrics {
    /// Registers one handle set per rule of `set`.
    pub fn new(set: &RuleSet) -> Self {
        let labels: Vec<String> = (0..set.len())
            .map(|i| {
                let meta = &set.rule(i).meta;
                meta.id.clone().unwrap_or_else(|| meta.title.clone())
            })
            .collect();
        DetectionMetrics {
            matches: labels
                .iter()
                .map(|l| counter!("vagt_rule_matches_total", "rule" => l.clone()))
                .collect(),
            evaluations: labels
                .iter()
                .map(|l| counter!("vagt_rule_evaluations_total", "rule" => l.clone()))
                .collect(),
            micros: labels
                .iter()
                .map(|l| counter!("vagt_rule_eval_microseconds_total", "rule" => l.clone()))
                .collect(),
            batch_eval: histogram!("vagt_batch_eval_seconds"),
        }
    }

    /// Records one batch's evaluation.
    pub fn batch(&self, took: Duration) {
        self.batch_eval.record(took.as_secs_f64());
    }

    /// Records one rule's work since the last call.
    pub fn rule(&self, index: usize, stats: RuleStats) {
        if let (Some(m), Some(e), Some(t)) = (
            self.matches.get(index),
            self.evaluations.get(index),
            self.micros.get(index),
        ) {
            m.increment(stats.matches);
            e.increment(stats.evaluations);
            t.increment(stats.nanos / 1000);
        }
    }
}

/// Sink metrics.
#[derive(Debug, Clone)]
pub struct SinkMetrics {
    write: Histogram,
    failures: Counter,
    ingest_to_delivery: Histogram,
}

impl SinkMetrics {
    /// Handles for one sink.
    pub fn new(sink: &str) -> Self {
        let sink = sink.to_string();
        SinkMetrics {
            write: histogram!("vagt_sink_write_seconds", "sink" => sink.clone()),
            failures: counter!("vagt_sink_failures_total", "sink" => sink),
            ingest_to_delivery: histogram!("vagt_ingest_to_alert_seconds"),
        }
    }

    /// A write took `took`.
    pub fn wrote(&self, took: Duration) {
        self.write.record(took.as_secs_f64());
    }

    /// Alerts of a batch received `latency` ago were handed to the outputs.
    pub fn delivered(&self, latency: Duration) {
        self.ingest_to_delivery.record(latency.as_secs_f64());
    }

    /// A write failed.
    pub fn failed(&self) {
        self.failures.increment(1);
    }
}

/// Counts an alert that no route took.
pub fn unrouted() {
    counter!("vagt_alerts_unrouted_total").increment(1);
}

/// Counts an alert by severity.
pub fn alert(severity: &str) {
    counter!("vagt_alerts_total", "severity" => severity.to_string()).increment(1);
}

/// The archive's uploads to its object store: files uploaded, failed
/// attempts, and files waiting.
pub fn archive_uploads(uploaded: u64, failures: u64, pending: usize) {
    counter!("vagt_archive_uploads_total").absolute(uploaded);
    counter!("vagt_archive_upload_failures_total").absolute(failures);
    gauge!("vagt_archive_upload_pending").set(pending as f64);
}

/// Publishes the rule counts of the run.
pub fn rules(loaded: usize, rejected: usize) {
    gauge!("vagt_rules_loaded").set(loaded as f64);
    gauge!("vagt_rules_rejected").set(rejected as f64);
}

/// State of the windowed rules, refreshed after each batch.
pub fn windows(stage: &crate::windows::WindowStage) {
    for (rule, keys, evicted) in stage.state_per_rule() {
        gauge!("vagt_window_keys", "rule" => rule.to_string()).set(keys as f64);
        counter!("vagt_window_evictions_total", "rule" => rule.to_string()).absolute(evicted);
    }
    let stats = stage.stats();
    counter!("vagt_window_evicted_values_total").absolute(stats.evicted_values);
    for (input, late) in stage.late_per_input() {
        counter!("vagt_window_late_events_total", "source" => input.to_string()).absolute(late);
    }
    counter!("vagt_window_forced_total").absolute(stats.forced);
    counter!("vagt_window_reordered_total").absolute(stats.reordered);
    gauge!("vagt_window_pending_events").set(stage.pending() as f64);
    let clock = stage.clock();
    let active = clock.sources - clock.idle - clock.finished;
    for (state, n) in [
        ("active", active),
        ("idle", clock.idle),
        ("finished", clock.finished),
    ] {
        gauge!("vagt_window_sources", "state" => state).set(n as f64);
    }
    if let Some(wm) = clock.highest {
        gauge!("vagt_window_watermark_seconds").set(wm as f64 / 1000.0);
    }
    if let Some(wm) = clock.lowest_active {
        gauge!("vagt_window_lowest_watermark_seconds").set(wm as f64 / 1000.0);
    }
}
