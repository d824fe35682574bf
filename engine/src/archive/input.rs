//! What an archive input reads: which organisations and which time,
//! and what its scan did.

use std::path::PathBuf;

use serde::Deserialize;

use super::layout::{self, ArchiveError, PartitionFilter};

/// An archive input: which organisations and which time.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ArchiveInput {
    /// The archive's root folder.
    pub dir: PathBuf,
    /// From this time on: a date (`2026-03-01`), a time
    /// (`2026-03-01T12:00:00Z`), or a span back from now (`7d`, `12h`).
    #[serde(default)]
    pub since: Option<String>,
    /// Up to this time (a date includes its whole day).
    #[serde(default)]
    pub until: Option<String>,
    /// Only these organisations (`_none`: events of no known one); all
    /// when empty.
    #[serde(default)]
    pub actors: Vec<String>,
    /// The object store to read instead of `dir`, with its settings (a
    /// `dir` of `s3://bucket/prefix` reads that store with the settings
    /// of the environment).
    #[serde(default)]
    pub store: Option<super::StoreConfig>,
}

/// What a scan did, for the summary.
#[derive(Debug, Default, Clone, PartialEq, Eq, serde::Serialize)]
pub struct ScanReport {
    /// Files searched (only those of the asked partitions).
    pub files: u64,
    /// Their bytes.
    pub bytes: u64,
    /// Files skipped, each with the reason.
    pub skipped: Vec<String>,
    /// Rows read.
    pub rows: u64,
}

/// A time bound in milliseconds since the epoch.
fn bound(what: &'static str, value: &str, end_of_day: bool) -> Result<i64, ArchiveError> {
    let bad = || ArchiveError::BadTime {
        what,
        value: value.to_string(),
    };
    let value = value.trim();
    if let Ok(t) = chrono::DateTime::parse_from_rfc3339(value) {
        return Ok(t.timestamp_millis());
    }
    if let Ok(day) = chrono::NaiveDate::parse_from_str(value, "%Y-%m-%d") {
        let t = if end_of_day {
            day.and_hms_milli_opt(23, 59, 59, 999)
        } else {
            day.and_hms_opt(0, 0, 0)
        };
        return t.map(|t| t.and_utc().timestamp_millis()).ok_or_else(bad);
    }
    if let Ok(span) = humantime::parse_duration(value) {
        let now = chrono::Utc::now().timestamp_millis();
        return Ok(now - i64::try_from(span.as_millis()).map_err(|_| bad())?);
    }
    Err(bad())
}

fn day_of(millis: i64) -> Option<String> {
    chrono::DateTime::from_timestamp_millis(millis).map(|t| t.format("%Y-%m-%d").to_string())
}

impl ArchiveInput {
    /// The time range, as milliseconds.
    ///
    /// # Errors
    /// A bound is neither a date, a time nor a span.
    pub fn range(&self) -> Result<(Option<i64>, Option<i64>), ArchiveError> {
        let since = self
            .since
            .as_deref()
            .map(|s| bound("since", s, false))
            .transpose()?;
        let until = self
            .until
            .as_deref()
            .map(|u| bound("until", u, true))
            .transpose()?;
        Ok((since, until))
    }

    /// The input's name in alerts' sources and dead letters.
    pub fn name(&self) -> String {
        match &self.store {
            Some(store) => format!("archive:{}", store.url),
            None => format!("archive:{}", self.dir.display()),
        }
    }

    /// The partitions' filter for the time range `(since, until)` (see
    /// [`ArchiveInput::range`]).
    pub(crate) fn filter(&self, (since, until): (Option<i64>, Option<i64>)) -> PartitionFilter {
        PartitionFilter {
            actors: self.actors.clone(),
            from_date: since.and_then(day_of),
            to_date: until.and_then(day_of),
        }
    }

    /// Bytes of the files a scan reads (for a progress bar), if they can
    /// be listed.
    pub fn selected_bytes(&self) -> Option<u64> {
        if self.store.is_some() || self.dir.to_str().is_some_and(super::is_store_url) {
            return None;
        }
        let files = layout::find_files(&self.dir, &self.filter(self.range().ok()?)).ok()?;
        Some(
            files
                .iter()
                .filter_map(|f| std::fs::metadata(&f.path).ok())
                .map(|m| m.len())
                .sum(),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bounds_are_dates_times_or_spans() {
        assert_eq!(
            bound("since", "2026-03-01", false).unwrap(),
            1_772_323_200_000
        );
        assert_eq!(
            bound("until", "2026-03-01", true).unwrap(),
            1_772_323_200_000 + 86_400_000 - 1
        );
        assert_eq!(
            bound("since", "2026-03-01T01:00:00+01:00", false).unwrap(),
            1_772_323_200_000
        );
        let now = chrono::Utc::now().timestamp_millis();
        let week = bound("since", "7d", false).unwrap();
        assert!((now - week - 7 * 86_400_000).abs() < 60_000);
        let e = bound("since", "yesterday", false).unwrap_err().to_string();
        assert!(e.contains("since 'yesterday'"), "{e}");
    }
}
