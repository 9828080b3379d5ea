//! SynqX on a node that runs real containers (`tests/cluster/up --node containerd`):
//! installed with Helm from the locally built image, as a user would, then the quickstart
//! on a PersistentVolume, `kubectl logs`, the read-only root file system, S3 under it,
//! steps whose pods cannot start, `helm upgrade` during a run, and `helm uninstall`.
//!
//! One test walks through it in order, since each phase needs the release as the one
//! before left it. It runs as root with containerd, runc and the CNI plugins installed
//! (`cargo test -p synqx-e2e --features containerd-node --test node`; scripts/test-all.sh
//! does).
#![cfg(feature = "containerd-node")]

use std::path::Path;
use std::time::Duration;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::Pod;
use kube::Api;
use kube::api::ListParams;
use synqx_api::Pipeline;
use synqx_api::run::{RunPhase, StepPhase};
use synqx_e2e::cluster::{Cluster, TestNamespace, wait_until};
use synqx_e2e::node::{LocalVolume, NodeMoto, RELEASE_NAMESPACE, copy_tree, helm, synqx_run};
use synqx_e2e::runs::{
    apply, csv_rows, finished, slow_query, start_run, start_unstartable_runs, step,
};

const CHART: &str = "charts/synqx";

fn phase(run: &synqx_api::PipelineRun) -> Option<RunPhase> {
    run.status.as_ref().and_then(|s| s.phase)
}

#[tokio::test]
async fn synqx_installs_with_helm_and_runs_pipelines_on_a_containerd_node() {
    let cluster = Cluster::containerd_node();
    install(cluster).await;
    let ns = cluster.namespace("node").await;
    cluster.serve_namespace(&ns.name);
    let volume = LocalVolume::create(cluster, &ns);

    quickstart_on_a_volume(cluster, &ns, &volume).await;
    the_root_file_system_is_read_only(cluster, &ns, &volume).await;
    s3_to_parquet_under_the_read_only_root(cluster, &ns, &volume).await;
    helm_upgrade_rolls_the_operator_without_losing_a_run(cluster, &ns, &volume).await;
    pods_that_cannot_start_fail_their_step_with_the_reason(cluster, &ns).await;
    host_path_is_refused_naming_the_field(cluster, &ns).await;
    helm_uninstall_keeps_crds_pipelines_and_data(cluster, &ns, &volume).await;
}

/// `helm install` with no flags (a release left by an earlier run is removed first): both
/// operator pods Ready, one of them holding the Lease.
async fn install(cluster: &Cluster) {
    // Left by an earlier run of this test on a reused node; absent on a fresh one.
    let _ = synqx_e2e::helm::run(
        &["uninstall", "synqx", "-n", RELEASE_NAMESPACE, "--wait"],
        Some(&cluster.kubeconfig),
    );
    synqx_e2e::node::logs_volume(cluster);
    helm(
        cluster,
        &[
            "install",
            "synqx",
            CHART,
            "-n",
            RELEASE_NAMESPACE,
            "--create-namespace",
        ],
    );
    cluster.kubectl_ok(
        &[
            "rollout",
            "status",
            "-n",
            RELEASE_NAMESPACE,
            "deployment/synqx-operator",
            "--timeout=180s",
        ],
        None,
    );
    let client = cluster.client().await;
    let pods: Api<Pod> = Api::namespaced(client.clone(), RELEASE_NAMESPACE);
    let names: Vec<String> = pods
        .list(&ListParams::default().labels("app.kubernetes.io/name=synqx-operator"))
        .await
        .unwrap_or_else(|e| panic!("listing operator pods: {e}"))
        .items
        .into_iter()
        .filter(|p| p.metadata.deletion_timestamp.is_none())
        .filter_map(|p| p.metadata.name)
        .collect();
    assert_eq!(names.len(), 2, "two operator replicas: {names:?}");
    let leases: Api<Lease> = Api::namespaced(client, RELEASE_NAMESPACE);
    wait_until(
        Duration::from_secs(60),
        "an operator pod to hold the Lease",
        || async {
            let holder = leases
                .get_opt("synqx-operator")
                .await
                .ok()
                .flatten()
                .and_then(|l| l.spec?.holder_identity);
            holder.is_some_and(|h| names.contains(&h))
        },
    )
    .await;
}

