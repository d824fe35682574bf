//! `vagt run --archive` and `vagt hunt`: hunting the archive gives the
//! stream's alerts, a hunt reads only the partitions it asks for, a
//! damaged file is skipped and named, an earlier run's unfinished files
//! are removed and never read.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::cli::{corpora, repo};
use crate::support::json_lines;

/// Runs vagt with `args`; fails unless it succeeds. Its `--stats` summary.
fn vagt_ok(args: &[&str], stats: &Path) -> serde_json::Value {
    vagt_ok_with(args, stats, &[])
}

/// [`vagt_ok`] with `env` added to the environment.
pub fn vagt_ok_with(args: &[&str], stats: &Path, env: &[(&str, String)]) -> serde_json::Value {
    let out = Command::new(env!("CARGO_BIN_EXE_vagt"))
        .args(args)
        .arg("--stats")
        .arg(stats)
        .env_remove("VAGT_FIXTURES")
        .envs(env.iter().map(|(k, v)| (k, v)))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "vagt {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_str(&std::fs::read_to_string(stats).unwrap()).unwrap()
}

fn ids(path: &Path) -> BTreeSet<String> {
    json_lines(path)
        .iter()
        .map(|a| a["id"].as_str().unwrap().to_string())
        .collect()
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// The committed files under `dir` (recursively).
fn parquet_files(dir: &Path) -> Vec<PathBuf> {
    walkdir::WalkDir::new(dir)
        .into_iter()
        .filter_map(Result::ok)
        .map(|e| e.into_path())
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with("part-") && n.ends_with(".parquet"))
        })
        .collect()
}

#[test]
fn hunting_the_archive_gives_the_streams_alert_ids_with_windowed_rules() {
    let dir = tempfile::tempdir().unwrap();
    let (archive, streamed, hunted) = (
        dir.path().join("archive"),
        dir.path().join("streamed.jsonl"),
        dir.path().join("hunted.jsonl"),
    );
    let sample = corpora().join("windows-otrf-sample.jsonl.gz");
    let sigmahq = corpora().join("sigmahq/rules/windows");
    let windows = repo().join("fixtures/windows");
    let catalog = repo().join("fixtures/catalog.yaml");
    let rules = [
        s(&sigmahq).to_string(),
        s(&windows.join("rules")).to_string(),
        s(&windows.join("chained")).to_string(),
    ];
    let mut run: Vec<&str> = vec!["run", "--rules"];
    run.extend(rules.iter().map(String::as_str));
    let events = windows.join("events.jsonl");
    run.extend([
        "--input",
        s(&sample),
        s(&events),
        "--catalog",
        s(&catalog),
        "--archive",
        s(&archive),
        "--output",
        s(&streamed),
    ]);
    let stream = vagt_ok(&run, &dir.path().join("stream.json"));
    // 120,000 OTRF events and 4,180 of the windows fixture.
    assert_eq!(stream["events"], 124_180);
    assert_eq!(stream["archive"]["rows"], 124_180);
    assert_eq!(
        stream["archive"]["files"].as_u64().unwrap(),
        parquet_files(&archive).len() as u64
    );

    let mut hunt: Vec<&str> = vec!["hunt", s(&archive), "--rules"];
    hunt.extend(rules.iter().map(String::as_str));
    hunt.extend(["--catalog", s(&catalog), "--output", s(&hunted)]);
    let summary = vagt_ok(&hunt, &dir.path().join("hunt.json"));
    let scan = &summary["archive_scans"][format!("archive:{}", archive.display())];
    assert_eq!(scan["rows"], 124_180);
    assert_eq!(scan["skipped"].as_array().unwrap().len(), 0);

    let (streamed_ids, hunted_ids) = (ids(&streamed), ids(&hunted));
    // 621 OTRF alerts and the windows fixture's (8 windowed, plus its
    // base rules' own).
    assert!(streamed_ids.len() > 621 + 8, "{}", streamed_ids.len());
    let windowed = json_lines(&hunted)
        .iter()
        .filter(|a| a["group"].is_object())
        .count();
    assert!(windowed >= 8, "windowed alerts in the hunt: {windowed}");
    assert_eq!(streamed_ids, hunted_ids);
}

