//! Which of the matcher's equivalent paths run. By default each is chosen
//! by size: the automaton kind by the number of literals, a column scan or
//! a scan of a logsource's rows by how many rows the logsource has, the
//! SIMD fingerprints by how long the values are; hash literals go to a
//! hash map. Every path must give the same matches; the semantics tests
//! force each one to prove it.

/// The kind of the prefilter automata.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum AutomatonPath {
    /// A DFA up to 300 literals, a contiguous NFA beyond, a
    /// noncontiguous NFA should those not build.
    #[default]
    Auto,
    /// A DFA for every field.
    Dfa,
    /// A contiguous NFA for every field.
    ContiguousNfa,
    /// A noncontiguous NFA for every field.
    NoncontiguousNfa,
    /// No automaton: each literal's test reads every row itself (what
    /// happens when no automaton builds).
    Off,
}

/// How a field's automaton reads a batch.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum ScanPath {
    /// The whole column, unless the rules reading the field look at fewer
    /// than half the rows (their logsources'); then those rows one by one.
    #[default]
    Auto,
    /// Always the whole column at once.
    Columns,
    /// Always row by row (every row when some rule reads every row).
    Rows,
}

/// The SIMD fingerprints, which find a field's literals in long values in
/// place of the automaton.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum FingerprintPath {
    /// Where the literals allow them, for values of 128 bytes or more.
    #[default]
    Auto,
    /// Never.
    Never,
    /// Where the literals allow them, for values of any length.
    Always,
}

/// Where hash literals (a key and a file hash, `SHA256=…`) are searched.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum HashPath {
    /// In a hash map, looked up at each run of hex digits of a value.
    #[default]
    Auto,
    /// In the automaton, with the other literals.
    Never,
}

/// The paths a rule set's matcher takes (see [`crate::RuleSetBuilder::paths`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct MatchPaths {
    pub automaton: AutomatonPath,
    pub scan: ScanPath,
    pub fingerprints: FingerprintPath,
    pub hashes: HashPath,
}

impl MatchPaths {
    /// The value length from which fingerprints search in place of the
    /// automaton.
    pub(crate) fn fingerprint_min_len(&self) -> usize {
        match self.fingerprints {
            FingerprintPath::Always => 0,
            _ => super::fingerprint::MIN_VALUE_LEN,
        }
    }
}
