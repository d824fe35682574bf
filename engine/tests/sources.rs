//! Live sources through the `vagt` binary, on 127.0.0.1: syslog over UDP,
//! TCP (octet counting and lines) and TLS; HTTP ingest with per-
//! organisation tokens; a followed file across rotation and restart.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream, UdpSocket};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::support::{eventually, json_lines, make_fifo, Vagt};

const WAIT: Duration = Duration::from_secs(30);

/// A rule over syslog fields and one over JSON events, both without a
/// logsource mapping (passthrough profile).
fn write_rules(dir: &Path) -> PathBuf {
    let rules = dir.join("rules");
    std::fs::create_dir_all(&rules).unwrap();
    std::fs::write(
        rules.join("ssh.yml"),
        r#"title: SSH password failure
id: 0f6f1b1e-5b7e-4d43-9a55-2f1f4d6a0c01
status: experimental
logsource: {product: linux, service: sshd}
detection:
  selection:
    app_name: sshd
    message|contains: Failed password
  condition: selection
level: medium
"#,
    )
    .unwrap();
    std::fs::write(
        rules.join("beacon.yml"),
        r#"title: Malware beacon reported
id: 0f6f1b1e-5b7e-4d43-9a55-2f1f4d6a0c02
status: experimental
logsource: {category: proxy}
detection:
  selection:
    msg|contains: beacon
  condition: selection
level: high
"#,
    )
    .unwrap();
    std::fs::write(
        rules.join("blocked.yml"),
        r#"title: Firewall blocked
id: 0f6f1b1e-5b7e-4d43-9a55-2f1f4d6a0c03
status: experimental
logsource: {category: firewall}
detection:
  selection:
    action: blocked
  condition: selection
level: low
"#,
    )
    .unwrap();
    rules
}

/// Writes `vagt.yaml` in `dir`: `rules`, the passthrough profile, `inputs`
/// (YAML list items), alerts to `alerts.jsonl` and dead letters to
/// `dead.jsonl`. Returns the config, alerts and dead-letter paths.
fn live_config(dir: &Path, rules: &Path, inputs: &str) -> (PathBuf, PathBuf, PathBuf) {
    let out = dir.join("alerts.jsonl");
    let (config, dead) = live_config_to(dir, rules, inputs, &out, "");
    (config, out, dead)
}

/// As [`live_config`], with alerts to `output` and `extra` top-level
/// settings (YAML lines). Returns the config and dead-letter paths.
fn live_config_to(
    dir: &Path,
    rules: &Path,
    inputs: &str,
    output: &Path,
    extra: &str,
) -> (PathBuf, PathBuf) {
    let dead = dir.join("dead.jsonl");
    let config = dir.join("vagt.yaml");
    std::fs::write(
        &config,
        format!(
            "rules: [\"{}\"]\nprofile: passthrough\ninputs:\n{inputs}output: \"{}\"\ndead_letters: \"{}\"\nprogress: never\n{extra}",
            rules.display(),
            output.display(),
            dead.display()
        ),
    )
    .unwrap();
    (config, dead)
}

/// A FIFO `alerts.fifo` in `dir`, for alerts that nobody reads yet.
fn alerts_fifo(dir: &Path) -> PathBuf {
    let fifo = dir.join("alerts.fifo");
    make_fifo(&fifo);
    fifo
}

/// Alerts of `file` whose event's `field` contains `marker`.
fn alerts_with(file: &Path, field: &str, marker: &str) -> Vec<Value> {
    json_lines(file)
        .into_iter()
        .filter(|a| {
            a["event"][field]
                .as_str()
                .is_some_and(|m| m.contains(marker))
        })
        .collect()
}

fn send_datagram(to: SocketAddr, message: &str) {
    let sender = UdpSocket::bind("127.0.0.1:0").unwrap();
    sender.send_to(message.as_bytes(), to).unwrap();
}

/// A client's certificate and key, for mutual TLS.
type ClientCert = (
    rustls::pki_types::CertificateDer<'static>,
    rustls::pki_types::PrivateKeyDer<'static>,
);

/// A TLS client that trusts the server certificate `server_pem` and, if
/// given, shows a certificate of its own.
fn tls_client_config(server_pem: &str, client: Option<ClientCert>) -> Arc<rustls::ClientConfig> {
    use rustls::pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    for cert in rustls::pki_types::CertificateDer::pem_slice_iter(server_pem.as_bytes()) {
        roots.add(cert.unwrap()).unwrap();
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots);
    Arc::new(match client {
        Some((cert, key)) => builder.with_client_auth_cert(vec![cert], key).unwrap(),
        None => builder.with_no_client_auth(),
    })
}

/// A server certificate for `localhost` in `dir` (`cert.pem`, `key.pem`);
/// returns the certificate's PEM.
fn server_certificate(dir: &Path) -> String {
    let certified = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).unwrap();
    let cert_pem = certified.cert.pem();
    std::fs::write(dir.join("cert.pem"), &cert_pem).unwrap();
    std::fs::write(dir.join("key.pem"), certified.signing_key.serialize_pem()).unwrap();
    cert_pem
}

/// A CA for client certificates named `name`, and its certificate's PEM.
fn client_ca(name: &str) -> ((rcgen::CertificateParams, rcgen::KeyPair), String) {
    let key = rcgen::KeyPair::generate().unwrap();
    let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, name);
    params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    params.key_usages = vec![
        rcgen::KeyUsagePurpose::KeyCertSign,
        rcgen::KeyUsagePurpose::CrlSign,
        rcgen::KeyUsagePurpose::DigitalSignature,
    ];
    let pem = params.self_signed(&key).unwrap().pem();
    ((params, key), pem)
}

