//! The Pipeline controller. One pass reads in order:
//! - observe: the Pipeline, the Connections its steps use and its runs, from the caches;
//! - decide (pure): compile with the checks of `synqx validate` ([`compile`]), what the
//!   schedule and the history limits ask for ([`runs`]), the status that follows
//!   ([`status`]);
//! - act: store the plan as a ControllerRevision, prune old ones, create and delete runs;
//! - report: apply the status under the controller's field manager, Events, metrics.

mod compile;
pub mod runs;
mod status;

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use k8s_openapi::api::apps::v1::ControllerRevision;
use kube::api::{Patch, PatchParams};
use kube::runtime::controller::Action;
use kube::{Api, Resource, ResourceExt};
use synqx_api::apply::StatusApply;
use synqx_api::pipeline::PipelineStatus;
use synqx_api::{Connection, Pipeline, PipelineRun, Step};

use crate::caches::Caches;
use crate::condition::{ConditionType, Reason, is_true};
use crate::context::Operator;
use crate::error::{Error, Result};
use crate::event_reason::EventReason;
use crate::revision;
pub use compile::compile;
use runs::run_ended;
use status::{Compiled, PipelineInputs, owned, pipeline_status, ready_message};
use synqx_api::run_record::RunRecord;

const CONTROLLER: &str = "pipeline";
/// The field manager of everything the Pipeline controller writes in a Pipeline's status.
pub const FIELD_MANAGER: &str = "synqx-pipeline-controller";
/// How often a valid Pipeline is looked at even when nothing changed (schedules, metrics).
const RESYNC: Duration = Duration::from_secs(300);

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
    let namespace = pipeline.namespace().unwrap_or_default();
    let name = pipeline.name_any();
    let connections = used_connections(ctx, pipeline, &namespace);

    let compiled = compile(pipeline, &connections).and_then(|plan| {
        let mut problems = runner_policy(pipeline, &ctx.settings);
        problems.extend(
            keyring_policy(pipeline, &plan, &ctx.settings.runner_image)
                .err()
                .into_iter()
                .flatten(),
        );
        if problems.is_empty() {
            Ok(plan)
        } else {
            Err(problems)
        }
    });
    let plan = match compiled {
        Ok(plan) => plan,
        Err(problems) => {
            let message = problems.join("; ");
            let status = pipeline_status(&PipelineInputs {
                pipeline,
                compiled: Compiled::Invalid { message: &message },
                connections: &connections,
                runs: &[],
                scheduled: None,
                next_schedule: None,
                now: Utc::now(),
            });
            if report(ctx, pipeline, status).await? {
                ctx.event(
                    &pipeline.object_ref(&()),
                    true,
                    EventReason::Condition(Reason::Invalid),
                    message,
                );
            }
            return Ok(Action::await_change());
        }
    };

    let revisions: Api<ControllerRevision> = Api::namespaced(ctx.client.clone(), &namespace);
    let current = revision::store(&revisions, &ctx.caches, pipeline, &plan).await?;
    let runs_api: Api<PipelineRun> = Api::namespaced(ctx.client.clone(), &namespace);
    let mut runs: Vec<PipelineRun> = ctx
        .caches
        .runs_of(&namespace, &name)
        .iter()
        .map(|r| r.as_ref().clone())
        .collect();
    let active: Vec<&PipelineRun> = runs.iter().filter(|r| !run_ended(r)).collect();
    // The revision the operator's record pins, and the one the status shows: keeping one
    // more revision is harmless, deleting a pinned one fails its run.
    let mut in_use: BTreeSet<String> = active
        .iter()
        .flat_map(|r| {
            let recorded = RunRecord::of(r).and_then(|record| record.revision);
            let shown = r.status.as_ref().and_then(|s| s.revision.clone());
            recorded.into_iter().chain(shown)
        })
        .collect();
    in_use.insert(current.clone());
    revision::prune(
        &revisions,
        &ctx.caches,
        &namespace,
        &name,
        ctx.settings.revision_history,
        &in_use,
    )
    .await?;

    let scheduled = runs::schedule(pipeline, ctx, &runs_api, &active).await?;
    runs::delete_old_runs(pipeline, ctx, &runs_api, &mut runs).await?;

    let previous = pipeline.status.clone().unwrap_or_default();
    let status = pipeline_status(&PipelineInputs {
        pipeline,
        compiled: Compiled::Valid {
            plan: &plan,
            revision: &current,
        },
        connections: &connections,
        runs: &runs,
        scheduled: scheduled.handled,
        next_schedule: scheduled.next,
        now: Utc::now(),
    });
    let connections_ready = status.conditions.get(1).cloned();
    if report(ctx, pipeline, status).await? {
        let reference = pipeline.object_ref(&());
        if !is_true(&previous.conditions, ConditionType::Ready) {
            ctx.event(
                &reference,
                false,
                EventReason::PipelineReady,
                ready_message(&plan),
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
        let reference = pipeline.object_ref(&());
        ctx.event(
            &reference,
            true,
            EventReason::InvalidAnnotation,
            problem.to_string(),
        );
    }

    let wake = scheduled
        .next
        .map(|t| (t - Utc::now()).to_std().unwrap_or_default() + Duration::from_millis(200))
        .map_or(RESYNC, |w| w.min(RESYNC));
    Ok(Action::requeue(wake))
}

/// The Connections the Pipeline's steps name, as the cache holds them; a missing one is left
/// out, and compiling names it.
fn used_connections(ctx: &Operator, pipeline: &Pipeline, namespace: &str) -> Vec<Connection> {
    let used: BTreeSet<&str> = pipeline
        .spec
        .steps
        .iter()
        .flat_map(Step::connections)
        .collect();
    used.into_iter()
        .filter_map(|name| Caches::get(&ctx.caches.connections, namespace, name))
        .map(|c| c.as_ref().clone())
        .collect()
}

/// What this operator allows in `spec.runner` besides what `synqx validate` checks: its
/// runner images, service accounts and `hostPath` volumes ([`crate::policy`]).
fn runner_policy(pipeline: &Pipeline, settings: &crate::context::Settings) -> Vec<String> {
    crate::policy::runner_problems(
        &pipeline.name_any(),
        pipeline.spec.runner.as_ref(),
        &settings.runner_image,
        &settings.policy,
        settings.pods.allow_host_path,
    )
}

/// The namespace's vault keyring goes only into pods that run the operator's runner image:
/// an image of the Pipeline's own choosing could read it and open every sealed value of the
/// namespace.
fn keyring_policy(
    pipeline: &Pipeline,
    plan: &synqx_api::dag::Plan,
    runner_image: &str,
) -> std::result::Result<(), Vec<String>> {
    let Some(image) = pipeline
        .spec
        .runner
        .as_ref()
        .and_then(|r| r.image.as_deref())
        .filter(|image| *image != runner_image)
    else {
        return Ok(());
    };
    let sealed: Vec<&str> = plan
        .connections
        .iter()
        .filter(|(_, spec)| crate::vault::needs_keyring(spec))
        .map(|(name, _)| name.as_str())
        .collect();
    if sealed.is_empty() {
        return Ok(());
    }
    Err(vec![format!(
        "Pipeline/{}: spec.runner.image: \"{image}\" cannot open sealed values: only the operator's runner image ({runner_image}) receives the namespace's vault keyring, and Connection {} holds sealed values; remove spec.runner.image, or use secretKeyRef for these Connections",
        pipeline.name_any(),
        sealed
            .iter()
            .map(|n| format!("\"{n}\""))
            .collect::<Vec<_>>()
            .join(", ")
    )])
}

/// Applies the status when it differs from what the controller wrote before; returns
/// whether it did.
async fn report(ctx: &Operator, pipeline: &Pipeline, status: PipelineStatus) -> Result<bool> {
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
    use synqx_api::validate::{InputFile, validate};

    const OPERATOR_IMAGE: &str = "ghcr.io/synqx/synqx:0.1.0";

    fn keyring_problems(password: &str, image: &str) -> Result<(), Vec<String>> {
        let yaml = format!(
            "apiVersion: synqx.io/v1alpha1\nkind: Connection\nmetadata: {{name: db, namespace: etl}}\nspec:\n  postgres: {{host: h, database: d, user: {{value: u}}, password: {password}}}\n---\n\
             apiVersion: synqx.io/v1alpha1\nkind: Pipeline\nmetadata: {{name: p, namespace: etl}}\nspec:\n  runner: {{image: \"{image}\"}}\n  steps:\n    - {{name: a, sql: {{connection: db, statements: [\"select 1\"]}}}}\n"
        );
        let report = validate(&[InputFile {
            name: "p.yaml",
            text: &yaml,
        }]);
        assert!(report.is_valid(), "{:?}", report.problems);
        let pipeline = &report.bundle.pipelines[0].object;
        super::keyring_policy(pipeline, &report.plans["p"], OPERATOR_IMAGE)
    }

    #[test]
    fn only_the_operators_runner_image_may_open_sealed_values() {
        let sealed = "{sealed: \"sqx1:k1:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA:BBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBB\"}";
        let problems = keyring_problems(sealed, "attacker.example/dump:1").unwrap_err();
        assert_eq!(
            problems,
            vec![format!(
                "Pipeline/p: spec.runner.image: \"attacker.example/dump:1\" cannot open sealed values: only the operator's runner image ({OPERATOR_IMAGE}) receives the namespace's vault keyring, and Connection \"db\" holds sealed values; remove spec.runner.image, or use secretKeyRef for these Connections"
            )]
        );
        assert_eq!(keyring_problems(sealed, OPERATOR_IMAGE), Ok(()));
        let referenced = "{secretKeyRef: {name: s, key: k}}";
        assert_eq!(
            keyring_problems(referenced, "attacker.example/dump:1"),
            Ok(())
        );
    }
}
