//! End-to-end harness: replays the OTRF Windows sample through the real
//! `vagt` binary and reports throughput (events/s, MB/s, ratio to a
//! parse-only baseline measured in the same run), peak memory, and
//! ingest-to-alert latency percentiles (hdrhistogram) at fixed offered
//! rates and at full speed, and parse-only throughput over each transport
//! (file, syslog TCP, HTTP ingest).
//!
//! ```text
//! cargo build --release --bin vagt
//! cargo run --release -p vagt-benches --bin vagt-bench -- --markdown benches/results.md
//! ```

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use clap::Parser;
use hdrhistogram::Histogram;
use vagt_benches::delivery::{self, Outputs};
use vagt_benches::transports::{transport_run, Transport, HTTP_BODY_BYTES};
use vagt_benches::{
    children_cpu_seconds, otrf_events, rsigma, rule_subset, watch_memory, windows_rule_files,
    write_rules,
};

/// Alerts the full SigmaHQ Windows rule set raises on one pass over the
/// OTRF sample (checked, so that a fast but wrong build fails the bench).
const ALERTS_PER_PASS_ALL_RULES: u64 = 621;

#[derive(Debug, Parser)]
#[command(about = "vagt end-to-end throughput and latency benchmark")]
struct Args {
    /// The vagt binary to measure.
    #[arg(long, default_value = "target/release/vagt")]
    vagt: PathBuf,
    /// Passes over the 120,000-event sample for throughput runs.
    #[arg(long, default_value_t = 3)]
    replays: usize,
    /// Throughput repetitions per configuration (the median is reported).
    #[arg(long, default_value_t = 3)]
    repeats: usize,
    /// Rule counts to measure besides parse-only and all rules (0: none).
    #[arg(long, value_delimiter = ',', default_value = "10,100,1000")]
    rule_counts: Vec<usize>,
    /// Offered rates (events/s) for latency runs; full speed is always added.
    #[arg(long, value_delimiter = ',', default_value = "5000,20000")]
    rates: Vec<u64>,
    /// Events per latency run.
    #[arg(long, default_value_t = 120_000)]
    latency_events: usize,
    /// Also write the report (markdown) to this file.
    #[arg(long)]
    markdown: Option<PathBuf>,
    /// Throughput only (no latency runs), e.g. to compare two builds.
    #[arg(long)]
    skip_latency: bool,
    /// The peer engine to compare with (build it with `cargo build
    /// --release --manifest-path benches/peer/Cargo.toml`):
    /// benches/peer/target/release/peer-sigma-rust.
    #[arg(long)]
    peer: Option<PathBuf>,
    /// Events for the peer comparison, sampled evenly over the sample.
    #[arg(long, default_value_t = 5_000)]
    peer_events: usize,
    /// RSigma's CLI (built from source outside the repository, see
    /// benches/README.md): compared with vagt over the whole sample once,
    /// with all rules, in `--repeats` rounds.
    #[arg(long)]
    peer_rsigma: Option<PathBuf>,
    /// Only the RSigma comparison.
    #[arg(long)]
    rsigma_only: bool,
    /// Skip the transport runs (file vs syslog TCP vs HTTP ingest).
    #[arg(long)]
    skip_transports: bool,
    /// Skip the delivery runs (webhook latency, three outputs against one).
    #[arg(long)]
    skip_delivery: bool,
    /// Only the delivery runs.
    #[arg(long)]
    delivery_only: bool,
    /// Offered rate (events/s) of the webhook latency run.
    #[arg(long, default_value_t = 5_000)]
    delivery_rate: u64,
    /// Events of the webhook latency run.
    #[arg(long, default_value_t = 60_000)]
    delivery_events: usize,
    /// Worker counts for the detection-workers runs (evaluation in memory).
    #[arg(long, value_delimiter = ',', default_value = "1,2")]
    worker_counts: Vec<usize>,
    /// Passed to `vagt run` as `--workers` in the throughput, latency and
    /// RSigma runs (default: vagt's own, one per core).
    #[arg(long)]
    vagt_workers: Option<usize>,
    /// Only the detection-workers runs.
    #[arg(long)]
    workers_only: bool,
    /// Only the archive runs (stream with and without --archive, hunt).
    #[arg(long)]
    archive_only: bool,
    /// Skip the archive runs.
    #[arg(long)]
    skip_archive: bool,
    /// Skip the detection-workers runs.
    #[arg(long)]
    skip_workers: bool,
    /// Only the threat intelligence runs (all rules without and with a
    /// feed of `--indicators` indicators).
    #[arg(long)]
    intel_only: bool,
    /// Indicators of the threat intelligence runs' feed.
    #[arg(long, default_value_t = 100_000)]
    indicators: usize,
}