/// A client certificate for `names` with serial number `serial`, signed by
/// the CA `ca`, and its key.
fn client_certificate(
    ca: &(rcgen::CertificateParams, rcgen::KeyPair),
    names: &[&str],
    serial: u64,
) -> ClientCert {
    use rustls::pki_types::pem::PemObject;
    let key = rcgen::KeyPair::generate().unwrap();
    let mut params =
        rcgen::CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>())
            .unwrap();
    params.serial_number = Some(rcgen::SerialNumber::from(serial));
    params.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ClientAuth];
    let issuer = rcgen::Issuer::new(ca.0.clone(), &ca.1);
    let cert = params.signed_by(&key, &issuer).unwrap();
    (
        cert.der().clone(),
        rustls::pki_types::PrivateKeyDer::from_pem_slice(key.serialize_pem().as_bytes()).unwrap(),
    )
}

#[test]
fn syslog_over_udp_tcp_and_tls_alerts_with_each_listeners_actor() {
    let dir = tempfile::tempdir().unwrap();
    let rules = write_rules(dir.path());
    let cert_pem = server_certificate(dir.path());
    let (config, out, dead) = live_config(
        dir.path(),
        &rules,
        r#"  - syslog: {listen: "127.0.0.1:0", protocol: udp}
    format: syslog
    actor: org-udp
  - syslog: {listen: "127.0.0.1:0", protocol: tcp}
    format: syslog
    actor: org-tcp
  - syslog: {listen: "127.0.0.1:0", protocol: tls, tls: {cert: cert.pem, key: key.pem}}
    format: syslog
    actor: org-tls
"#,
    );
    let mut vagt = Vagt::with_config(&config);
    let udp = vagt.listening("syslog+udp://127.0.0.1:0");
    let tcp = vagt.listening("syslog+tcp://127.0.0.1:0");
    let tls = vagt.listening("syslog+tls://127.0.0.1:0");
    vagt.wait_for("vagt: ready", WAIT);

    send_datagram(
        udp,
        "<38>Nov 23 09:10:29 pc1 sshd[41]: Failed password for root via-udp",
    );

    let mut stream = TcpStream::connect(tcp).unwrap();
    let octets = "<38>1 2026-11-23T09:10:29Z pc2 sshd 42 - - Failed password for ann via-octets";
    let framed = format!(
        "{} {octets}<38>Nov 23 09:10:30 pc2 sshd[42]: Failed password for bo via-lines\n\
         this line has no priority\n",
        octets.len()
    );
    stream.write_all(framed.as_bytes()).unwrap();
    stream.flush().unwrap();

    let connection = rustls::ClientConnection::new(
        tls_client_config(&cert_pem, None),
        "localhost".try_into().unwrap(),
    )
    .unwrap();
    let mut tls_stream = rustls::StreamOwned::new(connection, TcpStream::connect(tls).unwrap());
    tls_stream
        .write_all(b"<38>Nov 23 09:10:31 pc3 sshd[43]: Failed password for cy via-tls\n")
        .unwrap();
    tls_stream.flush().unwrap();

    for (marker, actor, transport) in [
        ("via-udp", "org-udp", "syslog+udp"),
        ("via-octets", "org-tcp", "syslog+tcp"),
        ("via-lines", "org-tcp", "syslog+tcp"),
        ("via-tls", "org-tls", "syslog+tls"),
    ] {
        eventually(&format!("the {marker} alert"), WAIT, || {
            !alerts_with(&out, "message", marker).is_empty()
        });
        let alerts = alerts_with(&out, "message", marker);
        assert_eq!(alerts.len(), 1, "{marker}: {alerts:?}");
        let alert = &alerts[0];
        assert_eq!(alert["actor"], actor, "{marker}");
        assert_eq!(alert["rule"]["title"], "SSH password failure");
        assert_eq!(alert["event"]["app_name"], "sshd");
        assert!(
            alert["source"]["input"]
                .as_str()
                .unwrap()
                .starts_with(transport),
            "{marker}: {alert}"
        );
    }
    eventually("the dead letter of the line without priority", WAIT, || {
        !json_lines(&dead).is_empty()
    });
    let letters = json_lines(&dead);
    assert_eq!(letters.len(), 1, "{letters:?}");
    assert_eq!(
        letters[0]["reason"],
        "syslog: the message starts with neither <PRI> nor a time"
    );
    assert!(letters[0]["source"]
        .as_str()
        .unwrap()
        .starts_with("syslog+tcp://"));
    assert_eq!(letters[0]["excerpt"], "this line has no priority");
    drop(tls_stream);
    let (status, stderr) = vagt.terminate();
    assert!(status.success(), "{stderr}");
    assert!(stderr.contains("4 alerts, 1 dead letters"), "{stderr}");
}

/// Sends a raw HTTP/1.1 request; returns the status code and body.
pub(crate) fn post(addr: SocketAddr, token: Option<&str>, body: &str) -> (u16, String) {
    request(addr, "POST /ingest", token, body)
}

/// Sends `request` (method and path) with `token` and `body`; returns the
/// status code and body.
pub(crate) fn request(
    addr: SocketAddr,
    request: &str,
    token: Option<&str>,
    body: &str,
) -> (u16, String) {
    send_over(connect(addr), addr, request, token, "", body.as_bytes())
}

/// A connection that fails the test rather than hang it.
fn connect(addr: SocketAddr) -> TcpStream {
    let stream = TcpStream::connect(addr).unwrap();
    stream.set_read_timeout(Some(WAIT)).unwrap();
    stream.set_write_timeout(Some(WAIT)).unwrap();
    stream
}

