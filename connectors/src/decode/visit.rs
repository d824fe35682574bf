//! The serde visitors that walk one record and write its leaves straight
//! into the column buffers, without building a `serde_json::Value` tree.
//!
//! - [`ObjectVisitor`] walks an object, extending the dotted path with each
//!   key; nested objects recurse, so `{"a":{"b":1}}` puts `1` in `a.b`.
//! - [`ValueSeed`] stores a scalar leaf, or an array: items go to the list
//!   storage while they are scalars; at the first nested item the array
//!   switches to compact JSON text, written by [`Compact`].

use std::fmt;

use serde::de::{DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};

use super::columns::{Columns, Leaf, Span};
use super::text::{write_float, write_int, write_json_scalar, write_json_str};

/// Decodes the object `text` into row `row` of `columns`. On error the
/// caller rolls the row back.
pub(super) fn decode_object(
    text: &str,
    columns: &mut Columns,
    row: u32,
) -> Result<(), serde_json::Error> {
    let mut de = serde_json::Deserializer::from_str(text);
    (&mut de).deserialize_map(ObjectVisitor {
        columns,
        row,
        root: true,
    })?;
    de.end()
}

struct ObjectVisitor<'a> {
    columns: &'a mut Columns,
    row: u32,
    /// Keys are not prefixed with a dot at the root.
    root: bool,
}

impl<'de> Visitor<'de> for ObjectVisitor<'_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let base = self.columns.path.len();
        while map
            .next_key_seed(KeySeed {
                columns: &mut *self.columns,
                root: self.root,
            })?
            .is_some()
        {
            map.next_value_seed(ValueSeed {
                columns: &mut *self.columns,
                row: self.row,
            })?;
            self.columns.path.truncate(base);
        }
        Ok(())
    }
}

/// Appends `.key` (or `key` at the root) to the path.
struct KeySeed<'a> {
    columns: &'a mut Columns,
    root: bool,
}

impl<'de> DeserializeSeed<'de> for KeySeed<'_> {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_str(self)
    }
}

impl<'de> Visitor<'de> for KeySeed<'_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a key")
    }

    fn visit_str<E: serde::de::Error>(self, key: &str) -> Result<(), E> {
        self.columns.begin_key(self.root);
        self.columns.path.push_str(key);
        Ok(())
    }
}

/// Stores the value at the current path.
struct ValueSeed<'a> {
    columns: &'a mut Columns,
    row: u32,
}

impl<'de> DeserializeSeed<'de> for ValueSeed<'_> {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for ValueSeed<'_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_bool<E: serde::de::Error>(self, v: bool) -> Result<(), E> {
        self.columns.put(self.row, Leaf::Bool(v)).map_err(E::custom)
    }

    fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<(), E> {
        self.columns.put(self.row, Leaf::Int(v)).map_err(E::custom)
    }

    fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<(), E> {
        let leaf = big_int(self.columns, v);
        self.columns.put(self.row, leaf).map_err(E::custom)
    }

    fn visit_f64<E: serde::de::Error>(self, v: f64) -> Result<(), E> {
        self.columns
            .put(self.row, Leaf::Float(v))
            .map_err(E::custom)
    }

    fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<(), E> {
        let span = self.columns.push_text(v);
        self.columns
            .put(self.row, Leaf::Str(span))
            .map_err(E::custom)
    }

    fn visit_unit<E: serde::de::Error>(self) -> Result<(), E> {
        self.columns.put(self.row, Leaf::Null).map_err(E::custom)
    }

    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<(), A::Error> {
        ObjectVisitor {
            columns: self.columns,
            row: self.row,
            root: false,
        }
        .visit_map(map)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        let columns = self.columns;
        let first = columns.items.len();
        let text_mark = columns.text.len();
        loop {
            let item = seq.next_element_seed(ItemSeed {
                columns: &mut *columns,
                first,
            })?;
            match item {
                None => {
                    let span = Span::new(first, columns.items.len() - first);
                    return columns
                        .put(self.row, Leaf::List(span))
                        .map_err(serde::de::Error::custom);
                }
                Some(Item::Scalar) => {}
                Some(Item::Nested) => break,
            }
        }
        // `scratch` holds `[`, the items so far and the nested one.
        let mut out = std::mem::take(&mut columns.scratch);
        write_rest(&mut seq, &mut out)?;
        out.push(']');
        columns.items.truncate(first);
        columns.text.truncate(text_mark);
        let span = columns.push_text(&out);
        columns.scratch = out;
        columns
            .put(self.row, Leaf::Json(span))
            .map_err(serde::de::Error::custom)
    }
}

