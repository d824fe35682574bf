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
//! Between routing and the outputs, the warning service ([`crate::warning`])
//! gives each alert its TLP and response guidance, refuses it to outputs
//! whose audience its TLP excludes, holds back repeats (follow-ups report
//! them, on a timer and at the end of the run) and raises sector campaign
//! alerts; its state goes into the state file with the window state.
//!
//! The router does not wait for barriers: it goes on routing while the
//! acknowledger waits, in order. An output that cannot keep up (a full
//! outbox, a broker away) fills its channel and so holds the router back,
//! and with it detection and the inputs.

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

use serde_json::value::RawValue;
use tokio::sync::{mpsc, oneshot, watch};
use vagt_connectors::live::Ack;

use crate::alert::{now_rfc3339, Alert, AlertFacts};
use crate::pipeline::PipelineError;
use crate::routes::RouteTable;
use crate::sinks::config::OutputConfig;
use crate::sinks::running::{OutputRegistry, RunningOutputs};
use crate::sinks::{
    dead_letters_written, DeadItem, Delivery, SinkEnd, SinkEnv, SinkHandle, SinkItem,
    UndeliveredAlert,
};
use crate::telemetry::{self, SinkMetrics};
use crate::warning::suppress::Offer;
use crate::warning::tlp::{Audience, Tlp};
use crate::warning::Warning;
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
    /// Alerts whose TLP no output's audience admits (dead letters).
    pub refused_tlp: u64,
    /// Sector campaign alerts raised.
    pub campaigns: u64,
    /// An output's reader went away (a closed pipe).
    pub reader_gone: bool,
}

/// What decides where alerts go and how: the routes, the warning service,
/// and the version of config and rules they came from. A reload replaces
/// it whole.
pub(crate) struct DeliveryPolicy {
    pub routes: RouteTable,
    pub warning: Warning,
    pub version: String,
    /// The outputs, in the order routes and audiences index them.
    pub outputs: Vec<OutputConfig>,
}

/// The delivery stage.
pub(crate) struct DeliveryStage {
    pub policy: DeliveryPolicy,
    /// The outputs, started, in the policy's order.
    pub sinks: Vec<SinkHandle>,
    /// What outputs started by a reload are given.
    pub capacity: usize,
    pub env: SinkEnv,
    /// Every output the run had, for the summary.
    pub registry: OutputRegistry,
    pub dead: mpsc::Sender<DeadItem>,
    /// Becomes true if the dead-letter sink fails.
    pub dead_failed: watch::Receiver<bool>,
    pub state_file: Option<PathBuf>,
    /// Alerts handed to outputs, for the progress display.
    pub routed: Arc<AtomicU64>,
    /// The archive writer: acknowledgements wait for it like for an
    /// output.
    pub archive: Option<mpsc::Sender<crate::archive::writer::ArchiveItem>>,
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
            policy:
                DeliveryPolicy {
                    routes,
                    warning,
                    version,
                    outputs: configs,
                },
            sinks,
            capacity,
            env,
            registry,
            dead,
            dead_failed,
            state_file,
            routed,
            archive,
        } = self;
        let (pending_tx, pending_rx) = mpsc::channel::<Pending>(1024);
        let acknowledger = tokio::spawn(acknowledge(pending_rx, dead.clone(), state_file));
        // Each output's end is reported as it happens: one that fails or
        // loses its reader stops the routing at once.
        let outputs = RunningOutputs::new(
            sinks.into_iter().zip(configs).collect(),
            dead.clone(),
            capacity,
            env,
            registry,
        );
        let router = Router {
            routes,
            warning,
            version,
            last_state: None,
            outputs,
            dead: dead.clone(),
            dead_failed,
            pending: pending_tx,
            routed,
            archive,
            metrics: SinkMetrics::new("delivery"),
            outcome: DeliveryOutcome::default(),
            results: Vec::new(),
        };
        // Detection is over (or an output is gone); the outputs finish what
        // they were given.
        let (routed, outputs, results) = router.run(deliveries).await;
        let results = outputs.close(results).await;
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
    warning: Warning,
    version: String,
    /// The latest window state detection sent, for the state written
    /// after the run's last follow-ups.
    last_state: Option<Vec<u8>>,
    outputs: RunningOutputs,
    dead: mpsc::Sender<DeadItem>,
    dead_failed: watch::Receiver<bool>,
    pending: mpsc::Sender<Pending>,
    routed: Arc<AtomicU64>,
    archive: Option<mpsc::Sender<crate::archive::writer::ArchiveItem>>,
    metrics: SinkMetrics,
    outcome: DeliveryOutcome,
    /// Outputs' ends seen while routing.
    results: Vec<Result<SinkEnd, PipelineError>>,
}

