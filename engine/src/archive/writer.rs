//! The archive writer: a thread that takes every evaluated batch from
//! detection, splits its rows by partition (actor, day), appends them to
//! that partition's open file, and commits files when they are large or
//! old enough, at a stop and at the end. Delivery's barriers (sent before
//! acknowledgements) are answered once every row sent before them is
//! committed.

use std::collections::HashMap;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Instant, SystemTime};

use arrow_array::builder::{StringBuilder, TimestampMillisecondBuilder, UInt64Builder};
use arrow_array::{ArrayRef, RecordBatch};
use parquet::arrow::ArrowWriter;
use parquet::basic::{Compression, ZstdLevel};
use parquet::file::properties::WriterProperties;
use tokio::sync::{mpsc, oneshot};
use vagt_connectors::EventBatch;
use vagt_rules::window::{format_millis, TimestampSpec};
use vagt_rules::{LogSource, Profile};

use super::layout::{self, ArchiveError, ManifestEntry};
use super::{ArchiveConfig, ArchiveReport};
use crate::alert::FieldCandidates;
use crate::catalog::Catalog;

/// What the writer is sent.
pub(crate) enum ArchiveItem {
    /// An evaluated batch of input `input`, and the catalog that tells
    /// which organisation a host belongs to.
    Batch {
        input: usize,
        batch: EventBatch,
        catalog: Arc<Catalog>,
    },
    /// Answered once everything sent before is committed.
    Barrier(oneshot::Sender<()>),
    /// Commit everything now (detection ended, or a retro-hunt is about
    /// to read the archive).
    Commit,
    /// Time passes: commit files that are old enough.
    Tick,
}

/// The writer, started: where to send, and its end.
pub(crate) struct RunningArchive {
    pub items: mpsc::Sender<ArchiveItem>,
    pub done: tokio::task::JoinHandle<Result<ArchiveReport, ArchiveError>>,
}

/// Prepares the folder (removing files an earlier run left unfinished,
/// and days past the retention) and starts the writer.
///
/// # Errors
/// The folder cannot be created or cleaned.
pub(crate) fn start(
    config: &ArchiveConfig,
    timestamps: Vec<TimestampSpec>,
    profile: Profile,
) -> Result<RunningArchive, ArchiveError> {
    std::fs::create_dir_all(&config.dir).map_err(ArchiveError::io(&config.dir))?;
    let mut report = ArchiveReport {
        removed_unfinished: layout::remove_unfinished(&config.dir)?,
        ..ArchiveReport::default()
    };
    if report.removed_unfinished > 0 {
        tracing::warn!(
            files = report.removed_unfinished,
            archive = %config.dir.display(),
            "removed unfinished archive files of an earlier run (their events were not acknowledged, so their inputs give them again)"
        );
    }
    if let Some(days) = config.retention_days {
        report.expired_partitions = layout::expire(&config.dir, days, today())?;
    }
    let uploads = uploads(config)?;
    let (items, mut rx) = mpsc::channel::<ArchiveItem>(16);
    let ticks = items.downgrade();
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(std::time::Duration::from_secs(1));
        loop {
            tick.tick().await;
            let Some(tx) = ticks.upgrade() else { break };
            let _ = tx.try_send(ArchiveItem::Tick);
        }
    });
    let mut writer = Writer {
        config: config.clone(),
        timestamps,
        profile,
        fields: None,
        open: HashMap::new(),
        waiting: Vec::new(),
        report,
        run: format!(
            "{}-{}",
            SystemTime::now()
                .duration_since(SystemTime::UNIX_EPOCH)
                .map_or(0, |d| d.as_millis()),
            std::process::id()
        ),
        sequence: 0,
        expired_on: today(),
        uploads,
    };
    let dir = config.dir.clone();
    let done = tokio::spawn(async move {
        let writing = tokio::task::spawn_blocking(move || {
            let result = rx_loop(&mut writer, &mut rx);
            (result, writer)
        });
        let (result, writer) = writing
            .await
            .map_err(|e| ArchiveError::io(&dir)(std::io::Error::other(e)))?;
        let mut report = writer.report;
        // What was committed is uploaded (a few attempts each) even when
        // writing failed; the rest waits in the folder for the next run.
        if let Some(uploads) = writer.uploads {
            report.store = Some(uploads.finish().await);
        }
        result.map(|()| report)
    });
    Ok(RunningArchive { items, done })
}

/// Takes items until the channel closes, then commits what is open.
fn rx_loop(writer: &mut Writer, rx: &mut mpsc::Receiver<ArchiveItem>) -> Result<(), ArchiveError> {
    while let Some(item) = rx.blocking_recv() {
        writer.take(item)?;
    }
    writer.commit_all()
}

