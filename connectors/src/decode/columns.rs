//! Per-column storage of one batch's leaf values, and their conversion to
//! Arrow arrays with the column type inferred from all of them.
//!
//! Leaves are stored compactly: scalars inline, text as a range of one
//! shared arena, and each column keeps `(row, leaf)` pairs for the rows that
//! have it, so a sparse column costs nothing for the rows that lack it.

use std::collections::HashMap;
use std::sync::Arc;

use arrow_array::builder::{
    BooleanBuilder, Float64Builder, Int64Builder, ListBuilder, StringBuilder,
};
use arrow_array::{Array, ArrayRef, StringArray};
use arrow_schema::{DataType, Field};
use foldhash::fast::RandomState;

use super::projection::Projection;
use super::text::{write_float, write_json_list};
use super::NULLS_COLUMN;

/// Bytes counted for each leaf on top of its text: enough for the longest
/// rendering of a number (24) and the separators around it.
pub(super) const LEAF_BYTES: usize = 32;

/// A range of the text arena, of a record, or of the list items.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Span {
    start: u32,
    len: u32,
}

impl Span {
    /// Offsets are below 2^32: a batch holds less than `i32::MAX` bytes of
    /// text (see `BatchDecoder::push`) and one record at most
    /// `MAX_RECORD_LIMIT`.
    pub(super) fn new(start: usize, len: usize) -> Span {
        Span {
            start: start as u32,
            len: len as u32,
        }
    }

    pub(super) fn len(self) -> usize {
        self.len as usize
    }

    pub(super) fn range(self) -> std::ops::Range<usize> {
        self.start as usize..self.start as usize + self.len as usize
    }
}

/// One value of one column in one row.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(super) enum Leaf {
    /// JSON `null`.
    Null,
    Bool(bool),
    Int(i64),
    Float(f64),
    /// A JSON string, in the arena.
    Str(Span),
    /// A JSON string without escapes, where it lies in its record (the
    /// text the batch's `_raw` column holds for the row): not copied.
    Raw(Span),
    /// An integer beyond `i64`, as its digits in the arena.
    BigInt(Span),
    /// An array of scalars: the list items in the span.
    List(Span),
    /// An array holding arrays or objects, as compact JSON in the arena.
    Json(Span),
}

/// A key that an object holds twice.
#[derive(Debug)]
pub(super) struct DuplicateKey(String);

impl std::fmt::Display for DuplicateKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{DUPLICATE} '{}': consumers disagree on which value counts, so the event is not evaluated",
            self.0
        )
    }
}

/// How a duplicate key's message starts.
pub(super) const DUPLICATE: &str = "duplicate key";

/// One column of the batch being built.
#[derive(Debug)]
struct Column {
    name: Box<str>,
    /// Rows ascending, each at most once.
    values: Vec<(u32, Leaf)>,
    /// Whether any value is (or was, before a rollback) a JSON `null`.
    has_null: bool,
    /// Whether its values are kept: false for a column outside the
    /// projection, whose leaves are checked but dropped.
    decoded: bool,
    /// For a column not decoded, the last row that had it (`u32::MAX`
    /// for none), to refuse a key twice in a record all the same.
    last_row: u32,
    /// The column whose value followed this one's the last time it was
    /// set: a guess at the next one, checked by name.
    next: u32,
    /// Whether the name holds no quote, backslash or control character,
    /// so that a key's text in a record can be compared with it as it is.
    plain_name: bool,
    /// How the key was written that named the column when it was made.
    key: KeyText,
    /// The number of its gate, for a column decoded only in some rows.
    gate: Option<u32>,
    /// Its bit, for a column a gate reads.
    gate_source: Option<u32>,
}

/// The text of the key that named a column (its name after the path and
/// dot it was under), as a record holds it: for a plain key of at most 15
/// bytes, with its closing quote as 16 bytes and a mask of those that
/// count, so that a record's key is compared in one round.
#[derive(Debug, Clone, Copy)]
struct KeyText {
    /// Where in the name the key's text starts.
    at: usize,
    /// The key's bytes and closing quote, zeros after; and the mask.
    lane: Option<(u128, u128)>,
}

