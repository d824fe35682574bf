//! The warning service through `vagt run`: suppression of repeats with
//! follow-ups (also across a restart), TLP against each output's
//! audience, sector campaigns with pseudonymised organisations, and the
//! response guidance from the catalog.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use hmac::{Hmac, Mac};
use serde_json::Value;
use sha2::Sha256;

use crate::cli::vagt;
use crate::support::{json_lines, run_with_stats, run_with_stats_env};

/// A value_count spray rule over explicit-credential logons, as the
/// issue saw it: one alert every ten distinct accounts.
const SPRAY_RULES: &str = r#"title: Explicit credential logon
id: 7d3c3f1e-5b0a-4c55-9d7e-1f6a2b3c4d01
name: explicit_logon
status: test
logsource: {product: windows, service: security}
detection:
    selection: {EventID: 4648}
    condition: selection
level: low
---
title: Password spray with explicit credentials
id: 7d3c3f1e-5b0a-4c55-9d7e-1f6a2b3c4d02
status: test
correlation:
    type: value_count
    rules: [explicit_logon]
    group-by: [IpAddress]
    timespan: 15m
    condition: {field: TargetUserName, gte: 10}
level: high
"#;

/// `n` explicit-credential logons from one address, a second apart, each
/// for another account, starting at `from`.
fn spray(from: usize, n: usize) -> String {
    (from..from + n)
        .map(|i| {
            format!(
                "{{\"@timestamp\": \"2026-03-02T10:{:02}:{:02}.000Z\", \"Computer\": \"HN-WS-0142\", \"Channel\": \"Security\", \"EventID\": 4648, \"IpAddress\": \"10.31.9.9\", \"TargetUserName\": \"user{i:03}\"}}\n",
                i / 60,
                i % 60
            )
        })
        .collect()
}

fn write(dir: &Path, name: &str, text: &str) {
    std::fs::write(dir.join(name), text).unwrap();
}

fn spray_config(dir: &Path, extra: &str) -> std::path::PathBuf {
    write(dir, "rules.yml", SPRAY_RULES);
    let config = dir.join("vagt.yaml");
    write(
        dir,
        "vagt.yaml",
        &format!(
            "rules: [rules.yml]\ninputs: [{{path: events.jsonl}}]\noutput: alerts.jsonl\nprogress: never\n{extra}"
        ),
    );
    config
}

