//! Transport runs: the same events through the real `vagt` binary from a
//! file, over syslog TCP (one JSON object per line) and over HTTP bulk
//! ingest, plain and gzip-compressed (compressed before the clock starts),
//! parse-only, timed by the harness from the first byte offered to the
//! last event through detection (read from the metrics endpoint).

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};

/// How the events reach vagt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    /// `path:` input, read to its end.
    File,
    /// `syslog: {protocol: tcp}` with `format: json`, one connection.
    SyslogTcp,
    /// `http:` bulk ingest, bodies of up to [`HTTP_BODY_BYTES`] of
    /// events, one request after the other.
    Http,
    /// As [`Transport::Http`], each body sent gzip-compressed
    /// (`Content-Encoding: gzip`).
    HttpGzip,
}

/// Bytes of events per HTTP request, at most.
pub const HTTP_BODY_BYTES: usize = 4 << 20;

const TOKEN: &str = "bench-token";

impl Transport {
    /// All, in report order.
    pub const ALL: [Transport; 4] = [
        Transport::File,
        Transport::SyslogTcp,
        Transport::Http,
        Transport::HttpGzip,
    ];

    /// Its name in the report.
    pub fn label(self) -> &'static str {
        match self {
            Transport::File => "file",
            Transport::SyslogTcp => "syslog over TCP",
            Transport::Http => "HTTP bulk ingest",
            Transport::HttpGzip => "HTTP bulk ingest, gzip",
        }
    }
}

/// A running vagt whose stderr lines arrive on a channel.
struct Running {
    child: Child,
    lines: mpsc::Receiver<String>,
}

