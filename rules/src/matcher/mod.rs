//! Evaluating a [`RuleSet`] over one Arrow `RecordBatch`.
//!
//! Per batch: resolve each field to the batch's columns; run each field's
//! Aho-Corasick automaton over its string columns, each distinct value
//! once, or its fingerprints over the contiguous bytes of a column of long
//! values (lazily, the first time a rule needs it); compute each rule's
//! logsource rows once per logsource; then evaluate rule conditions as
//! bitmap operations, narrowing the candidate rows as an `and` proceeds so
//! that expensive tests (regexes without a literal, CIDR, time parts) only
//! run on rows that are still candidates.

pub(crate) mod columns;
pub(crate) mod contains;
mod repeats;
mod rowset;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

use arrow_array::{Array, RecordBatch};
use arrow_schema::Schema;
use chrono::{Datelike, NaiveDateTime, Timelike};

pub use rowset::RowSet;

use crate::compile::fingerprint::Fingerprints;
use crate::compile::paths::ScanPath;
use crate::compile::{
    FieldAutomaton, FieldId, FieldScope, LeafId, LeafKind, Mode, NeedleId, Node, RuleSet, Searcher,
    TextCheck, NULLS_COLUMN,
};
use crate::sigma::TimePart;
use columns::Column;
use contains::{contains_ascii_fold, LoweredValues};
use repeats::Repeats;

/// One rule matching one row of a batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct RuleMatch {
    /// Row in the batch.
    pub row: usize,
    /// Rule index in the [`RuleSet`].
    pub rule: usize,
}

/// Work done for one rule since the stats were last drained.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RuleStats {
    /// Batches in which the rule was evaluated (its logsource had rows),
    /// including those it was skipped on because none of its literals was
    /// in them.
    pub evaluations: u64,
    /// Rows it matched.
    pub matches: u64,
    /// Time spent evaluating it, in nanoseconds. Shared work (a field's
    /// prefilter search) is counted for the first rule that needs it while
    /// evaluating; a search run to check the rules' triggers (whether any
    /// of their literals is in the batch) is counted for none.
    pub nanos: u64,
}

/// Per-worker mutable state for evaluation; reuse it across batches.
#[derive(Debug, Default)]
pub struct Scratch {
    rule_stats: Vec<RuleStats>,
    schema: Option<Arc<Schema>>,
    column_index: HashMap<String, usize>,
    field_columns: Vec<Option<Vec<usize>>>,
    columns: Vec<Option<Column>>,
    scanned: Vec<bool>,
    hits: Vec<Option<RowSet>>,
    touched: Vec<usize>,
    leaf_cache: Vec<Option<RowSet>>,
    /// Per text leaf tested row by row: the rows tested so far in this
    /// batch and those it holds in, so that a literal that several
    /// selections share (`hidden` in four of one rule) is tested once
    /// per row.
    tested: Vec<Option<(RowSet, RowSet)>>,
    /// The leaves cached or tested in this batch, to clear only those for
    /// the next (a set holds tens of thousands of leaves; a batch of a few
    /// events reads few of them).
    cached_leaves: Vec<usize>,
    route_cache: Vec<Option<RowSet>>,
    /// Long string values lowercased in this batch, for `contains` tests.
    lowered: LoweredValues,
    rows: usize,
    /// When set, evaluation stops between rules (a run giving up).
    cancel: Option<Arc<std::sync::atomic::AtomicBool>>,
    cancelled: bool,
}

impl Scratch {
    /// Evaluation gives up, between two rules, once `flag` is set; see
    /// [`Scratch::was_cancelled`].
    pub fn cancel_when(&mut self, flag: Arc<std::sync::atomic::AtomicBool>) {
        self.cancel = Some(flag);
    }

    /// The last evaluation gave up before its end: its matches are
    /// incomplete.
    pub fn was_cancelled(&self) -> bool {
        self.cancelled
    }

    /// Hands the per-rule stats accumulated since the last call to `f`
    /// (rule index, stats), for rules that did any work, and resets them.
    pub fn drain_rule_stats(&mut self, mut f: impl FnMut(usize, RuleStats)) {
        for (index, stats) in self.rule_stats.iter_mut().enumerate() {
            if stats.evaluations > 0 {
                f(index, *stats);
                *stats = RuleStats::default();
            }
        }
    }
}

impl RuleSet {
    /// Fresh scratch state for this set.
    pub fn scratch(&self) -> Scratch {
        Scratch::default()
    }