/// The default run (the fixtures' two logs and the catalog), archived.
/// The hunt flags of one organisation's day of the default fixtures.
pub const ONE_DAY: [&str; 6] = [
    "--actor",
    "kom-fjordby",
    "--since",
    "2025-03-14",
    "--until",
    "2025-03-14",
];

/// The default run with `--archive`: the archive and the streamed alerts.
pub fn archived_default_run(dir: &Path) -> (PathBuf, PathBuf) {
    let archive = dir.join("archive");
    let streamed = dir.join("streamed.jsonl");
    vagt_ok(
        &["run", "--archive", s(&archive), "--output", s(&streamed)],
        &dir.join("stream.json"),
    );
    (archive, streamed)
}

fn hunt_default_rules(
    archive: &Path,
    extra: &[&str],
    out: &Path,
    stats: &Path,
) -> serde_json::Value {
    let rules = repo().join("fixtures/rules");
    let catalog = repo().join("fixtures/catalog.yaml");
    let mut args = vec![
        "hunt",
        s(archive),
        "--rules",
        s(&rules),
        "--catalog",
        s(&catalog),
        "--output",
        s(out),
    ];
    args.extend_from_slice(extra);
    vagt_ok(&args, stats)
}

#[test]
fn a_hunt_of_one_actor_and_one_day_opens_only_that_partitions_files() {
    let dir = tempfile::tempdir().unwrap();
    let (archive, streamed) = archived_default_run(dir.path());
    let partition = archive.join("actor=kom-fjordby/date=2025-03-14");
    let in_partition = parquet_files(&partition).len() as u64;
    assert!(in_partition > 0);
    assert!(parquet_files(&archive).len() as u64 > in_partition);

    let hunted = dir.path().join("hunted.jsonl");
    let summary = hunt_default_rules(&archive, &ONE_DAY, &hunted, &dir.path().join("hunt.json"));
    let scan = &summary["archive_scans"][format!("archive:{}", archive.display())];
    assert_eq!(scan["files"].as_u64().unwrap(), in_partition);
    // Exactly the streamed alerts of that organisation's day.
    let expected: BTreeSet<String> = json_lines(&streamed)
        .iter()
        .filter(|a| a["actor"] == "kom-fjordby")
        .filter(|a| {
            a["event_time"]["first"]
                .as_str()
                .is_some_and(|t| t.starts_with("2025-03-14"))
        })
        .map(|a| a["id"].as_str().unwrap().to_string())
        .collect();
    assert!(!expected.is_empty());
    assert_eq!(ids(&hunted), expected);
}

#[test]
fn a_damaged_file_is_skipped_and_named_and_the_others_are_searched() {
    let dir = tempfile::tempdir().unwrap();
    let (archive, streamed) = archived_default_run(dir.path());
    let partition = archive.join("actor=kom-fjordby/date=2025-03-14");
    let damaged = partition.join("part-zz-damaged.parquet");
    std::fs::write(&damaged, b"PAR1 this is not a parquet file").unwrap();
    // An unfinished file of a killed run: never read.
    std::fs::write(partition.join(".part-zz-000001.parquet.tmp"), b"half").unwrap();

    let hunted = dir.path().join("hunted.jsonl");
    let summary = hunt_default_rules(&archive, &[], &hunted, &dir.path().join("hunt.json"));
    let scan = &summary["archive_scans"][format!("archive:{}", archive.display())];
    let skipped = scan["skipped"].as_array().unwrap();
    assert_eq!(skipped.len(), 1);
    assert!(
        skipped[0]
            .as_str()
            .unwrap()
            .contains("part-zz-damaged.parquet"),
        "{skipped:?}"
    );
    assert_eq!(
        scan["files"].as_u64().unwrap(),
        parquet_files(&archive).len() as u64 - 1
    );
    assert_eq!(ids(&hunted), ids(&streamed));

    // The next archiving run removes the unfinished file and says so.
    let again = vagt_ok(
        &[
            "run",
            "--archive",
            s(&archive),
            "--output",
            s(&dir.path().join("again.jsonl")),
        ],
        &dir.path().join("again.json"),
    );
    assert_eq!(again["archive"]["removed_unfinished"], 1);
    assert!(!partition.join(".part-zz-000001.parquet.tmp").exists());
}

