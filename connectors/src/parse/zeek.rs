//! Zeek TSV logs: the `#separator`, `#set_separator`, `#empty_field`,
//! `#unset_field`, `#path`, `#fields` and `#types` header lines describe
//! the lines after them, of the same stream.
//!
//! Columns are the `#fields` names as written (`ts`, `uid`, `id.orig_h`,
//! `id.resp_p`, ...) plus `_path` (`conn`, `dns`, ...), as in Zeek's JSON
//! logs. Values are typed by `#types`: `count`, `int` and `port` become
//! integers, `double`, `time` and `interval` numbers, `bool` booleans,
//! `set[..]` and `vector[..]` lists; the unset field (`-`) is left out and
//! the empty field (`(empty)`) is an empty string or list. `\xHH` escapes
//! are decoded.

use super::object::Object;

/// What the header lines of one stream said.
#[derive(Debug, Clone)]
pub(super) struct Header {
    separator: String,
    set_separator: String,
    empty: String,
    unset: String,
    path: Option<String>,
    fields: Vec<String>,
    types: Vec<String>,
}

impl Default for Header {
    fn default() -> Self {
        Header {
            separator: "\t".into(),
            set_separator: ",".into(),
            empty: "(empty)".into(),
            unset: "-".into(),
            path: None,
            fields: Vec::new(),
            types: Vec::new(),
        }
    }
}

impl Header {
    /// Whether data lines can be read: `#fields` was given.
    pub(super) fn ready(&self) -> bool {
        !self.fields.is_empty()
    }

    /// Takes in one header line, without its `#`.
    pub(super) fn directive(&mut self, line: &str) -> Result<(), String> {
        if let Some(spec) = line.strip_prefix("separator ") {
            self.separator = unescape(spec.trim());
            if self.separator.is_empty() {
                return Err("Zeek: #separator is empty".into());
            }
            return Ok(());
        }
        let (name, value) = line
            .split_once(self.separator.as_str())
            .unwrap_or((line, ""));
        let list = || {
            value
                .split(self.separator.as_str())
                .map(str::to_string)
                .collect()
        };
        match name {
            "set_separator" => self.set_separator = unescape(value),
            "empty_field" => self.empty = unescape(value),
            "unset_field" => self.unset = unescape(value),
            "path" => self.path = Some(value.to_string()),
            "fields" => self.fields = list(),
            "types" => self.types = list(),
            // `#open`, `#close` and comments carry no event.
            _ => {}
        }
        Ok(())
    }

    /// Parses one data line.
    pub(super) fn parse(&self, line: &str) -> Result<Object, String> {
        let values: Vec<&str> = line.split(self.separator.as_str()).collect();
        if values.len() != self.fields.len() {
            return Err(format!(
                "Zeek: {} values for the {} fields of the #fields header",
                values.len(),
                self.fields.len()
            ));
        }
        let mut object = Object::default();
        if let Some(path) = &self.path {
            object.insert_str("_path", path);
        }
        for (i, (field, raw)) in self.fields.iter().zip(values).enumerate() {
            if raw == self.unset {
                continue;
            }
            let kind = self.types.get(i).map_or("string", String::as_str);
            self.value(&mut object, (field, kind), raw)?;
        }
        Ok(object)
    }

    /// Writes `field` of type `kind` from its text `raw`.
    fn value(
        &self,
        object: &mut Object,
        (field, kind): (&str, &str),
        raw: &str,
    ) -> Result<(), String> {
        let bad = || format!("Zeek: {field} '{raw}' is not a {kind}");
        if kind.starts_with("set[") || kind.starts_with("vector[") {
            if raw == self.empty {
                object.insert_list(field, std::iter::empty());
            } else {
                let items: Vec<String> = raw
                    .split(self.set_separator.as_str())
                    .map(unescape)
                    .collect();
                object.insert_list(field, items.iter().map(String::as_str));
            }
            return Ok(());
        }
        if raw == self.empty {
            object.insert_str(field, "");
            return Ok(());
        }
        match kind {
            "count" | "int" | "port" => object.insert_int(field, raw.parse().map_err(|_| bad())?),
            "double" | "time" | "interval" => {
                let n: f64 = raw.parse().map_err(|_| bad())?;
                if !n.is_finite() {
                    return Err(bad());
                }
                object.insert_float(field, n);
            }
            "bool" => match raw {
                "T" => object.insert_bool(field, true),
                "F" => object.insert_bool(field, false),
                _ => return Err(bad()),
            },
            _ => object.insert_str(field, &unescape(raw)),
        }
        Ok(())
    }
}

/// Decodes `\xHH` escapes.
fn unescape(text: &str) -> String {
    if !text.contains("\\x") {
        return text.to_string();
    }
    let mut out = Vec::with_capacity(text.len());
    let bytes = text.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'\\' && bytes.get(i + 1) == Some(&b'x') {
            if let Some(b) = text
                .get(i + 2..i + 4)
                .and_then(|h| u8::from_str_radix(h, 16).ok())
            {
                out.push(b);
                i += 4;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}