/// `vagt routes test --json` of `config` over the alerts in `alerts`.
fn dry_run(config: &Path, alerts: &Path) -> Vec<Value> {
    let out = vagt(&[
        "routes",
        "test",
        config.to_str().unwrap(),
        alerts.to_str().unwrap(),
        "--json",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

fn is_follow_up(alert: &Value) -> bool {
    alert.get("suppression").is_some()
}

#[test]
fn a_spray_gives_one_alert_and_a_follow_up_that_counts_the_rest() {
    // Without suppression: how many alerts the spray raises.
    let plain = tempfile::tempdir().unwrap();
    write(plain.path(), "events.jsonl", &spray(0, 300));
    let config = spray_config(plain.path(), "suppression: {correlation: {window: 0s}}\n");
    run_with_stats(&config);
    let all = json_lines(&plain.path().join("alerts.jsonl"));
    let n = all.len() as u64;
    assert!(n >= 20, "the spray raises many alerts unsuppressed: {n}");

    // With the default: one at once, and one follow-up for the rest.
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "events.jsonl", &spray(0, 300));
    let config = spray_config(dir.path(), "");
    let (summary, _) = run_with_stats(&config);
    let alerts = json_lines(&dir.path().join("alerts.jsonl"));
    assert_eq!(alerts.len(), 2, "{alerts:#?}");
    assert!(!is_follow_up(&alerts[0]));
    assert_eq!(
        alerts[0]["id"], all[0]["id"],
        "the first alert goes out as it is"
    );
    let report = &alerts[1]["suppression"];
    assert_eq!(report["of"], alerts[0]["id"]);
    assert_eq!(report["suppressed"], n - 1);
    assert_eq!(report["total"], n);
    assert_eq!(report["scope"], "correlation");
    assert_eq!(report["key"]["group"]["IpAddress"], "10.31.9.9");
    assert_eq!(report["first"], all[1]["event_time"]["first"]);
    assert_eq!(report["last"], all[all.len() - 1]["event_time"]["last"]);
    let events: u64 = all[1..].iter().map(|a| a["count"].as_u64().unwrap()).sum();
    assert_eq!(report["events"], events);
    let output = &summary["outputs"]["alerts"];
    assert_eq!(output["suppressed"], n - 1);
    assert_eq!(output["follow_ups"], 1);
    assert_eq!(output["delivered"], 2);

    // The dry run replays the unsuppressed alerts through the same
    // decisions: the first is sent, the rest held, and the end reports them.
    let lines = dry_run(&config, &plain.path().join("alerts.jsonl"));
    assert_eq!(lines.len() as u64, n + 1, "each alert, then the follow-up");
    let verdicts: Vec<&str> = lines[..n as usize]
        .iter()
        .map(|l| l["outputs"][0]["verdict"].as_str().unwrap())
        .collect();
    assert_eq!(verdicts[0], "send");
    assert!(verdicts[1..].iter().all(|v| *v == "held"), "{verdicts:?}");
    let follow_up = &lines[n as usize]["follow_up"];
    assert_eq!(follow_up["of"], all[0]["id"]);
    assert_eq!(follow_up["suppressed"], n - 1);
}

#[test]
fn a_restart_in_the_middle_of_a_spray_sends_no_second_first_alert() {
    let plain = tempfile::tempdir().unwrap();
    write(plain.path(), "events.jsonl", &spray(0, 300));
    let config = spray_config(plain.path(), "suppression: {correlation: {window: 0s}}\n");
    run_with_stats(&config);
    let n = json_lines(&plain.path().join("alerts.jsonl")).len() as u64;

    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "events.jsonl", &spray(0, 150));
    let config = spray_config(dir.path(), "windows: {state_file: state.json}\n");
    run_with_stats(&config);
    let first_run = json_lines(&dir.path().join("alerts.jsonl")).len();
    // The rest arrives; a second run resumes from the state file.
    crate::support::append(&dir.path().join("events.jsonl"), &spray(150, 150));
    let (summary, _) = run_with_stats(&config);
    let alerts = json_lines(&dir.path().join("alerts.jsonl"));
    assert!(alerts.len() > first_run, "the second run reported more");
    let firsts: Vec<&Value> = alerts.iter().filter(|a| !is_follow_up(a)).collect();
    assert_eq!(firsts.len(), 1, "one first alert in all: {alerts:#?}");
    let reported: u64 = alerts
        .iter()
        .filter(|a| is_follow_up(a))
        .map(|a| a["suppression"]["suppressed"].as_u64().unwrap())
        .sum();
    assert_eq!(reported, n - 1, "the follow-ups add up to every repeat");
    let follow_ups: Vec<&Value> = alerts.iter().filter(|a| is_follow_up(a)).collect();
    assert_eq!(follow_ups.len(), 2, "one per run");
    assert_eq!(follow_ups[1]["suppression"]["total"], n);
    assert_ne!(follow_ups[0]["id"], follow_ups[1]["id"]);
    assert_eq!(summary["outputs"]["alerts"]["follow_ups"], 1);
}

/// Rules tagged with each TLP label, all matching one event.
fn tlp_rules() -> String {
    [
        ("clear", "tlp.clear"),
        ("green", "tlp.green"),
        ("amber", "tlp.amber"),
        ("strict", "tlp.amber+strict"),
        ("red", "tlp.red"),
        ("untagged", "attack.execution"),
    ]
    .iter()
    .enumerate()
    .map(|(i, (name, tag))| {
        format!(
            "title: TLP rule {name}\nid: 00000000-0000-4000-8000-00000000000{i}\nstatus: test\nlogsource: {{product: windows}}\ndetection:\n    selection: {{EventID: 1}}\n    condition: selection\ntags: [{tag}]\nlevel: medium\n"
        )
    })
    .collect::<Vec<_>>()
    .join("---\n")
}

#[test]
fn tlp_decides_which_audiences_get_an_alert_and_refusals_are_counted() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "rules.yml", &tlp_rules());
    write(
        dir.path(),
        "events.jsonl",
        "{\"EventID\": 1, \"Computer\": \"HN-WS-0001\", \"@timestamp\": \"2026-03-02T10:00:00Z\"}\n",
    );
    // The config's default is GREEN: the untagged rule's alert is GREEN;
    // a tag, even a less restrictive one, is the rule's own choice.
    let config = dir.path().join("vagt.yaml");
    write(
        dir.path(),
        "vagt.yaml",
        "rules: [rules.yml]\ninputs: [{path: events.jsonl}]\nprogress: never\ndead_letters: dead.jsonl\ntlp: green\noutputs:\n  - {name: organisation, type: file, path: organisation.jsonl, audience: organisation}\n  - {name: sector, type: file, path: sector.jsonl, audience: community}\n  - {name: public, type: file, path: public.jsonl, audience: public}\n",
    );
    let (summary, _) = run_with_stats(&config);

    // Independently: TLP 2.0 says who may see what.
    let label = |title: &str| -> &'static str {
        match title.trim_start_matches("TLP rule ") {
            "clear" => "TLP:CLEAR",
            "green" | "untagged" => "TLP:GREEN", // untagged: the default
            "amber" => "TLP:AMBER",
            "strict" => "TLP:AMBER+STRICT",
            "red" => "TLP:RED",
            other => panic!("{other}"),
        }
    };
    let admits = |tlp: &str, audience: &str| -> bool {
        match tlp {
            "TLP:CLEAR" => true,
            "TLP:GREEN" => audience != "public",
            "TLP:AMBER" => audience == "organisation",
            "TLP:AMBER+STRICT" => audience == "organisation",
            "TLP:RED" => false, // no output speaks to named recipients
            _ => unreachable!(),
        }
    };
    let titles =
        ["clear", "green", "amber", "strict", "red", "untagged"].map(|t| format!("TLP rule {t}"));
    for (output, audience) in [
        ("organisation", "organisation"),
        ("sector", "community"),
        ("public", "public"),
    ] {
        let got: BTreeMap<String, String> = json_lines(&dir.path().join(format!("{output}.jsonl")))
            .iter()
            .map(|a| {
                (
                    a["rule"]["title"].as_str().unwrap().to_string(),
                    a["tlp"].as_str().unwrap().to_string(),
                )
            })
            .collect();
        let expected: BTreeMap<String, String> = titles
            .iter()
            .filter(|t| admits(label(t), audience))
            .map(|t| (t.clone(), label(t).to_string()))
            .collect();
        assert_eq!(got, expected, "output {output}");
        let refused = titles
            .iter()
            .filter(|t| !admits(label(t), audience))
            .count();
        assert_eq!(
            summary["outputs"][output]["refused_tlp"], refused as u64,
            "output {output}"
        );
    }
    // The dry run over what the organisation got says, per output, what
    // the run did.
    for line in dry_run(&config, &dir.path().join("organisation.jsonl")) {
        for o in line["outputs"].as_array().unwrap() {
            let audience = match o["output"].as_str().unwrap() {
                "sector" => "community",
                other => other,
            };
            let tlp = line["tlp"].as_str().unwrap();
            let expected = if admits(tlp, audience) {
                "send"
            } else {
                "refused"
            };
            assert_eq!(o["verdict"], expected, "{line}");
        }
    }
    // The RED alert reached no one: a dead letter, counted.
    assert_eq!(summary["alerts_refused_tlp"], 1);
    let dead = json_lines(&dir.path().join("dead.jsonl"));
    assert_eq!(dead.len(), 1, "{dead:#?}");
    assert!(
        dead[0]["reason"].as_str().unwrap().contains("TLP:RED"),
        "{dead:#?}"
    );
}