/// An integer that does not fit `i64` is kept as its digits.
fn big_int(columns: &mut Columns, v: u64) -> Leaf {
    match i64::try_from(v) {
        Ok(i) => Leaf::Int(i),
        Err(_) => Leaf::BigInt(columns.push_text(itoa::Buffer::new().format(v))),
    }
}

/// What an array item was.
enum Item {
    /// Stored in the list items.
    Scalar,
    /// An object or array: the whole array so far is now compact JSON in
    /// `scratch`.
    Nested,
}

/// Stores one array item.
struct ItemSeed<'a> {
    columns: &'a mut Columns,
    /// The array's first item.
    first: usize,
}

impl ItemSeed<'_> {
    fn scalar(self, leaf: Leaf) -> Item {
        self.columns.push_item(leaf);
        Item::Scalar
    }

    /// Starts the array's compact JSON with the items stored so far.
    fn begin_json(&mut self) -> String {
        let mut out = std::mem::take(&mut self.columns.scratch);
        out.clear();
        out.push('[');
        for &item in &self.columns.items[self.first..] {
            // The visitors copy every string into the arena.
            write_json_scalar(&mut out, item, &self.columns.text, "");
            out.push(',');
        }
        out
    }
}

impl<'de> DeserializeSeed<'de> for ItemSeed<'_> {
    type Value = Item;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Item, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for ItemSeed<'_> {
    type Value = Item;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_bool<E: serde::de::Error>(self, v: bool) -> Result<Item, E> {
        Ok(self.scalar(Leaf::Bool(v)))
    }

    fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<Item, E> {
        Ok(self.scalar(Leaf::Int(v)))
    }

    fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<Item, E> {
        let leaf = big_int(self.columns, v);
        Ok(self.scalar(leaf))
    }

    fn visit_f64<E: serde::de::Error>(self, v: f64) -> Result<Item, E> {
        Ok(self.scalar(Leaf::Float(v)))
    }

    fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Item, E> {
        let span = self.columns.push_text(v);
        Ok(self.scalar(Leaf::Str(span)))
    }

    fn visit_unit<E: serde::de::Error>(self) -> Result<Item, E> {
        Ok(self.scalar(Leaf::Null))
    }

    fn visit_map<A: MapAccess<'de>>(mut self, map: A) -> Result<Item, A::Error> {
        let mut out = self.begin_json();
        Compact { out: &mut out }.visit_map(map)?;
        self.columns.scratch = out;
        Ok(Item::Nested)
    }

    fn visit_seq<A: SeqAccess<'de>>(mut self, seq: A) -> Result<Item, A::Error> {
        let mut out = self.begin_json();
        Compact { out: &mut out }.visit_seq(seq)?;
        self.columns.scratch = out;
        Ok(Item::Nested)
    }
}

/// Writes the remaining elements of `seq`, each preceded by a comma.
fn write_rest<'de, A: SeqAccess<'de>>(seq: &mut A, out: &mut String) -> Result<(), A::Error> {
    loop {
        out.push(',');
        if seq.next_element_seed(Compact { out: &mut *out })?.is_none() {
            out.pop();
            return Ok(());
        }
    }
}

/// Writes any value as compact JSON.
struct Compact<'a> {
    out: &'a mut String,
}

impl<'de> DeserializeSeed<'de> for Compact<'_> {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Compact<'_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_bool<E: serde::de::Error>(self, v: bool) -> Result<(), E> {
        self.out.push_str(if v { "true" } else { "false" });
        Ok(())
    }

    fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<(), E> {
        write_int(self.out, v);
        Ok(())
    }

    fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<(), E> {
        write_int(self.out, v);
        Ok(())
    }

    fn visit_f64<E: serde::de::Error>(self, v: f64) -> Result<(), E> {
        write_float(self.out, v);
        Ok(())
    }

    fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<(), E> {
        write_json_str(self.out, v);
        Ok(())
    }

    fn visit_unit<E: serde::de::Error>(self) -> Result<(), E> {
        self.out.push_str("null");
        Ok(())
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let out = self.out;
        out.push('{');
        let mut first = true;
        loop {
            if !first {
                out.push(',');
            }
            // Keys arrive as strings, so this writes them quoted.
            if map.next_key_seed(Compact { out: &mut *out })?.is_none() {
                if !first {
                    out.pop();
                }
                break;
            }
            out.push(':');
            map.next_value_seed(Compact { out: &mut *out })?;
            first = false;
        }
        out.push('}');
        Ok(())
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        let out = self.out;
        out.push('[');
        if seq.next_element_seed(Compact { out: &mut *out })?.is_some() {
            write_rest(&mut seq, out)?;
        }
        out.push(']');
        Ok(())
    }
}
