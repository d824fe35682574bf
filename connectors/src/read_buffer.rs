//! The read buffer the splitters frame from: refilled from its reader once
//! everything in it is consumed, remembering whether the last read came
//! back short (the live edge of a pipe or socket) or met the end.

use std::io::{self, Read};

/// A reader's bytes, read a buffer at a time.
#[derive(Debug)]
pub(crate) struct ReadBuffer<R> {
    reader: R,
    buf: Vec<u8>,
    pos: usize,
    filled: usize,
    eof: bool,
    last_read_short: bool,
}

impl<R: Read> ReadBuffer<R> {
    /// A buffer of `size` bytes (at least 1) over `reader`.
    pub(crate) fn new(reader: R, size: usize) -> Self {
        ReadBuffer {
            reader,
            buf: vec![0; size.max(1)],
            pos: 0,
            filled: 0,
            eof: false,
            last_read_short: false,
        }
    }

    /// Makes sure unread bytes are buffered; false at the end of input.
    pub(crate) fn fill(&mut self) -> io::Result<bool> {
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

    /// Moves the unread bytes to the front of the buffer and reads once
    /// more after them, for a line that runs past what was read; false if
    /// the unread bytes fill the buffer or the input has ended.
    pub(crate) fn read_more(&mut self) -> io::Result<bool> {
        if self.eof {
            return Ok(false);
        }
        self.buf.copy_within(self.pos..self.filled, 0);
        self.filled -= self.pos;
        self.pos = 0;
        let room = self.buf.len() - self.filled;
        if room == 0 {
            return Ok(false);
        }
        loop {
            match self.reader.read(&mut self.buf[self.filled..]) {
                Ok(0) => {
                    self.eof = true;
                    return Ok(false);
                }
                Ok(n) => {
                    self.filled += n;
                    self.last_read_short = n < room;
                    return Ok(true);
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            }
        }
    }

    /// The bytes read and not consumed yet.
    pub(crate) fn unread(&self) -> &[u8] {
        &self.buf[self.pos..self.filled]
    }

    /// Marks the first `n` unread bytes consumed.
    pub(crate) fn consume(&mut self, n: usize) {
        self.pos += n;
    }

    /// Whether the last read came back short or met the end: the next
    /// read may wait.
    pub(crate) fn read_short(&self) -> bool {
        self.last_read_short || self.eof
    }
}
