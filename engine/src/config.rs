//! The run configuration: a YAML file, or the same settings from flags.
//!
//! ```yaml
//! rules: [rules/]                 # files or folders of Sigma rules
//! profile: windows                # windows | passthrough | path to a profile file
//! placeholders: {Admins: [adm_*]} # values for Sigma `|expand` placeholders
//! catalog: catalog.yaml           # critical-process catalog (optional)
//! inputs:
//!   - path: logs/dc01.jsonl       # a file (.gz read transparently) or "-" for stdin
//!     actor: rnv-hospital-nord    # optional: stamp this actor on alerts from it
//! output: alerts.jsonl            # "-" for stdout (default)
//! dead_letters: dead.jsonl        # default: stderr
//! decoder: {batch_size: 1024, max_record_bytes: 4194304, max_batch_delay_ms: 5}
//! channel_capacity: 8             # batches in flight between stages
//! metrics_listen: 127.0.0.1:9898  # Prometheus endpoint (off when unset)
//! progress: auto                  # auto (bar on a terminal) | always | never
//! windows:                        # windowed rules (correlations, statistics)
//!   allowed_lateness: 5s          # how late an event may arrive and still count
//!   max_keys: 100000              # group keys held over all rules (LRU eviction)
//!   max_values_per_key: 10000     # distinct values remembered per group
//!   max_evidence: 10              # contributing events kept per group / alert
//!   max_pending: 100000           # events waiting for the watermark
//!   state_file: state/vagt.json   # snapshot of window state and input positions
//!   snapshot_interval: 10s        # how often it is written while running
//! ```
//! Relative paths are resolved against the config file's folder.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use vagt_connectors::DecoderConfig;
use vagt_rules::window::{parse_timespan, TimestampSpec, WindowLimits};

/// An input of the pipeline.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InputConfig {
    /// File path (`.gz` decompressed) or `-` for stdin.
    pub path: PathBuf,
    /// Actor stamped on alerts from this input, overriding the catalog's.
    #[serde(default)]
    pub actor: Option<String>,
    /// Where this input's event time is, overriding the profile's.
    #[serde(default)]
    pub timestamp: Option<TimestampSpec>,
}

/// Settings of the windowed rules.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WindowsConfig {
    /// How far behind the latest event time an event may arrive (`0s`,
    /// `5s`, `2m`); later events are dead letters, not merged.
    #[serde(default = "default_lateness")]
    pub allowed_lateness: String,
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
    /// Window state and input positions are saved here (and restored at
    /// start).
    #[serde(default)]
    pub state_file: Option<PathBuf>,
    /// How often the state is saved while running.
    #[serde(default = "default_snapshot_interval")]
    pub snapshot_interval: String,
}

impl Default for WindowsConfig {
    fn default() -> Self {
        WindowsConfig {
            allowed_lateness: default_lateness(),
            max_keys: default_max_keys(),
            max_values_per_key: default_max_values(),
            max_evidence: default_max_evidence(),
            max_pending: default_max_pending(),
            state_file: None,
            snapshot_interval: default_snapshot_interval(),
        }
    }
}

