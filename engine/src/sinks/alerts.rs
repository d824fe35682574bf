//! The alert sink: alerts as JSON lines to a file or stdout, in order;
//! acknowledgements run once the dead letters before them are written; the
//! state file is written once the alerts and dead letters before it are on
//! disk.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use tokio::sync::{mpsc, watch};

use super::{dead_letters_written, io_error, open_output, write_flushed, DeadItem, Delivery};
use crate::pipeline::PipelineError;
use crate::telemetry::{self, SinkMetrics};
use crate::windows::write_state;

/// Where the alert sink writes, and what it answers to.
pub(crate) struct AlertSink {
    /// The output file, or `-` for stdout.
    pub output: PathBuf,
    /// Appended to (a run resuming from a state file), else started afresh.
    pub append: bool,
    /// The state file, written when detection hands over a snapshot.
    pub state_file: Option<PathBuf>,
    /// The dead-letter sink, for barriers.
    pub dead: mpsc::Sender<DeadItem>,
    /// Becomes true if the dead-letter sink fails.
    pub dead_failed: watch::Receiver<bool>,
    /// Alerts written, for the progress display.
    pub written: Arc<AtomicU64>,
}

impl AlertSink {
    /// Runs until detection ends; returns the alerts written.
    ///
    /// # Errors
    /// The output cannot be written, or the dead-letter sink failed.
    pub async fn run(
        mut self,
        mut deliveries: mpsc::Receiver<Delivery>,
    ) -> Result<u64, PipelineError> {
        let sink = SinkMetrics::new("alerts");
        let path = (self.output.as_os_str() != "-").then_some(self.output.as_path());
        let mut out = open_output(path, false, self.append).await?;
        let mut count = 0u64;
        let mut buf = Vec::with_capacity(64 * 1024);
        let mut watching_dead_letters = true;
        loop {
            let item = tokio::select! {
                item = deliveries.recv() => match item {
                    Some(item) => item,
                    None => break,
                },
                failed = self.dead_failed.wait_for(|failed| *failed), if watching_dead_letters => {
                    match failed {
                        Ok(_) => return Err(PipelineError::DeadLettersFailed),
                        // The dead-letter sink finished without failing.
                        Err(_) => watching_dead_letters = false,
                    }
                    continue;
                }
            };
            let (alerts, received) = match item {
                Delivery::Alerts(alerts, received) => (alerts, received),
                Delivery::Acks(acks) => {
                    // The alerts before them are written and flushed; so
                    // must be the dead letters of what they cover, which
                    // were sent before their batch.
                    if acks.is_empty() {
                        continue;
                    }
                    if !dead_letters_written(&self.dead, false).await {
                        // The dead-letter sink failed: what it did not
                        // write must not be acknowledged.
                        return Err(PipelineError::DeadLettersFailed);
                    }
                    acks.into_iter().for_each(|ack| ack());
                    continue;
                }
                Delivery::State(bytes) => {
                    // The positions it saves vouch for the alerts and dead
                    // letters before it: they reach the disk first.
                    out.sync().await.map_err(|e| io_error(path, e))?;
                    if !dead_letters_written(&self.dead, true).await {
                        return Err(PipelineError::DeadLettersFailed);
                    }
                    self.save_state(bytes).await?;
                    continue;
                }
            };
            buf.clear();
            for alert in &alerts {
                serde_json::to_writer(&mut buf, alert).map_err(|e| io_error(path, e.into()))?;
                buf.push(b'\n');
            }
            count += alerts.len() as u64;
            write_flushed(&mut *out.out, &buf, &sink, path).await?;
            sink.delivered(received.elapsed());
            // Counted once written, after the latency metrics, so that a
            // scrape seeing the count also sees how they were delivered.
            for alert in &alerts {
                telemetry::alert(&alert.severity.to_string());
            }
            self.written
                .fetch_add(alerts.len() as u64, Ordering::Relaxed);
        }
        Ok(count)
    }

    async fn save_state(&self, bytes: Vec<u8>) -> Result<(), PipelineError> {
        let Some(path) = self.state_file.clone() else {
            return Ok(());
        };
        tokio::task::spawn_blocking(move || write_state(Path::new(&path), &bytes))
            .await
            .map_err(|e| PipelineError::Internal(format!("state writer: {e}")))??;
        Ok(())
    }
}
