//! Hostile rules and inputs through the `vagt` binary: a rule file built to
//! exhaust the stack, the parser or the matcher is rejected like any bad
//! rule and the other rules still run; odd records are dead letters, never
//! silently lost; a stop is not held hostage by a batch still evaluating.

use std::io::{BufRead, Read};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use crate::cli::{alerts, corpora, run_rules_over, vagt};
use crate::metrics::{free_port, scrape, value};

const GOOD: &str = "title: Good\nid: 77777777-0000-4000-8000-000000000007\nlogsource: {product: windows}\ndetection:\n  sel: {CommandLine|contains: mimikatz}\n  condition: sel\n";

/// Writes the hostile rules of the issue beside one good rule.
fn hostile_rules(dir: &Path) {
    let rule = |name: &str, detection: String| {
        std::fs::write(
            dir.join(name),
            format!("title: {name}\nlogsource: {{product: windows}}\ndetection:\n{detection}"),
        )
        .unwrap();
    };
    rule(
        "parens.yml",
        format!(
            "  sel: {{EventID: 1}}\n  condition: {}sel{}\n",
            "(".repeat(15_000),
            ")".repeat(15_000)
        ),
    );
    rule(
        "nots.yml",
        format!(
            "  sel: {{EventID: 1}}\n  condition: {}sel\n",
            "not ".repeat(30_000)
        ),
    );
    rule(
        "yaml.yml",
        format!(
            "  sel: {}{}\n  condition: sel\n",
            "[".repeat(100_000),
            "]".repeat(100_000)
        ),
    );
    let values: String = (0..100_000)
        .map(|i| format!("      - 'v{i:06}'\n"))
        .collect();
    rule(
        "values.yml",
        format!("  sel:\n    CommandLine|contains:\n{values}  condition: sel\n"),
    );
    let pieces: Vec<String> = (0..3_000).map(|i| format!("a{i}")).collect();
    rule(
        "stars.yml",
        format!(
            "  sel:\n    CommandLine: '*{}*'\n  condition: sel\n",
            pieces.join("*")
        ),
    );
    let regex = ".*x".repeat(200);
    rule(
        "regex.yml",
        format!("  sel:\n    CommandLine|re: '{regex}'\n  condition: sel\n"),
    );
    std::fs::write(dir.join("good.yml"), GOOD).unwrap();
}

