//! Delivery through the public surface: webhook outages, a killed run's
//! outbox, refusals for good, and bad output configs.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::receiver::Receiver;
use crate::support::{
    alert_ids, append, eventually, json_lines, outbox_records, run_with_stats, Vagt,
};

const WAIT: Duration = Duration::from_secs(60);

/// A rule matching every test event.
pub(crate) fn write_rule(dir: &Path) -> PathBuf {
    let rule = dir.join("rule.yml");
    std::fs::write(
        &rule,
        "title: Login failure\nid: 5b0c1a9e-1111-4c1e-9a55-2f1f4d6a0c21\nlogsource: {product: test}\ndetection:\n  sel: {msg|contains: login failed}\n  condition: sel\nlevel: high\n",
    )
    .unwrap();
    rule
}

/// `n` events from `first`, one alert each.
pub(crate) fn events(first: u64, n: u64) -> String {
    (first..first + n)
        .map(|i| format!("{{\"msg\": \"login failed\", \"seq\": {i}}}\n"))
        .collect()
}

/// `ids` without repeats, first occurrence kept; and the repeats.
fn first_occurrences(ids: &[String]) -> (Vec<String>, usize) {
    let mut seen = HashSet::new();
    let unique: Vec<String> = ids.iter().filter(|i| seen.insert(*i)).cloned().collect();
    let repeats = ids.len() - unique.len();
    (unique, repeats)
}

/// A config following `events.jsonl` with an archive file and a webhook.
fn webhook_config(dir: &Path, url: &str, extra: &str) -> PathBuf {
    std::fs::create_dir_all(dir.join("outbox")).unwrap();
    let config = dir.join("vagt.yaml");
    std::fs::write(
        &config,
        format!(
            r#"rules: [rule.yml]
profile: passthrough
inputs: [{{tail: events.jsonl, actor: rnv-hospital-nord}}]
outputs:
  - {{name: archive, type: file, path: archive.jsonl}}
  - name: soc
    type: webhook
    url: "{url}/alerts/{{actor}}"
    max_batch: 25
    retry: {{initial: 100ms, max: 1s}}
    outbox: {{dir: outbox}}
    drain: 20s
dead_letters: dead.jsonl
progress: never
{extra}"#
        ),
    )
    .unwrap();
    config
}

