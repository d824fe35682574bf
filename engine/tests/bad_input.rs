//! Bad input never stops good input: malformed JSON, binary garbage,
//! invalid UTF-8, a 10 MB line and broken rules each get a clear error or a
//! dead letter with its reason, and the good events still alert.

use std::io::Write;

use crate::cli::{alerts, run_rules_over};

#[test]
fn malformed_events_and_rules_are_reported_and_the_rest_alerts() {
    let dir = tempfile::tempdir().unwrap();
    let rules = dir.path().join("rules");
    std::fs::create_dir(&rules).unwrap();
    std::fs::write(
        rules.join("good.yml"),
        "title: Mimikatz\nid: 55555555-0000-4000-8000-000000000005\nlevel: critical\nlogsource: {product: windows, category: process_creation}\ndetection:\n  sel: {CommandLine|contains: 'sekurlsa::'}\n  condition: sel\n",
    )
    .unwrap();
    std::fs::write(
        rules.join("broken-yaml.yml"),
        "title: Broken\ndetection: {sel: [\n",
    )
    .unwrap();
    std::fs::write(
        rules.join("broken-modifier.yml"),
        "title: Broken modifier\nid: 66666666-0000-4000-8000-000000000006\nlogsource: {product: windows}\ndetection:\n  sel: {CommandLine|base65: x}\n  condition: sel\n",
    )
    .unwrap();

    let good = |n: u32| {
        format!(
            r#"{{"EventID": 1, "Channel": "Microsoft-Windows-Sysmon/Operational", "Hostname": "PC{n}", "CommandLine": "mimikatz sekurlsa::logonpasswords {n}"}}"#
        )
    };
    let input = dir.path().join("events.jsonl");
    let mut f = std::fs::File::create(&input).unwrap();
    writeln!(f, "{}", good(1)).unwrap(); // line 1
    writeln!(
        f,
        r#"{{"EventID": 1, "CommandLine": "oops" "missing comma": 1}}"#
    )
    .unwrap(); // line 2
    f.write_all(b"\x00\xff\xfe garbage \x01\x02\x03\n").unwrap(); // line 3
    writeln!(f, "{}", good(2)).unwrap(); // line 4
    f.write_all(b"{\"EventID\": 1, \"CommandLine\": \"bad \xc3\x28 utf8\"}\n")
        .unwrap(); // line 5
    let long = format!(
        r#"{{"EventID": 1, "CommandLine": "{}"}}"#,
        "A".repeat(10 * 1024 * 1024)
    );
    writeln!(f, "{long}").unwrap(); // line 6
    writeln!(f, "{}", good(3)).unwrap(); // line 7
    drop(f);

    let dead = dir.path().join("dead.jsonl");
    let out = run_rules_over(&rules, &input, &["--dead-letters", dead.to_str().unwrap()]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "rejected rules and bad events do not fail the run: {stderr}"
    );

    let alerts = alerts(&out);
    let hosts: Vec<&str> = alerts
        .iter()
        .map(|a| a["event"]["Hostname"].as_str().unwrap_or_default())
        .collect();
    assert_eq!(hosts, vec!["PC1", "PC2", "PC3"], "every good event alerts");

    assert!(
        stderr.contains("broken-yaml.yml:1") && stderr.contains("invalid YAML"),
        "{stderr}"
    );
    assert!(
        stderr.contains("broken-modifier.yml:1 [66666666-0000-4000-8000-000000000006]")
            && stderr.contains("unknown modifier 'base65'"),
        "{stderr}"
    );
    assert!(
        stderr.contains("3 alerts") && stderr.contains("4 dead letters"),
        "{stderr}"
    );

    let dead: Vec<serde_json::Value> = std::fs::read_to_string(&dead)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let lines: Vec<u64> = dead.iter().map(|d| d["line"].as_u64().unwrap()).collect();
    assert_eq!(lines, vec![2, 3, 5, 6], "{dead:#?}");
    for d in &dead {
        assert!(d["source"].as_str().unwrap().ends_with("events.jsonl"));
        assert!(!d["reason"].as_str().unwrap().is_empty());
    }
    let reason = |i: usize| dead[i]["reason"].as_str().unwrap().to_lowercase();
    assert!(reason(0).contains("json"), "{}", reason(0));
    assert!(reason(2).contains("utf-8"), "{}", reason(2));
    assert!(reason(3).contains("exceeds"), "{}", reason(3));
}
