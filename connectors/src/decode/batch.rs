//! [`BatchDecoder`]: accepts records one at a time, turns the bad ones into
//! dead letters, and builds an [`EventBatch`] from the good ones.

use std::sync::Arc;
use std::time::Instant;

use arrow_array::builder::StringBuilder;
use arrow_array::cast::AsArray;
use arrow_array::{ArrayRef, RecordBatch, StringArray};
use arrow_schema::{DataType, Field, Schema};

use super::columns::Columns;
use super::config::{DecoderConfig, MAX_BATCH_BYTES, MAX_RECORD_LIMIT};
use super::projection::{Projection, SharedProjection};
use super::{walk, RAW_COLUMN};
use crate::dead_letter::{excerpt, DeadLetter};
use crate::framing::{Origin, Record};

/// Where an event of a batch came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventOrigin {
    /// Source name.
    pub source: Arc<str>,
    /// 1-based line where the record starts.
    pub line: u64,
    /// Byte offset where the record starts.
    pub offset: u64,
    /// The organisation the event came from, as its input or credential
    /// says (never as the event says).
    pub actor: Option<Arc<str>>,
    /// The file the event was read from, for a followed file: its
    /// identity (device and inode), which a rotation changes.
    pub file: Option<FileId>,
}

/// What tells one file from another (device and inode on Unix).
pub type FileId = [u64; 2];

/// A decoded batch and the origin of each row.
#[derive(Debug, Clone)]
pub struct EventBatch {
    /// The events, one row each: [`RAW_COLUMN`] first, then the flattened
    /// columns in first-seen order.
    pub batch: RecordBatch,
    /// One per row.
    pub origins: Vec<EventOrigin>,
    /// When the batch's first record was decoded: the ingest time that
    /// alert latency is measured from.
    pub received: Instant,
    /// The columns it was decoded with; `None` for all (see
    /// [`Projection`]).
    pub projection: Option<Arc<Projection>>,
}

impl EventBatch {
    /// Each event's text as read (the [`RAW_COLUMN`]), if the batch has it.
    pub fn raw(&self) -> Option<&StringArray> {
        self.batch
            .column_by_name(RAW_COLUMN)
            .and_then(|c| c.as_string_opt::<i32>())
    }

    /// Whether its columns hold every column `needed` fills.
    pub fn covers(&self, needed: Option<&Projection>) -> bool {
        match (&self.projection, needed) {
            (None, _) => true,
            (Some(_), None) => false,
            (Some(have), Some(needed)) => std::ptr::eq(&**have, needed) || have.covers(needed),
        }
    }

    /// The same events with their columns decoded again from their text,
    /// onto `projection` (`None` for every column): for a batch decoded
    /// for fewer columns than its consumers now read (after a rule
    /// reload). `None` if the batch has no text column or an event's text
    /// no longer decodes, which cannot happen to a batch a decoder made.
    pub fn decoded_again(&self, projection: Option<Arc<Projection>>) -> Option<EventBatch> {
        let raw = self.raw()?;
        let mut decoder = BatchDecoder::with_batch_size(self.origins.len());
        decoder.set_projection(SharedProjection::holding(projection));
        let source: Arc<str> = Arc::from("");
        for (row, origin) in self.origins.iter().enumerate() {
            let at = Origin {
                line: origin.line,
                offset: origin.offset,
            };
            if decoder
                .push_bytes(raw.value(row).as_bytes(), at, &source, None)
                .is_some()
            {
                return None;
            }
        }
        let mut again = decoder.finish()?;
        again.origins.clone_from(&self.origins);
        again.received = self.received;
        Some(again)
    }
}

/// Text a batch may hold at most: Arrow's `Utf8` arrays use `i32` offsets.
const HARD_BATCH_BYTES: usize = i32::MAX as usize;

