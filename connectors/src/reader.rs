//! Reading a whole source synchronously: framing, decoding, batching.
//! The engine runs this on a blocking thread and forwards batches into a
//! bounded channel.

use std::sync::atomic::AtomicU64;
use std::sync::Arc;

use crate::dead_letter::DeadLetter;
use crate::decode::{BatchDecoder, DecoderConfig, EventBatch};
use crate::error::ConnectorError;
use crate::framing::{Frame, RecordSplitter};
use crate::source::InputSource;

/// What reading a source did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ReadStats {
    /// Records decoded into batches.
    pub records: u64,
    /// Records sent to the dead-letter output.
    pub dead_letters: u64,
    /// Bytes read (after decompression).
    pub bytes: u64,
}

/// Reads `source` to its end, handing out batches and dead letters as they
/// occur. A batch is handed out when it is full, or, for stdin, early when
/// no more input is waiting or when its first event has waited
/// `max_batch_delay_ms`, so that streaming input is not held back until a
/// batch fills.
///
/// # Errors
/// The configuration is invalid, or opening or reading the source failed;
/// batches and dead letters before a read failure have been delivered.
pub fn read_events(
    source: &InputSource,
    config: &DecoderConfig,
    on_batch: impl FnMut(EventBatch),
    on_dead: impl FnMut(DeadLetter),
) -> Result<ReadStats, ConnectorError> {
    read_events_counted(
        source,
        config,
        Arc::new(AtomicU64::new(0)),
        on_batch,
        on_dead,
    )
}

/// As [`read_events`], adding the bytes read from the source (before
/// decompression) to `progress` as it goes.
///
/// # Errors
/// As [`read_events`].
pub fn read_events_counted(
    source: &InputSource,
    config: &DecoderConfig,
    progress: Arc<AtomicU64>,
    mut on_batch: impl FnMut(EventBatch),
    mut on_dead: impl FnMut(DeadLetter),
) -> Result<ReadStats, ConnectorError> {
    config.validate()?;
    let name = source.name();
    let reader = source.open_counted(progress)?;
    let mut splitter = RecordSplitter::new(reader, name.clone(), config.max_record_bytes);
    let source_name: Arc<str> = Arc::from(name.as_str());
    let mut decoder = BatchDecoder::with_batch_size(config.batch_size);
    let mut stats = ReadStats::default();
    // Files are read in full batches (a gzip stream returns short reads
    // all the time); live sources hand out what they have when idle.
    let live = matches!(source, InputSource::Stdin);
    let max_delay = std::time::Duration::from_millis(config.max_batch_delay_ms);
    loop {
        let frame = match splitter.next_frame() {
            Ok(Some(f)) => f,
            Ok(None) => break,
            Err(e) => {
                if let Some(batch) = decoder.finish() {
                    on_batch(batch);
                }
                return Err(ConnectorError::Read {
                    name,
                    offset: splitter.bytes_read(),
                    source: e,
                });
            }
        };
        match frame {
            Frame::Record(record) => match decoder.push(record, &source_name) {
                None => stats.records += 1,
                Some(dead) => {
                    stats.dead_letters += 1;
                    on_dead(dead);
                }
            },
            Frame::Dead(dead) => {
                stats.dead_letters += 1;
                on_dead(dead);
            }
        }
        let overdue = || decoder.received().is_some_and(|t| t.elapsed() >= max_delay);
        if decoder.is_full()
            || (live && !decoder.is_empty() && (splitter.at_live_edge() || overdue()))
        {
            if let Some(batch) = decoder.finish() {
                on_batch(batch);
            }
        }
    }
    if let Some(batch) = decoder.finish() {
        on_batch(batch);
    }
    stats.bytes = splitter.bytes_read();
    Ok(stats)
}
