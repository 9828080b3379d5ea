//! Least privilege, proven with real tokens on the test control plane. Acting as the
//! step pods' service account `synqx-runner` (a token from the TokenRequest API): nothing at
//! all, no Secret read or listed (the vault keyring included), no Job or Pod created, no run,
//! plan or Connection read, no status written, in its namespace or another. And what a user
//! who may write the status of a namespace's runs writes there changes nothing the operator
//! decides: a run whose phase, revision and steps were forged still runs its steps on its
//! pinned plan and moves its data, and a run that resumes from a forged run skips nothing.
//! The operator's own account cannot list Secrets.

use std::path::Path;
use std::time::Duration;

use k8s_openapi::api::authorization::v1::{
    ResourceAttributes, SubjectAccessReview, SubjectAccessReviewSpec,
};
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{Pod, Secret};
use kube::api::{ListParams, Patch, PatchParams, PostParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Api, Client, Config};
use serde_json::json;
use synqx_api::PipelineRun;
use synqx_api::run::{RunPhase, StepPhase};
use synqx_api::run_record::{RECORD_ANNOTATION, RunRecord};
use synqx_e2e::cluster::{Cluster, TestNamespace, wait_until};
use synqx_e2e::runs::{
    RUN_TIMEOUT, apply, csv_rows, event_reasons, finished, folder, get_run, jobs_of,
    readable_job_name, setup, slow_query, sqlite, start_run,
};

/// The operator's record a hostile writer would like a run to carry.
const FORGED_RECORD: &str = r#"{"phase":"Succeeded"}"#;

/// A client acting as the service account `synqx-runner` of `namespace`.
async fn runner_client(cluster: &Cluster, namespace: &str, dir: &Path) -> Client {
    account_client(cluster, namespace, "synqx-runner", dir).await
}

/// A client acting as the service account `status-writer` of `ns`, which may patch the
/// status of the namespace's runs and nothing else.
async fn status_writer(cluster: &Cluster, ns: &TestNamespace, dir: &Path) -> Client {
    apply(
        cluster,
        ns,
        "apiVersion: v1\nkind: ServiceAccount\nmetadata: {name: status-writer}\n---\napiVersion: rbac.authorization.k8s.io/v1\nkind: Role\nmetadata: {name: status-writer}\nrules: [{apiGroups: [synqx.io], resources: [pipelineruns/status], verbs: [patch]}]\n---\napiVersion: rbac.authorization.k8s.io/v1\nkind: RoleBinding\nmetadata: {name: status-writer}\nroleRef: {apiGroup: rbac.authorization.k8s.io, kind: Role, name: status-writer}\nsubjects: [{kind: ServiceAccount, name: status-writer}]\n",
    );
    account_client(cluster, &ns.name, "status-writer", dir).await
}

async fn account_client(cluster: &Cluster, namespace: &str, name: &str, dir: &Path) -> Client {
    let path = cluster.service_account_kubeconfig(namespace, name, dir);
    let kubeconfig = Kubeconfig::read_from(&path).unwrap_or_else(|e| panic!("{e}"));
    let config = Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
        .await
        .unwrap_or_else(|e| panic!("the kubeconfig of {name}: {e}"));
    Client::try_from(config).unwrap_or_else(|e| panic!("a client as {name}: {e}"))
}

/// Asserts that the API server refused `what` with 403 Forbidden.
fn forbidden<T: std::fmt::Debug>(what: &str, result: Result<T, kube::Error>) {
    match result {
        Err(kube::Error::Api(status)) if status.code == 403 => {}
        other => panic!("{what}: expected 403 Forbidden, got {other:?}"),
    }
}

/// The forged status: the run ended Succeeded on another revision, every step done.
fn forged(steps: &[&str]) -> serde_json::Value {
    let steps: Vec<_> = steps
        .iter()
        .map(|s| json!({"name": s, "phase": "Succeeded", "attempt": 1, "rowsWritten": 0}))
        .collect();
    json!({"status": {"phase": "Succeeded", "revision": "forged-revision", "progress": "2/2", "steps": steps}})
}