#[test]
fn a_route_or_an_asset_raises_the_tlp_and_the_most_restrictive_wins() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "rules.yml", &tlp_rules());
    write(
        dir.path(),
        "catalog.yaml",
        "processes:\n  - {id: lab, name: Lab, criticality: high, response: {on_call: lab-vagt, within: 15m, steps: [isolate], procedure: https://x.example/lab}}\nactors:\n  - {id: hosp, name: Hospital, kind: hospital}\nassets:\n  - {id: secret-lab, actor: hosp, processes: [lab], tlp: amber+strict, match: {hosts: [LAB-*]}}\n",
    );
    write(
        dir.path(),
        "events.jsonl",
        "{\"EventID\": 1, \"Computer\": \"LAB-01\"}\n{\"EventID\": 1, \"Computer\": \"WS-01\"}\n",
    );
    let config = dir.path().join("vagt.yaml");
    write(
        dir.path(),
        "vagt.yaml",
        "rules: [rules.yml]\ncatalog: catalog.yaml\ninputs: [{path: events.jsonl}]\nprogress: never\ndead_letters: dead.jsonl\ntlp: clear\noutputs:\n  - {name: org, type: file, path: org.jsonl}\n  - {name: recipients, type: file, path: recipients.jsonl, audience: recipients}\nroutes:\n  - {name: red-to-people, match: {tags: [tlp.red]}, outputs: [recipients]}\n  - {name: green-floor, match: {tags: [tlp.clear]}, outputs: [org], tlp: green}\n  - {name: rest, outputs: [org]}\n",
    );
    run_with_stats(&config);
    let org = json_lines(&dir.path().join("org.jsonl"));
    let tlp_of = |title: &str, host: &str| -> Option<String> {
        org.iter()
            .find(|a| a["rule"]["title"] == title && a["event"]["Computer"] == host)
            .map(|a| a["tlp"].as_str().unwrap().to_string())
    };
    // The route's floor: CLEAR becomes GREEN.
    assert_eq!(
        tlp_of("TLP rule clear", "WS-01").as_deref(),
        Some("TLP:GREEN")
    );
    // The asset's AMBER+STRICT wins over the rule's GREEN and the route's.
    assert_eq!(
        tlp_of("TLP rule clear", "LAB-01").as_deref(),
        Some("TLP:AMBER+STRICT")
    );
    assert_eq!(
        tlp_of("TLP rule green", "LAB-01").as_deref(),
        Some("TLP:AMBER+STRICT")
    );
    assert_eq!(
        tlp_of("TLP rule untagged", "WS-01").as_deref(),
        Some("TLP:CLEAR")
    );
    // RED goes to the named recipients only.
    let recipients = json_lines(&dir.path().join("recipients.jsonl"));
    assert_eq!(recipients.len(), 2);
    assert!(recipients.iter().all(|a| a["tlp"] == "TLP:RED"));
    // The lab's response guidance rides on its alerts.
    let lab = org
        .iter()
        .find(|a| a["event"]["Computer"] == "LAB-01")
        .unwrap();
    assert_eq!(
        lab["response"],
        serde_json::json!([{"for": "process:lab", "name": "Lab", "on_call": "lab-vagt", "within": "15m", "steps": ["isolate"], "procedure": "https://x.example/lab"}])
    );
    let ws = org
        .iter()
        .find(|a| a["event"]["Computer"] == "WS-01")
        .unwrap();
    assert_eq!(ws["response"], serde_json::json!([]));
}

