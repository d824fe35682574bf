//! The run configuration: a YAML file, or the same settings from flags.
//!
//! ```yaml
//! rules: [rules/]                 # files or folders of Sigma rules
//! profile: windows                # windows | passthrough | path to a profile file
//! placeholders: {Admins: [adm_*]} # values for Sigma `|expand` placeholders
//! catalog: catalog.yaml           # critical-process catalog (optional)
//! inputs:                         # each has exactly one of path, tail, syslog, http, kafka
//!   - path: logs/dc01.jsonl       # a file or folder read to its end (.gz read transparently), "-" for stdin
//!     actor: rnv-hospital-nord    # optional: stamp this actor on its events' alerts
//!     format: json                # json | windows | syslog | cef | leef | zeek | suricata | logfmt
//!   - tail: /var/log/fw.log       # a file followed as it grows and across rotation
//!     format: cef
//!   - syslog: {listen: 0.0.0.0:6514, protocol: tls, tls: {cert: c.pem, key: k.pem}}
//!     format: syslog
//!   - http: {listen: 0.0.0.0:8088, tokens: [{actor: rnv-hospital-nord, token_env: NORD_TOKEN}]}
//!   - kafka: {brokers: "k1:9092", topics: [events], group_id: vagt}
//! output: alerts.jsonl            # "-" for stdout (default)
//! dead_letters: dead.jsonl        # default: stderr
//! archive: {dir: archive/, max_file_bytes: 134217728, max_file_age: 30s, row_group_rows: 65536, retention_days: 90}
//! decoder: {batch_size: 1024, batch_bytes: 2097152, max_record_bytes: 4194304, max_batch_delay: 5ms}
//! channel_capacity: 8             # batches in flight between stages
//! workers: 2                      # detection workers evaluating batches at once (default: the cores)
//! stop_evaluation: 5s           # after a stop, a batch still evaluating is abandoned
//! metrics_listen: 127.0.0.1:9898  # Prometheus endpoint (off when unset)
//! progress: auto                  # auto (bar on a terminal) | always | never
//! windows:                        # windowed rules (correlations, statistics)
//!   allowed_lateness: 5s          # how far behind its own source's latest event an event may be
//!   max_keys: 100000              # group keys held over all rules (LRU eviction)
//!   max_values_per_key: 10000     # distinct values remembered per group
//!   max_evidence: 10              # contributing events kept per group / alert
//!   max_pending: 100000           # events waiting for the watermark
//!   max_ahead: 1h                 # event times further ahead of the clock are refused
//!   state_file: state/vagt.json   # snapshot of window state and input positions
//!   snapshot_interval: 10s        # how often it is written while running
//!   idle_after: 5s                # a source silent this long (wall clock) holds nothing back
//!   max_sources: 10000            # sources (input, organisation, host) tracked
//!   history_memory_bytes: 268435456   # files are ordered by event time in memory up to this,
//!   history_spill_bytes: 17179869184  # then on disk up to this (in spill_dir)
//! ```
//! Relative paths are resolved against the config file's folder.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use vagt_connectors::{ConfigDuration, DecoderConfig};
use vagt_rules::window::{HistoryLimits, WindowLimits};

pub use crate::routes::RouteConfig;
pub use crate::sinks::config::OutputConfig;
pub use crate::sources::config::{InputConfig, SourceConfig};

