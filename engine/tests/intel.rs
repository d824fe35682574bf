//! Threat intelligence feeds: 100,000 generated indicators of mixed kinds
//! over events with known hits give exactly the expected alerts (an
//! expired and a revoked indicator none); a feed file rewritten while
//! vagt runs brings a new indicator into force without a restart, and a
//! broken version keeps the last good one.

use std::collections::BTreeSet;
use std::path::Path;
use std::time::Duration;

use serde_json::{json, Value};

use crate::support::{append, eventually, json_lines, run_with_stats_env, Vagt};

/// A feed of `n` indicators of every kind, none of which the events
/// below hold unless added.
fn generated_feed(n: usize) -> String {
    let mut csv = String::from("kind,value,valid_from,valid_until,revoked\n");
    for i in 0..n {
        let (kind, value) = match i % 5 {
            0 => (
                "ip",
                format!("100.{}.{}.{}", (i >> 16) & 63, (i >> 8) & 255, i & 255),
            ),
            1 => ("ip", format!("100.64.{}.0/24", (i >> 8) & 255)),
            2 => ("domain", format!("bad{i}.example")),
            3 => ("hash", format!("{:064x}", i * 7919)),
            _ => ("url", format!("http://kit{i}.example/drop/")),
        };
        csv.push_str(&format!("{kind},{value},,,\n"));
    }
    csv
}

const RULES: &str = "title: Nothing\nid: 99999999-0000-4000-8000-000000000001\nstatus: test\nlogsource: {product: windows}\ndetection:\n    selection: {EventID: 999999}\n    condition: selection\nlevel: low\n";

fn write_config(dir: &Path, inputs: &str, refresh: &str) -> std::path::PathBuf {
    std::fs::write(dir.join("rules.yml"), RULES).unwrap();
    let config = dir.join("vagt.yaml");
    std::fs::write(
        &config,
        format!(
            "rules: [rules.yml]\ninputs: {inputs}\noutput: alerts.jsonl\nprogress: never\nintel:\n  feeds:\n    - {{name: sector, path: sector.csv, format: csv, tlp: amber, confidence: 90, refresh: {refresh}}}\n    - {{name: cfcs, path: cfcs.json, format: stix, tlp: green, confidence: 60, refresh: {refresh}}}\n"
        ),
    )
    .unwrap();
    config
}

fn stix(objects: &[Value]) -> String {
    json!({"type": "bundle", "id": "bundle--00000000-0000-4000-8000-000000000000", "objects": objects}).to_string()
}

