//! Ordering a finite history (files, folders, `.gz`) by event time before
//! its observations reach the windows, so that the alerts of a run over
//! files do not depend on the order of the files or of the records in
//! them.
//!
//! ```text
//!  push ──► buffer (sorted when full) ──► runs on disk (JSON lines, each sorted)
//!                 │ within memory_bytes          │ at most spill_bytes; 16 runs of a size are
//!                 ▼                              ▼ merged into one
//!  drain ◄──── k-way merge of the buffer and the runs, in event-time order
//! ```
//!
//! Memory is bounded by `memory_bytes` (what is buffered, as weighed by the
//! caller) plus one item per run while merging. Beyond `spill_bytes` on
//! disk, an item is refused and the caller reports it: never dropped
//! silently.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::fs::File;
use std::io::{BufRead, BufReader, BufWriter, Write};
use std::path::{Path, PathBuf};

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use super::spec::Millis;

/// The order of a history: event time, then the caller's tie-breakers
/// (for the engine: the event's hash, rule and step, input, offset).
pub type HistoryOrder = (Millis, u64, u64, u64, u64);

/// Runs of one level merged into one run of the next level once there are
/// this many: every item is rewritten once per level (logarithmic in the
/// history), and at most this many runs per level are open at the end.
const MERGE_FAN: usize = 16;

/// Why the history cannot be ordered.
#[derive(Debug, thiserror::Error)]
pub enum HistoryError {
    /// The spill folder cannot be written or read.
    #[error("ordering the history: spill file in {dir}: {source}")]
    Spill {
        /// Folder.
        dir: PathBuf,
        /// Cause.
        #[source]
        source: std::io::Error,
    },
    /// A spill file is not what was written.
    #[error("ordering the history: spill file {path} is damaged: {message}")]
    Damaged {
        /// File.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
}

/// An item refused because the history is larger than the memory and
/// spill bounds together.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TooLarge {
    /// The bound on disk that was reached.
    pub spill_bytes: u64,
}

/// Limits of the ordering.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HistoryLimits {
    /// Bytes held in memory before a sorted run is written to disk.
    pub memory_bytes: usize,
    /// Bytes written to disk at most.
    pub spill_bytes: u64,
    /// Where spill files go (a fresh folder inside it, removed at the end).
    pub spill_dir: PathBuf,
}

/// What the ordering did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct HistoryStats {
    /// Items ordered.
    pub items: u64,
    /// Sorted runs written to disk.
    pub runs: u64,
    /// Bytes written to disk (merges included).
    pub spilled_bytes: u64,
    /// Items refused: beyond memory and spill bounds.
    pub refused: u64,
}

#[derive(Debug)]
struct Run {
    path: PathBuf,
    bytes: u64,
    /// 0 for a run of the buffer, L + 1 for a merge of runs of level L.
    level: u32,
}

/// Collects items and gives them back in order.
#[derive(Debug)]
pub struct HistorySorter<T> {
    limits: HistoryLimits,
    buffer: Vec<(HistoryOrder, T)>,
    buffered: usize,
    dir: Option<tempfile::TempDir>,
    runs: Vec<Run>,
    on_disk: u64,
    stats: HistoryStats,
}

impl<T: Serialize + DeserializeOwned> HistorySorter<T> {
    /// An empty sorter.
    pub fn new(limits: HistoryLimits) -> Self {
        HistorySorter {
            limits,
            buffer: Vec::new(),
            buffered: 0,
            dir: None,
            runs: Vec::new(),
            on_disk: 0,
            stats: HistoryStats::default(),
        }
    }

    /// What it did so far.
    pub fn stats(&self) -> HistoryStats {
        self.stats
    }

    /// Items held.
    pub fn is_empty(&self) -> bool {
        self.buffer.is_empty() && self.runs.is_empty()
    }

    /// Adds an item weighing about `bytes` in memory. Beyond the memory
    /// bound the buffer is sorted and written to disk; beyond the spill
    /// bound the item is refused.
    ///
    /// # Errors
    /// The spill folder cannot be written (an error for the whole run).
    pub fn push(
        &mut self,
        order: HistoryOrder,
        item: T,
        bytes: usize,
    ) -> Result<Result<(), TooLarge>, HistoryError> {
        if self.buffered + bytes > self.limits.memory_bytes && !self.buffer.is_empty() {
            // The run about to be written must fit (its size on disk is
            // about what it weighs in memory).
            if self.on_disk + self.buffered as u64 > self.limits.spill_bytes {
                self.stats.refused += 1;
                return Ok(Err(TooLarge {
                    spill_bytes: self.limits.spill_bytes,
                }));
            }
            self.spill()?;
        }
        self.buffered += bytes;
        self.buffer.push((order, item));
        self.stats.items += 1;
        Ok(Ok(()))
    }

