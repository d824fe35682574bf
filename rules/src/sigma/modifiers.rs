//! Lowering one detection item (`Field|mod1|mod2: values`) into a [`Cond`].
//!
//! Transformation modifiers (`contains`, `startswith`, `endswith`,
//! `base64`, `base64offset`, `utf16*`/`wide`, `windash`, `expand`) rewrite
//! the values in the order written; type modifiers (`re`, `cidr`,
//! `lt`..`gte`, `exists`, `fieldref`, time parts) pick the kind of test;
//! `all`, `neq` and `cased` change how values combine and compare.

use std::collections::HashMap;

use base64::Engine as _;
use serde_yaml_ng::Value;

use crate::error::RuleError;
use crate::sigma::predicate::{
    CmpOp, Cond, Predicate, RefMatch, RegexFlags, Target, Test, TimePart,
};
use crate::sigma::value::{Part, SigmaString};

/// Values for `%name%` placeholders used with the `expand` modifier.
pub type Placeholders = HashMap<String, Vec<String>>;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Transform {
    Contains,
    StartsWith,
    EndsWith,
    Base64,
    Base64Offset,
    Utf16Le,
    Utf16Be,
    Utf16Bom,
    Windash,
}

impl Transform {
    fn name(self) -> &'static str {
        match self {
            Transform::Contains => "contains",
            Transform::StartsWith => "startswith",
            Transform::EndsWith => "endswith",
            Transform::Base64 => "base64",
            Transform::Base64Offset => "base64offset",
            Transform::Utf16Le => "utf16le",
            Transform::Utf16Be => "utf16be",
            Transform::Utf16Bom => "utf16",
            Transform::Windash => "windash",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Regex,
    Cidr,
    Compare(CmpOp),
    Exists,
    FieldRef,
}

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Kind::Regex => "re",
            Kind::Cidr => "cidr",
            Kind::Compare(CmpOp::Lt) => "lt",
            Kind::Compare(CmpOp::Lte) => "lte",
            Kind::Compare(CmpOp::Gt) => "gt",
            Kind::Compare(CmpOp::Gte) => "gte",
            Kind::Compare(CmpOp::Eq) => "eq",
            Kind::Exists => "exists",
            Kind::FieldRef => "fieldref",
        }
    }
}

/// Every modifier name vagt knows, as written in a rule.
pub const MODIFIER_NAMES: &[&str] = &[
    "contains",
    "startswith",
    "endswith",
    "base64",
    "base64offset",
    "utf16le",
    "wide",
    "utf16be",
    "utf16",
    "windash",
    "all",
    "cased",
    "neq",
    "expand",
    "re",
    "i",
    "m",
    "s",
    "cidr",
    "lt",
    "lte",
    "gt",
    "gte",
    "exists",
    "fieldref",
    "minute",
    "hour",
    "day",
    "week",
    "month",
    "year",
];

#[derive(Debug, Default)]
struct Modifiers {
    transforms: Vec<Transform>,
    kind: Option<Kind>,
    all: bool,
    cased: bool,
    neq: bool,
    expand: bool,
    regex_flags: RegexFlags,
    time_part: Option<TimePart>,
}

/// An intermediate value while transformation modifiers run.
#[derive(Debug, Clone)]
enum Val {
    Str(SigmaString),
    Bytes(Vec<u8>),
}

fn value_error(key: &str, message: impl Into<String>) -> RuleError {
    RuleError::Value {
        key: key.to_string(),
        message: message.into(),
    }
}

