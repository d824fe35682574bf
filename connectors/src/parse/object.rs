//! The JSON object a text parser writes: fields go straight into the JSON
//! text the decoder reads, without a map or a value tree per event.

use crate::decode::text::{write_float, write_int, write_json_str};

/// Key holding the record's text as received.
pub(crate) const ORIGINAL: &str = "event.original";

/// A JSON object being written. Of keys given twice, the decoder keeps the
/// last.
#[derive(Debug)]
pub(crate) struct Object {
    text: String,
}

impl Default for Object {
    fn default() -> Self {
        Object {
            text: String::from("{"),
        }
    }
}

impl Object {
    fn key(&mut self, key: &str) {
        if self.text.len() > 1 {
            self.text.push(',');
        }
        write_json_str(&mut self.text, key);
        self.text.push(':');
    }

    /// Sets `key` to a string.
    pub(crate) fn insert_str(&mut self, key: &str, value: &str) {
        self.key(key);
        write_json_str(&mut self.text, value);
    }

    /// Sets `key` to an integer.
    pub(crate) fn insert_int(&mut self, key: &str, value: i64) {
        self.key(key);
        write_int(&mut self.text, value);
    }

    /// Sets `key` to a number (`null` if not finite).
    pub(crate) fn insert_float(&mut self, key: &str, value: f64) {
        self.key(key);
        if value.is_finite() {
            write_float(&mut self.text, value);
        } else {
            self.text.push_str("null");
        }
    }

    /// Sets `key` to a boolean.
    pub(crate) fn insert_bool(&mut self, key: &str, value: bool) {
        self.key(key);
        self.text.push_str(if value { "true" } else { "false" });
    }

    /// Sets `key` to a list of strings.
    pub(crate) fn insert_list<'a>(&mut self, key: &str, items: impl Iterator<Item = &'a str>) {
        self.key(key);
        self.text.push('[');
        for (i, item) in items.enumerate() {
            if i > 0 {
                self.text.push(',');
            }
            write_json_str(&mut self.text, item);
        }
        self.text.push(']');
    }

    /// Sets `key` to an integer if `text` is one written plainly (no sign
    /// but `-`, no leading zeros), to the text otherwise.
    pub(crate) fn insert_typed(&mut self, key: &str, text: &str) {
        match plain_integer(text) {
            Some(n) => self.insert_int(key, n),
            None => self.insert_str(key, text),
        }
    }

    /// Sets `key` to a nested object.
    pub(crate) fn insert_object(&mut self, key: &str, object: Object) {
        self.key(key);
        self.text.push_str(&object.text);
        self.text.push('}');
    }

    /// The JSON text, with `original` under [`ORIGINAL`].
    pub(crate) fn finish(mut self, original: &str) -> String {
        self.insert_str(ORIGINAL, original);
        self.text.push('}');
        self.text
    }
}

/// The value of a plainly written integer.
pub(crate) fn plain_integer(text: &str) -> Option<i64> {
    let digits = text.strip_prefix('-').unwrap_or(text);
    let plain = !digits.is_empty()
        && digits.bytes().all(|b| b.is_ascii_digit())
        && (digits == "0" || !digits.starts_with('0'));
    if plain {
        text.parse().ok()
    } else {
        None
    }
}
