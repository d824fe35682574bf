//! The fast path for decoding a record: a JSON walker of our own. It
//! writes leaves into the columns as the serde visitors of
//! [`super::visit`] do, and unescapes each string once, straight into the
//! arena or the column path, where serde_json would unescape into a
//! scratch buffer that starts empty for every record.
//!
//! Integers of up to 18 digits are read here, other numbers by serde_json
//! itself from their text; arrays holding arrays or objects become compact
//! JSON text, as the visitors write them. Anything else makes it give up,
//! and the record is decoded again by the visitors, which also word the
//! errors: a `\u` escape of a surrogate, a duplicate key, nesting deeper
//! than [`MAX_DEPTH`], and any invalid JSON. So what it accepts it decodes
//! exactly as the visitors would (a test holds it to them), and it never
//! words an error itself.

use wide::u8x16;

use super::columns::{Columns, Leaf, Mark, Span};
use super::text::{write_float, write_int, write_json_scalar, write_json_str};
use super::visit;

/// A number as serde_json reports it to a visitor.
#[derive(Debug, Clone, Copy)]
enum Number {
    Int(i64),
    Unsigned(u64),
    Float(f64),
}

/// The walker gave up: the record needs the serde visitors.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct GaveUp;

type Walk<T> = Result<T, GaveUp>;

/// Objects nested deeper than this go to the visitors (serde_json's own
/// limit is 128).
const MAX_DEPTH: usize = 64;

/// Decodes the object `text` into row `row` of `columns`, begun at
/// `mark`: by the walker, or, where it gives up, by the visitors. On error
/// the row is rolled back and the visitors' error says what is wrong.
pub(super) fn decode_record(
    text: &str,
    columns: &mut Columns,
    row: u32,
    mark: Mark,
) -> Result<(), serde_json::Error> {
    if decode_object(text, columns, row).is_ok() {
        return Ok(());
    }
    columns.rollback(mark, row);
    visit::decode_object(text, columns, row).inspect_err(|_| columns.rollback(mark, row))
}

/// Decodes the object `text` into row `row` of `columns` by the walker
/// alone; on [`GaveUp`] the row is half-written, for [`decode_record`] to
/// roll back.
fn decode_object(text: &str, columns: &mut Columns, row: u32) -> Walk<()> {
    let mut walker = Walker {
        text,
        bytes: text.as_bytes(),
        at: 0,
        unescaped: std::mem::take(&mut columns.unescaped),
    };
    let walked = walker.walk(columns, row);
    columns.unescaped = walker.unescaped;
    walked
}

impl Walker<'_> {
    /// The whole record: one object, with nothing but whitespace around.
    fn walk(&mut self, columns: &mut Columns, row: u32) -> Walk<()> {
        self.skip_whitespace();
        self.expect(b'{')?;
        self.object(columns, row, true, 0)?;
        self.gated_at_end(columns, row)?;
        self.skip_whitespace();
        if self.at == self.bytes.len() {
            Ok(())
        } else {
            Err(GaveUp)
        }
    }
}

struct Walker<'a> {
    text: &'a str,
    bytes: &'a [u8],
    at: usize,
    /// Where a string with escapes is unescaped, before it is checked
    /// for UTF-8 and moved to where it goes; reused across records, and
    /// as long as the longest record so far and a lane (its bytes past
    /// what a string wrote are left over from earlier ones).
    unescaped: Vec<u8>,
}