/// The quickstart pipeline with its Connections on a PersistentVolume: every step runs in
/// a real container, and the warehouse on the volume holds the right rows.
async fn quickstart_on_a_volume(cluster: &Cluster, ns: &TestNamespace, volume: &LocalVolume) {
    copy_tree(
        &cluster.repo.join("examples/quickstart/data"),
        &volume.path().join("inbox"),
    );
    volume.give_to_pods();
    let example = std::fs::read_to_string(cluster.repo.join("examples/quickstart/pipeline.yaml"))
        .unwrap_or_else(|e| panic!("{e}"));
    let yaml = example
        .replace("filesystem: {path: ./data}", "filesystem: {path: /data/inbox}")
        .replace("filesystem: {path: ./out/lake}", "filesystem: {path: /data/out/lake}")
        .replace("sqlite: {path: ./out/warehouse.db}", "sqlite: {path: /data/out/warehouse.db}")
        .replace(
            "spec:\n  parallelism: 2\n",
            "spec:\n  parallelism: 2\n  runner:\n    volumes: [{name: data, persistentVolumeClaim: {claimName: data}}]\n    volumeMounts: [{name: data, mountPath: /data}]\n",
        );
    assert!(
        yaml.contains("mountPath: /data") && yaml.contains("/data/inbox"),
        "{yaml}"
    );
    apply(cluster, ns, &yaml);
    start_run(cluster, ns, "quickstart", "quickstart-1", "");
    let run = finished(ns, "quickstart-1").await;
    assert_eq!(phase(&run), Some(RunPhase::Succeeded), "{:#?}", run.status);
    let rows = |name: &str| {
        let s = step(&run, name);
        (s.rows_read, s.rows_written)
    };
    assert_eq!(rows("customers"), (Some(500), Some(500)));
    assert_eq!(rows("orders-to-lake"), (Some(5_000), Some(4_582)));
    assert_eq!(rows("orders-to-warehouse"), (Some(4_582), Some(4_582)));

    // What the steps wrote, read back from the volume by the CLI on this machine.
    let check = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let out = volume.path().join("out");
    synqx_run(
        cluster,
        &format!(
            "apiVersion: synqx.io/v1alpha1\nkind: Connection\nmetadata: {{name: wh}}\nspec: {{sqlite: {{path: {wh}}}}}\n---\n\
             apiVersion: synqx.io/v1alpha1\nkind: Connection\nmetadata: {{name: csv}}\nspec: {{filesystem: {{path: {csv}}}}}\n---\n\
             apiVersion: synqx.io/v1alpha1\nkind: Pipeline\nmetadata: {{name: check}}\nspec:\n  steps:\n\
             \x20   - {{name: customers, sync: {{source: {{connection: wh, asset: {{fqn: customers}}}}, destination: {{connection: csv, asset: {{fqn: customers/}}, format: csv}}}}}}\n\
             \x20   - {{name: orders, sync: {{source: {{connection: wh, asset: {{fqn: orders}}}}, destination: {{connection: csv, asset: {{fqn: orders/}}, format: csv}}}}}}\n\
             \x20   - {{name: revenue, sync: {{source: {{connection: wh, asset: {{fqn: daily_revenue}}}}, destination: {{connection: csv, asset: {{fqn: revenue/}}, format: csv}}}}}}\n",
            wh = out.join("warehouse.db").display(),
            csv = check.path().join("csv").display()
        ),
        check.path(),
    );
    assert_eq!(csv_rows(&check.path().join("csv/customers")), 500);
    assert_eq!(csv_rows(&check.path().join("csv/orders")), 4_582);
    assert!(
        csv_rows(&check.path().join("csv/revenue")) > 0,
        "daily_revenue is empty"
    );
    let parts = std::fs::read_dir(out.join("lake/orders"))
        .map(|d| {
            d.filter_map(Result::ok)
                .filter(|e| e.path().extension().is_some_and(|x| x == "parquet"))
                .count()
        })
        .unwrap_or(0);
    assert!(
        parts > 0,
        "no Parquet part under {}",
        out.join("lake/orders").display()
    );

    // The step's log, from the container runtime through the API server.
    let job = step(&run, "customers")
        .job_name
        .clone()
        .unwrap_or_else(|| panic!("customers has no Job"));
    let logs = cluster.kubectl_ok(&["logs", "-n", &ns.name, &format!("job/{job}")], None);
    assert!(
        logs.contains("synqx step: ")
            && logs.contains("step \"customers\" attempt 1: started")
            && logs.contains("succeeded after")
            && logs.contains("wrote 500 rows"),
        "kubectl logs job/{job}:\n{logs}"
    );
}