const CAMPAIGN_CATALOG: &str = "actors:\n  - {id: hosp-a, name: Hospital A, kind: hospital}\n  - {id: hosp-b, name: Hospital B, kind: hospital}\n  - {id: muni-c, name: Municipality C, kind: municipality}\n";

const KEY: &str = "a-test-key-of-32-bytes-for-hmac!";

/// The pseudonym of an organisation, computed here as the docs say.
fn pseudonym(org: &str) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(KEY.as_bytes()).unwrap();
    mac.update(b"org\0");
    mac.update(org.as_bytes());
    let digest = mac.finalize().into_bytes();
    let hex: String = digest.iter().take(8).map(|b| format!("{b:02x}")).collect();
    format!("org-{hex}")
}

fn campaign_run(orgs: &[&str]) -> (Vec<Value>, Value) {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "rules.yml", &tlp_rules());
    write(dir.path(), "catalog.yaml", CAMPAIGN_CATALOG);
    let mut inputs = String::new();
    for (i, org) in orgs.iter().enumerate() {
        write(
            dir.path(),
            &format!("{org}.jsonl"),
            &format!(
                "{{\"EventID\": 1, \"Computer\": \"WS-{i}\", \"@timestamp\": \"2026-03-02T1{i}:00:00Z\"}}\n"
            ),
        );
        inputs.push_str(&format!("  - {{path: {org}.jsonl, actor: {org}}}\n"));
    }
    let config = dir.path().join("vagt.yaml");
    write(
        dir.path(),
        "vagt.yaml",
        &format!(
            "rules: [rules.yml]\ncatalog: catalog.yaml\nprogress: never\ninputs:\n{inputs}pseudonyms: {{key_env: VAGT_TEST_CAMPAIGN_KEY}}\ncampaigns: {{min_organisations: 3, window: 6h, outputs: [sector], pseudonymise: true}}\noutputs:\n  - {{name: org, type: file, path: org.jsonl}}\n  - {{name: sector, type: file, path: sector.jsonl, audience: community}}\nroutes:\n  - {{name: own, outputs: [org]}}\n"
        ),
    );
    let (summary, _) = run_with_stats_env(&config, &[("VAGT_TEST_CAMPAIGN_KEY", KEY)]);
    let sector = dir.path().join("sector.jsonl");
    let alerts = if sector.exists() {
        json_lines(&sector)
    } else {
        Vec::new()
    };
    (alerts, summary)
}

