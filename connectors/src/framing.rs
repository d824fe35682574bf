//! Record framing: splits a byte stream into JSON object texts without
//! parsing them.
//!
//! The splitter is a byte-level scanner that tracks string/escape state and
//! brace depth. It accepts, mixed freely in one stream:
//! - JSON lines (`{..}\n{..}\n`);
//! - pretty-printed, multi-line objects;
//! - concatenated objects, with or without whitespace (`{..}{..}`);
//! - top-level arrays of objects (`[ {..}, {..} ]`), whose elements become
//!   records of their own; the `[`, `,` and `]` of such an array are
//!   structure. Any other bracket or comma (`[[`, `]` outside an array, `,`
//!   before any element) is not, and is reported like other garbage; an
//!   array still open at the end of the input is reported too.
//!
//! It does not validate the JSON inside an object: the decoder does. So a
//! record that is a line of its own is offered to the decoder as it lies
//! in the read buffer ([`RecordSplitter::take_line`]); only what the
//! decoder refuses, and everything not in lines, is framed by structure.
//! Malformed input becomes a [`DeadLetter`] and scanning resumes at the next
//! sensible boundary, so the records around it still come out:
//! - bytes outside any object that are not JSON structure (garbage) are
//!   skipped to the end of their line and reported once;
//! - a raw newline inside a string ends the record (JSON strings cannot
//!   hold one), so a broken line does not swallow the next;
//! - a `{` at the start of a line, outside a string, while an object is
//!   still open means that object was truncated: it is reported and the new
//!   object starts fresh; so is an object still open at the end of input;
//! - a record longer than the limit is reported and skipped without being
//!   buffered: at most `max_record_bytes` of it are ever held.

use std::io::{self, Read};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use crate::dead_letter::{excerpt, DeadLetter, EXCERPT_BYTES};
use crate::read_buffer::ReadBuffer;

use wide::u8x16;

/// Default size of the read buffer.
pub const READ_BUFFER: usize = 64 * 1024;

/// Where a record starts in its source.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Origin {
    /// 1-based line.
    pub line: u64,
    /// Byte offset from the start of the (decompressed) stream.
    pub offset: u64,
}

/// One object's text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    /// The object text, `{` to its matching `}`.
    pub bytes: Vec<u8>,
    /// Where it starts.
    pub origin: Origin,
}

/// What the splitter yields.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Frame {
    /// A complete object.
    Record(Record),
    /// Something that is not one, and why.
    Dead(DeadLetter),
}

/// Where the splitter is in a top-level array of objects.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ArrayState {
    /// Not in an array.
    Outside,
    /// After `[` or `,`: an object (or, after `[`, the closing `]`) comes.
    Open(Origin),
    /// After an element: `,` or `]` comes.
    AfterElement(Origin),
}

/// Splits a byte stream into [`Frame`]s.
///
/// ```
/// use vagt_connectors::{Frame, RecordSplitter};
///
/// let input = &b"[{\"a\": 1}, {\"a\": 2}]\n{\"b\": 3}{\"b\": 4}\n"[..];
/// let frames: Vec<Frame> = RecordSplitter::new(input, "example", 1 << 20)
///     .collect::<Result<_, _>>()?;
/// assert_eq!(frames.len(), 4);
/// # Ok::<(), std::io::Error>(())
/// ```
#[derive(Debug)]
pub struct RecordSplitter<R> {
    input: ReadBuffer<R>,
    name: String,
    max_record_bytes: usize,
    line: u64,
    offset: u64,
    at_line_start: bool,
    /// Still within a leading UTF-8 byte order mark, which is skipped.
    in_bom: bool,
    array: ArrayState,
    /// Set when the stream was cut short (a tail stopping): an unfinished
    /// last object is then left for the next run instead of reported.
    cut_short: Option<Arc<AtomicBool>>,
    /// Largest record buffer allocated so far, to test that oversize
    /// records are not buffered.
    #[cfg(test)]
    largest_buffer: usize,
}

impl<R: Read> RecordSplitter<R> {
    /// A splitter over `reader`, naming it `name` in dead letters; records
    /// longer than `max_record_bytes` become dead letters.
    pub fn new(reader: R, name: impl Into<String>, max_record_bytes: usize) -> Self {
        Self::with_buffer(reader, name, max_record_bytes, READ_BUFFER)
    }

    /// As [`RecordSplitter::new`] with a read buffer of `buffer` bytes
    /// (at least 1).
    pub fn with_buffer(
        reader: R,
        name: impl Into<String>,
        max_record_bytes: usize,
        buffer: usize,
    ) -> Self {
        RecordSplitter {
            input: ReadBuffer::new(reader, buffer),
            name: name.into(),
            max_record_bytes,
            line: 1,
            offset: 0,
            at_line_start: true,
            in_bom: true,
            array: ArrayState::Outside,
            cut_short: None,
            #[cfg(test)]
            largest_buffer: 0,
        }
    }