    /// Evaluates every rule over the batch; matches are ordered by row,
    /// then rule.
    pub fn evaluate(&self, batch: &RecordBatch, scratch: &mut Scratch) -> Vec<RuleMatch> {
        scratch.cancelled = false;
        self.prepare(batch, scratch);
        let mut matches = Vec::new();
        let rows = batch.num_rows();
        if rows == 0 {
            return matches;
        }
        let all = RowSet::full(rows);
        scratch
            .rule_stats
            .resize(self.rules.len(), RuleStats::default());
        for (index, rule) in self.rules.iter().enumerate() {
            if scratch
                .cancel
                .as_ref()
                .is_some_and(|f| f.load(std::sync::atomic::Ordering::Relaxed))
            {
                scratch.cancelled = true;
                return Vec::new();
            }
            // Most rules of a small batch are not for its logsources.
            if scratch.route_cache[rule.route]
                .as_ref()
                .is_some_and(RowSet::is_empty)
            {
                continue;
            }
            let domain = self.route_rows(rule.route, batch, scratch, &all);
            if domain.is_empty() {
                continue;
            }
            if let Some(trigger) = &rule.trigger {
                if !trigger.iter().any(|&id| self.may_hold(id, batch, scratch)) {
                    scratch.rule_stats[index].evaluations += 1;
                    continue;
                }
            }
            let started = Instant::now();
            let hit = self.eval(&rule.node, &domain, batch, scratch);
            let before = matches.len();
            matches.extend(hit.iter().map(|row| RuleMatch { row, rule: index }));
            let stats = &mut scratch.rule_stats[index];
            stats.evaluations += 1;
            stats.matches += (matches.len() - before) as u64;
            stats.nanos += started.elapsed().as_nanos() as u64;
        }
        matches.sort_unstable();
        matches
    }

    /// Runs only the multi-pattern prefilter: every field's automaton over
    /// the batch (on the rows its rules can look at), no rule logic.
    /// Returns the number of (literal, row) hits. For benchmarks and
    /// diagnostics.
    pub fn prefilter_hits(&self, batch: &RecordBatch, scratch: &mut Scratch) -> usize {
        self.prepare(batch, scratch);
        for field in 0..self.fields.len() {
            self.scan_field(field, batch, scratch);
        }
        scratch.hits.iter().flatten().map(RowSet::count).sum()
    }

    fn prepare(&self, batch: &RecordBatch, s: &mut Scratch) {
        let schema = batch.schema();
        if s.schema.as_ref() != Some(&schema) {
            s.column_index = schema
                .fields()
                .iter()
                .enumerate()
                .map(|(i, f)| (f.name().clone(), i))
                .collect();
            // Sigma: field names are the log's names with spaces stripped
            // ("Threat Name" is ThreatName).
            for (i, f) in schema.fields().iter().enumerate() {
                if f.name().contains(' ') {
                    s.column_index.entry(f.name().replace(' ', "")).or_insert(i);
                }
            }
            s.field_columns = vec![None; self.fields.len()];
            s.schema = Some(schema.clone());
        }
        s.field_columns.resize(self.fields.len(), None);
        s.columns.clear();
        s.columns.resize(batch.num_columns(), None);
        s.scanned.clear();
        s.scanned.resize(self.fields.len(), false);
        for n in s.touched.drain(..) {
            s.hits[n] = None;
        }
        s.hits.resize(self.needle_count, None);
        if s.leaf_cache.len() == self.leaves.len() {
            for id in s.cached_leaves.drain(..) {
                s.leaf_cache[id] = None;
                s.tested[id] = None;
            }
        } else {
            s.cached_leaves.clear();
            s.leaf_cache.clear();
            s.leaf_cache.resize(self.leaves.len(), None);
            s.tested.clear();
            s.tested.resize(self.leaves.len(), None);
        }
        s.route_cache.clear();
        s.route_cache.resize(self.routes.len(), None);
        s.lowered.clear();
        s.rows = batch.num_rows();
    }

    fn route_rows(
        &self,
        route: usize,
        batch: &RecordBatch,
        s: &mut Scratch,
        all: &RowSet,
    ) -> RowSet {
        if let Some(r) = &s.route_cache[route] {
            return r.clone();
        }
        let rows = match &self.routes[route] {
            None => all.clone(),
            Some(node) => self.eval(node, all, batch, s),
        };
        s.route_cache[route] = Some(rows.clone());
        rows
    }

