//! JSON objects → Arrow `RecordBatch`es, with the schema inferred per batch.
//!
//! Each record is walked once by a serde visitor that writes its leaves
//! straight into per-column buffers (no `serde_json::Value` tree): nested
//! objects become dotted column names, and at [`BatchDecoder::finish`] each
//! column gets the narrowest type that holds all its values:
//!
//! | values in the column            | Arrow type      |
//! |---------------------------------|-----------------|
//! | integers (i64)                  | Int64           |
//! | integers and floats             | Float64         |
//! | booleans                        | Boolean         |
//! | arrays of scalars only          | List<Utf8>      |
//! | anything else, or mixed         | Utf8 (JSON text of non-strings) |
//!
//! JSON `null` and missing keys are Arrow nulls. The record's text is kept
//! in the first column, [`RAW_COLUMN`].

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;
use std::time::Instant;

use arrow_array::builder::{
    BooleanBuilder, Float64Builder, Int64Builder, ListBuilder, StringBuilder,
};
use arrow_array::{Array, ArrayRef, RecordBatch};
use arrow_schema::{DataType, Field, Schema};
use serde::de::{DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};
use serde::Deserialize;

use crate::dead_letter::{excerpt, DeadLetter};
use crate::framing::Record;

/// Name of the column holding each record's original text.
pub const RAW_COLUMN: &str = "_raw";

/// Name of the `List<Utf8>` column listing, per row, the columns whose
/// key was present with a JSON `null` (Arrow cannot tell that from an
/// absent key). Only present in batches that have such keys.
pub const NULLS_COLUMN: &str = "_nulls";

/// Decoding settings.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DecoderConfig {
    /// Records per Arrow batch. Larger batches amortise per-batch work;
    /// smaller ones lower latency.
    pub batch_size: usize,
    /// Longest record accepted, in bytes; longer ones become dead letters.
    pub max_record_bytes: usize,
    /// For live inputs (stdin): hand a batch on once its first event has
    /// waited this many milliseconds, even if it is not full and input keeps
    /// coming, so that a busy stream does not hold events back for a whole
    /// batch. (An idle stream hands its batch on at once.)
    pub max_batch_delay_ms: u64,
}

impl Default for DecoderConfig {
    fn default() -> Self {
        DecoderConfig {
            batch_size: 1024,
            max_record_bytes: 4 * 1024 * 1024,
            max_batch_delay_ms: 5,
        }
    }
}

/// An invalid decoder setting.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct InvalidDecoderConfig(pub String);

impl DecoderConfig {
    /// Checks the settings.
    pub fn validate(&self) -> Result<(), InvalidDecoderConfig> {
        if self.batch_size == 0 {
            return Err(InvalidDecoderConfig("batch_size must be at least 1".into()));
        }
        if self.max_record_bytes < 2 {
            return Err(InvalidDecoderConfig(
                "max_record_bytes must be at least 2".into(),
            ));
        }
        Ok(())
    }
}

/// Where an event of a batch came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventOrigin {
    /// Source name.
    pub source: Arc<str>,
    /// 1-based line where the record starts.
    pub line: u64,
    /// Byte offset where the record starts.
    pub offset: u64,
}

/// A decoded batch and the origin of each row.
#[derive(Debug, Clone)]
pub struct EventBatch {
    /// The events, one row each.
    pub batch: RecordBatch,
    /// One per row.
    pub origins: Vec<EventOrigin>,
    /// When the batch's first record was handed to the decoder: the
    /// ingest time that alert latency is measured from.
    pub received: Instant,
}

#[derive(Debug, Clone, Copy)]
enum Leaf {
    Null,
    Bool(bool),
    Int(i64),
    Float(f64),
    /// Text in the arena; `string` says if it was a JSON string (else a
    /// number too large for i64, kept as its digits).
    Text {
        start: u32,
        len: u32,
        string: bool,
    },
    /// Scalars in `list_items[start..start+len]`.
    List {
        start: u32,
        len: u32,
    },
    /// JSON text of a nested array, in the arena.
    Json {
        start: u32,
        len: u32,
    },
}

