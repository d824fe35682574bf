//! The archive's layout on disk: its schema, partition folders
//! (`actor=…/date=…`), finished and unfinished files, the manifest, and
//! finding the files of some actors and days.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow_schema::{DataType, Field, Schema, SchemaRef, TimeUnit};

/// The partition value of events no organisation is known for.
pub const NO_ACTOR: &str = "_none";

/// The manifest of committed files, one JSON object per line.
pub const MANIFEST: &str = "manifest.jsonl";

/// What went wrong with the archive, by who is at fault.
#[derive(Debug, thiserror::Error)]
pub enum ArchiveError {
    /// The machine: a folder or file cannot be read or written.
    #[error("archive {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    /// Writing Parquet failed.
    #[error("archive file {path}: {source}")]
    Parquet {
        path: PathBuf,
        source: parquet::errors::ParquetError,
    },
    /// The scan of the archive failed.
    #[error("searching the archive {path}: {message}")]
    Scan { path: PathBuf, message: String },
    /// The user: a time bound that is not a date or time.
    #[error("{what} '{value}' is neither a date (2026-03-01) nor a time (2026-03-01T12:00:00Z)")]
    BadTime { what: &'static str, value: String },
    /// The archive folder does not exist.
    #[error("archive {0} does not exist or is not a folder")]
    Missing(PathBuf),
    /// The object store refused, failed, or is misnamed (`archive.store`).
    #[error("archive store {url}: {message}")]
    Store { url: String, message: String },
}

impl ArchiveError {
    pub(crate) fn io(path: &Path) -> impl FnOnce(std::io::Error) -> ArchiveError + '_ {
        move |source| ArchiveError::Io {
            path: path.to_path_buf(),
            source,
        }
    }
}

/// The columns of every archive file (the partition columns are not in
/// the files: their values are the folders').
pub fn schema() -> SchemaRef {
    let utc = || DataType::Timestamp(TimeUnit::Millisecond, Some("UTC".into()));
    Arc::new(Schema::new(vec![
        Field::new("time", utc(), true),
        Field::new("received", utc(), false),
        Field::new("host", DataType::Utf8, true),
        Field::new("source", DataType::Utf8, false),
        Field::new("line", DataType::UInt64, false),
        Field::new("offset", DataType::UInt64, false),
        Field::new("input_actor", DataType::Utf8, true),
        Field::new("channel", DataType::Utf8, true),
        Field::new("event_id", DataType::Utf8, true),
        Field::new("raw", DataType::Utf8, false),
    ]))
}

