//! The regular expressions rules compile to (`re` values, and wildcard
//! patterns with `?`, which the glob matcher does not take): each distinct
//! one checked once, before lowering and on every core, and its matching
//! engines built when it first tests a value. Most expressions never do:
//! their rule's literals rule the event out first (40 of SigmaHQ's 178
//! distinct Windows expressions test a value over the OTRF sample), and
//! building them was a seventh of start-up. What is built is the
//! expression reduced to what decides whether it matches
//! ([`for_is_match`]), all a rule asks of it.
//!
//! A rule is still refused at load for an expression that would not
//! build: its syntax is parsed then, and an expression whose automaton
//! could come near the size limit ([`nfa_bound`]) is built then too.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, OnceLock};

use regex_automata::hybrid::dfa::{Cache as DfaCache, DFA};
use regex_automata::nfa::thompson::pikevm::{Cache as PikeCache, PikeVM};
use regex_automata::nfa::thompson::{self, WhichCaptures};
use regex_automata::util::pool::Pool;
use regex_automata::util::prefilter::Prefilter;
use regex_automata::util::syntax;
use regex_automata::{Input, MatchKind};
use regex_syntax::hir::{Class, Hir, HirKind, Repetition};
use regex_syntax::utf8::Utf8Sequences;

use super::literal::glob_to_regex;
use super::MAX_PATTERN_REPETITIONS;
use crate::sigma::{Cond, Part, RegexFlags, SigmaString, Test};

/// The largest compiled program a `re` value may have, so that one rule
/// cannot make detection slow or large.
const RE_SIZE_LIMIT: usize = 1 << 22;

/// The size limit of a translated wildcard pattern: `regex::Regex`'s
/// default, which it was built with before.
const WILDCARD_SIZE_LIMIT: usize = 10 << 20;

/// What an expression is built from.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(super) enum RegexSource {
    /// A `re` value and its sub-modifiers.
    Re(String, RegexFlags),
    /// A wildcard pattern, translated (its case handling is in the text).
    Wildcard(String),
}

impl RegexSource {
    /// The source of a wildcard pattern that has a `?`.
    pub(super) fn wildcard(pattern: &SigmaString, cased: bool) -> RegexSource {
        RegexSource::Wildcard(glob_to_regex(pattern, cased))
    }

    /// The source `test` compiles to, if it compiles to one: a `re` value,
    /// or a wildcard pattern with `?` and no more wildcards than allowed.
    fn of(test: &Test) -> Option<RegexSource> {
        match test {
            Test::Regex { pattern, flags } => Some(RegexSource::Re(pattern.clone(), *flags)),
            Test::Match { pattern, cased } => {
                let parts = pattern.parts();
                (parts.iter().any(|p| matches!(p, Part::AnyOne))
                    && wildcards(parts) <= MAX_PATTERN_REPETITIONS)
                    .then(|| RegexSource::wildcard(pattern, *cased))
            }
            _ => None,
        }
    }

    fn build(&self) -> Result<Regex, regex::Error> {
        let (pattern, syntax, size_limit) = match self {
            RegexSource::Re(pattern, flags) => (pattern, re_syntax(*flags), RE_SIZE_LIMIT),
            RegexSource::Wildcard(pattern) => (pattern, syntax::Config::new(), WILDCARD_SIZE_LIMIT),
        };
        Regex::new(pattern, &syntax, size_limit)
    }
}

/// How a `re` value with `flags` is parsed.
fn re_syntax(flags: RegexFlags) -> syntax::Config {
    syntax::Config::new()
        .case_insensitive(flags.insensitive)
        .multi_line(flags.multi_line)
        .dot_matches_new_line(flags.dot_all)
}

