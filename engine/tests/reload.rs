//! Hot reload under a steady input: SIGHUP, a change of the watched files
//! and the HTTP endpoint swap in a new version (rules, outputs, windowed
//! rules with their state), a broken config is rejected while the old
//! rules keep alerting, and every event is evaluated exactly once across
//! the swaps.

use std::time::Duration;

use crate::support::{append, eventually, json_lines, Vagt};

pub fn rule(name: &str, id: &str, event_id: u32) -> String {
    format!(
        "title: {name}\nid: {id}\nstatus: test\nlogsource: {{product: windows}}\ndetection:\n    selection: {{EventID: {event_id}}}\n    condition: selection\nlevel: high\n"
    )
}

/// `rules/a.yml` in `dir`: rule A, taking EventID 1.
fn rule_a(dir: &std::path::Path) {
    std::fs::create_dir(dir.join("rules")).unwrap();
    std::fs::write(
        dir.join("rules/a.yml"),
        rule("Rule A", "aaaaaaaa-0000-4000-8000-000000000001", 1),
    )
    .unwrap();
}

/// `rules/b.yml` in `dir`: rule B, taking EventID 2.
fn add_rule_b(dir: &std::path::Path) {
    std::fs::write(
        dir.join("rules/b.yml"),
        rule("Rule B", "bbbbbbbb-0000-4000-8000-000000000002", 2),
    )
    .unwrap();
}

pub fn events(from: usize, n: usize) -> String {
    (from..from + n)
        .map(|i| format!("{{\"EventID\": {}, \"n\": {i}}}\n", 1 + i % 2))
        .collect()
}

#[test]
fn sighup_swaps_rules_in_rejects_a_broken_config_and_loses_no_event() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    rule_a(d);
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
    add_rule_b(d);
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

/// A run from `config` in `dir` (with `rules/` and a followed
/// `events.jsonl`), ready.
fn start(dir: &std::path::Path, config: &str, env: &[(&str, &str)]) -> Vagt {
    std::fs::write(dir.join("events.jsonl"), "").unwrap();
    std::fs::write(dir.join("vagt.yaml"), config).unwrap();
    let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_vagt"));
    for (k, v) in env {
        command.env(k, v);
    }
    let mut vagt = Vagt::start_command(
        command,
        &[
            "--config",
            dir.join("vagt.yaml").to_str().unwrap(),
            "--stats",
            dir.join("stats.json").to_str().unwrap(),
        ],
    );
    vagt.wait_for("ready", Duration::from_secs(30));
    vagt
}

/// The alerts of `file` in `dir` for rule `title`.
fn titled(dir: &std::path::Path, file: &str, title: &str) -> Vec<serde_json::Value> {
    let path = dir.join(file);
    if !path.exists() {
        return Vec::new();
    }
    json_lines(&path)
        .into_iter()
        .filter(|a| a["rule"]["title"] == title)
        .collect()
}

#[test]
fn a_changed_rule_file_reloads_by_itself_and_a_broken_config_is_rejected() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    rule_a(d);
    let config = "rules: [rules]\ninputs: [{tail: events.jsonl}]\noutput: alerts.jsonl\nprogress: never\nreload: {watch: true, debounce: 200ms}\n";
    let mut vagt = start(d, config, &[]);
    append(&d.join("events.jsonl"), &events(0, 10));
    eventually("rule A alerts", Duration::from_secs(30), || {
        titled(d, "alerts.jsonl", "Rule A").len() == 5
    });
    // Alerts written beside the config are no change of it.
    assert!(
        !vagt.stderr().contains("reload asked for"),
        "{}",
        vagt.stderr()
    );

    // A new rule file: no signal, the change itself reloads.
    add_rule_b(d);
    vagt.wait_for("reloaded", Duration::from_secs(30));
    let stderr = vagt.stderr();
    assert!(
        stderr.contains("rules/b.yml"),
        "the cause names the file: {stderr}"
    );
    append(&d.join("events.jsonl"), &events(10, 10));
    eventually("rule B alerts", Duration::from_secs(30), || {
        titled(d, "alerts.jsonl", "Rule B").len() == 5
    });

    // The config replaced by a broken one (written aside and renamed over,
    // as deployments do): rejected with its error, the rules keep alerting.
    std::fs::write(d.join("vagt.yaml.new"), format!("{config}colour: red\n")).unwrap();
    std::fs::rename(d.join("vagt.yaml.new"), d.join("vagt.yaml")).unwrap();
    let line = vagt.wait_for("reload rejected", Duration::from_secs(30));
    assert!(line.contains("colour"), "{line}");
    append(&d.join("events.jsonl"), &events(20, 10));
    // One change, one reload: reading the files is no change of them.
    std::thread::sleep(Duration::from_secs(1));
    let asked = vagt.stderr().matches("reload asked for").count();
    assert_eq!(asked, 2, "{}", vagt.stderr());
    eventually("both rules still alert", Duration::from_secs(30), || {
        titled(d, "alerts.jsonl", "Rule A").len() == 15
            && titled(d, "alerts.jsonl", "Rule B").len() == 10
    });
    let (status, stderr) = vagt.terminate();
    assert!(status.success(), "{stderr}");
}

