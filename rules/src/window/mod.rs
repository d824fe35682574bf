//! Windowed rules over event time: Sigma correlation rules and vagt's
//! statistical rules (baseline, first-seen, absence).
//!
//! ```text
//!  rule files ──loader──► WindowRule (spec) ──WindowPlan::build(RuleSet)──► WindowPlan
//!                                                                              │
//!  RuleMatch + event time + group values ──► Observation ──► WindowRuntime ──► WindowAlert
//!        │ from a source (input, organisation, host)      (clock: per-source watermarks,
//!        │                                                  gates per key; kinds: the state
//!        ▼ finite inputs first: HistorySorter (by event time)  of each rule kind; snapshots)
//! ```

pub mod clock;
pub mod history;
mod kinds;
pub mod plan;
pub mod runtime;
pub mod spec;
pub mod time;

pub use clock::{ClockReading, Late, SourceId, SourceKey};
pub use history::{
    HistoryError, HistoryLimits, HistoryOrder, HistorySorter, HistoryStats, TooLarge,
};
pub use kinds::robust_centre;
pub use plan::{read_field, Feed, FieldSource, PlannedRule, WindowPlan};
pub use runtime::{
    GroupKey, Observation, RestoreReport, WindowAlert, WindowLimits, WindowRuntime, WindowSnapshot,
    WindowStats, HISTORY_INPUT,
};
pub use spec::{parse_timespan, BaselineSpec, Direction, Millis, Range, WindowKind, WindowRule};
pub use time::{format_millis, TimeError, TimeFormat, TimestampSpec};
