//! Integration tests of the rules crate, one binary.

mod corpus;
mod fingerprints;
mod modifier_chains;
mod regression;
mod scoping;
mod semantics;
mod workers;
