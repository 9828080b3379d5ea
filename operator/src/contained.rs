//! A reconciliation that panics fails its object, not the operator. kube-runtime does not
//! catch panics: one object that panics would end the process, the restarted operator would
//! meet the same object first and end again, and no namespace would be served. Each
//! reconciliation runs under [`contained`]: a panic becomes that object's failure (a status
//! condition and a Warning Event, reason `OperatorError`), an error counted with kind `panic`,
//! and a retry minutes later; every other object goes on as before.

use std::any::Any;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::Duration;

use futures::FutureExt;
use futures::future::BoxFuture;
use kube::api::{Patch, PatchParams};
use kube::runtime::controller::Action;
use kube::{Api, Resource, ResourceExt};
use serde_json::json;
use synqx_api::apply::StatusApply;
use synqx_api::condition::Condition;
use synqx_api::connection::ConnectionStatus;
use synqx_api::pipeline::PipelineStatus;
use synqx_api::run::{PipelineRunStatus, RunPhase};
use synqx_api::run_record::{RECORD_ANNOTATION, RunRecord};
use synqx_api::{Connection, Pipeline, PipelineRun};

use crate::condition::{ConditionType, Reason, condition};
use crate::context::{Operator, now_rfc3339};
use crate::error::{Error, Result};
use crate::event_reason::EventReason;

/// The field manager of the status a panicked reconciliation leaves. The controllers apply
/// their own status with `force`, so the next reconciliation that succeeds takes it back.
pub const FIELD_MANAGER: &str = "synqx-operator-failure";
/// How long an object whose reconciliation panicked waits before it is tried again: a panic
/// repeats until the object or the operator changes, and must not keep a core busy.
pub const RETRY_PANICKED: Duration = Duration::from_secs(300);
/// The longest panic message kept: it goes into a status condition and an Event.
const MAX_MESSAGE: usize = 300;

/// Runs one reconciliation; a panic in it (or in `failed`, which reports it) is caught and
/// returned as [`Error::Panicked`] after `failed` reported it on the object.
pub async fn contained<K, C>(
    reconcile: fn(Arc<K>, Arc<C>) -> BoxFuture<'static, Result<Action>>,
    failed: fn(Arc<K>, String, Arc<C>) -> BoxFuture<'static, ()>,
    object: Arc<K>,
    ctx: Arc<C>,
) -> Result<Action>
where
    K: Send + Sync + 'static,
    C: Send + Sync + 'static,
{
    let (o, c) = (object.clone(), ctx.clone());
    // The call itself runs inside the caught future, so a panic before its first await is
    // caught too.
    let work = AssertUnwindSafe(async move { reconcile(o, c).await });
    let payload = match work.catch_unwind().await {
        Ok(result) => return result,
        Err(payload) => payload,
    };
    let message = panic_message(payload.as_ref());
    tracing::error!(%message, "a reconciliation panicked; its object failed, the others go on");
    let report = AssertUnwindSafe(failed(object, message.clone(), ctx));
    if report.catch_unwind().await.is_err() {
        tracing::error!("reporting a panicked reconciliation panicked too");
    }
    Err(Error::Panicked { message })
}

/// What a panic said, cut to [`MAX_MESSAGE`] characters.
pub fn panic_message(payload: &(dyn Any + Send)) -> String {
    let said = payload
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "a panic without a message".into());
    said.chars().take(MAX_MESSAGE).collect()
}

/// What a panicked reconciliation says on its object: the `OperatorError` condition of type
/// `condition` (False), and the note of the condition and the Event, which names the kind
/// and what happens next (`after`).
fn failed_condition(
    kind: &str,
    condition_type: ConditionType,
    previous: &[Condition],
    generation: Option<i64>,
    (message, after, now): (&str, &str, &str),
) -> (Condition, String) {
    let note = format!(
        "the operator failed on this {kind} ({message}); other objects are served as before; {after}"
    );
    let failed = condition(
        previous,
        condition_type,
        false,
        Reason::OperatorError,
        &note,
        generation,
        now,
    );
    (failed, note)
}