struct Throughput {
    label: String,
    rules: usize,
    events_per_s: f64,
    mb_per_s: f64,
    alerts: u64,
    peak_rss_mb: f64,
    /// CPU seconds per 100,000 events over the processing phase.
    cpu_per_100k: f64,
}

struct Latency {
    label: String,
    offered: String,
    achieved: f64,
    alerts: u64,
    hist: Histogram<u64>,
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    if !args.vagt.is_file() {
        bail!(
            "{} not found: build it first with `cargo build --release --bin vagt`",
            args.vagt.display()
        );
    }
    let work = tempfile::tempdir()?;
    eprintln!("loading the OTRF sample ...");
    let events = otrf_events().context("reading the OTRF sample")?;
    let lines: Vec<&[u8]> = events.split_inclusive(|b| *b == b'\n').collect();
    let replayed = work.path().join("otrf-replayed.jsonl");
    {
        let mut f = std::io::BufWriter::new(std::fs::File::create(&replayed)?);
        for _ in 0..args.replays {
            f.write_all(&events)?;
        }
    }

    if let Some(peer) = &args.peer_rsigma {
        if args.rsigma_only {
            let report = rsigma_comparison(&args, peer, &events, lines.len(), work.path())?;
            println!("{report}");
            if let Some(path) = &args.markdown {
                std::fs::write(path, &report)?;
            }
            return Ok(());
        }
    }

    if args.archive_only {
        let report = archive(&args, &events, work.path())?;
        println!("{report}");
        if let Some(path) = &args.markdown {
            std::fs::write(path, &report)?;
        }
        return Ok(());
    }

    if args.intel_only {
        let once = work.path().join("otrf-once.jsonl");
        std::fs::write(&once, &events)?;
        let rules = work.path().join("rules-intel");
        write_rules(&rules, &windows_rule_files())?;
        let report = vagt_benches::intel::measure_intel(
            &args.vagt,
            &rules,
            &once,
            work.path(),
            args.repeats,
            args.indicators,
        )?;
        println!("{report}");
        if let Some(path) = &args.markdown {
            std::fs::write(path, &report)?;
        }
        return Ok(());
    }

    if args.workers_only {
        let report = workers(&args, &events)?;
        println!("{report}");
        if let Some(path) = &args.markdown {
            std::fs::write(path, &report)?;
        }
        return Ok(());
    }

    if args.delivery_only {
        let report = delivery(&args, &lines, &events, work.path())?;
        println!("{report}");
        if let Some(path) = &args.markdown {
            std::fs::write(path, &report)?;
        }
        return Ok(());
    }

    let all = windows_rule_files();
    let mut configs: Vec<(String, Vec<PathBuf>)> =
        vec![("parse-only (no rules)".into(), Vec::new())];
    for n in args.rule_counts.iter().filter(|n| **n > 0) {
        configs.push((format!("{n} rules"), rule_subset(*n)));
    }
    configs.push((
        format!("all {} SigmaHQ Windows rules", all.len()),
        all.clone(),
    ));

    // Throughput: rounds over all configurations (a warm-up round first,
    // discarded), so that drift in the machine's speed hits them alike.
    let mut dirs = Vec::new();
    for (i, (_, files)) in configs.iter().enumerate() {
        let dir = work.path().join(format!("rules-{i}"));
        write_rules(&dir, files)?;
        dirs.push(dir);
    }
    let mut runs: Vec<Vec<FileRun>> = vec![Vec::new(); configs.len()];
    for round in 0..=args.repeats {
        for (i, (label, _)) in configs.iter().enumerate() {
            eprintln!(
                "throughput: {label}, round {round}/{}{}",
                args.repeats,
                if round == 0 { " (warm-up)" } else { "" }
            );
            let run = throughput_run(
                &args.vagt,
                args.vagt_workers,
                &dirs[i],
                &replayed,
                work.path(),
            )?;
            if round > 0 {
                runs[i].push(run);
            }
        }
    }
    let mut throughput = Vec::new();
    for (i, (label, files)) in configs.iter().enumerate() {
        let runs = &mut runs[i];
        let mut cpu: Vec<f64> = runs.iter().map(|r| r.cpu_per_100k).collect();
        cpu.sort_by(f64::total_cmp);
        runs.sort_by(|a, b| a.events_per_s.total_cmp(&b.events_per_s));
        let FileRun {
            events_per_s,
            mb_per_s,
            alerts,
            peak_rss_mb,
            ..
        } = runs[runs.len() / 2];
        if files.len() == all.len() && alerts != ALERTS_PER_PASS_ALL_RULES * args.replays as u64 {
            bail!(
                "all rules raised {alerts} alerts, expected {}: the build under test is wrong",
                ALERTS_PER_PASS_ALL_RULES * args.replays as u64
            );
        }
        throughput.push(Throughput {
            label: label.clone(),
            rules: files.len(),
            events_per_s,
            mb_per_s,
            alerts,
            peak_rss_mb,
            cpu_per_100k: cpu[cpu.len() / 2],
        });
    }