/// A step that writes outside its volumes fails on the read-only root file system.
async fn the_root_file_system_is_read_only(
    cluster: &Cluster,
    ns: &TestNamespace,
    _volume: &LocalVolume,
) {
    apply(
        cluster,
        ns,
        "apiVersion: synqx.io/v1alpha1\nkind: Connection\nmetadata: {name: outside}\nspec: {filesystem: {path: /var/synqx-outside}}\n---\n\
         apiVersion: synqx.io/v1alpha1\nkind: Pipeline\nmetadata: {name: escape}\nspec:\n\
         \x20 runner:\n    volumes: [{name: data, persistentVolumeClaim: {claimName: data}}]\n    volumeMounts: [{name: data, mountPath: /data}]\n\
         \x20 steps:\n    - {name: copy, sync: {source: {connection: inbox, asset: {fqn: customers.csv}}, destination: {connection: outside, asset: {fqn: customers/}, format: csv}}}\n",
    );
    start_run(cluster, ns, "escape", "escape-1", "");
    let run = finished(ns, "escape-1").await;
    assert_eq!(phase(&run), Some(RunPhase::Failed), "{:#?}", run.status);
    let message = step(&run, "copy").message.clone().unwrap_or_default();
    assert!(message.contains("Read-only file system"), "{message}");
}

/// S3 (moto on this machine, reached at the node's address) to Parquet on the volume: the
/// S3 source spools to TMPDIR, which is on the scratch volume.
async fn s3_to_parquet_under_the_read_only_root(
    cluster: &Cluster,
    ns: &TestNamespace,
    volume: &LocalVolume,
) {
    let moto = NodeMoto::start();
    moto.create_bucket("lake");
    let work = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let s3_with = |id: &str, secret: &str| {
        format!(
            "s3: {{bucket: lake, endpoint: \"{}\", forcePathStyle: true, region: us-east-1, accessKeyId: {id}, secretAccessKey: {secret}}}",
            moto.endpoint()
        )
    };
    let s3 = s3_with(
        "{secretKeyRef: {name: s3-keys, key: id}}",
        "{secretKeyRef: {name: s3-keys, key: secret}}",
    );
    let secret = "apiVersion: v1\nkind: Secret\nmetadata: {name: s3-keys, labels: {synqx.io/connection-secret: \"true\"}}\nstringData: {id: testing, secret: testing}\n---\n";
    // The bucket is filled from this machine with the CLI.
    synqx_run(
        cluster,
        &format!(
            "{secret}apiVersion: synqx.io/v1alpha1\nkind: Connection\nmetadata: {{name: in}}\nspec: {{filesystem: {{path: {inbox}}}}}\n---\n\
             apiVersion: synqx.io/v1alpha1\nkind: Connection\nmetadata: {{name: s3}}\nspec: {{{s3}}}\n---\n\
             apiVersion: synqx.io/v1alpha1\nkind: Pipeline\nmetadata: {{name: fill}}\nspec:\n  steps:\n\
             \x20   - {{name: orders, sync: {{source: {{connection: in, asset: {{fqn: \"orders/*.csv\"}}}}, destination: {{connection: s3, asset: {{fqn: raw/orders/}}, format: parquet}}}}}}\n",
            inbox = cluster.repo.join("examples/quickstart/data").display()
        ),
        work.path(),
    );
    apply(
        cluster,
        ns,
        &format!(
            "{secret}apiVersion: synqx.io/v1alpha1\nkind: Connection\nmetadata: {{name: s3}}\nspec: {{{s3}}}\n---\n\
             apiVersion: synqx.io/v1alpha1\nkind: Connection\nmetadata: {{name: copies}}\nspec: {{filesystem: {{path: /data/copies}}}}\n---\n\
             apiVersion: synqx.io/v1alpha1\nkind: Pipeline\nmetadata: {{name: from-s3}}\nspec:\n\
             \x20 runner:\n    volumes: [{{name: data, persistentVolumeClaim: {{claimName: data}}}}]\n    volumeMounts: [{{name: data, mountPath: /data}}]\n\
             \x20 steps:\n    - {{name: orders, sync: {{source: {{connection: s3, asset: {{fqn: raw/orders/}}, format: parquet}}, destination: {{connection: copies, asset: {{fqn: orders/}}, format: csv}}}}}}\n"
        ),
    );
    start_run(cluster, ns, "from-s3", "from-s3-1", "");
    let run = finished(ns, "from-s3-1").await;
    assert_eq!(phase(&run), Some(RunPhase::Succeeded), "{:#?}", run.status);
    assert_eq!(step(&run, "orders").rows_written, Some(5_000));
    assert_eq!(csv_rows(&volume.path().join("copies/orders")), 5_000);
}

