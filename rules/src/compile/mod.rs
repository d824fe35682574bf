//! Compiling loaded rules into an immutable, shareable [`RuleSet`].
//!
//! ```text
//!  Sigma rules ──lower──► Cond trees ──intern──► leaves (field, test), shared by all rules
//!                                         │
//!                                         ├─► per field: one Aho-Corasick automaton over the
//!                                         │   required literals of the leaves worth a search
//!                                         │   (rules' triggers, routing conditions, rules
//!                                         │   without a trigger; file hashes after their key:
//!                                         │   a hash map); the others are tested row by row
//!                                         └─► per logsource: one routing condition (profile)
//! ```
//! Evaluation ([`crate::matcher`]) runs each field's automaton once per batch
//! over its whole string column, and verifies exact predicates only on the
//! rows where the literal was found; a literal no automaton searches (a
//! filter's, say) is tested on the rows the rest of its rule leaves.

pub mod feeds;
pub(crate) mod fingerprint;
mod gates;
pub use gates::FieldGate;
pub mod glob;
pub(crate) mod hashes;
pub(crate) mod literal;
pub mod paths;
mod regexes;
pub mod upgrade;

use std::collections::HashMap;
use std::sync::{Arc, OnceLock};

use aho_corasick::{AhoCorasick, AhoCorasickBuilder, AhoCorasickKind, MatchKind};
use regexes::Regex;

use crate::error::RuleError;
use crate::loader::{LoadedRule, Origin, Rejection, RuleCollection};
use crate::matcher::contains::LowerFinder;
use crate::profile::{Profile, Routing};
use crate::sigma::{
    CmpOp, Cond, LogSource, Part, RefMatch, RegexFlags, RuleMeta, SigmaRule, SigmaString, Target,
    Test, TimePart,
};
use paths::{AutomatonPath, FingerprintPath, HashPath, MatchPaths};
use regexes::{RegexSource, Regexes};

/// Column name of the raw event text, searched by keyword rules.
pub const RAW_COLUMN: &str = "_raw";

/// Column listing, per row, the columns present with a JSON `null` (which
/// `exists` counts as present); a `List<Utf8>`, absent when there are none.
pub const NULLS_COLUMN: &str = "_nulls";

/// Fields with at most this many literals get a DFA automaton once they
/// have searched enough (see [`upgrade`]), the rest a contiguous NFA
/// throughout. With SigmaHQ's Windows rules, DFAs for the fields of 300
/// to 800 literals (registry keys, file names, images) took 14 MB and 7% of
/// the start-up's instructions, and searching events with them took as
/// many instructions as with NFAs and 6% more (simulated) cache misses
/// (benches/README.md).
const DFA_MAX_PATTERNS: usize = 300;

pub(crate) type FieldId = usize;
pub(crate) type LeafId = usize;
pub(crate) type NeedleId = usize;

/// A compiled boolean tree.
#[derive(Debug, Clone)]
pub(crate) enum Node {
    Leaf(LeafId),
    And(Vec<Node>),
    Or(Vec<Node>),
    Not(Box<Node>),
    AtLeast(usize, Vec<Node>),
}

/// Where a literal must sit in a value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Mode {
    Exact,
    Prefix,
    Suffix,
    Contains,
}

#[derive(Debug, Clone)]
pub(crate) enum TextCheck {
    Literal {
        mode: Mode,
        text: String,
        /// Lowercased text (ASCII or full Unicode lowercase).
        lower: String,
        /// No letter with a case beyond ASCII: compared with ASCII case
        /// folding, without lowercasing the value.
        ascii_fold: bool,
        cased: bool,
        /// The literal as an integer, for exact comparison with numeric columns.
        int: Option<i128>,
        /// Its finder in long lowercased values (for `Contains`).
        finder: LowerFinder,
    },
    Regex(Regex),
    /// A wildcard pattern of literals and `*`.
    Glob(glob::Glob),
}

impl TextCheck {
    /// Whether the prefilter finding the literal's needle in a value is the
    /// check's answer: a `contains` ignoring ASCII case whose needle is the
    /// whole literal, lowercased (not a window of a long one), which the
    /// automata, fingerprints and hash sets find in any ASCII case wholly
    /// inside a value.
    pub(crate) fn answered_by_needle(&self) -> bool {
        matches!(
            self,
            TextCheck::Literal {
                mode: Mode::Contains,
                ascii_fold: true,
                cased: false,
                lower,
                ..
            } if lower.len() <= NEEDLE_WINDOW
        )
    }
}

#[derive(Debug, Clone)]
pub(crate) enum LeafKind {
    /// A string test; `needle` is a literal every match contains.
    Text {
        needle: Option<NeedleId>,
        check: TextCheck,
    },
    AnyValue,
    Null,
    Exists,
    Compare {
        op: CmpOp,
        value: f64,
    },
    Cidr(ipnet::IpNet),
    /// The value is in a feed, as the feed is when the batch is evaluated.
    InFeed(std::sync::Arc<dyn feeds::LiveSet>),
    FieldRef {
        other: FieldId,
        cased: bool,
        how: RefMatch,
    },
    TimePart {
        part: TimePart,
        op: CmpOp,
        value: f64,
    },
}

#[derive(Debug, Clone)]
pub(crate) struct Leaf {
    pub(crate) field: FieldId,
    pub(crate) kind: LeafKind,
}

impl Leaf {
    /// Leaves whose full-batch result is cheap (driven by prefilter hits or
    /// validity bitmaps) are computed once per batch and shared.
    pub(crate) fn cacheable(&self) -> bool {
        matches!(
            self.kind,
            LeafKind::Text {
                needle: Some(_),
                ..
            } | LeafKind::AnyValue
                | LeafKind::Null
                | LeafKind::Exists
        )
    }

    fn cost(&self) -> u32 {
        if self.cacheable() {
            1
        } else {
            match self.kind {
                LeafKind::Text { .. }
                | LeafKind::Cidr(_)
                | LeafKind::InFeed(_)
                | LeafKind::TimePart { .. } => 20,
                _ => 10,
            }
        }
    }
}

/// How a field's prefilter finds its literals in a value.
#[derive(Debug, Clone)]
pub(crate) enum Searcher {
    /// An Aho-Corasick automaton over the literals.
    Automaton(AhoCorasick),
    /// A hash map of hash literals (see [`hashes`]).
    Hashes(hashes::HashLiterals),
}

impl Searcher {
    fn memory_usage(&self) -> usize {
        match self {
            Searcher::Automaton(a) => a.memory_usage(),
            Searcher::Hashes(h) => h.memory_usage(),
        }
    }
}

