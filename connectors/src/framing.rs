//! Record framing: splits a byte stream into JSON object texts without
//! parsing them. Accepts JSON lines, pretty-printed (multi-line) objects,
//! concatenated objects, and top-level arrays of objects, mixed freely.
//!
//! Malformed input becomes a [`DeadLetter`] and scanning resumes at the
//! next sensible boundary:
//! - bytes outside any object that are not JSON structure (garbage) are
//!   skipped to the end of their line;
//! - a raw newline inside a string ends the record (JSON strings cannot
//!   hold one), so a broken line does not swallow the next;
//! - a `{` at the start of a line while an object is still open means that
//!   object was truncated; the new object starts fresh;
//! - a record longer than the limit is skipped without being buffered.

use std::collections::VecDeque;
use std::io::{self, Read};

use crate::dead_letter::{excerpt, DeadLetter};

/// Where a record starts in its source.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Origin {
    /// 1-based line.
    pub line: u64,
    /// Byte offset.
    pub offset: u64,
}

/// One object's text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    /// The object text, `{` to `}`.
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

/// Default buffer size for reads.
pub const READ_BUFFER: usize = 64 * 1024;

/// Splits a stream into [`Frame`]s.
#[derive(Debug)]
pub struct RecordSplitter<R> {
    reader: R,
    name: String,
    max_record_bytes: usize,
    buf: Vec<u8>,
    pos: usize,
    filled: usize,
    eof: bool,
    last_read_short: bool,
    line: u64,
    offset: u64,
    at_line_start: bool,
    in_array: bool,
    pending: VecDeque<Frame>,
}

impl<R: Read> RecordSplitter<R> {
    /// A splitter over `reader`, naming it `name` in dead letters.
    pub fn new(reader: R, name: impl Into<String>, max_record_bytes: usize) -> Self {
        Self::with_buffer(reader, name, max_record_bytes, READ_BUFFER)
    }

    /// As [`RecordSplitter::new`] with a given read-buffer size.
    pub fn with_buffer(
        reader: R,
        name: impl Into<String>,
        max_record_bytes: usize,
        buffer: usize,
    ) -> Self {
        RecordSplitter {
            reader,
            name: name.into(),
            max_record_bytes,
            buf: vec![0; buffer.max(1)],
            pos: 0,
            filled: 0,
            eof: false,
            last_read_short: false,
            line: 1,
            offset: 0,
            at_line_start: true,
            in_array: false,
            pending: VecDeque::new(),
        }
    }

    /// True when everything read so far has been consumed (but whitespace)
    /// and the last
    /// read returned less than asked for: the reader is at the live edge of
    /// a pipe or socket (or at the end of a file), so the next read may
    /// wait. Callers flush partial batches here to keep latency low while
    /// files still get full batches.
    pub fn at_live_edge(&self) -> bool {
        (self.last_read_short || self.eof)
            && self.buf[self.pos..self.filled]
                .iter()
                .all(|b| b.is_ascii_whitespace())
    }

    /// Bytes consumed so far.
    pub fn bytes_read(&self) -> u64 {
        self.offset
    }