impl Walker<'_> {
    fn peek(&self) -> Walk<u8> {
        self.bytes.get(self.at).copied().ok_or(GaveUp)
    }

    fn skip_whitespace(&mut self) {
        while let Some(b' ' | b'\t' | b'\n' | b'\r') = self.bytes.get(self.at) {
            self.at += 1;
        }
    }

    /// After a member or an item: true at a comma (another follows), false
    /// at `close` (the object or array ends); either is consumed.
    fn another(&mut self, close: u8) -> Walk<bool> {
        self.skip_whitespace();
        let byte = self.peek()?;
        self.at += 1;
        match byte {
            b',' => Ok(true),
            _ if byte == close => Ok(false),
            _ => Err(GaveUp),
        }
    }

    /// As [`Walker::another`], writing the comma or `close` to `out`.
    fn another_written(&mut self, close: u8, out: &mut String) -> Walk<bool> {
        let more = self.another(close)?;
        out.push(char::from(if more { b',' } else { close }));
        Ok(more)
    }

    /// After an opening bracket: true if `close` follows at once (an empty
    /// object or array), which is then consumed.
    fn empty(&mut self, close: u8) -> Walk<bool> {
        self.skip_whitespace();
        let empty = self.peek()? == close;
        self.at += usize::from(empty);
        Ok(empty)
    }

    /// Reads the bracket `open` just peeked at and writes it to `out`;
    /// whether the collection is empty (then `close` is read and written
    /// too).
    fn opened_written(&mut self, open: u8, close: u8, out: &mut String) -> Walk<bool> {
        out.push(char::from(open));
        self.at += 1;
        let empty = self.empty(close)?;
        if empty {
            out.push(char::from(close));
        }
        Ok(empty)
    }

    fn expect(&mut self, byte: u8) -> Walk<()> {
        if self.peek()? != byte {
            return Err(GaveUp);
        }
        self.at += 1;
        Ok(())
    }

    /// The members of the object whose `{` was just read, each value at
    /// the column path so far extended by its key (after a dot, unless at
    /// the root).
    fn object(&mut self, columns: &mut Columns, row: u32, root: bool, depth: usize) -> Walk<()> {
        if depth >= MAX_DEPTH {
            return Err(GaveUp);
        }
        if self.empty(b'}')? {
            return Ok(());
        }
        let base = columns.path.len();
        loop {
            self.skip_whitespace();
            self.expect(b'"')?;
            let key = self.at;
            let known = columns.column_of_key(&self.bytes[key..], root);
            match known {
                Some((_, len)) => self.at += len + 1,
                None => {
                    columns.begin_key(root);
                    self.string(&mut columns.path)?;
                }
            }
            self.skip_whitespace();
            self.expect(b':')?;
            self.skip_whitespace();
            match known {
                Some((c, _)) if self.peek()? != b'{' => self.leaf(columns, row, depth, c)?,
                // The key of a leaf column before, of an object now: the
                // object's members go under its path.
                Some((_, len)) => {
                    columns.begin_key(root);
                    columns
                        .path
                        .push_str(self.text.get(key..key + len).ok_or(GaveUp)?);
                    self.value(columns, row, depth)?;
                }
                None => self.value(columns, row, depth)?,
            }
            columns.path.truncate(base);
            if !self.another(b'}')? {
                return Ok(());
            }
        }
    }

    /// A member's value, at the current path.
    fn value(&mut self, columns: &mut Columns, row: u32, depth: usize) -> Walk<()> {
        if self.peek()? == b'{' {
            self.at += 1;
            return self.object(columns, row, false, depth + 1);
        }
        let c = columns.column_here();
        self.leaf(columns, row, depth, c)
    }

    /// A member's value that is no object, put in column `c`; only
    /// checked if that column is not decoded, and checked and noted for
    /// later if it is decoded only in rows that meet a gate the record
    /// has not met so far.
    fn leaf(&mut self, columns: &mut Columns, row: u32, depth: usize, c: usize) -> Walk<()> {
        let leaf = if !columns.decoded(c) {
            self.skip(depth + 1)?;
            Leaf::Null
        } else if let Some(gate) = columns.gate_shut(c) {
            if !columns.skip_gated(c, gate, self.at, depth) {
                return Err(GaveUp);
            }
            return self.skip(depth + 1);
        } else {
            self.leaf_value(columns, depth)?
        };
        columns.put_at(c, row, leaf).map_err(|_| GaveUp)?;
        columns.note_for_gates(c, leaf, self.bytes);
        Ok(())
    }

    /// A value that is no object, decoded.
    #[inline]
    fn leaf_value(&mut self, columns: &mut Columns, depth: usize) -> Walk<Leaf> {
        if self.peek()? == b'[' {
            self.at += 1;
            self.array(columns, depth)
        } else {
            self.scalar(columns)
        }
    }

    /// At the record's end: the values of gated columns skipped when read
    /// whose gate the record met later, decoded now.
    fn gated_at_end(&mut self, columns: &mut Columns, row: u32) -> Walk<()> {
        let end = self.at;
        let skipped = columns.skipped_now_open();
        let decoded = skipped.iter().try_for_each(|value| {
            self.at = value.at;
            let leaf = self.leaf_value(columns, value.depth)?;
            columns.put_at(value.column, row, leaf).map_err(|_| GaveUp)
        });
        columns.done_with(skipped);
        self.at = end;
        decoded
    }

    /// Reads past any value, checking it as the visitors would, without
    /// storing it; gives up where [`Walker::compact`] would.
    fn skip(&mut self, depth: usize) -> Walk<()> {
        if depth >= MAX_DEPTH {
            return Err(GaveUp);
        }
        match self.peek()? {
            b'"' => {
                self.at += 1;
                self.skip_string()
            }
            b'{' => {
                self.at += 1;
                if self.empty(b'}')? {
                    return Ok(());
                }
                loop {
                    self.skip_whitespace();
                    self.expect(b'"')?;
                    self.skip_string()?;
                    self.skip_whitespace();
                    self.expect(b':')?;
                    self.skip_whitespace();
                    self.skip(depth + 1)?;
                    if !self.another(b'}')? {
                        return Ok(());
                    }
                }
            }
            b'[' => {
                self.at += 1;
                if self.empty(b']')? {
                    return Ok(());
                }
                loop {
                    self.skip_whitespace();
                    self.skip(depth + 1)?;
                    if !self.another(b']')? {
                        return Ok(());
                    }
                }
            }
            b't' => self.word(b"true", Leaf::Null).map(drop),
            b'f' => self.word(b"false", Leaf::Null).map(drop),
            b'n' => self.word(b"null", Leaf::Null).map(drop),
            _ => self.number().map(drop),
        }
    }

    /// Reads past the string whose opening quote was just read, checking
    /// its escapes as [`Walker::string`] does. A block of 64 bytes at a
    /// time: which bytes are escaped is worked out from the block's
    /// backslashes at once (see [`escaped_bytes`]), so that a Windows
    /// message with an escape every few bytes costs few more rounds than
    /// one without. A block with an escape other than a one-byte one, and
    /// the string's last bytes, are read a byte at a time by
    /// [`Walker::skip_string_bytes`].
    fn skip_string(&mut self) -> Walk<()> {
        let bytes = self.bytes;
        let mut at = self.at;
        // Whether the block's first byte is escaped by the one before.
        let mut carried = 0u64;
        'blocks: while let Some(block) = bytes.get(at..).and_then(<[u8]>::first_chunk::<BLOCK>) {
            let (backslashes, stops) = block_masks(block);
            let (escaped, next) = if backslashes | carried == 0 {
                (0, 0)
            } else {
                escaped_bytes(backslashes, carried)
            };
            // An escaped quote ends nothing; an escaped control character
            // is no escape, and found below.
            let stops = stops & !escaped;
            let before = match stops {
                0 => u64::MAX,
                _ => (1 << stops.trailing_zeros()) - 1,
            };
            let mut escapes = escaped & before;
            while escapes != 0 {
                if SIMPLE_ESCAPES[usize::from(block[escapes.trailing_zeros() as usize])] == 0 {
                    // A `\u` escape, or none: byte by byte from its block.
                    break 'blocks;
                }
                escapes &= escapes - 1;
            }
            if stops != 0 {
                let stop = at + stops.trailing_zeros() as usize;
                if bytes[stop] != b'"' {
                    return Err(GaveUp);
                }
                self.at = stop + 1;
                return Ok(());
            }
            at += BLOCK;
            carried = next;
        }
        self.at = at - carried as usize;
        self.skip_string_bytes()
    }

    /// As [`Walker::skip_string`], from an unescaped byte of the string.
    fn skip_string_bytes(&mut self) -> Walk<()> {
        loop {
            let stop = self.at + find_special(&self.bytes[self.at..]).ok_or(GaveUp)?;
            match self.bytes[stop] {
                b'"' => {
                    self.at = stop + 1;
                    return Ok(());
                }
                b'\\' => match self
                    .bytes
                    .get(stop + 1)
                    .map(|&b| SIMPLE_ESCAPES[usize::from(b)])
                {
                    Some(byte) if byte != 0 => self.at = stop + 2,
                    _ => {
                        self.at = stop + 1;
                        self.escape()?;
                    }
                },
                _ => return Err(GaveUp),
            }
        }
    }

    /// The array whose `[` was just read: a list while its items are
    /// scalars; from an item that is an object or array on, the whole
    /// array as compact JSON text.
    fn array(&mut self, columns: &mut Columns, depth: usize) -> Walk<Leaf> {
        let first = columns.items.len();
        let text_mark = columns.text.len();
        if self.empty(b']')? {
            return Ok(Leaf::List(Span::new(first, 0)));
        }
        loop {
            self.skip_whitespace();
            if matches!(self.peek()?, b'{' | b'[') {
                return self.array_as_json(columns, first, text_mark, depth);
            }
            let item = self.scalar(columns)?;
            columns.push_item(item);
            if !self.another(b']')? {
                return Ok(Leaf::List(Span::new(first, columns.items.len() - first)));
            }
        }
    }

    /// The rest of an array, from an item that is an object or array, with
    /// its scalar items so far (from `first`, their text from `text_mark`),
    /// as compact JSON text in the arena.
    fn array_as_json(
        &mut self,
        columns: &mut Columns,
        first: usize,
        text_mark: usize,
        depth: usize,
    ) -> Walk<Leaf> {
        let mut out = std::mem::take(&mut columns.scratch);
        out.clear();
        out.push('[');
        for &item in &columns.items[first..] {
            write_json_scalar(&mut out, item, &columns.text, self.text);
            out.push(',');
        }
        let written = self.compact_items(&mut out, depth);
        columns.items.truncate(first);
        columns.text.truncate(text_mark);
        let span = columns.push_text(&out);
        columns.scratch = out;
        written.map(|()| Leaf::Json(span))
    }

    /// The items of an array up to its `]`, each as compact JSON after a
    /// comma (the first after what `out` holds).
    fn compact_items(&mut self, out: &mut String, depth: usize) -> Walk<()> {
        loop {
            self.skip_whitespace();
            self.compact(out, depth + 1)?;
            if !self.another_written(b']', out)? {
                return Ok(());
            }
        }
    }

    /// Any value, written to `out` as compact JSON: strings escaped again
    /// and numbers as serde_json writes them.
    fn compact(&mut self, out: &mut String, depth: usize) -> Walk<()> {
        if depth >= MAX_DEPTH {
            return Err(GaveUp);
        }
        match self.peek()? {
            b'"' => {
                self.at += 1;
                self.compact_string(out)?;
            }
            b'{' => {
                if self.opened_written(b'{', b'}', out)? {
                    return Ok(());
                }
                loop {
                    self.skip_whitespace();
                    self.expect(b'"')?;
                    self.compact_string(out)?;
                    self.skip_whitespace();
                    self.expect(b':')?;
                    out.push(':');
                    self.skip_whitespace();
                    self.compact(out, depth + 1)?;
                    if !self.another_written(b'}', out)? {
                        return Ok(());
                    }
                }
            }
            b'[' => {
                if !self.opened_written(b'[', b']', out)? {
                    self.compact_items(out, depth)?;
                }
            }
            b't' => out.push_str(self.word_text("true")?),
            b'f' => out.push_str(self.word_text("false")?),
            b'n' => out.push_str(self.word_text("null")?),
            _ => match self.number()? {
                Number::Int(v) => write_int(out, v),
                Number::Unsigned(v) => write_int(out, v),
                Number::Float(v) => write_float(out, v),
            },
        }
        Ok(())
    }

    /// The string whose opening quote was just read, written to `out`
    /// quoted and escaped as serde_json writes it.
    fn compact_string(&mut self, out: &mut String) -> Walk<()> {
        let mut unescaped = String::new();
        self.string(&mut unescaped)?;
        write_json_str(out, &unescaped);
        Ok(())
    }

    /// `true`, `false` or `null`, as text.
    fn word_text(&mut self, word: &'static str) -> Walk<&'static str> {
        self.word(word.as_bytes(), Leaf::Null)?;
        Ok(word)
    }

    /// A string (into the arena), integer, boolean or null.
    fn scalar(&mut self, columns: &mut Columns) -> Walk<Leaf> {
        Ok(match self.peek()? {
            b'"' => {
                self.at += 1;
                let start = self.at;
                let stop = self.plain_end()?;
                if self.bytes[stop] == b'"' {
                    // No escape: the value is read where it lies.
                    self.at = stop + 1;
                    Leaf::Raw(Span::new(start, stop - start))
                } else {
                    let at = columns.text.len();
                    self.string_from(stop, &mut columns.text)?;
                    Leaf::Str(Span::new(at, columns.text.len() - at))
                }
            }
            b't' => self.word(b"true", Leaf::Bool(true))?,
            b'f' => self.word(b"false", Leaf::Bool(false))?,
            b'n' => self.word(b"null", Leaf::Null)?,
            _ => match self.number()? {
                Number::Int(v) => Leaf::Int(v),
                // As the visitors store it: an integer beyond `i64` as its
                // digits.
                Number::Unsigned(v) => match i64::try_from(v) {
                    Ok(v) => Leaf::Int(v),
                    Err(_) => Leaf::BigInt(columns.push_text(itoa::Buffer::new().format(v))),
                },
                Number::Float(v) => Leaf::Float(v),
            },
        })
    }

    fn word(&mut self, word: &[u8], leaf: Leaf) -> Walk<Leaf> {
        if !self.bytes[self.at..].starts_with(word) {
            return Err(GaveUp);
        }
        self.at += word.len();
        Ok(leaf)
    }

    /// A number: an integer of at most 18 digits read here, any other by
    /// serde_json itself from its text, so that it is the value (integer,
    /// unsigned or float) the visitors would get.
    fn number(&mut self) -> Walk<Number> {
        let start = self.at;
        let negative = self.bytes.get(self.at) == Some(&b'-');
        let digits_start = start + usize::from(negative);
        let mut at = digits_start;
        let mut value: i64 = 0;
        while let Some(&digit @ b'0'..=b'9') = self.bytes.get(at) {
            if at - digits_start < 18 {
                value = value * 10 + i64::from(digit - b'0');
            }
            at += 1;
        }
        let digits = at - digits_start;
        let leading_zero = digits > 1 && self.bytes[digits_start] == b'0';
        // serde_json reads `-0` as a float.
        let minus_zero = negative && value == 0;
        let fraction = matches!(self.bytes.get(at), Some(b'.' | b'e' | b'E'));
        let simple = (1..=18).contains(&digits) && !leading_zero && !minus_zero && !fraction;
        if simple {
            self.at = at;
            return Ok(Number::Int(if negative { -value } else { value }));
        }
        while let Some(b'0'..=b'9' | b'-' | b'+' | b'.' | b'e' | b'E') = self.bytes.get(at) {
            at += 1;
        }
        let text = self.text.get(start..at).ok_or(GaveUp)?;
        let number: serde_json::Number = serde_json::from_str(text).map_err(|_| GaveUp)?;
        self.at = at;
        if let Some(v) = number.as_u64() {
            Ok(Number::Unsigned(v))
        } else if let Some(v) = number.as_i64() {
            Ok(Number::Int(v))
        } else {
            number.as_f64().map(Number::Float).ok_or(GaveUp)
        }
    }

    /// The string whose opening quote was just read, unescaped onto `out`:
    /// one copy if it has no escape, else by [`Walker::unescaped_into`].
    fn string(&mut self, out: &mut String) -> Walk<()> {
        let stop = self.plain_end()?;
        self.string_from(stop, out)
    }

    /// Where the string whose opening quote was just read first holds a
    /// quote, backslash or control character.
    fn plain_end(&self) -> Walk<usize> {
        let start = self.at;
        Ok(start + find_special(&self.bytes[start..]).ok_or(GaveUp)?)
    }

    /// As [`Walker::string`], its first special byte at `stop`.
    fn string_from(&mut self, stop: usize, out: &mut String) -> Walk<()> {
        let start = self.at;
        // Both ends are at ASCII bytes, so on character boundaries.
        let plain = self.text.get(start..stop).ok_or(GaveUp)?;
        match self.bytes[stop] {
            b'"' => {
                out.push_str(plain);
                self.at = stop + 1;
                Ok(())
            }
            b'\\' => {
                let mut buffer = std::mem::take(&mut self.unescaped);
                // Room for any string of the record unescaped, and a lane
                // more; grown once, kept across records.
                let room = self.bytes.len() + LANE;
                if buffer.len() < room {
                    buffer.resize(room, 0);
                }
                buffer[..plain.len()].copy_from_slice(plain.as_bytes());
                self.at = stop;
                let done = self.unescaped_into(&mut buffer, plain.len());
                // What was copied runs between ASCII bytes of valid UTF-8,
                // and each escape is a whole character: this cannot fail.
                let pushed = done.and_then(|written| {
                    let text = buffer.get(..written).ok_or(GaveUp)?;
                    out.push_str(super::utf8::checked(text).map_err(|_| GaveUp)?);
                    Ok(())
                });
                self.unescaped = buffer;
                pushed
            }
            // A control character, which JSON strings cannot hold raw.
            _ => Err(GaveUp),
        }
    }

    /// The rest of a string from the escape at `self.at` to its closing
    /// quote, unescaped into `buffer` after the `written` bytes it holds;
    /// how many it then holds. Paths and messages hold an escape every few
    /// bytes (`\r\n\t` between the lines of a Windows message), so the
    /// text is copied 16 bytes at a time whatever it holds and the count
    /// moved only to the first quote, backslash or control character among
    /// them: one fixed-size store per escape, written by index with no
    /// capacity to check. An unescaped string is never longer than its
    /// text, and `buffer` is a lane longer than the record, so the stores
    /// fit; one that did not would only make the walker give up.
    fn unescaped_into(&mut self, buffer: &mut [u8], mut written: usize) -> Walk<usize> {
        let bytes = self.bytes;
        let mut at = self.at;
        loop {
            let Some(lane) = bytes.get(at..).and_then(<[u8]>::first_chunk::<LANE>) else {
                return self.unescaped_tail(at, buffer, written);
            };
            let mask = special_mask(lane);
            buffer
                .get_mut(written..written + LANE)
                .ok_or(GaveUp)?
                .copy_from_slice(lane);
            if mask == 0 {
                at += LANE;
                written += LANE;
                continue;
            }
            let first = mask.trailing_zeros() as usize;
            at += first;
            written += first;
            match bytes[at] {
                b'"' => {
                    self.at = at + 1;
                    return Ok(written);
                }
                b'\\' => (at, written) = self.escaped_into(at, buffer, written)?,
                _ => return Err(GaveUp),
            }
        }
    }

    /// As [`Walker::unescaped_into`] from `at`, fewer than 16 bytes before
    /// the end of the record, a byte at a time.
    fn unescaped_tail(
        &mut self,
        mut at: usize,
        buffer: &mut [u8],
        mut written: usize,
    ) -> Walk<usize> {
        loop {
            let byte = *self.bytes.get(at).ok_or(GaveUp)?;
            match byte {
                b'"' => {
                    self.at = at + 1;
                    return Ok(written);
                }
                b'\\' => (at, written) = self.escaped_into(at, buffer, written)?,
                0..0x20 => return Err(GaveUp),
                _ => {
                    *buffer.get_mut(written).ok_or(GaveUp)? = byte;
                    at += 1;
                    written += 1;
                }
            }
        }
    }

    /// The escape whose backslash is at `backslash`, its character written
    /// into `buffer` at `written` as UTF-8; where the text goes on after it,
    /// and how many bytes `buffer` then holds. A one-byte escape by the
    /// table, here in the loop; any other by [`Walker::escape`].
    #[inline(always)]
    fn escaped_into(
        &mut self,
        backslash: usize,
        buffer: &mut [u8],
        written: usize,
    ) -> Walk<(usize, usize)> {
        match self
            .bytes
            .get(backslash + 1)
            .map(|&b| SIMPLE_ESCAPES[usize::from(b)])
        {
            Some(byte) if byte != 0 => {
                *buffer.get_mut(written).ok_or(GaveUp)? = byte;
                Ok((backslash + 2, written + 1))
            }
            _ => {
                self.at = backslash + 1;
                let c = self.escape()?;
                let mut utf8 = [0; 4];
                let encoded = c.encode_utf8(&mut utf8).as_bytes();
                let end = written + encoded.len();
                buffer
                    .get_mut(written..end)
                    .ok_or(GaveUp)?
                    .copy_from_slice(encoded);
                Ok((self.at, end))
            }
        }
    }

    /// The character of the escape whose backslash was just read.
    fn escape(&mut self) -> Walk<char> {
        let c = match self.peek()? {
            b'u' => {
                let hex = self.bytes.get(self.at + 1..self.at + 5).ok_or(GaveUp)?;
                let code = hex.iter().try_fold(0u32, |code, &h| {
                    let digit = char::from(h).to_digit(16).ok_or(GaveUp)?;
                    Ok(code << 4 | digit)
                })?;
                self.at += 4;
                // Surrogates (halves of a pair, or lone) are not characters.
                char::from_u32(code).ok_or(GaveUp)?
            }
            b => char::from(simple_escape(b).ok_or(GaveUp)?),
        };
        self.at += 1;
        Ok(c)
    }
}

