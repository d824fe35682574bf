//! An S3-compatible object store (AWS S3, MinIO, Ceph, ...) as the
//! archive's home, through the `object_store` crate.
//!
//! ```text
//!  writer ── commits a file in the local folder (synced, renamed) ──► uploader ──► s3://bucket/prefix/actor=…/date=…/part-….parquet
//!                                   the folder is the outbox: a file leaves it once uploaded; at start, what is left is uploaded
//!  vagt hunt / vagt sql / retro-hunts ◄── list actor=…/date=… under the prefix, check each footer, read with DataFusion
//! ```
//!
//! An object appears whole or not at all (a multipart upload completes
//! atomically), so a reader never sees half a file. Input positions wait
//! only for the local commit, which is durable; uploads follow, retried
//! until they succeed, and the files waiting are counted.
//!
//! Credentials come from the standard environment variables
//! (`AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`, `AWS_SESSION_TOKEN`),
//! never from the config; so do `AWS_ENDPOINT_URL`, `AWS_REGION` and
//! `AWS_ALLOW_HTTP` where the config does not set them.

use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use futures_util::{StreamExt, TryStreamExt};
use object_store::aws::AmazonS3Builder;
use object_store::path::Path as Key;
use object_store::{ObjectMeta, ObjectStore, ObjectStoreExt};
use tokio::io::AsyncWriteExt;
use tokio::sync::mpsc;

use super::layout::{self, ArchiveError, PartitionFilter};
use super::{StoreConfig, UploadReport};

/// An opened store: where the archive lives in it.
#[derive(Debug, Clone)]
pub struct Store {
    /// `s3://bucket/prefix`, as given (without a trailing `/`).
    url: String,
    /// `s3://bucket`, under which DataFusion finds the store.
    bucket_url: url::Url,
    /// The archive's prefix in the bucket.
    prefix: Key,
    inner: Arc<dyn ObjectStore>,
}

/// A committed file in the store.
#[derive(Debug, Clone)]
pub struct StoreFile {
    pub key: Key,
    pub size: u64,
    pub actor_value: String,
    pub date: String,
}

/// The files of a store a search reads and those it leaves out.
#[derive(Debug, Default)]
pub struct StoreReadable {
    pub files: Vec<StoreFile>,
    /// Their rows, by their footers.
    pub rows: u64,
    /// The others, each named with its reason.
    pub skipped: Vec<String>,
    /// The others' keys.
    pub skipped_keys: Vec<Key>,
}

fn store_error(url: &str, e: impl std::fmt::Display) -> ArchiveError {
    ArchiveError::Store {
        url: url.to_string(),
        message: e.to_string(),
    }
}

impl Store {
    /// Opens the store `config` names.
    ///
    /// # Errors
    /// The URL is not `s3://bucket[/prefix]`, or the settings are refused.
    pub fn open(config: &StoreConfig) -> Result<Store, ArchiveError> {
        let mut builder = AmazonS3Builder::from_env();
        if let Some(endpoint) = &config.endpoint {
            builder = builder.with_endpoint(endpoint);
        }
        if let Some(region) = &config.region {
            builder = builder.with_region(region);
        }
        if let Some(allow) = config.allow_http {
            builder = builder.with_allow_http(allow);
        }
        Store::build(&config.url, builder)
    }

    /// Opens the store at `url` with the settings of the environment.
    ///
    /// # Errors
    /// As [`Store::open`].
    pub fn from_url(url: &str) -> Result<Store, ArchiveError> {
        Store::build(url, AmazonS3Builder::from_env())
    }

    fn build(url: &str, builder: AmazonS3Builder) -> Result<Store, ArchiveError> {
        let url = url.trim_end_matches('/');
        let parsed = url::Url::parse(url).map_err(|e| store_error(url, e))?;
        let bucket = parsed.host_str().filter(|b| !b.is_empty());
        let (Some(bucket), "s3") = (bucket, parsed.scheme()) else {
            return Err(store_error(url, "not an s3://bucket/prefix address"));
        };
        let bucket_url =
            url::Url::parse(&format!("s3://{bucket}")).map_err(|e| store_error(url, e))?;
        let inner = builder
            .with_bucket_name(bucket)
            .build()
            .map_err(|e| store_error(url, e))?;
        Ok(Store {
            url: url.to_string(),
            bucket_url,
            prefix: Key::from(parsed.path().trim_matches('/')),
            inner: Arc::new(inner),
        })
    }

    /// The store's address, as given.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The key of `relative` (`actor=…/date=…/part-….parquet`).
    fn key(&self, relative: &str) -> Key {
        relative
            .split('/')
            .fold(self.prefix.clone(), |key, part| key.join(part))
    }