/// `hir` reduced to what decides whether it matches somewhere, all a rule
/// asks: a part at either end of a sequence that can match the empty
/// string and asserts nothing (`.*`, `(?:\s?-p)?`) decides nothing and
/// goes, and a repetition left at either end counts only its minimum
/// (`-k\s\w{1,64}` matches where `-k\s\w` does). Capture groups and
/// each branch of an alternation are reduced alike. A smaller automaton is
/// quicker to build and to run, and an expression that began with `.*`
/// gets a literal prefix for its prefilter.
fn for_is_match(hir: Hir) -> Hir {
    match hir.into_kind() {
        HirKind::Capture(capture) => for_is_match(*capture.sub),
        HirKind::Alternation(branches) => {
            Hir::alternation(branches.into_iter().map(for_is_match).collect())
        }
        HirKind::Concat(parts) => {
            let decides =
                |part: &Hir| !asserts_nothing(part) || part.properties().minimum_len() != Some(0);
            let Some(first) = parts.iter().position(decides) else {
                return Hir::empty();
            };
            let last = parts.iter().rposition(decides).unwrap_or(first);
            let mut kept: Vec<Hir> = parts
                .into_iter()
                .skip(first)
                .take(last + 1 - first)
                .collect();
            for end in [0, kept.len() - 1] {
                let part = std::mem::replace(&mut kept[end], Hir::empty());
                kept[end] = at_its_minimum(part);
            }
            Hir::concat(kept)
        }
        kind => at_its_minimum(rebuilt(kind)),
    }
}

/// Whether `hir` holds no assertion (`^`, `$`, `\b`), which could fail
/// where the rest would match.
fn asserts_nothing(hir: &Hir) -> bool {
    hir.properties().look_set().is_empty()
}

/// A repetition at an end of what must match, as its minimum: `x{2,5}` at
/// the end of a match holds `x{2}` there. Anything else as it is.
fn at_its_minimum(hir: Hir) -> Hir {
    match hir.into_kind() {
        HirKind::Repetition(r) if r.max != Some(r.min) && r.min > 0 && asserts_nothing(&r.sub) => {
            Hir::repetition(Repetition {
                max: Some(r.min),
                ..r
            })
        }
        kind => rebuilt(kind),
    }
}

/// The expression of `kind` again.
fn rebuilt(kind: HirKind) -> Hir {
    match kind {
        HirKind::Empty => Hir::empty(),
        HirKind::Literal(literal) => Hir::literal(literal.0),
        HirKind::Class(class) => Hir::class(class),
        HirKind::Look(look) => Hir::look(look),
        HirKind::Repetition(repetition) => Hir::repetition(repetition),
        HirKind::Capture(capture) => Hir::capture(capture),
        HirKind::Concat(parts) => Hir::concat(parts),
        HirKind::Alternation(branches) => Hir::alternation(branches),
    }
}

/// Bytes an automaton state is counted at by [`nfa_bound`]: more than a
/// Thompson NFA spends on a state and its transition (a tested bound,
/// `the_bound_is_above_every_automaton_built`).
const STATE_BYTES: usize = 64;

/// An expression whose [`nfa_bound`] is at most this share of its size
/// limit is built when first used; a larger one at load, where its size
/// is checked exactly.
const LAZY_SHARE_OF_LIMIT: usize = 4;

/// Whether an expression whose NFA is at most `bound` bytes waits for its
/// first test to be built, under `size_limit`.
fn built_on_first_use(bound: usize, size_limit: usize) -> bool {
    bound.saturating_mul(LAZY_SHARE_OF_LIMIT) <= size_limit
}

/// What every Thompson NFA holds whatever its expression (its start
/// states and the unanchored prefix), counted generously.
const NFA_BASE_BYTES: usize = 4096;

/// An upper bound of the bytes of the Thompson NFA that `hir` compiles
/// to: a state per literal byte, per byte range of a class's UTF-8 forms
/// and per node, repetitions counted as often as they may repeat (once
/// more than their minimum when unbounded).
fn nfa_bound(hir: &Hir) -> usize {
    NFA_BASE_BYTES.saturating_add(states_bound(hir).saturating_mul(STATE_BYTES))
}

