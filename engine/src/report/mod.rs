//! `vagt report`: the quarterly "cyber weather forecast" for the sector,
//! written from the alerts vagt sent (and, with an archive, what each
//! organisation's logs show), as one self-contained HTML file and an
//! ATT&CK Navigator layer.
//!
//! ```text
//!  alerts files ──► the period's and the one before's alerts ──► edition (TLP, organisation) ──► figures ──┬─► html
//!  archive ──► SQL: events per organisation and source, both periods ──► coverage ───────────────────────────┤
//!                                                                                                            └─► navigator layer
//! ```
//!
//! Editions: the sector edition counts only alerts at or below its TLP and
//! never shows a figure that fewer than three organisations make up
//! (small groups are merged, or hidden when still too small); an
//! organisation's edition adds that organisation's own figures beside
//! the sector's.

pub mod figures;
pub mod html;
pub mod navigator;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use chrono::NaiveDate;
use serde::Serialize;

use crate::alert::Alert;
use crate::catalog::Catalog;
use crate::warning::tlp::Tlp;
use figures::{Count, Figures};

/// The least number of organisations a figure of the sector edition may
/// stand for.
pub const MIN_ORGANISATIONS: usize = 3;

/// Why a report could not be written, by who is at fault.
#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    /// The user: an argument that cannot be used.
    #[error("{0}")]
    Usage(String),
    /// The user: an alerts file that cannot be read, naming its line.
    #[error("{path}:{line}: {message}")]
    Alerts {
        path: PathBuf,
        line: usize,
        message: String,
    },
    /// The machine: a file cannot be read or written.
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    /// The archive could not be queried for the coverage.
    #[error("archive: {0}")]
    Archive(String),
    /// A chart could not be drawn.
    #[error("chart: {0}")]
    Chart(String),
}

/// Which edition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Edition {
    /// For the whole sector.
    Sector,
    /// For one organisation: its own figures beside the sector's.
    Actor(String),
}

/// The report's language.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lang {
    Da,
    En,
}

/// What to write.
#[derive(Debug, Clone)]
pub struct ReportOptions {
    /// The period, both days included.
    pub from: NaiveDate,
    pub to: NaiveDate,
    pub alerts: Vec<PathBuf>,
    pub archive: Option<PathBuf>,
    pub edition: Edition,
    pub lang: Lang,
    /// The report's own marking; alerts above it are left out.
    pub tlp: Tlp,
}

impl ReportOptions {
    /// The period before, ending the day before this one: as many whole
    /// months when this one is whole months (a quarter's is the quarter
    /// before), else as many days.
    pub fn previous(&self) -> (NaiveDate, NaiveDate) {
        use chrono::Datelike;
        let to = self.from - chrono::Duration::days(1);
        let month_end = (self.to + chrono::Duration::days(1)).day() == 1;
        if self.from.day() == 1 && month_end {
            let months = (self.to.year() * 12 + self.to.month0() as i32)
                - (self.from.year() * 12 + self.from.month0() as i32)
                + 1;
            if let Some(from) = self
                .from
                .checked_sub_months(chrono::Months::new(months as u32))
            {
                return (from, to);
            }
        }
        let days = (self.to - self.from).num_days() + 1;
        (to - chrono::Duration::days(days - 1), to)
    }
}

/// A figure as an edition shows it: `None` when fewer organisations than
/// allowed make it up.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Shown(pub Option<u64>);

/// A row of a table: its key, this period and the one before.
#[derive(Debug, Clone, Serialize)]
pub struct Row {
    pub key: String,
    pub now: Shown,
    pub before: Shown,
}

/// A threat level: the category, this period's step and the one
/// before's (indices into [`figures::LEVELS`]); `None` when fewer than
/// three organisations' detections made it.
#[derive(Debug, Clone, Serialize)]
pub struct Level {
    pub category: String,
    pub now: Option<usize>,
    pub before: Option<usize>,
}

