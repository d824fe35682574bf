//! Templates naming alert fields, for outputs that send each
//! organisation's alerts to a place of its own: `alerts.{actor}`,
//! `https://soc.example/{actor}/alerts`, `alerts/{actor}.jsonl`.
//!
//! Fields: `{actor}`, `{severity}`, `{level}` (the rule's), `{rule_id}`.
//! `{{` and `}}` are literal braces. An alert lacking a field it names (no
//! actor) cannot be sent there: it becomes a dead letter naming the output,
//! never a place shared with other organisations.

use std::fmt::Write;
use std::path::PathBuf;

use crate::alert::AlertFacts;

/// An alert field a template can name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Field {
    Actor,
    Severity,
    Level,
    RuleId,
}

impl Field {
    fn parse(name: &str) -> Option<Field> {
        Some(match name {
            "actor" => Field::Actor,
            "severity" => Field::Severity,
            "level" => Field::Level,
            "rule_id" => Field::RuleId,
            _ => return None,
        })
    }

    fn name(self) -> &'static str {
        match self {
            Field::Actor => "actor",
            Field::Severity => "severity",
            Field::Level => "level",
            Field::RuleId => "rule_id",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Part {
    Text(String),
    Field(Field),
}

/// A parsed template.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Template {
    parts: Vec<Part>,
}

/// How a value is made safe for where it goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Escape {
    /// Percent-encoded (a URL's path or query).
    Url,
    /// Letters, digits, `.`, `_` and `-` kept, anything else `_` (Kafka
    /// topic names, file names).
    Name,
    /// As it is (Kafka keys).
    None,
}

/// Why a template cannot be rendered for an alert.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("the alert has no {field} for {template}")]
pub struct MissingField {
    field: &'static str,
    template: String,
}

impl Template {
    /// Parses `text`.
    ///
    /// # Errors
    /// An unknown field or an unclosed brace.
    pub fn parse(text: &str) -> Result<Template, String> {
        let mut parts = Vec::new();
        let mut literal = String::new();
        let mut rest = text;
        while let Some(i) = rest.find(['{', '}']) {
            literal.push_str(&rest[..i]);
            let tail = &rest[i..];
            if tail.starts_with("{{") || tail.starts_with("}}") {
                literal.push_str(&tail[..1]);
                rest = &tail[2..];
                continue;
            }
            if tail.starts_with('}') {
                return Err(format!("'{text}': a lone }} (write }}}} for a brace)"));
            }
            let Some(end) = tail.find('}') else {
                return Err(format!("'{text}': a {{ is not closed"));
            };
            let name = &tail[1..end];
            let field = Field::parse(name).ok_or_else(|| {
                format!("unknown field {{{name}}} in '{text}' (known: {{actor}}, {{severity}}, {{level}}, {{rule_id}})")
            })?;
            if !literal.is_empty() {
                parts.push(Part::Text(std::mem::take(&mut literal)));
            }
            parts.push(Part::Field(field));
            rest = &tail[end + 1..];
        }
        literal.push_str(rest);
        if !literal.is_empty() {
            parts.push(Part::Text(literal));
        }
        Ok(Template { parts })
    }

    /// Whether it names no field (the same for every alert).
    pub fn is_fixed(&self) -> bool {
        self.parts.iter().all(|p| matches!(p, Part::Text(_)))
    }

    /// Whether it names the actor.
    pub fn names_actor(&self) -> bool {
        self.parts.contains(&Part::Field(Field::Actor))
    }

    /// The text before the first field.
    pub fn fixed_prefix(&self) -> &str {
        match self.parts.first() {
            Some(Part::Text(t)) => t,
            _ => "",
        }
    }

    /// For a path: the folder before any field, which must exist.
    pub fn fixed_folder(&self) -> PathBuf {
        let prefix = self.fixed_prefix();
        match prefix.rfind('/') {
            Some(0) => PathBuf::from("/"),
            Some(i) => PathBuf::from(&prefix[..i]),
            None => PathBuf::from("."),
        }
    }

    /// The text for `alert`.
    ///
    /// # Errors
    /// The alert lacks a field the template names.
    pub fn render(&self, alert: &AlertFacts<'_>, escape: Escape) -> Result<String, MissingField> {
        let mut out = String::new();
        for part in &self.parts {
            match part {
                Part::Text(t) => out.push_str(t),
                Part::Field(field) => {
                    let value = match field {
                        Field::Actor => alert.actor.ok_or_else(|| MissingField {
                            field: field.name(),
                            template: self.to_string(),
                        })?,
                        Field::Severity => alert.severity.as_str(),
                        Field::Level => alert.level.as_str(),
                        Field::RuleId => alert.rule_id,
                    };
                    push_escaped(&mut out, value, escape);
                }
            }
        }
        Ok(out)
    }
}

fn push_escaped(out: &mut String, value: &str, escape: Escape) {
    match escape {
        Escape::None => out.push_str(value),
        // Never a path of its own (`..`, `/`) nor nothing.
        Escape::Name if matches!(value, "" | "." | "..") => out.push('_'),
        Escape::Name => out.extend(value.chars().map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-') {
                c
            } else {
                '_'
            }
        })),
        Escape::Url => {
            for b in value.bytes() {
                if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
                    out.push(b as char);
                } else {
                    let _ = write!(out, "%{b:02X}");
                }
            }
        }
    }
}

impl std::fmt::Display for Template {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for part in &self.parts {
            match part {
                Part::Text(t) => f.write_str(&t.replace('{', "{{").replace('}', "}}"))?,
                Part::Field(field) => write!(f, "{{{}}}", field.name())?,
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn templates_parse_and_say_what_they_name() {
        let t = Template::parse("https://soc.example/{actor}/x?s={severity}&b={{x}}").unwrap();
        assert!(t.names_actor());
        assert!(!t.is_fixed());
        assert_eq!(t.fixed_prefix(), "https://soc.example/");
        assert_eq!(
            t.to_string(),
            "https://soc.example/{actor}/x?s={severity}&b={{x}}"
        );
        assert!(Template::parse("alerts.jsonl").unwrap().is_fixed());
        assert_eq!(
            Template::parse("out/{actor}/a.jsonl")
                .unwrap()
                .fixed_folder(),
            PathBuf::from("out")
        );
        assert_eq!(
            Template::parse("a.jsonl").unwrap().fixed_folder(),
            PathBuf::from(".")
        );
        for bad in ["{actr}", "x{actor", "x}y"] {
            assert!(Template::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn values_are_escaped_for_where_they_go() {
        let mut out = String::new();
        push_escaped(&mut out, "a b/ø", Escape::Url);
        assert_eq!(out, "a%20b%2F%C3%B8");
        out.clear();
        push_escaped(&mut out, "../etc/x y", Escape::Name);
        assert_eq!(out, ".._etc_x_y");
        out.clear();
        push_escaped(&mut out, "..", Escape::Name);
        assert_eq!(out, "_");
    }
}
