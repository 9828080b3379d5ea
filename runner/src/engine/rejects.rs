//! Rows rejected under `onError: skip`: counted and written to a dead-letter JSONL file.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use synqx_api::pipeline::OnError;

use super::Counters;
use crate::error::{Error, Result};

/// Where bad rows go. Under `fail` the first bad row is an error; under `skip` it is recorded
/// with its location and reason, and reading goes on.
#[derive(Clone)]
pub struct Rejects {
    policy: OnError,
    file: Option<Arc<Mutex<DeadLetter>>>,
    counters: Arc<Counters>,
}

struct DeadLetter {
    path: PathBuf,
    out: Option<std::io::BufWriter<std::fs::File>>,
}

impl Rejects {
    /// `dead_letter` is the JSONL file skipped rows are appended to (created on first use).
    pub fn new(policy: OnError, dead_letter: Option<PathBuf>, counters: Arc<Counters>) -> Self {
        let file = dead_letter.map(|path| Arc::new(Mutex::new(DeadLetter { path, out: None })));
        Self {
            policy,
            file,
            counters,
        }
    }

    /// Rejects that fail on the first bad row.
    pub fn failing() -> Self {
        Self::new(OnError::Fail, None, Arc::new(Counters::default()))
    }

    /// The counters of the step the rejects belong to.
    pub fn counters(&self) -> &Arc<Counters> {
        &self.counters
    }

    pub fn policy(&self) -> OnError {
        self.policy
    }

    /// Handles one bad row: `location` names file and line (or table and row), `reason` the
    /// column and value. Returns the error under `fail`; records the row under `skip`.
    pub fn reject(&self, location: &str, reason: &str, raw: Option<&str>) -> Result<()> {
        if self.policy == OnError::Fail {
            return Err(Error::BadRow(format!(
                "{location}: {reason} (set onError: skip to skip such rows into a dead-letter file)"
            )));
        }
        Counters::add(&self.counters.rows_rejected, 1);
        let Some(file) = &self.file else {
            return Ok(());
        };
        let mut dl = file
            .lock()
            .map_err(|_| Error::Config("dead-letter file lock poisoned".into()))?;
        if dl.out.is_none() {
            if let Some(parent) = dl.path.parent() {
                std::fs::create_dir_all(parent)
                    .map_err(|e| Error::io(format!("creating {}", parent.display()), e))?;
            }
            let f = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(&dl.path)
                .map_err(|e| {
                    Error::io(format!("opening dead-letter file {}", dl.path.display()), e)
                })?;
            dl.out = Some(std::io::BufWriter::new(f));
        }
        let line = serde_json::json!({ "location": location, "reason": reason, "row": raw });
        let path = dl.path.clone();
        if let Some(out) = dl.out.as_mut() {
            writeln!(out, "{line}")
                .and_then(|_| out.flush())
                .map_err(|e| Error::io(format!("writing {}", path.display()), e))?;
        }
        Ok(())
    }

    /// The dead-letter file, if rows were written to it.
    pub fn dead_letter_path(&self) -> Option<PathBuf> {
        let dl = self.file.as_ref()?.lock().ok()?;
        dl.out.as_ref().map(|_| dl.path.clone())
    }
}

/// The dead-letter file of a step run under a state directory.
pub fn dead_letter_file(state_dir: &Path, pipeline: &str, step: &str, run: &str) -> PathBuf {
    state_dir
        .join("rejected")
        .join(pipeline)
        .join(format!("{step}-{run}.jsonl"))
}
