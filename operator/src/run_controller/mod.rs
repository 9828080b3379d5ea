//! The PipelineRun controller. One pass reads in order:
//! - observe ([`observe`]): the run's Pipeline, its pinned revision, its Jobs and their
//!   reports, the run it resumes from;
//! - decide (pure): the scheduler of `synqx_api::scheduler` says which attempts start, stop
//!   or wait, and [`status`] builds the status that follows;
//! - act ([`act`]): commit watermarks of steps that succeeded, delete and create Jobs;
//! - report ([`report`]): apply the status, an Event per transition, metrics.

mod act;
mod observe;
mod report;
mod status;
#[cfg(test)]
mod tests;

use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use kube::ResourceExt;
use kube::runtime::controller::Action;
use synqx_api::PipelineRun;
use synqx_api::scheduler::{Decision, RunFacts, RunPolicy};

use crate::context::Operator;
use crate::error::{Error, Result};
use crate::job_slots::RETRY_HELD_BACK;
use observe::{Observation, Observed};
use report::Reporter;
use status::{RunInputs, ended_status, run_status, waiting_status};

const CONTROLLER: &str = "pipelinerun";
/// How often a running run is looked at even without a Job event.
const RUNNING_RESYNC: Duration = Duration::from_secs(30);
/// How often a run waiting for its Pipeline looks again.
const WAITING_RESYNC: Duration = Duration::from_secs(5);

pub async fn reconcile(run: Arc<PipelineRun>, ctx: Arc<Operator>) -> Result<Action> {
    ctx.reconciled(CONTROLLER, reconcile_inner(&run, &ctx))
        .await
}

pub fn error_policy(run: Arc<PipelineRun>, error: &Error, ctx: Arc<Operator>) -> Action {
    ctx.retry_after(CONTROLLER, &run.name_any(), error, Duration::from_secs(3))
}

async fn reconcile_inner(run: &PipelineRun, ctx: &Operator) -> Result<Action> {
    let previous = run.status.clone().unwrap_or_default();
    if previous.phase.is_some_and(|p| p.is_finished()) {
        return Ok(Action::await_change());
    }
    let reporter = Reporter { ctx, run };
    let observation = match observe::observe(run, ctx).await? {
        Observed::Ends {
            phase,
            reason,
            message,
        } => {
            let status = ended_status(&previous, phase, reason, &message, Utc::now());
            reporter.ends(status, reason, &message).await?;
            return Ok(Action::await_change());
        }
        Observed::Waits { message } => {
            let status = waiting_status(&previous, &message, Utc::now());
            reporter.waits(status, &message).await?;
            return Ok(Action::requeue(WAITING_RESYNC));
        }
        Observed::Ready(observation) => observation,
    };

    let namespace = run.namespace().unwrap_or_default();
    let name = run.name_any();
    let cancel = run.spec.cancel == Some(true);
    let mut decision = decide(&observation, cancel, Utc::now(), usize::MAX);
    let wanted = decision.start.len();
    decision
        .start
        .truncate(ctx.slots.room(&namespace, &name, wanted));
    let held_back = decision.start.len() < wanted;

    act::commit_watermarks(ctx, run, &observation, &decision).await?;
    let created = act::stop_and_start(ctx, run, &observation, &decision).await?;
    ctx.slots
        .record(&namespace, &name, wanted, decision.start.len());

    let status = run_status(&RunInputs {
        previous: &previous,
        plan: &observation.plan,
        decision: &decision,
        jobs: &observation.jobs,
        created: &created,
        revision: &observation.revision,
        now: Utc::now(),
    });
    reporter.progress(status, &observation.jobs).await?;
    if decision.phase.is_finished() {
        return Ok(Action::await_change());
    }
    let wake = decision.wake_in.map_or(RUNNING_RESYNC, |w| {
        w.min(RUNNING_RESYNC) + Duration::from_millis(100)
    });
    // Held back by --max-concurrent-jobs: ask again soon, since a slot kept for this run's
    // namespace is not taken by another.
    Ok(Action::requeue(if held_back {
        wake.min(RETRY_HELD_BACK)
    } else {
        wake
    }))
}

/// What happens next: the scheduler's decision over the attempts the Jobs describe, the
/// starts cut to `room`, what `--max-concurrent-jobs` leaves this run.
fn decide(
    observation: &Observation,
    cancel: bool,
    now: chrono::DateTime<Utc>,
    room: usize,
) -> Decision {
    let mut decision = synqx_api::scheduler::decide(&RunFacts {
        plan: &observation.plan,
        attempts: &observation.jobs.attempts,
        resumed: &observation.resumed,
        policy: &RunPolicy::of(&observation.pipeline.spec),
        cancel,
        now,
    });
    decision.start.truncate(room);
    decision
}
