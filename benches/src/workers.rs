//! Detection workers: how evaluation scales with threads. The OTRF sample
//! is decoded once into batches in memory (as a file input decodes it),
//! then all SigmaHQ Windows rules evaluate it through vagt's evaluation
//! workers (`vagt_rules::workers`, what `vagt run --workers N` uses), with
//! 1, 2, … workers, at most two batches per worker in flight and results
//! taken in order, as detection does. Decoding is left out, so that the
//! workers have the machine's cores to themselves; the end-to-end runs
//! show the whole pipeline.
//!
//! Also measured, for the scaling model: decoding's CPU per event (one
//! thread per input) and evaluation's CPU per event.

use std::sync::Arc;
use std::time::Instant;

use vagt_rules::workers::Workers;
use vagt_rules::{load_paths, Placeholders, Profile, RuleSetBuilder};

use crate::{decode, own_cpu_seconds, windows_rule_files};

/// What all SigmaHQ Windows rules match in the OTRF sample per pass,
/// counted once and pinned: a scaling figure of a build that finds
/// something else is not reported.
pub const MATCHES_PER_PASS: usize = 621;

/// One measured configuration.
#[derive(Debug, Clone)]
pub struct WorkersRun {
    pub workers: usize,
    pub events: usize,
    pub wall: f64,
    pub cpu: f64,
}

impl WorkersRun {
    fn per_second(&self) -> f64 {
        self.events as f64 / self.wall
    }

    fn per_cpu_second(&self) -> f64 {
        self.events as f64 / self.cpu
    }
}

/// The figures the scaling model needs, from the same run.
#[derive(Debug, Clone)]
pub struct WorkersReport {
    pub runs: Vec<WorkersRun>,
    /// Decoding CPU seconds per event (one thread).
    pub decode_cpu_per_event: f64,
    pub events_per_pass: usize,
    pub cores: usize,
}

/// Measures evaluation with each worker count in `counts`, `repeats`
/// rounds (the median kept), over `events` (JSON lines) replayed
/// `replays` times.
///
/// # Errors
/// The rules do not load, or a run's matches differ from the pinned
/// count.
pub fn measure(
    events: &[u8],
    counts: &[usize],
    replays: usize,
    repeats: usize,
) -> anyhow::Result<WorkersReport> {
    let cpu = own_cpu_seconds();
    let batches = decode(events, 1024);
    let decode_cpu = own_cpu_seconds() - cpu;
    let events_per_pass: usize = batches.iter().map(|b| b.batch.num_rows()).sum();
    let collection = load_paths(&windows_rule_files(), &Placeholders::new())?;
    let set = Arc::new(
        RuleSetBuilder::new(Profile::windows()?)
            .build(&collection)
            .set,
    );
    let mut runs = Vec::new();
    for &count in counts {
        let mut rounds = Vec::new();
        for _ in 0..repeats {
            rounds.push(evaluate(&set, &batches, count, replays)?);
        }
        rounds.sort_by(|a, b| a.wall.total_cmp(&b.wall));
        runs.push(rounds[rounds.len() / 2].clone());
    }
    Ok(WorkersReport {
        runs,
        decode_cpu_per_event: decode_cpu / events_per_pass as f64,
        events_per_pass,
        cores: vagt_rules::workers::available(),
    })
}

/// One round: every batch, `replays` times, through `count` workers.
fn evaluate(
    set: &Arc<vagt_rules::RuleSet>,
    batches: &[vagt_connectors::EventBatch],
    count: usize,
    replays: usize,
) -> anyhow::Result<WorkersRun> {
    let workers = Workers::new(count, None);
    let depth = 2 * count;
    let mut in_flight = std::collections::VecDeque::new();
    let mut matches = 0usize;
    let mut events = 0usize;
    let cpu = own_cpu_seconds();
    let started = Instant::now();
    for batch in (0..replays).flat_map(|_| batches.iter()) {
        if in_flight.len() >= depth {
            let pending: vagt_rules::workers::Pending = in_flight.pop_front().expect("in flight");
            matches += pending.wait()?.matches.len();
        }
        events += batch.batch.num_rows();
        in_flight.push_back(workers.submit(set.clone(), batch.batch.clone()));
    }
    for pending in in_flight {
        matches += pending.wait()?.matches.len();
    }
    let wall = started.elapsed().as_secs_f64();
    let cpu = own_cpu_seconds() - cpu;
    anyhow::ensure!(
        matches == MATCHES_PER_PASS * replays,
        "{count} workers found {matches} matches, not {}",
        MATCHES_PER_PASS * replays
    );
    Ok(WorkersRun {
        workers: count,
        events,
        wall,
        cpu,
    })
}

/// The markdown section: the table, and the model's inputs.
pub fn render(report: &WorkersReport) -> String {
    let mut out = format!(
        "\nDetection workers: all SigmaHQ Windows rules over {} events decoded in memory (the OTRF sample replayed), evaluated by `vagt_rules::workers` as `vagt run --workers N` does; median of the rounds; {} cores.\n\n",
        report.runs.first().map_or(0, |r| r.events),
        report.cores
    );
    out.push_str(
        "| workers | wall (s) | CPU (s) | events/s | events per CPU-s | speed-up over 1 worker |\n",
    );
    out.push_str("|---:|---:|---:|---:|---:|---:|\n");
    let one = report.runs.first().map_or(1.0, WorkersRun::per_second);
    for r in &report.runs {
        out.push_str(&format!(
            "| {} | {:.2} | {:.2} | {:.0} | {:.0} | {:.2} |\n",
            r.workers,
            r.wall,
            r.cpu,
            r.per_second(),
            r.per_cpu_second(),
            r.per_second() / one
        ));
    }
    if let Some(one) = report.runs.first() {
        out.push_str(&format!(
            "\nModel inputs from the same run: evaluation {:.1} µs CPU per event; decoding {:.1} µs CPU per event on one thread per input ({:.0} events/s per input).\n",
            one.cpu / one.events as f64 * 1e6,
            report.decode_cpu_per_event * 1e6,
            1.0 / report.decode_cpu_per_event
        ));
    }
    out
}
