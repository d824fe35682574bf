//! Sources: each input becomes a reader (a blocking thread framing,
//! parsing and decoding) that sends batches to detection.
//!
//! ```text
//!  path / stdin ── read_source ─────────────────────────┐
//!  tail ────────── tail_events (until stopped) ─────────┤
//!  syslog, http ── listener task ─► payloads ─► decode_live ─┼─► Work::Batch (bounded)
//!  kafka ───────── consumer thread ─► payloads ─► decode_live ┘   (+ acks to commit)
//! ```
//! Listeners are bound before any event flows, so a busy port is an error
//! at start, not a silent input.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use vagt_connectors::live::kafka::KafkaHandle;
use vagt_connectors::live::{self, Ack, LiveContext, LiveError, Payload};
use vagt_connectors::{
    read_source, tail_events, ConnectorError, DeadLetter, EventBatch, FileId, InputSource, Origin,
    ReadOptions, ReadStats, SharedProjection,
};

use crate::config::{RunConfig, SourceConfig};
use crate::telemetry::SourceMetrics;

pub mod config;

/// How long closing a Kafka consumer may take at the end of a run.
const KAFKA_CLOSE: std::time::Duration = std::time::Duration::from_secs(10);

/// Payloads queued between a live source and its decoder.
const PAYLOAD_QUEUE: usize = 4096;

/// Bytes of HTTP bodies queued at most (as whole bodies of the largest
/// size allowed).
const HTTP_QUEUE_BYTES: usize = 64 * 1024 * 1024;

/// A batch of one input, with what to acknowledge once its alerts are out.
pub(crate) struct InputBatch {
    pub input: usize,
    /// `None` when only acknowledgements are due.
    pub events: Option<EventBatch>,
    pub acks: Vec<Ack>,
    /// The input has ended (a file or stdin read to its end): nothing more
    /// comes from it.
    pub ended: bool,
}

/// Where the inputs send their output.
pub(crate) struct Outputs<W, D> {
    pub batches: mpsc::Sender<W>,
    /// What a batch travels as.
    pub wrap: fn(InputBatch) -> W,
    pub dead: mpsc::Sender<D>,
    /// What a dead letter travels as.
    pub wrap_dead: fn(DeadLetter) -> D,
    pub bytes: Arc<AtomicU64>,
    pub metrics: Vec<SourceMetrics>,
    pub stop: Arc<AtomicBool>,
    /// The columns decoded.
    pub projection: SharedProjection,
}

/// A running Kafka input.
pub(crate) struct KafkaInput {
    handle: KafkaHandle,
    consumer: JoinHandle<()>,
    decoder: Option<JoinHandle<Result<ReadStats, String>>>,
}

/// The running inputs.
pub(crate) struct Started {
    /// One per input; finite inputs end by themselves, live ones when
    /// stopped.
    pub readers: Vec<JoinHandle<Result<ReadStats, String>>>,
    /// Listener tasks, aborted at the end.
    pub servers: Vec<JoinHandle<()>>,
    /// Kafka consumers, committed at the end, with their consumer and
    /// decoder threads.
    pub kafka: Vec<KafkaInput>,
    /// Records dropped by full queues (UDP).
    pub dropped: Arc<AtomicU64>,
    /// Whether any input runs until stopped.
    pub live: bool,
    /// Tells the listeners and consumers that the run stops.
    pub stopping: Arc<tokio::sync::watch::Sender<bool>>,
    /// Closed once every input that can be drained (listeners, Kafka,
    /// tails) has handed on all it took in after the stop.
    pub drained: Option<mpsc::Receiver<()>>,
    /// What each archive input's scan did, by input name.
    pub scans: Vec<(
        String,
        Arc<std::sync::Mutex<crate::archive::input::ScanReport>>,
    )>,
}

impl Started {
    /// Stops the inputs that run until stopped and waits, at most
    /// `patience`, until what they took in has been handed on.
    pub(crate) async fn drain(
        stop: &AtomicBool,
        stopping: &tokio::sync::watch::Sender<bool>,
        drained: Option<mpsc::Receiver<()>>,
        patience: std::time::Duration,
    ) {
        stop.store(true, Ordering::SeqCst);
        let _ = stopping.send(true);
        if let Some(mut drained) = drained {
            let _ = tokio::time::timeout(patience, drained.recv()).await;
        }
    }
}

