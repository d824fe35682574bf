//! The Sigma loader (YAML, documents, modifiers, conditions, correlations
//! and statistics) and the rule compiler, under both profiles, and the
//! compiled rules over a small batch.
#![no_main]

use std::sync::OnceLock;

use vagt_connectors::{read_bytes, DecoderConfig, EventBatch, ReadOptions};
use vagt_rules::{load_text, Placeholders, Profile, RuleCollection, RuleSetBuilder};

fn events() -> &'static EventBatch {
    static BATCH: OnceLock<EventBatch> = OnceLock::new();
    BATCH.get_or_init(|| {
        let text = br#"{"EventID": 1, "Channel": "Microsoft-Windows-Sysmon/Operational", "CommandLine": "powershell -enc SQBFAFgA", "Image": "C:\\Windows\\System32\\cmd.exe", "IpAddress": "10.1.2.3", "n": 4}
{"Event": {"System": {"EventID": 4625, "Channel": "Security", "Computer": "dc01"}, "EventData": {"TargetUserName": "admin", "IpAddress": "::1"}}}"#;
        let mut batches = Vec::new();
        read_bytes(text, "fuzz", &ReadOptions { decoder: DecoderConfig::default(), ..ReadOptions::default() }, |b| batches.push(b), |_| {}).unwrap();
        batches.pop().unwrap()
    })
}

libfuzzer_sys::fuzz_target!(|text: &str| {
    let mut rules = RuleCollection::default();
    load_text("fuzz.yml".as_ref(), text, &Placeholders::new(), &mut rules);
    for profile in [Profile::windows().unwrap(), Profile::passthrough()] {
        let compiled = RuleSetBuilder::new(profile).build(&rules);
        let mut scratch = compiled.set.scratch();
        let matches = compiled.set.evaluate(&events().batch, &mut scratch);
        assert!(matches.iter().all(|m| m.row < events().batch.num_rows()));
    }
});
