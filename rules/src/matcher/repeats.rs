//! Values repeated down a column (a channel, an image path, a user name)
//! searched once per search of the column (so once per batch): the
//! needles found in a value's first occurrence are credited to every later
//! one, without searching again.
//!
//! A column whose values are mostly distinct (command lines) gains
//! nothing from it and pays a hash per value, so once [`JUDGED_AFTER`]
//! distinct values are held and they are more than half of the values
//! seen, the rest of the column is searched without looking up repeats.

use std::collections::HashMap;
use std::ops::Range;

use foldhash::fast::RandomState;

use crate::compile::NeedleId;

/// Distinct values held before a column is judged.
const JUDGED_AFTER: usize = 64;

/// The values of one column searched so far in a batch, and their needles.
#[derive(Debug, Default)]
pub(super) struct Repeats<'a> {
    /// Each distinct value, and its needles in `found`.
    seen: HashMap<&'a [u8], Range<usize>, RandomState>,
    found: Vec<NeedleId>,
    /// Values looked up so far.
    values: usize,
    /// Repeats are too rare to look up.
    off: bool,
}

impl<'a> Repeats<'a> {
    /// The needles in `value`: those of its earlier occurrence, or those
    /// `search` pushes now (a needle may come more than once).
    pub(super) fn needles(
        &mut self,
        value: &'a [u8],
        search: impl FnOnce(&mut Vec<NeedleId>),
    ) -> &[NeedleId] {
        if self.off {
            self.found.clear();
            search(&mut self.found);
            return &self.found;
        }
        self.values += 1;
        if let Some(range) = self.seen.get(value) {
            return &self.found[range.clone()];
        }
        let start = self.found.len();
        search(&mut self.found);
        let range = start..self.found.len();
        self.seen.insert(value, range.clone());
        if self.seen.len() >= JUDGED_AFTER && self.seen.len() * 2 > self.values {
            self.off = true;
            self.seen = HashMap::default();
        }
        &self.found[range]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_repeated_value_is_searched_once_and_gets_the_same_needles() {
        let needles_of = |value: &[u8]| {
            value
                .iter()
                .map(|&b| NeedleId::from(b - b'a'))
                .collect::<Vec<_>>()
        };
        let mut repeats = Repeats::default();
        let mut searches = 0;
        for value in ["ab", "c", "ab", "", "c", "ab"] {
            let got = repeats
                .needles(value.as_bytes(), |out| {
                    searches += 1;
                    out.extend(needles_of(value.as_bytes()));
                })
                .to_vec();
            assert_eq!(got, needles_of(value.as_bytes()), "{value}");
        }
        // The three distinct values, each once.
        assert_eq!(searches, 3);
        assert_eq!(repeats.seen.len(), 3);
    }

    #[test]
    fn a_column_of_distinct_values_stops_looking_repeats_up() {
        let values: Vec<String> = (0..200).map(|i| format!("value {i}")).collect();
        let mut repeats = Repeats::default();
        let mut searched = 0;
        for value in &values {
            let needles = repeats
                .needles(value.as_bytes(), |out| {
                    searched += 1;
                    out.push(value.len());
                })
                .to_vec();
            assert_eq!(needles, [value.len()]);
        }
        assert_eq!(searched, 200);
        assert!(repeats.off && repeats.seen.is_empty());
        // Each value three times: kept on.
        let mut repeats = Repeats::default();
        for value in values.iter().take(100).flat_map(|v| [v, v, v]) {
            repeats.needles(value.as_bytes(), |out| out.push(1));
        }
        assert!(!repeats.off);
        assert_eq!(repeats.seen.len(), 100);
    }
}