impl KeyText {
    /// The key's text in `name` from `at`; its lane only if the name is
    /// plain (`plain_name`).
    fn new(name: &str, at: usize, plain_name: bool) -> KeyText {
        let text = name.as_bytes().get(at..).unwrap_or_default();
        let lane = (plain_name && text.len() < 16).then(|| {
            let mut bytes = [0u8; 16];
            bytes[..text.len()].copy_from_slice(text);
            bytes[text.len()] = b'"';
            let mask = u128::MAX >> (8 * (15 - text.len()));
            (u128::from_le_bytes(bytes), mask)
        });
        KeyText { at, lane }
    }
}

/// Where a record's decoding started, to undo it if it fails.
#[derive(Debug, Clone, Copy)]
pub(super) struct Mark {
    columns: usize,
    text: usize,
    items: usize,
    bytes: usize,
}

/// The columns of one batch and the storage their leaves point into.
#[derive(Debug, Default)]
pub(super) struct Columns {
    /// Column path → index into `columns`; seeded, so crafted keys cannot
    /// degrade it.
    index: HashMap<Box<str>, u32, RandomState>,
    /// In first-seen order.
    columns: Vec<Column>,
    /// Value vectors of finished batches, reused.
    spare: Vec<Vec<(u32, Leaf)>>,
    /// The text arena.
    pub(super) text: String,
    /// Items of scalar arrays.
    pub(super) items: Vec<Leaf>,
    /// The dotted path of the value being decoded.
    pub(super) path: String,
    /// Where in the path the last key's text starts.
    key_at: usize,
    /// Columns that got a value in the current record.
    touched: Vec<u32>,
    /// Those of the previous record, in order.
    previous: Vec<u32>,
    /// The column of the first value of the record before: a guess,
    /// checked by name.
    first: u32,
    /// Reused buffer for compact JSON.
    pub(super) scratch: String,
    /// Reused buffer for the walker's strings with escapes.
    pub(super) unescaped: Vec<u8>,
    /// Upper bound of the text any Arrow array of the batch will hold.
    pub(super) bytes: usize,
    /// The columns filled; `None` for all. Changed only between batches.
    pub(super) projection: Option<std::sync::Arc<Projection>>,
    /// What the record so far says of the gates.
    pub(super) gated: GatedRow,
}

/// What a record says of its projection's gates (see
/// [`super::gates`]), and the values it skipped for them.
#[derive(Debug, Default)]
pub(super) struct GatedRow {
    /// The gates met by the values read so far, a bit each.
    open: u64,
    /// A value in a gate's column could not be told: every gate is met.
    all_open: bool,
    /// Values of gated columns not decoded when read.
    pub(super) skipped: Vec<Skipped>,
    /// Per gate's column (by its bit): the last value read in it and what
    /// it told, if any yet in the batch; events of one log come in runs.
    last: Vec<Option<LastValue>>,
}

/// A value read in a gate's column, and what it told (see
/// [`super::gates::Gates::value`]).
#[derive(Debug, Clone)]
struct LastValue {
    text: Vec<u8>,
    told: Option<Option<u32>>,
}

/// A value of a gated column, skipped when read because no gate of the
/// record was yet met.
#[derive(Debug, Clone, Copy)]
pub(super) struct Skipped {
    /// Its column.
    pub(super) column: usize,
    /// Where the value starts in the record.
    pub(super) at: usize,
    /// How deep it lies.
    pub(super) depth: usize,
    /// Its column's gate.
    gate: u32,
}

impl Columns {
    /// The gate of column `c`, if it is decoded only in some rows and the
    /// record so far does not meet it.
    pub(super) fn gate_shut(&self, c: usize) -> Option<u32> {
        let gate = self.columns[c].gate?;
        (!self.gate_open(gate)).then_some(gate)
    }

    /// Whether the record so far meets gate `gate`.
    fn gate_open(&self, gate: u32) -> bool {
        self.gated.all_open || self.gated.open >> gate & 1 == 1
    }

    /// Notes that the value of column `c`, whose gate `gate` is shut,
    /// starting at `at` in the record and `depth` deep, was skipped; false
    /// if one was skipped for it before (a key twice).
    pub(super) fn skip_gated(&mut self, c: usize, gate: u32, at: usize, depth: usize) -> bool {
        if self.gated.skipped.iter().any(|s| s.column == c) {
            return false;
        }
        self.gated.skipped.push(Skipped {
            column: c,
            at,
            depth,
            gate,
        });
        true
    }

