//! Step logs outlive their pods: the gateway keeps each step attempt's log in its store, and
//! `synqx logs` prints the whole of it after the Job and pod are deleted, after the
//! operator restarted (nothing in its memory), and after the run itself is deleted: on the
//! operator's volume, and in the bucket of an `s3` Connection a Pipeline names.

use std::path::Path;
use std::process::Output;

use synqx_api::gateway::{Body, LogLine};
use synqx_e2e::cluster::{Cluster, TestNamespace};
use synqx_e2e::gateway::{Auth, Next, PORT, connect, next, watch_path};
use synqx_e2e::own_operator::OwnOperator;
use synqx_e2e::runs::{
    apply, connection, delete_jobs, delete_run, folder, setup, sqlite, start_run, succeeded,
};
use synqx_e2e::secrets::{seal, vault_published};

/// The tests each run their own operator process on the gateway's one host port: one at a
/// time.
static OPERATOR: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

const VIEWER: &str = "apiVersion: v1\nkind: ServiceAccount\nmetadata: {name: viewer}\n---\napiVersion: rbac.authorization.k8s.io/v1\nkind: Role\nmetadata: {name: run-viewer}\nrules: [{apiGroups: [synqx.io], resources: [pipelineruns], verbs: [get]}]\n---\napiVersion: rbac.authorization.k8s.io/v1\nkind: RoleBinding\nmetadata: {name: viewer}\nroleRef: {apiGroup: rbac.authorization.k8s.io, kind: Role, name: run-viewer}\nsubjects: [{kind: ServiceAccount, name: viewer}]\n---\n";

/// A Pipeline `orders` whose step `load` copies a folder of CSV files into SQLite; `logs` is
/// its `spec.logs` (empty: none).
fn orders(data: &Path, logs: &str) -> String {
    let inbox = data.join("inbox");
    std::fs::create_dir_all(&inbox).expect("mkdir inbox");
    let rows: String = (1..=20).map(|i| format!("{i},{}\n", i * 10)).collect();
    std::fs::write(inbox.join("1.csv"), format!("id,amount\n{rows}")).expect("write orders");
    format!(
        "{VIEWER}{}{}apiVersion: synqx.io/v1alpha1\nkind: Pipeline\nmetadata: {{name: orders}}\nspec:\n{logs}  steps:\n    - {{name: load, sync: {{source: {{connection: inbox, asset: {{fqn: \"*.csv\"}}, columns: {{id: int64, amount: int64}}}}, destination: {{connection: db, asset: {{fqn: orders}}, mode: append}}}}}}\n",
        folder("inbox", &inbox),
        sqlite("db", &data.join("db.sqlite")),
    )
}

/// The lines of `step` the gateway's watch of a finished run holds in its snapshot: the
/// whole log of a short run, as the gateway received it.
async fn watched_lines(ns: &TestNamespace, run: &str, step: &str, token: &str) -> Vec<LogLine> {
    let path = watch_path(&ns.name, run, &format!("step={step}"));
    let (mut socket, _) = connect(&path, Auth::Header(token))
        .await
        .unwrap_or_else(|(code, body)| panic!("{path}: {code} {body}"));
    match next(&mut socket).await {
        Next::Message(message) => match message.body {
            Body::Snapshot { logs, .. } => logs
                .into_iter()
                .filter(|l| l.step == step)
                .flat_map(|l| l.lines)
                .collect(),
            other => panic!("{path}: the first message is no snapshot: {other:?}"),
        },
        other => panic!("{path}: {other:?}"),
    }
}

/// `synqx logs` (the built binary) with `args`, as the viewer.
fn synqx_logs(cluster: &Cluster, ns: &TestNamespace, token: &str, args: &[&str]) -> Output {
    std::process::Command::new(cluster.bin_dir.join("synqx"))
        .arg("logs")
        .args(args)
        .args([
            "-n",
            &ns.name,
            "--gateway",
            &format!("http://127.0.0.1:{PORT}"),
        ])
        .args(["--token", token])
        .env("KUBECONFIG", "/nonexistent")
        .output()
        .unwrap_or_else(|e| panic!("running synqx logs: {e}"))
}

/// What `synqx logs --step` prints for `lines`.
fn printed(lines: &[LogLine]) -> String {
    lines
        .iter()
        .map(|l| match &l.level {
            Some(level) => format!("{} {level:<5} {}\n", l.time, l.text),
            None => format!("{} {}\n", l.time, l.text),
        })
        .collect()
}