/// The uploads to the object store, when `archive.store` names one: what
/// an earlier run left in the folder first, and the store's days past the
/// retention removed.
#[cfg(feature = "hunt")]
fn uploads(config: &ArchiveConfig) -> Result<Option<super::store::Uploader>, ArchiveError> {
    let Some(settings) = &config.store else {
        return Ok(None);
    };
    let store = super::store::Store::open(settings)?;
    let uploader = super::store::Uploader::start(store, config.dir.clone())?;
    if let Some(days) = config.retention_days {
        uploader.expire(days, today());
    }
    Ok(Some(uploader))
}

/// A build without the `hunt` feature (the fuzz targets') has no object
/// stores.
#[cfg(not(feature = "hunt"))]
fn uploads(config: &ArchiveConfig) -> Result<Option<NoUploads>, ArchiveError> {
    match &config.store {
        Some(settings) => Err(ArchiveError::Store {
            url: settings.url.clone(),
            message: "this vagt was built without the `hunt` feature (object stores)".into(),
        }),
        None => Ok(None),
    }
}

/// Never made: see the `uploads` above.
#[cfg(not(feature = "hunt"))]
enum NoUploads {}

#[cfg(not(feature = "hunt"))]
impl NoUploads {
    fn send(&self, _: PathBuf) {
        match *self {}
    }

    fn expire(&self, _: u32, _: chrono::NaiveDate) {
        match *self {}
    }

    async fn finish(self) -> super::UploadReport {
        match self {}
    }
}

#[cfg(feature = "hunt")]
type Uploads = super::store::Uploader;
#[cfg(not(feature = "hunt"))]
type Uploads = NoUploads;

fn today() -> chrono::NaiveDate {
    chrono::Utc::now().date_naive()
}

/// A file being written.
struct OpenFile {
    temp: PathBuf,
    writer: ArrowWriter<File>,
    opened: Instant,
    /// When rows were last appended.
    written: Instant,
    rows: u64,
    min_time: Option<i64>,
    max_time: Option<i64>,
}

struct Writer {
    config: ArchiveConfig,
    /// Committed files go to the object store (`archive.store`).
    uploads: Option<Uploads>,
    timestamps: Vec<TimestampSpec>,
    profile: Profile,
    /// Where the typed columns come from, for the catalog in force.
    fields: Option<ColumnSources>,
    /// By (actor folder value, date).
    open: HashMap<(String, String), OpenFile>,
    /// Barriers waiting for the open files to be committed.
    waiting: Vec<oneshot::Sender<()>>,
    report: ArchiveReport,
    /// Names this run's files apart from other runs'.
    run: String,
    sequence: u64,
    expired_on: chrono::NaiveDate,
}

/// Where a row's typed columns and organisation come from: worked out
/// once per catalog.
struct ColumnSources {
    catalog: Arc<Catalog>,
    fields: FieldCandidates,
    channel: Vec<String>,
    event_id: Vec<String>,
}

/// One row's place and typed columns.
struct Row {
    partition: (String, String),
    time: Option<i64>,
    host: Option<String>,
    channel: Option<String>,
    event_id: Option<String>,
}

impl Writer {
    fn take(&mut self, item: ArchiveItem) -> Result<(), ArchiveError> {
        match item {
            ArchiveItem::Batch {
                input,
                batch,
                catalog,
            } => {
                self.append(input, &batch, catalog)?;
                self.commit_due()
            }
            ArchiveItem::Barrier(answer) => {
                self.waiting.push(answer);
                self.answer_if_all_committed();
                Ok(())
            }
            ArchiveItem::Commit => self.commit_all(),
            ArchiveItem::Tick => {
                if let Some(days) = self.config.retention_days {
                    if today() != self.expired_on {
                        self.expired_on = today();
                        self.report.expired_partitions +=
                            layout::expire(&self.config.dir, days, self.expired_on)?;
                        if let Some(uploads) = &self.uploads {
                            uploads.expire(days, self.expired_on);
                        }
                    }
                }
                self.commit_due()
            }
        }
    }

    /// Commits every open file once the oldest is old enough.
    fn commit_due(&mut self) -> Result<(), ArchiveError> {
        let age = self.config.max_file_age.get();
        if self.open.values().any(|f| f.opened.elapsed() >= age) {
            self.commit_all()?;
        }
        Ok(())
    }

    fn commit_all(&mut self) -> Result<(), ArchiveError> {
        let mut keys: Vec<(String, String)> = self.open.keys().cloned().collect();
        keys.sort();
        for key in keys {
            if let Some(file) = self.open.remove(&key) {
                self.commit(&key, file)?;
            }
        }
        self.answer_if_all_committed();
        Ok(())
    }