    fn dir(&mut self) -> Result<&Path, HistoryError> {
        if self.dir.is_none() {
            let dir = tempfile::Builder::new()
                .prefix("vagt-history-")
                .tempdir_in(&self.limits.spill_dir)
                .map_err(|source| self.spill_error(source))?;
            self.dir = Some(dir);
        }
        Ok(self.dir.as_ref().expect("just made").path())
    }

    fn spill_error(&self, source: std::io::Error) -> HistoryError {
        HistoryError::Spill {
            dir: self.limits.spill_dir.clone(),
            source,
        }
    }

    /// Writes the buffer as one sorted run.
    fn spill(&mut self) -> Result<(), HistoryError> {
        let mut items = std::mem::take(&mut self.buffer);
        self.buffered = 0;
        items.sort_by_key(|a| a.0);
        let run = self.write_run(items.into_iter().map(Ok), 0)?;
        self.runs.push(run);
        self.stats.runs += 1;
        // Merge full levels, while the merged copy fits beside its inputs.
        while let Some(level) = (0..=self.runs.iter().map(|r| r.level).max().unwrap_or(0))
            .find(|l| self.runs.iter().filter(|r| r.level == *l).count() >= MERGE_FAN)
        {
            let (merging, rest): (Vec<Run>, Vec<Run>) = std::mem::take(&mut self.runs)
                .into_iter()
                .partition(|r| r.level == level);
            self.runs = rest;
            let bytes: u64 = merging.iter().map(|r| r.bytes).sum();
            if self.on_disk + bytes > self.limits.spill_bytes {
                self.runs.extend(merging);
                break;
            }
            let merged = Merge::new(Vec::new(), merging)?;
            let run = self.write_run(merged, level + 1)?;
            // The runs merged are gone once read.
            self.on_disk -= bytes;
            self.runs.push(run);
        }
        Ok(())
    }

    fn write_run(
        &mut self,
        items: impl Iterator<Item = Result<(HistoryOrder, T), HistoryError>>,
        level: u32,
    ) -> Result<Run, HistoryError> {
        let name = format!("run-{}-{}.jsonl", self.stats.runs, self.runs.len());
        let path = self.dir()?.join(name);
        let file = File::create(&path).map_err(|source| self.spill_error(source))?;
        let mut out = BufWriter::new(file);
        let mut bytes = 0u64;
        for item in items {
            let line = serde_json::to_vec(&item?).map_err(|e| HistoryError::Damaged {
                path: path.clone(),
                message: e.to_string(),
            })?;
            out.write_all(&line)
                .and_then(|()| out.write_all(b"\n"))
                .map_err(|source| self.spill_error(source))?;
            bytes += line.len() as u64 + 1;
        }
        out.flush().map_err(|source| self.spill_error(source))?;
        self.on_disk += bytes;
        self.stats.spilled_bytes += bytes;
        Ok(Run { path, bytes, level })
    }

    /// Everything pushed, in order. The spill folder goes with the
    /// iterator.
    ///
    /// # Errors
    /// A spill file cannot be read back.
    pub fn drain(mut self) -> Result<HistoryDrain<T>, HistoryError> {
        let mut buffer = std::mem::take(&mut self.buffer);
        buffer.sort_by_key(|a| a.0);
        let runs = std::mem::take(&mut self.runs);
        Ok(HistoryDrain {
            merge: Merge::new(buffer, runs)?,
            _dir: self.dir.take(),
        })
    }
}

/// The ordered items of a [`HistorySorter`].
#[derive(Debug)]
pub struct HistoryDrain<T> {
    merge: Merge<T>,
    _dir: Option<tempfile::TempDir>,
}

impl<T: DeserializeOwned> Iterator for HistoryDrain<T> {
    type Item = Result<(HistoryOrder, T), HistoryError>;

    fn next(&mut self) -> Option<Self::Item> {
        self.merge.next()
    }
}

/// A k-way merge of a sorted buffer and sorted runs on disk.
#[derive(Debug)]
struct Merge<T> {
    buffer: std::iter::Peekable<std::vec::IntoIter<(HistoryOrder, T)>>,
    readers: Vec<(BufReader<File>, PathBuf)>,
    heads: Vec<Option<(HistoryOrder, T)>>,
    heap: BinaryHeap<Reverse<(HistoryOrder, usize)>>,
}

