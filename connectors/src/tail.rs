//! File tail: follows a file as it grows, and across rotation.
//!
//! The file is read to its end, then polled. It has been rotated when the
//! path names another file (renamed away and recreated: `logrotate`'s
//! default) or the file got shorter than what was read (truncated in place:
//! `copytruncate`). The rest of the old file is read first, then the new
//! one from its start, with line and offset counted afresh. A tail started
//! with a position (from the state file) seeks there if the file is the
//! same file (device and inode) and at least that long, and reads it from
//! the start otherwise. When stopped, an unfinished last line is left for
//! the next run.

use std::fs::{File, Metadata};
use std::io::{self, Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use crate::dead_letter::DeadLetter;
use crate::decode::{EventBatch, FileId};
use crate::error::ConnectorError;
use crate::framing::Origin;
use crate::ingest::Ingest;
use crate::lines::Framer;
use crate::reader::{drive, ReadOptions, ReadStats};
use crate::source::Counted;

/// How often a file at its end is looked at again.
pub const TAIL_POLL: Duration = Duration::from_millis(100);

/// Follows `path` until `stop` is set, handing out batches and dead
/// letters as lines arrive. `start` is where an earlier run stopped.
///
/// # Errors
/// The settings are invalid, or the file cannot be read (a missing file
/// is waited for, not an error).
pub fn tail_events(
    path: &Path,
    options: &ReadOptions,
    start: Option<(Origin, Option<FileId>)>,
    stop: Arc<AtomicBool>,
    progress: Arc<AtomicU64>,
    mut on_batch: impl FnMut(EventBatch),
    mut on_dead: impl FnMut(DeadLetter),
) -> Result<ReadStats, ConnectorError> {
    options.decoder.validate()?;
    let name: Arc<str> = Arc::from(path.display().to_string().as_str());
    let mut ingest = Ingest::for_source(options);
    let mut start = start;
    let mut bytes = 0;
    while !stop.load(Ordering::SeqCst) {
        let Some((mut file, metadata)) = open(path, &stop)? else {
            break;
        };
        let id = identity(&metadata);
        let origin = match start.take() {
            // The same file (when known), and not shorter than the position.
            Some((at, saved))
                if metadata.len() >= at.offset && (saved.is_none() || saved == id) =>
            {
                file.seek(SeekFrom::Start(at.offset))
                    .map_err(|source| read_error(&name, at.offset, source))?;
                at
            }
            _ => Origin { line: 1, offset: 0 },
        };
        let follow = Follow {
            file: Counted {
                inner: file,
                counter: progress.clone(),
            },
            path: path.to_path_buf(),
            identity: id,
            position: origin.offset,
            stop: &stop,
        };
        let framer = Framer::new(
            options.format,
            follow,
            &name,
            options.decoder.max_record_bytes,
            origin,
        )
        .cut_short_by(stop.clone());
        ingest.set_file(id);
        let read = drive(
            framer,
            &mut ingest,
            (&name, options.actor.as_ref()),
            true,
            &mut on_batch,
            &mut on_dead,
        )?;
        bytes += read - origin.offset;
        ingest.forget(&name);
    }
    let mut stats = ingest.stats;
    stats.bytes = bytes;
    Ok(stats)
}

fn read_error(name: &str, offset: u64, source: io::Error) -> ConnectorError {
    ConnectorError::Read {
        name: name.to_string(),
        offset,
        source,
    }
}

/// Opens the file, waiting while it does not exist; `None` if stopped.
fn open(path: &Path, stop: &AtomicBool) -> Result<Option<(File, Metadata)>, ConnectorError> {
    loop {
        match File::open(path).and_then(|f| f.metadata().map(|m| (f, m))) {
            Ok(opened) => return Ok(Some(opened)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                if stop.load(Ordering::SeqCst) {
                    return Ok(None);
                }
                std::thread::sleep(TAIL_POLL);
            }
            Err(source) => {
                return Err(ConnectorError::Open {
                    path: path.to_path_buf(),
                    source,
                })
            }
        }
    }
}

/// What tells two files apart: device and inode on Unix.
#[cfg(unix)]
pub fn identity(metadata: &Metadata) -> Option<FileId> {
    use std::os::unix::fs::MetadataExt;
    Some([metadata.dev(), metadata.ino()])
}

/// What tells two files apart: nothing known here.
#[cfg(not(unix))]
pub fn identity(_metadata: &Metadata) -> Option<FileId> {
    None
}

/// A reader over one generation of the file: at the end it waits for more,
/// and ends (returns 0) once the file was rotated and read to its end, or
/// when stopped.
struct Follow<'a> {
    file: Counted<File>,
    path: PathBuf,
    identity: Option<FileId>,
    position: u64,
    stop: &'a AtomicBool,
}

impl Follow<'_> {
    fn rotated(&self) -> bool {
        match std::fs::metadata(&self.path) {
            Ok(now) => {
                (self.identity.is_some() && identity(&now) != self.identity)
                    || now.len() < self.position
            }
            // Renamed away, not yet recreated: keep reading the old one.
            Err(_) => false,
        }
    }
}

impl Read for Follow<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        // Stopped: what is not read yet stays for the next run.
        if self.stop.load(Ordering::SeqCst) {
            return Ok(0);
        }
        loop {
            let n = self.file.read(buf)?;
            if n > 0 {
                self.position += n as u64;
                return Ok(n);
            }
            if self.stop.load(Ordering::SeqCst) {
                return Ok(0);
            }
            if self.rotated() {
                // What was written between the last read and the check.
                let n = self.file.read(buf)?;
                self.position += n as u64;
                return Ok(n);
            }
            std::thread::sleep(TAIL_POLL);
        }
    }
}