#[test]
fn one_rule_at_three_organisations_is_one_sector_campaign_naming_them_by_pseudonym() {
    let (sector, summary) = campaign_run(&["hosp-a", "hosp-b", "muni-c"]);
    // Only the GREEN-or-lower rules' campaigns... every rule fired at all
    // three; each rule is one campaign, sent at the campaign's TLP.
    let rules: BTreeSet<&str> = sector
        .iter()
        .map(|a| a["campaign"]["key"].as_str().unwrap())
        .collect();
    assert_eq!(rules.len(), 6, "one campaign per rule: {sector:#?}");
    assert_eq!(sector.len(), 6, "raised once each");
    let expected: Vec<String> = {
        let mut p: Vec<String> = ["hosp-a", "hosp-b", "muni-c"]
            .iter()
            .map(|o| pseudonym(o))
            .collect();
        p.sort();
        p
    };
    for alert in &sector {
        assert_eq!(
            alert["campaign"]["organisations"],
            serde_json::json!(expected)
        );
        assert_eq!(alert["campaign"]["pseudonymised"], true);
        assert_eq!(alert["campaign"]["alerts"], 3);
        assert_eq!(alert["actor"], Value::Null);
        assert_eq!(alert["tlp"], "TLP:GREEN");
        assert_eq!(alert["event"], Value::Null, "no event leaves");
        let text = alert.to_string();
        for org in ["hosp-a", "hosp-b", "muni-c", "WS-0", "Hospital"] {
            assert!(!text.contains(org), "{org} leaked: {text}");
        }
    }
    assert_eq!(summary["campaigns"], 6);
    let (none, summary) = campaign_run(&["hosp-a", "hosp-b"]);
    assert!(
        none.is_empty(),
        "two organisations are no campaign: {none:#?}"
    );
    assert_eq!(summary["campaigns"], 0);
}

