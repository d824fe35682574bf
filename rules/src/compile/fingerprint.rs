//! Fingerprints: a short piece of every literal of an automaton, searched
//! instead of the automaton. Around each fingerprint found, the literals it
//! was taken from are compared in place: every occurrence of a literal
//! holds its fingerprint at a known offset, so this finds what the
//! automaton, which matches case-insensitively byte by byte with no such
//! shortcut, would find, without walking the bytes between fingerprints.
//!
//! ```text
//!  literals (lowercase) ─► per literal: the 3-byte window with the fewest case forms
//!     few case forms in all ─► every case form of each window ─► SIMD (packed Teddy)
//!     more, and SIMD holds the short literals' ─► the long ones skip bytes (Wu–Manber)
//!     more                  ─► a bit per folded window ─► tested at every position
//!  fingerprint at p ─► each literal it came from, at p − its offset, compared ignoring ASCII case
//! ```
//!
//! Where at least half of the literals share a piece of two punctuation
//! bytes (`::` in most of mimikatz's keywords), those are found by a SIMD
//! substring search for that piece instead: it has one case form, so the
//! search skips bytes far faster than Teddy over many case forms, and the
//! literals left have few enough case forms for Teddy's faster kind.
//!
//! Where there are too many case forms for SIMD (PowerShell's context,
//! searched for 250 cmdlet names), the literals of at least
//! [`SKIP_MIN_LEN`] bytes are found by a [`SkipSearch`], which reads a
//! few bytes of every window as long as the shortest of them, and SIMD
//! finds the few short ones, if it holds them.
//!
//! It pays on long values (the raw event for keyword rules, PowerShell's
//! context, call traces), where automata would otherwise walk every byte:
//! the SIMD search skips most bytes, the bit table tests each with a few
//! independent instructions where the automaton follows a chain of
//! transitions. A literal shorter than its fingerprint (`)`, `0x`) is
//! found by a SIMD byte search (`memchr`) instead. Not built for automata
//! with more than [`MAX_LITERALS`] literals (too many fingerprints to be
//! selective) or more than [`MAX_SHORT`] short ones.

use std::collections::HashMap;
use std::ops::Range;

use aho_corasick::packed::{Config, MatchKind, Searcher};
use aho_corasick::Span;
use memchr::memmem;

/// Fingerprints (case forms counted) one SIMD searcher may hold.
const MAX_PATTERNS: usize = 64;

/// Literals an automaton may have for fingerprints (in a bit table).
pub(crate) const MAX_LITERALS: usize = 2_000;

/// Literals shorter than a fingerprint an automaton may have for
/// fingerprints: each is a pass of its own over the value.
pub(crate) const MAX_SHORT: usize = 4;

/// A value shorter than this is searched by the automaton directly: the
/// fingerprint search costs more than it saves.
pub(crate) const MIN_VALUE_LEN: usize = 128;

/// An automaton's literals, found by their fingerprints.
#[derive(Debug, Clone)]
pub(crate) struct Fingerprints {
    /// The literals found by a piece they share, if any.
    shared: Option<SharedPiece>,
    /// Long literals found by skipping bytes, if the others fit SIMD.
    skip: Option<SkipSearch>,
    finder: Finder,
    /// The literals shorter than a fingerprint (by pattern index), found
    /// byte by byte.
    short: Vec<u32>,
    /// The literals, lowercase, by the automaton's pattern index.
    literals: Vec<Box<[u8]>>,
}

/// A piece of two punctuation bytes that many literals hold, found with
/// SIMD; each literal holding it, with the piece's offset in it.
#[derive(Debug, Clone)]
struct SharedPiece {
    finder: memmem::Finder<'static>,
    holders: Vec<(u32, u32)>,
}

/// How fingerprints are found.
#[derive(Debug, Clone)]
enum Finder {
    /// Every case form of every fingerprint, searched with SIMD; per
    /// fingerprint (the searcher's pattern), the literals it was taken
    /// from, each with the fingerprint's offset in it.
    Simd {
        searcher: Searcher,
        holders: Vec<Vec<(u32, u32)>>,
    },
    /// A bit per folded window (see [`fold`]), tested at every position.
    Table(WindowTable),
    /// No literal is left for fingerprints (all hold the shared piece).
    Nothing,
}