#[test]
fn bad_archive_settings_and_bounds_are_refused_naming_them() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("vagt.yaml");
    std::fs::write(
        &config,
        "rules: [r.yml]\ninputs: [{path: e.jsonl}]\narchive: {dir: archive, max_file_age: 0s}\n",
    )
    .unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_vagt"))
        .args(["run", "--config", s(&config)])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("archive") && stderr.contains("max_file_age"),
        "{stderr}"
    );

    let out = Command::new(env!("CARGO_BIN_EXE_vagt"))
        .args([
            "hunt",
            s(dir.path()),
            "--rules",
            s(&repo().join("fixtures/rules")),
        ])
        .args(["--since", "last tuesday"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("since 'last tuesday'"), "{stderr}");
}

/// `vagt sql QUERY PATH... --json`: its rows, and stderr.
fn sql(query: &str, paths: &[&Path]) -> (std::process::Output, Vec<serde_json::Value>) {
    let mut command = Command::new(env!("CARGO_BIN_EXE_vagt"));
    command.args(["sql", query, "--json"]);
    command.args(paths);
    let out = command.output().unwrap();
    let rows = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    (out, rows)
}

/// The windows fixture's events split by host between two organisations
/// (their inputs say which), archived.
fn archived_two_organisations(dir: &Path) -> (PathBuf, Vec<(String, serde_json::Value)>) {
    let text = std::fs::read_to_string(repo().join("fixtures/windows/events.jsonl")).unwrap();
    let mut events = Vec::new();
    let (mut north, mut south) = (String::new(), String::new());
    for line in text.lines() {
        let event: serde_json::Value = serde_json::from_str(line).unwrap();
        let host = event["Hostname"].as_str().unwrap_or("");
        let actor = if host.starts_with("HN-") {
            "north"
        } else {
            "south"
        };
        let file = if actor == "north" {
            &mut north
        } else {
            &mut south
        };
        file.push_str(line);
        file.push('\n');
        events.push((actor.to_string(), event));
    }
    std::fs::write(dir.join("north.jsonl"), north).unwrap();
    std::fs::write(dir.join("south.jsonl"), south).unwrap();
    let config = dir.join("vagt.yaml");
    std::fs::write(
        &config,
        format!(
            "rules: [{}]\ninputs:\n  - {{path: north.jsonl, actor: north}}\n  - {{path: south.jsonl, actor: south}}\noutput: alerts.jsonl\narchive: {{dir: archive}}\n",
            repo().join("fixtures/windows/rules").display()
        ),
    )
    .unwrap();
    vagt_ok(&["run", "--config", s(&config)], &dir.join("stream.json"));
    (dir.join("archive"), events)
}