/// Accumulates records into a batch, inferring its schema.
///
/// ```
/// use std::sync::Arc;
/// use vagt_connectors::{BatchDecoder, Origin, Record};
///
/// let mut decoder = BatchDecoder::new();
/// let source: Arc<str> = Arc::from("example");
/// let record = |text: &str, line| Record {
///     bytes: text.as_bytes().to_vec(),
///     origin: Origin { line, offset: 0 },
/// };
/// assert!(decoder.push(record(r#"{"Event": {"EventID": 4688}}"#, 1), &source).is_none());
/// let dead = decoder.push(record(r#"{"Event": }"#, 2), &source).unwrap();
/// assert_eq!(dead.reason, "invalid JSON at column 11: expected value");
///
/// let batch = decoder.finish().unwrap();
/// assert_eq!(batch.batch.num_rows(), 1);
/// assert_eq!(batch.batch.schema().field(1).name(), "Event.EventID");
/// assert!(decoder.is_empty());
/// ```
#[derive(Debug)]
pub struct BatchDecoder {
    batch_size: usize,
    batch_bytes: usize,
    columns: Columns,
    /// Each row's text, appended straight into the Arrow column.
    raw: StringBuilder,
    origins: Vec<EventOrigin>,
    received: Option<Instant>,
    file: Option<FileId>,
    /// Where the projection of each new batch is read from.
    projection: SharedProjection,
}

impl Default for BatchDecoder {
    fn default() -> Self {
        Self::new()
    }
}

impl BatchDecoder {
    /// An empty decoder, full at the default batch size and bytes.
    pub fn new() -> Self {
        Self::with_config(&DecoderConfig::default())
    }

    /// An empty decoder, full at `batch_size` records (at least 1) or
    /// the default `batch_bytes`.
    pub fn with_batch_size(batch_size: usize) -> Self {
        Self::with_config(&DecoderConfig {
            batch_size,
            ..DecoderConfig::default()
        })
    }

    /// An empty decoder, full at `config`'s `batch_size` records or
    /// `batch_bytes` of records (each at least 1).
    pub fn with_config(config: &DecoderConfig) -> Self {
        BatchDecoder {
            batch_size: config.batch_size.max(1),
            batch_bytes: config.batch_bytes.clamp(1, MAX_BATCH_BYTES),
            columns: Columns::default(),
            raw: StringBuilder::new(),
            origins: Vec::new(),
            received: None,
            file: None,
            projection: SharedProjection::default(),
        }
    }

    /// Decodes the batches begun from now on onto the projection `shared`
    /// holds when each begins (at its first record).
    pub fn set_projection(&mut self, shared: SharedProjection) {
        self.projection = shared;
    }

    /// Stamps the events pushed from now on as read from `file`.
    pub fn set_file(&mut self, file: Option<FileId>) {
        self.file = file;
    }

    /// When the current batch's first record was decoded; `None` if it is
    /// empty.
    pub fn received(&self) -> Option<Instant> {
        self.received
    }

    /// Records in the current batch.
    pub fn len(&self) -> usize {
        self.origins.len()
    }

    /// True if no record is buffered.
    pub fn is_empty(&self) -> bool {
        self.origins.is_empty()
    }

    /// True when the batch should be finished: it has `batch_size` records,
    /// its records hold `batch_bytes`, or it holds [`MAX_BATCH_BYTES`] of
    /// text with its columns.
    pub fn is_full(&self) -> bool {
        self.len() >= self.batch_size
            || self.raw.values_slice().len() >= self.batch_bytes
            || self.columns.bytes >= MAX_BATCH_BYTES
    }

    /// Decodes one record into the batch. A record that is not a valid JSON
    /// object in UTF-8 comes back as a dead letter saying what is wrong, and
    /// leaves the batch as it was.
    pub fn push(&mut self, record: Record, source: &Arc<str>) -> Option<DeadLetter> {
        self.push_as(record, source, None)
    }

    /// As [`BatchDecoder::push`], for an event from `actor`.
    pub fn push_as(
        &mut self,
        record: Record,
        source: &Arc<str>,
        actor: Option<&Arc<str>>,
    ) -> Option<DeadLetter> {
        self.push_bytes(&record.bytes, record.origin, source, actor)
    }