/// Settings of the windowed rules.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WindowsConfig {
    /// How far behind the latest event time an event may arrive (`0s`,
    /// `5s`, `2m`); later events are dead letters, not merged.
    #[serde(default = "default_lateness")]
    pub allowed_lateness: ConfigDuration,
    /// Group keys held over all windowed rules.
    #[serde(default = "default_max_keys")]
    pub max_keys: usize,
    /// Distinct values remembered per group.
    #[serde(default = "default_max_values")]
    pub max_values_per_key: usize,
    /// Contributing events kept per group and shown in an alert.
    #[serde(default = "default_max_evidence")]
    pub max_evidence: usize,
    /// Events waiting for the watermark.
    #[serde(default = "default_max_pending")]
    pub max_pending: usize,
    /// How far ahead of the clock an event's time may be (`1h`); later
    /// ones are dead letters, so that one sender's clock cannot move
    /// everyone's watermark.
    #[serde(default = "default_max_ahead")]
    pub max_ahead: ConfigDuration,
    /// Window state and input positions are saved here (and restored at
    /// start).
    #[serde(default)]
    pub state_file: Option<PathBuf>,
    /// How often the state is saved while running.
    #[serde(default = "default_snapshot_interval")]
    pub snapshot_interval: ConfigDuration,
    /// How long (wall clock) a source may send nothing before it stops
    /// holding back the windows it feeds (`30s`); default: the allowed
    /// lateness, at least 1 s.
    #[serde(default)]
    pub idle_after: Option<ConfigDuration>,
    /// Sources (input, organisation, host) whose progress is tracked;
    /// further hosts share their input's and organisation's source.
    #[serde(default = "default_max_sources")]
    pub max_sources: usize,
    /// Bytes of a finite history (files, folders) ordered in memory before
    /// it is ordered on disk.
    #[serde(default = "default_history_memory")]
    pub history_memory_bytes: usize,
    /// Bytes of a history ordered on disk at most; beyond, its events are
    /// dead letters (counted), not applied unordered.
    #[serde(default = "default_history_spill")]
    pub history_spill_bytes: u64,
    /// Where a history is ordered on disk (default: the system's temporary
    /// folder).
    #[serde(default)]
    pub spill_dir: Option<PathBuf>,
}

impl Default for WindowsConfig {
    fn default() -> Self {
        WindowsConfig {
            allowed_lateness: default_lateness(),
            max_keys: default_max_keys(),
            max_values_per_key: default_max_values(),
            max_evidence: default_max_evidence(),
            max_pending: default_max_pending(),
            max_ahead: default_max_ahead(),
            state_file: None,
            snapshot_interval: default_snapshot_interval(),
            idle_after: None,
            max_sources: default_max_sources(),
            history_memory_bytes: default_history_memory(),
            history_spill_bytes: default_history_spill(),
            spill_dir: None,
        }
    }
}

fn default_lateness() -> ConfigDuration {
    ConfigDuration::from_secs(5)
}
fn default_max_keys() -> usize {
    100_000
}
fn default_max_values() -> usize {
    10_000
}
fn default_max_evidence() -> usize {
    10
}
fn default_max_pending() -> usize {
    100_000
}
fn default_max_ahead() -> ConfigDuration {
    ConfigDuration::from_secs(3600)
}
fn default_snapshot_interval() -> ConfigDuration {
    ConfigDuration::from_secs(10)
}
fn default_max_sources() -> usize {
    10_000
}
fn default_history_memory() -> usize {
    256 * 1024 * 1024
}
fn default_history_spill() -> u64 {
    16 * 1024 * 1024 * 1024
}

impl WindowsConfig {
    /// The runtime limits, validated.
    pub fn limits(&self) -> Result<WindowLimits, ConfigError> {
        let lateness = self.allowed_lateness.millis();
        for (name, value) in [
            ("max_keys", self.max_keys),
            ("max_values_per_key", self.max_values_per_key),
            ("max_evidence", self.max_evidence),
            ("max_pending", self.max_pending),
            ("max_sources", self.max_sources),
            ("history_memory_bytes", self.history_memory_bytes),
        ] {
            if value == 0 {
                return Err(ConfigError::setting(
                    format!("windows.{name}"),
                    "must be at least 1",
                ));
            }
        }
        let idle_after = match self.idle_after {
            Some(d) => d.millis(),
            None => lateness.max(1_000),
        };
        Ok(WindowLimits {
            allowed_lateness: lateness,
            max_keys: self.max_keys,
            max_values_per_key: self.max_values_per_key,
            max_evidence: self.max_evidence,
            max_pending: self.max_pending,
            idle_after,
            max_sources: self.max_sources,
        })
    }

    /// How a finite history is ordered.
    pub fn history(&self) -> HistoryLimits {
        HistoryLimits {
            memory_bytes: self.history_memory_bytes,
            spill_bytes: self.history_spill_bytes,
            spill_dir: self.spill_dir.clone().unwrap_or_else(std::env::temp_dir),
        }
    }

    /// How far ahead of the clock an event time may be, in ms.
    pub fn max_ahead(&self) -> i64 {
        self.max_ahead.millis()
    }

    /// How often to save state.
    pub fn snapshot_interval(&self) -> std::time::Duration {
        self.snapshot_interval.get()
    }
}

