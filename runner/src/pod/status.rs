//! Where the step's counters go: the operator's gateway ([`super::telemetry`]) when the pod
//! was given one, else nowhere but the termination message. The runner never writes the
//! run's status: the operator does, the live counters from what the gateway received and
//! the final ones from the termination message. The entries it sends hold the counters and
//! the watermark range and nothing else: phase, attempt, Job name, times and the message
//! (the error, which the operator reads from the termination message) are the run
//! controller's.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use synqx_api::run::{StepReport, StepStatus};
use tokio_util::sync::CancellationToken;

use super::Attempt;
use super::error::StatusWriteError;
use crate::engine::{CounterSnapshot, Counters};

/// Where the step's status entry goes.
#[async_trait]
pub trait StatusWriter: Send + Sync {
    /// Applies the entry; the error says why it was not written.
    async fn apply(&self, entry: &StepStatus) -> Result<(), StatusWriteError>;

    /// The last write: the report's counters and watermark range.
    async fn finish(&self, report: &StepReport) -> Result<(), StatusWriteError> {
        self.apply(&final_entry(report)).await
    }

    /// Whether lines wait to be sent, so a write is due even with counters unchanged.
    fn has_lines(&self) -> bool {
        false
    }

    /// Shortest time between two progress writes.
    fn every(&self) -> Duration {
        super::PROGRESS_EVERY
    }
}

/// Counters that go nowhere but the termination message: a pod with neither a gateway nor
/// Kubernetes credentials.
pub struct NoStatus;

#[async_trait]
impl StatusWriter for NoStatus {
    async fn apply(&self, _: &StepStatus) -> Result<(), StatusWriteError> {
        Ok(())
    }

    fn every(&self) -> Duration {
        Duration::from_secs(3600)
    }
}

/// The entry written while the step runs: counters only.
pub fn progress_entry(step: &str, counters: CounterSnapshot) -> StepStatus {
    StepStatus {
        name: step.to_string(),
        rows_read: Some(counters.rows_read),
        rows_written: Some(counters.rows_written),
        rows_rejected: Some(counters.rows_rejected),
        bytes_read: Some(counters.bytes_read),
        bytes_written: Some(counters.bytes_written),
        ..Default::default()
    }
}

/// The entry written at the end: the final counters and the watermark range when known.
pub fn final_entry(report: &StepReport) -> StepStatus {
    report.counters_entry()
}

/// Writes the counters every `every` while they change, until `stop` fires. A failed write is
/// logged and tried again at the next tick; it never fails the step. A write in flight when
/// `stop` fires completes first, so it cannot land after the final one.
pub(super) async fn report_progress(
    status: Arc<dyn StatusWriter>,
    target: Attempt,
    counters: Arc<Counters>,
    every: Duration,
    stop: CancellationToken,
) {
    let mut written: Option<CounterSnapshot> = None;
    // Only the first failure of a streak is logged, and the recovery, not every tick.
    let mut failing = false;
    loop {
        tokio::select! {
            () = stop.cancelled() => return,
            () = tokio::time::sleep(every) => {}
        }
        let now = counters.snapshot();
        if written == Some(now) && !status.has_lines() {
            continue;
        }
        match status.apply(&progress_entry(&target.step, now)).await {
            Ok(()) => {
                written = Some(now);
                if std::mem::take(&mut failing) {
                    tracing::info!("synqx step: {target}: progress reaches the operator again");
                }
            }
            Err(e) if !failing => {
                failing = true;
                tracing::warn!(
                    "synqx step: {target}: could not report progress: {e} (the step goes on; its termination message tells the final numbers)"
                );
            }
            Err(_) => {}
        }
    }
}
