//! Shared pieces of vagt's benchmarks: the corpora, and rule subsets of a
//! given size drawn from the SigmaHQ Windows rules.

pub mod archive;
pub mod delivery;
pub mod intel;
pub mod rsigma;
pub mod transports;
pub mod workers;

use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// Waits (at most five minutes) until a started vagt says on stderr that
/// its rules are compiled, so that a measurement leaves start-up out; the
/// rest of stderr is drained meanwhile and after.
pub fn wait_until_ready(stderr: std::process::ChildStderr) -> anyhow::Result<()> {
    use std::io::{BufRead, BufReader};
    let (ready_tx, ready_rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if line.starts_with("vagt: ready") {
                let _ = ready_tx.send(());
            }
        }
    });
    ready_rx
        .recv_timeout(std::time::Duration::from_secs(300))
        .map_err(|_| anyhow::anyhow!("vagt never said it was ready"))
}

/// `vagt run` as the throughput, latency and peer runs start it: the
/// Windows profile, dead letters discarded, and `--workers` when given.
pub fn vagt_run_command(vagt: &Path, workers: Option<usize>) -> std::process::Command {
    vagt_run_command_cached(vagt, workers, None)
}

/// As [`vagt_run_command`], its rules taken from the rules cache in
/// `rules_cache` where kept there (else every rules file parsed, as on a
/// first run).
pub fn vagt_run_command_cached(
    vagt: &Path,
    workers: Option<usize>,
    rules_cache: Option<&Path>,
) -> std::process::Command {
    let mut command = std::process::Command::new(vagt);
    command.args(["run", "--profile", "windows", "--dead-letters", "/dev/null"]);
    command
        .arg("--rules-cache")
        .arg(rules_cache.unwrap_or(Path::new("off")));
    if let Some(n) = workers {
        command.arg("--workers").arg(n.to_string());
    }
    command
}

/// Runs `command` to its end, reading its output with `read`: (wall
/// seconds, CPU seconds, peak RSS in MB).
///
/// # Errors
/// It cannot start, or it fails.
pub fn measure(
    mut command: std::process::Command,
    read: impl FnOnce(&mut std::process::Child) -> anyhow::Result<()>,
) -> anyhow::Result<(f64, f64, f64)> {
    use anyhow::Context;
    let cpu_before = children_cpu_seconds();
    let started = std::time::Instant::now();
    let mut child = command.spawn().context("starting the engine")?;
    let (stop, watcher) = watch_memory(child.id());
    read(&mut child)?;
    let status = child.wait()?;
    let wall = started.elapsed().as_secs_f64();
    stop.store(true, Ordering::Relaxed);
    let rss = watcher.join().unwrap_or(0.0);
    anyhow::ensure!(status.success(), "the engine failed: {status}");
    Ok((wall, children_cpu_seconds() - cpu_before, rss))
}

/// CPU seconds (user + system) of this process's waited-for children.
pub fn children_cpu_seconds() -> f64 {
    children_cpu_of(&std::fs::read_to_string("/proc/self/stat").unwrap_or_default())
}

/// CPU seconds (user + system) of this process so far, all its threads.
pub fn own_cpu_seconds() -> f64 {
    // utime and stime: the 12th and 13th fields after the command name.
    cpu_at(
        &std::fs::read_to_string("/proc/self/stat").unwrap_or_default(),
        11,
    )
}

/// The children's CPU seconds in a `/proc/PID/stat` line.
fn children_cpu_of(stat: &str) -> f64 {
    // cutime and cstime: the 14th and 15th fields after the command name.
    cpu_at(stat, 13)
}

/// The sum of the tick counts at fields `first` and `first + 1` after the
/// command name (which may hold spaces) of a `/proc/PID/stat` line, in
/// seconds.
fn cpu_at(stat: &str, first: usize) -> f64 {
    let rest = stat.rsplit(") ").next().unwrap_or("");
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|f| f.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    // USER_HZ is 100 on Linux.
    (ticks(first) + ticks(first + 1)) / 100.0
}

/// Peak resident memory (VmHWM) of a process, in MB.
pub fn peak_rss_mb(pid: u32) -> Option<f64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb / 1024.0)
}