#[derive(Debug, Default)]
struct ColumnBuf {
    /// (row, value), rows ascending and unique.
    values: Vec<(u32, Leaf)>,
}

/// Accumulates records into a batch.
#[derive(Debug, Default)]
pub struct BatchDecoder {
    index: HashMap<String, usize>,
    names: Vec<String>,
    columns: Vec<ColumnBuf>,
    arena: Vec<u8>,
    list_items: Vec<Leaf>,
    raw: Vec<u8>,
    raw_offsets: Vec<usize>,
    origins: Vec<EventOrigin>,
    path: String,
    touched: Vec<usize>,
    received: Option<Instant>,
}

impl BatchDecoder {
    /// An empty decoder.
    pub fn new() -> Self {
        BatchDecoder {
            raw_offsets: vec![0],
            ..BatchDecoder::default()
        }
    }

    /// When the current batch's first record arrived (None if empty).
    pub fn received(&self) -> Option<Instant> {
        self.received.filter(|_| !self.origins.is_empty())
    }

    /// Records in the current batch.
    pub fn len(&self) -> usize {
        self.origins.len()
    }

    /// True if no record is buffered.
    pub fn is_empty(&self) -> bool {
        self.origins.is_empty()
    }

    /// Decodes one record into the batch; a record that is not a valid JSON
    /// object comes back as a dead letter and leaves the batch unchanged.
    pub fn push(&mut self, record: Record, source: &Arc<str>) -> Option<DeadLetter> {
        let dead = |reason: String| DeadLetter {
            source: source.to_string(),
            line: record.origin.line,
            offset: record.origin.offset,
            reason,
            excerpt: excerpt(&record.bytes),
        };
        let text = match std::str::from_utf8(&record.bytes) {
            Ok(t) => t,
            Err(e) => {
                let (line, column) = line_column(&record.bytes, e.valid_up_to());
                return Some(dead(format!(
                    "invalid UTF-8 at byte {} (line {line}, column {column} of the record)",
                    e.valid_up_to()
                )));
            }
        };
        if self.received.is_none() {
            self.received = Some(Instant::now());
        }
        let row = self.origins.len() as u32;
        let arena_mark = self.arena.len();
        let items_mark = self.list_items.len();
        self.touched.clear();
        self.path.clear();
        let mut de = serde_json::Deserializer::from_str(text);
        let result = de
            .deserialize_map(ObjectVisitor { dec: self, row })
            .and_then(|_| de.end());
        if let Err(e) = result {
            for &c in &self.touched {
                let values = &mut self.columns[c].values;
                while values.last().is_some_and(|(r, _)| *r == row) {
                    values.pop();
                }
            }
            self.arena.truncate(arena_mark);
            self.list_items.truncate(items_mark);
            let reason = match e.classify() {
                serde_json::error::Category::Data => format!("not a JSON object: {e}"),
                _ => format!("invalid JSON: {e}"),
            };
            return Some(dead(reason));
        }
        self.raw.extend_from_slice(text.as_bytes());
        self.raw_offsets.push(self.raw.len());
        self.origins.push(EventOrigin {
            source: source.clone(),
            line: record.origin.line,
            offset: record.origin.offset,
        });
        None
    }

    fn column(&mut self) -> usize {
        if let Some(&c) = self.index.get(self.path.as_str()) {
            return c;
        }
        let c = self.columns.len();
        self.index.insert(self.path.clone(), c);
        self.names.push(self.path.clone());
        self.columns.push(ColumnBuf::default());
        c
    }

    fn put(&mut self, row: u32, leaf: Leaf) {
        let c = self.column();
        let values = &mut self.columns[c].values;
        match values.last_mut() {
            // Duplicate key in one object: the last one wins.
            Some((r, v)) if *r == row => *v = leaf,
            _ => {
                values.push((row, leaf));
                self.touched.push(c);
            }
        }
    }

    fn text(&mut self, s: &str) -> (u32, u32) {
        let start = self.arena.len() as u32;
        self.arena.extend_from_slice(s.as_bytes());
        (start, s.len() as u32)
    }