#[test]
fn sql_gives_the_top_source_addresses_of_failed_logons_per_organisation_and_day() {
    let dir = tempfile::tempdir().unwrap();
    let (archive, events) = archived_two_organisations(dir.path());
    let query = "SELECT actor, date, address, failed FROM ( \
          SELECT actor, date, event_field(raw, 'IpAddress') AS address, count(*) AS failed, \
                 row_number() OVER (PARTITION BY actor, date ORDER BY count(*) DESC, event_field(raw, 'IpAddress')) AS place \
          FROM events WHERE event_id = '4625' GROUP BY actor, date, event_field(raw, 'IpAddress') \
        ) WHERE place <= 3 ORDER BY actor, date, failed DESC, address";
    let (out, rows) = sql(query, &[&archive]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let got: Vec<(String, String, String, u64)> = rows
        .iter()
        .map(|r| {
            (
                r["actor"].as_str().unwrap().to_string(),
                r["date"].as_str().unwrap().to_string(),
                r["address"].as_str().unwrap().to_string(),
                r["failed"].as_u64().unwrap(),
            )
        })
        .collect();

    // Independently, from the events themselves.
    let mut counts: std::collections::BTreeMap<(String, String, String), u64> = Default::default();
    for (actor, event) in &events {
        if event["EventID"] == 4625 {
            let day = event["@timestamp"].as_str().unwrap()[..10].to_string();
            let address = event["IpAddress"].as_str().unwrap().to_string();
            *counts.entry((actor.clone(), day, address)).or_default() += 1;
        }
    }
    let mut groups: std::collections::BTreeMap<(String, String), Vec<(u64, String)>> =
        Default::default();
    for ((actor, day, address), n) in counts {
        groups.entry((actor, day)).or_default().push((n, address));
    }
    let mut expected = Vec::new();
    for ((actor, day), mut list) in groups {
        list.sort_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(&b.1)));
        for (n, address) in list.into_iter().take(3) {
            expected.push((actor.clone(), day.clone(), address, n));
        }
    }
    assert!(expected.len() >= 4, "{expected:?}");
    assert_eq!(got, expected);
}

#[test]
fn sql_names_a_bad_query_and_searches_around_a_damaged_file() {
    let dir = tempfile::tempdir().unwrap();
    let (archive, events) = archived_two_organisations(dir.path());
    let partition = std::fs::read_dir(archive.join("actor=north"))
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    std::fs::write(partition.join("part-zz-damaged.parquet"), b"PAR1 garbage").unwrap();

    let (out, rows) = sql(
        "SELECT count(*) AS n, count(DISTINCT actor) AS actors FROM events WHERE sigma_match(event_field(raw, 'Channel'), 'secur*') AND cidr_contains('10.0.0.0/8', event_field(raw, 'IpAddress'))",
        &[&archive],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("skipped") && stderr.contains("part-zz-damaged.parquet"),
        "{stderr}"
    );
    assert!(stderr.contains("1 archive files skipped"), "{stderr}");
    let expected = events
        .iter()
        .filter(|(_, e)| e["Channel"] == "Security")
        .filter(|(_, e)| {
            e["IpAddress"]
                .as_str()
                .and_then(|a| a.parse::<std::net::Ipv4Addr>().ok())
                .is_some_and(|a| a.octets()[0] == 10)
        })
        .count();
    assert!(expected > 0);
    assert_eq!(rows[0]["n"].as_u64().unwrap() as usize, expected);
    assert_eq!(rows[0]["actors"], 2);

    let (out, _) = sql("SELECT nothing FROM nowhere", &[&archive]);
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("query \"SELECT nothing FROM nowhere\"") && stderr.contains("nowhere"),
        "{stderr}"
    );
}