/// An actor as a folder-name value: letters, digits, `.`, `-` and `_`
/// kept, anything else (and a leading `_`, which [`NO_ACTOR`] starts
/// with) percent-encoded.
pub fn encode_actor(actor: Option<&str>) -> String {
    let Some(actor) = actor else {
        return NO_ACTOR.to_string();
    };
    let mut out = String::with_capacity(actor.len());
    for (i, b) in actor.bytes().enumerate() {
        let keep = b.is_ascii_alphanumeric() || b == b'.' || b == b'-' || (b == b'_' && i > 0);
        if keep {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// The folder of one partition.
pub fn partition_dir(root: &Path, actor_value: &str, date: &str) -> PathBuf {
    root.join(format!("actor={actor_value}"))
        .join(format!("date={date}"))
}

/// A committed file of the archive and its partition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ArchiveFile {
    pub path: PathBuf,
    /// The folder-name value (see [`encode_actor`]).
    pub actor_value: String,
    pub date: String,
}

/// Which partitions a search reads: actors (none: all) and an inclusive
/// range of days.
#[derive(Debug, Clone, Default)]
pub struct PartitionFilter {
    /// Actors as given (encoded here).
    pub actors: Vec<String>,
    pub from_date: Option<String>,
    pub to_date: Option<String>,
}

impl PartitionFilter {
    fn takes_actor(&self, value: &str) -> bool {
        self.actors.is_empty()
            || self
                .actors
                .iter()
                .any(|a| encode_actor(Some(a)) == value || (a == NO_ACTOR && value == NO_ACTOR))
    }

    fn takes_date(&self, date: &str) -> bool {
        self.from_date.as_deref().is_none_or(|f| date >= f)
            && self.to_date.as_deref().is_none_or(|t| date <= t)
    }

    /// Whether it takes the partition `actor=actor_value/date=date`.
    #[cfg_attr(not(feature = "hunt"), allow(dead_code))]
    pub(crate) fn takes(&self, actor_value: &str, date: &str) -> bool {
        self.takes_actor(actor_value) && self.takes_date(date)
    }
}

/// `name=value` folders directly in `dir`, with their values.
fn partition_folders(dir: &Path, name: &str) -> Result<Vec<(String, PathBuf)>, ArchiveError> {
    let mut out = Vec::new();
    let prefix = format!("{name}=");
    for entry in std::fs::read_dir(dir).map_err(ArchiveError::io(dir))? {
        let entry = entry.map_err(ArchiveError::io(dir))?;
        let file_name = entry.file_name();
        let Some(value) = file_name.to_str().and_then(|n| n.strip_prefix(&prefix)) else {
            continue;
        };
        if entry.path().is_dir() {
            out.push((value.to_string(), entry.path()));
        }
    }
    out.sort();
    Ok(out)
}

/// The committed files of the partitions `filter` takes, in partition
/// and name order; no other folder is read.
///
/// # Errors
/// The archive folder is missing or cannot be read.
pub fn find_files(root: &Path, filter: &PartitionFilter) -> Result<Vec<ArchiveFile>, ArchiveError> {
    if !root.is_dir() {
        return Err(ArchiveError::Missing(root.to_path_buf()));
    }
    let mut files = Vec::new();
    for (actor_value, actor_dir) in partition_folders(root, "actor")? {
        if !filter.takes_actor(&actor_value) {
            continue;
        }
        for (date, date_dir) in partition_folders(&actor_dir, "date")? {
            if !filter.takes_date(&date) {
                continue;
            }
            let mut names: Vec<PathBuf> = std::fs::read_dir(&date_dir)
                .map_err(ArchiveError::io(&date_dir))?
                .filter_map(Result::ok)
                .map(|e| e.path())
                .filter(|p| is_committed(p))
                .collect();
            names.sort();
            files.extend(names.into_iter().map(|path| ArchiveFile {
                path,
                actor_value: actor_value.clone(),
                date: date.clone(),
            }));
        }
    }
    Ok(files)
}

/// Checks that a file's Parquet footer reads: its rows, or the reason
/// why not.
///
/// # Errors
/// The file cannot be opened or is not Parquet.
pub fn check_footer(path: &Path) -> Result<u64, String> {
    use parquet::file::reader::FileReader;
    let file = std::fs::File::open(path).map_err(|e| e.to_string())?;
    parquet::file::reader::SerializedFileReader::new(file)
        .map(|r| r.metadata().file_metadata().num_rows().max(0) as u64)
        .map_err(|e| e.to_string())
}

/// The files a search reads and those it leaves out.
#[derive(Debug, Default)]
pub struct Readable {
    /// Committed files whose footer reads.
    pub files: Vec<ArchiveFile>,
    /// Their rows, by their footers.
    pub rows: u64,
    /// The others, each named with its reason.
    pub skipped: Vec<String>,
}

/// The committed files of the partitions `filter` takes, split into
/// those whose footer reads and those a search leaves out (logged).
///
/// # Errors
/// The archive folder is missing or cannot be read.
pub fn readable_files(root: &Path, filter: &PartitionFilter) -> Result<Readable, ArchiveError> {
    let mut readable = Readable::default();
    for file in find_files(root, filter)? {
        match check_footer(&file.path) {
            Ok(rows) => {
                readable.rows += rows;
                readable.files.push(file);
            }
            Err(reason) => {
                tracing::error!(file = %file.path.display(), %reason, "archive file skipped: it cannot be read as Parquet");
                readable
                    .skipped
                    .push(format!("{}: {reason}", file.path.display()));
            }
        }
    }
    Ok(readable)
}

/// A committed file: `part-….parquet`, never an unfinished `.part-…`.
fn is_committed(path: &Path) -> bool {
    path.file_name()
        .and_then(|n| n.to_str())
        .is_some_and(|n| n.starts_with("part-") && n.ends_with(".parquet"))
}

/// An unfinished file: written aside by a run that did not commit it.
fn is_unfinished(path: &Path) -> bool {
    path.file_name()
        .and_then(|n| n.to_str())
        .is_some_and(|n| n.starts_with(".part-") && n.ends_with(".tmp"))
}

/// Removes the unfinished files an earlier run left (killed before it
/// committed them: their rows' positions were not acknowledged, so the
/// inputs give them again). Returns how many.
///
/// # Errors
/// A folder cannot be read or a file removed.
pub fn remove_unfinished(root: &Path) -> Result<u64, ArchiveError> {
    let mut removed = 0;
    for entry in walkdir::WalkDir::new(root).min_depth(3).max_depth(3) {
        let entry = entry.map_err(|e| ArchiveError::Io {
            path: root.to_path_buf(),
            source: e.into(),
        })?;
        if is_unfinished(entry.path()) {
            std::fs::remove_file(entry.path()).map_err(ArchiveError::io(entry.path()))?;
            removed += 1;
        }
    }
    Ok(removed)
}

/// Removes day partitions older than `days` before `today`
/// (`YYYY-MM-DD`). Returns how many.
///
/// # Errors
/// A folder cannot be read or removed.
pub fn expire(root: &Path, days: u32, today: chrono::NaiveDate) -> Result<u64, ArchiveError> {
    let oldest = today - chrono::Duration::days(i64::from(days) - 1);
    let oldest = oldest.format("%Y-%m-%d").to_string();
    let mut removed = 0;
    for (_, actor_dir) in partition_folders(root, "actor")? {
        for (date, date_dir) in partition_folders(&actor_dir, "date")? {
            if date < oldest {
                std::fs::remove_dir_all(&date_dir).map_err(ArchiveError::io(&date_dir))?;
                removed += 1;
            }
        }
    }
    Ok(removed)
}

/// One committed file, as the manifest lists it.
#[derive(Debug, serde::Serialize)]
pub struct ManifestEntry<'a> {
    pub file: &'a str,
    pub actor: &'a str,
    pub date: &'a str,
    pub rows: u64,
    pub bytes: u64,
    pub min_time: Option<String>,
    pub max_time: Option<String>,
    pub committed: String,
}

/// Appends `entry` to the manifest and syncs it.
///
/// # Errors
/// The manifest cannot be written.
pub fn append_manifest(root: &Path, entry: &ManifestEntry<'_>) -> Result<(), ArchiveError> {
    let path = root.join(MANIFEST);
    let mut line = serde_json::to_vec(entry).unwrap_or_default();
    line.push(b'\n');
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&path)
        .map_err(ArchiveError::io(&path))?;
    file.write_all(&line).map_err(ArchiveError::io(&path))?;
    file.sync_data().map_err(ArchiveError::io(&path))
}

