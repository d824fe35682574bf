//! The archive: the sample streamed from JSON without and with
//! `--archive`, then hunted from the archive with the same rules, each a
//! `vagt` command from start to end; and the archive's size against the
//! JSON's. Every run must give the same alerts.

use std::path::Path;
use std::process::Stdio;

use crate::{measure, vagt_run_command};

/// One command, measured.
#[derive(Debug, Clone)]
struct Run {
    wall: f64,
    cpu: f64,
    rss: f64,
    /// From `--stats`: events, alerts, processing seconds.
    events: u64,
    alerts: u64,
    processing: f64,
}

fn stats_of(path: &Path) -> anyhow::Result<(u64, u64, f64)> {
    let stats: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(path)?)?;
    Ok((
        stats["events"].as_u64().unwrap_or(0),
        stats["alerts"].as_u64().unwrap_or(0),
        stats["processing_seconds"].as_f64().unwrap_or(0.0),
    ))
}

fn run(mut command: std::process::Command, stats: &Path) -> anyhow::Result<Run> {
    command
        .arg("--stats")
        .arg(stats)
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    let (wall, cpu, rss) = measure(command, |_| Ok(()))?;
    let (events, alerts, processing) = stats_of(stats)?;
    Ok(Run {
        wall,
        cpu,
        rss,
        events,
        alerts,
        processing,
    })
}

/// Bytes of the files under `dir`.
fn size(dir: &Path) -> u64 {
    walkdir::WalkDir::new(dir)
        .into_iter()
        .filter_map(Result::ok)
        .filter_map(|e| e.metadata().ok())
        .filter(|m| m.is_file())
        .map(|m| m.len())
        .sum()
}

/// The three runs, `repeats` rounds (the median by CPU kept), as markdown.
///
/// # Errors
/// A run fails, or the runs' alerts differ.
pub fn measure_archive(
    vagt: &Path,
    workers: Option<usize>,
    rules: &Path,
    events: &Path,
    work: &Path,
    repeats: usize,
) -> anyhow::Result<String> {
    let archive = work.join("bench-archive");
    let stats = work.join("archive-stats.json");
    let mut rounds: [Vec<Run>; 3] = Default::default();
    let mut archive_bytes = 0;
    for round in 0..repeats.max(1) {
        eprintln!("archive: round {}/{}", round + 1, repeats.max(1));
        let stream = || {
            let mut c = vagt_run_command(vagt, workers);
            c.arg("--rules")
                .arg(rules)
                .arg("--input")
                .arg(events)
                .args(["--output", "/dev/null"]);
            c
        };
        rounds[0].push(run(stream(), &stats)?);
        let _ = std::fs::remove_dir_all(&archive);
        let mut archiving = stream();
        archiving.arg("--archive").arg(&archive);
        rounds[1].push(run(archiving, &stats)?);
        archive_bytes = size(&archive);
        let mut hunt = std::process::Command::new(vagt);
        hunt.arg("hunt")
            .arg(&archive)
            .arg("--rules")
            .arg(rules)
            .args(["--output", "/dev/null", "--dead-letters", "/dev/null"]);
        if let Some(n) = workers {
            hunt.arg("--workers").arg(n.to_string());
        }
        rounds[2].push(run(hunt, &stats)?);
    }
    let median = |runs: &mut Vec<Run>| {
        runs.sort_by(|a, b| a.cpu.total_cmp(&b.cpu));
        runs[runs.len() / 2].clone()
    };
    let [mut a, mut b, mut c] = rounds;
    let runs = [median(&mut a), median(&mut b), median(&mut c)];
    anyhow::ensure!(
        runs.iter()
            .all(|r| r.alerts == runs[0].alerts && r.events == runs[0].events),
        "the runs differ: {runs:?}"
    );
    let json_bytes = std::fs::metadata(events)?.len();
    let base = &runs[0];
    let mut out = format!(
        "\nArchive and hunt: {} events ({:.0} MB of JSON), all rules, each command from start to end (start-up included); median of {} rounds by CPU seconds; the same {} alerts in every run.\n\n",
        base.events,
        json_bytes as f64 / 1e6,
        repeats.max(1),
        base.alerts
    );
    out.push_str("| run | wall (s) | CPU (s) | events/s (processing) | events per CPU-s | CPU ratio to streaming JSON | peak RSS (MB) |\n");
    out.push_str("|---|---:|---:|---:|---:|---:|---:|\n");
    for (label, r) in [
        "stream from JSON",
        "stream from JSON with --archive",
        "hunt the archive",
    ]
    .iter()
    .zip(&runs)
    {
        out.push_str(&format!(
            "| {label} | {:.2} | {:.2} | {:.0} | {:.0} | {:.2} | {:.0} |\n",
            r.wall,
            r.cpu,
            r.events as f64 / r.processing.max(1e-9),
            r.events as f64 / r.cpu,
            r.cpu / base.cpu,
            r.rss
        ));
    }
    out.push_str(&format!(
        "\nArchive size: {:.1} MB against {:.1} MB of JSON ({:.2} of it).\n",
        archive_bytes as f64 / 1e6,
        json_bytes as f64 / 1e6,
        archive_bytes as f64 / json_bytes as f64
    ));
    Ok(out)
}
