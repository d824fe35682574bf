//! The rules cache: what each rules file loaded to (its rules, filters,
//! windowed rules and rejections), kept on disk between runs, so that a
//! file unchanged since is not parsed again. Parsing YAML and lowering
//! the detections was two fifths of start-up with SigmaHQ's rules.
//!
//! An entry serves only the same path with the same bytes, read with the
//! same placeholders by the same vagt binary (its path, size and
//! modification time, and the cache format's version); anything else
//! parses the file again. A cache that cannot be read or is damaged is
//! rebuilt; one that cannot be written costs only the time. Either is
//! reported in [`CacheUse::problems`], never an error of the load.
//!
//! A file is not read to know its bytes unchanged when its size,
//! modification and change times, inode and device are those it had when
//! the cache was written, and it had not changed in the
//! [`SETTLED`] before: the change time moves with every write and
//! cannot be set back, and a file written in the same instant as the
//! cache (whose times could not tell a second write) is read. This is
//! how `make` and `git` tell a changed file, without reading 2,400 of them.
//!
//! ```text
//!  rules file ─► stat as kept? ─ yes ─────────────────────┐
//!      └── no ─► read: SHA-256(path, length, bytes) ─► entry? ─ yes ─► decoded (postcard)
//!                                                        └──── no ──► parsed and lowered
//!  a file parsed or read anew, or an entry no file used ─► every entry written aside, synced, renamed
//! ```
//!
//! One cache file per set of rule paths (`rules-<hash of the paths>.bin`
//! in the cache folder), so that runs over different rules do not evict
//! each other's entries; a folder keeps the [`MAX_FILES`] most recently
//! used.

use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use thiserror::Error;

use crate::loader::RuleCollection;
use crate::sigma::Placeholders;

/// Changes whenever what an entry holds changes shape.
const FORMAT: u32 = 2;

/// How long before the cache was written a file must have last changed
/// for its times to vouch for its bytes: more than any file system's time
/// granularity.
pub const SETTLED: std::time::Duration = std::time::Duration::from_secs(2);

/// What tells a file's version without reading it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct FileStat {
    len: u64,
    /// Modification and change times, in nanoseconds since the epoch.
    modified: i64,
    changed: i64,
    inode: u64,
    device: u64,
}

impl FileStat {
    /// The file's, if it can be read (on Unix).
    pub(crate) fn of(path: &Path) -> Option<FileStat> {
        #[cfg(unix)]
        {
            use std::os::unix::fs::MetadataExt;
            let meta = std::fs::metadata(path).ok()?;
            let nanos =
                |secs: i64, nsec: i64| secs.saturating_mul(1_000_000_000).saturating_add(nsec);
            Some(FileStat {
                len: meta.len(),
                modified: nanos(meta.mtime(), meta.mtime_nsec()),
                changed: nanos(meta.ctime(), meta.ctime_nsec()),
                inode: meta.ino(),
                device: meta.dev(),
            })
        }
        #[cfg(not(unix))]
        {
            let _ = path;
            None
        }
    }

    /// Whether the file last changed at least [`SETTLED`] before `at`
    /// (nanoseconds since the epoch).
    fn settled_before(&self, at: i64) -> bool {
        self.modified.max(self.changed) < at.saturating_sub(SETTLED.as_nanos() as i64)
    }
}

/// Now, in nanoseconds since the epoch.
fn now_nanos() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as i64)
}

/// One rules file of a load, for [`Opened::store`].
pub(crate) struct Kept<'a> {
    pub key: FileKey,
    /// What it loaded to, if parsed now; `None` if its entry was used.
    pub loaded: Option<&'a RuleCollection>,
    pub path: &'a Path,
    pub stat: Option<FileStat>,
    /// Whether it was read to know its key (not vouched for by its stat).
    pub read: bool,
}

/// Cache files a folder keeps: writing one removes the least recently
/// used beyond this (rule sets read from temporary folders, say).
pub const MAX_FILES: usize = 16;

