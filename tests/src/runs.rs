//! Helpers for tests that run pipelines through the operator: install, apply, start a
//! run, wait for it, read what it did.

use std::path::Path;
use std::time::Duration;

use k8s_openapi::api::core::v1::{ContainerStatus, Pod};
use kube::Api;
use kube::api::ListParams;
use synqx_api::PipelineRun;

use crate::cluster::{Cluster, TestNamespace};

pub const RUN_TIMEOUT: Duration = Duration::from_secs(180);

pub async fn setup(prefix: &str) -> (&'static Cluster, TestNamespace) {
    let cluster = Cluster::shared();
    cluster.install_synqx();
    let ns = cluster.namespace(prefix).await;
    cluster.serve_namespace(&ns.name);
    (cluster, ns)
}

pub fn apply(cluster: &Cluster, ns: &TestNamespace, yaml: &str) {
    cluster.kubectl_ok(&["apply", "--namespace", &ns.name, "-f", "-"], Some(yaml));
}

pub fn start_run(cluster: &Cluster, ns: &TestNamespace, pipeline: &str, run: &str, extra: &str) {
    let yaml = format!(
        "apiVersion: synqx.io/v1alpha1\nkind: PipelineRun\nmetadata: {{name: {run}}}\nspec:\n  pipelineRef: {{name: {pipeline}}}\n{extra}"
    );
    apply(cluster, ns, &yaml);
}

/// The run, failing on any error of the API server.
pub async fn get_run(ns: &TestNamespace, run: &str) -> PipelineRun {
    let runs: Api<PipelineRun> = ns.api();
    runs.get(run)
        .await
        .unwrap_or_else(|e| panic!("reading PipelineRun {run}: {e}"))
}

/// Object `name` of `api`, which must exist and be readable: an error of the API server fails
/// the test, naming the object, rather than reading as "not yet" in a wait.
pub async fn read<K>(api: &Api<K>, name: &str) -> K
where
    K: kube::Resource<DynamicType = ()> + Clone + serde::de::DeserializeOwned + std::fmt::Debug,
{
    api.get(name)
        .await
        .unwrap_or_else(|e| panic!("reading {} {name}: {e}", K::kind(&())))
}

/// The `Ready` condition of a Pipeline (status, message) once the operator compiled it. An
/// error of the API server fails the test, naming the Pipeline.
pub async fn pipeline_ready(ns: &TestNamespace, name: &str) -> (String, String) {
    let pipelines: Api<synqx_api::Pipeline> = ns.api();
    let ready = || async {
        let p = pipelines
            .get(name)
            .await
            .unwrap_or_else(|e| panic!("reading Pipeline {name}: {e}"));
        let c = p
            .status?
            .conditions
            .into_iter()
            .find(|c| c.r#type == "Ready")?;
        Some((c.status, c.message))
    };
    crate::cluster::wait_until(
        Duration::from_secs(60),
        &format!("Pipeline {name} to be compiled"),
        || async { ready().await.is_some() },
    )
    .await;
    ready()
        .await
        .unwrap_or_else(|| panic!("Pipeline {name} lost its Ready condition"))
}

/// Waits for the run to end, fails the test unless it succeeded, and returns it.
pub async fn succeeded(ns: &TestNamespace, run: &str) -> PipelineRun {
    let found = finished(ns, run).await;
    assert_eq!(
        found.status.as_ref().and_then(|s| s.phase),
        Some(synqx_api::run::RunPhase::Succeeded),
        "run {run}: {:?}",
        found.status
    );
    found
}

/// Waits for the run to end and returns it.
pub async fn finished(ns: &TestNamespace, run: &str) -> PipelineRun {
    let deadline = tokio::time::Instant::now() + RUN_TIMEOUT;
    loop {
        let found = get_run(ns, run).await;
        let phase = found.status.as_ref().and_then(|s| s.phase);
        if phase.is_some_and(|p| p.is_finished()) {
            return found;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "run {run} did not finish within {RUN_TIMEOUT:?}; status: {:?}",
            found.status
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}

pub fn step<'a>(run: &'a PipelineRun, name: &str) -> &'a synqx_api::run::StepStatus {
    run.status
        .as_ref()
        .and_then(|s| s.steps.iter().find(|s| s.name == name))
        .unwrap_or_else(|| panic!("run {:?} has no status for step {name}", run.metadata.name))
}

/// Data rows in every CSV file under `dir` (each file has a header line); fails when `dir`
/// cannot be read.
pub fn csv_rows(dir: &Path) -> usize {
    std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("reading {}: {e}", dir.display()))
        .filter_map(Result::ok)
        .filter(|e| e.path().extension().is_some_and(|x| x == "csv"))
        .map(|e| {
            std::fs::read_to_string(e.path())
                .unwrap_or_else(|err| panic!("reading {}: {err}", e.path().display()))
                .lines()
                .count()
                .saturating_sub(1)
        })
        .sum()
}

