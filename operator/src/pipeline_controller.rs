//! The Pipeline controller: validates and compiles each Pipeline with the same code as
//! `synqx validate`, stores every new plan as a ControllerRevision, reports `Ready` or
//! `Invalid`, creates runs on its schedule and deletes runs beyond the history limits.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use k8s_openapi::api::apps::v1::ControllerRevision;
use kube::api::{DeleteParams, ListParams, ObjectMeta, Patch, PatchParams, PostParams};
use kube::runtime::controller::Action;
use kube::{Api, Resource, ResourceExt};
use serde_json::json;
use synqx_api::condition::Condition;
use synqx_api::dag::Plan;
use synqx_api::run::{PipelineRef, PipelineRunSpec};
use synqx_api::validate::{InputFile, Problem, validate};
use synqx_api::{Connection, Pipeline, PipelineRun};

use crate::context::{self, Context, Error, Result, now_rfc3339, parse_time};
use crate::job::{LABEL_PIPELINE, step_connections};
use crate::scheduling::{self, Fire};
use crate::{names, revision};

const CONTROLLER: &str = "pipeline";
/// How often a valid Pipeline is looked at even when nothing changed (schedules, metrics).
const RESYNC: Duration = Duration::from_secs(300);

pub async fn reconcile(pipeline: Arc<Pipeline>, ctx: Arc<Context>) -> Result<Action> {
    ctx.reconciled(CONTROLLER, reconcile_inner(&pipeline, &ctx))
        .await
}

pub fn error_policy(pipeline: Arc<Pipeline>, error: &Error, ctx: Arc<Context>) -> Action {
    ctx.retry_after(
        CONTROLLER,
        &pipeline.name_any(),
        error,
        Duration::from_secs(5),
    )
}

