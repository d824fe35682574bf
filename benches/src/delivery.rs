//! Delivery runs through the real `vagt` binary: event-in → webhook
//! received latency at a fixed offered rate, and throughput with three
//! outputs (alert JSON file, OCSF file, webhook) against one (the file),
//! per wall second and per CPU-second of vagt.
//!
//! The webhook receiver is this harness's own HTTP/1.1 server on
//! 127.0.0.1: it answers every POST with 200 at once and notes, for each
//! alert in the body, when it arrived.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use hdrhistogram::Histogram;

use crate::children_cpu_seconds;

/// Alerts taken by the receiver: (arrival, the alert's stdin line).
#[derive(Default)]
struct Taken {
    alerts: Mutex<Vec<(Instant, Option<u64>)>>,
}

/// Starts the receiver; returns its port. With `read_lines`, it reads
/// each alert's stdin line (for latency); without, it only counts alerts,
/// so as to take little of the machine from vagt.
fn receiver(taken: Arc<Taken>, read_lines: bool) -> anyhow::Result<u16> {
    let listener = TcpListener::bind("127.0.0.1:0")?;
    let port = listener.local_addr()?.port();
    std::thread::spawn(move || {
        for stream in listener.incoming().map_while(Result::ok) {
            let taken = taken.clone();
            std::thread::spawn(move || answer_requests(stream, &taken, read_lines));
        }
    });
    Ok(port)
}

/// Alerts in a webhook body, counted by a key each has once.
fn count_alerts(body: &[u8]) -> usize {
    const KEY: &[u8] = b"\"detected_at\":";
    body.windows(KEY.len()).filter(|w| *w == KEY).count()
}