/// The byte the one-byte escape `\<byte>` stands for, if it is one.
fn simple_escape(byte: u8) -> Option<u8> {
    Some(SIMPLE_ESCAPES[usize::from(byte)]).filter(|&b| b != 0)
}

/// Per byte after a backslash, the byte its escape stands for; 0 for a
/// `\u` escape (a character of up to four bytes, read by
/// [`Walker::escape`]) and for what is no escape.
const SIMPLE_ESCAPES: [u8; 256] = {
    let mut table = [0; 256];
    table[b'"' as usize] = b'"';
    table[b'\\' as usize] = b'\\';
    table[b'/' as usize] = b'/';
    table[b'b' as usize] = 0x08;
    table[b'f' as usize] = 0x0c;
    table[b'n' as usize] = b'\n';
    table[b'r' as usize] = b'\r';
    table[b't' as usize] = b'\t';
    table
};

/// The bytes [`special_mask`] looks at in one round.
const LANE: usize = 16;

/// One bit per quote, backslash or control character of `lane`.
#[inline(always)]
fn special_mask(lane: &[u8; LANE]) -> u32 {
    let v = u8x16::new(*lane);
    let control = v.min(u8x16::splat(0x1f)).simd_eq(v);
    let hits = v.simd_eq(u8x16::splat(b'"')) | v.simd_eq(u8x16::splat(b'\\')) | control;
    hits.to_bitmask()
}

