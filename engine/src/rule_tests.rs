//! `vagt rules test`: rule tests kept as data beside the rules, and
//! SigmaHQ's regression data as it is.
//!
//! - A `*.test.yml` file names a rule (by id or title) and cases: events
//!   (inline, or a JSON-lines file beside the test) and how many of them
//!   the rule must match, exactly (`matches: 0`: it must match none).
//! - An `info.yml` with `regression_tests_info` (SigmaHQ's
//!   `regression_data/` layout) names its rule in `rule_metadata` and
//!   its events file `<rule id>.json` beside it; the rule must match at
//!   least `match_count` of them (absent: one), as SigmaHQ's own check.
//!
//! Every rule is loaded at once, as a run loads them, so a test also
//! proves that the rule survives beside the others. A failure names the
//! rule, the case, the events that made the difference and what was
//! expected.

use std::path::{Path, PathBuf};

use serde::Deserialize;
use vagt_connectors::{read_bytes, read_events, DecoderConfig, InputSource, ReadOptions};
use vagt_rules::{Compiled, RuleSet};

/// Why tests could not be read; a failing test is not an error.
#[derive(Debug, thiserror::Error)]
pub enum RuleTestError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: {message}")]
    Invalid { path: PathBuf, message: String },
}

/// How many matches a case expects.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expect {
    Exactly(u64),
    AtLeast(u64),
}

impl std::fmt::Display for Expect {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Expect::Exactly(n) => write!(f, "exactly {n}"),
            Expect::AtLeast(n) => write!(f, "at least {n}"),
        }
    }
}

/// Where a case's events are.
#[derive(Debug, Clone)]
enum Events {
    /// JSON lines.
    Text(String),
    File(PathBuf),
}

/// One case: a rule, events, and what it must match.
#[derive(Debug, Clone)]
pub struct TestCase {
    /// The file the case is written in.
    pub file: PathBuf,
    pub name: String,
    /// A rule id or title.
    pub rule: String,
    events: Events,
    pub expect: Expect,
}

/// A case run.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Outcome {
    pub file: PathBuf,
    pub case: String,
    pub rule: String,
    pub passed: bool,
    pub matched: u64,
    pub expected: String,
    /// What made the difference: the events matched or missed, or why the
    /// rule could not run.
    pub detail: Vec<String>,
}

/// Our own format.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct TestFile {
    rule: String,
    cases: Vec<CaseSpec>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CaseSpec {
    name: String,
    #[serde(default)]
    events: Vec<serde_json::Value>,
    #[serde(default)]
    events_file: Option<PathBuf>,
    matches: u64,
}

/// The test cases in `paths` (files or folders, searched recursively):
/// `*.test.yml` files and SigmaHQ `info.yml` files, in path order.
///
/// # Errors
/// A folder cannot be read, or a test file is invalid.
pub fn discover(paths: &[PathBuf]) -> Result<Vec<TestCase>, RuleTestError> {
    let mut files = Vec::new();
    for path in paths {
        for entry in walkdir::WalkDir::new(path).sort_by_file_name() {
            let entry = entry.map_err(|e| RuleTestError::Io {
                path: path.clone(),
                source: e.into(),
            })?;
            let p = entry.path();
            let info = p.file_name().is_some_and(|n| n == "info.yml");
            if entry.file_type().is_file() && (info || vagt_rules::loader::is_rule_test(p)) {
                files.push(p.to_path_buf());
            }
        }
    }
    let mut cases = Vec::new();
    for file in files {
        let text = std::fs::read_to_string(&file).map_err(|source| RuleTestError::Io {
            path: file.clone(),
            source,
        })?;
        if file.file_name().is_some_and(|n| n == "info.yml") {
            cases.extend(sigmahq_cases(&file, &text)?);
        } else {
            cases.extend(own_cases(&file, &text)?);
        }
    }
    Ok(cases)
}

fn own_cases(file: &Path, text: &str) -> Result<Vec<TestCase>, RuleTestError> {
    let invalid = |message: String| RuleTestError::Invalid {
        path: file.to_path_buf(),
        message,
    };
    let spec: TestFile = serde_yaml_ng::from_str(text).map_err(|e| invalid(e.to_string()))?;
    let mut cases = Vec::new();
    for case in spec.cases {
        let events = match (&case.events_file, case.events.is_empty()) {
            (Some(f), true) => Events::File(file.parent().unwrap_or(Path::new(".")).join(f)),
            (None, false) => {
                let lines: Vec<String> = case.events.iter().map(|e| e.to_string()).collect();
                Events::Text(lines.join("\n"))
            }
            _ => {
                return Err(invalid(format!(
                    "case '{}': give either events or events_file",
                    case.name
                )))
            }
        };
        cases.push(TestCase {
            file: file.to_path_buf(),
            name: case.name,
            rule: spec.rule.clone(),
            events,
            expect: Expect::Exactly(case.matches),
        });
    }
    Ok(cases)
}