fn parse_modifiers(key: &str, names: &[&str]) -> Result<Modifiers, RuleError> {
    let mut m = Modifiers::default();
    let set_kind = |m: &mut Modifiers, kind: Kind| -> Result<(), RuleError> {
        if let Some(previous) = m.kind {
            if previous != kind {
                return Err(value_error(
                    key,
                    format!(
                        "modifiers '{}' and '{}' cannot be combined",
                        previous.name(),
                        kind.name()
                    ),
                ));
            }
        }
        m.kind = Some(kind);
        Ok(())
    };
    for name in names {
        match *name {
            "contains" => m.transforms.push(Transform::Contains),
            "startswith" => m.transforms.push(Transform::StartsWith),
            "endswith" => m.transforms.push(Transform::EndsWith),
            "base64" => m.transforms.push(Transform::Base64),
            "base64offset" => m.transforms.push(Transform::Base64Offset),
            "utf16le" | "wide" => m.transforms.push(Transform::Utf16Le),
            "utf16be" => m.transforms.push(Transform::Utf16Be),
            "utf16" => m.transforms.push(Transform::Utf16Bom),
            "windash" => m.transforms.push(Transform::Windash),
            "all" => m.all = true,
            "cased" => m.cased = true,
            "neq" => m.neq = true,
            "expand" => m.expand = true,
            "re" => set_kind(&mut m, Kind::Regex)?,
            "i" | "m" | "s" => {
                if m.kind != Some(Kind::Regex) {
                    return Err(value_error(
                        key,
                        format!("regex flag '{name}' must follow the 're' modifier"),
                    ));
                }
                match *name {
                    "i" => m.regex_flags.insensitive = true,
                    "m" => m.regex_flags.multi_line = true,
                    _ => m.regex_flags.dot_all = true,
                }
            }
            "cidr" => set_kind(&mut m, Kind::Cidr)?,
            "lt" => set_kind(&mut m, Kind::Compare(CmpOp::Lt))?,
            "lte" => set_kind(&mut m, Kind::Compare(CmpOp::Lte))?,
            "gt" => set_kind(&mut m, Kind::Compare(CmpOp::Gt))?,
            "gte" => set_kind(&mut m, Kind::Compare(CmpOp::Gte))?,
            "exists" => set_kind(&mut m, Kind::Exists)?,
            "fieldref" => set_kind(&mut m, Kind::FieldRef)?,
            "minute" | "hour" | "day" | "week" | "month" | "year" => {
                if m.time_part.is_some() {
                    return Err(value_error(key, "only one time-part modifier is allowed"));
                }
                m.time_part = Some(match *name {
                    "minute" => TimePart::Minute,
                    "hour" => TimePart::Hour,
                    "day" => TimePart::Day,
                    "week" => TimePart::Week,
                    "month" => TimePart::Month,
                    _ => TimePart::Year,
                });
            }
            other => {
                return Err(RuleError::UnknownModifier {
                    key: key.to_string(),
                    modifier: other.to_string(),
                })
            }
        }
    }
    check_chain(key, &m)?;
    Ok(m)
}

/// Refuses the chains whose meaning vagt would not honour: a modifier
/// that does not apply to the kind of test the chain makes. Each refusal
/// says which modifiers clash and why.
fn check_chain(key: &str, m: &Modifiers) -> Result<(), RuleError> {
    let clash = |what: &str, why: &str| Err(value_error(key, format!("{what}: {why}")));
    let test = match (m.time_part, m.kind) {
        (Some(_), _) => "a time part",
        (None, Some(kind)) => kind.name(),
        (None, None) => return Ok(()),
    };
    let first_transform = m.transforms.first().map(|t| t.name());
    match m.kind {
        Some(Kind::FieldRef) if m.time_part.is_none() => {
            if let Some(t) = m.transforms.iter().find(|t| {
                !matches!(
                    t,
                    Transform::Contains | Transform::StartsWith | Transform::EndsWith
                )
            }) {
                return clash(
                    &format!("'fieldref' cannot be combined with '{}'", t.name()),
                    "the other field's value is compared as it is; only contains, startswith or endswith apply",
                );
            }
            if m.transforms.len() > 1 {
                return clash(
                    "'fieldref' takes one of contains, startswith or endswith",
                    "more than one would leave unclear how the two fields compare",
                );
            }
        }
        Some(Kind::Regex) if m.time_part.is_none() => {
            if let Some(t) = first_transform {
                return clash(
                    &format!("'re' cannot be combined with '{t}'"),
                    "regex values cannot be transformed; write the pattern for what should match",
                );
            }
            if m.cased {
                return clash(
                    "'re' cannot be combined with 'cased'",
                    "a regex is case-sensitive already ('i' makes it ignore case)",
                );
            }
        }
        _ => {
            if let Some(t) = first_transform {
                return clash(
                    &format!("'{test}' cannot be combined with '{t}'"),
                    "string modifiers apply to string matches only",
                );
            }
            if m.cased {
                return clash(
                    &format!("'{test}' cannot be combined with 'cased'"),
                    "case applies to string comparisons only",
                );
            }
        }
    }
    if m.expand {
        return clash(
            &format!("'{test}' cannot be combined with 'expand'"),
            "placeholders expand into string matches only",
        );
    }
    Ok(())
}

