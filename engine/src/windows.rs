//! Windowed rules in the pipeline: turns the matches of rules that feed
//! windows into observations (event time, group and value fields,
//! evidence), reports events without a usable timestamp and late events
//! as dead letters, turns window alerts into alerts, and reads and writes
//! the state file that lets a restarted run resume.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use vagt_connectors::{DeadLetter, EventBatch, FileId, Origin, EXCERPT_BYTES};
use vagt_rules::window::{
    format_millis, read_field, Millis, Observation, RestoreReport, TimestampSpec, WindowAlert,
    WindowLimits, WindowPlan, WindowRuntime, WindowSnapshot, WindowStats,
};
use vagt_rules::{RuleInfo, RuleMatch, RuleSet};

use crate::alert::{
    alert_id, alert_rule, compact_json, severity, Alert, EventSource, EventTime, EvidenceEvent,
    FieldCandidates, WindowEvidence,
};
use crate::catalog::{Catalog, Impact};

/// One contributing event, as kept in window state.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Evidence {
    source: EventSource,
    time: Millis,
    /// Compact JSON text of the event.
    event: String,
    impact: Impact,
    /// The input's configured actor, if any.
    actor: Option<String>,
}

/// How far an input was read when the state was saved.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct InputPosition {
    /// Byte offset where the last processed event starts.
    pub offset: u64,
    /// Its line.
    pub line: u64,
    /// The file it was read from (a followed file), to tell a rotated one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file: Option<FileId>,
}

/// Default of `windows.max_ahead`: one hour.
pub const DEFAULT_MAX_AHEAD: Millis = 3_600_000;

/// The state file: input positions and window state, written together so
/// that they always agree.
#[derive(Debug, Serialize, Deserialize)]
struct StateFile {
    version: u32,
    inputs: BTreeMap<String, InputPosition>,
    windows: WindowSnapshot<Evidence>,
}

const STATE_VERSION: u32 = 1;

/// Why the state file cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    /// It cannot be read or written.
    #[error("state file {path}: {source}")]
    Io {
        /// Path.
        path: PathBuf,
        /// Cause.
        #[source]
        source: std::io::Error,
    },
    /// It is not a vagt state file of this version.
    #[error("state file {path}: {message}")]
    Invalid {
        /// Path.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
}

/// The windowed part of detection.
#[derive(Debug)]
pub struct WindowStage {
    plan: Arc<WindowPlan>,
    runtime: WindowRuntime<Evidence>,
    infos: Vec<RuleInfo>,
    timestamps: Vec<TimestampSpec>,
    input_names: Vec<String>,
    input_actors: Vec<Option<String>>,
    lateness: Millis,
    /// How far ahead of the clock an event time may be.
    max_ahead: Millis,
    positions: BTreeMap<String, InputPosition>,
    resume: Vec<Option<u64>>,
    /// Inputs that seek to their resume position.
    seeks: Vec<bool>,
    late_events: u64,
}

impl WindowStage {
    /// Events whose time is more than `max_ahead` ms ahead of the clock are
    /// not applied to windowed rules.
    pub fn with_max_ahead(mut self, max_ahead: Millis) -> Self {
        self.max_ahead = max_ahead;
        self
    }

    /// A stage for `plan`, reading the event time of input `i` with
    /// `timestamps[i]`.
    pub fn new(
        plan: WindowPlan,
        limits: WindowLimits,
        timestamps: Vec<TimestampSpec>,
        input_names: Vec<String>,
        input_actors: Vec<Option<String>>,
    ) -> Self {
        let infos = plan
            .rules
            .iter()
            .map(|r| RuleInfo {
                meta: r.rule.meta.clone(),
                logsource: r.logsource.clone(),
                origin: r.origin.clone(),
            })
            .collect();
        let resume = vec![None; input_names.len()];
        let plan = Arc::new(plan);
        WindowStage {
            runtime: WindowRuntime::new(plan.clone(), limits),
            plan,
            infos,
            timestamps,
            input_names,
            input_actors,
            lateness: limits.allowed_lateness,
            max_ahead: DEFAULT_MAX_AHEAD,
            positions: BTreeMap::new(),
            seeks: vec![false; resume.len()],
            resume,
            late_events: 0,
        }
    }

    /// The plan it runs.
    pub fn plan(&self) -> &WindowPlan {
        &self.plan
    }