    /// The values skipped in the record whose gate it has met since, in
    /// the order read (the others are dropped), for [`Columns::done_with`]
    /// to take back.
    pub(super) fn skipped_now_open(&mut self) -> Vec<Skipped> {
        let mut skipped = std::mem::take(&mut self.gated.skipped);
        skipped.retain(|s| self.gate_open(s.gate));
        skipped
    }

    /// Takes back the list [`Columns::skipped_now_open`] gave, emptied, to
    /// be filled again without allocating.
    pub(super) fn done_with(&mut self, mut skipped: Vec<Skipped>) {
        skipped.clear();
        self.gated.skipped = skipped;
    }

    /// Notes the value `leaf` of column `c` for the gates reading it; the
    /// record's text is `record`.
    #[inline]
    pub(super) fn note_for_gates(&mut self, c: usize, leaf: Leaf, record: &[u8]) {
        let Some(bit) = self.columns[c].gate_source else {
            return;
        };
        let text = match leaf {
            Leaf::Raw(span) => record.get(span.range()),
            Leaf::Str(span) => self.text.as_bytes().get(span.range()),
            _ => None,
        };
        let Some(gates) = self.projection.as_ref().map(|p| p.gates()) else {
            return;
        };
        let at = bit as usize;
        if self.gated.last.len() <= at {
            self.gated.last.resize(at + 1, None);
        }
        let told = match (text, &mut self.gated.last[at]) {
            (Some(text), Some(last)) if last.text == text => last.told,
            (Some(text), last) => {
                let told = gates.value(text);
                match last {
                    Some(last) => {
                        last.text.clear();
                        last.text.extend_from_slice(text);
                        last.told = told;
                    }
                    None => {
                        *last = Some(LastValue {
                            text: text.to_vec(),
                            told,
                        })
                    }
                }
                told
            }
            (None, _) => None,
        };
        match told {
            Some(Some(id)) => self.gated.open |= gates.opened_by(bit, id),
            Some(None) => {}
            None => self.gated.all_open = true,
        }
    }

    /// Starts a record.
    pub(super) fn mark(&mut self) -> Mark {
        self.gated.open = 0;
        self.gated.all_open = false;
        self.gated.skipped.clear();
        std::mem::swap(&mut self.previous, &mut self.touched);
        self.touched.clear();
        self.path.clear();
        Mark {
            columns: self.columns.len(),
            text: self.text.len(),
            items: self.items.len(),
            bytes: self.bytes,
        }
    }

    /// Removes everything row `row` added since `mark`, so the columns stay
    /// aligned after a record fails half-way.
    pub(super) fn rollback(&mut self, mark: Mark, row: u32) {
        for &c in &self.touched {
            let column = &mut self.columns[c as usize];
            if column.values.last().is_some_and(|(r, _)| *r == row) {
                column.values.pop();
            }
            if column.last_row == row {
                column.last_row = u32::MAX;
            }
        }
        for column in self.columns.drain(mark.columns..) {
            self.index.remove(&column.name);
            self.spare.push(column.values);
        }
        self.text.truncate(mark.text);
        self.items.truncate(mark.items);
        self.bytes = mark.bytes;
        self.touched.clear();
        self.path.clear();
    }

    /// Appends `s` to the arena.
    pub(super) fn push_text(&mut self, s: &str) -> Span {
        let span = Span::new(self.text.len(), s.len());
        self.text.push_str(s);
        span
    }

    /// Appends an item of the array being decoded.
    pub(super) fn push_item(&mut self, leaf: Leaf) {
        // A string item may be rendered JSON-quoted, escapes and all.
        self.bytes += LEAF_BYTES
            + match leaf {
                Leaf::Str(s) | Leaf::Raw(s) | Leaf::BigInt(s) => 6 * s.len(),
                _ => 0,
            };
        self.items.push(leaf);
    }

    /// Sets the value of the column at the current path in row `row`; see
    /// [`Columns::put_at`].
    pub(super) fn put(&mut self, row: u32, leaf: Leaf) -> Result<(), DuplicateKey> {
        let c = self.column_here();
        self.put_at(c, row, leaf)
    }

    /// Starts a member's key on the path: a dot before it unless at the
    /// root, and where its text begins noted for a column it makes. The
    /// key's text is pushed onto [`Columns::path`] next.
    pub(super) fn begin_key(&mut self, root: bool) {
        if !root {
            self.path.push('.');
        }
        self.key_at = self.path.len();
    }