impl Fingerprints {
    /// The fingerprints of `literals` (matched ASCII case-insensitively),
    /// if they are worth having.
    pub(crate) fn new(literals: &[&str]) -> Option<Fingerprints> {
        if literals.is_empty() || literals.len() > MAX_LITERALS {
            return None;
        }
        let lowered: Vec<Box<[u8]>> = literals
            .iter()
            .map(|l| l.to_ascii_lowercase().into_bytes().into_boxed_slice())
            .collect();
        let shared = shared_piece(&lowered);
        // Per literal, whether the shared piece finds it.
        let mut found_elsewhere = vec![false; lowered.len()];
        for &(literal, _) in shared.iter().flat_map(|s| &s.holders) {
            found_elsewhere[literal as usize] = true;
        }
        // Per literal, where its fingerprint starts; `None` for a short
        // literal and for one found otherwise.
        let offsets = |elsewhere: &[bool]| -> Vec<Option<usize>> {
            (0..lowered.len())
                .map(|i| best_window(&lowered[i]).filter(|_| !elsewhere[i]))
                .collect()
        };
        let windows = offsets(&found_elsewhere);
        let short: Vec<u32> = (0..lowered.len() as u32)
            .filter(|&i| windows[i as usize].is_none() && !found_elsewhere[i as usize])
            .collect();
        if short.len() > MAX_SHORT
            || short.len() == lowered.len()
            || short.iter().any(|&i| lowered[i as usize].is_empty())
        {
            return None;
        }
        let mut skip = None;
        let finder = if windows.iter().all(Option::is_none) {
            Finder::Nothing
        } else if let Some(simd) = simd_finder(&lowered, &windows) {
            simd
        } else {
            // Too many case forms for SIMD: the long literals skip bytes,
            // if SIMD holds the rest; else all are tested at every position.
            let long: Vec<bool> = (0..lowered.len())
                .map(|i| !found_elsewhere[i] && lowered[i].len() >= SKIP_MIN_LEN)
                .collect();
            let not_long: Vec<bool> = found_elsewhere
                .iter()
                .zip(&long)
                .map(|(e, l)| *e || *l)
                .collect();
            let rest = offsets(&not_long);
            let rest_finder = if rest.iter().all(Option::is_none) {
                Some(Finder::Nothing)
            } else {
                simd_finder(&lowered, &rest)
            };
            match rest_finder {
                Some(rest_finder) if long.iter().filter(|l| **l).count() >= SKIP_MIN_LITERALS => {
                    skip = Some(SkipSearch::new(&lowered, &long));
                    rest_finder
                }
                _ => Finder::Table(WindowTable::new(&lowered, &windows)),
            }
        };
        Some(Fingerprints {
            shared,
            skip,
            finder,
            short,
            literals: lowered,
        })
    }

    /// Whether a SIMD search finds the fingerprints (else a bit table).
    #[cfg(test)]
    fn simd(&self) -> bool {
        matches!(self.finder, Finder::Simd { .. })
    }

    /// Whether long literals are found by skipping bytes.
    #[cfg(test)]
    fn skips(&self) -> bool {
        self.skip.is_some()
    }

    /// The piece the literals found by it share, if any.
    #[cfg(test)]
    fn shared(&self) -> Option<&[u8]> {
        self.shared.as_ref().map(|s| s.finder.needle())
    }

    /// Heap bytes held.
    pub(crate) fn memory_usage(&self) -> usize {
        let finder = match &self.finder {
            Finder::Simd { searcher, holders } => {
                searcher.memory_usage() + holders.iter().map(|h| h.len() * 8).sum::<usize>()
            }
            Finder::Table(table) => table.memory_usage(),
            Finder::Nothing => 0,
        };
        let shared = self.shared.as_ref().map_or(0, |s| s.holders.len() * 8);
        let skip = self.skip.as_ref().map_or(0, SkipSearch::memory_usage);
        finder + shared + skip + self.literals.iter().map(|l| l.len()).sum::<usize>()
    }

    /// Calls `found(literal, start, end)` for every occurrence of a literal
    /// in `hay[span]`, ASCII case ignored (an occurrence found more than
    /// once may be reported more than once), except those starting before
    /// where `found` said, for an earlier occurrence of the same literal,
    /// that it needs no more of that literal (0 for every occurrence): a
    /// call trace holds `:\Windows\System32\` at every frame, and one
    /// occurrence per value is all a prefilter needs.
    pub(crate) fn find_each(
        &self,
        hay: &[u8],
        span: Range<usize>,
        found: &mut impl FnMut(usize, usize, usize) -> usize,
    ) {
        // Per literal, before where its occurrences are not wanted.
        let mut until = vec![0; self.literals.len()];
        let mut report = |literal: usize, start: usize, end: usize| {
            if start >= until[literal] {
                until[literal] = found(literal, start, end);
            }
        };
        for &literal in &self.short {
            find_short(hay, span.clone(), literal, &self.literals, &mut report);
        }
        let mut verify = |position: usize, holders: &[(u32, u32)]| {
            for &(literal, offset) in holders {
                let text = &self.literals[literal as usize];
                let Some(start) = position.checked_sub(offset as usize) else {
                    continue;
                };
                let end = start + text.len();
                if start >= span.start
                    && start >= until[literal as usize]
                    && end <= span.end
                    && hay[start..end].eq_ignore_ascii_case(text)
                {
                    until[literal as usize] = found(literal as usize, start, end);
                }
            }
        };
        if let Some(shared) = &self.shared {
            // One byte past each, not past its end: the piece may overlap
            // itself (`:::` holds `::` twice).
            let mut at = span.start;
            while let Some(found) = shared.finder.find(&hay[at..span.end]) {
                verify(at + found, &shared.holders);
                at += found + 1;
            }
        }
        if let Some(skip) = &self.skip {
            skip.find_each(hay, span.clone(), &mut verify);
        }
        match &self.finder {
            Finder::Simd { searcher, holders } => {
                let mut at = span.start;
                while at < span.end {
                    let Some(m) = searcher.find_in(hay, Span::from(at..span.end)) else {
                        return;
                    };
                    // Fingerprints are all WINDOW bytes long and distinct: at
                    // most one starts at each position, so stepping one byte
                    // past each finds them all, overlapping ones too.
                    verify(m.start(), &holders[m.pattern().as_usize()]);
                    at = m.start() + 1;
                }
            }
            Finder::Table(table) => table.find_each(hay, span.clone(), &mut verify),
            Finder::Nothing => {}
        }
    }
}