async fn reconcile_inner(pipeline: &Pipeline, ctx: &Context) -> Result<Action> {
    let namespace = pipeline.namespace().unwrap_or_default();
    let name = pipeline.name_any();
    let pipelines: Api<Pipeline> = Api::namespaced(ctx.client.clone(), &namespace);
    let connections: Api<Connection> = Api::namespaced(ctx.client.clone(), &namespace);
    let connections = connections.list(&ListParams::default()).await?.items;
    let generation = pipeline.metadata.generation;
    let status = pipeline.status.clone().unwrap_or_default();
    let reference = pipeline.object_ref(&());

    let compiled = compile(pipeline, &connections)
        .and_then(|plan| runner_policy(pipeline, &ctx.settings.pods).map(|()| plan));
    let plan = match compiled {
        Ok(plan) => plan,
        Err(problems) => {
            let message = problems.join("; ");
            let condition = condition(
                &status.conditions,
                "Ready",
                false,
                "Invalid",
                &message,
                generation,
            );
            if status.conditions.first() != Some(&condition)
                || status.observed_generation != generation
            {
                let patch = json!({"status": {"conditions": [condition], "observedGeneration": generation}});
                pipelines
                    .patch_status(&name, &PatchParams::default(), &Patch::Merge(&patch))
                    .await?;
                ctx.event(&reference, true, "Invalid", message).await;
            }
            return Ok(Action::await_change());
        }
    };

    let revisions: Api<ControllerRevision> = Api::namespaced(ctx.client.clone(), &namespace);
    let current = revision::store(&revisions, pipeline, &plan).await?;
    let runs_api: Api<PipelineRun> = Api::namespaced(ctx.client.clone(), &namespace);
    let mut runs: Vec<PipelineRun> = runs_api
        .list(&ListParams::default())
        .await?
        .items
        .into_iter()
        .filter(|r| r.spec.pipeline_ref.name == name)
        .collect();
    let active: Vec<&PipelineRun> = runs.iter().filter(|r| !is_finished(r)).collect();
    let mut in_use: BTreeSet<String> = active
        .iter()
        .filter_map(|r| r.status.as_ref()?.revision.clone())
        .collect();
    in_use.insert(current.clone());
    revision::prune(&revisions, &name, ctx.settings.revision_history, &in_use).await?;

    let (last_schedule, next_schedule) = schedule(pipeline, ctx, &runs_api, &active).await?;
    delete_old_runs(pipeline, ctx, &runs_api, &mut runs).await?;

    let ready_message = format!(
        "{} steps in {} layers; plan {}",
        plan.steps.len(),
        plan.layers.len(),
        &plan.hash[..12.min(plan.hash.len())]
    );
    let ready = condition(
        &status.conditions,
        "Ready",
        true,
        "Compiled",
        &ready_message,
        generation,
    );
    let connections_ready =
        connections_condition(pipeline, &connections, &status.conditions, generation);
    let conditions = vec![ready.clone(), connections_ready];
    let last_run = runs
        .iter()
        .max_by_key(|r| r.metadata.creation_timestamp.as_ref().map(|t| t.0))
        .map(|r| {
            json!({
                "name": r.name_any(),
                "phase": r.status.as_ref().and_then(|s| s.phase).map(|p| format!("{p:?}")),
                "startTime": r.status.as_ref().and_then(|s| s.start_time.clone()),
            })
        });
    let patch = json!({"status": {
        "conditions": conditions,
        "observedGeneration": generation,
        "revision": current,
        "planHash": plan.hash,
        "summary": {
            "steps": plan.steps.len(),
            "edges": plan.edges.len(),
            "layers": plan.layers.len(),
            "criticalPath": plan.critical_path.len(),
        },
        "layers": plan.layers,
        "lastRun": last_run,
        "nextScheduleTime": next_schedule.map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)),
        "lastScheduleTime": last_schedule.or(status.last_schedule_time.clone()),
    }});
    let unchanged = status.conditions == conditions
        && status.observed_generation == generation
        && status.revision.as_deref() == Some(current.as_str())
        && status
            .last_run
            .as_ref()
            .map(|r| json!({"name": r.name, "phase": r.phase, "startTime": r.start_time}))
            == last_run
        && status.next_schedule_time
            == patch["status"]["nextScheduleTime"]
                .as_str()
                .map(String::from)
        && status.last_schedule_time.as_deref() == patch["status"]["lastScheduleTime"].as_str();
    if !unchanged {
        pipelines
            .patch_status(&name, &PatchParams::default(), &Patch::Merge(&patch))
            .await?;
        if status.conditions.first().map(|c| c.status.as_str()) != Some("True") {
            ctx.event(&reference, false, "Ready", ready_message).await;
        }
        if let Some(c) = conditions.get(1).filter(|c| c.status == "False")
            && status.conditions.get(1).map(|o| &o.message) != Some(&c.message)
        {
            ctx.event(&reference, true, "ConnectionsNotReady", c.message.clone())
                .await;
        }
    }
    if let Err(problem) = crate::cache_metrics::stale_after(pipeline) {
        ctx.event(&reference, true, "InvalidAnnotation", problem)
            .await;
    }

    let wake = next_schedule
        .map(|t| (t - Utc::now()).to_std().unwrap_or_default() + Duration::from_millis(200))
        .map_or(RESYNC, |w| w.min(RESYNC));
    Ok(Action::requeue(wake))
}

/// What this operator allows in `spec.runner` besides what `synqx validate` checks:
/// `hostPath` volumes only with `--allow-host-path`.
fn runner_policy(
    pipeline: &Pipeline,
    pods: &crate::step_pod::PodDefaults,
) -> Result<(), Vec<String>> {
    let Some(runner) = pipeline
        .spec
        .runner
        .as_ref()
        .filter(|_| !pods.allow_host_path)
    else {
        return Ok(());
    };
    let problems: Vec<String> = synqx_api::runner::host_path_problems(runner)
        .into_iter()
        .map(|(field, message)| {
            format!(
                "Pipeline/{}: spec.runner.{field}: {message}",
                pipeline.name_any()
            )
        })
        .collect();
    if problems.is_empty() {
        Ok(())
    } else {
        Err(problems)
    }
}