    /// The column at the current path. Records of one source hold their
    /// keys in the same order, and sources mix a few kinds of record (the
    /// events of Sysmon and of the Security log), so before the index is
    /// hashed the path is compared with the two columns guessed for the
    /// value: the one that came after the previous value's column last
    /// time, then the previous record's column at the same place.
    pub(super) fn column_here(&mut self) -> usize {
        let c = self
            .column_predicted(self.guess_after())
            .or_else(|| self.column_predicted(self.guess_in_place()?))
            .or_else(|| self.index.get(self.path.as_str()).map(|&c| c as usize))
            .unwrap_or_else(|| self.new_column());
        self.follows(c);
        c
    }

    /// The column of the key whose text starts `key` (just after its
    /// opening quote) under the current path, if it is one of the two
    /// guessed for the value, read from the record itself: the key's text
    /// is the rest of the column's name, up to a quote. Most keys are so
    /// found without being copied onto the path or hashed. With the
    /// column, the length of the key's text. Only a name that holds no
    /// byte JSON writes escaped is read so: then the text is the key.
    pub(super) fn column_of_key(&mut self, key: &[u8], root: bool) -> Option<(usize, usize)> {
        let found = self
            .key_names(self.guess_after(), key, root)
            .or_else(|| self.key_names(self.guess_in_place()?, key, root))?;
        self.follows(found.0);
        Some(found)
    }

    /// `c` and the length of `key`'s text, if `key` names column `c`
    /// under the current path; see [`Columns::column_of_key`]. A key at
    /// the root that made the column is compared in one round.
    #[inline(always)]
    fn key_names(&self, c: u32, key: &[u8], root: bool) -> Option<(usize, usize)> {
        let column = self.columns.get(c as usize)?;
        if let (true, 0, Some((text, mask)), Some(lane)) = (
            root,
            column.key.at,
            column.key.lane,
            key.first_chunk::<16>(),
        ) {
            let named = u128::from_le_bytes(*lane) & mask == text;
            return named.then_some((c as usize, column.name.len()));
        }
        self.key_names_by_bytes(column, key, root)
            .then(|| (c as usize, column.name.len() - self.key_start(root)))
    }

    /// Where a key's text starts in the path of its value.
    fn key_start(&self, root: bool) -> usize {
        if root {
            0
        } else {
            self.path.len() + 1
        }
    }

    /// Whether `key` names `column` under the current path, by comparing
    /// their bytes.
    fn key_names_by_bytes(&self, column: &Column, key: &[u8], root: bool) -> bool {
        let name = column.name.as_bytes();
        let at = self.key_start(root);
        let under_path = root
            || (name.get(..at - 1) == Some(self.path.as_bytes())
                && name.get(at - 1) == Some(&b'.'));
        let Some(rest) = name.get(at..) else {
            return false;
        };
        column.plain_name
            && under_path
            && key.get(..rest.len()) == Some(rest)
            && key.get(rest.len()) == Some(&b'"')
    }

    /// The column whose value came after the previous value's column last
    /// time (the first value's column, for a record's first value).
    fn guess_after(&self) -> u32 {
        match self.touched.last() {
            Some(&c) => self.columns[c as usize].next,
            None => self.first,
        }
    }

    /// The previous record's column at the place of the value.
    fn guess_in_place(&self) -> Option<u32> {
        self.previous.get(self.touched.len()).copied()
    }

    /// Notes that column `c` came after the previous value's column.
    fn follows(&mut self, c: usize) {
        match self.touched.last() {
            Some(&before) => self.columns[before as usize].next = c as u32,
            None => self.first = c as u32,
        }
    }

    /// `c`, if it is the column at the current path.
    fn column_predicted(&self, c: u32) -> Option<usize> {
        let column = self.columns.get(c as usize)?;
        (*column.name == *self.path).then_some(c as usize)
    }

    /// A new column at the current path.
    fn new_column(&mut self) -> usize {
        let c = self.columns.len();
        let name: Box<str> = self.path.as_str().into();
        self.index.insert(name.clone(), c as u32);
        let values = self.spare.pop().unwrap_or_default();
        let decoded = self.projection.as_ref().is_none_or(|p| p.decodes(&name));
        let gate = self.projection.as_ref().and_then(|p| p.gate_of(&name));
        let gate_source = self
            .projection
            .as_ref()
            .and_then(|p| p.gates().source(&name));
        let plain_name = !name.bytes().any(|b| b == b'"' || b == b'\\' || b < 0x20);
        let key = KeyText::new(&name, self.key_at, plain_name);
        self.columns.push(Column {
            name,
            values,
            has_null: false,
            decoded,
            last_row: u32::MAX,
            next: u32::MAX,
            plain_name,
            key,
            gate,
            gate_source,
        });
        c
    }