/// The bytes [`Walker::skip_string`] looks at in one round.
const BLOCK: usize = 64;

/// One bit per backslash of `block`, and one per quote or control
/// character.
#[inline(always)]
fn block_masks(block: &[u8; BLOCK]) -> (u64, u64) {
    let (lanes, _) = block.as_chunks::<LANE>();
    let (mut backslashes, mut stops) = (0u64, 0u64);
    for (k, lane) in lanes.iter().enumerate() {
        let v = u8x16::new(*lane);
        // A quote (0x22) or control character (below 0x20) is, with its
        // bit 1 flipped, at most 0x20; nothing else is.
        let flipped = v ^ u8x16::splat(0x02);
        let stop = flipped.min(u8x16::splat(0x20)).simd_eq(flipped);
        backslashes |= u64::from(v.simd_eq(u8x16::splat(b'\\')).to_bitmask()) << (LANE * k);
        stops |= u64::from(stop.to_bitmask()) << (LANE * k);
    }
    (backslashes, stops)
}

/// Of a block whose backslashes are the bits of `backslashes`, its first
/// byte escaped if `carried` is 1: the bytes escaped (each after a
/// backslash that is not itself escaped), and whether the next block's
/// first byte is. The backslashes of a run pair off from its start: the
/// borrow of subtracting them from the odd bits runs through the run and
/// stops on odd or even ground by its length (simdjson's way).
#[inline(always)]
fn escaped_bytes(backslashes: u64, carried: u64) -> (u64, u64) {
    const ODD_BITS: u64 = 0xAAAA_AAAA_AAAA_AAAA;
    // A backslash that is itself escaped escapes nothing.
    let leading = backslashes & !carried;
    let codes = ((leading << 1) | ODD_BITS).wrapping_sub(leading) ^ ODD_BITS;
    let escaped = codes ^ (backslashes | carried);
    let escaping = codes & backslashes;
    (escaped, escaping >> (BLOCK - 1))
}

