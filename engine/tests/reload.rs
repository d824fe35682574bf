//! Hot reload under a steady input: SIGHUP swaps in a new rule, a broken
//! config is rejected while the old rules keep alerting, and every event
//! is evaluated exactly once across the swaps.

use std::time::Duration;

use crate::support::{append, eventually, json_lines, Vagt};

fn rule(name: &str, id: &str, event_id: u32) -> String {
    format!(
        "title: {name}\nid: {id}\nstatus: test\nlogsource: {{product: windows}}\ndetection:\n    selection: {{EventID: {event_id}}}\n    condition: selection\nlevel: high\n"
    )
}

fn events(from: usize, n: usize) -> String {
    (from..from + n)
        .map(|i| format!("{{\"EventID\": {}, \"n\": {i}}}\n", 1 + i % 2))
        .collect()
}

#[test]
fn sighup_swaps_rules_in_rejects_a_broken_config_and_loses_no_event() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::create_dir(d.join("rules")).unwrap();
    std::fs::write(
        d.join("rules/a.yml"),
        rule("Rule A", "aaaaaaaa-0000-4000-8000-000000000001", 1),
    )
    .unwrap();
    std::fs::write(d.join("events.jsonl"), "").unwrap();
    let config =
        "rules: [rules]\ninputs: [{tail: events.jsonl}]\noutput: alerts.jsonl\nprogress: never\n";
    std::fs::write(d.join("vagt.yaml"), config).unwrap();
    let mut vagt = Vagt::with_config(&d.join("vagt.yaml"));
    vagt.wait_for("ready", Duration::from_secs(30));
    let alerts = d.join("alerts.jsonl");
    let count = |title: &str| -> usize {
        if !alerts.exists() {
            return 0;
        }
        json_lines(&alerts)
            .iter()
            .filter(|a| a["rule"]["title"] == title)
            .count()
    };
    // Events 0..100: rule A takes the odd EventID 1s (50).
    append(&d.join("events.jsonl"), &events(0, 100));
    eventually("rule A alerts", Duration::from_secs(30), || {
        count("Rule A") == 50
    });

    // A new rule, then SIGHUP: it takes effect for what comes after.
    std::fs::write(
        d.join("rules/b.yml"),
        rule("Rule B", "bbbbbbbb-0000-4000-8000-000000000002", 2),
    )
    .unwrap();
    vagt.signal("HUP");
    vagt.wait_for("reloaded", Duration::from_secs(30));
    append(&d.join("events.jsonl"), &events(100, 100));
    eventually("rule B alerts", Duration::from_secs(30), || {
        count("Rule B") == 50 && count("Rule A") == 100
    });

    // A broken config: rejected, the running version keeps alerting.
    std::fs::write(d.join("vagt.yaml"), format!("{config}colour: red\n")).unwrap();
    vagt.signal("HUP");
    let line = vagt.wait_for("reload rejected", Duration::from_secs(30));
    assert!(line.contains("colour"), "{line}");
    append(&d.join("events.jsonl"), &events(200, 100));
    eventually("both rules still alert", Duration::from_secs(30), || {
        count("Rule B") == 100 && count("Rule A") == 150
    });
    let (status, stderr) = vagt.terminate();
    assert!(status.success(), "{stderr}");
    // Every event evaluated once: each alert's event is distinct.
    let all = json_lines(&alerts);
    let mut seen: Vec<u64> = all
        .iter()
        .map(|a| a["event"]["n"].as_u64().unwrap())
        .collect();
    seen.sort_unstable();
    let before = seen.len();
    seen.dedup();
    assert_eq!(seen.len(), before, "no event alerted twice");
    assert_eq!(count("Rule A"), 150);
    assert_eq!(count("Rule B"), 100);
    // Events 0..100 were before rule B: none of them alerted for it.
    assert!(all
        .iter()
        .filter(|a| a["rule"]["title"] == "Rule B")
        .all(|a| a["event"]["n"].as_u64().unwrap() >= 100));
}
