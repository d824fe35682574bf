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
//! ```
//! Relative paths are resolved against the config file's folder.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use vagt_connectors::DecoderConfig;

/// An input of the pipeline.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InputConfig {
    /// File path (`.gz` decompressed) or `-` for stdin.
    pub path: PathBuf,
    /// Actor stamped on alerts from this input, overriding the catalog's.
    #[serde(default)]
    pub actor: Option<String>,
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
