//! How runs behave when steps fail, are retried, cancelled or resumed, and when the
//! Pipeline changes under a running run, on the real control plane.

use std::path::Path;
use std::time::Duration;

use k8s_openapi::api::apps::v1::ControllerRevision;
use kube::Api;
use kube::api::{ListParams, Patch, PatchParams};
use synqx_api::PipelineRun;
use synqx_api::run::{RunPhase, StepPhase};
use synqx_e2e::runs::{
    apply, events_of_succeeded_run, finished, folder, jobs_of, readable_job_name, setup,
    slow_query, sqlite, start_run, step, step_reaches, steps_with_jobs, succeeded,
};

fn connections(data: &Path) -> String {
    let all = [
        folder("late", &data.join("late")),
        folder("never", &data.join("never")),
        sqlite("db", &data.join("db.sqlite")),
        sqlite("other", &data.join("other.sqlite")),
    ]
    .concat();
    // Callers add the separator before their Pipeline.
    all.trim_end_matches("---\n").to_string()
}

fn seconds(t: &k8s_openapi::apimachinery::pkg::apis::meta::v1::Time) -> i64 {
    t.0.as_second()
}

#[tokio::test]
async fn a_failed_attempt_is_retried_after_its_backoff_as_a_new_job() {
    let (cluster, ns) = setup("retry").await;
    let data = tempfile::tempdir().expect("tempdir");
    let yaml = format!(
        "{}---\napiVersion: synqx.io/v1alpha1\nkind: Pipeline\nmetadata: {{name: flaky}}\nspec:\n  steps:\n\
         \x20   - name: load\n      retry: {{limit: 2, backoff: {{initial: 4s}}}}\n      sync:\n\
         \x20       source: {{connection: late, asset: {{fqn: x.csv}}}}\n        destination: {{connection: db, asset: {{fqn: x}}}}\n",
        connections(data.path())
    );
    apply(cluster, &ns, &yaml);
    start_run(cluster, &ns, "flaky", "flaky-1", "");
    // The first attempt fails: its file is not there yet. It arrives during the backoff.
    let retrying = step_reaches(&ns, "flaky-1", "load", StepPhase::Retrying).await;
    assert!(
        step(&retrying, "load")
            .message
            .as_deref()
            .is_some_and(|m| m.contains("no csv file matches")),
        "{:?}",
        retrying.status
    );
    std::fs::create_dir_all(data.path().join("late")).expect("mkdir");
    std::fs::write(data.path().join("late/x.csv"), "id\n1\n2\n").expect("write");

    let run = succeeded(&ns, "flaky-1").await;
    let load = step(&run, "load");
    assert_eq!((load.attempt, load.rows_written), (Some(2), Some(2)));
    // The failed attempt is an Event; the attempt that succeeded is not (the default
    // --step-events). The run's Events are published in order, RunSucceeded last.
    let reasons = events_of_succeeded_run(cluster, &ns, "flaky-1").await;
    assert!(
        reasons.iter().any(|r| r == "StepRetrying"),
        "no StepRetrying event in {reasons:?}"
    );
    assert!(
        !reasons
            .iter()
            .any(|r| r == "StepSucceeded" || r == "StepRunning"),
        "an Event for a step that started or succeeded in {reasons:?}"
    );
    let jobs = jobs_of(&ns, "flaky-1").await;
    let mut names: Vec<&str> = jobs
        .iter()
        .filter_map(|j| j.metadata.name.as_deref().map(readable_job_name))
        .collect();
    names.sort();
    assert_eq!(
        names,
        ["flaky-1-load-1", "flaky-1-load-2"],
        "each attempt is its own Job"
    );
    let first_failed = jobs
        .iter()
        .find(|j| j.metadata.name.as_deref().map(readable_job_name) == Some("flaky-1-load-1"))
        .and_then(|j| {
            j.status
                .as_ref()?
                .conditions
                .as_ref()?
                .iter()
                .find(|c| c.type_ == "Failed")?
                .last_transition_time
                .clone()
        })
        .expect("attempt 1 failed");
    let second_created = jobs
        .iter()
        .find(|j| j.metadata.name.as_deref().map(readable_job_name) == Some("flaky-1-load-2"))
        .and_then(|j| j.metadata.creation_timestamp.clone())
        .expect("attempt 2 created");
    // Timestamps have whole seconds: allow the one lost to truncation.
    assert!(
        seconds(&second_created) - seconds(&first_failed) >= 3,
        "the 4s backoff was not respected"
    );
}