/// The whole run configuration.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RunConfig {
    /// Sigma rule files or folders.
    pub rules: Vec<PathBuf>,
    /// `windows` (built-in), `passthrough` (no mapping), or a profile file.
    #[serde(default = "default_profile")]
    pub profile: String,
    /// Values for `%placeholder%` with the `expand` modifier.
    #[serde(default)]
    pub placeholders: HashMap<String, Vec<String>>,
    /// Where what each rules file loaded to is kept between runs, so that
    /// unchanged files are not parsed again: `auto` (the user's cache
    /// folder, the default), `off`, or a folder.
    #[serde(default)]
    pub rules_cache: RulesCacheSetting,
    /// Critical-process catalog.
    #[serde(default)]
    pub catalog: Option<PathBuf>,
    /// Inputs, read concurrently.
    pub inputs: Vec<InputConfig>,
    /// The one alert output, when `outputs` is not given: a file, or `-`
    /// for stdout (the default).
    #[serde(default)]
    pub output: Option<PathBuf>,
    /// Alert outputs (stdout, file, kafka, webhook, syslog); see
    /// `sinks::config`.
    #[serde(default)]
    pub outputs: Vec<OutputConfig>,
    /// Which alerts go to which outputs (every alert to every output when
    /// none are given); see `routes`.
    #[serde(default)]
    pub routes: Vec<RouteConfig>,
    /// Dead-letter output (JSON lines); stderr when unset.
    #[serde(default)]
    pub dead_letters: Option<PathBuf>,
    /// Keep every event taken in as Parquet, for hunts and SQL.
    #[serde(default)]
    pub archive: Option<crate::archive::ArchiveConfig>,
    /// Decoding settings.
    #[serde(default)]
    pub decoder: DecoderConfig,
    /// Batches in flight between two stages (backpressure bound).
    #[serde(default = "default_channel_capacity")]
    pub channel_capacity: usize,
    /// Detection workers: threads evaluating batches at the same time
    /// (default: the machine's cores). Alerts keep the input's order.
    #[serde(default)]
    pub workers: Option<usize>,
    /// After a stop signal (and the inputs' drain), how long the batch
    /// being evaluated may still take before it is abandoned: its events
    /// become dead letters, and files and Kafka resume before them.
    #[serde(default = "default_stop_evaluation")]
    pub stop_evaluation: ConfigDuration,
    /// Serve Prometheus metrics on this address (e.g. `127.0.0.1:9898`).
    #[serde(default)]
    pub metrics_listen: Option<std::net::SocketAddr>,
    /// Progress display: `auto` (a bar on a terminal), `always`, `never`.
    #[serde(default)]
    pub progress: crate::progress::ProgressMode,
    /// Windowed rules.
    #[serde(default)]
    pub windows: WindowsConfig,
    /// The TLP of alerts that nothing else (a rule's tag, the catalog, a
    /// route) raises (default `amber`).
    #[serde(default = "default_tlp")]
    pub tlp: crate::warning::tlp::Tlp,
    /// Which repeats are held back and reported in follow-ups.
    #[serde(default)]
    pub suppression: crate::warning::suppress::SuppressionConfig,
    /// Sector alerts when one rule fires at several organisations.
    #[serde(default)]
    pub campaigns: Option<crate::warning::campaign::CampaignConfig>,
    /// Threat intelligence feeds whose indicators are matched against
    /// every event.
    #[serde(default)]
    pub intel: Option<crate::intel::IntelConfig>,
    /// The key for pseudonyms of what leaves for the sector.
    #[serde(default)]
    pub pseudonyms: Option<crate::warning::pseudonym::PseudonymConfig>,
    /// What reloads the config besides SIGHUP: file changes, HTTP.
    #[serde(default)]
    pub reload: crate::reload::ReloadConfig,
    /// The file it was read from, if any.
    #[serde(skip)]
    pub source: Option<ConfigSource>,
}

/// The `rules_cache` setting.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum RulesCacheSetting {
    /// `$XDG_CACHE_HOME/vagt`, else `$HOME/.cache/vagt`; no cache when
    /// neither is set.
    #[default]
    Auto,
    /// Every rules file parsed on every load.
    Off,
    /// This folder.
    Dir(PathBuf),
}