#[test]
fn a_reload_hunts_new_and_changed_rules_over_the_archive_each_alert_once() {
    use crate::reload::{events, rule};
    use crate::support::{append, eventually, Vagt};
    use std::time::Duration;
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::create_dir(d.join("rules")).unwrap();
    std::fs::write(
        d.join("rules/a.yml"),
        rule("Rule A", "aaaaaaaa-0000-4000-8000-000000000001", 1),
    )
    .unwrap();
    std::fs::write(d.join("events.jsonl"), "").unwrap();
    std::fs::write(
        d.join("vagt.yaml"),
        "rules: [rules]\ninputs: [{tail: events.jsonl}]\noutput: alerts.jsonl\nprogress: never\narchive: {dir: archive, retro_hunt: 3650d}\n",
    )
    .unwrap();
    let mut vagt = Vagt::with_config(&d.join("vagt.yaml"));
    vagt.wait_for("ready", Duration::from_secs(30));
    let alerts = d.join("alerts.jsonl");
    let count = |title: &str, retrospective: bool| -> usize {
        if !alerts.exists() {
            return 0;
        }
        json_lines(&alerts)
            .iter()
            .filter(|a| a["rule"]["title"] == title)
            .filter(|a| a["retrospective"].as_bool().unwrap_or(false) == retrospective)
            .count()
    };
    // Events 0..100, odd EventIDs 1 and even 2: rule A takes 50.
    append(&d.join("events.jsonl"), &events(0, 100));
    eventually("rule A alerts", Duration::from_secs(30), || {
        count("Rule A", false) == 50
    });

    // Rule B arrives: the archive (its files not yet old enough to be
    // committed) is hunted for it, and the past events it takes alert,
    // marked retrospective.
    let rule_b = rule("Rule B", "bbbbbbbb-0000-4000-8000-000000000002", 2);
    std::fs::write(d.join("rules/b.yml"), &rule_b).unwrap();
    vagt.signal("HUP");
    vagt.wait_for(
        "retro-hunt of new and changed rules finished",
        Duration::from_secs(60),
    );
    eventually(
        "retrospective rule B alerts",
        Duration::from_secs(30),
        || count("Rule B", true) == 50,
    );
    // Later events: rule B alerts as they come.
    append(&d.join("events.jsonl"), &events(100, 100));
    eventually("rule B live", Duration::from_secs(30), || {
        count("Rule B", false) == 50 && count("Rule A", false) == 100
    });

    // Rule B changed (an extra value): hunted again, but every alert it
    // finds was emitted already; none is sent twice.
    std::fs::write(
        d.join("rules/b.yml"),
        rule_b.replace("EventID: 2", "EventID: [2, 99]"),
    )
    .unwrap();
    vagt.signal("HUP");
    let finished = vagt.wait_for("alerts=0 already_emitted=100", Duration::from_secs(60));
    assert!(finished.contains("retro-hunt"), "{finished}");
    let (status, stderr) = vagt.terminate();
    assert!(status.success(), "{stderr}");
    let all = json_lines(&alerts);
    let ids: BTreeSet<&str> = all.iter().map(|a| a["id"].as_str().unwrap()).collect();
    assert_eq!(ids.len(), all.len(), "an alert sent twice");
    assert_eq!(count("Rule B", true), 50);
    assert_eq!(count("Rule A", true), 0);
    // The retrospective alerts are those of the events before rule B.
    assert!(all
        .iter()
        .filter(|a| a["retrospective"] == true)
        .all(|a| a["event"]["n"].as_u64().unwrap() < 100));
}

/// One finite run of `rules` over `events` into `alerts-{run}.jsonl`,
/// with retro-hunts; its `--stats` and alerts.
fn retro_run(
    d: &Path,
    run: usize,
    rules: &[(&str, String)],
    events: String,
) -> (serde_json::Value, Vec<serde_json::Value>) {
    let folder = d.join(format!("rules-{run}"));
    std::fs::create_dir(&folder).unwrap();
    for (name, text) in rules {
        std::fs::write(folder.join(name), text).unwrap();
    }
    std::fs::write(d.join("events.jsonl"), events).unwrap();
    let config = d.join(format!("vagt-{run}.yaml"));
    std::fs::write(
        &config,
        format!("rules: [rules-{run}]\ninputs: [{{path: events.jsonl}}]\noutput: alerts-{run}.jsonl\nprogress: never\narchive: {{dir: archive, retro_hunt: 3650d}}\n"),
    )
    .unwrap();
    let stats = vagt_ok(
        &["run", "--config", s(&config)],
        &d.join(format!("stats-{run}.json")),
    );
    let alerts = d.join(format!("alerts-{run}.jsonl"));
    let alerts = if alerts.exists() {
        json_lines(&alerts)
    } else {
        Vec::new()
    };
    (stats, alerts)
}

