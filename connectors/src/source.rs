//! Input sources: files (gzip-compressed when named `.gz`) and stdin.

use std::fs::File;
use std::io::Read;
use std::path::PathBuf;

use flate2::read::MultiGzDecoder;

use crate::error::ConnectorError;

/// Where records come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InputSource {
    /// A file; `.gz` is decompressed transparently.
    File(PathBuf),
    /// Standard input.
    Stdin,
}

impl InputSource {
    /// `-` is stdin, anything else a file path.
    pub fn parse(s: &str) -> InputSource {
        if s == "-" {
            InputSource::Stdin
        } else {
            InputSource::File(PathBuf::from(s))
        }
    }

    /// The name used in dead letters and alerts.
    pub fn name(&self) -> String {
        match self {
            InputSource::File(p) => p.display().to_string(),
            InputSource::Stdin => "stdin".into(),
        }
    }

    /// Opens the source for reading.
    pub fn open(&self) -> Result<Box<dyn Read + Send>, ConnectorError> {
        match self {
            InputSource::Stdin => Ok(Box::new(std::io::stdin())),
            InputSource::File(path) => {
                let file = File::open(path).map_err(|source| ConnectorError::Open {
                    path: path.clone(),
                    source,
                })?;
                if path.extension().is_some_and(|e| e == "gz") {
                    Ok(Box::new(MultiGzDecoder::new(file)))
                } else {
                    Ok(Box::new(file))
                }
            }
        }
    }
}