/// A Pipeline whose reconciliation panicked: `Ready` turns False until one succeeds (tried
/// again every 5 minutes), so no run pins its plan meanwhile.
fn pipeline_failure(pipeline: &Pipeline, message: &str, now: &str) -> (PipelineStatus, String) {
    let previous = pipeline.status.as_ref().map(|s| s.conditions.as_slice());
    let (failed, note) = failed_condition(
        "Pipeline",
        ConditionType::Ready,
        previous.unwrap_or_default(),
        pipeline.metadata.generation,
        (message, "it is tried again every 5 minutes", now),
    );
    let status = PipelineStatus {
        conditions: vec![failed],
        ..Default::default()
    };
    (status, note)
}

/// A run whose reconciliation panicked fails: it would panic again on every pass.
fn run_failure(run: &PipelineRun, message: &str, now: &str) -> (PipelineRunStatus, String) {
    let previous = run.status.as_ref().map(|s| s.conditions.as_slice());
    let (failed, note) = failed_condition(
        "PipelineRun",
        ConditionType::Succeeded,
        previous.unwrap_or_default(),
        run.metadata.generation,
        (message, "the run failed", now),
    );
    let status = PipelineRunStatus {
        phase: Some(RunPhase::Failed),
        completion_time: Some(now.to_string()),
        conditions: vec![failed],
        ..Default::default()
    };
    (status, note)
}

/// A Connection whose reconciliation panicked is not Ready until its spec changes.
fn connection_failure(
    connection: &Connection,
    message: &str,
    now: &str,
) -> (ConnectionStatus, String) {
    let previous = connection.status.as_ref().map(|s| s.conditions.as_slice());
    let (failed, note) = failed_condition(
        "Connection",
        ConditionType::Ready,
        previous.unwrap_or_default(),
        connection.metadata.generation,
        (message, "edit it to check it again", now),
    );
    let status = ConnectionStatus {
        observed_generation: connection.metadata.generation,
        conditions: vec![failed],
        ..Default::default()
    };
    (status, note)
}

/// Reports a Pipeline whose reconciliation panicked.
pub fn pipeline_failed(
    pipeline: Arc<Pipeline>,
    message: String,
    ctx: Arc<Operator>,
) -> BoxFuture<'static, ()> {
    async move {
        let failure = pipeline_failure(&pipeline, &message, &now_rfc3339());
        report(&ctx, pipeline.as_ref(), failure).await;
    }
    .boxed()
}

/// Reports a run whose reconciliation panicked, and records that it failed.
pub fn run_failed(
    run: Arc<PipelineRun>,
    message: String,
    ctx: Arc<Operator>,
) -> BoxFuture<'static, ()> {
    async move {
        record_failed(&ctx, run.as_ref()).await;
        let failure = run_failure(&run, &message, &now_rfc3339());
        report(&ctx, run.as_ref(), failure).await;
    }
    .boxed()
}

/// Reports a Connection whose reconciliation panicked.
pub fn connection_failed(
    connection: Arc<Connection>,
    message: String,
    ctx: Arc<Operator>,
) -> BoxFuture<'static, ()> {
    async move {
        let failure = connection_failure(&connection, &message, &now_rfc3339());
        report(&ctx, connection.as_ref(), failure).await;
    }
    .boxed()
}

/// The operator's record of a run whose reconciliation panicked says it failed: the record,
/// not the status, is what ends a run (see `synqx_api::run_record`). A failure to write it is
/// logged; the run is then tried again after [`RETRY_PANICKED`].
async fn record_failed(ctx: &Operator, run: &PipelineRun) {
    let record = RunRecord {
        phase: Some(RunPhase::Failed),
        ..RunRecord::of(run).unwrap_or_default()
    };
    let patch = json!({"metadata": {"annotations": {RECORD_ANNOTATION: record.to_annotation()}}});
    let runs: Api<PipelineRun> =
        Api::namespaced(ctx.client.clone(), &run.namespace().unwrap_or_default());
    if let Err(error) = runs
        .patch(
            &run.name_any(),
            &PatchParams::default(),
            &Patch::Merge(&patch),
        )
        .await
    {
        tracing::warn!(%error, run = run.name_any(), "recording that a panicked run failed");
    }
}