#[tokio::test]
async fn a_step_failing_every_attempt_stops_its_dependents_and_continue_finishes_other_branches() {
    let (cluster, ns) = setup("fail").await;
    let data = tempfile::tempdir().expect("tempdir");
    let pipeline = |name: &str, on_failure: &str| {
        format!(
            "apiVersion: synqx.io/v1alpha1\nkind: Pipeline\nmetadata: {{name: {name}}}\nspec:\n  onFailure: {on_failure}\n  steps:\n\
             \x20   - name: broken\n      retry: {{limit: 1, backoff: {{initial: 1s}}}}\n      sync:\n\
             \x20       source: {{connection: never, asset: {{fqn: x.csv}}}}\n        destination: {{connection: db, asset: {{fqn: x}}}}\n\
             \x20   - {{name: after, dependsOn: [broken], sql: {{connection: db, statements: [\"SELECT 1\"]}}}}\n\
             \x20   - {{name: slow, sql: {{connection: other, statements: [\"{}\"]}}}}\n\
             \x20   - {{name: after-slow, dependsOn: [slow], sql: {{connection: other, statements: [\"SELECT 1\"]}}}}\n",
            slow_query(300_000)
        )
    };
    apply(
        cluster,
        &ns,
        &format!(
            "{}---\n{}---\n{}",
            connections(data.path()),
            pipeline("stop", "Stop"),
            pipeline("go-on", "Continue")
        ),
    );
    start_run(cluster, &ns, "stop", "stop-1", "");
    start_run(cluster, &ns, "go-on", "go-on-1", "");

    let stopped = finished(&ns, "stop-1").await;
    assert_eq!(
        stopped.status.as_ref().and_then(|s| s.phase),
        Some(RunPhase::Failed)
    );
    assert_eq!(step(&stopped, "broken").phase, Some(StepPhase::Failed));
    assert_eq!(step(&stopped, "broken").attempt, Some(2));
    assert_eq!(step(&stopped, "after").phase, Some(StepPhase::Skipped));
    let started = steps_with_jobs(&jobs_of(&ns, "stop-1").await);
    assert!(
        !started.contains("after"),
        "a dependent of a failed step never starts: {started:?}"
    );

    let continued = finished(&ns, "go-on-1").await;
    assert_eq!(
        continued.status.as_ref().and_then(|s| s.phase),
        Some(RunPhase::Failed)
    );
    assert_eq!(step(&continued, "after").phase, Some(StepPhase::Skipped));
    assert_eq!(step(&continued, "slow").phase, Some(StepPhase::Succeeded));
    assert_eq!(
        step(&continued, "after-slow").phase,
        Some(StepPhase::Succeeded),
        "the independent branch completes"
    );
    assert!(!steps_with_jobs(&jobs_of(&ns, "go-on-1").await).contains("after"));
}

