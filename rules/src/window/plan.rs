//! Resolving windowed rules against the compiled detection rules: which
//! rule feeds which window (by id or name), where each group-by and value
//! field is read (profile columns, aliases, or a chained correlation's
//! group), which rules alert on their own (`generate`), and rejection of
//! missing references and cycles.

use std::collections::HashMap;

use arrow_array::cast::AsArray;
use arrow_array::types::{Float64Type, Int64Type, UInt64Type};
use arrow_array::{Array, RecordBatch};
use arrow_schema::DataType;

use super::spec::WindowRule;
use crate::error::RuleError;
use crate::loader::{LoadedWindowRule, Origin, Rejection};
use crate::{LogSource, Profile, RuleSet};

/// Where one field of an observation is read.
#[derive(Debug, Clone, PartialEq)]
pub enum FieldSource {
    /// From the event: the first of these columns present and non-null.
    Columns(Vec<String>),
    /// From the alert of a chained rule: its group value at this index.
    ChildGroup(usize),
}

/// One input of a windowed rule: a detection rule's matches or a chained
/// windowed rule's alerts.
#[derive(Debug, Clone, PartialEq)]
pub struct Feed {
    /// The windowed rule fed.
    pub window: usize,
    /// Which of its referenced rules this is (position in `rules`).
    pub slot: usize,
    /// Where each group-by field is read.
    pub group: Vec<FieldSource>,
    /// Where each value field is read (see [`WindowKind::value_fields`](super::spec::WindowKind::value_fields)).
    pub values: Vec<FieldSource>,
}

/// A resolved windowed rule.
#[derive(Debug, Clone)]
pub struct PlannedRule {
    /// The rule.
    pub rule: WindowRule,
    /// Where it is defined.
    pub origin: Origin,
    /// Identity across restarts (for snapshots): id, name or title, with
    /// the definition's shape so that a changed rule starts afresh.
    pub key: String,
    /// Whether its alerts are emitted (false when only a chained rule uses
    /// it and none of its users says `generate: true`).
    pub emits: bool,
    /// The logsource of its events: that of its detection rules when they
    /// share one (always so for a statistic with an inline detection),
    /// else empty.
    pub logsource: LogSource,
}

/// The windowed rules of a run, resolved.
#[derive(Debug, Clone, Default)]
pub struct WindowPlan {
    /// The rules; indices are used throughout.
    pub rules: Vec<PlannedRule>,
    base_feeds: Vec<Vec<Feed>>,
    window_feeds: Vec<Vec<Feed>>,
    base_suppressed: Vec<bool>,
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Input {
    Base(usize),
    Window(usize),
}

impl WindowPlan {
    /// Every column a windowed rule reads a group-by or value field from.
    pub fn columns_read(&self) -> impl Iterator<Item = &str> {
        self.base_feeds
            .iter()
            .chain(&self.window_feeds)
            .flatten()
            .flat_map(|feed| feed.group.iter().chain(&feed.values))
            .filter_map(|source| match source {
                FieldSource::Columns(columns) => Some(columns),
                FieldSource::ChildGroup(_) => None,
            })
            .flatten()
            .map(String::as_str)
    }

    /// Whether `other` plans the same windowed rules, in the same order
    /// (their keys): state made under one is valid under the other.
    pub fn same_rules(&self, other: &WindowPlan) -> bool {
        self.rules.len() == other.rules.len()
            && self
                .rules
                .iter()
                .zip(&other.rules)
                .all(|(a, b)| a.key == b.key)
    }