    /// The address DataFusion reads `key` at.
    pub fn url_of(&self, key: &Key) -> String {
        format!("{}/{key}", self.bucket_url.as_str().trim_end_matches('/'))
    }

    /// Lets `ctx` read the store's `s3://bucket/…` addresses.
    #[cfg(feature = "hunt")]
    pub fn register(&self, ctx: &datafusion::prelude::SessionContext) {
        ctx.register_object_store(&self.bucket_url, self.inner.clone());
    }

    /// Lets `ctx` read the store, every object in `hidden` left out of
    /// its listings (damaged files a table must not read).
    #[cfg(feature = "hunt")]
    pub fn register_hiding(&self, ctx: &datafusion::prelude::SessionContext, hidden: Vec<Key>) {
        let hiding = Hiding {
            inner: self.inner.clone(),
            hidden: Arc::new(hidden),
        };
        ctx.register_object_store(&self.bucket_url, Arc::new(hiding));
    }

    /// Uploads the local file `local` as `relative`; its size.
    async fn upload(&self, local: &Path, relative: &str) -> Result<u64, ArchiveError> {
        let mut file = tokio::fs::File::open(local)
            .await
            .map_err(ArchiveError::io(local))?;
        let mut writer =
            object_store::buffered::BufWriter::new(self.inner.clone(), self.key(relative));
        let copied = tokio::io::copy(&mut file, &mut writer).await;
        match copied {
            Ok(bytes) => {
                writer
                    .shutdown()
                    .await
                    .map_err(|e| store_error(&self.url, e))?;
                Ok(bytes)
            }
            Err(e) => {
                let _ = writer.abort().await;
                Err(store_error(&self.url, e))
            }
        }
    }

    /// The committed files of the partitions `filter` takes.
    ///
    /// # Errors
    /// The store cannot be listed.
    pub async fn find_files(
        &self,
        filter: &PartitionFilter,
    ) -> Result<Vec<StoreFile>, ArchiveError> {
        let objects: Vec<ObjectMeta> = self
            .inner
            .list(Some(&self.prefix))
            .try_collect()
            .await
            .map_err(|e| store_error(&self.url, e))?;
        let mut files: Vec<StoreFile> = objects
            .into_iter()
            .filter_map(|o| {
                let relative: Vec<String> = o
                    .location
                    .prefix_match(&self.prefix)?
                    .map(|p| p.as_ref().to_string())
                    .collect();
                let [actor, date, name] = &relative[..] else {
                    return None;
                };
                let actor_value = actor.strip_prefix("actor=")?.to_string();
                let date = date.strip_prefix("date=")?.to_string();
                let committed = name.starts_with("part-") && name.ends_with(".parquet");
                (committed && filter.takes(&actor_value, &date)).then(|| StoreFile {
                    key: o.location.clone(),
                    size: o.size,
                    actor_value,
                    date,
                })
            })
            .collect();
        files.sort_by(|a, b| a.key.as_ref().cmp(b.key.as_ref()));
        Ok(files)
    }

    /// Reads a file's Parquet footer: its rows, or the reason why not.
    async fn check_footer(&self, file: &StoreFile) -> Result<u64, String> {
        let range = |r: Range<u64>| self.inner.get_range(&file.key, r);
        if file.size < 12 {
            return Err("too short to be Parquet".into());
        }
        let tail = range(file.size - 8..file.size)
            .await
            .map_err(|e| e.to_string())?;
        if &tail[4..] != b"PAR1" {
            return Err("no Parquet footer (the file is damaged or not Parquet)".into());
        }
        let length = u64::from(u32::from_le_bytes([tail[0], tail[1], tail[2], tail[3]]));
        if length + 12 > file.size {
            return Err("the footer's length is past the file's start".into());
        }
        let footer = range(file.size - 8 - length..file.size - 8)
            .await
            .map_err(|e| e.to_string())?;
        parquet::file::metadata::ParquetMetaDataReader::decode_metadata(&footer)
            .map(|m| m.file_metadata().num_rows().max(0) as u64)
            .map_err(|e| e.to_string())
    }

    /// The committed files of the partitions `filter` takes, split into
    /// those whose footer reads and those a search leaves out (logged).
    ///
    /// # Errors
    /// The store cannot be listed.
    pub async fn readable_files(
        &self,
        filter: &PartitionFilter,
    ) -> Result<StoreReadable, ArchiveError> {
        let mut readable = StoreReadable::default();
        for file in self.find_files(filter).await? {
            match self.check_footer(&file).await {
                Ok(rows) => {
                    readable.rows += rows;
                    readable.files.push(file);
                }
                Err(reason) => {
                    let name = self.url_of(&file.key);
                    tracing::error!(file = %name, %reason, "archive file skipped: it cannot be read as Parquet");
                    readable.skipped.push(format!("{name}: {reason}"));
                    readable.skipped_keys.push(file.key);
                }
            }
        }
        Ok(readable)
    }

