//! Windowed rules over event time: Sigma correlation rules and vagt's
//! statistical rules (baseline, first-seen, absence).
//!
//! ```text
//!  rule files ──loader──► WindowRule (spec) ──WindowPlan::build(RuleSet)──► WindowPlan
//!                                                                              │
//!  RuleMatch + event time + group values ──► Observation ──► WindowRuntime ──► WindowAlert
//!                                  (reorder by event time, watermark, bounded state, snapshots)
//! ```

pub mod plan;
pub mod runtime;
pub mod spec;
pub mod time;

pub use plan::{read_field, Feed, FieldSource, PlannedRule, WindowPlan};
pub use runtime::{
    GroupKey, Late, Observation, RestoreReport, WindowAlert, WindowLimits, WindowRuntime,
    WindowSnapshot, WindowStats,
};
pub use spec::{parse_timespan, BaselineSpec, Direction, Millis, Range, WindowKind, WindowRule};
pub use time::{format_millis, TimeError, TimeFormat, TimestampSpec};