/// Calls `found` for every occurrence of the short literal `literal` in
/// `hay[span]`, ASCII case ignored: its first byte (in both cases) by a
/// SIMD byte search, the rest compared.
fn find_short(
    hay: &[u8],
    span: Range<usize>,
    literal: u32,
    literals: &[Box<[u8]>],
    found: &mut impl FnMut(usize, usize, usize),
) {
    let text = &literals[literal as usize];
    let first = text[0];
    let bytes = &hay[span.clone()];
    let mut at = |position: usize| {
        let end = position + text.len();
        if end <= bytes.len() && bytes[position..end].eq_ignore_ascii_case(text) {
            found(literal as usize, span.start + position, span.start + end);
        }
    };
    if first.is_ascii_alphabetic() {
        memchr::memchr2_iter(first, first.to_ascii_uppercase(), bytes).for_each(&mut at);
    } else {
        memchr::memchr_iter(first, bytes).for_each(&mut at);
    }
}

/// The piece of two punctuation bytes that the most literals hold, if at
/// least half of them (and two) do. A quote or backslash is in every raw
/// event many times over (JSON's quotes and escapes), so no piece with one
/// is taken.
fn shared_piece(lowered: &[Box<[u8]>]) -> Option<SharedPiece> {
    let piece_byte = |b: &u8| b.is_ascii_punctuation() && !matches!(b, b'"' | b'\\');
    let mut counts: HashMap<[u8; 2], usize> = HashMap::new();
    for literal in lowered {
        let mut pieces: Vec<[u8; 2]> = literal
            .windows(2)
            .filter(|w| w.iter().all(piece_byte))
            .map(|w| [w[0], w[1]])
            .collect();
        pieces.sort_unstable();
        pieces.dedup();
        for piece in pieces {
            *counts.entry(piece).or_default() += 1;
        }
    }
    let (piece, count) = counts
        .into_iter()
        .max_by_key(|&(piece, count)| (count, std::cmp::Reverse(piece)))?;
    if count < 2 || count * 2 < lowered.len() {
        return None;
    }
    let holders = lowered
        .iter()
        .enumerate()
        .filter_map(|(i, l)| {
            let at = memmem::find(l, &piece)?;
            Some((i as u32, at as u32))
        })
        .collect();
    Some(SharedPiece {
        finder: memmem::Finder::new(&piece).into_owned(),
        holders,
    })
}

/// The SIMD finder, if every case form of the fingerprints fits in one
/// (none for literals without one); `None` if they do not fit, or there
/// are none.
fn simd_finder(lowered: &[Box<[u8]>], offsets: &[Option<usize>]) -> Option<Finder> {
    let mut patterns: Vec<Vec<u8>> = Vec::new();
    let mut holders: Vec<Vec<(u32, u32)>> = Vec::new();
    for (index, (literal, offset)) in lowered.iter().zip(offsets).enumerate() {
        let Some(offset) = *offset else { continue };
        for form in case_forms(&literal[offset..offset + WINDOW]) {
            let pattern = match patterns.iter().position(|p| *p == form) {
                Some(pattern) => pattern,
                None => {
                    patterns.push(form);
                    holders.push(Vec::new());
                    patterns.len() - 1
                }
            };
            holders[pattern].push((index as u32, offset as u32));
        }
        if patterns.len() > MAX_PATTERNS {
            return None;
        }
    }
    let searcher = Config::new()
        .match_kind(MatchKind::LeftmostFirst)
        .builder()
        .extend(&patterns)
        .build()?;
    Some(Finder::Simd { searcher, holders })
}

