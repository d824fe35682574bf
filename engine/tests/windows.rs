//! Windowed rules through `vagt run`: every scenario of `fixtures/windows`
//! fires exactly its expected alert; a chained correlation; arrival order
//! and batch size do not change the alerts; a stopped and restarted run
//! fires every alert once; bad windowed rules and events are reported.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use proptest::prelude::*;
use serde_json::Value;
use vagt_engine::{InputConfig, RunConfig};

use crate::cli::{alerts, repo, vagt};
use crate::metrics::{free_port, scrape_until};

fn fixture(path: &str) -> PathBuf {
    repo().join("fixtures/windows").join(path)
}

fn catalog() -> PathBuf {
    repo().join("fixtures/catalog.yaml")
}

/// What identifies a windowed alert in the expectations.
pub fn summary(alert: &Value) -> Value {
    serde_json::json!({
        "rule": alert["rule"]["title"],
        "group": alert["group"],
        "count": alert["count"],
        "first": alert["event_time"]["first"],
        "last": alert["event_time"]["last"],
    })
}

/// Values in a stable order (by their JSON text).
pub fn sorted(mut values: Vec<Value>) -> Vec<Value> {
    values.sort_by_key(|v| v.to_string());
    values
}

#[test]
fn every_scenario_fires_its_expected_alert_once() {
    let out = vagt(&[
        "run",
        "--rules",
        fixture("rules").to_str().unwrap(),
        "--input",
        fixture("events.jsonl").to_str().unwrap(),
        "--catalog",
        catalog().to_str().unwrap(),
    ]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(stderr.contains("8 windowed"), "{stderr}");
    let got: Vec<Value> = alerts(&out).iter().map(summary).collect();
    let expected: Vec<Value> = std::fs::read_to_string(fixture("expected.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(sorted(got), sorted(expected));
    // The base rules feed the windows and stay quiet; every windowed alert
    // carries its evidence and the processes at risk.
    for alert in alerts(&out) {
        let evidence = &alert["evidence"];
        assert!(evidence["kind"].is_string(), "{alert}");
        assert!(
            !evidence["events"].as_array().unwrap().is_empty(),
            "{alert}"
        );
        assert!(
            !alert["critical_processes"].as_array().unwrap().is_empty(),
            "{alert}"
        );
        assert!(alert["actor"].is_string(), "{alert}");
    }
}

#[test]
fn a_chained_correlation_fires_on_its_last_step() {
    let out = vagt(&[
        "run",
        "--rules",
        fixture("rules").to_str().unwrap(),
        "--rules",
        fixture("chained").to_str().unwrap(),
        "--input",
        fixture("events.jsonl").to_str().unwrap(),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let titles: Vec<String> = alerts(&out)
        .iter()
        .map(|a| a["rule"]["title"].as_str().unwrap().to_string())
        .collect();
    let chained: Vec<Value> = alerts(&out)
        .into_iter()
        .filter(|a| a["rule"]["title"] == "Brute force followed by a successful logon")
        .collect();
    assert_eq!(chained.len(), 1, "{titles:?}");
    assert_eq!(
        chained[0]["group"],
        serde_json::json!({"TargetUserName": "lab.admin"})
    );
    assert_eq!(chained[0]["event_time"]["last"], "2026-03-02T09:05:00.000Z");
    // The brute force is now a step of the chain: it no longer alerts alone.
    assert!(
        !titles.contains(&"Brute force against one account".to_string()),
        "{titles:?}"
    );
    assert_eq!(titles.len(), 8, "{titles:?}");
}

/// Runs the pipeline in-process over `events` with a batch size.
fn run_in_process(
    dir: &Path,
    events: &[&str],
    batch_size: usize,
    lateness: &str,
) -> BTreeMap<String, u64> {
    let input = dir.join(format!("events-{batch_size}.jsonl"));
    std::fs::write(&input, events.join("\n")).unwrap();
    let output = dir.join(format!("alerts-{batch_size}.jsonl"));
    let mut config = vagt_engine::defaults::default_config();
    config.rules = vec![fixture("rules")];
    config.catalog = None;
    config.inputs = vec![InputConfig::file(input)];
    config.output = Some(output.clone());
    config.dead_letters = Some(dir.join("dead.jsonl"));
    config.decoder.batch_size = batch_size;
    config.windows.allowed_lateness = lateness.parse().expect("a duration");
    config.progress = vagt_engine::progress::ProgressMode::Never;
    run_config(config);
    std::fs::read_to_string(&output)
        .unwrap()
        .lines()
        .map(|l| {
            let a: Value = serde_json::from_str(l).unwrap();
            (
                a["id"].as_str().unwrap().to_string(),
                a["count"].as_u64().unwrap(),
            )
        })
        .collect()
}

fn run_config(config: RunConfig) {
    struct Quiet;
    impl vagt_engine::pipeline::RunObserver for Quiet {}
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let summary = runtime.block_on(vagt_engine::run(config, &Quiet)).unwrap();
    assert_eq!(summary.late_events, 0, "{summary}");
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 6, ..ProptestConfig::default() })]

    /// Shuffling events within the allowed lateness (each event is delayed
    /// by a random amount up to it) and changing the batch size leave the
    /// alerts unchanged.
    #[test]
    fn arrival_order_within_lateness_and_batch_size_do_not_matter(
        seed in any::<u64>(),
        batch_size in prop::sample::select(vec![1usize, 3, 64, 1000]),
    ) {
        let text = std::fs::read_to_string(fixture("events.jsonl")).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        let dir = tempfile::tempdir().unwrap();
        let reference = run_in_process(dir.path(), &lines, 256, "10m");
        prop_assert_eq!(reference.len(), 8);

        let lateness_ms = 10 * 60 * 1000i64;
        let mut rng = seed;
        let mut keyed: Vec<(i64, &str)> = lines
            .iter()
            .map(|l| {
                let e: Value = serde_json::from_str(l).unwrap();
                let t = chrono::DateTime::parse_from_rfc3339(e["@timestamp"].as_str().unwrap())
                    .unwrap()
                    .timestamp_millis();
                // xorshift: a delay in [0, lateness).
                rng ^= rng << 13;
                rng ^= rng >> 7;
                rng ^= rng << 17;
                (t + (rng % lateness_ms as u64) as i64, *l)
            })
            .collect();
        keyed.sort_by_key(|(k, _)| *k);
        let shuffled: Vec<&str> = keyed.into_iter().map(|(_, l)| l).collect();
        prop_assume!(shuffled != lines);
        let got = run_in_process(dir.path(), &shuffled, batch_size, "10m");
        prop_assert_eq!(got, reference);
    }
}

fn write_config(dir: &Path, name: &str, output: &str, metrics_port: Option<u16>) -> PathBuf {
    std::fs::create_dir_all(dir.join("state")).unwrap();
    let mut text = format!(
        "rules: [{}]\ncatalog: {}\ninputs: [{{path: \"-\"}}]\noutput: {output}\ndead_letters: dead-{name}.jsonl\nprogress: never\nwindows:\n  allowed_lateness: 5s\n  state_file: state/vagt-state.json\n",
        fixture("rules").display(),
        catalog().display()
    );
    if let Some(port) = metrics_port {
        text.push_str(&format!("metrics_listen: 127.0.0.1:{port}\n"));
    }
    let path = dir.join(format!("{name}.yaml"));
    std::fs::write(&path, text).unwrap();
    path
}

fn ids(path: &Path) -> Vec<String> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(|l| {
            serde_json::from_str::<Value>(l).unwrap()["id"]
                .as_str()
                .unwrap()
                .to_string()
        })
        .collect()
}

#[test]
fn a_restart_from_the_snapshot_fires_every_windowed_alert_once() {
    let text = std::fs::read_to_string(fixture("events.jsonl")).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    // Stop in the middle of the brute force: its window is open at the stop.
    let split = lines
        .iter()
        .enumerate()
        .filter(|(_, l)| l.contains("\"lab.admin\"") && l.contains("4625"))
        .nth(5)
        .map(|(i, _)| i)
        .unwrap();
    let dir = tempfile::tempdir().unwrap();

    // The whole stream in one run, for reference.
    let out = vagt(&[
        "run",
        "--rules",
        fixture("rules").to_str().unwrap(),
        "--input",
        fixture("events.jsonl").to_str().unwrap(),
        "--catalog",
        catalog().to_str().unwrap(),
    ]);
    let mut expected: Vec<String> = alerts(&out)
        .iter()
        .map(|a| a["id"].as_str().unwrap().to_string())
        .collect();
    expected.sort();
    assert_eq!(expected.len(), 8);

    // Run 1 reads the first part from stdin and is stopped by SIGTERM once
    // it has processed all of it.
    let port = free_port();
    let config = write_config(dir.path(), "first", "alerts-1.jsonl", Some(port));
    let mut child = Command::new(env!("CARGO_BIN_EXE_vagt"))
        .args(["run", "--config", config.to_str().unwrap()])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    for line in &lines[..split] {
        writeln!(stdin, "{line}").unwrap();
    }
    stdin.flush().unwrap();
    scrape_until(
        port,
        "vagt_events_out_total{source=\"stdin\"}",
        split as f64,
    );
    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let first = child.wait_with_output().unwrap();
    drop(stdin);
    let stderr = String::from_utf8_lossy(&first.stderr);
    assert!(first.status.success(), "{stderr}");
    assert!(stderr.contains("stopped by signal"), "{stderr}");
    assert!(dir.path().join("state/vagt-state.json").is_file());

    // Run 2 restores the state and reads the rest.
    let config = write_config(dir.path(), "second", "alerts-2.jsonl", None);
    let mut child = Command::new(env!("CARGO_BIN_EXE_vagt"))
        .args(["run", "--config", config.to_str().unwrap()])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    for line in &lines[split..] {
        writeln!(stdin, "{line}").unwrap();
    }
    drop(stdin);
    let second = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&second.stderr);
    assert!(second.status.success(), "{stderr}");
    assert!(stderr.contains("window state restored"), "{stderr}");

    let mut got = ids(&dir.path().join("alerts-1.jsonl"));
    got.extend(ids(&dir.path().join("alerts-2.jsonl")));
    got.sort();
    assert_eq!(
        got, expected,
        "every windowed alert exactly once across the restart"
    );
    // The brute force was open at the stop and fired after the restart.
    assert!(!ids(&dir.path().join("alerts-2.jsonl")).is_empty());
}

