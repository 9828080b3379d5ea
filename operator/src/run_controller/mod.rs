//! The PipelineRun controller. One pass reads in order:
//! - the operator's record of the run ([`record`]): whether it ended, the revision it
//!   pinned, the attempts that ended; the status is checked against it, never decided from;
//! - observe ([`observe`]): the run's Pipeline, its pinned revision, its Jobs and their
//!   reports, the run it resumes from;
//! - decide (pure): the scheduler of `synqx_api::scheduler` says which attempts start, stop
//!   or wait, and [`status`] builds the status that follows;
//! - act ([`act`]): commit watermarks of steps that succeeded, write the record (the pinned
//!   revision before any Job names it), delete and create Jobs, write the final counters of
//!   attempts that reported ([`counters`]);
//! - report ([`report`]): write the record, apply the status, an Event per transition,
//!   metrics.

mod act;
pub mod counters;
mod observe;
mod record;
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
use synqx_api::run_record::{RECORD_ANNOTATION, RunRecord};
use synqx_api::scheduler::{Decision, RunFacts, RunPolicy};

use crate::context::Operator;
use crate::error::{Error, Result};
use crate::job_slots::RETRY_HELD_BACK;
use observe::{Observation, Observed};
use report::Reporter;
use status::{RunInputs, ended_status, restored_status, run_status, waiting_status};

const CONTROLLER: &str = "pipelinerun";
/// How often a running run is looked at even without a Job event.
const RUNNING_RESYNC: Duration = Duration::from_secs(30);
/// How often a run waiting for its Pipeline looks again.
const WAITING_RESYNC: Duration = Duration::from_secs(5);
/// When a pass that saw a run older than the operator's own last write of it looks again,
/// unless the watch event of that write comes first.
const CATCH_UP: Duration = Duration::from_secs(1);

pub async fn reconcile(run: Arc<PipelineRun>, ctx: Arc<Operator>) -> Result<Action> {
    ctx.reconciled(CONTROLLER, reconcile_inner(&run, &ctx))
        .await
}

pub fn error_policy(run: Arc<PipelineRun>, error: &Error, ctx: Arc<Operator>) -> Action {
    ctx.retry_after(CONTROLLER, &run.name_any(), error, Duration::from_secs(3))
}

async fn reconcile_inner(run: &PipelineRun, ctx: &Operator) -> Result<Action> {
    if ctx.own_writes.behind(run) {
        // The watch has not delivered this operator's last write of the run yet: deciding
        // from this version would take the operator's own status for someone else's.
        return Ok(Action::requeue(CATCH_UP));
    }
    let shown = run.status.clone().unwrap_or_default();
    let namespace = run.namespace().unwrap_or_default();
    let name = run.name_any();
    let reporter = Reporter { ctx, run };
    // What the pass decides from: the operator's record, never the status (see
    // `synqx_api::run_record` for why the record is an annotation).
    let mut stored = run.annotations().get(RECORD_ANNOTATION).cloned();
    let record = match RunRecord::of(run) {
        Some(record) => record,
        None => record::adopted(&shown, has_jobs(run, ctx, &namespace, &name)),
    };
    if record.finished() {
        let checked = record::trusted(&shown, &record, |s| record.steps.contains_key(s));
        // A run an older operator ended gets its record now.
        reporter.record(stored.as_deref(), &record).await?;
        if !checked.contradicted.is_empty() || shown.phase != record.phase {
            reporter.contradicted(&checked.contradicted);
            let restored = restored_status(&shown, &checked.status, Utc::now());
            reporter.apply(restored).await?;
        }
        return Ok(Action::await_change());
    }
    let observation = match observe::observe(run, ctx, &record).await? {
        Observed::Ends {
            phase,
            reason,
            message,
        } => {
            let checked = record::trusted(&shown, &record, |s| record.steps.contains_key(s));
            reporter.contradicted(&checked.contradicted);
            let status = ended_status(&checked.status, phase, reason, &message, Utc::now());
            reporter
                .record(stored.as_deref(), &record::project(&status))
                .await?;
            reporter.ends(status, reason, &message).await?;
            return Ok(Action::await_change());
        }
        Observed::Waits { message } => {
            let status = waiting_status(&shown, &message, Utc::now());
            reporter.waits(status, &message).await?;
            return Ok(Action::requeue(WAITING_RESYNC));
        }
        Observed::Ready(observation) => observation,
    };
    let plan = &observation.plan;
    let checked = record::trusted(&shown, &record, |s| {
        record.steps.contains_key(s) || plan.step(s).is_some()
    });
    reporter.contradicted(&checked.contradicted);
    let previous = checked.status;

    let cancel = run.spec.cancel == Some(true);
    let mut decision = decide(&observation, cancel, Utc::now(), usize::MAX);
    let wanted = decision.start.len();
    decision
        .start
        .truncate(ctx.slots.room(&namespace, &name, wanted));
    let held_back = decision.start.len() < wanted;

    act::commit_watermarks(ctx, run, &previous, &observation, &decision).await?;
    if record.revision.is_none() {
        // Pinned before any Job names the revision, so a restart never pins another.
        let pinned = RunRecord {
            revision: Some(observation.revision.clone()),
            ..record.clone()
        };
        stored = Some(reporter.record(stored.as_deref(), &pinned).await?);
    }
    let created = act::stop_and_start(ctx, run, &observation, &decision).await?;
    // After the Jobs a step's end unblocks: this is a status write, which waits behind
    // every Job create. Before the record holds the reports: a failed write reads them
    // again next pass.
    counters::apply(
        ctx,
        run,
        &counters::final_counters(&observation.jobs.reports),
    )
    .await?;
    let job_names: Vec<String> = created.values().map(|(_, job)| job.clone()).collect();
    ctx.slots.record(&namespace, &name, wanted, &job_names);

    let status = run_status(&RunInputs {
        previous: &previous,
        plan: &observation.plan,
        decision: &decision,
        jobs: &observation.jobs,
        created: &created,
        revision: &observation.revision,
        now: Utc::now(),
    });
    // The record first: a status ahead of it would read as contradicting it.
    reporter
        .record(stored.as_deref(), &record::project(&status))
        .await?;
    reporter
        .progress(&previous, status, &observation.jobs)
        .await?;
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

/// Whether the run controls any Job (from the cache).
fn has_jobs(run: &PipelineRun, ctx: &Operator, namespace: &str, name: &str) -> bool {
    let uid = run.metadata.uid.clone().unwrap_or_default();
    ctx.caches
        .jobs_of(namespace, &crate::names::fit(name))
        .iter()
        .any(|job| crate::job::owned_by(job, &uid))
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