    /// Builds the batch from the buffered records and resets the decoder;
    /// `None` if it is empty.
    pub fn finish(&mut self) -> Option<EventBatch> {
        if self.origins.is_empty() {
            return None;
        }
        let rows = self.origins.len();
        let mut fields = Vec::with_capacity(self.columns.len() + 1);
        let mut arrays: Vec<ArrayRef> = Vec::with_capacity(self.columns.len() + 1);

        let mut raw = StringBuilder::with_capacity(rows, self.raw.len());
        for w in self.raw_offsets.windows(2) {
            raw.append_value(std::str::from_utf8(&self.raw[w[0]..w[1]]).unwrap_or_default());
        }
        fields.push(Field::new(RAW_COLUMN, DataType::Utf8, false));
        arrays.push(Arc::new(raw.finish()));

        let mut explicit_nulls: Vec<Vec<&str>> = Vec::new();
        for (name, column) in self.names.iter().zip(&self.columns) {
            if column.values.is_empty() {
                continue; // only seen in a record that failed
            }
            for (row, v) in &column.values {
                if matches!(v, Leaf::Null) {
                    if explicit_nulls.is_empty() {
                        explicit_nulls = vec![Vec::new(); rows];
                    }
                    explicit_nulls[*row as usize].push(name);
                }
            }
            let (data_type, array) = self.build(column, rows);
            fields.push(Field::new(name.clone(), data_type, true));
            arrays.push(array);
        }
        if !explicit_nulls.is_empty() {
            let mut b = ListBuilder::new(StringBuilder::new());
            for names in &explicit_nulls {
                for n in names {
                    b.values().append_value(n);
                }
                b.append(!names.is_empty());
            }
            let array = b.finish();
            fields.push(Field::new(NULLS_COLUMN, array.data_type().clone(), true));
            arrays.push(Arc::new(array));
        }
        let schema = Arc::new(Schema::new(fields));
        let batch = RecordBatch::try_new(schema, arrays).ok()?;
        let origins = std::mem::take(&mut self.origins);
        let received = self.received.take().unwrap_or_else(Instant::now);
        self.reset();
        Some(EventBatch {
            batch,
            origins,
            received,
        })
    }

    fn reset(&mut self) {
        self.index.clear();
        self.names.clear();
        self.columns.clear();
        self.arena.clear();
        self.list_items.clear();
        self.raw.clear();
        self.raw_offsets.clear();
        self.raw_offsets.push(0);
    }

    fn build(&self, column: &ColumnBuf, rows: usize) -> (DataType, ArrayRef) {
        #[derive(Default)]
        struct Kinds {
            int: bool,
            float: bool,
            boolean: bool,
            text: bool,
            list: bool,
        }
        let mut k = Kinds::default();
        for (_, v) in &column.values {
            match v {
                Leaf::Null => {}
                Leaf::Bool(_) => k.boolean = true,
                Leaf::Int(_) => k.int = true,
                Leaf::Float(_) => k.float = true,
                Leaf::Text { .. } | Leaf::Json { .. } => k.text = true,
                Leaf::List { .. } => k.list = true,
            }
        }
        let scalar = k.int || k.float || k.boolean || k.text;
        let mut cursor = column.values.iter().peekable();
        let mut next_for = |row: usize| -> Option<Leaf> {
            match cursor.peek() {
                Some((r, v)) if *r as usize == row => {
                    let v = *v;
                    cursor.next();
                    (!matches!(v, Leaf::Null)).then_some(v)
                }
                _ => None,
            }
        };
        if k.list && !scalar {
            let mut b = ListBuilder::new(StringBuilder::new());
            for row in 0..rows {
                match next_for(row) {
                    Some(Leaf::List { start, len }) => {
                        for item in &self.list_items[start as usize..(start + len) as usize] {
                            match item {
                                Leaf::Null => b.values().append_null(),
                                other => b.values().append_value(self.render(other, false)),
                            }
                        }
                        b.append(true);
                    }
                    _ => b.append(false),
                }
            }
            let array = b.finish();
            return (array.data_type().clone(), Arc::new(array));
        }
        if k.boolean && !(k.int || k.float || k.text || k.list) {
            let mut b = BooleanBuilder::with_capacity(rows);
            for row in 0..rows {
                match next_for(row) {
                    Some(Leaf::Bool(v)) => b.append_value(v),
                    _ => b.append_null(),
                }
            }
            return (DataType::Boolean, Arc::new(b.finish()));
        }
        if k.int && !(k.float || k.boolean || k.text || k.list) {
            let mut b = Int64Builder::with_capacity(rows);
            for row in 0..rows {
                match next_for(row) {
                    Some(Leaf::Int(v)) => b.append_value(v),
                    _ => b.append_null(),
                }
            }
            return (DataType::Int64, Arc::new(b.finish()));
        }
        if (k.int || k.float) && !(k.boolean || k.text || k.list) {
            let mut b = Float64Builder::with_capacity(rows);
            for row in 0..rows {
                match next_for(row) {
                    Some(Leaf::Int(v)) => b.append_value(v as f64),
                    Some(Leaf::Float(v)) => b.append_value(v),
                    _ => b.append_null(),
                }
            }
            return (DataType::Float64, Arc::new(b.finish()));
        }
        let mut b = StringBuilder::with_capacity(rows, 16 * rows);
        for row in 0..rows {
            match next_for(row) {
                Some(v) => b.append_value(self.render(&v, false)),
                None => b.append_null(),
            }
        }
        (DataType::Utf8, Arc::new(b.finish()))
    }

