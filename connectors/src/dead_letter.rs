//! Dead letters: records that could not be decoded, with where they were
//! and why, so that nothing is lost silently.

use serde::Serialize;

/// A record that could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DeadLetter {
    /// Source name (file path, `stdin`).
    pub source: String,
    /// 1-based line where the record starts.
    pub line: u64,
    /// Byte offset where the record starts.
    pub offset: u64,
    /// What is wrong.
    pub reason: String,
    /// The record's first bytes (lossy UTF-8), for a human to recognise it.
    pub excerpt: String,
}

/// Bytes kept in [`DeadLetter::excerpt`].
pub const EXCERPT_BYTES: usize = 160;

/// The excerpt of a record.
pub fn excerpt(bytes: &[u8]) -> String {
    let cut = &bytes[..bytes.len().min(EXCERPT_BYTES)];
    String::from_utf8_lossy(cut).into_owned()
}