fn sigmahq_cases(file: &Path, text: &str) -> Result<Vec<TestCase>, RuleTestError> {
    use serde_yaml_ng::Value;
    let invalid = |message: &str| RuleTestError::Invalid {
        path: file.to_path_buf(),
        message: message.to_string(),
    };
    let doc: Value = serde_yaml_ng::from_str(text).map_err(|e| invalid(&e.to_string()))?;
    // An info.yml whose tests are commented out has none.
    let Some(tests) = doc
        .get("regression_tests_info")
        .and_then(Value::as_sequence)
    else {
        return Ok(Vec::new());
    };
    let rule_id = doc
        .get("rule_metadata")
        .and_then(|m| m.get(0))
        .and_then(|m| m.get("id"))
        .and_then(Value::as_str)
        .ok_or_else(|| invalid("no rule_metadata[0].id"))?
        .to_string();
    let mut cases = Vec::new();
    for test in tests {
        // Only evtx-derived events are in the layout's JSON file.
        if test.get("type").and_then(Value::as_str) != Some("evtx") {
            continue;
        }
        let name = test
            .get("name")
            .and_then(Value::as_str)
            .unwrap_or("regression")
            .to_string();
        cases.push(TestCase {
            file: file.to_path_buf(),
            name,
            rule: rule_id.clone(),
            events: Events::File(file.with_file_name(format!("{rule_id}.json"))),
            expect: Expect::AtLeast(test.get("match_count").and_then(Value::as_u64).unwrap_or(1)),
        });
    }
    Ok(cases)
}

/// An event of a case: where it is, whether the rule matched it, and an
/// excerpt.
struct Seen {
    line: u64,
    matched: bool,
    excerpt: String,
}

/// Runs every case against `compiled` (all rules loaded together).
pub fn run(cases: &[TestCase], compiled: &Compiled) -> Vec<Outcome> {
    let set: &RuleSet = &compiled.set;
    let mut scratch = set.scratch();
    cases
        .iter()
        .map(|case| {
            let mut outcome = Outcome {
                file: case.file.clone(),
                case: case.name.clone(),
                rule: case.rule.clone(),
                passed: false,
                matched: 0,
                expected: case.expect.to_string(),
                detail: Vec::new(),
            };
            let Some(rule) = (0..set.len()).find(|&i| {
                let meta = &set.rule(i).meta;
                meta.id.as_deref() == Some(case.rule.as_str()) || meta.title == case.rule
            }) else {
                outcome.detail.push(why_missing(&case.rule, compiled));
                return outcome;
            };
            outcome.rule = format!("{} ({})", case.rule, set.rule(rule).meta.title);
            let seen = match evaluate(case, set, rule, &mut scratch) {
                Ok(seen) => seen,
                Err(e) => {
                    outcome.detail.push(e);
                    return outcome;
                }
            };
            outcome.matched = seen.iter().filter(|s| s.matched).count() as u64;
            outcome.passed = match case.expect {
                Expect::Exactly(n) => outcome.matched == n,
                Expect::AtLeast(n) => outcome.matched >= n,
            };
            if !outcome.passed {
                // More than expected: the events it matched; fewer: those
                // it missed.
                let too_many = match case.expect {
                    Expect::Exactly(n) => outcome.matched > n,
                    Expect::AtLeast(_) => false,
                };
                outcome.detail = seen
                    .iter()
                    .filter(|s| s.matched == too_many)
                    .take(5)
                    .map(|s| {
                        format!(
                            "{} line {}: {}",
                            if too_many { "matched" } else { "not matched" },
                            s.line,
                            s.excerpt
                        )
                    })
                    .collect();
            }
            outcome
        })
        .collect()
}

fn why_missing(rule: &str, compiled: &Compiled) -> String {
    let named = |id: Option<&str>, title: &str| id == Some(rule) || title == rule;
    if let Some(r) = compiled
        .rejected
        .iter()
        .find(|r| named(r.rule_id.as_deref(), r.title.as_deref().unwrap_or("")))
    {
        return format!("the rule was rejected: {}", r.error);
    }
    if let Some(u) = compiled
        .unroutable
        .iter()
        .find(|u| named(u.info.meta.id.as_deref(), &u.info.meta.title))
    {
        return format!(
            "the profile does not route the rule's logsource: {}",
            u.reason
        );
    }
    format!("no rule '{rule}' among the rules loaded")
}

/// Decodes the case's events and evaluates the set over them.
fn evaluate(
    case: &TestCase,
    set: &RuleSet,
    rule: usize,
    scratch: &mut vagt_rules::Scratch,
) -> Result<Vec<Seen>, String> {
    let mut seen = Vec::new();
    let mut dead = Vec::new();
    let mut on_batch = |batch: vagt_connectors::EventBatch| {
        let matched: Vec<usize> = set
            .evaluate(&batch.batch, scratch)
            .iter()
            .filter(|m| m.rule == rule)
            .map(|m| m.row)
            .collect();
        let raw = batch.raw();
        for (row, origin) in batch.origins.iter().enumerate() {
            seen.push(Seen {
                line: origin.line,
                matched: matched.contains(&row),
                excerpt: raw
                    .as_ref()
                    .map(|r| r.value(row).chars().take(160).collect())
                    .unwrap_or_default(),
            });
        }
    };
    let on_dead =
        |d: vagt_connectors::DeadLetter| dead.push(format!("line {}: {}", d.line, d.reason));
    let read = match &case.events {
        Events::Text(text) => read_bytes(
            text.as_bytes(),
            &case.name,
            &ReadOptions::default(),
            &mut on_batch,
            on_dead,
        ),
        Events::File(path) => read_events(
            &InputSource::File(path.clone()),
            &DecoderConfig::default(),
            &mut on_batch,
            on_dead,
        ),
    };
    read.map_err(|e| e.to_string())?;
    if !dead.is_empty() {
        return Err(format!("events that do not decode: {}", dead.join("; ")));
    }
    Ok(seen)
}