#[test]
fn the_reload_endpoint_needs_its_token_and_answers_with_the_version_that_runs() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    rule_a(d);
    let config = "rules: [rules]\ninputs: [{tail: events.jsonl}]\noutput: alerts.jsonl\nprogress: never\nreload: {http: {listen: '127.0.0.1:0', token_env: VAGT_TEST_RELOAD_TOKEN}}\n";
    let mut vagt = start(d, config, &[("VAGT_TEST_RELOAD_TOKEN", "s3cret-reload")]);
    let addr = vagt.listening("reload");
    let token = Some("s3cret-reload");
    let call = |what: &str, token: Option<&str>| -> (u16, serde_json::Value) {
        let (status, body) = crate::sources::request(addr, what, token, "");
        (status, serde_json::from_str(&body).unwrap_or_default())
    };
    assert_eq!(call("POST /reload", None).0, 401);
    assert_eq!(call("POST /reload", Some("wrong")).0, 401);
    assert_eq!(call("GET /reload", None).0, 401);
    let (status, running) = call("GET /reload", token);
    assert_eq!(status, 200);
    let first = running["version"].as_str().unwrap().to_string();

    let (status, body) = call("POST /reload", token);
    assert_eq!(
        (status, &body["result"]),
        (200, &"unchanged".into()),
        "{body}"
    );
    assert_eq!(body["version"], first);

    add_rule_b(d);
    let (status, body) = call("POST /reload", token);
    assert_eq!(
        (status, &body["result"]),
        (200, &"applied".into()),
        "{body}"
    );
    assert_eq!(body["previous"], first);
    let second = body["version"].as_str().unwrap().to_string();
    assert_ne!(second, first);
    // Applied means running: the very next event meets the new rule.
    append(&d.join("events.jsonl"), &events(0, 2));
    eventually("rule B alerts", Duration::from_secs(30), || {
        titled(d, "alerts.jsonl", "Rule B").len() == 1
    });

    // A change only a restart can apply: rejected, naming it.
    std::fs::write(
        d.join("vagt.yaml"),
        config.replace("{tail: events.jsonl}", "{tail: other.jsonl}"),
    )
    .unwrap();
    let (status, body) = call("POST /reload", token);
    assert_eq!(status, 422, "{body}");
    assert_eq!(body["result"], "rejected");
    assert_eq!(body["version"], second, "the running version stays");
    assert!(body["error"].as_str().unwrap().contains("inputs"), "{body}");
    assert_eq!(call("GET /reload", token).1["version"], second);
    let (status, stderr) = vagt.terminate();
    assert!(status.success(), "{stderr}");
}

