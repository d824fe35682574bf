//! Syslog over a byte stream (RFC 6587, RFC 5425): each message is either
//! octet-counted (`LEN SP MSG`, LEN 1 to 10 digits) or ends at a newline,
//! told apart per message by its first byte, as senders mix both. Decoding
//! (for the listeners) and encoding (octet counting, for the syslog
//! output) are one [`SyslogCodec`], a tokio-util codec.
//!
//! A message longer than the limit is not held: its first bytes are kept
//! as a sample and the rest is skipped as it arrives, so that a sender
//! cannot make vagt buffer more than the limit.

use bytes::{Buf, BufMut, BytesMut};
use tokio_util::codec::{Decoder, Encoder};

/// How much of a refused message is kept to show in its dead letter.
const SAMPLE_BYTES: usize = 160;

/// One message taken off the stream, or why one was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyslogFrame {
    /// Where the message starts in the stream.
    pub offset: u64,
    /// The message (without its length prefix or newline), or why not.
    pub body: Result<BytesMut, RefusedMessage>,
}

/// A message that was skipped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RefusedMessage {
    /// Why.
    pub reason: String,
    /// Its first bytes.
    pub sample: Vec<u8>,
}

/// What the decoder is in the middle of.
#[derive(Debug, Clone, PartialEq, Eq)]
enum State {
    /// Between messages.
    Idle,
    /// An octet-counted message of this many bytes starting at `offset`.
    Counted { offset: u64, len: usize },
    /// Skipping the rest of an oversized message, then reporting it.
    Skipping {
        offset: u64,
        remaining: SkipUntil,
        refused: RefusedMessage,
    },
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum SkipUntil {
    /// This many more bytes.
    Bytes(usize),
    /// The next newline.
    Newline,
}

/// Frames syslog messages in a byte stream, and frames messages to send.
#[derive(Debug, Clone)]
pub struct SyslogCodec {
    limit: usize,
    /// Bytes of the stream consumed so far.
    consumed: u64,
    state: State,
}

impl SyslogCodec {
    /// A codec refusing messages longer than `limit` bytes.
    pub fn new(limit: usize) -> SyslogCodec {
        SyslogCodec {
            limit,
            consumed: 0,
            state: State::Idle,
        }
    }

    /// Whether the decoder is between messages (nothing partly read).
    pub fn is_between_messages(&self) -> bool {
        self.state == State::Idle
    }

    fn advance(&mut self, buf: &mut BytesMut, n: usize) {
        buf.advance(n);
        self.consumed += n as u64;
    }

    fn take(&mut self, buf: &mut BytesMut, n: usize) -> BytesMut {
        self.consumed += n as u64;
        buf.split_to(n)
    }

    /// Starts skipping an oversized message (keeping its first bytes).
    fn refuse(&mut self, offset: u64, remaining: SkipUntil, reason: String) {
        self.state = State::Skipping {
            offset,
            remaining,
            refused: RefusedMessage {
                reason,
                sample: Vec::with_capacity(SAMPLE_BYTES),
            },
        };
    }

    /// A message's length prefix, if the buffer starts with one: `Some(None)`
    /// when more bytes are needed to tell.
    fn length_prefix(buf: &[u8]) -> Option<Option<(usize, usize)>> {
        let digits = buf
            .iter()
            .take(11)
            .take_while(|b| b.is_ascii_digit())
            .count();
        match buf.get(digits) {
            None if digits <= 10 => Some(None),
            Some(b' ') if (1..=10).contains(&digits) => {
                let len = std::str::from_utf8(&buf[..digits]).ok()?.parse().ok()?;
                Some(Some((len, digits + 1)))
            }
            _ => None,
        }
    }

    fn decode_line(&mut self, buf: &mut BytesMut, at_eof: bool) -> Option<SyslogFrame> {
        let offset = self.consumed;
        match memchr::memchr(b'\n', buf) {
            Some(end) if end <= self.limit => {
                let message = self.take(buf, end);
                self.advance(buf, 1);
                Some(SyslogFrame {
                    offset,
                    body: Ok(message),
                })
            }
            None if buf.len() <= self.limit => {
                // The last line of a stream needs no newline.
                at_eof.then(|| {
                    let message = self.take(buf, buf.len());
                    SyslogFrame {
                        offset,
                        body: Ok(message),
                    }
                })
            }
            _ => {
                let reason = format!("line exceeds {} bytes; skipped", self.limit);
                self.refuse(offset, SkipUntil::Newline, reason);
                None
            }
        }
    }

