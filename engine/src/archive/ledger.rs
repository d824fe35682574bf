//! The retro-hunt ledger, kept in the archive (`retro-hunts/`): which
//! rules have already hunted the archive, and the alert ids sent, so that
//! a run that starts with new or changed rules hunts them and sends no
//! alert an earlier run sent.
//!
//! ```text
//! retro-hunts/rules.json                the digests of the rules in force (written aside, synced, renamed)
//! retro-hunts/indicators.bin            the keys of the feeds' indicators that hunted it (likewise)
//! retro-hunts/emitted-YYYY-MM-DD.ids    the alert ids sent that day, one per line (appended)
//! ```
//!
//! The rule record is written once the hunt of a set's new rules has
//! finished (or at once when there is none), so a run stopped during a
//! hunt hunts again at its next start. Ids are appended as alerts are
//! sent and synced at most once a second and at the end: a killed process
//! loses none; a machine that loses power may forget the last second's,
//! and a changed rule may then repeat those alerts (never lose one).

use std::collections::HashSet;
use std::io::{BufRead, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use vagt_rules::window::WindowPlan;
use vagt_rules::RuleSet;

use super::layout::{sync_dir, ArchiveError};

/// The ledger's folder in the archive.
pub const FOLDER: &str = "retro-hunts";
const RULES: &str = "rules.json";
const INDICATORS: &str = "indicators.bin";

/// The ledger of one archive.
#[derive(Debug, Clone)]
pub(crate) struct Ledger {
    dir: PathBuf,
}

/// The rule record's content.
#[derive(Debug, serde::Serialize, serde::Deserialize)]
struct RuleRecord {
    /// When it was written (RFC 3339).
    written: String,
    /// The digest of each detection rule, hexadecimal.
    rules: Vec<String>,
    /// The key of each windowed rule (its name and the digest of its
    /// definition).
    #[serde(default)]
    windows: Vec<String>,
}

/// The rules an earlier run recorded.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct KnownRules {
    /// Detection rules' digests.
    pub rules: HashSet<String>,
    /// Windowed rules' keys.
    pub windows: HashSet<String>,
}

fn hex(digest: &[u8; 32]) -> String {
    digest.iter().map(|b| format!("{b:02x}")).collect()
}

/// The rules of `set` whose digests `known` lacks.
pub(crate) fn not_in(known: &HashSet<String>, set: &RuleSet) -> Vec<usize> {
    (0..set.len())
        .filter(|&i| !known.contains(&hex(&set.digest(i))))
        .collect()
}

impl Ledger {
    /// The ledger of the archive in `root`, its folder made if missing.
    ///
    /// # Errors
    /// The folder cannot be made.
    pub fn open(root: &Path) -> Result<Ledger, ArchiveError> {
        let dir = root.join(FOLDER);
        std::fs::create_dir_all(&dir).map_err(ArchiveError::io(&dir))?;
        Ok(Ledger { dir })
    }