#[test]
fn a_reload_adds_changes_and_removes_outputs_and_loses_no_alert() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    rule_a(d);
    let head = "rules: [rules]\ninputs: [{tail: events.jsonl}]\nprogress: never\nsuppression: {correlation: {window: 0s}}\noutputs:\n";
    let keep = "  - {name: keep, type: file, path: keep.jsonl}\n";
    // Holds every repeat back: its first alert, then one follow-up.
    let held = "  - {name: held, type: file, path: held.jsonl, suppress: {by: [], window: 1h}}\n";
    let mut vagt = start(d, &format!("{head}{keep}{held}"), &[]);
    let reload = |vagt: &mut Vagt, outputs: &str| {
        std::fs::write(d.join("vagt.yaml"), format!("{head}{outputs}")).unwrap();
        vagt.signal("HUP");
        vagt.wait_for("reloaded", Duration::from_secs(30));
    };
    // Events 0..20 (10 alerts) to keep and held.
    append(&d.join("events.jsonl"), &events(0, 20));
    eventually("keep has 10", Duration::from_secs(30), || {
        titled(d, "keep.jsonl", "Rule A").len() == 10
    });

    // An output added; held removed: its open group reports first.
    let added = "  - {name: added, type: file, path: added.jsonl}\n";
    reload(&mut vagt, &format!("{keep}{added}"));
    let held_alerts = titled(d, "held.jsonl", "Rule A");
    assert_eq!(held_alerts.len(), 2, "the first alert and the follow-up");
    assert_eq!(held_alerts[1]["suppression"]["suppressed"], 9);
    append(&d.join("events.jsonl"), &events(20, 20));
    eventually(
        "keep and added have 10 more",
        Duration::from_secs(30),
        || {
            titled(d, "keep.jsonl", "Rule A").len() == 20
                && titled(d, "added.jsonl", "Rule A").len() == 10
        },
    );

    // `added` changed (another file): the old file stops, the new starts.
    let moved = "  - {name: added, type: file, path: moved.jsonl}\n";
    reload(&mut vagt, &format!("{keep}{moved}"));
    append(&d.join("events.jsonl"), &events(40, 20));
    eventually(
        "keep and moved have 10 more",
        Duration::from_secs(30),
        || {
            titled(d, "keep.jsonl", "Rule A").len() == 30
                && titled(d, "moved.jsonl", "Rule A").len() == 10
        },
    );
    let (status, stderr) = vagt.terminate();
    assert!(status.success(), "{stderr}");

    let numbers = |file: &str| -> Vec<u64> {
        titled(d, file, "Rule A")
            .iter()
            .filter(|a| a.get("suppression").is_none())
            .map(|a| a["event"]["n"].as_u64().unwrap())
            .collect()
    };
    let even = |from: u64, to: u64| -> Vec<u64> { (from..to).filter(|n| n % 2 == 0).collect() };
    // Each output got exactly the events of its time, each once.
    assert_eq!(numbers("keep.jsonl"), even(0, 60));
    assert_eq!(numbers("held.jsonl"), even(0, 2));
    assert_eq!(numbers("added.jsonl"), even(20, 40));
    assert_eq!(numbers("moved.jsonl"), even(40, 60));
    // The summary counts every output the run had; a changed one keeps
    // its counters.
    let stats: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(d.join("stats.json")).unwrap()).unwrap();
    assert_eq!(stats["outputs"]["keep"]["delivered"], 30);
    assert_eq!(stats["outputs"]["held"]["delivered"], 2);
    assert_eq!(stats["outputs"]["held"]["suppressed"], 9);
    assert_eq!(stats["outputs"]["added"]["delivered"], 20);
}

/// A correlation over rule A's events: `threshold` of them per user.
fn counting(threshold: u32) -> String {
    format!(
        "title: Count\nid: cccccccc-0000-4000-8000-000000000003\nstatus: test\ncorrelation:\n    type: event_count\n    rules: [aaaaaaaa-0000-4000-8000-000000000001]\n    group-by: [User]\n    timespan: 1h\n    condition: {{gte: {threshold}}}\nlevel: high\n"
    )
}

/// `n` events for rule A (EventID 1) of user `x`, a second apart from
/// second `from`.
fn counted(from: usize, n: usize) -> String {
    (from..from + n)
        .map(|i| {
            format!("{{\"EventID\": 1, \"User\": \"x\", \"n\": {i}, \"@timestamp\": \"2026-03-02T10:00:{i:02}Z\"}}\n")
        })
        .collect()
}

