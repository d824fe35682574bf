//! Gates: the rows a column is decoded in. A column whose every reader
//! reads it only in some rows (the rules read a field only in the rows
//! of their logsources, which the Windows profile tells apart by event
//! log channel) is decoded only in rows that meet its [`Gate`]; in the
//! others its value is checked as JSON and left in the record's text,
//! as a column outside the projection is. The Windows `Message`, read by
//! one rule of the Application log, is a third of a Sysmon event's bytes.
//!
//! ```text
//!  record ─► walker ─► gate column (Channel) ─► value's id ─► the row's seen values
//!                  └─► gated column (Message) ─► a gate the row meets? ─ yes ─► decoded
//!                                                    └─ not yet ─► skipped, its place kept
//!  record's end ─► each skipped value whose gate the row now meets ─► decoded
//! ```

use std::collections::{HashMap, HashSet};

use foldhash::fast::RandomState;

/// The rows in which a column is decoded: those whose value in one of
/// `columns` is one of `values`, ignoring ASCII case. A row holding a
/// value it cannot tell (not a string, or with non-ASCII characters) in
/// one of `columns` meets every gate.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Gate {
    columns: Vec<String>,
    values: Vec<String>,
}

impl Gate {
    /// The gate of `values` in `columns`; `None` (no gate: every row) if
    /// either is empty, a column is a pattern, or a value has a
    /// non-ASCII character, which other case foldings could match.
    pub fn new<S: AsRef<str>>(
        columns: impl IntoIterator<Item = S>,
        values: impl IntoIterator<Item = S>,
    ) -> Option<Gate> {
        let mut columns: Vec<String> = columns.into_iter().map(|c| c.as_ref().into()).collect();
        let mut values: Vec<String> = values
            .into_iter()
            .map(|v| v.as_ref().to_ascii_lowercase())
            .collect();
        columns.sort_unstable();
        columns.dedup();
        values.sort_unstable();
        values.dedup();
        let plain = !columns.is_empty()
            && !values.is_empty()
            && columns.iter().all(|c| !c.contains('*'))
            && values.iter().all(|v| v.is_ascii());
        plain.then_some(Gate { columns, values })
    }

    /// Either gate's rows: `None` if their columns differ.
    pub fn or(&self, other: &Gate) -> Option<Gate> {
        let values = self.values.iter().chain(&other.values);
        (self.columns == other.columns).then(|| Gate::new(&self.columns, values))?
    }

    /// The columns it reads.
    pub fn columns(&self) -> &[String] {
        &self.columns
    }
}

/// The gates of a projection, numbered for the decoder.
#[derive(Debug, Clone, Default)]
pub(super) struct Gates {
    /// Gated column → its gate, and the gate's number.
    gated: HashMap<Box<str>, (Gate, u32), RandomState>,
    /// Per gate: the columns it reads (a bit each) and its values' ids.
    compiled: Vec<CompiledGate>,
    /// Column a gate reads → its bit.
    source: HashMap<Box<str>, u32, RandomState>,
    /// Every gate's values, lowercased → id.
    value_id: HashMap<Box<[u8]>, u32, RandomState>,
    /// The longest of them.
    longest: usize,
    /// Per value id and column bit: the gates that value in that column
    /// meets, a bit each.
    opened: Vec<u64>,
}

#[derive(Debug, Clone)]
struct CompiledGate {
    sources: u64,
    values: Vec<u32>,
}

/// At most this many columns are read by gates, and at most this many
/// gates are told apart (a bit each); a column whose gate would be
/// another is decoded in every row.
const MAX_SOURCES: usize = 64;
const MAX_GATES: usize = 64;

impl Gates {
    /// The gates of `gated` columns; a column named twice gets either
    /// gate's rows, or every row if they read different columns.
    pub(super) fn new(gated: impl IntoIterator<Item = (String, Gate)>) -> Gates {
        let mut merged: HashMap<Box<str>, Option<Gate>, RandomState> = HashMap::default();
        for (column, gate) in gated {
            merged
                .entry(column.into())
                .and_modify(|was| *was = was.as_ref().and_then(|w| w.or(&gate)))
                .or_insert(Some(gate));
        }
        let mut gates = Gates::default();
        let sources: HashSet<String, RandomState> = merged
            .values()
            .flatten()
            .flat_map(|g| g.columns.iter().cloned())
            .collect();
        for (column, gate) in merged {
            // A column a gate reads is decoded in every row.
            let Some(gate) = gate.filter(|_| !sources.contains(&*column)) else {
                continue;
            };
            if let Some(number) = gates.number_of(&gate) {
                gates.gated.insert(column, (gate, number));
            }
        }
        let sources = gates.source.len();
        gates.opened = vec![0; gates.value_id.len() * sources];
        for (number, gate) in gates.compiled.iter().enumerate() {
            for &id in &gate.values {
                for bit in 0..sources {
                    if gate.sources & (1 << bit) != 0 {
                        gates.opened[id as usize * sources + bit] |= 1 << number;
                    }
                }
            }
        }
        gates
    }

