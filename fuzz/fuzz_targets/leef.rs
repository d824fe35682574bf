//! Framing, parsing and decoding of the `leef` input format.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| vagt_fuzz::read(vagt_connectors::Format::Leef, data));
