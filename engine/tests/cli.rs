//! `vagt rules check` and `vagt run` with flags and config files.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

pub fn vagt(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_vagt"))
        .args(args)
        .env_remove("VAGT_FIXTURES")
        .output()
        .expect("run vagt")
}

/// `vagt run --rules RULES --input INPUT` and `more` arguments.
pub fn run_rules_over(rules: &Path, input: &Path, more: &[&str]) -> Output {
    let mut args = vec![
        "run",
        "--rules",
        rules.to_str().unwrap(),
        "--input",
        input.to_str().unwrap(),
    ];
    args.extend_from_slice(more);
    vagt(&args)
}

/// The run summary a successful run wrote with `--stats stats`.
pub fn summary_of(out: &Output, stats: &Path) -> serde_json::Value {
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_str(&std::fs::read_to_string(stats).unwrap()).unwrap()
}

pub fn repo() -> PathBuf {
    PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/.."))
}

pub fn corpora() -> PathBuf {
    let path = repo().join("../shared/corpora");
    assert!(
        path.join("sigmahq/rules").is_dir(),
        "the shared corpora are missing: expected {}",
        path.display()
    );
    path
}

pub fn alerts(output: &Output) -> Vec<serde_json::Value> {
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .map(|l| {
            serde_json::from_str(l).unwrap_or_else(|e| panic!("alert line is not JSON ({e}): {l}"))
        })
        .collect()
}

#[test]
fn rules_check_loads_the_sigmahq_corpus() {
    let rules = corpora().join("sigmahq/rules");
    let out = vagt(&["rules", "check", rules.to_str().unwrap()]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    let summary = stdout.lines().last().unwrap_or_default();
    let loaded: usize = summary
        .split_whitespace()
        .next()
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no summary line: {stdout}"));
    assert!(
        loaded * 100 >= 3141 * 99,
        "only {loaded} of 3141 rules loaded: {summary}"
    );
    let rejected = stdout
        .lines()
        .filter(|l| l.starts_with("rejected: "))
        .count();
    assert_eq!(
        out.status.success(),
        rejected == 0,
        "exit status follows rejections"
    );
}

#[test]
fn rules_check_names_file_rule_and_reason() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("good.yml"),
        "title: Good\nid: 11111111-0000-4000-8000-000000000001\nlogsource: {product: windows, service: security}\ndetection:\n  sel: {EventID: 4625}\n  condition: sel\n",
    )
    .unwrap();
    std::fs::write(
        dir.path().join("bad.yml"),
        "title: Bad modifier\nid: 22222222-0000-4000-8000-000000000002\nlogsource: {product: windows}\ndetection:\n  sel: {CommandLine|contians: x}\n  condition: sel\n---\ntitle: Bad condition\nid: 33333333-0000-4000-8000-000000000003\nlogsource: {product: windows}\ndetection:\n  sel: {a: 1}\n  condition: sel and (filter\n---\ntitle: [unclosed\n",
    )
    .unwrap();
    let out = vagt(&["rules", "check", dir.path().to_str().unwrap()]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(!out.status.success(), "rejections give a non-zero exit");
    assert!(stdout.contains("bad.yml:1 [22222222-0000-4000-8000-000000000002] Bad modifier: unknown modifier 'contians'"), "{stdout}");
    assert!(
        stdout
            .contains("bad.yml:8 [33333333-0000-4000-8000-000000000003] Bad condition: condition"),
        "{stdout}"
    );
    assert!(stdout.contains("unbalanced parenthesis"), "{stdout}");
    assert!(
        stdout.contains("bad.yml:15") && stdout.contains("invalid YAML"),
        "{stdout}"
    );
    assert!(
        stdout
            .lines()
            .last()
            .unwrap_or_default()
            .starts_with("1 rules loaded"),
        "{stdout}"
    );
}