/// One field's prefilter: an automaton, or a set of hash literals.
#[derive(Debug, Clone)]
pub(crate) struct FieldAutomaton {
    pub(crate) searcher: Searcher,
    /// A search of the literals' fingerprints that finds what the
    /// automaton finds, for long values (see [`fingerprint`]).
    pub(crate) fingerprints: Option<fingerprint::Fingerprints>,
    /// The rows its literals can matter for.
    pub(crate) scope: FieldScope,
    /// Pattern index → needle.
    pub(crate) needles: Vec<NeedleId>,
    /// The DFA the automaton (a contiguous NFA) becomes once it has
    /// searched enough, for the fields of few literals.
    pub(crate) upgrade: Option<std::sync::Arc<upgrade::Upgrade>>,
}

impl FieldAutomaton {
    /// The automaton to search with now; `None` for hash literals.
    pub(crate) fn automaton(&self) -> Option<&AhoCorasick> {
        let Searcher::Automaton(nfa) = &self.searcher else {
            return None;
        };
        Some(self.upgrade.as_ref().and_then(|u| u.dfa()).unwrap_or(nfa))
    }

    /// Counts bytes the automaton searched (towards its DFA).
    pub(crate) fn searched(&self, bytes: usize) {
        if let Some(upgrade) = &self.upgrade {
            upgrade.searched(bytes);
        }
    }

    /// Bytes the automaton (or hash set) holds now.
    fn memory_usage(&self) -> usize {
        match self.automaton() {
            Some(automaton) => automaton.memory_usage(),
            None => self.searcher.memory_usage(),
        }
    }

    /// The kind of automaton it is now; `None` for hash literals.
    fn path(&self) -> Option<AutomatonPath> {
        let automaton = self.automaton()?;
        Some(match automaton.kind() {
            AhoCorasickKind::DFA => AutomatonPath::Dfa,
            AhoCorasickKind::ContiguousNFA => AutomatonPath::ContiguousNfa,
            // The crate's kinds are non-exhaustive; a new one would be an
            // NFA of some sort.
            _ => AutomatonPath::NoncontiguousNfa,
        })
    }
}

/// Metadata of a compiled rule, for alerts and reports.
#[derive(Debug, Clone)]
pub struct RuleInfo {
    /// Rule metadata.
    pub meta: RuleMeta,
    /// The rule's logsource.
    pub logsource: LogSource,
    /// Where it was loaded from.
    pub origin: Origin,
}

/// The rejection of the rule `info` describes, for `error`.
fn rejection(info: RuleInfo, error: RuleError) -> Rejection {
    Rejection {
        origin: info.origin,
        rule_id: info.meta.id,
        title: Some(info.meta.title),
        error,
    }
}

#[derive(Debug, Clone)]
pub(crate) struct CompiledRule {
    pub(crate) info: RuleInfo,
    pub(crate) route: usize,
    pub(crate) node: Node,
    /// Literal leaves of which at least one holds in every row the rule
    /// matches (see [`trigger`]): when the prefilter found none of their
    /// literals in a batch, the rule is not evaluated on it.
    pub(crate) trigger: Option<Vec<LeafId>>,
    /// What the rule detects: its condition with the global filters added.
    pub(crate) detection: Arc<Cond>,
    /// [`RuleSet::digest`], computed when first asked for (formatting and
    /// hashing every rule was a twentieth of start-up, and only archives
    /// ask).
    pub(crate) digest: OnceLock<[u8; 32]>,
}

fn detection_digest(id: Option<&str>, logsource: &LogSource, condition: &Cond) -> [u8; 32] {
    use sha2::{Digest, Sha256};
    let mut h = Sha256::new();
    h.update(format!("{id:?}\n{logsource:?}\n{condition:?}").as_bytes());
    h.finalize().into()
}

/// One prefilter automaton, for reports ([`RuleSet::automata_summary`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AutomatonSummary {
    /// The columns it searches (one field under the profile).
    pub columns: Vec<String>,
    /// Its literals.
    pub literals: usize,
    /// Its kind; `None` for a hash map of hash literals (`SHA256=…`).
    pub kind: Option<AutomatonPath>,
    /// A contiguous NFA that becomes a DFA once it has searched
    /// [`upgrade::DFA_AFTER_BYTES`].
    pub becomes_dfa: bool,
    /// Long values are searched by its literals' fingerprints instead.
    pub fingerprints: bool,
    /// Bytes it holds.
    pub bytes: usize,
    /// Whether it searches every row (else only its logsources' rows).
    pub all_rows: bool,
}

/// A rule that loaded but whose logsource the profile cannot recognise.
#[derive(Debug, Clone)]
pub struct Unroutable {
    /// The rule.
    pub info: RuleInfo,
    /// The logsource part the profile does not know, e.g. `product=linux`.
    pub reason: String,
}

/// The result of compilation.
#[derive(Debug, Clone)]
pub struct Compiled {
    /// The rule set, ready to evaluate.
    pub set: RuleSet,
    /// The windowed rules, resolved against `set`.
    pub windows: crate::window::WindowPlan,
    /// Rules rejected at load or compile time (including those from the
    /// collection).
    pub rejected: Vec<Rejection>,
    /// Rules that loaded but can never match under the profile.
    pub unroutable: Vec<Unroutable>,
}

/// An immutable, compiled set of rules; `Send + Sync`, shared between
/// workers. Per-worker state lives in [`crate::Scratch`].
#[derive(Debug, Clone)]
pub struct RuleSet {
    pub(crate) rules: Vec<CompiledRule>,
    pub(crate) routes: Vec<Option<Node>>,
    pub(crate) leaves: Vec<Leaf>,
    pub(crate) fields: Vec<Vec<String>>,
    /// Per field: the rows it is read in, `None` for every row.
    pub(crate) field_gates: Vec<Option<FieldGate>>,
    /// Per field: its prefilter automata, one per scope (the literals read
    /// by rules that see every row, and those read only by rules of narrower
    /// logsources), so that narrow literals are not searched everywhere.
    pub(crate) automata: Vec<Vec<FieldAutomaton>>,
    /// Per literal: whether an automaton searches it.
    pub(crate) searched: Vec<bool>,
    pub(crate) needle_count: usize,
    pub(crate) profile_name: String,
    pub(crate) paths: MatchPaths,
}

/// The rows of a batch for which a field's prefilter hits can matter.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum FieldScope {
    /// Every row (the field is read by a logsource condition).
    All,
    /// The rows of these routes (logsources); the rules reading the field
    /// never look at other rows.
    Routes(Vec<usize>),
}

impl RuleSet {
    /// A digest of what rule `index` detects: its id, logsource and
    /// condition with its values and global filters (not its title, level
    /// or tags). Two versions of a rule with the same digest find the same
    /// events; a reload tells new and changed rules by it.
    pub fn digest(&self, index: usize) -> [u8; 32] {
        let rule = &self.rules[index];
        *rule.digest.get_or_init(|| {
            detection_digest(
                rule.info.meta.id.as_deref(),
                &rule.info.logsource,
                &rule.detection,
            )
        })
    }

