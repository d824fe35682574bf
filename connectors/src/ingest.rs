//! [`Ingest`]: the stage every source shares. Frames go in; records are
//! parsed by the input's [`Format`], decoded into Arrow and stamped with
//! the actor they came from; batches and dead letters come out.

use std::sync::Arc;
use std::time::Duration;

use crate::dead_letter::{excerpt, DeadLetter};
use crate::decode::{BatchDecoder, DecoderConfig, EventBatch};
use crate::framing::{Frame, Origin, Record};
use crate::parse::{Format, Parsed, RecordParser};
use crate::reader::{ReadOptions, ReadStats};

/// Parses, decodes and batches the records of one input.
///
/// ```
/// use std::sync::Arc;
/// use vagt_connectors::{DecoderConfig, Format, Frame, Ingest, Origin, Record};
///
/// let mut ingest = Ingest::new(Format::Syslog, &DecoderConfig::default());
/// let source: Arc<str> = Arc::from("udp://127.0.0.1:514");
/// let actor: Arc<str> = Arc::from("rnv-hospital-nord");
/// let frame = |text: &str| Frame::Record(Record {
///     bytes: text.as_bytes().to_vec(),
///     origin: Origin { line: 1, offset: 0 },
/// });
/// assert!(ingest.frame(frame("<34>Nov 23 09:10:29 pc1 sshd[7]: Failed password"), &source, Some(&actor)).is_none());
/// let dead = ingest.frame(frame("no priority"), &source, Some(&actor)).unwrap();
/// assert_eq!(dead.reason, "syslog: the message starts with neither <PRI> nor a time");
/// let batch = ingest.finish().unwrap();
/// assert_eq!(batch.origins[0].actor.as_deref(), Some("rnv-hospital-nord"));
/// assert_eq!((ingest.stats.records, ingest.stats.dead_letters), (1, 1));
/// ```
#[derive(Debug)]
pub struct Ingest {
    parser: RecordParser,
    decoder: BatchDecoder,
    max_delay: Duration,
    /// Records decoded and dead letters so far.
    pub stats: ReadStats,
}

impl Ingest {
    /// An empty stage for records of `format`.
    pub fn new(format: Format, config: &DecoderConfig) -> Self {
        Ingest {
            parser: RecordParser::new(format),
            decoder: BatchDecoder::with_config(config),
            max_delay: config.max_batch_delay.get(),
            stats: ReadStats::default(),
        }
    }

    /// An empty stage for the records of a source read with `options`:
    /// their format, batching, and the columns decoded.
    pub fn for_source(options: &ReadOptions) -> Self {
        let mut ingest = Ingest::new(options.format, &options.decoder);
        ingest.decoder.set_projection(options.projection.clone());
        ingest
    }

    /// Takes one frame of the stream `source`, from `actor`; a frame that
    /// is no event comes back as a dead letter (and is counted).
    pub fn frame(
        &mut self,
        frame: Frame,
        source: &Arc<str>,
        actor: Option<&Arc<str>>,
    ) -> Option<DeadLetter> {
        match frame {
            Frame::Record(record) => self.record(record, source, actor),
            Frame::Dead(dead) => {
                self.stats.dead_letters += 1;
                Some(dead)
            }
        }
    }

    /// Takes one record; see [`Ingest::frame`].
    pub fn record(
        &mut self,
        record: Record,
        source: &Arc<str>,
        actor: Option<&Arc<str>>,
    ) -> Option<DeadLetter> {
        let dead = match self.parser.parse(&record, source) {
            Ok(Parsed::Same) => self.decoder.push_as(record, source, actor),
            Ok(Parsed::Text(text)) => self.decoder.push_as(
                Record {
                    bytes: text.into_bytes(),
                    origin: record.origin,
                },
                source,
                actor,
            ),
            Ok(Parsed::Nothing) => return None,
            Err(reason) => Some(DeadLetter {
                source: source.to_string(),
                line: record.origin.line,
                offset: record.origin.offset,
                reason,
                excerpt: excerpt(&record.bytes),
            }),
        };
        match dead {
            None => self.stats.records += 1,
            Some(_) => self.stats.dead_letters += 1,
        }
        dead
    }

    /// Takes a record that is a whole line of the input, borrowed from
    /// the read buffer (see [`crate::RecordSplitter::take_line`]), if it is
    /// a valid event; false leaves the batch and the counts as they were,
    /// for the line to be framed and taken again the slow way, which words
    /// what is wrong with it.
    pub fn line(
        &mut self,
        line: &[u8],
        origin: Origin,
        source: &Arc<str>,
        actor: Option<&Arc<str>>,
    ) -> bool {
        if !matches!(self.parser.parse_bytes(line, source), Ok(Parsed::Same))
            || self
                .decoder
                .push_bytes(line, origin, source, actor)
                .is_some()
        {
            return false;
        }
        self.stats.records += 1;
        true
    }

    /// Whether the batch should be handed on now: it is full, or, for a
    /// live source, its first event has waited the batch delay.
    pub fn is_full(&self) -> bool {
        self.decoder.is_full()
    }

    /// Whether the batch's first event has waited `max_batch_delay_ms`.
    pub fn overdue(&self) -> bool {
        self.decoder
            .received()
            .is_some_and(|t| t.elapsed() >= self.max_delay)
    }

    /// How long until the batch is overdue (the delay itself if empty).
    pub fn until_overdue(&self) -> Duration {
        self.decoder.received().map_or(self.max_delay, |t| {
            self.max_delay.saturating_sub(t.elapsed())
        })
    }

    /// Whether no record is waiting.
    pub fn is_empty(&self) -> bool {
        self.decoder.is_empty()
    }

    /// The batch so far, if any; the stage starts a new one.
    pub fn finish(&mut self) -> Option<EventBatch> {
        self.decoder.finish()
    }

    /// Stamps the events taken from now on as read from `file`.
    pub fn set_file(&mut self, file: Option<crate::decode::FileId>) {
        self.decoder.set_file(file);
    }

    /// Forgets what the parser learnt of a stream (a rotated file, a
    /// closed connection).
    pub fn forget(&mut self, source: &Arc<str>) {
        self.parser.forget(source);
    }
}
