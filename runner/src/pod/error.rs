//! What can stop a step's pod before or around its work: its plan missing from its
//! environment, and its counters not reaching the gateway. Each keeps its cause as its
//! source; the message says what failed and what to do. The caller puts the attempt
//! (`run/step#attempt`) in front.

/// Why the plan of the attempt could not be found.
#[derive(Debug, thiserror::Error)]
pub enum PlanError {
    #[error(
        "$SYNQX_STEP_PLAN does not hold the plan of a step: {0} (the operator that created the Job and the runner image are of different SynqX versions; run the operator's runner image)"
    )]
    NotAStepPlan(#[source] serde_json::Error),
    #[error(
        "the pod has no $SYNQX_STEP_PLAN, so no plan to run: its Job was not created by the SynqX operator (a step runs only in the Jobs the operator creates for a PipelineRun)"
    )]
    NoStepPlan,
    #[error(
        "the Job's --revision names ControllerRevision \"{named}\" but $SYNQX_STEP_PLAN holds the plan of \"{carried}\": the Job was not made by one operator; start a new run of the Pipeline"
    )]
    OtherRevision { named: String, carried: String },
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

/// Whether the API server answered 404.
pub(crate) fn is_not_found(e: &kube::Error) -> bool {
    matches!(e, kube::Error::Api(s) if s.is_not_found())
}

/// An API error as one readable line, with what to do: the server's message and code (not the
/// whole Status), the permission the runner's service account lacks when it was forbidden, or
/// a pointer to the network when the server could not be reached. `permission` names the verb
/// and resource, e.g. `get on pipelineruns.synqx.io`.
pub(crate) fn explain(e: &kube::Error, permission: &str) -> String {
    match e {
        kube::Error::Api(s) if s.is_forbidden() => format!(
            "{} (HTTP {}): the pod's service account needs {permission}",
            s.message, s.code
        ),
        kube::Error::Api(s) if !s.message.is_empty() => {
            format!("{} (HTTP {})", s.message, s.code)
        }
        kube::Error::Api(s) => format!("HTTP {} {}", s.code, s.reason),
        kube::Error::HyperError(_) | kube::Error::Service(_) => format!(
            "{e}: the Kubernetes API cannot be reached from here; check the pod's network policy and the API server"
        ),
        other => other.to_string(),
    }
}
