//! Kafka source: consumes topics in a consumer group (rdkafka).
//!
//! Several vagt instances with the same `group_id` share the topics'
//! partitions; Kafka reassigns them when one joins or leaves. Delivery is
//! at least once: a message's offset is stored for commit only when the
//! alerts of its events have been handed to their sinks (its payload's
//! [`Ack`](super::Ack)), and stored offsets are committed every
//! `commit_interval_ms`, when partitions are revoked, and when the run
//! ends. Events whose alerts were not out when an instance stopped, or
//! whose partition moved meanwhile, are consumed again by the next owner:
//! an alert may then be emitted twice, never lost. Its id is the same both
//! times, so consumers can drop the repeat.
//!
//! Consumer lag per partition is published as `vagt_kafka_consumer_lag`,
//! from librdkafka's statistics (0 once a partition is revoked: its new
//! owner reports it); failed commits as `vagt_kafka_commit_errors_total`.
//!
//! When the pipeline is full, the consumer pauses its partitions but goes
//! on polling, so that rebalances are served and the group does not think
//! it has died (`max.poll.interval.ms`); what it had fetched waits with it
//! and goes on first, in order.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext, Rebalance};
use rdkafka::error::{KafkaError, KafkaResult, RDKafkaErrorCode};
use rdkafka::message::{BorrowedMessage, Message};
use rdkafka::{ClientContext, Statistics, TopicPartitionList};
use serde::Deserialize;
use tokio::sync::mpsc::error::TrySendError;

use super::{Body, LiveContext, LiveError, Payload};
use crate::dead_letter::DeadLetter;
use crate::framing::Origin;
use crate::ConfigDuration;

/// A Kafka input.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KafkaConfig {
    /// Bootstrap brokers, `host:port[,host:port...]`.
    pub brokers: String,
    /// Topics to consume.
    pub topics: Vec<String>,
    /// The consumer group; instances with the same group share partitions.
    pub group_id: String,
    /// Where a group without committed offsets starts: `earliest`
    /// (default) or `latest`.
    #[serde(default = "default_start")]
    pub start_from: String,
    /// How often stored offsets are committed (default `1s`).
    #[serde(default = "default_commit_interval")]
    pub commit_interval: ConfigDuration,
    /// Further librdkafka settings (`security.protocol`, `ssl.ca.location`,
    /// `sasl.mechanism`, ...), passed as they are.
    #[serde(default)]
    pub options: BTreeMap<String, String>,
}

fn default_start() -> String {
    "earliest".into()
}

fn default_commit_interval() -> ConfigDuration {
    ConfigDuration::from_secs(1)
}

/// Settings vagt sets itself: for at-least-once delivery, from the input's
/// own keys, and for the lag metric.
const OWN_SETTINGS: [&str; 7] = [
    "bootstrap.servers",
    "group.id",
    "enable.auto.commit",
    "enable.auto.offset.store",
    "auto.offset.reset",
    "auto.commit.interval.ms",
    "statistics.interval.ms",
];

impl KafkaConfig {
    /// Cross-field checks.
    ///
    /// # Errors
    /// What is wrong.
    pub fn validate(&self) -> Result<(), String> {
        if self.brokers.trim().is_empty() {
            return Err("brokers is empty".into());
        }
        if self.topics.is_empty() || self.topics.iter().any(|t| t.trim().is_empty()) {
            return Err("topics must name at least one topic, none empty".into());
        }
        if self.group_id.trim().is_empty() {
            return Err("group_id is empty".into());
        }
        if !matches!(self.start_from.as_str(), "earliest" | "latest") {
            return Err(format!(
                "start_from must be earliest or latest, not '{}'",
                self.start_from
            ));
        }
        if let Some(own) = self
            .options
            .keys()
            .find(|k| OWN_SETTINGS.contains(&k.as_str()))
        {
            return Err(format!(
                "options: '{own}' is set by vagt (use brokers, group_id, start_from, commit_interval)"
            ));
        }
        Ok(())
    }

    /// What dead letters and metrics call this input.
    pub fn name(&self) -> String {
        format!("kafka://{}/{}", self.brokers, self.topics.join(","))
    }

    fn client_config(&self) -> ClientConfig {
        let mut config = ClientConfig::new();
        config
            .set("bootstrap.servers", &self.brokers)
            .set("group.id", &self.group_id)
            .set("enable.auto.commit", "true")
            .set("enable.auto.offset.store", "false")
            .set(
                "auto.commit.interval.ms",
                self.commit_interval.get().as_millis().max(1).to_string(),
            )
            .set("auto.offset.reset", &self.start_from)
            .set("statistics.interval.ms", "1000");
        for (key, value) in &self.options {
            config.set(key, value);
        }
        config
    }
}

/// Publishes lag and counts rebalances.
struct Observer;

impl ClientContext for Observer {
    fn stats(&self, statistics: Statistics) {
        for (topic, t) in statistics.topics {
            for (partition, p) in t.partitions {
                if partition >= 0 && p.consumer_lag >= 0 {
                    metrics::gauge!(
                        "vagt_kafka_consumer_lag",
                        "topic" => topic.clone(),
                        "partition" => partition.to_string()
                    )
                    .set(p.consumer_lag as f64);
                }
            }
        }
    }
}

impl ConsumerContext for Observer {
    fn post_rebalance(&self, _consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        let kind = match rebalance {
            Rebalance::Assign(_) => "assign",
            Rebalance::Revoke(revoked) => {
                // Their lag is their new owner's to report.
                for partition in revoked.elements() {
                    metrics::gauge!(
                        "vagt_kafka_consumer_lag",
                        "topic" => partition.topic().to_string(),
                        "partition" => partition.partition().to_string()
                    )
                    .set(0.0);
                }
                "revoke"
            }
            Rebalance::Error(_) => "error",
        };
        metrics::counter!("vagt_kafka_rebalances_total", "kind" => kind).increment(1);
    }