/// Regression: 15,000 parentheses or 30,000 `not`s aborted `rules check`
/// and `run` (SIGABRT, exit 134); `[` nested 100,000 deep took 26 s; a
/// rule of 100,000 values 7.8 s and 1.1 GB; a wildcard of 3,000 `*` cost
/// 0.4 s per event. Each is now rejected with its reason, quickly, and the
/// good rule runs.
#[test]
fn hostile_rules_are_rejected_and_the_good_rule_runs() {
    let dir = tempfile::tempdir().unwrap();
    let rules = dir.path().join("rules");
    std::fs::create_dir(&rules).unwrap();
    hostile_rules(&rules);
    let check = vagt(&["rules", "check", rules.to_str().unwrap()]);
    let stdout = String::from_utf8_lossy(&check.stdout);
    assert_eq!(check.status.code(), Some(1), "{stdout}");
    for expected in [
        "nots.yml:1 [no id] nots.yml: condition 'not not not",
        "more than 64 levels deep",
        "parens.yml:1 [no id] parens.yml: condition '((((",
        "yaml.yml:1 [no id] (untitled): invalid YAML: collections nest more than 64 levels deep (line 4)",
        "values.yml:1 [no id] values.yml: attribute 'detection': 100001 values; a rule may hold at most 20000",
        "regex.yml:1 [no id] regex.yml: 're': the regex repeats without bound 200 times",
        "2 rules loaded (2 routable",
        "5 rejected",
    ] {
        assert!(stdout.contains(expected), "missing {expected:?} in:\n{stdout}");
    }

    // A long event: the `*` pattern (accepted, matched in one pass) costs
    // no more than any other rule.
    let input = dir.path().join("events.jsonl");
    let long = "y".repeat(5_000);
    let events: Vec<String> = (0..200)
        .map(|i| format!(r#"{{"EventID": 1, "CommandLine": "mimikatz {i} {long}"}}"#))
        .collect();
    std::fs::write(&input, events.join("\n")).unwrap();
    let stats = dir.path().join("stats.json");
    let out = run_rules_over(&rules, &input, &["--stats", stats.to_str().unwrap()]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert_eq!(alerts(&out).len(), 200, "{stderr}");
    let stats: serde_json::Value = serde_json::from_slice(&std::fs::read(&stats).unwrap()).unwrap();
    assert_eq!(stats["rules_rejected"], 5, "{stats}");
    eprintln!(
        "hostile rules: 200 events of 5 KB against the 3,000-piece wildcard and the good rule in {:.2} s of processing",
        stats["processing_seconds"]
    );
}

/// Regression: a JSON line of only brackets became neither an event nor a
/// dead letter, and an object with a key twice was evaluated with one of
/// its values while consumers disagree on which.
#[test]
fn odd_records_are_dead_letters_and_every_line_is_accounted_for() {
    let dir = tempfile::tempdir().unwrap();
    let rules = dir.path().join("good.yml");
    std::fs::write(&rules, GOOD).unwrap();
    let input = dir.path().join("events.jsonl");
    std::fs::write(
        &input,
        concat!(
            "{\"CommandLine\": \"mimikatz one\"}\n",
            "[[[[\n",
            "]]]]\n",
            "{\"CommandLine\": \"notepad.exe\", \"CommandLine\": \"mimikatz.exe\"}\n",
            "[{\"CommandLine\": \"mimikatz two\"}]\n",
            "[\n",
        ),
    )
    .unwrap();
    let dead = dir.path().join("dead.jsonl");
    let stats = dir.path().join("stats.json");
    let out = vagt(&[
        "run",
        "--rules",
        rules.to_str().unwrap(),
        "--input",
        input.to_str().unwrap(),
        "--dead-letters",
        dead.to_str().unwrap(),
        "--stats",
        stats.to_str().unwrap(),
    ]);
    assert!(out.status.success());
    assert_eq!(alerts(&out).len(), 2);
    let letters = crate::support::json_lines(&dead);
    let lines: Vec<u64> = letters
        .iter()
        .map(|d| d["line"].as_u64().unwrap())
        .collect();
    assert_eq!(lines, [2, 3, 4, 6], "{letters:?}");
    assert!(letters[2]["reason"]
        .as_str()
        .unwrap()
        .contains("duplicate key 'CommandLine'"));
    let stats: serde_json::Value = serde_json::from_slice(&std::fs::read(&stats).unwrap()).unwrap();
    assert_eq!(
        (stats["events"].as_u64(), stats["dead_letters"].as_u64()),
        (Some(2), Some(4))
    );
}

/// Regression: with a batch still being evaluated, the first SIGTERM did
/// not stop the run (300 s and more). Once `stop_evaluation` has passed
/// after the stop, the batch is abandoned: its events become dead letters
/// (the file resumes before them) and the run ends.
#[test]
fn a_stop_is_not_held_by_a_batch_still_evaluating() {
    let dir = tempfile::tempdir().unwrap();
    // 20,000 real events in one batch, against every SigmaHQ Windows rule,
    // each over every event (no logsource routing: a slow evaluation).
    let sample = corpora().join("windows-otrf-sample.jsonl.gz");
    let mut text = String::new();
    flate2::read::GzDecoder::new(std::fs::File::open(sample).unwrap())
        .read_to_string(&mut text)
        .unwrap();
    let events: Vec<&str> = text.lines().take(20_000).collect();
    let input = dir.path().join("events.jsonl");
    std::fs::write(&input, events.join("\n") + "\n").unwrap();
    let port = free_port();
    let config = dir.path().join("vagt.yaml");
    std::fs::write(
        &config,
        format!(
            "rules: [\"{}\"]\nprofile: passthrough\ninputs: [{{path: events.jsonl}}]\noutput: alerts.jsonl\ndead_letters: dead.jsonl\ndecoder: {{batch_size: 20000, batch_bytes: 268435456}}\nstop_evaluation: 0s\nprogress: never\nmetrics_listen: 127.0.0.1:{port}\n",
            corpora().join("sigmahq/rules/windows").display()
        ),
    )
    .unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_vagt"))
        .args(["run", "--config", config.to_str().unwrap()])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stderr = std::io::BufReader::new(child.stderr.take().unwrap());
    let mut line = String::new();
    while !line.contains("vagt: ready") {
        line.clear();
        assert!(stderr.read_line(&mut line).unwrap() > 0, "vagt ended");
    }
    // The one batch is decoded and handed to detection.
    let deadline = std::time::Instant::now() + Duration::from_secs(120);
    let decoded = format!("vagt_events_in_total{{source=\"{}\"}}", input.display());
    while value(&scrape(port), &decoded) != Some(20_000.0) {
        assert!(
            std::time::Instant::now() < deadline,
            "the batch was not decoded"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let kill = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(kill.success());
    let mut rest = String::new();
    stderr.read_to_string(&mut rest).unwrap();
    let status = child.wait().unwrap();
    assert!(status.success(), "{rest}");
    assert!(rest.contains("stopped by signal"), "{rest}");
    let letters = crate::support::json_lines(&dir.path().join("dead.jsonl"));
    assert_eq!(letters.len(), 20_000, "{rest}");
    assert!(letters[0]["reason"]
        .as_str()
        .unwrap()
        .starts_with("not evaluated: the run was stopping"));
}

/// Regression: an OS error's text was printed twice (`...: No such file or
/// directory (os error 2): No such file or directory (os error 2)`).
#[test]
fn an_error_says_its_cause_once() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("missing.yml");
    for args in [
        vec!["run", "--rules", missing.to_str().unwrap(), "--input", "-"],
        vec!["run", "--config", missing.to_str().unwrap()],
    ] {
        let out = vagt(&args);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{stderr}");
        assert_eq!(stderr.matches("(os error 2)").count(), 1, "{stderr}");
        assert!(stderr.contains(&missing.display().to_string()), "{stderr}");
    }
}