    /// Answers the waiting barriers once no file is open: every row sent
    /// before them is committed.
    fn answer_if_all_committed(&mut self) {
        if self.open.is_empty() {
            for answer in self.waiting.drain(..) {
                let _ = answer.send(());
            }
        }
    }

    /// Closes a file, syncs it, renames it into its partition, syncs the
    /// folder, and lists it in the manifest.
    fn commit(&mut self, key: &(String, String), file: OpenFile) -> Result<(), ArchiveError> {
        let OpenFile {
            temp,
            writer,
            rows,
            min_time,
            max_time,
            ..
        } = file;
        let inner = writer
            .into_inner()
            .map_err(|source| ArchiveError::Parquet {
                path: temp.clone(),
                source,
            })?;
        inner.sync_all().map_err(ArchiveError::io(&temp))?;
        let bytes = inner.metadata().map_err(ArchiveError::io(&temp))?.len();
        drop(inner);
        let name = temp
            .file_name()
            .and_then(|n| n.to_str())
            .map(|n| {
                n.trim_start_matches('.')
                    .trim_end_matches(".tmp")
                    .to_string()
            })
            .unwrap_or_default();
        let dir = temp.parent().map(Path::to_path_buf).unwrap_or_default();
        let committed = dir.join(&name);
        std::fs::rename(&temp, &committed).map_err(ArchiveError::io(&committed))?;
        layout::sync_dir(&dir)?;
        let relative = committed
            .strip_prefix(&self.config.dir)
            .unwrap_or(&committed)
            .to_string_lossy()
            .into_owned();
        layout::append_manifest(
            &self.config.dir,
            &ManifestEntry {
                file: &relative,
                actor: &key.0,
                date: &key.1,
                rows,
                bytes,
                min_time: min_time.map(format_millis),
                max_time: max_time.map(format_millis),
                committed: crate::alert::now_rfc3339(),
            },
        )?;
        self.report.files += 1;
        self.report.rows += rows;
        self.report.bytes += bytes;
        if let Some(uploads) = &self.uploads {
            uploads.send(committed);
        }
        Ok(())
    }

    /// Each row's partition and typed columns.
    fn rows(
        &mut self,
        input: usize,
        batch: &EventBatch,
        catalog: Arc<Catalog>,
        received: i64,
    ) -> Vec<Row> {
        let stale = self
            .fields
            .as_ref()
            .is_none_or(|f| !Arc::ptr_eq(&f.catalog, &catalog));
        if stale {
            self.fields = Some(ColumnSources {
                fields: FieldCandidates::new(&catalog, &self.profile),
                channel: self.profile.columns_for("Channel", &LogSource::default()),
                event_id: self.profile.columns_for("EventID", &LogSource::default()),
                catalog,
            });
        }
        let Some(ColumnSources {
            catalog,
            fields,
            channel,
            event_id,
        }) = self.fields.as_ref()
        else {
            return Vec::new();
        };
        let rows = batch.batch.num_rows();
        let all: Vec<usize> = (0..rows).collect();
        let times = match self.timestamps.get(input) {
            Some(spec) => spec.read(&batch.batch, &all),
            None => Vec::new(),
        };
        (0..rows)
            .map(|row| {
                let facts = fields.facts(&batch.batch, row);
                let origin = &batch.origins[row];
                let actor = match origin.actor.as_deref() {
                    Some(actor) => Some(actor.to_string()),
                    None => catalog
                        .impact(&facts, &LogSource::default(), None)
                        .actors
                        .into_iter()
                        .next(),
                };
                let time = times.get(row).and_then(|t| t.as_ref().ok().copied());
                let day = time.unwrap_or(received);
                let date = chrono::DateTime::from_timestamp_millis(day)
                    .map_or_else(|| "1970-01-01".into(), |t| t.format("%Y-%m-%d").to_string());
                Row {
                    partition: (layout::encode_actor(actor.as_deref()), date),
                    time,
                    host: facts.hosts.into_iter().next(),
                    channel: crate::alert::first_value(&batch.batch, channel, row),
                    event_id: crate::alert::first_value(&batch.batch, event_id, row),
                }
            })
            .collect()
    }

