//! Hash literals: prefilter literals that are a key and a file hash, as
//! Sysmon writes its `Hashes` field (`SHA256=…,MD5=…,IMPHASH=…`). They are
//! looked up in a hash map at the start of each run of hex digits in a
//! value instead of walked by an automaton: SigmaHQ's Windows rules hold
//! 5,600 of them, whose automaton took a quarter of the rule set's build.
//!
//! The lookup finds every occurrence: in a literal `key` + `hex`, the key
//! ends in a byte that is not a hex digit, so wherever the literal occurs
//! in a value, its hex digits start a run of hex digits there. Looking up
//! the first `hex.len()` digits of every run, for each length the set
//! holds, and comparing the bytes before the run with the key, finds them.
//! Like the automata, it matches ASCII letters in either case.

use std::collections::HashMap;

use super::NeedleId;

/// Fewest hex digits a hash literal ends in (an MD5).
const MIN_DIGITS: usize = 32;

/// Most hex digits a hash literal ends in (a SHA-512).
const MAX_DIGITS: usize = 128;

/// Where the hex digits of `literal` (lowercase) start, if it is a hash
/// literal: a non-empty key, then `MIN_DIGITS..=MAX_DIGITS` hex digits.
pub(crate) fn digits_start(literal: &str) -> Option<usize> {
    let bytes = literal.as_bytes();
    let digits = bytes.iter().rev().take_while(|b| is_digit(**b)).count();
    let start = bytes.len() - digits;
    ((MIN_DIGITS..=MAX_DIGITS).contains(&digits) && start > 0).then_some(start)
}

fn is_digit(b: u8) -> bool {
    b.is_ascii_hexdigit()
}

/// A key (lowercase) and the literal it makes with the digits it precedes.
type Keyed = (Box<[u8]>, NeedleId);

/// A set of hash literals, each with the literal it stands for.
#[derive(Debug, Clone)]
pub(crate) struct HashLiterals {
    /// Lowercase hex digits → the keys (lowercase) they follow, with the
    /// literal of each.
    by_digits: HashMap<Box<[u8]>, Vec<Keyed>, foldhash::fast::RandomState>,
    /// The digit counts of the literals, ascending.
    lengths: Vec<usize>,
}

impl HashLiterals {
    /// The set of the hash literals among `literals` (see
    /// [`digits_start`]), if there are any, and the other literals.
    pub(crate) fn split(
        literals: Vec<&(String, NeedleId)>,
    ) -> (Option<HashLiterals>, Vec<&(String, NeedleId)>) {
        let mut by_digits: HashMap<_, Vec<_>, _> = HashMap::default();
        let mut lengths = Vec::new();
        let mut others = Vec::new();
        for literal in literals {
            let (text, needle) = literal;
            let Some(start) = digits_start(text) else {
                others.push(literal);
                continue;
            };
            let (key, digits) = text.as_bytes().split_at(start);
            let digits = digits.to_ascii_lowercase();
            if !lengths.contains(&digits.len()) {
                lengths.push(digits.len());
            }
            by_digits
                .entry(digits.into_boxed_slice())
                .or_insert_with(Vec::new)
                .push((key.to_ascii_lowercase().into_boxed_slice(), *needle));
        }
        lengths.sort_unstable();
        let set = (!by_digits.is_empty()).then_some(HashLiterals { by_digits, lengths });
        (set, others)
    }

