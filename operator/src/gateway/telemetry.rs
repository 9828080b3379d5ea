//! `POST /internal/v1/telemetry`: where step pods report their counters, phase and log lines
//! while they run. A report is accepted only from the pod that runs that very attempt: its
//! token (audience `synqx`, projected into the pod) is reviewed with a TokenReview, which
//! names the pod it is bound to; that pod must be the one its Job runs, and that Job the one
//! the run controller created for the run, step and attempt the report names ([`bind`]).
//! A binding is kept a while ([`bindings`]), so a pod's later reports cost no API call.
//! Log lines are stored ([`super::logs`]) and go to the run's followers at once; counters
//! reach the run's status through
//! [`super::counters`], at most one write per run a second.

use std::sync::Arc;
use std::time::SystemTime;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use kube::runtime::reflector::ObjectRef;
use kube::{Api, Client};
use synqx_api::PipelineRun;
use synqx_api::telemetry::{AUDIENCE, MAX_LINES, TelemetryReport};
use tokio::time::Instant;

use super::auth::{self, Denied};
use super::logs::{LogKey, StoreError};
use super::{Gateway, failure};
use crate::names;
pub use bindings::Bindings;
use bindings::{Binding, TokenHash};

mod bindings;

/// The longest report body the route reads: room for [`MAX_LINES`] lines of the longest kind,
/// escaped as JSON.
pub const MAX_BODY_BYTES: usize = 16 * 1024 * 1024;
const POD_NAME: &str = "authentication.kubernetes.io/pod-name";
const POD_UID: &str = "authentication.kubernetes.io/pod-uid";
const SERVICE_ACCOUNT_PREFIX: &str = "system:serviceaccount:";

/// The pod a reviewed token is bound to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PodToken {
    pub namespace: String,
    pub user: String,
    pub pod_name: String,
    pub pod_uid: String,
}

/// Why a token that the API server accepted may not report for an attempt (403).
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum NotBound {
    #[error(
        "the token is not bound to a pod (no {POD_NAME} in its review): step pods send the projected token of audience {AUDIENCE} the operator mounts"
    )]
    NoPod,
    #[error("user \"{user}\" is not a service account")]
    NotAServiceAccount { user: String },
    #[error("the token is of namespace {token}, the report of namespace {report}")]
    OtherNamespace { token: String, report: String },
    #[error("pod {pod} of the token no longer exists (or was replaced)")]
    PodGone { pod: String },
    #[error("PipelineRun {run} is not known to this operator")]
    UnknownRun { run: String },
    #[error(
        "pod {pod} is not run by Job {job}, which runs step \"{step}\" attempt {attempt} of PipelineRun {run}"
    )]
    OtherAttempt {
        pod: String,
        job: String,
        run: String,
        step: String,
        attempt: u32,
    },
    #[error("Job {job} was not created by the operator for PipelineRun {run}")]
    ForeignJob { job: String, run: String },
}

/// Reviews a step pod's token for the audience `synqx`: the pod it is bound to.
pub async fn review(client: &Client, token: &str) -> Result<PodToken, Denied> {
    let status = auth::review_token(client, token, Some(vec![AUDIENCE.to_string()])).await?;
    if status.authenticated != Some(true) {
        let why = status
            .error
            .filter(|e| !e.is_empty())
            .unwrap_or_else(|| "forged, expired, for another audience, or of a deleted pod".into());
        return Err(Denied::Unauthenticated(format!(
            "the API server does not accept the token for audience {AUDIENCE}: {why}"
        )));
    }
    // An API server that ignores the audiences asked for answers with those it checked.
    if !status.audiences.iter().flatten().any(|a| a == AUDIENCE) {
        return Err(Denied::Unauthenticated(format!(
            "the token is not for audience {AUDIENCE}"
        )));
    }
    let user = status.user.unwrap_or_default();
    let username = user.username.unwrap_or_default();
    let extra = user.extra.unwrap_or_default();
    let first = |key: &str| extra.get(key).and_then(|v| v.first()).cloned();
    pod_token(&username, first(POD_NAME), first(POD_UID))
        .map_err(|e| Denied::Unauthenticated(e.to_string()))
}