    fn commit_callback(&self, result: KafkaResult<()>, _offsets: &TopicPartitionList) {
        match result {
            Ok(()) => {}
            Err(e) if nothing_to_commit(&e) => {}
            Err(e) => {
                metrics::counter!("vagt_kafka_commit_errors_total").increment(1);
                tracing::warn!("Kafka commit failed: {e}");
            }
        }
    }
}

/// Whether a commit failed only because no new offset was stored.
fn nothing_to_commit(error: &KafkaError) -> bool {
    error.rdkafka_error_code() == Some(RDKafkaErrorCode::NoOffset)
}

/// A running consumer: commits what was acknowledged when the run ends.
#[derive(Clone)]
pub struct KafkaHandle {
    consumer: Arc<BaseConsumer<Observer>>,
}

impl std::fmt::Debug for KafkaHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("KafkaHandle")
    }
}

impl KafkaHandle {
    /// Commits the stored offsets now and waits for the broker's answer.
    ///
    /// # Errors
    /// The commit failed (nothing new to commit is not an error).
    pub fn commit(&self) -> Result<(), String> {
        match self.consumer.commit_consumer_state(CommitMode::Sync) {
            Ok(()) => Ok(()),
            Err(e) if nothing_to_commit(&e) => Ok(()),
            Err(e) => Err(e.to_string()),
        }
    }
}

/// Creates the consumer, subscribes, and consumes on a blocking thread
/// until the run stops or decoding is gone.
///
/// # Errors
/// The consumer cannot be created or subscribed.
pub fn start(
    config: &KafkaConfig,
    context: LiveContext,
) -> Result<(KafkaHandle, tokio::task::JoinHandle<()>), LiveError> {
    let error = |e: rdkafka::error::KafkaError| LiveError::Kafka {
        what: config.name(),
        message: e.to_string(),
    };
    let consumer: BaseConsumer<Observer> = config
        .client_config()
        .create_with_context(Observer)
        .map_err(error)?;
    let topics: Vec<&str> = config.topics.iter().map(String::as_str).collect();
    consumer.subscribe(&topics).map_err(error)?;
    let consumer = Arc::new(consumer);
    let handle = KafkaHandle {
        consumer: consumer.clone(),
    };
    let task = tokio::task::spawn_blocking(move || consume(&consumer, &context));
    Ok((handle, task))
}

fn consume(consumer: &Arc<BaseConsumer<Observer>>, context: &LiveContext) {
    let mut names: HashMap<(String, i32), Arc<str>> = HashMap::new();
    // Fetched, not yet queued: the pipeline was full.
    let mut held: VecDeque<Payload> = VecDeque::new();
    let mut paused = false;
    while !context.is_stopping() {
        while let Some(payload) = held.pop_front() {
            match context.payloads.try_send(payload) {
                Ok(()) => {}
                Err(TrySendError::Full(payload)) => {
                    held.push_front(payload);
                    break;
                }
                Err(TrySendError::Closed(_)) => return,
            }
        }
        // Paused while anything waits; the assignment may have grown since.
        match (held.is_empty(), paused) {
            (false, _) => paused = set_paused(consumer, true),
            (true, true) => paused = set_paused(consumer, false),
            (true, false) => {}
        }
        let wait = if paused { 10 } else { 100 };
        match consumer.poll(Duration::from_millis(wait)) {
            None => {}
            Some(Ok(message)) => {
                held.push_back(payload_of(&message, consumer, context, &mut names))
            }
            Some(Err(e)) => {
                metrics::counter!("vagt_kafka_errors_total", "source" => context.name.to_string())
                    .increment(1);
                tracing::warn!(input = %context.name, "Kafka: {e}");
                std::thread::sleep(Duration::from_millis(100));
            }
        }
    }
    // Taken in before the stop: processed like the rest of the drain.
    for payload in held {
        if context.payloads.blocking_send(payload).is_err() {
            break;
        }
    }
}

/// Pauses (or resumes) every assigned partition; returns whether the
/// consumer is now paused.
fn set_paused(consumer: &BaseConsumer<Observer>, pause: bool) -> bool {
    if let Ok(assignment) = consumer.assignment() {
        let _ = if pause {
            consumer.pause(&assignment)
        } else {
            consumer.resume(&assignment)
        };
    }
    pause
}

/// A message as a payload whose ack stores its offset for commit.
fn payload_of(
    message: &BorrowedMessage<'_>,
    consumer: &Arc<BaseConsumer<Observer>>,
    context: &LiveContext,
    names: &mut HashMap<(String, i32), Arc<str>>,
) -> Payload {
    let topic = message.topic().to_string();
    let partition = message.partition();
    let offset = message.offset();
    let source = names
        .entry((topic.clone(), partition))
        .or_insert_with(|| Arc::from(format!("kafka://{topic}/{partition}").as_str()))
        .clone();
    let origin = Origin {
        line: 1,
        offset: u64::try_from(offset).unwrap_or(0),
    };
    let body = match message.payload() {
        Some(bytes) => Body::Chunk {
            bytes: bytes.to_vec(),
            origin,
        },
        None => Body::Dead(DeadLetter {
            source: source.to_string(),
            line: origin.line,
            offset: origin.offset,
            reason: "Kafka message without a value".into(),
            excerpt: String::new(),
        }),
    };
    let owner = consumer.clone();
    Payload {
        source,
        actor: context.actor.clone(),
        body,
        ack: Some(Box::new(move || {
            // Fails only if the partition moved meanwhile: its new owner
            // consumes the message again.
            let _ = owner.store_offset(&topic, partition, offset);
        })),
    }
}