    /// The number of `gate`, numbered anew unless an equal one was; none
    /// if it would read or be one too many.
    fn number_of(&mut self, gate: &Gate) -> Option<u32> {
        let mut sources = 0u64;
        for c in &gate.columns {
            let next = self.source.len() as u32;
            let bit = *self.source.entry(c.as_str().into()).or_insert(next);
            if bit as usize >= MAX_SOURCES {
                return None;
            }
            sources |= 1 << bit;
        }
        let mut values = Vec::with_capacity(gate.values.len());
        for v in &gate.values {
            let next = self.value_id.len() as u32;
            values.push(*self.value_id.entry(v.as_bytes().into()).or_insert(next));
            self.longest = self.longest.max(v.len());
        }
        values.sort_unstable();
        let number = match self
            .compiled
            .iter()
            .position(|g| g.sources == sources && g.values == values)
        {
            Some(n) => n,
            None if self.compiled.len() == MAX_GATES => return None,
            None => {
                self.compiled.push(CompiledGate { sources, values });
                self.compiled.len() - 1
            }
        };
        Some(number as u32)
    }

    /// The gate of column `path`, as given.
    pub(super) fn gate(&self, path: &str) -> Option<&Gate> {
        self.gated.get(path).map(|(gate, _)| gate)
    }

    /// The number of the gate of column `path`.
    pub(super) fn number(&self, path: &str) -> Option<u32> {
        self.gated.get(path).map(|&(_, number)| number)
    }

    /// The bit of column `path` if a gate reads it.
    pub(super) fn source(&self, path: &str) -> Option<u32> {
        self.source.get(path).copied()
    }

    /// What a row's `value` in a gate's column says: `None` for a value
    /// it cannot tell (it meets every gate), else the value's id if a
    /// gate has it.
    pub(super) fn value(&self, value: &[u8]) -> Option<Option<u32>> {
        if !value.is_ascii() {
            return None;
        }
        if value.len() > self.longest {
            return Some(None);
        }
        // Lowercased on the stack: a channel's name is short.
        let mut lower = [0u8; 256];
        let lower = match lower.get_mut(..value.len()) {
            Some(lower) => lower,
            None => return Some(self.value_id.get(&*value.to_ascii_lowercase()).copied()),
        };
        lower.copy_from_slice(value);
        lower.make_ascii_lowercase();
        Some(self.value_id.get(&*lower).copied())
    }

    /// The gates a row meets that holds the value `id` in the column of
    /// bit `bit`, a bit each.
    pub(super) fn opened_by(&self, bit: u32, id: u32) -> u64 {
        let at = id as usize * self.source.len() + bit as usize;
        self.opened.get(at).copied().unwrap_or(0)
    }

    /// How many columns are gated.
    pub(super) fn len(&self) -> usize {
        self.gated.len()
    }
}

impl PartialEq for Gates {
    fn eq(&self, other: &Self) -> bool {
        self.gated.len() == other.gated.len()
            && self
                .gated
                .iter()
                .all(|(c, (g, _))| other.gate(c) == Some(g))
    }
}

impl Eq for Gates {}

#[cfg(test)]
mod tests {
    use super::*;

    fn gate(columns: &[&str], values: &[&str]) -> Gate {
        Gate::new(columns.iter().copied(), values.iter().copied()).unwrap()
    }

    #[test]
    fn a_gate_is_met_by_its_values_in_its_columns_ignoring_ascii_case() {
        let gates = Gates::new([
            (
                "Message".into(),
                gate(&["Channel", "Event.System.Channel"], &["Application"]),
            ),
            (
                "CommandLine".into(),
                gate(&["Channel"], &["Security", "Sysmon"]),
            ),
        ]);
        let (message, command) = (
            gates.number("Message").unwrap(),
            gates.number("CommandLine").unwrap(),
        );
        let channel = gates.source("Channel").unwrap();
        let nested = gates.source("Event.System.Channel").unwrap();
        let id = |v: &str| gates.value(v.as_bytes()).unwrap().unwrap();
        let opens =
            |gate: u32, bit: u32, value: &str| gates.opened_by(bit, id(value)) >> gate & 1 == 1;
        assert!(opens(message, channel, "APPLICATION"));
        assert!(opens(message, nested, "application"));
        assert!(!opens(message, channel, "Security"));
        assert!(opens(command, channel, "sysmon"));
        assert!(!opens(command, nested, "sysmon"), "not its column");
        assert_eq!(gates.value(b"System"), Some(None));
        assert_eq!(gates.value("Sécurité".as_bytes()), None, "cannot tell");
        assert_eq!(gates.value(&[b'a'; 300]), Some(None));
        assert!(gates.source("Message").is_none() && gates.number("Channel").is_none());
    }

    #[test]
    fn a_column_gated_twice_gets_both_rows_or_every_row() {
        let gates = Gates::new([
            ("a".into(), gate(&["Channel"], &["x"])),
            ("a".into(), gate(&["Channel"], &["y"])),
            ("b".into(), gate(&["Channel"], &["x"])),
            ("b".into(), gate(&["Other"], &["x"])),
            // A column a gate reads is not gated itself.
            ("Other".into(), gate(&["Channel"], &["x"])),
            ("c".into(), gate(&["Other"], &["z"])),
        ]);
        assert_eq!(gates.gate("a"), Some(&gate(&["Channel"], &["x", "y"])));
        assert!(gates.gate("b").is_none() && gates.gate("Other").is_none());
        assert_eq!(gates.len(), 2);
    }

    #[test]
    fn gates_that_cannot_be_told_by_ascii_case_are_none() {
        assert!(Gate::new(["Channel"], ["Sécurité"]).is_none());
        assert!(Gate::new(["Chan*"], ["x"]).is_none());
        assert!(Gate::new(Vec::<&str>::new(), vec!["x"]).is_none());
        assert_eq!(Gate::new(["c", "c"], ["X", "x"]), Gate::new(["c"], ["x"]));
    }
}
