//! The archive: every event a run takes in, kept as Parquet for hunts and
//! SQL, partitioned by organisation and then by day
//! (`actor=…/date=YYYY-MM-DD/part-….parquet`), so that a search for one
//! organisation's days opens only their files.
//!
//! ```text
//!  detection ── each evaluated batch ──► writer thread: rows by (actor, date) ──► open files
//!  delivery ─── barrier (before acks) ──►   answered once every row before it is committed
//!                                            commit: close, fsync, rename, fsync folder, manifest
//!  vagt hunt ── layout: the files of the asked actors and days ──► scan (DataFusion) ──► batches
//! ```
//!
//! A file is written aside (`.part-….parquet.tmp`), synced, and renamed
//! into its partition only when complete, then listed in `manifest.jsonl`;
//! a reader never sees a half file. Input positions (Kafka offsets, the
//! state file's) do not advance past rows the archive has not committed:
//! delivery's acknowledgements wait for it like for an output.
//!
//! Schema (the partition columns `actor` and `date` come from the path):
//! `time` (event time, UTC milliseconds, null when unreadable), `received`
//! (when vagt took it), `host`, `source` (input), `line`, `offset`,
//! `input_actor` (the organisation its input or credential named),
//! `channel`, `event_id`, and `raw`, the event's text as detection saw it:
//! a hunt decodes it again, so that it gives the same alerts, with the
//! same ids, as the stream did.

pub mod input;
pub mod layout;
pub(crate) mod ledger;
pub mod retro;
#[cfg(feature = "hunt")]
pub mod scan;
#[cfg(feature = "hunt")]
pub mod store;
pub(crate) mod writer;

/// A build without the `hunt` feature (DataFusion), such as the fuzz
/// targets', writes archives but cannot read them back.
#[cfg(not(feature = "hunt"))]
pub mod scan {
    use std::sync::atomic::AtomicU64;
    use std::sync::Mutex;

    use vagt_connectors::{DeadLetter, DecoderConfig, EventBatch};

    use super::input::{ArchiveInput, ScanReport};
    use super::layout::ArchiveError;

    /// # Errors
    /// Always: this build cannot scan archives.
    pub fn scan(
        input: &ArchiveInput,
        _decoder: &DecoderConfig,
        _report: &Mutex<ScanReport>,
        _progress: &AtomicU64,
        _on_batch: impl FnMut(EventBatch),
        _on_dead: impl FnMut(DeadLetter),
    ) -> Result<(), ArchiveError> {
        Err(ArchiveError::Scan {
            path: input.dir.clone(),
            message: "this vagt was built without the `hunt` feature (DataFusion)".into(),
        })
    }
}

use std::path::PathBuf;

use serde::Deserialize;
use vagt_connectors::ConfigDuration;

pub use layout::ArchiveError;

/// `archive:` settings.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ArchiveConfig {
    /// The archive's root folder (created if missing).
    pub dir: PathBuf,
    /// A file is committed once it holds this many bytes (default 128 MiB).
    #[serde(default = "default_max_file_bytes")]
    pub max_file_bytes: u64,
    /// Every open file is committed at least this often (default 30s):
    /// the longest that input positions wait for the archive.
    #[serde(default = "default_max_file_age")]
    pub max_file_age: ConfigDuration,
    /// Rows per Parquet row group (default 65,536): the unit a scan skips
    /// by its statistics.
    #[serde(default = "default_row_group_rows")]
    pub row_group_rows: usize,
    /// Files open at once (one per organisation and day being written;
    /// default 64): beyond it the one written to least recently is
    /// committed, which bounds memory when history spans many days.
    #[serde(default = "default_max_open_files")]
    pub max_open_files: usize,
    /// Days kept: older day partitions are removed at start and once a
    /// day (default: kept for ever).
    #[serde(default)]
    pub retention_days: Option<u32>,
    /// At start and after a reload, new and changed rules are hunted over
    /// this much of the archive (`7d`), their alerts marked retrospective
    /// (default: no retro-hunts). The archive's `retro-hunts/` ledger
    /// remembers the rules that hunted it and the alert ids sent.
    #[serde(default)]
    pub retro_hunt: Option<ConfigDuration>,
    /// An S3-compatible object store the committed files are uploaded
    /// to; the folder then holds the files waiting to be uploaded.
    #[serde(default)]
    pub store: Option<StoreConfig>,
}

