//! Delivery: the stage between detection and the outputs. It routes each
//! alert to its outputs, and runs acknowledgements (Kafka offsets) and
//! writes the state file (input positions, window state) only once every
//! output has taken everything before them.
//!
//! ```text
//!  detection ──Delivery──► router ──SinkItem::Alerts──► output tasks (sinks/)
//!                            │  └─ no route ──► dead letters (counted)
//!                            └─ Acks / State: a barrier to every output ──► acknowledger:
//!                                 waits for every output, then the dead letters,
//!                                 then commits offsets / writes the state file
//! ```
//! The router does not wait for barriers: it goes on routing while the
//! acknowledger waits, in order. An output that cannot keep up (a full
//! outbox, a broker away) fills its channel and so holds the router back,
//! and with it detection and the inputs.

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

use tokio::sync::{mpsc, oneshot, watch};
use vagt_connectors::live::Ack;

use crate::alert::{Alert, AlertFacts};
use crate::pipeline::PipelineError;
use crate::routes::RouteTable;
use crate::sinks::{
    dead_letters_written, DeadItem, Delivery, SinkEnd, SinkHandle, SinkItem, UndeliveredAlert,
};
use crate::telemetry::{self, SinkMetrics};
use crate::windows::write_state;

/// What the acknowledger does once every output has taken what came
/// before.
enum Then {
    Acks(Vec<Ack>),
    State(Vec<u8>),
}

/// Barriers sent to every output, and what to do when all are answered.
struct Pending {
    taken: Vec<(Arc<str>, oneshot::Receiver<()>)>,
    sync: bool,
    then: Then,
}

/// How delivery ended.
#[derive(Debug, Default)]
pub(crate) struct DeliveryOutcome {
    /// Alerts routed to at least one output.
    pub alerts: u64,
    /// Alerts no route took (sent to the dead letters).
    pub unrouted: u64,
    /// An output's reader went away (a closed pipe).
    pub reader_gone: bool,
}

/// The delivery stage.
pub(crate) struct DeliveryStage {
    pub routes: RouteTable,
    pub sinks: Vec<SinkHandle>,
    pub dead: mpsc::Sender<DeadItem>,
    /// Becomes true if the dead-letter sink fails.
    pub dead_failed: watch::Receiver<bool>,
    pub state_file: Option<PathBuf>,
    /// Alerts handed to outputs, for the progress display.
    pub routed: Arc<AtomicU64>,
}

impl DeliveryStage {
    /// Runs until detection ends and every output has finished.
    ///
    /// # Errors
    /// An output or the dead-letter sink failed, or the state file cannot
    /// be written.
    pub async fn run(
        self,
        deliveries: mpsc::Receiver<Delivery>,
    ) -> Result<DeliveryOutcome, PipelineError> {
        let DeliveryStage {
            routes,
            sinks,
            dead,
            dead_failed,
            state_file,
            routed,
        } = self;
        let (pending_tx, pending_rx) = mpsc::channel::<Pending>(1024);
        let acknowledger = tokio::spawn(acknowledge(pending_rx, dead.clone(), state_file));
        // Each output's end is reported as it happens: one that fails or
        // loses its reader stops the routing at once.
        let (ended_tx, ended) = mpsc::unbounded_channel();
        let mut senders = Vec::with_capacity(sinks.len());
        for sink in sinks {
            senders.push((sink.name.clone(), sink.items));
            let ended_tx = ended_tx.clone();
            let name = sink.name.clone();
            let task = sink.task;
            tokio::spawn(async move {
                let result = task.await.unwrap_or_else(|e| {
                    Err(PipelineError::Internal(format!("output {name}: {e}")))
                });
                let _ = ended_tx.send(result);
            });
        }
        drop(ended_tx);
        let outputs = senders.len();
        let router = Router {
            routes,
            senders,
            dead: dead.clone(),
            dead_failed,
            pending: pending_tx,
            routed,
            metrics: SinkMetrics::new("delivery"),
            outcome: DeliveryOutcome::default(),
            ended,
            results: Vec::new(),
        };
        let (routed, mut ended, mut results) = router.run(deliveries).await;
        // Detection is over (or an output is gone); the outputs finish what
        // they were given.
        while results.len() < outputs {
            match ended.recv().await {
                Some(result) => results.push(result),
                None => break,
            }
        }
        let acknowledged = acknowledger
            .await
            .map_err(|e| PipelineError::Internal(format!("acknowledger: {e}")))?;
        let mut outcome = routed?;
        for result in results {
            match result? {
                SinkEnd::Done => {}
                SinkEnd::ReaderGone => outcome.reader_gone = true,
            }
        }
        acknowledged?;
        Ok(outcome)
    }
}

struct Router {
    routes: RouteTable,
    senders: Vec<(Arc<str>, mpsc::Sender<SinkItem>)>,
    dead: mpsc::Sender<DeadItem>,
    dead_failed: watch::Receiver<bool>,
    pending: mpsc::Sender<Pending>,
    routed: Arc<AtomicU64>,
    metrics: SinkMetrics,
    outcome: DeliveryOutcome,
    /// Outputs' ends, as they happen.
    ended: mpsc::UnboundedReceiver<Result<SinkEnd, PipelineError>>,
    results: Vec<Result<SinkEnd, PipelineError>>,
}

