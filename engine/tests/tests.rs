//! Integration tests of the engine through the `vagt` binary, one test
//! binary with a module per area.

mod archive;
mod archive_store;
mod bad_input;
mod cli;
mod default_run;
mod delivery;
mod event_time;
mod hostile;
mod http_door;
mod intel;
mod kafka;
mod kafka_delivery;
mod metrics;
mod organisations;
mod outputs;
mod receiver;
mod reload;
mod report;
mod resilience;
mod routing;
mod sources;
mod support;
mod taxii;
mod warning;
mod windows;
