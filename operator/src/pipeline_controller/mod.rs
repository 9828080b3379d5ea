//! The Pipeline controller. One pass reads in order:
//! - observe ([`observe`]): the Pipeline, the Connections its steps use and its runs, from
//!   the caches;
//! - decide (pure): compile with the checks of `synqx validate` and this operator's policy
//!   ([`compile`]), what the schedule and the history limits ask for ([`runs`]), the status
//!   that follows ([`status`]);
//! - act ([`act`], [`runs`]): store the plan as a ControllerRevision, prune old ones, create
//!   and delete runs;
//! - report ([`report`]): apply the status under the controller's field manager, Events.

mod act;
mod compile;
mod observe;
mod report;
pub mod runs;
mod status;

use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use kube::ResourceExt;
use kube::runtime::controller::Action;
use synqx_api::Pipeline;

use crate::context::Operator;
use crate::error::{Error, Result};
use status::{Compiled, PipelineInputs, pipeline_status};

const CONTROLLER: &str = "pipeline";
/// The field manager of everything the Pipeline controller writes in a Pipeline's status.
pub const FIELD_MANAGER: &str = "synqx-pipeline-controller";

pub async fn reconcile(pipeline: Arc<Pipeline>, ctx: Arc<Operator>) -> Result<Action> {
    ctx.reconciled(CONTROLLER, reconcile_inner(&pipeline, &ctx))
        .await
}

pub fn error_policy(pipeline: Arc<Pipeline>, error: &Error, ctx: Arc<Operator>) -> Action {
    ctx.retry_after(
        CONTROLLER,
        &pipeline.name_any(),
        error,
        Duration::from_secs(5),
    )
}

async fn reconcile_inner(pipeline: &Pipeline, ctx: &Operator) -> Result<Action> {
    let mut observed = observe::observe(ctx, pipeline);
    let plan = match compile::admit(pipeline, &observed.connections, &ctx.settings) {
        Ok(plan) => plan,
        Err(problems) => {
            let message = problems.join("; ");
            let status = pipeline_status(&PipelineInputs {
                pipeline,
                compiled: Compiled::Invalid { message: &message },
                connections: &observed.connections,
                runs: &[],
                scheduled: None,
                next_schedule: None,
                now: Utc::now(),
            });
            report::invalid(ctx, pipeline, status, message).await?;
            return Ok(Action::await_change());
        }
    };

    let current = act::store_revision(ctx, pipeline, &plan, &observed.active()).await?;
    let scheduled = runs::schedule(pipeline, ctx, &observed.active()).await?;
    runs::delete_old_runs(pipeline, ctx, &mut observed.runs).await?;

    let status = pipeline_status(&PipelineInputs {
        pipeline,
        compiled: Compiled::Valid {
            plan: &plan,
            revision: &current,
        },
        connections: &observed.connections,
        runs: &observed.runs,
        scheduled: scheduled.handled,
        next_schedule: scheduled.next,
        now: Utc::now(),
    });
    report::valid(ctx, pipeline, &plan, status).await?;
    Ok(Action::requeue(report::wake(scheduled.next, Utc::now())))
}
