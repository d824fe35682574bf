//! Whether a value contains a literal, ASCII case ignored: the test of a
//! `contains` that no automaton answers (a literal tested only on the rows
//! the rest of its rule leaves, which in PowerShell's `ContextInfo` and
//! `Payload` are kilobytes long).
//!
//! A short value is searched for the literal's rarest byte, in both cases,
//! each place compared whole. A long one is lowercased (ASCII only, so
//! every byte stays where it was) and searched with the literal's SIMD
//! substring finder: a literal of common letters (`powershell`, ` -w `,
//! `hidden`) is otherwise at hundreds of places in a script, each a restart
//! of the byte search. The rarest byte and the finder are worked out the
//! first time the literal is tested.
//!
//! A long value of a batch's string column is lowercased once per batch
//! ([`LoweredValues`]): PowerShell's context is tested for `reg`, `hidden`
//! and the host's path, and lowering it is most of each test.

use std::borrow::Cow;
use std::collections::HashMap;
use std::ops::Range;
use std::sync::OnceLock;

use foldhash::fast::RandomState;
use memchr::memmem;

/// Values at least this long are lowercased and searched with the finder.
const LOWERED_FROM: usize = 256;

/// How a literal is searched for, worked out the first time it is tested
/// and shared by the workers; boxed, as most literals are never tested
/// this way and every leaf of a rule set holds the place for it.
#[derive(Debug, Clone, Default)]
pub(crate) struct LowerFinder(OnceLock<Box<Prepared>>);

#[derive(Debug, Clone)]
struct Prepared {
    /// Where the literal's rarest byte is.
    rare_at: usize,
    /// The substring finder over lowercased values.
    finder: memmem::Finder<'static>,
}

impl LowerFinder {
    fn prepared(&self, needle: &[u8]) -> &Prepared {
        self.0.get_or_init(|| {
            Box::new(Prepared {
                rare_at: rarest(needle),
                finder: memmem::Finder::new(needle).into_owned(),
            })
        })
    }
}

/// The long values of one batch's string columns lowercased so far, each
/// once, by where they lie: within a batch, its Arrow buffers neither move
/// nor change, so a place and a length name one value. Only values read
/// from those buffers may be given, and [`LoweredValues::clear`] must be
/// called before the next batch.
#[derive(Debug, Default)]
pub(crate) struct LoweredValues {
    /// Per value (its address and length), its range in `bytes`.
    at: HashMap<(usize, usize), Range<usize>, RandomState>,
    bytes: Vec<u8>,
}

impl LoweredValues {
    /// Forgets every value (their batch is done); keeps the memory.
    pub(crate) fn clear(&mut self) {
        self.at.clear();
        self.bytes.clear();
    }

    /// `value` lowercased (ASCII only).
    fn lowered(&mut self, value: &[u8]) -> &[u8] {
        let key = (value.as_ptr() as usize, value.len());
        let range = match self.at.get(&key) {
            Some(range) => range.clone(),
            None => {
                let start = self.bytes.len();
                self.bytes.extend(value.iter().map(u8::to_ascii_lowercase));
                let range = start..self.bytes.len();
                self.at.insert(key, range.clone());
                range
            }
        };
        &self.bytes[range]
    }
}

/// Whether `hay` holds `needle` (lowercase), ASCII case-insensitively.
/// `finder` must only ever be given this `needle`. `lowered` is the batch's
/// for a value read from one of its string columns (a long one is then
/// lowercased once per batch); `None` for any other text.
pub(crate) fn contains_ascii_fold(
    hay: &[u8],
    needle: &[u8],
    finder: &LowerFinder,
    lowered: Option<&mut LoweredValues>,
) -> bool {
    if needle.len() > hay.len() {
        return false;
    }
    if needle.is_empty() {
        return true;
    }
    let prepared = finder.prepared(needle);
    if hay.len() < LOWERED_FROM {
        return by_rarest_byte(hay, needle, prepared.rare_at);
    }
    let lower = match lowered {
        Some(lowered) => Cow::Borrowed(lowered.lowered(hay)),
        None => Cow::Owned(hay.to_ascii_lowercase()),
    };
    prepared.finder.find(&lower).is_some()
}

