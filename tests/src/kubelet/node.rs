//! The Node the process kubelet stands for: registered Ready, kept alive by a status
//! heartbeat and a Lease in `kube-node-lease`, as a real kubelet does.

use std::time::Duration;

use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::Node;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
use k8s_openapi::jiff::Timestamp;
use kube::api::{Patch, PatchParams};
use kube::{Api, Client};
use serde_json::json;

const FIELD_MANAGER: &str = "synqx-kubelet";
const HEARTBEAT: Duration = Duration::from_secs(10);
const LEASE_SECONDS: i32 = 40;

/// Creates or updates the Node and marks it Ready.
pub async fn register(client: &Client, name: &str) -> Result<(), kube::Error> {
    let nodes: Api<Node> = Api::all(client.clone());
    let node = json!({
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {
            "name": name,
            "labels": {
                "kubernetes.io/hostname": name,
                "kubernetes.io/os": "linux",
                "kubernetes.io/arch": std::env::consts::ARCH.replace("x86_64", "amd64").replace("aarch64", "arm64"),
                "node.kubernetes.io/instance-type": "process",
            },
        },
    });
    let params = PatchParams::apply(FIELD_MANAGER).force();
    nodes.patch(name, &params, &Patch::Apply(&node)).await?;
    heartbeat(client, name).await
}

/// Reports the Node Ready and renews its Lease until the task is dropped.
pub async fn keep_alive(client: Client, name: String) {
    loop {
        tokio::time::sleep(HEARTBEAT).await;
        if let Err(error) = heartbeat(&client, &name).await {
            tracing::warn!(node = %name, %error, "node heartbeat failed");
        }
    }
}

async fn heartbeat(client: &Client, name: &str) -> Result<(), kube::Error> {
    let now = Timestamp::now();
    let condition = |kind: &str, status: &str, reason: &str, message: &str| {
        json!({"type": kind, "status": status, "reason": reason, "message": message,
               "lastHeartbeatTime": now, "lastTransitionTime": now})
    };
    let capacity =
        json!({"cpu": "2", "memory": "24Gi", "pods": "110", "ephemeral-storage": "100Gi"});
    let status = json!({
        "status": {
            "capacity": capacity,
            "allocatable": capacity,
            "addresses": [{"type": "InternalIP", "address": "127.0.0.1"}, {"type": "Hostname", "address": name}],
            "conditions": [
                condition("Ready", "True", "KubeletReady", "the process kubelet is posting ready status"),
                condition("MemoryPressure", "False", "KubeletHasSufficientMemory", "no memory pressure"),
                condition("DiskPressure", "False", "KubeletHasNoDiskPressure", "no disk pressure"),
                condition("PIDPressure", "False", "KubeletHasSufficientPID", "no PID pressure"),
            ],
            "nodeInfo": {
                "architecture": std::env::consts::ARCH,
                "bootID": "",
                "containerRuntimeVersion": "process://synqx",
                "kernelVersion": "",
                "kubeProxyVersion": "",
                "kubeletVersion": concat!("synqx-kubelet/", env!("CARGO_PKG_VERSION")),
                "machineID": "",
                "operatingSystem": "linux",
                "osImage": "host processes",
                "systemUUID": "",
            },
        },
    });
    let nodes: Api<Node> = Api::all(client.clone());
    nodes
        .patch_status(name, &PatchParams::default(), &Patch::Merge(&status))
        .await?;

    let leases: Api<Lease> = Api::namespaced(client.clone(), "kube-node-lease");
    let lease = json!({
        "apiVersion": "coordination.k8s.io/v1",
        "kind": "Lease",
        "metadata": {"name": name},
        "spec": {"holderIdentity": name, "leaseDurationSeconds": LEASE_SECONDS, "renewTime": MicroTime(now)},
    });
    leases
        .patch(
            name,
            &PatchParams::apply(FIELD_MANAGER).force(),
            &Patch::Apply(&lease),
        )
        .await?;
    Ok(())
}
