//! Line framing for the text formats (syslog, CEF, LEEF, Zeek TSV,
//! logfmt), and [`Framer`], which picks line or JSON-object framing by
//! format.
//!
//! A line ends at `\n` (a `\r` before it is dropped); an empty line is
//! skipped; a line longer than the limit becomes a dead letter without
//! being held in memory, and the lines after it still come out.

use std::io::{self, Read};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use crate::dead_letter::{excerpt, DeadLetter};
use crate::framing::{Frame, Origin, Record, RecordSplitter, READ_BUFFER};
use crate::parse::Format;
use crate::read_buffer::ReadBuffer;

/// Splits a byte stream into lines.
///
/// ```
/// use vagt_connectors::{Frame, LineSplitter};
///
/// let input = &b"<13>Nov 23 09:10:29 host app: one\r\n\n<13>two\n"[..];
/// let frames: Vec<Frame> = LineSplitter::new(input, "example", 1024)
///     .collect::<Result<_, _>>()?;
/// assert_eq!(frames.len(), 2);
/// # Ok::<(), std::io::Error>(())
/// ```
#[derive(Debug)]
pub struct LineSplitter<R> {
    input: ReadBuffer<R>,
    name: String,
    max_record_bytes: usize,
    line: u64,
    offset: u64,
    /// Set when the stream was cut short (a tail stopping): an unfinished
    /// last line is then left for the next run instead of handed out.
    cut_short: Option<Arc<AtomicBool>>,
}

impl<R: Read> LineSplitter<R> {
    /// A splitter over `reader`, naming it `name` in dead letters; lines
    /// longer than `max_record_bytes` become dead letters.
    pub fn new(reader: R, name: impl Into<String>, max_record_bytes: usize) -> Self {
        LineSplitter {
            input: ReadBuffer::new(reader, READ_BUFFER),
            name: name.into(),
            max_record_bytes,
            line: 1,
            offset: 0,
            cut_short: None,
        }
    }

    /// At the end, an unfinished last line is dropped if `flag` is set
    /// (the stream was cut short, and the line will be read whole later).
    pub fn cut_short_by(mut self, flag: Arc<AtomicBool>) -> Self {
        self.cut_short = Some(flag);
        self
    }

    /// Counts lines and offsets from `origin`, for a reader positioned
    /// there (a file resumed where an earlier run stopped).
    pub fn starting_at(mut self, origin: Origin) -> Self {
        self.line = origin.line;
        self.offset = origin.offset;
        self
    }

    /// True when no whole line is buffered and the last read was short:
    /// the next read may wait (for the rest of a line being written, too).
    pub fn at_live_edge(&self) -> bool {
        self.input.read_short() && memchr::memchr(b'\n', self.input.unread()).is_none()
    }

    /// Bytes consumed so far (counted from the starting offset).
    pub fn bytes_read(&self) -> u64 {
        self.offset
    }

    /// The next line, or `None` at the end of the stream.
    ///
    /// # Errors
    /// Reading from the underlying reader failed.
    pub fn next_frame(&mut self) -> io::Result<Option<Frame>> {
        loop {
            let origin = Origin {
                line: self.line,
                offset: self.offset,
            };
            let mut line = Vec::new();
            let mut oversize = false;
            let mut ended = false;
            while self.input.fill()? {
                let chunk = self.input.unread();
                let (take, newline) = match memchr::memchr(b'\n', chunk) {
                    Some(i) => (i + 1, true),
                    None => (chunk.len(), false),
                };
                let content = &chunk[..take - usize::from(newline)];
                if line.len() + content.len() > self.max_record_bytes {
                    if !oversize {
                        let room = self.max_record_bytes.saturating_sub(line.len());
                        line.extend_from_slice(&content[..room.min(content.len())]);
                    }
                    oversize = true;
                } else {
                    line.extend_from_slice(content);
                }
                self.input.consume(take);
                self.offset += take as u64;
                if newline {
                    self.line += 1;
                    ended = true;
                    break;
                }
            }
            if !ended && line.is_empty() && !oversize {
                return Ok(None);
            }
            if !ended
                && self
                    .cut_short
                    .as_ref()
                    .is_some_and(|f| f.load(Ordering::SeqCst))
            {
                return Ok(None);
            }
            if oversize {
                return Ok(Some(Frame::Dead(DeadLetter {
                    source: self.name.clone(),
                    line: origin.line,
                    offset: origin.offset,
                    reason: format!("line exceeds {} bytes; skipped", self.max_record_bytes),
                    excerpt: excerpt(&line),
                })));
            }
            if line.last() == Some(&b'\r') {
                line.pop();
            }
            if line.iter().all(u8::is_ascii_whitespace) {
                continue;
            }
            return Ok(Some(Frame::Record(Record {
                bytes: line,
                origin,
            })));
        }
    }
}

