//! Errors of the connectors crate, by who is at fault: the configuration,
//! or a source that cannot be opened or read. (A bad record is not an
//! error: it becomes a [`crate::DeadLetter`].)

use std::path::PathBuf;

use thiserror::Error;

use crate::decode::InvalidDecoderConfig;

/// Why a source could not be read.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum ConnectorError {
    /// The decoder settings are invalid.
    #[error("invalid decoder settings: {0}")]
    Config(#[from] InvalidDecoderConfig),
    /// Opening a file failed.
    #[error("cannot open {}: {source}", path.display())]
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
        /// Bytes consumed (after decompression) before the failure.
        offset: u64,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
}