#[test]
fn run_with_flags_and_with_a_config_file() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("rule.yml"),
        "title: Encoded PowerShell\nid: 44444444-0000-4000-8000-000000000004\nlevel: high\ntags: [attack.execution, attack.t1059.001]\nlogsource: {product: windows, category: process_creation}\ndetection:\n  sel:\n    Image|endswith: '\\powershell.exe'\n    CommandLine|windash|contains: ' -enc '\n  condition: sel\n",
    )
    .unwrap();
    let events = [
        r#"{"EventID": 1, "Channel": "Microsoft-Windows-Sysmon/Operational", "Hostname": "PC1", "Image": "C:\\Windows\\System32\\WindowsPowerShell\\v1.0\\powershell.exe", "CommandLine": "powershell /enc SQBFAFgA", "UtcTime": "2026-01-02 03:04:05.678"}"#,
        r#"{"EventID": 1, "Channel": "Microsoft-Windows-Sysmon/Operational", "Hostname": "PC1", "Image": "C:\\Windows\\System32\\cmd.exe", "CommandLine": "cmd /c dir"}"#,
        r#"{"EventID": 4688, "Channel": "Security", "Computer": "PC2", "NewProcessName": "C:\\Windows\\System32\\WindowsPowerShell\\v1.0\\powershell.exe", "CommandLine": "powershell -enc AAAA"}"#,
        r#"{"EventID": 3, "Channel": "Microsoft-Windows-Sysmon/Operational", "Image": "C:\\x\\powershell.exe", "CommandLine": "powershell -enc AAAA"}"#,
    ];
    std::fs::write(dir.path().join("events.jsonl"), events.join("\n")).unwrap();
    let rule = dir.path().join("rule.yml");
    let input = dir.path().join("events.jsonl");
    let stats = dir.path().join("stats.json");
    let out = run_rules_over(&rule, &input, &["--stats", stats.to_str().unwrap()]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let alerts = alerts(&out);
    assert_eq!(
        alerts.len(),
        2,
        "Sysmon 1 and Security 4688 match, network event does not"
    );
    assert_eq!(
        alerts[0]["rule"]["id"],
        "44444444-0000-4000-8000-000000000004"
    );
    assert_eq!(alerts[0]["rule"]["attack_techniques"][0], "T1059.001");
    assert_eq!(alerts[0]["event_time"]["first"], "2026-01-02T03:04:05.678Z");
    assert_eq!(alerts[1]["source"]["line"], 3);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("4 events")
            && stderr.contains("2 alerts")
            && stderr.contains("1 rules loaded"),
        "{stderr}"
    );

    // The same through a config file, with output to a file. Its folder
    // must exist: a mistyped path is not silently made a new folder.
    std::fs::write(
        dir.path().join("vagt.yaml"),
        "rules: [rule.yml]\ninputs: [{path: events.jsonl, actor: rnv-hospital-nord}]\noutput: out/alerts.jsonl\ndecoder: {batch_size: 1}\n",
    )
    .unwrap();
    let run = || {
        vagt(&[
            "run",
            "--config",
            dir.path().join("vagt.yaml").to_str().unwrap(),
        ])
    };
    let refused = run();
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert_eq!(refused.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("out/alerts.jsonl: the folder") && stderr.contains("does not exist"),
        "{stderr}"
    );
    assert!(!dir.path().join("out").exists());
    std::fs::create_dir(dir.path().join("out")).unwrap();
    let out = run();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let written = std::fs::read_to_string(dir.path().join("out/alerts.jsonl")).unwrap();
    let from_file: Vec<serde_json::Value> = written
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(from_file.len(), 2);
    assert_eq!(from_file[0]["actor"], "rnv-hospital-nord");
    assert_ne!(
        from_file[0]["id"], alerts[0]["id"],
        "the same event from an organisation is a detection of its own"
    );
    // Ids are deterministic across runs and batch sizes.
    std::fs::write(
        dir.path().join("again.yaml"),
        "rules: [rule.yml]\ninputs: [{path: events.jsonl, actor: rnv-hospital-nord}]\noutput: out/again.jsonl\n",
    )
    .unwrap();
    let again = vagt(&[
        "run",
        "--config",
        dir.path().join("again.yaml").to_str().unwrap(),
    ]);
    assert!(again.status.success());
    let again = std::fs::read_to_string(dir.path().join("out/again.jsonl")).unwrap();
    let again: Vec<serde_json::Value> = again
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(
        again.iter().map(|a| &a["id"]).collect::<Vec<_>>(),
        from_file.iter().map(|a| &a["id"]).collect::<Vec<_>>()
    );

    // A config with an unknown key is refused with the key named.
    std::fs::write(
        dir.path().join("bad.yaml"),
        "rules: [rule.yml]\ninputs: [{path: events.jsonl}]\nouptut: x\n",
    )
    .unwrap();
    let out = vagt(&[
        "run",
        "--config",
        dir.path().join("bad.yaml").to_str().unwrap(),
    ]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("unknown field `ouptut`"));
}

