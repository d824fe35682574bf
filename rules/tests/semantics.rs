//! Sigma semantics as data: every case in `fixtures/sigma-semantics/*.yml`
//! (rule + events + expected outcome, or an expected rejection) runs through
//! the decoder and the columnar matcher, once with all events in one batch
//! and once with one event per batch.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use serde_yaml_ng::Value;
use vagt_connectors::{read_events, DecoderConfig, InputSource};
use vagt_rules::loader::{LoadedFilter, LoadedRule};
use vagt_rules::sigma::{parse_document, Document};
use vagt_rules::{Origin, Profile, RuleCollection, RuleSetBuilder};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Case {
    case: String,
    guards: String,
    rule: Value,
    #[serde(default)]
    events: Vec<Value>,
    #[serde(default)]
    expect: Vec<bool>,
    #[serde(default)]
    placeholders: HashMap<String, Vec<String>>,
    #[serde(default)]
    filters: Vec<Value>,
    #[serde(default)]
    reject: Option<String>,
}

fn fixtures() -> PathBuf {
    PathBuf::from(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../fixtures/sigma-semantics"
    ))
}

fn load_cases() -> Vec<(PathBuf, Case)> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(fixtures())
        .expect("fixtures/sigma-semantics exists")
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "yml" || e == "yaml"))
        .collect();
    files.sort();
    let mut cases = Vec::new();
    for file in files {
        let text = std::fs::read_to_string(&file).expect("read case file");
        for doc in serde_yaml_ng::Deserializer::from_str(&text) {
            let case = Case::deserialize(doc)
                .unwrap_or_else(|e| panic!("{}: invalid case: {e}", file.display()));
            cases.push((file.clone(), case));
        }
    }
    cases
}

fn origin(file: &Path) -> Origin {
    Origin {
        path: file.to_path_buf(),
        line: 1,
    }
}

/// Compiles the case's rule; Err(reason) if it is rejected.
fn compile(file: &Path, case: &Case) -> Result<vagt_rules::RuleSet, String> {
    let mut collection = RuleCollection::default();
    match parse_document(&case.rule, &case.placeholders) {
        Ok(Document::Rule(rule)) => collection.rules.push(LoadedRule {
            rule: *rule,
            origin: origin(file),
        }),
        Ok(Document::Filter(_)) => return Err("the rule is a filter".into()),
        Ok(Document::Window(..)) => return Err("the rule is a windowed rule".into()),
        Err(e) => return Err(e.to_string()),
    }
    for f in &case.filters {
        match parse_document(f, &case.placeholders) {
            Ok(Document::Filter(filter)) => collection.filters.push(LoadedFilter {
                filter,
                origin: origin(file),
            }),
            Ok(Document::Rule(_) | Document::Window(..)) => {
                return Err("a filter entry is not a filter".into())
            }
            Err(e) => return Err(format!("filter: {e}")),
        }
    }
    let compiled = RuleSetBuilder::new(Profile::passthrough()).build(&collection);
    if compiled.set.is_empty() {
        let reason = compiled.rejected.first().map(|r| r.error.to_string());
        return Err(reason.unwrap_or_else(|| "rule did not compile".into()));
    }
    Ok(compiled.set)
}

/// Per-event outcome through the decoder and matcher at a batch size.
fn outcomes(set: &vagt_rules::RuleSet, events: &[Value], batch_size: usize) -> Vec<bool> {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("events.jsonl");
    let mut text = String::new();
    for e in events {
        let json: serde_json::Value = serde_json::to_value(e).expect("event converts to JSON");
        text.push_str(&serde_json::to_string(&json).expect("serialise"));
        text.push('\n');
    }
    std::fs::write(&path, text).expect("write events");
    let mut out = vec![false; events.len()];
    let mut scratch = set.scratch();
    let config = DecoderConfig {
        batch_size,
        ..DecoderConfig::default()
    };
    read_events(
        &InputSource::File(path),
        &config,
        |batch| {
            for m in set.evaluate(&batch.batch, &mut scratch) {
                let line = batch.origins[m.row].line as usize;
                out[line - 1] = true;
            }
        },
        |dead| panic!("event became a dead letter: {}", dead.reason),
    )
    .expect("read events");
    out
}

#[test]
fn sigma_semantics_cases() {
    let cases = load_cases();
    assert!(
        cases.len() >= 100,
        "expected the semantics suite, found {} cases",
        cases.len()
    );
    let mut names = std::collections::HashSet::new();
    let mut failures = Vec::new();
    for (file, case) in &cases {
        assert!(
            names.insert(case.case.clone()),
            "duplicate case name {}",
            case.case
        );
        let label = format!(
            "{} [{}] ({})",
            case.case,
            file.file_name().unwrap_or_default().to_string_lossy(),
            case.guards
        );
        match (&case.reject, compile(file, case)) {
            (Some(expected), Err(reason)) => {
                if !reason.to_lowercase().contains(&expected.to_lowercase()) {
                    failures.push(format!(
                        "{label}: rejected for '{reason}', expected '{expected}'"
                    ));
                }
            }
            (Some(expected), Ok(_)) => {
                failures.push(format!("{label}: loaded, expected rejection '{expected}'"))
            }
            (None, Err(reason)) => failures.push(format!("{label}: rejected: {reason}")),
            (None, Ok(set)) => {
                if case.events.len() != case.expect.len() {
                    failures.push(format!(
                        "{label}: {} events but {} expectations",
                        case.events.len(),
                        case.expect.len()
                    ));
                    continue;
                }
                for batch_size in [case.events.len().max(1), 1] {
                    let got = outcomes(&set, &case.events, batch_size);
                    if got != case.expect {
                        failures.push(format!(
                            "{label}: batch size {batch_size}: got {got:?}, expected {:?}",
                            case.expect
                        ));
                    }
                }
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} cases failed:\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n")
    );
}
