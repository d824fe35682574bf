//! vagt killed, flooded and out of disk: every alert of a clean run is
//! delivered at least once and none is invented across a crash loop of
//! SIGKILLs; input faster than detection is held back at the senders with
//! memory bounded and nothing lost; a full disk is a clear error, nothing
//! is acknowledged past what was written, and a restart once there is
//! space delivers the rest.

use std::collections::BTreeSet;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::cli::repo;
use crate::metrics::{free_port, scrape};
use crate::support::{json_lines, Vagt};

const WAIT: Duration = Duration::from_secs(60);

/// A step of xorshift64.
fn next(rng: &mut u64) -> u64 {
    *rng ^= *rng << 13;
    *rng ^= *rng >> 7;
    *rng ^= *rng << 17;
    *rng
}

fn ids(alerts: &[Value]) -> BTreeSet<String> {
    alerts
        .iter()
        .map(|a| a["id"].as_str().unwrap().to_string())
        .collect()
}

/// Resident memory of a process, in bytes.
fn resident(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .map_or(0, |kb| kb * 1024)
}

const SENTINEL: &str = "title: Sentinel\nid: 88888888-0000-4000-8000-000000000008\nlogsource: {product: windows}\ndetection:\n  sel: {CommandLine|contains: crash-loop-sentinel}\n  condition: sel\n";

/// A followed copy of the windows fixture (4,180 events: windowed and
/// single-event alerts) ending with a sentinel event, and a config per
/// attempt writing to its own file, and to a webhook (through one outbox
/// kept across attempts).
struct CrashLoop {
    dir: tempfile::TempDir,
    rules: Vec<PathBuf>,
    log: PathBuf,
    receiver: crate::receiver::Receiver,
}