/// Identifies a rules file's path and bytes.
pub(crate) type FileKey = [u8; 32];

/// The key of a file at `path` holding `bytes`.
pub(crate) fn file_key(path: &Path, bytes: &[u8]) -> FileKey {
    let mut h = Sha256::new();
    h.update(path.as_os_str().as_encoded_bytes());
    h.update((bytes.len() as u64).to_le_bytes());
    h.update(bytes);
    h.finalize().into()
}

/// Where loaded rules are kept between runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RulesCache {
    dir: PathBuf,
}

impl RulesCache {
    /// A cache in `dir` (created when first written).
    pub fn in_dir(dir: impl Into<PathBuf>) -> RulesCache {
        RulesCache { dir: dir.into() }
    }

    /// The user's cache folder for vagt: `$XDG_CACHE_HOME/vagt`, else
    /// `$HOME/.cache/vagt`; none when neither is set.
    pub fn default_dir() -> Option<PathBuf> {
        let non_empty = |name| std::env::var_os(name).filter(|v| !v.is_empty());
        non_empty("XDG_CACHE_HOME")
            .map(PathBuf::from)
            .or_else(|| non_empty("HOME").map(|home| PathBuf::from(home).join(".cache")))
            .map(|base| base.join("vagt"))
    }

    /// The cache file for rules read from `roots`.
    fn file_for<P: AsRef<Path>>(&self, roots: &[P]) -> PathBuf {
        let mut h = Sha256::new();
        for root in roots {
            let root = root.as_ref();
            let absolute = std::path::absolute(root).unwrap_or_else(|_| root.to_path_buf());
            h.update(absolute.as_os_str().as_encoded_bytes());
            h.update([0]);
        }
        let digest: [u8; 32] = h.finalize().into();
        let name: String = digest[..8].iter().map(|b| format!("{b:02x}")).collect();
        self.dir.join(format!("rules-{name}.bin"))
    }

    /// The entries kept for `roots`, if they were written by this binary
    /// with these placeholders.
    pub(crate) fn open<P: AsRef<Path>>(&self, roots: &[P], placeholders: &Placeholders) -> Opened {
        let path = self.file_for(roots);
        let stamp = match stamp(placeholders) {
            Ok(stamp) => stamp,
            Err(source) => {
                return Opened::unusable(path, CacheError::Identity { source });
            }
        };
        let bytes = match std::fs::read(&path) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Opened::empty(path, stamp);
            }
            Err(source) => {
                let error = CacheError::Read {
                    path: path.clone(),
                    source,
                };
                let mut opened = Opened::empty(path, stamp);
                opened.problems.push(error.to_string());
                return opened;
            }
        };
        let mut opened = Opened::empty(path, stamp);
        match postcard::from_bytes::<CacheFile>(&bytes) {
            Ok(file) if file.format == FORMAT && file.stamp == stamp => {
                opened.entries = file
                    .entries
                    .into_iter()
                    .map(|e| (e.key, e.body.0.to_vec()))
                    .collect();
                opened.known = file
                    .known
                    .into_iter()
                    .map(|k| (k.path.0.to_vec(), (k.stat, k.key)))
                    .collect();
                opened.written = file.written;
            }
            // Another binary or other placeholders: every file is parsed
            // again and the cache rewritten.
            Ok(_) => opened.superseded = true,
            Err(e) => opened.problems.push(
                CacheError::Damaged {
                    path: opened.path.clone(),
                    reason: e.to_string(),
                }
                .to_string(),
            ),
        }
        opened
    }
}

/// A cache file as read, its entries by file key.
#[derive(Debug)]
pub(crate) struct Opened {
    path: PathBuf,
    /// None when the running binary cannot be identified: nothing is
    /// read or written then.
    stamp: Option<[u8; 32]>,
    entries: HashMap<FileKey, Vec<u8>>,
    /// By path, each file's stat and key when the cache was written.
    known: HashMap<Vec<u8>, (FileStat, FileKey)>,
    /// When it was written (nanoseconds since the epoch).
    written: i64,
    /// When it was opened, before any rules file was looked at: what a
    /// rewrite records as its time, so that a file changed while the
    /// rules were being read is never taken as settled.
    opened: i64,
    /// The file was written by another binary or with other placeholders.
    superseded: bool,
    problems: Vec<String>,
}

