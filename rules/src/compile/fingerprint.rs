//! Fingerprints: a short piece of every literal of an automaton, in each of
//! its ASCII case forms, searched with SIMD (a packed Teddy searcher) before
//! the automaton. A value holding none of them can hold none of the
//! literals, so the automaton, which matches case-insensitively byte by
//! byte with no such shortcut, runs only on the values that hold one.
//!
//! ```text
//!  literals (lowercase) ─► per literal: the 3-byte window with the fewest case forms
//!                      ─► every case form of each window (at most MAX_PATTERNS) ─► Teddy
//! ```
//!
//! It pays on long values (the raw event for keyword rules), where a few
//! automata with few literals would otherwise walk every byte; it is not
//! built for automata with many literals (too many fingerprints to be
//! selective) or with a literal shorter than three bytes.

use aho_corasick::packed::{Config, MatchKind, Searcher};

/// Fingerprints (case forms counted) one searcher may hold.
const MAX_PATTERNS: usize = 64;

/// A value shorter than this is searched by the automaton directly: the
/// fingerprint search costs more than it saves.
pub(crate) const MIN_VALUE_LEN: usize = 128;

/// The fingerprint searcher of `literals` (lowercase, matched ASCII
/// case-insensitively), if one is worth having.
pub(crate) fn searcher(literals: &[&str]) -> Option<Searcher> {
    let mut patterns: Vec<Vec<u8>> = Vec::new();
    for literal in literals {
        let window = best_window(literal.as_bytes())?;
        for form in case_forms(window) {
            if !patterns.contains(&form) {
                patterns.push(form);
            }
        }
        if patterns.len() > MAX_PATTERNS {
            return None;
        }
    }
    if patterns.is_empty() {
        return None;
    }
    Config::new()
        .match_kind(MatchKind::LeftmostFirst)
        .builder()
        .extend(&patterns)
        .build()
}

/// The 3-byte window of a literal with the fewest case forms; among
/// those, one without a backslash or a quote (in event JSON every path
/// and every escape has them), the first such. None for a literal shorter
/// than three bytes.
fn best_window(literal: &[u8]) -> Option<&[u8]> {
    literal.windows(3).min_by_key(|w| {
        let escapes = w.iter().filter(|b| matches!(b, b'\\' | b'"')).count();
        (letters(w), escapes)
    })
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

    #[test]
    fn the_window_with_fewest_case_forms_is_taken() {
        assert_eq!(best_window(b"dpapi::masterkey"), Some(&b"i::"[..]));
        assert_eq!(best_window(b"kiwi legit printer"), Some(&b"wi "[..]));
        // Not the backslash of every Windows path.
        assert_eq!(best_window(b"\\mimilib.dll"), Some(&b"ib."[..]));
        assert_eq!(best_window(b"ab"), None);
        assert_eq!(case_forms(b"i:").len(), 2);
        assert_eq!(case_forms(b"ab.c").len(), 8);
    }

    #[test]
    fn a_value_with_a_literal_in_any_case_holds_a_fingerprint() {
        let literals = [
            "dpapi::masterkey",
            "eo.oe.kiwi",
            "kiwi legit printer",
            "\\mimilib.dll",
            "sekurlsa::",
        ];
        let searcher = searcher(&literals).expect("few literals");
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
                let value = format!("{padding}{text}{padding}");
                assert!(searcher.find(&value).is_some(), "{value}");
            }
        }
        assert!(searcher
            .find(format!("{padding}mimikatz{padding}"))
            .is_none());
    }

    #[test]
    fn many_literals_or_one_byte_literals_get_none() {
        let many: Vec<String> = (0..200).map(|i| format!("abcd{i:03}")).collect();
        let many: Vec<&str> = many.iter().map(String::as_str).collect();
        assert!(searcher(&many).is_none());
        assert!(searcher(&["ab", "abc"]).is_none());
    }
}
