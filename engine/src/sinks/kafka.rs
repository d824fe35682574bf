//! The `kafka` output: an idempotent rdkafka producer (acknowledged by all
//! in-sync replicas, retried until delivered, in order per partition).
//! The topic and key may name alert fields (`alerts.{actor}`); the key is
//! the actor by default, so that an organisation's alerts stay in order.
//!
//! An alert counts as delivered only once the broker confirmed it; a
//! barrier waits for every confirmation before it. While the broker is
//! away, librdkafka keeps retrying and the barriers wait, so that input
//! positions and offsets do not move past unconfirmed alerts. What the
//! broker refuses for good (a message too large, a topic it will not
//! create) goes to the dead letters with its error.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::FutureExt;
use rdkafka::config::RDKafkaLogLevel;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::producer::{DeliveryFuture, FutureProducer, FutureRecord, Producer};
use rdkafka::{ClientConfig, ClientContext};
use tokio::sync::mpsc;

use super::config::KafkaOutputConfig;
use super::encode::encode;
use super::template::{Escape, Template};
use super::{OutputError, SinkContext, SinkEnd, SinkItem};
use crate::alert::{Alert, AlertFacts};
use crate::pipeline::PipelineError;

/// librdkafka's own messages (a broker unreachable, a request retried)
/// go to vagt's log, named by the output.
struct KafkaLog {
    output: Arc<str>,
}

impl ClientContext for KafkaLog {
    fn log(&self, level: RDKafkaLogLevel, facility: &str, message: &str) {
        let output = &*self.output;
        match level {
            RDKafkaLogLevel::Emerg
            | RDKafkaLogLevel::Alert
            | RDKafkaLogLevel::Critical
            | RDKafkaLogLevel::Error => tracing::error!(output, facility, "Kafka: {message}"),
            RDKafkaLogLevel::Warning => tracing::warn!(output, facility, "Kafka: {message}"),
            RDKafkaLogLevel::Notice | RDKafkaLogLevel::Info => {
                tracing::info!(output, facility, "Kafka: {message}")
            }
            RDKafkaLogLevel::Debug => tracing::debug!(output, facility, "Kafka: {message}"),
        }
    }
}

/// An alert sent and not yet confirmed.
struct InFlight {
    delivery: DeliveryFuture,
    alert: Arc<Alert>,
    received: Instant,
}

/// A `kafka` output.
pub(crate) struct KafkaSink {
    producer: FutureProducer<KafkaLog>,
    topic: Template,
    key: Option<Template>,
    context: SinkContext,
    in_flight: VecDeque<InFlight>,
    drain: Duration,
}

impl KafkaSink {
    /// Creates the producer (it connects as it sends).
    ///
    /// # Errors
    /// librdkafka refuses the settings.
    pub fn new(
        config: &KafkaOutputConfig,
        context: SinkContext,
    ) -> Result<KafkaSink, PipelineError> {
        let setup = |message: String| OutputError::Setup {
            name: context.name.to_string(),
            message,
        };
        let mut client = ClientConfig::new();
        client
            .set("bootstrap.servers", &config.brokers)
            .set("enable.idempotence", config.idempotent.to_string())
            .set("acks", "all")
            // Retried until the broker confirms: the barrier waits instead.
            .set("message.timeout.ms", "0")
            .set("linger.ms", "5");
        for (key, value) in &config.options {
            client.set(key, value);
        }
        let producer: FutureProducer<KafkaLog> = client
            .create_with_context(KafkaLog {
                output: context.name.clone(),
            })
            .map_err(|e| setup(format!("cannot create the Kafka producer: {e}")))?;
        let topic = Template::parse(&config.topic).map_err(&setup)?;
        let key = match &config.key {
            Some(k) => Some(Template::parse(k).map_err(&setup)?),
            None => None,
        };
        Ok(KafkaSink {
            producer,
            topic,
            key,
            context,
            in_flight: VecDeque::new(),
            drain: config.drain.get(),
        })
    }

    /// Runs until delivery ends.
    ///
    /// # Errors
    /// The producer went away.
    pub async fn run(
        mut self,
        mut items: mpsc::Receiver<SinkItem>,
    ) -> Result<SinkEnd, PipelineError> {
        let mut payload = Vec::with_capacity(4096);
        while let Some(item) = items.recv().await {
            match item {
                SinkItem::Alerts(alerts, received) => {
                    for alert in alerts {
                        self.send(alert, received, &mut payload).await?;
                    }
                    self.reap_confirmed().await?;
                }
                SinkItem::Barrier { taken, .. } => {
                    while let Some(sent) = self.in_flight.pop_front() {
                        self.confirmed(sent).await?;
                    }
                    let _ = taken.send(());
                }
            }
        }
        self.finish().await
    }

