//! vagt connectors: where events come from and how they become Arrow.
//!
//! ```text
//!  InputSource (file, .gz, stdin), tail,    live: syslog udp/tcp/tls,
//!      │  bytes                               http, kafka (Payloads)
//!      ▼                                           │
//!  Framer: RecordSplitter (JSON objects)  ◄────────┘  (datagrams and framed
//!          or LineSplitter (lines)  ──► DeadLetter     messages are records)
//!      │  Record: one record's bytes, with its line and offset
//!      ▼
//!  Ingest: RecordParser (the input's Format) ──► DeadLetter (unparsable)
//!      │  a JSON object
//!      ▼
//!  BatchDecoder ──► DeadLetter (invalid JSON, invalid UTF-8, not an object)
//!      │  RecordBatch: `_raw` + flattened, typed columns
//!      ▼
//!  EventBatch { batch, origins (source, line, offset, actor) }
//! ```
//!
//! The [`RecordSplitter`] finds where each JSON object starts and ends,
//! whatever the layout (JSON lines, pretty-printed, concatenated, arrays),
//! without parsing it. The [`BatchDecoder`] parses each object once,
//! straight into column buffers, and builds an Arrow batch whose schema it
//! infers from the batch's events. Nothing bad in the input stops the
//! stream or panics: it becomes a [`DeadLetter`] saying where and why, and
//! the records around it still come out. [`read_events`] runs the whole
//! chain over an [`InputSource`]; by hand, it goes like this:
//!
//! ```
//! use std::sync::Arc;
//! use vagt_connectors::{BatchDecoder, Frame, RecordSplitter};
//!
//! let input = &b"{\"Event\": {\"EventID\": 4688}}\n{oops}\n[{\"Event\": {}}]"[..];
//! let source: Arc<str> = Arc::from("example");
//! let mut decoder = BatchDecoder::new();
//! let mut dead = Vec::new();
//! for frame in RecordSplitter::new(input, "example", 1 << 20) {
//!     match frame? {
//!         Frame::Record(record) => dead.extend(decoder.push(record, &source)),
//!         Frame::Dead(letter) => dead.push(letter),
//!     }
//! }
//! let events = decoder.finish().expect("two events");
//! assert_eq!(events.batch.num_rows(), 2);
//! assert_eq!(events.batch.schema().field(1).name(), "Event.EventID");
//! assert_eq!(dead[0].line, 2);
//! assert_eq!(dead[0].reason, "invalid JSON at column 2: key must be a string");
//! # Ok::<(), std::io::Error>(())
//! ```

pub mod dead_letter;
pub mod decode;
pub mod duration;
pub mod error;
pub mod framing;
pub mod ingest;
pub mod lines;
pub mod live;
pub mod parse;
#[cfg(test)]
mod random;
mod read_buffer;
pub mod reader;
pub mod source;
pub mod tail;

pub use dead_letter::{DeadLetter, EXCERPT_BYTES};
pub use decode::{
    BatchDecoder, DecoderConfig, EventBatch, EventOrigin, FileId, Gate, InvalidDecoderConfig,
    PathMatch, Projection, SharedProjection, MAX_BATCH_BYTES, MAX_RECORD_LIMIT, NULLS_COLUMN,
    RAW_COLUMN,
};
pub use duration::ConfigDuration;
pub use error::ConnectorError;
pub use framing::{Frame, Origin, Record, RecordSplitter};
pub use ingest::Ingest;
pub use lines::{Framer, LineSplitter};
pub use parse::{Format, Parsed, RecordParser};
pub use reader::{read_bytes, read_events, read_source, ReadOptions, ReadStats};
pub use source::{is_gzip, InputSource};
pub use tail::tail_events;
