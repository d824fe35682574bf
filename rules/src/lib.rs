//! vagt's rule languages: Sigma (specification v2.1) parsed, lowered and
//! compiled into an immutable [`RuleSet`] that evaluates whole Arrow
//! batches at a time.
//!
//! ```text
//!  files/folders ──loader──► RuleCollection ──RuleSetBuilder(profile)──► RuleSet
//!                                                                          │
//!  RecordBatch ────────────────────────────────────────► RuleSet::evaluate(batch, &mut Scratch)
//!                                                                          │
//!                                                                 Vec<RuleMatch { row, rule }>
//! ```
//! The crate is synchronous and knows nothing of I/O runtimes; the engine
//! feeds it batches.

pub mod cache;
pub mod compile;
pub mod error;
pub mod loader;
pub mod matcher;
mod parallel;
pub mod profile;
pub mod sigma;
pub mod window;
pub mod workers;

pub use cache::{CacheError, CacheUse, RulesCache};
pub use compile::feeds::{LiveSet, LiveSets, SetTest, UncheckedFeeds};
pub use compile::paths::{AutomatonPath, FingerprintPath, HashPath, MatchPaths, ScanPath};
pub use compile::{
    glob::Wildcard, AutomatonSummary, Compiled, FieldGate, RuleInfo, RuleSet, RuleSetBuilder,
    Unroutable, NULLS_COLUMN, RAW_COLUMN,
};
pub use error::{LoadError, ProfileError, RuleError};
pub use loader::{
    load_paths, load_paths_with, load_text, LoadedRule, LoadedWindowRule, Origin, Rejection,
    RuleCollection,
};
pub use matcher::{path_matches, RowSet, RuleMatch, RuleStats, Scratch};
pub use profile::Profile;
pub use sigma::{Level, LogSource, Placeholders, RuleMeta};
