//! ArcSight CEF: `CEF:0|Vendor|Product|1.0|100|Name|5|src=10.0.0.1 act=blocked`,
//! alone or after a syslog header (whose fields go under `syslog.*`).
//!
//! Columns: `cef_version`, `device_vendor`, `device_product`,
//! `device_version`, `signature_id`, `name`, `severity`, and each extension
//! key as written (`src`, `dst`, `spt`, `suser`, `cs1Label`, ...). Header
//! fields unescape `\|` and `\\`; extension values `\=`, `\\`, `\n`, `\r`.
//! Plain integers become numbers.

use super::object::Object;
use super::syslog;

const HEADER: [&str; 7] = [
    "cef_version",
    "device_vendor",
    "device_product",
    "device_version",
    "signature_id",
    "name",
    "severity",
];

/// Parses one CEF line.
pub(super) fn parse(line: &str) -> Result<Object, String> {
    let (mut object, body) = after_syslog(line, "CEF:")?;
    let (fields, extension) = header(body, HEADER.len())
        .map_err(|found| format!("CEF: the header has {found} of its 7 '|'-separated fields"))?;
    if fields[0].parse::<u32>().is_err() {
        return Err(format!("CEF: version '{}' is not a number", fields[0]));
    }
    for (name, value) in HEADER.iter().zip(&fields) {
        object.insert_typed(name, value);
    }
    extension_pairs(extension, &mut object)?;
    Ok(object)
}

/// Splits `<syslog header> PREFIX...` into the header's fields (under
/// `syslog`) and the text from `prefix` on (without it).
pub(super) fn after_syslog<'a>(line: &'a str, prefix: &str) -> Result<(Object, &'a str), String> {
    let at = line
        .find(prefix)
        .ok_or_else(|| format!("no '{prefix}' in the line"))?;
    let mut object = Object::default();
    let head = line[..at].trim_end();
    if !head.is_empty() {
        object.insert_object("syslog", syslog::parse(head)?);
    }
    Ok((object, &line[at + prefix.len()..]))
}

/// The first `count` `|`-separated fields (unescaped) and the rest; the
/// number of fields found if there are fewer.
pub(super) fn header(body: &str, count: usize) -> Result<(Vec<String>, &str), usize> {
    let mut fields = Vec::with_capacity(count);
    let mut field = String::new();
    let mut chars = body.char_indices();
    while let Some((i, c)) = chars.next() {
        match c {
            '\\' => match chars.next() {
                Some((_, e @ ('|' | '\\'))) => field.push(e),
                Some((_, other)) => {
                    field.push('\\');
                    field.push(other);
                }
                None => field.push('\\'),
            },
            '|' => {
                fields.push(std::mem::take(&mut field));
                if fields.len() == count {
                    return Ok((fields, &body[i + 1..]));
                }
            }
            _ => field.push(c),
        }
    }
    Err(fields.len())
}

/// Writes the `key=value` pairs of a CEF extension: a value runs to the
/// space before the next `key=`.
fn extension_pairs(text: &str, object: &mut Object) -> Result<(), String> {
    let bytes = text.as_bytes();
    // Positions of unescaped '='.
    let mut equals = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'\\' => i += 1,
            b'=' => equals.push(i),
            _ => {}
        }
        i += 1;
    }
    let key_start = |eq: usize| text[..eq].rfind(' ').map_or(0, |s| s + 1);
    // An '=' whose word before it is no key belongs to a value.
    equals.retain(|&eq| is_key(&text[key_start(eq)..eq]));
    let first = equals.first().map_or(text.len(), |&eq| key_start(eq));
    if !text[..first].trim().is_empty() {
        return Err(format!(
            "CEF: extension text '{}' is not a key=value pair",
            text[..first].trim()
        ));
    }
    for (n, &eq) in equals.iter().enumerate() {
        let key = &text[key_start(eq)..eq];
        let end = equals.get(n + 1).map_or(text.len(), |&next| {
            key_start(next).saturating_sub(1).max(eq + 1)
        });
        object.insert_typed(key, &unescape(text[eq + 1..end].trim_end()));
    }
    Ok(())
}

fn is_key(word: &str) -> bool {
    !word.is_empty()
        && word
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-' | b'[' | b']'))
}

fn unescape(value: &str) -> std::borrow::Cow<'_, str> {
    if !value.contains('\\') {
        return std::borrow::Cow::Borrowed(value);
    }
    let mut out = String::with_capacity(value.len());
    let mut chars = value.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('n') => out.push('\n'),
            Some('r') => out.push('\r'),
            Some(other) => out.push(other),
            None => out.push('\\'),
        }
    }
    std::borrow::Cow::Owned(out)
}