    /// At the end, an unfinished last object is dropped silently if `flag`
    /// is set (the stream was cut short; it will be read whole later).
    pub fn cut_short_by(mut self, flag: Arc<AtomicBool>) -> Self {
        self.cut_short = Some(flag);
        self
    }

    /// Counts lines and offsets from `origin`, for a reader positioned
    /// there (a file resumed where an earlier run stopped).
    pub fn starting_at(mut self, origin: Origin) -> Self {
        if origin.offset > 0 {
            self.in_bom = false;
        }
        self.line = origin.line;
        self.offset = origin.offset;
        self
    }

    /// True when everything read so far has been consumed (but whitespace)
    /// and the last read returned less than asked for: the reader is at the
    /// live edge of a pipe or socket (or at the end of a file), so the next
    /// read may wait. Callers flush partial batches here to keep latency low
    /// while files still get full batches.
    pub fn at_live_edge(&self) -> bool {
        self.input.read_short() && self.input.unread().iter().all(u8::is_ascii_whitespace)
    }

    /// Bytes consumed so far.
    pub fn bytes_read(&self) -> u64 {
        self.offset
    }

    /// The next frame, or `None` at the end of the stream.
    ///
    /// # Errors
    /// Reading from the underlying reader failed.
    pub fn next_frame(&mut self) -> io::Result<Option<Frame>> {
        loop {
            if !self.input.fill()? {
                return Ok(self.unclosed_array());
            }
            let chunk = self.input.unread();
            if self.in_bom {
                // Byte by byte: the mark may span refills.
                if self.offset < 3 && chunk[0] == UTF8_BOM[self.offset as usize] {
                    self.advance(1);
                    continue;
                }
                self.in_bom = false;
            }
            let structure = self.structure();
            if structure > 0 {
                self.advance(structure);
                continue;
            }
            return match self.input.unread()[0] {
                b'{' => {
                    self.array = match self.array {
                        ArrayState::Open(at) | ArrayState::AfterElement(at) => {
                            ArrayState::AfterElement(at)
                        }
                        ArrayState::Outside => ArrayState::Outside,
                    };
                    self.read_record()
                }
                _ => {
                    self.array = ArrayState::Outside;
                    self.skip_garbage().map(Some)
                }
            };
        }
    }

    /// The fast path of JSON lines: offers the next record to `take` if it
    /// is a whole buffered line of its own (from a `{` at a line start,
    /// outside any array, to a `}` before the newline and any trailing
    /// whitespace), without scanning its structure or copying it. `take`
    /// decodes it and says whether it was one valid object; if so the line
    /// is consumed and true comes back. Otherwise nothing is consumed past
    /// whitespace, and [`RecordSplitter::next_frame`] frames the same bytes
    /// by their structure, as if this had not been called: a line that is
    /// one valid object is the record that framing would cut from it.
    ///
    /// # Errors
    /// Reading from the underlying reader failed.
    pub fn take_line(&mut self, take: impl FnOnce(&[u8], Origin) -> bool) -> io::Result<bool> {
        loop {
            if !self.input.fill()? {
                return Ok(false);
            }
            if self.in_bom {
                // A mark is stepped over by `next_frame`, byte by byte.
                if self.offset > 0 || self.input.unread()[0] == UTF8_BOM[0] {
                    return Ok(false);
                }
                self.in_bom = false;
            }
            let structure = self.structure();
            if structure == 0 {
                break;
            }
            self.advance(structure);
        }
        if self.array != ArrayState::Outside
            || !self.at_line_start
            || self.input.unread()[0] != b'{'
        {
            return Ok(false);
        }
        let newline = loop {
            let chunk = self.input.unread();
            if let Some(newline) = memchr::memchr(b'\n', chunk) {
                break newline;
            }
            // The line runs past what was read: read on after it, unless
            // the reader may wait (a live edge) or the line is too long,
            // where framing by structure takes over.
            if chunk.len() > self.max_record_bytes
                || self.input.read_short()
                || !self.input.read_more()?
            {
                return Ok(false);
            }
        };
        let line = &self.input.unread()[..newline];
        let end = line.len()
            - line
                .iter()
                .rev()
                .take_while(|b| matches!(b, b' ' | b'\t' | b'\r'))
                .count();
        if end > self.max_record_bytes
            || line[end - 1] != b'}'
            || !take(&line[..end], self.origin())
        {
            return Ok(false);
        }
        self.advance_lines(newline + 1, 1);
        Ok(true)
    }