    /// The digests of the rules recorded, or `None` when no run has
    /// recorded any.
    ///
    /// # Errors
    /// The record cannot be read or is not a rule record.
    pub fn known_rules(&self) -> Result<Option<KnownRules>, ArchiveError> {
        let path = self.dir.join(RULES);
        let bytes = match std::fs::read(&path) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(ArchiveError::io(&path)(e)),
        };
        let record: RuleRecord = serde_json::from_slice(&bytes).map_err(|e| ArchiveError::Io {
            path: path.clone(),
            source: std::io::Error::new(std::io::ErrorKind::InvalidData, e),
        })?;
        Ok(Some(KnownRules {
            rules: record.rules.into_iter().collect(),
            windows: record.windows.into_iter().collect(),
        }))
    }

    /// Records the rules of `set` and the windowed rules of `plan` as
    /// those that hunted the archive: written aside, synced and renamed.
    ///
    /// # Errors
    /// The record cannot be written.
    pub fn record_rules(&self, set: &RuleSet, plan: &WindowPlan) -> Result<(), ArchiveError> {
        let record = RuleRecord {
            written: crate::alert::now_rfc3339(),
            rules: (0..set.len()).map(|i| hex(&set.digest(i))).collect(),
            windows: plan.rules.iter().map(|r| r.key.clone()).collect(),
        };
        let bytes = serde_json::to_vec(&record).map_err(|e| ArchiveError::Io {
            path: self.dir.join(RULES),
            source: e.into(),
        })?;
        self.write_aside(RULES, &bytes)
    }

    /// Writes `bytes` as the ledger's file `name`: aside, synced, renamed.
    fn write_aside(&self, name: &str, bytes: &[u8]) -> Result<(), ArchiveError> {
        let path = self.dir.join(name);
        let write = || -> std::io::Result<()> {
            let mut file = tempfile::NamedTempFile::new_in(&self.dir)?;
            file.write_all(bytes)?;
            file.as_file().sync_all()?;
            file.persist(&path).map_err(|e| e.error)?;
            Ok(())
        };
        write().map_err(ArchiveError::io(&path))?;
        sync_dir(&self.dir)
    }

    /// The keys of the indicators recorded as having hunted the archive,
    /// or `None` when no run has recorded any.
    ///
    /// # Errors
    /// The record cannot be read, or is not a list of 8-byte keys.
    pub fn known_indicators(&self) -> Result<Option<HashSet<u64>>, ArchiveError> {
        let path = self.dir.join(INDICATORS);
        let bytes = match std::fs::read(&path) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(ArchiveError::io(&path)(e)),
        };
        if bytes.len() % 8 != 0 {
            return Err(ArchiveError::io(&path)(std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                format!("{} bytes are not a list of 8-byte keys", bytes.len()),
            )));
        }
        Ok(Some(
            bytes
                .chunks_exact(8)
                .map(|c| u64::from_le_bytes(c.try_into().unwrap_or_default()))
                .collect(),
        ))
    }

    /// Records `keys` as the indicators that hunted the archive: sorted,
    /// written aside, synced and renamed.
    ///
    /// # Errors
    /// The record cannot be written.
    pub fn record_indicators(&self, keys: &HashSet<u64>) -> Result<(), ArchiveError> {
        let mut sorted: Vec<u64> = keys.iter().copied().collect();
        sorted.sort_unstable();
        let bytes: Vec<u8> = sorted.iter().flat_map(|k| k.to_le_bytes()).collect();
        self.write_aside(INDICATORS, &bytes)
    }

    /// The ids sent on the days within `span` before `today`, oldest day
    /// first; the files of older days are removed.
    ///
    /// # Errors
    /// The folder or a file cannot be read, or an old file removed.
    pub fn emitted_since(
        &self,
        span: Duration,
        today: chrono::NaiveDate,
    ) -> Result<Vec<String>, ArchiveError> {
        let days = i64::try_from(span.as_secs().div_ceil(86_400)).unwrap_or(i64::MAX / 2);
        let oldest = today
            .checked_sub_signed(chrono::Duration::days(days))
            .unwrap_or(chrono::NaiveDate::MIN);
        let mut files: Vec<(chrono::NaiveDate, PathBuf)> = Vec::new();
        for entry in std::fs::read_dir(&self.dir).map_err(ArchiveError::io(&self.dir))? {
            let path = entry.map_err(ArchiveError::io(&self.dir))?.path();
            let Some(day) = emitted_day(&path) else {
                continue;
            };
            if day < oldest {
                std::fs::remove_file(&path).map_err(ArchiveError::io(&path))?;
            } else {
                files.push((day, path));
            }
        }
        files.sort();
        let mut ids = Vec::new();
        for (_, path) in files {
            let file = std::fs::File::open(&path).map_err(ArchiveError::io(&path))?;
            for line in std::io::BufReader::new(file).lines() {
                let line = line.map_err(ArchiveError::io(&path))?;
                // What a killed process left of its last line is kept:
                // at worst an id that no alert has.
                if !line.is_empty() && line.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
                {
                    ids.push(line);
                }
            }
        }
        Ok(ids)
    }

    /// Where ids sent from now on are appended.
    pub fn log(&self) -> EmittedLog {
        EmittedLog {
            dir: self.dir.clone(),
            open: None,
            synced: Instant::now(),
            unsynced: false,
            failed: false,
        }
    }
}