/// As [`post`], over `stream` (plain or TLS), with `headers` (lines ending
/// in CRLF) added.
fn post_over(
    stream: impl Read + Write,
    addr: SocketAddr,
    token: Option<&str>,
    headers: &str,
    body: &[u8],
) -> (u16, String) {
    send_over(stream, addr, "POST /ingest", token, headers, body)
}

/// As [`request`], over `stream`, with `headers` added.
fn send_over(
    mut stream: impl Read + Write,
    addr: SocketAddr,
    request: &str,
    token: Option<&str>,
    headers: &str,
    body: &[u8],
) -> (u16, String) {
    let auth = token
        .map(|t| format!("Authorization: Bearer {t}\r\n"))
        .unwrap_or_default();
    write!(
        stream,
        "{request} HTTP/1.1\r\nHost: {addr}\r\n{auth}{headers}Content-Type: application/x-ndjson\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    )
    .unwrap();
    stream.write_all(body).unwrap();
    stream.flush().unwrap();
    let mut response = String::new();
    // A TLS peer may close without close_notify after `Connection: close`.
    let _ = stream.read_to_string(&mut response);
    let status = response[9..12].parse().unwrap();
    let body = response.split("\r\n\r\n").nth(1).unwrap_or("").to_string();
    (status, body)
}

pub(crate) fn sha256_hex(token: &str) -> String {
    Sha256::digest(token.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

#[test]
fn http_ingest_stamps_the_tokens_actor_and_refuses_bad_tokens() {
    let dir = tempfile::tempdir().unwrap();
    let rules = write_rules(dir.path());
    let cert_pem = server_certificate(dir.path());
    let (config, out, dead) = live_config(
        dir.path(),
        &rules,
        &format!(
            r#"  - http:
      listen: "127.0.0.1:0"
      max_body_bytes: 4096
      tokens:
        - {{actor: rnv-hospital-nord, token_sha256: "{nord}"}}
        - {{actor: kk-aarhus, token_env: VAGT_TEST_AARHUS_TOKEN}}
  - http:
      listen: "127.0.0.1:0"
      tls: {{cert: cert.pem, key: key.pem}}
      tokens: [{{actor: rnv-hospital-vest, token_sha256: "{vest}"}}]
"#,
            nord = sha256_hex("nord-secret"),
            vest = sha256_hex("vest-secret"),
        ),
    );
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_vagt"));
    child.env("VAGT_TEST_AARHUS_TOKEN", "aarhus-secret");
    let mut vagt = Vagt::start_command(child, &["--config", config.to_str().unwrap()]);
    let addr = vagt.listening("http://127.0.0.1:0");
    let https = vagt.listening("https://127.0.0.1:0");
    vagt.wait_for("vagt: ready", WAIT);
    let tls = |token: &str, body: &str| {
        let connection = rustls::ClientConnection::new(
            tls_client_config(&cert_pem, None),
            "localhost".try_into().unwrap(),
        )
        .unwrap();
        let stream = rustls::StreamOwned::new(connection, connect(https));
        post_over(stream, https, Some(token), "", body.as_bytes())
    };
    assert_eq!(
        tls("vest-secret", "{\"msg\": \"beacon from vest\"}\n").0,
        202
    );
    // Tokens belong to their listener.
    assert_eq!(
        tls("nord-secret", "{\"msg\": \"beacon from nord-3\"}").0,
        401
    );
    // Load balancers ask without a token.
    let mut stream = connect(addr);
    write!(
        stream,
        "GET /health HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut answer = String::new();
    stream.read_to_string(&mut answer).unwrap();
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(answer.ends_with("{\"status\":\"ok\"}"), "{answer}");

    // Nord's events, one of them claiming to be Aarhus's: the token decides.
    let (status, body) = post(
        addr,
        Some("nord-secret"),
        "{\"msg\": \"beacon from nord-1\", \"actor\": \"kk-aarhus\"}\n\
         {\"msg\": \"beacon from nord-2\"}\n{broken\n",
    );
    assert_eq!(status, 202, "{body}");
    let (status, _) = post(
        addr,
        Some("aarhus-secret"),
        "{\"msg\": \"beacon from aarhus\"}",
    );
    assert_eq!(status, 202);
    // Refused: no token, an unknown one, another scheme, too large a body.
    let (status, body) = post(addr, None, "{\"msg\": \"beacon from nobody\"}");
    assert_eq!(
        (status, body.contains("missing bearer token")),
        (401, true),
        "{body}"
    );
    let (status, body) = post(addr, Some("guess"), "{\"msg\": \"beacon from a guess\"}");
    assert_eq!(
        (status, body.contains("unknown token")),
        (401, true),
        "{body}"
    );
    let big = format!("{{\"msg\": \"beacon {}\"}}", "x".repeat(5000));
    assert_eq!(post(addr, Some("nord-secret"), &big).0, 413);

    eventually("four alerts", WAIT, || json_lines(&out).len() >= 4);
    std::thread::sleep(Duration::from_millis(300));
    let actor_of = |marker: &str| -> Vec<Value> {
        alerts_with(&out, "msg", marker)
            .iter()
            .map(|a| a["actor"].clone())
            .collect()
    };
    assert_eq!(actor_of("nord-1"), ["rnv-hospital-nord"]);
    assert_eq!(actor_of("nord-2"), ["rnv-hospital-nord"]);
    assert_eq!(actor_of("aarhus"), ["kk-aarhus"]);
    assert_eq!(actor_of("vest"), ["rnv-hospital-vest"]);
    assert!(actor_of("nobody").is_empty() && actor_of("guess").is_empty());
    assert!(actor_of("nord-3").is_empty());
    assert_eq!(json_lines(&out).len(), 4);
    let letters = json_lines(&dead);
    assert_eq!(letters.len(), 1, "{letters:?}");
    assert!(
        letters[0]["source"]
            .as_str()
            .unwrap()
            .contains("/rnv-hospital-nord#1"),
        "{letters:?}"
    );
    assert_eq!(letters[0]["line"], 3);
    let (status, stderr) = vagt.terminate();
    assert!(status.success(), "{stderr}");
}

/// Appends lines to a file.
fn append(path: &Path, lines: &[&str]) {
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .unwrap();
    for line in lines {
        writeln!(file, "{line}").unwrap();
    }
}

fn seqs(out: &[&Path]) -> Vec<i64> {
    let mut seqs: Vec<i64> = out
        .iter()
        .flat_map(|f| json_lines(f))
        .map(|a| a["event"]["seq"].as_i64().unwrap())
        .collect();
    seqs.sort_unstable();
    seqs
}

#[test]
fn a_followed_file_is_read_across_rotation_and_resumed_after_restart() {
    let dir = tempfile::tempdir().unwrap();
    let rules = write_rules(dir.path());
    let log = dir.path().join("fw.log");
    let config = |name: &str| {
        let path = dir.path().join(format!("{name}.yaml"));
        std::fs::write(
            &path,
            format!(
                r#"rules: ["{rules}"]
profile: passthrough
inputs:
  - tail: "{log}"
    format: logfmt
    actor: rnv-hospital-syd
output: "{name}.jsonl"
dead_letters: "{name}-dead.jsonl"
progress: never
windows: {{state_file: state.json, snapshot_interval: 1s}}
"#,
                rules = rules.display(),
                log = log.display(),
            ),
        )
        .unwrap();
        path
    };
    let line = |seq: i64| {
        format!("ts=2026-11-23T09:10:{seq:02}Z action=blocked src=10.0.0.{seq} seq={seq}")
    };
    let first_out = dir.path().join("first.jsonl");
    let mut vagt = Vagt::with_config(&config("first"));
    vagt.wait_for("vagt: ready", WAIT);
    // The file does not exist yet: it is waited for.
    std::thread::sleep(Duration::from_millis(300));
    assert!(!log.exists());
    // A whole line and the start of the next, as a buffered writer flushes:
    // the whole line alerts while the next is unfinished.
    std::fs::write(&log, format!("{}\n{}", line(1), &line(2)[..15])).unwrap();
    eventually("alert 1", WAIT, || seqs(&[&first_out]) == [1]);
    let mut file = std::fs::OpenOptions::new().append(true).open(&log).unwrap();
    writeln!(file, "{}", &line(2)[15..]).unwrap();
    drop(file);
    append(&log, &["action=blocked src=\"unclosed", &line(3)]);
    eventually("alerts 1-3", WAIT, || seqs(&[&first_out]) == [1, 2, 3]);

    // Rotation by rename: the writer finishes the old file, then a new one.
    let rotated = dir.path().join("fw.log.1");
    std::fs::rename(&log, &rotated).unwrap();
    append(&rotated, &[&line(4)]);
    std::thread::sleep(Duration::from_millis(300));
    append(&log, &[&line(5), &line(6)]);
    eventually("alerts 4-6", WAIT, || {
        seqs(&[&first_out]) == [1, 2, 3, 4, 5, 6]
    });

    // Rotation by truncation (copytruncate).
    std::fs::write(&log, "").unwrap();
    std::thread::sleep(Duration::from_millis(300));
    append(&log, &[&line(7)]);
    eventually("alert 7", WAIT, || seqs(&[&first_out]).len() == 7);
    // A line still being written when vagt stops is left for the next run.
    let mut file = std::fs::OpenOptions::new().append(true).open(&log).unwrap();
    write!(file, "{}", &line(8)[..20]).unwrap();
    file.flush().unwrap();
    std::thread::sleep(Duration::from_millis(300));
    let (status, stderr) = vagt.terminate();
    assert!(status.success(), "{stderr}");
    assert!(stderr.contains("input positions saved"), "{stderr}");
    assert_eq!(seqs(&[&first_out]), (1..=7).collect::<Vec<_>>());

    // Written while vagt was down; a restart reads only these.
    writeln!(file, "{}", &line(8)[20..]).unwrap();
    drop(file);
    append(&log, &[&line(9)]);
    let second_out = dir.path().join("second.jsonl");
    let mut vagt = Vagt::with_config(&config("second"));
    vagt.wait_for("vagt: ready", WAIT);
    eventually("alerts 8-9", WAIT, || seqs(&[&second_out]) == [8, 9]);
    let (status, stderr) = vagt.terminate();
    assert!(status.success(), "{stderr}");

    // Rotated while vagt was down, into a new file already longer than
    // the saved position: the new file is read from its start.
    std::fs::rename(&log, dir.path().join("fw.log.2")).unwrap();
    append(&log, &[&line(10), &line(11), &line(12), &line(13)]);
    let third_out = dir.path().join("third.jsonl");
    let mut vagt = Vagt::with_config(&config("third"));
    vagt.wait_for("vagt: ready", WAIT);
    eventually("alerts 10-13", WAIT, || {
        seqs(&[&third_out]) == [10, 11, 12, 13]
    });
    let (status, stderr) = vagt.terminate();
    assert!(status.success(), "{stderr}");
    assert_eq!(
        seqs(&[&first_out, &second_out, &third_out]),
        (1..=13).collect::<Vec<_>>()
    );
    for alert in json_lines(&first_out) {
        assert_eq!(alert["actor"], "rnv-hospital-syd");
    }
    let letters = json_lines(&dir.path().join("first-dead.jsonl"));
    assert_eq!(letters.len(), 1, "{letters:?}");
    assert_eq!(letters[0]["line"], 3);
    assert!(
        letters[0]["reason"]
            .as_str()
            .unwrap()
            .contains("not closed"),
        "{letters:?}"
    );
}

#[test]
fn udp_datagrams_that_find_the_pipeline_full_are_counted_not_lost_silently() {
    let dir = tempfile::tempdir().unwrap();
    let rules = write_rules(dir.path());
    // Alerts go to a FIFO nobody reads yet: the pipeline backs up to the
    // UDP listener, which cannot wait.
    let fifo = alerts_fifo(dir.path());
    let metrics = crate::metrics::free_port();
    let (config, _) = live_config_to(
        dir.path(),
        &rules,
        "  - syslog: {listen: \"127.0.0.1:0\", protocol: udp}\n    format: syslog\n",
        &fifo,
        &format!(
            "decoder: {{batch_size: 1}}\nchannel_capacity: 1\nmetrics_listen: \"127.0.0.1:{metrics}\"\n"
        ),
    );
    let mut vagt = Vagt::with_config(&config);
    let udp = vagt.listening("syslog+udp://127.0.0.1:0");
    vagt.wait_for("vagt: ready", WAIT);
    let sender = UdpSocket::bind("127.0.0.1:0").unwrap();
    let sent = 10_000;
    for n in 0..sent {
        let message = format!("<38>Nov 23 09:10:29 pc1 sshd[1]: Failed password n={n}");
        sender.send_to(message.as_bytes(), udp).unwrap();
        if n % 500 == 0 {
            std::thread::sleep(Duration::from_millis(5));
        }
    }
    let name =
        "vagt_source_dropped_total{source=\"syslog+udp://127.0.0.1:0\",reason=\"queue_full\"}";
    let mut dropped = 0.0;
    eventually("dropped datagrams counted", WAIT, || {
        dropped = crate::metrics::value(&crate::metrics::scrape(metrics), name).unwrap_or(0.0);
        dropped > 0.0
    });
    // Now read the alerts: the pipeline drains, until every datagram is
    // either alerted on or counted as dropped (by the queue or, as the
    // kernel says, by the socket buffer).
    let alerts = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let counted = alerts.clone();
    let reader = std::thread::spawn(move || {
        let file = std::fs::File::open(fifo).unwrap();
        for _ in std::io::BufRead::lines(std::io::BufReader::new(file)) {
            counted.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        }
    });
    let all_dropped = || -> f64 {
        let body = crate::metrics::scrape(metrics);
        ["queue_full", "socket_buffer"]
            .iter()
            .filter_map(|reason| {
                crate::metrics::value(
                    &body,
                    &format!(
                        "vagt_source_dropped_total{{source=\"syslog+udp://127.0.0.1:0\",reason=\"{reason}\"}}"
                    ),
                )
            })
            .sum()
    };
    eventually("every datagram alerted on or counted", WAIT, || {
        alerts.load(std::sync::atomic::Ordering::Relaxed) as f64 + all_dropped() == sent as f64
    });
    let (status, stderr) = vagt.terminate();
    assert!(status.success(), "{stderr}");
    reader.join().unwrap();
    let alerts = alerts.load(std::sync::atomic::Ordering::Relaxed);
    let summary_dropped: u64 = stderr
        .lines()
        .find_map(|l| {
            l.strip_prefix("vagt: ")?
                .strip_suffix(" records dropped: the pipeline was full (UDP)")
        })
        .unwrap_or_else(|| panic!("no dropped line:\n{stderr}"))
        .parse()
        .unwrap();
    assert!(
        summary_dropped as f64 >= dropped,
        "{summary_dropped} vs {dropped}"
    );
    assert!(alerts > 0);
    // Every datagram was either alerted on or counted as dropped (by the
    // queue or, read from the kernel, by the socket buffer).
    assert_eq!(
        alerts + summary_dropped,
        sent,
        "{alerts} + {summary_dropped}"
    );
}

#[test]
fn a_stopping_run_processes_what_its_listeners_took_in() {
    let dir = tempfile::tempdir().unwrap();
    let rules = write_rules(dir.path());
    // Alerts go to a FIFO not read yet: everything accepted waits in the
    // pipeline when the stop signal comes.
    let fifo = alerts_fifo(dir.path());
    let (config, _) = live_config_to(
        dir.path(),
        &rules,
        &format!(
            r#"  - http:
      listen: "127.0.0.1:0"
      max_body_bytes: 65536
      tokens: [{{actor: rnv-hospital-nord, token_sha256: "{nord}"}}]
"#,
            nord = sha256_hex("nord-secret"),
        ),
        &fifo,
        "decoder: {batch_size: 1}\nchannel_capacity: 1\n",
    );
    let mut vagt = Vagt::with_config(&config);
    let addr = vagt.listening("http://127.0.0.1:0");
    vagt.wait_for("vagt: ready", WAIT);
    let mut sent = 0;
    for request in 0..10 {
        let body: String = (0..5)
            .map(|n| format!("{{\"msg\": \"beacon {request}-{n}\"}}\n"))
            .collect();
        let (status, _) = post(addr, Some("nord-secret"), &body);
        assert_eq!(status, 202);
        sent += 5;
    }
    let reader = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(500));
        std::fs::read_to_string(fifo).unwrap()
    });
    let (status, stderr) = vagt.terminate();
    assert!(status.success(), "{stderr}");
    let alerts = reader.join().unwrap();
    assert_eq!(alerts.lines().count(), sent, "{stderr}");
    assert!(stderr.contains("stopped by signal"), "{stderr}");
}

#[test]
fn a_failing_alert_or_dead_letter_output_ends_a_live_run_with_its_error() {
    // Writes to /dev/full fail: no space left on the device.
    for (failing, datagram) in [
        (
            "output",
            "<38>Nov 23 09:10:29 pc1 sshd[41]: Failed password for root",
        ),
        ("dead_letters", "not syslog at all"),
    ] {
        let dir = tempfile::tempdir().unwrap();
        let rules = write_rules(dir.path());
        let config = dir.path().join("vagt.yaml");
        std::fs::write(
            &config,
            format!(
                "rules: [\"{}\"]\nprofile: passthrough\ninputs:\n  - syslog: {{listen: \"127.0.0.1:0\", protocol: udp}}\n    format: syslog\noutput: alerts.jsonl\ndead_letters: dead.jsonl\nprogress: never\n{failing}: /dev/full\n",
                rules.display()
            )
            .replace(&format!("{failing}: alerts.jsonl\n"), "")
            .replace(&format!("{failing}: dead.jsonl\n"), ""),
        )
        .unwrap();
        let mut vagt = Vagt::with_config(&config);
        let udp = vagt.listening("syslog+udp://127.0.0.1:0");
        vagt.wait_for("vagt: ready", WAIT);
        send_datagram(udp, datagram);
        // The run ends and says why, instead of waiting for ever on its
        // listener (and, for dead letters, holding back every ack).
        let stderr = vagt.wait_for_exit(WAIT);
        assert!(
            stderr.contains("/dev/full") && stderr.contains("No space left"),
            "{failing}: {stderr}"
        );
    }
}

#[test]
fn http_ingest_takes_compressed_bodies_and_bounds_what_they_expand_to() {
    use std::io::Write as _;
    let dir = tempfile::tempdir().unwrap();
    let rules = write_rules(dir.path());
    let metrics = crate::metrics::free_port();
    let out = dir.path().join("alerts.jsonl");
    let (config, _) = live_config_to(
        dir.path(),
        &rules,
        &format!(
            "  - http:\n      listen: \"127.0.0.1:0\"\n      max_body_bytes: 4096\n      tokens: [{{actor: rnv-hospital-nord, token_sha256: \"{}\"}}]\n",
            sha256_hex("nord-secret")
        ),
        &out,
        &format!("metrics_listen: \"127.0.0.1:{metrics}\"\n"),
    );
    let mut vagt = Vagt::with_config(&config);
    let addr = vagt.listening("http://127.0.0.1:0");
    vagt.wait_for("vagt: ready", WAIT);
    let gzip = |data: &[u8]| {
        let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        encoder.write_all(data).unwrap();
        encoder.finish().unwrap()
    };
    let deflate = |data: &[u8]| {
        let mut encoder =
            flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::default());
        encoder.write_all(data).unwrap();
        encoder.finish().unwrap()
    };
    let send = |encoding: &str, body: &[u8]| {
        post_over(
            connect(addr),
            addr,
            Some("nord-secret"),
            &format!("Content-Encoding: {encoding}\r\n"),
            body,
        )
    };
    let gzipped = b"{\"msg\": \"beacon gzipped\"}\n";
    let deflated = b"{\"msg\": \"beacon deflated\"}\n";
    let (status, answer) = send("gzip", &gzip(gzipped));
    assert_eq!(status, 202, "{answer}");
    let (status, answer) = send("deflate", &deflate(deflated));
    assert_eq!(status, 202, "{answer}");
    // 8 KiB of events compress to far less than max_body_bytes, but
    // expand beyond it.
    let big: String = (0..300)
        .map(|n| format!("{{\"msg\": \"beacon bomb {n}\"}}\n"))
        .collect();
    let bomb = gzip(big.as_bytes());
    assert!(bomb.len() < 4096 && big.len() > 4096);
    let (status, answer) = send("gzip", &bomb);
    assert_eq!(status, 413, "{answer}");
    assert!(
        answer.contains("decompressed body exceeds max_body_bytes (4096)"),
        "{answer}"
    );
    let (status, answer) = send("gzip", b"{\"msg\": \"beacon not gzip\"}\n");
    assert_eq!(status, 400, "{answer}");
    assert!(answer.contains("body is not valid gzip"), "{answer}");
    let (status, answer) = send("br", b"whatever");
    assert_eq!(status, 415, "{answer}");
    assert!(
        answer.contains("Content-Encoding br is not supported"),
        "{answer}"
    );
    eventually("the two compressed events' alerts", WAIT, || {
        !alerts_with(&out, "msg", "gzipped").is_empty()
            && !alerts_with(&out, "msg", "deflated").is_empty()
    });
    // The bytes taken in, decompressed; refused bodies are not.
    let bytes_in = crate::metrics::value(
        &crate::metrics::scrape(metrics),
        "vagt_bytes_in_total{source=\"http://127.0.0.1:0\"}",
    );
    assert_eq!(bytes_in, Some((gzipped.len() + deflated.len()) as f64));
    let (status, stderr) = vagt.terminate();
    assert!(status.success(), "{stderr}");
    for alert in json_lines(&out) {
        assert_eq!(alert["actor"], "rnv-hospital-nord");
        let message = alert["event"]["msg"].as_str().unwrap();
        assert!(
            !message.contains("bomb") && !message.contains("not gzip"),
            "{message}"
        );
    }
}