#[test]
fn a_hundred_thousand_indicators_give_exactly_the_expected_alerts() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let mut feed = generated_feed(100_000);
    feed.push_str("ip,203.0.113.0/28,,,\n");
    feed.push_str("hash,AAAABBBBCCCCDDDDEEEEFFFF0000111122223333444455556666777788889999,,,\n");
    feed.push_str("ip,198.51.100.66,,2020-01-01,\n");
    feed.push_str("domain,revoked.example,,,true\n");
    std::fs::write(d.join("sector.csv"), feed).unwrap();
    std::fs::write(
        d.join("cfcs.json"),
        stix(&[json!({
            "type": "indicator", "spec_version": "2.1",
            "id": "indicator--11111111-0000-4000-8000-000000000001",
            "pattern": "[domain-name:value = 'c2.evil.example' OR url:value = 'http://drop.example/x/' OR x509-certificate:hashes.'SHA-1' = '0a1b2c3d4e5f60718293a4b5c6d7e8f901234567']",
            "pattern_type": "stix", "valid_from": "2026-01-01T00:00:00Z"
        })]),
    )
    .unwrap();
    // Event n: the indicator it holds (or none).
    let events = [
        (
            json!({"EventID": 3, "n": 0, "SourceIp": "10.0.0.1", "DestinationIp": "203.0.113.5"}),
            Some("203.0.113.0/28"),
        ),
        (
            json!({"EventID": 22, "n": 1, "QueryName": "www.c2.evil.example"}),
            Some("c2.evil.example"),
        ),
        (
            json!({"EventID": 1, "n": 2, "Hashes": "MD5=00,SHA256=aaaabbbbccccddddeeeeffff0000111122223333444455556666777788889999"}),
            Some("AAAABBBBCCCCDDDDEEEEFFFF0000111122223333444455556666777788889999"),
        ),
        (
            json!({"EventID": 3, "n": 3, "DestinationIp": "100.64.7.200"}),
            Some("100.64.7.0/24"),
        ),
        (
            json!({"EventID": 3, "n": 4, "Url": "http://drop.example/x/stage2.bin"}),
            Some("http://drop.example/x/"),
        ),
        (
            json!({"EventID": 3, "n": 5, "DestinationIp": "198.51.100.66"}),
            None,
        ),
        (
            json!({"EventID": 22, "n": 6, "QueryName": "revoked.example"}),
            None,
        ),
        (
            json!({"EventID": 22, "n": 7, "QueryName": "good.example", "DestinationIp": "192.0.2.1"}),
            None,
        ),
        (
            json!({"event_type": "tls", "n": 8, "tls": {"fingerprint": "0A:1B:2C:3D:4E:5F:60:71:82:93:A4:B5:C6:D7:E8:F9:01:23:45:67"}}),
            Some("0a1b2c3d4e5f60718293a4b5c6d7e8f901234567"),
        ),
    ];
    let text: String = events.iter().map(|(e, _)| format!("{e}\n")).collect();
    std::fs::write(d.join("events.jsonl"), text).unwrap();
    let config = write_config(d, "[{path: events.jsonl}]", "1m");
    let (stats, stderr) = run_with_stats_env(&config, &[]);
    let alerts = json_lines(&d.join("alerts.jsonl"));
    let got: BTreeSet<(u64, String)> = alerts
        .iter()
        .map(|a| {
            (
                a["event"]["n"].as_u64().unwrap(),
                a["indicator"]["value"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    let expected: BTreeSet<(u64, String)> = events
        .iter()
        .filter_map(|(e, hit)| hit.map(|h| (e["n"].as_u64().unwrap(), h.to_string())))
        .collect();
    assert_eq!(got, expected, "{stderr}");
    assert_eq!(alerts.len(), expected.len(), "one alert per hit");
    for a in &alerts {
        let from_sector = a["indicator"]["feed"] == "sector";
        // At least the feed's TLP; the feed's confidence sets the level.
        assert_eq!(
            a["tlp"],
            if from_sector {
                "TLP:AMBER"
            } else {
                "TLP:GREEN"
            },
            "{a}"
        );
        assert_eq!(
            a["rule"]["level"],
            if from_sector { "high" } else { "medium" },
            "{a}"
        );
        assert!(
            a["indicator"]["field"].is_string() && a["indicator"]["matched"].is_string(),
            "{a}"
        );
    }
    let feeds = &stats["intel"]["feeds"];
    assert_eq!(feeds["sector"]["indicators"], 100_004, "{stats}");
    assert_eq!(
        feeds["sector"]["in_force"], 100_002,
        "the expired and the revoked are not: {stats}"
    );
    assert_eq!(feeds["cfcs"]["indicators"], 3, "{stats}");
    assert_eq!(stats["intel"]["hits"], expected.len() as u64);
}

/// Writes a new version of the `sector` feed file in `dir`, a second
/// after the last: a file feed is read again when its modification time
/// changes, which some file systems keep to the second.
fn rewrite_sector_feed(dir: &Path, text: &str) {
    std::thread::sleep(Duration::from_millis(1100));
    std::fs::write(dir.join("sector.csv"), text).unwrap();
}

/// The alerts in `dir`'s `alerts.jsonl` of indicator `value`.
fn hits(dir: &Path, value: &str) -> usize {
    let alerts = dir.join("alerts.jsonl");
    if !alerts.exists() {
        return 0;
    }
    json_lines(&alerts)
        .iter()
        .filter(|a| a["indicator"]["value"] == value)
        .count()
}

/// Appends event `n`, to address `ip`, to `dir`'s tailed events.
fn send(dir: &Path, n: u32, ip: &str) {
    append(
        &dir.join("events.jsonl"),
        &format!("{{\"EventID\": 3, \"n\": {n}, \"DestinationIp\": \"{ip}\"}}\n"),
    );
}

/// Sends events to `ip` until one hits (a feed's new version is in
/// force), numbered from `from`.
fn until_it_hits(dir: &Path, ip: &str, from: u32) {
    let mut n = from;
    eventually("the new indicator hits", Duration::from_secs(30), || {
        send(dir, n, ip);
        n += 1;
        std::thread::sleep(Duration::from_millis(300));
        hits(dir, ip) > 0
    });
}

/// After a broken version: an event to `ip` still hits.
fn still_hits(vagt: &mut Vagt, dir: &Path, ip: &str) {
    vagt.wait_for("intel feed not loaded", Duration::from_secs(30));
    let before = hits(dir, ip);
    send(dir, 1000, ip);
    eventually(
        "the last good version still hits",
        Duration::from_secs(30),
        || hits(dir, ip) > before,
    );
}

#[test]
fn a_rewritten_feed_comes_into_force_while_running_and_a_broken_one_keeps_the_last_good() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::write(d.join("sector.csv"), "kind,value\nip,192.0.2.10\n").unwrap();
    std::fs::write(d.join("cfcs.json"), stix(&[])).unwrap();
    std::fs::write(d.join("events.jsonl"), "").unwrap();
    let config = write_config(d, "[{tail: events.jsonl}]", "1s");
    let mut vagt = Vagt::with_config(&config);
    vagt.wait_for("ready", Duration::from_secs(30));
    send(d, 0, "192.0.2.10");
    send(d, 1, "198.51.100.20");
    eventually("the first indicator hits", Duration::from_secs(30), || {
        hits(d, "192.0.2.10") == 1
    });
    assert_eq!(hits(d, "198.51.100.20"), 0);

    // A new version of the feed: its new indicator hits without a restart.
    rewrite_sector_feed(d, "kind,value\nip,192.0.2.10\nip,198.51.100.20\n");
    until_it_hits(d, "198.51.100.20", 2);

    // A broken version: named, and the last good one stays in force.
    rewrite_sector_feed(d, "kind,value\nbogus,1\n");
    still_hits(&mut vagt, d, "198.51.100.20");
    let (status, stderr) = vagt.terminate();
    assert!(status.success(), "{stderr}");
    assert!(stderr.contains("unknown kind 'bogus'"), "{stderr}");
}

/// A STIX indicator of `pattern`, as a feed producer would post it.
fn indicator(n: u32, pattern: &str) -> Value {
    json!({
        "type": "indicator", "spec_version": "2.1",
        "id": format!("indicator--22222222-0000-4000-8000-{n:012}"),
        "created": "2026-11-01T00:00:00.000Z", "modified": "2026-11-01T00:00:00.000Z",
        "pattern": pattern, "pattern_type": "stix", "valid_from": "2026-01-01T00:00:00Z"
    })
}

#[test]
fn a_taxii_feed_polled_from_medallion_brings_new_indicators_and_keeps_the_last_good() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let server = crate::taxii::Medallion::start(d);
    server.add(&[indicator(1, "[ipv4-addr:value = '192.0.2.10']")]);
    std::fs::write(d.join("rules.yml"), RULES).unwrap();
    std::fs::write(d.join("events.jsonl"), "").unwrap();
    std::fs::create_dir(d.join("outbox")).unwrap();
    let config = d.join("vagt.yaml");
    std::fs::write(
        &config,
        format!(
            "rules: [rules.yml]\ninputs: [{{tail: events.jsonl}}]\nprogress: never\noutputs:\n  - {{name: own, type: file, path: alerts.jsonl}}\n  - name: sightings\n    type: taxii\n    audience: community\n    collection: '{}'\n    username_env: TAXII_USER\n    password_env: TAXII_PASSWORD\n    identity: Region Nordvest\n    outbox: {{dir: outbox}}\nintel:\n  feeds:\n    - name: sector\n      taxii: {{collection: '{}', username_env: TAXII_USER, password_env: TAXII_PASSWORD}}\n      tlp: green\n      refresh: 1s\n",
            server.collection(),
            server.collection()
        ),
    )
    .unwrap();
    let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_vagt"));
    command.envs([("TAXII_USER", "vagt"), ("TAXII_PASSWORD", "taxii-password")]);
    let mut vagt = Vagt::start_command(command, &["--config", config.to_str().unwrap()]);
    vagt.wait_for("intel feed loaded", Duration::from_secs(30));
    vagt.wait_for("ready", Duration::from_secs(30));
    send(d, 0, "192.0.2.10");
    eventually("the first indicator hits", Duration::from_secs(30), || {
        hits(d, "192.0.2.10") == 1
    });

    // A new indicator in the collection: in force at the next poll.
    server.add(&[indicator(2, "[ipv4-addr:value = '198.51.100.20']")]);
    until_it_hits(d, "198.51.100.20", 1);

    // A version vagt cannot match: refused, the last good one stays.
    server.add(&[indicator(3, "[process:name = 'evil.exe']")]);
    still_hits(&mut vagt, d, "198.51.100.20");

    // The hits go back to the collection as sightings of its own
    // indicators (GREEN: the community may see them).
    let sighted = || -> BTreeSet<String> {
        server
            .objects()
            .iter()
            .filter(|o| o["type"] == "sighting" && o["count"].as_u64() >= Some(1))
            .filter_map(|o| o["sighting_of_ref"].as_str().map(str::to_string))
            .collect()
    };
    eventually(
        "the sightings are in the collection",
        Duration::from_secs(30),
        || {
            let s = sighted();
            s.contains("indicator--22222222-0000-4000-8000-000000000001")
                && s.contains("indicator--22222222-0000-4000-8000-000000000002")
        },
    );
    assert!(
        server
            .objects()
            .iter()
            .all(|o| o["pattern_type"] != "sigma"),
        "no indicator of vagt's own is added for a feed's"
    );
    let (status, stderr) = vagt.terminate();
    assert!(status.success(), "{stderr}");
    assert!(
        stderr.contains("indicator--22222222-0000-4000-8000-000000000003"),
        "the refused object is named: {stderr}"
    );
    let all = json_lines(&d.join("alerts.jsonl"));
    assert!(
        all.iter()
            .all(|a| a["tlp"] == "TLP:GREEN" || a["tlp"] == "TLP:AMBER"),
        "at least the feed's TLP"
    );
}

/// A tailed run with an archive, retro-hunts and a feed of 192.0.2.99.
fn archived_feed_config(d: &Path) -> std::path::PathBuf {
    std::fs::write(d.join("rules.yml"), RULES).unwrap();
    std::fs::write(d.join("sector.csv"), "kind,value\nip,192.0.2.99\n").unwrap();
    std::fs::write(d.join("events.jsonl"), "").unwrap();
    let config = d.join("vagt.yaml");
    std::fs::write(
        &config,
        "rules: [rules.yml]\ninputs: [{tail: events.jsonl}]\noutput: alerts.jsonl\nprogress: never\narchive: {dir: archive, retro_hunt: 3650d}\nintel:\n  feeds:\n    - {name: sector, path: sector.csv, format: csv, refresh: 1s}\n",
    )
    .unwrap();
    config
}

/// The event numbers of the retrospective alerts of indicator `value`.
fn retrospective(d: &Path, value: &str) -> Vec<u64> {
    json_lines(&d.join("alerts.jsonl"))
        .iter()
        .filter(|a| a["indicator"]["value"] == value && a["retrospective"] == true)
        .map(|a| a["event"]["n"].as_u64().unwrap())
        .collect()
}

#[test]
fn a_new_indicator_is_hunted_over_the_archive_and_finds_its_past_hits_once() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let config = archived_feed_config(d);
    let mut vagt = Vagt::with_config(&config);
    vagt.wait_for("ready", Duration::from_secs(30));
    // Two events to an address no feed names yet: no alert.
    send(d, 0, "198.51.100.20");
    send(d, 1, "198.51.100.20");
    send(d, 2, "192.0.2.99");
    eventually("the known indicator hits", Duration::from_secs(30), || {
        hits(d, "192.0.2.99") == 1
    });
    assert_eq!(hits(d, "198.51.100.20"), 0);
    let retrospective = |value: &str| retrospective(d, value);

    // The address comes into the feed: the archive is hunted for it, and
    // its two past events alert, marked retrospective.
    rewrite_sector_feed(d, "kind,value\nip,192.0.2.99\nip,198.51.100.20\n");
    vagt.wait_for(
        "retro-hunt of new indicators finished",
        Duration::from_secs(30),
    );
    eventually("the past hits alert", Duration::from_secs(30), || {
        retrospective("198.51.100.20").len() == 2
    });

    // Another new indicator: another hunt, which finds nothing new.
    rewrite_sector_feed(
        d,
        "kind,value\nip,192.0.2.99\nip,198.51.100.20\nip,203.0.113.1\n",
    );
    eventually("the second hunt finished", Duration::from_secs(30), || {
        vagt.stderr()
            .matches("retro-hunt of new indicators finished")
            .count()
            == 2
    });
    let (status, stderr) = vagt.terminate();
    assert!(status.success(), "{stderr}");
    let mut past = retrospective("198.51.100.20");
    past.sort_unstable();
    assert_eq!(past, [0, 1], "each past hit once: {stderr}");
    assert!(
        retrospective("192.0.2.99").is_empty(),
        "an indicator in force from the start is not hunted"
    );
}