    /// The literals it holds.
    pub(crate) fn needles(&self) -> impl Iterator<Item = NeedleId> + '_ {
        self.by_digits.values().flatten().map(|(_, needle)| *needle)
    }

    /// Calls `hit` with each literal that occurs in `value`.
    pub(crate) fn find(&self, value: &[u8], hit: &mut impl FnMut(NeedleId)) {
        let Some(&shortest) = self.lengths.first() else {
            return;
        };
        let mut i = 0;
        while i < value.len() {
            if !is_digit(value[i]) {
                i += 1;
                continue;
            }
            let start = i;
            while i < value.len() && is_digit(value[i]) {
                i += 1;
            }
            if i - start >= shortest {
                self.find_at(value, start, i, hit);
            }
        }
    }

    /// The literals whose digits start the run `value[start..end]`.
    fn find_at(&self, value: &[u8], start: usize, end: usize, hit: &mut impl FnMut(NeedleId)) {
        let mut lower = [0u8; MAX_DIGITS];
        let run = &value[start..end.min(start + MAX_DIGITS)];
        lower[..run.len()].copy_from_slice(run);
        lower[..run.len()].make_ascii_lowercase();
        for &len in self.lengths.iter().take_while(|len| **len <= run.len()) {
            let Some(keys) = self.by_digits.get(&lower[..len]) else {
                continue;
            };
            for (key, needle) in keys {
                if start >= key.len() && value[start - key.len()..start].eq_ignore_ascii_case(key) {
                    hit(*needle);
                }
            }
        }
    }

    /// Bytes it holds, roughly.
    pub(crate) fn memory_usage(&self) -> usize {
        let entry = std::mem::size_of::<(Box<[u8]>, Vec<Keyed>)>();
        self.by_digits
            .iter()
            .map(|(digits, keys)| {
                entry
                    + digits.len()
                    + keys
                        .iter()
                        .map(|(key, _)| key.len() + std::mem::size_of::<Keyed>())
                        .sum::<usize>()
            })
            .sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MD5: &str = "0123456789abcdef0123456789abcdef";

    fn hits(set: &HashLiterals, value: &str) -> Vec<NeedleId> {
        let mut out = Vec::new();
        set.find(value.as_bytes(), &mut |n| out.push(n));
        out.sort_unstable();
        out
    }

    #[test]
    fn a_hash_literal_is_a_key_then_32_to_128_hex_digits() {
        assert_eq!(digits_start(&format!("md5={MD5}")), Some(4));
        assert_eq!(digits_start(&format!("sha256={MD5}{MD5}")), Some(7));
        assert_eq!(digits_start(MD5), None, "no key");
        assert_eq!(digits_start("md5=0123456789abcdef"), None, "too short");
        assert_eq!(digits_start(&format!("x={}", MD5.repeat(5))), None);
        assert_eq!(digits_start(&format!("md5={MD5}.")), None);
    }

    #[test]
    fn finds_each_literal_after_its_key_in_any_case() {
        let md5 = (format!("md5={MD5}"), 0);
        let imphash = (format!("imphash={MD5}"), 1);
        let sha256 = (format!("sha256={MD5}{MD5}"), 2);
        let other = ("md5=0123".to_string(), 3);
        let (set, others) = HashLiterals::split(vec![&md5, &imphash, &other, &sha256]);
        assert_eq!(others, [&other]);
        let set = set.expect("hash literals");
        let mut needles: Vec<_> = set.needles().collect();
        needles.sort_unstable();
        assert_eq!(needles, [0, 1, 2]);
        let upper = MD5.to_ascii_uppercase();
        assert_eq!(hits(&set, &format!("MD5={upper},IMPHASH=00")), [0]);
        assert_eq!(hits(&set, &format!("IMPHASH={upper}")), [1]);
        assert_eq!(hits(&set, &format!("SHA1=00,SHA256={upper}{MD5}")), [2]);
        // A longer run holds the literal's digits at its start.
        assert_eq!(hits(&set, &format!("md5={MD5}ff")), [0]);
        assert_eq!(hits(&set, &format!("xmd5={MD5}")), [0], "contains");
        assert!(hits(&set, &format!("sha1={MD5}")).is_empty(), "other key");
        assert!(
            hits(&set, &format!("md5=f{MD5}")).is_empty(),
            "not at the run start"
        );
        assert!(hits(&set, &format!("md5={}", &MD5[1..])).is_empty());
        assert!(hits(&set, "").is_empty());
    }
}