    /// Runtime counters.
    pub fn stats(&self) -> WindowStats {
        self.runtime.stats()
    }

    /// Observations waiting for the watermark.
    pub fn pending(&self) -> usize {
        self.runtime.pending()
    }

    /// The watermark (event time, ms), once events have been seen.
    pub fn watermark(&self) -> Option<Millis> {
        self.runtime.watermark()
    }

    /// Events refused as late (an event feeding several windows counts once).
    pub fn late_events(&self) -> u64 {
        self.late_events
    }

    /// Group keys held and evictions, per windowed rule (id or title, keys,
    /// evicted).
    pub fn state_per_rule(&self) -> Vec<(&str, usize, u64)> {
        let keys = self.runtime.keys_per_rule();
        let evicted = self.runtime.evictions_per_rule();
        self.infos
            .iter()
            .zip(keys)
            .zip(evicted)
            .map(|((info, k), e)| (info.meta.id.as_deref().unwrap_or(&info.meta.title), k, e))
            .collect()
    }

    /// Restores state saved by an earlier run: window state, and for each
    /// file input the position to resume after (a file now shorter than
    /// that position, or another file than the one read, is read from the
    /// start; a `.gz` file resumes only if it is the same file). `files` are the inputs' sizes and identities now.
    pub fn restore(
        &mut self,
        path: &Path,
        files: &[(Option<u64>, Option<FileId>)],
    ) -> Result<Option<RestoreReport>, StateError> {
        let bytes = match std::fs::read(path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(source) => {
                return Err(StateError::Io {
                    path: path.to_path_buf(),
                    source,
                })
            }
        };
        let file: StateFile = serde_json::from_slice(&bytes).map_err(|e| StateError::Invalid {
            path: path.to_path_buf(),
            message: format!("not a vagt state file: {e}"),
        })?;
        if file.version != STATE_VERSION {
            return Err(StateError::Invalid {
                path: path.to_path_buf(),
                message: format!(
                    "version {} (this vagt reads version {STATE_VERSION})",
                    file.version
                ),
            });
        }
        for (index, name) in self.input_names.iter().enumerate() {
            let Some(position) = file.inputs.get(name) else {
                continue;
            };
            let (size, id) = files[index];
            let grown_or_same = if vagt_connectors::is_gzip(std::path::Path::new(name)) {
                // Offsets count decompressed bytes, and a compressed file
                // is not appended to: only its identity can tell.
                position.file.is_some() && position.file == id
            } else {
                size.is_some_and(|size| size > position.offset)
            };
            let same_file = position.file.is_none() || position.file == id;
            if name != "stdin" && grown_or_same && same_file {
                self.resume[index] = Some(position.offset);
            }
        }
        self.positions = file.inputs;
        Ok(Some(self.runtime.restore(file.windows)))
    }

    /// Where input `index` resumes, if an earlier run read part of it:
    /// the start of the last event it processed (skipped again by
    /// [`WindowStage::skip_processed`]).
    pub fn resume_at(&self, index: usize) -> Option<(Origin, Option<FileId>)> {
        let offset = self.resume[index]?;
        let position = self.positions.get(&self.input_names[index]);
        let line = position.map_or(1, |p| p.line);
        Some((Origin { line, offset }, position.and_then(|p| p.file)))
    }

    /// Input `index` seeks to where [`WindowStage::resume_at`] says,
    /// instead of reading from the start.
    pub fn seeking(&mut self, index: usize) {
        self.seeks[index] = true;
    }

    /// Drops the rows of a batch that an earlier run already processed.
    /// Returns None when nothing is left.
    pub fn skip_processed(&mut self, input: usize, mut batch: EventBatch) -> Option<EventBatch> {
        let Some(after) = self.resume[input] else {
            return Some(batch);
        };
        // An input that seeks to its position re-reads only the event
        // there, in its first batch; later rows (a rotated file starting
        // over at offset 0) are all new.
        if self.seeks[input] {
            self.resume[input] = None;
        }
        let keep_from = batch.origins.partition_point(|o| o.offset <= after);
        if keep_from == batch.origins.len() {
            return None;
        }
        self.resume[input] = None;
        if keep_from > 0 {
            let rows = batch.batch.num_rows() - keep_from;
            batch.batch = batch.batch.slice(keep_from, rows);
            batch.origins.drain(..keep_from);
        }
        Some(batch)
    }

