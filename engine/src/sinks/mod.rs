//! Sinks: where alerts, dead letters and the state file go. Detection
//! hands the sinks [`Delivery`] items in order; acknowledgements run and
//! the state is written only once everything before them is out (and, for
//! the state, on disk).
//!
//! ```text
//!  detection ──Delivery──► alert sink: alerts written; Acks run once the dead letters
//!      │                                before them are written; State written once
//!      │                                alerts and dead letters are synced
//!      └──DeadItem──► dead-letter sink (answers barriers)
//! ```

pub(crate) mod alerts;
pub(crate) mod dead_letters;

use std::path::{Path, PathBuf};
use std::time::Instant;

use tokio::io::{AsyncWrite, AsyncWriteExt, BufWriter};
use tokio::sync::mpsc;
use vagt_connectors::live::Ack;
use vagt_connectors::DeadLetter;

use crate::alert::Alert;
use crate::pipeline::PipelineError;
use crate::telemetry::SinkMetrics;

/// What flows from detection to the sinks. State goes through the sinks
/// so that it is saved only after the alerts before it are written.
pub(crate) enum Delivery {
    /// Alerts, with when the first event behind them was read.
    Alerts(Vec<Alert>, Instant),
    /// Run once everything before is written (Kafka offsets to commit).
    Acks(Vec<Ack>),
    /// The state file's content, written once everything before is on disk.
    State(Vec<u8>),
}

/// What flows to the dead-letter sink.
pub(crate) enum DeadItem {
    Letter(DeadLetter),
    /// Answered once everything sent before it is written (and, when
    /// `sync`, on disk).
    Barrier {
        written: tokio::sync::oneshot::Sender<()>,
        sync: bool,
    },
}

pub(crate) fn io_error(path: Option<&Path>, source: std::io::Error) -> PipelineError {
    PipelineError::Output {
        path: path
            .map(Path::to_path_buf)
            .unwrap_or_else(|| PathBuf::from("-")),
        source,
    }
}

/// An alert or dead-letter output: a file, whose content can be synced to
/// disk, or stdout or stderr.
pub(crate) struct Output {
    pub out: Box<dyn AsyncWrite + Unpin + Send>,
    /// The file again, to sync it.
    file: Option<tokio::fs::File>,
}

impl Output {
    /// Flushes, and puts what was written on disk (for a file).
    pub async fn sync(&mut self) -> std::io::Result<()> {
        self.out.flush().await?;
        match &self.file {
            Some(file) => file.sync_data().await,
            None => Ok(()),
        }
    }
}

/// Opens an output; its folder must exist (a mistyped path is an error,
/// not a new folder). A run that resumes from a state file appends to its
/// outputs (what earlier runs wrote stays); another starts them afresh.
pub(crate) async fn open_output(
    path: Option<&Path>,
    stderr: bool,
    append: bool,
) -> Result<Output, PipelineError> {
    Ok(match path {
        Some(p) => {
            let file = tokio::fs::OpenOptions::new()
                .write(true)
                .create(true)
                .append(append)
                .truncate(!append)
                .open(p)
                .await
                .map_err(|e| io_error(Some(p), e))?;
            let sync = file.try_clone().await.map_err(|e| io_error(Some(p), e))?;
            Output {
                out: Box::new(BufWriter::new(file)),
                file: Some(sync),
            }
        }
        None if stderr => Output {
            out: Box::new(tokio::io::stderr()),
            file: None,
        },
        None => Output {
            out: Box::new(BufWriter::new(tokio::io::stdout())),
            file: None,
        },
    })
}

/// Waits until the dead-letter sink has written (and with `sync`, synced)
/// everything sent to it so far; false if it failed.
pub(crate) async fn dead_letters_written(dead: &mpsc::Sender<DeadItem>, sync: bool) -> bool {
    let (written, barrier) = tokio::sync::oneshot::channel();
    dead.send(DeadItem::Barrier { written, sync }).await.is_ok() && barrier.await.is_ok()
}

/// Writes `bytes` to the output at `path` and flushes, timing it; a
/// failure is counted and named by the path.
pub(crate) async fn write_flushed(
    out: &mut (dyn AsyncWrite + Unpin + Send),
    bytes: &[u8],
    sink: &SinkMetrics,
    path: Option<&Path>,
) -> Result<(), PipelineError> {
    let writing = Instant::now();
    let written = match out.write_all(bytes).await {
        Ok(()) => out.flush().await,
        Err(e) => Err(e),
    };
    if let Err(e) = written {
        sink.failed();
        return Err(io_error(path, e));
    }
    sink.wrote(writing.elapsed());
    Ok(())
}
