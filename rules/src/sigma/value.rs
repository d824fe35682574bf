//! Sigma string values: wildcards, escaping and placeholders.
//!
//! A Sigma string is a sequence of literal text and the wildcards `*` (any
//! number of characters) and `?` (exactly one character). The backslash
//! escapes a wildcard or itself; a backslash before any other character is
//! literal (spec: "Escape Character"). Placeholders (`%name%`) only mean
//! something with the `expand` modifier, so they are kept as literal text
//! here and resolved by [`crate::sigma::modifiers`].

use std::fmt;

/// One piece of a [`SigmaString`].
#[derive(Debug, Clone, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub enum Part {
    /// Plain text, matched as is (case-folding is decided later).
    Literal(String),
    /// `*`: any number of characters, including none.
    AnyMany,
    /// `?`: exactly one character.
    AnyOne,
}

/// A Sigma string value after wildcard and escape processing.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default, serde::Serialize, serde::Deserialize)]
pub struct SigmaString {
    parts: Vec<Part>,
}

impl SigmaString {
    /// Parses a rule value, honouring `*`, `?` and backslash escapes.
    pub fn parse(raw: &str) -> Self {
        let mut out = SigmaString::default();
        let mut chars = raw.chars().peekable();
        while let Some(c) = chars.next() {
            match c {
                '*' => out.push_wildcard(Part::AnyMany),
                '?' => out.push_wildcard(Part::AnyOne),
                '\\' => match chars.peek() {
                    Some('*') | Some('?') | Some('\\') => {
                        let escaped = chars.next().unwrap_or('\\');
                        out.push_char(escaped);
                    }
                    _ => out.push_char('\\'),
                },
                other => out.push_char(other),
            }
        }
        out
    }

    /// A string holding `text` literally, without wildcard interpretation.
    pub fn literal(text: impl Into<String>) -> Self {
        let text = text.into();
        let mut out = SigmaString::default();
        if !text.is_empty() {
            out.parts.push(Part::Literal(text));
        }
        out
    }

    /// The pieces of this string.
    pub fn parts(&self) -> &[Part] {
        &self.parts
    }

    /// True if the string contains `*` or `?`.
    pub fn has_wildcards(&self) -> bool {
        self.parts.iter().any(|p| !matches!(p, Part::Literal(_)))
    }

    /// The whole string as text if it has no wildcards.
    pub fn as_plain(&self) -> Option<String> {
        if self.has_wildcards() {
            return None;
        }
        Some(self.literal_text())
    }

    /// Concatenation of all literal parts (wildcards dropped).
    pub fn literal_text(&self) -> String {
        self.parts
            .iter()
            .filter_map(|p| match p {
                Part::Literal(s) => Some(s.as_str()),
                _ => None,
            })
            .collect()
    }

    /// Adds `*` at the start unless already there.
    pub fn prepend_any(&mut self) {
        if self.parts.first() != Some(&Part::AnyMany) {
            self.parts.insert(0, Part::AnyMany);
        }
    }

    /// Adds `*` at the end unless already there.
    pub fn append_any(&mut self) {
        if self.parts.last() != Some(&Part::AnyMany) {
            self.parts.push(Part::AnyMany);
        }
    }

    /// Rewrites every literal part with `f`, which may expand one literal
    /// into several alternatives; returns the cartesian product.
    pub fn expand_literals(&self, f: &dyn Fn(&str) -> Vec<String>) -> Vec<SigmaString> {
        let mut results = vec![SigmaString::default()];
        for part in &self.parts {
            match part {
                Part::Literal(text) => {
                    let alternatives = f(text);
                    let mut next = Vec::with_capacity(results.len() * alternatives.len());
                    for prefix in &results {
                        for alt in &alternatives {
                            let mut s = prefix.clone();
                            for c in alt.chars() {
                                s.push_char(c);
                            }
                            next.push(s);
                        }
                    }
                    results = next;
                }
                wildcard => {
                    for s in &mut results {
                        s.push_wildcard(wildcard.clone());
                    }
                }
            }
        }
        results
    }

    /// Appends one literal character.
    pub(crate) fn push_char(&mut self, c: char) {
        match self.parts.last_mut() {
            Some(Part::Literal(s)) => s.push(c),
            _ => self.parts.push(Part::Literal(c.to_string())),
        }
    }

    /// Appends a wildcard part.
    pub(crate) fn push_wildcard(&mut self, w: Part) {
        // `**` is the same as `*`.
        if w == Part::AnyMany && self.parts.last() == Some(&Part::AnyMany) {
            return;
        }
        self.parts.push(w);
    }
}

impl fmt::Display for SigmaString {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for p in &self.parts {
            match p {
                Part::Literal(s) => {
                    for c in s.chars() {
                        if matches!(c, '*' | '?' | '\\') {
                            f.write_str("\\")?;
                        }
                        write!(f, "{c}")?;
                    }
                }
                Part::AnyMany => f.write_str("*")?,
                Part::AnyOne => f.write_str("?")?,
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lit(s: &str) -> Part {
        Part::Literal(s.to_string())
    }

    #[test]
    fn escaping_follows_the_spec_table() {
        // Plain backslash not followed by a wildcard stays a backslash.
        assert_eq!(
            SigmaString::parse(r"C:\Windows").parts(),
            &[lit(r"C:\Windows")]
        );
        // Double backslash not before a wildcard is one backslash.
        assert_eq!(SigmaString::parse(r"a\\b").parts(), &[lit(r"a\b")]);
        // Escaped wildcard is literal.
        assert_eq!(SigmaString::parse(r"a\*").parts(), &[lit("a*")]);
        // Escaped backslash before a wildcard: backslash then wildcard.
        assert_eq!(
            SigmaString::parse(r"a\\*").parts(),
            &[lit(r"a\"), Part::AnyMany]
        );
        // Three backslashes: backslash and a literal star.
        assert_eq!(SigmaString::parse(r"a\\\*").parts(), &[lit(r"a\*")]);
        // Four backslashes: two backslashes.
        assert_eq!(SigmaString::parse(r"a\\\\").parts(), &[lit(r"a\\")]);
        assert_eq!(
            SigmaString::parse("a?b*").parts(),
            &[lit("a"), Part::AnyOne, lit("b"), Part::AnyMany]
        );
    }

    #[test]
    fn expand_literals_builds_the_product() {
        let s = SigmaString::parse("-a*-b");
        let out = s.expand_literals(&|t| vec![t.to_string(), t.replace('-', "/")]);
        let texts: Vec<String> = out.iter().map(|s| s.to_string()).collect();
        assert_eq!(texts, vec!["-a*-b", "-a*/b", "/a*-b", "/a*/b"]);
    }
}
