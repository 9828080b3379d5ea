//! Why a step's pod cannot start, and ending its Job with that reason instead of letting
//! the step hang until its deadline: an image that cannot be pulled, a missing Secret key
//! or ConfigMap, a pod that no node can take, a pod the Job controller cannot create (a
//! missing service account).
//!
//! [`classify`] is pure. [`inspect`] looks at the cached pods (and, when there are none once
//! the start timeout has passed, the Job's `FailedCreate` Events) of an active Job that has
//! no ready pod; [`fail`] records the
//! reason on the Job (annotation [`ANNOTATION`]) and lets the Job controller end it by
//! setting its `activeDeadlineSeconds` to 1, so the Job ends `Failed` like any other and
//! the reason survives an operator restart.

use std::fmt;
use std::time::Duration;

use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{Event, Pod};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::api::{ListParams, Patch, PatchParams};
use kube::{Api, Client, ResourceExt};
use serde_json::json;

/// The annotation on a Job that the operator ended because its pod could not start.
pub const ANNOTATION: &str = "synqx.io/start-failure";

/// Waiting reasons that never clear by themselves: fail at once.
const PERMANENT: &[&str] = &["InvalidImageName", "ErrImageNeverPull"];
/// Waiting reasons that may clear (a registry comes back, a Secret is created): fail once
/// they have lasted the start timeout.
const STUCK: &[&str] = &[
    "ErrImagePull",
    "ImagePullBackOff",
    "CreateContainerConfigError",
    "CreateContainerError",
    "RunContainerError",
];

/// Why the pod of a step cannot start.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StartFailure {
    /// The kubelet's or controller's reason, e.g. `ImagePullBackOff`.
    pub reason: String,
    pub message: String,
}

impl fmt::Display for StartFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "the pod could not start: {}: {}",
            self.reason, self.message
        )
    }
}

/// What is known about an active Job that has no ready pod.
pub struct Observed<'a> {
    pub pods: &'a [Pod],
    /// Messages of the Job's `FailedCreate` Events, oldest first.
    pub failed_creates: &'a [String],
    /// Seconds since the Job was created.
    pub job_age: i64,
    /// The current time, in seconds since the epoch.
    pub now: i64,
}

/// The reason a Job's pod cannot start, once it has lasted `timeout` (at once for reasons
/// that never clear); `None` while the pod is starting or running normally.
pub fn classify(observed: &Observed<'_>, timeout: Duration) -> Option<StartFailure> {
    let timeout = i64::try_from(timeout.as_secs()).unwrap_or(i64::MAX);
    if observed.pods.is_empty() {
        let message = observed.failed_creates.last()?;
        return (observed.job_age >= timeout).then(|| StartFailure {
            reason: "FailedCreate".into(),
            message: message.clone(),
        });
    }
    for pod in observed.pods {
        let age = age(pod.metadata.creation_timestamp.as_ref(), observed.now);
        let status = pod.status.clone().unwrap_or_default();
        let waiting = status
            .container_statuses
            .iter()
            .flatten()
            .filter_map(|c| c.state.as_ref()?.waiting.clone());
        for w in waiting {
            let reason = w.reason.unwrap_or_default();
            let permanent = PERMANENT.contains(&reason.as_str());
            if permanent || (STUCK.contains(&reason.as_str()) && age >= timeout) {
                return Some(StartFailure {
                    reason,
                    message: w.message.unwrap_or_default(),
                });
            }
        }
        let unschedulable = status.conditions.iter().flatten().find(|c| {
            c.type_ == "PodScheduled"
                && c.status == "False"
                && c.reason.as_deref() == Some("Unschedulable")
        });
        if let Some(c) = unschedulable
            && age >= timeout
        {
            return Some(StartFailure {
                reason: "Unschedulable".into(),
                message: c.message.clone().unwrap_or_default(),
            });
        }
    }
    None
}

fn age(created: Option<&Time>, now: i64) -> i64 {
    created.map_or(0, |t| now.saturating_sub(t.0.as_second()))
}

/// The reason the operator recorded on a Job it ended, if it did.
pub fn recorded(job: &Job) -> Option<String> {
    job.annotations().get(ANNOTATION).cloned()
}

/// Looks at an active Job whose pod is not ready, with its pods as the cache holds them;
/// `None` when it is fine, already ended by the operator, or too young to judge.
pub async fn inspect(
    client: &Client,
    job: &Job,
    pods: &[Pod],
    timeout: Duration,
) -> Result<Option<StartFailure>, kube::Error> {
    let status = job.status.clone().unwrap_or_default();
    if recorded(job).is_some() || status.ready.unwrap_or(0) > 0 {
        return Ok(None);
    }
    let now = chrono::Utc::now().timestamp();
    let job_age = age(job.metadata.creation_timestamp.as_ref(), now);
    // A pod is given a few seconds to be created and scheduled before anyone looks.
    if job_age < 5 {
        return Ok(None);
    }
    let mut failed_creates = Vec::new();
    // Without a pod, only the Job controller's Events say why, and they count only once the
    // start timeout has passed: read them then, not on every look.
    let timeout_secs = i64::try_from(timeout.as_secs()).unwrap_or(i64::MAX);
    if pods.is_empty() && job_age >= timeout_secs {
        let name = job.name_any();
        let events: Api<Event> =
            Api::namespaced(client.clone(), &job.namespace().unwrap_or_default());
        let mut found = events
            .list(&ListParams::default().fields(&format!(
                "involvedObject.kind=Job,involvedObject.name={name},reason=FailedCreate"
            )))
            .await?
            .items;
        found.sort_by_key(|e| e.last_timestamp.as_ref().map(|t| t.0.as_second()));
        failed_creates = found.into_iter().filter_map(|e| e.message).collect();
    }
    Ok(classify(
        &Observed {
            pods,
            failed_creates: &failed_creates,
            job_age,
            now,
        },
        timeout,
    ))
}