    fn eval(&self, node: &Node, domain: &RowSet, batch: &RecordBatch, s: &mut Scratch) -> RowSet {
        match node {
            Node::Leaf(id) => self.leaf(*id, domain, batch, s),
            Node::And(children) => {
                let mut current = domain.clone();
                for child in children {
                    if current.is_empty() {
                        break;
                    }
                    current = self.eval(child, &current, batch, s);
                }
                current
            }
            Node::Or(children) => {
                let mut matched = RowSet::empty(domain.capacity());
                let mut rest = domain.clone();
                for child in children {
                    if rest.is_empty() {
                        break;
                    }
                    let hit = self.eval(child, &rest, batch, s);
                    rest.and_not_with(&hit);
                    matched.or_with(&hit);
                }
                matched
            }
            Node::Not(inner) => {
                let hit = self.eval(inner, domain, batch, s);
                let mut out = domain.clone();
                out.and_not_with(&hit);
                out
            }
            Node::AtLeast(n, children) => {
                let mut counts = vec![0usize; domain.capacity()];
                for child in children {
                    for row in self.eval(child, domain, batch, s).iter() {
                        counts[row] += 1;
                    }
                }
                let mut out = RowSet::empty(domain.capacity());
                for row in domain.iter() {
                    if counts[row] >= *n {
                        out.insert(row);
                    }
                }
                out
            }
        }
    }

    fn resolve_field(&self, field: FieldId, batch: &RecordBatch, s: &mut Scratch) -> Vec<usize> {
        if let Some(cols) = &s.field_columns[field] {
            return cols.clone();
        }
        let mut cols = Vec::new();
        for candidate in &self.fields[field] {
            if candidate.contains('*') {
                for (i, f) in batch.schema().fields().iter().enumerate() {
                    if path_matches(f.name(), candidate) && !cols.contains(&i) {
                        cols.push(i);
                    }
                }
            } else if let Some(i) = s.column_index.get(candidate) {
                if !cols.contains(i) {
                    cols.push(*i);
                }
            }
        }
        s.field_columns[field] = Some(cols.clone());
        cols
    }

    /// Resolves the field's columns and readies them for
    /// [`RuleSet::columns_of`], without copying them.
    fn ready_field(&self, field: FieldId, batch: &RecordBatch, s: &mut Scratch) {
        if s.field_columns[field].is_none() {
            self.resolve_field(field, batch, s);
        }
        let Some(cols) = &s.field_columns[field] else {
            return;
        };
        for &c in cols {
            ready_column(&mut s.columns, c, batch);
        }
    }

    /// The columns of a field readied by [`RuleSet::ready_field`].
    fn columns_of(field: FieldId, s: &Scratch) -> impl Iterator<Item = &Column> + Clone {
        s.field_columns[field]
            .as_deref()
            .unwrap_or_default()
            .iter()
            .filter_map(|c| s.columns[*c].as_ref())
    }

