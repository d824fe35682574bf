//! The peer to beat, measured in the same run: RSigma's CLI
//! (`rsigma engine eval -r RULES -e @EVENTS`) and vagt over the same
//! events and the same rule files. For each: wall time, CPU seconds (user
//! and system, from the kernel's account of the waited-for child), events
//! per CPU-second, peak RSS (VmHWM, polled), matches, and matches per rule,
//! so that where the engines disagree the report can say where.
//!
//! RSigma is built from source outside the repository (see
//! `benches/README.md`); nothing of it is vendored.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};

use anyhow::Context;

/// One engine over the events once.
#[derive(Debug, Clone)]
pub struct EngineRun {
    pub engine: String,
    pub wall_s: f64,
    pub cpu_s: f64,
    pub events: u64,
    pub matches: u64,
    pub peak_rss_mb: f64,
    /// Matches by rule id.
    pub per_rule: BTreeMap<String, u64>,
}

impl EngineRun {
    pub fn events_per_cpu_s(&self) -> f64 {
        self.events as f64 / self.cpu_s
    }

    pub fn events_per_s(&self) -> f64 {
        self.events as f64 / self.wall_s
    }
}

/// vagt over `events` (JSON lines, `count` of them) with the rules in
/// `rules`, as a user runs it: start-up included, alerts to a file; every
/// rules file parsed, or with `rules_cache` those it keeps taken from it.
pub fn vagt_run(
    vagt: &Path,
    workers: Option<usize>,
    rules: &Path,
    (events, count): (&Path, u64),
    rules_cache: Option<&Path>,
    work: &Path,
) -> anyhow::Result<EngineRun> {
    let alerts = work.join("peer-vagt-alerts.jsonl");
    let mut command = crate::vagt_run_command_cached(vagt, workers, rules_cache);
    command
        .arg("--rules")
        .arg(rules)
        .arg("--input")
        .arg(events)
        .arg("--output")
        .arg(&alerts)
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    let (wall_s, cpu_s, peak_rss_mb) = crate::measure(command, |_| Ok(()))?;
    let mut tally = Tally::default();
    for line in BufReader::new(std::fs::File::open(&alerts)?).lines() {
        let alert: serde_json::Value = serde_json::from_str(&line?)?;
        tally.count(alert["rule"]["id"].as_str().unwrap_or(""));
    }
    let engine = match rules_cache {
        Some(_) => "vagt, rules cache warm",
        None => "vagt, rules parsed",
    };
    Ok(tally.into_run(engine, (wall_s, cpu_s, peak_rss_mb), count))
}

/// Matches, in all and by rule id.
#[derive(Debug, Default)]
struct Tally {
    matches: u64,
    per_rule: BTreeMap<String, u64>,
}

impl Tally {
    fn count(&mut self, rule: &str) {
        *self.per_rule.entry(rule.to_string()).or_insert(0) += 1;
        self.matches += 1;
    }

    fn into_run(
        self,
        engine: &str,
        (wall_s, cpu_s, peak_rss_mb): (f64, f64, f64),
        events: u64,
    ) -> EngineRun {
        EngineRun {
            engine: engine.into(),
            wall_s,
            cpu_s,
            events,
            matches: self.matches,
            peak_rss_mb,
            per_rule: self.per_rule,
        }
    }
}

/// RSigma's CLI over the same, its matches read from its stdout (one JSON
/// object per match).
pub fn rsigma_run(
    rsigma: &Path,
    rules: &Path,
    events: &Path,
    count: u64,
) -> anyhow::Result<EngineRun> {
    let mut command = Command::new(rsigma);
    command
        .args(["engine", "eval", "-r"])
        .arg(rules)
        .arg("-e")
        .arg(format!("@{}", events.display()))
        .stdout(Stdio::piped())
        .stderr(Stdio::null());
    let mut tally = Tally::default();
    let measured = crate::measure(command, |child| {
        let stdout = child.stdout.take().context("rsigma's stdout")?;
        for line in BufReader::new(stdout).lines() {
            let line = line?;
            let Ok(hit) = serde_json::from_str::<serde_json::Value>(&line) else {
                continue;
            };
            tally.count(hit["rule_id"].as_str().unwrap_or(""));
        }
        Ok(())
    })?;
    Ok(tally.into_run("RSigma", measured, count))
}

/// The median run of each engine by CPU seconds.
pub fn median(runs: &mut [EngineRun]) -> EngineRun {
    runs.sort_by(|a, b| a.cpu_s.total_cmp(&b.cpu_s));
    runs[runs.len() / 2].clone()
}

/// The comparison as markdown: vagt's runs (rules parsed, and taken
/// from the rules cache) and RSigma's, the ratios, and the rules whose
/// match counts differ (the largest differences first).
pub fn render(vagts: &[EngineRun], rsigma: &EngineRun, rules: usize, repeats: usize) -> String {
    let vagt = &vagts[0];
    let mut out = format!(
        "\nAgainst RSigma: the OTRF sample ({} events) once, {rules} SigmaHQ Windows rule files, both engines \
         started from their CLI (start-up and rule compilation included; vagt with every rules file parsed, \
         as on a first run, and with them taken from its rules cache, as on every later run), median of \
         {repeats} rounds by CPU seconds.\n\n",
        vagt.events
    );
    out.push_str(
        "| engine | wall (s) | CPU (s) | events/s | events per CPU-s | peak RSS (MB) | matches |\n",
    );
    out.push_str("|---|---:|---:|---:|---:|---:|---:|\n");
    for r in vagts.iter().chain([rsigma]) {
        out.push_str(&format!(
            "| {} | {:.2} | {:.2} | {:.0} | {:.0} | {:.0} | {} |\n",
            r.engine,
            r.wall_s,
            r.cpu_s,
            r.events_per_s(),
            r.events_per_cpu_s(),
            r.peak_rss_mb,
            r.matches
        ));
    }
    out.push('\n');
    for v in vagts {
        out.push_str(&format!(
            "{} / RSigma: {:.2}x events per CPU-second, {:.2}x events per wall second, {:.2}x peak RSS.\n",
            v.engine,
            v.events_per_cpu_s() / rsigma.events_per_cpu_s(),
            v.events_per_s() / rsigma.events_per_s(),
            v.peak_rss_mb / rsigma.peak_rss_mb
        ));
    }
    let mut differ: Vec<(&String, u64, u64)> = vagt
        .per_rule
        .keys()
        .chain(rsigma.per_rule.keys())
        .collect::<std::collections::BTreeSet<_>>()
        .into_iter()
        .map(|id| {
            (
                id,
                vagt.per_rule.get(id).copied().unwrap_or(0),
                rsigma.per_rule.get(id).copied().unwrap_or(0),
            )
        })
        .filter(|(_, v, r)| v != r)
        .collect();
    differ.sort_by_key(|(id, v, r)| (std::cmp::Reverse(v.abs_diff(*r)), (*id).clone()));
    out.push_str(&format!(
        "\nRules whose matches differ: {} (the 15 largest differences):\n\n| rule id | vagt | RSigma |\n|---|---:|---:|\n",
        differ.len()
    ));
    for (id, v, r) in differ.iter().take(15) {
        out.push_str(&format!("| {id} | {v} | {r} |\n"));
    }
    out
}
