//! The evaluation workers give, batch for batch, what one thread gives:
//! with several workers, with two rule sets submitted in turn (a worker's
//! scratch must not carry one set's work into the other's), and a cancel
//! flag makes them give up.

use std::sync::atomic::AtomicBool;
use std::sync::Arc;

use arrow_array::RecordBatch;
use vagt_connectors::{read_events, DecoderConfig, InputSource};
use vagt_rules::workers::Workers;
use vagt_rules::{load_text, Placeholders, Profile, RuleMatch, RuleSet, RuleSetBuilder};

fn set(rules: &str) -> Arc<RuleSet> {
    let mut collection = vagt_rules::RuleCollection::default();
    load_text(
        "rules.yml".as_ref(),
        rules,
        &Placeholders::new(),
        &mut collection,
    );
    assert!(collection.rejected.is_empty(), "{:?}", collection.rejected);
    Arc::new(
        RuleSetBuilder::new(Profile::windows().unwrap())
            .build(&collection)
            .set,
    )
}

const KEYWORDS: &str = "title: Keywords\nid: 99999999-0000-4000-8000-0000000000c1\nlogsource: {product: windows}\ndetection:\n  keywords: ['sekurlsa::', 'dpapi::masterkey']\n  condition: keywords\n";
const FIELDS: &str = "title: Security logons\nid: 99999999-0000-4000-8000-0000000000c2\nlogsource: {product: windows, service: security}\ndetection:\n  selection:\n    EventID: 4624\n    TargetUserName|endswith: '$'\n  condition: selection\n---\ntitle: Any process\nid: 99999999-0000-4000-8000-0000000000c3\nlogsource: {product: windows}\ndetection:\n  selection:\n    Image|contains: '\\\\power'\n  condition: selection\n";

/// 3,000 events in batches of 64.
fn batches() -> Vec<RecordBatch> {
    let lines: Vec<String> = (0..3000)
        .map(|i| {
            let channel = if i % 3 == 0 {
                "Security"
            } else {
                "Microsoft-Windows-Sysmon/Operational"
            };
            let event_id = if i % 2 == 0 { 4624 } else { 1 };
            let user = if i % 5 == 0 { "HOST$" } else { "alice" };
            let image = if i % 7 == 0 {
                "C:\\\\Windows\\\\powershell.exe"
            } else {
                "C:\\\\Windows\\\\cmd.exe"
            };
            let text = if i % 11 == 0 { "sekurlsa::logonpasswords" } else { "nothing" };
            format!(
                r#"{{"Channel": "{channel}", "EventID": {event_id}, "TargetUserName": "{user}", "Image": "{image}", "Text": "{text}"}}"#
            )
        })
        .collect();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("e.jsonl");
    std::fs::write(&path, lines.join("\n")).unwrap();
    let mut out = Vec::new();
    let config = DecoderConfig {
        batch_size: 64,
        ..DecoderConfig::default()
    };
    read_events(
        &InputSource::File(path),
        &config,
        |b| out.push(b.batch),
        |d| panic!("{d:?}"),
    )
    .unwrap();
    out
}

fn sequential(set: &RuleSet, batches: &[RecordBatch]) -> Vec<Vec<RuleMatch>> {
    let mut scratch = set.scratch();
    batches
        .iter()
        .map(|b| set.evaluate(b, &mut scratch))
        .collect()
}

#[test]
fn workers_give_what_one_thread_gives_for_every_set_in_submission_order() {
    let keywords = set(KEYWORDS);
    let fields = set(FIELDS);
    let batches = batches();
    assert_eq!(batches.len(), 47);
    let expected_keywords = sequential(&keywords, &batches);
    let expected_fields = sequential(&fields, &batches);
    // Independently of the engine: 273 keyword rows (every 11th of
    // 3,000), and per 30 rows 1 security logon by a machine account
    // (i % 30 == 0) and 30/7 PowerShell images.
    let total = |m: &[Vec<RuleMatch>]| m.iter().map(Vec::len).sum::<usize>();
    assert_eq!(total(&expected_keywords), 273);
    assert_eq!(total(&expected_fields), 100 + 429);

    for count in [1, 2, 3] {
        let workers = Workers::new(count, None);
        assert_eq!(workers.count(), count);
        // Even batches with one set, odd ones with the other, as a reload
        // would interleave them with no pause.
        let pending: Vec<_> = batches
            .iter()
            .enumerate()
            .map(|(i, b)| {
                let set = if i % 2 == 0 { &keywords } else { &fields };
                workers.submit(set.clone(), b.clone())
            })
            .collect();
        for (i, p) in pending.into_iter().enumerate() {
            let evaluation = p.wait().expect("a result");
            assert!(!evaluation.cancelled);
            let expected = if i % 2 == 0 {
                &expected_keywords[i]
            } else {
                &expected_fields[i]
            };
            assert_eq!(&evaluation.matches, expected, "batch {i}, {count} workers");
            let matched: u64 = evaluation.rule_stats.iter().map(|(_, s)| s.matches).sum();
            assert_eq!(matched as usize, expected.len(), "batch {i} rule stats");
        }
    }
}

#[test]
fn a_set_cancel_flag_makes_the_workers_give_up() {
    let keywords = set(KEYWORDS);
    let batches = batches();
    let flag = Arc::new(AtomicBool::new(true));
    let workers = Workers::new(2, Some(flag));
    let evaluation = workers
        .submit(keywords, batches[0].clone())
        .wait()
        .expect("a result");
    assert!(evaluation.cancelled);
    assert!(evaluation.matches.is_empty());
}
