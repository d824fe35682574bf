//! `vagt report` over the generated fixture of two quarters of alerts
//! (`fixtures/report/alerts.jsonl`, written by
//! `cargo run -p vagt-engine --example report_fixture`): its figures
//! against an independent count of the same alerts, the sector edition's
//! hiding (small groups, alerts above its TLP), the Navigator layer's
//! format, and the page rendered by headless Chromium (which `.ci/run`
//! installs) without console errors.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

use crate::cli::repo;
use crate::support::json_lines;

const TACTICS: [&str; 14] = [
    "reconnaissance",
    "resource-development",
    "initial-access",
    "execution",
    "persistence",
    "privilege-escalation",
    "defense-evasion",
    "credential-access",
    "discovery",
    "lateral-movement",
    "collection",
    "command-and-control",
    "exfiltration",
    "impact",
];

fn fixture() -> PathBuf {
    repo().join("fixtures/report/alerts.jsonl")
}

/// `vagt report` for Q3 2026 of the fixture with `extra` flags into
/// `dir`: the figures (`--json`), and the paths of the page and the layer.
fn report(dir: &Path, name: &str, extra: &[&str]) -> (Value, PathBuf, PathBuf) {
    let mut args = vec!["--from", "2026-07-01", "--to", "2026-09-30"];
    args.extend_from_slice(extra);
    report_of(dir, name, &fixture(), &args)
}

/// `vagt report` of `alerts` with `args` into `dir`.
fn report_of(dir: &Path, name: &str, alerts: &Path, args: &[&str]) -> (Value, PathBuf, PathBuf) {
    let out = dir.join(format!("{name}.html"));
    let json = dir.join(format!("{name}.json"));
    let run = Command::new(env!("CARGO_BIN_EXE_vagt"))
        .arg("report")
        .arg("--alerts")
        .arg(alerts)
        .arg("--catalog")
        .arg(repo().join("fixtures/catalog.yaml"))
        .arg("--out")
        .arg(&out)
        .arg("--json")
        .arg(&json)
        .args(args)
        .output()
        .unwrap();
    assert!(
        run.status.success(),
        "{}",
        String::from_utf8_lossy(&run.stderr)
    );
    let figures = serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    (figures, out.clone(), out.with_extension("layer.json"))
}

/// Alerts and the organisations behind them, counted independently.
#[derive(Debug, Default, Clone)]
struct Tally {
    alerts: u64,
    orgs: BTreeSet<String>,
}

impl Tally {
    fn add(&mut self, org: &str) {
        self.alerts += 1;
        self.orgs.insert(org.to_string());
    }

    /// As the sector edition shows it.
    fn shown(&self) -> Value {
        if self.alerts == 0 || self.orgs.len() >= 3 {
            Value::from(self.alerts)
        } else {
            Value::Null
        }
    }
}

fn tlp_rank(text: &str) -> usize {
    let bare = text.trim_start_matches("TLP:").to_ascii_lowercase();
    ["clear", "green", "amber", "amber+strict", "red"]
        .iter()
        .position(|t| *t == bare)
        .unwrap_or(2)
}

/// The independent count of the alerts of days `from..=to` at or below
/// TLP rank `tlp`, of `actor` only when given.
fn tally(
    alerts: &[Value],
    (from, to): (&str, &str),
    tlp: usize,
    actor: Option<&str>,
) -> BTreeMap<String, BTreeMap<String, Tally>> {
    let mut t: BTreeMap<String, BTreeMap<String, Tally>> = BTreeMap::new();
    for a in alerts {
        let day = &a["event_time"]["first"].as_str().unwrap()[..10];
        if day < from || day > to || tlp_rank(a["tlp"].as_str().unwrap()) > tlp {
            continue;
        }
        let org = a["actor"].as_str().unwrap();
        if actor.is_some_and(|id| id != org) {
            continue;
        }
        let mut add = |figure: &str, key: &str| {
            t.entry(figure.into())
                .or_default()
                .entry(key.into())
                .or_default()
                .add(org)
        };
        let processes = a["critical_processes"].as_array().unwrap();
        let severe = ["high", "critical"].contains(&a["severity"].as_str().unwrap());
        add("totals", "detections");
        if !processes.is_empty() && severe {
            add("totals", "incidents");
        } else if !processes.is_empty() {
            add("totals", "near_misses");
        }
        for p in processes {
            add("by_process", p.as_str().unwrap());
        }
        for tag in a["rule"]["tags"].as_array().unwrap() {
            let tag = tag
                .as_str()
                .unwrap()
                .trim_start_matches("attack.")
                .replace('_', "-");
            if TACTICS.contains(&tag.as_str()) {
                add("by_tactic", &tag);
            }
        }
        for technique in a["rule"]["attack_techniques"].as_array().unwrap() {
            add("by_technique", technique.as_str().unwrap());
        }
        add("by_rule", a["rule"]["title"].as_str().unwrap());
    }
    t
}