#[test]
fn a_listener_refuses_senders_it_does_not_allow() {
    let dir = tempfile::tempdir().unwrap();
    let rules = write_rules(dir.path());
    let out = dir.path().join("alerts.jsonl");
    let config = dir.path().join("vagt.yaml");
    std::fs::write(
        &config,
        format!(
            r#"rules: ["{rules}"]
profile: passthrough
inputs:
  - syslog: {{listen: "127.0.0.1:0", protocol: tcp, allowed_peers: ["10.31.0.0/16"]}}
    format: syslog
    actor: rnv-hospital-nord
  - syslog: {{listen: "127.0.0.1:0", protocol: udp, allowed_peers: ["127.0.0.1"]}}
    format: syslog
    actor: rnv-hospital-syd
output: "{out}"
progress: never
"#,
            rules = rules.display(),
            out = out.display(),
        ),
    )
    .unwrap();
    let mut vagt = Vagt::with_config(&config);
    let tcp = vagt.listening("syslog+tcp://127.0.0.1:0");
    let udp = vagt.listening("syslog+udp://127.0.0.1:0");
    vagt.wait_for("vagt: ready", WAIT);
    // 127.0.0.1 is not Hospital Nord's network: its connection is closed.
    let mut stream = connect(tcp);
    let _ = stream.write_all(b"<38>Nov 23 09:10:29 pc1 sshd[1]: Failed password refused-tcp\n");
    let mut rest = Vec::new();
    assert_eq!(
        stream
            .read_to_end(&mut rest)
            .map(|_| rest.len())
            .unwrap_or(0),
        0
    );
    send_datagram(
        udp,
        "<38>Nov 23 09:10:29 pc2 sshd[2]: Failed password allowed-udp",
    );
    eventually("the allowed sender's alert", WAIT, || {
        !alerts_with(&out, "message", "allowed-udp").is_empty()
    });
    std::thread::sleep(Duration::from_millis(300));
    assert!(alerts_with(&out, "message", "refused-tcp").is_empty());
    let (status, stderr) = vagt.terminate();
    assert!(status.success(), "{stderr}");
    assert!(stderr.contains(" 1 alerts,"), "{stderr}");
}

