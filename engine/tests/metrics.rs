//! The Prometheus endpoint, scraped while a run is in progress: counters
//! move and agree with the events fed.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Command, Stdio};
use std::sync::mpsc::Receiver;
use std::time::{Duration, Instant};

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// GET /metrics, retrying while the endpoint comes up.
pub fn scrape(port: u16) -> String {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Ok(mut s) = TcpStream::connect(("127.0.0.1", port)) {
            s.write_all(b"GET /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
                .unwrap();
            let mut body = String::new();
            if s.read_to_string(&mut body).is_ok() && body.starts_with("HTTP/1.1 200") {
                return body;
            }
        }
        assert!(
            Instant::now() < deadline,
            "metrics endpoint on port {port} never answered"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The value of one sample line `name{labels} value`.
pub fn value(body: &str, name_and_labels: &str) -> Option<f64> {
    body.lines()
        .find(|l| l.starts_with(name_and_labels) && l[name_and_labels.len()..].starts_with(' '))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

/// Scrapes until `name_and_labels` reaches `want` (counters are updated
/// just after the alert is written).
pub fn scrape_until(port: u16, name_and_labels: &str, want: f64) -> String {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let body = scrape(port);
        if value(&body, name_and_labels) == Some(want) {
            return body;
        }
        assert!(
            Instant::now() < deadline,
            "{name_and_labels} never reached {want}:\n{body}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Scrapes until `name_and_labels` is at least `least` (a count that
/// moves after the event the test waited for, such as a write's timing).
fn scrape_until_at_least(port: u16, name_and_labels: &str, least: f64) -> String {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let body = scrape(port);
        if value(&body, name_and_labels).is_some_and(|v| v >= least) {
            return body;
        }
        assert!(
            Instant::now() < deadline,
            "{name_and_labels} never reached {least}:\n{body}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn next_alert(rx: &Receiver<String>) -> serde_json::Value {
    let line = rx.recv_timeout(Duration::from_secs(120)).expect("an alert");
    serde_json::from_str(&line).unwrap()
}

#[test]
fn metrics_move_with_the_events_fed() {
    let dir = tempfile::tempdir().unwrap();
    let rule = dir.path().join("rule.yml");
    std::fs::write(
        &rule,
        "title: Whoami\nid: 12121212-0000-4000-8000-000000000012\nlevel: low\nlogsource: {product: windows, category: process_creation}\ndetection:\n  sel: {Image|endswith: '\\whoami.exe'}\n  condition: sel\n",
    )
    .unwrap();
    let port = free_port();
    let mut child = Command::new(env!("CARGO_BIN_EXE_vagt"))
        .args([
            "run",
            "--rules",
            rule.to_str().unwrap(),
            "--input",
            "-",
            "--metrics",
            &format!("127.0.0.1:{port}"),
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
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
    let event = |image: &str| {
        format!(
            r#"{{"EventID": 1, "Channel": "Microsoft-Windows-Sysmon/Operational", "Image": "C:\\Windows\\System32\\{image}"}}"#
        )
    };
    // First burst: 5 events, 2 of them alert; one malformed line.
    for image in [
        "whoami.exe",
        "cmd.exe",
        "whoami.exe",
        "notepad.exe",
        "calc.exe",
    ] {
        writeln!(stdin, "{}", event(image)).unwrap();
    }
    writeln!(stdin, "{{\"broken\": }}").unwrap();
    stdin.flush().unwrap();
    next_alert(&rx);
    next_alert(&rx);
    let body = scrape_until(port, "vagt_alerts_total{severity=\"low\"}", 2.0);
    assert_eq!(
        value(&body, "vagt_events_in_total{source=\"stdin\"}"),
        Some(5.0),
        "{body}"
    );
    assert_eq!(
        value(&body, "vagt_events_out_total{source=\"stdin\"}"),
        Some(5.0),
        "{body}"
    );
    assert_eq!(
        value(&body, "vagt_dead_letters_total{source=\"stdin\"}"),
        Some(1.0),
        "{body}"
    );
    let rule_label = "{rule=\"12121212-0000-4000-8000-000000000012\"}";
    assert_eq!(
        value(&body, &format!("vagt_rule_matches_total{rule_label}")),
        Some(2.0),
        "{body}"
    );
    assert!(
        value(&body, &format!("vagt_rule_evaluations_total{rule_label}")).unwrap_or(0.0) >= 1.0
    );
    assert_eq!(value(&body, "vagt_rules_loaded"), Some(1.0));
    // The alerts reach stdout before the write's timing is recorded.
    scrape_until_at_least(port, "vagt_ingest_to_alert_seconds_count", 1.0);
    scrape_until_at_least(port, "vagt_sink_write_seconds_count{sink=\"alerts\"}", 1.0);
    // The version of rules and config that runs is named.
    assert!(
        body.lines()
            .any(|l| l.starts_with("vagt_config_info{version=\"") && l.ends_with(" 1")),
        "{body}"
    );
    // The output (stdout, named `alerts` when `--output` names it) counts
    // what it delivered, and how long after its event was read. Both are
    // recorded after the alerts reach stdout: waited for, exactly 2
    // delivered.
    scrape_until(port, "vagt_output_delivered_total{output=\"alerts\"}", 2.0);
    scrape_until_at_least(
        port,
        "vagt_output_delivery_seconds_count{output=\"alerts\"}",
        1.0,
    );

    // Second burst: the counters move on.
    for image in ["whoami.exe", "explorer.exe", "svchost.exe"] {
        writeln!(stdin, "{}", event(image)).unwrap();
    }
    stdin.flush().unwrap();
    next_alert(&rx);
    let body = scrape_until(port, "vagt_alerts_total{severity=\"low\"}", 3.0);
    assert_eq!(
        value(&body, "vagt_events_in_total{source=\"stdin\"}"),
        Some(8.0),
        "{body}"
    );
    assert_eq!(
        value(&body, &format!("vagt_rule_matches_total{rule_label}")),
        Some(3.0),
        "{body}"
    );

    drop(stdin);
    assert!(child.wait().unwrap().success());
}