/// Checks the report's rows of `figure` against the tally of both periods.
fn check_rows(
    report: &Value,
    figure: &str,
    now: &BTreeMap<String, Tally>,
    before: &BTreeMap<String, Tally>,
    failures: &mut Vec<String>,
) {
    let empty = Tally::default();
    let rows = report[figure].as_array().unwrap();
    let keys: BTreeSet<&String> = now.keys().chain(before.keys()).collect();
    let reported: BTreeSet<String> = rows
        .iter()
        .map(|r| r["key"].as_str().unwrap().to_string())
        .collect();
    if figure != "top_rules" && reported != keys.iter().map(|k| (*k).clone()).collect() {
        failures.push(format!("{figure}: keys {reported:?}, expected {keys:?}"));
    }
    for row in rows {
        let key = row["key"].as_str().unwrap();
        let expect_now = now.get(key).unwrap_or(&empty).shown();
        let expect_before = before.get(key).unwrap_or(&empty).shown();
        if row["now"] != expect_now || row["before"] != expect_before {
            failures.push(format!(
                "{figure} {key}: {row}, expected now {expect_now} before {expect_before}"
            ));
        }
    }
}

#[test]
fn the_sector_editions_figures_equal_an_independent_count_hiding_small_groups_and_above_tlp() {
    let dir = tempfile::tempdir().unwrap();
    let (report, page, _) = report(dir.path(), "sector", &["--lang", "en"]);
    let alerts = json_lines(&fixture());
    let green = tlp_rank("green");
    let now = tally(&alerts, ("2026-07-01", "2026-09-30"), green, None);
    let before = tally(&alerts, ("2026-04-01", "2026-06-30"), green, None);
    assert_eq!(report["previous_from"], "2026-04-01");
    assert_eq!(report["tlp"], "green");
    let mut failures = Vec::new();
    for figure in ["totals", "by_process", "by_tactic", "by_technique"] {
        let empty = BTreeMap::new();
        check_rows(
            &report,
            figure,
            now.get(figure).unwrap_or(&empty),
            before.get(figure).unwrap_or(&empty),
            &mut failures,
        );
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));

    // The small groups are there, and hidden: a figure of one or two
    // organisations shows as null, never as its count.
    let hidden: Vec<&Value> = ["by_process", "by_tactic", "by_technique"]
        .iter()
        .flat_map(|f| report[f].as_array().unwrap())
        .filter(|r| r["now"].is_null())
        .collect();
    assert!(!hidden.is_empty(), "the fixture has small groups");
    // Kinds of organisation are merged until each group has three.
    for row in report["by_kind"].as_array().unwrap() {
        assert!(
            row["key"].as_str().unwrap().contains('+'),
            "{row}: every kind has two organisations"
        );
    }
    // A level shows only where three or more organisations' detections make it.
    for level in report["levels"].as_array().unwrap() {
        let category = level["category"].as_str().unwrap();
        if category == "overall" {
            continue;
        }
        let orgs = now["by_process"].get(category).map_or(0, |t| t.orgs.len());
        assert_eq!(level["now"].is_null(), (1..3).contains(&orgs), "{level}");
    }

    // Nothing above TLP:GREEN: the red-team rule's alerts are all RED.
    let above = alerts
        .iter()
        .filter(|a| {
            let day = &a["event_time"]["first"].as_str().unwrap()[..10];
            ("2026-04-01"..="2026-09-30").contains(&day)
                && tlp_rank(a["tlp"].as_str().unwrap()) > green
        })
        .count() as u64;
    assert_eq!(report["above_tlp"], above);
    let html = std::fs::read_to_string(&page).unwrap();
    assert!(alerts
        .iter()
        .any(|a| a["rule"]["title"] == "Red team exercise"));
    assert!(!html.contains("Red team exercise"));
    assert!(!html.contains("T1087"), "its technique is not shown either");
    assert!(html.contains("TLP:GREEN"));
    // Self-contained: no scripts, nothing loaded from anywhere.
    for banned in ["<script", "src=", "<link", "@import", "url("] {
        assert!(!html.contains(banned), "{banned}");
    }
}