    fn fill(&mut self) -> io::Result<bool> {
        if self.pos < self.filled {
            return Ok(true);
        }
        if self.eof {
            return Ok(false);
        }
        loop {
            match self.reader.read(&mut self.buf) {
                Ok(0) => {
                    self.eof = true;
                    return Ok(false);
                }
                Ok(n) => {
                    self.pos = 0;
                    self.filled = n;
                    self.last_read_short = n < self.buf.len();
                    return Ok(true);
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            }
        }
    }

    fn advance(&mut self, n: usize) {
        let consumed = &self.buf[self.pos..self.pos + n];
        let newlines = memchr::memchr_iter(b'\n', consumed).count();
        if newlines > 0 {
            self.line += newlines as u64;
        }
        if let Some(&last) = consumed.last() {
            self.at_line_start = last == b'\n';
        }
        self.pos += n;
        self.offset += n as u64;
    }

    fn dead(&self, origin: Origin, reason: String, bytes: &[u8]) -> Frame {
        Frame::Dead(DeadLetter {
            source: self.name.clone(),
            line: origin.line,
            offset: origin.offset,
            reason,
            excerpt: excerpt(bytes),
        })
    }

    /// The next frame, or `None` at the end of the stream.
    pub fn next_frame(&mut self) -> io::Result<Option<Frame>> {
        loop {
            if let Some(f) = self.pending.pop_front() {
                return Ok(Some(f));
            }
            if !self.fill()? {
                return Ok(None);
            }
            let b = self.buf[self.pos];
            match b {
                b' ' | b'\t' | b'\r' | b'\n' => self.advance(1),
                b'{' => return self.read_record().map(Some),
                b'[' if !self.in_array => {
                    self.in_array = true;
                    self.advance(1);
                }
                b',' if self.in_array => self.advance(1),
                b']' if self.in_array => {
                    self.in_array = false;
                    self.advance(1);
                }
                _ => return self.skip_garbage().map(Some),
            }
        }
    }

    fn skip_garbage(&mut self) -> io::Result<Frame> {
        let origin = Origin {
            line: self.line,
            offset: self.offset,
        };
        let first = self.buf[self.pos];
        let mut seen = Vec::new();
        loop {
            if !self.fill()? {
                break;
            }
            let chunk = &self.buf[self.pos..self.filled];
            match memchr::memchr(b'\n', chunk) {
                Some(i) => {
                    if seen.len() < 160 {
                        seen.extend_from_slice(&chunk[..i.min(160)]);
                    }
                    self.advance(i + 1);
                    break;
                }
                None => {
                    if seen.len() < 160 {
                        seen.extend_from_slice(&chunk[..chunk.len().min(160)]);
                    }
                    let n = chunk.len();
                    self.advance(n);
                }
            }
        }
        // Whatever array we were in is broken.
        self.in_array = false;
        let what = if first.is_ascii_graphic() {
            format!("'{}'", first as char)
        } else {
            format!("byte 0x{first:02x}")
        };
        Ok(self.dead(
            origin,
            format!("not JSON: expected an object, found {what}; skipped to the end of the line"),
            &seen,
        ))
    }

    fn read_record(&mut self) -> io::Result<Frame> {
        let origin = Origin {
            line: self.line,
            offset: self.offset,
        };
        let mut bytes: Vec<u8> = Vec::new();
        let mut oversize = false;
        let mut kept_excerpt: Vec<u8> = Vec::new();
        let mut depth: usize = 0;
        let mut in_string = false;
        let mut escape = false;
        let mut first = true;
        loop {
            if !self.fill()? {
                let sample = if oversize { kept_excerpt } else { bytes };
                return Ok(self.dead(
                    origin,
                    "truncated record: the input ends inside an object".into(),
                    &sample,
                ));
            }
            let start = self.pos;
            let mut end_kind = None;
            let mut i = start;
            while i < self.filled {
                if in_string {
                    if escape {
                        escape = false;
                        i += 1;
                        continue;
                    }
                    // Most bytes of an event are inside strings: jump to
                    // the next quote, backslash or (invalid) newline.
                    match memchr::memchr3(b'"', b'\\', b'\n', &self.buf[i..self.filled]) {
                        None => {
                            i = self.filled;
                            break;
                        }
                        Some(k) => {
                            i += k;
                            match self.buf[i] {
                                b'\\' => escape = true,
                                b'"' => in_string = false,
                                _ => {
                                    end_kind = Some(End::BrokenString);
                                    i += 1;
                                    break;
                                }
                            }
                            i += 1;
                            continue;
                        }
                    }
                }
                let b = self.buf[i];
                let col0 = if i == start {
                    self.at_line_start
                } else {
                    self.buf[i - 1] == b'\n'
                };
                match b {
                    b'"' => in_string = true,
                    b'{' if col0 && !first && depth > 0 => {
                        end_kind = Some(End::Truncated);
                        break;
                    }
                    b'{' | b'[' => depth += 1,
                    b'}' | b']' => {
                        depth = depth.saturating_sub(1);
                        if depth == 0 {
                            end_kind = Some(End::Closed);
                            i += 1;
                            break;
                        }
                    }
                    _ => {}
                }
                first = false;
                i += 1;
            }
            let chunk_len = i - start;
            if !oversize {
                bytes.extend_from_slice(&self.buf[start..i]);
                if bytes.len() > self.max_record_bytes {
                    oversize = true;
                    kept_excerpt = bytes[..bytes.len().min(160)].to_vec();
                    bytes = Vec::new();
                }
            }
            self.advance(chunk_len);
            match end_kind {
                None => continue,
                Some(kind) => {
                    let sample = if oversize {
                        kept_excerpt.clone()
                    } else {
                        bytes.clone()
                    };
                    if oversize {
                        return Ok(self.dead(
                            origin,
                            format!("record exceeds {} bytes; skipped", self.max_record_bytes),
                            &sample,
                        ));
                    }
                    return Ok(match kind {
                        End::Closed => Frame::Record(Record { bytes, origin }),
                        End::BrokenString => self.dead(
                            origin,
                            "invalid JSON: a string is not closed before the end of the line".into(),
                            &sample,
                        ),
                        End::Truncated => self.dead(
                            origin,
                            format!("truncated record: object not closed before a new object at line {}", self.line),
                            &sample,
                        ),
                    });
                }
            }
        }
    }
}

#[derive(Debug, Clone, Copy)]
enum End {
    Closed,
    BrokenString,
    Truncated,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frames(input: &[u8], buffer: usize, max: usize) -> Vec<Frame> {
        let mut s = RecordSplitter::with_buffer(input, "t", max, buffer);
        let mut out = Vec::new();
        while let Some(f) = s.next_frame().unwrap() {
            out.push(f);
        }
        out
    }

