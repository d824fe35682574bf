//! Reading a whole source synchronously: framing by format, parsing,
//! decoding, batching. The engine runs this on a blocking thread and
//! forwards batches into a bounded channel.

use std::io::Read;
use std::sync::atomic::AtomicU64;
use std::sync::Arc;

use crate::dead_letter::DeadLetter;
use crate::decode::{DecoderConfig, EventBatch, SharedProjection};
use crate::error::ConnectorError;
use crate::framing::{Frame, Origin};
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
    /// The columns decoded (by default all).
    pub projection: SharedProjection,
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
    let mut ingest = Ingest::for_source(options);
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
    let mut ingest = Ingest::for_source(options);
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

/// What one step of [`drive`] got from the framer.
enum Step {
    /// A whole line the ingest took by the fast path.
    Taken,
    Frame(Frame),
    /// The end of the input.
    End,
}

/// The next line taken by the fast path ([`Framer::take_line`]), or else
/// the next frame.
fn step<R: Read>(
    framer: &mut Framer<R>,
    ingest: &mut Ingest,
    name: &Arc<str>,
    actor: Option<&Arc<str>>,
) -> std::io::Result<Step> {
    if framer.take_line(|line, origin| ingest.line(line, origin, name, actor))? {
        return Ok(Step::Taken);
    }
    Ok(framer.next_frame()?.map_or(Step::End, Step::Frame))
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
        let frame = match step(&mut framer, ingest, name, actor) {
            Ok(Step::Taken) => None,
            Ok(Step::Frame(frame)) => Some(frame),
            Ok(Step::End) => break,
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
        if let Some(dead) = frame.and_then(|frame| ingest.frame(frame, name, actor)) {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::framing::RecordSplitter;

    /// Batches and dead letters of `input`, framed with a read buffer of
    /// `buffer` bytes: by [`drive`] (whole lines on the fast path), or
    /// frame by frame by structure alone.
    fn read(input: &[u8], buffer: usize, fast: bool) -> (Vec<EventBatch>, Vec<String>, ReadStats) {
        let config = DecoderConfig {
            batch_size: 3,
            ..DecoderConfig::default()
        };
        let mut ingest = Ingest::new(Format::Json, &config);
        let name: Arc<str> = Arc::from("test");
        let splitter = RecordSplitter::with_buffer(input, "test", 200, buffer);
        let mut batches = Vec::new();
        let mut dead = Vec::new();
        if fast {
            drive(
                Framer::Json(splitter),
                &mut ingest,
                (&name, None),
                false,
                &mut |b| batches.push(b),
                &mut |d| dead.push(format!("{d:?}")),
            )
            .unwrap();
        } else {
            for frame in splitter {
                if let Some(d) = ingest.frame(frame.unwrap(), &name, None) {
                    dead.push(format!("{d:?}"));
                }
                if ingest.is_full() {
                    batches.extend(ingest.finish());
                }
            }
            batches.extend(ingest.finish());
        }
        (batches, dead, ingest.stats)
    }

    fn assert_same(input: &[u8], buffer: usize) {
        let (fast, fast_dead, fast_stats) = read(input, buffer, true);
        let (slow, slow_dead, slow_stats) = read(input, buffer, false);
        let shown = String::from_utf8_lossy(input);
        assert_eq!(fast_dead, slow_dead, "{shown:?}, buffer {buffer}");
        assert_eq!(fast_stats, slow_stats, "{shown:?}, buffer {buffer}");
        assert_eq!(fast.len(), slow.len(), "{shown:?}, buffer {buffer}");
        for (f, s) in fast.iter().zip(&slow) {
            assert_eq!(f.batch, s.batch, "{shown:?}, buffer {buffer}");
            assert_eq!(f.origins, s.origins, "{shown:?}, buffer {buffer}");
        }
    }

    /// Pieces of input that framing treats each its own way.
    const PIECES: &[&str] = &[
        "{\"a\": 1, \"b\": \"x\\\"y\\\\\"}\n",
        "{\"a\": 2}   \r\n",
        "{\"a\": {\"b\": [1, \"two\", {\"c\": null}]}}\n",
        "{\"a\": 3}{\"a\": 4}\n",
        "{\"a\": 5} {\"a\": 6}\n",
        "{\n  \"a\": 7,\n  \"b\": \"pretty\"\n}\n",
        "{\"a\": \"broken\n",
        "{\"a\": {\"b\": 1}\n",
        "{\"a\": 8, \"a\": 9}\n",
        "{\"a\": \"\\ud800\"}\n",
        "{\"a\": \"\u{e9}t\u{e9}\", \"b\": 1e400}\n",
        "{\"a\": \"\\u00e9\"} x\n",
        "[{\"a\": 10},\n {\"a\": 11}]\n",
        "garbage\n",
        "\n\n",
        "{\"long\": \"0123456789012345678901234567890123456789012345678901234567890123456789012345678901234567890123456789012345678901234567890123456789012345678901234567890123456789012345678901234567890123456789\"}\n",
        "{\"a\": 12}",
        "\u{feff}{\"a\": 13}\n",
        "{\"a\": tru}\n",
        "{}\n",
    ];

    #[test]
    fn the_fast_path_reads_what_framing_by_structure_reads() {
        for piece in PIECES {
            for buffer in [1, 5, 16, 64, 4096] {
                assert_same(piece.as_bytes(), buffer);
            }
        }
        let mut next = crate::random::xorshift(0x5eed_f00d);
        for _ in 0..400 {
            let mut input = Vec::new();
            for _ in 0..next() % 12 {
                input.extend_from_slice(PIECES[next() as usize % PIECES.len()].as_bytes());
            }
            if next().is_multiple_of(4) {
                // Invalid UTF-8 somewhere.
                let at = next() as usize % (input.len() + 1);
                input.insert(at, 0xff);
            }
            let buffer = [3, 17, 64, 256, 4096][next() as usize % 5];
            assert_same(&input, buffer);
        }
    }

    #[test]
    fn whole_lines_are_taken_without_framing_them_by_structure() {
        let input = b"{\"a\": 1}\n{\"a\": 2}\r\n";
        let mut framer = Framer::Json(RecordSplitter::with_buffer(&input[..], "test", 200, 12));
        let mut lines = Vec::new();
        let mut take = |line: &[u8], origin: Origin| {
            lines.push((
                String::from_utf8_lossy(line).into_owned(),
                origin.line,
                origin.offset,
            ));
            true
        };
        assert!(framer.take_line(&mut take).unwrap());
        // The second line runs past the first read of 12 bytes.
        assert!(framer.take_line(&mut take).unwrap());
        assert!(!framer.take_line(&mut take).unwrap());
        assert_eq!(
            lines,
            [("{\"a\": 1}".into(), 1, 0), ("{\"a\": 2}".into(), 2, 9)]
        );
        assert_eq!(framer.bytes_read(), input.len() as u64);
    }
}
