//! Windowed rules in the pipeline: turns the matches of rules that feed
//! windows into observations (event time, source, group and value fields,
//! evidence), reports events without a usable timestamp and late events
//! as dead letters, orders what finite inputs bring by event time before
//! applying it, turns window alerts into alerts, and reads and writes the
//! state file that lets a restarted run resume.
//!
//! ```text
//!  matches of a batch ──► observations ─┬─ live input (stdin, tail, listener, Kafka):
//!                                       │    its source = (input, organisation, host) ──► runtime
//!                                       └─ finite input (file, folder, .gz): HistorySorter;
//!                                            once every finite input has ended, replayed in
//!                                            event-time order ──► runtime
//! ```

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use arrow_array::cast::AsArray;
use arrow_array::{Array, RecordBatch};
use arrow_schema::DataType;
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use vagt_connectors::{DeadLetter, EventBatch, FileId, Origin, EXCERPT_BYTES};
use vagt_rules::window::{
    format_millis, read_field, ClockReading, HistoryError, HistoryLimits, HistorySorter,
    HistoryStats, Millis, Observation, RestoreReport, SourceId, SourceKey, TimestampSpec,
    WindowAlert, WindowLimits, WindowPlan, WindowRuntime, WindowSnapshot, WindowStats,
};
use vagt_rules::{RuleInfo, RuleMatch, RuleSet};

use crate::alert::{
    compact_json, now_rfc3339, Alert, AlertBody, EventSource, EventTime, EvidenceEvent,
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

/// What a restore brought back.
#[derive(Debug)]
pub struct Restored {
    /// What the window state kept and dropped.
    pub report: RestoreReport,
    /// Why the previous snapshot was used instead of the state file.
    pub note: Option<String>,
    /// The warning service's state, as saved.
    pub warning: Option<Box<RawValue>>,
}

/// The previous good snapshot, kept beside the state file.
pub fn previous_snapshot(path: &Path) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(".prev");
    PathBuf::from(name)
}

/// Reads a state file: `None` if there is none.
fn read_state(path: &Path) -> Result<Option<StateFile>, StateError> {
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
    let invalid = |message: String| StateError::Invalid {
        path: path.to_path_buf(),
        message,
    };
    let version: StateVersion = serde_json::from_slice(&bytes)
        .map_err(|e| invalid(format!("not a vagt state file (damaged?): {e}")))?;
    if version.version != STATE_VERSION {
        return Err(StateError::Version {
            path: path.to_path_buf(),
            version: version.version,
        });
    }
    serde_json::from_slice(&bytes)
        .map(Some)
        .map_err(|e| invalid(format!("not a vagt state file (damaged?): {e}")))
}

/// An input as the window stage sees it.
#[derive(Debug, Clone)]
pub struct StageInput {
    /// Its name (for positions, sources and messages).
    pub name: String,
    /// The organisation it stamps on its events, if any.
    pub actor: Option<String>,
    /// Read to its end (a file): its events are ordered by event time
    /// before they are applied.
    pub finite: bool,
}

/// The version of a state file, read before the rest.
#[derive(Debug, Deserialize)]
struct StateVersion {
    version: u32,
}

/// The state file: input positions and window state, written together so
/// that they always agree.
#[derive(Debug, Serialize, Deserialize)]
struct StateFile {
    version: u32,
    inputs: BTreeMap<String, InputPosition>,
    windows: WindowSnapshot<Evidence>,
    /// The warning service's state (suppression groups, campaign
    /// tracks), added by delivery.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    warning: Option<Box<RawValue>>,
}

/// Version 2: sources and their progress, keys with their contributors.
const STATE_VERSION: u32 = 2;

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
    /// It is not a vagt state file.
    #[error("state file {path}: {message}")]
    Invalid {
        /// Path.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// It is a state file of another version.
    #[error("state file {path}: version {version} (this vagt reads version {STATE_VERSION}; remove the file to start afresh)")]
    Version {
        /// Path.
        path: PathBuf,
        /// Its version.
        version: u32,
    },
}

/// What alerts of each windowed rule say about it.
fn rule_infos(plan: &WindowPlan) -> Vec<RuleInfo> {
    plan.rules
        .iter()
        .map(|r| RuleInfo {
            meta: r.rule.meta.clone(),
            logsource: r.logsource.clone(),
            origin: r.origin.clone(),
        })
        .collect()
}