/// Lowers one `key: value` detection item. `key` is the field name with its
/// modifiers; an empty field name (e.g. `'|all'`) means a keyword search.
pub fn lower_item(
    key: &str,
    value: &Value,
    placeholders: &Placeholders,
) -> Result<Cond, RuleError> {
    let mut pieces = key.split('|');
    let field = pieces.next().unwrap_or_default();
    let names: Vec<&str> = pieces.collect();
    let m = parse_modifiers(key, &names)?;
    let target = if field.is_empty() {
        Target::Raw
    } else {
        Target::Field(field.to_string())
    };

    let values: Vec<&Value> = match value {
        Value::Sequence(seq) => {
            if seq.is_empty() {
                return Err(value_error(key, "empty list of values"));
            }
            if seq.len() > 1 && seq.iter().any(Value::is_null) {
                return Err(value_error(
                    key,
                    "null cannot be part of a list of values; use a separate selection",
                ));
            }
            seq.iter().collect()
        }
        Value::Tagged(tagged) => vec![&tagged.value],
        single => vec![single],
    };

    let mut per_value = Vec::with_capacity(values.len());
    for v in values {
        per_value.push(lower_value(key, &target, &m, v, placeholders)?);
    }
    let combined = if m.all {
        Cond::and(per_value)
    } else {
        Cond::or(per_value)
    };
    if m.neq && m.kind != Some(Kind::Exists) {
        return Ok(Cond::Not(Box::new(combined)));
    }
    Ok(combined)
}

fn scalar_text(key: &str, v: &Value) -> Result<String, RuleError> {
    match v {
        Value::String(s) => Ok(s.clone()),
        Value::Number(n) => Ok(n.to_string()),
        Value::Bool(b) => Ok(b.to_string()),
        Value::Null => Ok(String::new()),
        Value::Sequence(_) => Err(value_error(key, "nested lists are not valid values")),
        Value::Mapping(_) => Err(value_error(key, "a map is not a valid value")),
        Value::Tagged(t) => scalar_text(key, &t.value),
    }
}

fn scalar_number(key: &str, modifier: &str, v: &Value) -> Result<f64, RuleError> {
    let parsed = match v {
        Value::Number(n) => n.as_f64(),
        Value::String(s) => s.trim().parse::<f64>().ok(),
        _ => None,
    };
    parsed.ok_or_else(|| {
        value_error(
            key,
            format!("the numeric modifier '{modifier}' needs a number, got {v:?}"),
        )
    })
}