/// `helm upgrade` with a changed value rolls the Deployment while a run is in flight; the
/// run still ends `Succeeded`.
async fn helm_upgrade_rolls_the_operator_without_losing_a_run(
    cluster: &Cluster,
    ns: &TestNamespace,
    _volume: &LocalVolume,
) {
    let client = cluster.client().await;
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), RELEASE_NAMESPACE);
    let generation = |d: Option<Deployment>| d.and_then(|d| d.metadata.generation).unwrap_or(0);
    let before = generation(
        deployments
            .get_opt("synqx-operator")
            .await
            .unwrap_or_else(|e| panic!("reading Deployment synqx-operator: {e}")),
    );
    apply(
        cluster,
        ns,
        &format!(
            "apiVersion: synqx.io/v1alpha1\nkind: Connection\nmetadata: {{name: scratch-db}}\nspec: {{sqlite: {{path: /data/slow.db}}}}\n---\n\
             apiVersion: synqx.io/v1alpha1\nkind: Pipeline\nmetadata: {{name: slow}}\nspec:\n\
             \x20 runner:\n    volumes: [{{name: data, persistentVolumeClaim: {{claimName: data}}}}]\n    volumeMounts: [{{name: data, mountPath: /data}}]\n\
             \x20 steps:\n    - {{name: first, sql: {{connection: scratch-db, statements: [\"{q}\"]}}}}\n    - {{name: second, dependsOn: [first], sql: {{connection: scratch-db, statements: [\"{q}\"]}}}}\n",
            q = slow_query(3_000_000)
        ),
    );
    start_run(cluster, ns, "slow", "slow-1", "");
    synqx_e2e::runs::step_reaches(ns, "slow-1", "first", StepPhase::Running).await;
    helm(
        cluster,
        &[
            "upgrade",
            "synqx",
            CHART,
            "-n",
            RELEASE_NAMESPACE,
            "--reuse-values",
            "--set",
            "runner.podStartTimeout=15s",
            // For the unstartable pods next: an image and a service account of their own.
            "--set",
            "runner.allowedImages={127.0.0.1:9/synqx/no-such-image:0}",
            "--set",
            "runner.allowServiceAccountOverride=true",
            "--wait",
            "--timeout",
            "3m",
        ],
    );
    let after = deployments
        .get("synqx-operator")
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(
        generation(Some(after.clone())) > before,
        "the upgrade did not change the Deployment"
    );
    let args = after
        .spec
        .and_then(|s| s.template.spec)
        .map(|p| p.containers[0].args.clone().unwrap_or_default())
        .unwrap_or_default();
    assert!(
        args.contains(&"--pod-start-timeout=15s".to_string()),
        "{args:?}"
    );
    let run = finished(ns, "slow-1").await;
    assert_eq!(phase(&run), Some(RunPhase::Succeeded), "{:#?}", run.status);
    assert_eq!(step(&run, "second").phase, Some(StepPhase::Succeeded));
}