/// The day of an `emitted-YYYY-MM-DD.ids` file.
fn emitted_day(path: &Path) -> Option<chrono::NaiveDate> {
    let name = path.file_name()?.to_str()?;
    let day = name.strip_prefix("emitted-")?.strip_suffix(".ids")?;
    chrono::NaiveDate::parse_from_str(day, "%Y-%m-%d").ok()
}

/// Appends the ids sent to the day's file.
#[derive(Debug)]
pub(crate) struct EmittedLog {
    dir: PathBuf,
    open: Option<(chrono::NaiveDate, std::fs::File)>,
    synced: Instant,
    unsynced: bool,
    /// A write failed (logged once): ids are still remembered in memory.
    failed: bool,
}

impl EmittedLog {
    /// Appends `ids`, synced if the last sync is a second old.
    pub fn append<'a>(&mut self, ids: impl Iterator<Item = &'a str>) {
        let mut text = String::new();
        for id in ids {
            text.push_str(id);
            text.push('\n');
        }
        if text.is_empty() || self.failed {
            return;
        }
        let today = chrono::Utc::now().date_naive();
        if let Err(e) = self.write(today, text.as_bytes()) {
            self.failed = true;
            tracing::error!(folder = %self.dir.display(), error = %e, "retro-hunt ledger: alert ids cannot be written; a restart may send some alerts again");
        }
    }

    fn write(&mut self, today: chrono::NaiveDate, text: &[u8]) -> std::io::Result<()> {
        if self.open.as_ref().is_none_or(|(day, _)| *day != today) {
            self.sync()?;
            let path = self
                .dir
                .join(format!("emitted-{}.ids", today.format("%Y-%m-%d")));
            let file = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(path)?;
            self.open = Some((today, file));
        }
        let (_, file) = self.open.as_mut().expect("opened above");
        file.write_all(text)?;
        self.unsynced = true;
        if self.synced.elapsed() >= Duration::from_secs(1) {
            self.sync()?;
        }
        Ok(())
    }

    fn sync(&mut self) -> std::io::Result<()> {
        if let (Some((_, file)), true) = (&self.open, self.unsynced) {
            file.sync_data()?;
        }
        self.unsynced = false;
        self.synced = Instant::now();
        Ok(())
    }
}

impl Drop for EmittedLog {
    fn drop(&mut self) {
        if let Err(e) = self.sync() {
            tracing::error!(folder = %self.dir.display(), error = %e, "retro-hunt ledger: alert ids cannot be synced");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_of_the_span_are_read_back_and_older_days_removed() {
        let dir = tempfile::tempdir().unwrap();
        let ledger = Ledger::open(dir.path()).unwrap();
        let folder = dir.path().join(FOLDER);
        std::fs::write(folder.join("emitted-2026-01-01.ids"), "old\n").unwrap();
        std::fs::write(folder.join("emitted-2026-01-09.ids"), "a1\nb-2\n").unwrap();
        // Bytes no id has are left out.
        std::fs::write(folder.join("emitted-2026-01-10.ids"), "c3\nd4\u{0}").unwrap();
        let today = chrono::NaiveDate::from_ymd_opt(2026, 1, 10).unwrap();
        let ids = ledger
            .emitted_since(Duration::from_secs(3 * 86_400), today)
            .unwrap();
        assert_eq!(ids, ["a1", "b-2", "c3"]);
        assert!(!folder.join("emitted-2026-01-01.ids").exists());
    }

    #[test]
    fn appended_ids_are_read_back() {
        let dir = tempfile::tempdir().unwrap();
        let ledger = Ledger::open(dir.path()).unwrap();
        let mut log = ledger.log();
        log.append(["x1", "x2"].into_iter());
        log.append(std::iter::empty());
        drop(log);
        let ids = ledger
            .emitted_since(Duration::from_secs(86_400), chrono::Utc::now().date_naive())
            .unwrap();
        assert_eq!(ids, ["x1", "x2"]);
        assert_eq!(ledger.known_rules().unwrap(), None);
    }
}
