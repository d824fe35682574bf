//! The built-in default run (`vagt run` with no arguments) over the sample
//! logs in `fixtures/logs/` produces exactly the alerts listed in
//! `fixtures/logs/README.md`, each carrying its actor and critical processes.

use std::collections::BTreeSet;
use std::process::Command;

use crate::cli::{alerts, repo};

/// (input file, rule id, host, actor, critical processes) per expected alert.
type Expected = (
    &'static str,
    &'static str,
    &'static str,
    &'static str,
    &'static [&'static str],
);

const EXPECTED: &[Expected] = &[
    (
        "hospital-nord-sysmon.jsonl",
        "f0f30eeb-58f0-4f8e-9012-aed6bf25b284",
        "HN-WS-0142.hn.rnv.example",
        "rnv-hospital-nord",
        &["medicinering", "patientjournal"],
    ),
    (
        "hospital-nord-sysmon.jsonl",
        "ab5f2857-6b53-4d24-b1f3-6ff3ec615421",
        "HN-WS-0142.hn.rnv.example",
        "rnv-hospital-nord",
        &["medicinering", "patientjournal"],
    ),
    (
        "hospital-nord-sysmon.jsonl",
        "37ebfe13-8ac9-4d4b-805b-f3df1bd81f14",
        "HN-WS-0142.hn.rnv.example",
        "rnv-hospital-nord",
        &["medicinering", "patientjournal"],
    ),
    (
        "hospital-nord-sysmon.jsonl",
        "ab5f2857-6b53-4d24-b1f3-6ff3ec615421",
        "HN-WS-0142.hn.rnv.example",
        "rnv-hospital-nord",
        &["medicinering", "patientjournal"],
    ),
    (
        "hospital-nord-sysmon.jsonl",
        "f302a0b4-7cb9-418a-b71e-c897edc72df4",
        "HN-WS-0142.hn.rnv.example",
        "rnv-hospital-nord",
        &["medicinering", "patientjournal"],
    ),
    (
        "hospital-nord-sysmon.jsonl",
        "8fa86a60-41e4-46f8-b945-de5775f4a05a",
        "HN-LAB-02.lab.hn.rnv.example",
        "rnv-hospital-nord",
        &["proevetagning"],
    ),
    (
        "hospital-nord-sysmon.jsonl",
        "e2d8ddf1-8715-4be0-bcb7-29d75d3e93a3",
        "HN-LAB-02.lab.hn.rnv.example",
        "rnv-hospital-nord",
        &["proevetagning"],
    ),
    (
        "hospital-nord-sysmon.jsonl",
        "e2d8ddf1-8715-4be0-bcb7-29d75d3e93a3",
        "HN-PHA-01.hn.rnv.example",
        "rnv-hospital-nord",
        &["medicinering"],
    ),
    (
        "hospital-nord-sysmon.jsonl",
        "059ce5af-cc2a-4fb5-b010-570d17470c8f",
        "HN-OP-03.hn.rnv.example",
        "rnv-hospital-nord",
        &["operation"],
    ),
    (
        "hospital-nord-sysmon.jsonl",
        "7e4c0332-e5d2-4bff-b4df-2aa204d3d589",
        "HN-PACS-01.hn.rnv.example",
        "rnv-hospital-nord",
        &["undersoegelse"],
    ),
    (
        "region-security-evtx.json",
        "8fa86a60-41e4-46f8-b945-de5775f4a05a",
        "LHA-WS-03.laegehuset-aaen.example",
        "gp-laegehuset-aaen",
        &["kommunikation", "medicinering", "patientjournal"],
    ),
    (
        "region-security-evtx.json",
        "9a161c2d-f629-4d29-af8d-2ea4a75e7513",
        "RNV-DC-01.it.rnv.example",
        "rnv-region",
        &[
            "kommunikation",
            "medicinering",
            "operation",
            "patientjournal",
            "proevetagning",
            "undersoegelse",
        ],
    ),
    (
        "region-security-evtx.json",
        "9a161c2d-f629-4d29-af8d-2ea4a75e7513",
        "RNV-DC-01.it.rnv.example",
        "rnv-region",
        &[
            "kommunikation",
            "medicinering",
            "operation",
            "patientjournal",
            "proevetagning",
            "undersoegelse",
        ],
    ),
    (
        "region-security-evtx.json",
        "9a161c2d-f629-4d29-af8d-2ea4a75e7513",
        "HS-WS-0310.hs.rnv.example",
        "rnv-hospital-syd",
        &["medicinering", "patientjournal"],
    ),
    (
        "region-security-evtx.json",
        "e735ce42-db45-47bc-a850-f9d80a08045d",
        "RNV-DC-01.it.rnv.example",
        "rnv-region",
        &[
            "kommunikation",
            "medicinering",
            "operation",
            "patientjournal",
            "proevetagning",
            "undersoegelse",
        ],
    ),
    (
        "region-security-evtx.json",
        "f0f30eeb-58f0-4f8e-9012-aed6bf25b284",
        "FJK-WS-0044.fjordby.example",
        "kom-fjordby",
        &["kommunikation", "medicinering"],
    ),
    (
        "region-security-evtx.json",
        "ab5f2857-6b53-4d24-b1f3-6ff3ec615421",
        "AMB-117.vestkyst-ambulance.example",
        "sup-vestkyst-ambulance",
        &["akut-praehospital"],
    ),
    (
        "region-security-evtx.json",
        "37ebfe13-8ac9-4d4b-805b-f3df1bd81f14",
        "AMB-117.vestkyst-ambulance.example",
        "sup-vestkyst-ambulance",
        &["akut-praehospital"],
    ),
    (
        "region-security-evtx.json",
        "7e4c0332-e5d2-4bff-b4df-2aa204d3d589",
        "RNV-BCK-01.it.rnv.example",
        "rnv-region",
        &["patientjournal"],
    ),
    (
        "region-security-evtx.json",
        "9a1bb74b-b219-4dc8-8527-1c3d9741a9a3",
        "AMK-DISP-02.amk.rnv.example",
        "rnv-praehospital",
        &["akut-praehospital"],
    ),
    (
        "region-security-evtx.json",
        "9a1bb74b-b219-4dc8-8527-1c3d9741a9a3",
        "HS-LAB-01.lab.hs.rnv.example",
        "rnv-hospital-syd",
        &["proevetagning"],
    ),
    (
        "region-security-evtx.json",
        "ab8fe3ea-9d10-4edf-95d1-1b0351a18431",
        "HS-LAB-01.lab.hs.rnv.example",
        "rnv-hospital-syd",
        &["proevetagning"],
    ),
];