    fn decode_frame(
        &mut self,
        buf: &mut BytesMut,
        at_eof: bool,
    ) -> Result<Option<SyslogFrame>, std::io::Error> {
        loop {
            match &mut self.state {
                State::Idle => {
                    let blank = buf.iter().take_while(|b| b.is_ascii_whitespace()).count();
                    self.advance(buf, blank);
                    if buf.is_empty() {
                        return Ok(None);
                    }
                    if !buf[0].is_ascii_digit() {
                        match self.decode_line(buf, at_eof) {
                            Some(frame) => return Ok(Some(frame)),
                            None if matches!(self.state, State::Skipping { .. }) => continue,
                            None => return Ok(None),
                        }
                    }
                    match Self::length_prefix(buf) {
                        Some(Some((len, prefix))) => {
                            let offset = self.consumed;
                            self.advance(buf, prefix);
                            if len > self.limit {
                                let reason = format!(
                                    "message of {len} bytes exceeds {}; skipped",
                                    self.limit
                                );
                                self.refuse(offset, SkipUntil::Bytes(len), reason);
                            } else {
                                self.state = State::Counted { offset, len };
                            }
                        }
                        // Digits so far: a length or the start of a line.
                        Some(None) if !at_eof => return Ok(None),
                        // Not a length: the digits start a line.
                        _ => match self.decode_line(buf, at_eof) {
                            Some(frame) => return Ok(Some(frame)),
                            None if matches!(self.state, State::Skipping { .. }) => continue,
                            None => return Ok(None),
                        },
                    }
                }
                State::Counted { offset, len } => {
                    let (offset, len) = (*offset, *len);
                    if buf.len() < len {
                        buf.reserve(len - buf.len());
                        return Ok(None);
                    }
                    self.state = State::Idle;
                    let message = self.take(buf, len);
                    return Ok(Some(SyslogFrame {
                        offset,
                        body: Ok(message),
                    }));
                }
                State::Skipping {
                    remaining, refused, ..
                } => {
                    // (bytes of the message skipped, bytes consumed, done)
                    let (content, skip, done) = match remaining {
                        SkipUntil::Bytes(n) => {
                            let skip = (*n).min(buf.len());
                            *n -= skip;
                            (skip, skip, *n == 0)
                        }
                        SkipUntil::Newline => match memchr::memchr(b'\n', buf) {
                            Some(end) => (end, end + 1, true),
                            None => (buf.len(), buf.len(), at_eof),
                        },
                    };
                    let wanted = SAMPLE_BYTES.saturating_sub(refused.sample.len());
                    refused
                        .sample
                        .extend_from_slice(&buf[..wanted.min(content)]);
                    self.advance(buf, skip);
                    if !done {
                        return Ok(None);
                    }
                    let State::Skipping {
                        offset, refused, ..
                    } = std::mem::replace(&mut self.state, State::Idle)
                    else {
                        unreachable!("in the skipping state")
                    };
                    return Ok(Some(SyslogFrame {
                        offset,
                        body: Err(refused),
                    }));
                }
            }
        }
    }
}

impl Decoder for SyslogCodec {
    type Item = SyslogFrame;
    type Error = std::io::Error;

    fn decode(&mut self, buf: &mut BytesMut) -> Result<Option<SyslogFrame>, std::io::Error> {
        self.decode_frame(buf, false)
    }

    fn decode_eof(&mut self, buf: &mut BytesMut) -> Result<Option<SyslogFrame>, std::io::Error> {
        if let Some(frame) = self.decode_frame(buf, true)? {
            return Ok(Some(frame));
        }
        // The stream ended inside a message.
        match std::mem::replace(&mut self.state, State::Idle) {
            State::Idle => Ok(None),
            State::Counted { offset, len } => {
                let partial = buf.split();
                self.consumed += partial.len() as u64;
                Ok(Some(SyslogFrame {
                    offset,
                    body: Err(RefusedMessage {
                        reason: format!(
                            "the connection ended inside a message: {} of {len} bytes received",
                            partial.len()
                        ),
                        sample: partial[..SAMPLE_BYTES.min(partial.len())].to_vec(),
                    }),
                }))
            }
            State::Skipping {
                offset,
                mut refused,
                ..
            } => {
                refused.reason.push_str(" (the connection ended inside it)");
                Ok(Some(SyslogFrame {
                    offset,
                    body: Err(refused),
                }))
            }
        }
    }
}

/// Frames one message to send by octet counting (`LEN SP MSG`), which,
/// unlike newlines, carries any message intact.
impl Encoder<&[u8]> for SyslogCodec {
    type Error = std::io::Error;