/// A slow `sql` step, then a copy of `orders.csv` from the inbox to the lake.
fn resources(data: &Path) -> String {
    let slow = slow_query(60_000_000);
    [
        folder("inbox", &data.join("inbox")),
        folder("lake", &data.join("lake")),
        sqlite("db", &data.join("db.sqlite")),
    ]
    .concat()
        + &format!(
            "apiVersion: synqx.io/v1alpha1\nkind: Pipeline\nmetadata: {{name: victim}}\nspec:\n  steps:\n\
             \x20   - {{name: slow, sql: {{connection: db, statements: [\"{slow}\"]}}}}\n\
             \x20   - name: copy\n      dependsOn: [slow]\n      sync:\n\
             \x20       source: {{connection: inbox, asset: {{fqn: orders.csv}}}}\n\
             \x20       destination: {{connection: lake, asset: {{fqn: orders/}}, format: csv}}\n"
        )
}

/// The revision every Job of `run` was given (`--revision`): the plan its pods ran.
async fn pinned_revision(ns: &TestNamespace, run: &str) -> String {
    let mut revisions: Vec<String> = jobs_of(ns, run)
        .await
        .iter()
        .map(|job| {
            let args = job
                .spec
                .as_ref()
                .and_then(|s| s.template.spec.as_ref())
                .and_then(|s| s.containers.first())
                .and_then(|c| c.args.clone())
                .unwrap_or_default();
            let at = args.iter().position(|a| a == "--revision");
            at.and_then(|i| args.get(i + 1).cloned())
                .unwrap_or_else(|| panic!("a Job of {run} has no --revision: {args:?}"))
        })
        .collect();
    revisions.dedup();
    assert_eq!(
        revisions.len(),
        1,
        "the Jobs of {run} ran several plans: {revisions:?}"
    );
    revisions.remove(0)
}

/// The steps that got a Job in `run`.
async fn steps_run(ns: &TestNamespace, run: &str) -> Vec<String> {
    let mut steps: Vec<String> = jobs_of(ns, run)
        .await
        .iter()
        .filter_map(|j| j.metadata.labels.as_ref()?.get("synqx.io/step").cloned())
        .collect();
    steps.sort();
    steps.dedup();
    steps
}

