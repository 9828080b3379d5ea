//! Hostile objects on the real control plane: every file of `tests/hostile/` (what someone who
//! may only write Pipelines and Connections in one namespace would try) is applied to one
//! namespace while a healthy Pipeline in another namespace keeps running. Each is refused by
//! the API server, or compiled Invalid with its message, or fails only its own run; the
//! operator serves the healthy namespace throughout and never restarts.

use std::path::Path;
use std::time::Duration;

use k8s_openapi::api::core::v1::Pod;
use kube::Api;
use kube::api::ListParams;
use synqx_api::run::RunPhase;
use synqx_api::{Pipeline, PipelineRun};
use synqx_e2e::cluster::{Cluster, TestNamespace, wait_for_value};
use synqx_e2e::own_operator::lease_holder;
use synqx_e2e::runs::{apply, container_statuses, csv_rows, finished, folder, setup, start_run};

/// What became of one hostile file.
#[derive(Debug)]
enum Outcome {
    /// The API server refused it: what it said.
    Refused(String),
    /// The Pipeline compiled Invalid: its Ready message.
    Invalid(String),
    /// The Pipeline compiled, and its run failed in its step: the step's message.
    RunFailed(String),
}

/// The restarts of the operator's containers and the name of the pod that leads.
async fn operator_state(cluster: &Cluster) -> (i32, Option<String>) {
    let pods: Api<Pod> = Api::namespaced(cluster.client().await, "synqx-system");
    let list = pods
        .list(&ListParams::default().labels("app.kubernetes.io/name=synqx-operator"))
        .await
        .unwrap_or_else(|e| panic!("listing the operator's pods: {e}"));
    let restarts = container_statuses(&list.items)
        .map(|c| c.restart_count)
        .sum();
    (restarts, lease_holder(cluster).await)
}

/// A Pipeline copying every CSV of `inbox` to `lake`, appending.
fn healthy_pipeline(data: &Path) -> String {
    [
        folder("inbox", &data.join("inbox")),
        folder("lake", &data.join("lake")),
    ]
    .concat()
        + "apiVersion: synqx.io/v1alpha1\nkind: Pipeline\nmetadata: {name: steady}\nspec:\n  steps:\n    - name: copy\n      sync:\n        source: {connection: inbox, asset: {fqn: \"*.csv\"}}\n        destination: {connection: lake, asset: {fqn: out/}, format: csv, mode: append}\n"
}

/// Runs the healthy Pipeline once more and checks it succeeded and moved its three rows.
async fn healthy_run(cluster: &Cluster, ns: &TestNamespace, data: &Path, n: usize) {
    let run = format!("steady-{n}");
    start_run(cluster, ns, "steady", &run, "");
    let done = finished(ns, &run).await;
    assert_eq!(
        done.status.as_ref().and_then(|s| s.phase),
        Some(RunPhase::Succeeded),
        "{run}: {:?}",
        done.status
    );
    assert_eq!(
        csv_rows(&data.join("lake/out")),
        3 * n,
        "{run} appended 3 rows"
    );
}

/// The Pipelines a hostile file declares.
fn pipelines_of(text: &str) -> Vec<String> {
    text.split("\n---")
        .filter(|doc| doc.contains("kind: Pipeline"))
        .filter_map(|doc| {
            let line = doc.lines().find(|l| l.starts_with("metadata: {name: "))?;
            Some(
                line.trim_start_matches("metadata: {name: ")
                    .trim_end_matches('}')
                    .to_string(),
            )
        })
        .collect()
}