/// Where the first quote, backslash or control character of `bytes` is.
fn find_special(bytes: &[u8]) -> Option<usize> {
    let (lanes, rest) = bytes.as_chunks::<16>();
    for (k, lane) in lanes.iter().enumerate() {
        let mask = special_mask(lane);
        if mask != 0 {
            return Some(16 * k + mask.trailing_zeros() as usize);
        }
    }
    rest.iter()
        .position(|&b| b == b'"' || b == b'\\' || b < 0x20)
        .map(|i| 16 * lanes.len() + i)
}

#[cfg(test)]
pub(crate) mod tests {
    use std::io::{BufRead, BufReader};

    use arrow_array::ArrayRef;
    use arrow_schema::Field;

    use super::*;

    /// What a batch of `records` decodes to: its columns, which records
    /// were accepted, and how many the walker took without giving up. With
    /// `walker_first`, as the decoder does it; without, by the visitors
    /// alone.
    fn decode_all(
        records: &[String],
        walker_first: bool,
    ) -> (Vec<Field>, Vec<ArrayRef>, Vec<bool>, usize) {
        let mut columns = Columns::default();
        let mut accepted = Vec::new();
        let (mut row, mut walked) = (0, 0);
        for text in records {
            let mark = columns.mark();
            let by_walker = walker_first && decode_object(text, &mut columns, row).is_ok();
            let ok = by_walker || {
                columns.rollback(mark, row);
                let ok = visit::decode_object(text, &mut columns, row).is_ok();
                if !ok {
                    columns.rollback(mark, row);
                }
                ok
            };
            walked += usize::from(by_walker);
            accepted.push(ok);
            row += u32::from(ok);
        }
        let (mut fields, mut arrays) = (Vec::new(), Vec::new());
        let kept = records
            .iter()
            .zip(&accepted)
            .filter(|(_, ok)| **ok)
            .map(|(text, _)| Some(text.as_str()));
        let kept = arrow_array::StringArray::from_iter(kept);
        columns.build(row as usize, &kept, &mut fields, &mut arrays);
        (fields, arrays, accepted, walked)
    }