#[tokio::test]
async fn cancel_ends_a_run_and_resume_from_runs_only_what_failed_and_what_follows() {
    let (cluster, ns) = setup("cancel").await;
    let data = tempfile::tempdir().expect("tempdir");
    let yaml = format!(
        "{}---\napiVersion: synqx.io/v1alpha1\nkind: Pipeline\nmetadata: {{name: chain}}\nspec:\n  steps:\n\
         \x20   - {{name: first, sql: {{connection: db, statements: [\"CREATE TABLE IF NOT EXISTS t (x)\"]}}}}\n\
         \x20   - name: second\n      dependsOn: [first]\n      sync:\n\
         \x20       source: {{connection: late, asset: {{fqn: x.csv}}}}\n        destination: {{connection: db, asset: {{fqn: x}}}}\n\
         \x20   - {{name: third, dependsOn: [second], sql: {{connection: db, statements: [\"SELECT count(*) FROM x\"]}}}}\n\
         \x20   - {{name: busy, sql: {{connection: other, statements: [\"{}\"]}}}}\n",
        connections(data.path()),
        slow_query(500_000_000)
    );
    apply(cluster, &ns, &yaml);

    // Cancel while `busy` runs: its Job is deleted and the run ends Cancelled.
    start_run(cluster, &ns, "chain", "chain-1", "");
    step_reaches(&ns, "chain-1", "busy", StepPhase::Running).await;
    let runs: Api<PipelineRun> = ns.api();
    runs.patch(
        "chain-1",
        &PatchParams::default(),
        &Patch::Merge(serde_json::json!({"spec": {"cancel": true}})),
    )
    .await
    .expect("cancel");
    let cancelled = finished(&ns, "chain-1").await;
    assert_eq!(
        cancelled.status.as_ref().and_then(|s| s.phase),
        Some(RunPhase::Cancelled),
        "{:?}",
        cancelled.status
    );
    assert_eq!(step(&cancelled, "busy").phase, Some(StepPhase::Cancelled));
    synqx_e2e::cluster::wait_until(
        Duration::from_secs(60),
        "the cancelled Job to be deleted",
        || async { !steps_with_jobs(&jobs_of(&ns, "chain-1").await).contains("busy") },
    )
    .await;

    // A run where `second` fails (its file is missing); `busy` is made quick.
    let quick = yaml.replace(&slow_query(500_000_000), "SELECT 1");
    apply(cluster, &ns, &quick);
    start_run(cluster, &ns, "chain", "chain-2", "");
    let failed = finished(&ns, "chain-2").await;
    assert_eq!(
        failed.status.as_ref().and_then(|s| s.phase),
        Some(RunPhase::Failed)
    );
    assert_eq!(step(&failed, "first").phase, Some(StepPhase::Succeeded));
    assert_eq!(step(&failed, "second").phase, Some(StepPhase::Failed));

    std::fs::create_dir_all(data.path().join("late")).expect("mkdir");
    std::fs::write(data.path().join("late/x.csv"), "id\n1\n").expect("write");
    start_run(cluster, &ns, "chain", "chain-3", "  resumeFrom: chain-2\n");
    let resumed = succeeded(&ns, "chain-3").await;
    let ran = steps_with_jobs(&jobs_of(&ns, "chain-3").await);
    assert_eq!(
        ran.into_iter().collect::<Vec<_>>(),
        ["second", "third"],
        "only the failed step and what follows ran"
    );
    assert_eq!(step(&resumed, "first").phase, Some(StepPhase::Skipped));
    assert_eq!(step(&resumed, "busy").phase, Some(StepPhase::Skipped));
}

