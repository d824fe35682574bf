//! The Sigma condition parser.
#![no_main]

libfuzzer_sys::fuzz_target!(|text: &str| {
    let _ = vagt_rules::sigma::condition::parse_condition(text);
});
