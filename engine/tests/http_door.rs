//! The HTTP door under attack: unauthenticated clients sending large
//! bodies cannot raise vagt's memory by more than a small bound, because
//! the credential is checked before any of the body is read; slow clients
//! are dropped after the header timeout; connections beyond the cap wait;
//! a stalled body gets 408; an organisation over its rate gets 429.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use crate::metrics::{free_port, scrape};
use crate::sources::{post, sha256_hex};
use crate::support::Vagt;

const WAIT: Duration = Duration::from_secs(30);

/// Resident memory of a process, in bytes.
fn resident(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let kb: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap();
    kb * 1024
}

/// Whether the server closes `stream` (reads end) within `within`.
fn closed_by_server(stream: &mut TcpStream, within: Duration) -> bool {
    stream.set_read_timeout(Some(within)).unwrap();
    let mut buf = [0u8; 1024];
    loop {
        match stream.read(&mut buf) {
            Ok(0) => return true,
            Ok(_) => continue,
            Err(e) => {
                return !matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                )
            }
        }
    }
}

/// Sends headers (and `body_start` of the body), then reads the status.
fn request(addr: SocketAddr, token: &str, length: usize, body_start: &[u8]) -> u16 {
    let mut stream = TcpStream::connect(addr).unwrap();
    stream.set_read_timeout(Some(WAIT)).unwrap();
    write!(
        stream,
        "POST /ingest HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {token}\r\nContent-Length: {length}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    stream.write_all(body_start).unwrap();
    let mut answer = String::new();
    let _ = stream.read_to_string(&mut answer);
    answer.get(9..12).and_then(|s| s.parse().ok()).unwrap_or(0)
}

#[test]
fn the_http_door_holds_against_unknown_slow_and_greedy_clients() {
    let dir = tempfile::tempdir().unwrap();
    let rules = dir.path().join("rules.yml");
    std::fs::write(
        &rules,
        "title: Beacon\nlogsource: {product: test}\ndetection: {sel: {msg|contains: beacon}, condition: sel}\n",
    )
    .unwrap();
    let port = free_port();
    let limited = SocketAddr::from(([127, 0, 0, 1], free_port()));
    let token = sha256_hex("nord-secret");
    let config = dir.path().join("vagt.yaml");
    // The door: 16 MiB bodies allowed (the default), 8 connections at
    // once, 1 s for headers. A second listener with small bodies, 1 s for
    // a body and a rate limit.
    std::fs::write(
        &config,
        format!(
            "rules: [rules.yml]\nprofile: passthrough\ninputs:\n  - http:\n      listen: \"127.0.0.1:0\"\n      header_timeout: 1s\n      max_connections: 8\n      tokens: [{{actor: rnv-hospital-nord, token_sha256: \"{token}\"}}]\n  - http:\n      listen: \"{limited}\"\n      max_body_bytes: 8192\n      body_timeout: 1s\n      rate_limit: {{bytes_per_second: 1000, burst_bytes: 8192}}\n      tokens: [{{actor: rnv-hospital-nord, token_sha256: \"{token}\"}}]\noutput: alerts.jsonl\ndead_letters: dead.jsonl\nprogress: never\nmetrics_listen: 127.0.0.1:{port}\n",
        ),
    )
    .unwrap();
    let mut vagt = Vagt::with_config(&config);
    let addr = vagt.listening("http://127.0.0.1:0");
    vagt.wait_for("vagt: ready", WAIT);
    let pid = vagt.pid();
    let (status, _) = post(addr, Some("nord-secret"), "{\"msg\": \"beacon 1\"}\n");
    assert_eq!(status, 202);

    // 40 unknown clients, each announcing and sending 16 MiB.
    let before = resident(pid);
    let peak = Arc::new(AtomicU64::new(before));
    let sampling = Arc::new(AtomicBool::new(true));
    let sampler = {
        let (peak, sampling) = (peak.clone(), sampling.clone());
        std::thread::spawn(move || {
            while sampling.load(Ordering::Relaxed) {
                peak.fetch_max(resident(pid), Ordering::Relaxed);
                std::thread::sleep(Duration::from_millis(10));
            }
        })
    };
    let attackers: Vec<_> = (0..40)
        .map(|_| {
            std::thread::spawn(move || {
                let mut stream = TcpStream::connect(addr).unwrap();
                stream.set_read_timeout(Some(WAIT)).unwrap();
                let length = 16 << 20;
                write!(
                    stream,
                    "POST /ingest HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer guessed\r\nContent-Length: {length}\r\n\r\n"
                )
                .unwrap();
                let chunk = vec![b'x'; 1 << 20];
                for _ in 0..16 {
                    if stream.write_all(&chunk).is_err() {
                        break;
                    }
                }
                let mut answer = String::new();
                let _ = stream.read_to_string(&mut answer);
                answer
            })
        })
        .collect();
    let answers: Vec<String> = attackers.into_iter().map(|t| t.join().unwrap()).collect();
    sampling.store(false, Ordering::Relaxed);
    sampler.join().unwrap();
    let grown = peak.load(Ordering::Relaxed).saturating_sub(before);
    eprintln!(
        "http door: 40 unauthenticated clients x 16 MiB: resident memory {} MB before, peak {} MB (+{} MB)",
        before >> 20,
        peak.load(Ordering::Relaxed) >> 20,
        grown >> 20
    );
    // Every answered client was refused (a client whose connection was
    // closed while it was still sending may see no answer at all).
    assert!(answers
        .iter()
        .all(|a| a.is_empty() || a.starts_with("HTTP/1.1 401")));
    assert!(answers.iter().any(|a| a.starts_with("HTTP/1.1 401")));
    assert!(grown < 64 << 20, "resident memory grew by {grown} bytes");

    // Slow clients: half-sent headers. At most 8 are served at once; each
    // is dropped after the header timeout, and the waiting ones after it.
    let mut slow: Vec<TcpStream> = (0..20)
        .map(|_| {
            let mut s = TcpStream::connect(addr).unwrap();
            s.write_all(b"POST /ingest HTTP/1.1\r\nHost: x\r\n")
                .unwrap();
            s
        })
        .collect();
    std::thread::sleep(Duration::from_millis(300));
    let open = crate::metrics::value(
        &scrape(port),
        &format!("vagt_http_connections{{source=\"http://{addr}\"}}"),
    )
    .unwrap();
    assert!(open <= 8.0, "{open} connections served at once");
    for s in &mut slow {
        assert!(closed_by_server(s, Duration::from_secs(10)));
    }

    // An authenticated body that stalls: 408.
    assert_eq!(request(limited, "nord-secret", 100, b"{\"msg\""), 408);
    // Over the organisation's rate (1,000 bytes/s, 8 KiB at once): 429.
    let body = format!("{{\"msg\": \"beacon {}\"}}\n", "x".repeat(5_000));
    assert_eq!(
        request(limited, "nord-secret", body.len(), body.as_bytes()),
        202
    );
    let mut stream = TcpStream::connect(limited).unwrap();
    stream.set_read_timeout(Some(WAIT)).unwrap();
    write!(
        stream,
        "POST /ingest HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer nord-secret\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut answer = String::new();
    stream.read_to_string(&mut answer).unwrap();
    assert!(answer.starts_with("HTTP/1.1 429"), "{answer}");
    assert!(
        answer.to_ascii_lowercase().contains("retry-after: "),
        "{answer}"
    );

    let metrics = scrape(port);
    let refused = |at: SocketAddr, reason: &str| {
        crate::metrics::value(
            &metrics,
            &format!("vagt_http_refused_total{{source=\"http://{at}\",reason=\"{reason}\"}}"),
        )
        .unwrap_or(0.0)
    };
    assert_eq!(refused(addr, "unauthorized"), 40.0, "{metrics}");
    assert_eq!(refused(limited, "timeout"), 1.0, "{metrics}");
    assert_eq!(refused(limited, "rate_limited"), 1.0, "{metrics}");
    let (status, stderr) = vagt.terminate();
    assert!(status.success(), "{stderr}");
}