/// The pod of a reviewed token from its user name and extras.
fn pod_token(
    username: &str,
    pod_name: Option<String>,
    pod_uid: Option<String>,
) -> Result<PodToken, NotBound> {
    let namespace = username
        .strip_prefix(SERVICE_ACCOUNT_PREFIX)
        .and_then(|rest| rest.split_once(':'))
        .map(|(ns, _)| ns.to_string())
        .ok_or_else(|| NotBound::NotAServiceAccount {
            user: username.to_string(),
        })?;
    let (Some(pod_name), Some(pod_uid)) = (pod_name, pod_uid) else {
        return Err(NotBound::NoPod);
    };
    Ok(PodToken {
        namespace,
        user: username.to_string(),
        pod_name,
        pod_uid,
    })
}

/// Whether the pod of `token` runs the attempt `report` names: the pod still is the one the
/// token was issued for, its controller is the Job the run controller names for that run,
/// step and attempt, and that Job's controller is the run.
pub fn bind(
    report: &TelemetryReport,
    token: &PodToken,
    pod: &Pod,
    job: &Job,
    run: &PipelineRun,
) -> Result<(), NotBound> {
    if token.namespace != report.namespace {
        return Err(NotBound::OtherNamespace {
            token: token.namespace.clone(),
            report: report.namespace.clone(),
        });
    }
    if pod.metadata.uid.as_deref() != Some(token.pod_uid.as_str()) {
        return Err(NotBound::PodGone {
            pod: token.pod_name.clone(),
        });
    }
    let run_uid = run.metadata.uid.as_deref().unwrap_or_default();
    let expected = names::job_name(&report.run, run_uid, &report.step, report.attempt);
    let other = || NotBound::OtherAttempt {
        pod: token.pod_name.clone(),
        job: expected.clone(),
        run: report.run.clone(),
        step: report.step.clone(),
        attempt: report.attempt,
    };
    let owner = controller(pod.metadata.owner_references.as_deref()).ok_or_else(other)?;
    let job_uid = job.metadata.uid.as_deref().unwrap_or_default();
    if owner.kind != "Job"
        || owner.name != expected
        || job.metadata.name.as_deref() != Some(expected.as_str())
        || owner.uid != job_uid
    {
        return Err(other());
    }
    let created_by_run = controller(job.metadata.owner_references.as_deref())
        .is_some_and(|o| o.kind == "PipelineRun" && !run_uid.is_empty() && o.uid == run_uid);
    if !created_by_run {
        return Err(NotBound::ForeignJob {
            job: expected,
            run: report.run.clone(),
        });
    }
    Ok(())
}

fn controller(owners: Option<&[OwnerReference]>) -> Option<&OwnerReference> {
    owners?.iter().find(|o| o.controller == Some(true))
}

impl Gateway {
    /// The pod, its Job and the run a report names, read to bind the report to the token.
    /// Returns the run's Pipeline.
    async fn bound(&self, report: &TelemetryReport, token: &PodToken) -> Result<String, Response> {
        let forbidden = |e: NotBound| failure(StatusCode::FORBIDDEN, "Forbidden", e.to_string());
        let unavailable = |what: &str, e: kube::Error| {
            failure(
                StatusCode::SERVICE_UNAVAILABLE,
                "ServiceUnavailable",
                format!("the gateway could not read {what}: {e}; try again"),
            )
        };
        if token.namespace != report.namespace {
            return Err(forbidden(NotBound::OtherNamespace {
                token: token.namespace.clone(),
                report: report.namespace.clone(),
            }));
        }
        let (_, runs) = self.stores(&report.namespace).await?;
        let run = runs
            .get(&ObjectRef::new(&report.run).within(&report.namespace))
            .ok_or_else(|| {
                forbidden(NotBound::UnknownRun {
                    run: report.run.clone(),
                })
            })?;
        let pods: Api<Pod> = Api::namespaced(self.client.clone(), &report.namespace);
        let pod = pods
            .get_opt(&token.pod_name)
            .await
            .map_err(|e| unavailable("the pod", e))?
            .ok_or_else(|| {
                forbidden(NotBound::PodGone {
                    pod: token.pod_name.clone(),
                })
            })?;
        let run_uid = run.metadata.uid.as_deref().unwrap_or_default();
        let job_name = names::job_name(&report.run, run_uid, &report.step, report.attempt);
        let jobs: Api<Job> = Api::namespaced(self.client.clone(), &report.namespace);
        let job = jobs
            .get_opt(&job_name)
            .await
            .map_err(|e| unavailable("the Job", e))?
            .unwrap_or_default();
        bind(report, token, &pod, &job, &run).map_err(forbidden)?;
        Ok(run.spec.pipeline_ref.name.clone())
    }