/// What the router hands back: its outcome (or why it stopped), and the
/// outputs' ends, those seen and those to come.
type Routed = (
    Result<DeliveryOutcome, PipelineError>,
    mpsc::UnboundedReceiver<Result<SinkEnd, PipelineError>>,
    Vec<Result<SinkEnd, PipelineError>>,
);

impl Router {
    /// Routes until detection ends or an output ends early.
    async fn run(mut self, deliveries: mpsc::Receiver<Delivery>) -> Routed {
        let outcome = self.route_all(deliveries).await;
        // Dropping the senders tells the outputs that nothing more comes.
        drop(self.senders);
        (outcome.map(|()| self.outcome), self.ended, self.results)
    }

    async fn route_all(
        &mut self,
        mut deliveries: mpsc::Receiver<Delivery>,
    ) -> Result<(), PipelineError> {
        let mut watching_dead_letters = true;
        loop {
            let item = tokio::select! {
                item = deliveries.recv() => match item {
                    Some(item) => item,
                    None => break,
                },
                Some(end) = self.ended.recv() => {
                    // An output ended before detection did: it failed, or
                    // its reader went away.
                    self.results.push(end);
                    break;
                }
                failed = self.dead_failed.wait_for(|failed| *failed), if watching_dead_letters => {
                    match failed {
                        Ok(_) => return Err(PipelineError::DeadLettersFailed),
                        // The dead-letter sink finished without failing.
                        Err(_) => watching_dead_letters = false,
                    }
                    continue;
                }
            };
            let delivered = match item {
                Delivery::Alerts(alerts, received) => self.alerts(alerts, received).await,
                Delivery::Acks(acks) if acks.is_empty() => true,
                Delivery::Acks(acks) => self.barrier(false, Then::Acks(acks)).await,
                Delivery::State(bytes) => self.barrier(true, Then::State(bytes)).await,
            };
            if !delivered {
                // An output is gone: its task says why.
                break;
            }
        }
        Ok(())
    }

    /// Routes a batch of alerts; false if an output is gone.
    async fn alerts(&mut self, alerts: Vec<Alert>, received: Instant) -> bool {
        let mut per_output: Vec<Vec<Arc<Alert>>> = vec![Vec::new(); self.senders.len()];
        for alert in alerts {
            let alert = Arc::new(alert);
            let routing = self.routes.route(&AlertFacts::of(&alert));
            if routing.outputs.is_empty() {
                self.outcome.unrouted += 1;
                telemetry::unrouted();
                let reason = format!(
                    "no route takes it (rule {}, actor {}, severity {})",
                    alert.rule.title,
                    alert.actor.as_deref().unwrap_or("none"),
                    alert.severity
                );
                let record = serde_json::value::to_raw_value(&*alert).expect("alert JSON");
                let _ = self
                    .dead
                    .send(DeadItem::Alert(UndeliveredAlert {
                        source: "routes".into(),
                        reason,
                        alert: record,
                    }))
                    .await;
                continue;
            }
            telemetry::alert(alert.severity.as_str());
            self.outcome.alerts += 1;
            for &o in &routing.outputs[..routing.outputs.len() - 1] {
                per_output[o].push(alert.clone());
            }
            per_output[*routing.outputs.last().expect("an output")].push(alert);
        }
        let mut count = 0;
        for ((_, sender), alerts) in self.senders.iter().zip(per_output) {
            if alerts.is_empty() {
                continue;
            }
            count = count.max(alerts.len());
            if sender
                .send(SinkItem::Alerts(alerts, received))
                .await
                .is_err()
            {
                return false;
            }
        }
        self.metrics.delivered(received.elapsed());
        self.routed.fetch_add(count as u64, Ordering::Relaxed);
        true
    }

    /// Sends a barrier to every output and queues what follows it; false
    /// if an output is gone.
    async fn barrier(&mut self, sync: bool, then: Then) -> bool {
        let mut taken = Vec::with_capacity(self.senders.len());
        for (name, sender) in &self.senders {
            let (tx, rx) = oneshot::channel();
            if sender
                .send(SinkItem::Barrier { sync, taken: tx })
                .await
                .is_err()
            {
                return false;
            }
            taken.push((name.clone(), rx));
        }
        self.pending
            .send(Pending { taken, sync, then })
            .await
            .is_ok()
    }
}

/// Runs acknowledgements and writes the state, in order, each once every
/// output has taken what came before it.
async fn acknowledge(
    mut pending: mpsc::Receiver<Pending>,
    dead: mpsc::Sender<DeadItem>,
    state_file: Option<PathBuf>,
) -> Result<(), PipelineError> {
    while let Some(Pending { taken, sync, then }) = pending.recv().await {
        for (name, rx) in taken {
            if rx.await.is_err() {
                // The output ended without taking them: nothing after may
                // be acknowledged. Its own error, if any, is reported.
                tracing::warn!(output = %name, "the output stopped before taking every alert; positions are not advanced past them");
                return Ok(());
            }
        }
        // Dead letters the outputs wrote for what they refused come first.
        if !dead_letters_written(&dead, sync).await {
            return Err(PipelineError::DeadLettersFailed);
        }
        match then {
            Then::Acks(acks) => acks.into_iter().for_each(|ack| ack()),
            Then::State(bytes) => {
                let Some(path) = state_file.clone() else {
                    continue;
                };
                tokio::task::spawn_blocking(move || write_state(&path, &bytes))
                    .await
                    .map_err(|e| PipelineError::Internal(format!("state writer: {e}")))??;
            }
        }
    }
    Ok(())
}
