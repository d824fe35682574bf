//! Input sources: files (gzip-compressed when named `.gz`) and stdin.

use std::fs::File;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

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

    /// The name used in dead letters and alerts: the path as given, or
    /// `stdin`.
    pub fn name(&self) -> String {
        match self {
            InputSource::File(p) => p.display().to_string(),
            InputSource::Stdin => "stdin".into(),
        }
    }

    /// Opens the source for reading.
    ///
    /// # Errors
    /// [`ConnectorError::Open`] if the file cannot be opened.
    pub fn open(&self) -> Result<Box<dyn Read + Send>, ConnectorError> {
        self.open_counted(Arc::new(AtomicU64::new(0)))
    }

    /// Opens the source, adding the bytes read from it (before
    /// decompression, so they compare with the file's size) to `counter`.
    ///
    /// # Errors
    /// [`ConnectorError::Open`] if the file cannot be opened.
    pub fn open_counted(
        &self,
        counter: Arc<AtomicU64>,
    ) -> Result<Box<dyn Read + Send>, ConnectorError> {
        match self {
            InputSource::Stdin => Ok(Box::new(Counted {
                inner: std::io::stdin(),
                counter,
            })),
            InputSource::File(path) => {
                let file = File::open(path).map_err(|source| ConnectorError::Open {
                    path: path.clone(),
                    source,
                })?;
                let file = Counted {
                    inner: file,
                    counter,
                };
                if is_gzip(path) {
                    Ok(Box::new(MultiGzDecoder::new(file)))
                } else {
                    Ok(Box::new(file))
                }
            }
        }
    }

    /// The size of a file source in bytes (on disk), if known.
    pub fn size(&self) -> Option<u64> {
        match self {
            InputSource::File(path) => std::fs::metadata(path).ok().map(|m| m.len()),
            InputSource::Stdin => None,
        }
    }
}

/// A reader that counts the bytes it hands out.
pub(crate) struct Counted<R> {
    pub(crate) inner: R,
    pub(crate) counter: Arc<AtomicU64>,
}

impl<R: Read> Read for Counted<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.counter.fetch_add(n as u64, Ordering::Relaxed);
        Ok(n)
    }
}

/// Whether a file is read gzip-decompressed (its name ends in `.gz`): its
/// offsets then count decompressed bytes.
pub fn is_gzip(path: &Path) -> bool {
    path.extension().is_some_and(|e| e == "gz")
}