#[test]
fn an_organisations_edition_adds_its_own_figures_beside_the_sectors() {
    let dir = tempfile::tempdir().unwrap();
    let (sector, _, _) = report(dir.path(), "sector", &[]);
    let (own, page, _) = report(dir.path(), "nord", &["--edition", "rnv-hospital-nord"]);
    assert_eq!(own["tlp"], "amber+strict");
    for figure in ["totals", "by_process", "by_technique", "levels"] {
        assert_eq!(
            own[figure], sector[figure],
            "{figure}: the sector's figures are the same"
        );
    }
    let alerts = json_lines(&fixture());
    let strict = tlp_rank("amber+strict");
    let mine = tally(
        &alerts,
        ("2026-07-01", "2026-09-30"),
        strict,
        Some("rnv-hospital-nord"),
    );
    let rows = own["own"].as_array().unwrap();
    let row = |key: &str| rows.iter().find(|r| r["key"] == key).unwrap()["now"].clone();
    assert_eq!(row("detections"), mine["totals"]["detections"].alerts);
    assert_eq!(row("incidents"), mine["totals"]["incidents"].alerts);
    for (process, t) in &mine["by_process"] {
        assert_eq!(row(&format!("process:{process}")), t.alerts, "{process}");
    }
    // In Danish by default.
    let html = std::fs::read_to_string(page).unwrap();
    assert!(html.contains("Cybervejrudsigt") && html.contains("Egen organisation"));
    assert!(html.contains("Hospital Nord"));
}

#[test]
fn the_navigator_layer_has_the_formats_required_fields_and_the_shown_techniques() {
    let dir = tempfile::tempdir().unwrap();
    let (report, _, layer) = report(dir.path(), "sector", &[]);
    let layer: Value = serde_json::from_str(&std::fs::read_to_string(layer).unwrap()).unwrap();
    assert!(layer["name"].as_str().is_some_and(|n| !n.is_empty()));
    assert_eq!(layer["versions"]["layer"], "4.5");
    assert!(layer["versions"]["attack"].is_string() && layer["versions"]["navigator"].is_string());
    assert_eq!(layer["domain"], "enterprise-attack");
    // T followed by four digits, then optionally a dot and three.
    let is_id = |t: &str| {
        let digits = |s: &str, n: usize| s.len() == n && s.bytes().all(|b| b.is_ascii_digit());
        match t
            .strip_prefix('T')
            .map(|r| r.split_once('.').unwrap_or((r, "")))
        {
            Some((main, "")) => digits(main, 4) && !t.ends_with('.'),
            Some((main, sub)) => digits(main, 4) && digits(sub, 3),
            None => false,
        }
    };
    let mut scored = BTreeMap::new();
    for t in layer["techniques"].as_array().unwrap() {
        let technique = t["techniqueID"].as_str().unwrap();
        assert!(is_id(technique), "{t}");
        assert!(t["score"].is_u64(), "{t}");
        if let Some(tactic) = t.get("tactic") {
            assert!(TACTICS.contains(&tactic.as_str().unwrap()), "{t}");
        }
        scored.insert(technique.to_string(), t["score"].as_u64().unwrap());
    }
    let shown: BTreeMap<String, u64> = report["by_technique"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|r| {
            Some((
                r["key"].as_str()?.to_string(),
                r["now"].as_u64().filter(|n| *n > 0)?,
            ))
        })
        .collect();
    assert_eq!(scored, shown);
    assert!(layer["gradient"]["colors"]
        .as_array()
        .is_some_and(|c| c.len() >= 2));
}

/// The Chromium binary on PATH.
fn chromium() -> &'static str {
    ["chromium", "chromium-browser"]
        .into_iter()
        .find(|b| {
            Command::new(b)
                .arg("--version")
                .output()
                .is_ok_and(|o| o.status.success())
        })
        .expect("chromium on PATH: `.ci/run` installs it (Debian package `chromium`)")
}

