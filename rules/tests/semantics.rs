//! Sigma semantics as data: every case in `fixtures/sigma-semantics/*.yml`
//! (rule + events + expected outcome, or an expected rejection) runs
//! through every evaluation path, as regex runs its tests through every
//! engine: one rule per set and all rules in one set, each automaton kind
//! and none, column and row scans, with and without fingerprints, the
//! passthrough and the Windows profile over flat and nested events, and a
//! windowed rule over each case's rule. A disagreement names the path.
//!
//! `cargo test -p vagt-rules --test tests semantics -- --nocapture` lists
//! the paths with the cases each ran and skipped (and why).

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::Deserialize;
use serde_yaml_ng::{Mapping, Value};
use vagt_connectors::{read_events, DecoderConfig, InputSource};
use vagt_rules::loader::{LoadedFilter, LoadedRule, LoadedWindowRule};
use vagt_rules::sigma::{parse_document, Document};
use vagt_rules::window::{Observation, SourceKey, WindowLimits, WindowRuntime};
use vagt_rules::{
    AutomatonPath, FingerprintPath, HashPath, MatchPaths, Origin, Profile, RuleCollection, RuleSet,
    RuleSetBuilder, ScanPath,
};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Case {
    pub case: String,
    guards: String,
    pub rule: Value,
    #[serde(default)]
    events: Vec<Value>,
    #[serde(default)]
    expect: Vec<bool>,
    #[serde(default)]
    placeholders: HashMap<String, Vec<String>>,
    #[serde(default)]
    filters: Vec<Value>,
    #[serde(default)]
    pub reject: Option<String>,
}

fn fixtures() -> PathBuf {
    PathBuf::from(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../fixtures/sigma-semantics"
    ))
}

pub(crate) fn load_cases() -> Vec<(PathBuf, Case)> {
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

/// The modifier chains of a rule's detection, as written after the
/// field name (`contains|all`; empty for a field without modifiers).
pub(crate) fn chains_of(rule: &Value) -> Vec<String> {
    let mut chains = Vec::new();
    fn walk(v: &Value, out: &mut Vec<String>) {
        match v {
            Value::Mapping(m) => {
                for (k, v) in m {
                    match k.as_str() {
                        Some("condition") => continue,
                        Some(key) => match key.split_once('|') {
                            Some((_, chain)) => out.push(chain.to_string()),
                            None if !v.is_mapping() && !v.is_sequence() || is_value_list(v) => {
                                out.push(String::new())
                            }
                            None => {}
                        },
                        None => {}
                    }
                    walk(v, out);
                }
            }
            Value::Sequence(s) => s.iter().for_each(|v| walk(v, out)),
            _ => {}
        }
    }
    fn is_value_list(v: &Value) -> bool {
        v.as_sequence()
            .is_some_and(|s| s.iter().all(|x| !x.is_mapping() && !x.is_sequence()))
    }
    if let Some(detection) = rule.get("detection") {
        walk(detection, &mut chains);
    }
    chains.sort();
    chains.dedup();
    chains
}

fn origin(file: &Path) -> Origin {
    Origin {
        path: file.to_path_buf(),
        line: 1,
    }
}

/// The events' shape and the profile that reads them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Shape {
    /// The passthrough profile, the events as written.
    Passthrough,
    /// The Windows profile, the events flat (Winlogbeat/OTRF style), the
    /// rules for `product: windows`.
    WindowsFlat,
    /// The Windows profile, the events nested as evtx_dump writes them:
    /// `Event.System` for the system fields, `Event.EventData` for the rest.
    WindowsNested,
}

/// How the case's rule is put in a rule set.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Sets {
    /// The case's rule alone.
    PerCase,
    /// All cases' rules in one set, all events in one batch.
    Shared,
    /// The case's rule feeding an `event_count >= 1` windowed rule; an
    /// event matches when it is in a windowed alert's evidence.
    Windowed,
}

/// One way of evaluating the cases.
#[derive(Debug, Clone)]
struct EvalPath {
    name: String,
    shape: Shape,
    sets: Sets,
    /// Events per batch: `None` for all of a case's events in one batch.
    batch: Option<usize>,
    paths: MatchPaths,
}