    fn column<'s>(&self, index: usize, batch: &RecordBatch, s: &'s mut Scratch) -> &'s Column {
        ready_column(&mut s.columns, index, batch)
    }

    /// Runs the field's automaton over its string columns, filling `hits`.
    fn scan_field(&self, field: FieldId, batch: &RecordBatch, s: &mut Scratch) {
        if s.scanned[field] {
            return;
        }
        s.scanned[field] = true;
        let rows = s.rows;
        for automaton in &self.automata[field] {
            // Only the rows some rule reading these literals can look at; if
            // they are few, search them one by one instead of the column.
            let scope = match &automaton.scope {
                FieldScope::All if self.paths.scan == ScanPath::Rows => Some(RowSet::full(rows)),
                FieldScope::All => None,
                FieldScope::Routes(routes) => {
                    let all = RowSet::full(rows);
                    let mut scope = RowSet::empty(rows);
                    for route in routes {
                        scope.or_with(&self.route_rows(*route, batch, s, &all));
                    }
                    if scope.is_empty() {
                        continue;
                    }
                    match self.paths.scan {
                        ScanPath::Auto => (scope.count() * 2 < rows).then_some(scope),
                        ScanPath::Columns => None,
                        ScanPath::Rows => Some(scope),
                    }
                }
            };
            let min_len = self.paths.fingerprint_min_len();
            for col_index in self.resolve_field(field, batch, s) {
                let column = self.column(col_index, batch, s).clone();
                match &scope {
                    Some(scope) => search_rows(automaton, &column, scope, s, min_len),
                    None => search_column(automaton, &column, s, min_len),
                }
            }
        }
    }

    /// The rows of `domain` where text leaf `id` holds, testing only those
    /// not tested yet in this batch.
    fn text_rows(&self, id: LeafId, check: &TextCheck, domain: &RowSet, s: &mut Scratch) -> RowSet {
        let (mut tested, mut holds) = match s.tested[id].take() {
            Some(done) => done,
            None => {
                if s.leaf_cache[id].is_none() {
                    s.cached_leaves.push(id);
                }
                (
                    RowSet::empty(domain.capacity()),
                    RowSet::empty(domain.capacity()),
                )
            }
        };
        let mut todo = domain.clone();
        todo.and_not_with(&tested);
        let mut lowered = std::mem::take(&mut s.lowered);
        {
            let columns = Self::columns_of(self.leaves[id].field, s);
            for row in todo.iter() {
                if columns
                    .clone()
                    .any(|c| column_holds(c, row, check, &mut lowered))
                {
                    holds.insert(row);
                }
            }
        }
        s.lowered = lowered;
        tested.or_with(&todo);
        let mut out = domain.clone();
        out.and_with(&holds);
        s.tested[id] = Some((tested, holds));
        out
    }

    fn leaf(&self, id: LeafId, domain: &RowSet, batch: &RecordBatch, s: &mut Scratch) -> RowSet {
        let leaf = &self.leaves[id];
        // A literal no automaton searches is tested on each row of the
        // domain below, as the leaves that are never cached are.
        if leaf.cacheable() && !self.unsearched_literal(id) {
            if s.leaf_cache[id].is_none() {
                let mut lowered = std::mem::take(&mut s.lowered);
                let full = self.leaf_full(id, batch, s, &mut lowered);
                s.lowered = lowered;
                s.leaf_cache[id] = Some(full);
                s.cached_leaves.push(id);
            }
            let mut out = domain.clone();
            if let Some(cached) = &s.leaf_cache[id] {
                out.and_with(cached);
            }
            return out;
        }
        self.ready_field(leaf.field, batch, s);
        if let LeafKind::FieldRef { other, .. } = &leaf.kind {
            self.ready_field(*other, batch, s);
        }
        if let LeafKind::Text { check, .. } = &leaf.kind {
            return self.text_rows(id, check, domain, s);
        }
        let s = &*s;
        let columns = Self::columns_of(leaf.field, s);
        let mut out = RowSet::empty(domain.capacity());
        match &leaf.kind {
            LeafKind::Compare { op, value } => {
                for row in domain.iter() {
                    if columns
                        .clone()
                        .any(|c| c.any_number(row, &mut |n| op.holds(n, *value)))
                    {
                        out.insert(row);
                    }
                }
            }
            LeafKind::Cidr(net) => {
                for row in domain.iter() {
                    if columns.clone().any(|c| {
                        c.any_value(row, &mut |v| {
                            parse_ip(v).is_some_and(|ip| net.contains(&ip))
                        })
                    }) {
                        out.insert(row);
                    }
                }
            }
            LeafKind::InFeed(set) => {
                let test = set.current();
                for row in domain.iter() {
                    if columns.clone().any(|c| c.any_value(row, &mut |v| test(v))) {
                        out.insert(row);
                    }
                }
            }
            LeafKind::TimePart { part, op, value } => {
                for row in domain.iter() {
                    if columns.clone().any(|c| {
                        c.any_value(row, &mut |v| {
                            time_part(v, *part).is_some_and(|p| op.holds(p as f64, *value))
                        })
                    }) {
                        out.insert(row);
                    }
                }
            }
            LeafKind::FieldRef { other, cased, how } => {
                let others = Self::columns_of(*other, s);
                for row in domain.iter() {
                    let equal = columns.clone().any(|c| {
                        c.any_value(row, &mut |a| {
                            others
                                .clone()
                                .any(|o| o.any_value(row, &mut |b| how.holds(a, b, *cased)))
                        })
                    });
                    if equal {
                        out.insert(row);
                    }
                }
            }
            // Text by `text_rows` above; the others are always cached.
            LeafKind::Text { .. } | LeafKind::AnyValue | LeafKind::Null | LeafKind::Exists => {}
        }
        out
    }

    /// Whether a literal leaf of some rule's trigger can hold in some row:
    /// false when the prefilter found its literal nowhere in the batch and
    /// the field has no column the prefilter does not search (numbers and
    /// booleans are tested without it).
    fn may_hold(&self, id: LeafId, batch: &RecordBatch, s: &mut Scratch) -> bool {
        if let Some(cached) = &s.leaf_cache[id] {
            return !cached.is_empty();
        }
        let leaf = &self.leaves[id];
        let LeafKind::Text {
            needle: Some(needle),
            ..
        } = leaf.kind
        else {
            return true;
        };
        self.ready_field(leaf.field, batch, s);
        if Self::columns_of(leaf.field, s).any(|c| !c.is_text()) {
            return true;
        }
        self.scan_field(leaf.field, batch, s);
        s.hits[needle].is_some()
    }

    /// Adds the rows where one of the field's columns is present with a
    /// JSON null (its columns and the nulls column readied).
    fn add_explicit_nulls(
        &self,
        field: FieldId,
        batch: &RecordBatch,
        s: &Scratch,
        out: &mut RowSet,
    ) {
        let Some(&nulls_index) = s.column_index.get(NULLS_COLUMN) else {
            return;
        };
        let columns = s.field_columns[field].as_deref().unwrap_or_default();
        let Some(nulls) = s.columns[nulls_index].as_ref() else {
            return;
        };
        if columns.is_empty() {
            return;
        }
        let schema = batch.schema();
        let names: Vec<&str> = columns
            .iter()
            .map(|c| schema.field(*c).name().as_str())
            .collect();
        for row in 0..s.rows {
            if nulls.any_value(row, &mut |name| names.contains(&name)) {
                out.insert(row);
            }
        }
    }

    /// Whether `id` is a literal's leaf that no automaton searches: one
    /// tested only on the rows the rest of its rule leaves (see
    /// `searched_literals` in [`crate::compile`]).
    fn unsearched_literal(&self, id: LeafId) -> bool {
        matches!(
            self.leaves[id].kind,
            LeafKind::Text {
                needle: Some(needle),
                ..
            } if !self.searched[needle]
        )
    }

    /// Full-batch result of a cacheable leaf; `lowered` is the batch's
    /// (see [`LoweredValues`]).
    fn leaf_full(
        &self,
        id: LeafId,
        batch: &RecordBatch,
        s: &mut Scratch,
        lowered: &mut LoweredValues,
    ) -> RowSet {
        let leaf = &self.leaves[id];
        let rows = s.rows;
        self.ready_field(leaf.field, batch, s);
        if matches!(
            leaf.kind,
            LeafKind::Text {
                needle: Some(_),
                ..
            }
        ) {
            self.scan_field(leaf.field, batch, s);
        }
        if matches!(leaf.kind, LeafKind::Exists) {
            if let Some(&nulls_index) = s.column_index.get(NULLS_COLUMN) {
                self.column(nulls_index, batch, s);
            }
        }
        let s = &*s;
        let columns = Self::columns_of(leaf.field, s);
        let mut out = RowSet::empty(rows);
        match &leaf.kind {
            LeafKind::AnyValue | LeafKind::Exists => {
                for c in columns {
                    for row in 0..rows {
                        if c.is_valid(row) {
                            out.insert(row);
                        }
                    }
                }
                if matches!(leaf.kind, LeafKind::Exists) {
                    self.add_explicit_nulls(leaf.field, batch, s, &mut out);
                }
            }
            LeafKind::Null => {
                let mut present = RowSet::empty(rows);
                for c in columns {
                    for row in 0..rows {
                        if c.is_valid(row) {
                            present.insert(row);
                        }
                    }
                }
                out = RowSet::full(rows);
                out.and_not_with(&present);
            }
            LeafKind::Text {
                needle: Some(needle),
                check,
            } => {
                // A literal no automaton searches is tested by `leaf` on
                // the rows of its domain.
                if let Some(candidates) = &s.hits[*needle] {
                    if check.answered_by_needle() {
                        out.or_with(candidates);
                    } else {
                        for row in candidates.iter() {
                            if columns
                                .clone()
                                .any(|c| c.is_text() && column_holds(c, row, check, lowered))
                            {
                                out.insert(row);
                            }
                        }
                    }
                }
                // Numeric and boolean columns are not in the automaton.
                for c in columns.clone().filter(|c| !c.is_text()) {
                    match check {
                        TextCheck::Literal {
                            mode: Mode::Exact,
                            int: Some(wanted),
                            ..
                        } if matches!(c, Column::Int(_) | Column::UInt(_)) => {
                            c.rows_with_int(*wanted, &mut |row| out.insert(row));
                        }
                        _ => {
                            for row in 0..rows {
                                if c.any_value(row, &mut |v| text_check(check, v, None)) {
                                    out.insert(row);
                                }
                            }
                        }
                    }
                }
            }
            _ => {}
        }
        out
    }
}

