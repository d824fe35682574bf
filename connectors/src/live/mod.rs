//! Live sources: network listeners and consumers that run until stopped.
//!
//! ```text
//!  syslog udp/tcp/tls ─┐  Payload (bounded channel:   ┌► batches + acks
//!  http bulk ingest   ─┼─ backpressure, or a counted ─┤   (decode_live, on a
//!  kafka consumer     ─┘  drop for UDP)               └► dead letters  blocking thread)
//! ```
//!
//! Each source turns what it receives into [`Payload`]s: one record (a
//! datagram, a framed syslog message) or a chunk holding records in the
//! input's framing (an HTTP body, a Kafka message), stamped with the actor
//! the source vouches for. [`decode_live`] parses and batches them with
//! [`Ingest`]; a batch leaves when it is full, when nothing more is
//! waiting, or when its first event has waited the batch delay. A payload
//! may carry an [`Ack`] (a Kafka offset to commit), which is handed on with
//! the batch that holds its events, to be run once their alerts are out.

pub mod http;
pub mod kafka;
pub mod syslog;
mod tls;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;

use crate::dead_letter::DeadLetter;
use crate::decode::EventBatch;
use crate::framing::{Origin, Record};
use crate::ingest::Ingest;
use crate::lines::Framer;
use crate::reader::{ReadOptions, ReadStats};

pub use tls::{TlsConfig, TlsError};

/// What every live source is given: where to send payloads and how to
/// stamp them.
#[derive(Debug, Clone)]
pub struct LiveContext {
    /// The input's name, for metrics.
    pub name: Arc<str>,
    /// The actor configured for the input (HTTP stamps its credential's).
    pub actor: Option<Arc<str>>,
    /// Longest record accepted.
    pub max_record_bytes: usize,
    /// The bounded queue to decoding.
    pub payloads: mpsc::Sender<Payload>,
    /// Records dropped because the queue was full (UDP only).
    pub dropped: Arc<AtomicU64>,
    /// Becomes true when the run stops: listeners stop taking input, so
    /// that what they took can be processed before the end.
    pub stopping: tokio::sync::watch::Receiver<bool>,
}

impl LiveContext {
    /// Resolves once the run is stopping.
    ///
    /// # Cancel safety
    /// Cancel safe: it only waits.
    pub async fn stopped(&self) {
        self.clone_stopping().stopped().await;
    }

    /// Whether the run is stopping.
    pub fn is_stopping(&self) -> bool {
        *self.stopping.borrow()
    }

    /// The stop signal alone (holding no queue to decoding).
    pub(crate) fn clone_stopping(&self) -> Stopping {
        Stopping(self.stopping.clone())
    }
}

/// Tells a task that the run is stopping.
#[derive(Debug, Clone)]
pub(crate) struct Stopping(tokio::sync::watch::Receiver<bool>);

impl Stopping {
    /// Resolves once the run is stopping.
    pub(crate) async fn stopped(&self) {
        let mut stopping = self.0.clone();
        let _ = stopping.wait_for(|stop| *stop).await;
    }
}

/// Why a live source cannot start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LiveError {
    /// The address cannot be bound.
    #[error("{what}: cannot listen: {source}")]
    Bind {
        /// The listener.
        what: String,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// The TLS files are unusable.
    #[error(transparent)]
    Tls(#[from] TlsError),
    /// A setting is invalid.
    #[error("{what}: {message}")]
    Config {
        /// The input.
        what: String,
        /// What is wrong.
        message: String,
    },
    /// The Kafka consumer cannot be created or subscribed.
    #[error("kafka input {what}: {message}")]
    Kafka {
        /// Brokers and topics.
        what: String,
        /// librdkafka's message.
        message: String,
    },
}

/// Runs once the alerts of the events it covers have been handed to their
/// sinks (e.g. stores a Kafka offset for commit).
pub type Ack = Box<dyn FnOnce() + Send>;

/// What a live source hands to decoding.
pub struct Payload {
    /// The stream it belongs to (a connection, a partition), as dead
    /// letters and alerts name it.
    pub source: Arc<str>,
    /// The organisation vouched for by the source (its listener, its
    /// credential), never read from the payload.
    pub actor: Option<Arc<str>>,
    /// The content.
    pub body: Body,
    /// To run once its events' alerts are out.
    pub ack: Option<Ack>,
}

impl std::fmt::Debug for Payload {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Payload")
            .field("source", &self.source)
            .field("actor", &self.actor)
            .field("body", &self.body)
            .field("ack", &self.ack.is_some())
            .finish()
    }
}

