//! JSON objects → Arrow `RecordBatch`es, the schema inferred per batch.
//!
//! Each record is walked once, writing its leaves straight into per-column
//! buffers (no `serde_json::Value` tree): by a walker of our own for the
//! shapes events have, and by serde visitors for the rest and for errors. Nested
//! objects become dotted column names, keys kept verbatim:
//! `{"Event":{"System":{"EventID":4688}}}` fills `Event.System.EventID`.
//! At [`BatchDecoder::finish`] each column gets the narrowest type holding
//! all its values:
//!
//! | values in the column                     | Arrow type   |
//! |------------------------------------------|--------------|
//! | integers (fitting `i64`)                 | `Int64`      |
//! | integers and floats                      | `Float64`    |
//! | booleans                                 | `Boolean`    |
//! | arrays of scalars                        | `List<Utf8>` |
//! | strings, or anything mixed               | `Utf8`       |
//!
//! In `Utf8` columns other scalars appear as their JSON text (`4688`,
//! `true`, `1.5`) and arrays as compact JSON; so does, in any column, an
//! array holding objects or arrays. Items of a `List<Utf8>` are rendered
//! the same way, `null` items as nulls. JSON `null` and missing keys are
//! Arrow nulls (the [`NULLS_COLUMN`] tells them apart), `{}` adds nothing,
//! and a record with a key twice is refused (a dead letter: consumers
//! disagree on which value counts). Every field is nullable. The
//! record's text is kept in the first column, [`RAW_COLUMN`]. A
//! [`Projection`] limits the other columns to those some consumer reads.

mod batch;
mod columns;
mod config;
mod gates;
mod projection;
pub(crate) mod text;
mod utf8;
mod visit;
mod walk;

#[cfg(test)]
mod tests;

pub use batch::{BatchDecoder, EventBatch, EventOrigin, FileId};
pub use config::{DecoderConfig, InvalidDecoderConfig, MAX_BATCH_BYTES, MAX_RECORD_LIMIT};
pub use gates::Gate;
pub use projection::{PathMatch, Projection, SharedProjection};

/// Name of the column holding each record's original text.
pub const RAW_COLUMN: &str = "_raw";

/// Name of the `List<Utf8>` column listing, per row, the columns whose key
/// was present with a JSON `null` (Arrow cannot tell that from an absent
/// key). Only present in batches that have such keys.
pub const NULLS_COLUMN: &str = "_nulls";