    /// Resolves `windows` against the detection rules of `set`. Rules with
    /// a missing reference, in a cycle, or depending on a rejected rule are
    /// rejected; the others are planned.
    pub fn build(
        windows: &[LoadedWindowRule],
        set: &RuleSet,
        profile: &Profile,
    ) -> (WindowPlan, Vec<Rejection>) {
        let mut by_name: HashMap<&str, Input> = HashMap::new();
        for index in (0..set.len()).rev() {
            let meta = &set.rule(index).meta;
            for key in [&meta.id, &meta.name].into_iter().flatten() {
                by_name.insert(key.as_str(), Input::Base(index));
            }
        }
        for (index, w) in windows.iter().enumerate().rev() {
            for key in [&w.rule.meta.id, &w.rule.meta.name].into_iter().flatten() {
                by_name.insert(key.as_str(), Input::Window(index));
            }
        }
        let mut errors: Vec<Option<RuleError>> = vec![None; windows.len()];
        let mut inputs: Vec<Vec<Input>> = Vec::with_capacity(windows.len());
        for (index, w) in windows.iter().enumerate() {
            let mut resolved = Vec::new();
            for reference in &w.rule.rules {
                match by_name.get(reference.as_str()) {
                    Some(input) => resolved.push(*input),
                    None => {
                        errors[index] = Some(RuleError::MissingReference(reference.clone()));
                        break;
                    }
                }
            }
            inputs.push(resolved);
        }
        // Cycles among windowed rules, and how deep chains go: one pass.
        let references = References::of(&inputs);
        for (index, error) in errors.iter_mut().enumerate() {
            if error.is_some() {
                continue;
            }
            if let Some(path) = &references.cycles[index] {
                let names: Vec<String> = path
                    .iter()
                    .map(|i| display_name(&windows[*i].rule))
                    .collect();
                *error = Some(RuleError::ReferenceCycle(names.join(" → ")));
            } else if references.depth[index] > MAX_CHAIN_DEPTH {
                *error = Some(RuleError::Unsupported(format!(
                    "correlations chained {} deep; at most {MAX_CHAIN_DEPTH}",
                    references.depth[index]
                )));
            }
        }
        // Where each rule reads its fields, per input (feeds carry the
        // rule's own index until numbering).
        let mut feeds_of: Vec<Vec<(Input, Feed)>> = vec![Vec::new(); windows.len()];
        for (index, w) in windows.iter().enumerate() {
            if errors[index].is_some() {
                continue;
            }
            match field_sources(index, &w.rule, &inputs[index], set, profile, windows) {
                Ok(feeds) => feeds_of[index] = feeds,
                Err(e) => errors[index] = Some(e),
            }
        }
        // A rule that uses a rejected rule is rejected too (referenced
        // rules come first in this order).
        for &index in &references.order {
            if errors[index].is_some() {
                continue;
            }
            let bad = inputs[index].iter().find_map(|input| match input {
                Input::Window(j) if errors[*j].is_some() => Some(*j),
                _ => None,
            });
            if let Some(j) = bad {
                errors[index] = Some(RuleError::RejectedReference(display_name(&windows[j].rule)));
            }
        }
        // Number the rules that run.
        let mut planned_index = vec![usize::MAX; windows.len()];
        let mut next = 0;
        for index in 0..windows.len() {
            if errors[index].is_none() {
                planned_index[index] = next;
                next += 1;
            }
        }
        let mut plan = WindowPlan {
            rules: Vec::new(),
            base_feeds: vec![Vec::new(); set.len()],
            window_feeds: vec![Vec::new(); next],
            base_suppressed: vec![false; set.len()],
        };
        let mut base_generated = vec![false; set.len()];
        let mut window_used = vec![false; next];
        let mut window_generated = vec![false; next];
        for (index, w) in windows.iter().enumerate() {
            if planned_index[index] == usize::MAX {
                continue;
            }
            let rule = w.rule.clone();
            for (input, mut feed) in std::mem::take(&mut feeds_of[index]) {
                feed.window = planned_index[index];
                match input {
                    Input::Base(b) => {
                        base_generated[b] |= rule.generate;
                        plan.base_suppressed[b] = true;
                        plan.base_feeds[b].push(feed);
                    }
                    Input::Window(c) => {
                        let c = planned_index[c];
                        window_used[c] = true;
                        window_generated[c] |= rule.generate;
                        plan.window_feeds[c].push(feed);
                    }
                }
            }
            let mut logsources = inputs[index].iter().map(|input| match input {
                Input::Base(b) => Some(&set.rule(*b).logsource),
                Input::Window(_) => None,
            });
            let first = logsources.next().flatten();
            let logsource = match first {
                Some(l) if logsources.all(|o| o == Some(l)) => l.clone(),
                _ => LogSource::default(),
            };
            plan.rules.push(PlannedRule {
                logsource,
                key: state_key(&rule),
                rule,
                origin: w.origin.clone(),
                emits: true,
            });
        }
        for (b, suppressed) in plan.base_suppressed.iter_mut().enumerate() {
            *suppressed &= !base_generated[b];
        }
        for (p, rule) in plan.rules.iter_mut().enumerate() {
            rule.emits = !window_used[p] || window_generated[p];
        }
        let rejected = errors
            .into_iter()
            .enumerate()
            .filter_map(|(index, error)| {
                let w = &windows[index];
                Some(Rejection {
                    origin: w.origin.clone(),
                    rule_id: w.rule.meta.id.clone(),
                    title: Some(w.rule.meta.title.clone()),
                    error: error?,
                })
            })
            .collect();
        (plan, rejected)
    }

