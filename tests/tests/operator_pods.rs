//! Step pods on the process kubelet: a Pipeline that asks for `hostPath` is refused naming
//! the field, and steps whose pods cannot start (an image the kubelet cannot run, a missing
//! Secret, a missing service account) fail with the reason instead of hanging.

use std::process::{Command, Stdio};
use std::time::Duration;

use synqx_api::Pipeline;
use synqx_api::run::RunPhase;
use synqx_e2e::cluster::wait_until;
use synqx_e2e::runs::{apply, finished, scale_operator, setup, start_unstartable_runs, step};

/// Tests that replace the shared operator must not overlap with those that use it.
static OPERATOR: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

#[tokio::test]
async fn a_pipeline_asking_for_host_path_is_refused_naming_the_field() {
    let _serial = OPERATOR.lock().await;
    let (cluster, ns) = setup("hostpath").await;
    apply(
        cluster,
        &ns,
        "apiVersion: synqx.io/v1alpha1\nkind: Connection\nmetadata: {name: db}\nspec: {sqlite: {path: db.sqlite}}\n---\n\
         apiVersion: synqx.io/v1alpha1\nkind: Pipeline\nmetadata: {name: host}\nspec:\n\
         \x20 runner:\n    volumes: [{name: host, hostPath: {path: /etc}}]\n    volumeMounts: [{name: host, mountPath: /host}]\n\
         \x20 steps:\n    - {name: only, sql: {connection: db, statements: [\"SELECT 1\"]}}\n",
    );
    let pipelines: kube::Api<Pipeline> = ns.api();
    let ready = || async {
        let pipeline = pipelines.get("host").await.ok()?;
        pipeline
            .status?
            .conditions
            .into_iter()
            .find(|c| c.r#type == "Ready")
    };
    wait_until(
        Duration::from_secs(60),
        "Pipeline host to be Invalid",
        || async { ready().await.is_some_and(|c| c.status == "False") },
    )
    .await;
    let message = ready().await.map(|c| c.message).unwrap_or_default();
    assert_eq!(
        message,
        "Pipeline/host: spec.runner.volumes[0].hostPath: volume \"host\": hostPath volumes are not allowed by this operator (an administrator can allow them with --allow-host-path); use a persistentVolumeClaim"
    );
}

#[tokio::test]
async fn steps_whose_pods_cannot_start_fail_with_the_reason() {
    let _serial = OPERATOR.lock().await;
    let (cluster, ns) = setup("nostart").await;
    let dir = tempfile::tempdir().expect("tempdir");
    // This test's operator, with a short --pod-start-timeout, stands in for the pod.
    scale_operator(cluster, "0");
    let log = std::fs::File::create(dir.path().join("operator.log")).expect("log");
    let mut operator = Command::new(cluster.bin_dir.join("synqx-operator"))
        .args(["run", "--all-namespaces", "--metrics-addr", "127.0.0.1:0"])
        .args(["--gateway-addr", "127.0.0.1:0"])
        .args(["--pod-start-timeout", "5s", "--log-format", "text"])
        // The unstartable runs ask for an image and a service account of their own.
        .args(["--allowed-runner-images", "registry.example/etl-tools:0"])
        .arg("--allow-service-account-override")
        .env("KUBECONFIG", &cluster.kubeconfig)
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .expect("start the operator");

    let names = start_unstartable_runs(cluster, &ns, "registry.example/etl-tools:0");
    let mut results = Vec::new();
    for name in names {
        let run = finished(&ns, &format!("{name}-1")).await;
        results.push((name, run));
    }
    let _ = operator.kill();
    let _ = operator.wait();
    scale_operator(cluster, "1");

    for (name, run) in results {
        let expected = match name {
            // The process kubelet runs only SynqX images (as the built binaries).
            "no-image" => {
                "the pod could not start: ErrImageNeverPull: command \"synqx\" is neither a built SynqX binary nor on PATH"
            }
            "no-secret" => "the pod could not start: CreateContainerConfigError:",
            _ => "the pod could not start: FailedCreate: Error creating: pods",
        };
        assert_eq!(
            run.status.as_ref().and_then(|s| s.phase),
            Some(RunPhase::Failed),
            "{name}: {:#?}",
            run.status
        );
        let message = step(&run, "only").message.clone().unwrap_or_default();
        assert!(message.contains(expected), "{name}: {message}");
    }
}