    /// Removes the files of days older than `days` before `today`; how
    /// many day partitions.
    async fn expire(&self, days: u32, today: chrono::NaiveDate) -> Result<u64, ArchiveError> {
        let oldest = (today - chrono::Duration::days(i64::from(days) - 1))
            .format("%Y-%m-%d")
            .to_string();
        let old: Vec<StoreFile> = self
            .find_files(&PartitionFilter::default())
            .await?
            .into_iter()
            .filter(|f| f.date < oldest)
            .collect();
        let mut partitions: Vec<(&str, &str)> = old
            .iter()
            .map(|f| (f.actor_value.as_str(), f.date.as_str()))
            .collect();
        partitions.dedup();
        for file in &old {
            self.inner
                .delete(&file.key)
                .await
                .map_err(|e| store_error(&self.url, e))?;
        }
        Ok(partitions.len() as u64)
    }
}

/// What the uploader is sent.
enum Upload {
    /// A file committed in the local folder.
    File(PathBuf),
    /// Remove the store's days before the retention.
    Expire { days: u32, today: chrono::NaiveDate },
}

/// Uploads committed files from the local folder to the store.
pub(crate) struct Uploader {
    tx: mpsc::UnboundedSender<Upload>,
    done: tokio::task::JoinHandle<UploadReport>,
}

/// Pause after a failed upload, doubling up to a minute.
const FIRST_RETRY: Duration = Duration::from_secs(1);
const LAST_RETRY: Duration = Duration::from_secs(60);
/// Attempts per file once the run is ending.
const ATTEMPTS_AT_END: u32 = 3;

impl Uploader {
    /// Starts uploading to `store` what `dir` holds: first what an
    /// earlier run left, then each file committed.
    ///
    /// # Errors
    /// The folder cannot be listed.
    pub fn start(store: Store, dir: PathBuf) -> Result<Uploader, ArchiveError> {
        let (tx, mut rx) = mpsc::unbounded_channel::<Upload>();
        for file in layout::find_files(&dir, &PartitionFilter::default())? {
            let _ = tx.send(Upload::File(file.path));
        }
        let done = tokio::spawn(async move {
            let mut uploads = Uploads {
                report: UploadReport {
                    url: store.url.clone(),
                    ..UploadReport::default()
                },
                waiting: Vec::new(),
                store,
            };
            let (mut closed, mut failed_at_end, mut pause) = (false, 0, FIRST_RETRY);
            loop {
                loop {
                    match rx.try_recv() {
                        Ok(item) => uploads.take(item).await,
                        Err(mpsc::error::TryRecvError::Empty) => break,
                        Err(mpsc::error::TryRecvError::Disconnected) => {
                            closed = true;
                            break;
                        }
                    }
                }
                let report = &uploads.report;
                crate::telemetry::archive_uploads(
                    report.uploaded,
                    report.failures,
                    uploads.waiting.len(),
                );
                let Some(path) = uploads.waiting.first().cloned() else {
                    if closed {
                        break;
                    }
                    match rx.recv().await {
                        Some(item) => uploads.take(item).await,
                        None => closed = true,
                    }
                    continue;
                };
                match upload_one(&uploads.store, &dir, &path).await {
                    Ok(bytes) => {
                        uploads.waiting.remove(0);
                        uploads.report.uploaded += 1;
                        uploads.report.bytes += bytes;
                        pause = FIRST_RETRY;
                    }
                    Err(ArchiveError::Io { source, .. })
                        if source.kind() == std::io::ErrorKind::NotFound =>
                    {
                        // Gone from the folder (its day expired there):
                        // nothing to upload, and nothing to wait for.
                        tracing::warn!(file = %path.display(), "archive store: a file waiting to be uploaded is gone from the folder");
                        uploads.waiting.remove(0);
                    }
                    Err(e) => {
                        uploads.report.failures += 1;
                        // The others are tried before this one again.
                        let failed = uploads.waiting.remove(0);
                        uploads.waiting.push(failed);
                        tracing::warn!(file = %path.display(), error = %e, retry_in = ?pause, "archive store: upload failed; the file stays in the local folder");
                        if closed {
                            failed_at_end += 1;
                            if failed_at_end >= ATTEMPTS_AT_END {
                                break;
                            }
                        }
                        // A run that ends does not wait out a long pause.
                        let wait = tokio::time::sleep(if closed { FIRST_RETRY } else { pause });
                        tokio::select! {
                            () = wait => {}
                            item = rx.recv(), if !closed => match item {
                                Some(item) => uploads.take(item).await,
                                None => closed = true,
                            },
                        }
                        pause = (pause * 2).min(LAST_RETRY);
                    }
                }
            }
            let mut report = uploads.report;
            report.pending = uploads.waiting.len() as u64;
            if report.pending > 0 {
                tracing::error!(files = report.pending, store = %report.url, "archive store: files not uploaded stay in the local folder and are uploaded at the next start");
            }
            report
        });
        Ok(Uploader { tx, done })
    }

