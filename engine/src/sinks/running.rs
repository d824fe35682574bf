//! The outputs a run has running: their channels, settings and counters,
//! how their ends are reported to delivery, and how a reload swaps them.
//!
//! A swap keeps an output whose settings did not change as it is (its
//! channel, outbox and connection carry on). A changed output is retired
//! (everything sent to it is taken, then its task ends) before its new
//! version starts, so two versions never share a file or an outbox; a
//! removed one is retired the same way, after its open suppression groups
//! have sent their follow-ups to it. Nothing the old versions were given
//! is lost: retiring waits for it.
//!
//! ```text
//!  swap(new configs) ─┬─ same settings ──────────────► kept
//!                     ├─ new name ──► started first (a failure: nothing changed)
//!                     ├─ changed  ──► old retired, new started (a failure: old restarted)
//!                     └─ removed  ──► follow-ups, then retired
//! ```

use std::sync::{Arc, Mutex};

use tokio::sync::{mpsc, oneshot};

use super::config::{OutputConfig, SinkConfig};
use super::{DeadItem, OutputMetrics, SinkEnd, SinkEnv, SinkHandle, SinkItem};
use crate::pipeline::PipelineError;

/// How an output task ended, and which one.
type Ended = (u64, Result<SinkEnd, PipelineError>);

