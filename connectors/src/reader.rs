//! Reading a whole source synchronously: framing by format, parsing,
//! decoding, batching. The engine runs this on a blocking thread and
//! forwards batches into a bounded channel.

use std::io::Read;
use std::sync::atomic::AtomicU64;
use std::sync::Arc;

use crate::dead_letter::DeadLetter;
use crate::decode::{DecoderConfig, EventBatch};
use crate::error::ConnectorError;
use crate::framing::Origin;
use crate::ingest::Ingest;
use crate::lines::Framer;
use crate::parse::Format;
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

/// How a source's records are read.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReadOptions {
    /// Batching and limits.
    pub decoder: DecoderConfig,
    /// The records' format.
    pub format: Format,
    /// The organisation the source's events come from.
    pub actor: Option<Arc<str>>,
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
    let options = ReadOptions {
        decoder: config.clone(),
        ..ReadOptions::default()
    };
    read_source(
        source,
        &options,
        Arc::new(AtomicU64::new(0)),
        on_batch,
        on_dead,
    )
}

/// As [`read_events`], with the records' format and actor, adding the
/// bytes read from the source (before decompression) to `progress` as it
/// goes.
///
/// # Errors
/// As [`read_events`].
pub fn read_source(
    source: &InputSource,
    options: &ReadOptions,
    progress: Arc<AtomicU64>,
    mut on_batch: impl FnMut(EventBatch),
    mut on_dead: impl FnMut(DeadLetter),
) -> Result<ReadStats, ConnectorError> {
    options.decoder.validate()?;
    let reader = source.open_counted(progress)?;
    let mut ingest = Ingest::new(options.format, &options.decoder);
    // Which file it is, so that a later run resumes only in the same one.
    if let InputSource::File(path) = source {
        let metadata = std::fs::metadata(path).ok();
        ingest.set_file(metadata.as_ref().and_then(crate::tail::identity));
    }
    // Files are read in full batches (a gzip stream returns short reads
    // all the time); live sources hand out what they have when idle.
    let live = matches!(source, InputSource::Stdin);
    let name: Arc<str> = Arc::from(source.name().as_str());
    let framer = Framer::new(
        options.format,
        reader,
        &name,
        options.decoder.max_record_bytes,
        Origin { line: 1, offset: 0 },
    );
    let bytes = drive(
        framer,
        &mut ingest,
        (&name, options.actor.as_ref()),
        live,
        &mut on_batch,
        &mut on_dead,
    )?;
    let mut stats = ingest.stats;
    stats.bytes = bytes;
    Ok(stats)
}

/// Reads events of `options.format` from `bytes`, named `name` in dead
/// letters, handing out batches and dead letters as they occur (as a file
/// would be read).
pub fn read_bytes(
    bytes: &[u8],
    name: &str,
    options: &ReadOptions,
    mut on_batch: impl FnMut(EventBatch),
    mut on_dead: impl FnMut(DeadLetter),
) -> Result<ReadStats, ConnectorError> {
    options.decoder.validate()?;
    let mut ingest = Ingest::new(options.format, &options.decoder);
    let name: Arc<str> = Arc::from(name);
    let framer = Framer::new(
        options.format,
        bytes,
        &name,
        options.decoder.max_record_bytes,
        Origin { line: 1, offset: 0 },
    );
    let read = drive(
        framer,
        &mut ingest,
        (&name, options.actor.as_ref()),
        false,
        &mut on_batch,
        &mut on_dead,
    )?;
    let mut stats = ingest.stats;
    stats.bytes = read;
    Ok(stats)
}

/// Runs one stream through `ingest` to its end; returns the bytes read
/// (counted from the framer's start).
///
/// # Errors
/// Reading failed; what was read before has been handed out.
pub(crate) fn drive<R: Read>(
    mut framer: Framer<R>,
    ingest: &mut Ingest,
    (name, actor): (&Arc<str>, Option<&Arc<str>>),
    live: bool,
    on_batch: &mut impl FnMut(EventBatch),
    on_dead: &mut impl FnMut(DeadLetter),
) -> Result<u64, ConnectorError> {
    loop {
        let frame = match framer.next_frame() {
            Ok(Some(f)) => f,
            Ok(None) => break,
            Err(e) => {
                if let Some(batch) = ingest.finish() {
                    on_batch(batch);
                }
                return Err(ConnectorError::Read {
                    name: name.to_string(),
                    offset: framer.bytes_read(),
                    source: e,
                });
            }
        };
        if let Some(dead) = ingest.frame(frame, name, actor) {
            on_dead(dead);
        }
        if ingest.is_full()
            || (live && !ingest.is_empty() && (framer.at_live_edge() || ingest.overdue()))
        {
            if let Some(batch) = ingest.finish() {
                on_batch(batch);
            }
        }
    }
    if let Some(batch) = ingest.finish() {
        on_batch(batch);
    }
    Ok(framer.bytes_read())
}