    /// How many of `records` the walker decodes itself; panics where the
    /// batch differs from the visitors' in any way, or where the walker
    /// gives up on more records in one batch than one by one (what it
    /// guesses from the records before must never make it give up).
    fn agrees_with_the_visitors(records: &[String]) -> usize {
        let (fields, arrays, accepted, walked) = decode_all(records, true);
        let (want_fields, want_arrays, want_accepted, _) = decode_all(records, false);
        assert_eq!(accepted, want_accepted, "{records:?}");
        assert_eq!(fields, want_fields, "{records:?}");
        for ((got, want), field) in arrays.iter().zip(&want_arrays).zip(&fields) {
            assert_eq!(
                got.to_data(),
                want.to_data(),
                "column {}: {records:?}",
                field.name()
            );
        }
        let mut columns = Columns::default();
        let alone = records
            .iter()
            .filter(|text| {
                columns.clear();
                columns.mark();
                decode_object(text, &mut columns, 0).is_ok()
            })
            .count();
        assert_eq!(
            walked, alone,
            "records the walker took in one batch and one by one"
        );
        alone
    }

    /// Records at the edges of what the walker takes: every kind of value,
    /// escape and number, a key twice, and what is not JSON.
    pub(crate) const EDGE_CASES: &[&str] = &[
        r#"{"a":1,"b":"x","c":true,"d":false,"e":null}"#,
        r#"  { "a" : { "b" : { "c" : -12 } } , "d" : [ ] , "e" : {} }  "#,
        "{\"a\":\"\\\"\\\\\\/\\b\\f\\n\\r\\t\\u00e6\\u0000\\u20AC\"}",
        r#"{"k\u00e6y.with\"quote":"v","ünï":"cödé €"}"#,
        r#"{"list":[1,"two",null,true,-3],"ids":["a","b"]}"#,
        r#"{"nested":[[1],{"a":2}],"mixed":[1,{"b":2}]}"#,
        r#"{"f":1.5,"g":1e3,"h":-0,"i":0,"j":-0.0,"k":12345678901234567890}"#,
        r#"{"big":123456789012345678,"bigger":1234567890123456789,"neg":-999999999999999999}"#,
        r#"{"surrogates":"\ud83d\ude00","lone":"\ud800"}"#,
        r#"{"dup":1,"dup":2}"#,
        r#"{"a":{"b":1},"a.b":2}"#,
        r#"{"a":01}"#,
        r#"{"a":1,}"#,
        r#"{"a":[1,]}"#,
        r#"{"a":tru}"#,
        r#"{"a":truex}"#,
        r#"{"a":"\x"}"#,
        r#"{"a":"\u12"}"#,
        "{\"a\":\"tab\there\"}",
        r#"{"a":1} {"b":2}"#,
        r#"{"a":1}x"#,
        r#"{"a" 1}"#,
        r#"{a:1}"#,
        r#"{"a":-}"#,
        r#"{"a":1.}"#,
        r#"{"a":[1,2],"a":[3]}"#,
        "{}",
        "{\"x\":\"\\u0041\\u00df\\uffff\"}",
        "{\"deep\":{\"a\":{\"b\":{\"c\":{\"d\":{\"e\":{\"f\":1}}}}}}}",
        r#"{"a":[1,"x",[true,null,-0,1.5e300,"q\"\u00e9\n"],{"k\t":{},"z":[]}]}"#,
        r#"{"a":[{}],"b":[[]],"c":[ [ 1 , 2 ] , { "d" : 0.1 } ]}"#,
        r#"{"n":-12345678901234567890,"m":18446744073709551615,"o":18446744073709551616}"#,
        r#"{"p":1E+2,"q":-1e-7,"r":0.0,"s":123456789012345678901234567890}"#,
        r#"{"a":[1,{"b":01}]}"#,
        r#"{"a":[{"b":1},]}"#,
        r#"{"a":[{"b" 1}]}"#,
    ];