#[tokio::test]
async fn the_runner_identity_reads_no_secret_creates_no_workload_and_stays_in_its_namespace() {
    let (cluster, ns) = setup("rbac").await;
    let other = cluster.namespace("rbac-other").await;
    cluster.serve_namespace(&other.name);
    let dir = tempfile::tempdir().expect("tempdir");
    apply(
        cluster,
        &ns,
        "apiVersion: v1\nkind: Secret\nmetadata: {name: team-db, labels: {synqx.io/connection-secret: \"true\"}}\nstringData: {password: not-for-steps}\n",
    );
    std::fs::create_dir_all(dir.path().join("inbox")).expect("inbox");
    apply(cluster, &other, &resources(dir.path()));
    start_run(cluster, &other, "victim", "elsewhere", "  cancel: true\n");

    let runner = runner_client(cluster, &ns.name, dir.path()).await;
    let secrets: Api<Secret> = Api::namespaced(runner.clone(), &ns.name);
    forbidden("list Secrets", secrets.list(&ListParams::default()).await);
    forbidden("get Secret team-db", secrets.get("team-db").await);
    forbidden("get Secret synqx-vault", secrets.get("synqx-vault").await);
    let everywhere: Api<Secret> = Api::all(runner.clone());
    forbidden(
        "list Secrets of every namespace",
        everywhere.list(&ListParams::default()).await,
    );
    let job: Job = serde_json::from_value(json!({
        "metadata": {"name": "escape"},
        "spec": {"template": {"spec": {"restartPolicy": "Never",
            "containers": [{"name": "c", "image": "x"}]}}}
    }))
    .expect("a Job");
    let jobs: Api<Job> = Api::namespaced(runner.clone(), &ns.name);
    forbidden(
        "create a Job",
        jobs.create(&PostParams::default(), &job).await,
    );
    let pod: Pod = serde_json::from_value(json!({
        "metadata": {"name": "escape"},
        "spec": {"containers": [{"name": "c", "image": "x"}]}
    }))
    .expect("a Pod");
    let pods: Api<Pod> = Api::namespaced(runner.clone(), &ns.name);
    forbidden(
        "create a Pod",
        pods.create(&PostParams::default(), &pod).await,
    );
    // Another namespace's run: neither its status nor the run itself.
    let elsewhere: Api<PipelineRun> = Api::namespaced(runner.clone(), &other.name);
    forbidden(
        "patch the status of a run in another namespace",
        elsewhere
            .patch_status(
                "elsewhere",
                &PatchParams::default(),
                &Patch::Merge(&forged(&["slow", "copy"])),
            )
            .await,
    );
    forbidden(
        "get a run in another namespace",
        elsewhere.get("elsewhere").await,
    );
    // Its own namespace: no run, plan or Connection read, no status written.
    apply(cluster, &ns, &resources(dir.path()));
    start_run(cluster, &ns, "victim", "cancelled", "  cancel: true\n");
    finished(&ns, "cancelled").await;
    let runs: Api<PipelineRun> = Api::namespaced(runner.clone(), &ns.name);
    forbidden("get a run", runs.get("cancelled").await);
    forbidden(
        "patch a run's status",
        runs.patch_status(
            "cancelled",
            &PatchParams::default(),
            &Patch::Merge(&forged(&["slow", "copy"])),
        )
        .await,
    );
    let connections: Api<synqx_api::Connection> = Api::namespaced(runner.clone(), &ns.name);
    forbidden("get a Connection", connections.get("inbox").await);
    let revisions: Api<k8s_openapi::api::apps::v1::ControllerRevision> =
        Api::namespaced(runner.clone(), &ns.name);
    forbidden(
        "list the plans",
        revisions.list(&ListParams::default()).await,
    );

    // The operator's own account cannot list Secrets, in any namespace or all of them.
    let reviews: Api<SubjectAccessReview> = Api::all(ns.client.clone());
    for namespace in [None, Some(ns.name.clone())] {
        let review = SubjectAccessReview {
            spec: SubjectAccessReviewSpec {
                user: Some("system:serviceaccount:synqx-system:synqx-operator".into()),
                resource_attributes: Some(ResourceAttributes {
                    verb: Some("list".into()),
                    resource: Some("secrets".into()),
                    namespace: namespace.clone(),
                    ..Default::default()
                }),
                ..Default::default()
            },
            ..Default::default()
        };
        let answer = reviews
            .create(&PostParams::default(), &review)
            .await
            .unwrap_or_else(|e| panic!("SubjectAccessReview: {e}"));
        let allowed = answer.status.map(|s| s.allowed);
        assert_eq!(
            allowed,
            Some(false),
            "the operator may list Secrets in {namespace:?}"
        );
    }
}