    /// Feeds the matches of a batch to the windows. Rows whose time cannot
    /// be read, and late rows, come back as dead letters (they were still
    /// evaluated by the single-event rules).
    pub fn observe(
        &mut self,
        set: &RuleSet,
        catalog: &Catalog,
        fields: &FieldCandidates,
        input: usize,
        batch: &EventBatch,
        matches: &[RuleMatch],
    ) -> Vec<DeadLetter> {
        if let Some(last) = batch.origins.last() {
            self.positions.insert(
                self.input_names[input].clone(),
                InputPosition {
                    offset: last.offset,
                    line: last.line,
                    file: last.file,
                },
            );
        }
        let plan = self.plan.clone();
        let feeding: Vec<&RuleMatch> = matches
            .iter()
            .filter(|m| !plan.base_feeds(m.rule).is_empty())
            .collect();
        let mut dead = Vec::new();
        if feeding.is_empty() {
            return dead;
        }
        let mut rows: Vec<usize> = feeding.iter().map(|m| m.row).collect();
        rows.dedup();
        let times = self.timestamps[input].read(&batch.batch, &rows);
        let now = chrono::Utc::now().timestamp_millis();
        let raw = batch.raw();
        let mut matched = feeding.iter().peekable();
        for (row, time) in rows.into_iter().zip(times) {
            let text = raw
                .as_ref()
                .map(|r| compact_json(r.value(row)).into_owned())
                .unwrap_or_else(|| "{}".into());
            let origin = &batch.origins[row];
            let letter = |reason: String| DeadLetter {
                source: origin.source.to_string(),
                line: origin.line,
                offset: origin.offset,
                reason,
                excerpt: text.chars().take(EXCERPT_BYTES).collect(),
            };
            let rules: Vec<usize> = std::iter::from_fn(|| matched.next_if(|m| m.row == row))
                .map(|m| m.rule)
                .collect();
            let time = match time {
                Ok(t) if t > now + self.max_ahead => {
                    // One sender's clock must not move everyone's watermark.
                    dead.push(letter(format!(
                        "event time {} is more than {} s ahead of the clock ({}); not applied to windowed rules",
                        format_millis(t),
                        self.max_ahead / 1000,
                        format_millis(now)
                    )));
                    continue;
                }
                Ok(t) => t,
                Err(e) => {
                    dead.push(letter(format!("{e}; not applied to windowed rules")));
                    continue;
                }
            };
            let tie = fnv1a(text.as_bytes());
            let facts = fields.facts(&batch.batch, row);
            let mut late = None;
            let sender = origin
                .actor
                .as_deref()
                .map(str::to_string)
                .or_else(|| self.input_actors[input].clone());
            for rule in rules {
                let evidence = Evidence {
                    source: EventSource {
                        input: origin.source.to_string(),
                        line: origin.line,
                        offset: origin.offset,
                    },
                    time,
                    event: text.clone(),
                    impact: catalog.impact(&facts, &set.rule(rule).logsource, sender.as_deref()),
                    actor: sender.clone(),
                };
                for feed in plan.base_feeds(rule) {
                    let read =
                        |sources: &[vagt_rules::window::FieldSource]| -> Vec<Option<String>> {
                            sources
                                .iter()
                                .map(|s| read_field(&batch.batch, s, row))
                                .collect()
                        };
                    // Organisations never share a window: their addresses
                    // and host names may well overlap.
                    let mut group = read(&feed.group);
                    group.push(evidence.actor.clone());
                    let observation = Observation {
                        time,
                        tie,
                        window: feed.window,
                        slot: feed.slot,
                        group,
                        values: read(&feed.values),
                        evidence: vec![evidence.clone()],
                    };
                    if let Err(e) = self.runtime.ingest(observation) {
                        late = Some(e.watermark);
                    }
                }
            }
            if let Some(watermark) = late {
                self.late_events += 1;
                dead.push(letter(format!(
                    "late event: its time {} is before the watermark {} (allowed lateness {} s); not applied to windowed rules",
                    format_millis(time),
                    format_millis(watermark),
                    self.lateness as f64 / 1000.0
                )));
            }
        }
        dead
    }

    /// Applies what the watermark allows; returns the alerts.
    pub fn release(&mut self, detected_at: &str) -> Vec<Alert> {
        let mut fired = Vec::new();
        self.runtime.release(&mut fired);
        self.alerts(fired, detected_at)
    }