    /// Whether the values of column `c` are kept.
    pub(super) fn decoded(&self, c: usize) -> bool {
        self.columns[c].decoded
    }

    /// Sets the value of column `c` (the one the value's key names) in row
    /// `row`, or, for a column not decoded, only notes that the row has
    /// it. A second value for the same column and row (a key twice in an
    /// object, or `a.b` beside `{"a": {"b": ..}}`) is refused: consumers
    /// disagree on which one counts (the first, the last), and an attacker
    /// could hide behind the difference.
    pub(super) fn put_at(&mut self, c: usize, row: u32, leaf: Leaf) -> Result<(), DuplicateKey> {
        if !self.columns[c].decoded {
            let column = &mut self.columns[c];
            if column.last_row == row {
                return Err(DuplicateKey(column.name.to_string()));
            }
            column.last_row = row;
            self.touched.push(c as u32);
            return Ok(());
        }
        self.bytes += LEAF_BYTES
            + match leaf {
                Leaf::Str(s) | Leaf::Raw(s) | Leaf::BigInt(s) | Leaf::Json(s) => s.len(),
                // Listed by name in the nulls column.
                Leaf::Null => self.columns[c].name.len(),
                _ => 0,
            };
        let column = &mut self.columns[c];
        if column.values.last().is_some_and(|(r, _)| *r == row) {
            return Err(DuplicateKey(column.name.to_string()));
        }
        column.has_null |= leaf == Leaf::Null;
        column.values.push((row, leaf));
        self.touched.push(c as u32);
        Ok(())
    }

    /// Empties the columns for the next batch, keeping allocations.
    pub(super) fn clear(&mut self) {
        // The next batch may have another projection.
        self.gated.last.clear();
        self.index.clear();
        for mut column in self.columns.drain(..) {
            column.values.clear();
            self.spare.push(column.values);
        }
        self.text.clear();
        self.items.clear();
        self.touched.clear();
        self.previous.clear();
        self.first = u32::MAX;
        self.path.clear();
        self.bytes = 0;
    }

    /// Builds one array per column that has a value in any of the `rows`
    /// rows, then the [`NULLS_COLUMN`] if any key was `null`; `records`
    /// holds each row's record, where its [`Leaf::Raw`] strings lie.
    pub(super) fn build(
        &mut self,
        rows: usize,
        records: &StringArray,
        fields: &mut Vec<Field>,
        arrays: &mut Vec<ArrayRef>,
    ) {
        let mut scratch = std::mem::take(&mut self.scratch);
        for column in &self.columns {
            if column.values.is_empty() {
                continue;
            }
            let array = self.build_column(&column.values, rows, records, &mut scratch);
            fields.push(Field::new(&*column.name, array.data_type().clone(), true));
            arrays.push(array);
        }
        if let Some(nulls) = self.build_nulls(rows) {
            fields.push(Field::new(NULLS_COLUMN, nulls.data_type().clone(), true));
            arrays.push(nulls);
        }
        self.scratch = scratch;
    }

