//! Integration tests of the rules crate, one binary.

mod corpus;
mod feeds;
mod fingerprints;
mod modifier_chains;
mod regression;
mod scoping;
mod semantics;
mod support;
mod workers;