/// log2 of the bits of a [`WindowTable`]: 8 KiB, in the first-level
/// cache beside the haystack.
const TABLE_BITS: u32 = 16;

/// Per folded window, the literals it was taken from, each with the
/// window's offset in it.
type Holders = HashMap<u32, Vec<(u32, u32)>, foldhash::fast::RandomState>;

/// Heap bytes `holders` holds, roughly.
fn holders_memory(holders: &Holders) -> usize {
    holders.values().map(|h| 16 + h.len() * 8).sum()
}

/// Fingerprints as a bit per hashed folded window, tested at every
/// position, and the literals behind each folded window.
#[derive(Debug, Clone)]
struct WindowTable {
    bits: Box<[u64; (1 << TABLE_BITS) / 64]>,
    holders: Holders,
}

/// The window in the low three bytes of `w` with every byte's bit 0x20
/// set: each ASCII letter becomes its lowercase, and a few other bytes
/// share a value with another (a backslash with `|`, say), which costs
/// only a comparison where the literal is not.
#[inline(always)]
fn fold(w: u32) -> u32 {
    (w & 0x00FF_FFFF) | 0x0020_2020
}

/// [`fold`] of the window at the start of `bytes` (at least three).
fn fold_window(bytes: &[u8]) -> u32 {
    fold(u32::from_le_bytes([bytes[0], bytes[1], bytes[2], 0]))
}

/// `folded` hashed to `BITS` bits: a slot of a table of `1 << BITS`.
#[inline(always)]
fn slot<const BITS: u32>(folded: u32) -> usize {
    (folded.wrapping_mul(0x9E37_79B1) >> (32 - BITS)) as usize
}

impl WindowTable {
    fn new(lowered: &[Box<[u8]>], offsets: &[Option<usize>]) -> WindowTable {
        let mut bits = Box::new([0u64; (1 << TABLE_BITS) / 64]);
        let mut holders = Holders::default();
        for (index, (literal, offset)) in lowered.iter().zip(offsets).enumerate() {
            let Some(offset) = *offset else { continue };
            let folded = fold_window(&literal[offset..]);
            let slot = slot::<TABLE_BITS>(folded);
            bits[slot / 64] |= 1 << (slot % 64);
            holders
                .entry(folded)
                .or_default()
                .push((index as u32, offset as u32));
        }
        WindowTable { bits, holders }
    }

    fn memory_usage(&self) -> usize {
        self.bits.len() * 8 + holders_memory(&self.holders)
    }

    /// Calls `verify(position, holders)` where a fingerprint may start in
    /// `hay[span]`.
    fn find_each(
        &self,
        hay: &[u8],
        span: Range<usize>,
        verify: &mut impl FnMut(usize, &[(u32, u32)]),
    ) {
        let bytes = &hay[span.clone()];
        // Eight bytes read hold the windows at six positions; the test
        // inline, what follows a set bit out of line.
        let mut position = 0;
        while position + 8 <= bytes.len() {
            let mut eight = [0u8; 8];
            eight.copy_from_slice(&bytes[position..position + 8]);
            let x = u64::from_le_bytes(eight);
            for k in 0..6 {
                let folded = fold((x >> (8 * k)) as u32);
                if self.may_hold(folded) {
                    self.candidates(span.start + position + k, folded, verify);
                }
            }
            position += 6;
        }
        while position + WINDOW <= bytes.len() {
            let folded = fold_window(&bytes[position..]);
            if self.may_hold(folded) {
                self.candidates(span.start + position, folded, verify);
            }
            position += 1;
        }
    }

    /// Whether some fingerprint may fold to `folded` (its bit is set).
    #[inline(always)]
    fn may_hold(&self, folded: u32) -> bool {
        let slot = slot::<TABLE_BITS>(folded);
        self.bits[slot / 64] & (1 << (slot % 64)) != 0
    }

    /// The literals whose fingerprint folds to `folded`, at `position`.
    #[cold]
    #[inline(never)]
    fn candidates(
        &self,
        position: usize,
        folded: u32,
        verify: &mut impl FnMut(usize, &[(u32, u32)]),
    ) {
        if let Some(holders) = self.holders.get(&folded) {
            verify(position, holders);
        }
    }
}

/// Bytes in a fingerprint.
const WINDOW: usize = 3;

/// Literals at least this long may be found by a [`SkipSearch`].
const SKIP_MIN_LEN: usize = 8;

/// Long literals a [`SkipSearch`] is built for, at least: for fewer, the
/// bit table's pass costs little more.
const SKIP_MIN_LITERALS: usize = 8;

/// log2 of a [`SkipSearch`]'s shift table: a byte each, 32 KiB.
const SKIP_BITS: u32 = 15;