    /// How many buffered bytes from here are whitespace or the structure
    /// of a top-level array of objects; follows the array as it goes.
    fn structure(&mut self) -> usize {
        let mut at = self.origin();
        let chunk = self.input.unread();
        for (n, &b) in chunk.iter().enumerate() {
            self.array = match (b, self.array) {
                (b' ' | b'\t' | b'\r', state) => state,
                (b'\n', state) => {
                    at.line += 1;
                    state
                }
                (b'[', ArrayState::Outside) => ArrayState::Open(Origin {
                    line: at.line,
                    offset: at.offset + n as u64,
                }),
                (b',', ArrayState::AfterElement(start)) => ArrayState::Open(start),
                (b']', ArrayState::Open(_) | ArrayState::AfterElement(_)) => ArrayState::Outside,
                _ => return n,
            };
        }
        chunk.len()
    }

    /// At the end of the input: an array that was never closed.
    fn unclosed_array(&mut self) -> Option<Frame> {
        let (ArrayState::Open(start) | ArrayState::AfterElement(start)) = self.array else {
            return None;
        };
        self.array = ArrayState::Outside;
        if self
            .cut_short
            .as_ref()
            .is_some_and(|f| f.load(Ordering::SeqCst))
        {
            return None;
        }
        Some(self.dead(
            start,
            format!(
                "not JSON: the array opened at line {} is not closed at the end of the input",
                start.line
            ),
            b"[",
        ))
    }

    /// Consumes `n` buffered bytes, keeping line and offset up to date.
    fn advance(&mut self, n: usize) {
        let newlines = memchr::memchr_iter(b'\n', &self.input.unread()[..n]).count();
        self.advance_lines(n, newlines as u64);
    }

    /// As [`Self::advance`], for `n` bytes known to hold `newlines`
    /// newlines (a record's piece, whose newlines [`scan`] counted).
    fn advance_lines(&mut self, n: usize, newlines: u64) {
        let consumed = &self.input.unread()[..n];
        debug_assert_eq!(
            newlines,
            memchr::memchr_iter(b'\n', consumed).count() as u64
        );
        self.line += newlines;
        if let Some(&last) = consumed.last() {
            self.at_line_start = last == b'\n';
        }
        self.input.consume(n);
        self.offset += n as u64;
    }

    fn origin(&self) -> Origin {
        Origin {
            line: self.line,
            offset: self.offset,
        }
    }

    fn dead(&self, origin: Origin, reason: String, sample: &[u8]) -> Frame {
        Frame::Dead(DeadLetter {
            source: self.name.clone(),
            line: origin.line,
            offset: origin.offset,
            reason,
            excerpt: excerpt(sample),
        })
    }

    /// Skips from a byte that cannot start a record to the end of its line.
    fn skip_garbage(&mut self) -> io::Result<Frame> {
        let origin = self.origin();
        let first = self.input.unread()[0];
        let mut sample = Vec::new();
        while self.input.fill()? {
            let chunk = self.input.unread();
            let (take, done) = match memchr::memchr(b'\n', chunk) {
                Some(i) => (i + 1, true),
                None => (chunk.len(), false),
            };
            let keep = (EXCERPT_BYTES - sample.len()).min(take);
            sample.extend_from_slice(&chunk[..keep]);
            self.advance(take);
            if done {
                break;
            }
        }
        if sample.last() == Some(&b'\n') {
            sample.pop();
        }
        let found = if first.is_ascii_graphic() {
            format!("'{}'", first as char)
        } else {
            format!("byte 0x{first:02x}")
        };
        Ok(self.dead(
            origin,
            format!("not JSON: expected an object, found {found}; skipped to the end of the line"),
            &sample,
        ))
    }

    /// Reads one object, starting at its `{`.
    fn read_record(&mut self) -> io::Result<Option<Frame>> {
        let origin = self.origin();
        let mut bytes: Vec<u8> = Vec::new();
        // Set once the record is known to be too long: `bytes` is then
        // dropped and only its start is kept, for the excerpt.
        let mut oversize: Option<Vec<u8>> = None;
        let mut state = ScanState::default();
        loop {
            if !self.input.fill()? {
                if self
                    .cut_short
                    .as_ref()
                    .is_some_and(|f| f.load(Ordering::SeqCst))
                {
                    return Ok(None);
                }
                return Ok(Some(match oversize {
                    Some(head) => self.dead(origin, self.oversize_reason(), &head),
                    None => self.dead(
                        origin,
                        "truncated record: the input ends inside an object".into(),
                        &bytes,
                    ),
                }));
            }
            let chunk = self.input.unread();
            let newlines_before = state.newlines;
            let (n, end) = scan(chunk, &mut state, self.at_line_start);
            let piece = &chunk[..n];
            if oversize.is_none() {
                if bytes.len() + n > self.max_record_bytes {
                    let mut head = std::mem::take(&mut bytes);
                    head.truncate(EXCERPT_BYTES);
                    let more = (EXCERPT_BYTES - head.len()).min(n);
                    head.extend_from_slice(&piece[..more]);
                    oversize = Some(head);
                } else {
                    let needed = bytes.len() + n;
                    if bytes.capacity() < needed {
                        // Grow geometrically, but never past the limit.
                        let target = (bytes.capacity() * 2)
                            .max(needed)
                            .min(self.max_record_bytes);
                        bytes.reserve_exact(target - bytes.len());
                    }
                    bytes.extend_from_slice(piece);
                    #[cfg(test)]
                    {
                        self.largest_buffer = self.largest_buffer.max(bytes.capacity());
                    }
                }
            }
            self.advance_lines(n, state.newlines - newlines_before);
            let Some(end) = end else { continue };
            if let Some(head) = oversize {
                return Ok(Some(self.dead(origin, self.oversize_reason(), &head)));
            }
            return Ok(Some(match end {
                End::Closed => Frame::Record(Record { bytes, origin }),
                End::BrokenString => self.dead(
                    origin,
                    "invalid JSON: a string is not closed before the end of the line".into(),
                    &bytes,
                ),
                End::Truncated => self.dead(
                    origin,
                    format!(
                        "truncated record: the object is not closed before a new object starts at line {}",
                        self.line
                    ),
                    &bytes,
                ),
            }));
        }
    }