impl Running {
    fn wait_for(&self, text: &str) -> anyhow::Result<String> {
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let line = self
                .lines
                .recv_timeout(left)
                .with_context(|| format!("vagt never said '{text}'"))?;
            if line.contains(text) {
                return Ok(line);
            }
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> anyhow::Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// `vagt_events_out_total` of `source`, from the metrics endpoint.
fn events_out(port: u16, source: &str) -> Option<u64> {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).ok()?;
    stream
        .write_all(b"GET /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
        .ok()?;
    let mut body = String::new();
    stream.read_to_string(&mut body).ok()?;
    let name = format!("vagt_events_out_total{{source=\"{source}\"}} ");
    body.lines()
        .find_map(|l| l.strip_prefix(&name))
        .and_then(|v| v.trim().parse::<f64>().ok())
        .map(|v| v as u64)
}

fn post(addr: SocketAddr, body: &[u8], gzip: bool) -> anyhow::Result<()> {
    let mut stream = TcpStream::connect(addr)?;
    let encoding = if gzip {
        "Content-Encoding: gzip\r\n"
    } else {
        ""
    };
    write!(
        stream,
        "POST /ingest HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {TOKEN}\r\n\
         {encoding}Content-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    )?;
    stream.write_all(body)?;
    let mut response = String::new();
    stream.read_to_string(&mut response)?;
    if !response.starts_with("HTTP/1.1 202") {
        bail!(
            "HTTP ingest refused a body: {}",
            response.lines().next().unwrap_or("")
        );
    }
    Ok(())
}

/// `lines` in bodies of up to [`HTTP_BODY_BYTES`], each gzip-compressed if
/// `gzip`.
fn http_bodies(lines: &[&[u8]], gzip: bool) -> anyhow::Result<Vec<Vec<u8>>> {
    let mut bodies = vec![Vec::with_capacity(HTTP_BODY_BYTES)];
    for line in lines {
        let body = bodies.last_mut().expect("one body at least");
        if !body.is_empty() && body.len() + line.len() > HTTP_BODY_BYTES {
            bodies.push(Vec::with_capacity(HTTP_BODY_BYTES));
        }
        bodies
            .last_mut()
            .expect("just pushed")
            .extend_from_slice(line);
    }
    if gzip {
        for body in &mut bodies {
            let mut encoder =
                flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
            encoder.write_all(body)?;
            *body = encoder.finish()?;
        }
    }
    Ok(bodies)
}

/// Events/s of one parse-only run of `lines` over `transport`.
pub fn transport_run(
    vagt: &Path,
    rules: &Path,
    lines: &[&[u8]],
    transport: Transport,
    work: &Path,
) -> anyhow::Result<f64> {
    let metrics = free_port()?;
    let file = work.join("transport-events.jsonl");
    let (input, source) = match transport {
        Transport::File => {
            let mut f = std::io::BufWriter::new(std::fs::File::create(&file)?);
            for line in lines {
                f.write_all(line)?;
            }
            f.flush()?;
            (
                format!("path: \"{}\"", file.display()),
                file.display().to_string(),
            )
        }
        Transport::SyslogTcp => (
            "syslog: {listen: \"127.0.0.1:0\", protocol: tcp}\n    format: json".to_string(),
            "syslog+tcp://127.0.0.1:0".to_string(),
        ),
        Transport::Http | Transport::HttpGzip => {
            let digest: String = {
                use sha2::Digest;
                sha2::Sha256::digest(TOKEN.as_bytes())
                    .iter()
                    .map(|b| format!("{b:02x}"))
                    .collect()
            };
            (
                format!(
                    "http: {{listen: \"127.0.0.1:0\", tokens: [{{actor: bench, token_sha256: \"{digest}\"}}]}}"
                ),
                "http://127.0.0.1:0".to_string(),
            )
        }
    };
    let config = work.join("transport.yaml");
    std::fs::write(
        &config,
        format!(
            "rules: [\"{}\"]\ninputs:\n  - {input}\noutput: /dev/null\ndead_letters: /dev/null\n\
             metrics_listen: \"127.0.0.1:{metrics}\"\nprogress: never\n",
            rules.display()
        ),
    )?;
    let mut child = Command::new(vagt)
        .args(["run", "--config"])
        .arg(&config)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()?;
    let stderr = child.stderr.take().context("stderr")?;
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let mut running = Running { child, lines: rx };
    // "ready" comes first, then each listener's address.
    running.wait_for("vagt: ready")?;
    let listening = match transport {
        Transport::File => None,
        _ => {
            let line = running.wait_for("vagt: listening")?;
            Some(
                line.rsplit(" on ")
                    .next()
                    .unwrap_or("")
                    .parse::<SocketAddr>()?,
            )
        }
    };
    // HTTP bodies are made (and compressed) before the clock starts.
    let bodies = http_bodies(lines, transport == Transport::HttpGzip)?;
    let started = Instant::now();
    match (transport, listening) {
        (Transport::SyslogTcp, Some(addr)) => {
            let mut stream = std::io::BufWriter::with_capacity(1 << 20, TcpStream::connect(addr)?);
            for line in lines {
                stream.write_all(line)?;
            }
            stream.flush()?;
        }
        (Transport::Http | Transport::HttpGzip, Some(addr)) => {
            for body in &bodies {
                post(addr, body, transport == Transport::HttpGzip)?;
            }
        }
        _ => {}
    }
    let want = lines.len() as u64;
    loop {
        if events_out(metrics, &source) == Some(want) {
            break;
        }
        // A file input ends the run when it is done.
        if transport == Transport::File {
            if let Some(status) = running.child.try_wait()? {
                if !status.success() {
                    bail!("vagt failed on the file: {status}");
                }
                break;
            }
        }
        if started.elapsed() > Duration::from_secs(600) {
            bail!(
                "{}: vagt did not process {want} events in 10 minutes",
                transport.label()
            );
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    let elapsed = started.elapsed().as_secs_f64();
    drop(running);
    Ok(want as f64 / elapsed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn http_bodies_split_at_the_size_and_compress_to_the_same_bytes() {
        let line = vec![b'x'; HTTP_BODY_BYTES / 3];
        let lines: Vec<&[u8]> = vec![&line; 4];
        let plain = http_bodies(&lines, false).unwrap();
        assert_eq!(
            plain.iter().map(Vec::len).collect::<Vec<_>>(),
            vec![3 * line.len(), line.len()]
        );
        let gzipped = http_bodies(&lines, true).unwrap();
        assert_eq!(gzipped.len(), 2);
        let mut unzipped = Vec::new();
        flate2::read::GzDecoder::new(&gzipped[0][..])
            .read_to_end(&mut unzipped)
            .unwrap();
        assert_eq!(unzipped, plain[0]);
    }
}
