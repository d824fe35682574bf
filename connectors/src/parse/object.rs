//! The JSON object a text parser builds: fields in, one JSON text out.

use serde_json::{Map, Value};

/// Key holding the record's text as received.
pub(crate) const ORIGINAL: &str = "event.original";

/// Parsed fields of one record.
#[derive(Debug, Default)]
pub(crate) struct Object {
    map: Map<String, Value>,
}

impl Object {
    /// Sets `key` (a later value for the same key wins).
    pub(crate) fn insert(&mut self, key: &str, value: impl Into<Value>) {
        self.map.insert(key.to_string(), value.into());
    }

    /// Sets `key` to an integer if `text` is one written plainly (no sign
    /// but `-`, no leading zeros), to the text otherwise.
    pub(crate) fn insert_typed(&mut self, key: &str, text: &str) {
        self.map.insert(key.to_string(), typed(text));
    }

    /// Sets `key` to a nested object.
    pub(crate) fn insert_object(&mut self, key: &str, object: Object) {
        self.map.insert(key.to_string(), Value::Object(object.map));
    }

    /// The JSON text, with `original` under [`ORIGINAL`].
    pub(crate) fn finish(mut self, original: &str) -> String {
        self.map.insert(ORIGINAL.into(), Value::from(original));
        Value::Object(self.map).to_string()
    }
}

/// An integer for plainly written integers, a string otherwise.
pub(crate) fn typed(text: &str) -> Value {
    let digits = text.strip_prefix('-').unwrap_or(text);
    let plain = !digits.is_empty()
        && digits.bytes().all(|b| b.is_ascii_digit())
        && (digits == "0" || !digits.starts_with('0'));
    match text.parse::<i64>() {
        Ok(n) if plain => Value::from(n),
        _ => Value::from(text),
    }
}
