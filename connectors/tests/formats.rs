//! Every format over the real-world samples in `fixtures/formats/`, as
//! `fixtures/formats/expected.json` says: which lines become events with
//! which column values, and which become dead letters with which reason.
//! Each sample is read whole and again with batches of one record.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use serde::Deserialize;
use serde_json::{Map, Value};
use vagt_connectors::{read_source, DecoderConfig, Format, InputSource, ReadOptions};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Sample {
    format: Format,
    events: Vec<ExpectedEvent>,
    dead_letters: Vec<ExpectedDead>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ExpectedEvent {
    line: u64,
    /// Column → value; `null` means the column is absent for the event.
    fields: BTreeMap<String, Value>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ExpectedDead {
    line: u64,
    /// Contained in the dead letter's reason.
    reason: String,
}

fn folder() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../fixtures/formats")
}

/// Nested objects flattened to dotted keys, as the decoder names columns.
fn flatten(prefix: &str, object: &Map<String, Value>, out: &mut BTreeMap<String, Value>) {
    for (key, value) in object {
        let name = if prefix.is_empty() {
            key.clone()
        } else {
            format!("{prefix}.{key}")
        };
        match value {
            Value::Object(inner) => flatten(&name, inner, out),
            other => {
                out.insert(name, other.clone());
            }
        }
    }
}

#[test]
fn every_format_parses_its_samples_and_refuses_malformed_lines_with_a_reason() {
    let expected: BTreeMap<String, Sample> =
        serde_json::from_str(&std::fs::read_to_string(folder().join("expected.json")).unwrap())
            .expect("expected.json parses");
    let formats: std::collections::HashSet<Format> = expected.values().map(|s| s.format).collect();
    for format in Format::ALL.into_iter().filter(|f| *f != Format::Json) {
        assert!(formats.contains(&format), "no sample for {format}");
    }
    for (file, sample) in &expected {
        for batch_size in [1, 1024] {
            let options = ReadOptions {
                decoder: DecoderConfig {
                    batch_size,
                    ..DecoderConfig::default()
                },
                format: sample.format,
                actor: Some(Arc::from("rnv-test")),
                ..ReadOptions::default()
            };
            let source = InputSource::File(folder().join(file));
            let mut events: BTreeMap<u64, BTreeMap<String, Value>> = BTreeMap::new();
            let mut dead = Vec::new();
            let stats = read_source(
                &source,
                &options,
                Default::default(),
                |batch| {
                    let raw = batch.raw().expect("raw column");
                    for (row, origin) in batch.origins.iter().enumerate() {
                        assert_eq!(origin.actor.as_deref(), Some("rnv-test"));
                        let value: Value = serde_json::from_str(raw.value(row)).unwrap();
                        let mut flat = BTreeMap::new();
                        flatten("", value.as_object().unwrap(), &mut flat);
                        events.insert(origin.line, flat);
                    }
                },
                |letter| dead.push(letter),
            )
            .unwrap_or_else(|e| panic!("{file}: {e}"));
            let lines: Vec<u64> = events.keys().copied().collect();
            let want: Vec<u64> = sample.events.iter().map(|e| e.line).collect();
            assert_eq!(lines, want, "{file}: lines that became events");
            for event in &sample.events {
                let got = &events[&event.line];
                for (column, value) in &event.fields {
                    assert_eq!(
                        got.get(column).unwrap_or(&Value::Null),
                        value,
                        "{file} line {}: column {column} in {got:?}",
                        event.line
                    );
                }
            }
            let dead_lines: Vec<u64> = dead.iter().map(|d| d.line).collect();
            let want: Vec<u64> = sample.dead_letters.iter().map(|d| d.line).collect();
            assert_eq!(dead_lines, want, "{file}: dead letters {dead:?}");
            for (letter, expected) in dead.iter().zip(&sample.dead_letters) {
                assert!(
                    letter.reason.contains(&expected.reason),
                    "{file} line {}: reason '{}' lacks '{}'",
                    letter.line,
                    letter.reason,
                    expected.reason
                );
                assert!(letter.source.ends_with(file.as_str()));
                assert!(!letter.excerpt.is_empty(), "{letter:?}");
            }
            assert_eq!(stats.records as usize, sample.events.len(), "{file}");
            assert_eq!(
                stats.dead_letters as usize,
                sample.dead_letters.len(),
                "{file}"
            );
        }
    }
}