    /// Stores the report's lines before the pod hears 204, and ends the attempt's log with
    /// its last report. A store that fails does not refuse the report: its counters matter
    /// more than its lines, and a full volume must not stall every run's status.
    async fn store_lines(&self, report: &TelemetryReport, pipeline: &str) {
        let Some(logs) = &self.logs else {
            return;
        };
        let stored = async {
            let key = LogKey::new(
                &report.namespace,
                pipeline,
                &report.run,
                &report.step,
                report.attempt,
            )?;
            logs.append(&key, &report.lines).await?;
            if report.phase.is_some_and(|p| p.is_final()) {
                logs.finish(&key).await?;
            }
            Ok::<_, StoreError>(())
        };
        if let Err(error) = stored.await {
            tracing::warn!(%error, "storing step log lines failed; they are shown live only");
        }
    }
}

/// The route: 204 once the report is taken.
pub async fn receive(
    State(gateway): State<Arc<Gateway>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let token = match auth::token(&headers) {
        Ok(token) => token,
        Err(denied) => return denied.into_response(),
    };
    let hash = TokenHash::of(&token);
    let alive = |pod: &PodToken| {
        gateway
            .stores
            .has_pod(&pod.namespace, &pod.pod_name, &pod.pod_uid)
    };
    let cached = gateway.bindings.pod(hash, Instant::now(), alive);
    let pod_token = match cached {
        Some(pod_token) => pod_token,
        None => match review(&gateway.client, &token).await {
            Ok(pod_token) => pod_token,
            Err(denied) => {
                tracing::info!(%denied, "telemetry refused");
                return denied.into_response();
            }
        },
    };
    let mut report: TelemetryReport = match serde_json::from_slice(&body) {
        Ok(report) => report,
        Err(e) => {
            return failure(
                StatusCode::BAD_REQUEST,
                "BadRequest",
                format!("the body is not a telemetry report: {e}"),
            );
        }
    };
    // The pipeline of the run is what the bound attempt's log is stored under.
    let pipeline = match gateway.bindings.pipeline(hash, &report) {
        Some(pipeline) => pipeline,
        None => match gateway.bound(&report, &pod_token).await {
            Ok(pipeline) => {
                let exp = bindings::expiry(&token);
                let (now, wall) = (Instant::now(), SystemTime::now());
                let binding = Binding::new(pod_token, pipeline.clone(), &report);
                gateway.bindings.keep(hash, exp, binding, now, wall);
                pipeline
            }
            Err(refused) => {
                tracing::info!(pod = %pod_token.pod_name, run = %report.run, step = %report.step, "telemetry refused: not bound");
                return refused;
            }
        },
    };
    report.lines.truncate(MAX_LINES);
    gateway.store_lines(&report, &pipeline).await;
    let lines = std::mem::take(&mut report.lines);
    gateway.hub.log(
        &report.namespace,
        &report.run,
        &report.step,
        report.attempt,
        lines,
    );
    gateway.counters.take(report);
    StatusCode::NO_CONTENT.into_response()
}

#[cfg(test)]
mod tests;