/// The content of a [`Payload`].
#[derive(Debug)]
pub enum Body {
    /// Exactly one record.
    Record(Record),
    /// Bytes holding records in the input's framing (JSON objects in any
    /// layout, or lines), starting at `origin`.
    Chunk {
        /// The bytes.
        bytes: Vec<u8>,
        /// Where they start.
        origin: Origin,
    },
    /// Something the source could not frame.
    Dead(DeadLetter),
    /// The stream ended (a closed connection): its parser state goes.
    Closed,
}

/// Decodes payloads until every sender is gone, handing out each batch
/// with the acks of the payloads it completes (`None` when only acks are
/// due, e.g. for payloads that were all dead letters).
///
/// Runs on a blocking thread; `runtime` is used to wait for payloads with a
/// timeout. The bytes taken in are added to `read` as they come.
///
/// # Errors
/// The decoder settings are invalid.
pub fn decode_live(
    mut payloads: mpsc::Receiver<Payload>,
    options: &ReadOptions,
    runtime: &tokio::runtime::Handle,
    read: &AtomicU64,
    mut on_batch: impl FnMut(Option<EventBatch>, Vec<Ack>),
    mut on_dead: impl FnMut(DeadLetter),
) -> Result<ReadStats, crate::ConnectorError> {
    options.decoder.validate()?;
    let mut ingest = Ingest::for_source(options);
    let mut acks: Vec<Ack> = Vec::new();
    loop {
        let waiting = !ingest.is_empty() || !acks.is_empty();
        let payload = if waiting {
            let wait = ingest.until_overdue().max(Duration::from_millis(1));
            match runtime.block_on(tokio::time::timeout(wait, payloads.recv())) {
                Ok(next) => next,
                Err(_elapsed) => {
                    on_batch(ingest.finish(), std::mem::take(&mut acks));
                    continue;
                }
            }
        } else {
            payloads.blocking_recv()
        };
        let Some(payload) = payload else { break };
        let source = payload.source;
        let actor = payload.actor.as_ref();
        match payload.body {
            Body::Record(record) => {
                ingest.stats.bytes += record.bytes.len() as u64;
                read.fetch_add(record.bytes.len() as u64, Ordering::Relaxed);
                if let Some(dead) = ingest.record(record, &source, actor) {
                    on_dead(dead);
                }
            }
            Body::Chunk { bytes, origin } => {
                ingest.stats.bytes += bytes.len() as u64;
                read.fetch_add(bytes.len() as u64, Ordering::Relaxed);
                let mut framer = Framer::new(
                    options.format,
                    &bytes[..],
                    &source,
                    options.decoder.max_record_bytes,
                    origin,
                );
                // Reading from memory cannot fail.
                while let Ok(Some(frame)) = framer.next_frame() {
                    if let Some(dead) = ingest.frame(frame, &source, actor) {
                        on_dead(dead);
                    }
                    if ingest.is_full() {
                        on_batch(ingest.finish(), Vec::new());
                    }
                }
            }
            Body::Dead(dead) => {
                ingest.stats.dead_letters += 1;
                on_dead(dead);
            }
            Body::Closed => ingest.forget(&source),
        }
        acks.extend(payload.ack);
        let due = ingest.is_full() || payloads.is_empty() || ingest.overdue();
        if due && (!ingest.is_empty() || !acks.is_empty()) {
            on_batch(ingest.finish(), std::mem::take(&mut acks));
        }
    }
    if !ingest.is_empty() || !acks.is_empty() {
        on_batch(ingest.finish(), acks);
    }
    Ok(ingest.stats)
}
