//! What can stop a step's pod before or around its work: finding its plan on the API server,
//! and writing its entry of the run's status. Each keeps the API's error as its source; the
//! message says what was read or written and what to do. The caller puts the attempt
//! (`run/step#attempt`) in front.

use super::status::explain;

/// Why the plan of the attempt could not be found.
#[derive(Debug, thiserror::Error)]
pub enum PlanError {
    #[error(
        "PipelineRun \"{run}\" does not exist in namespace \"{namespace}\": it was deleted, so there is nothing to run"
    )]
    RunGone { run: String, namespace: String },
    #[error("cannot read the PipelineRun: {}", explain(.0, "get on pipelineruns.synqx.io"))]
    ReadRun(#[source] kube::Error),
    #[error(
        "the Job names no --revision and the operator has pinned no revision for the PipelineRun (annotation synqx.io/record), so its plan is unknown; check the operator's logs"
    )]
    NoRevision,
    #[error(
        "ControllerRevision \"{0}\" (the run's plan) does not exist: it was deleted; start a new run of the Pipeline"
    )]
    RevisionGone(String),
    #[error("cannot read ControllerRevision \"{revision}\": {}", explain(.source, "get on controllerrevisions.apps"))]
    ReadRevision {
        revision: String,
        #[source]
        source: kube::Error,
    },
    #[error(
        "ControllerRevision \"{0}\" has no data, so it holds no plan: it was not written by the SynqX operator; start a new run of the Pipeline"
    )]
    NoData(String),
    #[error(
        "ControllerRevision \"{name}\" does not hold a SynqX plan: {source} (are the operator and the runner image of the same SynqX version?)"
    )]
    NotAPlan {
        name: String,
        #[source]
        source: serde_json::Error,
    },
    #[error(
        "$SYNQX_STEP_PLAN does not hold the plan of a step: {0} (the operator that created the Job and the runner image are of different SynqX versions; run the operator's runner image)"
    )]
    NotAStepPlan(#[source] serde_json::Error),
    #[error(
        "the pod has no $SYNQX_STEP_PLAN and no Kubernetes credentials to read its plan with: its Job was not created by the SynqX operator"
    )]
    NoStepPlan,
    #[error(
        "the plan of PipelineRun \"{run}\" has no step \"{step}\" (steps: {steps}); the Job's --step argument must name one of them"
    )]
    NoStep {
        run: String,
        step: String,
        steps: String,
    },
}

/// Why the step's counters did not reach the run's status.
#[derive(Debug, thiserror::Error)]
pub enum StatusWriteError {
    #[error("{}", explain(.0, "patch on pipelineruns.synqx.io/status"))]
    Api(#[source] kube::Error),
    #[error("the Kubernetes API did not answer within {0}s")]
    Timeout(u64),
    #[error(
        "the gateway {url} cannot be reached: {source} (check the operator's --gateway-url and the pod's network policy)"
    )]
    Gateway {
        url: String,
        #[source]
        source: reqwest::Error,
    },
    #[error("the gateway {url} refused the report (HTTP {code}): {message}")]
    Refused {
        url: String,
        code: u16,
        message: String,
    },
    #[error("cannot read the pod's token for the gateway at {}: {source} (the operator mounts it as a projected volume)", path.display())]
    Token {
        path: std::path::PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot write the report as JSON: {0}")]
    Encode(#[source] serde_json::Error),
}