/// An empty `rules_cache` setting.
#[derive(Debug, thiserror::Error)]
#[error("rules cache: expected `auto`, `off` or a folder, not an empty string")]
pub struct EmptyRulesCacheSetting;

impl std::str::FromStr for RulesCacheSetting {
    type Err = EmptyRulesCacheSetting;

    /// `auto`, `off`, or a folder.
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        Ok(match text {
            "" => return Err(EmptyRulesCacheSetting),
            "auto" => RulesCacheSetting::Auto,
            "off" => RulesCacheSetting::Off,
            dir => RulesCacheSetting::Dir(PathBuf::from(dir)),
        })
    }
}

impl RulesCacheSetting {
    /// The cache it names, if any.
    pub fn cache(&self) -> Option<vagt_rules::RulesCache> {
        match self {
            RulesCacheSetting::Auto => {
                vagt_rules::RulesCache::default_dir().map(vagt_rules::RulesCache::in_dir)
            }
            RulesCacheSetting::Off => None,
            RulesCacheSetting::Dir(dir) => Some(vagt_rules::RulesCache::in_dir(dir)),
        }
    }
}

impl<'de> Deserialize<'de> for RulesCacheSetting {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        String::deserialize(deserializer)?
            .parse()
            .map_err(serde::de::Error::custom)
    }
}

fn default_profile() -> String {
    "windows".into()
}

fn default_tlp() -> crate::warning::tlp::Tlp {
    crate::warning::tlp::Tlp::Amber
}

fn default_channel_capacity() -> usize {
    8
}

fn default_stop_evaluation() -> ConfigDuration {
    ConfigDuration::from_secs(5)
}

/// A configuration that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file cannot be read.
    #[error("cannot read config {path}: {source}")]
    Io {
        /// Path.
        path: PathBuf,
        /// Cause.
        #[source]
        source: std::io::Error,
    },
    /// It does not parse, or has unknown keys.
    #[error("config {path}: {message}")]
    Parse {
        /// Path.
        path: PathBuf,
        /// Message with line and column.
        message: String,
    },
    /// The configuration as a whole is invalid.
    #[error("config: {0}")]
    Invalid(String),
    /// A setting is invalid (built from flags, or before its file is known).
    #[error("config: {key}: {message}")]
    Setting {
        /// The setting, e.g. `windows.max_keys` or `inputs[2]`.
        key: String,
        /// What is wrong.
        message: String,
    },
    /// A setting of a config file is invalid.
    #[error("config {}{}: {key}: {message}", path.display(), line.map(|l| format!(", line {l}")).unwrap_or_default())]
    AtLine {
        /// The file.
        path: PathBuf,
        /// Where the setting is (1-based), if found.
        line: Option<usize>,
        /// The setting.
        key: String,
        /// What is wrong.
        message: String,
    },
}

impl ConfigError {
    /// An invalid setting.
    pub fn setting(key: impl Into<String>, message: impl Into<String>) -> ConfigError {
        ConfigError::Setting {
            key: key.into(),
            message: message.into(),
        }
    }
}

/// Where a config came from, to say where a setting is.
#[derive(Debug, Clone)]
pub struct ConfigSource {
    /// The file.
    pub path: PathBuf,
    pub(crate) text: String,
}

