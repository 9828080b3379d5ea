//! `GET …/pipelineruns/{name}/graph`: the graph a run was planned with, from the plan its
//! pinned ControllerRevision holds, so the run page draws the steps the run has even after
//! its Pipeline changed. Plans never change once stored, so each is read once
//! ([`crate::revision::Plans`]).

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use k8s_openapi::api::apps::v1::ControllerRevision;
use kube::Api;
use kube::runtime::reflector::ObjectRef;
use synqx_api::PipelineRun;
use synqx_api::gateway::GraphView;
use synqx_api::run_record::RunRecord;
use synqx_web::failure;

use super::Gateway;
use super::auth::Access;

/// The revision `run` pinned: the operator's record of it, else its status (which only the
/// operator writes once step pods report through the gateway).
pub fn pinned(run: &PipelineRun) -> Option<String> {
    RunRecord::of(run)
        .and_then(|record| record.revision)
        .or_else(|| run.status.as_ref().and_then(|s| s.revision.clone()))
        .filter(|r| !r.is_empty())
}

pub async fn run_graph(
    State(gateway): State<Arc<Gateway>>,
    Path((namespace, name)): Path<(String, String)>,
    headers: HeaderMap,
) -> Response {
    if let Err(refused) = gateway
        .authorize(&headers, &Access::get_run(&namespace, &name))
        .await
    {
        return refused;
    }
    let runs = match gateway.stores(&namespace).await {
        Ok((_, runs)) => runs,
        Err(refused) => return refused,
    };
    let not_found = |message: String| failure(StatusCode::NOT_FOUND, "NotFound", message);
    let Some(run) = runs.get(&ObjectRef::new(&name).within(&namespace)) else {
        return not_found(format!(
            "PipelineRun {namespace}/{name} does not exist (or is not served by this gateway)"
        ));
    };
    let Some(revision) = pinned(&run) else {
        return not_found(format!(
            "PipelineRun {namespace}/{name} has not pinned a plan yet: its graph is its Pipeline's"
        ));
    };
    let api: Api<ControllerRevision> = Api::namespaced(gateway.client.clone(), &namespace);
    match gateway.plans.load(&api, &namespace, &revision).await {
        Ok(Some(plan)) => axum::Json(GraphView::of_plan(&plan, &revision)).into_response(),
        Ok(None) => not_found(format!(
            "the plan of PipelineRun {namespace}/{name} (ControllerRevision {revision}) is gone: its Pipeline was deleted"
        )),
        Err(error) => failure(
            StatusCode::SERVICE_UNAVAILABLE,
            "ServiceUnavailable",
            format!(
                "the gateway could not read ControllerRevision {revision} of PipelineRun {namespace}/{name}: {error}; try again"
            ),
        ),
    }
}
