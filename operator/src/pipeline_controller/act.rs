//! What a pass of the Pipeline controller changes besides runs: the plan stored as an
//! immutable ControllerRevision, and old revisions no run uses pruned.

use std::collections::BTreeSet;

use k8s_openapi::api::apps::v1::ControllerRevision;
use kube::{Api, ResourceExt};
use synqx_api::dag::Plan;
use synqx_api::run_record::RunRecord;
use synqx_api::{Pipeline, PipelineRun};

use crate::context::Operator;
use crate::error::Result;
use crate::revision;

/// Stores `plan` as the Pipeline's current revision (the one it has when the plan did not
/// change), prunes the revisions past the history that no active run uses; returns the
/// current revision's name.
pub async fn store_revision(
    ctx: &Operator,
    pipeline: &Pipeline,
    plan: &Plan,
    active: &[&PipelineRun],
) -> Result<String> {
    let namespace = pipeline.namespace().unwrap_or_default();
    let revisions: Api<ControllerRevision> = Api::namespaced(ctx.client.clone(), &namespace);
    let current = revision::store(&revisions, &ctx.caches, &ctx.plans, pipeline, plan).await?;
    revision::prune(
        &revisions,
        &ctx.caches,
        &namespace,
        &pipeline.name_any(),
        ctx.settings.revision_history,
        &in_use(active, &current),
    )
    .await?;
    Ok(current)
}

/// The revisions that must stay: the current one, and of each active run the one the
/// operator's record pins and the one its status shows (keeping one more revision is
/// harmless, deleting a pinned one fails its run).
fn in_use(active: &[&PipelineRun], current: &str) -> BTreeSet<String> {
    let mut in_use: BTreeSet<String> = active
        .iter()
        .flat_map(|r| {
            let recorded = RunRecord::of(r).and_then(|record| record.revision);
            let shown = r.status.as_ref().and_then(|s| s.revision.clone());
            recorded.into_iter().chain(shown)
        })
        .collect();
    in_use.insert(current.to_string());
    in_use
}

#[cfg(test)]
mod tests {
    use super::*;
    use synqx_api::run::{PipelineRunStatus, RunPhase};
    use synqx_api::run_record::RECORD_ANNOTATION;

    #[test]
    fn the_current_revision_and_every_one_an_active_run_pins_or_shows_stay() {
        let mut pinned = PipelineRun::new("a", Default::default());
        let record = RunRecord {
            revision: Some("p-1".into()),
            ..Default::default()
        };
        pinned.metadata.annotations = Some(
            [(RECORD_ANNOTATION.to_string(), record.to_annotation())]
                .into_iter()
                .collect(),
        );
        let mut shown = PipelineRun::new("b", Default::default());
        shown.status = Some(PipelineRunStatus {
            phase: Some(RunPhase::Running),
            revision: Some("p-2".into()),
            ..Default::default()
        });
        let kept = in_use(&[&pinned, &shown], "p-3");
        assert_eq!(kept.into_iter().collect::<Vec<_>>(), ["p-1", "p-2", "p-3"]);
    }
}