/// Where the archive's files go besides the local folder (`archive.store`).
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StoreConfig {
    /// `s3://bucket/prefix`.
    pub url: String,
    /// The store's address, for S3-compatible stores other than AWS
    /// (`http://minio.local:9000`; default: `AWS_ENDPOINT_URL`, else AWS).
    #[serde(default)]
    pub endpoint: Option<String>,
    /// Its region (default: `AWS_REGION`, else `us-east-1`).
    #[serde(default)]
    pub region: Option<String>,
    /// Allow plain HTTP (default: `AWS_ALLOW_HTTP`, else no).
    #[serde(default)]
    pub allow_http: Option<bool>,
}

/// What the uploads did (for `--stats`).
#[derive(Debug, Default, Clone, PartialEq, Eq, serde::Serialize)]
pub struct UploadReport {
    /// `s3://bucket/prefix`.
    pub url: String,
    /// Files uploaded (and removed from the local folder).
    pub uploaded: u64,
    /// Their bytes.
    pub bytes: u64,
    /// Upload attempts that failed (each retried).
    pub failures: u64,
    /// Files still waiting in the local folder at the end (uploaded at the
    /// next start).
    pub pending: u64,
    /// Day partitions removed from the store by the retention.
    pub expired_partitions: u64,
}

/// Whether `location` names an object store rather than a folder.
pub fn is_store_url(location: &str) -> bool {
    location.starts_with("s3://")
}

fn default_max_file_bytes() -> u64 {
    128 << 20
}

fn default_max_file_age() -> ConfigDuration {
    ConfigDuration::from_secs(30)
}

fn default_row_group_rows() -> usize {
    65_536
}

fn default_max_open_files() -> usize {
    64
}

impl ArchiveConfig {
    /// The defaults, in `dir`.
    pub fn in_dir(dir: PathBuf) -> ArchiveConfig {
        ArchiveConfig {
            dir,
            max_file_bytes: default_max_file_bytes(),
            max_file_age: default_max_file_age(),
            row_group_rows: default_row_group_rows(),
            max_open_files: default_max_open_files(),
            retention_days: None,
            retro_hunt: None,
            store: None,
        }
    }

    /// Checks the settings' values.
    ///
    /// # Errors
    /// A size, age or count of zero.
    pub fn validate(&self) -> Result<(), String> {
        if self.max_file_bytes < 1 << 20 {
            return Err("max_file_bytes must be at least 1 MiB".into());
        }
        if self.max_file_age.get().is_zero() {
            return Err("max_file_age must be more than 0s".into());
        }
        if self.row_group_rows == 0 {
            return Err("row_group_rows must be at least 1".into());
        }
        if self.max_open_files == 0 {
            return Err("max_open_files must be at least 1".into());
        }
        if self.retention_days == Some(0) {
            return Err("retention_days must be at least 1".into());
        }
        if self.retro_hunt.is_some_and(|d| d.get().is_zero()) {
            return Err("retro_hunt must be more than 0s".into());
        }
        if let Some(store) = &self.store {
            let bucket = store.url.strip_prefix("s3://").unwrap_or_default();
            if !is_store_url(&store.url) || bucket.split('/').next().is_none_or(str::is_empty) {
                return Err(format!(
                    "store.url '{}' is not an s3://bucket/prefix address",
                    store.url
                ));
            }
        }
        Ok(())
    }
}

/// What the archive did, for the summary.
#[derive(Debug, Default, Clone, PartialEq, Eq, serde::Serialize)]
pub struct ArchiveReport {
    /// Rows committed.
    pub rows: u64,
    /// Files committed.
    pub files: u64,
    /// Bytes of the committed files.
    pub bytes: u64,
    /// Unfinished files of an earlier run found and removed at start.
    pub removed_unfinished: u64,
    /// Day partitions removed by the retention.
    pub expired_partitions: u64,
    /// What was uploaded to the object store (with `archive.store`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub store: Option<UploadReport>,
}