    /// Every column name or pattern (`*` for a segment) a rule reads,
    /// for the decoders' projection; `_raw` is among them for keyword
    /// rules.
    pub fn columns_read(&self) -> impl Iterator<Item = &str> {
        self.fields.iter().flatten().map(String::as_str)
    }

    /// The columns of each field a rule reads (as in
    /// [`RuleSet::columns_read`]) with the rows the rules read it in:
    /// `None` for every row, or a gate every row of every logsource
    /// reading it meets (see [`gates`]).
    pub fn fields_gated(&self) -> impl Iterator<Item = (&[String], Option<&FieldGate>)> {
        self.fields
            .iter()
            .zip(&self.field_gates)
            .map(|(columns, gate)| (columns.as_slice(), gate.as_ref()))
    }

    /// Number of rules that can match.
    pub fn len(&self) -> usize {
        self.rules.len()
    }

    /// True if no rule can match.
    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }

    /// Metadata of rule `index` (as in [`crate::RuleMatch::rule`]).
    pub fn rule(&self, index: usize) -> &RuleInfo {
        &self.rules[index].info
    }

    /// Number of distinct literals in the prefilter automata.
    pub fn literal_count(&self) -> usize {
        self.searched.iter().filter(|&&searched| searched).count()
    }

    /// Bytes the prefilter automata (and their fingerprint searchers)
    /// hold: most of a compiled rule set's memory.
    pub fn automata_memory(&self) -> usize {
        self.automata
            .iter()
            .flatten()
            .map(|a| a.memory_usage() + a.fingerprints.as_ref().map_or(0, |f| f.memory_usage()))
            .sum()
    }

    /// Each prefilter automaton: the columns it searches, its literals,
    /// kind and bytes; the largest first.
    pub fn automata_summary(&self) -> Vec<AutomatonSummary> {
        let mut out: Vec<AutomatonSummary> = self
            .automata
            .iter()
            .enumerate()
            .flat_map(|(field, automata)| {
                automata.iter().map(move |a| AutomatonSummary {
                    columns: self.fields[field].clone(),
                    literals: a.needles.len(),
                    kind: a.path(),
                    becomes_dfa: a.upgrade.as_ref().is_some_and(|u| u.dfa().is_none()),
                    fingerprints: a.fingerprints.is_some(),
                    bytes: a.memory_usage(),
                    all_rows: a.scope == FieldScope::All,
                })
            })
            .collect();
        out.sort_by_key(|a| std::cmp::Reverse(a.bytes));
        out
    }

    /// Name of the profile the set was compiled with.
    pub fn profile_name(&self) -> &str {
        &self.profile_name
    }

    /// The prefilter automata built: each one's kind, and whether SIMD
    /// fingerprints search long values in its place (what [`MatchPaths`] chose).
    /// Hash-literal sets are not automata: see [`RuleSet::hash_sets_built`].
    pub fn automata_built(&self) -> Vec<(AutomatonPath, bool)> {
        self.automata
            .iter()
            .flatten()
            .filter_map(|a| Some((a.path()?, a.fingerprints.is_some())))
            .collect()
    }

    /// The hash-literal sets built (what [`MatchPaths::hashes`] chose).
    pub fn hash_sets_built(&self) -> usize {
        self.automata
            .iter()
            .flatten()
            .filter(|a| matches!(a.searcher, Searcher::Hashes(_)))
            .count()
    }
}

/// Builds a [`RuleSet`] from loaded rules under a profile.
///
/// ```
/// use vagt_rules::{load_text, Profile, RuleCollection, RuleSetBuilder, Placeholders};
/// let mut rules = RuleCollection::default();
/// let yaml = "title: t\nlogsource: {product: test}\ndetection:\n  sel: {CommandLine|contains: mimikatz}\n  condition: sel\n";
/// load_text("t.yml".as_ref(), yaml, &Placeholders::new(), &mut rules);
/// let compiled = RuleSetBuilder::new(Profile::passthrough()).build(&rules);
/// assert_eq!(compiled.set.len(), 1);
/// ```
#[derive(Debug)]
pub struct RuleSetBuilder {
    profile: Profile,
    paths: MatchPaths,
    feeds: Option<std::sync::Arc<dyn feeds::LiveSets>>,
}

/// A test, hashable (floats by their bits), to share identical leaves.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum TestKey {
    Match(SigmaString, bool),
    Regex(String, RegexFlags),
    Compare(CmpOp, u64),
    Cidr(ipnet::IpNet),
    Null,
    Exists,
    FieldRef(String, bool, RefMatch),
    InFeed(String, bool),
    TimePart(TimePart, CmpOp, u64),
}

impl TestKey {
    fn of(test: &Test) -> TestKey {
        match test {
            Test::Match { pattern, cased } => TestKey::Match(pattern.clone(), *cased),
            Test::Regex { pattern, flags } => TestKey::Regex(pattern.clone(), *flags),
            Test::Compare { op, value } => TestKey::Compare(*op, value.to_bits()),
            Test::Cidr(net) => TestKey::Cidr(*net),
            Test::Null => TestKey::Null,
            Test::Exists => TestKey::Exists,
            Test::FieldRef { other, cased, how } => TestKey::FieldRef(other.clone(), *cased, *how),
            Test::InFeed {
                feed,
                addresses_only,
            } => TestKey::InFeed(feed.clone(), *addresses_only),
            Test::TimePart { part, op, value } => TestKey::TimePart(*part, *op, value.to_bits()),
        }
    }
}

/// What lowering builds: the rule set's fields, leaves and literals, each
/// once.
#[derive(Default)]
struct Interner {
    fields: Vec<Vec<String>>,
    leaves: Vec<Leaf>,
    needles: Vec<Vec<(String, NeedleId)>>,
    needle_count: usize,
    /// The feeds `%feed:NAME%` values resolve to.
    feeds: Option<std::sync::Arc<dyn feeds::LiveSets>>,
    /// How lowering finds what it built; not needed after it.
    lookups: Lookups,
}

/// The indexes that share fields, leaves, literals and expressions while
/// lowering.
#[derive(Default)]
struct Lookups {
    field_index: FoldMap<Vec<String>, FieldId>,
    /// The field a Sigma field name is, per logsource (the profile's
    /// mapping, looked up once).
    field_of_name: FoldMap<LogSource, FoldMap<String, FieldId>>,
    leaf_index: FoldMap<(FieldId, TestKey), LeafId>,
    /// Per field, its literals.
    needle_index: Vec<FoldMap<String, NeedleId>>,
    /// The rules' regular expressions.
    regexes: Regexes,
}

/// A map with a fast hash: lowering hashes every test and literal.
type FoldMap<K, V> = HashMap<K, V, foldhash::fast::RandomState>;

impl Interner {
    fn field(&mut self, columns: Vec<String>) -> FieldId {
        if let Some(id) = self.lookups.field_index.get(&columns) {
            return *id;
        }
        let id = self.fields.len();
        self.fields.push(columns.clone());
        self.needles.push(Vec::new());
        self.lookups.needle_index.push(FoldMap::default());
        self.lookups.field_index.insert(columns, id);
        id
    }