#[test]
fn default_run_alerts_name_processes_and_actors() {
    let out = Command::new(env!("CARGO_BIN_EXE_vagt"))
        .arg("run")
        .current_dir(repo())
        .env_remove("VAGT_FIXTURES")
        .output()
        .expect("run vagt");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(
        stderr.contains("58 events")
            && stderr.contains("22 alerts")
            && stderr.contains("0 dead letters"),
        "summary on stderr: {stderr}"
    );
    let alerts = alerts(&out);
    let mut got = Vec::new();
    for a in &alerts {
        let event = &a["event"];
        let host = event["Hostname"]
            .as_str()
            .or_else(|| event["Event"]["System"]["Computer"].as_str())
            .unwrap_or_default()
            .to_string();
        let input = a["source"]["input"].as_str().unwrap_or_default();
        let file = input.rsplit('/').next().unwrap_or_default().to_string();
        let processes: BTreeSet<String> = a["critical_processes"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p.as_str().unwrap().to_string())
            .collect();
        got.push((
            file,
            a["rule"]["id"].as_str().unwrap().to_string(),
            host,
            a["actor"].as_str().unwrap_or("-").to_string(),
            processes.clone(),
        ));
        assert!(a["id"].as_str().is_some_and(|id| id.len() == 36));
        assert!(a["detected_at"].as_str().is_some());
        assert!(a["event_time"]["first"]
            .as_str()
            .is_some_and(|t| t.starts_with("2025-03-14T")));
        assert_eq!(a["count"], 1);
        // TLP: the config's default AMBER, or the domain controllers'
        // AMBER+STRICT from the catalog.
        let strict = a["assets"]
            .as_array()
            .unwrap()
            .iter()
            .any(|x| x == "rnv-ad");
        let tlp = if strict {
            "TLP:AMBER+STRICT"
        } else {
            "TLP:AMBER"
        };
        assert_eq!(a["tlp"], tlp, "{a}");
        // Response guidance: one entry per process at risk (every process
        // of the default catalog names one), after the assets' own.
        let response = a["response"].as_array().unwrap();
        let for_processes: BTreeSet<String> = response
            .iter()
            .filter_map(|r| {
                r["for"]
                    .as_str()?
                    .strip_prefix("process:")
                    .map(str::to_string)
            })
            .collect();
        assert_eq!(for_processes, processes, "{a}");
        for r in response {
            assert!(r["on_call"].as_str().is_some_and(|s| !s.is_empty()), "{r}");
            assert!(r["within"].as_str().is_some(), "{r}");
        }
    }
    let expected: Vec<_> = EXPECTED
        .iter()
        .map(|(f, r, h, a, p)| {
            (
                f.to_string(),
                r.to_string(),
                h.to_string(),
                a.to_string(),
                p.iter().map(|s| s.to_string()).collect::<BTreeSet<_>>(),
            )
        })
        .collect();
    // Inputs are read concurrently: order is kept within an input only.
    got.sort_by(|a, b| a.0.cmp(&b.0));
    let mut expected = expected;
    expected.sort_by(|a, b| a.0.cmp(&b.0));
    assert_eq!(got, expected);

    let actors: BTreeSet<&str> = EXPECTED.iter().map(|e| e.3).collect();
    let processes: BTreeSet<&str> = EXPECTED.iter().flat_map(|e| e.4.iter().copied()).collect();
    assert!(
        actors.len() >= 4 && processes.len() >= 5,
        "the sample covers many actors and processes"
    );
}