#[tokio::test]
async fn a_running_run_keeps_its_revision_when_the_pipeline_changes() {
    let (cluster, ns) = setup("revision").await;
    let data = tempfile::tempdir().expect("tempdir");
    let pipeline = |extra_step: &str| {
        format!(
            "{}---\napiVersion: synqx.io/v1alpha1\nkind: Pipeline\nmetadata: {{name: evolving}}\nspec:\n  successfulRunsHistoryLimit: 1\n  steps:\n\
             \x20   - {{name: busy, sql: {{connection: db, statements: [\"{}\"]}}}}\n{extra_step}",
            connections(data.path()),
            slow_query(3_000_000)
        )
    };
    apply(cluster, &ns, &pipeline(""));
    start_run(cluster, &ns, "evolving", "evolving-1", "");
    let running = step_reaches(&ns, "evolving-1", "busy", StepPhase::Running).await;
    let pinned = running
        .status
        .as_ref()
        .and_then(|s| s.revision.clone())
        .expect("a pinned revision");

    apply(
        cluster,
        &ns,
        &pipeline("    - {name: added, sql: {connection: other, statements: [\"SELECT 1\"]}}\n"),
    );
    let pipelines: Api<synqx_api::Pipeline> = ns.api();
    synqx_e2e::cluster::wait_until(Duration::from_secs(60), "a new revision", || async {
        synqx_e2e::runs::read(&pipelines, "evolving")
            .await
            .status
            .and_then(|s| s.revision)
            .is_some_and(|r| r != pinned)
    })
    .await;
    let first = finished(&ns, "evolving-1").await;
    let status = first.status.clone().unwrap_or_default();
    assert_eq!(status.revision.as_deref(), Some(pinned.as_str()));
    assert_eq!(
        status.steps.len(),
        1,
        "the running run kept its one-step plan"
    );
    assert_eq!(status.phase, Some(RunPhase::Succeeded));

    start_run(cluster, &ns, "evolving", "evolving-2", "");
    let second = finished(&ns, "evolving-2").await;
    let status = second.status.clone().unwrap_or_default();
    assert_ne!(status.revision.as_deref(), Some(pinned.as_str()));
    assert_eq!(status.steps.len(), 2);
    assert_eq!(step(&second, "added").phase, Some(StepPhase::Succeeded));

    let revisions: Api<ControllerRevision> = ns.api();
    let names: Vec<String> = revisions
        .list(&ListParams::default().labels("synqx.io/pipeline=evolving"))
        .await
        .expect("revisions")
        .items
        .into_iter()
        .filter_map(|r| r.metadata.name)
        .collect();
    assert!(names.contains(&pinned), "{names:?}");
    assert!(
        names.contains(&status.revision.unwrap_or_default()),
        "{names:?}"
    );

    // successfulRunsHistoryLimit: 1 keeps only the newer run.
    let runs: Api<PipelineRun> = ns.api();
    synqx_e2e::cluster::wait_until(
        Duration::from_secs(60),
        "the older run to be deleted",
        || async { matches!(runs.get_opt("evolving-1").await, Ok(None)) },
    )
    .await;
    assert!(runs.get_opt("evolving-2").await.is_ok_and(|r| r.is_some()));
}

/// A step's rejected file goes with its pod; `sync.rejects` keeps the rows in a table of
/// their own, named by the run, while the run's status shows counts and never the value.
#[tokio::test]
async fn rejected_rows_outlive_the_step_pod_in_the_rejects_table() {
    let (cluster, ns) = setup("rejects").await;
    let data = tempfile::tempdir().expect("tempdir");
    std::fs::create_dir_all(data.path().join("late")).expect("mkdir");
    std::fs::write(
        data.path().join("late/orders.csv"),
        "id,amount\n1,10\n2,Zq-rejected-amount\n3,30\n",
    )
    .expect("write");
    let yaml = format!(
        "{}---\napiVersion: synqx.io/v1alpha1\nkind: Pipeline\nmetadata: {{name: orders}}\nspec:\n  steps:\n\
         \x20   - name: load\n      sync:\n        onError: skip\n\
         \x20       source: {{connection: late, asset: {{fqn: orders.csv}}, columns: {{amount: int64}}}}\n\
         \x20       destination: {{connection: db, asset: {{fqn: orders}}}}\n\
         \x20       rejects: {{connection: other, asset: {{fqn: rejected_rows}}}}\n",
        connections(data.path())
    );
    apply(cluster, &ns, &yaml);
    start_run(cluster, &ns, "orders", "orders-1", "");
    let run = succeeded(&ns, "orders-1").await;
    let load = step(&run, "load");
    assert_eq!((load.rows_written, load.rows_rejected), (Some(2), Some(1)));
    assert!(
        load.message
            .as_deref()
            .is_some_and(|m| m
                .contains("1 rejected rows kept in Connection \"other\", asset \"rejected_rows\"")),
        "{:?}",
        run.status
    );
    let status = serde_json::to_string(&run.status).expect("status as JSON");
    assert!(
        !status.contains("Zq-rejected"),
        "the value is in the status: {status}"
    );
    // The reader runs a runtime of its own: not on this test's runtime thread.
    let db = data.path().join("other.sqlite");
    let kept = tokio::task::spawn_blocking(move || {
        synqx_testkit::sqlite::rows(
            &db,
            "SELECT run, step, location, \"column\", value, row FROM rejected_rows",
        )
    })
    .await
    .expect("reading the rejects table");
    assert_eq!(
        kept,
        [[
            "orders-1",
            "load",
            "orders.csv: line 3",
            "amount",
            "Zq-rejected-amount",
            "2,Zq-rejected-amount"
        ]
        .map(|v| Some(v.to_string()))
        .to_vec()]
    );
}
