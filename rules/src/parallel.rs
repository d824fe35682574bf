//! Compilation work spread over the machine's cores: rule files parsed and
//! automata built on scoped threads, each taking the next item as it
//! finishes one (a few automata are much larger than the rest), with the
//! results in input order so that compilation stays deterministic.

use std::sync::atomic::{AtomicUsize, Ordering};

/// At most this many threads: beyond it, start-up is bound by the largest
/// single item.
const MAX_THREADS: usize = 8;

/// `f` over every item, on up to the available cores; results in order.
pub(crate) fn map<T: Sync, R: Send>(items: &[T], f: impl Fn(&T) -> R + Sync) -> Vec<R> {
    let threads = crate::workers::available()
        .min(MAX_THREADS)
        .min(items.len());
    if threads <= 1 {
        return items.iter().map(f).collect();
    }
    let next = AtomicUsize::new(0);
    let mut done: Vec<(usize, R)> = std::thread::scope(|scope| {
        let workers: Vec<_> = (0..threads)
            .map(|_| {
                scope.spawn(|| {
                    let mut out = Vec::new();
                    loop {
                        let i = next.fetch_add(1, Ordering::Relaxed);
                        let Some(item) = items.get(i) else { break };
                        out.push((i, f(item)));
                    }
                    out
                })
            })
            .collect();
        workers
            .into_iter()
            .flat_map(|w| {
                w.join()
                    .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
            })
            .collect()
    });
    done.sort_unstable_by_key(|(i, _)| *i);
    done.into_iter().map(|(_, r)| r).collect()
}

#[cfg(test)]
mod tests {
    #[test]
    fn results_come_in_input_order() {
        let items: Vec<u64> = (0..1000).collect();
        let out = super::map(&items, |n| n * 2);
        assert_eq!(out, items.iter().map(|n| n * 2).collect::<Vec<_>>());
        assert!(super::map(&[] as &[u64], |n| *n).is_empty());
    }
}