#[test]
fn bad_warning_settings_name_the_setting() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "rules.yml", &tlp_rules());
    write(dir.path(), "events.jsonl", "");
    let config = dir.path().join("vagt.yaml");
    let run_config = ["run", "--config", config.to_str().unwrap()];
    for (extra, expected) in [
        ("tlp: orange\n", "'orange' is not a TLP 2.0 label"),
        (
            "suppression: {correlation: {by: [colour], window: 1h}}\n",
            "'colour' is not a key",
        ),
        (
            "campaigns: {outputs: [nowhere]}\n",
            "no output named 'nowhere'",
        ),
        (
            "campaigns: {outputs: [alerts], pseudonymise: true}\n",
            "campaigns.pseudonymise",
        ),
        (
            "pseudonyms: {key_env: VAGT_TEST_UNSET_KEY}\n",
            "VAGT_TEST_UNSET_KEY is not set",
        ),
    ] {
        write(
            dir.path(),
            "vagt.yaml",
            &format!("rules: [rules.yml]\ninputs: [{{path: events.jsonl}}]\noutput: alerts.jsonl\n{extra}"),
        );
        let out = vagt(&run_config);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{extra}");
        assert!(stderr.contains(expected), "{extra}: {stderr}");
        assert!(
            stderr.contains("vagt.yaml"),
            "{extra}: names the file: {stderr}"
        );
    }
    // An output's audience and suppress are checked too.
    write(
        dir.path(),
        "vagt.yaml",
        "rules: [rules.yml]\ninputs: [{path: events.jsonl}]\noutputs:\n  - {name: x, type: file, path: x.jsonl, audience: everyone}\n",
    );
    let out = vagt(&run_config);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("audience") && stderr.contains("everyone"),
        "{stderr}"
    );
}