    fn oversize_reason(&self) -> String {
        format!("record exceeds {} bytes; skipped", self.max_record_bytes)
    }
}

impl<R: Read> Iterator for RecordSplitter<R> {
    type Item = io::Result<Frame>;

    fn next(&mut self) -> Option<Self::Item> {
        self.next_frame().transpose()
    }
}

const UTF8_BOM: &[u8] = b"\xef\xbb\xbf";

/// Scanner state carried across buffer refills.
#[derive(Debug, Default)]
struct ScanState {
    /// Open `{` and `[`.
    depth: usize,
    in_string: bool,
    /// The previous byte was a backslash inside a string.
    escape: bool,
    /// Newlines scanned: between values, and the one that ends a broken
    /// string.
    newlines: u64,
}

/// How a record ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum End {
    /// Its braces balanced.
    Closed,
    /// A raw newline inside a string.
    BrokenString,
    /// A `{` at the start of a line while it was open; the `{` is not part
    /// of the record.
    Truncated,
}

/// Scans `chunk`, the next bytes of a record, returning how many of them
/// belong to the record and how it ended, if it did. `at_line_start` says
/// whether the byte before `chunk` was a newline.
///
/// It looks at 64 bytes at a time, without a branch per byte:
/// - [`BlockMasks`] marks the block's quotes, backslashes, newlines and
///   brackets, one bit per byte, with vector compares;
/// - [`strings`] finds the bytes escaped by backslashes (an escaped quote
///   opens or closes no string) and, by a prefix XOR of the other quotes,
///   which bytes are inside a string;
/// - only the brackets outside strings and any newline inside one (which
///   breaks the string) are stepped through, and the newlines outside
///   strings are counted with one popcount.
fn scan(chunk: &[u8], s: &mut ScanState, at_line_start: bool) -> (usize, Option<End>) {
    let mut base = 0;
    if s.escape && !chunk.is_empty() {
        // A backslash ended the previous chunk: this byte is escaped.
        s.escape = false;
        if chunk[0] == b'\n' {
            return broken_string(s, 1);
        }
        base = 1;
    }
    // The first byte of the block is escaped by the last of the previous.
    let mut first_escaped = false;
    while base < chunk.len() {
        let len = (chunk.len() - base).min(BLOCK);
        let valid = block_bits(len);
        let m = BlockMasks::of(&chunk[base..base + len]);
        let Strings {
            inside,
            escapes_next,
        } = strings(m, s.in_string, first_escaped, len);
        let outside_newlines = m.newlines & !inside & valid;
        let mut events = (m.brackets & !inside) | (m.newlines & inside);
        while events != 0 {
            let j = events.trailing_zeros();
            events &= events - 1;
            let i = base + j as usize;
            let newlines_before = || u64::from((outside_newlines & ((1u64 << j) - 1)).count_ones());
            if inside >> j & 1 == 1 {
                // A newline inside a string (escaped or not) breaks it.
                s.newlines += newlines_before();
                s.in_string = true;
                return broken_string(s, i + 1);
            }
            s.in_string = false;
            if let Some(end) = step_outside_string(chunk, i, s, at_line_start) {
                s.newlines += newlines_before();
                return end;
            }
        }
        if outside_newlines != 0 {
            s.newlines += u64::from(outside_newlines.count_ones());
        }
        s.in_string = inside >> (len - 1) & 1 == 1;
        first_escaped = escapes_next;
        if first_escaped && base + len == chunk.len() {
            // The escaped byte is in the next chunk.
            s.escape = true;
            return (chunk.len(), None);
        }
        base += len;
    }
    (chunk.len(), None)
}

/// Where a block's strings are.
#[derive(Debug, Clone, Copy)]
struct Strings {
    /// One bit per byte inside a string: from an opening quote up to the
    /// byte before its closing quote.
    inside: u64,
    /// The block's last byte is a backslash, inside a string, that escapes
    /// the byte after the block.
    escapes_next: bool,
}