/// The states [`nfa_bound`] counts for `hir`.
fn states_bound(hir: &Hir) -> usize {
    match hir.kind() {
        HirKind::Empty | HirKind::Look(_) => 1,
        HirKind::Literal(literal) => literal.0.len() + 1,
        HirKind::Class(Class::Bytes(class)) => class.ranges().len() + 1,
        HirKind::Class(Class::Unicode(class)) => {
            let forms: usize = class
                .ranges()
                .iter()
                .flat_map(|r| Utf8Sequences::new(r.start(), r.end()))
                .map(|sequence| sequence.len())
                .sum();
            forms + 1
        }
        HirKind::Repetition(repetition) => {
            let times = match repetition.max {
                Some(max) => max.max(1),
                None => repetition.min.saturating_add(1),
            };
            states_bound(&repetition.sub)
                .saturating_mul(times as usize)
                .saturating_add(1)
        }
        HirKind::Capture(capture) => states_bound(&capture.sub).saturating_add(2),
        HirKind::Concat(subs) | HirKind::Alternation(subs) => subs
            .iter()
            .map(states_bound)
            .fold(subs.len() + 1, usize::saturating_add),
    }
}

/// A regular expression that answers whether it matches, and nothing
/// else: all a rule asks of one. Built forward only, without capture
/// groups: a lazy DFA over one Thompson NFA, with a prefilter for a
/// literal prefix, and the PikeVM over the same NFA where the lazy DFA
/// gives up (a Unicode word boundary beside non-ASCII text).
/// `regex::Regex` also builds the NFA reversed (its lazy DFA finds where a
/// match starts that way, which `is_match` never needs), a full DFA for
/// small expressions, a one-pass DFA and a backtracker: three times the
/// building, at start-up, for every expression of every rule.
///
/// The engines are built on the first test ([`Regex::is_match`]), from
/// the expression parsed and reduced ([`for_is_match`]) at load.
#[derive(Clone)]
pub(crate) struct Regex(Arc<Built>);

/// An expression's engines, or what builds them when first asked for.
struct Built {
    /// The parsed expression the engines are built from on first use;
    /// `None` where they were built at load.
    hir: Option<Hir>,
    engines: OnceLock<Option<Engines>>,
}

/// What a [`Regex`] searches with, and the per-thread caches they use.
struct Engines {
    /// `None` where the lazy DFA cannot be built for the expression.
    dfa: Option<DFA>,
    pikevm: PikeVM,
    caches: Pool<Caches, CreateCaches>,
}

/// Makes a thread's [`Caches`].
type CreateCaches =
    Box<dyn Fn() -> Caches + Send + Sync + std::panic::UnwindSafe + std::panic::RefUnwindSafe>;

/// One searching thread's mutable state.
struct Caches {
    dfa: Option<DfaCache>,
    pikevm: PikeCache,
}

impl std::fmt::Debug for Regex {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let engines = self.0.engines.get();
        f.debug_struct("Regex")
            .field("built", &engines.is_some())
            .field(
                "lazy_dfa",
                &engines.map(|e| e.as_ref().is_some_and(|e| e.dfa.is_some())),
            )
            .finish_non_exhaustive()
    }
}

impl Regex {
    /// `pattern` parsed with `syntax`, its NFA at most `size_limit` bytes;
    /// errors worded as `regex::Regex` words them. Built now only if its
    /// [`nfa_bound`] comes near `size_limit`.
    fn new(
        pattern: &str,
        syntax: &syntax::Config,
        size_limit: usize,
    ) -> Result<Regex, regex::Error> {
        let hir =
            syntax::parse_with(pattern, syntax).map_err(|e| regex::Error::Syntax(e.to_string()))?;
        let hir = for_is_match(hir);
        if built_on_first_use(nfa_bound(&hir), size_limit) {
            return Ok(Regex(Arc::new(Built {
                hir: Some(hir),
                engines: OnceLock::new(),
            })));
        }
        let engines = Engines::build(&hir, Some(size_limit))?;
        Ok(Regex(Arc::new(Built {
            hir: None,
            engines: OnceLock::from(Some(engines)),
        })))
    }