/// Waits until `step` of `run` reaches `phase` and returns the run.
pub async fn step_reaches(
    ns: &TestNamespace,
    run: &str,
    step_name: &str,
    phase: synqx_api::run::StepPhase,
) -> PipelineRun {
    let deadline = tokio::time::Instant::now() + RUN_TIMEOUT;
    loop {
        let found = get_run(ns, run).await;
        if found.status.as_ref().is_some_and(|s| {
            s.steps
                .iter()
                .any(|s| s.name == step_name && s.phase == Some(phase))
        }) {
            return found;
        }
        // The run as last seen says where it stopped (its phase, each step's phase and message).
        assert!(
            tokio::time::Instant::now() < deadline,
            "step {step_name} of {run} never reached {phase:?}; the run's status was {:?}",
            found.status
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// The objects of kind `K` the operator labeled as `run`'s; fails on any error of the API
/// server (never an empty list instead).
async fn of_run<K>(ns: &TestNamespace, run: &str) -> Vec<K>
where
    K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope, DynamicType = ()>
        + Clone
        + serde::de::DeserializeOwned
        + std::fmt::Debug,
{
    let params = kube::api::ListParams::default().labels(&format!("synqx.io/run={run}"));
    ns.api::<K>()
        .list(&params)
        .await
        .unwrap_or_else(|e| panic!("listing the {}s of run {run}: {e}", K::kind(&())))
        .items
}

/// The pods of a run, as [`of_run`] lists them.
pub async fn pods_of(ns: &TestNamespace, run: &str) -> Vec<k8s_openapi::api::core::v1::Pod> {
    of_run(ns, run).await
}

/// The pods of Job `job`.
pub async fn pods_of_job(ns: &TestNamespace, job: &str) -> Vec<Pod> {
    let pods: Api<Pod> = ns.api();
    pods.list(&ListParams::default().labels(&format!("job-name={job}")))
        .await
        .unwrap_or_else(|e| panic!("listing the pods of Job {job}: {e}"))
        .items
}

/// The status of every container of `pods` that has one.
pub fn container_statuses(pods: &[Pod]) -> impl Iterator<Item = &ContainerStatus> {
    pods.iter().flat_map(|p| {
        p.status
            .iter()
            .flat_map(|s| s.container_statuses.iter().flatten())
    })
}

/// Deletes the Jobs of a run and waits until none of its pods is left.
pub async fn delete_jobs(cluster: &Cluster, ns: &TestNamespace, run: &str) {
    cluster.kubectl_ok(
        &[
            "delete",
            "jobs",
            "-n",
            &ns.name,
            "-l",
            &format!("synqx.io/run={run}"),
            "--cascade=foreground",
        ],
        None,
    );
    crate::cluster::wait_until(
        Duration::from_secs(120),
        &format!("the pods of run {run} to be deleted"),
        || async { pods_of(ns, run).await.is_empty() },
    )
    .await;
}

/// Deletes the PipelineRun `run` and waits until it is gone.
pub fn delete_run(cluster: &Cluster, ns: &TestNamespace, run: &str) {
    cluster.kubectl_ok(
        &["delete", "pipelinerun", "-n", &ns.name, run, "--wait"],
        None,
    );
}

/// The Jobs of a run, as [`of_run`] lists them.
pub async fn jobs_of(ns: &TestNamespace, run: &str) -> Vec<k8s_openapi::api::batch::v1::Job> {
    of_run(ns, run).await
}

/// The names of the Jobs of a run, sorted.
pub async fn job_names(ns: &TestNamespace, run: &str) -> Vec<String> {
    let mut names: Vec<String> = jobs_of(ns, run)
        .await
        .into_iter()
        .filter_map(|j| j.metadata.name)
        .collect();
    names.sort();
    names
}

/// A step Job's name without the tag that hashes its run's UID, step and attempt:
/// `flaky-1-load-2-9d307fc63c` reads `flaky-1-load-2`.
pub fn readable_job_name(name: &str) -> &str {
    match name.rsplit_once('-') {
        Some((readable, tag)) if tag.len() == 10 => readable,
        _ => name,
    }
}

/// The steps that have a Job in `jobs`.
pub fn steps_with_jobs(
    jobs: &[k8s_openapi::api::batch::v1::Job],
) -> std::collections::BTreeSet<String> {
    jobs.iter()
        .filter_map(|j| j.metadata.labels.as_ref()?.get("synqx.io/step").cloned())
        .collect()
}

/// A SQLite query that keeps a step busy for a few seconds (or until it is cancelled).
pub fn slow_query(rows: u64) -> String {
    format!(
        "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < {rows}) SELECT count(*) FROM c"
    )
}

/// The body of `GET http://127.0.0.1:{port}{path}` (plain HTTP/1.0, loopback only).
pub fn http_get(port: u16, path: &str) -> std::io::Result<String> {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", port))?;
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    write!(stream, "GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n")?;
    let mut response = String::new();
    stream.read_to_string(&mut response)?;
    Ok(response
        .split_once("\r\n\r\n")
        .map(|(_, body)| body.to_string())
        .unwrap_or_default())
}

/// The reasons of the Events about one object, oldest first.
pub fn event_reasons(cluster: &Cluster, ns: &TestNamespace, object: &str) -> Vec<String> {
    let selector = format!("regarding.name={object}");
    cluster
        .kubectl_ok(
            &[
                "get",
                "events.events.k8s.io",
                "-n",
                &ns.name,
                "--field-selector",
                &selector,
                "-o",
                "jsonpath={.items[*].reason}",
            ],
            None,
        )
        .split_whitespace()
        .map(String::from)
        .collect()
}

/// Waits, up to 30 s, until the reasons of the Events about `object` satisfy `enough`, and
/// returns them. The operator publishes Events in the background, a moment after what they
/// tell has happened, so a test that saw a status reads them through this.
pub async fn wait_for_events(
    cluster: &Cluster,
    ns: &TestNamespace,
    object: &str,
    what: &str,
    enough: impl Fn(&[String]) -> bool,
) -> Vec<String> {
    let mut seen = Vec::new();
    crate::cluster::wait_until(Duration::from_secs(30), what, || {
        seen = event_reasons(cluster, ns, object);
        std::future::ready(enough(&seen))
    })
    .await;
    seen
}

/// The reasons of a succeeded run's Events, once its last one (RunSucceeded) is published.
pub async fn events_of_succeeded_run(
    cluster: &Cluster,
    ns: &TestNamespace,
    run: &str,
) -> Vec<String> {
    wait_for_events(cluster, ns, run, "the Event RunSucceeded", |r| {
        r.iter().any(|r| r == "RunSucceeded")
    })
    .await
}

/// A Connection document followed by `---`: `connection("lake", "filesystem: {path: /x}")`.
pub fn connection(name: &str, spec: &str) -> String {
    format!(
        "apiVersion: synqx.io/v1alpha1\nkind: Connection\nmetadata: {{name: {name}}}\nspec: {{{spec}}}\n---\n"
    )
}

/// A `filesystem` Connection at `dir`.
pub fn folder(name: &str, dir: &Path) -> String {
    connection(name, &format!("filesystem: {{path: {}}}", dir.display()))
}

/// A `sqlite` Connection at `file`.
pub fn sqlite(name: &str, file: &Path) -> String {
    connection(name, &format!("sqlite: {{path: {}}}", file.display()))
}

/// The runs `no-image-1`, `no-secret-1` and `no-account-1` of three one-step Pipelines whose
/// pods cannot start: `image` cannot be run, a Connection's Secret does not exist, the
/// service account does not exist. Returns the three names.
pub fn start_unstartable_runs(
    cluster: &Cluster,
    ns: &TestNamespace,
    image: &str,
) -> [&'static str; 3] {
    let pipeline = |name: &str, runner: &str, connection: &str| {
        format!(
            "apiVersion: synqx.io/v1alpha1\nkind: Pipeline\nmetadata: {{name: {name}}}\nspec:\n  runner: {runner}\n  steps:\n    - {{name: only, sql: {{connection: {connection}, statements: [\"SELECT 1\"]}}}}\n---\n"
        )
    };
    let yaml = [
        connection("unstartable-db", "sqlite: {path: unstartable.db}"),
        connection(
            "locked",
            "postgres: {host: db.example, port: 5432, database: d, user: {value: u}, password: {secretKeyRef: {name: no-such-secret, key: password}}}",
        ),
        pipeline("no-image", &format!("{{image: \"{image}\"}}"), "unstartable-db"),
        pipeline("no-secret", "{}", "locked"),
        pipeline("no-account", "{serviceAccountName: no-such-account}", "unstartable-db"),
    ]
    .concat();
    apply(cluster, ns, &yaml);
    let names = ["no-image", "no-secret", "no-account"];
    for name in names {
        start_run(cluster, ns, name, &format!("{name}-1"), "");
    }
    names
}

/// Scales the installed operator's Deployment, for tests that run their own operator.
pub fn scale_operator(cluster: &Cluster, replicas: &str) {
    cluster.kubectl_ok(
        &[
            "scale",
            "-n",
            "synqx-system",
            "deployment/synqx-operator",
            "--replicas",
            replicas,
        ],
        None,
    );
}