    let mut latency = Vec::new();
    for (i, (label, files)) in configs.iter().enumerate() {
        if files.is_empty() || args.skip_latency {
            continue;
        }
        let n = args.latency_events.min(lines.len());
        for rate in args.rates.iter().map(|r| Some(*r)).chain([None]) {
            eprintln!(
                "latency: {label}, offered {}",
                rate.map(|r| format!("{r}/s"))
                    .unwrap_or("full speed".into())
            );
            latency.push(latency_run(
                &args.vagt,
                args.vagt_workers,
                &dirs[i],
                &lines[..n],
                rate,
                label,
            )?);
        }
    }

    let mut peer_rows = Vec::new();
    if let Some(peer) = &args.peer {
        peer_rows = peer_comparison(
            &args,
            peer,
            &lines,
            dirs.last().expect("all rules"),
            work.path(),
        )?;
    }

    // Transports: the sample once, parse-only, from a file, over syslog
    // TCP and over HTTP ingest, in rounds like the throughput runs.
    let mut transports = Vec::new();
    if !args.skip_transports {
        let mut rates: Vec<Vec<f64>> = vec![Vec::new(); Transport::ALL.len()];
        for round in 0..=args.repeats {
            for (i, transport) in Transport::ALL.into_iter().enumerate() {
                eprintln!(
                    "transport: {}, round {round}/{}",
                    transport.label(),
                    args.repeats
                );
                let rate = transport_run(&args.vagt, &dirs[0], &lines, transport, work.path())?;
                if round > 0 {
                    rates[i].push(rate);
                }
            }
        }
        for (i, transport) in Transport::ALL.into_iter().enumerate() {
            rates[i].sort_by(f64::total_cmp);
            transports.push((transport, rates[i][rates[i].len() / 2]));
        }
    }

    let mut report = render(&args, &throughput, &latency);
    if !transports.is_empty() {
        report.push_str(&render_transports(lines.len(), &transports));
    }
    if !peer_rows.is_empty() {
        report.push_str(&render_peer(&args, &peer_rows));
    }
    if let Some(peer) = &args.peer_rsigma {
        report.push_str(&rsigma_comparison(
            &args,
            peer,
            &events,
            lines.len(),
            work.path(),
        )?);
    }
    if !args.skip_delivery {
        report.push_str(&delivery(&args, &lines, &events, work.path())?);
    }
    if !args.skip_workers {
        report.push_str(&workers(&args, &events)?);
    }
    if !args.skip_archive {
        report.push_str(&archive(&args, &events, work.path())?);
    }
    println!("{report}");
    if let Some(path) = &args.markdown {
        std::fs::write(path, &report)?;
    }
    Ok(())
}

/// The delivery runs: webhook latency with all rules, and one output
/// against three with all rules and with a rule every event matches.
/// The archive runs (`vagt_benches::archive`), over the sample once.
fn archive(args: &Args, events: &[u8], work: &Path) -> anyhow::Result<String> {
    let once = work.join("otrf-once.jsonl");
    if !once.is_file() {
        std::fs::write(&once, events)?;
    }
    let rules = work.join("rules-archive");
    if !rules.is_dir() {
        write_rules(&rules, &windows_rule_files())?;
    }
    vagt_benches::archive::measure_archive(
        &args.vagt,
        args.vagt_workers,
        &rules,
        &once,
        work,
        args.repeats,
    )
}