#[test]
fn an_output_a_route_and_a_policy_each_suppress_by_their_own_key() {
    let dir = tempfile::tempdir().unwrap();
    write(
        dir.path(),
        "rules.yml",
        "title: Script host\nid: 22222222-0000-4000-8000-000000000001\nstatus: test\nlogsource: {product: windows}\ndetection:\n    selection: {EventID: 1}\n    condition: selection\ntags: [attack.execution]\nlevel: medium\n",
    );
    // Six events: hosts A, A, A, B, B, B; users u0, u1 alternating.
    let events: String = (0..6)
        .map(|i| {
            format!(
                "{{\"EventID\": 1, \"Computer\": \"WS-{}\", \"User\": \"u{}\", \"@timestamp\": \"2026-03-02T10:0{i}:00Z\"}}\n",
                if i < 3 { "A" } else { "B" },
                i % 2
            )
        })
        .collect();
    write(dir.path(), "events.jsonl", &events);
    let config = dir.path().join("vagt.yaml");
    write(
        dir.path(),
        "vagt.yaml",
        "rules: [rules.yml]\ninputs: [{path: events.jsonl}]\nprogress: never\nsuppression:\n  policies:\n    - {name: execution, match: {tags: [attack.execution]}, window: 1h}\noutputs:\n  - {name: archive, type: file, path: archive.jsonl}\n  - {name: pager, type: file, path: pager.jsonl, suppress: {by: [host], window: 1h}}\n  - {name: soc, type: file, path: soc.jsonl}\nroutes:\n  - {name: own, outputs: [archive, pager], continue: true}\n  - {name: soc, outputs: [soc], suppress: {by: [event.User], window: 1h}}\n",
    );
    let (summary, _) = run_with_stats(&config);
    // Per output: (scope, first alerts' keys, repeats reported per key).
    let check = |output: &str, scope: &str, key: &str, expected: &[(&str, u64)]| {
        let alerts = json_lines(&dir.path().join(format!("{output}.jsonl")));
        let firsts: Vec<&Value> = alerts.iter().filter(|a| !is_follow_up(a)).collect();
        let follow_ups: Vec<&Value> = alerts.iter().filter(|a| is_follow_up(a)).collect();
        assert_eq!(firsts.len(), expected.len(), "{output}: {alerts:#?}");
        let mut reported: Vec<(String, u64)> = follow_ups
            .iter()
            .map(|f| {
                let report = &f["suppression"];
                assert_eq!(report["scope"], scope, "{output}");
                let value = if key.is_empty() {
                    String::new()
                } else {
                    report["key"][key].as_str().unwrap().to_string()
                };
                (value, report["suppressed"].as_u64().unwrap())
            })
            .collect();
        reported.sort();
        let expected: Vec<(String, u64)> =
            expected.iter().map(|(k, n)| (k.to_string(), *n)).collect();
        assert_eq!(reported, expected, "{output}");
        let held: u64 = expected.iter().map(|(_, n)| n).sum();
        assert_eq!(summary["outputs"][output]["suppressed"], held, "{output}");
        assert_eq!(
            summary["outputs"][output]["follow_ups"],
            expected.len() as u64,
            "{output}"
        );
    };
    // The policy (the rule alone): one alert, five repeats.
    check("archive", "policy:execution", "", &[("", 5)]);
    // The output's own spec wins over the policy: by host.
    check("pager", "output:pager", "host", &[("WS-A", 2), ("WS-B", 2)]);
    // The route's spec wins over the policy: by user.
    check("soc", "route:soc", "event.User", &[("u0", 2), ("u1", 2)]);
}

#[test]
fn a_live_group_is_closed_by_the_clock_with_its_follow_up() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "rules.yml", &tlp_rules());
    write(dir.path(), "events.jsonl", "");
    let config = dir.path().join("vagt.yaml");
    write(
        dir.path(),
        "vagt.yaml",
        "rules: [rules.yml]\ninputs: [{tail: events.jsonl}]\noutput: alerts.jsonl\nprogress: never\nsuppression:\n  policies: [{name: untagged, match: {tags: [attack.execution]}, window: 2s}]\n",
    );
    let mut vagt = crate::support::Vagt::with_config(&config);
    vagt.wait_for("ready", std::time::Duration::from_secs(30));
    // Three events of the untagged rule, 100 ms apart in event time.
    let events: String = (1..4)
        .map(|i| {
            format!(
                "{{\"EventID\": 1, \"n\": {i}, \"@timestamp\": \"2026-03-02T10:00:00.{i}Z\"}}\n"
            )
        })
        .collect();
    crate::support::append(&dir.path().join("events.jsonl"), &events);
    let alerts = dir.path().join("alerts.jsonl");
    let untagged = || -> Vec<Value> {
        if !alerts.exists() {
            return Vec::new();
        }
        json_lines(&alerts)
            .into_iter()
            .filter(|a| a["rule"]["title"] == "TLP rule untagged")
            .collect()
    };
    // While it runs: once two seconds have passed on the clock, the
    // follow-up comes without any further event.
    crate::support::eventually("the follow-up", std::time::Duration::from_secs(10), || {
        untagged().len() == 2
    });
    let got = untagged();
    assert!(!is_follow_up(&got[0]));
    let report = &got[1]["suppression"];
    assert_eq!(report["suppressed"], 2);
    assert_eq!(
        report["closed"], true,
        "closed by the clock, not by the end"
    );
    let (status, stderr) = vagt.terminate();
    assert!(status.success(), "{stderr}");
    assert_eq!(untagged().len(), 2, "nothing left to report at the end");
}