/// Where the strings of a block of `len` bytes with masks `m` are, the
/// block starting inside one if `in_string`, its first byte escaped if
/// `first_escaped`.
///
/// The bytes escaped are found for all backslashes at once (the byte after
/// each run of backslashes of odd length); that holds when every backslash
/// is inside a string, as in valid JSON. A block with a backslash outside
/// any string is walked backslash by backslash instead, ignoring those, as
/// the byte-at-a-time scanner does.
fn strings(m: BlockMasks, in_string: bool, first_escaped: bool, len: usize) -> Strings {
    let starts_inside = if in_string { !0 } else { 0 };
    let mut carry = first_escaped;
    let escaped = escaped_by_runs(m.backslashes, &mut carry);
    let inside = prefix_xor(m.quotes & !escaped) ^ starts_inside;
    let valid = block_bits(len);
    if m.backslashes & !escaped & !inside & valid == 0 {
        return Strings {
            inside,
            escapes_next: if len == BLOCK {
                carry
            } else {
                escaped >> len & 1 == 1
            },
        };
    }
    walk_escapes(m, starts_inside, first_escaped, len)
}

/// The bytes escaped by backslashes, if every backslash is inside a
/// string: the byte after each run of backslashes of odd length. `carry`
/// says that the block's first byte is escaped (in), and that its last
/// escapes the next block's first (out).
fn escaped_by_runs(backslashes: u64, carry: &mut bool) -> u64 {
    const EVEN: u64 = 0x5555_5555_5555_5555;
    let escaped_first = u64::from(*carry);
    let backslashes = backslashes & !escaped_first;
    let follows_backslash = backslashes << 1 | escaped_first;
    // A run starting on an odd bit, plus its backslashes, carries out of
    // the run; one starting on an even bit has no start here and is left.
    let odd_starts = backslashes & !EVEN & !follows_backslash;
    let (runs_from_even, overflow) = odd_starts.overflowing_add(backslashes);
    *carry = overflow;
    // Within a run from an even bit the odd bits are escaped, and after a
    // run from an odd bit the even ones; the add flipped the latter.
    (EVEN ^ (runs_from_even << 1)) & follows_backslash
}

/// As [`strings`], one backslash at a time: a backslash outside any string
/// escapes nothing (the JSON is invalid there, and the decoder says so).
fn walk_escapes(m: BlockMasks, starts_inside: u64, first_escaped: bool, len: usize) -> Strings {
    let skip_first = u64::from(first_escaped);
    let mut inside = prefix_xor(m.quotes & !skip_first) ^ starts_inside;
    let mut backslashes = m.backslashes & !skip_first;
    while backslashes != 0 {
        let i = backslashes.trailing_zeros();
        backslashes &= backslashes - 1;
        if inside >> i & 1 == 0 {
            continue;
        }
        if i as usize + 1 == len {
            return Strings {
                inside,
                escapes_next: true,
            };
        }
        let escaped = 1u64 << (i + 1);
        if m.quotes & escaped != 0 {
            // An escaped quote opens or closes nothing.
            inside ^= !0 << (i + 1);
        }
        backslashes &= !escaped;
    }
    Strings {
        inside,
        escapes_next: false,
    }
}

/// The bits of a block of `len` bytes (at most [`BLOCK`]).
fn block_bits(len: usize) -> u64 {
    if len == BLOCK {
        !0
    } else {
        (1u64 << len) - 1
    }
}

/// Bit `i` is the XOR of bits `0..=i`: with quote bits, 1 from an opening
/// quote up to the byte before its closing quote.
fn prefix_xor(mut x: u64) -> u64 {
    x ^= x << 1;
    x ^= x << 2;
    x ^= x << 4;
    x ^= x << 8;
    x ^= x << 16;
    x ^= x << 32;
    x
}

/// A string broken by the newline just before `end`, which is counted.
fn broken_string(s: &mut ScanState, end: usize) -> (usize, Option<End>) {
    s.newlines += 1;
    (end, Some(End::BrokenString))
}

/// Steps over `chunk[i]`, outside any string: a quote opens one, braces and
/// brackets change the depth. Returns where the record ends if it does here:
/// after the bracket that closes it, or before a `{` that starts a line
/// while it is open (it was truncated). Other bytes change nothing.
fn step_outside_string(
    chunk: &[u8],
    i: usize,
    s: &mut ScanState,
    at_line_start: bool,
) -> Option<(usize, Option<End>)> {
    match chunk[i] {
        b'"' => s.in_string = true,
        b'{' => {
            let line_start = if i == 0 {
                at_line_start
            } else {
                chunk[i - 1] == b'\n'
            };
            if s.depth > 0 && line_start {
                return Some((i, Some(End::Truncated)));
            }
            s.depth += 1;
        }
        b'[' => s.depth += 1,
        b'}' | b']' => {
            s.depth = s.depth.saturating_sub(1);
            if s.depth == 0 {
                return Some((i + 1, Some(End::Closed)));
            }
        }
        _ => {}
    }
    None
}

