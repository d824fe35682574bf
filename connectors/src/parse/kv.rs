//! `key=value` pairs (logfmt): `level=warn user="ann b" attempts=3 debug`.
//!
//! Values are bare (up to the next space) or double-quoted with `\"` and
//! `\\` escapes; a bare key without `=` is `true`; plain integers become
//! numbers. A line without any `key=value` pair is not logfmt.

use super::object::Object;

/// Parses one logfmt line.
pub(super) fn parse(line: &str) -> Result<Object, String> {
    let mut object = Object::default();
    let mut pairs = 0;
    let mut rest = line.trim_start();
    while !rest.is_empty() {
        let key_end = rest
            .find(|c: char| c == '=' || c.is_whitespace())
            .unwrap_or(rest.len());
        let key = &rest[..key_end];
        if key.is_empty() {
            let column = line.len() - rest.len() + 1;
            return Err(format!("logfmt: '=' without a key at column {column}"));
        }
        rest = &rest[key_end..];
        match rest.strip_prefix('=') {
            Some(after) => {
                pairs += 1;
                rest = if let Some(quoted) = after.strip_prefix('"') {
                    let (value, used) = unquote(quoted).ok_or_else(|| {
                        format!("logfmt: the quoted value of '{key}' is not closed")
                    })?;
                    // A quoted value stays a string, whatever it looks like.
                    object.insert_str(key, &value);
                    &quoted[used..]
                } else {
                    let end = after.find(char::is_whitespace).unwrap_or(after.len());
                    object.insert_typed(key, &after[..end]);
                    &after[end..]
                };
            }
            None => object.insert_bool(key, true),
        }
        rest = rest.trim_start();
    }
    if pairs == 0 {
        return Err("logfmt: no key=value pair in the line".into());
    }
    Ok(object)
}

/// The value of a quoted string whose opening quote was consumed, and the
/// bytes used including the closing quote; `None` if it is not closed.
fn unquote(text: &str) -> Option<(String, usize)> {
    super::quoted(text, |c, value| {
        value.push(match c {
            'n' => '\n',
            't' => '\t',
            other => other,
        })
    })
}