impl CrashLoop {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let fixtures = repo().join("fixtures");
        let sentinel = dir.path().join("sentinel.yml");
        std::fs::write(&sentinel, SENTINEL).unwrap();
        let events = std::fs::read_to_string(fixtures.join("windows/events.jsonl")).unwrap();
        let log = dir.path().join("events.jsonl");
        std::fs::write(&log, events).unwrap();
        std::fs::create_dir_all(dir.path().join("outbox")).unwrap();
        CrashLoop {
            receiver: crate::receiver::Receiver::start(),
            rules: vec![
                fixtures.join("windows/rules"),
                fixtures.join("rules"),
                sentinel,
            ],
            log,
            dir,
        }
    }

    fn config(&self, attempt: &str) -> PathBuf {
        let path = self.dir.path().join(format!("{attempt}.yaml"));
        let rules: Vec<String> = self
            .rules
            .iter()
            .map(|r| format!("\"{}\"", r.display()))
            .collect();
        std::fs::write(
            &path,
            format!(
                "rules: [{}]\ncatalog: \"{}\"\ninputs: [{{tail: \"{}\"}}]\noutputs:\n  - {{name: file, type: file, path: {attempt}.jsonl}}\n  - {{name: soc, type: webhook, url: \"{}/alerts\", outbox: {{dir: outbox}}, retry: {{initial: 50ms, max: 200ms}}}}\ndead_letters: {attempt}-dead.jsonl\ndecoder: {{batch_size: 64}}\nprogress: never\nwindows: {{state_file: state.json, snapshot_interval: 200ms, idle_after: 1h}}\n",
                rules.join(", "),
                repo().join("fixtures/catalog.yaml").display(),
                self.log.display(),
                self.receiver.url()
            ),
        )
        .unwrap();
        path
    }

    /// Appends the sentinel event, whose alert says the input is read to
    /// its end.
    fn append_sentinel(&self) {
        let mut log = std::fs::OpenOptions::new()
            .append(true)
            .open(&self.log)
            .unwrap();
        log.write_all(
            b"{\"@timestamp\": \"2026-03-03T14:30:00.000Z\", \"Hostname\": \"RNV-DC-01\", \"Channel\": \"Microsoft-Windows-Sysmon/Operational\", \"EventID\": 1, \"CommandLine\": \"crash-loop-sentinel\"}\n",
        )
        .unwrap();
    }

    fn alerts(&self, attempt: &str) -> Vec<Value> {
        json_lines(&self.dir.path().join(format!("{attempt}.jsonl")))
    }

    /// Runs until the sentinel's alert is out, then stops with SIGTERM.
    fn run_to_the_end(&self, attempt: &str) -> Vec<Value> {
        let mut vagt = Vagt::with_config(&self.config(attempt));
        vagt.wait_for("vagt: ready", WAIT);
        let deadline = Instant::now() + WAIT;
        while !self
            .alerts(attempt)
            .iter()
            .any(|a| a["rule"]["title"] == "Sentinel")
        {
            assert!(
                Instant::now() < deadline,
                "no sentinel alert: {}",
                vagt.stderr()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        let (status, stderr) = vagt.terminate();
        assert!(status.success(), "{stderr}");
        self.alerts(attempt)
    }
}

#[test]
fn a_crash_loop_of_sigkills_delivers_every_alert_at_least_once_and_invents_none() {
    let reference = CrashLoop::new();
    reference.append_sentinel();
    let expected = ids(&reference.run_to_the_end("reference"));
    assert!(expected.len() >= 5, "{expected:?}");

    let crashing = CrashLoop::new();
    let mut delivered: BTreeSet<String> = BTreeSet::new();
    let mut rng = 0x5eed_u64;
    let kills = 25;
    for attempt in 0..kills {
        let name = format!("attempt-{attempt}");
        let mut vagt = Vagt::with_config(&crashing.config(&name));
        vagt.wait_for("vagt: ready", WAIT);
        std::thread::sleep(Duration::from_millis(10 + next(&mut rng) % 400));
        vagt.signal("KILL");
        let _ = vagt.wait();
        delivered.extend(ids(&crashing.alerts(&name)));
    }
    // The sentinel comes only now: the killed runs may have saved their
    // positions at the end of the rest.
    crashing.append_sentinel();
    let last = crashing.run_to_the_end("last");
    delivered.extend(ids(&last));
    let missing: Vec<&String> = expected.difference(&delivered).collect();
    let invented: Vec<&String> = delivered.difference(&expected).collect();
    // The webhook: every alert at least once, across the kills.
    let received = crashing.receiver.ids();
    let posted: BTreeSet<String> = received.iter().cloned().collect();
    eprintln!(
        "crash loop: {kills} SIGKILLs, {} distinct alerts delivered to the file of {} expected, {} of them after the last restart; {} posted to the webhook, {} distinct",
        delivered.len(),
        expected.len(),
        last.len(),
        received.len(),
        posted.len()
    );
    assert!(missing.is_empty(), "lost: {missing:?}");
    assert!(invented.is_empty(), "invented: {invented:?}");
    assert_eq!(
        posted, expected,
        "the webhook: every alert at least once, none invented"
    );
}

/// Sends lines over TCP syslog as fast as the socket takes them, for
/// `for_how_long`; returns how many were sent.
fn flood_tcp(addr: std::net::SocketAddr, for_how_long: Duration) -> u64 {
    let mut stream = TcpStream::connect(addr).unwrap();
    let started = Instant::now();
    let mut sent = 0u64;
    let mut buf = Vec::new();
    while started.elapsed() < for_how_long {
        buf.clear();
        for _ in 0..100 {
            sent += 1;
            writeln!(
                buf,
                "<134>1 2026-11-29T10:00:00.000Z host app - - - flood seq={sent} beacon"
            )
            .unwrap();
        }
        stream.write_all(&buf).unwrap();
    }
    sent
}

#[test]
fn input_faster_than_detection_is_held_back_with_memory_bounded_and_nothing_lost() {
    let dir = tempfile::tempdir().unwrap();
    let rules = dir.path().join("rules.yml");
    std::fs::write(
        &rules,
        "title: Beacon\nlogsource: {product: test}\ndetection: {sel: {message|contains: beacon}, condition: sel}\n---\ntitle: Kafka event\nlogsource: {product: test}\ndetection: {sel: {seq|exists: true}, condition: sel}\n",
    )
    .unwrap();
    // A topic already holding 3,000 events, more than the pipeline holds.
    crate::kafka::require_broker();
    let (topic, group) = crate::kafka::fresh_topic("overload", 2);
    let produced = crate::kafka::produce(&topic, 0..3_000).len() as u64;
    // Alerts go to a FIFO read slowly: the sink, then detection, then the
    // listeners wait, and TCP's window holds the sender back.
    let fifo = dir.path().join("alerts.fifo");
    crate::support::make_fifo(&fifo);
    let port = free_port();
    let http = std::net::SocketAddr::from(([127, 0, 0, 1], free_port()));
    let config = dir.path().join("vagt.yaml");
    std::fs::write(
        &config,
        format!(
            "rules: [rules.yml]\nprofile: passthrough\ninputs:\n  - syslog: {{listen: \"127.0.0.1:0\", protocol: tcp}}\n    format: syslog\n  - http:\n      listen: \"{http}\"\n      tokens: [{{actor: rnv-hospital-nord, token_sha256: \"{}\"}}]\n    format: syslog\n  - kafka: {{brokers: \"127.0.0.1:19092\", topics: [{topic}], group_id: {group}}}\noutput: alerts.fifo\ndead_letters: dead.jsonl\nprogress: never\nmetrics_listen: 127.0.0.1:{port}\n",
            crate::sources::sha256_hex("nord-secret")
        ),
    )
    .unwrap();
    let mut vagt = Vagt::with_config(&config);
    let tcp = vagt.listening("syslog+tcp://127.0.0.1:0");
    vagt.wait_for("vagt: ready", WAIT);
    let pid = vagt.pid();
    // A slow reader of the alerts: 2,000 alert lines a second.
    let reading = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(true));
    let reader = {
        let (fifo, reading) = (fifo.clone(), reading.clone());
        std::thread::spawn(move || {
            let mut file = std::fs::File::open(&fifo).unwrap();
            let mut buf = vec![0u8; 64 * 1024];
            let mut total = Vec::new();
            while reading.load(std::sync::atomic::Ordering::Relaxed) {
                match file.read(&mut buf[..16 * 1024]) {
                    Ok(0) => break,
                    Ok(n) => total.extend_from_slice(&buf[..n]),
                    Err(_) => break,
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            // Then everything, fast.
            loop {
                match file.read(&mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => total.extend_from_slice(&buf[..n]),
                }
            }
            total
        })
    };
    let before = resident(pid);
    let mut peak = before;
    // 8 s of flooding over TCP while HTTP bodies are posted too.
    let flood = std::thread::spawn(move || flood_tcp(tcp, Duration::from_secs(8)));
    let poster = std::thread::spawn(move || {
        let mut accepted = 0u64;
        let body: String = (0..500)
            .map(|i| format!("<134>1 2026-11-29T10:00:00.000Z host app - - - http {i} beacon\n"))
            .collect();
        let started = Instant::now();
        while started.elapsed() < Duration::from_secs(8) {
            let (status, _) = crate::sources::post(http, Some("nord-secret"), &body);
            assert_eq!(status, 202);
            accepted += 500;
        }
        accepted
    });
    while !flood.is_finished() {
        peak = peak.max(resident(pid));
        std::thread::sleep(Duration::from_millis(50));
    }
    let sent = flood.join().unwrap();
    let posted = poster.join().unwrap();
    peak = peak.max(resident(pid));
    // Let the reader catch up, then wait for everything to be processed.
    reading.store(false, std::sync::atomic::Ordering::Relaxed);
    let total = sent + posted + produced;
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let body = scrape(port);
        let out: f64 = body
            .lines()
            .filter(|l| l.starts_with("vagt_events_out_total{"))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum();
        if out as u64 >= total {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{out} of {total} events processed"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let (status, stderr) = vagt.terminate();
    assert!(status.success(), "{stderr}");
    let alerts = reader.join().unwrap();
    let alert_lines = alerts.iter().filter(|b| **b == b'\n').count() as u64;
    eprintln!(
        "overload: {sent} events over TCP and {posted} over HTTP in 8 s, and {produced} waiting in Kafka, against an alert reader of ~2,000 a second; resident memory {} MB before, peak {} MB; {alert_lines} alerts",
        before >> 20,
        peak >> 20
    );
    // Nothing lost: every event alerted once.
    assert_eq!(alert_lines, total, "{stderr}");
    // Memory stays within the documented bound: channel_capacity x
    // batch_size events in flight per stage, 4,096 queued messages per
    // listener (HTTP bodies: 64 MiB), the compiled rules.
    assert!(
        peak - before < 200 << 20,
        "grew {} MB",
        (peak - before) >> 20
    );
}

/// Mounts a tmpfs of `size` at `path` (this test needs root, as CI has).
fn mount_tmpfs(path: &Path, size: &str) {
    std::fs::create_dir_all(path).unwrap();
    let status = Command::new("mount")
        .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
        .arg(path)
        .status()
        .expect("mount");
    assert!(
        status.success(),
        "the full-disk test mounts a small tmpfs and needs root for it"
    );
}

fn unmount(path: &Path) {
    let _ = Command::new("umount").arg(path).status();
}

#[test]
fn a_full_disk_is_a_clear_error_and_a_restart_with_space_delivers_the_rest() {
    let dir = tempfile::tempdir().unwrap();
    let disk = dir.path().join("disk");
    mount_tmpfs(&disk, "192k");
    struct Unmount(PathBuf);
    impl Drop for Unmount {
        fn drop(&mut self) {
            unmount(&self.0);
        }
    }
    let _unmount = Unmount(disk.clone());
    let rules = dir.path().join("rules.yml");
    std::fs::write(
        &rules,
        "title: Beacon\nid: 99999999-0000-4000-8000-000000000009\nlogsource: {product: test}\ndetection: {sel: {msg|contains: beacon}, condition: sel}\n",
    )
    .unwrap();
    // 3,000 events of about 200 bytes: alerts of about 600 bytes each, some
    // 1.8 MB in all, on a disk of 192 KiB.
    let input = dir.path().join("events.jsonl");
    let events: Vec<String> = (0..3_000)
        .map(|i| format!(r#"{{"msg": "beacon {i:05} {}"}}"#, "x".repeat(150)))
        .collect();
    std::fs::write(&input, events.join("\n") + "\n").unwrap();
    let config = |out: &Path| {
        let path = dir.path().join("vagt.yaml");
        std::fs::write(
            &path,
            format!(
                "rules: [rules.yml]\nprofile: passthrough\ninputs: [{{path: events.jsonl}}]\noutput: \"{}\"\ndead_letters: dead.jsonl\ndecoder: {{batch_size: 100}}\nprogress: never\nwindows: {{state_file: \"{}\", snapshot_interval: 1ms}}\n",
                out.display(),
                disk.join("state.json").display()
            ),
        )
        .unwrap();
        path
    };
    let out = disk.join("alerts.jsonl");
    let run = crate::cli::vagt(&["run", "--config", config(&out).to_str().unwrap()]);
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert_eq!(run.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("No space left on device"), "{stderr}");
    assert!(stderr.contains(&disk.display().to_string()), "{stderr}");
    let first = json_lines_lenient(&out);
    // The saved position never runs ahead of the alerts on disk (none is
    // saved if the alerts filled the disk before the first snapshot).
    let state: Value = std::fs::read(disk.join("state.json"))
        .ok()
        .and_then(|bytes| serde_json::from_slice(&bytes).ok())
        .unwrap_or(Value::Null);
    let position = state["inputs"][input.display().to_string()]["line"]
        .as_u64()
        .unwrap_or(0);
    assert!(
        position as usize <= first.len(),
        "position line {position} beyond the {} alerts written",
        first.len()
    );
    eprintln!(
        "full disk: {} alerts on a 192 KiB disk before it filled; the state resumes at line {position}",
        first.len()
    );

    // Space again: the alerts so far are moved away, the disk is bigger.
    let kept = dir.path().join("first.jsonl");
    std::fs::copy(&out, &kept).unwrap();
    std::fs::remove_file(&out).unwrap();
    unmount(&disk);
    mount_tmpfs(&disk, "16m");
    if let Some(saved) = state.as_object() {
        std::fs::write(disk.join("state.json"), serde_json::to_vec(saved).unwrap()).unwrap();
    }
    let run = crate::cli::vagt(&["run", "--config", config(&out).to_str().unwrap()]);
    assert!(
        run.status.success(),
        "{}",
        String::from_utf8_lossy(&run.stderr)
    );
    let mut seen: BTreeSet<String> = ids(&json_lines_lenient(&kept));
    seen.extend(ids(&json_lines(&out)));
    assert_eq!(seen.len(), 3_000, "every event's alert at least once");
}

/// The complete JSON lines of a file cut short by a full disk.
fn json_lines_lenient(path: &Path) -> Vec<Value> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect()
}