    /// Waits for the last confirmations (at most `drain`); what is still
    /// unconfirmed then goes to the dead letters.
    async fn finish(mut self) -> Result<SinkEnd, PipelineError> {
        let deadline = tokio::time::Instant::now() + self.drain;
        while let Some(mut sent) = self.in_flight.pop_front() {
            match tokio::time::timeout_at(deadline, &mut sent.delivery).await {
                Ok(result) => self.settle(sent.alert, sent.received, result).await?,
                Err(_) => {
                    self.in_flight.push_front(sent);
                    break;
                }
            }
        }
        let unconfirmed = self.in_flight.len();
        if unconfirmed > 0 {
            tracing::warn!(
                output = %self.context.name,
                unconfirmed,
                "the broker did not confirm every alert before the end of the run"
            );
        }
        for sent in std::mem::take(&mut self.in_flight) {
            let reason = format!(
                "not confirmed by Kafka within {:?} at the end of the run",
                self.drain
            );
            self.context.refuse(sent.alert, reason).await;
        }
        Ok(SinkEnd::Done)
    }

    async fn send(
        &mut self,
        alert: Arc<Alert>,
        received: Instant,
        payload: &mut Vec<u8>,
    ) -> Result<(), PipelineError> {
        let topic = match self.topic.render(&AlertFacts::of(&alert), Escape::Name) {
            Ok(t) => t,
            Err(missing) => {
                self.context.refuse(alert, missing.to_string()).await;
                return Ok(());
            }
        };
        let key = match &self.key {
            Some(template) => match template.render(&AlertFacts::of(&alert), Escape::None) {
                Ok(k) => Some(k),
                Err(missing) => {
                    self.context.refuse(alert, missing.to_string()).await;
                    return Ok(());
                }
            },
            None => alert.actor.clone(),
        };
        payload.clear();
        encode(&alert, self.context.encoding, payload);
        loop {
            let mut record = FutureRecord::<str, [u8]>::to(&topic).payload(&payload[..]);
            if let Some(key) = key.as_deref() {
                record = record.key(key);
            }
            match self.producer.send_result(record) {
                Ok(delivery) => {
                    self.in_flight.push_back(InFlight {
                        delivery,
                        alert,
                        received,
                    });
                    return Ok(());
                }
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), _)) => {
                    // librdkafka's queue is full: wait for a confirmation.
                    match self.in_flight.pop_front() {
                        Some(sent) => self.confirmed(sent).await?,
                        None => tokio::time::sleep(Duration::from_millis(10)).await,
                    }
                }
                Err((e, _)) => {
                    self.context
                        .refuse(alert, format!("Kafka refused it: {e}"))
                        .await;
                    return Ok(());
                }
            }
        }
    }

    /// Takes the confirmations already in, in order.
    async fn reap_confirmed(&mut self) -> Result<(), PipelineError> {
        while let Some(front) = self.in_flight.front_mut() {
            let Some(result) = (&mut front.delivery).now_or_never() else {
                break;
            };
            let sent = self.in_flight.pop_front().expect("a front");
            self.settle(sent.alert, sent.received, result).await?;
        }
        Ok(())
    }

    async fn confirmed(&mut self, mut sent: InFlight) -> Result<(), PipelineError> {
        let result = (&mut sent.delivery).await;
        self.settle(sent.alert, sent.received, result).await
    }

    async fn settle(
        &mut self,
        alert: Arc<Alert>,
        received: Instant,
        result: <DeliveryFuture as std::future::Future>::Output,
    ) -> Result<(), PipelineError> {
        match result {
            Ok(Ok(_)) => {
                self.context.metrics.delivered(1, Some(received));
                Ok(())
            }
            Ok(Err((e, _))) => {
                self.context
                    .refuse(alert, format!("Kafka did not take it: {e}"))
                    .await;
                Ok(())
            }
            Err(_) => Err(OutputError::Setup {
                name: self.context.name.to_string(),
                message: "the Kafka producer stopped".into(),
            }
            .into()),
        }
    }
}

impl Drop for KafkaSink {
    fn drop(&mut self) {
        let _ = self.producer.flush(Duration::from_millis(100));
    }
}
