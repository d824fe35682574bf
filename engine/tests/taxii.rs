//! Sector sharing against a real TAXII 2.1 server: medallion (the OASIS
//! reference implementation, from PyPI, in-memory backend), which
//! `.ci/run` installs. The collection is read back and every object
//! checked; sending the same alerts again adds nothing.

use std::collections::{BTreeMap, BTreeSet};
use std::net::TcpListener;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use hmac::{Hmac, Mac};
use serde_json::{json, Value};
use sha2::Sha256;

use crate::support::{eventually, json_lines, run_with_stats_env};

const COLLECTION: &str = "365fed99-08fa-fdcd-a1b3-fb247eb41d01";
const KEY: &str = "sector-sharing-test-key-32-bytes";

/// A medallion server on a free loopback port, stopped when dropped.
pub struct Medallion {
    child: Child,
    port: u16,
}

impl Drop for Medallion {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Medallion {
    pub fn start(dir: &Path) -> Medallion {
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let root = format!("http://127.0.0.1:{port}/api1/");
        let data = json!({
            "/discovery": {"title": "vagt test", "default": root, "api_roots": [root]},
            "api1": {
                "information": {
                    "title": "sector",
                    "versions": ["application/taxii+json;version=2.1"],
                    "max_content_length": 104857600
                },
                "status": [],
                "collections": [{
                    "id": COLLECTION,
                    "title": "sector warnings",
                    "can_read": true,
                    "can_write": true,
                    "media_types": ["application/stix+json;version=2.1"],
                    "objects": [],
                    "manifest": []
                }]
            }
        });
        std::fs::write(dir.join("data.json"), data.to_string()).unwrap();
        let config = json!({
            "backend": {
                "module": "medallion.backends.memory_backend",
                "module_class": "MemoryBackend",
                "filename": dir.join("data.json")
            },
            "users": {"vagt": "taxii-password"},
            "taxii": {"max_page_size": 1000}
        });
        std::fs::write(dir.join("medallion.json"), config.to_string()).unwrap();
        let child = Command::new("medallion")
            .args(["--host", "127.0.0.1", "--port", &port.to_string()])
            .arg(dir.join("medallion.json"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect(
                "medallion (the TAXII 2.1 server) on PATH: `.ci/run` installs it; by hand, \
                 `python3 -m venv V && V/bin/pip install medallion==3.0.0` and put V/bin on PATH",
            );
        let server = Medallion { child, port };
        eventually("medallion listens", Duration::from_secs(30), || {
            std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
        });
        server
    }

    /// Adds `objects` to the collection, as a producer would.
    pub fn add(&self, objects: &[Value]) {
        let out = Command::new("curl")
            .args([
                "-sf",
                "-u",
                "vagt:taxii-password",
                "-H",
                "Accept: application/taxii+json;version=2.1",
                "-H",
                "Content-Type: application/taxii+json;version=2.1",
                "-X",
                "POST",
                "--data-binary",
            ])
            .arg(json!({ "objects": objects }).to_string())
            .arg(format!("{}objects/", self.collection()))
            .output()
            .unwrap();
        assert!(out.status.success(), "POST objects: {out:?}");
    }

    pub fn collection(&self) -> String {
        format!(
            "http://127.0.0.1:{}/api1/collections/{COLLECTION}/",
            self.port
        )
    }

    /// Every object version in the collection.
    pub fn objects(&self) -> Vec<Value> {
        let out = Command::new("curl")
            .args([
                "-sfg",
                "-u",
                "vagt:taxii-password",
                "-H",
                "Accept: application/taxii+json;version=2.1",
            ])
            .arg(format!("{}objects/?match[version]=all", self.collection()))
            .output()
            .unwrap();
        assert!(out.status.success(), "GET objects");
        let envelope: Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_ne!(envelope["more"], true, "one page holds them");
        envelope["objects"].as_array().cloned().unwrap_or_default()
    }
}

fn pseudonym(kind: &str, name: &str) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(KEY.as_bytes()).unwrap();
    mac.update(kind.as_bytes());
    mac.update(&[0]);
    mac.update(name.to_lowercase().as_bytes());
    let digest = mac.finalize().into_bytes();
    let hex: String = digest.iter().take(8).map(|b| format!("{b:02x}")).collect();
    format!("{kind}-{hex}")
}

const RULES: &str = "title: Shared green rule\nid: 11111111-0000-4000-8000-000000000001\nstatus: test\nlogsource: {product: windows}\ndetection:\n    selection: {EventID: 1}\n    condition: selection\ntags: [tlp.green, attack.execution, attack.t1059]\nlevel: high\n---\ntitle: Amber rule\nid: 11111111-0000-4000-8000-000000000002\nstatus: test\nlogsource: {product: windows}\ndetection:\n    selection: {EventID: 2}\n    condition: selection\ntags: [tlp.amber]\nlevel: medium\n---\ntitle: Internal rule\nid: 11111111-0000-4000-8000-000000000003\nstatus: test\nlogsource: {product: windows}\ndetection:\n    selection: {EventID: 3}\n    condition: selection\ntags: [tlp.amber+strict]\nlevel: medium\n";

const CATALOG: &str = "actors:\n  - {id: hosp-a, name: Hospital A, kind: hospital}\n  - {id: muni-b, name: Municipality B, kind: municipality}\n";

/// The config: two organisations' events, alerts to a file and the
/// sector's collection; `suppression` is its suppression section.
fn setup(dir: &Path, medallion: &Medallion, outbox: &str, suppression: &str) -> std::path::PathBuf {
    std::fs::write(dir.join("rules.yml"), RULES).unwrap();
    std::fs::write(dir.join("catalog.yaml"), CATALOG).unwrap();
    for (org, host) in [("hosp-a", "HN-WS-0001"), ("muni-b", "FJK-PC-77")] {
        let mut events = String::new();
        for (i, id) in [1, 2, 3, 1].iter().enumerate() {
            events.push_str(&format!(
                "{{\"EventID\": {id}, \"Computer\": \"{host}\", \"TargetUserName\": \"nurse{i}\", \"@timestamp\": \"2026-03-02T10:0{i}:00Z\"}}\n"
            ));
        }
        std::fs::write(dir.join(format!("{org}.jsonl")), events).unwrap();
    }
    std::fs::create_dir_all(dir.join(outbox)).unwrap();
    let config = dir.join("vagt.yaml");
    std::fs::write(
        &config,
        format!(
            "rules: [rules.yml]\ncatalog: catalog.yaml\nprogress: never\ninputs:\n  - {{path: hosp-a.jsonl, actor: hosp-a}}\n  - {{path: muni-b.jsonl, actor: muni-b}}\npseudonyms: {{key_env: VAGT_TEST_TAXII_KEY}}\nsuppression: {suppression}\noutputs:\n  - {{name: own, type: file, path: alerts.jsonl}}\n  - name: sector\n    type: taxii\n    audience: community\n    collection: {}\n    username_env: VAGT_TEST_TAXII_USER\n    password_env: VAGT_TEST_TAXII_PASSWORD\n    identity: Region Nordvest\n    pseudonymise: true\n    include_events: true\n    outbox: {{dir: {outbox}}}\n",
            medallion.collection()
        ),
    )
    .unwrap();
    config
}

const NO_SUPPRESSION: &str = "{correlation: {window: 0s}}";

fn run(config: &Path) -> Value {
    run_with_stats_env(
        config,
        &[
            ("VAGT_TEST_TAXII_KEY", KEY),
            ("VAGT_TEST_TAXII_USER", "vagt"),
            ("VAGT_TEST_TAXII_PASSWORD", "taxii-password"),
        ],
    )
    .0
}

#[test]
fn alerts_reach_a_taxii_collection_as_stix_and_a_resend_adds_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let medallion = Medallion::start(dir.path());
    let config = setup(dir.path(), &medallion, "outbox", NO_SUPPRESSION);
    let summary = run(&config);
    let alerts = json_lines(&dir.path().join("alerts.jsonl"));
    assert_eq!(alerts.len(), 8, "four events at each of two organisations");

