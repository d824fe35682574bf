//! The vagt engine: the pipeline runtime, the critical-process catalog,
//! alerting, and the `vagt` binary's commands.

pub mod alert;
pub mod archive;
pub mod catalog;
pub mod config;
pub mod defaults;
mod delivery;
mod detect;
pub mod dry_run;
pub mod intel;
pub mod pipeline;
pub mod progress;
mod projection;
mod reload;
#[cfg(feature = "hunt")]
pub mod report;
pub mod routes;
pub mod rule_tests;
pub mod signals;
pub mod sinks;
pub mod sources;
#[cfg(feature = "hunt")]
pub mod sql;
pub mod telemetry;
pub mod warning;
pub mod windows;

pub use alert::Alert;
pub use catalog::Catalog;
pub use config::{InputConfig, RunConfig};
pub use pipeline::{run, run_until, RunSummary};