#[test]
fn the_report_renders_in_headless_chromium_without_console_errors() {
    let dir = tempfile::tempdir().unwrap();
    for (name, extra) in [
        ("sector", vec![]),
        (
            "nord",
            vec!["--edition", "rnv-hospital-nord", "--lang", "en"],
        ),
    ] {
        let (_, page, _) = report(dir.path(), name, &extra);
        let shot = dir.path().join(format!("{name}.png"));
        let out = Command::new(chromium())
            .args([
                "--headless=new",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-dev-shm-usage",
                "--hide-scrollbars",
            ])
            .args([
                "--enable-logging=stderr",
                "--v=0",
                "--window-size=1100,2400",
            ])
            .arg(format!(
                "--user-data-dir={}",
                dir.path().join(format!("profile-{name}")).display()
            ))
            .arg(format!("--screenshot={}", shot.display()))
            .arg(format!("file://{}", page.display()))
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "{stderr}");
        let console: Vec<&str> = stderr.lines().filter(|l| l.contains("CONSOLE")).collect();
        assert!(console.is_empty(), "console messages: {console:?}");
        let png = std::fs::read(&shot).unwrap();
        assert!(
            png.starts_with(b"\x89PNG") && png.len() > 20_000,
            "{name}: a screenshot of the page"
        );
    }
}

#[test]
fn with_the_archive_the_coverage_counts_organisations_and_sources_that_fell_silent() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let (archive, alerts) = crate::archive::archived_default_run(d);
    // The default fixtures span 2025-03-13 and 2025-03-14: the report is
    // of the 14th, beside the 13th.
    let report = |edition: &str| -> Value {
        let archive = archive.to_str().unwrap();
        let args = [
            "--from",
            "2025-03-14",
            "--to",
            "2025-03-14",
            "--edition",
            edition,
            "--archive",
            archive,
        ];
        report_of(d, edition, &alerts, &args).0
    };
    // Independently: the archive's rows per organisation, source and day.
    let out = Command::new(env!("CARGO_BIN_EXE_vagt"))
        .args([
            "sql",
            "SELECT actor, source, date, count(*) AS n FROM events GROUP BY actor, source, date",
        ])
        .arg(&archive)
        .output()
        .unwrap();
    assert!(out.status.success());
    let mut days: BTreeMap<(String, String), BTreeSet<String>> = BTreeMap::new();
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        let row: Value = serde_json::from_str(line).unwrap();
        days.entry((
            row["actor"].as_str().unwrap().into(),
            row["source"].as_str().unwrap().into(),
        ))
        .or_default()
        .insert(row["date"].as_str().unwrap().into());
    }
    let organisations = |day: &str| {
        days.iter()
            .filter(|((actor, _), d)| actor != "_none" && d.contains(day))
            .map(|((actor, _), _)| actor.clone())
            .collect::<BTreeSet<String>>()
            .len() as u64
    };
    let silent: Vec<&(String, String)> = days
        .iter()
        .filter(|(_, d)| d.contains("2025-03-13") && !d.contains("2025-03-14"))
        .map(|(k, _)| k)
        .collect();
    let sector = report("sector");
    let coverage = &sector["coverage"];
    assert_eq!(
        coverage["organisations_now"],
        organisations("2025-03-14"),
        "{coverage}"
    );
    assert_eq!(
        coverage["organisations_before"],
        organisations("2025-03-13"),
        "{coverage}"
    );
    assert!(coverage["organisations_before"].as_u64().unwrap() > 0);
    // Shown only when three or more organisations' sources make it.
    let silent_orgs: BTreeSet<&String> = silent.iter().map(|(actor, _)| actor).collect();
    let expected = if silent_orgs.is_empty() || silent_orgs.len() >= 3 {
        Value::from(silent.len() as u64)
    } else {
        Value::Null
    };
    assert_eq!(coverage["silent_sources"], expected, "{coverage}");
    assert_eq!(
        coverage["own"],
        serde_json::json!([]),
        "the sector edition names no source"
    );
    // An organisation's edition lists its own sources.
    let region = report("rnv-region");
    let own: BTreeSet<String> = region["coverage"]["own"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["source"].as_str().unwrap().to_string())
        .collect();
    let expected: BTreeSet<String> = days
        .keys()
        .filter(|(actor, _)| actor == "rnv-region")
        .map(|(_, source)| source.clone())
        .collect();
    assert!(!expected.is_empty());
    assert_eq!(own, expected);
}
