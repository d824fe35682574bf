//! Who sent an event decides whose assets its host names can name: the
//! same Hospital Nord events, sent by Hospital Nord, by the region that
//! forwards its logs, and by a municipality, through `vagt run`.

use std::path::Path;
use std::process::Command;

use crate::cli::{alerts, repo};

/// A config over `inputs` (YAML list items) with the bundled rules, the
/// Windows profile and the default catalog.
fn config(dir: &Path, inputs: &str) -> std::path::PathBuf {
    let fixtures = repo().join("fixtures");
    let path = dir.join("vagt.yaml");
    std::fs::write(
        &path,
        format!(
            "rules: [\"{}\"]\nprofile: windows\ncatalog: \"{}\"\ninputs:\n{inputs}progress: never\n",
            fixtures.join("rules").display(),
            fixtures.join("catalog.yaml").display(),
        ),
    )
    .unwrap();
    path
}

fn vagt_run(config: &Path) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_vagt"))
        .args(["run", "--config", config.to_str().unwrap()])
        .output()
        .unwrap()
}

#[test]
fn a_sender_names_only_its_own_and_its_forwarded_organisations_hosts() {
    let dir = tempfile::tempdir().unwrap();
    let sample = repo().join("fixtures/logs/hospital-nord-sysmon.jsonl");
    for sender in ["rnv-hospital-nord", "rnv-region", "kom-fjordby"] {
        std::fs::copy(&sample, dir.path().join(format!("{sender}.jsonl"))).unwrap();
    }
    let config = config(
        dir.path(),
        "  - {path: rnv-hospital-nord.jsonl, actor: rnv-hospital-nord}\n  - {path: rnv-region.jsonl, actor: rnv-region}\n  - {path: kom-fjordby.jsonl, actor: kom-fjordby}\n",
    );
    let output = vagt_run(&config);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let alerts = alerts(&output);
    let from = |sender: &str| -> Vec<&serde_json::Value> {
        alerts
            .iter()
            .filter(|a| {
                a["source"]["input"]
                    .as_str()
                    .unwrap()
                    .ends_with(&format!("{sender}.jsonl"))
            })
            .collect()
    };
    let (nord, region, fjordby) = (
        from("rnv-hospital-nord"),
        from("rnv-region"),
        from("kom-fjordby"),
    );
    assert!(!nord.is_empty());
    assert_eq!(nord.len(), region.len());
    assert_eq!(nord.len(), fjordby.len());
    for ((n, r), f) in nord.iter().zip(&region).zip(&fjordby) {
        assert_eq!(n["actor"], "rnv-hospital-nord");
        assert_eq!(r["actor"], "rnv-region");
        assert_eq!(f["actor"], "kom-fjordby");
        // Hospital Nord's hosts, named by Nord or by the region that
        // forwards its logs, are Nord's assets.
        assert!(!n["assets"].as_array().unwrap().is_empty(), "{n}");
        assert_eq!(n["assets"], r["assets"]);
        assert_eq!(n["critical_processes"], r["critical_processes"]);
        // Named by a municipality, they are not: a host name is only
        // unique within its organisation.
        for asset in f["assets"].as_array().unwrap() {
            assert!(!asset.as_str().unwrap().starts_with("hn-"), "{f}");
        }
        assert_ne!(n["id"], f["id"]);
    }
}

#[test]
fn an_input_actor_the_catalog_does_not_know_is_refused_at_start() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::copy(
        repo().join("fixtures/logs/hospital-nord-sysmon.jsonl"),
        dir.path().join("events.jsonl"),
    )
    .unwrap();
    let config = config(
        dir.path(),
        "  - {path: events.jsonl, actor: rnv-hospital-nord}\n  - {path: events.jsonl, actor: rnv-hosptial-syd}\n",
    );
    let output = vagt_run(&config);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success(), "{stderr}");
    assert!(
        stderr.contains("inputs[1]")
            && stderr.contains("actor 'rnv-hosptial-syd' is not an actor in the catalog"),
        "{stderr}"
    );
    assert!(alerts(&output).is_empty());
}
