//! Value sets that change while rules run: the threat intelligence feeds
//! a rule refers to as `%feed:NAME%` (with `expand`, or with `cidr` for
//! the feed's addresses and networks). The rules crate knows a feed only
//! through these traits; the engine's intel module implements them, and
//! swaps a feed's new version in without recompiling the rules.

use std::fmt::Debug;
use std::sync::Arc;

/// Whether a value is in a set, as the set was when the test was taken.
pub type SetTest<'a> = Box<dyn Fn(&str) -> bool + 'a>;

/// One feed as a rule's value list.
pub trait LiveSet: Send + Sync + Debug {
    /// The test of the set as it is now; taken once per batch.
    fn current(&self) -> SetTest<'_>;
}

/// The feeds rules may refer to.
pub trait LiveSets: Send + Sync + Debug {
    /// Feed `name`, all its indicators or (`addresses_only`, for `cidr`)
    /// its addresses and networks; `None` when there is no such feed.
    fn resolve(&self, name: &str, addresses_only: bool) -> Option<Arc<dyn LiveSet>>;

    /// The feeds' names, for the error naming an unknown one.
    fn names(&self) -> Vec<String>;
}

/// Feeds for checking rules without a run: every name resolves, to a set
/// that holds nothing (`vagt rules check`, `vagt rules test`).
#[derive(Debug, Default)]
pub struct UncheckedFeeds;

#[derive(Debug)]
struct EmptySet;

impl LiveSet for EmptySet {
    fn current(&self) -> SetTest<'_> {
        Box::new(|_| false)
    }
}

impl LiveSets for UncheckedFeeds {
    fn resolve(&self, _name: &str, _addresses_only: bool) -> Option<Arc<dyn LiveSet>> {
        Some(Arc::new(EmptySet))
    }

    fn names(&self) -> Vec<String> {
        Vec::new()
    }
}
