//! Event time for whole histories and for many senders: the investigation
//! folder of `fixtures/history` gives its alerts whatever the order of its
//! files or of the records in them, within any memory budget; senders far
//! behind each other over HTTP each see their own attack; a restart keeps
//! every source's progress.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use proptest::prelude::*;
use serde_json::Value;
use vagt_engine::{InputConfig, RunConfig, RunSummary};

use crate::cli::{repo, vagt};
use crate::sources::{post, sha256_hex};
use crate::support::{eventually, json_lines, Vagt};
use crate::windows::{sorted, summary};

const WAIT: Duration = Duration::from_secs(30);

fn history() -> PathBuf {
    repo().join("fixtures/history")
}

/// The detection and windowed rules the history's scenarios need.
fn history_rules() -> Vec<PathBuf> {
    let windows = repo().join("fixtures/windows/rules");
    vec![
        windows.join("base_rules.yml"),
        windows.join("brute_force.yml"),
        windows.join("password_spray.yml"),
        windows.join("logon_service_clear.yml"),
        history().join("rules"),
    ]
}

fn host_files() -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(history().join("hosts"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    assert!(files.len() >= 10, "the history has a file per machine");
    files
}

fn expected() -> Vec<Value> {
    let text = std::fs::read_to_string(history().join("expected.json")).unwrap();
    sorted(serde_json::from_str(&text).unwrap())
}

/// Runs the pipeline in-process over `files`; returns the alerts'
/// summaries, the dead letters and the run summary.
fn run_history(
    dir: &Path,
    files: &[PathBuf],
    batch_size: usize,
    tune: impl FnOnce(&mut RunConfig),
) -> (Vec<Value>, Vec<Value>, RunSummary) {
    let output = dir.join("alerts.jsonl");
    let dead = dir.join("dead.jsonl");
    let mut config = vagt_engine::defaults::default_config();
    config.rules = history_rules();
    config.catalog = None;
    config.inputs = files.iter().cloned().map(InputConfig::file).collect();
    config.output = Some(output.clone());
    config.dead_letters = Some(dead.clone());
    config.decoder.batch_size = batch_size;
    config.progress = vagt_engine::progress::ProgressMode::Never;
    tune(&mut config);
    struct Quiet;
    impl vagt_engine::pipeline::RunObserver for Quiet {}
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let run = runtime.block_on(vagt_engine::run(config, &Quiet)).unwrap();
    let alerts = json_lines(&output).iter().map(summary).collect();
    (sorted(alerts), json_lines(&dead), run)
}

/// The event time of a record of the history, in either shape.
fn event_time(line: &str) -> i64 {
    let event: Value = serde_json::from_str(line).unwrap();
    let text = event["@timestamp"]
        .as_str()
        .or_else(|| event["Event"]["System"]["TimeCreated"]["#attributes"]["SystemTime"].as_str())
        .unwrap();
    chrono::DateTime::parse_from_rfc3339(text)
        .unwrap()
        .timestamp_millis()
}

/// A step of xorshift64.
fn next(rng: &mut u64) -> u64 {
    *rng ^= *rng << 13;
    *rng ^= *rng >> 7;
    *rng ^= *rng << 17;
    *rng
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 10, ..ProptestConfig::default() })]

    /// The files in any order; or the machines' records moved between
    /// files, each file in time order but for a delay of up to the allowed
    /// lateness per record; or the one concatenated file, in which time
    /// jumps back at every machine: the same alerts, each once, and no
    /// event late.
    #[test]
    fn an_investigation_folder_alerts_the_same_in_every_order(
        seed in 1..u64::MAX,
        batch_size in 1usize..=1000,
        shape in 0u8..3,
    ) {
        let dir = tempfile::tempdir().unwrap();
        let mut rng = seed;
        let mut files = host_files();
        let lateness_ms = 5_000;
        match shape {
            // The machines' files, in a random order.
            0 => {
                for i in (1..files.len()).rev() {
                    files.swap(i, (next(&mut rng) % (i as u64 + 1)) as usize);
                }
            }
            // A quarter of the records moved to another machine's file.
            1 => {
                let mut moved: Vec<Vec<(i64, String)>> = vec![Vec::new(); files.len()];
                for file in &files {
                    for line in std::fs::read_to_string(file).unwrap().lines() {
                        let to = if next(&mut rng).is_multiple_of(4) {
                            (next(&mut rng) % files.len() as u64) as usize
                        } else {
                            files.iter().position(|f| f == file).unwrap()
                        };
                        let delay = (next(&mut rng) % lateness_ms) as i64;
                        moved[to].push((event_time(line) + delay, line.to_string()));
                    }
                }
                files = moved
                    .into_iter()
                    .enumerate()
                    .map(|(i, mut lines)| {
                        lines.sort_by_key(|(t, _)| *t);
                        let path = dir.path().join(format!("mixed-{i}.jsonl"));
                        let text: Vec<String> = lines.into_iter().map(|(_, l)| l).collect();
                        std::fs::write(&path, text.join("\n") + "\n").unwrap();
                        path
                    })
                    .collect();
            }
            // As an export tool writes them: one machine after the other.
            _ => files = vec![history().join("all-hosts.jsonl")],
        }
        let (alerts, dead, run) = run_history(dir.path(), &files, batch_size, |_| {});
        prop_assert_eq!(alerts, expected());
        prop_assert!(dead.is_empty(), "{:?}", dead);
        prop_assert_eq!(run.late_events, 0);
        prop_assert_eq!(run.windows.ordered > 0, true);
    }
}

