//! How many threads the CPU-heavy stages of a step use at once (CSV parsing, Parquet
//! encoding): the machine's cores unless `synqx run --threads N` (or `SYNQX_THREADS`) says
//! otherwise, so that a benchmark or a shared node can pin it.

use std::sync::{Mutex, OnceLock};

static THREADS: OnceLock<usize> = OnceLock::new();

/// Sets the thread count once, before the first step runs; later calls change nothing and
/// return false.
pub fn set(threads: usize) -> bool {
    THREADS.set(threads.max(1)).is_ok()
}

/// The threads a stage may keep busy at once.
pub fn count() -> usize {
    *THREADS.get_or_init(|| {
        std::thread::available_parallelism()
            .map(usize::from)
            .unwrap_or(1)
    })
}

/// Applies `work` to every item on at most `threads` threads (the caller's among them) and
/// returns the results in the items' order. Items are handed out one at a time, first come
/// first served, so put the costly ones first.
pub fn map<T: Send, R: Send>(
    items: Vec<T>,
    threads: usize,
    work: impl Fn(T) -> R + Sync,
) -> Vec<R> {
    let count = items.len();
    let threads = threads.clamp(1, count.max(1));
    if threads == 1 {
        return items.into_iter().map(work).collect();
    }
    let queue = Mutex::new(items.into_iter().enumerate());
    let results: Mutex<Vec<Option<R>>> = Mutex::new((0..count).map(|_| None).collect());
    let drain = || {
        loop {
            // A poisoned lock means another worker panicked; the scope re-raises it.
            let next = match queue.lock() {
                Ok(mut queue) => queue.next(),
                Err(_) => return,
            };
            let Some((index, item)) = next else { return };
            let result = work(item);
            if let Ok(mut results) = results.lock() {
                results[index] = Some(result);
            }
        }
    };
    std::thread::scope(|scope| {
        for _ in 1..threads {
            scope.spawn(drain);
        }
        drain();
    });
    results
        .into_inner()
        .unwrap_or_default()
        .into_iter()
        .flatten()
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn map_keeps_the_order_of_the_items_on_any_thread_count() {
        for threads in [1, 2, 3, 16] {
            let out = map((0..100u64).collect(), threads, |i| i * i);
            assert_eq!(out, (0..100u64).map(|i| i * i).collect::<Vec<_>>());
        }
        assert!(map(Vec::<u8>::new(), 4, |i| i).is_empty());
    }
}
