//! Where the step's counters go: the operator's gateway ([`super::telemetry`]) when the pod
//! was given one, else (a Job of an older operator) the step's own entry of its run's
//! `status.steps`, server-side-applied under a field manager of its own
//! (`synqx-step-<STEP>`), so parallel steps never conflict. The runner writes the
//! counters and the watermark range, and nothing else: phase, attempt, Job name, times and
//! the message (the error, which the operator reads from the termination message) belong to
//! the operator's run controller. One writer per field.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use kube::api::{Patch, PatchParams};
use kube::{Api, Client};
use synqx_api::apply::StatusApply;
use synqx_api::run::{PipelineRun, PipelineRunStatus, StepReport, StepStatus};
use tokio_util::sync::CancellationToken;

use super::Attempt;
use super::error::StatusWriteError;
use crate::engine::{CounterSnapshot, Counters};

/// Longest wait for the API server to answer one status write.
const APPLY_TIMEOUT: Duration = Duration::from_secs(20);

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

/// The run's status on the API server.
pub struct KubeStatus {
    api: Api<PipelineRun>,
    run: String,
    params: PatchParams,
}

impl KubeStatus {
    pub fn new(client: Client, namespace: &str, run: &str, step: &str) -> Self {
        Self {
            api: Api::namespaced(client, namespace),
            run: run.to_string(),
            params: PatchParams::apply(&field_manager(step)).force(),
        }
    }
}

#[async_trait]
impl StatusWriter for KubeStatus {
    async fn apply(&self, entry: &StepStatus) -> Result<(), StatusWriteError> {
        let body = apply_body(entry);
        let patch = Patch::Apply(&body);
        let write = self.api.patch_status(&self.run, &self.params, &patch);
        match tokio::time::timeout(APPLY_TIMEOUT, write).await {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(e)) => Err(StatusWriteError::Api(e)),
            Err(_) => Err(StatusWriteError::Timeout(APPLY_TIMEOUT.as_secs())),
        }
    }
}

/// The field manager of a step's status entry.
pub fn field_manager(step: &str) -> String {
    format!("synqx-step-{step}")
}

/// The body of the server-side apply: a PipelineRun with only this step's entry.
pub fn apply_body(entry: &StepStatus) -> StatusApply<PipelineRunStatus> {
    StatusApply::of::<PipelineRun>(PipelineRunStatus {
        steps: vec![entry.clone()],
        ..Default::default()
    })
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

/// Whether the API server answered 404.
pub(crate) fn is_not_found(e: &kube::Error) -> bool {
    matches!(e, kube::Error::Api(s) if s.is_not_found())
}

/// An API error as one readable line, with what to do: the server's message and code (not the
/// whole Status), the permission the runner's service account lacks when it was forbidden, or
/// a pointer to the network when the server could not be reached. `permission` names the verb
/// and resource, e.g. `get on pipelineruns.synqx.io`.
pub(crate) fn explain(e: &kube::Error, permission: &str) -> String {
    match e {
        kube::Error::Api(s) if s.is_forbidden() => format!(
            "{} (HTTP {}): the pod's service account needs {permission}",
            s.message, s.code
        ),
        kube::Error::Api(s) if !s.message.is_empty() => {
            format!("{} (HTTP {})", s.message, s.code)
        }
        kube::Error::Api(s) => format!("HTTP {} {}", s.code, s.reason),
        kube::Error::HyperError(_) | kube::Error::Service(_) => format!(
            "{e}: the Kubernetes API cannot be reached from here; check the pod's network policy and the API server"
        ),
        other => other.to_string(),
    }
}
