//! What the integration tests share.

use vagt_connectors::{read_events, DecoderConfig, InputSource};
use vagt_rules::RuleSet;

/// The matches of `set` over JSON lines `text`: (line number from 0, the
/// rule's id), sorted.
pub fn matches_of(set: &RuleSet, text: &str) -> Vec<(usize, String)> {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("e.jsonl");
    std::fs::write(&path, text).unwrap();
    let mut scratch = set.scratch();
    let mut out = Vec::new();
    let mut offset = 0;
    read_events(
        &InputSource::File(path),
        &DecoderConfig::default(),
        |b| {
            for m in set.evaluate(&b.batch, &mut scratch) {
                out.push((offset + m.row, set.rule(m.rule).meta.id.clone().unwrap()));
            }
            offset += b.batch.num_rows();
        },
        |d| panic!("{d:?}"),
    )
    .unwrap();
    out.sort();
    out
}
