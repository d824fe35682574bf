//! IBM LEEF 1.0 (`LEEF:1.0|Vendor|Product|Version|EventID|k=v<TAB>k=v`) and
//! 2.0 (`LEEF:2.0|Vendor|Product|Version|EventID|^|k=v^k=v`, the delimiter
//! a character or its hex code like `x09`), alone or after a syslog header
//! (whose fields go under `syslog.*`).
//!
//! Columns: `leef_version`, `vendor`, `product`, `product_version`,
//! `event_id`, and each attribute as written (`src`, `dst`, `usrName`,
//! `devTime`, ...). Plain integers become numbers.

use super::cef::{after_syslog, header};
use super::object::Object;

const HEADER: [&str; 5] = [
    "leef_version",
    "vendor",
    "product",
    "product_version",
    "event_id",
];

/// Parses one LEEF line.
pub(super) fn parse(line: &str) -> Result<Object, String> {
    let (mut object, body) = after_syslog(line, "LEEF:")?;
    let (fields, rest) = header(body, HEADER.len())
        .map_err(|found| format!("LEEF: the header has {found} of its 5 '|'-separated fields"))?;
    let (delimiter, attributes) = match fields[0].as_str() {
        "1.0" | "1" => ('\t', rest),
        // The delimiter field is optional (tab when absent).
        "2.0" | "2" => match rest.split_once('|') {
            Some((spec, attributes)) if spec.len() <= 4 && !spec.contains('=') => {
                (delimiter(spec)?, attributes)
            }
            _ => ('\t', rest),
        },
        other => {
            return Err(format!(
                "LEEF: unknown version '{other}' (1.0 and 2.0 are read)"
            ))
        }
    };
    for (name, value) in HEADER.iter().zip(&fields) {
        object.insert_typed(name, value);
    }
    for attribute in attributes.split(delimiter).filter(|a| !a.trim().is_empty()) {
        let (key, value) = attribute
            .split_once('=')
            .ok_or_else(|| format!("LEEF: attribute '{attribute}' has no '='"))?;
        if key.trim().is_empty() {
            return Err(format!("LEEF: attribute '{attribute}' has no key"));
        }
        object.insert_typed(key.trim(), value);
    }
    Ok(object)
}

/// A LEEF 2.0 delimiter: one character, or `x09` / `0x09`; tab if empty.
fn delimiter(spec: &str) -> Result<char, String> {
    let hex = spec
        .strip_prefix("0x")
        .or_else(|| spec.strip_prefix('x'))
        .or_else(|| spec.strip_prefix("0X"))
        .or_else(|| spec.strip_prefix('X'));
    match (hex, spec.chars().count()) {
        (_, 0) => Ok('\t'),
        (_, 1) => Ok(spec.chars().next().unwrap_or('\t')),
        (Some(code), _) => u32::from_str_radix(code, 16)
            .ok()
            .and_then(char::from_u32)
            .ok_or_else(|| format!("LEEF: delimiter '{spec}' is not a character code")),
        (None, _) => Err(format!("LEEF: delimiter '{spec}' is not one character")),
    }
}
