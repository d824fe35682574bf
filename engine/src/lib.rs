//! The vagt engine: the pipeline runtime, the critical-process catalog,
//! alerting, and the `vagt` binary's commands.

pub mod alert;
pub mod catalog;
pub mod config;
pub mod defaults;
mod detect;
pub mod pipeline;
pub mod progress;
pub mod signals;
mod sinks;
pub mod sources;
pub mod telemetry;
pub mod windows;

pub use alert::Alert;
pub use catalog::Catalog;
pub use config::{InputConfig, RunConfig};
pub use pipeline::{run, run_until, RunSummary};