#[test]
fn window_state_of_unchanged_rules_survives_a_reload_and_a_changed_rule_starts_afresh() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    rule_a(d);
    std::fs::write(d.join("rules/count.yml"), counting(4)).unwrap();
    // Rule A feeds the count (and alerts no more itself); this one shows
    // how far detection got.
    std::fs::write(
        d.join("rules/seen.yml"),
        rule("Seen", "dddddddd-0000-4000-8000-000000000004", 1),
    )
    .unwrap();
    let config =
        "rules: [rules]\ninputs: [{tail: events.jsonl}]\noutput: alerts.jsonl\nprogress: never\nsuppression: {correlation: {window: 0s}}\n";
    let mut vagt = start(d, config, &[]);
    let counts = || titled(d, "alerts.jsonl", "Count");
    append(&d.join("events.jsonl"), &counted(0, 2));
    eventually("two events seen", Duration::from_secs(30), || {
        titled(d, "alerts.jsonl", "Seen").len() == 2
    });

    // Another rule added: the count of 2 carries over, 2 more reach 4.
    add_rule_b(d);
    vagt.signal("HUP");
    vagt.wait_for("reloaded", Duration::from_secs(30));
    append(&d.join("events.jsonl"), &counted(2, 2));
    eventually("the count fires", Duration::from_secs(30), || {
        counts().len() == 1
    });
    assert_eq!(counts()[0]["count"], 4, "{}", counts()[0]);

    // The correlation changed (3 now): its state starts afresh, so two
    // more events are not enough, a third is.
    std::fs::write(d.join("rules/count.yml"), counting(3)).unwrap();
    vagt.signal("HUP");
    vagt.wait_for(
        "window state of unchanged windowed rules kept",
        Duration::from_secs(30),
    );
    append(&d.join("events.jsonl"), &counted(4, 2));
    eventually("six events seen", Duration::from_secs(30), || {
        titled(d, "alerts.jsonl", "Seen").len() == 6
    });
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(counts().len(), 1, "a changed rule keeps no old state");
    append(&d.join("events.jsonl"), &counted(6, 1));
    eventually("the changed count fires", Duration::from_secs(30), || {
        counts().len() == 2
    });
    assert_eq!(counts()[1]["count"], 3, "{}", counts()[1]);
    let (status, stderr) = vagt.terminate();
    assert!(status.success(), "{stderr}");
}

/// Inputs decode only the columns the rules read: a reload that brings a
/// rule reading a field no rule read before (here `User`) alerts on it
/// from the next event on, with no event lost or evaluated twice.
#[test]
fn a_reloaded_rule_reading_a_new_field_sees_it() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    rule_a(d);
    let config =
        "rules: [rules]\ninputs: [{tail: events.jsonl}]\noutput: alerts.jsonl\nprogress: never\n";
    let mut vagt = start(d, config, &[]);
    let users = |from: usize, n: usize| -> String {
        (from..from + n)
            .map(|i| {
                format!(
                    "{{\"EventID\": {}, \"User\": \"alice\", \"n\": {i}}}\n",
                    1 + i % 2
                )
            })
            .collect()
    };
    append(&d.join("events.jsonl"), &users(0, 40));
    eventually("rule A alerts", Duration::from_secs(30), || {
        titled(d, "alerts.jsonl", "Rule A").len() == 20
    });
    std::fs::write(
        d.join("rules/user.yml"),
        "title: Alice\nid: cccccccc-0000-4000-8000-000000000003\nstatus: test\nlogsource: {product: windows}\ndetection:\n    selection: {User: alice}\n    condition: selection\nlevel: high\n",
    )
    .unwrap();
    vagt.signal("HUP");
    vagt.wait_for("reloaded", Duration::from_secs(30));
    append(&d.join("events.jsonl"), &users(40, 40));
    eventually("the new rule alerts", Duration::from_secs(30), || {
        titled(d, "alerts.jsonl", "Alice").len() == 40
    });
    let (status, stderr) = vagt.terminate();
    assert!(status.success(), "{stderr}");
    let alice = titled(d, "alerts.jsonl", "Alice");
    let mut seen: Vec<u64> = alice
        .iter()
        .map(|a| a["event"]["n"].as_u64().unwrap())
        .collect();
    seen.sort_unstable();
    assert_eq!(seen, (40..80).collect::<Vec<u64>>());
    assert_eq!(titled(d, "alerts.jsonl", "Rule A").len(), 40);
}