/// The windowed part of detection.
#[derive(Debug)]
pub struct WindowStage {
    plan: Arc<WindowPlan>,
    runtime: WindowRuntime<Evidence>,
    infos: Vec<RuleInfo>,
    timestamps: Vec<TimestampSpec>,
    /// Columns naming an event's host (the profile's).
    host_columns: Vec<String>,
    input_names: Vec<String>,
    input_actors: Vec<Option<String>>,
    /// Inputs read to their end (files): their observations are ordered by
    /// event time before they are applied.
    finite: Vec<bool>,
    /// Finite inputs not yet ended.
    finite_open: usize,
    /// What the finite inputs brought, until all have ended.
    history: Option<HistorySorter<Observation<Evidence>>>,
    history_limits: HistoryLimits,
    history_stats: HistoryStats,
    lateness: Millis,
    /// How far ahead of the clock an event time may be.
    max_ahead: Millis,
    positions: BTreeMap<String, InputPosition>,
    /// Positions of finite inputs whose observations are not yet applied:
    /// saved once they are.
    held_positions: BTreeMap<String, InputPosition>,
    resume: Vec<Option<u64>>,
    /// Inputs that seek to their resume position.
    seeks: Vec<bool>,
    /// Late events per input.
    late: Vec<u64>,
    /// Events of a history too large to order.
    unordered: u64,
    started: Instant,
}

/// What the windows did in a run, for the summary.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct WindowReport {
    /// Events refused as late, per input (an event feeding several windows
    /// counts once).
    pub late: BTreeMap<String, u64>,
    /// Events that reached a window after later ones (a source idle or new
    /// to the window), applied at the window's latest time.
    pub reordered: u64,
    /// Events of files ordered by event time before they were applied.
    pub ordered: u64,
    /// Bytes the ordering wrote to disk.
    pub spilled_bytes: u64,
    /// Events of a history too large to order (beyond memory and spill):
    /// dead letters.
    pub unordered: u64,
    /// Sources whose progress is tracked.
    pub sources: usize,
    /// Hosts beyond `windows.max_sources`, counted under their input's
    /// source.
    pub sources_over_limit: u64,
}

impl WindowStage {
    /// Events whose time is more than `max_ahead` ms ahead of the clock are
    /// not applied to windowed rules.
    pub fn with_max_ahead(mut self, max_ahead: Millis) -> Self {
        self.max_ahead = max_ahead;
        self
    }

    /// Finite inputs' observations are ordered within these limits.
    pub fn with_history(mut self, limits: HistoryLimits) -> Self {
        self.history = self
            .finite
            .iter()
            .any(|f| *f)
            .then(|| HistorySorter::new(limits.clone()));
        self.history_limits = limits;
        self
    }

    /// A stage for `plan`, reading the event time of input `i` with
    /// `timestamps[i]` and the host from `host_columns`; `finite[i]` says
    /// whether input `i` is read to its end (its events are ordered before
    /// they are applied).
    pub fn new(
        plan: WindowPlan,
        limits: WindowLimits,
        timestamps: Vec<TimestampSpec>,
        host_columns: Vec<String>,
        inputs: Vec<StageInput>,
    ) -> Self {
        let infos = rule_infos(&plan);
        let plan = Arc::new(plan);
        // Without windowed rules (a state file for positions only) nothing
        // needs ordering.
        let finite: Vec<bool> = inputs
            .iter()
            .map(|i| i.finite && !plan.rules.is_empty())
            .collect();
        let history_limits = HistoryLimits {
            memory_bytes: 256 << 20,
            spill_bytes: 16 << 30,
            spill_dir: std::env::temp_dir(),
        };
        WindowStage {
            runtime: WindowRuntime::new(plan.clone(), limits),
            plan,
            infos,
            timestamps,
            host_columns,
            finite_open: finite.iter().filter(|f| **f).count(),
            history: finite
                .iter()
                .any(|f| *f)
                .then(|| HistorySorter::new(history_limits.clone())),
            history_limits,
            history_stats: HistoryStats::default(),
            lateness: limits.allowed_lateness,
            max_ahead: DEFAULT_MAX_AHEAD,
            positions: BTreeMap::new(),
            held_positions: BTreeMap::new(),
            resume: vec![None; inputs.len()],
            seeks: vec![false; inputs.len()],
            late: vec![0; inputs.len()],
            input_names: inputs.iter().map(|i| i.name.clone()).collect(),
            input_actors: inputs.into_iter().map(|i| i.actor).collect(),
            finite,
            unordered: 0,
            started: Instant::now(),
        }
    }