#[test]
fn stdin_events_alert_while_the_stream_is_still_open() {
    use std::io::{BufRead, BufReader, Write};
    use std::process::Stdio;
    let dir = tempfile::tempdir().unwrap();
    let rule = dir.path().join("rule.yml");
    std::fs::write(
        &rule,
        "title: Whoami\nid: 77777777-0000-4000-8000-000000000007\nlogsource: {product: windows, category: process_creation}\ndetection:\n  sel: {Image|endswith: '\\whoami.exe'}\n  condition: sel\n",
    )
    .unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_vagt"))
        .args(["run", "--rules", rule.to_str().unwrap(), "--input", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn vagt");
    let mut stdin = child.stdin.take().unwrap();
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            if tx.send(line.unwrap_or_default()).is_err() {
                break;
            }
        }
    });
    writeln!(
        stdin,
        r#"{{"EventID": 1, "Channel": "Microsoft-Windows-Sysmon/Operational", "Image": "C:\\Windows\\System32\\whoami.exe"}}"#
    )
    .unwrap();
    stdin.flush().unwrap();
    // The batch is not full and stdin is still open: the alert must come anyway.
    let first = rx
        .recv_timeout(std::time::Duration::from_secs(120))
        .expect("an alert before stdin is closed");
    let alert: serde_json::Value = serde_json::from_str(&first).unwrap();
    assert_eq!(alert["rule"]["id"], "77777777-0000-4000-8000-000000000007");
    assert_eq!(alert["source"]["input"], "stdin");
    drop(stdin);
    assert!(child.wait().unwrap().success());
}