/// Starts every input of `config`; `resume` is where each input stopped in
/// an earlier run, and `listening` hears of every bound listener.
pub(crate) async fn start<W: Send + 'static, D: Send + 'static>(
    config: &RunConfig,
    resume: &[Option<(Origin, Option<FileId>)>],
    outputs: Outputs<W, D>,
    listening: &dyn Fn(&str, SocketAddr),
) -> Result<Started, LiveError> {
    let (stopping, stopping_rx) = tokio::sync::watch::channel(false);
    let (done, drained) = mpsc::channel::<()>(1);
    // Only the clones held by drainable inputs keep `drained` open.
    let (wrap, wrap_dead) = (outputs.wrap, outputs.wrap_dead);
    let mut started = Started {
        readers: Vec::new(),
        servers: Vec::new(),
        kafka: Vec::new(),
        dropped: Arc::default(),
        live: false,
        stopping: Arc::new(stopping),
        drained: Some(drained),
        scans: Vec::new(),
    };
    for (index, input) in config.inputs.iter().enumerate() {
        let options = ReadOptions {
            decoder: config.decoder.clone(),
            format: input.format,
            actor: input.actor.as_deref().map(Arc::from),
            projection: outputs.projection.clone(),
        };
        // Bytes this input read, reported to its metric and to the run's
        // progress with each batch it hands on.
        let read = Arc::new(AtomicU64::new(0));
        let report_read = {
            let (read, total) = (read.clone(), outputs.bytes.clone());
            let metrics = outputs.metrics[index].clone();
            let reported = AtomicU64::new(0);
            Arc::new(move || {
                let now = read.load(Ordering::Relaxed);
                let before = reported.swap(now, Ordering::Relaxed);
                if now > before {
                    metrics.read(now - before);
                    total.fetch_add(now - before, Ordering::Relaxed);
                }
            })
        };
        let metrics = outputs.metrics[index].clone();
        let batches = outputs.batches.clone();
        let ending = outputs.batches.clone();
        // After its last batch: the input has ended.
        let end = move || {
            let _ = ending.blocking_send(wrap(InputBatch {
                input: index,
                events: None,
                acks: Vec::new(),
                ended: true,
            }));
        };
        let dead = outputs.dead.clone();
        let reporting = report_read.clone();
        let send = move |events: Option<EventBatch>, acks: Vec<Ack>| {
            reporting();
            if let Some(e) = &events {
                metrics.decoded(e.batch.num_rows());
            }
            // A closed channel means detection stopped; nothing more to do.
            let _ = batches.blocking_send(wrap(InputBatch {
                input: index,
                events,
                acks,
                ended: false,
            }));
        };
        let metrics = outputs.metrics[index].clone();
        let dead_letter = move |letter: DeadLetter| {
            metrics.dead_letter();
            let _ = dead.blocking_send(wrap_dead(letter));
        };
        let name = input.name();
        let kind = &input.source;
        let report_last = report_read.clone();
        // How every reader ends: its last bytes reported, its error named.
        let finished = {
            let name = name.clone();
            move |result: Result<ReadStats, ConnectorError>| {
                report_read();
                result.map_err(|e| format!("{name}: {e}"))
            }
        };
        let reader = match kind {
            SourceConfig::File(_) | SourceConfig::Stdin => {
                let source = match kind {
                    SourceConfig::File(path) => InputSource::File(path.to_path_buf()),
                    _ => InputSource::Stdin,
                };
                let bytes = read.clone();
                tokio::task::spawn_blocking(move || {
                    let send = send;
                    let result = read_source(
                        &source,
                        &options,
                        bytes,
                        |e| send(Some(e), Vec::new()),
                        dead_letter,
                    );
                    end();
                    finished(result)
                })
            }
            SourceConfig::Archive(archive) => {
                let report = Arc::new(std::sync::Mutex::new(
                    crate::archive::input::ScanReport::default(),
                ));
                started.scans.push((name.clone(), report.clone()));
                let (archive, decoder) = (archive.clone(), options.decoder.clone());
                let name = name.clone();
                let bytes = read.clone();
                tokio::task::spawn_blocking(move || {
                    let send = send;
                    let result = crate::archive::scan::scan(
                        &archive,
                        &decoder,
                        &report,
                        &bytes,
                        |e| send(Some(e), Vec::new()),
                        dead_letter,
                    );
                    end();
                    report_last();
                    let (records, bytes) = report.lock().map_or((0, 0), |r| (r.rows, r.bytes));
                    result
                        .map(|()| ReadStats {
                            records,
                            bytes,
                            ..ReadStats::default()
                        })
                        .map_err(|e| format!("{name}: {e}"))
                })
            }
            SourceConfig::Tail(path) => {
                started.live = true;
                let path = path.to_path_buf();
                let start = resume[index];
                let stop = outputs.stop.clone();
                let bytes = read.clone();
                let done = done.clone();
                tokio::task::spawn_blocking(move || {
                    let _done = done;
                    let send = send;
                    finished(tail_events(
                        &path,
                        &options,
                        start,
                        stop,
                        bytes,
                        |e| send(Some(e), Vec::new()),
                        dead_letter,
                    ))
                })
            }
            SourceConfig::Syslog(_) | SourceConfig::Http(_) | SourceConfig::Kafka(_) => {
                started.live = true;
                // Bodies are up to `max_body_bytes` each: bound the queue
                // by bytes too.
                let queue = match kind {
                    SourceConfig::Http(http) => {
                        (HTTP_QUEUE_BYTES / http.max_body_bytes.max(1)).clamp(1, PAYLOAD_QUEUE)
                    }
                    _ => PAYLOAD_QUEUE,
                };
                let (tx, rx) = mpsc::channel::<Payload>(queue);
                let context = LiveContext {
                    name: Arc::from(name.as_str()),
                    actor: options.actor.clone(),
                    max_record_bytes: config.decoder.max_record_bytes,
                    payloads: tx,
                    dropped: started.dropped.clone(),
                    stopping: stopping_rx.clone(),
                };
                match kind {
                    SourceConfig::Syslog(syslog) => {
                        let (addr, task) = live::syslog::start(syslog, context).await?;
                        listening(&name, addr);
                        started.servers.push(task);
                    }
                    SourceConfig::Http(http) => {
                        let (addr, task) = live::http::start(http, context).await?;
                        listening(&name, addr);
                        started.servers.push(task);
                    }
                    SourceConfig::Kafka(kafka) => {
                        let (handle, consumer) = live::kafka::start(kafka, context)?;
                        started.kafka.push(KafkaInput {
                            handle,
                            consumer,
                            decoder: None,
                        });
                    }
                    SourceConfig::File(_)
                    | SourceConfig::Stdin
                    | SourceConfig::Tail(_)
                    | SourceConfig::Archive(_) => {}
                }
                let runtime = tokio::runtime::Handle::current();
                let done = done.clone();
                let decoder = tokio::task::spawn_blocking(move || {
                    let _done = done;
                    finished(live::decode_live(
                        rx,
                        &options,
                        &runtime,
                        &read,
                        send,
                        dead_letter,
                    ))
                });
                if let (SourceConfig::Kafka(_), Some(kafka)) = (kind, started.kafka.last_mut()) {
                    kafka.decoder = Some(decoder);
                    continue;
                }
                decoder
            }
        };
        started.readers.push(reader);
    }
    drop(done);
    Ok(started)
}