/// Every output a run had, for the summary: name, kind and counters (a
/// changed output keeps its counters).
pub(crate) type OutputRegistry = Arc<Mutex<Vec<(String, &'static str, OutputMetrics)>>>;

/// One running output.
pub(crate) struct Slot {
    pub name: Arc<str>,
    pub items: mpsc::Sender<SinkItem>,
    pub metrics: OutputMetrics,
    config: OutputConfig,
    serial: u64,
}

/// The running outputs, in the order routes and audiences index them.
pub(crate) struct RunningOutputs {
    pub slots: Vec<Slot>,
    ended_tx: mpsc::UnboundedSender<Ended>,
    ended: mpsc::UnboundedReceiver<Ended>,
    next_serial: u64,
    /// Ends of running outputs that arrived during a swap.
    early: Vec<Ended>,
    registry: OutputRegistry,
    dead: mpsc::Sender<DeadItem>,
    capacity: usize,
    env: SinkEnv,
}

/// A swap begun by [`RunningOutputs::start_swap`].
pub(crate) struct Swap {
    /// For each old output, its index in the new version, if it has one.
    pub moved: Vec<Option<usize>>,
    /// The outputs started for new names, at their index in the new
    /// version.
    started: Vec<Option<Slot>>,
}

impl RunningOutputs {
    /// Takes over the started outputs of a run.
    pub fn new(
        sinks: Vec<(SinkHandle, OutputConfig)>,
        dead: mpsc::Sender<DeadItem>,
        capacity: usize,
        env: SinkEnv,
        registry: OutputRegistry,
    ) -> RunningOutputs {
        let (ended_tx, ended) = mpsc::unbounded_channel();
        let mut running = RunningOutputs {
            slots: Vec::with_capacity(sinks.len()),
            ended_tx,
            ended,
            next_serial: 0,
            early: Vec::new(),
            registry,
            dead,
            capacity,
            env,
        };
        for (handle, config) in sinks {
            let slot = running.watch(handle, config);
            running.slots.push(slot);
        }
        running
    }

    /// Reports the end of an output's task, under a serial of its own.
    fn watch(&mut self, handle: SinkHandle, config: OutputConfig) -> Slot {
        let serial = self.next_serial;
        self.next_serial += 1;
        let ended = self.ended_tx.clone();
        let name = handle.name.clone();
        let task = handle.task;
        tokio::spawn(async move {
            let result = task
                .await
                .unwrap_or_else(|e| Err(PipelineError::Internal(format!("output {name}: {e}"))));
            let _ = ended.send((serial, result));
        });
        Slot {
            name: handle.name,
            items: handle.items,
            metrics: handle.metrics,
            config,
            serial,
        }
    }

    /// The next end of a running output (one that failed or lost its
    /// reader before the run ended).
    pub async fn next_end(&mut self) -> Option<Result<SinkEnd, PipelineError>> {
        if let Some((_, end)) = self.early.pop() {
            return Some(end);
        }
        loop {
            let (serial, end) = self.ended.recv().await?;
            if self.is_running(serial) {
                return Some(end);
            }
            // An output started for a swap that did not happen.
            if let Err(e) = end {
                tracing::warn!("an output started for a rejected reload: {e}");
            }
        }
    }

    /// Whether an end arrived during a swap: a running output failed or
    /// lost its reader.
    pub fn ended_early(&self) -> bool {
        !self.early.is_empty()
    }

    fn is_running(&self, serial: u64) -> bool {
        self.slots.iter().any(|s| s.serial == serial)
    }

    /// The names, in order.
    pub fn names(&self) -> Vec<Arc<str>> {
        self.slots.iter().map(|s| s.name.clone()).collect()
    }

    /// For each running output, the index of the new config that
    /// continues it: the one of the same name.
    fn moved(&self, configs: &[OutputConfig]) -> Vec<Option<usize>> {
        self.slots
            .iter()
            .map(|s| configs.iter().position(|c| c.name == *s.name))
            .collect()
    }

    /// Starts outputs that are new or changed in `configs` (retiring the
    /// old versions of changed ones first). On an error nothing is
    /// changed: outputs started for the swap are dropped again, and a
    /// changed output runs with its old settings. Outputs the new version
    /// no longer has stay until [`RunningOutputs::finish_swap`].
    ///
    /// # Errors
    /// A new output cannot start (the message says which); a changed
    /// output's old settings cannot be restarted either (the run ends).
    pub async fn start_swap(
        &mut self,
        configs: &[OutputConfig],
        env: &SinkEnv,
    ) -> Result<Result<Swap, String>, PipelineError> {
        let moved = self.moved(configs);
        let env_changed = *env != self.env;
        let mut started: Vec<Option<Slot>> = (0..configs.len()).map(|_| None).collect();
        // New names first: a failure there changes nothing.
        for (i, config) in configs.iter().enumerate() {
            if moved.contains(&Some(i)) {
                continue;
            }
            match self.start(config, env, None).await {
                Ok(slot) => started[i] = Some(slot),
                Err(e) => return Ok(Err(e.to_string())),
            }
        }
        for (old, target) in moved.iter().enumerate() {
            let Some(i) = *target else { continue };
            let config = &configs[i];
            if same_sink(&self.slots[old].config, config, env_changed) {
                continue;
            }
            tracing::info!(output = %config.name, "reload: the output's settings changed; restarting it");
            let metrics = self.slots[old].metrics.clone();
            let previous = self.slots[old].config.clone();
            let retired = self.retire(old).await;
            match self.start(config, env, Some(metrics.clone())).await {
                Ok(slot) => {
                    self.slots[old] = slot;
                }
                Err(e) => {
                    let env_before = self.env.clone();
                    let slot = self.start(&previous, &env_before, Some(metrics)).await?;
                    self.slots[old] = slot;
                    return Ok(Err(format!(
                        "{e}; it runs on with its previous settings{}",
                        retired.map(|r| format!(" ({r})")).unwrap_or_default()
                    )));
                }
            }
        }
        self.env = env.clone();
        Ok(Ok(Swap { moved, started }))
    }

    /// Completes a swap begun by [`RunningOutputs::start_swap`]: retires the
    /// outputs the new version no longer has (after their follow-ups were
    /// sent) and puts the outputs in the new version's order.
    pub async fn finish_swap(&mut self, configs: &[OutputConfig], swap: Swap) {
        let Swap { moved, mut started } = swap;
        for old in (0..self.slots.len()).rev() {
            if moved[old].is_none() {
                tracing::info!(output = %self.slots[old].name, "reload: the output was removed; it stops once it has taken what it was given");
                if let Some(e) = self.retire(old).await {
                    tracing::warn!(output = %self.slots[old].name, "{e}");
                }
            }
        }
        let mut old: Vec<Option<Slot>> = std::mem::take(&mut self.slots)
            .into_iter()
            .map(Some)
            .collect();
        for (i, config) in configs.iter().enumerate() {
            let slot = match moved.iter().position(|t| *t == Some(i)) {
                Some(o) => old[o].take(),
                None => started[i].take(),
            };
            let mut slot = slot.expect("every new output is running");
            // Settings that do not restart it (audience, suppression).
            slot.config = config.clone();
            self.slots.push(slot);
        }
    }

    /// Starts one output (appending: it is the same run), with the
    /// counters of the version it replaces if any.
    async fn start(
        &mut self,
        config: &OutputConfig,
        env: &SinkEnv,
        metrics: Option<OutputMetrics>,
    ) -> Result<Slot, PipelineError> {
        let handle = super::start_with(
            config,
            self.dead.clone(),
            true,
            self.capacity,
            env,
            metrics.clone(),
        )
        .await?;
        if metrics.is_none() {
            let mut registry = self.registry.lock().expect("output registry");
            registry.push((config.name.clone(), handle.kind, handle.metrics.clone()));
        }
        Ok(self.watch(handle, config.clone()))
    }

    /// Retires output `old`: once it has taken everything sent to it, its
    /// channel closes and its task ends; waits for that. Its slot keeps a
    /// closed channel until replaced or removed. Returns its error, if it
    /// ended with one.
    async fn retire(&mut self, old: usize) -> Option<String> {
        let (taken, answered) = oneshot::channel();
        let slot = &mut self.slots[old];
        let _ = slot
            .items
            .send(SinkItem::Barrier { sync: true, taken })
            .await;
        let _ = answered.await;
        let serial = slot.serial;
        // Closes its channel: the task ends.
        let (closed, _) = mpsc::channel(1);
        slot.items = closed;
        if let Some(at) = self.early.iter().position(|(s, _)| *s == serial) {
            return self.early.remove(at).1.err().map(|e| e.to_string());
        }
        while let Some((s, end)) = self.ended.recv().await {
            if s == serial {
                return end.err().map(|e| e.to_string());
            }
            if self.is_running(s) {
                self.early.push((s, end));
            }
        }
        None
    }

    /// Ends the run's routing: closes every channel, then waits for every
    /// running output to finish what it was given; their ends, with any
    /// that came before.
    pub async fn close(
        mut self,
        mut seen: Vec<Result<SinkEnd, PipelineError>>,
    ) -> Vec<Result<SinkEnd, PipelineError>> {
        seen.extend(self.early.drain(..).map(|(_, end)| end));
        let serials: Vec<u64> = self.slots.iter().map(|s| s.serial).collect();
        let mut waiting = serials.len().saturating_sub(seen.len());
        drop(self.slots);
        drop(self.ended_tx);
        while waiting > 0 {
            match self.ended.recv().await {
                Some((s, end)) if serials.contains(&s) => {
                    seen.push(end);
                    waiting -= 1;
                }
                Some(_) => {}
                None => break,
            }
        }
        seen
    }
}

/// Whether an output's new settings can be taken by the running task
/// (only audience and suppression changed, which delivery applies).
fn same_sink(old: &OutputConfig, new: &OutputConfig, env_changed: bool) -> bool {
    let uses_env = matches!(new.sink, SinkConfig::Webhook(_));
    old.encoding == new.encoding
        && format!("{:?}", old.sink) == format!("{:?}", new.sink)
        && !(uses_env && env_changed)
}