/// What the router hands back: its outcome (or why it stopped), the
/// outputs, and their ends seen so far.
type Routed = (
    Result<DeliveryOutcome, PipelineError>,
    RunningOutputs,
    Vec<Result<SinkEnd, PipelineError>>,
);

impl Router {
    /// Routes until detection ends or an output ends early.
    async fn run(mut self, deliveries: mpsc::Receiver<Delivery>) -> Routed {
        let mut outcome = self.route_all(deliveries).await;
        if outcome.is_ok() && !self.finish().await {
            outcome = Ok(());
        }
        (outcome.map(|()| self.outcome), self.outputs, self.results)
    }

    async fn route_all(
        &mut self,
        mut deliveries: mpsc::Receiver<Delivery>,
    ) -> Result<(), PipelineError> {
        let mut watching_dead_letters = true;
        let mut tick = tokio::time::interval(std::time::Duration::from_secs(1));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            let item = tokio::select! {
                _ = tick.tick() => None,
                item = deliveries.recv() => match item {
                    Some(item) => Some(item),
                    None => break,
                },
                Some(end) = self.outputs.next_end() => {
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
            let Some(item) = item else {
                // A tick: groups whose window has passed report.
                let due = self.warning.suppressor.due(wall_millis(), &now_rfc3339());
                if !due.is_empty() && !self.follow_ups(due).await {
                    break;
                }
                continue;
            };
            let delivered = match item {
                Delivery::Alerts(alerts, received) => self.alerts(alerts, received).await,
                Delivery::Acks(acks) if acks.is_empty() => true,
                Delivery::Acks(acks) => self.barrier(false, Then::Acks(acks)).await,
                Delivery::Reroute(policy, answer) => {
                    let going_on = self.reroute(*policy, answer).await?;
                    if self.outputs.ended_early() {
                        break;
                    }
                    going_on
                }
                Delivery::State(bytes) => {
                    let state = match self.with_warning_state(&bytes) {
                        Some(state) => {
                            self.last_state = Some(bytes);
                            state
                        }
                        None => {
                            self.last_state = None;
                            bytes
                        }
                    };
                    self.barrier(true, Then::State(state)).await
                }
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
        let mut per_output: Vec<Vec<Arc<Alert>>> = vec![Vec::new(); self.outputs.slots.len()];
        let now = now_rfc3339();
        let wall = wall_millis();
        for mut alert in alerts {
            self.warning.prepare(&mut alert);
            let campaign_alerts = match &mut self.warning.campaigns {
                Some(c) => c.observe(&alert, wall, &now),
                None => Vec::new(),
            };
            for sector in campaign_alerts {
                self.campaign(sector, &mut per_output).await;
            }
            let decision = decide(&self.routes, &mut self.warning, &mut alert, wall, &now);
            if decision.outputs.is_empty() {
                self.outcome.unrouted += 1;
                telemetry::unrouted();
                let reason = format!(
                    "no route takes it (rule {}, actor {}, severity {})",
                    alert.rule.title,
                    alert.actor.as_deref().unwrap_or("none"),
                    alert.severity
                );
                self.dead_letter(&alert, "routes", reason).await;
                continue;
            }
            let tlp = decision.tlp;
            let alert = Arc::new(alert);
            let mut admitted = 0;
            for (o, verdict) in decision.outputs {
                match verdict {
                    Verdict::Refused(audience) => {
                        self.refused(o, tlp, audience, &alert.id);
                        continue;
                    }
                    Verdict::Held => self.outputs.slots[o].metrics.suppressed(),
                    Verdict::Send(follow_up) => {
                        if let Some(follow_up) = follow_up {
                            self.outputs.slots[o].metrics.follow_up();
                            per_output[o].push(Arc::from(follow_up));
                        }
                        per_output[o].push(alert.clone());
                    }
                }
                admitted += 1;
            }
            if admitted == 0 {
                self.outcome.refused_tlp += 1;
                let reason =
                    format!("{tlp}: no output it was routed to has an audience that may see it");
                self.dead_letter(&alert, "tlp", reason).await;
                continue;
            }
            telemetry::alert(alert.severity.as_str());
            self.outcome.alerts += 1;
        }
        self.send(per_output, received).await
    }

    /// Hands each output its alerts; false if an output is gone.
    async fn send(&mut self, per_output: Vec<Vec<Arc<Alert>>>, received: Instant) -> bool {
        let mut count = 0;
        for (slot, alerts) in self.outputs.slots.iter().zip(per_output) {
            if alerts.is_empty() {
                continue;
            }
            count = count.max(alerts.len());
            if slot
                .items
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

    /// Counts and logs an alert output `o`'s audience may not see.
    fn refused(&self, o: usize, tlp: Tlp, audience: Audience, alert: &str) {
        self.outputs.slots[o].metrics.refused_tlp();
        tracing::info!(
            output = %self.outputs.slots[o].name,
            alert,
            "{tlp} excludes this output's audience ({}): not sent",
            audience.as_str()
        );
    }

    /// A sector campaign alert, to the campaign's outputs its TLP admits.
    async fn campaign(&mut self, sector: Alert, per_output: &mut [Vec<Arc<Alert>>]) {
        self.outcome.campaigns += 1;
        tracing::warn!(
            alert = %sector.id,
            organisations = sector.actors.len(),
            "sector campaign: {}",
            sector.rule.title
        );
        let tlp = sector.tlp.expect("campaign alerts have a TLP");
        let sector = Arc::new(sector);
        let outputs = self
            .warning
            .campaigns
            .as_ref()
            .map(|c| c.outputs.clone())
            .unwrap_or_default();
        let mut sent = false;
        for o in outputs {
            let audience = self.warning.audiences[o];
            if tlp.admits(audience) {
                per_output[o].push(sector.clone());
                sent = true;
            } else {
                self.refused(o, tlp, audience, &sector.id);
            }
        }
        if !sent {
            let reason = format!("{tlp}: no campaign output has an audience that may see it");
            self.dead_letter(&sector, "tlp", reason).await;
        }
    }

    /// Takes a reloaded version's outputs, routes and warning settings,
    /// all or none: a new output that cannot start leaves everything as
    /// it was. Open suppression groups and campaign tracks carry over; the
    /// groups of a removed output send their follow-ups to it before it
    /// stops. `answer` hears whether the version now runs. False if an
    /// output is gone.
    ///
    /// # Errors
    /// A changed output can neither start nor go back to its old settings.
    async fn reroute(
        &mut self,
        policy: DeliveryPolicy,
        answer: oneshot::Sender<Result<(), String>>,
    ) -> Result<bool, PipelineError> {
        let DeliveryPolicy {
            routes,
            mut warning,
            version,
            outputs,
        } = policy;
        let env = SinkEnv {
            pseudonyms: warning.pseudonyms.clone(),
            host_fields: warning.catalog_host_fields(),
        };
        let swap = match self.outputs.start_swap(&outputs, &env).await? {
            Ok(swap) => swap,
            Err(e) => {
                let _ = answer.send(Err(e));
                return Ok(true);
            }
        };
        let closing = warning.adopt(&mut self.warning, &swap.moved, &now_rfc3339());
        let sent = closing.is_empty() || self.follow_ups(closing).await;
        self.outputs.finish_swap(&outputs, swap).await;
        self.warning = warning;
        self.routes = routes;
        crate::reload::announce(&version, Some(&self.version));
        self.version = version;
        let _ = answer.send(Ok(()));
        Ok(sent)
    }

    /// Follow-ups, each to its output; false if an output is gone.
    async fn follow_ups(&mut self, due: Vec<(usize, Alert)>) -> bool {
        let mut per_output: Vec<Vec<Arc<Alert>>> = vec![Vec::new(); self.outputs.slots.len()];
        for (o, alert) in due {
            self.outputs.slots[o].metrics.follow_up();
            per_output[o].push(Arc::new(alert));
        }
        self.send(per_output, Instant::now()).await
    }

    /// The end of the run: follow-ups for repeats not yet reported, and
    /// the state again with the groups as they now are. False if an
    /// output is gone.
    async fn finish(&mut self) -> bool {
        let flushed = self.warning.suppressor.flush(&now_rfc3339());
        if flushed.is_empty() {
            return true;
        }
        if !self.follow_ups(flushed).await {
            return false;
        }
        match self.last_state.take() {
            Some(bytes) => {
                let state = self.with_warning_state(&bytes).unwrap_or(bytes);
                self.barrier(true, Then::State(state)).await
            }
            None => true,
        }
    }

    /// The state file's content: detection's, with the warning service's;
    /// None when the warning service keeps nothing (detection's is
    /// written as it is).
    fn with_warning_state(&self, windows: &[u8]) -> Option<Vec<u8>> {
        if self.warning.keeps_nothing() {
            return None;
        }
        // Its parts stay raw: only the top level is read.
        let mut file =
            serde_json::from_slice::<std::collections::BTreeMap<String, Box<RawValue>>>(windows)
                .ok()?;
        let names = self.outputs.names();
        let state = self.warning.snapshot(&names);
        file.insert(
            "warning".into(),
            serde_json::value::to_raw_value(&state).expect("warning state JSON"),
        );
        Some(serde_json::to_vec(&file).expect("state JSON"))
    }

    async fn dead_letter(&self, alert: &Alert, source: &str, reason: String) {
        let record: Box<RawValue> = serde_json::value::to_raw_value(alert).expect("alert JSON");
        let _ = self
            .dead
            .send(DeadItem::Alert(UndeliveredAlert {
                source: source.into(),
                reason,
                alert: record,
            }))
            .await;
    }

    /// Sends a barrier to every output and queues what follows it; false
    /// if an output is gone.
    async fn barrier(&mut self, sync: bool, then: Then) -> bool {
        let mut taken = Vec::with_capacity(self.outputs.slots.len());
        for slot in &self.outputs.slots {
            let (tx, rx) = oneshot::channel();
            if slot
                .items
                .send(SinkItem::Barrier { sync, taken: tx })
                .await
                .is_err()
            {
                return false;
            }
            taken.push((slot.name.clone(), rx));
        }
        if let Some(archive) = &self.archive {
            let (tx, rx) = oneshot::channel();
            // A writer that stopped drops the answer: positions stay.
            let _ = archive
                .send(crate::archive::writer::ArchiveItem::Barrier(tx))
                .await;
            taken.push((Arc::from("archive"), rx));
        }
        self.pending
            .send(Pending { taken, sync, then })
            .await
            .is_ok()
    }
}

/// What delivery does with one alert at one output it is routed to.
#[derive(Debug)]
pub(crate) enum Verdict {
    /// Send it; first the follow-up of the suppression group it ends, if
    /// any.
    Send(Option<Box<Alert>>),
    /// A repeat: held back, counted in its group's follow-up.
    Held,
    /// Its TLP excludes this output's audience.
    Refused(Audience),
}

/// What delivery does with one alert.
#[derive(Debug)]
pub(crate) struct Decision<'r> {
    /// The alert's TLP after routing.
    pub tlp: Tlp,
    /// The routes it took.
    pub routes: Vec<&'r str>,
    /// Each output it is routed to (none: no route takes it), in order.
    pub outputs: Vec<(usize, Verdict)>,
}

/// Routes an alert (prepared by the warning service), settles its TLP and
/// offers it to the suppression groups of each output whose audience may
/// see it; `now` is the clock in ms, `now_text` as RFC 3339. The one
/// place these decisions are made: the running delivery stage and
/// `vagt routes test` both ask here.
pub(crate) fn decide<'r>(
    routes: &'r RouteTable,
    warning: &mut Warning,
    alert: &mut Alert,
    now: i64,
    now_text: &str,
) -> Decision<'r> {
    let (routing, global) = {
        let facts = AlertFacts::of(alert);
        let windowed = alert.group.is_some();
        (routes.route(&facts), warning.plan.global(&facts, windowed))
    };
    let tlp = warning.settle_tlp(alert, routing.tlp);
    let outputs = routing
        .outputs
        .iter()
        .map(|&o| {
            let audience = warning.audiences[o];
            if !tlp.admits(audience) {
                return (o, Verdict::Refused(audience));
            }
            let Some(spec) = warning.plan.spec_for(o, &routing.taken, global) else {
                return (o, Verdict::Send(None));
            };
            match warning.suppressor.offer(o, spec, alert, now, now_text) {
                Offer::Held => (o, Verdict::Held),
                Offer::Send(follow_up) => (o, Verdict::Send(follow_up)),
            }
        })
        .collect();
    Decision {
        tlp,
        routes: routing.routes,
        outputs,
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

/// The wall clock in ms since the epoch.
fn wall_millis() -> i64 {
    chrono::Utc::now().timestamp_millis()
}
