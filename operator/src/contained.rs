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
use synqx_api::run::RunPhase;
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

/// How a panicked reconciliation shows on its object: the condition it turns False, what
/// happens next, and status fields besides the condition.
struct Failure<'a> {
    kind: &'a str,
    condition: ConditionType,
    previous: Vec<synqx_api::condition::Condition>,
    after: &'a str,
    fields: serde_json::Value,
}

/// A Pipeline whose reconciliation panicked: `Ready` turns False until one succeeds (tried
/// again every 5 minutes), so no run pins its plan meanwhile.
pub fn pipeline_failed(
    pipeline: Arc<Pipeline>,
    message: String,
    ctx: Arc<Operator>,
) -> BoxFuture<'static, ()> {
    async move {
        let failure = Failure {
            kind: "Pipeline",
            condition: ConditionType::Ready,
            previous: pipeline.status.clone().unwrap_or_default().conditions,
            after: "it is tried again every 5 minutes",
            fields: json!({}),
        };
        report(&ctx, pipeline.as_ref(), failure, &message).await;
    }
    .boxed()
}

/// A run whose reconciliation panicked fails: it would panic again on every pass.
pub fn run_failed(
    run: Arc<PipelineRun>,
    message: String,
    ctx: Arc<Operator>,
) -> BoxFuture<'static, ()> {
    async move {
        let failure = Failure {
            kind: "PipelineRun",
            condition: ConditionType::Succeeded,
            previous: run.status.clone().unwrap_or_default().conditions,
            after: "the run failed",
            fields: json!({"phase": "Failed", "completionTime": now_rfc3339()}),
        };
        record_failed(&ctx, run.as_ref()).await;
        report(&ctx, run.as_ref(), failure, &message).await;
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

/// A Connection whose reconciliation panicked is not Ready until its spec changes.
pub fn connection_failed(
    connection: Arc<Connection>,
    message: String,
    ctx: Arc<Operator>,
) -> BoxFuture<'static, ()> {
    async move {
        let failure = Failure {
            kind: "Connection",
            condition: ConditionType::Ready,
            previous: connection.status.clone().unwrap_or_default().conditions,
            after: "edit it to check it again",
            fields: json!({"observedGeneration": connection.metadata.generation}),
        };
        report(&ctx, connection.as_ref(), failure, &message).await;
    }
    .boxed()
}

/// Applies the failure's condition and fields to `object` under [`FIELD_MANAGER`] and
/// publishes a Warning Event; a failure of either is logged (the error metric already counts
/// the panic).
async fn report<K>(ctx: &Operator, object: &K, failure: Failure<'_>, message: &str)
where
    K: Resource<DynamicType = (), Scope = k8s_openapi::NamespaceResourceScope>
        + Clone
        + serde::de::DeserializeOwned
        + std::fmt::Debug,
{
    let note = format!(
        "the operator failed on this {} ({message}); other objects are served as before; {}",
        failure.kind, failure.after
    );
    let failed = condition(
        &failure.previous,
        failure.condition,
        false,
        Reason::OperatorError,
        &note,
        object.meta().generation,
        &now_rfc3339(),
    );
    let mut status = failure.fields;
    status["conditions"] = json!([failed]);
    let namespace = object.namespace().unwrap_or_default();
    let api: Api<K> = Api::namespaced(ctx.client.clone(), &namespace);
    let body = json!({
        "apiVersion": K::api_version(&()),
        "kind": K::kind(&()),
        "status": status,
    });
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
}
