//! The `stdout` and `file` outputs: one alert per line.
//!
//! Stdout shows readable lines on a terminal and JSON lines when piped; a
//! reader that goes away (`vagt run | head`) ends the run quietly. Files
//! may be one per organisation (`alerts/{actor}.jsonl`), are rotated by
//! size and age (renamed to `NAME-YYYYMMDDTHHMMSSZ.EXT`, optionally
//! gzipped, the oldest beyond `keep` deleted), and are forced to disk as
//! the fsync policy says. A rotating file is never started afresh: what a
//! previous run wrote is rotated aside first.

use std::collections::HashMap;
use std::io::ErrorKind;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Instant, SystemTime};

use tokio::io::{AsyncWriteExt, BufWriter};
use tokio::sync::mpsc;

use super::config::{FileConfig, FsyncPolicy};
use super::encode::encode;
use super::template::{Escape, Template};
use super::{io_error, open_file, OutputError, SinkContext, SinkEnd, SinkItem};
use crate::alert::{Alert, AlertFacts};
use crate::pipeline::PipelineError;
use crate::telemetry::SinkMetrics;

/// Writes alerts to stdout until delivery ends or the reader goes away.
pub(crate) async fn run_stdout(
    context: SinkContext,
    mut items: mpsc::Receiver<SinkItem>,
) -> Result<SinkEnd, PipelineError> {
    let writes = SinkMetrics::new(&context.name);
    let mut out = BufWriter::new(tokio::io::stdout());
    let mut buf = Vec::with_capacity(64 * 1024);
    while let Some(item) = items.recv().await {
        match item {
            SinkItem::Alerts(alerts, received) => {
                buf.clear();
                for alert in &alerts {
                    encode(alert, context.encoding, &mut buf);
                    buf.push(b'\n');
                }
                let writing = Instant::now();
                let written = match out.write_all(&buf).await {
                    Ok(()) => out.flush().await,
                    Err(e) => Err(e),
                };
                match written {
                    Ok(()) => {}
                    Err(e) if e.kind() == ErrorKind::BrokenPipe => return Ok(SinkEnd::ReaderGone),
                    Err(e) => {
                        writes.failed();
                        return Err(io_error(None, e));
                    }
                }
                writes.wrote(writing.elapsed());
                context.metrics.delivered(alerts.len(), Some(received));
            }
            // Every write is flushed; there is no disk to sync.
            SinkItem::Barrier { taken, .. } => {
                let _ = taken.send(());
            }
        }
    }
    Ok(SinkEnd::Done)
}

/// A `file` output.
pub(crate) struct FileSink {
    config: FileConfig,
    path: Template,
    context: SinkContext,
    writes: SinkMetrics,
    /// Open files by path (one unless the path names alert fields).
    files: HashMap<PathBuf, OpenFile>,
}

/// One open file of the output.
struct OpenFile {
    path: PathBuf,
    out: BufWriter<tokio::fs::File>,
    /// Its size, including what is buffered.
    size: u64,
    opened: SystemTime,
    /// Written since it was last synced.
    dirty: bool,
    /// Lines of the batch being written.
    pending: Vec<u8>,
    pending_alerts: usize,
}

impl FileSink {
    /// Opens the output (its file, unless the path names alert fields).
    ///
    /// # Errors
    /// The file cannot be opened.
    pub async fn open(config: FileConfig, context: SinkContext) -> Result<FileSink, PipelineError> {
        let path = Template::parse(&config.path).map_err(|message| OutputError::Setup {
            name: context.name.to_string(),
            message,
        })?;
        let mut sink = FileSink {
            writes: SinkMetrics::new(&context.name),
            config,
            path,
            context,
            files: HashMap::new(),
        };
        if sink.path.is_fixed() {
            let path = PathBuf::from(&sink.config.path);
            sink.file(&path).await?;
        }
        Ok(sink)
    }