/// Reads requests on one keep-alive connection, answering 200 to each.
fn answer_requests(stream: TcpStream, taken: &Taken, read_lines: bool) {
    let Ok(write_half) = stream.try_clone() else {
        return;
    };
    let mut write_half = write_half;
    let mut input = BufReader::new(stream);
    let mut header = String::new();
    loop {
        let mut body_len = 0usize;
        let mut first = true;
        loop {
            header.clear();
            match input.read_line(&mut header) {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
            if header == "\r\n" && !first {
                break;
            }
            first = false;
            let lower = header.to_ascii_lowercase();
            if let Some(v) = lower.strip_prefix("content-length:") {
                body_len = v.trim().parse().unwrap_or(0);
            }
        }
        let mut body = vec![0u8; body_len];
        if input.read_exact(&mut body).is_err() {
            return;
        }
        let arrived = Instant::now();
        let lines = if read_lines {
            alert_lines(&body)
        } else {
            vec![None; count_alerts(&body)]
        };
        taken
            .alerts
            .lock()
            .expect("not poisoned")
            .extend(lines.into_iter().map(|l| (arrived, l)));
        if write_half
            .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")
            .is_err()
        {
            return;
        }
    }
}

/// The stdin line of each alert in a webhook body (an array of alerts or
/// one alert).
fn alert_lines(body: &[u8]) -> Vec<Option<u64>> {
    let one = |a: &serde_json::Value| a["source"]["line"].as_u64();
    match serde_json::from_slice::<serde_json::Value>(body) {
        Ok(serde_json::Value::Array(alerts)) => alerts.iter().map(one).collect(),
        Ok(alert) => vec![one(&alert)],
        Err(_) => Vec::new(),
    }
}

/// The latency of one run.
#[derive(Debug)]
pub struct WebhookLatency {
    pub offered: u64,
    pub achieved: f64,
    pub alerts: u64,
    pub hist: Histogram<u64>,
}

/// Streams `lines` into `vagt --input -` with a webhook output at `rate`
/// events/s and measures, for every alert, the time from writing its event
/// to the receiver taking it.
pub fn webhook_latency(
    vagt: &Path,
    rules: &Path,
    lines: &[&[u8]],
    rate: u64,
    work: &Path,
) -> anyhow::Result<WebhookLatency> {
    let taken = Arc::new(Taken::default());
    let port = receiver(taken.clone(), true)?;
    let outbox = work.join("latency-outbox");
    let _ = std::fs::remove_dir_all(&outbox);
    std::fs::create_dir_all(&outbox)?;
    let config = work.join("latency.yaml");
    std::fs::write(
        &config,
        format!(
            "rules: [\"{}\"]\nprofile: windows\ninputs: [{{path: \"-\"}}]\noutputs:\n  - {{name: soc, type: webhook, url: \"http://127.0.0.1:{port}/alerts\", max_batch: 100, outbox: {{dir: \"{}\"}}, drain: 60s}}\ndead_letters: /dev/null\nprogress: never\n",
            rules.display(),
            outbox.display()
        ),
    )?;
    let mut child = Command::new(vagt)
        .args(["run", "--config"])
        .arg(&config)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()?;
    let mut stdin = child.stdin.take().context("stdin")?;
    let stderr = child.stderr.take().context("stderr")?;
    crate::wait_until_ready(stderr)?;
    // When each line was written (ns after `origin`; 0: not yet).
    let origin = Instant::now();
    let sent: Vec<AtomicU64> = (0..lines.len()).map(|_| AtomicU64::new(0)).collect();
    let mut next = 0usize;
    while next < lines.len() {
        let due = ((origin.elapsed().as_secs_f64() * rate as f64) as usize + 1).min(lines.len());
        if due <= next {
            std::thread::sleep(Duration::from_micros(200));
            continue;
        }
        let chunk: Vec<u8> = lines[next..due].concat();
        let now = origin.elapsed().as_nanos() as u64;
        for s in &sent[next..due] {
            s.store(now.max(1), Ordering::Release);
        }
        stdin.write_all(&chunk)?;
        next = due;
    }
    stdin.flush()?;
    let achieved = lines.len() as f64 / origin.elapsed().as_secs_f64();
    drop(stdin);
    let status = child.wait()?;
    if !status.success() {
        bail!("vagt failed: {status}");
    }
    let mut hist = Histogram::<u64>::new_with_bounds(1, 120_000_000, 3)?;
    let mut alerts = 0;
    for (arrived, line) in taken.alerts.lock().expect("not poisoned").iter() {
        let Some(at) = line
            .and_then(|l| sent.get(l as usize - 1))
            .map(|s| s.load(Ordering::Acquire))
            .filter(|at| *at > 0)
        else {
            continue;
        };
        let arrived = arrived.duration_since(origin).as_nanos() as u64;
        alerts += 1;
        hist.record((arrived.saturating_sub(at) / 1000).max(1))?;
    }
    Ok(WebhookLatency {
        offered: rate,
        achieved,
        alerts,
        hist,
    })
}

/// Throughput of one configuration of outputs.
#[derive(Debug)]
pub struct OutputsThroughput {
    pub label: String,
    pub events_per_s: f64,
    pub events_per_cpu_s: f64,
    pub alerts: u64,
    pub received: u64,
}

/// Which outputs a throughput run has.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outputs {
    /// A file of alert JSON.
    One,
    /// That file, a file of OCSF findings and a webhook.
    Three,
}