/// Events an organisation's source sent in each period (from the
/// archive).
#[derive(Debug, Clone, Serialize)]
pub struct Coverage {
    pub actor: String,
    pub source: String,
    pub now: u64,
    pub before: u64,
}

/// The coverage an edition shows: the sector's counts of organisations,
/// and an organisation's own sources.
#[derive(Debug, Clone, Serialize)]
pub struct CoverageView {
    /// Organisations that sent events, this period and the one before.
    pub organisations_now: u64,
    pub organisations_before: u64,
    /// Sources (organisation and input) that sent before and not now;
    /// `None` when one or two organisations' sources make the count.
    pub silent_sources: Option<u64>,
    /// The organisation's own sources (its edition only).
    pub own: Vec<Coverage>,
    /// Those of them that fell silent.
    pub own_silent: Vec<Coverage>,
}

/// The report's content, as the HTML and `--json` show it.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub from: NaiveDate,
    pub to: NaiveDate,
    pub previous_from: NaiveDate,
    pub previous_to: NaiveDate,
    pub edition: String,
    pub tlp: String,
    /// Alerts left out for being above the report's TLP, both periods.
    pub above_tlp: u64,
    pub levels: Vec<Level>,
    pub totals: Vec<Row>,
    pub by_tactic: Vec<Row>,
    pub by_technique: Vec<Row>,
    pub by_process: Vec<Row>,
    pub by_kind: Vec<Row>,
    pub top_rules: Vec<Row>,
    pub by_tlp: Vec<Row>,
    pub time_to_detect: Vec<Row>,
    pub detect_median_seconds: Option<f64>,
    pub detect_p95_seconds: Option<f64>,
    /// The organisations that had alerts this period (hidden when fewer
    /// than three).
    pub organisations_alerting: Shown,
    /// The organisation's own figures (its edition only).
    pub own: Option<Vec<Row>>,
    /// What the archive shows of the logs received (with `--archive`).
    pub coverage: Option<CoverageView>,
    /// The period's figures before any edition's hiding: for the
    /// navigator layer (techniques, counts) and for tests.
    #[serde(skip)]
    pub figures_now: Figures,
    #[serde(skip)]
    pub catalog: Arc<Catalog>,
    #[serde(skip)]
    pub lang: Lang,
}

/// Reads the alerts of `paths`, naming a file and line that do not read.
///
/// # Errors
/// A file cannot be read, or a line is not an alert.
pub fn read_alerts(paths: &[PathBuf]) -> Result<Vec<Alert>, ReportError> {
    let mut alerts = Vec::new();
    for path in paths {
        let text = std::fs::read_to_string(path).map_err(|source| ReportError::Io {
            path: path.clone(),
            source,
        })?;
        for (n, line) in text.lines().enumerate() {
            if line.trim().is_empty() {
                continue;
            }
            let alert: Alert = serde_json::from_str(line).map_err(|e| ReportError::Alerts {
                path: path.clone(),
                line: n + 1,
                message: format!("not an alert: {e}"),
            })?;
            alerts.push(alert);
        }
    }
    Ok(alerts)
}

/// An alert's TLP, an alert without one counting as AMBER (vagt's
/// default).
fn tlp_of(alert: &Alert) -> Tlp {
    alert.tlp.unwrap_or(Tlp::Amber)
}