    fn build_column(
        &self,
        values: &[(u32, Leaf)],
        rows: usize,
        records: &StringArray,
        scratch: &mut String,
    ) -> ArrayRef {
        let mut seen = Seen::default();
        for (_, leaf) in values {
            seen.add(leaf);
        }
        match seen.data_type() {
            DataType::Int64 => {
                let mut b = Int64Builder::with_capacity(rows);
                each_row(
                    values,
                    rows,
                    &mut b,
                    Int64Builder::append_nulls,
                    |b, _, leaf| match leaf {
                        Leaf::Int(v) => b.append_value(v),
                        _ => b.append_null(),
                    },
                );
                Arc::new(b.finish())
            }
            DataType::Float64 => {
                let mut b = Float64Builder::with_capacity(rows);
                each_row(
                    values,
                    rows,
                    &mut b,
                    Float64Builder::append_nulls,
                    |b, _, leaf| match leaf {
                        Leaf::Int(v) => b.append_value(v as f64),
                        Leaf::Float(v) => b.append_value(v),
                        _ => b.append_null(),
                    },
                );
                Arc::new(b.finish())
            }
            DataType::Boolean => {
                let mut b = BooleanBuilder::with_capacity(rows);
                each_row(
                    values,
                    rows,
                    &mut b,
                    BooleanBuilder::append_nulls,
                    |b, _, leaf| match leaf {
                        Leaf::Bool(v) => b.append_value(v),
                        _ => b.append_null(),
                    },
                );
                Arc::new(b.finish())
            }
            DataType::List(_) => {
                let mut b = ListBuilder::with_capacity(StringBuilder::new(), rows);
                each_row(
                    values,
                    rows,
                    &mut b,
                    ListBuilder::append_nulls,
                    |b, row, leaf| match leaf {
                        Leaf::List(span) => {
                            let record = records.value(row);
                            for &item in &self.items[span.range()] {
                                self.append_text(b.values(), item, record, scratch);
                            }
                            b.append(true);
                        }
                        _ => b.append_null(),
                    },
                );
                Arc::new(b.finish())
            }
            _ => {
                let mut b = StringBuilder::with_capacity(rows, seen.text_bytes);
                each_row(
                    values,
                    rows,
                    &mut b,
                    StringBuilder::append_nulls,
                    |b, row, leaf| self.append_text(b, leaf, records.value(row), scratch),
                );
                Arc::new(b.finish())
            }
        }
    }

    /// Appends a leaf of the row whose record is `record` as text: strings
    /// verbatim, other scalars as their JSON text, arrays as compact JSON.
    fn append_text(&self, b: &mut StringBuilder, leaf: Leaf, record: &str, scratch: &mut String) {
        match leaf {
            Leaf::Null => b.append_null(),
            Leaf::Bool(v) => b.append_value(if v { "true" } else { "false" }),
            Leaf::Int(v) => b.append_value(itoa::Buffer::new().format(v)),
            Leaf::Float(v) => {
                scratch.clear();
                write_float(scratch, v);
                b.append_value(&*scratch);
            }
            Leaf::Str(s) | Leaf::BigInt(s) | Leaf::Json(s) => b.append_value(&self.text[s.range()]),
            Leaf::Raw(s) => b.append_value(&record[s.range()]),
            Leaf::List(s) => {
                scratch.clear();
                write_json_list(scratch, &self.items[s.range()], &self.text, record);
                b.append_value(&*scratch);
            }
        }
    }

    /// The `List<Utf8>` of the keys that were `null`, per row; `None` if no
    /// key was.
    fn build_nulls(&self, rows: usize) -> Option<ArrayRef> {
        let mut nulls: Vec<(u32, &str)> = Vec::new();
        for column in self.columns.iter().filter(|c| c.has_null) {
            nulls.extend(
                column
                    .values
                    .iter()
                    .filter(|(_, leaf)| *leaf == Leaf::Null)
                    .map(|(row, _)| (*row, &*column.name)),
            );
        }
        if nulls.is_empty() {
            return None;
        }
        // Stable: names stay in column order within a row.
        nulls.sort_by_key(|(row, _)| *row);
        let mut b = ListBuilder::with_capacity(StringBuilder::new(), rows);
        let mut next = nulls.iter().peekable();
        for row in 0..rows as u32 {
            let mut any = false;
            while let Some((_, name)) = next.next_if(|(r, _)| *r == row) {
                b.values().append_value(name);
                any = true;
            }
            b.append(any);
        }
        Some(Arc::new(b.finish()))
    }
}

/// Appends each of `rows` rows to `builder` in order: `value(builder, row,
/// leaf)` for a row with a leaf, `nulls(builder, n)` once for each run of
/// `n` rows where the column has no value or a `null` (a sparse column is
/// mostly such runs).
fn each_row<B>(
    values: &[(u32, Leaf)],
    rows: usize,
    builder: &mut B,
    nulls: impl Fn(&mut B, usize),
    mut value: impl FnMut(&mut B, usize, Leaf),
) {
    let mut missing = 0;
    let mut next = 0;
    for &(row, leaf) in values {
        missing += row as usize - next;
        next = row as usize + 1;
        if leaf == Leaf::Null {
            missing += 1;
            continue;
        }
        if missing > 0 {
            nulls(builder, missing);
            missing = 0;
        }
        value(builder, row as usize, leaf);
    }
    missing += rows - next;
    if missing > 0 {
        nulls(builder, missing);
    }
}