    /// Uploads `path` (a committed file) soon.
    pub fn send(&self, path: PathBuf) {
        let _ = self.tx.send(Upload::File(path));
    }

    /// Removes the store's days older than `days` before `today`.
    pub fn expire(&self, days: u32, today: chrono::NaiveDate) {
        let _ = self.tx.send(Upload::Expire { days, today });
    }

    /// Uploads what waits (a few attempts each), then reports.
    pub async fn finish(self) -> UploadReport {
        drop(self.tx);
        self.done.await.unwrap_or_default()
    }
}

/// The uploader's state: the files waiting, oldest first.
struct Uploads {
    store: Store,
    waiting: Vec<PathBuf>,
    report: UploadReport,
}

impl Uploads {
    async fn take(&mut self, item: Upload) {
        match item {
            Upload::File(path) => self.waiting.push(path),
            Upload::Expire { days, today } => match self.store.expire(days, today).await {
                Ok(n) => self.report.expired_partitions += n,
                Err(e) => tracing::error!(error = %e, "archive store: old days cannot be removed"),
            },
        }
    }
}

/// Uploads one committed file and removes it from the local folder.
async fn upload_one(store: &Store, dir: &Path, path: &Path) -> Result<u64, ArchiveError> {
    let relative = path
        .strip_prefix(dir)
        .map_err(|_| {
            store_error(
                &store.url,
                format!("{} is outside the archive folder", path.display()),
            )
        })?
        .to_string_lossy()
        .into_owned();
    let bytes = store.upload(path, &relative).await?;
    tokio::fs::remove_file(path)
        .await
        .map_err(ArchiveError::io(path))?;
    if let Some(folder) = path.parent() {
        layout::sync_dir(folder)?;
    }
    Ok(bytes)
}

/// A store whose listings leave some objects out.
#[cfg(feature = "hunt")]
#[derive(Debug)]
struct Hiding {
    inner: Arc<dyn ObjectStore>,
    hidden: Arc<Vec<Key>>,
}

#[cfg(feature = "hunt")]
impl std::fmt::Display for Hiding {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} (without {} damaged files)",
            self.inner,
            self.hidden.len()
        )
    }
}

#[cfg(feature = "hunt")]
#[async_trait::async_trait]
impl ObjectStore for Hiding {
    async fn put_opts(
        &self,
        location: &Key,
        payload: object_store::PutPayload,
        opts: object_store::PutOptions,
    ) -> object_store::Result<object_store::PutResult> {
        self.inner.put_opts(location, payload, opts).await
    }

    async fn put_multipart_opts(
        &self,
        location: &Key,
        opts: object_store::PutMultipartOptions,
    ) -> object_store::Result<Box<dyn object_store::MultipartUpload>> {
        self.inner.put_multipart_opts(location, opts).await
    }

    async fn get_opts(
        &self,
        location: &Key,
        options: object_store::GetOptions,
    ) -> object_store::Result<object_store::GetResult> {
        self.inner.get_opts(location, options).await
    }

    fn delete_stream(
        &self,
        locations: futures_util::stream::BoxStream<'static, object_store::Result<Key>>,
    ) -> futures_util::stream::BoxStream<'static, object_store::Result<Key>> {
        self.inner.delete_stream(locations)
    }

    fn list(
        &self,
        prefix: Option<&Key>,
    ) -> futures_util::stream::BoxStream<'static, object_store::Result<ObjectMeta>> {
        let hidden = self.hidden.clone();
        self.inner
            .list(prefix)
            .filter(move |o| {
                let keep = o.as_ref().map_or(true, |o| !hidden.contains(&o.location));
                std::future::ready(keep)
            })
            .boxed()
    }

    async fn list_with_delimiter(
        &self,
        prefix: Option<&Key>,
    ) -> object_store::Result<object_store::ListResult> {
        let mut listed = self.inner.list_with_delimiter(prefix).await?;
        listed
            .objects
            .retain(|o| !self.hidden.contains(&o.location));
        Ok(listed)
    }

    async fn copy_opts(
        &self,
        from: &Key,
        to: &Key,
        options: object_store::CopyOptions,
    ) -> object_store::Result<()> {
        self.inner.copy_opts(from, to, options).await
    }
}