#[test]
fn an_indicator_comes_into_force_at_its_valid_from_without_a_change_of_its_feed() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let soon = chrono::Utc::now() + chrono::Duration::seconds(3);
    std::fs::write(
        d.join("sector.csv"),
        format!(
            "kind,value,valid_from\nip,192.0.2.10,\nip,198.51.100.20,{}\n",
            soon.to_rfc3339()
        ),
    )
    .unwrap();
    std::fs::write(d.join("cfcs.json"), stix(&[])).unwrap();
    std::fs::write(d.join("events.jsonl"), "").unwrap();
    let config = write_config(d, "[{tail: events.jsonl}]", "1m");
    let mut vagt = Vagt::with_config(&config);
    vagt.wait_for("ready", Duration::from_secs(30));
    send(d, 0, "198.51.100.20");
    send(d, 1, "192.0.2.10");
    eventually(
        "the indicator in force hits",
        Duration::from_secs(30),
        || hits(d, "192.0.2.10") == 1,
    );
    assert_eq!(hits(d, "198.51.100.20"), 0, "not yet in force");
    // Its time comes; the feed's file does not change.
    until_it_hits(d, "198.51.100.20", 2);
    let (status, stderr) = vagt.terminate();
    assert!(status.success(), "{stderr}");
}

/// Rules reading the `sector` feed: as networks (`cidr`) and as values
/// (`expand`), and one naming a feed that is not configured.
const FEED_RULES: &str = r#"title: Connection to a network of the sector feed
id: 99999999-0000-4000-8000-00000000fe01
status: test
logsource: {product: windows}
detection:
    selection: {EventID: 3, DestinationIp|cidr: '%feed:sector%'}
    condition: selection
