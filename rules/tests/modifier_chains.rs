//! `docs/sigma-modifiers.md` against the code, so that the table cannot
//! drift: each chain is lowered as its row says (accepted with the letter
//! case given, or refused with the reason given), each case named uses
//! the chain, every modifier vagt knows has a row, and every chain the
//! semantics cases and the SigmaHQ rules use is in the accepted table.

use std::collections::{BTreeSet, HashMap};
use std::path::PathBuf;

use serde_yaml_ng::Value;
use vagt_rules::sigma::modifiers::{lower_item, MODIFIER_NAMES};
use vagt_rules::sigma::{Cond, Test};
use vagt_rules::Placeholders;

use crate::corpus::corpora;
use crate::semantics::{chains_of, load_cases};

/// One row of a table: its cells, `\|` unescaped, code spans unwrapped.
#[derive(Debug)]
struct Row {
    cells: Vec<String>,
    line: usize,
}

fn doc() -> String {
    let path = PathBuf::from(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../docs/sigma-modifiers.md"
    ));
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The rows of the table under the heading `heading`.
fn table(doc: &str, heading: &str) -> Vec<Row> {
    let mut rows = Vec::new();
    let mut inside = false;
    for (n, line) in doc.lines().enumerate() {
        if line.starts_with("## ") {
            inside = line.trim_start_matches("## ") == heading;
            continue;
        }
        if !inside
            || !line.starts_with('|')
            || line.starts_with("|---")
            || line.starts_with("| Chain")
        {
            continue;
        }
        let mut cells = Vec::new();
        let mut cell = String::new();
        let mut chars = line.trim().trim_matches('|').chars().peekable();
        while let Some(c) = chars.next() {
            match c {
                '\\' if chars.peek() == Some(&'|') => {
                    cell.push('|');
                    chars.next();
                }
                '|' => cells.push(std::mem::take(&mut cell)),
                c => cell.push(c),
            }
        }
        cells.push(cell);
        let cells = cells
            .into_iter()
            .map(|c| c.trim().trim_matches('`').to_string())
            .collect();
        rows.push(Row { cells, line: n + 1 });
    }
    assert!(!rows.is_empty(), "no table under '## {heading}'");
    rows
}

fn chain_of(cell: &str) -> String {
    if cell == "*(none)*" {
        String::new()
    } else {
        cell.to_string()
    }
}

fn lower(chain: &str, example: &str) -> Result<Cond, String> {
    let key = if chain.is_empty() {
        "Field".to_string()
    } else {
        format!("Field|{chain}")
    };
    let value: Value = serde_yaml_ng::from_str(example).map_err(|e| format!("example: {e}"))?;
    let mut placeholders = Placeholders::new();
    placeholders.insert("x".into(), vec!["x".into()]);
    lower_item(&key, &value, &placeholders).map_err(|e| e.to_string())
}

/// The letter case the comparisons of `cond` use: `ignored`, `exact`,
/// `n/a` (no text compared), or `mixed`.
fn letter_case(cond: &Cond) -> &'static str {
    let mut seen = BTreeSet::new();
    cond.for_each_predicate(&mut |p| match &p.test {
        Test::Match { cased, .. } | Test::FieldRef { cased, .. } => {
            seen.insert(*cased);
        }
        Test::Regex { flags, .. } => {
            seen.insert(!flags.insensitive);
        }
        _ => {}
    });
    match (seen.contains(&false), seen.contains(&true)) {
        (false, false) => "n/a",
        (true, false) => "ignored",
        (false, true) => "exact",
        (true, true) => "mixed",
    }
}

/// The chains SigmaHQ's rules use.
fn sigmahq_chains() -> BTreeSet<String> {
    let root = corpora().join("sigmahq");
    let mut chains = BTreeSet::new();
    for entry in walkdir::WalkDir::new(&root).into_iter().flatten() {
        let path = entry.path();
        let in_rules = path
            .strip_prefix(&root)
            .ok()
            .and_then(|p| p.components().next())
            .is_some_and(|c| c.as_os_str().to_string_lossy().starts_with("rules"));
        if !in_rules || path.extension().is_none_or(|e| e != "yml") {
            continue;
        }
        let text = std::fs::read_to_string(path).expect("read a rule");
        for doc in serde_yaml_ng::Deserializer::from_str(&text) {
            if let Ok(rule) = <Value as serde::Deserialize>::deserialize(doc) {
                chains.extend(chains_of(&rule));
            }
        }
    }
    chains
}