/// Long literals found without looking at every byte (Wu and Manber's
/// multi-pattern search): a window as long as the shortest of them slides
/// over the value, and the folded three bytes at its end say how far it
/// may move before it could end on the first bytes of some literal. Where
/// they may end one (no shift), the literals ending that way are compared
/// in place. In prose or PowerShell, most windows move by most of their
/// length, so a value is read a few bytes in every window's length.
#[derive(Debug, Clone)]
struct SkipSearch {
    /// Bytes in the window: the shortest literal's length.
    window: usize,
    /// Per hashed folded three bytes, how far the window may move.
    shifts: Box<[u8; 1 << SKIP_BITS]>,
    /// Per folded three bytes that end some literal's first window, those
    /// literals, with the offset of those bytes in each.
    holders: Holders,
}

impl SkipSearch {
    /// The search for the literals of `lowered` marked in `long` (each at
    /// least [`SKIP_MIN_LEN`] bytes).
    fn new(lowered: &[Box<[u8]>], long: &[bool]) -> SkipSearch {
        let chosen = || (0..lowered.len()).filter(|&i| long[i]);
        let window = chosen()
            .map(|i| lowered[i].len())
            .min()
            .unwrap_or(SKIP_MIN_LEN)
            .min(usize::from(u8::MAX));
        let farthest = (window - WINDOW + 1) as u8;
        let mut shifts = Box::new([farthest; 1 << SKIP_BITS]);
        let mut holders = Holders::default();
        for i in chosen() {
            let first = &lowered[i][..window];
            for at in 0..=window - WINDOW {
                let slot = slot::<SKIP_BITS>(fold_window(&first[at..]));
                shifts[slot] = shifts[slot].min((window - WINDOW - at) as u8);
            }
            let end = window - WINDOW;
            holders
                .entry(fold_window(&first[end..]))
                .or_default()
                .push((i as u32, end as u32));
        }
        SkipSearch {
            window,
            shifts,
            holders,
        }
    }

    fn memory_usage(&self) -> usize {
        self.shifts.len() + holders_memory(&self.holders)
    }

    /// Calls `verify(position, holders)` where the last three bytes of
    /// some literal's first window may start in `hay[span]`.
    fn find_each(
        &self,
        hay: &[u8],
        span: Range<usize>,
        verify: &mut impl FnMut(usize, &[(u32, u32)]),
    ) {
        let bytes = &hay[span.clone()];
        // The window's last byte; the four bytes read end with it (the
        // window is longer than four).
        let mut end = self.window - 1;
        while end < bytes.len() {
            let mut four = [0u8; 4];
            four.copy_from_slice(&bytes[end - 3..=end]);
            let folded = fold(u32::from_le_bytes(four) >> 8);
            let shift = self.shifts[slot::<SKIP_BITS>(folded)];
            if shift == 0 {
                if let Some(holders) = self.holders.get(&folded) {
                    verify(span.start + end + 1 - WINDOW, holders);
                }
                end += 1;
            } else {
                end += usize::from(shift);
            }
        }
    }
}

/// Where the 3-byte window of a literal that is likely rarest starts, the
/// first such: each letter doubles its case forms, and each backslash or
/// quote counts as two letters, since in event JSON every path and every
/// escape has them (`\\m` of a path, in the raw event, is found far more
/// often than `ib.`, and slows the SIMD search down by half). None for a
/// literal shorter than three bytes.
fn best_window(literal: &[u8]) -> Option<usize> {
    literal
        .windows(WINDOW)
        .enumerate()
        .min_by_key(|(_, w)| {
            let escapes = w.iter().filter(|b| matches!(b, b'\\' | b'"')).count() as u32;
            letters(w) + 2 * escapes
        })
        .map(|(offset, _)| offset)
}

/// ASCII letters in `bytes`: each doubles the case forms.
fn letters(bytes: &[u8]) -> u32 {
    bytes.iter().filter(|b| b.is_ascii_alphabetic()).count() as u32
}