fn default_lateness() -> String {
    "5s".into()
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
fn default_snapshot_interval() -> String {
    "10s".into()
}

/// A duration like `5s`, or zero (`0`, `0s`).
pub fn parse_duration(text: &str) -> Result<i64, String> {
    if text.trim().trim_end_matches(char::is_alphabetic) == "0" {
        return Ok(0);
    }
    parse_timespan(text)
}

impl WindowsConfig {
    /// The runtime limits, validated.
    pub fn limits(&self) -> Result<WindowLimits, ConfigError> {
        let lateness = parse_duration(&self.allowed_lateness)
            .map_err(|e| ConfigError::Invalid(format!("windows.allowed_lateness: {e}")))?;
        for (name, value) in [
            ("max_keys", self.max_keys),
            ("max_values_per_key", self.max_values_per_key),
            ("max_evidence", self.max_evidence),
            ("max_pending", self.max_pending),
        ] {
            if value == 0 {
                return Err(ConfigError::Invalid(format!(
                    "windows.{name} must be at least 1"
                )));
            }
        }
        Ok(WindowLimits {
            allowed_lateness: lateness,
            max_keys: self.max_keys,
            max_values_per_key: self.max_values_per_key,
            max_evidence: self.max_evidence,
            max_pending: self.max_pending,
        })
    }

    /// How often to save state.
    pub fn snapshot_interval(&self) -> Result<std::time::Duration, ConfigError> {
        let ms = parse_timespan(&self.snapshot_interval)
            .map_err(|e| ConfigError::Invalid(format!("windows.snapshot_interval: {e}")))?;
        Ok(std::time::Duration::from_millis(ms as u64))
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
    /// Critical-process catalog.
    #[serde(default)]
    pub catalog: Option<PathBuf>,
    /// Inputs, read concurrently.
    pub inputs: Vec<InputConfig>,
    /// Alert output: a file, or `-` for stdout.
    #[serde(default = "default_output")]
    pub output: PathBuf,
    /// Dead-letter output (JSON lines); stderr when unset.
    #[serde(default)]
    pub dead_letters: Option<PathBuf>,
    /// Decoding settings.
    #[serde(default)]
    pub decoder: DecoderConfig,
    /// Batches in flight between two stages (backpressure bound).
    #[serde(default = "default_channel_capacity")]
    pub channel_capacity: usize,
    /// Serve Prometheus metrics on this address (e.g. `127.0.0.1:9898`).
    #[serde(default)]
    pub metrics_listen: Option<std::net::SocketAddr>,
    /// Progress display: `auto` (a bar on a terminal), `always`, `never`.
    #[serde(default)]
    pub progress: crate::progress::ProgressMode,
    /// Windowed rules.
    #[serde(default)]
    pub windows: WindowsConfig,
}

fn default_profile() -> String {
    "windows".into()
}

fn default_output() -> PathBuf {
    PathBuf::from("-")
}

fn default_channel_capacity() -> usize {
    8
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
    /// A setting is invalid.
    #[error("config: {0}")]
    Invalid(String),
}

impl RunConfig {
    /// Reads a config file, resolving relative paths against its folder.
    pub fn from_file(path: &Path) -> Result<RunConfig, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        let mut config: RunConfig =
            serde_yaml_ng::from_str(&text).map_err(|e| ConfigError::Parse {
                path: path.to_path_buf(),
                message: e.to_string(),
            })?;
        let base = path.parent().unwrap_or(Path::new("."));
        config.resolve_relative_to(base);
        config.validate()?;
        Ok(config)
    }

    fn resolve_relative_to(&mut self, base: &Path) {
        let fix = |p: &mut PathBuf| {
            if p.as_os_str() != "-" && p.is_relative() {
                *p = base.join(&*p);
            }
        };
        self.rules.iter_mut().for_each(fix);
        self.inputs.iter_mut().for_each(|i| fix(&mut i.path));
        if let Some(c) = &mut self.catalog {
            fix(c);
        }
        fix(&mut self.output);
        if let Some(d) = &mut self.dead_letters {
            fix(d);
        }
        if let Some(s) = &mut self.windows.state_file {
            fix(s);
        }
        if !matches!(self.profile.as_str(), "windows" | "passthrough") {
            self.profile = base.join(&self.profile).display().to_string();
        }
    }

    /// Cross-field checks.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.rules.is_empty() {
            return Err(ConfigError::Invalid("no rules given".into()));
        }
        if self.inputs.is_empty() {
            return Err(ConfigError::Invalid("no inputs given".into()));
        }
        if self.channel_capacity == 0 {
            return Err(ConfigError::Invalid(
                "channel_capacity must be at least 1".into(),
            ));
        }
        let stdin_inputs = self
            .inputs
            .iter()
            .filter(|i| i.path.as_os_str() == "-")
            .count();
        if stdin_inputs > 1 {
            return Err(ConfigError::Invalid(
                "stdin ('-') can be an input only once".into(),
            ));
        }
        self.decoder
            .validate()
            .map_err(|e| ConfigError::Invalid(format!("decoder: {e}")))?;
        self.windows.limits()?;
        self.windows.snapshot_interval()?;
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
        std::fs::write(&path, "rules: [r]\ninputs: [{path: a.jsonl}]\nouptut: x\n").unwrap();
        let e = RunConfig::from_file(&path).unwrap_err().to_string();
        assert!(e.contains("unknown field `ouptut`"), "{e}");
        std::fs::write(&path, "rules: [r]\ninputs: []\n").unwrap();
        let e = RunConfig::from_file(&path).unwrap_err().to_string();
        assert!(e.contains("no inputs"), "{e}");
        std::fs::write(&path, "rules: [r]\ninputs: [{path: a.jsonl}]\n").unwrap();
        let ok = RunConfig::from_file(&path).unwrap();
        assert_eq!(ok.inputs[0].path, dir.path().join("a.jsonl"));
        assert_eq!(ok.output, PathBuf::from("-"));
    }
}
