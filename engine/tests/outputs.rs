//! The outputs through the binary: rotated and compressed files in OCSF
//! and text, syslog over TCP and TLS, and stdout whose reader goes away.

use std::io::{Read, Write};
use std::net::TcpListener;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::Value;

use crate::delivery::{events, write_rule};
use crate::support::json_lines;

fn vagt_run(config: &Path) -> (bool, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_vagt"))
        .args(["run", "--config", config.to_str().unwrap()])
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn config(dir: &Path, outputs: &str) -> std::path::PathBuf {
    let config = dir.join("vagt.yaml");
    std::fs::write(
        &config,
        format!(
            "rules: [rule.yml]\nprofile: passthrough\ninputs: [{{path: events.jsonl, actor: rnv-hospital-nord}}]\ndead_letters: dead.jsonl\nprogress: never\noutputs:\n{outputs}"
        ),
    )
    .unwrap();
    config
}

#[test]
fn files_rotate_by_size_compress_and_keep_the_newest() {
    let dir = tempfile::tempdir().unwrap();
    write_rule(dir.path());
    std::fs::create_dir_all(dir.path().join("out")).unwrap();
    std::fs::write(dir.path().join("events.jsonl"), events(0, 300)).unwrap();
    let config = config(
        dir.path(),
        "  - {name: ocsf, type: file, path: out/findings.json, encoding: ocsf, rotate: {max_bytes: 64KiB, compress: true, keep: 3}}\n  - {name: text, type: file, path: out/alerts.txt, encoding: text}\n",
    );
    // A batch of one event at a time, so that rotation happens between batches.
    let text = std::fs::read_to_string(&config).unwrap() + "decoder: {batch_size: 10}\n";
    std::fs::write(&config, text).unwrap();
    let (ok, stderr) = vagt_run(&config);
    assert!(ok, "{stderr}");
    let mut rotated: Vec<String> = std::fs::read_dir(dir.path().join("out"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("findings-"))
        .collect();
    rotated.sort();
    assert_eq!(rotated.len(), 3, "the newest 3 kept: {rotated:?}");
    assert!(
        rotated.iter().all(|n| n.ends_with(".json.gz")),
        "{rotated:?}"
    );
    // What was kept, decompressed, plus the current file: whole OCSF
    // findings, and the current file below the size.
    let mut findings = Vec::new();
    for name in &rotated {
        let gz = std::fs::File::open(dir.path().join("out").join(name)).unwrap();
        let mut text = String::new();
        flate2::read::GzDecoder::new(gz)
            .read_to_string(&mut text)
            .unwrap();
        assert!(text.len() <= 64 * 1024, "{name}: {} bytes", text.len());
        findings.extend(
            text.lines()
                .map(|l| serde_json::from_str::<Value>(l).unwrap()),
        );
    }
    let current = json_lines(&dir.path().join("out/findings.json"));
    findings.extend(current);
    assert!(findings.len() < 300, "older files were deleted");
    for f in &findings {
        assert_eq!(f["class_uid"], 2004);
        assert_eq!(f["type_uid"], 200401);
        assert_eq!(f["severity_id"], 4, "high");
        assert_eq!(f["finding_info"]["analytic"]["name"], "Login failure");
        assert_eq!(f["unmapped"]["actor"], "rnv-hospital-nord");
        assert_eq!(f["evidences"][0]["data"]["msg"], "login failed");
        assert!(f["time"].as_i64().unwrap() > 1_700_000_000_000);
    }
    let text = std::fs::read_to_string(dir.path().join("out/alerts.txt")).unwrap();
    assert_eq!(text.lines().count(), 300);
    let first = text.lines().next().unwrap();
    assert!(
        first.contains(" HIGH ")
            && first.contains("Login failure")
            && first.contains("actor=rnv-hospital-nord"),
        "{first}"
    );
}

/// Messages framed by octet counting (`LEN SP MSG`).
fn octet_counted(mut bytes: &[u8]) -> Vec<String> {
    let mut out = Vec::new();
    while !bytes.is_empty() {
        let space = bytes.iter().position(|b| *b == b' ').unwrap();
        let len: usize = std::str::from_utf8(&bytes[..space])
            .unwrap()
            .parse()
            .unwrap();
        out.push(String::from_utf8(bytes[space + 1..space + 1 + len].to_vec()).unwrap());
        bytes = &bytes[space + 1 + len..];
    }
    out
}

/// Checks an RFC 5424 message carrying a high alert as JSON.
fn check_syslog_message(message: &str) {
    // <PRI>1 TIMESTAMP HOSTNAME APP-NAME PROCID MSGID SD MSG; local0 (16) * 8 + err (3).
    let fields: Vec<&str> = message.splitn(8, ' ').collect();
    assert_eq!(fields[0], "<131>1", "{message}");
    assert!(fields[1].ends_with('Z'), "{message}");
    assert_eq!(fields[3], "vagt-test");
    assert_eq!(fields[5], "alert");
    assert_eq!(fields[6], "-");
    let alert: Value = serde_json::from_str(fields[7]).unwrap();
    assert_eq!(alert["rule"]["title"], "Login failure");
}

#[test]
fn syslog_output_sends_rfc5424_over_tcp() {
    let dir = tempfile::tempdir().unwrap();
    write_rule(dir.path());
    std::fs::write(dir.path().join("events.jsonl"), events(0, 40)).unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let received = Arc::new(Mutex::new(Vec::new()));
    let sink = received.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let mut bytes = Vec::new();
            let _ = stream.unwrap().read_to_end(&mut bytes);
            sink.lock().unwrap().extend(bytes);
        }
    });
    let config = config(
        dir.path(),
        &format!("  - {{name: siem, type: syslog, address: \"{addr}\", protocol: tcp, app_name: vagt-test}}\n"),
    );
    run_and_receive_syslog(&config, &received, 40);
}