/// `ConnectionsReady`: whether every Connection the steps use passed its last check.
fn connections_condition(
    pipeline: &Pipeline,
    connections: &[Connection],
    existing: &[Condition],
    generation: Option<i64>,
) -> Condition {
    let used: BTreeSet<&str> = pipeline
        .spec
        .steps
        .iter()
        .flat_map(step_connections)
        .collect();
    let not_ready: Vec<String> = connections
        .iter()
        .filter(|c| used.contains(c.name_any().as_str()))
        .filter_map(|c| {
            let ready = c
                .status
                .as_ref()
                .and_then(|s| s.conditions.iter().find(|c| c.r#type == "Ready"));
            match ready {
                Some(r) if r.status == "True" => None,
                Some(r) => Some(format!("{} ({}: {})", c.name_any(), r.reason, r.message)),
                None => Some(format!("{} (not checked yet)", c.name_any())),
            }
        })
        .collect();
    match not_ready.is_empty() {
        true => condition(
            existing,
            "ConnectionsReady",
            true,
            "Ready",
            "every Connection passed its check",
            generation,
        ),
        false => condition(
            existing,
            "ConnectionsReady",
            false,
            "NotReady",
            &not_ready.join("; "),
            generation,
        ),
    }
}

/// Compiles with exactly the checks of `synqx validate`, over the Pipeline and the
/// namespace's Connections; returns the problems that concern this Pipeline.
pub fn compile(pipeline: &Pipeline, connections: &[Connection]) -> Result<Plan, Vec<String>> {
    let name = pipeline.name_any();
    let mut docs = vec![document(&Pipeline::new(&name, pipeline.spec.clone()))];
    let used: BTreeSet<&str> = pipeline
        .spec
        .steps
        .iter()
        .flat_map(step_connections)
        .collect();
    for connection in connections
        .iter()
        .filter(|c| used.contains(c.name_any().as_str()))
    {
        docs.push(document(&Connection::new(
            &connection.name_any(),
            connection.spec.clone(),
        )));
    }
    let text = docs.join("---\n");
    let mut report = validate(&[InputFile {
        name: "cluster",
        text: &text,
    }]);
    let relevant = |p: &Problem| match p.resource.as_deref() {
        Some(resource) => {
            resource == format!("Pipeline/{name}")
                || resource
                    .strip_prefix("Connection/")
                    .is_some_and(|c| used.contains(c))
        }
        None => true,
    };
    let problems: Vec<String> = report
        .problems
        .iter()
        .filter(|p| relevant(p))
        .map(describe)
        .collect();
    match report.plans.remove(&name) {
        Some(plan) if problems.is_empty() => Ok(plan),
        _ if problems.is_empty() => Err(vec![format!("Pipeline/{name}: could not be compiled")]),
        _ => Err(problems),
    }
}

fn document<K: serde::Serialize>(object: &K) -> String {
    serde_yaml::to_string(object).unwrap_or_default()
}

/// A problem as users read it on the cluster: resource, step, field and message.
fn describe(problem: &Problem) -> String {
    let mut text = String::new();
    if let Some(resource) = &problem.resource {
        text.push_str(resource);
        text.push_str(": ");
    }
    if let Some(step) = &problem.step {
        text.push_str(&format!("step \"{step}\": "));
    }
    if let Some(field) = &problem.field {
        text.push_str(field);
        text.push_str(": ");
    }
    text.push_str(&problem.message);
    text
}

/// A condition, keeping its transition time when its status did not change.
pub fn condition(
    existing: &[Condition],
    kind: &str,
    ok: bool,
    reason: &str,
    message: &str,
    generation: Option<i64>,
) -> Condition {
    let status = if ok { "True" } else { "False" };
    let previous = existing.iter().find(|c| c.r#type == kind);
    let since = match previous {
        Some(c) if c.status == status => c.last_transition_time.clone(),
        _ => None,
    };
    Condition {
        r#type: kind.into(),
        status: status.into(),
        reason: reason.into(),
        message: message.chars().take(4000).collect(),
        last_transition_time: since.or_else(|| Some(now_rfc3339())),
        observed_generation: generation,
    }
}

pub fn is_finished(run: &PipelineRun) -> bool {
    run.status
        .as_ref()
        .and_then(|s| s.phase)
        .is_some_and(|p| p.is_finished())
}

/// Creates the run a due fire time asks for; returns the fire time handled and the next one.
async fn schedule(
    pipeline: &Pipeline,
    ctx: &Context,
    runs: &Api<PipelineRun>,
    active: &[&PipelineRun],
) -> Result<(Option<String>, Option<chrono::DateTime<Utc>>)> {
    let Some(schedule) = &pipeline.spec.schedule else {
        return Ok((None, None));
    };
    let name = pipeline.name_any();
    let status = pipeline.status.clone().unwrap_or_default();
    let created = pipeline
        .metadata
        .creation_timestamp
        .as_ref()
        .map(|t| t.0.as_second())
        .unwrap_or_default();
    let last = status
        .last_schedule_time
        .as_deref()
        .and_then(parse_time)
        .or_else(|| chrono::DateTime::from_timestamp(created, 0))
        .unwrap_or_else(Utc::now);
    let decision =
        scheduling::decide(schedule, last, Utc::now(), active.len()).map_err(Error::Other)?;
    let reference = pipeline.object_ref(&());
    let handled = match decision.fire {
        Fire::Nothing => None,
        Fire::Skip { at, reason } => {
            ctx.event(
                &reference,
                true,
                "ScheduleSkipped",
                format!("fire time {at}: {reason}"),
            )
            .await;
            Some(at)
        }
        Fire::Run { at, cancel } => {
            if cancel {
                for run in active {
                    let patch = json!({"spec": {"cancel": true}});
                    runs.patch(
                        &run.name_any(),
                        &PatchParams::default(),
                        &Patch::Merge(&patch),
                    )
                    .await?;
                    let related = context::reference(
                        "synqx.io/v1alpha1",
                        "PipelineRun",
                        &run.namespace().unwrap_or_default(),
                        &run.name_any(),
                    );
                    ctx.event_about(
                        &reference,
                        Some(related),
                        false,
                        "RunReplaced",
                        format!("cancelled {} (concurrencyPolicy: Replace)", run.name_any()),
                    )
                    .await;
                }
            }
            let run_name = names::scheduled_run_name(&name, at.timestamp());
            let run = PipelineRun {
                metadata: ObjectMeta {
                    name: Some(run_name.clone()),
                    labels: Some([(LABEL_PIPELINE.to_string(), names::fit(&name))].into()),
                    annotations: Some(
                        [("synqx.io/scheduled-at".to_string(), at.to_rfc3339())].into(),
                    ),
                    owner_references: pipeline.controller_owner_ref(&()).map(|r| vec![r]),
                    ..Default::default()
                },
                spec: PipelineRunSpec {
                    pipeline_ref: PipelineRef { name: name.clone() },
                    ..Default::default()
                },
                status: None,
            };
            match runs.create(&PostParams::default(), &run).await {
                Ok(_) => {
                    let namespace = pipeline.namespace().unwrap_or_default();
                    let related = context::reference(
                        "synqx.io/v1alpha1",
                        "PipelineRun",
                        &namespace,
                        &run_name,
                    );
                    ctx.event_about(
                        &reference,
                        Some(related),
                        false,
                        "RunScheduled",
                        format!("created {run_name} for {at}"),
                    )
                    .await
                }
                // Deterministic names: this fire time was handled before a restart.
                Err(kube::Error::Api(status)) if status.code == 409 => {}
                Err(error) => return Err(error.into()),
            }
            Some(at)
        }
    };
    let handled = handled.map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true));
    Ok((handled, decision.next))
}

/// Keeps the newest `successfulRunsHistoryLimit` succeeded and `failedRunsHistoryLimit`
/// failed or cancelled runs (3 each by default); deletes older ones with their Jobs.
async fn delete_old_runs(
    pipeline: &Pipeline,
    ctx: &Context,
    api: &Api<PipelineRun>,
    runs: &mut Vec<PipelineRun>,
) -> Result<()> {
    use synqx_api::run::RunPhase;
    let keep_ok = pipeline.spec.successful_runs_history_limit.unwrap_or(3) as usize;
    let keep_failed = pipeline.spec.failed_runs_history_limit.unwrap_or(3) as usize;
    runs.sort_by_key(|r| std::cmp::Reverse(r.metadata.creation_timestamp.as_ref().map(|t| t.0)));
    let (mut ok, mut failed) = (0, 0);
    let mut doomed = Vec::new();
    for run in runs.iter() {
        match run.status.as_ref().and_then(|s| s.phase) {
            Some(RunPhase::Succeeded) => {
                ok += 1;
                if ok > keep_ok {
                    doomed.push(run.name_any());
                }
            }
            Some(RunPhase::Failed | RunPhase::Cancelled) => {
                failed += 1;
                if failed > keep_failed {
                    doomed.push(run.name_any());
                }
            }
            _ => {}
        }
    }
    for name in &doomed {
        match api.delete(name, &DeleteParams::background()).await {
            Ok(_) => {
                let related = context::reference(
                    "synqx.io/v1alpha1",
                    "PipelineRun",
                    &pipeline.namespace().unwrap_or_default(),
                    name,
                );
                ctx.event_about(
                    &pipeline.object_ref(&()),
                    Some(related),
                    false,
                    "RunDeleted",
                    format!("{name} is beyond the history limit"),
                )
                .await
            }
            Err(kube::Error::Api(status)) if status.code == 404 => {}
            Err(error) => return Err(error.into()),
        }
    }
    runs.retain(|r| !doomed.contains(&r.name_any()));
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn objects(yaml: &str) -> (Pipeline, Vec<Connection>) {
        let mut pipeline = None;
        let mut connections = Vec::new();
        for doc in serde_yaml::Deserializer::from_str(yaml) {
            let value = serde_yaml::Value::deserialize(doc).expect("yaml");
            match value.get("kind").and_then(|k| k.as_str()) {
                Some("Pipeline") => {
                    pipeline = Some(serde_yaml::from_value(value).expect("pipeline"))
                }
                Some("Connection") => {
                    connections.push(serde_yaml::from_value(value).expect("connection"))
                }
                _ => {}
            }
        }
        (pipeline.expect("a pipeline"), connections)
    }
    use serde::Deserialize;

    const CONNECTIONS: &str = r#"
apiVersion: synqx.io/v1alpha1
kind: Connection
metadata: {name: db, namespace: etl}
spec: {sqlite: {path: /tmp/db.sqlite}}
---
apiVersion: synqx.io/v1alpha1
kind: Connection
metadata: {name: broken, namespace: etl}
spec: {sqlite: {path: /tmp/x.sqlite}, filesystem: {path: /tmp}}
"#;

    #[test]
    fn a_valid_pipeline_compiles_and_an_unrelated_broken_connection_does_not_matter() {
        let yaml = format!(
            "{CONNECTIONS}---\napiVersion: synqx.io/v1alpha1\nkind: Pipeline\nmetadata: {{name: p, namespace: etl}}\nspec:\n  steps:\n    - {{name: a, sql: {{connection: db, statements: [\"select 1\"]}}}}\n"
        );
        let (pipeline, connections) = objects(&yaml);
        let plan = compile(&pipeline, &connections).expect("compiles");
        assert_eq!(plan.steps.len(), 1);
        assert!(plan.connections.contains_key("db"));
    }

    #[test]
    fn cycles_and_unknown_connections_are_reported_with_resource_and_step() {
        let yaml = format!(
            "{CONNECTIONS}---\napiVersion: synqx.io/v1alpha1\nkind: Pipeline\nmetadata: {{name: p, namespace: etl}}\nspec:\n  steps:\n    - {{name: a, dependsOn: [b], sql: {{connection: db, statements: [\"select 1\"]}}}}\n    - {{name: b, dependsOn: [a], sql: {{connection: nowhere, statements: [\"select 1\"]}}}}\n"
        );
        let (pipeline, connections) = objects(&yaml);
        let problems = compile(&pipeline, &connections)
            .expect_err("invalid")
            .join("\n");
        assert!(
            problems.contains("dependency cycle: a -> b -> a"),
            "{problems}"
        );
        assert!(problems.contains("Pipeline/p: step \"b\""), "{problems}");
        assert!(
            problems.contains("connection \"nowhere\" does not exist"),
            "{problems}"
        );
        assert!(
            !problems.contains("cluster"),
            "no file name on the cluster: {problems}"
        );
    }

    #[test]
    fn conditions_keep_their_transition_time_while_unchanged() {
        let first = condition(&[], "Ready", true, "Compiled", "ok", Some(1));
        let mut older = first.clone();
        older.last_transition_time = Some("2026-01-01T00:00:00Z".into());
        let again = condition(&[older.clone()], "Ready", true, "Compiled", "ok", Some(2));
        assert_eq!(again.last_transition_time, older.last_transition_time);
        let flipped = condition(&[older.clone()], "Ready", false, "Invalid", "bad", Some(2));
        assert_ne!(flipped.last_transition_time, older.last_transition_time);
    }
}