/// Whether a column's dotted name matches a dotted pattern whose `*`
/// segments stand for any one segment (`Event.UserData.*.CommandLine`).
/// Resolved again for every schema, so for every small batch of a live
/// input: without allocating.
pub fn path_matches(name: &str, pattern: &str) -> bool {
    // Most names differ before the first star: no segment walk for them.
    let fixed = &pattern[..pattern.find('*').unwrap_or(pattern.len())];
    if !name.starts_with(fixed) {
        return false;
    }
    let (mut names, mut patterns) = (name.split('.'), pattern.split('.'));
    loop {
        match (names.next(), patterns.next()) {
            (None, None) => return true,
            (Some(n), Some(p)) if p == "*" || n == p => {}
            _ => return false,
        }
    }
}

/// The batch's column `index`, typed for matching once per batch.
fn ready_column<'c>(
    columns: &'c mut [Option<Column>],
    index: usize,
    batch: &RecordBatch,
) -> &'c Column {
    columns[index].get_or_insert_with(|| Column::new(batch.column(index)))
}

/// Runs an automaton over the values of some rows.
fn search_rows(
    automaton: &FieldAutomaton,
    column: &Column,
    scope: &RowSet,
    s: &mut Scratch,
    min_len: usize,
) {
    let elements = scope
        .iter()
        .flat_map(|row| column.elements_of(row).map(move |element| (row, element)));
    search_values(automaton, column, elements, s, min_len);
}