level: high
---
title: Query of a domain of the sector feed by PowerShell
id: 99999999-0000-4000-8000-00000000fe02
status: test
logsource: {product: windows}
detection:
    selection:
        EventID: 22
        QueryName|expand: '%feed:sector%'
        Image|endswith: '\powershell.exe'
    condition: selection
level: high
---
title: A feed that is not configured
id: 99999999-0000-4000-8000-00000000fe03
status: test
logsource: {product: windows}
detection:
    selection: {DestinationIp|cidr: '%feed:nowhere%'}
    condition: selection
level: high
---
title: Repeated connections to a network of the sector feed
id: 99999999-0000-4000-8000-00000000fe04
status: test
correlation:
    type: event_count
    rules: [99999999-0000-4000-8000-00000000fe01]
    group-by: [DestinationIp]
    timespan: 1h
    condition: {gte: 3}
    generate: true
level: high
"#;

/// The alerts of rule `suffix` (the end of its id), by event number.
fn rule_hits(dir: &Path, suffix: &str) -> Vec<(u64, Value)> {
    let alerts = dir.join("alerts.jsonl");
    if !alerts.exists() {
        return Vec::new();
    }
    json_lines(&alerts)
        .into_iter()
        .filter(|a| {
            a["rule"]["id"]
                .as_str()
                .is_some_and(|id| id.ends_with(suffix))
        })
        .map(|a| (a["event"]["n"].as_u64().unwrap(), a["tlp"].clone()))
        .collect()
}