/// The detection-workers runs (`vagt_benches::workers`).
fn workers(args: &Args, events: &[u8]) -> anyhow::Result<String> {
    eprintln!("detection workers: {:?}", args.worker_counts);
    let report =
        vagt_benches::workers::measure(events, &args.worker_counts, args.replays, args.repeats)?;
    Ok(vagt_benches::workers::render(&report))
}

fn delivery(args: &Args, lines: &[&[u8]], events: &[u8], work: &Path) -> anyhow::Result<String> {
    let all_rules = work.join("delivery-rules");
    write_rules(&all_rules, &windows_rule_files())?;
    let every_event = delivery::write_every_event_rule(&work.join("every-event-rule"))?;
    let once = work.join("otrf-once.jsonl");
    std::fs::write(&once, events)?;
    let n = args.delivery_events.min(lines.len());
    eprintln!("delivery: webhook latency at {}/s", args.delivery_rate);
    let latency = delivery::webhook_latency(
        &args.vagt,
        &all_rules,
        &lines[..n],
        args.delivery_rate,
        work,
    )?;
    let configs = [
        (
            "all SigmaHQ Windows rules, 1 output",
            &all_rules,
            Outputs::One,
        ),
        (
            "all SigmaHQ Windows rules, 3 outputs",
            &all_rules,
            Outputs::Three,
        ),
        ("every event alerts, 1 output", &every_event, Outputs::One),
        (
            "every event alerts, 3 outputs",
            &every_event,
            Outputs::Three,
        ),
    ];
    let mut runs: Vec<Vec<delivery::OutputsThroughput>> =
        configs.iter().map(|_| Vec::new()).collect();
    for round in 0..=args.repeats {
        for (i, (label, rules, outputs)) in configs.iter().enumerate() {
            eprintln!("delivery: {label}, round {round}/{}", args.repeats);
            let run =
                delivery::outputs_throughput(&args.vagt, rules, &once, *outputs, label, work)?;
            if round > 0 {
                runs[i].push(run);
            }
        }
    }
    let medians: Vec<delivery::OutputsThroughput> = runs
        .into_iter()
        .map(|mut r| {
            let mut cpu: Vec<f64> = r.iter().map(|t| t.events_per_cpu_s).collect();
            cpu.sort_by(f64::total_cmp);
            r.sort_by(|a, b| a.events_per_s.total_cmp(&b.events_per_s));
            let mut median = r.swap_remove(r.len() / 2);
            median.events_per_cpu_s = cpu[cpu.len() / 2];
            median
        })
        .collect();
    Ok(delivery::render(&[latency], &medians))
}

/// vagt and RSigma over the whole sample once with all rules, in rounds
/// (a warm-up first), as markdown.
fn rsigma_comparison(
    args: &Args,
    rsigma_cli: &Path,
    events: &[u8],
    count: usize,
    work: &Path,
) -> anyhow::Result<String> {
    let rules = work.join("rsigma-rules");
    let files = windows_rule_files();
    write_rules(&rules, &files)?;
    let once = work.join("otrf-once.jsonl");
    std::fs::write(&once, events)?;
    // Filled by the warm-up round, read by the others.
    let cache = work.join("rules-cache");
    let (mut parsed_runs, mut cached_runs, mut rsigma_runs) = (Vec::new(), Vec::new(), Vec::new());
    for round in 0..=args.repeats {
        eprintln!("RSigma comparison, round {round}/{}", args.repeats);
        let input = (once.as_path(), count as u64);
        let parsed = rsigma::vagt_run(&args.vagt, args.vagt_workers, &rules, input, None, work)?;
        let cached = rsigma::vagt_run(
            &args.vagt,
            args.vagt_workers,
            &rules,
            input,
            Some(&cache),
            work,
        )?;
        let r = rsigma::rsigma_run(rsigma_cli, &rules, &once, count as u64)?;
        for v in [&parsed, &cached] {
            if v.matches != ALERTS_PER_PASS_ALL_RULES {
                bail!(
                    "{} raised {} alerts, expected {ALERTS_PER_PASS_ALL_RULES}: the build under test is wrong",
                    v.engine,
                    v.matches
                );
            }
        }
        if round > 0 {
            parsed_runs.push(parsed);
            cached_runs.push(cached);
            rsigma_runs.push(r);
        }
    }
    Ok(rsigma::render(
        &[
            rsigma::median(&mut parsed_runs),
            rsigma::median(&mut cached_runs),
        ],
        &rsigma::median(&mut rsigma_runs),
        files.len(),
        args.repeats,
    ))
}