/// Builds the report from `alerts` (and the coverage, counted apart).
pub fn build(
    options: &ReportOptions,
    alerts: &[Alert],
    catalog: Arc<Catalog>,
    coverage: Option<Vec<Coverage>>,
) -> Report {
    let (previous_from, previous_to) = options.previous();
    let within = |a: &Alert, from: NaiveDate, to: NaiveDate| {
        figures::day_of(a).is_some_and(|d| d >= from && d <= to)
    };
    let in_periods: Vec<&Alert> = alerts
        .iter()
        .filter(|a| within(a, options.from, options.to) || within(a, previous_from, previous_to))
        .collect();
    let above_tlp = in_periods
        .iter()
        .filter(|a| tlp_of(a) > options.tlp)
        .count() as u64;
    // The sector's figures count only what the sector may see: never above
    // GREEN, nor above the report's own marking.
    let sector_tlp = options.tlp.min(Tlp::Green);
    let select = |from, to, tlp: Tlp, actor: Option<&str>| -> Vec<&Alert> {
        in_periods
            .iter()
            .copied()
            .filter(|a| within(a, from, to) && tlp_of(a) <= tlp)
            .filter(|a| actor.is_none_or(|id| a.actor.as_deref() == Some(id)))
            .collect()
    };
    let now = figures::count(
        &select(options.from, options.to, sector_tlp, None),
        &catalog,
    );
    let before = figures::count(
        &select(previous_from, previous_to, sector_tlp, None),
        &catalog,
    );
    let own = match &options.edition {
        Edition::Sector => None,
        Edition::Actor(id) => {
            let mine_now = figures::count(
                &select(options.from, options.to, options.tlp, Some(id)),
                &catalog,
            );
            let mine_before = figures::count(
                &select(previous_from, previous_to, options.tlp, Some(id)),
                &catalog,
            );
            Some(own_rows(&mine_now, &mine_before))
        }
    };
    // A figure shows when enough organisations make it up (or it is 0).
    let shown = |c: Option<&Count>| match c {
        None => Shown(Some(0)),
        Some(c) if c.alerts == 0 || c.organisations.len() >= MIN_ORGANISATIONS => {
            Shown(Some(c.alerts))
        }
        Some(_) => Shown(None),
    };
    let rows = |a: &BTreeMap<String, Count>, b: &BTreeMap<String, Count>| -> Vec<Row> {
        let keys: BTreeSet<&String> = a.keys().chain(b.keys()).collect();
        keys.into_iter()
            .map(|k| Row {
                key: k.clone(),
                now: shown(a.get(k)),
                before: shown(b.get(k)),
            })
            .collect()
    };
    let totals = vec![
        Row {
            key: "detections".into(),
            now: shown(Some(&now.alerts)),
            before: shown(Some(&before.alerts)),
        },
        Row {
            key: "incidents".into(),
            now: shown(Some(&now.incidents)),
            before: shown(Some(&before.incidents)),
        },
        Row {
            key: "near_misses".into(),
            now: shown(Some(&now.near_misses)),
            before: shown(Some(&before.near_misses)),
        },
    ];
    let mut top_rules = rows(&now.by_rule, &before.by_rule);
    top_rules.retain(|r| r.now.0.is_some_and(|n| n > 0));
    top_rules.sort_by(|a, b| b.now.0.cmp(&a.now.0).then(a.key.cmp(&b.key)));
    top_rules.truncate(10);
    let detect_keys = ["≤ 1 s", "≤ 10 s", "≤ 1 min", "≤ 10 min", "≤ 1 h", "> 1 h"];
    let time_to_detect = detect_keys
        .iter()
        .enumerate()
        .map(|(i, k)| Row {
            key: (*k).to_string(),
            now: shown(Some(&now.time_to_detect[i])),
            before: shown(Some(&before.time_to_detect[i])),
        })
        .collect();
    // A level shows when enough organisations' detections make it (or
    // none do).
    let level = |f: &Figures, process: Option<&str>| -> Option<usize> {
        let empty = Count::default();
        let (incidents, at_risk, near) = match process {
            None => (&f.incidents, &f.alerts, f.near_misses.clone()),
            Some(p) => {
                let incidents = f.incidents_by_process.get(p).unwrap_or(&empty);
                let at_risk = f.by_process.get(p).unwrap_or(&empty);
                let mut near = at_risk.clone();
                near.alerts -= incidents.alerts.min(near.alerts);
                (incidents, at_risk, near)
            }
        };
        let orgs = at_risk.organisations.len();
        (orgs == 0 || orgs >= MIN_ORGANISATIONS)
            .then(|| figures::threat_level(incidents, &near, at_risk.alerts))
    };
    let levels: Vec<Level> = std::iter::once(None)
        .chain(catalog.processes().iter().map(|p| Some(p.id.as_str())))
        .map(|process| Level {
            category: process.unwrap_or("overall").to_string(),
            now: level(&now, process),
            before: level(&before, process),
        })
        .collect();
    let coverage = coverage.map(|all| {
        let organisations = |now: bool| {
            // Events of no known organisation are no organisation's.
            all.iter()
                .filter(|c| c.actor != crate::archive::layout::NO_ACTOR)
                .filter(|c| if now { c.now > 0 } else { c.before > 0 })
                .map(|c| c.actor.as_str())
                .collect::<BTreeSet<&str>>()
                .len() as u64
        };
        let silent = |c: &&Coverage| c.before > 0 && c.now == 0;
        let own: Vec<Coverage> = match &options.edition {
            Edition::Sector => Vec::new(),
            Edition::Actor(id) => all.iter().filter(|c| &c.actor == id).cloned().collect(),
        };
        CoverageView {
            organisations_now: organisations(true),
            organisations_before: organisations(false),
            silent_sources: {
                let orgs: BTreeSet<&str> = all
                    .iter()
                    .filter(silent)
                    .map(|c| c.actor.as_str())
                    .collect();
                (orgs.is_empty() || orgs.len() >= MIN_ORGANISATIONS)
                    .then(|| all.iter().filter(silent).count() as u64)
            },
            own_silent: own.iter().filter(silent).cloned().collect(),
            own,
        }
    });
    let organisations = now.alerts.organisations.len() as u64;
    Report {
        from: options.from,
        to: options.to,
        previous_from,
        previous_to,
        edition: match &options.edition {
            Edition::Sector => "sector".into(),
            Edition::Actor(id) => id.clone(),
        },
        tlp: figures::tlp_name(options.tlp),
        above_tlp,
        levels,
        totals,
        by_tactic: rows(&now.by_tactic, &before.by_tactic),
        by_technique: rows(&now.by_technique, &before.by_technique),
        by_process: rows(&now.by_process, &before.by_process),
        by_kind: protect_partition(merged_kinds(&now.by_kind, &before.by_kind)),
        top_rules,
        by_tlp: protect_partition(rows(&now.by_tlp, &before.by_tlp)),
        time_to_detect,
        // A median of one or two organisations' alerts is theirs.
        detect_median_seconds: now
            .detect_median
            .filter(|_| detect_orgs(&now) >= MIN_ORGANISATIONS),
        detect_p95_seconds: now
            .detect_p95
            .filter(|_| detect_orgs(&now) >= MIN_ORGANISATIONS),
        organisations_alerting: Shown(
            (organisations as usize >= MIN_ORGANISATIONS || organisations == 0)
                .then_some(organisations),
        ),
        own,
        coverage,
        figures_now: now,
        catalog,
        lang: options.lang,
    }
}