fn eval_paths() -> Vec<EvalPath> {
    let base = EvalPath {
        name: "one rule per set, passthrough, one batch".into(),
        shape: Shape::Passthrough,
        sets: Sets::PerCase,
        batch: None,
        paths: MatchPaths::default(),
    };
    let with = |name: &str, change: &dyn Fn(&mut EvalPath)| {
        let mut p = base.clone();
        p.name = name.into();
        change(&mut p);
        p
    };
    vec![
        base.clone(),
        with("one event per batch", &|p| p.batch = Some(1)),
        with("automaton: DFA", &|p| {
            p.paths.automaton = AutomatonPath::Dfa
        }),
        with("automaton: contiguous NFA", &|p| {
            p.paths.automaton = AutomatonPath::ContiguousNfa
        }),
        with("automaton: noncontiguous NFA", &|p| {
            p.paths.automaton = AutomatonPath::NoncontiguousNfa
        }),
        with("automaton: none (each test reads its rows)", &|p| {
            p.paths.automaton = AutomatonPath::Off;
            p.paths.hashes = HashPath::Never;
        }),
        with("scan: whole columns", &|p| p.paths.scan = ScanPath::Columns),
        with("scan: row by row", &|p| p.paths.scan = ScanPath::Rows),
        with("scan: row by row, one event per batch", &|p| {
            p.paths.scan = ScanPath::Rows;
            p.batch = Some(1);
        }),
        with("fingerprints: never", &|p| {
            p.paths.fingerprints = FingerprintPath::Never
        }),
        with("fingerprints: for every value", &|p| {
            p.paths.fingerprints = FingerprintPath::Always
        }),
        with("hash literals: in the automaton", &|p| {
            p.paths.hashes = HashPath::Never
        }),
        with("all rules in one set, all events in one batch", &|p| {
            p.sets = Sets::Shared
        }),
        with("Windows profile, flat events", &|p| {
            p.shape = Shape::WindowsFlat
        }),
        with("Windows profile, nested events (evtx_dump)", &|p| {
            p.shape = Shape::WindowsNested
        }),
        with(
            "windowed rule: event_count >= 1 over the case's rule",
            &|p| p.sets = Sets::Windowed,
        ),
    ]
}

/// Why `path` does not run `case`, if it does not.
fn skip_reason(path: &EvalPath, case: &Case) -> Option<&'static str> {
    if case.reject.is_some() && path.sets != Sets::PerCase {
        return Some("a rejection is the rule's alone");
    }
    if path.shape != Shape::Passthrough {
        let logsource = case.rule.get("logsource");
        if logsource.and_then(|l| l.get("service")).is_some() {
            return Some("a service logsource routes by the Windows channel");
        }
    }
    None
}

/// The case's rule (and filters) for `shape`: `product: test` becomes
/// `product: windows` under the Windows profile.
fn for_shape(doc: &Value, shape: Shape) -> Value {
    let mut doc = doc.clone();
    if shape != Shape::Passthrough {
        if let Some(Value::Mapping(logsource)) = doc.get_mut("logsource") {
            let product = Value::from("product");
            if logsource.get(&product) == Some(&Value::from("test")) {
                logsource.insert(product, Value::from("windows"));
            }
        }
    }
    doc
}

/// The event in `shape`: nested as evtx_dump writes it, or as written.
fn event_for_shape(event: &Value, shape: Shape) -> Value {
    let (Shape::WindowsNested, Some(fields)) = (shape, event.as_mapping()) else {
        return event.clone();
    };
    let mut system = Mapping::new();
    let mut data = Mapping::new();
    for (k, v) in fields {
        match k.as_str() {
            Some("EventID" | "Channel" | "Computer") => system.insert(k.clone(), v.clone()),
            _ => data.insert(k.clone(), v.clone()),
        };
    }
    let mut inner = Mapping::new();
    inner.insert("System".into(), Value::Mapping(system));
    inner.insert("EventData".into(), Value::Mapping(data));
    let mut outer = Mapping::new();
    outer.insert("Event".into(), Value::Mapping(inner));
    Value::Mapping(outer)
}

fn profile(shape: Shape) -> Profile {
    match shape {
        Shape::Passthrough => Profile::passthrough(),
        _ => Profile::windows().expect("the built-in Windows profile loads"),
    }
}