impl<R: Read> Iterator for LineSplitter<R> {
    type Item = io::Result<Frame>;

    fn next(&mut self) -> Option<Self::Item> {
        self.next_frame().transpose()
    }
}

/// Line or JSON-object framing, as the format needs.
#[derive(Debug)]
pub enum Framer<R> {
    /// JSON objects in any layout.
    Json(RecordSplitter<R>),
    /// One record per line.
    Lines(LineSplitter<R>),
}

impl<R: Read> Framer<R> {
    /// The framing `format` needs, over `reader`, starting at `origin`.
    pub fn new(
        format: Format,
        reader: R,
        name: &str,
        max_record_bytes: usize,
        origin: Origin,
    ) -> Self {
        if format.json_framed() {
            Framer::Json(RecordSplitter::new(reader, name, max_record_bytes).starting_at(origin))
        } else {
            Framer::Lines(LineSplitter::new(reader, name, max_record_bytes).starting_at(origin))
        }
    }

    /// The next frame, or `None` at the end of the stream.
    ///
    /// # Errors
    /// Reading from the underlying reader failed.
    pub fn next_frame(&mut self) -> io::Result<Option<Frame>> {
        match self {
            Framer::Json(s) => s.next_frame(),
            Framer::Lines(s) => s.next_frame(),
        }
    }

    /// JSON framing's fast path, [`RecordSplitter::take_line`]; line
    /// framing has none (false).
    ///
    /// # Errors
    /// Reading from the underlying reader failed.
    pub fn take_line(&mut self, take: impl FnOnce(&[u8], Origin) -> bool) -> io::Result<bool> {
        match self {
            Framer::Json(s) => s.take_line(take),
            Framer::Lines(_) => Ok(false),
        }
    }

    /// See [`LineSplitter::cut_short_by`] and
    /// [`RecordSplitter::cut_short_by`].
    pub fn cut_short_by(self, flag: Arc<AtomicBool>) -> Self {
        match self {
            Framer::Lines(s) => Framer::Lines(s.cut_short_by(flag)),
            Framer::Json(s) => Framer::Json(s.cut_short_by(flag)),
        }
    }

    /// See [`RecordSplitter::at_live_edge`].
    pub fn at_live_edge(&self) -> bool {
        match self {
            Framer::Json(s) => s.at_live_edge(),
            Framer::Lines(s) => s.at_live_edge(),
        }
    }

    /// Bytes consumed so far.
    pub fn bytes_read(&self) -> u64 {
        match self {
            Framer::Json(s) => s.bytes_read(),
            Framer::Lines(s) => s.bytes_read(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frames(format: Format, input: &[u8], cut_short: bool) -> Vec<Frame> {
        let flag = Arc::new(AtomicBool::new(cut_short));
        let mut framer = Framer::new(format, input, "test", 1024, Origin { line: 1, offset: 0 })
            .cut_short_by(flag);
        std::iter::from_fn(|| framer.next_frame().unwrap()).collect()
    }

    #[test]
    fn an_unfinished_last_record_is_left_when_cut_short_and_reported_otherwise() {
        for (format, input) in [
            (Format::Logfmt, &b"a=1\nb=2"[..]),
            (Format::Json, &b"{\"a\": 1}\n{\"b\": "[..]),
        ] {
            let whole = frames(format, input, false);
            assert_eq!(whole.len(), 2, "{format}");
            let cut = frames(format, input, true);
            assert_eq!(cut.len(), 1, "{format}: {cut:?}");
            assert!(matches!(cut[0], Frame::Record(_)));
        }
    }

    #[test]
    fn the_live_edge_is_where_no_whole_line_is_buffered() {
        let mut splitter = LineSplitter::new(&b"one\ntw"[..], "test", 1024);
        assert!(matches!(
            splitter.next_frame().unwrap(),
            Some(Frame::Record(_))
        ));
        assert!(splitter.at_live_edge(), "only part of a line is left");
    }
}
