//! Threat intelligence at line rate: the sample streamed with all rules,
//! without and with a feed of 100,000 indicators of mixed kinds, each a
//! `vagt run` from start to end; the feed's cost per CPU-second.

use std::path::Path;
use std::process::Stdio;

use crate::measure;

/// A feed of `n` indicators (addresses, networks, domains, hashes, URLs)
/// as CSV.
pub fn feed(n: usize) -> String {
    let mut csv = String::from("kind,value\n");
    for i in 0..n {
        let line = match i % 5 {
            0 => format!("ip,100.{}.{}.{}", (i >> 16) & 63, (i >> 8) & 255, i & 255),
            1 => format!("ip,100.64.{}.0/24", (i >> 8) & 255),
            2 => format!("domain,bad{i}.example"),
            3 => format!("hash,{:064x}", i * 7919),
            _ => format!("url,http://kit{i}.example/drop/"),
        };
        csv.push_str(&line);
        csv.push('\n');
    }
    csv
}

/// One run, measured.
#[derive(Debug, Clone, Copy)]
struct Run {
    wall: f64,
    cpu: f64,
    rss: f64,
    alerts: u64,
    events: u64,
}

/// One run of `config`.
fn run(vagt: &Path, config: &Path, stats: &Path) -> anyhow::Result<Run> {
    let mut command = std::process::Command::new(vagt);
    command
        .args(["run", "--config"])
        .arg(config)
        .arg("--stats")
        .arg(stats)
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    let (wall, cpu, rss) = measure(command, |_| Ok(()))?;
    let s: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(stats)?)?;
    Ok(Run {
        wall,
        cpu,
        rss,
        alerts: s["alerts"].as_u64().unwrap_or(0),
        events: s["events"].as_u64().unwrap_or(0),
    })
}

/// Both runs, `repeats` rounds (the median by CPU kept), as markdown.
///
/// # Errors
/// A run fails, or the rules' alerts differ between the runs.
pub fn measure_intel(
    vagt: &Path,
    rules: &Path,
    events: &Path,
    work: &Path,
    repeats: usize,
    indicators: usize,
) -> anyhow::Result<String> {
    std::fs::write(work.join("feed.csv"), feed(indicators))?;
    let base = format!(
        "rules: [{}]\nprofile: windows\ninputs: [{{path: {}}}]\noutput: /dev/null\ndead_letters: /dev/null\nprogress: never\n",
        rules.display(),
        events.display()
    );
    let plain = work.join("plain.yaml");
    std::fs::write(&plain, &base)?;
    let with = work.join("intel.yaml");
    std::fs::write(
        &with,
        format!(
            "{base}intel:\n  feeds:\n    - {{name: bench, path: {}, format: csv}}\n",
            work.join("feed.csv").display()
        ),
    )?;
    let stats = work.join("intel-stats.json");
    let mut rounds: [Vec<Run>; 2] = Default::default();
    for round in 0..repeats.max(1) {
        eprintln!("intel: round {}/{}", round + 1, repeats.max(1));
        rounds[0].push(run(vagt, &plain, &stats)?);
        rounds[1].push(run(vagt, &with, &stats)?);
    }
    let median = |runs: &mut Vec<Run>| {
        runs.sort_by(|a, b| a.cpu.total_cmp(&b.cpu));
        runs[runs.len() / 2]
    };
    let [mut a, mut b] = rounds;
    let (a, b) = (median(&mut a), median(&mut b));
    anyhow::ensure!(
        b.alerts >= a.alerts && a.events == b.events,
        "the runs differ: {a:?} {b:?}"
    );
    let mut out = format!(
        "\nThreat intelligence: {} events, all rules, without and with a feed of {indicators} indicators (addresses, networks, domains, hashes, URLs), each `vagt run` from start to end; median of {} rounds by CPU seconds.\n\n",
        a.events,
        repeats.max(1)
    );
    out.push_str("| run | wall (s) | CPU (s) | events per CPU-s | CPU ratio | peak RSS (MB) | alerts |\n|---|---:|---:|---:|---:|---:|---:|\n");
    for (label, r) in [
        ("all rules", a),
        (&*format!("all rules + {indicators} indicators"), b),
    ] {
        out.push_str(&format!(
            "| {label} | {:.2} | {:.2} | {:.0} | {:.3} | {:.0} | {} |\n",
            r.wall,
            r.cpu,
            r.events as f64 / r.cpu,
            r.cpu / a.cpu,
            r.rss,
            r.alerts
        ));
    }
    Ok(out)
}