/// Runs an automaton over each of `elements` (row, element) of a string
/// column, a value repeated down the column only once.
fn search_values(
    automaton: &FieldAutomaton,
    column: &Column,
    elements: impl Iterator<Item = (usize, usize)>,
    s: &mut Scratch,
    min_len: usize,
) {
    let Column::Str { values, .. } = column else {
        return;
    };
    let rows = s.rows;
    let mut repeats = Repeats::default();
    // Counted once for the column: the count is shared by the workers.
    let mut searched = 0;
    for (row, element) in elements {
        if !values.is_valid(element) {
            continue;
        }
        let value = values.value(element).as_bytes();
        let needles = repeats.needles(value, |found| {
            searched += find_needles(automaton, value, min_len, &mut |needle| found.push(needle));
        });
        for &needle in needles {
            record_hit(s, needle, row, rows);
        }
    }
    automaton.searched(searched);
}

/// Finds an automaton's literals in one value: by its fingerprints where
/// the value is at least `min_len` long (long enough for them to pay), else
/// by the automaton; how many bytes the automaton searched.
fn find_needles(
    automaton: &FieldAutomaton,
    value: &[u8],
    min_len: usize,
    found: &mut impl FnMut(NeedleId),
) -> usize {
    if let Some(fingerprints) = &automaton.fingerprints {
        if value.len() >= min_len {
            // One occurrence of a literal in the value is enough.
            fingerprints.find_each(value, 0..value.len(), &mut |literal, _, _| {
                found(automaton.needles[literal]);
                value.len()
            });
            return 0;
        }
    }
    if let Some(ac) = automaton.automaton() {
        for m in ac.find_overlapping_iter(value) {
            found(automaton.needles[m.pattern().as_usize()]);
        }
        value.len()
    } else {
        if let Searcher::Hashes(set) = &automaton.searcher {
            set.find(value, found);
        }
        0
    }
}

/// Runs an automaton over a whole string column: over its contiguous
/// bytes at once by the fingerprints where its values are long enough for
/// them to pay on average, else value by value, each distinct value once.
fn search_column(automaton: &FieldAutomaton, column: &Column, s: &mut Scratch, min_len: usize) {
    let Column::Str { values, .. } = column else {
        return;
    };
    if let Some(fingerprints) = &automaton.fingerprints {
        let offsets = values.value_offsets();
        let (elements, bytes) = (offsets.len() - 1, offsets[offsets.len() - 1] - offsets[0]);
        if elements > 0 && bytes as usize / elements >= min_len {
            search_fingerprinted(automaton, fingerprints, column, values, s);
            return;
        }
    }
    let elements = (0..s.rows).flat_map(|row| column.elements_of(row).map(move |e| (row, e)));
    search_values(automaton, column, elements, s, min_len);
}

