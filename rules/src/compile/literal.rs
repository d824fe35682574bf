//! Required literals: the text that must occur in any value a pattern
//! matches. They feed the multi-pattern prefilter, so that a glob or regex
//! only runs on the rows where its rarest required piece was found.

use regex_syntax::hir::{Class, Hir, HirKind};

use crate::sigma::{Part, SigmaString};

/// Whether `text` holds no letter with a case beyond ASCII (the dashes
/// `windash` adds are caseless), so that it is compared as ASCII text is:
/// folding ASCII letters only, in the literal and in the value (a value's
/// Kelvin sign `K` is then not a `k`, as for an ASCII literal), and a
/// literal of such text is searched by the prefilter's automata.
pub(crate) fn folds_as_ascii(text: &str) -> bool {
    text.chars().all(|c| {
        c.is_ascii()
            || (c.to_lowercase().eq(std::iter::once(c)) && c.to_uppercase().eq(std::iter::once(c)))
    })
}

/// The longest literal piece of a Sigma glob, lowercased, if it is ASCII.
/// (Not every piece [`folds_as_ascii`]: a glob with another piece, or with
/// `?`, lowercases the value fully, and a value's Kelvin sign would then
/// match a `k` the prefilter does not see.)
pub(crate) fn glob_required_literal(pattern: &SigmaString) -> Option<String> {
    pattern
        .parts()
        .iter()
        .filter_map(|p| match p {
            Part::Literal(s) if s.is_ascii() => Some(s.to_ascii_lowercase()),
            _ => None,
        })
        .max_by_key(String::len)
}

/// Translates a Sigma glob into an anchored regex (`*` → `.*`, `?` → `.`).
pub(crate) fn glob_to_regex(pattern: &SigmaString, cased: bool) -> String {
    let mut out = String::from(if cased { "(?s)^" } else { "(?si)^" });
    for part in pattern.parts() {
        match part {
            Part::Literal(s) => out.push_str(&regex::escape(s)),
            Part::AnyMany => out.push_str(".*"),
            Part::AnyOne => out.push('.'),
        }
    }
    out.push('$');
    out
}

/// The longest literal that every match of `hir` contains, lowercased,
/// if one of at least two ASCII bytes exists.
pub(crate) fn regex_required_literal(hir: &Hir) -> Option<String> {
    let mut best: Option<String> = None;
    collect_required(hir, &mut best);
    best.filter(|s| s.len() >= 2)
}

fn consider(best: &mut Option<String>, candidate: String) {
    if candidate.is_empty() {
        return;
    }
    if best.as_ref().is_none_or(|b| candidate.len() > b.len()) {
        *best = Some(candidate);
    }
}

fn collect_required(hir: &Hir, best: &mut Option<String>) {
    match hir.kind() {
        HirKind::Concat(children) => {
            // Runs of adjacent literal-like children form one literal.
            let mut run = String::new();
            for child in children {
                match as_literal(child) {
                    Some(text) => run.push_str(&text),
                    None => {
                        consider(best, std::mem::take(&mut run));
                        collect_required(child, best);
                    }
                }
            }
            consider(best, run);
        }
        HirKind::Capture(cap) => collect_required(&cap.sub, best),
        HirKind::Repetition(rep) if rep.min >= 1 => collect_required(&rep.sub, best),
        _ => {
            if let Some(text) = as_literal(hir) {
                consider(best, text);
            }
        }
    }
}

/// The lowercase ASCII text a node matches, if it matches exactly one
/// string up to ASCII case.
fn as_literal(hir: &Hir) -> Option<String> {
    match hir.kind() {
        HirKind::Literal(lit) => {
            let text = std::str::from_utf8(&lit.0).ok()?;
            text.is_ascii().then(|| text.to_ascii_lowercase())
        }
        HirKind::Class(class) => case_pair(class).map(|c| c.to_string()),
        HirKind::Capture(cap) => as_literal(&cap.sub),
        HirKind::Concat(children) => {
            let mut out = String::new();
            for c in children {
                out.push_str(&as_literal(c)?);
            }
            Some(out)
        }
        _ => None,
    }
}

/// A class that is exactly one ASCII letter in both cases (from `(?i)`).
fn case_pair(class: &Class) -> Option<char> {
    let chars: Vec<char> = match class {
        Class::Unicode(u) => {
            let mut v = Vec::new();
            for r in u.ranges() {
                for c in r.start()..=r.end() {
                    v.push(c);
                    if v.len() > 3 {
                        return None;
                    }
                }
            }
            v
        }
        Class::Bytes(b) => {
            let mut v = Vec::new();
            for r in b.ranges() {
                for c in r.start()..=r.end() {
                    v.push(c as char);
                    if v.len() > 3 {
                        return None;
                    }
                }
            }
            v
        }
    };
    match chars.as_slice() {
        [a] if a.is_ascii() => Some(a.to_ascii_lowercase()),
        [a, b] if a.is_ascii_alphabetic() && a.eq_ignore_ascii_case(b) => {
            Some(a.to_ascii_lowercase())
        }
        // (?i)k also matches the Kelvin sign; s matches the long s.
        [a, b, c] if a.is_ascii_alphabetic() && a.eq_ignore_ascii_case(b) && !c.is_ascii() => {
            Some(a.to_ascii_lowercase())
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ascii_folding_serves_text_without_cased_letters_beyond_ascii() {
        assert!(folds_as_ascii("-EncodedCommand"));
        assert!(
            folds_as_ascii("–enc ―x —y"),
            "windash's dashes have no case"
        );
        assert!(!folds_as_ascii("PRØVE"));
        assert!(!folds_as_ascii("straße"), "ß uppercases to SS");
        assert!(
            !folds_as_ascii("\u{212A}elvin"),
            "the Kelvin sign lowercases to k"
        );
    }

    fn required(pattern: &str) -> Option<String> {
        let hir = regex_syntax::Parser::new().parse(pattern).unwrap();
        regex_required_literal(&hir)
    }

    #[test]
    fn finds_the_longest_required_piece() {
        assert_eq!(
            required(r"\\AppData\\.*\.exe$").as_deref(),
            Some("\\appdata\\")
        );
        assert_eq!(
            required(r"(?i)powershell.{0,5}-enc").as_deref(),
            Some("powershell")
        );
        assert_eq!(required(r"(foo|bar)baz").as_deref(), Some("baz"));
        assert_eq!(required(r"(abc)+x").as_deref(), Some("abc"));
        assert_eq!(required(r"a|b"), None);
        assert_eq!(required(r"(abc)?x"), None);
    }

    #[test]
    fn glob_literals_and_regex() {
        let s = SigmaString::parse(r"*\temp\\*.ps?");
        assert_eq!(glob_required_literal(&s).as_deref(), Some("\\temp\\"));
        let re = regex::Regex::new(&glob_to_regex(&s, false)).unwrap();
        assert!(re.is_match("C:\\TEMP\\x.ps1"));
        assert!(!re.is_match("C:\\TEMP\\x.ps12"));
    }
}