fn lower_value(
    key: &str,
    target: &Target,
    m: &Modifiers,
    v: &Value,
    placeholders: &Placeholders,
) -> Result<Cond, RuleError> {
    let pred = |test: Test| {
        Cond::Pred(Predicate {
            target: target.clone(),
            test,
        })
    };
    // `neq` negates the whole item in `lower_item` (a list: differs from
    // every value), except `exists`, which it turns around here.

    if let Some(part) = m.time_part {
        let op = match m.kind {
            None => CmpOp::Eq,
            Some(Kind::Compare(op)) => op,
            Some(other) => {
                return Err(value_error(
                    key,
                    format!("time-part modifiers combine only with lt/lte/gt/gte, not {other:?}"),
                ))
            }
        };
        let value = scalar_number(key, "time part", v)?;
        return Ok(pred(Test::TimePart { part, op, value }));
    }

    if v.is_null() {
        if m.kind.is_some() || !m.transforms.is_empty() {
            return Err(value_error(key, "null cannot be combined with modifiers"));
        }
        return Ok(pred(Test::Null));
    }

    match m.kind {
        Some(Kind::Exists) => {
            let Value::Bool(wanted) = v else {
                return Err(value_error(
                    key,
                    "the 'exists' modifier needs true or false",
                ));
            };
            let exists = pred(Test::Exists);
            Ok(if *wanted != m.neq {
                exists
            } else {
                Cond::Not(Box::new(exists))
            })
        }
        Some(Kind::Compare(op)) => {
            let name = format!("{op:?}").to_ascii_lowercase();
            let value = scalar_number(key, &name, v)?;
            Ok(pred(Test::Compare { op, value }))
        }
        Some(Kind::Cidr) => {
            let text = scalar_text(key, v)?;
            if let Some(feed) = feed_reference(key, target, &text)? {
                return Ok(pred(Test::InFeed {
                    feed,
                    addresses_only: true,
                }));
            }
            let net = parse_cidr(&text)
                .ok_or_else(|| value_error(key, format!("'{text}' is not a valid cidr network")))?;
            Ok(pred(Test::Cidr(net)))
        }
        Some(Kind::FieldRef) => {
            let other = scalar_text(key, v)?;
            if other.is_empty() {
                return Err(value_error(key, "fieldref needs a field name"));
            }
            let how = match m.transforms.first() {
                None => RefMatch::Equal,
                Some(Transform::StartsWith) => RefMatch::StartsWith,
                Some(Transform::EndsWith) => RefMatch::EndsWith,
                // check_chain leaves contains only.
                Some(_) => RefMatch::Contains,
            };
            Ok(pred(Test::FieldRef {
                other,
                cased: m.cased,
                how,
            }))
        }
        Some(Kind::Regex) => {
            let pattern = scalar_text(key, v)?;
            // Its syntax here; compilation (and its size limit) checks the
            // rest, once, when the rule set is built.
            let parsed = regex_syntax::ParserBuilder::new()
                .case_insensitive(m.regex_flags.insensitive)
                .multi_line(m.regex_flags.multi_line)
                .dot_matches_new_line(m.regex_flags.dot_all)
                .build()
                .parse(&pattern);
            if let Err(e) = parsed {
                return Err(value_error(key, format!("invalid regex: {e}")));
            }
            Ok(pred(Test::Regex {
                pattern,
                flags: m.regex_flags,
            }))
        }
        None => {
            let text = scalar_text(key, v)?;
            if m.expand {
                if let Some(feed) = feed_reference(key, target, &text)? {
                    let string_modifier = m
                        .transforms
                        .first()
                        .map(|t| t.name())
                        .or(m.cased.then_some("cased"));
                    if let Some(modifier) = string_modifier {
                        return Err(value_error(
                            key,
                            format!("a feed is matched as its indicators are (see docs/intel.md), so '%feed:{feed}%' takes no '{modifier}'"),
                        ));
                    }
                    return Ok(pred(Test::InFeed {
                        feed,
                        addresses_only: false,
                    }));
                }
            }
            let starts: Vec<SigmaString> = if m.expand {
                expand_placeholders(key, &text, placeholders)?
            } else {
                vec![SigmaString::parse(&text)]
            };
            let mut alternatives = Vec::new();
            for start in starts {
                let mut vals = vec![Val::Str(start)];
                for t in &m.transforms {
                    vals = apply_transform(key, *t, vals)?;
                }
                for val in vals {
                    let pattern = match val {
                        Val::Str(s) => s,
                        Val::Bytes(bytes) => match String::from_utf8(bytes) {
                            Ok(s) => SigmaString::literal(s),
                            Err(_) => {
                                return Err(value_error(
                                    key,
                                    "encoded value is not text; follow utf16 modifiers with base64 or base64offset",
                                ))
                            }
                        },
                    };
                    let pattern = if *target == Target::Raw {
                        keyword_pattern(pattern)
                    } else {
                        pattern
                    };
                    alternatives.push(pred(Test::Match {
                        pattern,
                        cased: m.cased,
                    }));
                }
            }
            Ok(Cond::or(alternatives))
        }
    }
}

