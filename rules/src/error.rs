//! Errors of the rules crate, grouped by who is at fault: a rule that is
//! wrong or unsupported ([`RuleError`]), a file that cannot be read
//! ([`LoadError`]), or a profile that is invalid ([`ProfileError`]).

use std::path::PathBuf;
use thiserror::Error;

/// Why a single rule was rejected. The message names the construct.
#[derive(Debug, Clone, PartialEq, Eq, Error, serde::Serialize, serde::Deserialize)]
pub enum RuleError {
    /// The YAML document does not parse.
    #[error("invalid YAML: {0}")]
    Yaml(String),
    /// A mandatory attribute is absent.
    #[error("missing required attribute '{0}'")]
    Missing(std::borrow::Cow<'static, str>),
    /// An attribute has the wrong shape.
    #[error("attribute '{attribute}': {message}")]
    Attribute {
        /// The attribute, e.g. `logsource` or `detection.selection`.
        attribute: String,
        /// What is wrong.
        message: String,
    },
    /// A field key carries a modifier that Sigma does not define.
    #[error("unknown modifier '{modifier}' on '{key}'")]
    UnknownModifier {
        /// The full key, e.g. `CommandLine|contians`.
        key: String,
        /// The offending modifier.
        modifier: String,
    },
    /// A value cannot be used with the given modifiers.
    #[error("'{key}': {message}")]
    Value {
        /// The full key with modifiers.
        key: String,
        /// What is wrong.
        message: String,
    },
    /// The condition does not parse.
    #[error("condition '{condition}': {message}")]
    Condition {
        /// The condition text.
        condition: String,
        /// What is wrong, with position.
        message: String,
    },
    /// The condition names a search identifier that the detection lacks.
    #[error("condition references undefined search identifier '{0}'")]
    UndefinedIdentifier(String),
    /// A construct this engine does not (yet) evaluate.
    #[error("unsupported: {0}")]
    Unsupported(String),
    /// A windowed rule refers to a rule that was not loaded (or was
    /// rejected, or cannot be routed under the profile).
    #[error("referenced rule '{0}' is not loaded: no rule with this id or name loaded, or it cannot match under the profile (`vagt rules check --verbose` lists those)")]
    MissingReference(String),
    /// Windowed rules that refer to each other in a circle.
    #[error("cycle of correlations: {0}")]
    ReferenceCycle(String),
    /// A windowed rule refers to a windowed rule that was rejected.
    #[error("referenced rule '{0}' was rejected")]
    RejectedReference(String),
    /// A value refers to a threat intelligence feed the run does not have.
    #[error("refers to feed '{feed}', which is not loaded: {known}")]
    UnknownFeed {
        /// The name in `%feed:NAME%`.
        feed: String,
        /// The feeds there are.
        known: String,
    },
    /// A global filter refers to rules none of which were loaded.
    #[error("filter refers to unknown rule '{0}'")]
    UnknownFilterTarget(String),
}

/// A rules file or folder that could not be read at all.
#[derive(Debug, Error)]
pub enum LoadError {
    /// I/O failure reading a path.
    #[error("cannot read {path}: {source}")]
    Io {
        /// The path.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
}

/// A field/logsource profile that is invalid.
#[derive(Debug, Error)]
pub enum ProfileError {
    /// The profile file cannot be read.
    #[error("cannot read profile {path}: {source}")]
    Io {
        /// The path.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// The profile does not parse.
    #[error("profile {origin}: {message}")]
    Parse {
        /// File name or `built-in windows`.
        origin: String,
        /// Parser message with line and column.
        message: String,
    },
    /// A logsource condition in the profile is not a valid Sigma search.
    #[error("profile {origin}, logsource {logsource}: {source}")]
    Condition {
        /// File name.
        origin: String,
        /// The logsource entry.
        logsource: String,
        /// The problem.
        #[source]
        source: RuleError,
    },
}