#[test]
fn a_file_input_resumes_after_what_was_processed() {
    let dir = tempfile::tempdir().unwrap();
    let text = std::fs::read_to_string(fixture("events.jsonl")).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    let half = lines.len() / 2;
    let input = dir.path().join("events.jsonl");
    std::fs::write(&input, lines[..half].join("\n") + "\n").unwrap();
    let config = dir.path().join("vagt.yaml");
    std::fs::write(
        &config,
        format!(
            "rules: [{}]\ninputs: [{{path: events.jsonl}}]\noutput: alerts.jsonl\nwindows: {{state_file: state.json}}\n",
            fixture("rules").display()
        ),
    )
    .unwrap();
    let run = || {
        vagt(&[
            "run",
            "--config",
            config.to_str().unwrap(),
            "--progress",
            "never",
        ])
    };
    let out = run();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let first = ids(&dir.path().join("alerts.jsonl"));
    // The file grows; the next run reads only the new events, and appends
    // its alerts to those of the first run (it resumes from the state).
    std::fs::write(&input, text.clone()).unwrap();
    let out = run();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(
        stderr.contains(&format!("vagt: {} events", lines.len() - half)),
        "{stderr}"
    );
    let mut all = ids(&dir.path().join("alerts.jsonl"));
    assert_eq!(
        all[..first.len()],
        first[..],
        "the first run's alerts are kept"
    );
    all.sort();
    let mut whole = alerts(&vagt(&[
        "run",
        "--rules",
        fixture("rules").to_str().unwrap(),
        "--input",
        fixture("events.jsonl").to_str().unwrap(),
    ]))
    .iter()
    .map(|a| a["id"].as_str().unwrap().to_string())
    .collect::<Vec<_>>();
    whole.sort();
    assert_eq!(all, whole);
}