/// The organisations behind the time-to-detect figures.
fn detect_orgs(f: &Figures) -> usize {
    f.time_to_detect
        .iter()
        .flat_map(|c| c.organisations.iter())
        .collect::<BTreeSet<_>>()
        .len()
}

/// Rows that split a shown total (each alert in exactly one, as by TLP
/// or kind): where one row of a period is hidden, the smallest other
/// one is hidden too, so that the total less the shown rows does not
/// give the hidden one away.
fn protect_partition(mut rows: Vec<Row>) -> Vec<Row> {
    for now in [true, false] {
        let get = |r: &Row| if now { r.now } else { r.before };
        if rows.iter().filter(|r| get(r).0.is_none()).count() != 1 {
            continue;
        }
        let smallest = (0..rows.len())
            .filter_map(|i| get(&rows[i]).0.filter(|n| *n > 0).map(|n| (n, i)))
            .min();
        if let Some((_, i)) = smallest {
            if now {
                rows[i].now = Shown(None);
            } else {
                rows[i].before = Shown(None);
            }
        }
    }
    rows
}

/// The organisation's own rows: no hiding, it is their own.
fn own_rows(now: &Figures, before: &Figures) -> Vec<Row> {
    let plain = |c: &Count| Shown(Some(c.alerts));
    let mut rows = vec![
        Row {
            key: "detections".into(),
            now: plain(&now.alerts),
            before: plain(&before.alerts),
        },
        Row {
            key: "incidents".into(),
            now: plain(&now.incidents),
            before: plain(&before.incidents),
        },
        Row {
            key: "near_misses".into(),
            now: plain(&now.near_misses),
            before: plain(&before.near_misses),
        },
    ];
    let keys: BTreeSet<&String> = now
        .by_process
        .keys()
        .chain(before.by_process.keys())
        .collect();
    let empty = Count::default();
    rows.extend(keys.into_iter().map(|k| Row {
        key: format!("process:{k}"),
        now: plain(now.by_process.get(k).unwrap_or(&empty)),
        before: plain(before.by_process.get(k).unwrap_or(&empty)),
    }));
    rows
}

