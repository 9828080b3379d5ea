//! A kubelet that runs containers as local processes, so a real API server and controller
//! manager can schedule and run SynqX's pods on a machine without a container runtime.
//!
//! It registers one Ready Node, binds every pending pod to it, and runs each pod in a
//! worker ([`pod`]): identity from the TokenRequest API ([`identity`]) and projected token
//! volumes ([`projected`]), environment as a
//! kubelet resolves it ([`env`]), containers as process groups ([`container`]). Probes,
//! volumes and resource limits are not enforced; a process sees the host's file system.

pub mod container;
pub mod env;
pub mod identity;
pub mod node;
pub mod pod;
pub mod projected;

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::{Binding, Node, ObjectReference, Pod};
use kube::api::{ObjectMeta, PostParams};
use kube::runtime::WatchStreamExt;
use kube::runtime::watcher::{self, Event};
use kube::{Api, Client};
use tokio::sync::watch;
use tokio::task::JoinHandle;

pub use identity::ClusterAccess;
pub use pod::{NodeContext, PodUpdate};

/// How the kubelet is set up.
#[derive(Debug, Clone)]
pub struct Config {
    pub node_name: String,
    /// Pod folders (logs, tokens) and the pid files `tests/cluster/down` reads.
    pub run_dir: PathBuf,
    /// The built `synqx*` binaries images map to.
    pub bin_dir: PathBuf,
    pub access: ClusterAccess,
    pub path_var: String,
}