    #[test]
    fn edge_cases_decode_as_the_visitors_decode_them() {
        let cases = EDGE_CASES;
        for case in cases {
            agrees_with_the_visitors(&[case.to_string()]);
        }
        let all: Vec<String> = cases.iter().map(|c| c.to_string()).collect();
        assert!(agrees_with_the_visitors(&all) >= 8);
        let deep = format!("{}1{}", "{\"a\":".repeat(100), "}".repeat(100));
        assert_eq!(agrees_with_the_visitors(&[deep]), 0);
    }

    /// Blocks of backslashes (every pattern of 16 bytes, at each end of
    /// a block, and random ones), their first byte escaped or not, as a
    /// byte-at-a-time reading tells the escaped bytes.
    #[test]
    fn escaped_bytes_are_those_a_reading_byte_by_byte_finds() {
        let by_bytes = |backslashes: u64, carried: u64| {
            let (mut escaped, mut escaping) = (0u64, carried == 1);
            for i in 0..BLOCK {
                if escaping {
                    escaped |= 1 << i;
                    escaping = false;
                } else {
                    escaping = backslashes & (1 << i) != 0;
                }
            }
            (escaped, u64::from(escaping))
        };
        let mut state = 0x9e37_79b9_7f4a_7c15u64;
        let mut random = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        for pattern in 0..=u64::from(u16::MAX) {
            let noise = random() & random();
            for backslashes in [
                pattern,
                pattern << 48,
                pattern << 24 | noise,
                noise | pattern,
            ] {
                for carried in 0..2 {
                    assert_eq!(
                        escaped_bytes(backslashes, carried),
                        by_bytes(backslashes, carried),
                        "{backslashes:064b} {carried}"
                    );
                }
            }
        }
    }