fn stats(path: &Path) -> Value {
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

#[test]
fn a_webhook_receiver_down_for_ten_seconds_gets_every_alert_in_order() {
    let dir = tempfile::tempdir().unwrap();
    write_rule(dir.path());
    let events_file = dir.path().join("events.jsonl");
    std::fs::write(&events_file, "").unwrap();
    let receiver = Receiver::start();
    let config = webhook_config(dir.path(), &receiver.url(), "");
    let stats_file = dir.path().join("stats.json");
    let mut vagt = Vagt::with_stats(&config, &stats_file);
    vagt.wait_for("vagt: ready", WAIT);
    // 3 s up, 10 s down, 2 s up again; events all along.
    let start = Instant::now();
    let mut sent = 0;
    let mut went_down = false;
    let mut came_back = false;
    while start.elapsed() < Duration::from_secs(15) {
        append(&events_file, &events(sent, 5));
        sent += 5;
        if !went_down && start.elapsed() >= Duration::from_secs(3) {
            receiver.down();
            went_down = true;
        }
        if !came_back && start.elapsed() >= Duration::from_secs(13) {
            receiver.up();
            came_back = true;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let archive = dir.path().join("archive.jsonl");
    eventually("every alert in the archive", WAIT, || {
        alert_ids(&archive).len() as u64 == sent
    });
    eventually("every alert at the receiver", WAIT, || {
        first_occurrences(&receiver.ids()).0.len() as u64 == sent
    });
    let (status, stderr) = vagt.terminate();
    assert!(status.success(), "{stderr}");
    let produced = alert_ids(&archive);
    let (received, repeats) = first_occurrences(&receiver.ids());
    assert_eq!(received, produced, "every alert, in the order produced");
    assert!(
        receiver
            .alerts()
            .iter()
            .all(|(path, _)| path == "/alerts/rnv-hospital-nord"),
        "the organisation's own URL"
    );
    let stats = stats(&stats_file);
    let soc = &stats["outputs"]["soc"];
    assert!(soc["retried"].as_u64().unwrap() > 0, "{stats}");
    assert_eq!(soc["failed"], 0, "{stats}");
    assert_eq!(soc["pending"], 0, "{stats}");
    assert!(soc["delivered"].as_u64().unwrap() >= sent, "{stats}");
    assert!(
        stderr.contains("does not take alerts") && stderr.contains("takes alerts again"),
        "the outage is logged: {stderr}"
    );
    println!("{sent} alerts, {repeats} delivered twice around the outage");
}

#[test]
fn a_run_killed_while_the_receiver_is_down_delivers_its_outbox_after_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    write_rule(dir.path());
    let events_file = dir.path().join("events.jsonl");
    std::fs::write(&events_file, "").unwrap();
    let receiver = Receiver::reserve();
    let config = webhook_config(
        dir.path(),
        &receiver.url(),
        "windows: {state_file: state.json, snapshot_interval: 200ms}\n",
    );
    let mut vagt = Vagt::with_config(&config);
    vagt.wait_for("vagt: ready", WAIT);
    append(&events_file, &events(0, 200));
    let archive = dir.path().join("archive.jsonl");
    eventually("every alert in the archive", WAIT, || {
        alert_ids(&archive).len() == 200
    });
    // A snapshot after the last alert: the outbox holding them is synced.
    let state = dir.path().join("state.json");
    let archived = std::fs::metadata(&archive).unwrap().modified().unwrap();
    eventually("a state snapshot after the alerts", WAIT, || {
        std::fs::metadata(&state)
            .and_then(|m| m.modified())
            .is_ok_and(|t| t > archived)
    });
    vagt.signal("KILL");
    let _ = vagt.wait();
    let produced = alert_ids(&archive);
    let waiting = outbox_records(&dir.path().join("outbox"));
    assert_eq!(waiting, 200, "the outbox holds every alert");
    assert!(receiver.requests().is_empty());

    receiver.up();
    let stats_file = dir.path().join("stats.json");
    let mut vagt = Vagt::with_stats(&config, &stats_file);
    vagt.wait_for("waiting in the outbox", WAIT);
    eventually("the killed run's alerts at the receiver", WAIT, || {
        let got: HashSet<String> = receiver.ids().into_iter().collect();
        produced.iter().all(|id| got.contains(id))
    });
    let (status, stderr) = vagt.terminate();
    assert!(status.success(), "{stderr}");
    let (received, repeats) = first_occurrences(&receiver.ids());
    assert_eq!(received, produced, "in the order produced");
    println!(
        "{} alerts delivered after the restart, {repeats} twice",
        received.len()
    );
    assert_eq!(stats(&stats_file)["outputs"]["soc"]["pending"], 0);
}

#[test]
fn a_refusal_for_good_sends_alerts_to_the_dead_letters_and_other_outputs_keep_delivering() {
    let dir = tempfile::tempdir().unwrap();
    write_rule(dir.path());
    std::fs::write(dir.path().join("events.jsonl"), events(0, 50)).unwrap();
    let receiver = Receiver::start();
    receiver.answer(404);
    let config = webhook_config(dir.path(), &receiver.url(), "");
    let text = std::fs::read_to_string(&config)
        .unwrap()
        .replace("tail: events.jsonl", "path: events.jsonl");
    std::fs::write(&config, text).unwrap();
    let (stats, stderr) = run_with_stats(&config);
    assert_eq!(alert_ids(&dir.path().join("archive.jsonl")).len(), 50);
    let dead = json_lines(&dir.path().join("dead.jsonl"));
    assert_eq!(dead.len(), 50, "{stderr}");
    for letter in &dead {
        assert_eq!(letter["source"], "output soc");
        let reason = letter["reason"].as_str().unwrap();
        assert!(
            reason.contains("404") && reason.contains("no such organisation"),
            "{reason}"
        );
        assert_eq!(letter["alert"]["rule"]["title"], "Login failure");
    }
    assert_eq!(stats["outputs"]["soc"]["failed"], 50, "{stats}");
    assert_eq!(stats["outputs"]["archive"]["delivered"], 50, "{stats}");
    assert_eq!(stats["dead_letters"], 50, "{stats}");
}

#[test]
fn a_bad_output_config_is_an_error_naming_the_output_and_line() {
    let dir = tempfile::tempdir().unwrap();
    write_rule(dir.path());
    std::fs::write(dir.path().join("events.jsonl"), events(0, 1)).unwrap();
    std::fs::create_dir_all(dir.path().join("outbox")).unwrap();
    let cases = [
        (
            "outputs:\n  - {name: archive, type: file, path: archive.jsonl}\n  - {name: soc, type: webhook, url: 'soc.example/x', outbox: {dir: outbox}}\n",
            vec!["line 6", "outputs[1]", "soc (webhook)", "http://"],
        ),
        (
            "outputs:\n  - {name: archive, type: file, path: archive.jsonl}\n  - {name: soc, type: webhook, url: 'http://x', outbox: {dir: nowhere}}\n",
            vec!["line 6", "outputs[1]", "not an existing folder"],
        ),
        (
            "outputs:\n  - {name: archive, type: file, path: archive.jsonl, rotate: {max_bytes: 1TB}}\n",
            vec!["line 5", "outputs[0]", "not a size unit"],
        ),
        (
            "outputs:\n  - {name: archive, type: file, path: archive.jsonl}\nroutes:\n  - {name: all, outputs: [archiv]}\n",
            vec!["line 7", "routes[0].outputs", "(all)", "no output named 'archiv'"],
        ),
        (
            "outputs:\n  - {name: k, type: kafka, brokers: 'b:1', topic: 'alerts.{actr}'}\n",
            vec!["line 5", "outputs[0]", "unknown field {actr}"],
        ),
    ];
    for (outputs, expected) in cases {
        let config = dir.path().join("vagt.yaml");
        std::fs::write(
            &config,
            format!("rules: [rule.yml]\nprofile: passthrough\ninputs: [{{path: events.jsonl}}]\n{outputs}"),
        )
        .unwrap();
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_vagt"))
            .args(["run", "--config", config.to_str().unwrap()])
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{stderr}");
        for part in expected {
            assert!(stderr.contains(part), "{outputs}\n{stderr}");
        }
    }
}

#[test]
fn a_receiver_answering_503_for_a_while_gets_every_alert_and_retries_are_counted() {
    let dir = tempfile::tempdir().unwrap();
    write_rule(dir.path());
    std::fs::write(dir.path().join("events.jsonl"), "").unwrap();
    let receiver = Receiver::start();
    receiver.answer(503);
    let config = webhook_config(dir.path(), &receiver.url(), "");
    let stats_file = dir.path().join("stats.json");
    let mut vagt = Vagt::with_stats(&config, &stats_file);
    vagt.wait_for("vagt: ready", WAIT);
    append(&dir.path().join("events.jsonl"), &events(0, 60));
    vagt.wait_for("does not take alerts", WAIT);
    std::thread::sleep(Duration::from_secs(2));
    assert!(receiver.ids().is_empty());
    receiver.answer(200);
    let archive = dir.path().join("archive.jsonl");
    eventually("every alert at the receiver", WAIT, || {
        first_occurrences(&receiver.ids()).0.len() == 60
    });
    let (status, stderr) = vagt.terminate();
    assert!(status.success(), "{stderr}");
    assert_eq!(first_occurrences(&receiver.ids()).0, alert_ids(&archive));
    assert!(stderr.contains("503"), "the status is logged: {stderr}");
    let stats = stats(&stats_file);
    assert!(
        stats["outputs"]["soc"]["retried"].as_u64().unwrap() >= 2,
        "{stats}"
    );
    assert_eq!(stats["outputs"]["soc"]["failed"], 0, "{stats}");
}

#[test]
fn a_full_outbox_set_to_dead_letter_keeps_what_does_not_fit_in_the_dead_letters() {
    let dir = tempfile::tempdir().unwrap();
    write_rule(dir.path());
    std::fs::write(dir.path().join("events.jsonl"), events(0, 300)).unwrap();
    let receiver = Receiver::reserve();
    let config = webhook_config(dir.path(), &receiver.url(), "");
    let text = std::fs::read_to_string(&config)
        .unwrap()
        .replace("tail: events.jsonl", "path: events.jsonl")
        .replace(
            "outbox: {dir: outbox}",
            "outbox: {dir: outbox, max_bytes: 64KiB, when_full: dead_letter}",
        )
        .replace("drain: 20s", "drain: 1s");
    std::fs::write(&config, text).unwrap();
    let (stats, _) = run_with_stats(&config);
    let dead = json_lines(&dir.path().join("dead.jsonl"));
    let waiting = outbox_records(&dir.path().join("outbox"));
    assert!(
        !dead.is_empty() && waiting > 0,
        "{} dead, {waiting} waiting",
        dead.len()
    );
    assert_eq!(
        dead.len() + waiting,
        300,
        "every alert kept: dead-lettered or waiting"
    );
    for letter in &dead {
        assert_eq!(letter["source"], "output soc");
        assert!(letter["reason"]
            .as_str()
            .unwrap()
            .contains("the outbox is full"));
    }
    assert_eq!(stats["outputs"]["soc"]["failed"], dead.len(), "{stats}");
    assert_eq!(stats["outputs"]["soc"]["pending"], waiting, "{stats}");
    assert_eq!(stats["outputs"]["archive"]["delivered"], 300, "{stats}");
}
