//! Evaluation workers: a pool of threads evaluating batches with a
//! [`RuleSet`], each thread with its own [`Scratch`]. A batch is handed in
//! with [`Workers::submit`], which returns at once; its [`Pending`] result
//! is waited for when the caller needs it. A caller that waits on its
//! pending results in the order it submitted them keeps its batches in
//! order while up to N of them are evaluated at the same time.
//!
//! ```text
//!  submit(set, batch) ──► jobs ──► worker 1 … N: evaluate with its scratch ──► Pending::wait
//! ```
//!
//! Each job carries the rule set to use, so a caller that swaps sets (a
//! reload) submits the batches after the swap with the new one; a worker
//! starts a fresh scratch when the set changes (a scratch caches what it
//! worked out for one set).

use std::sync::atomic::AtomicBool;
use std::sync::{mpsc, Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use arrow_array::RecordBatch;

use crate::compile::RuleSet;
use crate::matcher::{RuleMatch, RuleStats, Scratch};

/// The outcome of evaluating one batch.
#[derive(Debug)]
pub struct Evaluation {
    /// Matches ordered by row, then rule.
    pub matches: Vec<RuleMatch>,
    /// The evaluation gave up (the cancel flag was set): `matches` are
    /// incomplete.
    pub cancelled: bool,
    /// Per-rule work, for rules that did any (rule index, stats).
    pub rule_stats: Vec<(usize, RuleStats)>,
    /// Time the worker spent evaluating.
    pub elapsed: Duration,
}

/// A batch being evaluated.
#[derive(Debug)]
pub struct Pending(mpsc::Receiver<Evaluation>);

/// A worker thread ended without an evaluation (it panicked).
#[derive(Debug, thiserror::Error)]
#[error("an evaluation worker ended without a result (it panicked; see the log)")]
pub struct WorkerGone;

impl Pending {
    /// Blocks until the batch is evaluated.
    ///
    /// # Errors
    /// The worker evaluating it panicked.
    pub fn wait(self) -> Result<Evaluation, WorkerGone> {
        self.0.recv().map_err(|_| WorkerGone)
    }
}

struct Job {
    set: Arc<RuleSet>,
    batch: RecordBatch,
    done: mpsc::SyncSender<Evaluation>,
}

/// The pool. Dropping it lets the workers finish what was submitted and
/// joins them.
#[derive(Debug)]
pub struct Workers {
    jobs: Option<mpsc::Sender<Job>>,
    threads: Vec<JoinHandle<()>>,
}

impl Workers {
    /// Starts `count` workers (at least one). With `cancel`, an evaluation
    /// gives up between two rules once the flag is set.
    ///
    /// # Panics
    /// The operating system refuses a thread.
    pub fn new(count: usize, cancel: Option<Arc<AtomicBool>>) -> Workers {
        let (jobs, queue) = mpsc::channel::<Job>();
        let queue = Arc::new(Mutex::new(queue));
        let threads = (0..count.max(1))
            .map(|i| {
                let queue = queue.clone();
                let cancel = cancel.clone();
                std::thread::Builder::new()
                    .name(format!("vagt-eval-{i}"))
                    .spawn(move || work(&queue, cancel))
                    .expect("an evaluation worker thread")
            })
            .collect();
        Workers {
            jobs: Some(jobs),
            threads,
        }
    }

    /// How many workers run.
    pub fn count(&self) -> usize {
        self.threads.len()
    }

    /// Hands `batch` to the next free worker, to be evaluated with `set`.
    pub fn submit(&self, set: Arc<RuleSet>, batch: RecordBatch) -> Pending {
        let (done, result) = mpsc::sync_channel(1);
        if let Some(jobs) = &self.jobs {
            // The workers only end once `jobs` is dropped (or by a panic,
            // which `Pending::wait` reports).
            let _ = jobs.send(Job { set, batch, done });
        }
        Pending(result)
    }
}

impl Drop for Workers {
    fn drop(&mut self) {
        self.jobs = None;
        for thread in self.threads.drain(..) {
            // A worker's panic was reported to the batch it was on.
            let _ = thread.join();
        }
    }
}

/// One worker: takes the next job until the pool is dropped.
fn work(queue: &Mutex<mpsc::Receiver<Job>>, cancel: Option<Arc<AtomicBool>>) {
    let mut current: Option<(Arc<RuleSet>, Scratch)> = None;
    loop {
        // The lock is held only to take a job, never while evaluating.
        let job = match queue.lock() {
            Ok(queue) => queue.recv(),
            Err(_) => return,
        };
        let Ok(Job { set, batch, done }) = job else {
            return;
        };
        let scratch = match &mut current {
            Some((running, scratch)) if Arc::ptr_eq(running, &set) => scratch,
            _ => {
                let mut scratch = set.scratch();
                if let Some(flag) = &cancel {
                    scratch.cancel_when(flag.clone());
                }
                &mut current.insert((set.clone(), scratch)).1
            }
        };
        let started = Instant::now();
        let matches = set.evaluate(&batch, scratch);
        let elapsed = started.elapsed();
        let mut rule_stats = Vec::new();
        scratch.drain_rule_stats(|rule, stats| rule_stats.push((rule, stats)));
        // The caller may have stopped waiting: nothing to do about it.
        let _ = done.send(Evaluation {
            matches,
            cancelled: scratch.was_cancelled(),
            rule_stats,
            elapsed,
        });
    }
}

/// The machine's cores, the default number of workers.
pub fn available() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}
