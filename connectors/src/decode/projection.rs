//! Projection: which columns a decoder fills. Every consumer of a batch
//! (rules, windows, the catalog, intel, event time, alerts, the archive)
//! names the columns it reads; a record's other leaves are checked as JSON
//! (a record is refused exactly as when they are decoded, duplicate keys
//! included) but not stored, copied or built into Arrow arrays. The
//! record's text stays whole in the [`super::RAW_COLUMN`], so a batch can
//! always be decoded again in full ([`super::EventBatch::decoded_again`]).
//!
//! ```text
//!  consumers' column names ─► Projection ─► SharedProjection ─► each source's decoder
//!                                               ▲ swapped on reload; a batch carries the one it was decoded with
//! ```

use std::collections::HashSet;
use std::sync::{Arc, RwLock};

use foldhash::fast::RandomState;

use super::gates::{Gate, Gates};

/// Whether a column's path matches a pattern, as the pattern's reader
/// (the rules) resolves it. A star stands for some text, so a path it
/// matches starts with the pattern's text before the first star.
pub type PathMatch = fn(path: &str, pattern: &str) -> bool;

/// The columns a decoder fills: paths, and patterns (names with a `*`)
/// matched as their reader matches them.
#[derive(Debug, Clone)]
pub struct Projection {
    exact: HashSet<Box<str>, RandomState>,
    /// The patterns, by the text before their first star. Every new
    /// column of every batch is asked about, and the profile gives each
    /// field a pattern (`Event.UserData.*.<field>`): one comparison per
    /// group, not a match per pattern, turns most paths away.
    patterns: Vec<PatternGroup>,
    matches: PathMatch,
    /// Columns filled only in some rows.
    gates: Gates,
}

/// Patterns that begin with the same text before their first star.
#[derive(Debug, Clone, PartialEq, Eq)]
struct PatternGroup {
    fixed: Box<str>,
    patterns: Vec<Box<str>>,
}

impl Projection {
    /// The projection onto `columns`, its patterns matched by `matches`.
    pub fn new<S: AsRef<str>>(
        columns: impl IntoIterator<Item = S>,
        matches: PathMatch,
    ) -> Projection {
        let mut projection = Projection {
            exact: HashSet::default(),
            patterns: Vec::new(),
            matches,
            gates: Gates::default(),
        };
        for column in columns {
            projection.add(column.as_ref());
        }
        projection
    }

    /// Adds `column`: as the rules resolve them, a name with a star is a
    /// pattern.
    fn add(&mut self, column: &str) {
        match column.find('*') {
            Some(star) => self.add_pattern(&column[..star], column),
            None => {
                self.exact.insert(column.into());
            }
        }
    }

    /// The projection also filling the `gated` columns, each only in the
    /// rows its gate lets through (see [`super::gates`]), and the columns
    /// the gates read in every row. A column this projection already
    /// fills, and a pattern's, is filled in every row; so, from then on,
    /// are the columns an earlier call gated.
    pub fn gated(mut self, gated: impl IntoIterator<Item = (String, Gate)>) -> Projection {
        let (patterns, gated): (Vec<_>, Vec<_>) = gated
            .into_iter()
            .partition(|(column, _)| column.contains('*'));
        // A pattern's columns are filled in every row.
        for (pattern, _) in &patterns {
            self.add(pattern);
        }
        for (_, gate) in &gated {
            self.exact
                .extend(gate.columns().iter().map(|c| c.as_str().into()));
        }
        let narrow: Vec<(String, Gate)> = gated
            .into_iter()
            .filter(|(column, _)| !self.decodes(column))
            .collect();
        self.exact
            .extend(narrow.iter().map(|(column, _)| column.as_str().into()));
        self.gates = Gates::new(narrow);
        self
    }

    /// The number of the gate of the column at `path` (named, or named
    /// with its spaces left out), if it is filled only in some rows.
    pub(super) fn gate_of(&self, path: &str) -> Option<u32> {
        if self.gates.len() == 0 {
            return None;
        }
        by_name(path, |name| self.gates.number(name))
    }

    /// The gates, for the decoder.
    pub(super) fn gates(&self) -> &Gates {
        &self.gates
    }

    /// How many columns are filled only in some rows.
    pub fn gated_len(&self) -> usize {
        self.gates.len()
    }

    /// Adds `pattern`, whose text before the first star is `fixed`, unless
    /// it is there.
    fn add_pattern(&mut self, fixed: &str, pattern: &str) {
        match self.patterns.iter_mut().find(|g| *g.fixed == *fixed) {
            Some(group) if group.patterns.iter().any(|p| **p == *pattern) => {}
            Some(group) => group.patterns.push(pattern.into()),
            None => self.patterns.push(PatternGroup {
                fixed: fixed.into(),
                patterns: vec![pattern.into()],
            }),
        }
    }

    /// The patterns, group by group.
    fn patterns(&self) -> impl Iterator<Item = &str> {
        self.patterns
            .iter()
            .flat_map(|g| g.patterns.iter().map(|p| &**p))
    }

    /// Whether the column at `path` is filled: named, matching a pattern,
    /// or named with its spaces left out (Sigma's field names are the
    /// log's with spaces stripped: `ThreatName` reads `Threat Name`).
    pub fn decodes(&self, path: &str) -> bool {
        by_name(path, |name| self.exact.contains(name).then_some(())).is_some()
            || self.patterns.iter().any(|g| {
                path.starts_with(&*g.fixed) && g.patterns.iter().any(|p| (self.matches)(path, p))
            })
    }