    /// Whether a reload may change its windowed rules now: not while files'
    /// events wait to be ordered by event time (they refer to the rules
    /// they were observed for).
    ///
    /// # Errors
    /// Files are still being ordered.
    pub fn can_replan(&self) -> Result<(), String> {
        match &self.history {
            Some(history) if !history.is_empty() => Err(
                "windowed rules changed while files' events wait to be ordered by event time: reload once the files are read"
                    .into(),
            ),
            _ => Ok(()),
        }
    }

    /// Takes a reloaded version's windowed rules (see
    /// [`WindowStage::can_replan`]): state of unchanged rules is kept.
    pub fn replan(&mut self, plan: WindowPlan) -> RestoreReport {
        self.infos = rule_infos(&plan);
        let plan = Arc::new(plan);
        self.plan = plan.clone();
        let wall = self.wall();
        self.runtime.replan(plan, wall)
    }

    /// The plan it runs.
    pub fn plan(&self) -> &WindowPlan {
        &self.plan
    }

    /// Runtime counters.
    pub fn stats(&self) -> WindowStats {
        self.runtime.stats()
    }

    /// Observations waiting for their sources.
    pub fn pending(&self) -> usize {
        self.runtime.pending()
    }

    /// Sources and how far they are.
    pub fn clock(&self) -> ClockReading {
        self.runtime.clock()
    }

    /// Events refused as late (an event feeding several windows counts once).
    pub fn late_events(&self) -> u64 {
        self.late.iter().sum()
    }

    /// Late events per input.
    pub fn late_per_input(&self) -> impl Iterator<Item = (&str, u64)> {
        self.input_names
            .iter()
            .map(String::as_str)
            .zip(self.late.iter().copied())
    }