impl Opened {
    fn empty(path: PathBuf, stamp: [u8; 32]) -> Opened {
        Opened::holding_nothing(path, Some(stamp), Vec::new())
    }

    fn unusable(path: PathBuf, error: CacheError) -> Opened {
        Opened::holding_nothing(path, None, vec![error.to_string()])
    }

    /// No entry and no file known, opened now.
    fn holding_nothing(path: PathBuf, stamp: Option<[u8; 32]>, problems: Vec<String>) -> Opened {
        Opened {
            path,
            stamp,
            entries: HashMap::new(),
            known: HashMap::new(),
            written: 0,
            opened: now_nanos(),
            superseded: false,
            problems,
        }
    }

    /// The key of the file at `path`, without reading it: if its `stat`
    /// is the one kept, and it had settled when the cache was written.
    pub(crate) fn key_of(&self, path: &Path, stat: &FileStat) -> Option<FileKey> {
        let (kept, key) = self.known.get(path.as_os_str().as_encoded_bytes())?;
        (kept == stat && stat.settled_before(self.written)).then_some(*key)
    }

    /// What the file with `key` loaded to, if kept and readable.
    pub(crate) fn get(&self, key: &FileKey) -> Option<RuleCollection> {
        postcard::from_bytes(self.entries.get(key)?).ok()
    }

    /// Writes the entries of the files loaded now, in their order, when
    /// anything changed: a file parsed, an entry no file used, or a file
    /// read whose stat would vouch for it now.
    pub(crate) fn store(mut self, files: &[Kept]) -> CacheUse {
        let hits = files.iter().filter(|f| f.loaded.is_none()).count();
        let parsed = files.len() - hits;
        let read = files.iter().filter(|f| f.read).count();
        let mut report = CacheUse {
            file: self.path.clone(),
            files: files.len(),
            hits,
            parsed,
            read,
            written: false,
            problems: std::mem::take(&mut self.problems),
        };
        let Some(stamp) = self.stamp else {
            return report;
        };
        let vouched_now = files
            .iter()
            .any(|f| f.read && f.stat.is_some_and(|s| s.settled_before(self.opened)));
        let stale = self.entries.len() != hits || self.superseded || vouched_now;
        if parsed == 0 && !stale {
            // Used as it is: marked as used, for the pruning of others.
            let _ = std::fs::File::options()
                .write(true)
                .open(&self.path)
                .and_then(|f| f.set_modified(std::time::SystemTime::now()));
            return report;
        }
        let mut entries = Vec::with_capacity(files.len());
        for file in files {
            let body = match file.loaded {
                Some(collection) => match postcard::to_stdvec(collection) {
                    Ok(body) => body,
                    // A path that is not UTF-8: that file is not kept.
                    Err(_) => continue,
                },
                None => match self.entries.remove(&file.key) {
                    Some(body) => body,
                    None => continue,
                },
            };
            entries.push((file.key, body));
        }
        let file = CacheFile {
            format: FORMAT,
            stamp,
            written: self.opened,
            entries: entries
                .iter()
                .map(|(key, body)| Entry {
                    key: *key,
                    body: Bytes(body),
                })
                .collect(),
            known: files
                .iter()
                .filter_map(|f| {
                    Some(Known {
                        path: Bytes(f.path.as_os_str().as_encoded_bytes()),
                        stat: f.stat?,
                        key: f.key,
                    })
                })
                .collect(),
        };
        match write_aside(&self.path, &file) {
            Ok(()) => {
                report.written = true;
                prune(&self.path);
            }
            Err(e) => report.problems.push(e.to_string()),
        }
        report
    }
}