/// As [`search_column`], over long values, by the fingerprints instead
/// of the automaton, over the whole column at once.
fn search_fingerprinted(
    automaton: &FieldAutomaton,
    fingerprints: &Fingerprints,
    column: &Column,
    values: &arrow_array::StringArray,
    s: &mut Scratch,
) {
    let rows = s.rows;
    let offsets = values.value_offsets();
    let data = values.value_data();
    let span = offsets[0] as usize..offsets[offsets.len() - 1] as usize;
    // The last value an occurrence was found in, and its row: a long
    // value holds many (a call trace names the same modules frame after
    // frame), so most are in it.
    let mut last: Option<(usize, usize)> = None;
    fingerprints.find_each(data, span, &mut |literal, start, end| {
        // The value the occurrence starts in (the last of any empty ones
        // there); one straddling two values belongs to neither.
        let within = |element: usize| {
            offsets[element] as usize <= start && start < offsets[element + 1] as usize
        };
        let (element, row) = match last {
            Some((element, row)) if within(element) => (element, row),
            _ => {
                let element = offsets.partition_point(|&o| o as usize <= start) - 1;
                let row = column.row_of_element(element);
                last = Some((element, row));
                (element, row)
            }
        };
        let element_end = offsets[element + 1] as usize;
        if end <= element_end && values.is_valid(element) {
            record_hit(s, automaton.needles[literal], row, rows);
        }
        // No more of this literal in this value: found once, or it
        // straddles the value's end, as any later one starting in it would.
        element_end
    });
}

fn record_hit(s: &mut Scratch, needle: usize, row: usize, rows: usize) {
    let slot = &mut s.hits[needle];
    if slot.is_none() {
        *slot = Some(RowSet::empty(rows));
        s.touched.push(needle);
    }
    if let Some(set) = slot {
        set.insert(row);
    }
}

/// Whether some value of `row` in `column` passes `check`; the values of a
/// string column lie in the batch's buffers, so `lowered` may keep them.
fn column_holds(
    column: &Column,
    row: usize,
    check: &TextCheck,
    lowered: &mut LoweredValues,
) -> bool {
    let mut lowered = column.is_text().then_some(lowered);
    column.any_value(row, &mut |v| text_check(check, v, lowered.as_deref_mut()))
}

/// Whether `value` passes `check`; `lowered` only for a value of a batch's
/// string column (see [`LoweredValues`]).
fn text_check(check: &TextCheck, value: &str, lowered: Option<&mut LoweredValues>) -> bool {
    match check {
        TextCheck::Regex(re) => re.is_match(value),
        TextCheck::Glob(glob) => glob.is_match(value),
        TextCheck::Literal {
            mode,
            text,
            lower,
            ascii_fold,
            cased,
            finder,
            ..
        } => {
            if *cased {
                let (v, t) = (value.as_bytes(), text.as_bytes());
                return match mode {
                    Mode::Exact => v == t,
                    Mode::Prefix => v.starts_with(t),
                    Mode::Suffix => v.ends_with(t),
                    Mode::Contains => memchr::memmem::find(v, t).is_some(),
                };
            }
            if *ascii_fold {
                let (v, t) = (value.as_bytes(), lower.as_bytes());
                let n = t.len();
                return match mode {
                    Mode::Exact => v.len() == n && v.eq_ignore_ascii_case(t),
                    Mode::Prefix => v.len() >= n && v[..n].eq_ignore_ascii_case(t),
                    Mode::Suffix => v.len() >= n && v[v.len() - n..].eq_ignore_ascii_case(t),
                    Mode::Contains => contains_ascii_fold(v, t, finder, lowered),
                };
            }
            let v = value.to_lowercase();
            match mode {
                Mode::Exact => v == *lower,
                Mode::Prefix => v.starts_with(lower.as_str()),
                Mode::Suffix => v.ends_with(lower.as_str()),
                Mode::Contains => v.contains(lower.as_str()),
            }
        }
    }
}

fn parse_ip(value: &str) -> Option<std::net::IpAddr> {
    let v = value.trim().trim_start_matches('[').trim_end_matches(']');
    let ip: std::net::IpAddr = v.parse().ok()?;
    Some(match ip {
        std::net::IpAddr::V6(v6) => v6.to_ipv4_mapped().map(std::net::IpAddr::V4).unwrap_or(ip),
        v4 => v4,
    })
}