/// One file run with the given outputs: events/s over the processing
/// phase (which ends once every output has taken every alert, the webhook
/// included), and events per CPU-second of vagt over the whole run.
pub fn outputs_throughput(
    vagt: &Path,
    rules: &Path,
    input: &Path,
    outputs: Outputs,
    label: &str,
    work: &Path,
) -> anyhow::Result<OutputsThroughput> {
    let taken = Arc::new(Taken::default());
    let port = receiver(taken.clone(), false)?;
    let out = work.join("outputs");
    let _ = std::fs::remove_dir_all(&out);
    std::fs::create_dir_all(out.join("outbox"))?;
    let mut yaml = format!(
        "rules: [\"{}\"]\nprofile: windows\ninputs: [{{path: \"{}\"}}]\ndead_letters: /dev/null\nprogress: never\noutputs:\n  - {{name: archive, type: file, path: \"{}\"}}\n",
        rules.display(),
        input.display(),
        out.join("alerts.jsonl").display()
    );
    if outputs == Outputs::Three {
        yaml.push_str(&format!(
            "  - {{name: siem, type: file, path: \"{}\", encoding: ocsf}}\n  - {{name: soc, type: webhook, url: \"http://127.0.0.1:{port}/alerts\", max_batch: 100, outbox: {{dir: \"{}\"}}, drain: 120s}}\n",
            out.join("findings.jsonl").display(),
            out.join("outbox").display()
        ));
    }
    let config = work.join("outputs.yaml");
    std::fs::write(&config, yaml)?;
    let stats = work.join("outputs-stats.json");
    let cpu_before = children_cpu_seconds();
    let status = Command::new(vagt)
        .args(["run", "--config"])
        .arg(&config)
        .arg("--stats")
        .arg(&stats)
        .stderr(Stdio::null())
        .status()?;
    let cpu = children_cpu_seconds() - cpu_before;
    if !status.success() {
        bail!("vagt failed: {status}");
    }
    let s: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&stats)?)?;
    let secs = s["processing_seconds"].as_f64().unwrap_or(f64::NAN);
    let events = s["events"].as_f64().unwrap_or(0.0);
    let alerts = s["alerts"].as_u64().unwrap_or(0);
    let received = taken.alerts.lock().expect("not poisoned").len() as u64;
    if outputs == Outputs::Three && received != alerts {
        bail!("the webhook received {received} of {alerts} alerts");
    }
    Ok(OutputsThroughput {
        label: label.to_string(),
        events_per_s: events / secs,
        events_per_cpu_s: events / cpu,
        alerts,
        received,
    })
}

/// A rule that every event of the sample matches: a run where delivery,
/// not detection, is the work.
pub fn write_every_event_rule(dir: &Path) -> anyhow::Result<PathBuf> {
    std::fs::create_dir_all(dir)?;
    std::fs::write(
        dir.join("every-event.yml"),
        "title: Every event\nid: 9d1c1f00-0000-4000-8000-00000000e0e0\nlogsource: {product: windows}\ndetection:\n  sel: {EventID|exists: true}\n  condition: sel\nlevel: low\n",
    )?;
    Ok(dir.to_path_buf())
}

/// The report's delivery section.
pub fn render(latency: &[WebhookLatency], throughput: &[OutputsThroughput]) -> String {
    let mut out = String::from(
        "\nDelivery, event-in → webhook received: events written to `vagt run --input -` at the offered rate, \
         all SigmaHQ Windows rules, one webhook output (batches of up to 100, on-disk outbox) to a receiver \
         on 127.0.0.1; per alert, from writing its event to the receiver taking it (ms).\n\n",
    );
    out.push_str("| offered | achieved events/s | alerts | p50 | p99 | p99.9 | max |\n|---:|---:|---:|---:|---:|---:|---:|\n");
    for l in latency {
        let h = &l.hist;
        out.push_str(&format!(
            "| {}/s | {:.0} | {} | {} |\n",
            l.offered,
            l.achieved,
            l.alerts,
            crate::percentile_cells(h, 1)
        ));
    }
    out.push_str(
        "\nDelivery throughput: the sample once from a file; one output (alert JSON file) against three \
         (that file, an OCSF file, a webhook to 127.0.0.1); the run ends once every output has taken every \
         alert. Per wall second of processing and per CPU-second of vagt (user + system, whole run); \
         median of the rounds.\n\n",
    );
    out.push_str("| configuration | alerts | events/s | events per CPU-second | three against one (wall) | three against one (CPU) |\n|---|---:|---:|---:|---:|---:|\n");
    for pair in throughput.chunks(2) {
        let one = &pair[0];
        for t in pair {
            out.push_str(&format!(
                "| {} | {} | {:.0} | {:.0} | {:.2} | {:.2} |\n",
                t.label,
                t.alerts,
                t.events_per_s,
                t.events_per_cpu_s,
                t.events_per_s / one.events_per_s,
                t.events_per_cpu_s / one.events_per_cpu_s
            ));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_lines_of_alerts_in_a_body() {
        let body = br#"[{"source":{"input":"stdin","line":7}},{"source":{"line":9}}]"#;
        assert_eq!(alert_lines(body), vec![Some(7), Some(9)]);
        assert_eq!(alert_lines(br#"{"source":{"line":3}}"#), vec![Some(3)]);
        assert_eq!(
            count_alerts(br#"[{"detected_at":"x"},{"detected_at":"y"}]"#),
            2
        );
    }
}