/// The kinds of organisation in the order groups are merged: neighbours
/// first.
const KIND_ORDER: [&str; 6] = [
    "region",
    "hospital",
    "municipality",
    "gp_clinic",
    "supplier",
    "unknown",
];

/// Rows by kind of organisation. Kinds of fewer than three organisations
/// are merged with their neighbours (in [`KIND_ORDER`]) until each group
/// has three; a group whose figure still stands for fewer is hidden.
fn merged_kinds(now: &BTreeMap<String, Count>, before: &BTreeMap<String, Count>) -> Vec<Row> {
    let orgs = |k: &str| -> BTreeSet<&String> {
        [now, before]
            .iter()
            .filter_map(|m| m.get(k))
            .flat_map(|c| c.organisations.iter())
            .collect()
    };
    let mut groups: Vec<Vec<&str>> = Vec::new();
    let mut open: Vec<&str> = Vec::new();
    let mut open_orgs = BTreeSet::new();
    for kind in KIND_ORDER.iter().copied().filter(|k| !orgs(k).is_empty()) {
        open.push(kind);
        open_orgs.extend(orgs(kind));
        if open_orgs.len() >= MIN_ORGANISATIONS {
            groups.push(std::mem::take(&mut open));
            open_orgs.clear();
        }
    }
    if !open.is_empty() {
        match groups.last_mut() {
            Some(last) => last.extend(open),
            None => groups.push(open),
        }
    }
    let sum = |m: &BTreeMap<String, Count>, kinds: &[&str]| {
        let mut total = Count::default();
        for c in kinds.iter().filter_map(|k| m.get(*k)) {
            total.alerts += c.alerts;
            total.organisations.extend(c.organisations.iter().cloned());
        }
        total
    };
    let show = |c: &Count| {
        Shown((c.alerts == 0 || c.organisations.len() >= MIN_ORGANISATIONS).then_some(c.alerts))
    };
    groups
        .into_iter()
        .map(|kinds| Row {
            key: kinds.join("+"),
            now: show(&sum(now, &kinds)),
            before: show(&sum(before, &kinds)),
        })
        .collect()
}