#[test]
fn a_compressed_file_read_to_its_end_is_not_read_again() {
    use std::io::Write;
    let dir = tempfile::tempdir().unwrap();
    let text = std::fs::read(fixture("events.jsonl")).unwrap();
    let mut gz = flate2::write::GzEncoder::new(
        std::fs::File::create(dir.path().join("events.jsonl.gz")).unwrap(),
        flate2::Compression::default(),
    );
    gz.write_all(&text).unwrap();
    gz.finish().unwrap();
    let config = dir.path().join("vagt.yaml");
    std::fs::write(
        &config,
        format!(
            "rules: [{}]\ninputs: [{{path: events.jsonl.gz}}]\noutput: alerts.jsonl\nwindows: {{state_file: state.json}}\nprogress: never\n",
            fixture("rules").display()
        ),
    )
    .unwrap();
    let run = || vagt(&["run", "--config", config.to_str().unwrap()]);
    let first = run();
    assert!(first.status.success());
    assert!(!ids(&dir.path().join("alerts.jsonl")).is_empty());
    // Decompressed, the position is past the compressed size: the same
    // file still resumes there, with nothing new.
    let written = ids(&dir.path().join("alerts.jsonl"));
    let second = run();
    let stderr = String::from_utf8_lossy(&second.stderr);
    assert!(second.status.success(), "{stderr}");
    assert!(stderr.contains("vagt: 0 events"), "{stderr}");
    // Nothing new: the output holds the first run's alerts, no more.
    assert_eq!(ids(&dir.path().join("alerts.jsonl")), written, "{stderr}");
}

