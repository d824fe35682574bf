//! Routing over the default catalog: every alert reaches exactly the
//! outputs that a computation made here from the catalog expects, and no
//! organisation's alert reaches another organisation's output; `vagt
//! routes test` agrees.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use serde_json::Value;

use crate::cli::vagt;
use crate::support::{alert_ids, fixtures, json_lines, run_with_stats};

fn ids(path: &Path) -> BTreeSet<String> {
    alert_ids(path).into_iter().collect()
}

/// Actor kinds by actor id, from the catalog.
fn actor_kinds() -> BTreeMap<String, String> {
    let catalog: Value =
        serde_yaml_ng::from_str(&std::fs::read_to_string(fixtures().join("catalog.yaml")).unwrap())
            .unwrap();
    catalog["actors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| {
            (
                a["id"].as_str().unwrap().to_string(),
                a["kind"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

const ROUTES: &str = r#"outputs:
  - {name: all, type: file, path: out/all.jsonl}
  - {name: hospitals, type: file, path: out/hospitals.jsonl}
  - {name: per-actor, type: file, path: "out/by-actor/{actor}.jsonl"}
  - {name: prehospital, type: file, path: out/prehospital.jsonl}
  - {name: region, type: file, path: out/region.jsonl}
  - {name: rest, type: file, path: out/rest.jsonl}
routes:
  - {name: audit, outputs: [all], continue: true}
  - name: hospitals
    match: {actor_kinds: [hospital]}
    outputs: [hospitals, per-actor]
    continue: true
  - name: prehospital-care
    match: {processes: [akut-praehospital]}
    outputs: [prehospital]
  - name: regional-it
    match: {actor_kinds: [region], min_severity: high}
    outputs: [region, per-actor]
  - {name: default, outputs: [rest]}
"#;

/// Where the routes above send an alert, computed from the catalog here.
fn expected_outputs(alert: &Value, kinds: &BTreeMap<String, String>) -> BTreeSet<String> {
    let actor = alert["actor"].as_str();
    let kind = actor.and_then(|a| kinds.get(a)).map(String::as_str);
    let processes: Vec<&str> = alert["critical_processes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p.as_str().unwrap())
        .collect();
    let severity_rank = ["informational", "low", "medium", "high", "critical"]
        .iter()
        .position(|s| alert["severity"] == *s)
        .unwrap();
    let mut out = BTreeSet::from(["all".to_string()]);
    if kind == Some("hospital") {
        out.insert("hospitals".into());
        out.insert("per-actor".into());
    }
    if processes.contains(&"akut-praehospital") {
        out.insert("prehospital".into());
    } else if kind == Some("region") && severity_rank >= 3 {
        out.insert("region".into());
        out.insert("per-actor".into());
    } else {
        out.insert("rest".into());
    }
    out
}

#[test]
fn routes_send_every_alert_exactly_where_the_catalog_says() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("out/by-actor")).unwrap();
    let config = dir.path().join("vagt.yaml");
    std::fs::write(
        &config,
        format!(
            "rules: [\"{rules}\"]\ncatalog: \"{catalog}\"\ninputs: [{{path: \"{logs}\"}}]\nprogress: never\n{ROUTES}",
            rules = fixtures().join("rules").display(),
            catalog = fixtures().join("catalog.yaml").display(),
            logs = fixtures().join("logs").display(),
        ),
    )
    .unwrap();
    run_with_stats(&config);

    let kinds = actor_kinds();
    let all = json_lines(&dir.path().join("out/all.jsonl"));
    assert!(all.len() >= 20, "the default run's alerts");
    let mut expected: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    let mut expected_per_actor: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for alert in &all {
        let id = alert["id"].as_str().unwrap().to_string();
        let outputs = expected_outputs(alert, &kinds);
        if outputs.contains("per-actor") {
            let actor = alert["actor"].as_str().unwrap().to_string();
            expected_per_actor
                .entry(actor)
                .or_default()
                .insert(id.clone());
        }
        for output in outputs {
            expected.entry(output).or_default().insert(id.clone());
        }
    }
    // Each route is taken by some alert, so that none is checked vacuously.
    for output in ["hospitals", "prehospital", "region", "rest"] {
        assert!(expected.contains_key(output), "no alert for {output}");
    }
    for output in ["all", "hospitals", "prehospital", "region", "rest"] {
        let got = ids(&dir.path().join(format!("out/{output}.jsonl")));
        assert_eq!(got, expected[output], "output {output}");
    }
    // One file per organisation, each with that organisation's alerts only.
    let mut files = BTreeMap::new();
    for entry in std::fs::read_dir(dir.path().join("out/by-actor")).unwrap() {
        let path = entry.unwrap().path();
        let actor = path.file_stem().unwrap().to_string_lossy().into_owned();
        for alert in json_lines(&path) {
            assert_eq!(
                alert["actor"],
                actor.as_str(),
                "another organisation's alert in {}",
                path.display()
            );
        }
        files.insert(actor, ids(&path));
    }
    assert_eq!(files, expected_per_actor);
    assert!(
        files.len() >= 3,
        "several organisations: {:?}",
        files.keys()
    );

    // The dry run says the same.
    let dry = vagt(&[
        "routes",
        "test",
        config.to_str().unwrap(),
        dir.path().join("out/all.jsonl").to_str().unwrap(),
        "--json",
    ]);
    assert!(
        dry.status.success(),
        "{}",
        String::from_utf8_lossy(&dry.stderr)
    );
    let lines: Vec<Value> = String::from_utf8_lossy(&dry.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), all.len());
    for (line, alert) in lines.iter().zip(&all) {
        assert_eq!(line["id"], alert["id"]);
        let outputs: BTreeSet<String> = line["outputs"]
            .as_array()
            .unwrap()
            .iter()
            .map(|o| o["output"].as_str().unwrap().to_string())
            .collect();
        assert_eq!(outputs, expected_outputs(alert, &kinds), "{line}");
        for o in line["outputs"].as_array().unwrap() {
            if o["output"] == "per-actor" {
                let target = o["target"].as_str().unwrap();
                assert!(
                    target.ends_with(&format!(
                        "by-actor/{}.jsonl",
                        alert["actor"].as_str().unwrap()
                    )),
                    "{target}"
                );
            }
        }
    }
}