impl<T: DeserializeOwned> Merge<T> {
    fn new(buffer: Vec<(HistoryOrder, T)>, runs: Vec<Run>) -> Result<Self, HistoryError> {
        let mut merge = Merge {
            buffer: buffer.into_iter().peekable(),
            readers: Vec::new(),
            heads: Vec::new(),
            heap: BinaryHeap::new(),
        };
        for run in runs {
            let file = File::open(&run.path).map_err(|source| HistoryError::Spill {
                dir: run.path.clone(),
                source,
            })?;
            // Open, the run needs no name on disk any more.
            let _ = std::fs::remove_file(&run.path);
            merge.readers.push((BufReader::new(file), run.path));
            merge.heads.push(None);
            let i = merge.readers.len() - 1;
            merge.advance(i)?;
        }
        Ok(merge)
    }

    /// Reads run `i`'s next item into its head.
    fn advance(&mut self, i: usize) -> Result<(), HistoryError> {
        let (reader, path) = &mut self.readers[i];
        let mut line = String::new();
        let read = reader
            .read_line(&mut line)
            .map_err(|source| HistoryError::Spill {
                dir: path.clone(),
                source,
            })?;
        if read == 0 {
            self.heads[i] = None;
            return Ok(());
        }
        let item: (HistoryOrder, T) =
            serde_json::from_str(&line).map_err(|e| HistoryError::Damaged {
                path: path.clone(),
                message: e.to_string(),
            })?;
        self.heap.push(Reverse((item.0, i)));
        self.heads[i] = Some(item);
        Ok(())
    }
}

impl<T: DeserializeOwned> Iterator for Merge<T> {
    type Item = Result<(HistoryOrder, T), HistoryError>;

    fn next(&mut self) -> Option<Self::Item> {
        let from_run = self.heap.peek().map(|Reverse(top)| *top);
        let from_buffer = self.buffer.peek().map(|(order, _)| *order);
        match (from_buffer, from_run) {
            (Some(b), Some((r, _))) if b <= r => self.buffer.next().map(Ok),
            (Some(_), None) => self.buffer.next().map(Ok),
            (_, Some((_, i))) => {
                self.heap.pop();
                let item = self.heads[i].take().expect("a head per heap entry");
                match self.advance(i) {
                    Ok(()) => Some(Ok(item)),
                    Err(e) => Some(Err(e)),
                }
            }
            (None, None) => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits(dir: &Path, memory_bytes: usize, spill_bytes: u64) -> HistoryLimits {
        HistoryLimits {
            memory_bytes,
            spill_bytes,
            spill_dir: dir.to_path_buf(),
        }
    }

    fn shuffled(n: u64) -> Vec<u64> {
        // A fixed permutation: multiplication by a unit modulo a prime.
        let p = 10_007;
        assert!(n <= p);
        (0..p).map(|i| (i * 7_919) % p).filter(|v| *v < n).collect()
    }

    #[test]
    fn small_histories_are_ordered_in_memory() {
        let dir = tempfile::tempdir().unwrap();
        let mut sorter = HistorySorter::new(limits(dir.path(), 1 << 20, 1 << 20));
        for v in shuffled(1_000) {
            sorter.push((v as i64, 0, 0, 0, v), v, 16).unwrap().unwrap();
        }
        let out: Vec<u64> = sorter.drain().unwrap().map(|r| r.unwrap().1).collect();
        assert!(out == (0..1_000).collect::<Vec<_>>(), "not in order");
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
    }

    #[test]
    fn a_history_beyond_memory_is_ordered_on_disk_and_the_disk_is_cleaned() {
        let dir = tempfile::tempdir().unwrap();
        // 100 items in memory at a time: 100 runs, merged 16 at a time.
        let mut sorter = HistorySorter::new(limits(dir.path(), 1_600, 1 << 30));
        for v in shuffled(10_000) {
            sorter.push((v as i64, 0, 0, 0, v), v, 16).unwrap().unwrap();
        }
        assert!(sorter.stats().runs >= 64, "{:?}", sorter.stats());
        // Each item was written once as a run and at most once per level.
        assert!(
            sorter.stats().spilled_bytes < 3 * 10_000 * 40,
            "{:?}",
            sorter.stats()
        );
        let out: Vec<u64> = sorter.drain().unwrap().map(|r| r.unwrap().1).collect();
        assert!(out == (0..10_000).collect::<Vec<_>>(), "not in order");
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
    }

    #[test]
    fn beyond_the_spill_bound_items_are_refused_and_counted() {
        let dir = tempfile::tempdir().unwrap();
        let mut sorter = HistorySorter::new(limits(dir.path(), 160, 100));
        let mut refused = 0;
        for v in 0..100u64 {
            if sorter.push((v as i64, 0, 0, 0, v), v, 16).unwrap().is_err() {
                refused += 1;
            }
        }
        assert!(refused > 0);
        assert_eq!(sorter.stats().refused, refused);
        let kept = sorter.drain().unwrap().count() as u64;
        assert_eq!(kept + refused, 100);
    }
}
