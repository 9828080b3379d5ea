//! Step logs outlive their pods: the gateway keeps each step attempt's log in its store, and
//! `synqx logs` prints the whole of it after the Job and pod are deleted, after the
//! operator restarted (nothing in its memory), and after the run itself is deleted: on the
//! operator's volume, and in the bucket of an `s3` Connection a Pipeline names.

use std::path::Path;
use std::process::Output;

use synqx_api::gateway::{Body, LogLine};
use synqx_api::run::RunPhase;
use synqx_e2e::cluster::{Cluster, TestNamespace};
use synqx_e2e::gateway::{Auth, Next, PORT, connect, next, watch_path};
use synqx_e2e::own_operator::OwnOperator;
use synqx_e2e::runs::{
    apply, connection, delete_jobs, delete_run, folder, get_run, setup, slow_query, sqlite,
    start_run, succeeded,
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

/// An operator of its own, serving the gateway and keeping logs on the volume `store`; it
/// logs to `data/operator.log`.
async fn operator_on_volume(
    cluster: &'static Cluster,
    data: &Path,
    store: &Path,
) -> OwnOperator<'static> {
    let store = store.to_string_lossy().into_owned();
    OwnOperator::start_with_gateway(cluster, &["--logs-dir", &store], &data.join("operator.log"))
        .await
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
    let (data, store) = (
        tempfile::tempdir().expect("tempdir"),
        tempfile::tempdir().expect("tempdir"),
    );
    let mut operator = operator_on_volume(cluster, data.path(), store.path()).await;
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

/// `synqx logs -f` started while a step runs prints its lines as they come, before the run
/// ends, and exits by itself once the run ended, having printed each line once.
#[tokio::test]
async fn logs_follow_a_running_step_live_and_end_with_its_run() {
    let _serial = OPERATOR.lock().await;
    let (cluster, ns) = setup("logs-follow").await;
    let (data, store) = (
        tempfile::tempdir().expect("tempdir"),
        tempfile::tempdir().expect("tempdir"),
    );
    let operator = operator_on_volume(cluster, data.path(), store.path()).await;
    apply(
        cluster,
        &ns,
        &format!(
            "{VIEWER}{}apiVersion: synqx.io/v1alpha1\nkind: Pipeline\nmetadata: {{name: slow}}\nspec:\n  steps:\n    - {{name: load, sql: {{connection: db, statements: [\"{}\"]}}}}\n",
            sqlite("db", &data.path().join("db.sqlite")),
            slow_query(40_000_000),
        ),
    );
    let viewer = cluster.service_account_token(&ns.name, "viewer");
    start_run(cluster, &ns, "slow", "slow-1", "");
    let mut child = std::process::Command::new(cluster.bin_dir.join("synqx"))
        .args(["logs", "slow-1", "--step", "load", "-f", "-n", &ns.name])
        .args(["--gateway", &format!("http://127.0.0.1:{PORT}")])
        .args(["--token", &viewer])
        .env("KUBECONFIG", "/nonexistent")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("running synqx logs -f: {e}"));
    let stdout = child.stdout.take().expect("piped stdout");
    let (lines_tx, mut lines_rx) = tokio::sync::mpsc::unbounded_channel();
    std::thread::spawn(move || {
        use std::io::BufRead;
        for line in std::io::BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
        {
            if lines_tx.send(line).is_err() {
                return;
            }
        }
    });
    // The step's first line arrives while the run still runs: it is followed, not replayed.
    let first = tokio::time::timeout(std::time::Duration::from_secs(120), lines_rx.recv())
        .await
        .unwrap_or_else(|_| panic!("synqx logs -f printed nothing within 120 s"))
        .unwrap_or_else(|| panic!("synqx logs -f ended before printing a line"));
    assert!(
        first.contains("synqx step: ") && first.contains(": started"),
        "{first}"
    );
    let phase = get_run(&ns, "slow-1").await.status.and_then(|s| s.phase);
    assert_eq!(
        phase,
        Some(RunPhase::Running),
        "printed only after the run: {first}"
    );

    succeeded(&ns, "slow-1").await;
    // It ends by itself once the run ended.
    let waited = tokio::task::spawn_blocking(move || {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
        loop {
            match child.try_wait() {
                Ok(Some(status)) => return Ok(status),
                Ok(None) if std::time::Instant::now() < deadline => {
                    std::thread::sleep(std::time::Duration::from_millis(200));
                }
                Ok(None) => {
                    let _ = child.kill();
                    return Err("synqx logs -f did not end within 60 s of its run".to_string());
                }
                Err(e) => return Err(format!("waiting for synqx logs -f: {e}")),
            }
        }
    })
    .await
    .expect("the waiting thread");
    let status = waited.unwrap_or_else(|e| panic!("{e}"));
    assert!(status.success(), "synqx logs -f failed: {status}");
    let mut printed_lines = vec![first];
    while let Some(line) = lines_rx.recv().await {
        printed_lines.push(line);
    }
    let expected = watched_lines(&ns, "slow-1", "load", &viewer).await;
    assert_eq!(
        printed_lines
            .iter()
            .map(|l| format!("{l}\n"))
            .collect::<String>(),
        printed(&expected),
        "each line once, the last one after the step ended"
    );
    assert!(
        printed_lines
            .last()
            .is_some_and(|l| l.contains("succeeded")),
        "{printed_lines:?}"
    );
    drop(operator);
}