#[test]
fn a_sigma_rule_reads_a_feed_as_a_value_list_and_sees_its_new_versions() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::write(d.join("rules.yml"), FEED_RULES).unwrap();
    std::fs::write(
        d.join("sector.csv"),
        "kind,value\nip,192.0.2.0/24\ndomain,evil.example\n",
    )
    .unwrap();
    std::fs::write(d.join("events.jsonl"), "").unwrap();
    let config = d.join("vagt.yaml");
    std::fs::write(
        &config,
        "rules: [rules.yml]\ninputs: [{tail: events.jsonl}]\noutput: alerts.jsonl\nprogress: never\nintel:\n  feeds:\n    - {name: sector, path: sector.csv, format: csv, tlp: amber+strict, refresh: 1s}\n",
    )
    .unwrap();
    let mut vagt = Vagt::with_config(&config);
    let ready = vagt.wait_for("ready", Duration::from_secs(30));
    let stderr = vagt.stderr();
    assert!(
        stderr.contains("'nowhere', which is not loaded: the feeds are sector"),
        "the unknown feed is named: {stderr}\n{ready}"
    );
    let event = |n: u32, body: &str| {
        append(
            &d.join("events.jsonl"),
            &format!("{{\"n\": {n}, {body}}}\n"),
        )
    };
    event(0, r#""EventID": 3, "DestinationIp": "192.0.2.77""#);
    event(1, r#""EventID": 3, "DestinationIp": "198.51.100.20""#);
    event(
        2,
        r#""EventID": 22, "QueryName": "cdn.evil.example", "Image": "C:\\Windows\\powershell.exe""#,
    );
    event(
        3,
        r#""EventID": 22, "QueryName": "cdn.evil.example", "Image": "C:\\Windows\\explorer.exe""#,
    );
    eventually("both rules alert", Duration::from_secs(30), || {
        rule_hits(d, "fe01").len() == 1 && rule_hits(d, "fe02").len() == 1
    });
    let network = rule_hits(d, "fe01");
    assert_eq!(network[0].0, 0);
    assert_eq!(
        network[0].1, "TLP:AMBER+STRICT",
        "the feed's TLP marks the rule's alerts"
    );
    assert_eq!(rule_hits(d, "fe02")[0].0, 2);

    // A new version of the feed: the rule sees its new network without a
    // restart or a recompile.
    rewrite_sector_feed(
        d,
        "kind,value\nip,192.0.2.0/24\nip,198.51.100.0/24\ndomain,evil.example\n",
    );
    let mut n = 10;
    eventually("the new network matches", Duration::from_secs(30), || {
        event(n, r#""EventID": 3, "DestinationIp": "198.51.100.20""#);
        n += 1;
        std::thread::sleep(Duration::from_millis(300));
        rule_hits(d, "fe01").len() > 1
    });
    let (status, stderr) = vagt.terminate();
    assert!(status.success(), "{stderr}");
    assert!(
        rule_hits(d, "fe01")
            .iter()
            .all(|(n, _)| *n == 0 || *n >= 10),
        "event 1 came before the new version"
    );
}

#[test]
fn a_reload_brings_a_new_feed_and_the_rules_that_read_it() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::write(d.join("rules.yml"), RULES).unwrap();
    std::fs::write(d.join("sector.csv"), "kind,value\nip,192.0.2.10\n").unwrap();
    std::fs::write(d.join("extra.txt"), "# new feed\n203.0.113.5\n").unwrap();
    std::fs::write(d.join("events.jsonl"), "").unwrap();
    let config = d.join("vagt.yaml");
    let base = "rules: [rules.yml]\ninputs: [{tail: events.jsonl}]\noutput: alerts.jsonl\nprogress: never\nintel:\n  feeds:\n    - {name: sector, path: sector.csv, format: csv, refresh: 1s}\n";
    std::fs::write(&config, base).unwrap();
    let mut vagt = Vagt::with_config(&config);
    vagt.wait_for("ready", Duration::from_secs(30));
    send(d, 0, "203.0.113.5");
    send(d, 1, "192.0.2.10");
    eventually("the sector feed hits", Duration::from_secs(30), || {
        hits(d, "192.0.2.10") == 1
    });
    assert_eq!(hits(d, "203.0.113.5"), 0);

    // The config gains a feed, and a rule reading it: one reload.
    std::fs::write(
        d.join("rules.yml"),
        format!(
            "{RULES}---\ntitle: Connection to the extra feed\nid: 99999999-0000-4000-8000-00000000fe09\nstatus: test\nlogsource: {{product: windows}}\ndetection:\n    selection: {{DestinationIp|cidr: '%feed:extra%'}}\n    condition: selection\nlevel: high\n"
        ),
    )
    .unwrap();
    std::fs::write(
        &config,
        format!("{base}    - {{name: extra, path: extra.txt, format: lines, kind: ip, tlp: amber+strict}}\n"),
    )
    .unwrap();
    vagt.signal("HUP");
    vagt.wait_for("reloaded", Duration::from_secs(30));
    assert!(
        vagt.stderr()
            .contains("the threat intelligence feeds changed"),
        "{}",
        vagt.stderr()
    );
    send(d, 2, "203.0.113.5");
    send(d, 3, "192.0.2.10");
    eventually(
        "the new feed and its rule hit",
        Duration::from_secs(30),
        || {
            hits(d, "203.0.113.5") == 1
                && rule_hits(d, "fe09").len() == 1
                && hits(d, "192.0.2.10") == 2
        },
    );
    assert_eq!(rule_hits(d, "fe09")[0], (2, json!("TLP:AMBER+STRICT")));

    // The feed removed again: its indicators no longer hit, and the rule
    // still reading it is rejected, naming it; the others go on.
    std::fs::write(&config, base).unwrap();
    vagt.signal("HUP");
    eventually("the second reload", Duration::from_secs(30), || {
        vagt.stderr()
            .matches("reloaded: this version now runs")
            .count()
            == 2
    });
    send(d, 4, "203.0.113.5");
    send(d, 5, "192.0.2.10");
    eventually(
        "the sector feed still hits",
        Duration::from_secs(30),
        || hits(d, "192.0.2.10") == 3,
    );
    // The replaced feeds stopped: a change of the sector feed is read
    // once, by the feeds in force, not also by those of the start.
    let loads = |vagt: &Vagt| {
        vagt.stderr()
            .matches("intel feed loaded feed=sector")
            .count()
    };
    let before = loads(&vagt);
    rewrite_sector_feed(d, "kind,value\nip,192.0.2.10\nip,192.0.2.11\n");
    eventually("the new version is read", Duration::from_secs(30), || {
        loads(&vagt) > before
    });
    std::thread::sleep(Duration::from_millis(2500));
    assert_eq!(loads(&vagt), before + 1, "{}", vagt.stderr());
    let (status, stderr) = vagt.terminate();
    assert!(status.success(), "{stderr}");
    assert!(
        stderr.contains("'extra', which is not loaded: the feeds are sector"),
        "{stderr}"
    );
    assert_eq!(hits(d, "203.0.113.5"), 1, "the removed feed no longer hits");
    assert_eq!(rule_hits(d, "fe09").len(), 1);
}

#[test]
fn indicators_that_came_while_vagt_was_down_are_hunted_at_the_next_start() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let config = archived_feed_config(d);
    let retrospective = |value: &str| retrospective(d, value);
    // The first run: the indicators in force are recorded, not hunted.
    let mut vagt = Vagt::with_config(&config);
    vagt.wait_for("ready", Duration::from_secs(30));
    send(d, 0, "198.51.100.20");
    send(d, 1, "198.51.100.20");
    send(d, 2, "192.0.2.99");
    eventually("the known indicator hits", Duration::from_secs(30), || {
        hits(d, "192.0.2.99") == 1
    });
    let (status, stderr) = vagt.terminate();
    assert!(status.success(), "{stderr}");
    assert!(
        stderr.contains("the indicators in force are recorded, not hunted"),
        "{stderr}"
    );

    // While vagt is down, the feed gains the address of events 0 and 1
    // (and the tailed file starts afresh, so only the hunt can find them).
    std::fs::write(d.join("events.jsonl"), "").unwrap();
    std::fs::write(
        d.join("sector.csv"),
        "kind,value\nip,192.0.2.99\nip,198.51.100.20\n",
    )
    .unwrap();
    let mut vagt = Vagt::with_config(&config);
    vagt.wait_for(
        "retro-hunt of new indicators finished",
        Duration::from_secs(60),
    );
    eventually("the past hits alert", Duration::from_secs(30), || {
        retrospective("198.51.100.20").len() == 2
    });
    let (status, stderr) = vagt.terminate();
    assert!(status.success(), "{stderr}");
    assert!(
        stderr.contains("indicators=1"),
        "one indicator hunted: {stderr}"
    );
    let mut past = retrospective("198.51.100.20");
    past.sort_unstable();
    assert_eq!(past, [0, 1], "each past hit once");
    assert!(retrospective("192.0.2.99").is_empty());

    // A third start with the same feed hunts nothing.
    std::fs::write(d.join("events.jsonl"), "").unwrap();
    let mut vagt = Vagt::with_config(&config);
    vagt.wait_for("ready", Duration::from_secs(30));
    send(d, 3, "192.0.2.99");
    // (The output file is written afresh by each run.)
    eventually("the run goes on", Duration::from_secs(30), || {
        hits(d, "192.0.2.99") == 1
    });
    std::thread::sleep(Duration::from_millis(1500));
    let (status, stderr) = vagt.terminate();
    assert!(status.success(), "{stderr}");
    assert!(!stderr.contains("retro-hunt of new indicators"), "{stderr}");
}