/// Bytes [`scan`] classifies at a time: one bit each in a `u64`.
const BLOCK: usize = 64;

/// The bytes of a block (at most [`BLOCK`] bytes) that can change the
/// scanner's state, one bit per byte.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct BlockMasks {
    quotes: u64,
    backslashes: u64,
    newlines: u64,
    /// `{`, `}`, `[` and `]`.
    brackets: u64,
}

impl BlockMasks {
    fn of(block: &[u8]) -> BlockMasks {
        let mut padded = [0u8; BLOCK];
        let full = match <&[u8; BLOCK]>::try_from(block) {
            Ok(full) => full,
            Err(_) => {
                // Zeros are none of the bytes looked for.
                padded[..block.len()].copy_from_slice(block);
                &padded
            }
        };
        let splat = u8x16::splat;
        let mut m = BlockMasks {
            quotes: 0,
            backslashes: 0,
            newlines: 0,
            brackets: 0,
        };
        let (lanes, _) = full.as_chunks::<16>();
        for (k, lane) in lanes.iter().enumerate() {
            let v = u8x16::new(*lane);
            let bits = |found: u8x16| u64::from(found.to_bitmask()) << (16 * k);
            m.quotes |= bits(v.simd_eq(splat(b'"')));
            m.backslashes |= bits(v.simd_eq(splat(b'\\')));
            m.newlines |= bits(v.simd_eq(splat(b'\n')));
            // `[` and `]` are `{` and `}` without the 0x20 bit.
            let folded = v | splat(0x20);
            m.brackets |= bits(folded.simd_eq(splat(b'{')) | folded.simd_eq(splat(b'}')));
        }
        m
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The scanner before blocks: one byte at a time, with `memchr3`
    /// inside strings (outside them it takes the same steps). The block
    /// scanner must agree with it.
    fn reference_scan(
        chunk: &[u8],
        s: &mut ScanState,
        at_line_start: bool,
    ) -> (usize, Option<End>) {
        let mut i = 0;
        while i < chunk.len() {
            if s.in_string {
                if s.escape {
                    s.escape = false;
                    if chunk[i] == b'\n' {
                        return (i + 1, Some(End::BrokenString));
                    }
                    i += 1;
                    continue;
                }
                // Most bytes of an event are inside strings: jump to the next
                // quote, backslash or (invalid) newline.
                let Some(k) = memchr::memchr3(b'"', b'\\', b'\n', &chunk[i..]) else {
                    return (chunk.len(), None);
                };
                i += k;
                match chunk[i] {
                    b'"' => s.in_string = false,
                    b'\\' => s.escape = true,
                    _ => return (i + 1, Some(End::BrokenString)),
                }
                i += 1;
                continue;
            }
            if let Some(end) = step_outside_string(chunk, i, s, at_line_start) {
                return end;
            }
            i += 1;
        }
        (chunk.len(), None)
    }

    #[test]
    fn the_block_scanner_agrees_with_the_byte_scanner() {
        const BYTES: &[u8] = b"\"\\\n{}[]|a ";
        let mut next = crate::random::xorshift(0x9e37_79b9_7f4a_7c15u64);
        for case in 0..20_000 {
            let len = (next() % 300) as usize;
            let chunk: Vec<u8> = (0..len)
                .map(|_| BYTES[(next() % BYTES.len() as u64) as usize])
                .collect();
            let flags = next();
            let start = || ScanState {
                depth: (flags % 3) as usize,
                in_string: flags & 4 != 0,
                escape: flags & 12 == 12,
                newlines: 0,
            };
            let at_line_start = flags & 16 != 0;
            let (mut got, mut want) = (start(), start());
            let got_end = scan(&chunk, &mut got, at_line_start);
            let want_end = reference_scan(&chunk, &mut want, at_line_start);
            let input = String::from_utf8_lossy(&chunk);
            assert_eq!(got_end, want_end, "case {case}: {input:?}");
            let consumed = &chunk[..got_end.0];
            assert_eq!(
                got.newlines,
                memchr::memchr_iter(b'\n', consumed).count() as u64,
                "case {case}: {input:?}"
            );
            assert_eq!(
                (got.depth, got.in_string, got.escape),
                (want.depth, want.in_string, want.escape),
                "case {case}: {input:?}"
            );
        }
    }

    const BUFFERS: [usize; 8] = [1, 2, 3, 5, 7, 16, 64, READ_BUFFER];

    fn frames(input: &[u8], buffer: usize, max: usize) -> Vec<Frame> {
        let mut s = RecordSplitter::with_buffer(input, "t", max, buffer);
        let mut out = Vec::new();
        while let Some(f) = s.next_frame().unwrap() {
            out.push(f);
        }
        out
    }

    /// Frames as `text@line:offset` or `DEAD@line:offset:reason`.
    fn describe(input: &[u8], buffer: usize, max: usize) -> Vec<String> {
        frames(input, buffer, max)
            .iter()
            .map(|f| match f {
                Frame::Record(r) => format!(
                    "{}@{}:{}",
                    String::from_utf8_lossy(&r.bytes),
                    r.origin.line,
                    r.origin.offset
                ),
                Frame::Dead(d) => format!("DEAD@{}:{}:{}", d.line, d.offset, d.reason),
            })
            .collect()
    }

    /// The same frames at every buffer size, so records and bad input
    /// spanning refills are covered.
    fn describe_all_buffers(input: &[u8], max: usize) -> Vec<String> {
        let expected = describe(input, READ_BUFFER, max);
        for buffer in BUFFERS {
            assert_eq!(describe(input, buffer, max), expected, "buffer {buffer}");
        }
        expected
    }

    #[test]
    fn json_lines() {
        let got = describe_all_buffers(
            b"{\"a\":1}\n{\"b\":\"x}{\\\"\"}\r\n\n{\"c\":[{}]}\n",
            1 << 20,
        );
        assert_eq!(
            got,
            [
                "{\"a\":1}@1:0",
                "{\"b\":\"x}{\\\"\"}@2:8",
                "{\"c\":[{}]}@4:24"
            ]
        );
    }

    #[test]
    fn pretty_printed_objects() {
        let input = b"{\n  \"a\": {\n    \"b\": [1, 2]\n  }\n}\n{\n  \"c\": \"}\"\n}\n";
        let got = describe_all_buffers(input, 1 << 20);
        assert_eq!(
            got,
            [
                "{\n  \"a\": {\n    \"b\": [1, 2]\n  }\n}@1:0",
                "{\n  \"c\": \"}\"\n}@6:33"
            ]
        );
    }

    #[test]
    fn concatenated_objects_with_and_without_whitespace() {
        let got = describe_all_buffers(b"{\"a\":1}{\"b\":2} {\"c\":3}\n\t{\"d\":4}", 1 << 20);
        assert_eq!(
            got,
            [
                "{\"a\":1}@1:0",
                "{\"b\":2}@1:7",
                "{\"c\":3}@1:15",
                "{\"d\":4}@2:24"
            ]
        );
    }

    #[test]
    fn arrays_of_objects_become_records() {
        let input = b"[\n  {\"a\": 1},\n  {\"b\": [2]}\n]\n[{\"c\":3},{\"d\":4}][]\n";
        let got = describe_all_buffers(input, 1 << 20);
        assert_eq!(
            got,
            [
                "{\"a\": 1}@2:4",
                "{\"b\": [2]}@3:16",
                "{\"c\":3}@5:30",
                "{\"d\":4}@5:38"
            ]
        );
    }

    /// Regression: lines of only brackets or commas were skipped as array
    /// structure and became neither events nor dead letters.
    #[test]
    fn brackets_and_commas_outside_an_array_of_objects_are_reported() {
        let input = b"[[[[\n]]]]\n,,,\n{\"a\":1}\n[{\"b\":2},]\n[\n{\"c\":3},\n";
        let got = describe_all_buffers(input, 1 << 20);
        let skipped = "; skipped to the end of the line";
        assert_eq!(
            got,
            [
                format!("DEAD@1:1:not JSON: expected an object, found '['{skipped}"),
                format!("DEAD@2:5:not JSON: expected an object, found ']'{skipped}"),
                format!("DEAD@3:10:not JSON: expected an object, found ','{skipped}"),
                "{\"a\":1}@4:14".to_string(),
                "{\"b\":2}@5:23".to_string(),
                "{\"c\":3}@7:35".to_string(),
                "DEAD@6:33:not JSON: the array opened at line 6 is not closed at the end of the input".to_string(),
            ]
        );
    }

    #[test]
    fn a_byte_order_mark_is_skipped() {
        let got = describe_all_buffers(b"\xef\xbb\xbf{\"a\":1}\n", 1 << 20);
        assert_eq!(got, ["{\"a\":1}@1:3"]);
    }

    #[test]
    fn garbage_is_skipped_to_the_end_of_its_line_and_reported_once() {
        let input = b"{\"a\":1}\n\x00\xff garbage {\"x\":1}\nnot json either\n[1, 2]\n{\"b\":2}\n";
        let got = describe_all_buffers(input, 1 << 20);
        let skipped = "; skipped to the end of the line";
        assert_eq!(
            got,
            [
                "{\"a\":1}@1:0".to_string(),
                format!("DEAD@2:8:not JSON: expected an object, found byte 0x00{skipped}"),
                format!("DEAD@3:27:not JSON: expected an object, found 'n'{skipped}"),
                format!("DEAD@4:44:not JSON: expected an object, found '1'{skipped}"),
                "{\"b\":2}@5:50".to_string(),
            ]
        );
    }

    #[test]
    fn garbage_excerpt_is_its_line() {
        let mut input = b"oops".to_vec();
        input.extend(std::iter::repeat_n(b'x', 1000));
        input.extend_from_slice(b"\n{\"a\":1}");
        for buffer in BUFFERS {
            let fs = frames(&input, buffer, 1 << 20);
            let Frame::Dead(d) = &fs[0] else {
                panic!("{fs:?}")
            };
            assert_eq!(d.excerpt.len(), EXCERPT_BYTES);
            assert!(d.excerpt.starts_with("oopsxxx"));
            assert!(matches!(&fs[1], Frame::Record(r) if r.origin.line == 2));
        }
        let fs = frames(b"oops\n", 3, 1 << 20);
        assert!(matches!(&fs[..], [Frame::Dead(d)] if d.excerpt == "oops"));
    }

    #[test]
    fn an_unterminated_string_ends_at_its_line() {
        let input = b"{\"a\": \"unterminated}\n{\"b\":2}\n{\"c\": \"x\\\n{\"d\":4}\n";
        let got = describe_all_buffers(input, 1 << 20);
        assert_eq!(got.len(), 4, "{got:?}");
        assert_eq!(
            got[0],
            "DEAD@1:0:invalid JSON: a string is not closed before the end of the line"
        );
        assert_eq!(got[1], "{\"b\":2}@2:21");
        assert!(got[2].starts_with("DEAD@3:29:invalid JSON: a string is not closed"));
        assert_eq!(got[3], "{\"d\":4}@4:39");
    }

    #[test]
    fn a_truncated_line_ends_where_the_next_object_starts() {
        let input = b"{\"a\": {\"b\": 1}\n{\"c\":2}\n{\"d\": [1,\n{\"e\":3}\n";
        let got = describe_all_buffers(input, 1 << 20);
        assert_eq!(
            got,
            [
                "DEAD@1:0:truncated record: the object is not closed before a new object starts at line 2",
                "{\"c\":2}@2:15",
                "DEAD@3:23:truncated record: the object is not closed before a new object starts at line 4",
                "{\"e\":3}@4:33",
            ]
        );
    }

    #[test]
    fn the_end_of_input_inside_an_object_is_a_truncation() {
        let got = describe_all_buffers(b"{\"a\":1}\n{\"b\": {\"c\": \"x\"", 1 << 20);
        assert_eq!(
            got,
            [
                "{\"a\":1}@1:0",
                "DEAD@2:8:truncated record: the input ends inside an object"
            ]
        );
    }

    #[test]
    fn oversize_records_are_skipped_without_buffering() {
        let max = 1000;
        let mut input = b"{\"a\":1}\n{\"big\": \"".to_vec();
        input.extend(std::iter::repeat_n(b'x', 100_000));
        input.extend_from_slice(b"\"}\n{\"b\":2}\n{\"c\": [");
        input.extend(std::iter::repeat_n(b'1', 5000));
        // Never closes: ends where the next line's object starts.
        input.extend_from_slice(b"\n{\"d\":4}\n");
        let limit = format!("record exceeds {max} bytes; skipped");
        for buffer in [7, 4096, READ_BUFFER] {
            let mut s = RecordSplitter::with_buffer(&input[..], "t", max, buffer);
            let mut got = Vec::new();
            while let Some(f) = s.next_frame().unwrap() {
                got.push(f);
            }
            assert!(s.largest_buffer <= max, "buffered {}", s.largest_buffer);
            assert!(matches!(&got[0], Frame::Record(r) if r.bytes == b"{\"a\":1}"));
            let Frame::Dead(d) = &got[1] else {
                panic!("{got:?}")
            };
            assert_eq!((d.line, d.reason.as_str()), (2, limit.as_str()));
            assert!(d.excerpt.starts_with("{\"big\": \"xxx") && d.excerpt.len() == EXCERPT_BYTES);
            assert!(matches!(&got[2], Frame::Record(r) if r.origin.line == 3));
            assert!(matches!(&got[3], Frame::Dead(d) if d.line == 4 && d.reason == limit));
            assert!(
                matches!(&got[4], Frame::Record(r) if r.origin.line == 5 && r.bytes == b"{\"d\":4}")
            );
            assert_eq!(got.len(), 5);
        }
    }

    #[test]
    fn a_record_of_exactly_the_limit_is_kept() {
        let got = describe(b"{\"a\":1}{\"a\":12}", 4, 7);
        assert_eq!(got[0], "{\"a\":1}@1:0");
        assert_eq!(got[1], "DEAD@1:7:record exceeds 7 bytes; skipped");
    }

    #[test]
    fn live_edge_and_bytes_read() {
        let mut s = RecordSplitter::new(&b"{\"a\":1}\n  "[..], "t", 100);
        assert!(matches!(s.next_frame().unwrap(), Some(Frame::Record(_))));
        assert!(s.at_live_edge());
        assert!(s.next_frame().unwrap().is_none());
        assert_eq!(s.bytes_read(), 10);
    }
}
