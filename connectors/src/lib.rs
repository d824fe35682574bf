//! vagt connectors.