#[test]
fn a_start_hunts_the_rules_no_earlier_run_hunted_each_alert_once() {
    use crate::reload::{events, rule};
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let a = (
        "a.yml",
        rule("Rule A", "aaaaaaaa-0000-4000-8000-000000000001", 1),
    );
    let b = (
        "b.yml",
        rule("Rule B", "bbbbbbbb-0000-4000-8000-000000000002", 2),
    );
    let changed_b = ("b.yml", b.1.replace("EventID: 2", "EventID: [2, 99]"));
    let hunted =
        |stats: &serde_json::Value, field: &str| stats["retro_hunts"][field].as_u64().unwrap();
    let count = |alerts: &[serde_json::Value], title: &str, retrospective: bool| {
        alerts
            .iter()
            .filter(|a| {
                a["rule"]["title"] == title
                    && a["retrospective"].as_bool().unwrap_or(false) == retrospective
            })
            .count()
    };

    // The first run has no record to compare with: it records its rules
    // and hunts nothing. Events 0..100: odd EventIDs 1, even 2.
    let (stats, alerts) = retro_run(d, 1, std::slice::from_ref(&a), events(0, 100));
    assert_eq!(hunted(&stats, "hunts"), 0, "{stats}");
    assert_eq!(count(&alerts, "Rule A", false), 50);

    // Rule B is new at the next start: it hunts the archive, and finds
    // its 50 past events once, marked retrospective, while the new events
    // are evaluated live.
    let (stats, alerts) = retro_run(d, 2, &[a.clone(), b.clone()], events(100, 100));
    assert_eq!(
        [
            hunted(&stats, "hunts"),
            hunted(&stats, "rules"),
            hunted(&stats, "alerts"),
            hunted(&stats, "already_emitted"),
            hunted(&stats, "unfinished"),
        ],
        [1, 1, 50, 0, 0],
        "{stats}"
    );
    assert_eq!(count(&alerts, "Rule B", true), 50);
    assert!(alerts
        .iter()
        .filter(|a| a["retrospective"] == true)
        .all(|a| a["event"]["n"].as_u64().unwrap() < 100));
    assert_eq!(count(&alerts, "Rule B", false), 50);
    assert_eq!(count(&alerts, "Rule A", false), 50);
    assert_eq!(count(&alerts, "Rule A", true), 0);

    // Rule B changed: hunted again at start over all 200 archived events,
    // but each of its 100 alerts was sent by the run before: none again.
    let (stats, alerts) = retro_run(d, 3, &[a.clone(), changed_b.clone()], String::new());
    assert_eq!(
        [
            hunted(&stats, "hunts"),
            hunted(&stats, "alerts"),
            hunted(&stats, "already_emitted")
        ],
        [1, 0, 100],
        "{stats}"
    );
    assert!(alerts.is_empty(), "{alerts:?}");

    // The same rules again: nothing to hunt.
    let (stats, _) = retro_run(d, 4, &[a, changed_b], String::new());
    assert_eq!(hunted(&stats, "hunts"), 0, "{stats}");
}