/// What the cache did for one load.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct CacheUse {
    /// The cache file.
    pub file: PathBuf,
    /// Rules files read.
    pub files: usize,
    /// Files whose kept entry was used.
    pub hits: usize,
    /// Files parsed (new, changed, or not kept).
    pub parsed: usize,
    /// Files read to know whether they changed: those whose size, times,
    /// inode or device are not as kept, or that changed shortly before
    /// the cache was written (see [`SETTLED`]).
    pub read: usize,
    /// The cache file was (re)written.
    pub written: bool,
    /// What went wrong with the cache (the rules loaded regardless).
    pub problems: Vec<String>,
}

/// Why the cache could not be used; the load goes on without it.
#[derive(Debug, Error)]
pub enum CacheError {
    /// The running binary, part of every entry's identity, cannot be
    /// found.
    #[error("rules cache not used: cannot identify the running vagt binary: {source}")]
    Identity {
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// The cache file exists but cannot be read.
    #[error("rules cache {path} cannot be read, rules parsed instead: {source}")]
    Read {
        /// The cache file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// The cache file does not decode.
    #[error(
        "rules cache {path} is damaged ({reason}); rules parsed instead and the cache rebuilt"
    )]
    Damaged {
        /// The cache file.
        path: PathBuf,
        /// What the decoder said.
        reason: String,
    },
    /// The cache file cannot be written.
    #[error("rules cache {path} cannot be written: {source}")]
    Write {
        /// The cache file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
}

#[derive(Serialize, Deserialize)]
struct CacheFile<'a> {
    format: u32,
    stamp: [u8; 32],
    /// When it was written, in nanoseconds since the epoch.
    written: i64,
    #[serde(borrow)]
    entries: Vec<Entry<'a>>,
    /// Each rules file's stat and key, by path.
    #[serde(borrow)]
    known: Vec<Known<'a>>,
}

#[derive(Serialize, Deserialize)]
struct Known<'a> {
    #[serde(borrow)]
    path: Bytes<'a>,
    stat: FileStat,
    key: FileKey,
}

#[derive(Serialize, Deserialize)]
struct Entry<'a> {
    key: FileKey,
    #[serde(borrow)]
    body: Bytes<'a>,
}

/// A byte string, written and read as one (not byte by byte).
struct Bytes<'a>(&'a [u8]);

impl Serialize for Bytes<'_> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_bytes(self.0)
    }
}

impl<'de: 'a, 'a> Deserialize<'de> for Bytes<'a> {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        <&'de [u8]>::deserialize(deserializer).map(Bytes)
    }
}

/// What makes entries valid: the format, this binary, the placeholders.
fn stamp(placeholders: &Placeholders) -> std::io::Result<[u8; 32]> {
    let exe = std::env::current_exe()?;
    let meta = std::fs::metadata(&exe)?;
    let modified = meta
        .modified()?
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or_default();
    let mut h = Sha256::new();
    h.update(FORMAT.to_le_bytes());
    h.update(env!("CARGO_PKG_VERSION").as_bytes());
    h.update([0]);
    h.update(exe.as_os_str().as_encoded_bytes());
    h.update([0]);
    h.update(meta.len().to_le_bytes());
    h.update(modified.to_le_bytes());
    let mut names: Vec<&String> = placeholders.keys().collect();
    names.sort();
    for name in names {
        h.update((name.len() as u64).to_le_bytes());
        h.update(name.as_bytes());
        let values = &placeholders[name];
        h.update((values.len() as u64).to_le_bytes());
        for value in values {
            h.update((value.len() as u64).to_le_bytes());
            h.update(value.as_bytes());
        }
    }
    Ok(h.finalize().into())
}

