//! A fixed-size set of row indices of one batch, as a bitmap.

use smallvec::{smallvec, SmallVec};

/// Words held inline: a batch of up to 128 rows (what a live input at a
/// modest rate hands over) evaluates without allocating its row sets.
const INLINE_WORDS: usize = 2;

/// Rows of a batch, one bit each.
#[derive(Debug, PartialEq, Eq)]
pub struct RowSet {
    words: SmallVec<[u64; INLINE_WORDS]>,
    len: usize,
}

impl Clone for RowSet {
    /// Copies the words at once (a derived clone pushes them one by one).
    fn clone(&self) -> RowSet {
        RowSet {
            words: SmallVec::from_slice(&self.words),
            len: self.len,
        }
    }
}

impl RowSet {
    /// No rows of a batch of `len` rows.
    pub fn empty(len: usize) -> RowSet {
        RowSet {
            words: smallvec![0; len.div_ceil(64)],
            len,
        }
    }

    /// All rows of a batch of `len` rows.
    pub fn full(len: usize) -> RowSet {
        let mut s = RowSet {
            words: smallvec![u64::MAX; len.div_ceil(64)],
            len,
        };
        s.trim();
        s
    }

    fn trim(&mut self) {
        let rem = self.len % 64;
        if rem != 0 {
            if let Some(last) = self.words.last_mut() {
                *last &= (1u64 << rem) - 1;
            }
        }
    }

    /// Number of rows of the batch (not of the set).
    pub fn capacity(&self) -> usize {
        self.len
    }

    /// Adds a row.
    #[inline]
    pub fn insert(&mut self, row: usize) {
        if row < self.len {
            self.words[row / 64] |= 1 << (row % 64);
        }
    }

    /// True if the row is in the set.
    #[inline]
    pub fn contains(&self, row: usize) -> bool {
        row < self.len && self.words[row / 64] & (1 << (row % 64)) != 0
    }

    /// True if no row is in the set.
    pub fn is_empty(&self) -> bool {
        self.words.iter().all(|w| *w == 0)
    }

    /// Number of rows in the set.
    pub fn count(&self) -> usize {
        self.words.iter().map(|w| w.count_ones() as usize).sum()
    }

    /// Keeps only rows also in `other`.
    pub fn and_with(&mut self, other: &RowSet) {
        for (a, b) in self.words.iter_mut().zip(&other.words) {
            *a &= *b;
        }
    }

    /// Adds the rows of `other`.
    pub fn or_with(&mut self, other: &RowSet) {
        for (a, b) in self.words.iter_mut().zip(&other.words) {
            *a |= *b;
        }
    }

    /// Removes the rows of `other`.
    pub fn and_not_with(&mut self, other: &RowSet) {
        for (a, b) in self.words.iter_mut().zip(&other.words) {
            *a &= !*b;
        }
    }

    /// Removes every row.
    pub fn clear(&mut self) {
        self.words.iter_mut().for_each(|w| *w = 0);
    }

    /// The rows in ascending order.
    pub fn iter(&self) -> impl Iterator<Item = usize> + '_ {
        self.words.iter().enumerate().flat_map(|(i, &word)| {
            let mut w = word;
            std::iter::from_fn(move || {
                if w == 0 {
                    return None;
                }
                let bit = w.trailing_zeros() as usize;
                w &= w - 1;
                Some(i * 64 + bit)
            })
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn set_operations() {
        let mut a = RowSet::empty(130);
        a.insert(0);
        a.insert(64);
        a.insert(129);
        let full = RowSet::full(130);
        assert_eq!(full.count(), 130);
        let mut b = full.clone();
        b.and_not_with(&a);
        assert_eq!(b.count(), 127);
        assert!(!b.contains(64));
        b.or_with(&a);
        assert_eq!(b, full);
        assert_eq!(a.iter().collect::<Vec<_>>(), vec![0, 64, 129]);
        let mut c = a.clone();
        c.and_with(&RowSet::empty(130));
        assert!(c.is_empty());
    }
}