#[test]
fn a_folder_and_its_concatenation_give_the_historys_alerts() {
    let dir = tempfile::tempdir().unwrap();
    let mut rules: Vec<String> = vec!["run".into(), "--rules".into()];
    rules.extend(history_rules().iter().map(|p| p.display().to_string()));
    for input in [history().join("hosts"), history().join("all-hosts.jsonl")] {
        let stats = dir.path().join("stats.json");
        let mut args = rules.clone();
        args.extend([
            "--input".into(),
            input.display().to_string(),
            "--stats".into(),
            stats.display().to_string(),
        ]);
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let out = vagt(&args);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "{stderr}");
        let alerts: Vec<Value> = crate::cli::alerts(&out).iter().map(summary).collect();
        assert_eq!(sorted(alerts), expected(), "{}", input.display());
        let stats: Value = serde_json::from_slice(&std::fs::read(&stats).unwrap()).unwrap();
        assert_eq!(stats["late_events"], 0, "{stats}");
        assert_eq!(stats["dead_letters"], 0, "{stats}");
        let lines: usize = host_files()
            .iter()
            .map(|f| std::fs::read_to_string(f).unwrap().lines().count())
            .sum();
        assert_eq!(stats["events"], lines as u64, "{stats}");
    }
}

#[test]
fn a_history_beyond_its_memory_budget_is_ordered_on_disk() {
    let dir = tempfile::tempdir().unwrap();
    let spill = dir.path().join("spill");
    std::fs::create_dir(&spill).unwrap();
    let files = vec![history().join("all-hosts.jsonl")];
    let (alerts, dead, run) = run_history(dir.path(), &files, 256, |c| {
        c.windows.history_memory_bytes = 64 * 1024;
        c.windows.spill_dir = Some(spill.clone());
    });
    assert_eq!(alerts, expected());
    assert!(dead.is_empty(), "{dead:?}");
    assert!(run.windows.spilled_bytes > 64 * 1024, "{:?}", run.windows);
    assert_eq!(run.late_events, 0);
    // The sorted runs are gone once read back.
    assert_eq!(std::fs::read_dir(&spill).unwrap().count(), 0);
}

#[test]
fn a_history_beyond_memory_and_disk_is_counted_and_reported_not_applied() {
    let dir = tempfile::tempdir().unwrap();
    let files = vec![history().join("all-hosts.jsonl")];
    let (_, dead, run) = run_history(dir.path(), &files, 256, |c| {
        c.windows.history_memory_bytes = 64 * 1024;
        c.windows.history_spill_bytes = 128 * 1024;
        c.windows.spill_dir = Some(dir.path().to_path_buf());
    });
    // What could not be ordered is not applied out of order: each such
    // event is a dead letter saying why, and counted.
    assert!(run.windows.unordered > 0, "{:?}", run.windows);
    assert_eq!(dead.len() as u64, run.windows.unordered);
    assert_eq!(run.dead_letters, run.windows.unordered);
    assert!(
        dead[0]["reason"].as_str().unwrap().contains(
            "exceed windows.history_memory_bytes (65536) and windows.history_spill_bytes (131072)"
        ),
        "{}",
        dead[0]
    );
    assert!(run
        .to_string()
        .contains("events not applied: too many to order"));
}