/// Records why the Job's pod cannot start and has the Job controller end it now.
pub async fn fail(client: &Client, job: &Job, failure: &StartFailure) -> Result<(), kube::Error> {
    let jobs: Api<Job> = Api::namespaced(client.clone(), &job.namespace().unwrap_or_default());
    let patch = json!({
        "metadata": {"annotations": {ANNOTATION: failure.to_string()}},
        "spec": {"activeDeadlineSeconds": 1},
    });
    jobs.patch(
        &job.name_any(),
        &PatchParams::default(),
        &Patch::Merge(&patch),
    )
    .await?;
    tracing::info!(job = %job.name_any(), reason = %failure.reason, message = %failure.message, "ending a step Job whose pod cannot start");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: i64 = 1_800_000_000;

    fn pod(yaml: &str) -> Pod {
        serde_yaml::from_str(yaml).unwrap_or_else(|e| panic!("{e}"))
    }

    fn waiting(reason: &str, created_ago: i64) -> Pod {
        let created = chrono::DateTime::from_timestamp(NOW - created_ago, 0)
            .unwrap_or_default()
            .to_rfc3339();
        pod(&format!(
            r#"
metadata: {{name: p, creationTimestamp: "{created}"}}
status:
  phase: Pending
  containerStatuses:
    - name: step
      image: x
      imageID: ""
      ready: false
      restartCount: 0
      state: {{waiting: {{reason: {reason}, message: "the {reason} message"}}}}
"#
        ))
    }

    fn observe(pods: &[Pod], failed_creates: &[String], job_age: i64) -> Option<StartFailure> {
        classify(
            &Observed {
                pods,
                failed_creates,
                job_age,
                now: NOW,
            },
            Duration::from_secs(60),
        )
    }

    #[test]
    fn image_pull_and_config_errors_fail_after_the_timeout() {
        for reason in [
            "ImagePullBackOff",
            "ErrImagePull",
            "CreateContainerConfigError",
        ] {
            assert_eq!(observe(&[waiting(reason, 59)], &[], 59), None, "{reason}");
            let failure = observe(&[waiting(reason, 60)], &[], 60);
            assert_eq!(
                failure,
                Some(StartFailure {
                    reason: reason.into(),
                    message: format!("the {reason} message")
                })
            );
        }
    }

    #[test]
    fn reasons_that_never_clear_fail_at_once() {
        let failure = observe(&[waiting("InvalidImageName", 0)], &[], 5);
        assert_eq!(
            failure.map(|f| f.reason).as_deref(),
            Some("InvalidImageName")
        );
    }

    #[test]
    fn a_starting_pod_is_left_alone() {
        assert_eq!(
            observe(&[waiting("ContainerCreating", 3600)], &[], 3600),
            None
        );
    }

    #[test]
    fn an_unschedulable_pod_fails_after_the_timeout() {
        let created = chrono::DateTime::from_timestamp(NOW - 120, 0)
            .unwrap_or_default()
            .to_rfc3339();
        let p = pod(&format!(
            r#"
metadata: {{name: p, creationTimestamp: "{created}"}}
status:
  phase: Pending
  conditions:
    - {{type: PodScheduled, status: "False", reason: Unschedulable, message: "0/1 nodes are available: persistentvolumeclaim \"data\" not found"}}
"#
        ));
        let failure = observe(&[p], &[], 120).unwrap_or_else(|| panic!("unschedulable"));
        assert_eq!(failure.reason, "Unschedulable");
        assert!(failure.message.contains("persistentvolumeclaim"));
    }

    #[test]
    fn a_pod_that_cannot_be_created_fails_with_the_controllers_message() {
        let messages = vec![
            "Error creating: pods \"x\" is forbidden: error looking up service account etl/missing: serviceaccount \"missing\" not found".to_string(),
        ];
        assert_eq!(observe(&[], &messages, 30), None);
        let failure = observe(&[], &messages, 61).unwrap_or_else(|| panic!("failed create"));
        assert_eq!(failure.reason, "FailedCreate");
        assert!(failure.to_string().starts_with(
            "the pod could not start: FailedCreate: Error creating: pods \"x\" is forbidden"
        ));
        assert_eq!(observe(&[], &[], 3600), None, "no pods yet and no error");
    }
}
