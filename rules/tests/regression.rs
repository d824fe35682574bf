//! SigmaHQ's regression data: for each of its 202 rules, the real events in
//! `regression_data/**/<rule-id>.json` must produce at least the
//! `match_count` of `info.yml` (absent: at least one) for that rule, with
//! every SigmaHQ rule loaded at once under the built-in Windows profile.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use serde_yaml_ng::Value;
use vagt_connectors::{read_events, DecoderConfig, InputSource};
use vagt_rules::{load_paths, Placeholders, Profile, RuleSetBuilder};

use crate::corpus::corpora;

struct Case {
    rule_id: String,
    events: PathBuf,
    expected: u64,
}

fn cases(root: &Path) -> Vec<Case> {
    let mut infos = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir)
            .expect("read regression_data")
            .flatten()
        {
            let path = entry.path();
            if path.is_dir() {
                stack.push(path);
            } else if path.file_name().is_some_and(|n| n == "info.yml") {
                infos.push(path);
            }
        }
    }
    infos.sort();
    let mut out = Vec::new();
    for info in infos {
        let text = std::fs::read_to_string(&info).expect("read info.yml");
        let doc: Value = serde_yaml_ng::from_str(&text).expect("info.yml parses");
        let Some(tests) = doc
            .get("regression_tests_info")
            .and_then(Value::as_sequence)
        else {
            continue; // an info.yml whose tests are commented out
        };
        let rule_id = doc["rule_metadata"][0]["id"]
            .as_str()
            .expect("rule_metadata id")
            .to_string();
        for test in tests {
            if test.get("type").and_then(Value::as_str) != Some("evtx") {
                continue;
            }
            let expected = test.get("match_count").and_then(Value::as_u64).unwrap_or(1);
            let events = info.with_file_name(format!("{rule_id}.json"));
            assert!(events.is_file(), "missing events file {}", events.display());
            out.push(Case {
                rule_id: rule_id.clone(),
                events,
                expected,
            });
        }
    }
    out
}

#[test]
fn every_regression_rule_reaches_its_match_count() {
    let corpora = corpora();
    let sigmahq = corpora.join("sigmahq");
    let cases = cases(&sigmahq.join("regression_data"));
    assert_eq!(cases.len(), 202, "the corpus has 202 regression rules");

    let rule_dirs =
        ["rules", "rules-emerging-threats", "rules-threat-hunting"].map(|d| sigmahq.join(d));
    let collection = load_paths(&rule_dirs, &Placeholders::new()).expect("load rules");
    let compiled = RuleSetBuilder::new(Profile::windows().expect("profile")).build(&collection);
    let set = compiled.set;
    let index: HashMap<&str, usize> = (0..set.len())
        .filter_map(|i| set.rule(i).meta.id.as_deref().map(|id| (id, i)))
        .collect();

    let mut scratch = set.scratch();
    let mut failures = Vec::new();
    for case in &cases {
        let Some(&rule) = index.get(case.rule_id.as_str()) else {
            let why = compiled
                .rejected
                .iter()
                .find(|r| r.rule_id.as_deref() == Some(case.rule_id.as_str()))
                .map(|r| r.error.to_string())
                .or_else(|| {
                    compiled
                        .unroutable
                        .iter()
                        .find(|u| u.info.meta.id.as_deref() == Some(case.rule_id.as_str()))
                        .map(|u| format!("not routable: {}", u.reason))
                })
                .unwrap_or_else(|| "rule not found".into());
            failures.push(format!("{}: {why}", case.rule_id));
            continue;
        };
        let mut matched = 0u64;
        let mut dead = Vec::new();
        read_events(
            &InputSource::File(case.events.clone()),
            &DecoderConfig::default(),
            |batch| {
                matched += set
                    .evaluate(&batch.batch, &mut scratch)
                    .iter()
                    .filter(|m| m.rule == rule)
                    .count() as u64;
            },
            |d| dead.push(d.reason),
        )
        .expect("read events");
        if !dead.is_empty() {
            failures.push(format!("{}: dead letters {dead:?}", case.rule_id));
        }
        if matched < case.expected {
            failures.push(format!(
                "{} ({}): {matched} matches, expected at least {}",
                case.rule_id,
                set.rule(rule).meta.title,
                case.expected
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} regression rules failed:\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n")
    );
}
