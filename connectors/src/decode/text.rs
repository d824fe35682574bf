//! Rendering values as compact JSON text, the way `serde_json` would
//! (`1.0`, `1e+300`, `"a\"b"`), without going through `serde_json::Value`.

use std::fmt::Write;

use super::columns::Leaf;

/// Appends `s` as a JSON string literal.
pub(crate) fn write_json_str(out: &mut String, s: &str) {
    out.push('"');
    let mut start = 0;
    for (i, &b) in s.as_bytes().iter().enumerate() {
        let escape = match b {
            b'"' => "\\\"",
            b'\\' => "\\\\",
            b'\n' => "\\n",
            b'\r' => "\\r",
            b'\t' => "\\t",
            0x08 => "\\b",
            0x0c => "\\f",
            0x00..=0x1f => "",
            _ => continue,
        };
        // `b` is ASCII, so `i` is a character boundary.
        out.push_str(&s[start..i]);
        if escape.is_empty() {
            const HEX: &[u8; 16] = b"0123456789abcdef";
            out.push_str("\\u00");
            out.push(HEX[usize::from(b >> 4)] as char);
            out.push(HEX[usize::from(b & 0xf)] as char);
        } else {
            out.push_str(escape);
        }
        start = i + 1;
    }
    out.push_str(&s[start..]);
    out.push('"');
}

/// Appends a float as JSON text, exactly as `serde_json` writes it.
pub(crate) fn write_float(out: &mut String, v: f64) {
    match serde_json::Number::from_f64(v) {
        // Writing to a `String` cannot fail.
        Some(n) => {
            let _ = write!(out, "{n}");
        }
        // Not produced by parsing JSON; JSON has no spelling for it.
        None => out.push_str("null"),
    }
}

/// Appends an integer.
pub(crate) fn write_int(out: &mut String, v: impl itoa::Integer) {
    out.push_str(itoa::Buffer::new().format(v));
}

/// Appends a scalar leaf as JSON, its text taken from `arena`, or from
/// `record` (its row's record) for a [`Leaf::Raw`].
pub(super) fn write_json_scalar(out: &mut String, leaf: Leaf, arena: &str, record: &str) {
    match leaf {
        Leaf::Null => out.push_str("null"),
        Leaf::Bool(v) => out.push_str(if v { "true" } else { "false" }),
        Leaf::Int(v) => write_int(out, v),
        Leaf::Float(v) => write_float(out, v),
        Leaf::Str(s) => write_json_str(out, &arena[s.range()]),
        Leaf::Raw(s) => write_json_str(out, &record[s.range()]),
        Leaf::BigInt(s) | Leaf::Json(s) => out.push_str(&arena[s.range()]),
        // Items are scalars; a list here would be a bug, rendered empty.
        Leaf::List(_) => out.push_str("[]"),
    }
}

/// Appends the items of a scalar array as a JSON array.
pub(super) fn write_json_list(out: &mut String, items: &[Leaf], arena: &str, record: &str) {
    out.push('[');
    for (i, &item) in items.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        write_json_scalar(out, item, arena, record);
    }
    out.push(']');
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strings_are_escaped_like_serde_json() {
        for s in [
            "plain",
            "",
            "q\"b\\s",
            "\n\r\t\u{8}\u{c}",
            "\u{0}\u{1f}\u{7f}",
            "é→😀",
        ] {
            let mut out = String::new();
            write_json_str(&mut out, s);
            assert_eq!(out, serde_json::to_string(s).unwrap(), "{s:?}");
        }
    }

    #[test]
    fn numbers_are_written_like_serde_json() {
        for v in [0.0, 1.0, -1.5, 0.1, 1e300, 1e-7, 123456789.125] {
            let mut out = String::new();
            write_float(&mut out, v);
            assert_eq!(out, serde_json::to_string(&v).unwrap());
        }
        let mut out = String::new();
        write_float(&mut out, f64::NAN);
        write_int(&mut out, -42i64);
        write_int(&mut out, u64::MAX);
        assert_eq!(out, "null-4218446744073709551615");
    }
}