/// Writes a config for the Windows brute-force rules over an HTTP listener
/// with a token per organisation (`<org>-secret`).
fn http_config(dir: &Path, actors: &[&str], extra: &str) -> PathBuf {
    let windows = repo().join("fixtures/windows/rules");
    let tokens: Vec<String> = actors
        .iter()
        .map(|a| {
            format!(
                "        - {{actor: {a}, token_sha256: \"{}\"}}\n",
                sha256_hex(&format!("{a}-secret"))
            )
        })
        .collect();
    let config = dir.join("vagt.yaml");
    std::fs::write(
        &config,
        format!(
            "rules: [\"{}\", \"{}\"]\ncatalog: \"{}\"\ninputs:\n  - http:\n      listen: \"127.0.0.1:0\"\n      tokens:\n{}output: alerts.jsonl\ndead_letters: dead.jsonl\nprogress: never\n{extra}",
            windows.join("base_rules.yml").display(),
            windows.join("brute_force.yml").display(),
            repo().join("fixtures/catalog.yaml").display(),
            tokens.concat(),
        ),
    )
    .unwrap();
    config
}

/// A sender's events: a heartbeat every 20 s from `start` for 10 minutes,
/// and from minute 2 a brute force of 12 failed logons 15 s apart against
/// `user` on `host`; in time order.
fn sender_events(start: i64, host: &str, user: &str) -> Vec<String> {
    let stamp = |t: i64| {
        chrono::DateTime::from_timestamp_millis(t)
            .unwrap()
            .to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
    };
    let mut events: Vec<(i64, String)> = (0..30)
        .map(|i| {
            let t = start + i * 20_000;
            (t, format!(r#"{{"@timestamp": "{}", "Hostname": "{host}", "Channel": "Security", "EventID": 4703, "SubjectUserName": "SYSTEM"}}"#, stamp(t)))
        })
        .collect();
    for i in 0..12 {
        let t = start + 120_000 + i * 15_000 + 1;
        events.push((t, format!(r#"{{"@timestamp": "{}", "Hostname": "{host}", "Channel": "Security", "EventID": 4625, "TargetUserName": "{user}", "IpAddress": "10.9.9.9"}}"#, stamp(t))));
    }
    events.sort_by_key(|(t, _)| *t);
    events.into_iter().map(|(_, e)| e).collect()
}

/// Posts each sender's events in rounds of `per_round`, the senders taking
/// turns, from `from` to `to` (indices into each sender's events).
fn post_rounds(
    addr: std::net::SocketAddr,
    senders: &[(&str, Vec<String>)],
    from: usize,
    to: usize,
    per_round: usize,
) {
    let mut at = from;
    while at < to {
        let end = (at + per_round).min(to);
        for (actor, events) in senders {
            let body = events[at..end.min(events.len())].join("\n") + "\n";
            let (status, answer) = post(addr, Some(&format!("{actor}-secret")), &body);
            assert_eq!(status, 202, "{answer}");
        }
        at = end;
    }
}

/// Brute-force alerts per organisation: (count, first, last).
fn brute_forces(alerts: &[Value]) -> BTreeMap<String, Vec<(u64, String, String)>> {
    let mut found: BTreeMap<String, Vec<(u64, String, String)>> = BTreeMap::new();
    for a in alerts {
        assert_eq!(a["rule"]["title"], "Brute force against one account", "{a}");
        found
            .entry(a["actor"].as_str().unwrap().to_string())
            .or_default()
            .push((
                a["count"].as_u64().unwrap(),
                a["event_time"]["first"].as_str().unwrap().to_string(),
                a["event_time"]["last"].as_str().unwrap().to_string(),
            ));
    }
    found
}

#[test]
fn senders_far_behind_each_other_each_see_their_own_brute_force() {
    let dir = tempfile::tempdir().unwrap();
    let actors = ["rnv-hospital-nord", "rnv-hospital-syd", "kom-fjordby"];
    let config = http_config(dir.path(), &actors, "");
    let stats = dir.path().join("stats.json");
    let mut vagt = Vagt::with_stats(&config, &stats);
    let addr = vagt.listening("http://127.0.0.1:0");
    vagt.wait_for("vagt: ready", WAIT);
    let now = chrono::Utc::now().timestamp_millis() - 15 * 60_000;
    let hour = 3_600_000;
    // Nord live; Syd's forwarder back after an outage, sending a backlog
    // two hours behind; Fjordby's clock a day behind.
    let senders = [
        (actors[0], sender_events(now, "NORD-LAB-01", "nord.admin")),
        (
            actors[1],
            sender_events(now - 2 * hour, "SYD-LAB-01", "syd.admin"),
        ),
        (
            actors[2],
            sender_events(now - 24 * hour, "FJ-WS-01", "fj.admin"),
        ),
    ];
    let total = senders[0].1.len();
    post_rounds(addr, &senders, 0, total, 4);
    let out = dir.path().join("alerts.jsonl");
    eventually("three brute-force alerts", WAIT, || {
        json_lines(&out).len() >= 3
    });
    let (status, stderr) = vagt.terminate();
    assert!(status.success(), "{stderr}");
    let found = brute_forces(&json_lines(&out));
    assert_eq!(found.len(), 3, "{found:?}");
    for (actor, alerts) in &found {
        assert_eq!(alerts.len(), 1, "{actor}: {alerts:?}");
        assert_eq!(alerts[0].0, 10, "{actor}: {alerts:?}");
    }
    assert!(json_lines(&dir.path().join("dead.jsonl")).is_empty());
    let stats: Value = serde_json::from_slice(&std::fs::read(&stats).unwrap()).unwrap();
    assert_eq!(stats["late_events"], 0, "{stats}");
    // One source per organisation and host.
    assert_eq!(stats["windows"]["sources"], 3, "{stats}");
}

#[test]
fn a_restart_keeps_every_sources_progress_and_fires_each_window_once() {
    let dir = tempfile::tempdir().unwrap();
    let actors = ["rnv-hospital-nord", "rnv-hospital-syd"];
    let config = http_config(
        dir.path(),
        &actors,
        "windows: {state_file: state.json, snapshot_interval: 1s}\n",
    );
    let now = chrono::Utc::now().timestamp_millis() - 15 * 60_000;
    let senders = [
        (actors[0], sender_events(now, "NORD-LAB-01", "nord.admin")),
        (
            actors[1],
            sender_events(now - 2 * 3_600_000, "SYD-LAB-01", "syd.admin"),
        ),
    ];
    let total = senders[0].1.len();
    // The stop comes in the middle of both brute forces (events 12..23).
    let split = 18;
    let mut outputs = Vec::new();
    for (run, (from, to)) in [(0, split), (split, total)].into_iter().enumerate() {
        let out = dir.path().join(format!("alerts-{run}.jsonl"));
        let mut vagt = Vagt::start(&[
            "--config",
            config.to_str().unwrap(),
            "--output",
            out.to_str().unwrap(),
        ]);
        let addr = vagt.listening("http://127.0.0.1:0");
        let ready = vagt.wait_for("vagt: ready", WAIT);
        assert!(!ready.is_empty());
        if run == 1 {
            let restored = vagt.stderr();
            assert!(
                restored.contains("window state restored") && restored.contains("2 sources"),
                "{restored}"
            );
        }
        if run == 1 {
            // Syd's progress came back with the state: a failed logon from
            // before it, sent first, is late for Syd's source.
            let stale = sender_events(now - 2 * 3_600_000, "SYD-LAB-01", "old.admin")
                .into_iter()
                .find(|e| e.contains("4625"))
                .unwrap();
            let (status, _) = post(addr, Some("rnv-hospital-syd-secret"), &stale);
            assert_eq!(status, 202);
        }
        post_rounds(addr, &senders, from, to, 3);
        if run == 1 {
            eventually("both brute forces", WAIT, || json_lines(&out).len() >= 2);
        } else {
            // Everything posted has been taken in before the stop.
            std::thread::sleep(Duration::from_millis(500));
        }
        let (status, stderr) = vagt.terminate();
        assert!(status.success(), "{stderr}");
        assert!(
            stderr.contains("window state and input positions saved"),
            "{stderr}"
        );
        outputs.extend(json_lines(&out));
        let dead = json_lines(&dir.path().join("dead.jsonl"));
        if run == 0 {
            assert!(dead.is_empty(), "{dead:?}");
        } else {
            assert_eq!(dead.len(), 1, "{dead:?}");
            let reason = dead[0]["reason"].as_str().unwrap();
            assert!(reason.starts_with("late event"), "{reason}");
            assert!(
                reason.contains("organisation rnv-hospital-syd, host SYD-LAB-01"),
                "{reason}"
            );
        }
    }
    let found = brute_forces(&outputs);
    assert_eq!(found.len(), 2, "{found:?}");
    for (actor, alerts) in &found {
        assert_eq!(
            alerts.len(),
            1,
            "{actor}: exactly once across the restart: {alerts:?}"
        );
        assert_eq!(alerts[0].0, 10, "{actor}: {alerts:?}");
    }
}
