//! The operator as a process of the test, started with the flags a test needs, in place of
//! the shared operator pod (scaled to zero while it runs, back to one when it is dropped).

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use k8s_openapi::api::coordination::v1::Lease;
use kube::Api;

use crate::cluster::{Cluster, wait_until};
use crate::runs::scale_operator;

/// Who holds the operator's Lease; fails on any error of the API server.
pub async fn lease_holder(cluster: &Cluster) -> Option<String> {
    let leases: Api<Lease> = Api::namespaced(cluster.client().await, "synqx-system");
    leases
        .get_opt("synqx-operator")
        .await
        .unwrap_or_else(|e| panic!("reading the Lease synqx-system/synqx-operator: {e}"))?
        .spec?
        .holder_identity
        .filter(|h| !h.is_empty())
}

/// A `synqx-operator run --all-namespaces` process with `args`, its log in `log`.
pub struct OwnOperator<'c> {
    cluster: &'c Cluster,
    child: Child,
}

impl<'c> OwnOperator<'c> {
    /// Stops the operator pod (waiting until it gave up its Lease), then starts the process.
    pub async fn start(cluster: &'c Cluster, args: &[&str], log: &Path) -> Self {
        scale_operator(cluster, "0");
        wait_until(
            Duration::from_secs(60),
            "the operator pod to stop",
            || async { lease_holder(cluster).await.is_none() },
        )
        .await;
        let log = std::fs::File::create(log)
            .unwrap_or_else(|e| panic!("creating {}: {e}", log.display()));
        let child = Command::new(cluster.bin_dir.join("synqx-operator"))
            .args(["run", "--all-namespaces", "--metrics-addr", "127.0.0.1:0"])
            .args(["--gateway-addr", "127.0.0.1:0"])
            .args(args)
            .env("KUBECONFIG", &cluster.kubeconfig)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("starting synqx-operator {args:?}: {e}"));
        Self { cluster, child }
    }
}

impl Drop for OwnOperator<'_> {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        scale_operator(self.cluster, "1");
    }
}

/// Deletes one pod of the operator at once: the process kubelet kills it with SIGKILL, so it
/// neither finishes its work nor releases its Lease.
pub fn kill_pod(cluster: &Cluster, pod: &str) {
    let out = cluster.kubectl(
        &[
            "delete",
            "pod",
            "-n",
            "synqx-system",
            pod,
            "--grace-period=0",
            "--force",
            "--wait=false",
        ],
        None,
    );
    assert!(
        out.status.success(),
        "killing {pod}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}