#[test]
fn a_client_certificate_says_which_organisation_a_tls_connection_is() {
    let dir = tempfile::tempdir().unwrap();
    let rules = write_rules(dir.path());
    let server_pem = server_certificate(dir.path());
    // Two CAs sign client certificates; only the first publishes a CRL.
    let (ca, ca_pem) = client_ca("SDS Clients CA");
    let (second_ca, second_ca_pem) = client_ca("SDS Second CA");
    std::fs::write(
        dir.path().join("clients-ca.pem"),
        format!("{ca_pem}{second_ca_pem}"),
    )
    .unwrap();
    // Aarhus's old certificate, serial 666, is revoked.
    let crl = rcgen::CertificateRevocationListParams {
        this_update: rcgen::date_time_ymd(2026, 1, 1),
        next_update: rcgen::date_time_ymd(2099, 1, 1),
        crl_number: rcgen::SerialNumber::from(1u64),
        issuing_distribution_point: None,
        revoked_certs: vec![rcgen::RevokedCertParams {
            serial_number: rcgen::SerialNumber::from(666u64),
            revocation_time: rcgen::date_time_ymd(2026, 6, 1),
            reason_code: Some(rcgen::RevocationReason::KeyCompromise),
            invalidity_date: None,
        }],
        key_identifier_method: rcgen::KeyIdMethod::Sha256,
    }
    .signed_by(&rcgen::Issuer::new(ca.0.clone(), &ca.1))
    .unwrap();
    std::fs::write(dir.path().join("clients-crl.pem"), crl.pem().unwrap()).unwrap();
    let (other_ca, _) = client_ca("Someone Else's CA");
    let metrics = crate::metrics::free_port();
    let out = dir.path().join("alerts.jsonl");
    let (config, dead) = live_config_to(
        dir.path(),
        &rules,
        r#"  - syslog:
      listen: "127.0.0.1:0"
      protocol: tls
      tls:
        cert: cert.pem
        key: key.pem
        client_ca: clients-ca.pem
        client_crls: [clients-crl.pem]
        client_actors:
          hospital-nord.sds.example: rnv-hospital-nord
          kk-aarhus.sds.example: kk-aarhus
    format: syslog
"#,
        &out,
        &format!("metrics_listen: \"127.0.0.1:{metrics}\"\n"),
    );
    let mut vagt = Vagt::with_config(&config);
    let tls = vagt.listening("syslog+tls://127.0.0.1:0");
    vagt.wait_for("vagt: ready", WAIT);
    let send = |client: Option<ClientCert>, marker: &str| {
        let config = tls_client_config(&server_pem, client);
        let connection =
            rustls::ClientConnection::new(config, "localhost".try_into().unwrap()).unwrap();
        let mut stream = rustls::StreamOwned::new(connection, connect(tls));
        let message = format!("<38>Nov 23 09:10:29 pc1 sshd[1]: Failed password {marker}\n");
        let _ = stream.write_all(message.as_bytes());
        let _ = stream.flush();
        // Wait for the server's answer (or refusal) before closing.
        let _ = stream.sock.shutdown(std::net::Shutdown::Write);
        let _ = stream.read_to_end(&mut Vec::new());
    };
    let nord = client_certificate(&ca, &["hospital-nord.sds.example"], 1);
    send(Some(nord), "via-nord-cert");
    send(
        Some(client_certificate(&ca, &["kk-aarhus.sds.example"], 2)),
        "via-aarhus-cert",
    );
    let refused = [
        (
            "via-unknown-cert",
            Some(client_certificate(&ca, &["unknown.sds.example"], 3)),
        ),
        (
            "via-both-names",
            Some(client_certificate(
                &ca,
                &["hospital-nord.sds.example", "kk-aarhus.sds.example"],
                4,
            )),
        ),
        (
            "via-revoked-cert",
            Some(client_certificate(&ca, &["kk-aarhus.sds.example"], 666)),
        ),
        (
            "via-other-ca",
            Some(client_certificate(
                &other_ca,
                &["hospital-nord.sds.example"],
                5,
            )),
        ),
        (
            "via-second-ca",
            Some(client_certificate(
                &second_ca,
                &["kk-aarhus.sds.example"],
                6,
            )),
        ),
        ("via-no-cert", None),
    ];
    let markers: Vec<&str> = refused.iter().map(|(marker, _)| *marker).collect();
    for (marker, client) in refused {
        send(client, marker);
    }
    eventually("two alerts and six refusals", WAIT, || {
        !alerts_with(&out, "message", "via-aarhus-cert").is_empty() && json_lines(&dead).len() >= 6
    });
    assert_eq!(
        alerts_with(&out, "message", "via-nord-cert")[0]["actor"],
        "rnv-hospital-nord"
    );
    assert_eq!(
        alerts_with(&out, "message", "via-aarhus-cert")[0]["actor"],
        "kk-aarhus"
    );
    for marker in markers {
        assert!(alerts_with(&out, "message", marker).is_empty(), "{marker}");
    }
    let reasons: Vec<String> = json_lines(&dead)
        .iter()
        .map(|d| d["reason"].as_str().unwrap().to_string())
        .collect();
    let expected = [
        "client certificate for unknown.sds.example names no organisation in client_actors",
        "names several organisations in client_actors (kk-aarhus, rnv-hospital-nord)",
        "TLS handshake failed: invalid peer certificate: Revoked",
        "TLS handshake failed: invalid peer certificate: UnknownIssuer",
        // Without a CRL of its CA, nobody can say it is not revoked.
        "TLS handshake failed: invalid peer certificate: UnknownRevocationStatus",
        "TLS handshake failed: peer sent no certificates",
    ];
    // Each connection is served by its own task: any order.
    assert_eq!(reasons.len(), expected.len(), "{reasons:?}");
    for expected in expected {
        assert!(
            reasons.iter().any(|r| r.contains(expected)),
            "{expected}: {reasons:?}"
        );
    }
    let refused = crate::metrics::value(
        &crate::metrics::scrape(metrics),
        "vagt_source_refused_total{source=\"syslog+tls://127.0.0.1:0\"}",
    );
    assert_eq!(refused, Some(expected.len() as f64));
    let (status, stderr) = vagt.terminate();
    assert!(status.success(), "{stderr}");
}