    /// Whether every column `other` fills, this one fills too.
    /// A column it fills only in some rows, `other` must fill in the
    /// same rows.
    pub fn covers(&self, other: &Projection) -> bool {
        other.exact.iter().all(|c| {
            self.decodes(c)
                && self
                    .gates
                    .gate(c)
                    .is_none_or(|g| other.gates.gate(c) == Some(g))
        }) && other.patterns().all(|p| self.patterns().any(|q| q == p))
    }

    /// How many names and patterns it holds.
    pub fn len(&self) -> usize {
        self.exact.len() + self.patterns().count()
    }

    /// True if it fills no column.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// What `find` finds for the column at `path` by its name: the path, or
/// the path with its spaces left out (Sigma's field names are the log's
/// with spaces stripped: `ThreatName` reads `Threat Name`).
fn by_name<T>(path: &str, find: impl Fn(&str) -> Option<T>) -> Option<T> {
    find(path).or_else(|| path.contains(' ').then(|| find(&path.replace(' ', "")))?)
}

/// Equal if they hold the same names and patterns (matched the same way,
/// since one reader's patterns are matched by one function).
impl PartialEq for Projection {
    fn eq(&self, other: &Self) -> bool {
        self.exact == other.exact && self.patterns == other.patterns && self.gates == other.gates
    }
}

impl Eq for Projection {}

/// The projection the decoders of a running vagt use, shared by its
/// sources and swapped when what the consumers read changes (a rule
/// reload); `None` fills every column. Decoders read it once per batch.
#[derive(Debug, Clone, Default)]
pub struct SharedProjection(Arc<RwLock<Option<Arc<Projection>>>>);

impl SharedProjection {
    /// Shared `projection`.
    pub fn new(projection: Option<Projection>) -> SharedProjection {
        SharedProjection::holding(projection.map(Arc::new))
    }

    /// Shared `projection`, as a batch holds it.
    pub(super) fn holding(projection: Option<Arc<Projection>>) -> SharedProjection {
        SharedProjection(Arc::new(RwLock::new(projection)))
    }

    /// The projection now.
    pub fn get(&self) -> Option<Arc<Projection>> {
        match self.0.read() {
            Ok(current) => current.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    /// Replaces it: batches begun from now on use `projection`.
    pub fn set(&self, projection: Option<Projection>) {
        let projection = projection.map(Arc::new);
        match self.0.write() {
            Ok(mut current) => *current = projection,
            Err(poisoned) => *poisoned.into_inner() = projection,
        }
    }
}

/// Two handles are equal if they share one projection.
impl PartialEq for SharedProjection {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.0, &other.0)
    }
}

impl Eq for SharedProjection {}

#[cfg(test)]
pub(super) mod tests {
    use super::*;

    /// A `*` segment stands for any one segment (as the rules match).
    pub(in crate::decode) fn segments(path: &str, pattern: &str) -> bool {
        let (path, pattern): (Vec<_>, Vec<_>) =
            (path.split('.').collect(), pattern.split('.').collect());
        path.len() == pattern.len() && path.iter().zip(&pattern).all(|(a, b)| *b == "*" || a == b)
    }

    fn projection(columns: &[&str]) -> Projection {
        Projection::new(columns, segments)
    }

    #[test]
    fn names_and_patterns_select_columns() {
        let projection = projection(&["Image", "Event.UserData.*.CommandLine"]);
        assert!(projection.decodes("Image"));
        assert!(!projection.decodes("Image.Name"));
        assert!(!projection.decodes("ImageLoaded"));
        assert!(projection.decodes("Event.UserData.Op.CommandLine"));
        assert!(!projection.decodes("Event.UserData.CommandLine"));
        assert!(projection.decodes("Im age") && !projection.decodes("Im-age"));
        assert_eq!(projection.len(), 2);
    }

    #[test]
    fn patterns_grouped_by_their_text_before_a_star_each_select_their_columns() {
        let projection = projection(&[
            "Event.UserData.*.CommandLine",
            "Event.UserData.*.Image",
            "Event.UserData.*.Image",
            "*.Hashes",
            "Event.*.Op.*.User",
        ]);
        assert_eq!(projection.len(), 4, "the pattern named twice counts once");
        assert!(projection.decodes("Event.UserData.Op.CommandLine"));
        assert!(projection.decodes("Event.UserData.Op.Image"));
        assert!(projection.decodes("Sysmon.Hashes"));
        assert!(projection.decodes("Event.X.Op.Y.User"));
        assert!(!projection.decodes("Event.UserData.Op.User"));
        assert!(!projection.decodes("Event.Hashes.X"));
        // Groups held in another order are the same projection.
        let again = Projection::new(
            [
                "*.Hashes",
                "Event.UserData.*.Image",
                "Event.UserData.*.CommandLine",
                "Event.*.Op.*.User",
            ],
            segments,
        );
        assert!(again.covers(&projection) && projection.covers(&again));
    }

    #[test]
    fn a_projection_covers_what_it_fills() {
        let wide = projection(&["a", "b", "c.*"]);
        assert!(wide.covers(&projection(&["a", "c.x"])));
        assert!(wide.covers(&projection(&["c.*"])));
        assert!(!wide.covers(&projection(&["d"])));
        assert!(!wide.covers(&projection(&["*.x"])));
        assert!(wide.covers(&projection(&[])));
    }

    #[test]
    fn a_shared_projection_is_swapped_for_all_holders() {
        let shared = SharedProjection::default();
        let holder = shared.clone();
        assert!(holder.get().is_none());
        shared.set(Some(projection(&["a"])));
        assert!(holder
            .get()
            .is_some_and(|p| p.decodes("a") && !p.decodes("b")));
    }
}
