//! What a pass of the Pipeline controller says: its status, applied under the controller's
//! field manager only when it changed, and the Events of the transitions the user sees.

use std::time::Duration;

use chrono::{DateTime, Utc};
use kube::api::{Patch, PatchParams};
use kube::{Api, Resource, ResourceExt};
use synqx_api::Pipeline;
use synqx_api::apply::StatusApply;
use synqx_api::dag::Plan;
use synqx_api::pipeline::PipelineStatus;

use super::FIELD_MANAGER;
use super::status::{owned, ready_message};
use crate::condition::{ConditionType, Reason, is_true};
use crate::context::Operator;
use crate::error::Result;
use crate::event_reason::EventReason;

/// How often a valid Pipeline is looked at even when nothing changed. Everything a Pipeline
/// depends on is watched (its spec, its Connections, its runs' ends) and a schedule wakes it
/// at its own time, so this is only a safety net; each look compiles the Pipeline again, and
/// at five minutes 2,000 idle Pipelines cost the operator 6 % of a core.
const RESYNC: Duration = Duration::from_secs(3600);

/// An invalid Pipeline's status, and a Warning Event with every problem when it changed.
pub async fn invalid(
    ctx: &Operator,
    pipeline: &Pipeline,
    status: PipelineStatus,
    message: String,
) -> Result<()> {
    if apply(ctx, pipeline, status).await? {
        ctx.event(
            &pipeline.object_ref(&()),
            true,
            EventReason::Condition(Reason::Invalid),
            message,
        );
    }
    Ok(())
}

/// A valid Pipeline's status, with an Event when it became Ready and a Warning when the
/// Connections it uses are not ready for a new reason; a Warning for a stale-after
/// annotation that cannot be read.
pub async fn valid(
    ctx: &Operator,
    pipeline: &Pipeline,
    plan: &Plan,
    status: PipelineStatus,
) -> Result<()> {
    let previous = pipeline.status.clone().unwrap_or_default();
    let connections_ready = status.conditions.get(1).cloned();
    let reference = pipeline.object_ref(&());
    if apply(ctx, pipeline, status).await? {
        if !is_true(&previous.conditions, ConditionType::Ready) {
            ctx.event(
                &reference,
                false,
                EventReason::PipelineReady,
                ready_message(plan),
            );
        }
        if let Some(c) = connections_ready.filter(|c| c.status == "False")
            && previous.conditions.get(1).map(|o| &o.message) != Some(&c.message)
        {
            ctx.event(
                &reference,
                true,
                EventReason::ConnectionsNotReady,
                c.message,
            );
        }
    }
    if let Err(problem) = crate::cache_metrics::stale_after(pipeline) {
        ctx.event(
            &reference,
            true,
            EventReason::InvalidAnnotation,
            problem.to_string(),
        );
    }
    Ok(())
}

/// When to look at a valid Pipeline again: just after its next schedule, at the latest
/// after [`RESYNC`].
pub fn wake(next_schedule: Option<DateTime<Utc>>, now: DateTime<Utc>) -> Duration {
    next_schedule
        .map(|t| (t - now).to_std().unwrap_or_default() + Duration::from_millis(200))
        .map_or(RESYNC, |w| w.min(RESYNC))
}

/// Applies the status when it differs from what the controller wrote before; returns
/// whether it did.
async fn apply(ctx: &Operator, pipeline: &Pipeline, status: PipelineStatus) -> Result<bool> {
    let previous = pipeline.status.as_ref().map(owned).unwrap_or_default();
    if previous == status {
        return Ok(false);
    }
    let pipelines: Api<Pipeline> = Api::namespaced(
        ctx.client.clone(),
        &pipeline.namespace().unwrap_or_default(),
    );
    let body = StatusApply::of::<Pipeline>(status);
    let params = PatchParams::apply(FIELD_MANAGER).force();
    pipelines
        .patch_status(&pipeline.name_any(), &params, &Patch::Apply(&body))
        .await?;
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_pipeline_wakes_after_its_next_schedule_or_the_resync() {
        let now = Utc::now();
        assert_eq!(wake(None, now), RESYNC);
        let soon = now + chrono::Duration::seconds(10);
        assert_eq!(wake(Some(soon), now), Duration::from_millis(10_200));
        let late = now + chrono::Duration::hours(3);
        assert_eq!(wake(Some(late), now), RESYNC);
        let past = now - chrono::Duration::seconds(3);
        assert_eq!(wake(Some(past), now), Duration::from_millis(200));
    }
}