/// Every ASCII case form of `window`.
fn case_forms(window: &[u8]) -> Vec<Vec<u8>> {
    let mut forms = vec![window.to_ascii_lowercase()];
    for (i, b) in window.iter().enumerate() {
        if b.is_ascii_alphabetic() {
            let upper: Vec<Vec<u8>> = forms
                .iter()
                .map(|f| {
                    let mut f = f.clone();
                    f[i] = f[i].to_ascii_uppercase();
                    f
                })
                .collect();
            forms.extend(upper);
        }
    }
    forms
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    fn window(literal: &[u8]) -> Option<&[u8]> {
        best_window(literal).map(|offset| &literal[offset..offset + WINDOW])
    }

    /// Fewer than `max_len` bytes drawn from `alphabet`.
    pub(crate) fn random_haystack(
        random: &mut fastrand::Rng,
        alphabet: &[u8],
        max_len: usize,
    ) -> Vec<u8> {
        let len = random.usize(..max_len);
        (0..len)
            .map(|_| alphabet[random.usize(..alphabet.len())])
            .collect()
    }

    /// [`agree_in_a_random_span`] over 2,000 random haystacks shorter than
    /// `max_len` of `alphabet`, each with fewer than `most` of `literals`
    /// put in.
    fn agree_with_literals_inserted(
        fingerprints: &Fingerprints,
        literals: &[&str],
        alphabet: &[u8],
        max_len: usize,
        most: usize,
    ) {
        let mut random = fastrand::Rng::with_seed(0x51_7cc1_b727_220a ^ max_len as u64);
        for _ in 0..2_000 {
            let mut hay = random_haystack(&mut random, alphabet, max_len);
            insert_literals(&mut random, literals, &mut hay, most);
            agree_in_a_random_span(fingerprints, literals, &hay, &mut random);
        }
    }

    /// Fewer than `most` of `literals`, whole, each in a random case, put
    /// at random places of `hay`.
    fn insert_literals(
        random: &mut fastrand::Rng,
        literals: &[&str],
        hay: &mut Vec<u8>,
        most: usize,
    ) {
        for _ in 0..random.usize(..most) {
            let literal = literals[random.usize(..literals.len())];
            let at = random.usize(..=hay.len());
            let text: Vec<u8> = literal
                .bytes()
                .map(|b| {
                    if random.bool() {
                        b.to_ascii_uppercase()
                    } else {
                        b
                    }
                })
                .collect();
            hay.splice(at..at, text);
        }
    }

    /// Every occurrence of every literal in `hay`, ASCII case ignored, as
    /// (literal, start), found by comparing at every position.
    fn every_occurrence(literals: &[&str], hay: &[u8]) -> Vec<(usize, usize)> {
        let mut out = Vec::new();
        for (index, literal) in literals.iter().enumerate() {
            let literal = literal.as_bytes();
            for start in 0..hay.len() {
                if hay[start..].len() >= literal.len()
                    && hay[start..start + literal.len()].eq_ignore_ascii_case(literal)
                {
                    out.push((index, start));
                }
            }
        }
        out.sort_unstable();
        out
    }

    /// The fingerprints find in a random span of `hay` what a comparison
    /// at every position finds wholly inside it.
    fn agree_in_a_random_span(
        fingerprints: &Fingerprints,
        literals: &[&str],
        hay: &[u8],
        random: &mut fastrand::Rng,
    ) {
        let start = random.usize(..=hay.len());
        let end = random.usize(start..=hay.len());
        let expected: Vec<(usize, usize)> = every_occurrence(literals, hay)
            .into_iter()
            .filter(|&(l, s)| s >= start && s + literals[l].len() <= end)
            .collect();
        assert_eq!(
            found(fingerprints, hay, start..end),
            expected,
            "{}",
            String::from_utf8_lossy(hay)
        );
    }

    fn found(fingerprints: &Fingerprints, hay: &[u8], span: Range<usize>) -> Vec<(usize, usize)> {
        let mut out = Vec::new();
        fingerprints.find_each(hay, span, &mut |literal, start, end| {
            assert_eq!(end - start, fingerprints.literals[literal].len());
            out.push((literal, start));
            0
        });
        out.sort_unstable();
        out.dedup();
        out
    }

    #[test]
    fn the_window_with_fewest_case_forms_is_taken() {
        assert_eq!(window(b"dpapi::masterkey"), Some(&b"i::"[..]));
        assert_eq!(window(b"kiwi legit printer"), Some(&b"wi "[..]));
        // Not the backslash of every Windows path.
        assert_eq!(window(b"\\mimilib.dll"), Some(&b"ib."[..]));
        // Nor the escaped backslash before a name, in the raw event.
        assert_eq!(window(br"\\mimilib.dll"), Some(&b"ib."[..]));
        assert_eq!(window(br#"\\a.b""#), Some(&b"a.b"[..]));
        assert_eq!(window(b"ab"), None);
        assert_eq!(case_forms(b"i:").len(), 2);
        assert_eq!(case_forms(b"ab.c").len(), 8);
    }

    #[test]
    fn every_occurrence_in_any_case_is_found_where_it_is() {
        let literals = [
            "dpapi::masterkey",
            "eo.oe.kiwi",
            "kiwi legit printer",
            "\\mimilib.dll",
            "sekurlsa::",
            // Shares its window with the one before; overlaps itself.
            "lsa::lsa::",
        ];
        let fingerprints = Fingerprints::new(&literals).expect("few literals");
        let padding = "x".repeat(200);
        for literal in literals {
            for text in [
                literal.to_string(),
                literal.to_ascii_uppercase(),
                literal
                    .chars()
                    .enumerate()
                    .map(|(i, c)| {
                        if i % 2 == 0 {
                            c.to_ascii_uppercase()
                        } else {
                            c
                        }
                    })
                    .collect(),
            ] {
                let value = format!("{padding}{text}{text}{padding}sekurlsa::lsa::lsa::");
                let hay = value.as_bytes();
                let expected = every_occurrence(&literals, hay);
                assert!(expected.len() >= 2, "{value}");
                assert_eq!(found(&fingerprints, hay, 0..hay.len()), expected, "{value}");
            }
        }
        let none = format!("{padding}mimikatz{padding}");
        assert!(found(&fingerprints, none.as_bytes(), 0..none.len()).is_empty());
    }

    #[test]
    fn an_occurrence_is_found_only_wholly_inside_the_span() {
        let fingerprints = Fingerprints::new(&["sekurlsa::"]).expect("one literal");
        let hay = b"..sekurlsa::..";
        assert_eq!(found(&fingerprints, hay, 0..hay.len()), [(0, 2)]);
        assert_eq!(found(&fingerprints, hay, 2..12), [(0, 2)]);
        assert!(found(&fingerprints, hay, 3..hay.len()).is_empty());
        assert!(found(&fingerprints, hay, 0..11).is_empty());
    }

    #[test]
    fn random_haystacks_agree_with_a_comparison_at_every_position() {
        let literals = ["ab::c", "b::", "::cd", "xab", "c:x:a"];
        let fingerprints = Fingerprints::new(&literals).expect("few literals");
        let alphabet = b"abcdxABCDX:";
        let mut random = fastrand::Rng::with_seed(0x9e37_79b9_7f4a_7c15);
        for _ in 0..3_000 {
            let hay = random_haystack(&mut random, alphabet, 300);
            assert_eq!(
                found(&fingerprints, &hay, 0..hay.len()),
                every_occurrence(&literals, &hay),
                "{}",
                String::from_utf8_lossy(&hay)
            );
        }
    }

    /// Literals that mostly share a piece of two punctuation bytes: those
    /// found by it, the rest by their fingerprints, the piece overlapping
    /// itself and straddling the span's ends.
    #[test]
    fn literals_sharing_a_piece_are_found_by_it() {
        let literals = [
            "sekurlsa::",
            "lsadump::",
            "::d",
            "a:::b",
            "kiwi",
            "mimilib.dll",
        ];
        let fingerprints = Fingerprints::new(&literals).expect("few literals");
        assert_eq!(fingerprints.shared(), Some(&b"::"[..]));
        let alphabet = b"sekurlaSEKURLAdmpDMP:::bBiIwWkK.";
        let mut random = fastrand::Rng::with_seed(0x51ed_270b_a1d3_c9f5);
        for _ in 0..3_000 {
            let hay = random_haystack(&mut random, alphabet, 200);
            agree_in_a_random_span(&fingerprints, &literals, &hay, &mut random);
        }
        let hay = b"xx:::dD::::b LSADUMP::: SeKuRlSa::";
        assert_eq!(
            found(&fingerprints, hay, 0..hay.len()),
            every_occurrence(&literals, hay)
        );
        // Fewer than half share one, or the piece has a quote or backslash.
        assert!(Fingerprints::new(&["a::b", "cdef", "ghij"])
            .unwrap()
            .shared()
            .is_none());
        assert!(Fingerprints::new(&["a\\\\b", "c\\\\d"])
            .unwrap()
            .shared()
            .is_none());
        assert!(Fingerprints::new(&["a--b", "c--d", "efgh"])
            .unwrap()
            .shared()
            .is_some());
    }

    #[test]
    fn too_many_literals_or_short_literals_get_none() {
        let many: Vec<String> = (0..=MAX_LITERALS).map(|i| format!("abcd{i:04}")).collect();
        let many: Vec<&str> = many.iter().map(String::as_str).collect();
        assert!(Fingerprints::new(&many).is_none());
        assert!(Fingerprints::new(&many[..MAX_LITERALS]).is_some());
        // Short literals only, or too many of them.
        assert!(Fingerprints::new(&["ab", "c"]).is_none());
        let five = ["a", "b", "c", "d", "e", "abcdef"];
        assert!(Fingerprints::new(&five).is_none());
        assert!(Fingerprints::new(&five[1..]).is_some());
    }

    /// Literals shorter than a fingerprint beside ones that have one:
    /// found byte by byte, in either case, within the span only.
    #[test]
    fn short_literals_are_found_beside_fingerprinted_ones() {
        let literals = [")", "0x", "UNKNOWN(", "dbghelp.dll"];
        let fingerprints = Fingerprints::new(&literals).expect("two short literals");
        let alphabet = b"()0xXunkowUNKOWdbghelp.DLL|+";
        let mut random = fastrand::Rng::with_seed(0x2545_f491_4f6c_dd1d);
        for _ in 0..2_000 {
            let hay = random_haystack(&mut random, alphabet, 120);
            agree_in_a_random_span(&fingerprints, &literals, &hay, &mut random);
        }
    }

    /// More case forms than one SIMD searcher holds: a bit table, which
    /// finds the same as a comparison at every position, letters in any
    /// case, and bytes that fold together (a backslash and `|`) told apart.
    #[test]
    fn a_bit_table_finds_what_simd_cannot_hold() {
        let mut literals: Vec<String> = (0..150).map(|i| format!("word{i}x")).collect();
        literals.extend(["a\\b".to_string(), "zz|y".into(), "HostApplication=".into()]);
        let literals: Vec<&str> = literals.iter().map(String::as_str).collect();
        let fingerprints = Fingerprints::new(&literals).expect("at most MAX_LITERALS");
        assert!(!fingerprints.simd());
        let alphabet = b"abwordxyzWORDXYZ0123456789\\|= HostApplication";
        agree_with_literals_inserted(&fingerprints, &literals, alphabet, 200, 4);
        let pipe = b"..a|b..zz\\y..";
        assert!(found(&fingerprints, pipe, 0..pipe.len()).is_empty());
    }

    /// Many long literals (too many case forms for SIMD) beside a few
    /// short ones: the long ones skip bytes, the short ones go to SIMD,
    /// and together they find what a comparison at every position finds,
    /// in any case, wherever the literals lie, overlapping or straddling
    /// the span's ends.
    #[test]
    fn long_literals_skip_bytes_and_find_what_a_comparison_finds() {
        let mut literals: Vec<String> = (0..120)
            .map(|i| format!("Invoke-Word{i}{}", "x".repeat(i % 7)))
            .collect();
        // Sharing their first window's last bytes, a prefix of another,
        // overlapping themselves, bytes that fold together.
        literals.extend([
            "Invoke-Word1".to_string(),
            "abcabcabcabc".into(),
            "a\\b-Host|Name".into(),
            "Get-Process -Name".into(),
            " -w ".into(),
            "-nop".into(),
            "iex".into(),
        ]);
        let literals: Vec<&str> = literals.iter().map(String::as_str).collect();
        let fingerprints = Fingerprints::new(&literals).expect("at most MAX_LITERALS");
        assert!(fingerprints.skips());
        assert!(fingerprints.simd());
        let alphabet = b"InvokeWrdINVOKEWORD-0123456789xXabcABC\\|Hst Nm -wnopiexPNGet";
        agree_with_literals_inserted(&fingerprints, &literals, alphabet, 300, 5);
        let hay = b"abcabcabcabcabcabc INVOKE-WORD1xx invoke-word119xxxxxx";
        assert_eq!(
            found(&fingerprints, hay, 0..hay.len()),
            every_occurrence(&literals, hay)
        );
        // Short literals SIMD cannot hold: every position is tested.
        let mut crowded = literals.clone();
        crowded.extend([
            "abcd", "efgh", "ijkl", "mnop", "qrst", "uvwx", "yzab", "cdef",
        ]);
        let table = Fingerprints::new(&crowded).expect("at most MAX_LITERALS");
        assert!(!table.skips() && !table.simd());
    }

    /// Once `found` says where it needs no more of a literal, occurrences
    /// of it starting before are not reported, those after are, and other
    /// literals are not affected: by SIMD, by the skip search and by the
    /// byte search of short literals.
    #[test]
    fn occurrences_before_where_found_says_are_skipped() {
        let mut many: Vec<String> = (0..120).map(|i| format!("Invoke-Word{i}")).collect();
        many.extend([":\\windows\\system32\\".to_string(), "0x".into()]);
        let few = vec![
            ":\\windows\\system32\\".to_string(),
            "0x".into(),
            "kernelbase.dll".into(),
        ];
        for literals in [few, many] {
            let literals: Vec<&str> = literals.iter().map(String::as_str).collect();
            let fingerprints = Fingerprints::new(&literals).expect("few literals");
            assert_eq!(fingerprints.skips(), literals.len() > 3);
            let frame = "C:\\Windows\\System32\\KERNELBASE.dll+0x2c13e|";
            let hay = frame.repeat(4).into_bytes();
            // Values of two frames each: a literal once per value.
            let value = 2 * frame.len();
            let mut got = Vec::new();
            fingerprints.find_each(&hay, 0..hay.len(), &mut |literal, start, _| {
                got.push((literal, start));
                (start / value + 1) * value
            });
            got.sort_unstable();
            let expected: Vec<(usize, usize)> = every_occurrence(&literals, &hay)
                .into_iter()
                .filter(|&(_, start)| start % value < frame.len())
                .collect();
            // Each literal present (all three of the few; of the many,
            // the path and `0x`) in the first frame of each value.
            let present = if literals.len() == 3 { 3 } else { 2 };
            assert_eq!(expected.len(), 2 * present);
            assert_eq!(got, expected);
        }
    }
}