#[tokio::test]
async fn what_another_identity_writes_into_status_decides_nothing() {
    let (cluster, ns) = setup("forge").await;
    let dir = tempfile::tempdir().expect("tempdir");
    let inbox = dir.path().join("inbox");
    std::fs::create_dir_all(&inbox).expect("inbox");
    let rows: String = (1..=25).map(|i| format!("{i},order-{i}\n")).collect();
    std::fs::write(inbox.join("orders.csv"), format!("id,name\n{rows}")).expect("orders.csv");
    apply(cluster, &ns, &resources(dir.path()));
    let writer = status_writer(cluster, &ns, dir.path()).await;
    let runs: Api<PipelineRun> = Api::namespaced(writer, &ns.name);

    // A run that ended before it started: its status is forged to say both steps succeeded,
    // and a run resuming from it must still run both.
    start_run(cluster, &ns, "victim", "decoy", "  cancel: true\n");
    finished(&ns, "decoy").await;
    runs.patch_status(
        "decoy",
        &PatchParams::default(),
        &Patch::Merge(&forged(&["slow", "copy"])),
    )
    .await
    .unwrap_or_else(|e| panic!("the status patch of decoy: {e}"));
    // Metadata sent through the status subresource is dropped by the API server: the
    // operator's record (an annotation) cannot be forged that way.
    let annotate = json!({"metadata": {"annotations": {RECORD_ANNOTATION: FORGED_RECORD}}});
    runs.patch_status("decoy", &PatchParams::default(), &Patch::Merge(&annotate))
        .await
        .unwrap_or_else(|e| panic!("a status patch carrying metadata: {e}"));
    let annotations = get_run(&ns, "decoy")
        .await
        .metadata
        .annotations
        .unwrap_or_default();
    assert_ne!(
        annotations.get(RECORD_ANNOTATION).map(String::as_str),
        Some(FORGED_RECORD),
        "metadata sent through the status subresource was kept"
    );

    start_run(cluster, &ns, "victim", "resumed", "  resumeFrom: decoy\n");
    let resumed = finished(&ns, "resumed").await;
    let phase = resumed.status.as_ref().and_then(|s| s.phase);
    assert_eq!(phase, Some(RunPhase::Succeeded), "{:#?}", resumed.status);
    assert_eq!(steps_run(&ns, "resumed").await, ["copy", "slow"]);
    assert_eq!(csv_rows(&dir.path().join("lake/orders")), 25);

    // A running run: forged to have ended Succeeded on another revision with every step done,
    // while its first step runs.
    start_run(cluster, &ns, "victim", "victim-1", "");
    wait_until(RUN_TIMEOUT, "victim-1's Job of step slow", || async {
        steps_run(&ns, "victim-1").await == ["slow"]
    })
    .await;
    let pinned = pinned_revision(&ns, "victim-1").await;
    runs.patch_status(
        "victim-1",
        &PatchParams::default(),
        &Patch::Merge(&forged(&["slow", "copy"])),
    )
    .await
    .unwrap_or_else(|e| panic!("the status patch of victim-1: {e}"));
    // The run goes on: both steps run on the pinned plan, the data arrive, and the status
    // shows the operator's truth again.
    let lake = dir.path().join("lake/orders");
    wait_until(
        RUN_TIMEOUT,
        "victim-1 to run both steps and move its rows",
        || async {
            let shown = get_run(&ns, "victim-1").await.status.unwrap_or_default();
            lake.is_dir()
                && csv_rows(&lake) == 50
                && shown.revision.as_deref() == Some(pinned.as_str())
                && shown.phase == Some(RunPhase::Succeeded)
                && shown.steps.len() == 2
                && shown.steps.iter().all(|s| {
                    s.phase == Some(StepPhase::Succeeded)
                        && s.job_name.as_deref().is_some_and(|j| {
                            readable_job_name(j) == format!("victim-1-{}-1", s.name)
                        })
                })
        },
    )
    .await;
    assert_eq!(steps_run(&ns, "victim-1").await, ["copy", "slow"]);
    assert_eq!(
        pinned_revision(&ns, "victim-1").await,
        pinned,
        "copy ran another plan"
    );
    let record = RunRecord::of(&get_run(&ns, "victim-1").await).unwrap_or_default();
    assert_eq!(record.phase, Some(RunPhase::Succeeded), "{record:?}");
    assert_eq!(record.revision.as_deref(), Some(pinned.as_str()));

    // The decoy itself stays as the operator ended it.
    let decoy = get_run(&ns, "decoy").await;
    assert_eq!(
        RunRecord::of(&decoy).and_then(|r| r.phase),
        Some(RunPhase::Cancelled)
    );
    wait_until(
        Duration::from_secs(30),
        "decoy's status restored",
        || async {
            get_run(&ns, "decoy").await.status.and_then(|s| s.phase) == Some(RunPhase::Cancelled)
        },
    )
    .await;
    // The decoy was at rest when its status was forged: the operator said so (a pass already
    // under way when a running run's status is forged may put it back before it sees it).
    wait_until(
        Duration::from_secs(30),
        "a StatusRestored Event about decoy",
        || async { event_reasons(cluster, &ns, "decoy").contains(&"StatusRestored".to_string()) },
    )
    .await;
}
