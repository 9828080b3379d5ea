//! Counters of a running step, shared between its tasks and the progress display.

use std::sync::atomic::{AtomicU64, Ordering};

/// Rows, bytes and batches that have moved through a step so far.
#[derive(Debug, Default)]
pub struct Counters {
    pub rows_read: AtomicU64,
    pub bytes_read: AtomicU64,
    pub rows_written: AtomicU64,
    pub bytes_written: AtomicU64,
    pub batches: AtomicU64,
    pub rows_rejected: AtomicU64,
    /// What a connector decided on its own and the user should see (the pagination style a
    /// REST source detected): logged once, and the step's message when it succeeds.
    notes: std::sync::Mutex<Vec<String>>,
}

/// A copy of the counters at one moment.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CounterSnapshot {
    pub rows_read: u64,
    pub bytes_read: u64,
    pub rows_written: u64,
    pub bytes_written: u64,
    pub batches: u64,
    pub rows_rejected: u64,
}

impl Counters {
    pub fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }

    /// Zeroes the counts for a step that runs again from the start (its notes stay).
    pub fn restart(&self) {
        for c in [
            &self.rows_read,
            &self.bytes_read,
            &self.rows_written,
            &self.bytes_written,
            &self.batches,
            &self.rows_rejected,
        ] {
            c.store(0, Ordering::Relaxed);
        }
    }

    /// Records a note (once, however often it is said) and logs it.
    pub fn note(&self, text: impl Into<String>) {
        let text = text.into();
        let Ok(mut notes) = self.notes.lock() else {
            return;
        };
        if !notes.contains(&text) {
            tracing::info!("{text}");
            notes.push(text);
        }
    }

    /// The notes, joined into one message.
    pub fn notes(&self) -> Option<String> {
        let notes = self.notes.lock().ok()?;
        (!notes.is_empty()).then(|| notes.join("; "))
    }

    pub fn snapshot(&self) -> CounterSnapshot {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        CounterSnapshot {
            rows_read: get(&self.rows_read),
            bytes_read: get(&self.bytes_read),
            rows_written: get(&self.rows_written),
            bytes_written: get(&self.bytes_written),
            batches: get(&self.batches),
            rows_rejected: get(&self.rows_rejected),
        }
    }
}
