//! `--max-concurrent-jobs` shared between namespaces: a namespace with many queued runs does
//! not take every slot that frees while another namespace's run waits.

use std::time::Duration;

use kube::Api;
use synqx_api::run::RunPhase;
use synqx_api::{Pipeline, PipelineRun};
use synqx_e2e::cluster::wait_until;
use synqx_e2e::own_operator::OwnOperator;
use synqx_e2e::runs::{apply, finished, get_run, jobs_of, setup, slow_query, sqlite, start_run};

/// A Pipeline `name` of `steps` independent slow steps on the SQLite file `db`, keeping
/// every run this test starts.
fn slow_pipeline(name: &str, steps: usize, db: &std::path::Path) -> String {
    let steps: String = (1..=steps)
        .map(|i| {
            format!(
                "    - {{name: s{i}, sql: {{connection: db, statements: [\"{}\"]}}}}\n",
                slow_query(2_000_000)
            )
        })
        .collect();
    format!(
        "{}apiVersion: synqx.io/v1alpha1\nkind: Pipeline\nmetadata: {{name: {name}}}\nspec:\n  successfulRunsHistoryLimit: 10\n  steps:\n{steps}",
        sqlite("db", db)
    )
}

fn created(object: &kube::api::ObjectMeta) -> i64 {
    object
        .creation_timestamp
        .as_ref()
        .map(|t| t.0.as_second())
        .unwrap_or_else(|| panic!("{:?} has no creation time", object.name))
}

#[tokio::test]
async fn a_namespace_with_queued_runs_does_not_starve_another() {
    let (cluster, flood) = setup("flood").await;
    let small = cluster.namespace("small").await;
    cluster.serve_namespace(&small.name);
    let dir = tempfile::tempdir().expect("tempdir");
    let operator = OwnOperator::start(
        cluster,
        &["--max-concurrent-jobs", "2"],
        &dir.path().join("operator.log"),
    )
    .await;

    apply(
        cluster,
        &small,
        &slow_pipeline("one", 1, &dir.path().join("small.sqlite")),
    );
    let pipelines: Api<Pipeline> = small.api();
    wait_until(Duration::from_secs(60), "Pipeline one to be Ready", || {
        let pipelines = pipelines.clone();
        async move {
            let status = pipelines
                .get("one")
                .await
                .unwrap_or_else(|e| panic!("reading Pipeline one: {e}"))
                .status;
            status.is_some_and(|s| {
                s.conditions
                    .iter()
                    .any(|c| c.r#type == "Ready" && c.status == "True")
            })
        }
    })
    .await;

    // Four runs of three independent steps: twelve Jobs queued behind two slots.
    apply(
        cluster,
        &flood,
        &slow_pipeline("wide", 3, &dir.path().join("flood.sqlite")),
    );
    let floods: Vec<String> = (1..=4).map(|i| format!("wide-{i}")).collect();
    for run in &floods {
        start_run(cluster, &flood, "wide", run, "");
    }
    wait_until(
        Duration::from_secs(60),
        "flood to hold both slots",
        || async {
            let mut running = 0;
            for run in &floods {
                running += jobs_of(&flood, run).await.len();
            }
            running >= 2
        },
    )
    .await;

    start_run(cluster, &small, "one", "one-1", "");
    let small_run = finished(&small, "one-1").await;
    let mut flood_runs: Vec<PipelineRun> = Vec::new();
    for run in &floods {
        flood_runs.push(finished(&flood, run).await);
    }
    drop(operator);
    for run in flood_runs.iter().chain([&small_run]) {
        assert_eq!(
            run.status.as_ref().and_then(|s| s.phase),
            Some(RunPhase::Succeeded),
            "{:?}",
            run.status
        );
    }

    // Between the small run's creation and its Job's, the flood started no Job of its own
    // (one at most: a slot taken in the instant before the small run first asked). Without
    // fairness it takes every slot that frees, since its runs are woken by their own Jobs.
    let asked = created(&get_run(&small, "one-1").await.metadata);
    let small_jobs = jobs_of(&small, "one-1").await;
    assert_eq!(small_jobs.len(), 1, "one Job for the small run");
    let served = created(&small_jobs[0].metadata);
    let mut flood_jobs = Vec::new();
    for run in &floods {
        flood_jobs.extend(jobs_of(&flood, run).await);
    }
    assert_eq!(flood_jobs.len(), 12, "every flood step ran once");
    let meanwhile: Vec<i64> = flood_jobs
        .iter()
        .map(|j| created(&j.metadata))
        .filter(|&t| t > asked && t < served)
        .collect();
    assert!(
        meanwhile.len() <= 1,
        "the flood started {} Jobs while the small run waited from {asked} to {served}: {meanwhile:?}",
        meanwhile.len()
    );
}