    // Decided here: community may see GREEN, not AMBER or AMBER+STRICT.
    let shared: Vec<&Value> = alerts.iter().filter(|a| a["tlp"] == "TLP:GREEN").collect();
    assert_eq!(shared.len(), 4);
    assert_eq!(summary["outputs"]["sector"]["delivered"], 4);
    assert_eq!(summary["outputs"]["sector"]["refused_tlp"], 4);

    let objects = medallion.objects();
    let by_type = |t: &str| -> Vec<&Value> { objects.iter().filter(|o| o["type"] == t).collect() };
    // Markings: TLP 2.0 GREEN only.
    let markings = by_type("marking-definition");
    assert_eq!(markings.len(), 1);
    assert_eq!(
        markings[0]["id"],
        "marking-definition--bab4a63c-aed9-4cf5-a766-dfca5abac2bb"
    );
    assert_eq!(markings[0]["name"], "TLP:GREEN");
    // Identities: the sender and both organisations, by pseudonym.
    let identities: BTreeMap<String, String> = by_type("identity")
        .iter()
        .map(|i| {
            (
                i["id"].as_str().unwrap().into(),
                i["name"].as_str().unwrap().into(),
            )
        })
        .collect();
    let names: BTreeSet<&str> = identities.values().map(String::as_str).collect();
    let expected_names: BTreeSet<String> = [
        "Region Nordvest".to_string(),
        pseudonym("org", "hosp-a"),
        pseudonym("org", "muni-b"),
    ]
    .into();
    assert_eq!(
        names,
        expected_names
            .iter()
            .map(String::as_str)
            .collect::<BTreeSet<_>>()
    );
    // The rule as an indicator, its Sigma text as the pattern.
    let indicators = by_type("indicator");
    assert_eq!(indicators.len(), 1);
    let indicator = indicators[0];
    assert_eq!(indicator["pattern_type"], "sigma");
    assert!(indicator["pattern"]
        .as_str()
        .unwrap()
        .contains("id: 11111111-0000-4000-8000-000000000001"));
    assert!(!indicator["pattern"]
        .as_str()
        .unwrap()
        .contains("Amber rule"));
    // A sighting per shared alert.
    let sightings = by_type("sighting");
    assert_eq!(sightings.len(), 4);
    let producer = identities
        .iter()
        .find(|(_, n)| *n == "Region Nordvest")
        .map(|(id, _)| id.clone())
        .unwrap();
    for alert in &shared {
        let id = alert["id"].as_str().unwrap();
        let s = sightings
            .iter()
            .find(|s| s["x_vagt_alert_id"] == id)
            .unwrap_or_else(|| panic!("no sighting of {id}"));
        assert_eq!(s["sighting_of_ref"], indicator["id"]);
        assert_eq!(s["created_by_ref"], producer);
        assert_eq!(s["count"], 1);
        assert_eq!(s["object_marking_refs"], json!([markings[0]["id"]]));
        let org = pseudonym("org", alert["actor"].as_str().unwrap());
        let sighted: Vec<&str> = s["where_sighted_refs"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| identities[r.as_str().unwrap()].as_str())
            .collect();
        assert_eq!(sighted, vec![org.as_str()]);
        let host = alert["event"]["Computer"].as_str().unwrap();
        let user = alert["event"]["TargetUserName"].as_str().unwrap();
        assert_eq!(s["x_vagt_hosts"], json!([pseudonym("host", host)]));
        assert_eq!(s["x_vagt_users"], json!([pseudonym("user", user)]));
        let first = alert["event_time"]["first"].as_str().unwrap();
        assert_eq!(s["first_seen"].as_str().unwrap()[..19], first[..19]);
        // GREEN never carries the raw event, include_events or not.
        assert!(s.get("x_vagt_event").is_none());
        let text = s.to_string();
        for secret in [host, user, "hosp-a", "muni-b"] {
            assert!(!text.contains(secret), "{secret} left in {text}");
        }
    }
    let before: BTreeSet<String> = objects
        .iter()
        .map(|o| format!("{} {}", o["id"], o["modified"]))
        .collect();