/// The kinds of leaf a column holds.
#[derive(Debug, Default)]
struct Seen {
    int: bool,
    float: bool,
    boolean: bool,
    list: bool,
    /// Strings, big integers, JSON text.
    text: bool,
    /// Arena bytes of the text leaves, to size the builder.
    text_bytes: usize,
}

impl Seen {
    fn add(&mut self, leaf: &Leaf) {
        match leaf {
            Leaf::Null => {}
            Leaf::Bool(_) => self.boolean = true,
            Leaf::Int(_) => self.int = true,
            Leaf::Float(_) => self.float = true,
            Leaf::List(_) => self.list = true,
            Leaf::Str(s) | Leaf::Raw(s) | Leaf::BigInt(s) | Leaf::Json(s) => {
                self.text = true;
                self.text_bytes += s.len();
            }
        }
    }

    /// The narrowest type holding every value seen.
    fn data_type(&self) -> DataType {
        let Seen {
            int,
            float,
            boolean,
            list,
            text,
            ..
        } = *self;
        if text {
            DataType::Utf8
        } else if list && !(int || float || boolean) {
            DataType::new_list(DataType::Utf8, true)
        } else if boolean && !(int || float || list) {
            DataType::Boolean
        } else if int && !(float || boolean || list) {
            DataType::Int64
        } else if (int || float) && !(boolean || list) {
            DataType::Float64
        } else {
            DataType::Utf8
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seen(leaves: &[Leaf]) -> DataType {
        let mut s = Seen::default();
        leaves.iter().for_each(|l| s.add(l));
        s.data_type()
    }

    #[test]
    fn the_narrowest_type_holding_every_value_is_chosen() {
        let text = Leaf::Str(Span::new(0, 1));
        let list = Leaf::List(Span::new(0, 0));
        let utf8_list = DataType::new_list(DataType::Utf8, true);
        assert_eq!(seen(&[Leaf::Int(1), Leaf::Null]), DataType::Int64);
        assert_eq!(seen(&[Leaf::Int(1), Leaf::Float(0.5)]), DataType::Float64);
        assert_eq!(seen(&[Leaf::Float(0.5)]), DataType::Float64);
        assert_eq!(seen(&[Leaf::Bool(true), Leaf::Null]), DataType::Boolean);
        assert_eq!(seen(&[list, Leaf::Null]), utf8_list);
        assert_eq!(seen(&[Leaf::Bool(true), Leaf::Int(1)]), DataType::Utf8);
        assert_eq!(seen(&[Leaf::Int(1), text]), DataType::Utf8);
        assert_eq!(
            seen(&[Leaf::Int(1), Leaf::Raw(Span::new(3, 4))]),
            DataType::Utf8
        );
        assert_eq!(seen(&[list, Leaf::Int(1)]), DataType::Utf8);
        assert_eq!(seen(&[Leaf::Json(Span::new(0, 2))]), DataType::Utf8);
        assert_eq!(seen(&[Leaf::BigInt(Span::new(0, 20))]), DataType::Utf8);
        assert_eq!(seen(&[Leaf::Null]), DataType::Utf8);
    }

    #[test]
    fn each_row_fills_gaps_and_nulls_in_runs() {
        let values = [
            (1, Leaf::Int(1)),
            (2, Leaf::Null),
            (4, Leaf::Int(4)),
            (5, Leaf::Null),
        ];
        let mut got: Vec<String> = Vec::new();
        each_row(
            &values,
            8,
            &mut got,
            |got, n| got.push(format!("{n} missing")),
            |got, row, leaf| got.push(format!("{row}: {leaf:?}")),
        );
        assert_eq!(
            got,
            [
                "1 missing",
                "1: Int(1)",
                "2 missing",
                "4: Int(4)",
                "3 missing"
            ]
        );
        let mut got: Vec<String> = Vec::new();
        each_row(
            &[],
            2,
            &mut got,
            |g, n| g.push(format!("{n}")),
            |_, _, _| {},
        );
        assert_eq!(got, ["2"]);
        let mut got: Vec<String> = Vec::new();
        each_row(
            &[(0, Leaf::Bool(true))],
            1,
            &mut got,
            |g, n| g.push(format!("{n}")),
            |g, _, l| g.push(format!("{l:?}")),
        );
        assert_eq!(got, ["Bool(true)"]);
    }
}