#[derive(Debug, thiserror::Error)]
pub enum KubeletError {
    #[error("registering node {node}: {source}")]
    Register { node: String, source: kube::Error },
    #[error("watching pods: {0}")]
    Watch(#[from] watcher::Error),
}

/// Runs the kubelet until `shutdown` completes, then stops every pod's processes.
pub async fn run(
    client: Client,
    config: Config,
    shutdown: impl Future<Output = ()>,
) -> Result<(), KubeletError> {
    node::register(&client, &config.node_name)
        .await
        .map_err(|source| KubeletError::Register {
            node: config.node_name.clone(),
            source,
        })?;
    let heartbeat = tokio::spawn(node::keep_alive(client.clone(), config.node_name.clone()));
    let ctx = Arc::new(NodeContext {
        client: client.clone(),
        node_name: config.node_name.clone(),
        run_dir: config.run_dir,
        bin_dir: config.bin_dir,
        access: config.access,
        path_var: config.path_var,
    });
    tracing::info!(node = %ctx.node_name, "process kubelet ready");

    let pods: Api<Pod> = Api::all(client.clone());
    let pending = watcher::watcher(
        pods.clone(),
        watcher::Config::default().fields("spec.nodeName="),
    )
    .applied_objects();
    let ours = watcher::watcher(
        pods,
        watcher::Config::default().fields(&format!("spec.nodeName={}", ctx.node_name)),
    );
    let mut pending = std::pin::pin!(pending);
    let mut ours = std::pin::pin!(ours);
    let mut shutdown = std::pin::pin!(shutdown);
    let mut pods = Pods::default();

    let result = loop {
        tokio::select! {
            () = &mut shutdown => break Ok(()),
            next = pending.try_next() => match next {
                Ok(Some(pod)) => bind(&client, &ctx.node_name, &pod).await,
                Ok(None) => break Ok(()),
                Err(error) => tracing::warn!(%error, "watching pending pods"),
            },
            next = ours.next() => match next {
                Some(Ok(event)) => dispatch(&ctx, &mut pods, event),
                Some(Err(error)) => tracing::warn!(%error, "watching the node's pods"),
                None => break Ok(()),
            },
        }
    };

    for (sender, _) in pods.workers.values() {
        let _ = sender.send(PodUpdate::Shutdown);
    }
    for (_, (_, task)) in pods.workers {
        let _ = task.await;
    }
    heartbeat.abort();
    result
}

/// The pods of this node: a worker per running pod, and the pods whose worker ended, which
/// never start again (a late watch event with an older status must not look like a pod
/// that still has to run).
#[derive(Default)]
struct Pods {
    workers: HashMap<String, (watch::Sender<PodUpdate>, JoinHandle<()>)>,
    done: HashSet<String>,
}

fn dispatch(ctx: &Arc<NodeContext>, pods: &mut Pods, event: Event<Pod>) {
    let finished: Vec<String> = pods
        .workers
        .iter()
        .filter(|(_, (_, task))| task.is_finished())
        .map(|(uid, _)| uid.clone())
        .collect();
    for uid in finished {
        pods.workers.remove(&uid);
        pods.done.insert(uid);
    }
    // Only pods listed when the watch (re)starts can be left over by an earlier kubelet.
    let (pod, listed) = match event {
        Event::Apply(pod) => (pod, false),
        Event::InitApply(pod) => (pod, true),
        Event::Delete(pod) => {
            let uid = pod.metadata.uid.clone().unwrap_or_default();
            if let Some((sender, _)) = pods.workers.get(&uid) {
                let _ = sender.send(PodUpdate::Gone);
            }
            pods.done.remove(&uid);
            return;
        }
        Event::Init | Event::InitDone => return,
    };
    let uid = pod.metadata.uid.clone().unwrap_or_default();
    if let Some((sender, _)) = pods.workers.get(&uid) {
        let _ = sender.send(PodUpdate::Seen(Box::new(pod)));
        return;
    }
    let ran_here = pods.done.contains(&uid);
    if (pod::is_terminal(&pod) || ran_here) && pod.metadata.deletion_timestamp.is_none() {
        return;
    }
    let start = if ran_here {
        pod::Start::FinishDeletion
    } else if listed {
        pod::Start::Listed
    } else {
        pod::Start::New
    };
    let (sender, receiver) = watch::channel(PodUpdate::Seen(Box::new(pod)));
    let task = tokio::spawn(pod::run(ctx.clone(), receiver, start));
    pods.workers.insert(uid, (sender, task));
}

/// Binds a pending pod to this node, as the scheduler would, if its node selector fits.
async fn bind(client: &Client, node_name: &str, pod: &Pod) {
    let spec = pod.spec.as_ref();
    let scheduler = spec
        .and_then(|s| s.scheduler_name.as_deref())
        .unwrap_or("default-scheduler");
    if scheduler != "default-scheduler" || pod.metadata.deletion_timestamp.is_some() {
        return;
    }
    if let Some(selector) = spec.and_then(|s| s.node_selector.as_ref()) {
        let nodes: Api<Node> = Api::all(client.clone());
        let labels = match nodes.get(node_name).await {
            Ok(node) => node.metadata.labels.unwrap_or_default(),
            Err(_) => return,
        };
        if selector.iter().any(|(k, v)| labels.get(k) != Some(v)) {
            return;
        }
    }
    let (Some(name), Some(namespace)) = (pod.metadata.name.clone(), pod.metadata.namespace.clone())
    else {
        return;
    };
    let binding = Binding {
        metadata: ObjectMeta {
            name: Some(name.clone()),
            uid: pod.metadata.uid.clone(),
            ..Default::default()
        },
        target: ObjectReference {
            api_version: Some("v1".into()),
            kind: Some("Node".into()),
            name: Some(node_name.to_string()),
            ..Default::default()
        },
    };
    let pods: Api<Pod> = Api::namespaced(client.clone(), &namespace);
    match pods
        .create_subresource::<_, serde_json::Value>(
            "binding",
            &name,
            &PostParams::default(),
            &binding,
        )
        .await
    {
        Ok(_) => tracing::info!(pod = %format!("{namespace}/{name}"), "bound"),
        Err(kube::Error::Api(status)) if status.code == 409 || status.code == 404 => {}
        Err(error) => {
            tracing::warn!(pod = %format!("{namespace}/{name}"), %error, "binding failed")
        }
    }
}

/// The combined stdout and stderr of every container of the newest pod named `name`, as
/// the kubelet kept them under `run_dir`.
pub fn pod_logs(run_dir: &Path, namespace: &str, name: &str) -> std::io::Result<String> {
    let folder = run_dir.join("pods").join(namespace);
    let prefix = format!("{name}_");
    let newest = std::fs::read_dir(&folder)?
        .filter_map(Result::ok)
        .filter(|entry| entry.file_name().to_string_lossy().starts_with(&prefix))
        .max_by_key(|entry| entry.metadata().and_then(|m| m.modified()).ok())
        .ok_or_else(|| {
            std::io::Error::new(
                std::io::ErrorKind::NotFound,
                format!("no pod {namespace}/{name} ran on this node"),
            )
        })?;
    let mut logs = String::new();
    let mut files: Vec<PathBuf> = std::fs::read_dir(newest.path())?
        .filter_map(Result::ok)
        .map(|entry| entry.path())
        .filter(|path| path.extension().is_some_and(|ext| ext == "log"))
        .collect();
    files.sort();
    for file in files {
        logs.push_str(&std::fs::read_to_string(file)?);
    }
    Ok(logs)
}