/// One file run, over the processing phase as vagt reports it.
#[derive(Debug, Clone, Copy)]
struct FileRun {
    events_per_s: f64,
    mb_per_s: f64,
    alerts: u64,
    peak_rss_mb: f64,
    /// CPU seconds per 100,000 events: the run's, less its start-up
    /// (rule compilation runs on one thread, so its wall time is its CPU
    /// time).
    cpu_per_100k: f64,
}

/// One file run, over the processing phase as vagt reports it (rule
/// compilation excluded).
fn throughput_run(
    vagt: &Path,
    workers: Option<usize>,
    rules: &Path,
    input: &Path,
    work: &Path,
) -> anyhow::Result<FileRun> {
    let stats = work.join("stats.json");
    let cpu_before = children_cpu_seconds();
    let mut child = vagt_benches::vagt_run_command(vagt, workers)
        .args(["--output", "/dev/null"])
        .arg("--rules")
        .arg(rules)
        .arg("--input")
        .arg(input)
        .arg("--stats")
        .arg(&stats)
        .stderr(Stdio::null())
        .spawn()?;
    let (stop, watcher) = watch_memory(child.id());
    let status = child.wait()?;
    let cpu = children_cpu_seconds() - cpu_before;
    stop.store(true, Ordering::Relaxed);
    let rss = watcher.join().unwrap_or(0.0);
    if !status.success() {
        bail!("vagt failed: {status}");
    }
    let s: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&stats)?)?;
    let secs = s["processing_seconds"].as_f64().unwrap_or(f64::NAN);
    let startup = s["startup_seconds"].as_f64().unwrap_or(0.0);
    let events = s["events"].as_f64().unwrap_or(0.0);
    let bytes = s["bytes"].as_f64().unwrap_or(0.0);
    Ok(FileRun {
        events_per_s: events / secs,
        mb_per_s: bytes / 1e6 / secs,
        alerts: s["alerts"].as_u64().unwrap_or(0),
        peak_rss_mb: rss,
        cpu_per_100k: (cpu - startup).max(0.0) / events * 100_000.0,
    })
}

/// vagt and the peer over the same evenly sampled events with all rules:
/// vagt over the sample replayed 20 times (for a stable rate), the peer
/// over it once (it is much slower).
fn peer_comparison(
    args: &Args,
    peer: &Path,
    lines: &[&[u8]],
    all_rules: &Path,
    work: &Path,
) -> anyhow::Result<Vec<Throughput>> {
    let step = (lines.len() / args.peer_events.max(1)).max(1);
    let sample: Vec<&[u8]> = lines
        .iter()
        .step_by(step)
        .take(args.peer_events)
        .copied()
        .collect();
    let sample_bytes: usize = sample.iter().map(|l| l.len()).sum();
    let once = work.join("peer-sample.jsonl");
    let replayed = work.join("peer-sample-x20.jsonl");
    std::fs::write(&once, sample.concat())?;
    std::fs::write(&replayed, sample.concat().repeat(20))?;
    eprintln!(
        "peer comparison: vagt over {} sampled events x20",
        sample.len()
    );
    let run = throughput_run(&args.vagt, args.vagt_workers, all_rules, &replayed, work)?;
    let mut rows = vec![Throughput {
        label: "vagt".into(),
        rules: 0,
        events_per_s: run.events_per_s,
        mb_per_s: run.mb_per_s,
        alerts: run.alerts / 20,
        peak_rss_mb: run.peak_rss_mb,
        cpu_per_100k: run.cpu_per_100k,
    }];
    eprintln!(
        "peer comparison: {} over {} sampled events",
        peer.display(),
        sample.len()
    );
    let child = Command::new(peer)
        .arg(all_rules)
        .arg(&once)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()?;
    let (stop, watcher) = watch_memory(child.id());
    let out = child.wait_with_output()?;
    stop.store(true, Ordering::Relaxed);
    let rss = watcher.join().unwrap_or(0.0);
    if !out.status.success() {
        bail!("the peer failed: {}", out.status);
    }
    let s: serde_json::Value = serde_json::from_slice(&out.stdout)?;
    let secs = s["seconds"].as_f64().unwrap_or(f64::NAN);
    rows.push(Throughput {
        label: s["engine"].as_str().unwrap_or("peer").to_string(),
        rules: s["rules_loaded"].as_u64().unwrap_or(0) as usize,
        events_per_s: s["events"].as_f64().unwrap_or(0.0) / secs,
        mb_per_s: sample_bytes as f64 / 1e6 / secs,
        alerts: s["matches"].as_u64().unwrap_or(0),
        peak_rss_mb: rss,
        cpu_per_100k: f64::NAN,
    });
    Ok(rows)
}