/// Syncs a folder, so that a rename or a new entry in it is durable.
///
/// # Errors
/// The folder cannot be opened or synced.
pub fn sync_dir(dir: &Path) -> Result<(), ArchiveError> {
    std::fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(ArchiveError::io(dir))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn actors_become_distinct_safe_folder_names() {
        let actors = [
            "rnv-hospital-nord",
            "Region Hovedstaden",
            "_none",
            "a/b=c",
            "æøå",
            "a%2F",
        ];
        let values: Vec<String> = actors.iter().map(|a| encode_actor(Some(a))).collect();
        for value in &values {
            assert!(value
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"%._-".contains(&b)));
            assert_ne!(value, NO_ACTOR);
        }
        assert_eq!(values[0], "rnv-hospital-nord");
        assert_eq!(values[3], "a%2Fb%3Dc");
        let unique: std::collections::HashSet<_> = values.iter().collect();
        assert_eq!(unique.len(), actors.len());
        assert_eq!(encode_actor(None), NO_ACTOR);
    }

    #[test]
    fn only_the_asked_partitions_are_listed() {
        let dir = tempfile::tempdir().unwrap();
        for (actor, date) in [
            ("a", "2026-01-01"),
            ("a", "2026-01-02"),
            ("b", "2026-01-01"),
        ] {
            let p = partition_dir(dir.path(), &encode_actor(Some(actor)), date);
            std::fs::create_dir_all(&p).unwrap();
            std::fs::write(p.join("part-1.parquet"), b"x").unwrap();
            std::fs::write(p.join(".part-2.parquet.tmp"), b"x").unwrap();
        }
        let filter = PartitionFilter {
            actors: vec!["a".into()],
            from_date: Some("2026-01-02".into()),
            to_date: None,
        };
        let files = find_files(dir.path(), &filter).unwrap();
        assert_eq!(files.len(), 1);
        assert_eq!(files[0].date, "2026-01-02");
        assert_eq!(
            find_files(dir.path(), &PartitionFilter::default())
                .unwrap()
                .len(),
            3
        );
        assert_eq!(remove_unfinished(dir.path()).unwrap(), 3);
        let today = chrono::NaiveDate::from_ymd_opt(2026, 1, 2).unwrap();
        assert_eq!(expire(dir.path(), 1, today).unwrap(), 2);
        assert_eq!(
            find_files(dir.path(), &PartitionFilter::default())
                .unwrap()
                .len(),
            1
        );
    }
}
