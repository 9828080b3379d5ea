//! Helpers for the tests of credentials on the control plane: sealing a value as a user
//! does, waiting for a Connection's check, and everything a reader of the cluster can see.

use std::io::Write;
use std::process::{Command, Stdio};
use std::time::Duration;

use k8s_openapi::api::core::v1::ConfigMap;
use kube::Api;
use synqx_api::Connection;

use crate::cluster::{Cluster, TestNamespace, wait_for_value, wait_until};

/// `synqx seal` for one field of a Connection of `ns`, with the public key the cluster
/// publishes (what a user does; it needs no Secret).
pub fn seal(cluster: &Cluster, ns: &str, connection: &str, field: &str, value: &str) -> String {
    let mut child = Command::new(cluster.bin_dir.join("synqx"))
        .args(["seal", "--namespace", ns, "--connection", connection])
        .args(["--field", field])
        .env("KUBECONFIG", &cluster.kubeconfig)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("starting synqx seal: {e}"));
    if let Some(mut stdin) = child.stdin.take() {
        stdin
            .write_all(value.as_bytes())
            .unwrap_or_else(|e| panic!("writing to synqx seal: {e}"));
    }
    let out = child
        .wait_with_output()
        .unwrap_or_else(|e| panic!("running synqx seal: {e}"));
    assert!(
        out.status.success(),
        "synqx seal: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// Waits until the operator has published the namespace's vault public key (the ConfigMap
/// `synqx-vault`, created with the namespace's first Connection): `synqx seal` needs it.
pub async fn vault_published(ns: &TestNamespace) {
    let maps: Api<ConfigMap> = ns.api();
    wait_until(
        Duration::from_secs(60),
        "the ConfigMap synqx-vault",
        || async { maps.get_opt("synqx-vault").await.ok().flatten().is_some() },
    )
    .await;
}

/// The `Ready` condition of a Connection (status, reason, message) once it is no longer
/// being checked.
pub async fn checked(ns: &TestNamespace, name: &str) -> (String, String, String) {
    let connections: Api<Connection> = ns.api();
    let verdict = || async {
        let c = connections
            .get(name)
            .await
            .unwrap_or_else(|e| panic!("reading Connection {name}: {e}"));
        let ready = c
            .status?
            .conditions
            .into_iter()
            .find(|c| c.r#type == "Ready")?;
        (ready.reason != "Checking").then_some((ready.status, ready.reason, ready.message))
    };
    // The verdict seen, not a second reading: a Secret that just changed starts a new check.
    wait_for_value(
        Duration::from_secs(120),
        &format!("Connection {name} to be checked"),
        verdict,
    )
    .await
}

/// Everything of a namespace a user or a tool can read, as text: every object with its
/// status (pods with their termination messages), Events, and the logs of its pods.
pub fn readable(cluster: &Cluster, ns: &str) -> String {
    let mut text = cluster.kubectl_ok(
        &[
            "get",
            "pipelines,pipelineruns,connections,jobs,pods,events,configmaps,controllerrevisions",
            "-n",
            ns,
            "-o",
            "yaml",
        ],
        None,
    );
    text.push_str(&pod_logs(cluster, ns));
    text
}

/// The logs of every pod of a namespace that ran on the node (a pod that never ran has none;
/// one whose logs cannot be read fails the test, rather than being searched as empty).
pub fn pod_logs(cluster: &Cluster, ns: &str) -> String {
    let pods = cluster.kubectl(&["get", "pods", "-n", ns, "-o", "name"], None);
    assert!(
        pods.status.success(),
        "kubectl get pods: {}",
        String::from_utf8_lossy(&pods.stderr)
    );
    String::from_utf8_lossy(&pods.stdout)
        .lines()
        .filter_map(|pod| cluster.pod_logs_if_ran(ns, pod.trim_start_matches("pod/")))
        .collect()
}

/// The lines of `text` that contain any of `secrets`, with the secret each holds.
pub fn lines_with<'t>(text: &'t str, secrets: &[&str]) -> Vec<(String, &'t str)> {
    text.lines()
        .flat_map(|line| {
            secrets
                .iter()
                .filter(|s| line.contains(**s))
                .map(move |s| (s.to_string(), line))
        })
        .collect()
}
