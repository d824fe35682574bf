//! Dead letters: records that could not be framed or decoded, with where
//! they were and why, so that nothing is lost silently.

use serde::Serialize;

/// A record that could not be framed or decoded.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DeadLetter {
    /// Source name (file path as given, or `stdin`).
    pub source: String,
    /// 1-based line where the record starts.
    pub line: u64,
    /// Byte offset where the record starts (in the decompressed stream).
    pub offset: u64,
    /// What is wrong, for a human.
    pub reason: String,
    /// The record's first [`EXCERPT_BYTES`] bytes as lossy UTF-8, to
    /// recognise it by.
    pub excerpt: String,
}

/// Bytes kept in [`DeadLetter::excerpt`].
pub const EXCERPT_BYTES: usize = 160;

/// The excerpt of a record.
pub(crate) fn excerpt(bytes: &[u8]) -> String {
    let cut = &bytes[..bytes.len().min(EXCERPT_BYTES)];
    String::from_utf8_lossy(cut).into_owned()
}
