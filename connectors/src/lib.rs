//! vagt connectors: where events come from and how they become Arrow.
//!
//! ```text
//!  InputSource (file, .gz, stdin)
//!      │  bytes
//!      ▼
//!  RecordSplitter ──► DeadLetter (garbage, truncated, oversize)
//!      │  one object's text per record
//!      ▼
//!  BatchDecoder ──► DeadLetter (invalid JSON, invalid UTF-8, not an object)
//!      │  RecordBatch: `_raw` + flattened, typed columns
//!      ▼
//!  EventBatch { batch, origins }
//! ```

pub mod dead_letter;
pub mod decode;
pub mod error;
pub mod framing;
pub mod reader;
pub mod source;

pub use dead_letter::DeadLetter;
pub use decode::{
    BatchDecoder, DecoderConfig, EventBatch, EventOrigin, InvalidDecoderConfig, NULLS_COLUMN,
    RAW_COLUMN,
};
pub use error::ConnectorError;
pub use framing::{Frame, Origin, Record, RecordSplitter};
pub use reader::{read_events, read_events_counted, ReadStats};
pub use source::InputSource;