    /// Escapes at every offset around the 16-byte steps of the unescaping
    /// loop and the 64-byte blocks of skipping, and near the record's end,
    /// where each goes a byte at a time.
    #[test]
    fn escapes_at_every_offset_decode_as_the_visitors_decode_them() {
        const ESCAPES: &[&str] = &[
            r"\\",
            r"\n",
            r"\\\\",
            r"\u00e9",
            r"\u20ac\t",
            r#"\""#,
            "\u{1}",
        ];
        let mut records = Vec::new();
        for before in (0..36).chain(60..70).chain(122..132) {
            for after in [0, 1, 15, 16, 17, 40, 63, 64, 65, 130] {
                for escape in ESCAPES {
                    let text = format!(
                        "{}{escape}{}",
                        "é".repeat(before % 3) + &"a".repeat(before),
                        "b".repeat(after)
                    );
                    records.push(format!(r#"{{"k":"{text}","n":1}}"#));
                    records.push(format!(r#"{{"n":1,"k":"{text}"}}"#));
                    records.push(format!(r#"{{"{text}":"{text}"}}"#));
                }
            }
        }
        let walked = agrees_with_the_visitors(&records);
        // All but those with a raw control character.
        assert_eq!(walked, records.len() / ESCAPES.len() * (ESCAPES.len() - 1));
        // A second escape at every offset of the 16-byte steps that begin
        // at the first (a step restarts after each escape), and of two
        // 64-byte blocks, invalid ones too, which both refuse.
        let mut records = Vec::new();
        for between in 0..140 {
            let gap = "x".repeat(between);
            for second in [r"\n", r"\u00e9", r"\ud83d\ude00", r"\x", r"\u00", r"\ud800"] {
                records.push(format!(r#"{{"k":"a\\{gap}{second}b","n":1}}"#));
                records.push(format!(r#"{{"k":"a\\{gap}{second}"}}"#));
            }
        }
        // The walker decodes the valid ones itself, but the surrogate pair,
        // which it leaves to the visitors.
        assert_eq!(agrees_with_the_visitors(&records), 140 * 2 * 2);
    }

    /// Random records built from JSON pieces, valid and not, in batches so
    /// that columns, duplicates and rollbacks meet across rows.
    #[test]
    fn random_records_decode_as_the_visitors_decode_them() {
        const PIECES: &[&str] = &[
            "{",
            "}",
            "[",
            "]",
            ",",
            ":",
            " ",
            "\n",
            "\"a\"",
            "\"b\"",
            "\"a.b\"",
            "\"\\n\"",
            "\"\\u00e9\"",
            "\"\\ud83d\\ude00\"",
            "\"x\\\"y\"",
            "\"\\\\\"",
            "1",
            "-1",
            "0",
            "-0",
            "01",
            "1.5",
            "1e2",
            "123456789012345678",
            "9999999999999999999",
            "true",
            "false",
            "null",
            "tru",
            "\"",
            "\\",
            "\t",
            "\"é\"",
            "\u{1}",
        ];
        let mut next = crate::random::xorshift(0x2545_f491_4f6c_dd1du64);
        let mut walked = 0;
        for _ in 0..3_000 {
            let records: Vec<String> = (0..4)
                .map(|_| {
                    // Mostly well-formed objects with random members, some
                    // with random pieces spliced in.
                    let mut text = String::from("{");
                    for m in 0..next() % 5 {
                        if m > 0 {
                            text.push(',');
                        }
                        text.push_str(
                            ["\"a\"", "\"b\"", "\"c\"", "\"a.b\""][(next() % 4) as usize],
                        );
                        text.push(':');
                        match next() % 4 {
                            0 => text.push_str("{\"b\":1}"),
                            1 => text.push_str("[1,\"x\",null]"),
                            _ => {}
                        }
                        for _ in 0..1 + next() % 2 {
                            text.push_str(PIECES[(next() % PIECES.len() as u64) as usize]);
                        }
                    }
                    text.push('}');
                    text
                })
                .collect();
            walked += agrees_with_the_visitors(&records);
        }
        assert!(walked > 500, "the walker decoded only {walked} records");
    }

    /// The first 3,000 events of the OTRF sample, whole and with a byte
    /// changed.
    #[test]
    fn real_windows_events_decode_as_the_visitors_decode_them() {
        let path = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../shared/corpora/windows-otrf-sample.jsonl.gz"
        );
        let file = std::fs::File::open(path).expect("the shared corpora beside the checkout");
        let lines: Vec<String> = BufReader::new(flate2::read::GzDecoder::new(file))
            .lines()
            .take(3_000)
            .map(|l| l.expect("the sample is UTF-8 lines"))
            .collect();
        for batch in lines.chunks(500) {
            assert_eq!(agrees_with_the_visitors(batch), batch.len());
        }
        const SWAPS: &[u8] = b"\"\\{}[],:0-. a\nu";
        let mut next = crate::random::xorshift(0x9e37_79b9_7f4a_7c15u64);
        let changed: Vec<String> = lines
            .iter()
            .take(1_000)
            .map(|line| {
                let mut bytes = line.clone().into_bytes();
                let at = (next() % bytes.len() as u64) as usize;
                bytes[at] = SWAPS[(next() % SWAPS.len() as u64) as usize];
                String::from_utf8_lossy(&bytes).into_owned()
            })
            .collect();
        for batch in changed.chunks(100) {
            agrees_with_the_visitors(batch);
        }
    }
}