/// Each place where the needle's byte at `at` is, in either case (found
/// with SIMD), compared whole.
fn by_rarest_byte(hay: &[u8], needle: &[u8], at: usize) -> bool {
    let rare = needle[at];
    let starts = &hay[at..=hay.len() - needle.len() + at];
    memchr::memchr2_iter(rare, rare.to_ascii_uppercase(), starts)
        .any(|start| hay[start..start + needle.len()].eq_ignore_ascii_case(needle))
}

/// Where the rarest byte of `needle` is (the first of the rarest).
fn rarest(needle: &[u8]) -> usize {
    needle
        .iter()
        .enumerate()
        .min_by_key(|(_, &b)| byte_rank(b))
        .map_or(0, |(at, _)| at)
}

/// How common a (lowercase) byte is in event text, roughly: letters by
/// their frequency in English, the separators of paths and command lines
/// and whitespace as the commonest. Lower is rarer.
fn byte_rank(byte: u8) -> u8 {
    const COMMON: &[u8] = b"etaoinsrhldcumfpgwybvkxjqz";
    match byte {
        b' ' | b'\\' | b'.' | b'/' | b'-' | b'_' | b':' | b'"' => 200,
        b'a'..=b'z' => {
            100 + COMMON
                .iter()
                .position(|&c| c == byte)
                .map_or(0, |p| 26 - p as u8)
        }
        b'0'..=b'9' => 90,
        _ => 10,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every offset compared.
    fn naive(hay: &[u8], needle: &[u8]) -> bool {
        needle.is_empty()
            || hay
                .windows(needle.len())
                .any(|w| w.eq_ignore_ascii_case(needle))
    }

    #[test]
    fn a_literal_is_found_case_insensitively_wherever_it_is() {
        use crate::compile::fingerprint::tests::random_haystack;
        let mut random = fastrand::Rng::with_seed(0x9e37_79b9_7f4a_7c15);
        let alphabet = b"aAbB\\.xX-1 zZ\xc3\xa9";
        // Short values by the rarest byte, long ones lowercased, with one
        // finder per literal as a rule holds it.
        for max_len in [40, 4 * LOWERED_FROM] {
            for _ in 0..5_000 {
                let hay = random_haystack(&mut random, alphabet, max_len);
                let needle = random_haystack(&mut random, alphabet, 5).to_ascii_lowercase();
                let finder = LowerFinder::default();
                for _ in 0..2 {
                    assert_eq!(
                        contains_ascii_fold(&hay, &needle, &finder, None),
                        naive(&hay, &needle),
                        "{:?} in {:?}",
                        String::from_utf8_lossy(&needle),
                        String::from_utf8_lossy(&hay)
                    );
                }
            }
        }
        // A batch's values, each tested for two literals: lowered once.
        let values: Vec<Vec<u8>> = (0..50)
            .map(|_| random_haystack(&mut random, alphabet, 4 * LOWERED_FROM))
            .collect();
        let mut lowered = LoweredValues::default();
        for needle in [&b"ab"[..], b"x-1 z"] {
            let finder = LowerFinder::default();
            for value in &values {
                assert_eq!(
                    contains_ascii_fold(value, needle, &finder, Some(&mut lowered)),
                    naive(value, needle)
                );
            }
        }
        let long = values.iter().filter(|v| v.len() >= LOWERED_FROM).count();
        assert_eq!(lowered.at.len(), long);
        lowered.clear();
        assert!(lowered.at.is_empty() && lowered.bytes.is_empty());
        let finder = LowerFinder::default();
        assert!(contains_ascii_fold(
            b"C:\\Windows\\System32\\NTDLL.dll",
            b"ntdll.dll",
            &finder,
            None
        ));
        assert!(!contains_ascii_fold(
            b"ntdll.dl",
            b"ntdll.dll",
            &finder,
            None
        ));
        let script = format!("{} PowerShell.exe -W Hidden", "$x = 1; ".repeat(64));
        let finder = LowerFinder::default();
        assert!(contains_ascii_fold(
            script.as_bytes(),
            b" -w hidden",
            &finder,
            None
        ));
        let finder = LowerFinder::default();
        assert!(!contains_ascii_fold(
            script.as_bytes(),
            b" -w hiddenx",
            &finder,
            None
        ));
    }
}