/// An image that cannot be pulled (its registry, on loopback, refuses the connection), a
/// Secret that does not exist and a service account that does not exist: each step fails
/// with the reason, within the start timeout (15 s since the upgrade) plus one resync.
async fn pods_that_cannot_start_fail_their_step_with_the_reason(
    cluster: &Cluster,
    ns: &TestNamespace,
) {
    start_unstartable_runs(cluster, ns, "127.0.0.1:9/synqx/no-such-image:0");
    for (name, reasons) in [
        ("no-image", &["ImagePullBackOff", "ErrImagePull"][..]),
        ("no-secret", &["CreateContainerConfigError"][..]),
        ("no-account", &["FailedCreate"][..]),
    ] {
        let run = finished(ns, &format!("{name}-1")).await;
        assert_eq!(
            phase(&run),
            Some(RunPhase::Failed),
            "{name}: {:#?}",
            run.status
        );
        let message = step(&run, "only").message.clone().unwrap_or_default();
        assert!(
            message.contains("the pod could not start")
                && reasons.iter().any(|r| message.contains(r)),
            "{name}: {message}"
        );
    }
}

/// `hostPath` without `--allow-host-path`: the Pipeline is Invalid, naming the field.
async fn host_path_is_refused_naming_the_field(cluster: &Cluster, ns: &TestNamespace) {
    apply(
        cluster,
        ns,
        "apiVersion: synqx.io/v1alpha1\nkind: Pipeline\nmetadata: {name: host}\nspec:\n\
         \x20 runner:\n    volumes: [{name: host, hostPath: {path: /etc}}]\n    volumeMounts: [{name: host, mountPath: /host}]\n\
         \x20 steps:\n    - {name: only, sql: {connection: unstartable-db, statements: [\"SELECT 1\"]}}\n",
    );
    let pipelines: Api<Pipeline> = ns.api();
    wait_until(
        Duration::from_secs(60),
        "Pipeline host to be Invalid",
        || async {
            let p = synqx_e2e::runs::read(&pipelines, "host").await;
            p.status.unwrap_or_default().conditions.iter().any(|c| {
                c.r#type == "Ready"
                    && c.status == "False"
                    && c.message.contains("spec.runner.volumes[0].hostPath")
                    && c.message.contains("--allow-host-path")
            })
        },
    )
    .await;
}

/// `helm uninstall` removes the operator but keeps the CRDs, the Pipelines and the data.
async fn helm_uninstall_keeps_crds_pipelines_and_data(
    cluster: &Cluster,
    ns: &TestNamespace,
    volume: &LocalVolume,
) {
    helm(
        cluster,
        &["uninstall", "synqx", "-n", RELEASE_NAMESPACE, "--wait"],
    );
    let crds = cluster.kubectl_ok(&["get", "crd", "-o", "name"], None);
    for crd in [
        "pipelines.synqx.io",
        "pipelineruns.synqx.io",
        "connections.synqx.io",
    ] {
        assert!(crds.contains(crd), "{crd} was removed: {crds}");
    }
    let pipelines: Api<Pipeline> = ns.api();
    assert!(
        pipelines
            .get_opt("quickstart")
            .await
            .ok()
            .flatten()
            .is_some(),
        "the quickstart Pipeline was removed"
    );
    let deployments = cluster.kubectl_ok(
        &["get", "deployments", "-n", RELEASE_NAMESPACE, "-o", "name"],
        None,
    );
    assert!(deployments.trim().is_empty(), "{deployments}");
    assert!(Path::new(&volume.path().join("out/warehouse.db")).is_file());
}