fn render_peer(args: &Args, rows: &[Throughput]) -> String {
    let mut out = format!(
        "\nAgainst the peer: {} events sampled evenly from the OTRF sample, all SigmaHQ Windows rules; vagt over \
         the sample replayed 20 times, the peer over it once. vagt routes rules by logsource; the peer tests every \
         rule on every event (its published usage), so its matches include rules of other logsources.\n\n",
        args.peer_events
    );
    out.push_str("| engine | rules loaded | events/s | MB/s | matches per pass | peak RSS (MB) | vagt is faster by |\n");
    out.push_str("|---|---:|---:|---:|---:|---:|---:|\n");
    let vagt = rows.first().map(|r| r.events_per_s).unwrap_or(f64::NAN);
    for r in rows {
        let rules = if r.rules == 0 {
            "all".to_string()
        } else {
            r.rules.to_string()
        };
        out.push_str(&format!(
            "| {} | {} | {:.0} | {:.1} | {} | {:.0} | {:.0}x |\n",
            r.label,
            rules,
            r.events_per_s,
            r.mb_per_s,
            r.alerts,
            r.peak_rss_mb,
            vagt / r.events_per_s
        ));
    }
    out
}

/// The stdin line number an alert is about.
fn alert_line(alert: &str) -> Option<usize> {
    const KEY: &str = "\"input\":\"stdin\",\"line\":";
    let at = alert.find(KEY)? + KEY.len();
    let digits: String = alert[at..]
        .chars()
        .take_while(char::is_ascii_digit)
        .collect();
    digits.parse().ok()
}

/// Streams `lines` into `vagt --input -` at `rate` events/s (or as fast as
/// possible) and measures, for every alert, the time from writing its
/// event to reading the alert.
fn latency_run(
    vagt: &Path,
    workers: Option<usize>,
    rules: &Path,
    lines: &[&[u8]],
    rate: Option<u64>,
    label: &str,
) -> anyhow::Result<Latency> {
    let mut child = vagt_benches::vagt_run_command(vagt, workers)
        .args(["--input", "-"])
        .arg("--rules")
        .arg(rules)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()?;
    let mut stdin = child.stdin.take().context("stdin")?;
    let stdout = child.stdout.take().context("stdout")?;
    // Start sending once vagt has compiled its rules (it says so on stderr),
    // so that latency is not the start-up time; keep draining stderr after.
    let stderr = child.stderr.take().context("stderr")?;
    vagt_benches::wait_until_ready(stderr)?;
    let origin = Instant::now();
    // Send times in nanoseconds since `origin`, per line (0 = not sent).
    let sent: Arc<Vec<AtomicU64>> = Arc::new((0..lines.len()).map(|_| AtomicU64::new(0)).collect());
    let reader = {
        let sent = sent.clone();
        std::thread::spawn(move || {
            let mut hist =
                Histogram::<u64>::new_with_bounds(1, 60_000_000, 3).expect("histogram bounds");
            let mut alerts = 0u64;
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                let now = origin.elapsed().as_nanos() as u64;
                if let Some(n) = alert_line(&line) {
                    let at = sent
                        .get(n - 1)
                        .map(|s| s.load(Ordering::Acquire))
                        .unwrap_or(0);
                    if at > 0 {
                        alerts += 1;
                        let _ = hist.record(((now.saturating_sub(at)) / 1000).max(1));
                    }
                }
            }
            (hist, alerts)
        })
    };
    let started = Instant::now();
    let mut next = 0usize;
    while next < lines.len() {
        let due = match rate {
            None => lines.len(),
            Some(r) => ((started.elapsed().as_secs_f64() * r as f64) as usize + 1).min(lines.len()),
        };
        if due <= next {
            std::thread::sleep(Duration::from_micros(200));
            continue;
        }
        // Write what is due in one go; at full speed, in chunks.
        let end = if rate.is_none() {
            (next + 256).min(lines.len())
        } else {
            due
        };
        let mut chunk = Vec::with_capacity(64 * 1024);
        for l in &lines[next..end] {
            chunk.extend_from_slice(l);
        }
        let now = origin.elapsed().as_nanos() as u64;
        for s in &sent[next..end] {
            s.store(now.max(1), Ordering::Release);
        }
        stdin.write_all(&chunk)?;
        next = end;
    }
    stdin.flush()?;
    let elapsed = started.elapsed().as_secs_f64();
    drop(stdin);
    let status = child.wait()?;
    let (hist, alerts) = reader
        .join()
        .map_err(|_| anyhow::anyhow!("reader thread panicked"))?;
    if !status.success() {
        bail!("vagt failed: {status}");
    }
    Ok(Latency {
        label: label.to_string(),
        offered: rate
            .map(|r| format!("{r}/s"))
            .unwrap_or_else(|| "full speed".into()),
        achieved: lines.len() as f64 / elapsed,
        alerts,
        hist,
    })
}