    /// Runs until delivery ends.
    ///
    /// # Errors
    /// A file cannot be written.
    pub async fn run(
        mut self,
        mut items: mpsc::Receiver<SinkItem>,
    ) -> Result<SinkEnd, PipelineError> {
        while let Some(item) = items.recv().await {
            match item {
                SinkItem::Alerts(alerts, received) => self.write(alerts, received).await?,
                SinkItem::Barrier { sync, taken } => {
                    if sync && self.config.fsync != FsyncPolicy::Never {
                        self.sync_all().await?;
                    }
                    self.rotate_aged().await?;
                    let _ = taken.send(());
                }
            }
        }
        if self.config.fsync != FsyncPolicy::Never {
            self.sync_all().await?;
        }
        Ok(SinkEnd::Done)
    }

    async fn write(
        &mut self,
        alerts: Vec<Arc<Alert>>,
        received: Instant,
    ) -> Result<(), PipelineError> {
        let encoding = self.context.encoding;
        let mut written = 0;
        for alert in alerts {
            let path = match self.path.render(&AlertFacts::of(&alert), Escape::Name) {
                Ok(p) => PathBuf::from(p),
                Err(missing) => {
                    self.context.refuse(alert, missing.to_string()).await;
                    continue;
                }
            };
            let file = self.file(&path).await?;
            encode(&alert, encoding, &mut file.pending);
            file.pending.push(b'\n');
            file.pending_alerts += 1;
        }
        let paths: Vec<PathBuf> = self
            .files
            .values()
            .filter(|f| !f.pending.is_empty())
            .map(|f| f.path.clone())
            .collect();
        for path in paths {
            if self.due_for_rotation(&path, true) {
                self.rotate(&path).await?;
            }
            let fsync = self.config.fsync;
            let file = self.files.get_mut(&path).expect("open");
            let writing = Instant::now();
            let result = async {
                file.out.write_all(&file.pending).await?;
                file.out.flush().await?;
                if fsync == FsyncPolicy::Always {
                    sync_data(file.out.get_ref()).await?;
                }
                Ok::<(), std::io::Error>(())
            }
            .await;
            if let Err(source) = result {
                self.writes.failed();
                return Err(self.io(&path, source));
            }
            self.writes.wrote(writing.elapsed());
            file.size += file.pending.len() as u64;
            file.dirty = fsync != FsyncPolicy::Always;
            file.pending.clear();
            written += std::mem::take(&mut file.pending_alerts);
        }
        self.context.metrics.delivered(written, Some(received));
        Ok(())
    }

    fn io(&self, path: &Path, source: std::io::Error) -> PipelineError {
        OutputError::Io {
            name: self.context.name.to_string(),
            path: path.to_path_buf(),
            source,
        }
        .into()
    }

    /// The open file at `path`, opened (and its folder made, below the
    /// configured one) if need be.
    async fn file(&mut self, path: &Path) -> Result<&mut OpenFile, PipelineError> {
        if !self.files.contains_key(path) {
            let file = self.open_file(path).await.map_err(|e| self.io(path, e))?;
            self.files.insert(path.to_path_buf(), file);
        }
        Ok(self.files.get_mut(path).expect("just opened"))
    }

    async fn open_file(&self, path: &Path) -> std::io::Result<OpenFile> {
        if !self.path.is_fixed() {
            if let Some(folder) = path.parent() {
                tokio::fs::create_dir_all(folder).await?;
            }
        }
        let rotating = self.config.rotate.is_some();
        // A rotating output keeps what an earlier run wrote, rotated aside.
        if rotating && !self.context.append {
            if let Ok(m) = tokio::fs::metadata(path).await {
                if m.len() > 0 {
                    self.rotate_file(path).await?;
                }
            }
        }
        let file = open_file(path, self.context.append || rotating).await?;
        let size = file.metadata().await?.len();
        Ok(OpenFile {
            path: path.to_path_buf(),
            out: BufWriter::with_capacity(64 * 1024, file),
            size,
            opened: SystemTime::now(),
            dirty: false,
            pending: Vec::new(),
            pending_alerts: 0,
        })
    }