/// Removes the cache files beside `kept` beyond the [`MAX_FILES`] most
/// recently used (written, or read as they were). What cannot be listed
/// or removed stays: it costs only room.
fn prune(kept: &Path) {
    let Some(dir) = kept.parent() else { return };
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    let mut files: Vec<(std::time::SystemTime, PathBuf)> = entries
        .filter_map(Result::ok)
        .filter(|e| {
            let name = e.file_name();
            let name = name.to_string_lossy();
            name.starts_with("rules-") && name.ends_with(".bin")
        })
        .filter_map(|e| Some((e.metadata().ok()?.modified().ok()?, e.path())))
        .collect();
    files.sort_by_key(|(modified, _)| std::cmp::Reverse(*modified));
    for (_, path) in files.iter().skip(MAX_FILES) {
        if path != kept {
            let _ = std::fs::remove_file(path);
        }
    }
}

/// Writes `file` beside `path`, syncs it, renames it over `path` and
/// syncs the folder: a reader sees the old cache or the new, whole.
fn write_aside(path: &Path, file: &CacheFile) -> Result<(), CacheError> {
    let error = |source| CacheError::Write {
        path: path.to_path_buf(),
        source,
    };
    let dir = path.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir).map_err(error)?;
    let bytes = postcard::to_stdvec(file).map_err(|e| error(std::io::Error::other(e)))?;
    let mut aside = tempfile::Builder::new()
        .prefix(".rules-")
        .tempfile_in(dir)
        .map_err(error)?;
    aside.write_all(&bytes).map_err(error)?;
    aside.as_file().sync_all().map_err(error)?;
    aside.persist(path).map_err(|e| error(e.error))?;
    std::fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(error)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::loader::load_paths_with;

    const RULE: &str =
        "title: a\nid: r-a\nlogsource: {product: windows}\ndetection:\n  sel: {Image|endswith: '\\\\x.exe'}\n  condition: sel\n";
    const BROKEN: &str = "title: broken\ndetection: [\n";

    fn load(dir: &Path, cache: &RulesCache, placeholders: &Placeholders) -> RuleCollection {
        load_paths_with(&[dir], placeholders, Some(cache)).unwrap()
    }

    /// What a load produced, comparable across loads.
    fn shape(c: &RuleCollection) -> String {
        format!(
            "{:?}{:?}{:?}{:?}",
            c.rules, c.filters, c.windows, c.rejected
        )
    }

    #[test]
    fn an_unchanged_file_comes_from_the_cache_and_a_changed_one_is_parsed() {
        let rules = tempfile::tempdir().unwrap();
        let kept = tempfile::tempdir().unwrap();
        let cache = RulesCache::in_dir(kept.path().join("vagt"));
        std::fs::write(rules.path().join("a.yml"), RULE).unwrap();
        std::fs::write(rules.path().join("b.yml"), BROKEN).unwrap();
        let none = Placeholders::new();

        let first = load(rules.path(), &cache, &none);
        let used = first.cache.clone().unwrap();
        assert_eq!((used.files, used.hits, used.parsed), (2, 0, 2));
        assert!(used.written && used.problems.is_empty(), "{used:?}");

        let second = load(rules.path(), &cache, &none);
        let used = second.cache.clone().unwrap();
        assert_eq!((used.hits, used.parsed, used.written), (2, 0, false));
        assert_eq!(shape(&first), shape(&second));
        assert_eq!(first.digest, second.digest);
        assert_eq!(second.rejected.len(), 1, "the rejection is kept too");

        std::fs::write(rules.path().join("a.yml"), RULE.replace("x.exe", "y.exe")).unwrap();
        let third = load(rules.path(), &cache, &none);
        let used = third.cache.clone().unwrap();
        assert_eq!((used.hits, used.parsed, used.written), (1, 1, true));
        assert!(format!("{:?}", third.rules).contains("y.exe"));
        assert_ne!(third.digest, second.digest);

        // A file gone leaves an entry no file uses: the cache is rewritten
        // without it, and the next load uses every entry.
        std::fs::remove_file(rules.path().join("b.yml")).unwrap();
        let used = load(rules.path(), &cache, &none).cache.unwrap();
        assert_eq!((used.hits, used.parsed, used.written), (1, 0, true));
        let used = load(rules.path(), &cache, &none).cache.unwrap();
        assert_eq!((used.hits, used.parsed, used.written), (1, 0, false));
    }

    /// Sets the file's modification time to `at` (its change time
    /// becomes now).
    fn set_modified(path: &Path, at: std::time::SystemTime) {
        let file = std::fs::File::options().write(true).open(path).unwrap();
        file.set_modified(at).unwrap();
    }

    #[test]
    fn a_settled_file_is_not_read_and_any_write_to_it_is_seen() {
        let rules = tempfile::tempdir().unwrap();
        let kept = tempfile::tempdir().unwrap();
        let cache = RulesCache::in_dir(kept.path().join("vagt"));
        let (a, b) = (rules.path().join("a.yml"), rules.path().join("b.yml"));
        std::fs::write(&a, RULE).unwrap();
        std::fs::write(&b, BROKEN).unwrap();
        let none = Placeholders::new();
        let used = |c: RuleCollection| {
            let u = c.cache.unwrap();
            (u.hits, u.parsed, u.read, u.written)
        };
        // Just written: their times cannot vouch for them yet, so they are
        // read on every load, and the cache is not rewritten for that.
        assert_eq!(used(load(rules.path(), &cache, &none)), (0, 2, 2, true));
        assert_eq!(used(load(rules.path(), &cache, &none)), (2, 0, 2, false));
        // Once the cache was written after they settled, they are not read.
        std::thread::sleep(SETTLED + std::time::Duration::from_millis(100));
        assert_eq!(used(load(rules.path(), &cache, &none)), (2, 0, 2, true));
        let vouched = load(rules.path(), &cache, &none);
        let first = shape(&vouched);
        assert_eq!(used(vouched.clone()), (2, 0, 0, false));
        // The same length, the old modification time: the change time
        // still tells, and the new bytes are parsed.
        let before = std::fs::metadata(&a).unwrap().modified().unwrap();
        std::fs::write(&a, RULE.replace("x.exe", "y.exe")).unwrap();
        set_modified(&a, before);
        let changed = load(rules.path(), &cache, &none);
        assert!(format!("{:?}", changed.rules).contains("y.exe"));
        assert_ne!(shape(&changed), first);
        assert_ne!(changed.digest, vouched.digest);
        assert_eq!(used(changed), (1, 1, 1, true));
        // A file whose times changed but not its bytes is read, found kept,
        // and vouched for from the next rewrite on.
        set_modified(
            &b,
            std::time::SystemTime::now() - std::time::Duration::from_secs(60),
        );
        let touched = load(rules.path(), &cache, &none);
        assert_eq!(
            touched.cache.as_ref().map(|u| (u.hits, u.parsed)),
            Some((2, 0))
        );
        assert!(touched.cache.unwrap().read >= 1);
    }

    #[test]
    fn other_placeholders_parse_every_file_again() {
        let rules = tempfile::tempdir().unwrap();
        let kept = tempfile::tempdir().unwrap();
        let cache = RulesCache::in_dir(kept.path());
        let rule = "title: p\nlogsource: {product: windows}\ndetection:\n  sel: {User|expand: '%admins%'}\n  condition: sel\n";
        std::fs::write(rules.path().join("p.yml"), rule).unwrap();
        let admins = |name: &str| Placeholders::from([("admins".to_string(), vec![name.into()])]);

        let first = load(rules.path(), &cache, &admins("alice"));
        assert!(format!("{:?}", first.rules).contains("alice"));
        let second = load(rules.path(), &cache, &admins("bob"));
        let used = second.cache.clone().unwrap();
        assert_eq!((used.hits, used.parsed, used.written), (0, 1, true));
        assert!(format!("{:?}", second.rules).contains("bob"));
        assert!(!format!("{:?}", second.rules).contains("alice"));
    }

    #[test]
    fn a_damaged_cache_is_reported_and_rebuilt() {
        let rules = tempfile::tempdir().unwrap();
        let kept = tempfile::tempdir().unwrap();
        let cache = RulesCache::in_dir(kept.path());
        std::fs::write(rules.path().join("a.yml"), RULE).unwrap();
        let none = Placeholders::new();
        let good = load(rules.path(), &cache, &none);
        let file = good.cache.clone().unwrap().file;

        let mut bytes = std::fs::read(&file).unwrap();
        bytes.truncate(bytes.len() / 2);
        std::fs::write(&file, bytes).unwrap();
        let after = load(rules.path(), &cache, &none);
        let used = after.cache.clone().unwrap();
        assert_eq!((used.hits, used.parsed, used.written), (0, 1, true));
        assert_eq!(used.problems.len(), 1);
        assert!(
            used.problems[0].contains("is damaged"),
            "{:?}",
            used.problems
        );
        assert!(used.problems[0].contains(&file.display().to_string()));
        assert_eq!(shape(&good), shape(&after));
        let used = load(rules.path(), &cache, &none).cache.unwrap();
        assert_eq!((used.hits, used.problems.len()), (1, 0));
    }

    #[test]
    fn a_cache_that_cannot_be_written_costs_only_the_time() {
        let rules = tempfile::tempdir().unwrap();
        let kept = tempfile::tempdir().unwrap();
        // A file where the cache's folder would be.
        let blocked = kept.path().join("not-a-folder");
        std::fs::write(&blocked, "x").unwrap();
        let cache = RulesCache::in_dir(&blocked);
        std::fs::write(rules.path().join("a.yml"), RULE).unwrap();
        let loaded = load(rules.path(), &cache, &Placeholders::new());
        assert_eq!(loaded.rules.len(), 1);
        let used = loaded.cache.unwrap();
        assert!(!used.written);
        assert!(
            used.problems
                .iter()
                .any(|p| p.contains("cannot be written")),
            "{:?}",
            used.problems
        );
    }

    #[test]
    fn a_folder_keeps_the_most_recently_used_cache_files() {
        let kept = tempfile::tempdir().unwrap();
        let cache = RulesCache::in_dir(kept.path());
        let none = Placeholders::new();
        let mut folders = Vec::new();
        for i in 0..MAX_FILES + 3 {
            let rules = tempfile::tempdir().unwrap();
            std::fs::write(rules.path().join("a.yml"), RULE).unwrap();
            let used = load(rules.path(), &cache, &none).cache.unwrap();
            assert!(used.written, "{i}: {used:?}");
            folders.push(rules);
        }
        let count = || std::fs::read_dir(kept.path()).unwrap().count();
        assert_eq!(count(), MAX_FILES);
        // The newest is kept: its next load takes every file from it.
        let newest = folders.last().unwrap();
        let used = load(newest.path(), &cache, &none).cache.unwrap();
        assert_eq!((used.hits, used.written), (1, false));
        // The oldest was removed: parsed again, and written again.
        let used = load(folders[0].path(), &cache, &none).cache.unwrap();
        assert_eq!((used.hits, used.written), (0, true));
        assert_eq!(count(), MAX_FILES);
    }

    #[test]
    fn rule_sets_from_other_folders_keep_their_own_file() {
        let kept = tempfile::tempdir().unwrap();
        let cache = RulesCache::in_dir(kept.path());
        assert_ne!(cache.file_for(&["a"]), cache.file_for(&["b"]));
        assert_eq!(cache.file_for(&["a", "b"]), cache.file_for(&["a", "b"]));
        assert_ne!(cache.file_for(&["a", "b"]), cache.file_for(&["ab"]));
    }

    #[test]
    fn logsources_leave_unset_attributes_out_of_json_only() {
        let source = crate::sigma::LogSource {
            product: Some("windows".into()),
            category: None,
            service: Some("security".into()),
        };
        assert_eq!(
            serde_json::to_string(&source).unwrap(),
            r#"{"product":"windows","service":"security"}"#
        );
        let bytes = postcard::to_stdvec(&source).unwrap();
        let back: crate::sigma::LogSource = postcard::from_bytes(&bytes).unwrap();
        assert_eq!(back, source);
    }
}
