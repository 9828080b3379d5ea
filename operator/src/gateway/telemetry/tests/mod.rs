//! Binding a reviewed token to the attempt a report names; the route in `route.rs`.

use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use synqx_api::PipelineRun;
use synqx_api::run::{PipelineRef, PipelineRunSpec};
use synqx_api::telemetry::TelemetryReport;

use super::*;

mod route;

fn owner(kind: &str, name: &str, uid: &str) -> OwnerReference {
    OwnerReference {
        api_version: "v1".into(),
        kind: kind.into(),
        name: name.into(),
        uid: uid.into(),
        controller: Some(true),
        block_owner_deletion: Some(true),
    }
}

pub(super) fn run() -> PipelineRun {
    let mut run = PipelineRun::new(
        "orders-1",
        PipelineRunSpec {
            pipeline_ref: PipelineRef {
                name: "orders".into(),
            },
            ..Default::default()
        },
    );
    run.metadata.namespace = Some("etl".into());
    run.metadata.uid = Some("run-uid".into());
    run
}

/// The Job the run controller creates for `step` attempt `attempt`, and its pod.
pub(super) fn attempt(step: &str, attempt: u32) -> (Job, Pod) {
    let name = names::job_name("orders-1", "run-uid", step, attempt);
    let mut job = Job::default();
    job.metadata.name = Some(name.clone());
    job.metadata.uid = Some(format!("job-uid-{step}-{attempt}"));
    job.metadata.owner_references = Some(vec![owner("PipelineRun", "orders-1", "run-uid")]);
    let mut pod = Pod::default();
    pod.metadata.name = Some(format!("{name}-x7k2p"));
    pod.metadata.uid = Some(format!("pod-uid-{step}-{attempt}"));
    pod.metadata.owner_references = Some(vec![owner(
        "Job",
        &name,
        &format!("job-uid-{step}-{attempt}"),
    )]);
    (job, pod)
}

fn token_of(pod: &Pod) -> PodToken {
    PodToken {
        namespace: "etl".into(),
        user: "system:serviceaccount:etl:synqx-runner".into(),
        pod_name: pod.metadata.name.clone().unwrap_or_default(),
        pod_uid: pod.metadata.uid.clone().unwrap_or_default(),
    }
}

fn report(step: &str, attempt: u32) -> TelemetryReport {
    TelemetryReport {
        namespace: "etl".into(),
        run: "orders-1".into(),
        step: step.into(),
        attempt,
        ..Default::default()
    }
}

#[test]
fn the_pod_of_an_attempt_reports_for_that_attempt_only() {
    let run = run();
    let (job, pod) = attempt("load", 2);
    let token = token_of(&pod);
    assert_eq!(bind(&report("load", 2), &token, &pod, &job, &run), Ok(()));

    // Another step, another attempt: the Job read for them is not the pod's.
    for (step, n) in [("count", 1), ("load", 1), ("load", 3)] {
        let (other_job, _) = attempt(step, n);
        let refused = bind(&report(step, n), &token, &pod, &other_job, &run);
        assert!(
            matches!(refused, Err(NotBound::OtherAttempt { .. })),
            "{step} {n}: {refused:?}"
        );
    }
    // A report for another run of the same name (deleted and created again).
    let mut again = run.clone();
    again.metadata.uid = Some("run-uid-2".into());
    assert!(matches!(
        bind(&report("load", 2), &token, &pod, &job, &again),
        Err(NotBound::OtherAttempt { .. })
    ));
}

#[test]
fn a_token_of_another_pod_or_namespace_is_refused() {
    let run = run();
    let (job, pod) = attempt("load", 2);
    let (_, other_pod) = attempt("count", 1);
    // The token of the pod of step count, reporting for load with load's pod and Job.
    let other = token_of(&other_pod);
    assert_eq!(
        bind(&report("load", 2), &other, &pod, &job, &run),
        Err(NotBound::PodGone {
            pod: other.pod_name.clone()
        })
    );
    // The same pod name, created again: the token was for the pod that is gone.
    let mut replaced = pod.clone();
    replaced.metadata.uid = Some("pod-uid-new".into());
    assert!(matches!(
        bind(&report("load", 2), &token_of(&pod), &replaced, &job, &run),
        Err(NotBound::PodGone { .. })
    ));
    let elsewhere = PodToken {
        namespace: "other".into(),
        ..token_of(&pod)
    };
    assert!(matches!(
        bind(&report("load", 2), &elsewhere, &pod, &job, &run),
        Err(NotBound::OtherNamespace { .. })
    ));
}

#[test]
fn a_job_of_the_right_name_that_the_run_did_not_create_is_refused() {
    let run = run();
    let (mut job, pod) = attempt("load", 2);
    job.metadata.owner_references = Some(vec![owner("CronJob", "intruder", "x")]);
    assert!(matches!(
        bind(&report("load", 2), &token_of(&pod), &pod, &job, &run),
        Err(NotBound::ForeignJob { .. })
    ));
    // A pod with no controller at all.
    let (job, mut bare) = attempt("load", 2);
    bare.metadata.owner_references = None;
    assert!(matches!(
        bind(&report("load", 2), &token_of(&bare), &bare, &job, &run),
        Err(NotBound::OtherAttempt { .. })
    ));
}

#[test]
fn only_a_service_account_token_bound_to_a_pod_names_one() {
    let token = pod_token(
        "system:serviceaccount:etl:synqx-runner",
        Some("p".into()),
        Some("u".into()),
    );
    assert_eq!(
        token.map(|t| (t.namespace, t.pod_name, t.pod_uid)),
        Ok(("etl".into(), "p".into(), "u".into()))
    );
    assert_eq!(
        pod_token("system:serviceaccount:etl:synqx-runner", None, None),
        Err(NotBound::NoPod)
    );
    assert!(matches!(
        pod_token("alice", Some("p".into()), Some("u".into())),
        Err(NotBound::NotAServiceAccount { .. })
    ));
}
