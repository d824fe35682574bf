//! vagt engine.
