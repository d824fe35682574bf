//! HTTP ingest bodies: gzip and deflate decoding within the size limit.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let limit = 64 * 1024;
    for gzip in [true, false] {
        if let Ok(decoded) = vagt_connectors::live::http::decode_content(gzip, data, limit) {
            assert!(decoded.len() <= limit + 1);
        }
    }
});