    /// The field of the Sigma field `name` in rules of `logsource`.
    fn field_named(&mut self, name: &str, logsource: &LogSource, profile: &Profile) -> FieldId {
        if let Some(id) = self
            .lookups
            .field_of_name
            .get(logsource)
            .and_then(|names| names.get(name))
        {
            return *id;
        }
        let id = self.field(profile.columns_for(name, logsource));
        self.lookups
            .field_of_name
            .entry(logsource.clone())
            .or_default()
            .insert(name.to_string(), id);
        id
    }

    fn needle(&mut self, field: FieldId, text: String) -> NeedleId {
        // A hash literal stays whole: its set looks it up by key and digits.
        let text = match hashes::digits_start(&text) {
            Some(_) => text,
            None => needle_window(text),
        };
        if let Some(id) = self.lookups.needle_index[field].get(&text) {
            return *id;
        }
        let id = self.needle_count;
        self.needle_count += 1;
        self.needles[field].push((text.clone(), id));
        self.lookups.needle_index[field].insert(text, id);
        id
    }
}

/// Bytes of a literal the prefilter searches, at most: every hit is
/// verified by its leaf, so a window of a long literal finds the same
/// rows, and the automata of long literals (registry paths, command
/// lines) build in a fraction of the time and memory. Hash literals are
/// not windowed (see [`hashes`]).
const NEEDLE_WINDOW: usize = 32;

/// The last [`NEEDLE_WINDOW`] bytes of `text` (the end of a path or a
/// hash tells literals apart better than their shared beginnings), on a
/// character boundary.
fn needle_window(text: String) -> String {
    if text.len() <= NEEDLE_WINDOW {
        return text;
    }
    let mut start = text.len() - NEEDLE_WINDOW;
    while !text.is_char_boundary(start) {
        start += 1;
    }
    text[start..].to_string()
}

impl RuleSetBuilder {
    /// A builder mapping fields and logsources with `profile`.
    pub fn new(profile: Profile) -> Self {
        RuleSetBuilder {
            profile,
            paths: MatchPaths::default(),
            feeds: None,
        }
    }

    /// The feeds rules may refer to as `%feed:NAME%`; without them, such a
    /// rule is rejected.
    pub fn feeds(mut self, feeds: std::sync::Arc<dyn feeds::LiveSets>) -> Self {
        self.feeds = Some(feeds);
        self
    }

    /// Forces the matcher's paths (by default chosen by size); every path
    /// gives the same matches, which the semantics tests check.
    pub fn paths(mut self, paths: MatchPaths) -> Self {
        self.paths = paths;
        self
    }

    /// Compiles every rule of the collection, applying its global filters.
    /// A rule that fails to compile is reported, never fatal.
    pub fn build(&self, collection: &RuleCollection) -> Compiled {
        self.build_from(collection.clone())
    }

    /// As [`RuleSetBuilder::build`], taking the collection: each rule's
    /// metadata and detection move into the set rather than being copied
    /// and the originals freed (6% of a start-up from the rules cache
    /// with SigmaHQ's rules).
    pub fn build_from(&self, collection: RuleCollection) -> Compiled {
        let RuleCollection {
            rules: loaded_rules,
            filters,
            mut rejected,
            ..
        } = collection;
        let mut unroutable = Vec::new();
        let mut interner = Interner {
            feeds: self.feeds.clone(),
            lookups: Lookups {
                regexes: Regexes::prebuilt(
                    loaded_rules
                        .iter()
                        .map(|r| &r.rule.condition)
                        .chain(filters.iter().map(|f| &f.filter.condition)),
                ),
                ..Lookups::default()
            },
            ..Interner::default()
        };
        let mut routes: Vec<Option<Node>> = Vec::new();
        let mut route_index: HashMap<LogSource, usize> = HashMap::new();
        let mut rules = Vec::new();

        // Global filters: rule condition AND filter condition.
        let mut filters_for: HashMap<usize, Vec<&Cond>> = HashMap::new();
        for f in &filters {
            for target in &f.filter.rules {
                let hits: Vec<usize> = loaded_rules
                    .iter()
                    .enumerate()
                    .filter(|(_, r)| {
                        r.rule.meta.id.as_deref() == Some(target.as_str())
                            || r.rule.meta.name.as_deref() == Some(target.as_str())
                    })
                    .filter(|(_, r)| logsource_covers(&f.filter.logsource, &r.rule.logsource))
                    .map(|(i, _)| i)
                    .collect();
                if hits.is_empty() {
                    rejected.push(Rejection {
                        origin: f.origin.clone(),
                        rule_id: f.filter.id.clone(),
                        title: Some(f.filter.title.clone()),
                        error: RuleError::UnknownFilterTarget(target.clone()),
                    });
                }
                for i in hits {
                    filters_for.entry(i).or_default().push(&f.filter.condition);
                }
            }
        }

        for (index, loaded) in loaded_rules.into_iter().enumerate() {
            let LoadedRule {
                rule:
                    SigmaRule {
                        meta,
                        logsource,
                        condition,
                    },
                origin,
            } = loaded;
            // The rule's condition, with the global filters added to it.
            let condition = match filters_for.get(&index) {
                Some(extra) => {
                    let mut all = vec![condition];
                    all.extend(extra.iter().map(|c| (*c).clone()));
                    Cond::And(all)
                }
                None => condition,
            };
            let info = RuleInfo {
                meta,
                logsource,
                origin,
            };
            let route_cond = match self.profile.route(&info.logsource) {
                Routing::Unroutable(reason) => {
                    unroutable.push(Unroutable { info, reason });
                    continue;
                }
                Routing::Events(cond) => cond,
            };
            let node = match compile_cond(&condition, &info.logsource, &self.profile, &mut interner)
            {
                Ok(n) => n,
                Err(error) => {
                    rejected.push(rejection(info, error));
                    continue;
                }
            };
            let route = match route_index.get(&info.logsource) {
                Some(r) => *r,
                None => {
                    let compiled = match route_cond {
                        None => None,
                        Some(c) => {
                            match compile_cond(&c, &info.logsource, &self.profile, &mut interner) {
                                Ok(n) => Some(n),
                                Err(error) => {
                                    rejected.push(rejection(info, error));
                                    continue;
                                }
                            }
                        }
                    };
                    routes.push(compiled);
                    route_index.insert(info.logsource.clone(), routes.len() - 1);
                    routes.len() - 1
                }
            };
            rules.push(CompiledRule {
                info,
                route,
                node,
                trigger: None,
                detection: Arc::new(condition),
                digest: OnceLock::new(),
            });
        }

        let scopes = needle_scopes(&rules, &routes, &interner.leaves, interner.needle_count);
        let per_field: Vec<usize> = interner.needles.iter().map(Vec::len).collect();
        let wanted = searched_literals(&rules, &routes, &interner, &per_field);
        let needles: Vec<Vec<(String, NeedleId)>> = interner
            .needles
            .iter()
            .map(|field| field.iter().filter(|(_, n)| wanted[*n]).cloned().collect())
            .collect();
        let lookups = std::mem::take(&mut interner.lookups);
        let automata = std::thread::scope(|scope| {
            // Freeing the lookups' many small keys takes a sixth of
            // lowering's time: it overlaps the automata's build.
            scope.spawn(move || drop(lookups));
            build_automata(&needles, &scopes, &self.paths)
        });

        let mut searched = vec![false; interner.needle_count];
        for automaton in automata.iter().flatten() {
            for n in &automaton.needles {
                searched[*n] = true;
            }
        }
        let literals = Literals {
            leaves: &interner.leaves,
            searched: &searched,
            per_field: &per_field,
        };
        for rule in &mut rules {
            rule.trigger = trigger(&rule.node, &literals);
            if let (Some(trigger), Node::And(children)) = (&rule.trigger, &mut rule.node) {
                // The trigger's part first: the rows it leaves are the
                // fewest the rest is tested on.
                let holds_trigger = |c: &Node| {
                    let mut ids = Vec::new();
                    node_leaves(c, &mut ids);
                    ids.contains(&trigger[0])
                };
                if let Some(at) = children.iter().position(holds_trigger) {
                    let part = children.remove(at);
                    children.insert(0, part);
                }
            }
        }
        let field_gates = gates::field_gates(&rules, &routes, &interner.leaves, &interner.fields);
        let set = RuleSet {
            field_gates,
            searched,
            rules,
            routes,
            leaves: interner.leaves,
            fields: interner.fields,
            automata,
            needle_count: interner.needle_count,
            profile_name: self.profile.name.clone(),
            paths: self.paths,
        };
        let (windows, window_rejections) =
            crate::window::WindowPlan::build(&collection.windows, &set, &self.profile);
        rejected.extend(window_rejections);
        Compiled {
            set,
            windows,
            rejected,
            unroutable,
        }
    }
}