#[test]
fn placeholders_come_from_the_command_line() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("admins.yml"),
        "title: Admin logon\nid: 88888888-0000-4000-8000-000000000008\nlogsource: {product: windows, service: security}\ndetection:\n  sel: {TargetUserName|expand: '%Admins%'}\n  condition: sel\n",
    )
    .unwrap();
    let path = dir.path().to_str().unwrap();
    let out = vagt(&["rules", "check", path]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout)
        .contains("placeholder '%Admins%' has no configured values"));
    let out = vagt(&["rules", "check", path, "--placeholder", "Admins=adm_*,root"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    let out = vagt(&["rules", "check", path, "--placeholder", "Admins"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("NAME=VALUE"));
}

#[test]
fn progress_lines_when_stderr_is_not_a_terminal() {
    let dir = tempfile::tempdir().unwrap();
    let rule = dir.path().join("rule.yml");
    std::fs::write(
        &rule,
        "title: Whoami\nid: 13131313-0000-4000-8000-000000000013\nlogsource: {product: windows, category: process_creation}\ndetection:\n  sel: {Image|endswith: '\\whoami.exe'}\n  condition: sel\n",
    )
    .unwrap();
    let input = dir.path().join("events.jsonl");
    let line = r#"{"EventID": 1, "Channel": "Microsoft-Windows-Sysmon/Operational", "Image": "C:\\Windows\\System32\\whoami.exe"}"#;
    std::fs::write(&input, format!("{line}\n").repeat(500)).unwrap();
    let size = std::fs::metadata(&input).unwrap().len();
    let args = [
        "run",
        "--rules",
        rule.to_str().unwrap(),
        "--input",
        input.to_str().unwrap(),
        "-o",
        "/dev/null",
    ];
    let mut with_progress = args.to_vec();
    with_progress.extend(["--progress", "always"]);
    let out = vagt(&with_progress);
    assert!(out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    let last = stderr
        .lines()
        .rev()
        .find(|l| l.starts_with("vagt: progress"))
        .unwrap_or_else(|| panic!("no progress line: {stderr}"));
    let head = format!(
        "vagt: progress 100% of {:.1} MB, 500 events (",
        size as f64 / 1e6
    );
    assert!(
        last.starts_with(&head) && last.ends_with("/s), 500 alerts (done)"),
        "{last}"
    );
    // Not on a terminal, `auto` (the default) shows nothing.
    let out = vagt(&args);
    assert!(!String::from_utf8_lossy(&out.stderr).contains("vagt: progress"));
}

#[test]
fn each_format_feeds_rules_over_its_columns() {
    let formats = repo().join("fixtures/formats");
    let rules = formats.join("rules");
    let run = |file: &str, format: &str| -> Vec<String> {
        let output = vagt(&[
            "run",
            "--rules",
            rules.to_str().unwrap(),
            "--input",
            formats.join(file).to_str().unwrap(),
            "--format",
            format,
            "--profile",
            "passthrough",
            "--dead-letters",
            "/dev/null",
        ]);
        assert!(
            output.status.success(),
            "{}",
            String::from_utf8_lossy(&output.stderr)
        );
        let mut titles: Vec<String> = alerts(&output)
            .iter()
            .map(|a| a["rule"]["title"].as_str().unwrap().to_string())
            .collect();
        titles.sort();
        titles
    };
    let beacon = "Cobalt Strike beacon seen by a network sensor";
    let tor = "Connection to a known Tor entry node";
    assert_eq!(run("suricata-eve.json", "suricata"), [beacon]);
    assert_eq!(run("cef.log", "cef"), [beacon, tor]);
    assert_eq!(run("zeek-conn.log", "zeek"), [tor]);
    assert_eq!(run("syslog.log", "syslog"), ["SSH password failure"]);
    assert_eq!(run("app.logfmt", "logfmt"), ["Medication dose override"]);
    let refused = vagt(&["run", "--rules", "x", "--input", "y", "--format", "xml"]);
    assert!(!refused.status.success());
    assert!(
        String::from_utf8_lossy(&refused.stderr).contains("unknown format 'xml'"),
        "{}",
        String::from_utf8_lossy(&refused.stderr)
    );
}

/// Alerts of the default run: (input, line, rule) in the order written.
fn default_run_alerts(workers: &str, stats: &std::path::Path) -> Vec<(String, u64, String)> {
    let out = vagt(&[
        "run",
        "--workers",
        workers,
        "--batch-size",
        "2",
        "--stats",
        stats.to_str().unwrap(),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    alerts(&out)
        .iter()
        .map(|a| {
            (
                a["source"]["input"].as_str().unwrap().to_string(),
                a["source"]["line"].as_u64().unwrap(),
                a["id"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

#[test]
fn more_workers_give_the_same_alerts_in_each_inputs_order() {
    let dir = tempfile::tempdir().unwrap();
    let stats = dir.path().join("stats.json");
    let one = default_run_alerts("1", &stats);
    let four = default_run_alerts("4", &stats);
    let summary: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&stats).unwrap()).unwrap();
    assert_eq!(summary["detection"]["workers"], 4);
    assert!(summary["detection"]["evaluation_seconds"].as_f64().unwrap() > 0.0);
    assert_eq!(one.len(), 22, "the default run's alerts");
    // Inputs are read side by side, so only each input's own order is
    // fixed: batches of two events, evaluated four at a time, come out in
    // the order their events were read.
    for run in [&one, &four] {
        for pair in run.windows(2) {
            if pair[0].0 == pair[1].0 {
                assert!(pair[0].1 <= pair[1].1, "out of order: {pair:?}");
            }
        }
    }
    let sorted = |run: &[(String, u64, String)]| {
        let mut v = run.to_vec();
        v.sort();
        v
    };
    assert_eq!(sorted(&one), sorted(&four));
}

#[test]
fn batches_are_cut_at_batch_size_events_or_batch_bytes_of_text() {
    let dir = tempfile::tempdir().unwrap();
    let stats = dir.path().join("stats.json");
    let run = |extra: &[&str]| {
        let mut args = vec!["run", "--workers", "1", "--stats", stats.to_str().unwrap()];
        args.extend_from_slice(extra);
        let out = vagt(&args);
        let summary = summary_of(&out, &stats);
        let batches = summary["detection"]["batches"].as_u64().unwrap();
        (
            summary["events"].as_u64().unwrap(),
            batches,
            alerts(&out).len(),
        )
    };
    let (events, whole, alerts) = run(&[]);
    assert!(whole < events, "{whole} batches for {events} events");
    // A byte is less than any event: each event is a batch of its own.
    assert_eq!(run(&["--batch-bytes", "1"]), (events, events, alerts));
    // As many rows as there are events do not cut a batch; bytes do.
    let (_, by_bytes, _) = run(&["--batch-size", "100000", "--batch-bytes", "2000"]);
    assert!(by_bytes > whole && by_bytes < events, "{by_bytes}");

    let stderr =
        refused_config("rules: [r.yml]\ninputs: [{path: e.jsonl}]\ndecoder: {batch_bytes: 0}\n");
    assert!(
        stderr.contains("decoder") && stderr.contains("batch_bytes must be between 1 and"),
        "{stderr}"
    );
}

/// `vagt run` with a config of `text`, which it must refuse: its stderr.
fn refused_config(text: &str) -> String {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("vagt.yaml");
    std::fs::write(&config, text).unwrap();
    let out = vagt(&["run", "--config", config.to_str().unwrap()]);
    assert!(!out.status.success());
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn zero_workers_is_refused_naming_the_setting() {
    let stderr = refused_config("rules: [r.yml]\ninputs: [{path: e.jsonl}]\nworkers: 0\n");
    assert!(
        stderr.contains("workers") && stderr.contains("at least 1"),
        "{stderr}"
    );
}

/// `vagt rules test ... --json`: the cases run, passed or not.
fn rule_test_cases(args: &[&str]) -> (Output, Vec<serde_json::Value>) {
    let mut all = vec!["rules", "test", "--json"];
    all.extend_from_slice(args);
    let out = vagt(&all);
    let cases = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    (out, cases)
}

#[test]
fn rules_test_runs_sigmahq_regression_data_as_it_is() {
    let sigmahq = corpora().join("sigmahq");
    let dirs = [
        "rules",
        "rules-emerging-threats",
        "rules-threat-hunting",
        "regression_data",
    ]
    .map(|d| sigmahq.join(d).to_str().unwrap().to_string());
    let (out, cases) = rule_test_cases(&[&dirs[0], &dirs[1], &dirs[2], "--tests", &dirs[3]]);
    let failed: Vec<&serde_json::Value> = cases.iter().filter(|c| c["passed"] != true).collect();
    assert!(failed.is_empty(), "{failed:#?}");
    assert_eq!(cases.len(), 202);
    assert!(out.status.success());
}

#[test]
fn rule_tests_beside_the_rules_pass_and_are_not_loaded_as_rules() {
    let rules = repo().join("fixtures/rules");
    let (out, cases) = rule_test_cases(&[rules.to_str().unwrap()]);
    assert!(out.status.success(), "{cases:#?}");
    assert_eq!(cases.len(), 3);
    let check = vagt(&["rules", "check", rules.to_str().unwrap()]);
    assert!(
        check.status.success(),
        "{}",
        String::from_utf8_lossy(&check.stdout)
    );
}

#[test]
fn a_failing_rule_test_shows_the_rule_the_case_and_the_events_that_differ() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("rule.yml"),
        "title: Whoami\nid: 99999999-0000-4000-8000-0000000000d1\nlogsource: {category: process_creation, product: windows}\ndetection:\n  sel: {Image|endswith: '\\whoami.exe'}\n  condition: sel\n",
    )
    .unwrap();
    std::fs::write(
        dir.path().join("rule.test.yml"),
        "rule: Whoami\ncases:\n  - name: an admin's whoami is benign\n    events:\n      - {Channel: Microsoft-Windows-Sysmon/Operational, EventID: 1, Image: 'C:\\Windows\\System32\\whoami.exe', User: admin}\n    matches: 0\n  - name: whoami matches\n    events:\n      - {Channel: Microsoft-Windows-Sysmon/Operational, EventID: 1, Image: 'C:\\Windows\\System32\\cmd.exe'}\n    matches: 1\n  - name: no such rule\n    events: [{a: 1}]\n    matches: 1\n",
    )
    .unwrap();
    std::fs::write(
        dir.path().join("other.test.yml"),
        "rule: Not loaded\ncases:\n  - {name: missing, events: [{a: 1}], matches: 0}\n",
    )
    .unwrap();
    let out = vagt(&["rules", "test", dir.path().to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("[an admin's whoami is benign] Whoami")
            && stdout.contains("1 matches, expected exactly 0")
            && stdout.contains("matched line 1:")
            && stdout.contains("whoami.exe"),
        "{stdout}"
    );
    assert!(
        stdout.contains("[whoami matches]")
            && stdout.contains("0 matches, expected exactly 1")
            && stdout.contains("not matched line 1:")
            && stdout.contains("cmd.exe"),
        "{stdout}"
    );
    assert!(
        stdout.contains("no rule 'Not loaded' among the rules loaded"),
        "{stdout}"
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("rule tests: 0 of 4 cases passed (4 failed)"),
        "{stderr}"
    );
}

/// The rules cache through `vagt run`: the second run takes every rules
/// file from it and alerts the same; a changed file is parsed again; a
/// damaged cache is warned of and rebuilt; `off` reads and writes none.
#[test]
fn the_rules_cache_spares_unchanged_files_the_parse() {
    let dir = tempfile::tempdir().unwrap();
    let rules = dir.path().join("rules");
    std::fs::create_dir(&rules).unwrap();
    let mut files = 0;
    for entry in std::fs::read_dir(repo().join("fixtures/rules")).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_str().unwrap().to_string();
        if name.ends_with(".yml") && !name.ends_with(".test.yml") {
            std::fs::copy(&path, rules.join(&name)).unwrap();
            files += 1;
        }
    }
    let cache = dir.path().join("cache");
    let stats = dir.path().join("stats.json");
    let input = repo().join("fixtures/logs/hospital-nord-sysmon.jsonl");
    let run = |setting: &str| {
        let out = run_rules_over(
            &rules,
            &input,
            &["--rules-cache", setting, "--stats", stats.to_str().unwrap()],
        );
        let summary = summary_of(&out, &stats);
        let ids: Vec<String> = alerts(&out)
            .iter()
            .map(|a| format!("{} {}", a["rule"]["id"], a["source"]["line"]))
            .collect();
        (summary["rules_cache"].clone(), ids, out)
    };
    let counts = |used: &serde_json::Value| {
        (
            used["hits"].as_u64().unwrap(),
            used["parsed"].as_u64().unwrap(),
            used["written"].as_bool().unwrap(),
        )
    };
    let setting = cache.to_str().unwrap();

    let (first, parsed_alerts, _) = run(setting);
    assert_eq!(first["files"], files);
    assert_eq!(counts(&first), (0, files, true), "{first}");
    assert!(!parsed_alerts.is_empty(), "the fixtures' rules alert");

    let (second, cached_alerts, _) = run(setting);
    assert_eq!(counts(&second), (files, 0, false), "{second}");
    assert_eq!(cached_alerts, parsed_alerts);

    let changed = rules.join("proc_creation_win_lsass_memory_dump.yml");
    let text = std::fs::read_to_string(&changed).unwrap();
    std::fs::write(&changed, format!("{text}\n# tuned\n")).unwrap();
    let (third, _, _) = run(setting);
    assert_eq!(counts(&third), (files - 1, 1, true), "{third}");

    let file = std::path::PathBuf::from(third["file"].as_str().unwrap());
    assert!(file.starts_with(&cache), "{}", file.display());
    std::fs::write(&file, b"not a rules cache").unwrap();
    let (damaged, damaged_alerts, out) = run(setting);
    assert_eq!(counts(&damaged), (0, files, true), "{damaged}");
    assert!(
        damaged["problems"][0]
            .as_str()
            .unwrap()
            .contains("is damaged"),
        "{damaged}"
    );
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("is damaged"),
        "the damage is warned of"
    );
    assert_eq!(damaged_alerts, parsed_alerts);

    let (off, off_alerts, _) = run("off");
    assert!(off.is_null(), "{off}");
    assert_eq!(off_alerts, parsed_alerts);
}

#[test]
fn an_empty_rules_cache_setting_is_refused_by_name() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("vagt.yaml");
    std::fs::write(
        &config,
        "rules: [rules]\ninputs: [{path: events.jsonl}]\nrules_cache: ''\n",
    )
    .unwrap();
    let out = vagt(&["run", "--config", config.to_str().unwrap()]);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("rules_cache") && stderr.contains("expected `auto`, `off` or a folder"),
        "{stderr}"
    );
}

/// Only the columns something reads are decoded, yet a rule still reads a
/// key with spaces by its Sigma name (`ThreatName` is `Threat Name`), and
/// a key twice in a field no rule reads still makes a dead letter.
#[test]
fn undecoded_fields_are_checked_and_spaced_names_still_read() {
    let (dir, summary, stderr) = run_one_rule(
        "title: Threat\nid: dddddddd-0000-4000-8000-000000000004\nstatus: test\nlogsource: {product: windows}\ndetection:\n    selection: {ThreatName: 'Trojan:Win32/X'}\n    condition: selection\nlevel: high\n",
        concat!(
            "{\"EventID\": 1116, \"Threat Name\": \"Trojan:Win32/X\", \"Unread\": \"y\"}\n",
            "{\"EventID\": 1116, \"Threat Name\": \"Other\", \"Unread\": [1, {\"a\": 2}]}\n",
            "{\"EventID\": 1116, \"Threat Name\": \"Trojan:Win32/X\", \"Unread\": 1, \"Unread\": 2}\n",
            "{\"EventID\": 1116, \"Unread\": \"\\x\"}\n",
        ),
    );
    let d = dir.path();
    assert_eq!(summary["alerts"], 1, "{summary} {stderr}");
    assert_eq!(summary["dead_letters"], 2, "{summary}");
    let dead = std::fs::read_to_string(d.join("dead.jsonl")).unwrap();
    assert!(dead.contains("duplicate key 'Unread'"), "{dead}");
}

/// A field only rules of one event log read (`Message`, by a rule of the
/// Application log) is decoded only in that log's rows, yet read there
/// wherever the channel lies in the event and however it is written;
/// its value in other rows is still checked as JSON.
#[test]
fn a_field_read_in_one_channel_is_read_there_wherever_the_channel_lies() {
    let (dir, summary, stderr) = run_one_rule(
        "title: Atera\nid: dddddddd-0000-4000-8000-000000000005\nstatus: test\nlogsource: {product: windows, service: application}\ndetection:\n    selection: {Message|contains: AteraAgent}\n    condition: selection\nlevel: high\n",
        concat!(
            "{\"Channel\": \"Application\", \"Message\": \"AteraAgent 1\"}\n",
            "{\"Message\": \"AteraAgent 2\\r\\n\\tinstalled\", \"EventID\": 1033, \"Channel\": \"application\"}\n",
            "{\"Event\": {\"System\": {\"Channel\": \"Application\"}}, \"Message\": \"AteraAgent 3\"}\n",
            "{\"Channel\": \"Security\", \"Message\": \"AteraAgent\"}\n",
            "{\"Message\": \"AteraAgent\", \"Channel\": \"System\"}\n",
            "{\"Message\": \"AteraAgent\", \"Message\": \"x\", \"Channel\": \"System\"}\n",
            "{\"Message\": \"\\x\", \"Channel\": \"System\"}\n",
        ),
    );
    let d = dir.path();
    assert_eq!(summary["dead_letters"], 2, "{summary} {stderr}");
    let alerts = crate::support::json_lines(&d.join("alerts.jsonl"));
    let mut found: Vec<String> = alerts
        .iter()
        .map(|a| {
            a["event"]["Message"]
                .as_str()
                .unwrap_or_default()
                .chars()
                .take(12)
                .collect()
        })
        .collect();
    found.sort();
    assert_eq!(
        found,
        ["AteraAgent 1", "AteraAgent 2", "AteraAgent 3"],
        "{summary}"
    );
    let dead = std::fs::read_to_string(d.join("dead.jsonl")).unwrap();
    assert!(dead.contains("duplicate key 'Message'"), "{dead}");
}

/// `vagt run --stats` of the rule `rule` over the events `events`, alerts
/// and dead letters written in the folder returned: the folder, the run
/// summary and stderr.
fn run_one_rule(rule: &str, events: &str) -> (tempfile::TempDir, serde_json::Value, String) {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::create_dir(d.join("rules")).unwrap();
    std::fs::write(d.join("rules/rule.yml"), rule).unwrap();
    std::fs::write(d.join("events.jsonl"), events).unwrap();
    std::fs::write(
        d.join("vagt.yaml"),
        "rules: [rules]\ninputs: [{path: events.jsonl}]\noutput: alerts.jsonl\ndead_letters: dead.jsonl\nprogress: never\n",
    )
    .unwrap();
    let (summary, stderr) = crate::support::run_with_stats(&d.join("vagt.yaml"));
    (dir, summary, stderr)
}