    /// True if no windowed rule is planned.
    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }

    /// Windowed rules that run.
    pub fn active(&self) -> usize {
        self.rules.len()
    }

    /// The windows fed by detection rule `rule`'s matches.
    pub fn base_feeds(&self, rule: usize) -> &[Feed] {
        self.base_feeds.get(rule).map(Vec::as_slice).unwrap_or(&[])
    }

    /// The windows fed by windowed rule `window`'s alerts.
    pub fn window_feeds(&self, window: usize) -> &[Feed] {
        &self.window_feeds[window]
    }

    /// Whether detection rule `rule` alerts on its own: false when it only
    /// feeds windowed rules and none of them says `generate: true`.
    pub fn base_emits(&self, rule: usize) -> bool {
        !self.base_suppressed.get(rule).copied().unwrap_or(false)
    }

    /// Whether any detection rule feeds a window.
    pub fn feeds_any(&self) -> bool {
        self.base_feeds.iter().any(|f| !f.is_empty())
    }
}

/// Where rule `index` reads its group-by and value fields, per input.
fn field_sources(
    index: usize,
    rule: &WindowRule,
    inputs: &[Input],
    set: &RuleSet,
    profile: &Profile,
    windows: &[LoadedWindowRule],
) -> Result<Vec<(Input, Feed)>, RuleError> {
    let mut feeds = Vec::new();
    for (slot, input) in inputs.iter().enumerate() {
        let reference = &rule.rules[slot];
        let resolve = |field: &String| -> Result<FieldSource, RuleError> {
            let field = alias_for(rule, field, reference, *input, set, windows);
            match input {
                Input::Base(b) => Ok(FieldSource::Columns(
                    profile.columns_for(&field, &set.rule(*b).logsource),
                )),
                Input::Window(c) => windows[*c]
                    .rule
                    .group_by
                    .iter()
                    .position(|g| *g == field)
                    .map(FieldSource::ChildGroup)
                    .ok_or_else(|| RuleError::Attribute {
                        attribute: "group-by".into(),
                        message: format!(
                            "'{field}' is not a group-by field of the referenced rule '{reference}', so its alerts do not carry it"
                        ),
                    }),
            }
        };
        let group = rule
            .group_by
            .iter()
            .map(resolve)
            .collect::<Result<_, _>>()?;
        let values = rule
            .kind
            .value_fields()
            .iter()
            .map(resolve)
            .collect::<Result<_, _>>()?;
        feeds.push((
            *input,
            Feed {
                window: index,
                slot,
                group,
                values,
            },
        ));
    }
    Ok(feeds)
}

/// A rule's identity in snapshots: its id (or name, or title) and a hash
/// of everything that shapes its state, so that a changed rule starts
/// afresh instead of inheriting state it would misread.
fn state_key(rule: &WindowRule) -> String {
    let shape = format!(
        "{:?}|{:?}|{:?}|{:?}|{:?}|{:?}",
        rule.kind, rule.rules, rule.group_by, rule.aliases, rule.timespan, rule.condition
    );
    let hash = shape.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
    });
    let name = rule
        .meta
        .id
        .as_deref()
        .or(rule.meta.name.as_deref())
        .unwrap_or(&rule.meta.title);
    format!("{name}#{hash:016x}")
}

/// The event field to read for `field` (a group-by field or alias) in the
/// events of `reference`.
fn alias_for(
    rule: &WindowRule,
    field: &str,
    reference: &str,
    input: Input,
    set: &RuleSet,
    windows: &[LoadedWindowRule],
) -> String {
    let Some(per_rule) = rule.aliases.get(field) else {
        return field.to_string();
    };
    let (id, name) = match input {
        Input::Base(b) => (
            set.rule(b).meta.id.as_deref(),
            set.rule(b).meta.name.as_deref(),
        ),
        Input::Window(c) => (
            windows[c].rule.meta.id.as_deref(),
            windows[c].rule.meta.name.as_deref(),
        ),
    };
    [Some(reference), id, name]
        .into_iter()
        .flatten()
        .find_map(|k| per_rule.get(k))
        .cloned()
        .unwrap_or_else(|| field.to_string())
}