/// The prefilter automata of each field (its literals read in every row,
/// and those read in some logsources' rows), built on every core: a few
/// automata dominate start-up.
fn build_automata(
    needles: &[Vec<(String, NeedleId)>],
    scopes: &[FieldScope],
    paths: &MatchPaths,
) -> Vec<Vec<FieldAutomaton>> {
    crate::parallel::map(needles, |needles| -> Vec<FieldAutomaton> {
        let (everywhere, narrow): (Vec<_>, Vec<_>) = needles
            .iter()
            .partition(|(_, id)| scopes[*id] == FieldScope::All);
        let mut routes_of_narrow: Vec<usize> = Vec::new();
        for (_, id) in &narrow {
            if let FieldScope::Routes(r) = &scopes[*id] {
                for route in r {
                    if !routes_of_narrow.contains(route) {
                        routes_of_narrow.push(*route);
                    }
                }
            }
        }
        [
            (everywhere, FieldScope::All),
            (narrow, FieldScope::Routes(routes_of_narrow)),
        ]
        .into_iter()
        .flat_map(|(group, scope)| {
            let (hash_set, others) = match paths.hashes {
                HashPath::Auto => hashes::HashLiterals::split(group),
                HashPath::Never => (None, group),
            };
            let hash_set = hash_set.map(|set| FieldAutomaton {
                needles: set.needles().collect(),
                searcher: Searcher::Hashes(set),
                fingerprints: None,
                scope: scope.clone(),
                upgrade: None,
            });
            let automaton = (!others.is_empty())
                .then(|| build_automaton(&others, scope, paths))
                .flatten();
            hash_set.into_iter().chain(automaton)
        })
        .collect()
    })
}

/// A filter's logsource covers a rule's when every attribute the filter
/// sets is the rule's too (pySigma).
fn logsource_covers(filter: &LogSource, rule: &LogSource) -> bool {
    let covers = |f: &Option<String>, r: &Option<String>| f.is_none() || f == r;
    covers(&filter.product, &rule.product)
        && covers(&filter.category, &rule.category)
        && covers(&filter.service, &rule.service)
}

fn compile_cond(
    cond: &Cond,
    logsource: &LogSource,
    profile: &Profile,
    interner: &mut Interner,
) -> Result<Node, RuleError> {
    let mut compile_all = |items: &[Cond]| -> Result<Vec<Node>, RuleError> {
        items
            .iter()
            .map(|c| compile_cond(c, logsource, profile, interner))
            .collect()
    };
    Ok(match cond {
        Cond::Pred(p) => {
            let field = match &p.target {
                Target::Raw => interner.field(vec![RAW_COLUMN.to_string()]),
                Target::Field(name) => interner.field_named(name, logsource, profile),
            };
            let key = (field, TestKey::of(&p.test));
            if let Some(id) = interner.lookups.leaf_index.get(&key) {
                return Ok(Node::Leaf(*id));
            }
            let kind = compile_test(&p.test, field, logsource, profile, interner)?;
            let id = interner.leaves.len();
            interner.leaves.push(Leaf { field, kind });
            interner.lookups.leaf_index.insert(key, id);
            Node::Leaf(id)
        }
        Cond::And(items) => {
            let mut nodes = compile_all(items)?;
            nodes.sort_by_key(|n| node_cost(n, &interner.leaves));
            Node::And(nodes)
        }
        Cond::Or(items) => Node::Or(compile_all(items)?),
        Cond::Not(inner) => Node::Not(Box::new(compile_cond(inner, logsource, profile, interner)?)),
        Cond::AtLeast(n, items) => Node::AtLeast(*n, compile_all(items)?),
    })
}

fn node_leaves(node: &Node, out: &mut Vec<LeafId>) {
    match node {
        Node::Leaf(id) => out.push(*id),
        Node::And(v) | Node::Or(v) | Node::AtLeast(_, v) => {
            v.iter().for_each(|n| node_leaves(n, out))
        }
        Node::Not(n) => node_leaves(n, out),
    }
}

/// For each prefilter literal, the rows it can matter for: every row if a
/// logsource condition or a rule without one reads it, else the rows of the
/// logsources of the rules that read it.
fn needle_scopes(
    rules: &[CompiledRule],
    routes: &[Option<Node>],
    leaves: &[Leaf],
    needle_count: usize,
) -> Vec<FieldScope> {
    let mut scopes = vec![FieldScope::Routes(Vec::new()); needle_count];
    let needle_of = |leaf: LeafId| match leaves[leaf].kind {
        LeafKind::Text {
            needle: Some(n), ..
        } => Some(n),
        _ => None,
    };
    let mut ids = Vec::new();
    for route in routes.iter().flatten() {
        node_leaves(route, &mut ids);
    }
    for leaf in ids.drain(..) {
        if let Some(n) = needle_of(leaf) {
            scopes[n] = FieldScope::All;
        }
    }
    for rule in rules {
        node_leaves(&rule.node, &mut ids);
        for leaf in ids.drain(..) {
            let Some(n) = needle_of(leaf) else { continue };
            if routes[rule.route].is_none() {
                scopes[n] = FieldScope::All;
            } else if let FieldScope::Routes(r) = &mut scopes[n] {
                if !r.contains(&rule.route) {
                    r.push(rule.route);
                }
            }
        }
    }
    scopes
}