    fn encode(&mut self, message: &[u8], dst: &mut BytesMut) -> Result<(), std::io::Error> {
        let mut len = itoa::Buffer::new();
        let len = len.format(message.len());
        dst.reserve(len.len() + 1 + message.len());
        dst.put_slice(len.as_bytes());
        dst.put_u8(b' ');
        dst.put_slice(message);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Feeds `input` in pieces of `step` bytes, then ends it.
    fn decode_all(input: &[u8], step: usize, limit: usize) -> Vec<(u64, Result<String, String>)> {
        let mut codec = SyslogCodec::new(limit);
        let mut buf = BytesMut::new();
        let mut out = Vec::new();
        let mut push = |frame: SyslogFrame| {
            out.push((
                frame.offset,
                frame
                    .body
                    .map(|m| String::from_utf8_lossy(&m).into_owned())
                    .map_err(|r| r.reason),
            ))
        };
        for piece in input.chunks(step.max(1)) {
            buf.extend_from_slice(piece);
            while let Some(frame) = codec.decode(&mut buf).unwrap() {
                push(frame);
            }
        }
        while let Some(frame) = codec.decode_eof(&mut buf).unwrap() {
            push(frame);
        }
        out
    }

    #[test]
    fn counted_and_newline_messages_mix_in_any_pieces() {
        let input = b"11 <34>1 hello\n<13>plain line\n\n 5 abcde17x not a length\n<14>last";
        for step in 1..=input.len() {
            let frames = decode_all(input, step, 1024);
            let messages: Vec<_> = frames.iter().map(|(_, m)| m.clone().unwrap()).collect();
            assert_eq!(
                messages,
                [
                    "<34>1 hello",
                    "<13>plain line",
                    "abcde",
                    "17x not a length",
                    "<14>last"
                ],
                "step {step}"
            );
            let offsets: Vec<u64> = frames.iter().map(|(o, _)| *o).collect();
            assert_eq!(offsets, [0, 15, 32, 39, 56], "step {step}");
        }
    }

    #[test]
    fn oversized_messages_are_refused_and_skipped_without_being_held() {
        let long_line = format!("<1>{}\n<2>next\n", "x".repeat(100));
        let counted = format!("200 {}<3>after\n", "y".repeat(200));
        for step in [1, 7, 1000] {
            let frames = decode_all(long_line.as_bytes(), step, 50);
            assert_eq!(frames[0].1, Err("line exceeds 50 bytes; skipped".into()));
            assert_eq!(frames[1], (104, Ok("<2>next".into())));
            let frames = decode_all(counted.as_bytes(), step, 50);
            assert_eq!(
                frames[0].1,
                Err("message of 200 bytes exceeds 50; skipped".into())
            );
            assert_eq!(frames[1], (204, Ok("<3>after".into())));
        }
        let mut codec = SyslogCodec::new(50);
        let mut buf = BytesMut::from(&b"<1>"[..]);
        buf.extend_from_slice(&[b'z'; 10_000]);
        assert!(codec.decode(&mut buf).unwrap().is_none());
        assert!(buf.is_empty(), "the oversized line is not held");
    }

    #[test]
    fn a_stream_ending_inside_a_counted_message_says_so() {
        let frames = decode_all(b"20 <1>only part", 3, 1024);
        assert_eq!(frames.len(), 1);
        let reason = frames[0].1.clone().unwrap_err();
        assert!(reason.contains("12 of 20 bytes"), "{reason}");
    }

    #[test]
    fn encoded_messages_decode_to_themselves() {
        let messages: [&[u8]; 3] = [b"<34>1 a\nmultiline", b"", b"12 starts with digits"];
        let mut codec = SyslogCodec::new(1024);
        let mut buf = BytesMut::new();
        for m in messages {
            codec.encode(m, &mut buf).unwrap();
        }
        let frames = decode_all(&buf, 4, 1024);
        let decoded: Vec<_> = frames.into_iter().map(|(_, m)| m.unwrap()).collect();
        assert_eq!(decoded, ["<34>1 a\nmultiline", "", "12 starts with digits"]);
    }
}