    /// What the windows did, for the summary.
    pub fn report(&self) -> WindowReport {
        let stats = self.runtime.stats();
        let history = self
            .history
            .as_ref()
            .map_or(self.history_stats, |h| h.stats());
        WindowReport {
            late: self
                .late_per_input()
                .filter(|(_, n)| *n > 0)
                .map(|(name, n)| (name.to_string(), n))
                .collect(),
            reordered: stats.reordered,
            ordered: history.items,
            spilled_bytes: history.spilled_bytes,
            unordered: self.unordered,
            sources: self.runtime.clock().sources,
            sources_over_limit: stats.sources_over_limit,
        }
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

    /// Wall-clock ms since the stage started, for sources' idleness.
    fn wall(&self) -> u64 {
        self.started.elapsed().as_millis() as u64
    }

    /// Restores state saved by an earlier run: window state, sources'
    /// progress, and for each file input the position to resume after (a
    /// file now shorter than that position, or another file than the one
    /// read, is read from the start; a `.gz` file resumes only if it is
    /// the same file). `files` are the inputs' sizes and identities now.
    ///
    /// A state file that is missing beside a previous snapshot, or that
    /// cannot be read as one (a crash while it was written), gives way to
    /// the previous snapshot, and the returned note says so; without a
    /// usable one it is an error, never a silent fresh start.
    pub fn restore(
        &mut self,
        path: &Path,
        files: &[(Option<u64>, Option<FileId>)],
    ) -> Result<Option<Restored>, StateError> {
        let previous = previous_snapshot(path);
        let (file, note) = match read_state(path) {
            Ok(Some(file)) => (file, None),
            Ok(None) => match read_state(&previous) {
                Ok(Some(file)) => (
                    file,
                    Some(format!(
                        "state file {} is missing; resumed from the previous snapshot {}",
                        path.display(),
                        previous.display()
                    )),
                ),
                Ok(None) => return Ok(None),
                Err(e) => return Err(e),
            },
            Err(e @ StateError::Io { .. }) => return Err(e),
            Err(damaged) => match read_state(&previous) {
                Ok(Some(file)) => (
                    file,
                    Some(format!(
                        "{damaged}; resumed from the previous snapshot {}",
                        previous.display()
                    )),
                ),
                _ => return Err(damaged),
            },
        };
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
        let wall = self.wall();
        Ok(Some(Restored {
            report: self.runtime.restore(file.windows, wall),
            note,
            warning: file.warning,
        }))
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

    /// Feeds the matches of a batch to the windows (a finite input's to
    /// its ordering). Rows whose time cannot be read, late rows and rows
    /// of a history too large to order come back as dead letters (they
    /// were still evaluated by the single-event rules).
    ///
    /// # Errors
    /// The ordering cannot write to its spill folder.
    pub fn observe(
        &mut self,
        set: &RuleSet,
        catalog: &Catalog,
        fields: &FieldCandidates,
        input: usize,
        batch: &EventBatch,
        matches: &[RuleMatch],
    ) -> Result<Vec<DeadLetter>, HistoryError> {
        let finite = self.finite[input];
        if let Some(last) = batch.origins.last() {
            let positions = if finite {
                &mut self.held_positions
            } else {
                &mut self.positions
            };
            positions.insert(
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
            return Ok(dead);
        }
        let wall = self.wall();
        self.runtime.set_wall(wall);
        let mut rows: Vec<usize> = feeding.iter().map(|m| m.row).collect();
        rows.dedup();
        let times = self.timestamps[input].read(&batch.batch, &rows);
        let hosts = HostColumn::find(&batch.batch, &self.host_columns);
        let now = chrono::Utc::now().timestamp_millis();
        let raw = batch.raw();
        let mut matched = feeding.iter().peekable();
        let mut sources: HashMap<(Option<&str>, Option<&str>), SourceId> = HashMap::new();
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
                Ok(t) if t > now.saturating_add(self.max_ahead) => {
                    // One sender's clock must not move anyone's progress.
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
            let sender = origin
                .actor
                .as_deref()
                .or(self.input_actors[input].as_deref());
            let host = hosts.as_ref().and_then(|h| h.value(row));
            let mut refused = None;
            let mut late = false;
            for rule in rules {
                let evidence = Evidence {
                    source: EventSource {
                        input: origin.source.to_string(),
                        line: origin.line,
                        offset: origin.offset,
                    },
                    time,
                    event: text.clone(),
                    impact: catalog.impact(&facts, &set.rule(rule).logsource, sender),
                    actor: sender.map(str::to_string),
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
                    if finite {
                        if let Some(history) = self.history.as_mut() {
                            let weight = observation_weight(&observation);
                            let order = (
                                time,
                                tie,
                                ((feed.window as u64) << 16)
                                    | (0xffff - feed.slot.min(0xffff) as u64),
                                input as u64,
                                origin.offset,
                            );
                            if let Err(too_large) = history.push(order, observation, weight)? {
                                refused = Some(format!(
                                    "not applied to windowed rules: the files' events to order by time exceed windows.history_memory_bytes ({}) and windows.history_spill_bytes ({}) on disk",
                                    self.history_limits.memory_bytes, too_large.spill_bytes
                                ));
                            }
                            continue;
                        }
                    }
                    let source = *sources.entry((sender, host)).or_insert_with(|| {
                        self.runtime.source(SourceKey {
                            input: self.input_names[input].clone(),
                            actor: sender.map(str::to_string),
                            host: host.map(str::to_string),
                        })
                    });
                    if let Err(e) = self.runtime.ingest(observation, source) {
                        refused = Some(format!(
                            "late event: its time {} is before the watermark {} of its source ({}{}{}; allowed lateness {} s); not applied to windowed rules",
                            format_millis(time),
                            format_millis(e.watermark),
                            self.input_names[input],
                            sender.map(|a| format!(", organisation {a}")).unwrap_or_default(),
                            host.map(|h| format!(", host {h}")).unwrap_or_default(),
                            self.lateness as f64 / 1000.0
                        ));
                        late = true;
                    }
                }
            }
            if let Some(reason) = refused {
                if late {
                    self.late[input] += 1;
                } else {
                    self.unordered += 1;
                }
                dead.push(letter(reason));
            }
        }
        Ok(dead)
    }

    /// Applies what the sources allow; returns the alerts.
    pub fn release(&mut self, detected_at: &str) -> Vec<Alert> {
        let mut fired = Vec::new();
        self.runtime.release(&mut fired);
        self.alerts(fired, detected_at)
    }

    /// A clock tick: sources idle for `idle_after` stop holding back.
    pub fn tick(&mut self, detected_at: &str) -> Vec<Alert> {
        let mut fired = Vec::new();
        let wall = self.wall();
        self.runtime.tick(wall, &mut fired);
        self.alerts(fired, detected_at)
    }

    /// Input `index` has ended: its sources hold nothing back any more;
    /// once every finite input has ended, their events are applied in
    /// event-time order. Alerts go to `send` as they come.
    ///
    /// # Errors
    /// The ordering's spill files cannot be read back.
    pub fn input_ended(
        &mut self,
        index: usize,
        send: &mut dyn FnMut(Vec<Alert>),
    ) -> Result<(), HistoryError> {
        if self.finite[index] {
            self.finite_open = self.finite_open.saturating_sub(1);
            if self.finite_open == 0 {
                self.replay_history(send)?;
            }
            return Ok(());
        }
        let mut fired = Vec::new();
        self.runtime
            .finish_input(&self.input_names[index], &mut fired);
        send(self.alerts(fired, &now_rfc3339()));
        Ok(())
    }

    /// Applies the finite inputs' events in event-time order, each as its
    /// organisation's history source.
    fn replay_history(&mut self, send: &mut dyn FnMut(Vec<Alert>)) -> Result<(), HistoryError> {
        let Some(history) = self.history.take() else {
            return Ok(());
        };
        self.history_stats = history.stats();
        let mut sources: HashMap<Option<String>, SourceId> = HashMap::new();
        let mut fired = Vec::new();
        let mut applied = 0usize;
        for item in history.drain()? {
            let (_, observation) = item?;
            let actor = observation.evidence.first().and_then(|e| e.actor.clone());
            let source = *sources
                .entry(actor.clone())
                .or_insert_with(|| self.runtime.history_source(actor));
            // Ordered: never late.
            let _ = self.runtime.ingest(observation, source);
            applied += 1;
            if applied.is_multiple_of(4096) {
                self.runtime.release(&mut fired);
                if !fired.is_empty() {
                    send(self.alerts(std::mem::take(&mut fired), &now_rfc3339()));
                }
            }
        }
        for source in sources.into_values() {
            self.runtime.finish_source(source);
        }
        self.runtime.release(&mut fired);
        send(self.alerts(fired, &now_rfc3339()));
        // Their events are applied: now the files' positions may be saved.
        self.positions
            .extend(std::mem::take(&mut self.held_positions));
        Ok(())
    }

    /// End of input: orders and applies what the files brought, then
    /// everything still waiting. Alerts go to `send`.
    ///
    /// # Errors
    /// The ordering's spill files cannot be read back.
    pub fn finish(&mut self, send: &mut dyn FnMut(Vec<Alert>)) -> Result<(), HistoryError> {
        self.replay_history(send)?;
        let mut fired = Vec::new();
        self.runtime.finish(&mut fired);
        send(self.alerts(fired, &now_rfc3339()));
        Ok(())
    }

    /// The state file's content now.
    pub fn snapshot(&self) -> Vec<u8> {
        let file = StateFile {
            version: STATE_VERSION,
            inputs: self.positions.clone(),
            windows: self.runtime.snapshot(),
            warning: None,
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
        let sender = last.and_then(|e| e.actor.clone());
        let identity = format!(
            "{}|{}|{}{}",
            serde_json::Value::Object(group.clone()),
            fired.first,
            fired.last,
            sender
                .as_deref()
                .map(|a| format!("|{a}"))
                .unwrap_or_default()
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
        let rule_id = info.meta.id.as_deref().unwrap_or(&info.meta.title);
        let body = AlertBody {
            event_time: EventTime {
                first: Some(format_millis(fired.first)),
                last: Some(format_millis(fired.last)),
            },
            group: Some(group),
            count: fired.count,
            source: last.map(|e| e.source.clone()).unwrap_or(EventSource {
                input: String::new(),
                line: 0,
                offset: 0,
            }),
            event: last.and_then(|e| RawValue::from_string(e.event.clone()).ok()),
            evidence: Some(WindowEvidence {
                kind: planned.rule.kind.name().to_string(),
                value: fired.value,
                detail: fired.detail,
                events,
                omitted,
            }),
        };
        Alert::assemble(
            info,
            &format!("{rule_id}|{}", planned.key),
            &identity,
            sender,
            impact,
            body,
            detected_at,
        )
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

/// What an observation weighs in memory, about.
fn observation_weight(observation: &Observation<Evidence>) -> usize {
    let strings =
        |values: &[Option<String>]| -> usize { values.iter().flatten().map(String::len).sum() };
    let evidence: usize = observation
        .evidence
        .iter()
        .map(|e| e.event.len() + e.source.input.len() + 200)
        .sum();
    evidence + strings(&observation.group) + strings(&observation.values) + 128
}

/// The host columns of a batch, in the profile's order.
struct HostColumn<'a> {
    columns: Vec<&'a arrow_array::StringArray>,
}

impl<'a> HostColumn<'a> {
    fn find(batch: &'a RecordBatch, names: &[String]) -> Option<Self> {
        let schema = batch.schema();
        let columns: Vec<&'a arrow_array::StringArray> = names
            .iter()
            .filter_map(|n| schema.column_with_name(n).map(|(i, _)| i))
            .map(|i| batch.column(i))
            .filter(|c| c.data_type() == &DataType::Utf8)
            .map(|c| c.as_string::<i32>())
            .collect();
        (!columns.is_empty()).then_some(HostColumn { columns })
    }

    /// The first host named in `row`.
    fn value(&self, row: usize) -> Option<&'a str> {
        self.columns
            .iter()
            .find(|c| c.is_valid(row))
            .map(|c| c.value(row))
    }
}

/// A stable 64-bit hash of the event text: orders events with equal
/// times the same way in every run.
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

/// Writes the state file durably: the new content to a temporary file,
/// synced; the current file becomes the previous snapshot; the temporary
/// file takes its name; the folder is synced. A crash at any point leaves
/// the current or the previous snapshot whole. The folder must exist.
pub fn write_state(path: &Path, bytes: &[u8]) -> Result<(), StateError> {
    use std::io::Write;
    let io = |source| StateError::Io {
        path: path.to_path_buf(),
        source,
    };
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = PathBuf::from(tmp);
    let mut file = std::fs::File::create(&tmp).map_err(io)?;
    file.write_all(bytes).map_err(io)?;
    file.sync_all().map_err(io)?;
    drop(file);
    match std::fs::rename(path, previous_snapshot(path)) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(io(e)),
        _ => {}
    }
    std::fs::rename(&tmp, path).map_err(io)?;
    let folder = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    std::fs::File::open(folder)
        .and_then(|f| f.sync_all())
        .map_err(io)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stage() -> WindowStage {
        WindowStage::new(
            WindowPlan::default(),
            WindowLimits::default(),
            vec![],
            vec![],
            vec![],
        )
    }

    /// Regression: the state file was renamed into place without any sync
    /// and no earlier snapshot was kept, so a crash could leave an empty
    /// file and vagt refused to start.
    #[test]
    fn each_write_keeps_the_previous_snapshot_and_a_damaged_file_falls_back_to_it() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.json");
        let first = stage().snapshot();
        write_state(&path, &first).unwrap();
        assert!(!previous_snapshot(&path).exists());
        write_state(&path, &first).unwrap();
        assert_eq!(std::fs::read(previous_snapshot(&path)).unwrap(), first);
        assert!(!dir.path().join("state.json.tmp").exists());

        // An empty file (a crash before the data reached the disk).
        std::fs::write(&path, b"").unwrap();
        let restored = stage().restore(&path, &[]).unwrap().unwrap();
        let note = restored.note.unwrap();
        assert!(
            note.contains("damaged") && note.contains("state.json.prev"),
            "{note}"
        );

        // The file gone between the two renames.
        std::fs::remove_file(&path).unwrap();
        let note = stage().restore(&path, &[]).unwrap().unwrap().note.unwrap();
        assert!(
            note.contains("is missing; resumed from the previous snapshot"),
            "{note}"
        );

        // Nothing usable: an error, never a silent fresh start.
        std::fs::write(&path, b"{").unwrap();
        std::fs::write(previous_snapshot(&path), b"").unwrap();
        let e = stage().restore(&path, &[]).unwrap_err().to_string();
        assert!(e.contains("state.json: not a vagt state file"), "{e}");
        // No state at all: a first run.
        let fresh = dir.path().join("none.json");
        assert!(stage().restore(&fresh, &[]).unwrap().is_none());
    }
}