fn stdout_of(output: &Output) -> String {
    assert!(
        output.status.success(),
        "synqx logs failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// Runs `orders` as `orders-1` until it succeeds; returns the lines its step `load` logged,
/// as the gateway's watch has them.
async fn run_orders(cluster: &Cluster, ns: &TestNamespace, viewer: &str) -> Vec<LogLine> {
    start_run(cluster, ns, "orders", "orders-1", "");
    succeeded(ns, "orders-1").await;
    let expected = watched_lines(ns, "orders-1", "load", viewer).await;
    assert!(!expected.is_empty(), "the step logged nothing");
    expected
}

#[tokio::test]
async fn a_steps_whole_log_is_printed_from_the_volume_after_its_pod_and_run_are_gone() {
    let _serial = OPERATOR.lock().await;
    let (cluster, ns) = setup("logs-pv").await;
    let data = tempfile::tempdir().expect("tempdir");
    let store = tempfile::tempdir().expect("tempdir");
    let store_dir = store.path().to_string_lossy().into_owned();
    let mut operator = OwnOperator::start_with_gateway(
        cluster,
        &["--logs-dir", &store_dir],
        &data.path().join("operator.log"),
    )
    .await;
    apply(cluster, &ns, &orders(data.path(), ""));
    let viewer = cluster.service_account_token(&ns.name, "viewer");
    let expected = run_orders(cluster, &ns, &viewer).await;
    let file = store
        .path()
        .join(&ns.name)
        .join("orders/orders-1/load/1.jsonl.gz");
    assert!(file.is_file(), "{} is not stored", file.display());

    // The Job and its pod go, and the operator restarts: only the volume holds the log.
    delete_jobs(cluster, &ns, "orders-1").await;
    operator.restart().await;
    let out = synqx_logs(cluster, &ns, &viewer, &["orders-1", "--step", "load"]);
    assert_eq!(stdout_of(&out), printed(&expected));
    // Without --step, each line names its step.
    let out = synqx_logs(cluster, &ns, &viewer, &["orders-1"]);
    let all = stdout_of(&out);
    assert_eq!(all.lines().count(), expected.len(), "{all}");
    assert!(
        all.lines()
            .zip(&expected)
            .all(|(l, e)| l.starts_with(&format!("{} load ", e.time)) && l.ends_with(&e.text)),
        "{all}"
    );

    // The run goes too: `-f` cannot follow it and prints what the store holds.
    delete_run(cluster, &ns, "orders-1");
    let out = synqx_logs(cluster, &ns, &viewer, &["orders-1", "--step", "load", "-f"]);
    assert_eq!(stdout_of(&out), printed(&expected));
    // Someone without the right to get the run reads nothing.
    let stranger = {
        apply(
            cluster,
            &ns,
            "apiVersion: v1\nkind: ServiceAccount\nmetadata: {name: stranger}\n",
        );
        cluster.service_account_token(&ns.name, "stranger")
    };
    let out = synqx_logs(cluster, &ns, &stranger, &["orders-1", "--step", "load"]);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("403"), "{stderr}");
    drop(operator);
}

#[tokio::test]
async fn a_pipelines_own_s3_store_keeps_its_steps_whole_log_after_its_pod_and_run_are_gone() {
    let _serial = OPERATOR.lock().await;
    let (cluster, ns) = setup("logs-s3").await;
    let data = tempfile::tempdir().expect("tempdir");
    let volume = tempfile::tempdir().expect("tempdir");
    let volume_dir = volume.path().to_string_lossy().into_owned();
    let moto = synqx_testkit::s3::server();
    let bucket = moto.bucket("logs");
    // The operator keeps logs on its volume; the Pipeline names its own store instead.
    let mut operator = OwnOperator::start_with_gateway(
        cluster,
        &["--logs-dir", &volume_dir],
        &data.path().join("operator.log"),
    )
    .await;
    apply(
        cluster,
        &ns,
        &orders(
            data.path(),
            "  logs: {connection: lake, prefix: runs/logs}\n",
        ),
    );
    // The key id from a Secret that opted in, the secret key sealed: both ways the operator
    // opens a Connection's credentials itself.
    let key_id = "AKIDLOGSE2E0001";
    let secret_key = "logs-e2e-secret-value-7c1f";
    vault_published(&ns).await;
    let sealed = seal(cluster, &ns.name, "lake", "s3.secretAccessKey", secret_key);
    apply(
        cluster,
        &ns,
        &format!(
            "apiVersion: v1\nkind: Secret\nmetadata: {{name: lake-keys, labels: {{synqx.io/connection-secret: \"true\"}}}}\nstringData: {{id: {key_id}}}\n---\n{}",
            connection(
                "lake",
                &format!(
                    "s3: {{bucket: {bucket}, endpoint: \"{}\", forcePathStyle: true, region: us-east-1, prefix: raw, accessKeyId: {{secretKeyRef: {{name: lake-keys, key: id}}}}, secretAccessKey: {{sealed: \"{sealed}\"}}}}",
                    moto.endpoint()
                ),
            )
        ),
    );
    let viewer = cluster.service_account_token(&ns.name, "viewer");
    let expected = run_orders(cluster, &ns, &viewer).await;
    // One object per report, below the Connection's prefix and the Pipeline's; nothing on
    // the operator's volume.
    let keys = moto.keys(&bucket);
    let attempt = format!("raw/runs/logs/{}/orders/orders-1/load/1/", ns.name);
    assert!(
        !keys.is_empty() && keys.iter().all(|k| k.starts_with(&attempt)),
        "{keys:?}"
    );
    assert!(
        !volume.path().join(&ns.name).exists(),
        "the Pipeline's logs reached the operator's volume"
    );

    // The Job and its pod go, and the operator restarts: only the bucket holds the log.
    delete_jobs(cluster, &ns, "orders-1").await;
    operator.restart().await;
    let out = synqx_logs(cluster, &ns, &viewer, &["orders-1", "--step", "load"]);
    assert_eq!(stdout_of(&out), printed(&expected));

    // The run goes too: its Pipeline's store is still found.
    delete_run(cluster, &ns, "orders-1");
    let out = synqx_logs(cluster, &ns, &viewer, &["orders-1", "--step", "load"]);
    assert_eq!(stdout_of(&out), printed(&expected));
    drop(operator);
    // The operator held the credentials; its log never shows them.
    let log = std::fs::read_to_string(data.path().join("operator.log")).unwrap_or_default();
    assert!(
        !log.contains(secret_key),
        "the secret key is in the operator's log"
    );
    assert!(!log.contains(key_id), "the key id is in the operator's log");
}