/// Watches a process's peak memory until told to stop.
pub fn watch_memory(pid: u32) -> (Arc<AtomicBool>, std::thread::JoinHandle<f64>) {
    let stop = Arc::new(AtomicBool::new(false));
    let flag = stop.clone();
    let handle = std::thread::spawn(move || {
        let mut peak = 0.0f64;
        while !flag.load(Ordering::Relaxed) {
            if let Some(p) = peak_rss_mb(pid) {
                peak = peak.max(p);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        peak
    });
    (stop, handle)
}

/// The p50, p99, p99.9 and max of a latency histogram (microseconds) as
/// markdown table cells, in milliseconds with `decimals` places.
pub fn percentile_cells(h: &hdrhistogram::Histogram<u64>, decimals: usize) -> String {
    [
        h.value_at_quantile(0.5),
        h.value_at_quantile(0.99),
        h.value_at_quantile(0.999),
        h.max(),
    ]
    .map(|us| format!("{:.decimals$}", us as f64 / 1000.0))
    .join(" | ")
}

/// `../shared/corpora`; panics with a clear message when it is missing.
pub fn corpora() -> PathBuf {
    let path = PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../../shared/corpora"));
    assert!(
        path.join("windows-otrf-sample.jsonl.gz").is_file(),
        "the shared corpora are missing: expected {}",
        path.display()
    );
    path
}

/// The 120,000 OTRF Windows events, decompressed (JSON lines).
pub fn otrf_events() -> std::io::Result<Vec<u8>> {
    let file = std::fs::File::open(corpora().join("windows-otrf-sample.jsonl.gz"))?;
    let mut out = Vec::with_capacity(350 << 20);
    flate2::read::MultiGzDecoder::new(file).read_to_end(&mut out)?;
    Ok(out)
}

/// JSON lines decoded into Arrow batches of `batch_size` events or the
/// default `batch_bytes` of text, by the reader a file input uses.
///
/// # Panics
/// A line does not decode (the corpora decode cleanly).
pub fn decode(bytes: &[u8], batch_size: usize) -> Vec<vagt_connectors::EventBatch> {
    use vagt_connectors::{read_bytes, DecoderConfig, ReadOptions};
    let options = ReadOptions {
        decoder: DecoderConfig {
            batch_size,
            ..DecoderConfig::default()
        },
        ..ReadOptions::default()
    };
    let mut out = Vec::new();
    read_bytes(
        bytes,
        "bench",
        &options,
        |batch| out.push(batch),
        |dead| panic!("the sample decodes cleanly: {dead:?}"),
    )
    .expect("reading from memory does not fail");
    out
}

/// Every SigmaHQ Windows rule file, sorted.
pub fn windows_rule_files() -> Vec<PathBuf> {
    let mut files = Vec::new();
    let mut stack = vec![corpora().join("sigmahq/rules/windows")];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
            let path = entry.path();
            if path.is_dir() {
                stack.push(path);
            } else if path.extension().is_some_and(|e| e == "yml") {
                files.push(path);
            }
        }
    }
    files.sort();
    files
}

/// The rule that fires most often on the OTRF sample (200 times): included
/// in every subset so that each has alerts to measure latency on.
pub const LATENCY_PROBE: &str = "win_security_password_policy_enumerated.yml";

/// `n` rules: the latency probe plus rules spread evenly over the sorted
/// list (all of them when `n` is at least their number).
pub fn rule_subset(n: usize) -> Vec<PathBuf> {
    let all = windows_rule_files();
    if n >= all.len() {
        return all;
    }
    let mut chosen: Vec<PathBuf> = all
        .iter()
        .filter(|p| p.file_name().is_some_and(|f| f == LATENCY_PROBE))
        .cloned()
        .collect();
    let step = all.len() as f64 / n as f64;
    let mut i = 0.0;
    while chosen.len() < n && (i as usize) < all.len() {
        let candidate = &all[i as usize];
        if !chosen.contains(candidate) {
            chosen.push(candidate.clone());
        }
        i += step;
    }
    chosen
}

/// Copies rule files into `dir` (flat, numbered to keep names unique).
pub fn write_rules(dir: &Path, files: &[PathBuf]) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    for (i, f) in files.iter().enumerate() {
        let name = f.file_name().and_then(|n| n.to_str()).unwrap_or("rule.yml");
        std::fs::copy(f, dir.join(format!("{i:05}-{name}")))?;
    }
    Ok(())
}