/// The line (1-based) of a setting such as `windows.max_keys` or
/// `inputs[2].syslog` in a YAML text, as far as it can be followed (block
/// mappings and sequences; within a flow collection, its first line).
fn line_of(text: &str, key: &str) -> Option<usize> {
    let lines: Vec<&str> = text.lines().collect();
    let indent = |l: &str| l.len() - l.trim_start().len();
    let meaningful = |l: &&str| !l.trim().is_empty() && !l.trim_start().starts_with('#');
    let mut segments: Vec<Result<&str, usize>> = Vec::new();
    for part in key.split('.') {
        let (name, index) = match part.split_once('[') {
            Some((name, rest)) => (name, rest.trim_end_matches(']').parse::<usize>().ok()),
            None => (part, None),
        };
        if !name.is_empty() {
            segments.push(Ok(name));
        }
        segments.extend(index.map(Err));
    }
    let (mut start, mut end) = (0, lines.len());
    let mut parent: Option<usize> = None;
    let mut found: Option<usize> = None;
    for segment in segments {
        let children = (start..end)
            .filter(|&i| meaningful(&lines[i]) && parent.is_none_or(|p| indent(lines[i]) > p));
        let hit = match segment {
            Ok(name) => children
                .into_iter()
                .find(|&i| {
                    let t = lines[i].trim_start().trim_start_matches("- ");
                    t.strip_prefix(name).is_some_and(|r| r.starts_with(':'))
                })
                .or_else(|| {
                    // `parent: {name: ...}` on one line.
                    found.filter(|&f| lines[f].contains(&format!("{name}:")))
                }),
            Err(index) => {
                let items: Vec<usize> = children
                    .into_iter()
                    .filter(|&i| lines[i].trim_start().starts_with("- "))
                    .collect();
                let item_indent = items.first().map(|&i| indent(lines[i]));
                items
                    .into_iter()
                    .filter(|&i| Some(indent(lines[i])) == item_indent)
                    .nth(index)
            }
        };
        let Some(line) = hit else { break };
        if Some(line) == found {
            break;
        }
        let own = indent(lines[line]);
        // Keys of a list item (`- key: ...`) sit at the item's indent + 2.
        parent = Some(if lines[line].trim_start().starts_with("- ") {
            own + 1
        } else {
            own
        });
        start = line + 1;
        end = (start..lines.len())
            .find(|&i| meaningful(&lines[i]) && indent(lines[i]) <= own)
            .unwrap_or(lines.len());
        found = Some(line);
    }
    found.map(|l| l + 1)
}

/// A config that does not deserialize: the setting it failed at, and its
/// line, when the failure is inside a setting; the parser's message with its
/// line and column otherwise.
fn parse_error(
    path: &Path,
    text: &str,
    e: serde_path_to_error::Error<serde_yaml_ng::Error>,
) -> ConfigError {
    let key = e.path().to_string();
    let inner = e.into_inner();
    if key == "." || key.is_empty() {
        return ConfigError::Parse {
            path: path.to_path_buf(),
            message: inner.to_string(),
        };
    }
    let mut message = inner.to_string();
    if let Some(location) = inner.location() {
        let suffix = format!(" at line {} column {}", location.line(), location.column());
        if let Some(stripped) = message.strip_suffix(&suffix) {
            message = stripped.to_string();
        }
    }
    // The parser names a coarser setting before its message; the key says it.
    if let Some((prefix, rest)) = message.split_once(": ") {
        if key.starts_with(prefix) {
            message = rest.to_string();
        }
    }
    ConfigError::AtLine {
        path: path.to_path_buf(),
        line: line_of(text, &key).or(inner.location().map(|l| l.line())),
        key,
        message,
    }
}

impl RunConfig {
    /// Detection workers to start: the setting, or the machine's cores.
    pub fn detection_workers(&self) -> usize {
        self.workers.unwrap_or_else(vagt_rules::workers::available)
    }