    /// A leaf as text: strings verbatim (or JSON-quoted inside arrays),
    /// other values as their JSON text.
    fn render(&self, leaf: &Leaf, quote_strings: bool) -> String {
        let slice = |start: u32, len: u32| {
            std::str::from_utf8(&self.arena[start as usize..(start + len) as usize])
                .unwrap_or_default()
        };
        match *leaf {
            Leaf::Null => "null".into(),
            Leaf::Bool(b) => b.to_string(),
            Leaf::Int(i) => i.to_string(),
            Leaf::Float(f) => serde_json::Number::from_f64(f)
                .map(|n| n.to_string())
                .unwrap_or_else(|| f.to_string()),
            Leaf::Text { start, len, string } => {
                let s = slice(start, len);
                if quote_strings && string {
                    serde_json::to_string(s).unwrap_or_default()
                } else {
                    s.to_string()
                }
            }
            Leaf::Json { start, len } => slice(start, len).to_string(),
            Leaf::List { start, len } => {
                let items: Vec<String> = self.list_items[start as usize..(start + len) as usize]
                    .iter()
                    .map(|i| self.render(i, true))
                    .collect();
                format!("[{}]", items.join(","))
            }
        }
    }
}

fn line_column(bytes: &[u8], at: usize) -> (usize, usize) {
    let before = &bytes[..at.min(bytes.len())];
    let line = before.iter().filter(|b| **b == b'\n').count() + 1;
    let column = at
        - before
            .iter()
            .rposition(|b| *b == b'\n')
            .map(|p| p + 1)
            .unwrap_or(0)
        + 1;
    (line, column)
}

struct ObjectVisitor<'a> {
    dec: &'a mut BatchDecoder,
    row: u32,
}

impl<'de> Visitor<'de> for ObjectVisitor<'_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let base = self.dec.path.len();
        while map
            .next_key_seed(KeySeed {
                path: &mut self.dec.path,
            })?
            .is_some()
        {
            map.next_value_seed(ValueSeed {
                dec: &mut *self.dec,
                row: self.row,
            })?;
            self.dec.path.truncate(base);
        }
        Ok(())
    }
}

/// Appends `.key` (or `key` at the root) to the path buffer.
struct KeySeed<'a> {
    path: &'a mut String,
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
        if !self.path.is_empty() {
            self.path.push('.');
        }
        self.path.push_str(key);
        Ok(())
    }
}