/// Keyword searches match anywhere in the raw (JSON) event text, so the
/// literal parts are JSON-escaped the way the event text escapes them.
fn keyword_pattern(mut pattern: SigmaString) -> SigmaString {
    let escaped = pattern.expand_literals(&|text| vec![json_escape(text)]);
    pattern = escaped.into_iter().next().unwrap_or_default();
    pattern.prepend_any();
    pattern.append_any();
    pattern
}

fn json_escape(text: &str) -> String {
    let quoted = serde_json::to_string(text).unwrap_or_default();
    quoted
        .get(1..quoted.len().saturating_sub(1))
        .unwrap_or_default()
        .to_string()
}

/// The feed a value `%feed:NAME%` refers to; an error where a feed is
/// named inside a longer value or in a keyword search.
fn feed_reference(key: &str, target: &Target, text: &str) -> Result<Option<String>, RuleError> {
    let Some(at) = text.find("%feed:") else {
        return Ok(None);
    };
    let name = text
        .strip_prefix("%feed:")
        .and_then(|rest| rest.strip_suffix('%'))
        .filter(|name| !name.is_empty() && !name.contains('%'));
    let Some(name) = name else {
        return Err(value_error(
            key,
            format!(
                "'{}': a feed is referred to as a whole value, '%feed:NAME%'",
                &text[at..]
            ),
        ));
    };
    if *target == Target::Raw {
        return Err(value_error(
            key,
            "a feed is matched against a field, not in a keyword search",
        ));
    }
    Ok(Some(name.to_string()))
}

fn parse_cidr(text: &str) -> Option<ipnet::IpNet> {
    let text = text.trim();
    text.parse::<ipnet::IpNet>().ok().or_else(|| {
        text.parse::<std::net::IpAddr>()
            .ok()
            .map(ipnet::IpNet::from)
    })
}

fn expand_placeholders(
    key: &str,
    raw: &str,
    placeholders: &Placeholders,
) -> Result<Vec<SigmaString>, RuleError> {
    // Split into raw text and placeholder names; `\%` is a literal percent.
    let mut segments: Vec<Result<String, String>> = vec![Ok(String::new())];
    let mut chars = raw.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\\' if chars.peek() == Some(&'%') => {
                chars.next();
                push_raw(&mut segments, "\\%");
            }
            '%' => {
                let mut name = String::new();
                let mut closed = false;
                for n in chars.by_ref() {
                    if n == '%' {
                        closed = true;
                        break;
                    }
                    name.push(n);
                }
                if !closed {
                    return Err(value_error(
                        key,
                        format!("unterminated placeholder '%{name}'"),
                    ));
                }
                segments.push(Err(name));
                segments.push(Ok(String::new()));
            }
            other => {
                let mut buf = [0u8; 4];
                push_raw(&mut segments, other.encode_utf8(&mut buf));
            }
        }
    }
    let mut results = vec![String::new()];
    for segment in segments {
        match segment {
            Ok(text) => results.iter_mut().for_each(|r| r.push_str(&text)),
            Err(name) => {
                let Some(values) = placeholders.get(&name).filter(|v| !v.is_empty()) else {
                    return Err(value_error(
                        key,
                        format!("placeholder '%{name}%' has no configured values"),
                    ));
                };
                results = results
                    .iter()
                    .flat_map(|prefix| values.iter().map(move |v| format!("{prefix}{v}")))
                    .collect();
            }
        }
    }
    // `\%` must become `%` while other backslashes keep their wildcard meaning.
    Ok(results
        .iter()
        .map(|r| {
            let parsed = SigmaString::parse(r);
            let fixed = parsed.expand_literals(&|t| vec![t.replace("\\%", "%")]);
            fixed.into_iter().next().unwrap_or_default()
        })
        .collect())
}