#[test]
fn a_feed_gives_only_the_kinds_its_settings_take() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::write(
        d.join("sector.csv"),
        "kind,value\nip,203.0.113.5\ndomain,evil.example\nhash,00ff\n",
    )
    .unwrap();
    std::fs::write(d.join("cfcs.json"), stix(&[])).unwrap();
    std::fs::write(
        d.join("events.jsonl"),
        "{\"n\": 0, \"DestinationIp\": \"203.0.113.5\"}\n{\"n\": 1, \"QueryName\": \"evil.example\"}\n{\"n\": 2, \"Hashes\": \"MD5=00FF\"}\n",
    )
    .unwrap();
    let config = write_config(d, "[{path: events.jsonl}]", "1m");
    let text = std::fs::read_to_string(&config)
        .unwrap()
        .replace("format: csv,", "format: csv, kinds: [domain, hash],");
    std::fs::write(&config, text).unwrap();
    let (stats, stderr) = run_with_stats_env(&config, &[]);
    let mut hit: Vec<u64> = json_lines(&d.join("alerts.jsonl"))
        .iter()
        .map(|a| a["event"]["n"].as_u64().unwrap())
        .collect();
    hit.sort_unstable();
    assert_eq!(hit, [1, 2], "the address is left out: {stderr}");
    let sector = &stats["intel"]["feeds"]["sector"];
    assert_eq!(
        (&sector["indicators"], &sector["left_out"]),
        (&json!(2), &json!(1)),
        "{stats}"
    );

    // A `lines` feed whose kind `kinds` leaves out is refused, named.
    let text = std::fs::read_to_string(&config).unwrap().replace(
        "name: cfcs, path: cfcs.json, format: stix",
        "name: cfcs, path: cfcs.json, format: lines, kind: ip, kinds: [url]",
    );
    std::fs::write(&config, text).unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_vagt"))
        .args(["run", "--config"])
        .arg(&config)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        stderr.contains("feed 'cfcs': its lines are of kind ip, which `kinds` leaves out"),
        "{stderr}"
    );
}