/// Counts the events per organisation and source of both periods in the
/// archive at `archive` (a folder or an `s3://` address), with SQL.
///
/// # Errors
/// The archive cannot be queried.
pub async fn coverage(
    options: &ReportOptions,
    archive: &Path,
    catalog: Arc<Catalog>,
) -> Result<Vec<Coverage>, ReportError> {
    let (pf, pt) = options.previous();
    let query = format!(
        "SELECT actor, source, \
         sum(CASE WHEN date >= '{f}' AND date <= '{t}' THEN 1 ELSE 0 END) AS now, \
         sum(CASE WHEN date >= '{pf}' AND date <= '{pt}' THEN 1 ELSE 0 END) AS before \
         FROM events WHERE date >= '{pf}' AND date <= '{t}' GROUP BY actor, source ORDER BY actor, source",
        f = options.from,
        t = options.to,
    );
    let scratch = tempfile::tempdir().map_err(|source| ReportError::Io {
        path: std::env::temp_dir(),
        source,
    })?;
    let answer = crate::sql::query(&query, &[archive.to_path_buf()], catalog, scratch.path())
        .await
        .map_err(|e| ReportError::Archive(e.to_string()))?;
    let mut rows = Vec::new();
    for batch in &answer.batches {
        let json = crate::sql::batch_rows(batch);
        for row in json {
            rows.push(Coverage {
                actor: row["actor"].as_str().unwrap_or_default().to_string(),
                source: row["source"].as_str().unwrap_or_default().to_string(),
                now: row["now"].as_u64().unwrap_or(0),
                before: row["before"].as_u64().unwrap_or(0),
            });
        }
    }
    Ok(rows)
}

/// What [`write`] wrote.
#[derive(Debug)]
pub struct Written {
    /// The Navigator layer's path.
    pub layer: PathBuf,
    /// Alerts of the two periods read.
    pub alerts: u64,
    /// Of them, above the report's TLP and left out.
    pub above_tlp: u64,
}

/// Writes the report to `out` (and the Navigator layer beside it, and the
/// figures as JSON to `json`), each aside and renamed.
///
/// # Errors
/// The alerts or the archive cannot be read, or a file written.
pub async fn write(
    options: &ReportOptions,
    catalog: Arc<Catalog>,
    out: &Path,
    json: Option<&Path>,
) -> Result<Written, ReportError> {
    let alerts = read_alerts(&options.alerts)?;
    let coverage = match &options.archive {
        Some(archive) => Some(coverage(options, archive, catalog.clone()).await?),
        None => None,
    };
    let report = build(options, &alerts, catalog, coverage);
    let page = html::render(&report)?;
    let layer_path = out.with_extension("layer.json");
    let layer = serde_json::to_string_pretty(&navigator::layer(&report)).unwrap_or_default();
    write_aside(out, page.as_bytes())?;
    write_aside(&layer_path, layer.as_bytes())?;
    if let Some(path) = json {
        let figures = serde_json::to_vec_pretty(&report).unwrap_or_default();
        write_aside(path, &figures)?;
    }
    let (pf, _) = options.previous();
    let counted = alerts
        .iter()
        .filter(|a| figures::day_of(a).is_some_and(|d| d >= pf && d <= options.to))
        .count() as u64;
    Ok(Written {
        layer: layer_path,
        alerts: counted,
        above_tlp: report.above_tlp,
    })
}

/// Writes `bytes` to `path` through a temporary file in its folder.
fn write_aside(path: &Path, bytes: &[u8]) -> Result<(), ReportError> {
    use std::io::Write;
    let io = |source| ReportError::Io {
        path: path.to_path_buf(),
        source,
    };
    let folder = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let mut file = tempfile::NamedTempFile::new_in(folder).map_err(io)?;
    // A report is for reading: not only by its writer.
    std::fs::set_permissions(
        file.path(),
        std::os::unix::fs::PermissionsExt::from_mode(0o644),
    )
    .map_err(io)?;
    file.write_all(bytes).map_err(io)?;
    file.as_file().sync_all().map_err(io)?;
    file.persist(path).map_err(|e| io(e.error))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_hidden_row_of_a_partition_takes_the_smallest_other_with_it() {
        let row = |key: &str, now: Option<u64>| Row {
            key: key.into(),
            now: Shown(now),
            before: Shown(Some(5)),
        };
        let rows = protect_partition(vec![
            row("a", None),
            row("b", Some(7)),
            row("c", Some(3)),
            row("d", Some(0)),
        ]);
        let now: Vec<Option<u64>> = rows.iter().map(|r| r.now.0).collect();
        assert_eq!(now, [None, Some(7), None, Some(0)]);
        assert!(rows.iter().all(|r| r.before.0 == Some(5)));
    }
}