/// Adds the case's rule and filters to `collection`; Err(reason) if the
/// rule is rejected while parsing.
fn add_case(
    collection: &mut RuleCollection,
    file: &Path,
    case: &Case,
    shape: Shape,
) -> Result<(), String> {
    match parse_document(&for_shape(&case.rule, shape), &case.placeholders) {
        Ok(Document::Rule(rule)) => collection.rules.push(LoadedRule {
            rule: *rule,
            origin: origin(file),
        }),
        Ok(Document::Filter(_)) => return Err("the rule is a filter".into()),
        Ok(Document::Window(..)) => return Err("the rule is a windowed rule".into()),
        Err(e) => return Err(e.to_string()),
    }
    for f in &case.filters {
        match parse_document(&for_shape(f, shape), &case.placeholders) {
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
    Ok(())
}

/// An `event_count >= 1` windowed rule over the rule with `id`.
fn counting(id: &str) -> Value {
    serde_yaml_ng::from_str(&format!(
        "title: each event\nid: 00000000-0000-4000-8000-00000000c0c0\ncorrelation:\n  type: event_count\n  rules: [{id}]\n  timespan: 1h\n  condition: {{gte: 1}}\nlevel: low\n"
    ))
    .expect("the windowed rule parses")
}

/// Compiles the case's rule alone (fed to the counting windowed rule
/// with `Sets::Windowed`); Err(reason) if it is rejected.
fn compile(file: &Path, case: &Case, path: &EvalPath) -> Result<vagt_rules::Compiled, String> {
    let mut collection = RuleCollection::default();
    add_case(&mut collection, file, case, path.shape)?;
    if path.sets == Sets::Windowed {
        let id = case
            .rule
            .get("id")
            .and_then(Value::as_str)
            .unwrap_or_default();
        match parse_document(&counting(id), &HashMap::new()) {
            Ok(Document::Window(rule, _)) => collection.windows.push(LoadedWindowRule {
                rule: *rule,
                origin: origin(file),
            }),
            _ => return Err("the windowed rule does not load".into()),
        }
    }
    let compiled = RuleSetBuilder::new(profile(path.shape))
        .paths(path.paths)
        .build(&collection);
    if compiled.set.is_empty() {
        let reason = compiled.rejected.first().map(|r| r.error.to_string());
        let unroutable = compiled.unroutable.first().map(|u| u.reason.clone());
        return Err(reason
            .or(unroutable)
            .unwrap_or_else(|| "rule did not compile".into()));
    }
    Ok(compiled)
}

/// Calls `on_batch` with each decoded batch of `events` (in `shape`),
/// `batch_size` at a time; `line - 1` is an event's index.
fn decode(
    events: &[Value],
    shape: Shape,
    batch_size: usize,
    mut on_batch: impl FnMut(&vagt_connectors::EventBatch),
) {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("events.jsonl");
    let mut text = String::new();
    for e in events {
        let json: serde_json::Value =
            serde_json::to_value(event_for_shape(e, shape)).expect("event converts to JSON");
        text.push_str(&serde_json::to_string(&json).expect("serialise"));
        text.push('\n');
    }
    std::fs::write(&path, text).expect("write events");
    let config = DecoderConfig {
        batch_size,
        ..DecoderConfig::default()
    };
    read_events(
        &InputSource::File(path),
        &config,
        |batch| {
            if shape == Shape::WindowsNested {
                let schema = batch.batch.schema();
                let flat = schema
                    .fields()
                    .iter()
                    .map(|f| f.name())
                    .find(|n| !n.starts_with("Event.") && !n.starts_with('_'));
                assert_eq!(flat, None, "a nested event decoded to a top-level column");
            }
            on_batch(&batch)
        },
        |dead| panic!("event became a dead letter: {}", dead.reason),
    )
    .expect("read events");
}

/// Per event: whether the set's rules (or, windowed, its windowed rule)
/// took it.
fn outcomes(compiled: &vagt_rules::Compiled, events: &[Value], path: &EvalPath) -> Vec<bool> {
    let set = &compiled.set;
    let batch_size = path.batch.unwrap_or(events.len()).max(1);
    let mut out = vec![false; events.len()];
    let mut scratch = set.scratch();
    let mut windows = (path.sets == Sets::Windowed).then(|| {
        let mut runtime = WindowRuntime::<usize>::new(
            Arc::new(compiled.windows.clone()),
            WindowLimits::default(),
        );
        let source = runtime.source(SourceKey {
            input: "cases".into(),
            actor: None,
            host: None,
        });
        (runtime, source)
    });
    decode(events, path.shape, batch_size, |batch| {
        for m in set.evaluate(&batch.batch, &mut scratch) {
            let index = batch.origins[m.row].line as usize - 1;
            match &mut windows {
                None => out[index] = true,
                Some((runtime, source)) => {
                    for feed in compiled.windows.base_feeds(m.rule) {
                        let observation = Observation {
                            time: index as i64 * 1000,
                            tie: index as u64,
                            window: feed.window,
                            slot: feed.slot,
                            group: Vec::new(),
                            values: Vec::new(),
                            evidence: vec![index],
                        };
                        runtime
                            .ingest(observation, *source)
                            .expect("events in order are never late");
                    }
                }
            }
        }
    });
    if let Some((mut runtime, _)) = windows {
        let mut alerts = Vec::new();
        runtime.finish(&mut alerts);
        for index in alerts.iter().flat_map(|a| a.evidence.iter()) {
            out[*index] = true;
        }
    }
    out
}

/// What one path did.
#[derive(Debug, Default)]
struct PathTally {
    ran: usize,
    rejections: usize,
    skipped: BTreeMap<&'static str, usize>,
    automata: usize,
    with_fingerprints: usize,
    hash_sets: usize,
}

/// Checks that a set took the path asked for: the forced automaton kind
/// (or none) and the fingerprints' use.
fn check_built(set: &RuleSet, path: &EvalPath, tally: &mut PathTally) -> Result<(), String> {
    let built = set.automata_built();
    tally.automata += built.len();
    tally.with_fingerprints += built.iter().filter(|(_, f)| *f).count();
    tally.hash_sets += set.hash_sets_built();
    if path.paths.hashes == HashPath::Never && set.hash_sets_built() > 0 {
        return Err("built a hash-literal set, forced never".into());
    }
    let wrong_kind = built.iter().find(|(kind, _)| match path.paths.automaton {
        AutomatonPath::Auto => false,
        AutomatonPath::Off => true,
        forced => *kind != forced,
    });
    if let Some((kind, _)) = wrong_kind {
        return Err(format!(
            "built a {kind:?} automaton, not the forced {:?}",
            path.paths.automaton
        ));
    }
    if path.paths.fingerprints == FingerprintPath::Never && built.iter().any(|(_, f)| *f) {
        return Err("built fingerprints, forced never".into());
    }
    Ok(())
}

fn run_per_case(
    path: &EvalPath,
    cases: &[(PathBuf, Case)],
    tally: &mut PathTally,
    failures: &mut Vec<String>,
) {
    for (file, case) in cases {
        if let Some(reason) = skip_reason(path, case) {
            *tally.skipped.entry(reason).or_default() += 1;
            continue;
        }
        let label = format!(
            "[{}] {} ({}: {})",
            path.name,
            case.case,
            file.file_name().unwrap_or_default().to_string_lossy(),
            case.guards
        );
        tally.ran += 1;
        match (&case.reject, compile(file, case, path)) {
            (Some(expected), Err(reason)) => {
                tally.rejections += 1;
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
            (None, Ok(compiled)) => {
                if case.events.len() != case.expect.len() {
                    failures.push(format!(
                        "{label}: {} events but {} expectations",
                        case.events.len(),
                        case.expect.len()
                    ));
                    continue;
                }
                if let Err(e) = check_built(&compiled.set, path, tally) {
                    failures.push(format!("{label}: {e}"));
                }
                let got = outcomes(&compiled, &case.events, path);
                if got != case.expect {
                    failures.push(format!("{label}: got {got:?}, expected {:?}", case.expect));
                }
            }
        }
    }
}

/// All cases' rules in one set, all their events in one batch: each
/// case's events must give its expectations for its own rule.
fn run_shared(
    path: &EvalPath,
    cases: &[(PathBuf, Case)],
    tally: &mut PathTally,
    failures: &mut Vec<String>,
) {
    let mut collection = RuleCollection::default();
    let mut taken = Vec::new();
    for (file, case) in cases {
        if let Some(reason) = skip_reason(path, case) {
            *tally.skipped.entry(reason).or_default() += 1;
            continue;
        }
        if let Err(e) = add_case(&mut collection, file, case, path.shape) {
            failures.push(format!("[{}] {}: rejected: {e}", path.name, case.case));
            continue;
        }
        taken.push(case);
    }
    let compiled = RuleSetBuilder::new(profile(path.shape))
        .paths(path.paths)
        .build(&collection);
    // A case's rule the shared set rejects is reported below as missing;
    // filters naming rules no case has are rejected and change nothing.
    let set = &compiled.set;
    if let Err(e) = check_built(set, path, tally) {
        failures.push(format!("[{}] {e}", path.name));
    }
    let rule_of: HashMap<String, usize> = (0..set.len())
        .filter_map(|i| set.rule(i).meta.id.clone().map(|id| (id, i)))
        .collect();
    let events: Vec<Value> = taken
        .iter()
        .flat_map(|c| c.events.iter().cloned())
        .collect();
    let mut matched = vec![Vec::new(); events.len()];
    let mut scratch = set.scratch();
    decode(&events, path.shape, events.len().max(1), |batch| {
        for m in set.evaluate(&batch.batch, &mut scratch) {
            matched[batch.origins[m.row].line as usize - 1].push(m.rule);
        }
    });
    let mut first = 0;
    for case in taken {
        tally.ran += 1;
        let id = case
            .rule
            .get("id")
            .and_then(Value::as_str)
            .unwrap_or_default();
        let Some(&rule) = rule_of.get(id) else {
            failures.push(format!(
                "[{}] {}: its rule is not in the set",
                path.name, case.case
            ));
            first += case.events.len();
            continue;
        };
        let got: Vec<bool> = (first..first + case.events.len())
            .map(|i| matched[i].contains(&rule))
            .collect();
        if got != case.expect {
            failures.push(format!(
                "[{}] {} ({}): got {got:?}, expected {:?}",
                path.name, case.case, case.guards, case.expect
            ));
        }
        first += case.events.len();
    }
}

#[test]
fn sigma_semantics_cases_agree_on_every_evaluation_path() {
    let cases = load_cases();
    assert!(
        cases.len() >= 100,
        "expected the semantics suite, found {} cases",
        cases.len()
    );
    let mut names = std::collections::HashSet::new();
    for (_, case) in &cases {
        assert!(
            names.insert(case.case.clone()),
            "duplicate case name {}",
            case.case
        );
    }
    let mut failures = Vec::new();
    let mut report = String::from("Sigma semantics, cases per evaluation path:\n");
    let paths = eval_paths();
    let mut tallies = Vec::new();
    for path in &paths {
        let mut tally = PathTally::default();
        match path.sets {
            Sets::Shared => run_shared(path, &cases, &mut tally, &mut failures),
            Sets::PerCase | Sets::Windowed => run_per_case(path, &cases, &mut tally, &mut failures),
        }
        report.push_str(&format!(
            "  {:<55} {:>4} cases ({} rejections), {} automata ({} with fingerprints), {} hash sets",
            path.name,
            tally.ran,
            tally.rejections,
            tally.automata,
            tally.with_fingerprints,
            tally.hash_sets
        ));
        for (reason, n) in &tally.skipped {
            report.push_str(&format!("; {n} skipped: {reason}"));
        }
        report.push('\n');
        tallies.push(tally);
    }
    println!("{report}");
    assert!(
        failures.is_empty(),
        "{} disagreements with the expected outcomes:\n{}\n\n{report}",
        failures.len(),
        failures.join("\n")
    );
    // Each path ran most cases, and the forced paths were taken.
    for (path, tally) in paths.iter().zip(&tallies) {
        assert!(
            tally.ran * 2 > cases.len(),
            "{}: ran only {} cases\n{report}",
            path.name,
            tally.ran
        );
        match (path.paths.automaton, path.paths.fingerprints) {
            (AutomatonPath::Off, _) => assert_eq!(tally.automata, 0, "{}", path.name),
            _ => assert!(tally.automata > 0, "{}: no automaton built", path.name),
        }
        match path.paths.hashes {
            HashPath::Never => assert_eq!(tally.hash_sets, 0, "{}", path.name),
            HashPath::Auto => assert!(tally.hash_sets > 0, "{}: no hash set", path.name),
        }
        if path.paths.fingerprints == FingerprintPath::Always {
            assert!(
                tally.with_fingerprints > 0,
                "{}: no fingerprints",
                path.name
            );
        }
    }
}