    /// Whether the file at `path` is to be rotated before its pending
    /// lines are written (or, without `writing`, now).
    fn due_for_rotation(&self, path: &Path, writing: bool) -> bool {
        let (Some(rotate), Some(file)) = (&self.config.rotate, self.files.get(path)) else {
            return false;
        };
        if file.size == 0 {
            return false;
        }
        let full = writing
            && rotate
                .max_bytes
                .is_some_and(|max| file.size + file.pending.len() as u64 > max.0);
        let aged = rotate
            .every
            .is_some_and(|every| file.opened.elapsed().is_ok_and(|age| age >= every.get()));
        full || aged
    }

    /// Rotates the files that have grown old, even when nothing is written.
    async fn rotate_aged(&mut self) -> Result<(), PipelineError> {
        let aged: Vec<PathBuf> = self
            .files
            .keys()
            .filter(|p| self.due_for_rotation(p, false))
            .cloned()
            .collect();
        for path in aged {
            self.rotate(&path).await?;
        }
        Ok(())
    }

    /// Closes the open file at `path`, rotates it aside and opens a new one.
    async fn rotate(&mut self, path: &Path) -> Result<(), PipelineError> {
        let mut file = self.files.remove(path).expect("open");
        let synced = async {
            file.out.flush().await?;
            sync_data(file.out.get_ref()).await
        }
        .await;
        synced.map_err(|e| self.io(path, e))?;
        let pending = std::mem::take(&mut file.pending);
        let pending_alerts = file.pending_alerts;
        drop(file);
        self.rotate_file(path).await.map_err(|e| self.io(path, e))?;
        let mut fresh = self.open_file(path).await.map_err(|e| self.io(path, e))?;
        fresh.pending = pending;
        fresh.pending_alerts = pending_alerts;
        self.files.insert(path.to_path_buf(), fresh);
        Ok(())
    }

    /// Renames the file at `path` aside (compressing it if asked) and
    /// deletes the oldest rotated files beyond `keep`.
    async fn rotate_file(&self, path: &Path) -> std::io::Result<()> {
        let Some(rotate) = self.config.rotate.clone() else {
            return Ok(());
        };
        let path = path.to_path_buf();
        let name = self.context.name.clone();
        tokio::task::spawn_blocking(move || {
            let rotated = rotated_name(&path, SystemTime::now());
            std::fs::rename(&path, &rotated)?;
            let folder = path
                .parent()
                .filter(|p| !p.as_os_str().is_empty())
                .unwrap_or(Path::new("."));
            if rotate.compress {
                gzip_aside(&rotated)?;
            }
            sync_folder(folder)?;
            if let Some(keep) = rotate.keep {
                for old in rotated_files(&path)?.into_iter().rev().skip(keep) {
                    std::fs::remove_file(&old)?;
                }
            }
            tracing::info!(output = %name, file = %path.display(), "rotated");
            Ok(())
        })
        .await
        .map_err(std::io::Error::other)?
    }

    async fn sync_all(&mut self) -> Result<(), PipelineError> {
        for file in self.files.values_mut().filter(|f| f.dirty) {
            let synced = async {
                file.out.flush().await?;
                sync_data(file.out.get_ref()).await
            }
            .await;
            if let Err(source) = synced {
                return Err(OutputError::Io {
                    name: self.context.name.to_string(),
                    path: file.path.clone(),
                    source,
                }
                .into());
            }
            file.dirty = false;
        }
        Ok(())
    }
}

/// Puts a file's data on disk; a device that cannot be synced
/// (`/dev/null`, a pipe) has nothing to put there.
async fn sync_data(file: &tokio::fs::File) -> std::io::Result<()> {
    match file.sync_data().await {
        Err(e) if e.kind() == ErrorKind::InvalidInput => Ok(()),
        result => result,
    }
}