struct ValueSeed<'a> {
    dec: &'a mut BatchDecoder,
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
    fn visit_bool<E>(self, v: bool) -> Result<(), E> {
        self.dec.put(self.row, Leaf::Bool(v));
        Ok(())
    }
    fn visit_i64<E>(self, v: i64) -> Result<(), E> {
        self.dec.put(self.row, Leaf::Int(v));
        Ok(())
    }
    fn visit_u64<E>(self, v: u64) -> Result<(), E> {
        let leaf = match i64::try_from(v) {
            Ok(i) => Leaf::Int(i),
            Err(_) => {
                let (start, len) = self.dec.text(&v.to_string());
                Leaf::Text {
                    start,
                    len,
                    string: false,
                }
            }
        };
        self.dec.put(self.row, leaf);
        Ok(())
    }
    fn visit_f64<E>(self, v: f64) -> Result<(), E> {
        self.dec.put(self.row, Leaf::Float(v));
        Ok(())
    }
    fn visit_str<E>(self, v: &str) -> Result<(), E> {
        let (start, len) = self.dec.text(v);
        self.dec.put(
            self.row,
            Leaf::Text {
                start,
                len,
                string: true,
            },
        );
        Ok(())
    }
    fn visit_unit<E>(self) -> Result<(), E> {
        self.dec.put(self.row, Leaf::Null);
        Ok(())
    }
    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<(), A::Error> {
        ObjectVisitor {
            dec: self.dec,
            row: self.row,
        }
        .visit_map(map)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        let mut items: Vec<serde_json::Value> = Vec::new();
        while let Some(v) = seq.next_element::<serde_json::Value>()? {
            items.push(v);
        }
        let scalars = items.iter().all(|v| !v.is_array() && !v.is_object());
        let leaf = if scalars {
            let start = self.dec.list_items.len() as u32;
            for v in &items {
                let item = match v {
                    serde_json::Value::Null => Leaf::Null,
                    serde_json::Value::Bool(b) => Leaf::Bool(*b),
                    serde_json::Value::Number(n) => match n.as_i64() {
                        Some(i) => Leaf::Int(i),
                        None => {
                            let (s, l) = self.dec.text(&n.to_string());
                            Leaf::Text {
                                start: s,
                                len: l,
                                string: false,
                            }
                        }
                    },
                    serde_json::Value::String(s) => {
                        let (s, l) = self.dec.text(s);
                        Leaf::Text {
                            start: s,
                            len: l,
                            string: true,
                        }
                    }
                    _ => Leaf::Null,
                };
                self.dec.list_items.push(item);
            }
            Leaf::List {
                start,
                len: items.len() as u32,
            }
        } else {
            let text = serde_json::to_string(&items).unwrap_or_default();
            let (start, len) = self.dec.text(&text);
            Leaf::Json { start, len }
        };
        self.dec.put(self.row, leaf);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::framing::Origin;
    use arrow_array::cast::AsArray;
    use arrow_array::types::{Float64Type, Int64Type};
    use arrow_array::Array;

    fn decode(records: &[&str]) -> (Option<EventBatch>, Vec<DeadLetter>) {
        let mut d = BatchDecoder::new();
        let source: Arc<str> = Arc::from("t");
        let mut dead = Vec::new();
        for (i, r) in records.iter().enumerate() {
            let rec = Record {
                bytes: r.as_bytes().to_vec(),
                origin: Origin {
                    line: i as u64 + 1,
                    offset: 0,
                },
            };
            dead.extend(d.push(rec, &source));
        }
        (d.finish(), dead)
    }

    #[test]
    fn flattens_and_infers_types() {
        let (batch, dead) = decode(&[
            r#"{"Event": {"System": {"EventID": 4688, "Flag": true}}, "n": 1, "s": "x", "mixed": 1, "list": ["a", 2, null]}"#,
            r#"{"Event": {"System": {"EventID": 1}}, "n": 2.5, "mixed": "y", "deep": [{"a": 1}]}"#,
        ]);
        assert!(dead.is_empty());
        let b = batch.unwrap().batch;
        let schema = b.schema();
        let ty = |n: &str| schema.field_with_name(n).unwrap().data_type().clone();
        assert_eq!(schema.field(0).name(), RAW_COLUMN);
        assert_eq!(ty("Event.System.EventID"), DataType::Int64);
        assert_eq!(ty("Event.System.Flag"), DataType::Boolean);
        assert_eq!(ty("n"), DataType::Float64);
        assert_eq!(ty("mixed"), DataType::Utf8);
        assert!(matches!(ty("list"), DataType::List(_)));
        assert_eq!(ty("deep"), DataType::Utf8);
        let col = |n: &str| b.column(schema.index_of(n).unwrap()).clone();
        assert_eq!(
            col("Event.System.EventID")
                .as_primitive::<Int64Type>()
                .value(1),
            1
        );
        assert_eq!(col("n").as_primitive::<Float64Type>().value(0), 1.0);
        assert_eq!(col("mixed").as_string::<i32>().value(0), "1");
        assert!(col("s").is_null(1));
        assert_eq!(col("deep").as_string::<i32>().value(1), r#"[{"a":1}]"#);
        let list = col("list");
        let first = list.as_list::<i32>().value(0);
        let items = first.as_string::<i32>();
        assert_eq!(
            (items.value(0), items.value(1), items.is_null(2)),
            ("a", "2", true)
        );
    }

    #[test]
    fn a_failed_record_leaves_no_trace() {
        let (batch, dead) = decode(&[
            r#"{"a": 1, "b": "x"}"#,
            r#"{"a": 2, "b": "y", "c": oops}"#,
            r#"[1, 2]"#,
            r#"{"a": 3}"#,
        ]);
        assert_eq!(dead.len(), 2);
        assert!(
            dead[0].reason.starts_with("invalid JSON"),
            "{}",
            dead[0].reason
        );
        assert_eq!(dead[0].line, 2);
        assert!(
            dead[1].reason.contains("not a JSON object"),
            "{}",
            dead[1].reason
        );
        let b = batch.unwrap().batch;
        assert_eq!(b.num_rows(), 2);
        let a = b
            .column(b.schema().index_of("a").unwrap())
            .as_primitive::<Int64Type>()
            .clone();
        assert_eq!((a.value(0), a.value(1)), (1, 3));
        assert!(b.schema().index_of("c").is_err());
    }

    #[test]
    fn invalid_utf8_is_a_dead_letter() {
        let mut d = BatchDecoder::new();
        let rec = Record {
            bytes: b"{\"a\": \"\xc3\x28\"}".to_vec(),
            origin: Origin {
                line: 7,
                offset: 70,
            },
        };
        let dead = d.push(rec, &Arc::from("t")).unwrap();
        assert!(
            dead.reason.contains("invalid UTF-8 at byte 7"),
            "{}",
            dead.reason
        );
        assert_eq!(dead.line, 7);
        assert!(d.finish().is_none());
    }

    #[test]
    fn explicit_nulls_are_listed() {
        let (batch, _) = decode(&[r#"{"a": null, "b": 1}"#, r#"{"b": null}"#, r#"{"b": 2}"#]);
        let b = batch.unwrap().batch;
        let nulls = b
            .column(b.schema().index_of(NULLS_COLUMN).unwrap())
            .as_list::<i32>()
            .clone();
        let row = |r: usize| -> Vec<String> {
            let v = nulls.value(r);
            v.as_string::<i32>()
                .iter()
                .map(|s| s.unwrap().to_string())
                .collect()
        };
        assert_eq!(row(0), vec!["a"]);
        assert_eq!(row(1), vec!["b"]);
        assert!(nulls.is_null(2));
        let (batch, _) = decode(&[r#"{"a": 1}"#]);
        assert!(batch
            .unwrap()
            .batch
            .schema()
            .index_of(NULLS_COLUMN)
            .is_err());
    }

    #[test]
    fn duplicate_keys_last_wins() {
        let (batch, _) = decode(&[r#"{"a": 1, "a": 2}"#]);
        let b = batch.unwrap().batch;
        assert_eq!(b.column(1).as_primitive::<Int64Type>().value(0), 2);
    }
}