    /// Whether the expression matches anywhere in `haystack`.
    pub(crate) fn is_match(&self, haystack: &str) -> bool {
        let built = &*self.0;
        let engines = built.engines.get_or_init(|| {
            // Parsed, and well under the size limit: building cannot fail
            // (the limit is lifted here, so that a bound that was wrong
            // costs memory, never a match). An expression that still did
            // not build would match nothing.
            built
                .hir
                .as_ref()
                .and_then(|hir| Engines::build(hir, None).ok())
        });
        engines
            .as_ref()
            .is_some_and(|engines| engines.is_match(haystack))
    }
}

impl Engines {
    /// The engines for `hir`, its NFA at most `size_limit` bytes if given.
    fn build(hir: &Hir, size_limit: Option<usize>) -> Result<Engines, regex::Error> {
        let nfa = thompson::Compiler::new()
            .configure(
                thompson::Config::new()
                    .which_captures(WhichCaptures::None)
                    .nfa_size_limit(size_limit),
            )
            .build_from_hir(hir)
            .map_err(|e| match e.size_limit() {
                Some(limit) => regex::Error::CompiledTooBig(limit),
                None => regex::Error::Syntax(e.to_string()),
            })?;
        let prefilter = Prefilter::from_hir_prefix(MatchKind::LeftmostFirst, hir);
        let dfa = DFA::builder()
            .configure(
                DFA::config()
                    .prefilter(prefilter)
                    .unicode_word_boundary(true),
            )
            .build_from_nfa(nfa.clone())
            .ok();
        let pikevm = PikeVM::new_from_nfa(nfa).map_err(|e| regex::Error::Syntax(e.to_string()))?;
        let create: CreateCaches = {
            let (dfa, pikevm) = (dfa.clone(), pikevm.clone());
            Box::new(move || Caches {
                dfa: dfa.as_ref().map(DFA::create_cache),
                pikevm: pikevm.create_cache(),
            })
        };
        Ok(Engines {
            dfa,
            pikevm,
            caches: Pool::new(create),
        })
    }

    fn is_match(&self, haystack: &str) -> bool {
        let mut caches = self.caches.get();
        let input = Input::new(haystack).earliest(true);
        if let (Some(dfa), Some(cache)) = (&self.dfa, caches.dfa.as_mut()) {
            if let Ok(found) = dfa.try_search_fwd(cache, &input) {
                return found.is_some();
            }
        }
        self.pikevm.is_match(&mut caches.pikevm, input)
    }
}

/// The wildcards (`*`, `?`) of a pattern's parts: a pattern with `?`
/// becomes a regex, whose cost grows with them.
pub(super) fn wildcards(parts: &[Part]) -> usize {
    parts
        .iter()
        .filter(|p| !matches!(p, Part::Literal(_)))
        .count()
}

/// Built expressions by their source.
#[derive(Debug, Default)]
pub(super) struct Regexes(HashMap<RegexSource, Result<Regex, regex::Error>>);