    /// As [`BatchDecoder::push_as`], for a record's text that starts at
    /// `origin`, borrowed (from a read buffer) rather than owned.
    pub fn push_bytes(
        &mut self,
        bytes: &[u8],
        origin: Origin,
        source: &Arc<str>,
        actor: Option<&Arc<str>>,
    ) -> Option<DeadLetter> {
        let dead = |reason: String| {
            Some(DeadLetter {
                source: source.to_string(),
                line: origin.line,
                offset: origin.offset,
                reason,
                excerpt: excerpt(bytes),
            })
        };
        if bytes.len() > MAX_RECORD_LIMIT {
            return dead(format!("record exceeds {MAX_RECORD_LIMIT} bytes"));
        }
        let text = match super::utf8::checked(bytes) {
            Ok(text) => text,
            Err(e) => return dead(utf8_reason(bytes, e.valid_up_to())),
        };
        if let Some(found) = not_an_object(text) {
            return dead(format!("not a JSON object: the record is {found}"));
        }
        if self.origins.is_empty() {
            // A batch begins: with the projection in force now.
            self.columns.projection = self.projection.get();
        }
        // Rows are fewer than bytes, which stay below `HARD_BATCH_BYTES`.
        let row = self.origins.len() as u32;
        let mark = self.columns.mark();
        if let Err(e) = walk::decode_record(text, &mut self.columns, row, mark) {
            return dead(json_reason(&e));
        }
        self.columns.bytes += text.len();
        if self.columns.bytes > HARD_BATCH_BYTES {
            self.columns.rollback(mark, row);
            return dead(if self.is_empty() {
                "record too large: its columns would exceed 2 GiB of text".into()
            } else {
                "batch full: finish() it when is_full() says so".into()
            });
        }
        self.raw.append_value(text);
        self.origins.push(EventOrigin {
            source: source.clone(),
            line: origin.line,
            offset: origin.offset,
            actor: actor.cloned(),
            file: self.file,
        });
        self.received.get_or_insert_with(Instant::now);
        None
    }

    /// Builds the batch from the buffered records and empties the decoder
    /// for the next one; `None` if it is empty.
    pub fn finish(&mut self) -> Option<EventBatch> {
        if self.origins.is_empty() {
            return None;
        }
        let rows = self.origins.len();
        // The next batch's column, sized like this one so it does not grow
        // by copying as it fills.
        let used = self.raw.values_slice().len();
        let next = StringBuilder::with_capacity(rows, used + used / 4);
        let raw = Arc::new(std::mem::replace(&mut self.raw, next).finish());
        let mut fields = vec![Field::new(RAW_COLUMN, DataType::Utf8, true)];
        let mut arrays: Vec<ArrayRef> = vec![raw.clone()];
        self.columns.build(rows, &raw, &mut fields, &mut arrays);
        let batch = RecordBatch::try_new(Arc::new(Schema::new(fields)), arrays);
        debug_assert!(
            batch.is_ok(),
            "columns are built to the row count: {batch:?}"
        );
        // The next batch's, sized like this one.
        let origins = std::mem::replace(&mut self.origins, Vec::with_capacity(rows));
        let received = self.received.take().unwrap_or_else(Instant::now);
        self.columns.clear();
        let projection = self.columns.projection.clone();
        Some(EventBatch {
            batch: batch.ok()?,
            origins,
            received,
            projection,
        })
    }
}

/// What a record that does not start with `{` is, if it is a JSON value
/// (otherwise parsing reports the syntax error).
fn not_an_object(text: &str) -> Option<&'static str> {
    let first = text.bytes().find(|b| !b.is_ascii_whitespace());
    Some(match first? {
        b'[' => "an array",
        b'"' => "a string",
        b't' | b'f' => "a boolean",
        b'n' => "null",
        b'-' | b'0'..=b'9' => "a number",
        _ => return None,
    })
}

/// `serde_json`'s message, with the position first and relative to the
/// record.
fn json_reason(e: &serde_json::Error) -> String {
    let message = e.to_string();
    let position = format!(" at line {} column {}", e.line(), e.column());
    let what = message.strip_suffix(&position).unwrap_or(&message);
    if what.starts_with(super::columns::DUPLICATE) {
        return format!("ambiguous JSON at column {}: {what}", e.column());
    }
    if e.line() <= 1 {
        format!("invalid JSON at column {}: {what}", e.column())
    } else {
        format!(
            "invalid JSON at line {} column {} of the record: {what}",
            e.line(),
            e.column()
        )
    }
}

fn utf8_reason(bytes: &[u8], at: usize) -> String {
    let place = if inside_string(&bytes[..at]) {
        "inside a string"
    } else {
        "outside any string"
    };
    format!("invalid UTF-8 at byte {at} of the record, {place}")
}

/// Whether a string is open at the end of `prefix`.
fn inside_string(prefix: &[u8]) -> bool {
    let mut in_string = false;
    let mut escape = false;
    for &b in prefix {
        match (in_string, escape, b) {
            (true, true, _) => escape = false,
            (true, false, b'\\') => escape = true,
            (_, false, b'"') => in_string = !in_string,
            _ => {}
        }
    }
    in_string
}