#[test]
fn bad_windowed_rules_and_events_are_reported_and_the_rest_alerts() {
    let dir = tempfile::tempdir().unwrap();
    let rules = dir.path().join("rules");
    std::fs::create_dir(&rules).unwrap();
    let base = "title: Failed logon\nname: failed_logon\nlogsource: {product: windows, service: security}\ndetection:\n  sel: {EventID: 4625}\n  condition: sel\n";
    std::fs::write(rules.join("base.yml"), base).unwrap();
    let correlation = |title: &str, body: &str| format!("title: {title}\ncorrelation:\n{body}");
    let cases = [
        ("good.yml", correlation("Three failures", "  type: event_count\n  rules: [failed_logon]\n  group-by: [TargetUserName]\n  timespan: 5m\n  condition: {gte: 3}\n")),
        ("unknown_type.yml", correlation("Unknown type", "  type: event_sum\n  rules: [failed_logon]\n  group-by: [TargetUserName]\n  timespan: 5m\n  condition: {gte: 3}\n")),
        ("missing.yml", correlation("Missing rule", "  type: event_count\n  rules: [no_such_rule]\n  group-by: [TargetUserName]\n  timespan: 5m\n  condition: {gte: 3}\n")),
        ("cycle.yml", format!("{}---\n{}",
            correlation("Cycle A", "  type: temporal\n  rules: [cycle_b]\n  group-by: [TargetUserName]\n  timespan: 5m\n").replace("title: Cycle A\n", "title: Cycle A\nname: cycle_a\n"),
            correlation("Cycle B", "  type: temporal\n  rules: [cycle_a]\n  group-by: [TargetUserName]\n  timespan: 5m\n").replace("title: Cycle B\n", "title: Cycle B\nname: cycle_b\n"))),
        ("timespan.yml", correlation("Bad timespan", "  type: event_count\n  rules: [failed_logon]\n  group-by: [TargetUserName]\n  timespan: 5 minutes\n  condition: {gte: 3}\n")),
    ];
    for (file, text) in &cases {
        std::fs::write(rules.join(file), text).unwrap();
    }
    let check = vagt(&["rules", "check", rules.to_str().unwrap()]);
    let stdout = String::from_utf8_lossy(&check.stdout);
    assert_eq!(check.status.code(), Some(1), "{stdout}");
    for expected in [
        "unknown_type.yml:1 [no id] Unknown type: attribute 'correlation.type': unknown correlation type 'event_sum'",
        "missing.yml:1 [no id] Missing rule: referenced rule 'no_such_rule' is not loaded",
        "Cycle A: cycle of correlations: cycle_a → cycle_b → cycle_a",
        "Cycle B: cycle of correlations: cycle_b → cycle_a → cycle_b",
        "timespan.yml:1 [no id] Bad timespan: attribute 'correlation.timespan': '5 minutes'",
        "1 windowed rules",
    ] {
        assert!(stdout.contains(expected), "missing '{expected}' in:\n{stdout}");
    }

    let event = |time: Option<&str>, user: &str| {
        let time = time
            .map(|t| format!("\"@timestamp\": \"{t}\", "))
            .unwrap_or_default();
        format!(
            r#"{{{time}"Channel": "Security", "EventID": 4625, "Hostname": "HN-LAB-01", "TargetUserName": "{user}"}}"#
        )
    };
    let input = dir.path().join("events.jsonl");
    let lines = [
        event(Some("2026-03-02T10:00:00Z"), "bob"),
        event(None, "bob"), // line 2: no timestamp
        event(Some("2026-03-02T10:00:10Z"), "bob"),
        "{\"EventID\": 4625, oops}".to_string(), // line 4: not JSON
        event(Some("2026-03-02T10:00:20Z"), "bob"),
        event(Some("2026-03-02T09:00:00Z"), "alice"), // line 6: late
        event(Some("2026-03-02T10:00:21Z"), "carol"),
        event(Some("not a time"), "bob"), // line 8: unparsable time
    ];
    std::fs::write(&input, lines.join("\n")).unwrap();
    let dead = dir.path().join("dead.jsonl");
    // A stream (stdin), not a file: a file's events are ordered by time
    // before the windows see them, and none is late.
    let mut child = Command::new(env!("CARGO_BIN_EXE_vagt"))
        .args([
            "run",
            "--rules",
            rules.to_str().unwrap(),
            "--input",
            "-",
            "--dead-letters",
            dead.to_str().unwrap(),
        ])
        .stdin(std::fs::File::open(&input).unwrap())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take();
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(stderr.contains("1 late events"), "{stderr}");
    let found = alerts(&out);
    assert_eq!(found.len(), 1, "{found:?}");
    assert_eq!(
        found[0]["group"],
        serde_json::json!({"TargetUserName": "bob"})
    );
    assert_eq!(found[0]["count"], 3);
    let letters: BTreeMap<u64, String> = std::fs::read_to_string(&dead)
        .unwrap()
        .lines()
        .map(|l| {
            let d: Value = serde_json::from_str(l).unwrap();
            (
                d["line"].as_u64().unwrap(),
                d["reason"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    assert_eq!(letters.len(), 4, "{letters:?}");
    assert!(
        letters[&2].starts_with("event has no timestamp (looked for Event.System.TimeCreated"),
        "{}",
        letters[&2]
    );
    assert!(letters[&4].contains("invalid JSON"), "{}", letters[&4]);
    assert!(letters[&6].starts_with("late event: its time 2026-03-02T09:00:00.000Z is before the watermark 2026-03-02T10:00:15.000Z of its source (stdin, host HN-LAB-01;"), "{}", letters[&6]);
    assert!(
        letters[&8].contains("timestamp 'not a time' in @timestamp is not a recognised timestamp"),
        "{}",
        letters[&8]
    );
}

/// The detection rules that the specification's schema test correlations
/// refer to, over a test log source with a `kind` field.
const SCHEMA_BASE_RULES: &str = "title: Failed login
id: 5638f7c0-ac70-491d-8465-2a65075e0d86
logsource: {product: test}
detection: {sel: {kind: failed_login}, condition: sel}
---
title: Recon A
name: recon_cmd_a
logsource: {product: test}
detection: {sel: {kind: recon_a}, condition: sel}
---
title: Recon B
name: recon_cmd_b
logsource: {product: test}
detection: {sel: {kind: recon_b}, condition: sel}
---
title: Recon C
name: recon_cmd_c
logsource: {product: test}
detection: {sel: {kind: recon_c}, condition: sel}
---
title: Traffic
name: rule_a_id
logsource: {product: test}
detection: {sel: {kind: traffic}, condition: sel}
---
title: Web access
name: website_access
logsource: {product: test}
detection: {sel: {kind: web}, condition: sel}
---
title: Process creation
name: process_creation
logsource: {product: test}
detection: {sel: {kind: process}, condition: sel}
";

/// Events that make each schema test correlation fire exactly once.
fn schema_events(file: &str) -> Vec<Value> {
    let t = |s: i64| {
        chrono::DateTime::from_timestamp(1_772_400_000 + s, 0)
            .unwrap()
            .to_rfc3339()
    };
    let e = |s: i64, fields: Value| {
        let mut v = fields;
        v["@timestamp"] = t(s).into();
        v
    };
    let base = serde_json::json!({"ComputerName": "HN-LAB-01", "WorkstationName": "WS1", "User": "bob", "SourceIP": "10.0.0.1"});
    let with = |extra: Value| {
        let mut v = base.clone();
        for (k, x) in extra.as_object().unwrap() {
            v[k] = x.clone();
        }
        v
    };
    match file {
        "event_count.yml" | "event_count_ecs.yml" => (0..100)
            .map(|i| e(i * 30, with(serde_json::json!({"kind": "failed_login", "dns": {"question": {"name": "evil.example"}}}))))
            .collect(),
        "value_count.yml" => (0..100)
            .map(|i| e(i * 60, with(serde_json::json!({"kind": "failed_login", "User": format!("user{i}")}))))
            .collect(),
        "temporal.yml" => ["recon_c", "recon_a", "recon_b"]
            .iter()
            .enumerate()
            .map(|(i, k)| e(i as i64 * 60, with(serde_json::json!({"kind": k}))))
            .collect(),
        "temporal_ordered.yml" => ["recon_b", "recon_a", "recon_b", "recon_c"]
            .iter()
            .enumerate()
            .map(|(i, k)| e(i as i64 * 60, with(serde_json::json!({"kind": k}))))
            .collect(),
        "value_avg.yml" => [400, 450, 800]
            .iter()
            .enumerate()
            .map(|(i, b)| e(i as i64 * 600, with(serde_json::json!({"kind": "traffic", "BytesOut": b}))))
            .collect(),
        "value_sum.yml" => (0..3)
            .map(|i| e(i * 600, with(serde_json::json!({"kind": "web", "bytes_sent": 400_000}))))
            .collect(),
        "value_percentile.yml" => (0..100)
            .map(|i| e(i * 60, with(serde_json::json!({"kind": "process", "Image": "C:\\Windows\\explorer.exe"}))))
            .chain([e(7000, with(serde_json::json!({"kind": "process", "Image": "C:\\Users\\Public\\rare.exe"})))])
            .collect(),
        other => panic!("no events written for the schema test rule {other}"),
    }
}

#[test]
fn the_specification_schema_correlations_load_and_fire() {
    let schema = crate::cli::corpora().join("sigma-specification/tests/schema/correlation");
    let dir = tempfile::tempdir().unwrap();
    let base = dir.path().join("base.yml");
    std::fs::write(&base, SCHEMA_BASE_RULES).unwrap();
    let mut files: Vec<PathBuf> = std::fs::read_dir(&schema)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    assert_eq!(files.len(), 8, "{files:?}");
    for file in files {
        let name = file.file_name().unwrap().to_str().unwrap().to_string();
        let events = dir.path().join(format!("{name}.jsonl"));
        let text: Vec<String> = schema_events(&name).iter().map(Value::to_string).collect();
        std::fs::write(&events, text.join("\n")).unwrap();
        let out = vagt(&[
            "run",
            "--profile",
            "passthrough",
            "--rules",
            base.to_str().unwrap(),
            "--rules",
            file.to_str().unwrap(),
            "--input",
            events.to_str().unwrap(),
        ]);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "{name}: {stderr}");
        assert!(stderr.contains("0 rejected"), "{name}: {stderr}");
        let found = alerts(&out);
        assert_eq!(found.len(), 1, "{name}: {found:#?}");
        let title = std::fs::read_to_string(&file).unwrap();
        let title = title.lines().next().unwrap().trim_start_matches("title: ");
        assert_eq!(found[0]["rule"]["title"], title, "{name}");
    }
}

#[test]
fn aliases_group_different_fields_and_generate_keeps_the_steps() {
    // The specification's alias example: an internal error on a server,
    // then a connection from that server back to the client, within 10 s.
    let rules = "title: Internal error
name: internal_error
logsource: {product: test}
detection: {sel: {http.response.status_code: 500}, condition: sel}
---
title: New connection
name: new_network_connection
logsource: {product: test}
detection: {sel: {event.category: network, event.type: connection}, condition: sel}
---
title: Error then call-back
correlation:
  type: temporal
  rules: [internal_error, new_network_connection]
  group-by: [internal_ip, remote_ip]
  timespan: 10s
  aliases:
    internal_ip: {internal_error: destination.ip, new_network_connection: source.ip}
    remote_ip: {internal_error: source.ip, new_network_connection: destination.ip}
generate: true
";
    let dir = tempfile::tempdir().unwrap();
    let rules_path = dir.path().join("rules.yml");
    std::fs::write(&rules_path, rules).unwrap();
    let events = [
        // The error, server 10.0.0.5 answering client 10.9.9.9.
        r#"{"@timestamp": "2026-03-02T10:00:00Z", "http": {"response": {"status_code": 500}}, "source": {"ip": "10.9.9.9"}, "destination": {"ip": "10.0.0.5"}}"#,
        // A connection between other hosts: no match.
        r#"{"@timestamp": "2026-03-02T10:00:02Z", "event": {"category": "network", "type": "connection"}, "source": {"ip": "10.0.0.6"}, "destination": {"ip": "10.9.9.9"}}"#,
        // The server calls the client back.
        r#"{"@timestamp": "2026-03-02T10:00:04Z", "event": {"category": "network", "type": "connection"}, "source": {"ip": "10.0.0.5"}, "destination": {"ip": "10.9.9.9"}}"#,
    ];
    let input = dir.path().join("events.jsonl");
    std::fs::write(&input, events.join("\n")).unwrap();
    let out = vagt(&[
        "run",
        "--profile",
        "passthrough",
        "--rules",
        rules_path.to_str().unwrap(),
        "--input",
        input.to_str().unwrap(),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let found = alerts(&out);
    let titles: Vec<&str> = found
        .iter()
        .map(|a| a["rule"]["title"].as_str().unwrap())
        .collect();
    // generate: true keeps the three single-event alerts.
    assert_eq!(
        titles,
        [
            "Internal error",
            "New connection",
            "New connection",
            "Error then call-back"
        ],
        "{found:#?}"
    );
    let windowed = &found[3];
    assert_eq!(
        windowed["group"],
        serde_json::json!({"internal_ip": "10.0.0.5", "remote_ip": "10.9.9.9"})
    );
    assert_eq!(windowed["event_time"]["first"], "2026-03-02T10:00:00.000Z");
    assert_eq!(windowed["event_time"]["last"], "2026-03-02T10:00:04.000Z");
}

#[test]
fn an_input_declares_its_own_timestamp() {
    let dir = tempfile::tempdir().unwrap();
    let rules = dir.path().join("rules.yml");
    std::fs::write(
        &rules,
        "title: Base\nname: base\nlogsource: {product: test}\ndetection: {sel: {kind: x}, condition: sel}\n---\ntitle: Two within a minute\ncorrelation: {type: event_count, rules: [base], group-by: [host], timespan: 1m, condition: {gte: 2}}\n",
    )
    .unwrap();
    std::fs::write(
        dir.path().join("events.jsonl"),
        "{\"when\": \"02/03/2026 10:00:00\", \"kind\": \"x\", \"host\": \"a\"}\n{\"when\": \"02/03/2026 10:05:00\", \"kind\": \"x\", \"host\": \"a\"}\n{\"when\": \"02/03/2026 10:05:30\", \"kind\": \"x\", \"host\": \"a\"}\n",
    )
    .unwrap();
    let config = dir.path().join("vagt.yaml");
    std::fs::write(
        &config,
        "rules: [rules.yml]\nprofile: passthrough\ninputs:\n  - path: events.jsonl\n    timestamp: {fields: [when], format: \"%d/%m/%Y %H:%M:%S\"}\n",
    )
    .unwrap();
    let out = vagt(&["run", "--config", config.to_str().unwrap()]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let found = alerts(&out);
    assert_eq!(found.len(), 1, "{found:#?}");
    assert_eq!(found[0]["event_time"]["first"], "2026-03-02T10:05:00.000Z");
    assert_eq!(found[0]["event_time"]["last"], "2026-03-02T10:05:30.000Z");
}

#[test]
fn a_windowed_alert_is_not_held_back_by_a_quiet_input() {
    // Three failures complete the window; then nothing more arrives, but
    // the input stays open. Once it has been idle for the allowed lateness,
    // the waiting events are applied and the alert comes out.
    let dir = tempfile::tempdir().unwrap();
    let rules = dir.path().join("rules.yml");
    std::fs::write(
        &rules,
        "title: Failed logon\nname: failed_logon\nlogsource: {product: windows, service: security}\ndetection: {sel: {EventID: 4625}, condition: sel}\n---\ntitle: Three failures\ncorrelation: {type: event_count, rules: [failed_logon], group-by: [TargetUserName], timespan: 5m, condition: {gte: 3}}\n",
    )
    .unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_vagt"))
        .args(["run", "--rules", rules.to_str().unwrap(), "--input", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    for second in [0, 10, 20] {
        writeln!(
            stdin,
            r#"{{"@timestamp": "2026-03-02T10:00:{second:02}Z", "Channel": "Security", "EventID": 4625, "TargetUserName": "bob"}}"#
        )
        .unwrap();
    }
    stdin.flush().unwrap();
    let mut stdout = std::io::BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    // Blocks until the alert arrives (stdin is still open).
    std::io::BufRead::read_line(&mut stdout, &mut line).unwrap();
    let alert: Value = serde_json::from_str(&line).unwrap();
    assert_eq!(alert["rule"]["title"], "Three failures");
    assert_eq!(alert["count"], 3);
    drop(stdin);
    assert!(child.wait().unwrap().success());
}

#[test]
fn organisations_never_share_a_window_or_an_alert_id() {
    let dir = tempfile::tempdir().unwrap();
    let rules = dir.path().join("rules");
    std::fs::create_dir_all(&rules).unwrap();
    std::fs::write(
        rules.join("rules.yml"),
        r#"title: Failed logon
id: 3d0f7c1e-2a4b-4c6d-8e9f-0a1b2c3d4e01
name: failed_logon
logsource: {product: windows, service: security}
detection:
  selection: {EventID: 4625}
  condition: selection
level: low
---
title: Failed logons from one address
id: 3d0f7c1e-2a4b-4c6d-8e9f-0a1b2c3d4e02
correlation:
  type: event_count
  rules: [failed_logon]
  group-by: [IpAddress]
  timespan: 10m
  condition: {gte: 4}
  generate: true
level: high
"#,
    )
    .unwrap();
    let event = |second: u32| {
        format!(
            r#"{{"@timestamp": "2026-03-02T10:00:{second:02}.000Z", "Channel": "Security", "EventID": 4625, "IpAddress": "10.0.0.5", "TargetUserName": "adm"}}"#
        )
    };
    // Three failed logons each, from the same (private) address.
    let a = dir.path().join("a.jsonl");
    let b = dir.path().join("b.jsonl");
    std::fs::write(&a, [event(1), event(2), event(3)].join("\n")).unwrap();
    std::fs::write(
        &b,
        [event(1), event(2), event(3), r#"{"@timestamp": "2999-01-01T00:00:00Z", "Channel": "Security", "EventID": 4625, "IpAddress": "10.0.0.5"}"#.to_string()].join("\n"),
    )
    .unwrap();
    let out = dir.path().join("alerts.jsonl");
    let dead = dir.path().join("dead.jsonl");
    let config = dir.path().join("vagt.yaml");
    std::fs::write(
        &config,
        format!(
            "rules: [rules]\ninputs:\n  - {{path: a.jsonl, actor: kk-aarhus}}\n  - {{path: b.jsonl, actor: rnv-hospital-nord}}\noutput: {}\ndead_letters: {}\nprogress: never\n",
            out.display(),
            dead.display()
        ),
    )
    .unwrap();
    let run = Command::new(env!("CARGO_BIN_EXE_vagt"))
        .args(["run", "--config", config.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(
        run.status.success(),
        "{}",
        String::from_utf8_lossy(&run.stderr)
    );
    let alerts = crate::support::json_lines(&out);
    // Seven failed logons from 10.0.0.5, but no organisation had four.
    assert!(
        alerts.iter().all(|a| a["rule"]["title"] == "Failed logon"),
        "{alerts:?}"
    );
    assert_eq!(alerts.len(), 7);
    // The same event text from two organisations: two ids.
    let ids: std::collections::BTreeSet<&str> =
        alerts.iter().map(|a| a["id"].as_str().unwrap()).collect();
    assert_eq!(ids.len(), 7, "{ids:?}");
    // The event from the far future does not move anyone's watermark.
    let letters = crate::support::json_lines(&dead);
    assert_eq!(letters.len(), 1, "{letters:?}");
    assert!(
        letters[0]["reason"]
            .as_str()
            .unwrap()
            .contains("ahead of the clock"),
        "{letters:?}"
    );

    // One more for Aarhus: its fourth, and only its events as evidence.
    std::fs::write(&a, [event(1), event(2), event(3), event(4)].join("\n")).unwrap();
    let run = Command::new(env!("CARGO_BIN_EXE_vagt"))
        .args(["run", "--config", config.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(run.status.success());
    let alerts = crate::support::json_lines(&out);
    let window: Vec<&Value> = alerts
        .iter()
        .filter(|a| a["rule"]["title"] == "Failed logons from one address")
        .collect();
    assert_eq!(window.len(), 1, "{alerts:?}");
    assert_eq!(window[0]["actor"], "kk-aarhus");
    assert_eq!(window[0]["count"], 4);
    assert_eq!(
        window[0]["group"],
        serde_json::json!({"IpAddress": "10.0.0.5"})
    );
}