fn display_name(rule: &WindowRule) -> String {
    rule.meta
        .name
        .clone()
        .or_else(|| rule.meta.id.clone())
        .unwrap_or_else(|| rule.meta.title.clone())
}

/// A path of windowed rules from `start` back to itself, if any.
/// How deep correlations over correlations may go. Real chains are one or
/// two levels; each level is work on every alert of the one below.
pub const MAX_CHAIN_DEPTH: usize = 16;

/// What the references among windowed rules make, found in one pass
/// (Tarjan's strongly connected components, iteratively).
struct References {
    /// Per rule on a cycle, one cycle through it, as rule indices.
    cycles: Vec<Option<Vec<usize>>>,
    /// Per rule, the longest chain of windowed rules below and including
    /// it (for rules off any cycle).
    depth: Vec<usize>,
    /// Every rule, each after the rules it references (but on cycles).
    order: Vec<usize>,
}

impl References {
    fn of(inputs: &[Vec<Input>]) -> References {
        let n = inputs.len();
        let children = |v: usize| -> Vec<usize> {
            inputs[v]
                .iter()
                .filter_map(|i| match i {
                    Input::Window(j) => Some(*j),
                    Input::Base(_) => None,
                })
                .collect()
        };
        let mut found = References {
            cycles: vec![None; n],
            depth: vec![1; n],
            order: Vec::with_capacity(n),
        };
        let mut index: Vec<Option<usize>> = vec![None; n];
        let mut low = vec![0usize; n];
        let mut on_stack = vec![false; n];
        let mut stack: Vec<usize> = Vec::new();
        let mut next = 0;
        for root in 0..n {
            if index[root].is_some() {
                continue;
            }
            // (node, its children, the next child to visit)
            let mut calls: Vec<(usize, Vec<usize>, usize)> = Vec::new();
            index[root] = Some(next);
            low[root] = next;
            next += 1;
            stack.push(root);
            on_stack[root] = true;
            calls.push((root, children(root), 0));
            while let Some((v, kids, at)) = calls.last_mut() {
                let v = *v;
                if let Some(&w) = kids.get(*at) {
                    *at += 1;
                    match index[w] {
                        None => {
                            index[w] = Some(next);
                            low[w] = next;
                            next += 1;
                            stack.push(w);
                            on_stack[w] = true;
                            calls.push((w, children(w), 0));
                        }
                        Some(iw) if on_stack[w] => low[v] = low[v].min(iw),
                        Some(_) => {}
                    }
                    continue;
                }
                calls.pop();
                if let Some((parent, _, _)) = calls.last() {
                    low[*parent] = low[*parent].min(low[v]);
                }
                if Some(low[v]) != index[v] {
                    continue;
                }
                let mut component = Vec::new();
                while let Some(w) = stack.pop() {
                    on_stack[w] = false;
                    component.push(w);
                    if w == v {
                        break;
                    }
                }
                let cyclic = component.len() > 1 || children(v).contains(&v);
                for &w in &component {
                    if cyclic {
                        found.cycles[w] = Some(cycle_through(w, &component, &children));
                    } else {
                        found.depth[w] = 1 + children(w)
                            .iter()
                            .map(|c| found.depth[*c])
                            .max()
                            .unwrap_or(0);
                    }
                    found.order.push(w);
                }
            }
        }
        found
    }
}

/// A cycle from `start` back to it within its component (breadth first),
/// for the message.
fn cycle_through(
    start: usize,
    component: &[usize],
    children: &dyn Fn(usize) -> Vec<usize>,
) -> Vec<usize> {
    let mut came_from: std::collections::HashMap<usize, usize> = Default::default();
    let mut queue = std::collections::VecDeque::from([start]);
    while let Some(v) = queue.pop_front() {
        for c in children(v) {
            if c == start {
                let mut path = vec![start];
                let mut at = v;
                while at != start {
                    path.push(at);
                    at = came_from[&at];
                }
                path.push(start);
                let end = path.len() - 1;
                path[1..end].reverse();
                return path;
            }
            if component.contains(&c) && !came_from.contains_key(&c) {
                came_from.insert(c, v);
                queue.push_back(c);
            }
        }
    }
    vec![start, start]
}