/// Runs `config` and waits for `n` octet-counted syslog messages in
/// `received`, each checked.
fn run_and_receive_syslog(config: &Path, received: &Mutex<Vec<u8>>, n: usize) {
    let (ok, stderr) = vagt_run(config);
    assert!(ok, "{stderr}");
    crate::support::eventually("the messages", Duration::from_secs(10), || {
        octet_counted(&received.lock().unwrap()).len() == n
    });
    octet_counted(&received.lock().unwrap())
        .iter()
        .for_each(|m| check_syslog_message(m));
}

#[test]
fn syslog_output_sends_over_tls_to_a_server_it_trusts() {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let dir = tempfile::tempdir().unwrap();
    write_rule(dir.path());
    std::fs::write(dir.path().join("events.jsonl"), events(0, 25)).unwrap();
    let certified = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).unwrap();
    std::fs::write(dir.path().join("ca.pem"), certified.cert.pem()).unwrap();
    let server = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_no_client_auth()
    .with_single_cert(
        vec![CertificateDer::from_pem_slice(certified.cert.pem().as_bytes()).unwrap()],
        PrivateKeyDer::from_pem_slice(certified.signing_key.serialize_pem().as_bytes()).unwrap(),
    )
    .unwrap();
    let server = Arc::new(server);
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let received = Arc::new(Mutex::new(Vec::new()));
    let sink = received.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let connection = rustls::ServerConnection::new(server.clone()).unwrap();
            let mut tls = rustls::StreamOwned::new(connection, stream.unwrap());
            let mut bytes = Vec::new();
            let _ = tls.read_to_end(&mut bytes);
            sink.lock().unwrap().extend(bytes);
        }
    });
    let config = config(
        dir.path(),
        &format!(
            "  - {{name: siem, type: syslog, address: \"127.0.0.1:{}\", protocol: tls, ca_file: ca.pem, server_name: localhost, app_name: vagt-test}}\n",
            addr.port()
        ),
    );
    run_and_receive_syslog(&config, &received, 25);
}

