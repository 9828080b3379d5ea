//! The operator as a process of the test, started with the flags a test needs, in place of
//! the shared operator pod (scaled to zero while it runs, back to one when it is dropped).

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::Pod;
use kube::Api;
use kube::api::ListParams;
use tokio::net::TcpStream;

use crate::cluster::{Cluster, wait_until};
use crate::gateway::PORT;
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
    args: Vec<String>,
    log: PathBuf,
}

impl<'c> OwnOperator<'c> {
    /// Stops the operator pod (waiting until it gave up its Lease), then starts the process.
    pub async fn start(cluster: &'c Cluster, args: &[&str], log: &Path) -> Self {
        stop_pod(cluster).await;
        let mut all = vec!["--gateway-addr", "127.0.0.1:0"];
        all.extend_from_slice(args);
        Self::spawn(cluster, &all, log)
    }

    /// As [`Self::start`], with the gateway on the host port the tests reach
    /// ([`crate::gateway::PORT`]) and step pods reporting their telemetry to it.
    pub async fn start_with_gateway(cluster: &'c Cluster, args: &[&str], log: &Path) -> Self {
        stop_pod(cluster).await;
        let addr = format!("127.0.0.1:{PORT}");
        let url = format!("http://{addr}");
        let mut all = vec!["--gateway-addr", &addr, "--gateway-url", &url];
        all.extend_from_slice(args);
        let operator = Self::spawn(cluster, &all, log);
        operator.wait_until_serving().await;
        operator
    }

    /// Kills the process and starts it again with the same flags: what it kept in memory
    /// is gone. The log continues in the same file.
    pub async fn restart(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        self.child = spawn_child(self.cluster, &self.args, &self.log);
        if self.args.iter().any(|a| a == "--gateway-url") {
            self.wait_until_serving().await;
        }
    }

    fn spawn(cluster: &'c Cluster, args: &[&str], log: &Path) -> Self {
        let args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
        let child = spawn_child(cluster, &args, log);
        Self {
            cluster,
            child,
            args,
            log: log.to_path_buf(),
        }
    }

    /// Waits until this process serves the gateway's port (a pod that held it is gone: the
    /// process binds it at start, and exits when it cannot).
    async fn wait_until_serving(&self) {
        wait_until(
            Duration::from_secs(60),
            "the operator process to serve the gateway",
            || async { TcpStream::connect(("127.0.0.1", PORT)).await.is_ok() },
        )
        .await;
    }
}

/// The operator process with `args`, its log appended to `log`.
fn spawn_child(cluster: &Cluster, args: &[String], log: &Path) -> Child {
    let file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .unwrap_or_else(|e| panic!("opening {}: {e}", log.display()));
    Command::new(cluster.bin_dir.join("synqx-operator"))
        .args(["run", "--all-namespaces", "--metrics-addr", "127.0.0.1:0"])
        .args(args)
        .env("KUBECONFIG", &cluster.kubeconfig)
        .stdout(Stdio::null())
        .stderr(file)
        .spawn()
        .unwrap_or_else(|e| panic!("starting synqx-operator {args:?}: {e}"))
}

/// Scales the operator pod to zero and waits until its pods are gone, the Lease is free
/// (given up, or left by a killed holder and expired), and the gateway's port is free.
async fn stop_pod(cluster: &Cluster) {
    scale_operator(cluster, "0");
    wait_until(
        Duration::from_secs(60),
        "the operator pod to stop and its Lease to be free",
        || async { operator_pods(cluster).await == 0 && lease_is_free(cluster).await },
    )
    .await;
    wait_until(
        Duration::from_secs(60),
        "the operator pod to free the gateway's port",
        || async { TcpStream::connect(("127.0.0.1", PORT)).await.is_err() },
    )
    .await;
}

/// The operator's pods; fails on any error of the API server.
async fn operator_pods(cluster: &Cluster) -> usize {
    let pods: Api<Pod> = Api::namespaced(cluster.client().await, "synqx-system");
    pods.list(&ListParams::default().labels("app.kubernetes.io/name=synqx-operator"))
        .await
        .unwrap_or_else(|e| panic!("listing the operator's pods in synqx-system: {e}"))
        .items
        .len()
}

/// Whether nobody holds the operator's Lease: no holder, or one that stopped renewing it
/// (a process killed while it led) so long ago that it expired.
async fn lease_is_free(cluster: &Cluster) -> bool {
    let leases: Api<Lease> = Api::namespaced(cluster.client().await, "synqx-system");
    let Some(spec) = leases
        .get_opt("synqx-operator")
        .await
        .unwrap_or_else(|e| panic!("reading the Lease synqx-system/synqx-operator: {e}"))
        .and_then(|l| l.spec)
    else {
        return true;
    };
    if spec.holder_identity.as_deref().is_none_or(str::is_empty) {
        return true;
    }
    let renewed = spec.renew_time.map_or(0, |t| t.0.as_second());
    let lasts = i64::from(spec.lease_duration_seconds.unwrap_or(15));
    renewed.saturating_add(lasts) < k8s_openapi::jiff::Timestamp::now().as_second()
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
    cluster.kubectl_ok(
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
}