/// Extracts a time part from common timestamp formats.
fn time_part(value: &str, part: TimePart) -> Option<u32> {
    let v = value.trim();
    let dt: NaiveDateTime = chrono::DateTime::parse_from_rfc3339(v)
        .map(|d| d.naive_utc())
        .ok()
        .or_else(|| {
            [
                "%Y-%m-%d %H:%M:%S%.f",
                "%Y-%m-%dT%H:%M:%S%.f",
                "%Y-%m-%d %H:%M:%S",
                "%Y-%m-%dT%H:%M:%S",
            ]
            .iter()
            .find_map(|f| NaiveDateTime::parse_from_str(v.trim_end_matches('Z'), f).ok())
        })?;
    Some(match part {
        TimePart::Minute => dt.minute(),
        TimePart::Hour => dt.hour(),
        TimePart::Day => dt.day(),
        TimePart::Week => dt.iso_week().week(),
        TimePart::Month => dt.month(),
        TimePart::Year => dt.year().max(0) as u32,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn time_parts_from_common_formats() {
        assert_eq!(time_part("2025-03-14T21:05:09Z", TimePart::Hour), Some(21));
        assert_eq!(
            time_part("2025-03-14 21:05:09.123", TimePart::Minute),
            Some(5)
        );
        assert_eq!(
            time_part("2025-03-14T21:05:09+02:00", TimePart::Hour),
            Some(19)
        );
        assert_eq!(time_part("not a date", TimePart::Hour), None);
    }

    /// Over a whole column by fingerprints: each literal is credited to
    /// the value it lies in, after empty and null values, and never to a
    /// pair of values it straddles.
    #[test]
    fn fingerprints_over_a_column_credit_the_value_holding_the_literal() {
        use crate::compile::paths::{FingerprintPath, MatchPaths};
        let yaml = "title: t\nlogsource: {product: test}\ndetection:\n  sel: {CommandLine|contains: 'sekurlsa::'}\n  condition: sel\n";
        let rules = crate::loader::rules_from_yaml(yaml);
        for fingerprints in [FingerprintPath::Auto, FingerprintPath::Always] {
            let set = crate::RuleSetBuilder::new(crate::Profile::passthrough())
                .paths(MatchPaths {
                    scan: crate::ScanPath::Columns,
                    fingerprints,
                    ..MatchPaths::default()
                })
                .build(&rules)
                .set;
            assert_eq!(
                set.automata_built(),
                [(crate::AutomatonPath::ContiguousNfa, true)]
            );
            let long = "x".repeat(200);
            let values = arrow_array::StringArray::from(vec![
                Some(format!("{long}sekur")),
                Some(format!("lsa::{long}")),
                Some(String::new()),
                None,
                Some(format!("{long}SekurLSA::")),
                Some(String::new()),
                Some(format!("sekurlsa::{long}")),
            ]);
            let batch = RecordBatch::try_from_iter([(
                "CommandLine",
                std::sync::Arc::new(values) as arrow_array::ArrayRef,
            )])
            .unwrap();
            let rows: Vec<usize> = set
                .evaluate(&batch, &mut set.scratch())
                .iter()
                .map(|m| m.row)
                .collect();
            assert_eq!(rows, [4, 6], "{fingerprints:?}");
            // Not even as a candidate for the straddled pair.
            assert_eq!(set.prefilter_hits(&batch, &mut set.scratch()), 2);
        }
    }

    #[test]
    fn a_star_stands_for_one_segment() {
        let pattern = "Event.UserData.*.CommandLine";
        assert!(path_matches("Event.UserData.Op.CommandLine", pattern));
        assert!(!path_matches("Event.UserData.CommandLine", pattern));
        assert!(!path_matches("Event.UserData.A.B.CommandLine", pattern));
        assert!(!path_matches("Event.UserData.Op.CommandLineX", pattern));
        assert!(!path_matches("Event.UserData.Op.CommandLine.X", pattern));
        assert!(path_matches("a", "*"));
        assert!(!path_matches("a.b", "*"));
    }

    #[test]
    fn ips_including_v4_mapped() {
        assert_eq!(parse_ip("::ffff:10.1.2.3"), "10.1.2.3".parse().ok());
        assert!(parse_ip("host.example").is_none());
    }
}