/// Reads one field of a row as text (numbers and booleans as written,
/// list elements joined by commas).
pub fn read_field(batch: &RecordBatch, source: &FieldSource, row: usize) -> Option<String> {
    let FieldSource::Columns(columns) = source else {
        return None;
    };
    let schema = batch.schema();
    for name in columns {
        // Not `index_of`: its error formats every field name.
        let Some((index, _)) = schema.column_with_name(name) else {
            continue;
        };
        let array = batch.column(index);
        if array.is_null(row) {
            continue;
        }
        return Some(match array.data_type() {
            DataType::Utf8 => array.as_string::<i32>().value(row).to_string(),
            DataType::Int64 => array.as_primitive::<Int64Type>().value(row).to_string(),
            DataType::UInt64 => array.as_primitive::<UInt64Type>().value(row).to_string(),
            DataType::Float64 => array.as_primitive::<Float64Type>().value(row).to_string(),
            DataType::Boolean => array.as_boolean().value(row).to_string(),
            DataType::List(_) => {
                let list = array.as_list::<i32>().value(row);
                match list.as_string_opt::<i32>() {
                    Some(strings) => strings.iter().flatten().collect::<Vec<_>>().join(","),
                    None => continue,
                }
            }
            _ => continue,
        });
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_rule_using_a_rejected_rule_is_rejected_too() {
        use crate::{load_text, Placeholders, RuleCollection, RuleSetBuilder};
        let text = "title: base\nname: base\nlogsource: {product: test}\ndetection: {sel: {a: 1}, condition: sel}\n---\ntitle: child\nname: child\ncorrelation: {type: event_count, rules: [base], group-by: [host], timespan: 1m, condition: {gte: 2}}\n---\ntitle: middle\nname: middle\ncorrelation: {type: event_count, rules: [child], group-by: [user], timespan: 1h, condition: {gte: 2}}\n---\ntitle: top\ncorrelation: {type: event_count, rules: [middle], group-by: [user], timespan: 1d, condition: {gte: 2}}\n";
        let mut rules = RuleCollection::default();
        load_text("t.yml".as_ref(), text, &Placeholders::new(), &mut rules);
        let compiled = RuleSetBuilder::new(Profile::passthrough()).build(&rules);
        let errors: Vec<String> = compiled.rejected.iter().map(|r| r.to_string()).collect();
        assert_eq!(errors.len(), 2, "{errors:?}");
        assert!(
            errors[0].contains("middle: attribute 'group-by': 'user' is not a group-by field"),
            "{errors:?}"
        );
        assert!(
            errors[1].contains("top: referenced rule 'middle' was rejected"),
            "{errors:?}"
        );
        assert_eq!(compiled.windows.active(), 1);
        // The child runs and, used by no running rule, alerts on its own.
        assert!(compiled.windows.rules[0].emits);
    }

    #[test]
    fn cycles_are_found() {
        let inputs = vec![
            vec![Input::Window(1)],
            vec![Input::Base(0), Input::Window(2)],
            vec![Input::Window(0)],
            vec![Input::Window(0)],
        ];
        let found = References::of(&inputs);
        assert_eq!(found.cycles[0], Some(vec![0, 1, 2, 0]));
        assert_eq!(found.cycles[1], Some(vec![1, 2, 0, 1]));
        assert_eq!(found.cycles[3], None);
        // 3 references the cycle: after it in the order.
        assert_eq!(found.order.last(), Some(&3));
    }

    /// Regression: 20,000 correlations each over the one before took 29 s
    /// to check (a search for cycles from every rule); beyond 16 levels a
    /// chain is refused, and the check is one pass.
    #[test]
    fn long_chains_are_measured_in_one_pass_and_refused_past_the_bound() {
        let n = 20_000;
        let inputs: Vec<Vec<Input>> = (0..n)
            .map(|i| {
                if i == 0 {
                    vec![Input::Base(0)]
                } else {
                    vec![Input::Window(i - 1)]
                }
            })
            .collect();
        // One iterative pass (Tarjan's components, depths on the way
        // back): a chain this long neither recurses nor searches from
        // every rule.
        let found = References::of(&inputs);
        assert_eq!(found.depth[0], 1);
        assert_eq!(found.depth[n - 1], n);
        assert!(found.cycles.iter().all(Option::is_none));
        assert_eq!(found.order[0], 0);
    }
}