#[test]
fn stdout_whose_reader_goes_away_ends_the_run_quietly() {
    let dir = tempfile::tempdir().unwrap();
    let rule = write_rule(dir.path());
    let input = dir.path().join("events.jsonl");
    // Far more alerts than a pipe holds.
    std::fs::write(&input, events(0, 20_000)).unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_vagt"))
        .args([
            "run",
            "--rules",
            rule.to_str().unwrap(),
            "--profile",
            "passthrough",
            "--input",
            input.to_str().unwrap(),
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdout = child.stdout.take().unwrap();
    let mut first = [0u8; 100];
    stdout.read_exact(&mut first).unwrap();
    drop(stdout);
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(
        !stderr.contains("error") && !stderr.contains("Broken pipe"),
        "{stderr}"
    );
    let _ = std::io::stderr().flush();
}

#[test]
fn stdout_on_a_terminal_shows_readable_lines() {
    let dir = tempfile::tempdir().unwrap();
    let rule = write_rule(dir.path());
    let input = dir.path().join("events.jsonl");
    std::fs::write(&input, events(0, 3)).unwrap();
    // `script` gives vagt a terminal for its stdout.
    let command = format!(
        "{} run --rules {} --profile passthrough --input {} --progress never 2>/dev/null",
        env!("CARGO_BIN_EXE_vagt"),
        rule.display(),
        input.display()
    );
    let out = Command::new("script")
        .args(["-qec", &command, "/dev/null"])
        .output()
        .expect("script (util-linux) runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    let lines: Vec<&str> = text
        .lines()
        .filter(|l| l.contains("Login failure"))
        .collect();
    assert_eq!(lines.len(), 3, "{text}");
    for line in lines {
        assert!(
            !line.trim_start().starts_with('{'),
            "not JSON on a terminal: {line}"
        );
        assert!(line.contains(" HIGH ") && line.contains("id="), "{line}");
    }
}

#[test]
fn files_rotate_by_age() {
    let dir = tempfile::tempdir().unwrap();
    write_rule(dir.path());
    std::fs::create_dir_all(dir.path().join("out")).unwrap();
    let input = dir.path().join("events.jsonl");
    std::fs::write(&input, "").unwrap();
    let config = dir.path().join("vagt.yaml");
    std::fs::write(
        &config,
        "rules: [rule.yml]\nprofile: passthrough\ninputs: [{tail: events.jsonl}]\nprogress: never\noutputs:\n  - {name: archive, type: file, path: out/alerts.jsonl, rotate: {every: 1s}}\n",
    )
    .unwrap();
    let mut vagt = crate::support::Vagt::with_config(&config);
    vagt.wait_for("vagt: ready", Duration::from_secs(60));
    let current = dir.path().join("out/alerts.jsonl");
    crate::support::append(&input, &events(0, 5));
    crate::support::eventually("the first alerts", Duration::from_secs(30), || {
        json_lines(&current).len() == 5
    });
    std::thread::sleep(Duration::from_millis(1200));
    crate::support::append(&input, &events(5, 5));
    let rotated = || -> Vec<std::path::PathBuf> {
        std::fs::read_dir(dir.path().join("out"))
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| {
                p.file_name()
                    .unwrap()
                    .to_string_lossy()
                    .starts_with("alerts-")
            })
            .collect()
    };
    crate::support::eventually("a rotation", Duration::from_secs(30), || {
        !rotated().is_empty() && json_lines(&current).len() == 5
    });
    let (status, stderr) = vagt.terminate();
    assert!(status.success(), "{stderr}");
    let mut seqs: Vec<u64> = rotated()
        .iter()
        .chain([&current])
        .flat_map(|p| json_lines(p))
        .map(|a| a["event"]["seq"].as_u64().unwrap())
        .collect();
    seqs.sort_unstable();
    assert_eq!(
        seqs,
        (0..10).collect::<Vec<u64>>(),
        "every alert in one file or the other"
    );
    assert!(stderr.contains("rotated"), "{stderr}");
}