#[test]
fn a_second_stop_signal_exits_at_once_when_the_first_cannot_finish() {
    let dir = tempfile::tempdir().unwrap();
    let rules = write_rules(dir.path());
    // Alerts go to a FIFO nobody reads: the graceful stop cannot finish.
    let fifo = alerts_fifo(dir.path());
    let (config, _) = live_config_to(
        dir.path(),
        &rules,
        "  - syslog: {listen: \"127.0.0.1:0\", protocol: udp}\n    format: syslog\n",
        &fifo,
        "",
    );
    let mut vagt = Vagt::with_config(&config);
    let udp = vagt.listening("syslog+udp://127.0.0.1:0");
    vagt.wait_for("vagt: ready", WAIT);
    send_datagram(
        udp,
        "<38>Nov 23 09:10:29 pc1 sshd[1]: Failed password stuck-output\n",
    );
    vagt.signal("INT");
    vagt.wait_for("a second SIGTERM or Ctrl-C exits at once", WAIT);
    vagt.signal("TERM");
    let (status, stderr) = vagt.wait();
    assert_eq!(status.code(), Some(128 + 15), "{stderr}");
    assert!(
        stderr.contains("exiting at once on a second stop signal"),
        "{stderr}"
    );
}

#[test]
fn a_stop_signal_during_a_slow_start_stops_the_run_once_started() {
    use std::os::unix::fs::OpenOptionsExt;
    let dir = tempfile::tempdir().unwrap();
    // One rule file is a FIFO: loading the rules waits until it is written.
    let rules = write_rules(dir.path());
    let late = rules.join("late.yml");
    make_fifo(&late);
    let (config, out, _) = live_config(
        dir.path(),
        &rules,
        "  - syslog: {listen: \"127.0.0.1:0\", protocol: udp}\n    format: syslog\n",
    );
    let mut vagt = Vagt::with_config(&config);
    // Opening a FIFO for writing without blocking succeeds once a reader
    // has it open: vagt is then loading rules, with its handlers installed.
    let mut writer = None;
    eventually("vagt to read the rule FIFO", WAIT, || {
        writer = std::fs::OpenOptions::new()
            .write(true)
            .custom_flags(libc::O_NONBLOCK)
            .open(&late)
            .ok();
        writer.is_some()
    });
    vagt.signal("TERM");
    vagt.wait_for("vagt: stopping", WAIT);
    assert!(!vagt.stderr().contains("vagt: ready"), "{}", vagt.stderr());
    let mut writer = writer.unwrap();
    let rule = std::fs::read_to_string(rules.join("ssh.yml")).unwrap();
    writer
        .write_all(rule.replace("0c01", "0c99").as_bytes())
        .unwrap();
    drop(writer);
    let (status, stderr) = vagt.wait();
    assert!(status.success(), "{stderr}");
    assert!(stderr.contains("vagt: ready"), "{stderr}");
    assert!(stderr.contains("stopped by signal"), "{stderr}");
    assert!(json_lines(&out).is_empty());
}