fn push_raw(segments: &mut [Result<String, String>], text: &str) {
    if let Some(Ok(last)) = segments.last_mut() {
        last.push_str(text);
    }
}

fn plain_bytes(key: &str, val: &Val, modifier: &str) -> Result<Vec<u8>, RuleError> {
    match val {
        Val::Bytes(b) => Ok(b.clone()),
        Val::Str(s) => s.as_plain().map(String::into_bytes).ok_or_else(|| {
            value_error(
                key,
                format!("'{modifier}' cannot encode a value with wildcards ('{s}'); apply contains after it"),
            )
        }),
    }
}

fn apply_transform(key: &str, t: Transform, vals: Vec<Val>) -> Result<Vec<Val>, RuleError> {
    let b64 = base64::engine::general_purpose::STANDARD;
    let mut out = Vec::with_capacity(vals.len());
    for val in vals {
        match t {
            Transform::Contains | Transform::StartsWith | Transform::EndsWith => {
                let mut s = match val {
                    Val::Str(s) => s,
                    Val::Bytes(b) => SigmaString::literal(String::from_utf8(b).map_err(|_| {
                        value_error(
                            key,
                            "encoded value is not text; follow utf16 modifiers with base64",
                        )
                    })?),
                };
                if matches!(t, Transform::Contains | Transform::EndsWith) {
                    s.prepend_any();
                }
                if matches!(t, Transform::Contains | Transform::StartsWith) {
                    s.append_any();
                }
                out.push(Val::Str(s));
            }
            Transform::Base64 => {
                let bytes = plain_bytes(key, &val, "base64")?;
                out.push(Val::Str(SigmaString::literal(b64.encode(bytes))));
            }
            Transform::Base64Offset => {
                let bytes = plain_bytes(key, &val, "base64offset")?;
                const START: [usize; 3] = [0, 2, 3];
                const END_TRIM: [usize; 3] = [0, 3, 2];
                for shift in 0..3 {
                    let mut shifted = vec![b' '; shift];
                    shifted.extend_from_slice(&bytes);
                    let encoded = b64.encode(&shifted);
                    let trim = END_TRIM[(bytes.len() + shift) % 3];
                    let end = encoded.len().saturating_sub(trim);
                    let piece = encoded.get(START[shift]..end).unwrap_or_default();
                    if !piece.is_empty() {
                        out.push(Val::Str(SigmaString::literal(piece)));
                    }
                }
            }
            Transform::Utf16Le | Transform::Utf16Be | Transform::Utf16Bom => {
                let text = match &val {
                    Val::Str(s) => s.as_plain().ok_or_else(|| {
                        value_error(key, "utf16 modifiers cannot encode a value with wildcards")
                    })?,
                    Val::Bytes(_) => return Err(value_error(key, "value is already encoded")),
                };
                let mut bytes = Vec::with_capacity(text.len() * 2 + 2);
                if t == Transform::Utf16Bom {
                    bytes.extend_from_slice(&[0xFF, 0xFE]);
                }
                for unit in text.encode_utf16() {
                    let pair = if t == Transform::Utf16Be {
                        unit.to_be_bytes()
                    } else {
                        unit.to_le_bytes()
                    };
                    bytes.extend_from_slice(&pair);
                }
                out.push(Val::Bytes(bytes));
            }
            Transform::Windash => match val {
                Val::Str(s) => {
                    let variants = windash(&s).ok_or_else(|| {
                        value_error(
                            key,
                            format!(
                                "windash: the value has more than {MAX_WINDASH_FLAGS} command-line flags, \
                                 whose permutations would be over {} strings",
                                DASHES.len().pow(MAX_WINDASH_FLAGS)
                            ),
                        )
                    })?;
                    out.extend(variants.into_iter().map(Val::Str));
                }
                Val::Bytes(_) => return Err(value_error(key, "windash applies to text only")),
            },
        }
    }
    Ok(out)
}