    /// Reads a config file, resolving relative paths against its folder.
    pub fn from_file(path: &Path) -> Result<RunConfig, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        let deserializer = serde_yaml_ng::Deserializer::from_str(&text);
        let mut config: RunConfig = serde_path_to_error::deserialize(deserializer)
            .map_err(|e| parse_error(path, &text, e))?;
        let base = path.parent().unwrap_or(Path::new("."));
        config.resolve_relative_to(base);
        config.source = Some(ConfigSource {
            path: path.to_path_buf(),
            text,
        });
        config.validate()?;
        Ok(config)
    }

    /// An error about a setting, with the file and line it is on when the
    /// config came from a file.
    pub fn locate(&self, e: ConfigError) -> ConfigError {
        match (e, &self.source) {
            (ConfigError::Setting { key, message }, Some(source)) => ConfigError::AtLine {
                path: source.path.clone(),
                line: line_of(&source.text, &key),
                key,
                message,
            },
            (e, _) => e,
        }
    }

    fn resolve_relative_to(&mut self, base: &Path) {
        let fix = |p: &mut PathBuf| {
            if p.as_os_str() != "-" && p.is_relative() {
                *p = base.join(&*p);
            }
        };
        self.rules.iter_mut().for_each(fix);
        for input in &mut self.inputs {
            input.resolve_relative_to(base);
        }
        if let Some(c) = &mut self.catalog {
            fix(c);
        }
        if let Some(o) = &mut self.output {
            fix(o);
        }
        for output in &mut self.outputs {
            output.resolve_relative_to(base);
        }
        if let Some(d) = &mut self.dead_letters {
            fix(d);
        }
        if let Some(a) = &mut self.archive {
            fix(&mut a.dir);
        }
        if let Some(s) = &mut self.windows.state_file {
            fix(s);
        }
        if let Some(s) = &mut self.windows.spill_dir {
            fix(s);
        }
        for path in self
            .intel
            .iter_mut()
            .flat_map(|i| i.feeds.iter_mut())
            .filter_map(|f| f.path.as_mut())
        {
            fix(path);
        }
        if !matches!(self.profile.as_str(), "windows" | "passthrough") {
            self.profile = base.join(&self.profile).display().to_string();
        }
    }

    /// Replaces each folder input by an input per file in it (and its
    /// subfolders), in name order, with the folder's settings. Names
    /// starting with `.` are skipped.
    ///
    /// # Errors
    /// A folder cannot be read or holds no file.
    pub fn expand_folders(&mut self) -> Result<(), ConfigError> {
        let mut inputs = Vec::with_capacity(self.inputs.len());
        for input in std::mem::take(&mut self.inputs) {
            let folder = match &input.source {
                SourceConfig::File(p) if p.is_dir() => p.clone(),
                _ => {
                    inputs.push(input);
                    continue;
                }
            };
            let mut files = Vec::new();
            let hidden = |e: &walkdir::DirEntry| {
                e.depth() > 0 && e.file_name().to_string_lossy().starts_with('.')
            };
            for entry in walkdir::WalkDir::new(&folder)
                .sort_by_file_name()
                .into_iter()
                .filter_entry(|e| !hidden(e))
            {
                let entry = entry.map_err(|e| {
                    ConfigError::Invalid(format!("input folder {}: {e}", folder.display()))
                })?;
                if entry.file_type().is_file() {
                    files.push(entry.into_path());
                }
            }
            if files.is_empty() {
                return Err(ConfigError::Invalid(format!(
                    "input folder {} holds no files",
                    folder.display()
                )));
            }
            inputs.extend(files.into_iter().map(|file| InputConfig {
                source: SourceConfig::File(file),
                ..input.clone()
            }));
        }
        self.inputs = inputs;
        Ok(())
    }

    /// Cross-field checks. An invalid setting of a config file is named
    /// with its file and line.
    pub fn validate(&self) -> Result<(), ConfigError> {
        self.check().map_err(|e| self.locate(e))
    }

    fn check(&self) -> Result<(), ConfigError> {
        if self.rules.is_empty() {
            return Err(ConfigError::setting("rules", "no rules given"));
        }
        if self.inputs.is_empty() {
            return Err(ConfigError::setting("inputs", "no inputs given"));
        }
        if self.channel_capacity == 0 {
            return Err(ConfigError::setting(
                "channel_capacity",
                "must be at least 1",
            ));
        }
        if self.workers == Some(0) {
            return Err(ConfigError::setting("workers", "must be at least 1"));
        }
        if let Some(archive) = &self.archive {
            archive
                .validate()
                .map_err(|e| ConfigError::setting("archive", e))?;
        }
        if let Some(intel) = &self.intel {
            intel
                .validate()
                .map_err(|e| ConfigError::setting("intel", e))?;
        }
        self.reload.validate()?;
        for (i, input) in self.inputs.iter().enumerate() {
            input
                .validate()
                .map_err(|e| ConfigError::setting(format!("inputs[{i}]"), e))?;
        }
        let stdin_inputs = self
            .inputs
            .iter()
            .filter(|i| matches!(i.source, SourceConfig::Stdin))
            .count();
        if stdin_inputs > 1 {
            return Err(ConfigError::setting(
                "inputs",
                "stdin ('-') can be an input only once",
            ));
        }
        self.decoder
            .validate()
            .map_err(|e| ConfigError::setting("decoder", e.to_string()))?;
        self.windows.limits()?;
        self.check_outputs()?;
        self.check_folders()
    }

    /// The alert outputs: those of `outputs`, or the one `output` names.
    pub fn alert_outputs(&self) -> Vec<OutputConfig> {
        if self.outputs.is_empty() {
            let path = self.output.clone().unwrap_or_else(|| PathBuf::from("-"));
            vec![OutputConfig::from_path(&path)]
        } else {
            self.outputs.clone()
        }
    }

    fn check_outputs(&self) -> Result<(), ConfigError> {
        if self.output.is_some() && !self.outputs.is_empty() {
            return Err(ConfigError::setting(
                "output",
                "give either output (one file or stdout) or outputs, not both",
            ));
        }
        if !self.routes.is_empty() && self.outputs.is_empty() {
            return Err(ConfigError::setting(
                "routes",
                "routes send alerts to named outputs: give outputs",
            ));
        }
        crate::sinks::config::validate_outputs(&self.outputs)
            .map_err(|(i, message)| ConfigError::setting(format!("outputs[{i}]"), message))?;
        let stdout = self
            .outputs
            .iter()
            .filter(|o| matches!(o.sink, crate::sinks::config::SinkConfig::Stdout))
            .count();
        if stdout > 1 {
            return Err(ConfigError::setting(
                "outputs",
                "stdout can be an output only once",
            ));
        }
        Ok(())
    }

    /// The folders that outputs, the state file and the spill go to must
    /// exist: a mistyped path is an error, not a new folder.
    fn check_folders(&self) -> Result<(), ConfigError> {
        let files = [
            ("output", self.output.as_ref()),
            ("dead_letters", self.dead_letters.as_ref()),
            ("windows.state_file", self.windows.state_file.as_ref()),
            ("archive.dir", self.archive.as_ref().map(|a| &a.dir)),
        ];
        for (key, path) in files {
            let Some(path) = path.filter(|p| p.as_os_str() != "-") else {
                continue;
            };
            let folder = path
                .parent()
                .filter(|p| !p.as_os_str().is_empty())
                .unwrap_or(Path::new("."));
            if !folder.is_dir() {
                return Err(ConfigError::setting(
                    key,
                    format!(
                        "{}: the folder {} does not exist (create it first)",
                        path.display(),
                        folder.display()
                    ),
                ));
            }
        }
        if let Some(dir) = self.windows.spill_dir.as_ref().filter(|d| !d.is_dir()) {
            return Err(ConfigError::setting(
                "windows.spill_dir",
                format!("{}: not an existing folder", dir.display()),
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_keys_and_bad_values_are_rejected() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("vagt.yaml");
        std::fs::write(&path, "rules: [r]\ninputs: [{path: a.jsonl}]\n").unwrap();
        let ok = RunConfig::from_file(&path).unwrap();
        assert_eq!(
            ok.inputs[0].file_path(),
            Some(dir.path().join("a.jsonl").as_path())
        );
        assert_eq!(ok.output, None);
        let rejected = [
            ("inputs: [{path: a.jsonl}]\nouptut: x", "unknown field `ouptut`"),
            ("inputs: []", "no inputs"),
            ("inputs: [{path: a, tail: b}]", "inputs[0]: several sources"),
            ("inputs: [{format: cef}]", "inputs[0]: no source"),
            ("inputs: [{path: a, format: xml}]", "unknown variant `xml`"),
            (
                "inputs: [{syslog: {listen: '127.0.0.1:1', protocol: tls}}]",
                "protocol tls needs tls",
            ),
            (
                "inputs: [{syslog: {listen: '127.0.0.1:1', protocol: tls, tls: {cert: c, key: k, client_actors: {a.example: org}}}}]",
                "needs client_ca",
            ),
            (
                "inputs: [{syslog: {listen: '127.0.0.1:1', protocol: tls, tls: {cert: c, key: k, client_ca: ca, client_actors: {a.example: org}}}, actor: org}]",
                "not from 'actor'",
            ),
            (
                "inputs: [{syslog: {listen: '127.0.0.1:1', protocol: tls, tls: {cert: c, key: k, client_ca: ca, client_actors: {'*.example': org}}}}]",
                "a wildcard cannot name one organisation",
            ),
            (
                "inputs: [{syslog: {listen: '127.0.0.1:1', protocol: tls, tls: {cert: c, key: k, client_crls: [crl.pem]}}}]",
                "client_crls needs client_ca",
            ),
            (
                "inputs: [{http: {listen: '127.0.0.1:1', tokens: [{actor: a, token_sha256: xyz}]}}]",
                "token_sha256 is not 64 hex digits",
            ),
            (
                "inputs: [{http: {listen: '127.0.0.1:1', tls: {cert: c, key: k, client_ca: ca, client_actors: {a.example: org}}, tokens: []}}]",
                "not from client_actors",
            ),
            (
                "inputs: [{kafka: {brokers: 'b:1', topics: [t], group_id: g, options: {group.id: x}}}]",
                "'group.id' is set by vagt",
            ),
            (
                "inputs: [{kafka: {brokers: 'b:1', topics: [t], group_id: g, options: {statistics.interval.ms: '0'}}}]",
                "'statistics.interval.ms' is set by vagt",
            ),
        ];
        for (inputs, expected) in rejected {
            std::fs::write(&path, format!("rules: [r]\n{inputs}\n")).unwrap();
            let e = RunConfig::from_file(&path).unwrap_err().to_string();
            assert!(e.contains(expected), "{inputs}: {e}");
        }
    }
}

#[cfg(test)]
mod line_tests {
    use super::*;

    /// Regression: semantic errors (a zero bound, an input with two
    /// sources) named the setting but not the file and line.
    #[test]
    fn a_bad_setting_is_named_with_its_file_and_line() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("vagt.yaml");
        let cases = [
            (
                "rules: [r]\ninputs:\n  - path: a.jsonl\n  - path: b.jsonl\n    format: cef\nwindows:\n  allowed_lateness: 5s\n  max_keys: 0\n",
                vec!["line 8: windows.max_keys: must be at least 1"],
            ),
            (
                "rules: [r]\ninputs:\n  - path: a.jsonl\n  # a comment\n  - path: b.jsonl\n    tail: c.log\n",
                vec!["line 5: inputs[1]: several sources"],
            ),
            (
                "rules: [r]\ninputs: [{path: a}]\nwindows: {snapshot_interval: soon}\n",
                vec!["line 3: windows.snapshot_interval:"],
            ),
            (
                "rules: [r]\ninputs: [{path: a}]\noutput: nowhere/alerts.jsonl\n",
                vec!["line 3: output:", "does not exist"],
            ),
        ];
        for (text, expected) in cases {
            std::fs::write(&path, text).unwrap();
            let e = RunConfig::from_file(&path).unwrap_err().to_string();
            assert!(
                e.starts_with(&format!("config {}, line", path.display())),
                "{e}"
            );
            for part in expected {
                assert!(e.contains(part), "{text}\n{e}");
            }
        }
    }

    #[test]
    fn lines_are_found_in_block_and_flow_yaml() {
        let text = "a: 1\nlist:\n  - x: 1\n    y:\n      z: 2\n  - x: 3\nflow: {k: 1}\n";
        assert_eq!(line_of(text, "a"), Some(1));
        assert_eq!(line_of(text, "list[0].y.z"), Some(5));
        assert_eq!(line_of(text, "list[1]"), Some(6));
        assert_eq!(line_of(text, "list[1].x"), Some(6));
        assert_eq!(line_of(text, "flow.k"), Some(7));
        assert_eq!(line_of(text, "missing"), None);
    }
}

#[cfg(test)]
mod readme_tests {
    use super::*;

    /// The README's config that reads Kafka, syslog and HTTP at once is a
    /// valid config.
    #[test]
    fn the_readme_multi_input_config_is_valid() {
        let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../README.md"))
            .expect("README.md");
        let start = readme
            .find("Reading Kafka and syslog at once")
            .expect("the README's multi-input example");
        let block = &readme[start..];
        let yaml_start = block.find("```yaml\n").expect("a yaml block") + "```yaml\n".len();
        let yaml = &block[yaml_start..yaml_start + block[yaml_start..].find("```").unwrap()];
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("vagt.yaml");
        std::fs::write(&path, yaml).unwrap();
        // Its folders exist where it is used.
        std::fs::create_dir(dir.path().join("state")).unwrap();
        // No other test reads this variable.
        std::env::set_var("VAGT_TOKEN_HOSPITAL_SYD", "a-secret");
        let config = RunConfig::from_file(&path).unwrap_or_else(|e| panic!("{e}\n{yaml}"));
        let kinds: Vec<&str> = config
            .inputs
            .iter()
            .map(|i| match &i.source {
                SourceConfig::Kafka(_) => "kafka",
                SourceConfig::Syslog(_) => "syslog",
                SourceConfig::Http(_) => "http",
                _ => "other",
            })
            .collect();
        assert_eq!(kinds, ["kafka", "syslog", "syslog", "http"]);
    }
}
