//! Bad rows: under `onError: skip` counted and written to the step's rejected (dead-letter)
//! JSONL file; under `fail` the first one ends the step, and its row is written there too.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use synqx_api::pipeline::OnError;

use super::Counters;
use crate::error::{BadRow, Error, Result};

/// Where bad rows go. Under `fail` the first bad row is an error; under `skip` it is recorded
/// with its location, column, problem and data, and reading goes on.
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
    /// `dead_letter` is the JSONL file bad rows are appended to (created on first use).
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

    /// Handles one bad row. Under `fail` it is the step's error, its row written to the
    /// rejected file first (the message names the file, never the value); under `skip` it is
    /// counted and written to the file, and reading goes on.
    pub fn reject(&self, bad: BadRow) -> Result<()> {
        if self.policy == OnError::Fail {
            let bad = bad.hint("set onError: skip to skip such rows into the rejected file");
            return Err(self.keep(bad).into());
        }
        Counters::add(&self.counters.rows_rejected, 1);
        self.write(&bad)?;
        Ok(())
    }

    /// The bad row that ends the step, its data written to the rejected file (when the step
    /// has one) so that the message can leave it out and still point at it.
    pub fn keep(&self, bad: BadRow) -> BadRow {
        if bad.rejected_file().is_some() {
            return bad;
        }
        match self.write(&bad) {
            Ok(Some(path)) => bad.kept_in(&path),
            Ok(None) => bad,
            Err(e) => bad.hint(format!("the row could not be kept: {e}")),
        }
    }

    /// The error that ends the step, with the data of a bad row kept (see [`Rejects::keep`]).
    pub fn keep_error(&self, error: Error) -> Error {
        match error {
            Error::BadRow(bad) if bad.has_data() => self.keep(*bad).into(),
            other => other,
        }
    }

    /// Appends the row to the rejected file; `None` when the step has none.
    fn write(&self, bad: &BadRow) -> Result<Option<PathBuf>> {
        let Some(file) = &self.file else {
            return Ok(None);
        };
        let mut dl = file.lock().map_err(|poisoned| {
            Error::Defect(format!(
                "a writer of the rejected file {} panicked",
                poisoned.into_inner().path.display()
            ))
        })?;
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
                    Error::io(
                        format!("opening the rejected file {}", dl.path.display()),
                        e,
                    )
                })?;
            dl.out = Some(std::io::BufWriter::new(f));
        }
        let line = bad.record();
        let path = dl.path.clone();
        if let Some(out) = dl.out.as_mut() {
            writeln!(out, "{line}")
                .and_then(|_| out.flush())
                .map_err(|e| Error::io(format!("writing {}", path.display()), e))?;
        }
        Ok(Some(path))
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