const DASHES: [char; 5] = ['-', '/', '\u{2013}', '\u{2014}', '\u{2015}'];

/// Flags one `windash` value may hold: each multiplies its strings by five
/// (SigmaHQ's values hold one or two), so that a value of many cannot
/// take the loader's memory.
const MAX_WINDASH_FLAGS: u32 = 5;

/// All permutations of command-line flag characters at word starts, as
/// pySigma does: a dash (any of [`DASHES`], so that a rule written with an
/// en dash, as rules copied from documents often are, expands too) or `/`
/// not preceded by a word character and followed by one. `None` for a
/// value of more than [`MAX_WINDASH_FLAGS`] flags.
fn windash(s: &SigmaString) -> Option<Vec<SigmaString>> {
    // Work on the whole string so that word boundaries across parts count.
    let parts = s.parts();
    let mut variants = vec![SigmaString::default()];
    let mut prev_is_word = false;
    let mut flags = 0;
    for (index, part) in parts.iter().enumerate() {
        match part {
            Part::Literal(text) => {
                let chars: Vec<char> = text.chars().collect();
                for (i, &c) in chars.iter().enumerate() {
                    let next_is_word = match chars.get(i + 1) {
                        Some(n) => is_word(*n),
                        None => matches!(parts.get(index + 1), Some(Part::AnyOne)),
                    };
                    let is_flag = DASHES.contains(&c) && !prev_is_word && next_is_word;
                    let options: &[char] = if is_flag {
                        flags += 1;
                        if flags > MAX_WINDASH_FLAGS {
                            return None;
                        }
                        &DASHES
                    } else {
                        std::slice::from_ref(&chars[i])
                    };
                    let mut next = Vec::with_capacity(variants.len() * options.len());
                    for v in &variants {
                        for o in options {
                            let mut nv = v.clone();
                            nv.push_char(*o);
                            next.push(nv);
                        }
                    }
                    variants = next;
                    prev_is_word = is_word(c);
                }
            }
            wildcard => {
                for v in &mut variants {
                    v.push_wildcard(wildcard.clone());
                }
                prev_is_word = false;
            }
        }
    }
    Some(variants)
}

fn is_word(c: char) -> bool {
    c.is_alphanumeric() || c == '_'
}

#[cfg(test)]
mod tests {
    use super::*;

    fn texts(cond: &Cond) -> Vec<String> {
        let mut out = Vec::new();
        cond.for_each_predicate(&mut |p| {
            if let Test::Match { pattern, .. } = &p.test {
                out.push(pattern.to_string());
            }
        });
        out
    }

    fn lower(key: &str, yaml: &str) -> Result<Cond, RuleError> {
        let v: Value = serde_yaml_ng::from_str(yaml).unwrap();
        lower_item(key, &v, &Placeholders::new())
    }

    #[test]
    fn base64offset_matches_pysigma() {
        let c = lower("CommandLine|base64offset|contains", "'http://'").unwrap();
        assert_eq!(texts(&c), vec!["*aHR0cDovL*", "*h0dHA6Ly*", "*odHRwOi8v*"]);
    }

    #[test]
    fn wide_base64offset_encodes_utf16le_first() {
        let c = lower("CommandLine|wide|base64offset|contains", "'ping'").unwrap();
        assert_eq!(
            texts(&c),
            vec!["*cABpAG4AZw*", "*AAaQBuAGcA*", "*wAGkAbgBnA*"]
        );
    }

    #[test]
    fn windash_only_replaces_flag_dashes() {
        let c = lower("CommandLine|windash|contains", "' -enc a-b'").unwrap();
        let t = texts(&c);
        assert_eq!(t.len(), 5);
        assert!(t.contains(&"* /enc a-b*".to_string()));
        assert!(t.contains(&"* \u{2013}enc a-b*".to_string()));
    }