/// Applies the failure's status to `object` under [`FIELD_MANAGER`] (the one writer besides
/// the object's controller, whose forced apply takes the fields back once a reconciliation
/// succeeds) and publishes a Warning Event; a failure of either is logged (the error metric
/// already counts the panic).
async fn report<K, S>(ctx: &Operator, object: &K, (status, note): (S, String))
where
    K: Resource<DynamicType = (), Scope = k8s_openapi::NamespaceResourceScope>
        + Clone
        + serde::de::DeserializeOwned
        + std::fmt::Debug,
    S: serde::Serialize + std::fmt::Debug,
{
    let body = StatusApply::of::<K>(status);
    let api: Api<K> = Api::namespaced(ctx.client.clone(), &object.namespace().unwrap_or_default());
    let params = PatchParams::apply(FIELD_MANAGER).force();
    if let Err(error) = api
        .patch_status(&object.name_any(), &params, &Patch::Apply(&body))
        .await
    {
        tracing::warn!(%error, object = object.name_any(), "recording a panicked reconciliation");
    }
    let reason = EventReason::Condition(Reason::OperatorError);
    ctx.event(&object.object_ref(&()), true, reason, note);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_panic_says_what_it_said_within_bounds() {
        let caught = std::panic::catch_unwind(|| panic!("index {} out of range", 7));
        let payload = caught.expect_err("it panicked");
        assert_eq!(panic_message(payload.as_ref()), "index 7 out of range");
        let long = std::panic::catch_unwind(|| panic!("{}", "x".repeat(1000)));
        let payload = long.expect_err("it panicked");
        assert_eq!(panic_message(payload.as_ref()).len(), MAX_MESSAGE);
        let odd = std::panic::catch_unwind(|| std::panic::panic_any(42_u8));
        let payload = odd.expect_err("it panicked");
        assert_eq!(panic_message(payload.as_ref()), "a panic without a message");
    }

    /// The typed status of each kind carries the failed condition and only the fields this
    /// writer owns: phase and completion of a run, the generation of a Connection.
    #[test]
    fn a_panicked_object_gets_only_the_fields_its_failure_owns() {
        let now = "2026-12-03T10:00:00Z";
        let run: PipelineRun = serde_json::from_value(serde_json::json!({
            "apiVersion": "synqx.io/v1alpha1", "kind": "PipelineRun",
            "metadata": {"name": "r", "namespace": "etl", "generation": 2},
            "spec": {"pipelineRef": {"name": "p"}},
            "status": {"phase": "Running", "progress": "1/3"},
        }))
        .expect("a run");
        let (status, note) = run_failure(&run, "boom", now);
        let body = serde_json::to_value(StatusApply::of::<PipelineRun>(status)).expect("json");
        let condition = &body["status"]["conditions"][0];
        assert_eq!(body["kind"], "PipelineRun");
        assert_eq!(body["status"]["phase"], "Failed");
        assert_eq!(body["status"]["completionTime"], now);
        assert_eq!(condition["type"], "Succeeded");
        assert_eq!(condition["status"], "False");
        assert_eq!(condition["reason"], "OperatorError");
        assert_eq!(condition["message"], note);
        assert!(note.contains("this PipelineRun (boom)") && note.ends_with("the run failed"));
        let mut fields: Vec<&String> = body["status"].as_object().expect("status").keys().collect();
        fields.sort();
        assert_eq!(fields, ["completionTime", "conditions", "phase"]);

        let connection: Connection = serde_json::from_value(serde_json::json!({
            "apiVersion": "synqx.io/v1alpha1", "kind": "Connection",
            "metadata": {"name": "db", "namespace": "etl", "generation": 5},
            "spec": {"sqlite": {"path": "/tmp/db.sqlite"}},
        }))
        .expect("a connection");
        let (status, _) = connection_failure(&connection, "boom", now);
        let body = serde_json::to_value(&status).expect("json");
        assert_eq!(body["observedGeneration"], 5);
        assert_eq!(body["conditions"][0]["type"], "Ready");
        assert_eq!(body.as_object().map(|o| o.len()), Some(2));
    }
}