    /// Appends a batch's rows to their partitions' files.
    fn append(
        &mut self,
        input: usize,
        batch: &EventBatch,
        catalog: Arc<Catalog>,
    ) -> Result<(), ArchiveError> {
        let received = received_millis();
        let rows = self.rows(input, batch, catalog, received);
        let mut groups: Vec<((String, String), Vec<usize>)> = Vec::new();
        for (i, row) in rows.iter().enumerate() {
            match groups.iter_mut().find(|(k, _)| *k == row.partition) {
                Some((_, members)) => members.push(i),
                None => groups.push((row.partition.clone(), vec![i])),
            }
        }
        for (key, members) in groups {
            let part = archive_batch(batch, &rows, &members, received).map_err(|e| {
                ArchiveError::Parquet {
                    path: self.config.dir.clone(),
                    source: parquet::errors::ParquetError::ArrowError(e.to_string()),
                }
            })?;
            if !self.open.contains_key(&key) && self.open.len() >= self.config.max_open_files {
                self.commit_least_recent()?;
            }
            let file = match self.open.get_mut(&key) {
                Some(file) => file,
                None => {
                    let file = self.open_file(&key)?;
                    self.open.entry(key.clone()).or_insert(file)
                }
            };
            file.written = Instant::now();
            file.writer
                .write(&part)
                .map_err(|source| ArchiveError::Parquet {
                    path: file.temp.clone(),
                    source,
                })?;
            file.rows += members.len() as u64;
            for t in members.iter().filter_map(|&i| rows[i].time) {
                file.min_time = Some(file.min_time.map_or(t, |m| m.min(t)));
                file.max_time = Some(file.max_time.map_or(t, |m| m.max(t)));
            }
            let size = file.writer.bytes_written() + file.writer.in_progress_size();
            if size as u64 >= self.config.max_file_bytes {
                if let Some(file) = self.open.remove(&key) {
                    self.commit(&key, file)?;
                }
                self.answer_if_all_committed();
            }
        }
        Ok(())
    }

    /// Commits the file written to least recently, to open another.
    fn commit_least_recent(&mut self) -> Result<(), ArchiveError> {
        let oldest = self
            .open
            .iter()
            .min_by_key(|(_, f)| f.written)
            .map(|(k, _)| k.clone());
        if let Some(key) = oldest {
            if let Some(file) = self.open.remove(&key) {
                self.commit(&key, file)?;
            }
        }
        Ok(())
    }

    fn open_file(&mut self, key: &(String, String)) -> Result<OpenFile, ArchiveError> {
        let dir = layout::partition_dir(&self.config.dir, &key.0, &key.1);
        std::fs::create_dir_all(&dir).map_err(ArchiveError::io(&dir))?;
        self.sequence += 1;
        let temp = dir.join(format!(
            ".part-{}-{:06}.parquet.tmp",
            self.run, self.sequence
        ));
        let file = File::create(&temp).map_err(ArchiveError::io(&temp))?;
        let properties = WriterProperties::builder()
            .set_compression(Compression::ZSTD(ZstdLevel::default()))
            .set_max_row_group_row_count(Some(self.config.row_group_rows))
            .build();
        let writer =
            ArrowWriter::try_new(file, layout::schema(), Some(properties)).map_err(|source| {
                ArchiveError::Parquet {
                    path: temp.clone(),
                    source,
                }
            })?;
        Ok(OpenFile {
            temp,
            writer,
            opened: Instant::now(),
            written: Instant::now(),
            rows: 0,
            min_time: None,
            max_time: None,
        })
    }
}

fn received_millis() -> i64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// The archive columns of `members` (rows of `batch`).
fn archive_batch(
    batch: &EventBatch,
    rows: &[Row],
    members: &[usize],
    received: i64,
) -> Result<RecordBatch, arrow_schema::ArrowError> {
    let raw = batch.raw();
    let n = members.len();
    let mut time = TimestampMillisecondBuilder::with_capacity(n).with_timezone("UTC");
    let mut received_at = TimestampMillisecondBuilder::with_capacity(n).with_timezone("UTC");
    let mut host = StringBuilder::new();
    let mut source = StringBuilder::new();
    let mut line = UInt64Builder::with_capacity(n);
    let mut offset = UInt64Builder::with_capacity(n);
    let mut input_actor = StringBuilder::new();
    let mut channel = StringBuilder::new();
    let mut event_id = StringBuilder::new();
    let mut text = StringBuilder::new();
    for &i in members {
        let row = &rows[i];
        let origin = &batch.origins[i];
        time.append_option(row.time);
        received_at.append_value(received);
        host.append_option(row.host.as_deref());
        source.append_value(&origin.source);
        line.append_value(origin.line);
        offset.append_value(origin.offset);
        input_actor.append_option(origin.actor.as_deref());
        channel.append_option(row.channel.as_deref());
        event_id.append_option(row.event_id.as_deref());
        text.append_value(raw.as_ref().map_or("{}", |r| r.value(i)));
    }
    let columns: Vec<ArrayRef> = vec![
        Arc::new(time.finish()),
        Arc::new(received_at.finish()),
        Arc::new(host.finish()),
        Arc::new(source.finish()),
        Arc::new(line.finish()),
        Arc::new(offset.finish()),
        Arc::new(input_actor.finish()),
        Arc::new(channel.finish()),
        Arc::new(event_id.finish()),
        Arc::new(text.finish()),
    ];
    RecordBatch::try_new(layout::schema(), columns)
}