    fn texts(fs: &[Frame]) -> Vec<String> {
        fs.iter()
            .map(|f| match f {
                Frame::Record(r) => {
                    format!("{}@{}", String::from_utf8_lossy(&r.bytes), r.origin.line)
                }
                Frame::Dead(d) => format!("DEAD@{}:{}", d.line, d.reason),
            })
            .collect()
    }

    #[test]
    fn all_shapes_at_every_buffer_size() {
        let input = b"{\"a\":1}\n{\"b\":\"x}{\"}\n{\n  \"c\": {\"d\": [1, 2]}\n}{\"e\":3}\n[\n {\"f\":4},\n {\"g\":5}\n]\n";
        for buffer in [1, 2, 3, 7, 64, 4096] {
            let got = texts(&frames(input, buffer, 1 << 20));
            assert_eq!(
                got,
                vec![
                    "{\"a\":1}@1",
                    "{\"b\":\"x}{\"}@2",
                    "{\n  \"c\": {\"d\": [1, 2]}\n}@3",
                    "{\"e\":3}@5",
                    "{\"f\":4}@7",
                    "{\"g\":5}@8",
                ],
                "buffer {buffer}"
            );
        }
    }

    #[test]
    fn garbage_broken_strings_and_truncation_resync() {
        let input = b"{\"a\":1}\n\x00\xff garbage\n{\"b\": \"unterminated}\n{\"c\": {\"d\": 1}\n{\"e\":2}\n{\"f\":3";
        let got = texts(&frames(input, 5, 1 << 20));
        assert_eq!(got.len(), 6, "{got:?}");
        assert_eq!(got[0], "{\"a\":1}@1");
        assert!(
            got[1].starts_with("DEAD@2:not JSON") && got[1].contains("0x00"),
            "{}",
            got[1]
        );
        assert!(
            got[2].starts_with("DEAD@3:invalid JSON: a string is not closed"),
            "{}",
            got[2]
        );
        assert!(got[3].starts_with("DEAD@4:truncated record"), "{}", got[3]);
        assert_eq!(got[4], "{\"e\":2}@5");
        assert!(
            got[5].starts_with("DEAD@6:truncated record: the input ends"),
            "{}",
            got[5]
        );
    }

    #[test]
    fn oversize_records_are_skipped_without_buffering() {
        let mut input = b"{\"a\":1}\n{\"big\": \"".to_vec();
        input.extend(std::iter::repeat_n(b'x', 100_000));
        input.extend_from_slice(b"\"}\n{\"b\":2}\n");
        let got = texts(&frames(&input, 4096, 1000));
        assert_eq!(got[0], "{\"a\":1}@1");
        assert!(
            got[1].starts_with("DEAD@2:record exceeds 1000 bytes"),
            "{}",
            got[1]
        );
        assert_eq!(got[2], "{\"b\":2}@3");
    }
}
