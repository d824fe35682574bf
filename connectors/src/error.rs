//! Errors of the connectors crate: sources that cannot be opened or read.
//! (A bad record is not an error: it becomes a [`crate::DeadLetter`].)

use std::path::PathBuf;
use thiserror::Error;

/// A source that cannot be opened or read.
#[derive(Debug, Error)]
pub enum ConnectorError {
    /// Opening a file failed.
    #[error("cannot open {path}: {source}")]
    Open {
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// Reading failed part-way (records before it were delivered).
    #[error("cannot read {name} after byte {offset}: {source}")]
    Read {
        /// Source name.
        name: String,
        /// Bytes read before the failure.
        offset: u64,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
}