    /// Each flag multiplies the strings by five: a value of many (a list
    /// written as one YAML scalar) is rejected, naming the key, not left
    /// to take the loader's memory.
    #[test]
    fn windash_rejects_a_value_of_too_many_flags() {
        let five = "' -a -b -c -d -e'";
        assert_eq!(
            texts(&lower("CommandLine|windash|contains", five).unwrap()).len(),
            3125
        );
        let many = format!("'{}'", " -e".repeat(30));
        match lower("CommandLine|windash|contains", &many) {
            Err(RuleError::Value { key, message }) => {
                assert_eq!(key, "CommandLine|windash|contains");
                assert!(
                    message.contains("more than 5 command-line flags"),
                    "{message}"
                );
            }
            other => panic!("expected a value error, got {other:?}"),
        }
    }

    #[test]
    fn escaped_wildcards_survive_windash() {
        let c = lower("CommandLine|windash", "'-x \\*'").unwrap();
        assert!(texts(&c).contains(&"/x \\*".to_string()));
    }

    #[test]
    fn a_feed_is_a_whole_value_with_expand_or_cidr() {
        let feed = |c: &Cond| {
            let mut out = Vec::new();
            c.for_each_predicate(&mut |p| {
                if let Test::InFeed {
                    feed,
                    addresses_only,
                } = &p.test
                {
                    out.push((feed.clone(), *addresses_only));
                }
            });
            out
        };
        let c = lower("DestinationIp|cidr", "'%feed:cfcs-ips%'").unwrap();
        assert_eq!(feed(&c), vec![("cfcs-ips".to_string(), true)]);
        let c = lower("QueryName|expand", "['%feed:a%', '%feed:b%']").unwrap();
        assert_eq!(
            feed(&c),
            vec![("a".to_string(), false), ("b".to_string(), false)]
        );
        // Without `expand` it is a string like any other.
        let c = lower("QueryName", "'%feed:a%'").unwrap();
        assert_eq!(texts(&c), vec!["%feed:a%"]);
        for (key, value, says) in [
            ("QueryName|expand", "'www.%feed:a%'", "whole value"),
            ("QueryName|expand", "'%feed:%'", "whole value"),
            ("QueryName|contains|expand", "'%feed:a%'", "no 'contains'"),
            ("QueryName|expand|cased", "'%feed:a%'", "no 'cased'"),
            ("|expand", "'%feed:a%'", "keyword"),
        ] {
            let e = lower(key, value).unwrap_err().to_string();
            assert!(e.contains(says), "{key}: {e}");
        }
    }

    #[test]
    fn rejections_name_the_construct() {
        let e = lower("CommandLine|contians", "'x'").unwrap_err();
        assert!(e.to_string().contains("unknown modifier 'contians'"));
        let e = lower("x|gt", "'abc'").unwrap_err();
        assert!(e.to_string().contains("numeric"));
        let e = lower("x|cidr", "'10.0.0.300/8'").unwrap_err();
        assert!(e.to_string().contains("cidr"));
        let e = lower("x|re", "'(unclosed'").unwrap_err();
        assert!(e.to_string().contains("regex"));
        let e = lower("x|expand", "'%Admins%'").unwrap_err();
        assert!(e.to_string().contains("placeholder"));
        let e = lower("x", "['a', null]").unwrap_err();
        assert!(e.to_string().contains("null"));
        let e = lower("x|base64", "'a*'").unwrap_err();
        assert!(e.to_string().contains("base64"));
    }

    #[test]
    fn expand_substitutes_configured_values() {
        let v: Value = serde_yaml_ng::from_str("'%Admins%_x'").unwrap();
        let mut p = Placeholders::new();
        p.insert("Admins".into(), vec!["root".into(), "adm*".into()]);
        let c = lower_item("User|expand", &v, &p).unwrap();
        assert_eq!(texts(&c), vec!["root_x", "adm*_x"]);
    }
}