fn render_transports(events: usize, rows: &[(Transport, f64)]) -> String {
    let base = rows.first().map_or(f64::NAN, |r| r.1);
    let mut out = format!(
        "\nTransports, parse-only: the {events} events once, from the first byte offered to the last \
         event through detection (metrics endpoint); syslog TCP on one connection, HTTP in bodies of up \
         to {} MiB; median of the rounds.\n\n",
        HTTP_BODY_BYTES >> 20
    );
    out.push_str("| transport | events/s | ratio to file |\n|---|---:|---:|\n");
    for (transport, rate) in rows {
        out.push_str(&format!(
            "| {} | {:.0} | {:.2} |\n",
            transport.label(),
            rate,
            rate / base
        ));
    }
    out
}

fn render(args: &Args, throughput: &[Throughput], latency: &[Latency]) -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|c| {
            c.lines()
                .find(|l| l.starts_with("model name"))
                .map(|l| l.split(':').nth(1).unwrap_or("").trim().to_string())
        })
        .unwrap_or_else(|| "unknown CPU".into());
    let cores = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(0);
    let base = throughput
        .first()
        .map(|t| t.events_per_s)
        .unwrap_or(f64::NAN);
    let mut out = String::new();
    out.push_str(&format!(
        "Machine: {cpu}, {cores} cores. Input: OTRF sample (120,000 Windows events, 339 MB) replayed {} times \
         from a file; median of {} rounds over all configurations after a warm-up round; rule compilation \
         excluded.\n\n",
        args.replays, args.repeats
    ));
    let base_cpu = throughput
        .first()
        .map(|t| t.cpu_per_100k)
        .unwrap_or(f64::NAN);
    out.push_str("| configuration | rules | events/s | MB/s | ratio to parse-only | CPU s per 100k events | CPU ratio to parse-only | events per CPU-s | alerts | peak RSS (MB) |\n");
    out.push_str("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n");
    for t in throughput {
        out.push_str(&format!(
            "| {} | {} | {:.0} | {:.0} | {:.2} | {:.3} | {:.2} | {:.0} | {} | {:.0} |\n",
            t.label,
            t.rules,
            t.events_per_s,
            t.mb_per_s,
            t.events_per_s / base,
            t.cpu_per_100k,
            t.cpu_per_100k / base_cpu,
            100_000.0 / t.cpu_per_100k,
            t.alerts,
            t.peak_rss_mb
        ));
    }
    if latency.is_empty() {
        return out;
    }
    out.push_str(&format!(
        "\nIngest-to-alert latency: {} events written to `vagt run --input -` at the offered rate; per alert, the \
         time from writing its event to reading the alert (ms).\n\n",
        args.latency_events
    ));
    out.push_str(
        "| configuration | offered | achieved events/s | alerts | p50 | p99 | p99.9 | max |\n",
    );
    out.push_str("|---|---:|---:|---:|---:|---:|---:|---:|\n");
    for l in latency {
        let h = &l.hist;
        out.push_str(&format!(
            "| {} | {} | {:.0} | {} | {} |\n",
            l.label,
            l.offered,
            l.achieved,
            l.alerts,
            vagt_benches::percentile_cells(h, 2)
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_stdin_line_of_an_alert() {
        let alert = r#"{"id":"x","source":{"input":"stdin","line":4711,"offset":9},"event":{}}"#;
        assert_eq!(alert_line(alert), Some(4711));
        assert_eq!(
            alert_line(r#"{"source":{"input":"file.json","line":3}}"#),
            None
        );
    }
}
