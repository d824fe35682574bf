//! Fingerprints: a short piece of every literal of an automaton, in each of
//! its ASCII case forms, searched with SIMD (a packed Teddy searcher)
//! instead of the automaton. Around each fingerprint found, the literals it
//! was taken from are compared in place: every occurrence of a literal
//! holds its fingerprint at a known offset, so this finds what the
//! automaton, which matches case-insensitively byte by byte with no such
//! shortcut, would find, without walking the bytes between fingerprints.
//!
//! ```text
//!  literals (lowercase) ─► per literal: the 3-byte window with the fewest case forms
//!                      ─► every case form of each window (at most MAX_PATTERNS) ─► Teddy
//!  fingerprint at p ─► each literal it came from, at p − its offset, compared ignoring ASCII case
//! ```
//!
//! It pays on long values (the raw event for keyword rules), where a few
//! automata with few literals would otherwise walk every byte; it is not
//! built for automata with many literals (too many fingerprints to be
//! selective) or with a literal shorter than three bytes.

use std::ops::Range;

use aho_corasick::packed::{Config, MatchKind, Searcher};
use aho_corasick::Span;

/// Fingerprints (case forms counted) one searcher may hold.
const MAX_PATTERNS: usize = 64;

/// A value shorter than this is searched by the automaton directly: the
/// fingerprint search costs more than it saves.
pub(crate) const MIN_VALUE_LEN: usize = 128;

/// An automaton's literals, found by their fingerprints.
#[derive(Debug, Clone)]
pub(crate) struct Fingerprints {
    searcher: Searcher,
    /// Per fingerprint (the searcher's pattern): the literals it was taken
    /// from, each with the fingerprint's offset in it.
    holders: Vec<Vec<(u32, u32)>>,
    /// The literals, lowercase, by the automaton's pattern index.
    literals: Vec<Box<[u8]>>,
}

impl Fingerprints {
    /// The fingerprints of `literals` (matched ASCII case-insensitively),
    /// if they are worth having.
    pub(crate) fn new(literals: &[&str]) -> Option<Fingerprints> {
        let mut patterns: Vec<Vec<u8>> = Vec::new();
        let mut holders: Vec<Vec<(u32, u32)>> = Vec::new();
        let lowered: Vec<Box<[u8]>> = literals
            .iter()
            .map(|l| l.to_ascii_lowercase().into_bytes().into_boxed_slice())
            .collect();
        for (index, literal) in lowered.iter().enumerate() {
            let offset = best_window(literal)?;
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
        if patterns.is_empty() {
            return None;
        }
        let searcher = Config::new()
            .match_kind(MatchKind::LeftmostFirst)
            .builder()
            .extend(&patterns)
            .build()?;
        Some(Fingerprints {
            searcher,
            holders,
            literals: lowered,
        })
    }

    /// Heap bytes held.
    pub(crate) fn memory_usage(&self) -> usize {
        self.searcher.memory_usage()
            + self.literals.iter().map(|l| l.len()).sum::<usize>()
            + self.holders.iter().map(|h| h.len() * 8).sum::<usize>()
    }

    /// Calls `found(literal, start, end)` for every occurrence of a literal
    /// in `hay[span]`, ASCII case ignored (an occurrence found more than
    /// once may be reported more than once).
    pub(crate) fn find_each(
        &self,
        hay: &[u8],
        span: Range<usize>,
        found: &mut impl FnMut(usize, usize, usize),
    ) {
        let mut at = span.start;
        while at < span.end {
            let Some(m) = self.searcher.find_in(hay, Span::from(at..span.end)) else {
                return;
            };
            // Fingerprints are all WINDOW bytes long and distinct: at most
            // one starts at each position, so stepping one byte past each
            // finds them all, overlapping ones too.
            let position = m.start();
            for &(literal, offset) in &self.holders[m.pattern().as_usize()] {
                let text = &self.literals[literal as usize];
                let Some(start) = position.checked_sub(offset as usize) else {
                    continue;
                };
                let end = start + text.len();
                if start >= span.start
                    && end <= span.end
                    && hay[start..end].eq_ignore_ascii_case(text)
                {
                    found(literal as usize, start, end);
                }
            }
            at = position + 1;
        }
    }
}

/// Bytes in a fingerprint.
const WINDOW: usize = 3;

/// Where the 3-byte window of a literal with the fewest case forms
/// starts; among those, one without a backslash or a quote (in event JSON
/// every path and every escape has them), the first such. None for a
/// literal shorter than three bytes.
fn best_window(literal: &[u8]) -> Option<usize> {
    literal
        .windows(WINDOW)
        .enumerate()
        .min_by_key(|(_, w)| {
            let escapes = w.iter().filter(|b| matches!(b, b'\\' | b'"')).count();
            (letters(w), escapes)
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
mod tests {
    use super::*;

    fn window(literal: &[u8]) -> Option<&[u8]> {
        best_window(literal).map(|offset| &literal[offset..offset + WINDOW])
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

    fn found(fingerprints: &Fingerprints, hay: &[u8], span: Range<usize>) -> Vec<(usize, usize)> {
        let mut out = Vec::new();
        fingerprints.find_each(hay, span, &mut |literal, start, end| {
            assert_eq!(end - start, fingerprints.literals[literal].len());
            out.push((literal, start));
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
            let len = random.usize(..300);
            let hay: Vec<u8> = (0..len)
                .map(|_| alphabet[random.usize(..alphabet.len())])
                .collect();
            assert_eq!(
                found(&fingerprints, &hay, 0..hay.len()),
                every_occurrence(&literals, &hay),
                "{}",
                String::from_utf8_lossy(&hay)
            );
        }
    }

    #[test]
    fn many_literals_or_one_byte_literals_get_none() {
        let many: Vec<String> = (0..200).map(|i| format!("abcd{i:03}")).collect();
        let many: Vec<&str> = many.iter().map(String::as_str).collect();
        assert!(Fingerprints::new(&many).is_none());
        assert!(Fingerprints::new(&["ab", "abc"]).is_none());
    }
}