/// The window-update kernel: 100,000 observations of one source applied
/// to an `event_count` and a `value_count` rule over 1,000 group keys, in
/// event-time order with some disorder (every 7th a second behind, allowed
/// lateness 5 s), released every 1,024 observations. No threshold is
/// reached: it measures the cost per observation.
#[derive(Debug)]
pub struct WindowKernel {
    plan: std::sync::Arc<vagt_rules::window::WindowPlan>,
    observations: Vec<vagt_rules::window::Observation<()>>,
}

impl Default for WindowKernel {
    fn default() -> Self {
        Self::new()
    }
}

impl WindowKernel {
    /// The rules and observations.
    pub fn new() -> Self {
        use vagt_rules::window::Observation;
        use vagt_rules::{load_text, Placeholders, Profile, RuleCollection, RuleSetBuilder};
        const OBSERVATIONS: usize = 100_000;
        let text = "title: base\nname: base\nlogsource: {product: test}\ndetection: {sel: {a: 1}, condition: sel}\n---\ntitle: brute force\ncorrelation: {type: event_count, rules: [base], group-by: [user], timespan: 5m, condition: {gte: 1000}}\n---\ntitle: spray\ncorrelation: {type: value_count, rules: [base], group-by: [user], timespan: 5m, condition: {field: target, gte: 1000}}\n";
        let mut collection = RuleCollection::default();
        load_text(
            "bench.yml".as_ref(),
            text,
            &Placeholders::new(),
            &mut collection,
        );
        let plan = std::sync::Arc::new(
            RuleSetBuilder::new(Profile::passthrough())
                .build(&collection)
                .windows,
        );
        assert_eq!(plan.active(), 2);
        let observations = (0..OBSERVATIONS)
            .map(|i| Observation {
                // 10 ms apart, every 7th a second late.
                time: i as i64 * 10 - if i % 7 == 0 { 1_000 } else { 0 },
                tie: i as u64,
                window: i % 2,
                slot: 0,
                group: vec![Some(format!("user{}", i % 1_000))],
                values: if i % 2 == 1 {
                    vec![Some(format!("host{}", i % 37))]
                } else {
                    Vec::new()
                },
                evidence: vec![()],
            })
            .collect();
        WindowKernel { plan, observations }
    }

    /// Observations per run.
    pub fn len(&self) -> usize {
        self.observations.len()
    }

    /// True if there are none.
    pub fn is_empty(&self) -> bool {
        self.observations.is_empty()
    }

    /// Applies every observation through a fresh runtime; returns the keys
    /// it holds at the end.
    pub fn run(&self) -> usize {
        use vagt_rules::window::{SourceKey, WindowLimits, WindowRuntime};
        let mut runtime = WindowRuntime::new(self.plan.clone(), WindowLimits::default());
        let source = runtime.source(SourceKey {
            input: "bench".into(),
            actor: None,
            host: None,
        });
        let mut out = Vec::new();
        for chunk in self.observations.chunks(1024) {
            for o in chunk {
                runtime
                    .ingest(o.clone(), source)
                    .expect("within the allowed lateness");
            }
            runtime.release(&mut out);
        }
        runtime.finish(&mut out);
        assert!(out.is_empty(), "thresholds are not reached");
        runtime.keys_per_rule().iter().sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subsets_have_the_asked_size_and_the_probe() {
        for n in [10, 100, 1000] {
            let s = rule_subset(n);
            assert_eq!(s.len(), n);
            assert!(s.iter().any(|p| p.ends_with(LATENCY_PROBE)));
            let unique: std::collections::HashSet<_> = s.iter().collect();
            assert_eq!(unique.len(), n);
        }
        assert_eq!(rule_subset(usize::MAX).len(), windows_rule_files().len());
    }

    #[test]
    fn percentiles_are_cells_in_milliseconds() {
        let mut h = hdrhistogram::Histogram::<u64>::new(3).unwrap();
        h.record(1_500).unwrap();
        assert_eq!(percentile_cells(&h, 2), "1.50 | 1.50 | 1.50 | 1.50");
        assert_eq!(percentile_cells(&h, 1), "1.5 | 1.5 | 1.5 | 1.5");
    }

    #[test]
    fn children_cpu_time_is_read_after_the_command_name() {
        let stat =
            "4242 (vagt bench) S 1 4242 4242 0 -1 4194560 100 0 0 0 250 50 320 80 20 0 1 0 5 0 0";
        assert!((children_cpu_of(stat) - 4.0).abs() < 1e-9);
        assert!((cpu_at(stat, 11) - 3.0).abs() < 1e-9);
        assert!(children_cpu_seconds() >= 0.0);
    }
}