impl Started {
    /// Ends the live inputs once the alerts are out: commits what Kafka
    /// consumers were acknowledged, lets them leave their groups, and stops
    /// the listeners. Returns the Kafka commit failures.
    pub(crate) async fn close(self, stop: &AtomicBool) -> Vec<String> {
        stop.store(true, Ordering::SeqCst);
        let _ = self.stopping.send(true);
        let mut failures = Vec::new();
        for kafka in self.kafka {
            // The consumer leaves its group when its last user is gone:
            // its thread, and the decoder holding acks of what was not
            // processed. An unreachable broker may make librdkafka wait
            // long: the stop does not.
            let _ = tokio::time::timeout(KAFKA_CLOSE, kafka.consumer).await;
            if let Some(decoder) = kafka.decoder {
                let _ = tokio::time::timeout(KAFKA_CLOSE, decoder).await;
            }
            let handle = kafka.handle;
            let closing = tokio::task::spawn_blocking(move || {
                let committed = handle.commit();
                drop(handle);
                committed
            });
            match tokio::time::timeout(KAFKA_CLOSE, closing).await {
                Ok(Ok(Ok(()))) => {}
                Ok(Ok(Err(e))) => failures.push(format!("kafka commit: {e}")),
                Ok(Err(e)) => failures.push(format!("kafka commit: {e}")),
                Err(_) => failures.push(format!(
                    "kafka commit: no answer from the brokers within {} s",
                    KAFKA_CLOSE.as_secs()
                )),
            }
        }
        for server in self.servers {
            server.abort();
        }
        failures
    }
}