/// `alerts.jsonl` → `alerts-20261129T162800Z.jsonl` (with `-2`, `-3`...
/// when rotated twice in a second).
fn rotated_name(path: &Path, now: SystemTime) -> PathBuf {
    let stamp = chrono::DateTime::<chrono::Utc>::from(now).format("%Y%m%dT%H%M%SZ");
    let (stem, ext) = stem_and_extension(path);
    let folder = path.parent().unwrap_or(Path::new(""));
    let mut candidate = folder.join(format!("{stem}-{stamp}{ext}"));
    let mut n = 2;
    while candidate.exists() || with_gz(&candidate).exists() {
        candidate = folder.join(format!("{stem}-{stamp}-{n}{ext}"));
        n += 1;
    }
    candidate
}

fn stem_and_extension(path: &Path) -> (String, String) {
    let stem = path
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    let ext = path
        .extension()
        .map(|e| format!(".{}", e.to_string_lossy()))
        .unwrap_or_default();
    (stem, ext)
}

fn with_gz(path: &Path) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(".gz");
    PathBuf::from(name)
}

/// The rotated files of `path`, oldest first.
fn rotated_files(path: &Path) -> std::io::Result<Vec<PathBuf>> {
    let (stem, ext) = stem_and_extension(path);
    let prefix = format!("{stem}-");
    let folder = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let mut found = Vec::new();
    for entry in std::fs::read_dir(folder)? {
        let entry = entry?;
        let name = entry.file_name().to_string_lossy().into_owned();
        let Some(rest) = name.strip_prefix(&prefix) else {
            continue;
        };
        let rest = rest.strip_suffix(".gz").unwrap_or(rest);
        let Some(stamp) = rest.strip_suffix(ext.as_str()) else {
            continue;
        };
        // `YYYYMMDDTHHMMSSZ`, perhaps `-N`.
        let (stamp, n) = match stamp.split_once('-') {
            Some((stamp, n)) => (stamp, n.parse::<u32>().ok()),
            None => (stamp, Some(1)),
        };
        if let (16, Some(n)) = (stamp.len(), n) {
            if stamp.as_bytes()[8] == b'T' && stamp.ends_with('Z') {
                found.push((entry.path(), stamp.to_string(), n));
            }
        }
    }
    found.sort_by(|a, b| (&a.1, a.2).cmp(&(&b.1, b.2)));
    Ok(found.into_iter().map(|(p, ..)| p).collect())
}

/// Compresses `path` to `path.gz` (written aside, synced, renamed) and
/// removes it.
fn gzip_aside(path: &Path) -> std::io::Result<()> {
    let gz = with_gz(path);
    let mut tmp = gz.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = PathBuf::from(tmp);
    {
        let mut input = std::fs::File::open(path)?;
        let output = std::fs::File::create(&tmp)?;
        let mut encoder = flate2::write::GzEncoder::new(output, flate2::Compression::default());
        std::io::copy(&mut input, &mut encoder)?;
        encoder.finish()?.sync_all()?;
    }
    std::fs::rename(&tmp, &gz)?;
    std::fs::remove_file(path)
}

fn sync_folder(folder: &Path) -> std::io::Result<()> {
    std::fs::File::open(folder)?.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rotated_names_sort_by_time_and_never_collide() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("alerts.jsonl");
        let t = SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(1_800_000_000);
        let first = rotated_name(&path, t);
        assert_eq!(first.file_name().unwrap(), "alerts-20270115T080000Z.jsonl");
        std::fs::write(&first, "x").unwrap();
        let second = rotated_name(&path, t);
        assert_eq!(
            second.file_name().unwrap(),
            "alerts-20270115T080000Z-2.jsonl"
        );
        std::fs::write(&second, "x").unwrap();
        std::fs::write(dir.path().join("alerts-notastamp.jsonl"), "x").unwrap();
        std::fs::write(dir.path().join("other-20270115T080000Z.jsonl"), "x").unwrap();
        let older = dir.path().join("alerts-20260101T000000Z.jsonl.gz");
        std::fs::write(&older, "x").unwrap();
        assert_eq!(rotated_files(&path).unwrap(), vec![older, first, second]);
    }
}