    // The same alerts again (a fresh run, a fresh outbox): nothing new.
    std::fs::remove_file(dir.path().join("alerts.jsonl")).unwrap();
    let config = setup(dir.path(), &medallion, "outbox2", NO_SUPPRESSION);
    let summary = run(&config);
    assert_eq!(summary["outputs"]["sector"]["delivered"], 4);
    assert_eq!(summary["outputs"]["sector"]["failed"], 0);
    let after: BTreeSet<String> = medallion
        .objects()
        .iter()
        .map(|o| format!("{} {}", o["id"], o["modified"]))
        .collect();
    assert_eq!(before, after, "a re-send adds nothing");
}

#[test]
fn a_follow_up_is_a_new_version_of_its_first_alerts_sighting() {
    let dir = tempfile::tempdir().unwrap();
    let medallion = Medallion::start(dir.path());
    // Each organisation's two GREEN alerts: one, and a follow-up.
    let config = setup(
        dir.path(),
        &medallion,
        "outbox",
        "{policies: [{name: shared, match: {tags: [tlp.green]}, by: [actor], window: 1h}]}",
    );
    let summary = run(&config);
    assert_eq!(summary["outputs"]["sector"]["suppressed"], 2);
    assert_eq!(summary["outputs"]["sector"]["follow_ups"], 2);
    let alerts = json_lines(&dir.path().join("alerts.jsonl"));
    let objects = medallion.objects();
    let mut versions: BTreeMap<String, Vec<&Value>> = BTreeMap::new();
    for s in objects.iter().filter(|o| o["type"] == "sighting") {
        versions
            .entry(s["id"].as_str().unwrap().into())
            .or_default()
            .push(s);
    }
    assert_eq!(versions.len(), 2, "one sighting per organisation");
    for (id, mut v) in versions {
        v.sort_by_key(|s| s["modified"].as_str().unwrap().to_string());
        assert_eq!(v.len(), 2, "{id}: the first and the follow-up's version");
        let first = alerts
            .iter()
            .find(|a| a["id"] == v[0]["x_vagt_alert_id"] && a.get("suppression").is_none())
            .expect("the first alert");
        assert_eq!(v[0]["count"], 1);
        assert_eq!(v[1]["count"], 2, "the group's total");
        assert_eq!(v[1]["x_vagt_alert_id"], first["id"]);
        assert_eq!(v[1]["first_seen"], v[0]["first_seen"]);
        // The repeat is the organisation's event at 10:03.
        assert!(v[1]["last_seen"]
            .as_str()
            .unwrap()
            .starts_with("2026-03-02T10:03:00"));
        assert!(v[1]["modified"].as_str().unwrap() > v[0]["modified"].as_str().unwrap());
    }
}