/// One automaton over literals (lowercase; matched ASCII case-insensitively).
/// A DFA searches fastest but grows with the pattern count, and takes
/// long to build: fields of at most [`DFA_MAX_PATTERNS`] literals start
/// as a contiguous NFA that becomes a DFA once it has searched enough (see
/// [`upgrade`]); the few fields with thousands of literals (hashes) hold
/// short values, where a contiguous NFA is as good. Should a kind fail to
/// build (size limits), the next one is tried; `None` only if none builds,
/// and then the literals' tests scan their rows directly. `paths` can
/// force a kind (without fallback, from the start), no automaton, or the
/// fingerprints' use.
fn build_automaton(
    needles: &[&(String, NeedleId)],
    scope: FieldScope,
    paths: &MatchPaths,
) -> Option<FieldAutomaton> {
    let preferred = match paths.automaton {
        AutomatonPath::Auto | AutomatonPath::ContiguousNfa => AhoCorasickKind::ContiguousNFA,
        AutomatonPath::Dfa => AhoCorasickKind::DFA,
        AutomatonPath::NoncontiguousNfa => AhoCorasickKind::NoncontiguousNFA,
        AutomatonPath::Off => return None,
    };
    let literals: Vec<&str> = needles.iter().map(|(t, _)| t.as_str()).collect();
    let build = |kind| aho_corasick(kind, literals.iter().map(|l| l.as_bytes()));
    let automaton = match paths.automaton {
        AutomatonPath::Auto => build(preferred)
            .or_else(|_| build(AhoCorasickKind::NoncontiguousNFA))
            .ok()?,
        _ => build(preferred).ok()?,
    };
    let upgrade = (paths.automaton == AutomatonPath::Auto
        && automaton.kind() == AhoCorasickKind::ContiguousNFA
        && needles.len() <= DFA_MAX_PATTERNS)
        .then(|| std::sync::Arc::new(upgrade::Upgrade::new(&literals)));
    let fingerprints = match paths.fingerprints {
        FingerprintPath::Never => None,
        _ => fingerprint::Fingerprints::new(&literals),
    };
    Some(FieldAutomaton {
        searcher: Searcher::Automaton(automaton),
        fingerprints,
        scope,
        needles: needles.iter().map(|(_, id)| *id).collect(),
        upgrade,
    })
}

/// A prefilter automaton of `kind` over `literals`: every occurrence of
/// each, ASCII case-insensitively.
pub(crate) fn aho_corasick<'a>(
    kind: AhoCorasickKind,
    literals: impl IntoIterator<Item = &'a [u8]>,
) -> Result<AhoCorasick, aho_corasick::BuildError> {
    AhoCorasickBuilder::new()
        .ascii_case_insensitive(true)
        .match_kind(MatchKind::Standard)
        .kind(Some(kind))
        .build(literals)
}

/// Leaves of `node` of which at least one holds wherever `node` does, all
/// of them literals some automaton searches, so that the prefilter's hits
/// tell when none can hold; the fewest such. None when the node can hold
/// without any literal found (a negation, a regex, a comparison, ...).
fn trigger(node: &Node, literals: &Literals<'_>) -> Option<Vec<LeafId>> {
    match node {
        Node::Leaf(id) => match literals.leaves[*id].kind {
            LeafKind::Text {
                needle: Some(needle),
                ..
            } if literals.searched[needle] => Some(vec![*id]),
            _ => None,
        },
        // Of equally small triggers, the one on the fields with the most
        // literals: those are searched for other rules anyway.
        Node::And(children) => children
            .iter()
            .filter_map(|c| trigger(c, literals))
            .min_by_key(|t| (t.len(), std::cmp::Reverse(literals.fewest_per_field(t)))),
        Node::Or(children) | Node::AtLeast(1.., children) => {
            let mut all = Vec::new();
            for child in children {
                all.extend(trigger(child, literals)?);
            }
            Some(all)
        }
        Node::AtLeast(0, _) | Node::Not(_) => None,
    }
}

/// The literals worth an automaton: those of the rules' triggers (which
/// tell, from one search of a column, that a rule need not be tested on a
/// batch) and of the routing conditions (tested on every row). The others
/// (filters, and the rest of a rule beside its trigger) are tested on the
/// few rows the rest of their rule leaves; searching whole columns for
/// them cost more, as some (`ntdll.dll` in a `CallTrace`) are in nearly
/// every value.
fn searched_literals(
    rules: &[CompiledRule],
    routes: &[Option<Node>],
    interner: &Interner,
    per_field: &[usize],
) -> Vec<bool> {
    let all = vec![true; interner.needle_count];
    let literals = Literals {
        leaves: &interner.leaves,
        searched: &all,
        per_field,
    };
    let mut ids: Vec<LeafId> = Vec::new();
    for route in routes.iter().flatten() {
        node_leaves(route, &mut ids);
    }
    for rule in rules {
        match trigger(&rule.node, &literals) {
            Some(trigger) => ids.extend(trigger),
            // Tested on every row of its logsources.
            None => node_leaves(&rule.node, &mut ids),
        }
    }
    let mut wanted = vec![false; interner.needle_count];
    for id in ids {
        if let LeafKind::Text {
            needle: Some(n), ..
        } = interner.leaves[id].kind
        {
            wanted[n] = true;
        }
    }
    wanted
}

/// What [`trigger`] chooses by: the leaves, which literals are searched,
/// and how many each field's automata search.
struct Literals<'a> {
    leaves: &'a [Leaf],
    searched: &'a [bool],
    per_field: &'a [usize],
}

impl Literals<'_> {
    /// The fewest literals searched in the field of any of `leaves`.
    fn fewest_per_field(&self, leaves: &[LeafId]) -> usize {
        leaves
            .iter()
            .map(|&id| self.per_field[self.leaves[id].field])
            .min()
            .unwrap_or(0)
    }
}

fn node_cost(node: &Node, leaves: &[Leaf]) -> u32 {
    match node {
        Node::Leaf(id) => leaves[*id].cost(),
        Node::And(v) | Node::Or(v) | Node::AtLeast(_, v) => {
            v.iter().map(|n| node_cost(n, leaves)).sum()
        }
        Node::Not(n) => node_cost(n, leaves) + 1,
    }
}

/// Unbounded repetitions (`*`, `+`, `{n,}`) a regex may hold, and
/// wildcards a pattern with `?` may hold: beyond it the regex engine's
/// cache of states no longer suffices and each value costs time
/// proportional to pattern × text. SigmaHQ's regexes hold at most a few.
pub const MAX_PATTERN_REPETITIONS: usize = 64;

