//! Integration tests of the rules crate, one binary.

mod corpus;
mod regression;
mod scoping;
mod semantics;