    /// Events waiting for the watermark.
    pub fn has_pending(&self) -> bool {
        self.runtime.pending() > 0
    }

    /// How long the input may be idle (wall clock) before what waits for
    /// the watermark is applied anyway: the allowed lateness, at least 1 s.
    pub fn idle_after(&self) -> std::time::Duration {
        std::time::Duration::from_millis(self.lateness.max(1_000) as u64)
    }

    /// End of input, or idle input: applies everything still waiting.
    pub fn finish(&mut self, detected_at: &str) -> Vec<Alert> {
        let mut fired = Vec::new();
        self.runtime.finish(&mut fired);
        self.alerts(fired, detected_at)
    }

    /// The state file's content now.
    pub fn snapshot(&self) -> Vec<u8> {
        let file = StateFile {
            version: STATE_VERSION,
            inputs: self.positions.clone(),
            windows: self.runtime.snapshot(),
        };
        serde_json::to_vec(&file).expect("window state serialises")
    }

    fn alerts(&self, fired: Vec<WindowAlert<Evidence>>, detected_at: &str) -> Vec<Alert> {
        fired
            .into_iter()
            .map(|a| self.alert(a, detected_at))
            .collect()
    }

    fn alert(&self, fired: WindowAlert<Evidence>, detected_at: &str) -> Alert {
        let planned = &self.plan.rules[fired.window];
        let info = &self.infos[fired.window];
        let rule = alert_rule(info);
        let mut impact = Impact::default();
        for e in &fired.evidence {
            merge(&mut impact, &e.impact);
        }
        let group: serde_json::Map<String, serde_json::Value> = fired
            .group
            .iter()
            .map(|(k, v)| {
                (
                    k.clone(),
                    v.clone().map_or(serde_json::Value::Null, Into::into),
                )
            })
            .collect();
        let last = fired.evidence.last();
        let actor = last.and_then(|e| e.actor.as_deref());
        let identity = format!(
            "{}|{}|{}{}",
            serde_json::Value::Object(group.clone()),
            fired.first,
            fired.last,
            actor.map(|a| format!("|{a}")).unwrap_or_default()
        );
        let events: Vec<EvidenceEvent> = fired
            .evidence
            .iter()
            .filter_map(|e| {
                Some(EvidenceEvent {
                    source: e.source.clone(),
                    time: format_millis(e.time),
                    event: RawValue::from_string(e.event.clone()).ok()?,
                })
            })
            .collect();
        let omitted = fired.count.saturating_sub(events.len() as u64);
        Alert {
            id: alert_id(&format!("{}|{}", rule.id, planned.key), &identity),
            severity: severity(info.meta.level, &impact),
            actor: last
                .and_then(|e| e.actor.clone())
                .or_else(|| impact.actors.first().cloned()),
            actors: impact.actors.clone(),
            critical_processes: impact.processes.clone(),
            assets: impact.assets.clone(),
            event_time: EventTime {
                first: Some(format_millis(fired.first)),
                last: Some(format_millis(fired.last)),
            },
            detected_at: detected_at.to_string(),
            group: Some(group),
            count: fired.count,
            source: last.map(|e| e.source.clone()).unwrap_or(EventSource {
                input: String::new(),
                line: 0,
                offset: 0,
            }),
            event: last.and_then(|e| RawValue::from_string(e.event.clone()).ok()),
            evidence: Some(WindowEvidence {
                kind: planned.rule.kind.name(),
                value: fired.value,
                detail: fired.detail,
                events,
                omitted,
            }),
            rule,
        }
    }
}

fn merge(into: &mut Impact, from: &Impact) {
    for (to, items) in [
        (&mut into.assets, &from.assets),
        (&mut into.actors, &from.actors),
        (&mut into.processes, &from.processes),
    ] {
        for item in items {
            if !to.contains(item) {
                to.push(item.clone());
            }
        }
    }
    into.max_criticality = into.max_criticality.max(from.max_criticality);
}

/// A stable 64-bit hash of the event text: orders events with equal
/// times the same way in every run.
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

/// Writes the state file atomically (a temporary file, then a rename).
pub fn write_state(path: &Path, bytes: &[u8]) -> Result<(), StateError> {
    let io = |source| StateError::Io {
        path: path.to_path_buf(),
        source,
    };
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent).map_err(io)?;
    }
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, bytes).map_err(io)?;
    std::fs::rename(&tmp, path).map_err(io)
}