/// Unbounded repetitions in a regex.
fn unbounded_repetitions(hir: &regex_syntax::hir::Hir) -> usize {
    use regex_syntax::hir::HirKind;
    match hir.kind() {
        HirKind::Repetition(r) => usize::from(r.max.is_none()) + unbounded_repetitions(&r.sub),
        HirKind::Capture(c) => unbounded_repetitions(&c.sub),
        HirKind::Concat(children) | HirKind::Alternation(children) => {
            children.iter().map(unbounded_repetitions).sum()
        }
        _ => 0,
    }
}

fn compile_test(
    test: &Test,
    field: FieldId,
    logsource: &LogSource,
    profile: &Profile,
    interner: &mut Interner,
) -> Result<LeafKind, RuleError> {
    Ok(match test {
        Test::Match { pattern, cased } => {
            let parts = pattern.parts();
            let literal = |mode: Mode, text: &String, interner: &mut Interner| {
                let ascii_fold = literal::folds_as_ascii(text);
                let lower = if ascii_fold {
                    text.to_ascii_lowercase()
                } else {
                    text.to_lowercase()
                };
                let needle =
                    (ascii_fold && !text.is_empty()).then(|| interner.needle(field, lower.clone()));
                let int = (mode == Mode::Exact)
                    .then(|| text.parse::<i128>().ok().filter(|i| i.to_string() == *text))
                    .flatten();
                LeafKind::Text {
                    needle,
                    check: TextCheck::Literal {
                        mode,
                        text: text.clone(),
                        lower,
                        ascii_fold,
                        cased: *cased,
                        int,
                        finder: LowerFinder::default(),
                    },
                }
            };
            match parts {
                [] => literal(Mode::Exact, &String::new(), interner),
                [Part::AnyMany] => LeafKind::AnyValue,
                [Part::Literal(t)] => literal(Mode::Exact, t, interner),
                [Part::Literal(t), Part::AnyMany] => literal(Mode::Prefix, t, interner),
                [Part::AnyMany, Part::Literal(t)] => literal(Mode::Suffix, t, interner),
                [Part::AnyMany, Part::Literal(t), Part::AnyMany] => {
                    literal(Mode::Contains, t, interner)
                }
                _ => {
                    let needle =
                        literal::glob_required_literal(pattern).map(|t| interner.needle(field, t));
                    let check = match glob::Glob::new(pattern, *cased) {
                        Some(glob) => TextCheck::Glob(glob),
                        None => {
                            // `?` needs the regex: bound what it may cost.
                            let wildcards = regexes::wildcards(parts);
                            if wildcards > MAX_PATTERN_REPETITIONS {
                                return Err(RuleError::Unsupported(format!(
                                    "wildcard pattern with '?' and {wildcards} wildcards: at most {MAX_PATTERN_REPETITIONS}"
                                )));
                            }
                            TextCheck::Regex(
                                interner
                                    .lookups
                                    .regexes
                                    .get(RegexSource::wildcard(pattern, *cased))
                                    .map_err(|e| {
                                        RuleError::Unsupported(format!(
                                            "wildcard pattern '{pattern}' too complex: {e}"
                                        ))
                                    })?,
                            )
                        }
                    };
                    LeafKind::Text { needle, check }
                }
            }
        }
        Test::Regex { pattern, flags } => {
            let regex = interner
                .lookups
                .regexes
                .get(RegexSource::Re(pattern.clone(), *flags))
                .map_err(|e| RuleError::Value {
                    key: "re".into(),
                    message: format!("invalid regex: {e}"),
                })?;
            let hir = regex_syntax::ParserBuilder::new()
                .case_insensitive(flags.insensitive)
                .multi_line(flags.multi_line)
                .dot_matches_new_line(flags.dot_all)
                .build()
                .parse(pattern)
                .ok();
            if let Some(repetitions) = hir
                .as_ref()
                .map(unbounded_repetitions)
                .filter(|n| *n > MAX_PATTERN_REPETITIONS)
            {
                return Err(RuleError::Value {
                    key: "re".into(),
                    message: format!(
                        "the regex repeats without bound {repetitions} times; at most {MAX_PATTERN_REPETITIONS}, so that one rule cannot stall detection"
                    ),
                });
            }
            let needle = hir
                .as_ref()
                .and_then(literal::regex_required_literal)
                .map(|t| interner.needle(field, t));
            LeafKind::Text {
                needle,
                check: TextCheck::Regex(regex),
            }
        }
        Test::Compare { op, value } => LeafKind::Compare {
            op: *op,
            value: *value,
        },
        Test::Cidr(net) => LeafKind::Cidr(*net),
        Test::Null => LeafKind::Null,
        Test::Exists => LeafKind::Exists,
        Test::FieldRef { other, cased, how } => {
            let other = interner.field_named(other, logsource, profile);
            LeafKind::FieldRef {
                other,
                cased: *cased,
                how: *how,
            }
        }
        Test::TimePart { part, op, value } => LeafKind::TimePart {
            part: *part,
            op: *op,
            value: *value,
        },
        Test::InFeed {
            feed,
            addresses_only,
        } => {
            let resolved = interner
                .feeds
                .as_ref()
                .and_then(|f| f.resolve(feed, *addresses_only));
            match resolved {
                Some(set) => LeafKind::InFeed(set),
                None => {
                    let known = interner
                        .feeds
                        .as_ref()
                        .map(|f| f.names())
                        .unwrap_or_default();
                    return Err(RuleError::UnknownFeed {
                        feed: feed.clone(),
                        known: if known.is_empty() {
                            "no feeds are configured (`intel.feeds`)".into()
                        } else {
                            format!("the feeds are {}", known.join(", "))
                        },
                    });
                }
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_long_literal_is_searched_by_its_end() {
        assert_eq!(needle_window("short".into()), "short");
        let hash = format!("sha256={}", "0123456789abcdef".repeat(4));
        assert_eq!(needle_window(hash.clone()), hash[hash.len() - 32..]);
        // Never inside a character.
        let text = format!("{}é{}", "a".repeat(40), "b".repeat(31));
        assert_eq!(needle_window(text), "b".repeat(31));
    }

    #[test]
    fn a_rule_digest_is_the_hash_of_its_formatted_detection() {
        // Archives record these digests: they must not change with how
        // they are computed.
        use sha2::{Digest, Sha256};
        let yaml = "title: t\nid: 5f1e0a4e-0000-4000-8000-000000000001\nlogsource: {product: windows, category: process_creation}\ndetection:\n  sel: {Image|endswith: '\\cmd.exe', CommandLine|contains|all: ['/c', 'whoami']}\n  filter: {User|re: '^NT AUTHORITY'}\n  condition: sel and not filter\n";
        let rules = crate::loader::rules_from_yaml(yaml);
        let rule = &rules.rules[0].rule;
        let (id, logsource, condition) =
            (rule.meta.id.as_deref(), &rule.logsource, &rule.condition);
        let formatted = format!("{id:?}\n{logsource:?}\n{condition:?}");
        let expected: [u8; 32] = Sha256::digest(formatted.as_bytes()).into();
        assert!(formatted.len() > 100, "{formatted}");
        assert_eq!(detection_digest(id, logsource, condition), expected);
        let set = RuleSetBuilder::new(Profile::passthrough())
            .build(&rules)
            .set;
        assert_eq!(set.digest(0), expected);
    }

    /// The rules of `yaml`, compiled with field names as they are.
    fn set_of(yaml: &str) -> RuleSet {
        RuleSetBuilder::new(Profile::passthrough())
            .build(&crate::loader::rules_from_yaml(yaml))
            .set
    }

    /// The trigger of each rule: how many literal leaves it has, or none.
    fn trigger_sizes(yaml: &str) -> Vec<Option<usize>> {
        let set = set_of(yaml);
        set.rules
            .iter()
            .map(|r| r.trigger.as_ref().map(Vec::len))
            .collect()
    }

    #[test]
    fn a_trigger_is_the_fewest_literals_one_of_which_every_match_holds() {
        let rule = |condition: &str| {
            format!("title: t\nlogsource: {{product: test}}\ndetection:\n  sel_a: {{Image|endswith: ['\\a.exe', '\\b.exe', '\\c.exe']}}\n  sel_b: {{CommandLine|contains: 'x1'}}\n  re: {{CommandLine|re: 'a.*b'}}\n  condition: {condition}\n")
        };
        let cases = [
            ("sel_a", Some(3)),
            ("sel_a and sel_b", Some(1)),
            ("sel_a or sel_b", Some(4)),
            ("1 of sel_*", Some(4)),
            ("sel_a and not sel_b", Some(3)),
            ("sel_a or not sel_b", None),
            ("not sel_b", None),
            ("re", None),
            ("re and sel_b", Some(1)),
            ("re or sel_b", None),
        ];
        for (condition, expected) in cases {
            assert_eq!(trigger_sizes(&rule(condition)), [expected], "{condition}");
        }
    }

    #[test]
    fn automata_search_only_triggers_and_the_literals_of_rules_without_one() {
        let yaml = "title: filtered\nlogsource: {product: test}\ndetection:\n  sel: {TargetImage|endswith: '\\lsass.exe'}\n  filter: {CallTrace|contains: 'ntdll.dll'}\n  condition: sel and not filter\n---\ntitle: untriggered\nlogsource: {product: test}\ndetection:\n  sel: {Image|contains: 'x1'}\n  re: {Image|re: 'a.*b'}\n  condition: sel or re\n";
        let set = set_of(yaml);
        assert_eq!(set.len(), 2);
        let mut searched: Vec<(Vec<String>, usize)> = set
            .automata_summary()
            .into_iter()
            .map(|a| (a.columns, a.literals))
            .collect();
        searched.sort();
        // No automaton for the filter's `CallTrace`.
        assert_eq!(
            searched,
            [(vec!["Image".into()], 1), (vec!["TargetImage".into()], 1)]
        );
        let column = |values: [&str; 4]| {
            std::sync::Arc::new(arrow_array::StringArray::from(values.to_vec()))
                as arrow_array::ArrayRef
        };
        let batch = arrow_array::RecordBatch::try_from_iter([
            (
                "TargetImage",
                column([
                    "C:\\lsass.exe",
                    "C:\\LSASS.EXE",
                    "C:\\a.exe",
                    "C:\\lsass.exe",
                ]),
            ),
            (
                "CallTrace",
                column(["ntdll.dll|x", "UNKNOWN", "UNKNOWN", "NTDLL.DLL"]),
            ),
            ("Image", column(["x1", "b", "a-b", "c"])),
        ])
        .unwrap();
        let mut scratch = set.scratch();
        let matches: Vec<(usize, usize)> = set
            .evaluate(&batch, &mut scratch)
            .iter()
            .map(|m| (m.rule, m.row))
            .collect();
        assert_eq!(matches, [(1, 0), (0, 1), (1, 2)]);
    }

    /// `hidden`, in two filters of one rule and searched by no automaton,
    /// is tested once per row of a batch whichever filter asks, and afresh
    /// in the next batch.
    #[test]
    fn a_literal_two_filters_share_is_right_for_each_batch_and_domain() {
        let yaml = "title: shared\nlogsource: {product: test}\ndetection:\n  sel: {Cmd|contains: 'go'}\n  f1: {Cmd|contains|all: ['hidden', 'a']}\n  f2: {Cmd|contains|all: ['hidden', 'b']}\n  condition: sel and not f1 and not f2\n";
        let set = set_of(yaml);
        assert_eq!(set.len(), 1);
        let rows = [
            "go hidden a",
            "go hidden b",
            "go hidden",
            "go a b",
            "hidden a",
            "go HIDDEN A B",
        ];
        let mut scratch = set.scratch();
        let mut matches = |values: Vec<&str>| {
            let column = std::sync::Arc::new(arrow_array::StringArray::from(values))
                as arrow_array::ArrayRef;
            let batch = arrow_array::RecordBatch::try_from_iter([("Cmd", column)]).unwrap();
            let found: Vec<usize> = set
                .evaluate(&batch, &mut scratch)
                .iter()
                .map(|m| m.row)
                .collect();
            found
        };
        assert_eq!(matches(rows.to_vec()), [2, 3]);
        // The next batch, the rows rotated: nothing carried over.
        let rotated: Vec<&str> = rows[2..].iter().chain(&rows[..2]).copied().collect();
        assert_eq!(matches(rotated), [0, 1]);
    }

    #[test]
    fn a_literal_longer_than_the_window_still_matches_only_itself() {
        let long = format!("HKLM\\Software\\{}\\Run", "Vendor".repeat(8));
        let other = format!("HKLM\\Other\\{}\\Run", "Vendor".repeat(8));
        let yaml = format!("title: t\nlogsource: {{product: test}}\ndetection:\n  sel: {{TargetObject|contains: '{long}'}}\n  condition: sel\n");
        let rules = crate::loader::rules_from_yaml(&yaml);
        let set = RuleSetBuilder::new(Profile::passthrough())
            .build(&rules)
            .set;
        assert_eq!(set.len(), 1);
        let values = arrow_array::StringArray::from(vec![long.as_str(), other.as_str()]);
        let batch = arrow_array::RecordBatch::try_from_iter([(
            "TargetObject",
            std::sync::Arc::new(values) as arrow_array::ArrayRef,
        )])
        .unwrap();
        let mut scratch = set.scratch();
        let rows: Vec<usize> = set
            .evaluate(&batch, &mut scratch)
            .iter()
            .map(|m| m.row)
            .collect();
        // Both values end alike for 32 bytes; only the rule's matches.
        assert_eq!(rows, [0]);
    }
}
