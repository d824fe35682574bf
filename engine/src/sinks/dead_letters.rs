//! The dead-letter sink: every record that is no event, every event that
//! a stage could not use, and every alert an output could not deliver
//! (whole, under `alert`), with its reason, as JSON lines (stderr when no
//! file is configured).

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use tokio::sync::mpsc;

use super::{io_error, open_output, write_flushed, DeadItem};
use crate::pipeline::PipelineError;
use crate::telemetry::SinkMetrics;

/// Writes dead letters to `dead_path` (stderr if none) as they come;
/// a barrier is answered once everything before it is written.
pub(crate) async fn write_dead_letters(
    dead_path: Option<PathBuf>,
    append: bool,
    mut dead_rx: mpsc::Receiver<DeadItem>,
    dead_counted: Arc<AtomicU64>,
) -> Result<u64, PipelineError> {
    let sink = SinkMetrics::new("dead_letters");
    let mut out = open_output(dead_path.as_deref(), append).await?;
    let mut count = 0u64;
    while let Some(item) = dead_rx.recv().await {
        let line = match item {
            DeadItem::Letter(dead) => serde_json::to_vec(&dead),
            DeadItem::Alert(undelivered) => serde_json::to_vec(&undelivered),
            DeadItem::Barrier { written, sync } => {
                // Everything sent before it is written and flushed.
                if sync {
                    out.sync()
                        .await
                        .map_err(|e| io_error(dead_path.as_deref(), e))?;
                }
                let _ = written.send(());
                continue;
            }
        };
        count += 1;
        dead_counted.fetch_add(1, Ordering::Relaxed);
        let mut line = line.map_err(|e| io_error(dead_path.as_deref(), e.into()))?;
        line.push(b'\n');
        write_flushed(&mut *out.out, &line, &sink, dead_path.as_deref()).await?;
    }
    Ok(count)
}