/// Waits until the Pipeline's `Ready` condition describes its current generation: whether it
/// is True, and its message.
async fn verdict(ns: &TestNamespace, name: &str) -> (bool, String) {
    let pipelines: Api<Pipeline> = ns.api();
    let what = format!("a verdict on Pipeline {name}");
    wait_for_value(Duration::from_secs(60), &what, || async {
        let pipeline = pipelines
            .get(name)
            .await
            .unwrap_or_else(|e| panic!("reading Pipeline {name}: {e}"));
        let generation = pipeline.metadata.generation;
        pipeline
            .status
            .unwrap_or_default()
            .conditions
            .into_iter()
            .find(|c| c.r#type == "Ready" && c.observed_generation == generation)
            .map(|c| (c.status == "True", c.message))
    })
    .await
}

/// The message of the failed step of a run that ended.
fn failed_step(run: &PipelineRun) -> String {
    run.status
        .iter()
        .flat_map(|s| &s.steps)
        .filter_map(|s| s.message.clone())
        .collect::<Vec<_>>()
        .join("; ")
}

/// Applies one hostile file and finds what became of it.
async fn outcome(cluster: &Cluster, ns: &TestNamespace, text: &str) -> Outcome {
    let out = cluster.kubectl(&["apply", "--namespace", &ns.name, "-f", "-"], Some(text));
    if !out.status.success() {
        return Outcome::Refused(String::from_utf8_lossy(&out.stderr).trim().to_string());
    }
    let mut messages = Vec::new();
    for name in pipelines_of(text) {
        let (ready, message) = verdict(ns, &name).await;
        if !ready {
            return Outcome::Invalid(message);
        }
        let run = format!("{name}-1");
        start_run(cluster, ns, &name, &run, "");
        let done = finished(ns, &run).await;
        assert_eq!(
            done.status.as_ref().and_then(|s| s.phase),
            Some(RunPhase::Failed),
            "hostile Pipeline {name} compiled and its run did not fail: {:?}",
            done.status
        );
        messages.push(failed_step(&done));
    }
    Outcome::RunFailed(messages.join("; "))
}

#[tokio::test]
async fn hostile_objects_in_one_namespace_leave_the_operator_serving_another() {
    let (cluster, hostile) = setup("hostile").await;
    let healthy = cluster.namespace("healthy").await;
    cluster.serve_namespace(&healthy.name);
    let data = tempfile::tempdir().expect("tempdir");
    std::fs::create_dir_all(data.path().join("inbox")).expect("mkdir");
    std::fs::write(data.path().join("inbox/a.csv"), "id,v\n1,a\n2,b\n3,c\n").expect("write");
    apply(cluster, &healthy, &healthy_pipeline(data.path()));
    healthy_run(cluster, &healthy, data.path(), 1).await;
    let before = operator_state(cluster).await;

    let dir = cluster.repo.join("tests/hostile");
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "yaml"))
        .collect();
    files.sort();
    assert!(files.len() >= 30, "{} hostile files", files.len());
    let scratch = data.path().join("hostile");
    let mut runs = 1;
    for (i, file) in files.iter().enumerate() {
        let text = std::fs::read_to_string(file)
            .unwrap_or_else(|e| panic!("{}: {e}", file.display()))
            .replace("/work/files", &scratch.join("files").display().to_string())
            .replace(
                "/work/hostile.sqlite",
                &scratch.join("db.sqlite").display().to_string(),
            );
        let name = file
            .file_name()
            .unwrap_or_default()
            .to_string_lossy()
            .to_string();
        let expected: Vec<&str> = text
            .lines()
            .filter_map(|l| l.strip_prefix("# expect: "))
            .collect();
        let on_cluster: Vec<&str> = text
            .lines()
            .filter_map(|l| l.strip_prefix("# cluster-expect: "))
            .collect();
        let got = outcome(cluster, &hostile, &text).await;
        println!("{name}: {got:?}");
        match &got {
            // The API server names the object and field (`The Pipeline "x" is invalid:
            // spec.parallelism: Invalid value: …`); what is not even JSON, kubectl refuses.
            Outcome::Refused(said) => assert!(
                (said.contains(" is invalid: ") && said.contains("spec."))
                    || said.contains("error converting YAML to JSON"),
                "{name}: refused without saying what: {said}"
            ),
            Outcome::Invalid(message) => assert!(
                expected.iter().any(|e| message.contains(e)),
                "{name}: Invalid, but not with {expected:?}: {message}"
            ),
            Outcome::RunFailed(message) => assert!(
                !on_cluster.is_empty() && on_cluster.iter().all(|e| message.contains(e)),
                "{name}: its run failed, but not with {on_cluster:?} (add `# cluster-expect:` lines): {message}"
            ),
        }
        // The healthy namespace is served between the hostile objects.
        if i % 10 == 9 {
            runs += 1;
            healthy_run(cluster, &healthy, data.path(), runs).await;
        }
    }
    healthy_run(cluster, &healthy, data.path(), runs + 1).await;
    let after = operator_state(cluster).await;
    assert_eq!(
        after, before,
        "the operator restarted or another pod leads (restarts, leader)"
    );
}