#[test]
fn a_start_hunts_a_new_windowed_rule_as_a_hunt_of_the_archive_would() {
    use crate::reload::rule;
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let a = (
        "a.yml",
        rule("Rule A", "aaaaaaaa-0000-4000-8000-000000000001", 1),
    );
    let many_a = (
        "many_a.yml",
        "title: Many A\nid: cccccccc-0000-4000-8000-000000000003\ncorrelation:\n  type: event_count\n  rules: [aaaaaaaa-0000-4000-8000-000000000001]\n  timespan: 1h\n  condition: {gte: 10}\nlevel: high\n".to_string(),
    );
    // Events a second apart, odd EventIDs 1: rule A takes 50.
    let timed = |from: usize, n: usize| -> String {
        (from..from + n)
            .map(|i| {
                format!(
                    "{{\"EventID\": {}, \"n\": {i}, \"@timestamp\": \"2026-11-20T10:{:02}:{:02}Z\"}}\n",
                    1 + i % 2,
                    i / 60,
                    i % 60
                )
            })
            .collect()
    };
    let (stats, alerts) = retro_run(d, 1, std::slice::from_ref(&a), timed(0, 100));
    assert_eq!(stats["retro_hunts"]["hunts"], 0, "{stats}");
    assert_eq!(alerts.len(), 50);

    // The windowed rule is new at the next start: hunted over the
    // archive, its alerts are those a hunt of the archive gives.
    let (stats, alerts) = retro_run(d, 2, &[a.clone(), many_a.clone()], String::new());
    assert_eq!(stats["retro_hunts"]["hunts"], 1, "{stats}");
    assert_eq!(
        stats["retro_hunts"]["rules"], 1,
        "only the windowed rule: {stats}"
    );
    assert!(alerts
        .iter()
        .all(|a| a["retrospective"] == true && a["rule"]["title"] == "Many A"));
    let retro: BTreeSet<String> = alerts
        .iter()
        .map(|a| a["id"].as_str().unwrap().to_string())
        .collect();
    let hunted = d.join("hunted.jsonl");
    let hunt = vagt_ok(
        &[
            "hunt",
            s(&d.join("archive")),
            "--rules",
            s(&d.join("rules-2")),
            "--output",
            s(&hunted),
        ],
        &d.join("hunt.json"),
    );
    let expected: BTreeSet<String> = json_lines(&hunted)
        .iter()
        .filter(|a| a["rule"]["title"] == "Many A")
        .map(|a| a["id"].as_str().unwrap().to_string())
        .collect();
    assert!(!expected.is_empty());
    // Both went through the same suppression (correlations by group, 1h).
    assert_eq!(retro, expected);
    assert_eq!(
        stats["retro_hunts"]["alerts"], hunt["alerts"],
        "{stats}\n{hunt}"
    );

    // Known now: nothing to hunt.
    let (stats, _) = retro_run(d, 3, &[a, many_a], String::new());
    assert_eq!(stats["retro_hunts"]["hunts"], 0, "{stats}");
}

#[test]
fn a_hunt_shows_its_progress_through_the_archives_files() {
    let dir = tempfile::tempdir().unwrap();
    let (archive, _) = archived_default_run(dir.path());
    let out = Command::new(env!("CARGO_BIN_EXE_vagt"))
        .args([
            "hunt",
            s(&archive),
            "--rules",
            s(&repo().join("fixtures/rules")),
        ])
        .args([
            "--output",
            s(&dir.path().join("hunted.jsonl")),
            "--progress",
            "always",
        ])
        .output()
        .unwrap();
    assert!(out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("progress 100% of") && stderr.contains("58 events"),
        "{stderr}"
    );
}

#[test]
fn one_open_file_at_a_time_still_archives_every_event() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let logs = repo().join("fixtures/logs");
    std::fs::write(
        d.join("vagt.yaml"),
        format!(
            "rules: [{}]\ncatalog: {}\ninputs:\n  - {{path: {}}}\n  - {{path: {}}}\noutput: streamed.jsonl\narchive: {{dir: archive, max_open_files: 1}}\n",
            repo().join("fixtures/rules").display(),
            repo().join("fixtures/catalog.yaml").display(),
            logs.join("hospital-nord-sysmon.jsonl").display(),
            logs.join("region-security-evtx.json").display(),
        ),
    )
    .unwrap();
    let stream = vagt_ok(
        &["run", "--config", s(&d.join("vagt.yaml"))],
        &d.join("stream.json"),
    );
    assert_eq!(stream["archive"]["rows"], 58);
    // 12 organisation-days, each file committed when another is opened.
    assert!(stream["archive"]["files"].as_u64().unwrap() >= 12);
    let hunted = d.join("hunted.jsonl");
    hunt_default_rules(&d.join("archive"), &[], &hunted, &d.join("hunt.json"));
    assert_eq!(ids(&hunted), ids(&d.join("streamed.jsonl")));
}
