//! Syslog framing over a TCP or TLS stream (octet counting or newlines),
//! fed in pieces of a size the input chooses: no panic, messages within
//! the limit, offsets increasing, and the same frames whatever the pieces.
#![no_main]

use bytes::BytesMut;
use tokio_util::codec::Decoder;
use vagt_connectors::live::syslog::codec::{SyslogCodec, SyslogFrame};

const LIMIT: usize = 64;

fn frames(data: &[u8], step: usize) -> Vec<SyslogFrame> {
    let mut codec = SyslogCodec::new(LIMIT);
    let mut buf = BytesMut::new();
    let mut out = Vec::new();
    for piece in data.chunks(step) {
        buf.extend_from_slice(piece);
        while let Some(frame) = codec.decode(&mut buf).expect("decoding never fails") {
            out.push(frame);
        }
        assert!(buf.len() <= LIMIT + 11 + step, "at most one message is held");
    }
    while let Some(frame) = codec.decode_eof(&mut buf).expect("decoding never fails") {
        out.push(frame);
    }
    out
}

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let Some((&step, data)) = data.split_first() else { return };
    let pieces = frames(data, usize::from(step).max(1));
    let whole = frames(data, data.len().max(1));
    assert_eq!(pieces, whole, "the pieces do not change the frames");
    let mut last = None;
    for frame in &pieces {
        assert!(last.is_none_or(|l| frame.offset > l), "offsets increase");
        assert!(frame.offset < data.len() as u64);
        last = Some(frame.offset);
        if let Ok(message) = &frame.body {
            assert!(message.len() <= LIMIT);
        }
    }
});