#[test]
fn the_modifier_chain_table_agrees_with_the_code() {
    let doc = doc();
    let accepted = table(&doc, "Accepted chains");
    let refused = table(&doc, "Refused chains");
    let cases = load_cases();
    let case_chains: HashMap<&str, Vec<String>> = cases
        .iter()
        .map(|(_, c)| (c.case.as_str(), chains_of(&c.rule)))
        .collect();
    let mut failures = Vec::new();
    let mut documented = BTreeSet::new();

    // | Chain | Meaning | Letter case | Example | Cases |
    for row in &accepted {
        let [chain, _, case, example, named] = &row.cells[..] else {
            panic!("line {}: five cells expected", row.line);
        };
        let chain = chain_of(chain);
        documented.insert(chain.clone());
        match lower(&chain, example) {
            Err(e) => failures.push(format!("line {}: '{chain}' is refused: {e}", row.line)),
            Ok(cond) if letter_case(&cond) != case => failures.push(format!(
                "line {}: '{chain}' compares with letter case {}, the table says {case}",
                row.line,
                letter_case(&cond)
            )),
            Ok(_) => {}
        }
        let named: Vec<&str> = named
            .split(',')
            .map(str::trim)
            .filter(|n| !n.is_empty())
            .collect();
        if named.is_empty() {
            failures.push(format!("line {}: '{chain}' names no case", row.line));
        }
        for name in named {
            match case_chains.get(name) {
                None => failures.push(format!("line {}: no case '{name}'", row.line)),
                Some(used) if !used.contains(&chain) => failures.push(format!(
                    "line {}: case '{name}' does not use '{chain}' (it uses {used:?})",
                    row.line
                )),
                Some(_) => {}
            }
        }
    }

    // | Chain | Reason given | Why | Example | Cases |
    for row in &refused {
        let [chain, reason, _, example, named] = &row.cells[..] else {
            panic!("line {}: five cells expected", row.line);
        };
        documented.insert(chain.clone());
        match lower(chain, example) {
            Ok(_) => failures.push(format!("line {}: '{chain}' is accepted", row.line)),
            Err(e) if !e.contains(reason.as_str()) => failures.push(format!(
                "line {}: '{chain}' is refused with '{e}', not '{reason}'",
                row.line
            )),
            Err(_) => {}
        }
        for name in named.split(',').map(str::trim).filter(|n| !n.is_empty()) {
            let rejected = cases
                .iter()
                .any(|(_, c)| c.case == name && c.reject.is_some());
            if !rejected || !case_chains.get(name).is_some_and(|u| u.contains(chain)) {
                failures.push(format!(
                    "line {}: '{name}' is not a rejection case using '{chain}'",
                    row.line
                ));
            }
        }
    }

    // Every modifier has a row.
    let in_rows: BTreeSet<&str> = documented.iter().flat_map(|c| c.split('|')).collect();
    for name in MODIFIER_NAMES {
        if !in_rows.contains(name) {
            failures.push(format!("modifier '{name}' is in no row"));
        }
    }
    // Every chain in use is accepted in the table.
    let accepted_chains: BTreeSet<String> =
        accepted.iter().map(|r| chain_of(&r.cells[0])).collect();
    for (_, case) in cases.iter().filter(|(_, c)| c.reject.is_none()) {
        for chain in chains_of(&case.rule) {
            if !accepted_chains.contains(&chain) {
                failures.push(format!(
                    "case '{}' uses '{chain}', not in the table",
                    case.case
                ));
            }
        }
    }
    let sigmahq = sigmahq_chains();
    assert!(sigmahq.len() >= 10, "SigmaHQ's chains: {sigmahq:?}");
    for chain in &sigmahq {
        if !accepted_chains.contains(chain) {
            failures.push(format!("SigmaHQ uses '{chain}', not in the accepted table"));
        }
    }
    assert!(
        failures.is_empty(),
        "docs/sigma-modifiers.md disagrees with the code:\n{}",
        failures.join("\n")
    );
    println!(
        "{} accepted and {} refused chains checked; SigmaHQ uses {} chains, all accepted",
        accepted.len(),
        refused.len(),
        sigmahq.len()
    );
}