impl Regexes {
    /// Checks the distinct expressions that `conditions` need, on every
    /// core: each parsed, the few that could come near their size limit
    /// built (the largest take a millisecond each).
    pub(super) fn prebuilt<'a>(conditions: impl Iterator<Item = &'a Cond>) -> Regexes {
        let mut seen = HashSet::new();
        let mut sources = Vec::new();
        for condition in conditions {
            condition.for_each_predicate(&mut |p| {
                if let Some(source) = RegexSource::of(&p.test) {
                    if seen.insert(source.clone()) {
                        sources.push(source);
                    }
                }
            });
        }
        let built = crate::parallel::map(&sources, RegexSource::build);
        Regexes(sources.into_iter().zip(built).collect())
    }

    /// The expression checked from `source` (checked now if it was not).
    pub(super) fn get(&mut self, source: RegexSource) -> Result<Regex, regex::Error> {
        self.0
            .entry(source)
            .or_insert_with_key(RegexSource::build)
            .clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sigma::{Predicate, Target};

    fn pred(test: Test) -> Cond {
        Cond::Pred(Predicate {
            target: Target::Field("CommandLine".into()),
            test,
        })
    }

    #[test]
    fn the_expressions_rules_need_are_built_once_before_lowering() {
        let re = Test::Regex {
            pattern: "a+b".into(),
            flags: RegexFlags::default(),
        };
        let wildcard = Test::Match {
            pattern: SigmaString::parse("ab?d*"),
            cased: false,
        };
        let glob = Test::Match {
            pattern: SigmaString::parse("ab*d"),
            cased: false,
        };
        let conditions = [
            Cond::And(vec![pred(re.clone()), pred(glob)]),
            Cond::Or(vec![pred(re), pred(wildcard)]),
        ];
        let mut regexes = Regexes::prebuilt(conditions.iter());
        // The `re` value once, the `?` pattern; not the glob.
        assert_eq!(regexes.0.len(), 2);
        let r = regexes
            .get(RegexSource::Re("a+b".into(), RegexFlags::default()))
            .unwrap();
        assert!(r.is_match("xaab"));
        let w = regexes
            .get(RegexSource::wildcard(&SigmaString::parse("ab?d*"), false))
            .unwrap();
        assert!(w.is_match("ABCDEF") && !w.is_match("abd"));
        assert_eq!(regexes.0.len(), 2);
        // One it did not see is built when asked for; a broken one errs.
        assert!(regexes
            .get(RegexSource::Re("(".into(), RegexFlags::default()))
            .is_err());
        assert_eq!(regexes.0.len(), 3);
    }

    /// What the lazy DFA gives up on is answered by the engines behind it,
    /// as `regex::Regex` answers it.
    #[test]
    fn expressions_answer_as_the_regex_crate_does() {
        let cases = [
            (r"\bcmd\b", "é cmd é"),
            (r"\bcmd\b", "écmdé"),
            (r"(?i)straße", "STRASSE"),
            (r"(?i)ÆØÅ", "æøå"),
            (r"^\w+$", "fødselsnummer"),
            (r"a.c", "aæc"),
            (r"(a|b)+c", "ababab"),
        ];
        for (pattern, hay) in cases {
            let ours = RegexSource::Re(pattern.into(), RegexFlags::default())
                .build()
                .unwrap();
            let theirs = regex::Regex::new(pattern).unwrap();
            assert_eq!(
                ours.is_match(hay),
                theirs.is_match(hay),
                "{pattern} on {hay}"
            );
        }
        let big = RegexSource::Re("a{1000}{1000}".into(), RegexFlags::default()).build();
        assert!(
            matches!(big, Err(regex::Error::CompiledTooBig(_))),
            "{big:?}"
        );
    }

    #[test]
    fn a_broken_expression_is_kept_as_its_error_and_flags_make_another() {
        let re = |pattern: &str, insensitive: bool| Test::Regex {
            pattern: pattern.into(),
            flags: RegexFlags {
                insensitive,
                ..RegexFlags::default()
            },
        };
        let too_many = "a?".repeat(MAX_PATTERN_REPETITIONS + 1);
        let conditions = [Cond::Or(vec![
            pred(re("(", false)),
            pred(re("ab", false)),
            pred(re("ab", true)),
            pred(Test::Match {
                pattern: SigmaString::parse(&too_many),
                cased: false,
            }),
        ])];
        let mut regexes = Regexes::prebuilt(conditions.iter());
        // The broken one and both flag sets; not the pattern with too many
        // wildcards, which lowering refuses before asking for it.
        assert_eq!(regexes.0.len(), 3);
        let prebuilt_error = regexes
            .get(RegexSource::Re("(".into(), RegexFlags::default()))
            .unwrap_err();
        assert_eq!(
            prebuilt_error.to_string(),
            RegexSource::Re("(".into(), RegexFlags::default())
                .build()
                .unwrap_err()
                .to_string()
        );
        let cased = regexes
            .get(RegexSource::Re("ab".into(), RegexFlags::default()))
            .unwrap();
        let insensitive = regexes
            .get(RegexSource::Re(
                "ab".into(),
                RegexFlags {
                    insensitive: true,
                    ..RegexFlags::default()
                },
            ))
            .unwrap();
        assert!(!cased.is_match("AB") && insensitive.is_match("AB"));
        assert_eq!(regexes.0.len(), 3);
    }

    /// The NFA's bytes, as the size limit counts them.
    fn nfa_bytes(hir: &Hir) -> usize {
        thompson::Compiler::new()
            .configure(thompson::Config::new().which_captures(WhichCaptures::None))
            .build_from_hir(hir)
            .unwrap()
            .memory_usage()
    }

    /// Every `re` value of SigmaHQ's rules, with its flags.
    fn corpus_expressions() -> Vec<(String, RegexFlags)> {
        let rules = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../shared/corpora/sigmahq/rules"
        );
        let loaded =
            crate::loader::load_paths(&[rules], &crate::sigma::Placeholders::default()).unwrap();
        let mut found = Vec::new();
        for rule in &loaded.rules {
            rule.rule.condition.for_each_predicate(&mut |p| {
                if let Test::Regex { pattern, flags } = &p.test {
                    found.push((pattern.clone(), *flags));
                }
            });
        }
        found
    }

    #[test]
    fn the_bound_is_above_every_automaton_built() {
        let mut expressions: Vec<(String, RegexFlags)> = [
            r"\w+",
            r"(?i)\w{2,40}",
            r".{0,200}",
            r"[^\s]{3,}\.exe",
            r"(?i)straße|ÆØÅ",
            r"\p{L}{5}",
            r"(a|b|c)*d{3,5}",
            r"\d{1,3}(\.\d{1,3}){3}",
            r"^$",
            r"(?s).*",
            r"(?i)[a-z0-9+/]{50,}={0,2}",
            r"\b\w+\b",
            r"x{1000}",
            r"\w{30}",
            r"(?i)\w{100}",
        ]
        .iter()
        .map(|p| (p.to_string(), RegexFlags::default()))
        .collect();
        let corpus = corpus_expressions();
        assert!(corpus.len() > 100, "{} expressions", corpus.len());
        expressions.extend(corpus);
        let mut lazy = 0;
        for (pattern, flags) in &expressions {
            let Ok(hir) = syntax::parse_with(pattern, &re_syntax(*flags)) else {
                continue;
            };
            // As written, and as reduced, which is what is built.
            let reduced = for_is_match(hir.clone());
            for hir in [&hir, &reduced] {
                let (bytes, bound) = (nfa_bytes(hir), nfa_bound(hir));
                assert!(bytes <= bound, "{pattern}: {bytes} bytes, bound {bound}");
            }
            lazy += usize::from(built_on_first_use(nfa_bound(&hir), RE_SIZE_LIMIT));
        }
        // The bound lets nearly all of them wait to be built.
        assert!(
            lazy * 10 >= expressions.len() * 9,
            "{lazy} of {}",
            expressions.len()
        );
    }

    #[test]
    fn an_expression_is_built_when_first_used_and_a_large_one_at_load() {
        let small = RegexSource::Re("a+b".into(), RegexFlags::default())
            .build()
            .unwrap();
        assert!(small.0.engines.get().is_none(), "{small:?}");
        assert!(small.is_match("xaab") && !small.is_match("ba"));
        assert!(small.0.engines.get().is_some_and(Option::is_some));
        // Near the limit: built at load, where it still fits.
        let large = RegexSource::Re("\\w{100}".into(), RegexFlags::default())
            .build()
            .unwrap();
        assert!(large.0.engines.get().is_some(), "{large:?}");
        assert!(large.is_match(&"é".repeat(100)) && !large.is_match("short"));
        // Over it: refused at load, as before.
        let too_big = RegexSource::Re("\\w{1000}".into(), RegexFlags::default()).build();
        assert!(
            matches!(too_big, Err(regex::Error::CompiledTooBig(_))),
            "{too_big:?}"
        );
    }

    /// Every string value of SigmaHQ's regression events (real events
    /// that its rules must match), at most `limit` of them.
    fn regression_strings(limit: usize) -> Vec<String> {
        fn strings(value: &serde_json::Value, out: &mut std::collections::BTreeSet<String>) {
            match value {
                serde_json::Value::String(s) => {
                    out.insert(s.clone());
                }
                serde_json::Value::Array(items) => items.iter().for_each(|v| strings(v, out)),
                serde_json::Value::Object(map) => map.values().for_each(|v| strings(v, out)),
                _ => {}
            }
        }
        let root = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../shared/corpora/sigmahq/regression_data"
        );
        let mut found = std::collections::BTreeSet::new();
        for entry in walkdir::WalkDir::new(root).sort_by_file_name() {
            let entry = entry.unwrap();
            if entry.path().extension().is_some_and(|e| e == "json") {
                // One event per file, or one per line.
                let text = std::fs::read_to_string(entry.path()).unwrap();
                let events: Vec<serde_json::Value> = serde_json::from_str(&text)
                    .map(|event| vec![event])
                    .unwrap_or_else(|_| {
                        text.lines()
                            .filter_map(|line| serde_json::from_str(line).ok())
                            .collect()
                    });
                events.iter().for_each(|event| strings(event, &mut found));
            }
        }
        found.into_iter().take(limit).collect()
    }

    /// The expressions reduced for `is_match` answer as the `regex` crate
    /// answers the whole expressions: SigmaHQ's, over the values of the
    /// events its rules are tested with, and ones built to be reduced.
    #[test]
    fn reduced_expressions_match_where_the_whole_ones_do() {
        let mut haystacks = regression_strings(400);
        assert!(haystacks.len() >= 200, "{} strings", haystacks.len());
        haystacks.extend(
            [
                "",
                "foo",
                "xfoo",
                "foox",
                "-k netsvcs -p",
                "-k ",
                "-k x",
                "cmd",
                "a cmd b",
                "acmdb",
                "xx",
                "x",
                "barfoo",
                "ab\nfoo",
                "FOO",
                "é-k éé",
            ]
            .map(String::from),
        );
        let mut patterns: Vec<(String, RegexFlags)> = [
            r".*foo.*",
            r"foo\w{1,64}",
            r"^foo.*",
            r"foo.*$",
            r"(.*foo)",
            r"a.*|foo",
            r"x{2,5}",
            r"\bcmd\b.*",
            r".*",
            r"(?:-p)?",
            r"-k\s\w{1,64}(?:\s?(?:-p|-s))?",
            r"(?m)^foo.+",
            r".+foo.+",
            r"(?i)FOO\s*",
            r"\w{2,}foo",
            r"(x|y)*foo(x|y){0,3}",
            r"^$",
            r"$",
        ]
        .iter()
        .map(|p| (p.to_string(), RegexFlags::default()))
        .collect();
        patterns.extend(corpus_expressions());
        for (pattern, flags) in &patterns {
            let Ok(ours) = RegexSource::Re(pattern.clone(), *flags).build() else {
                continue;
            };
            let theirs = regex::RegexBuilder::new(pattern)
                .case_insensitive(flags.insensitive)
                .multi_line(flags.multi_line)
                .dot_matches_new_line(flags.dot_all)
                .build()
                .unwrap();
            for hay in &haystacks {
                assert_eq!(
                    ours.is_match(hay),
                    theirs.is_match(hay),
                    "{pattern} ({flags:?}) on {hay:?}"
                );
            }
        }
        // svchost's flags, whose `\w{1,64}` was a 1.1 MB NFA built at load,
        // now wait for their first test.
        let flags = RegexSource::Re(
            r"-k\s\w{1,64}(?:\s?(?:-p|-s))?".into(),
            RegexFlags::default(),
        )
        .build()
        .unwrap();
        assert!(flags.0.engines.get().is_none(), "{flags:?}");
    }
}
