//! Prefilter automata that start as contiguous NFAs and become DFAs once
//! they have searched enough bytes for a DFA to pay. A DFA searches
//! fastest, but building one is most of an automaton's build time and
//! memory, and most of the hundreds of small automata of a large rule set
//! search little: with SigmaHQ's Windows rules over the OTRF sample, five
//! automata searched four fifths of the bytes the automata searched.
//!
//! ```text
//!  start-up ─► contiguous NFA (searched with, bytes counted)
//!  DFA_AFTER_BYTES searched ─► DFA built once, by the worker that crossed it ─► searched with from then on
//! ```
//!
//! Which automaton searched a value never changes what is found: both
//! find every occurrence of every literal.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;

use aho_corasick::{AhoCorasick, AhoCorasickKind};

/// Bytes an automaton searches as an NFA before its DFA is built: about
/// what the NFA's slower search costs over the time a DFA of a few
/// hundred literals takes to build.
pub const DFA_AFTER_BYTES: u64 = 1 << 20;

/// The DFA an NFA becomes, once it has searched enough.
#[derive(Debug)]
pub(crate) struct Upgrade {
    searched: AtomicU64,
    dfa: OnceLock<Option<AhoCorasick>>,
    /// The literals, for the DFA's build.
    literals: Box<[Box<str>]>,
}

impl Upgrade {
    pub(crate) fn new(literals: &[&str]) -> Upgrade {
        Upgrade {
            searched: AtomicU64::new(0),
            dfa: OnceLock::new(),
            literals: literals.iter().map(|l| Box::from(*l)).collect(),
        }
    }

    /// The DFA, once built.
    pub(crate) fn dfa(&self) -> Option<&AhoCorasick> {
        self.dfa.get().and_then(Option::as_ref)
    }

    /// Counts `bytes` searched with the NFA; the search that crosses
    /// [`DFA_AFTER_BYTES`] builds the DFA (should it not build, the NFA
    /// stays).
    pub(crate) fn searched(&self, bytes: usize) {
        if self.dfa.get().is_some() {
            return;
        }
        let before = self.searched.fetch_add(bytes as u64, Ordering::Relaxed);
        if before + bytes as u64 >= DFA_AFTER_BYTES {
            self.dfa.get_or_init(|| {
                super::aho_corasick(
                    AhoCorasickKind::DFA,
                    self.literals.iter().map(|l| l.as_bytes()),
                )
                .ok()
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_dfa_is_built_once_enough_bytes_were_searched_and_finds_the_same() {
        let upgrade = Upgrade::new(&["mimikatz", "sekurlsa", "katz"]);
        let nfa = super::super::aho_corasick(
            AhoCorasickKind::ContiguousNFA,
            ["mimikatz", "sekurlsa", "katz"]
                .iter()
                .map(|l| l.as_bytes()),
        )
        .unwrap();
        upgrade.searched(DFA_AFTER_BYTES as usize - 1);
        assert!(upgrade.dfa().is_none());
        upgrade.searched(1);
        let dfa = upgrade.dfa().expect("built at the threshold");
        assert_eq!(dfa.kind(), AhoCorasickKind::DFA);
        let hay = b"run MimiKatz then sekurlsa::logonpasswords; KATZ";
        let found = |ac: &AhoCorasick| -> Vec<(usize, usize)> {
            ac.find_overlapping_iter(&hay[..])
                .map(|m| (m.pattern().as_usize(), m.start()))
                .collect()
        };
        assert_eq!(found(dfa), found(&nfa));
        assert_eq!(found(dfa).len(), 4);
    }
}
