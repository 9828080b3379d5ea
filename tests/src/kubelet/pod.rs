//! One pod on the process node: prepares its identity and environment, runs its containers,
//! reports their states as pod status, and finishes the pod's deletion.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::{Container, Pod, ServiceAccount};
use k8s_openapi::jiff::Timestamp;
use kube::api::{DeleteParams, Patch, PatchParams, Preconditions};
use kube::{Api, Client};
use serde_json::{Value, json};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinSet;

use super::container::{self, ContainerEvent, Exit, Launch};
use super::env::{ClusterLookup, resolve};
use super::identity::{self, ClusterAccess};
use super::projected;

/// What the kubelet shares with every pod worker.
pub struct NodeContext {
    pub client: Client,
    pub node_name: String,
    pub run_dir: PathBuf,
    pub bin_dir: PathBuf,
    pub access: ClusterAccess,
    /// `PATH` for processes: where host commands (`sh`, `kubectl`) are found.
    pub path_var: String,
}

/// What the kubelet tells a pod worker.
#[derive(Debug, Clone)]
pub enum PodUpdate {
    /// The pod as last seen by the watch.
    Seen(Box<Pod>),
    /// The pod is gone from the API (force-deleted): stop at once.
    Gone,
    /// The kubelet is shutting down.
    Shutdown,
}

/// How long a configuration problem (a missing Secret) waits before the next try.
const CONFIG_RETRY: Duration = Duration::from_secs(2);
/// The longest grace period honoured, so tests never wait half a minute for a stuck process.
const MAX_GRACE: Duration = Duration::from_secs(10);

/// The log folder of a pod: `<run_dir>/pods/<namespace>/<name>_<uid>`.
pub fn pod_dir(run_dir: &std::path::Path, pod: &Pod) -> PathBuf {
    let ns = pod.metadata.namespace.as_deref().unwrap_or("default");
    let name = pod.metadata.name.as_deref().unwrap_or("unnamed");
    let uid = pod.metadata.uid.as_deref().unwrap_or("no-uid");
    run_dir.join("pods").join(ns).join(format!("{name}_{uid}"))
}

/// Runs one pod from start to its end (or its deletion).
/// How a pod worker begins.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Start {
    /// A pod that appeared while this kubelet watched.
    New,
    /// A pod listed when the watch started: an earlier kubelet may have run it.
    Listed,
    /// A pod this kubelet already ran to its end, now being deleted.
    FinishDeletion,
}

pub async fn run(ctx: Arc<NodeContext>, mut updates: watch::Receiver<PodUpdate>, start: Start) {
    let PodUpdate::Seen(first) = updates.borrow_and_update().clone() else {
        return;
    };
    let mut worker = Worker::new(ctx, *first);
    let result = match start {
        Start::FinishDeletion => worker.finish_deletion_if_asked().await,
        Start::New | Start::Listed => worker.drive(&mut updates, start == Start::Listed).await,
    };
    if let Err(error) = result {
        tracing::warn!(pod = %worker.key(), %error, "pod worker stopped on an API error");
    }
}

/// Why a container has no folder to start in; a kubelet reports it as
/// `CreateContainerConfigError`.
#[derive(Debug, thiserror::Error)]
enum WorkingDirError {
    #[error("creating {}: {source}", .dir.display())]
    Create {
        dir: PathBuf,
        source: std::io::Error,
    },
    #[error(
        "workingDir {wanted} is not inside an emptyDir volume; the process kubelet runs containers on the host's \
         file system and only maps emptyDir volumes"
    )]
    NotInEmptyDir { wanted: String },
}

struct Worker {
    ctx: Arc<NodeContext>,
    pod: Pod,
    api: Api<Pod>,
    dir: PathBuf,
    statuses: Vec<Value>,
    started: Timestamp,
    /// Once a process has run, the pod stays `Running` through restarts.
    ever_started: bool,
    tasks: JoinSet<()>,
}

enum Outcome {
    Finished,
    /// Deleted through the API: the processes get the deletion's grace period.
    Deleted {
        grace_seconds: Option<i64>,
    },
    Shutdown,
}

impl Worker {
    fn new(ctx: Arc<NodeContext>, pod: Pod) -> Self {
        let namespace = pod
            .metadata
            .namespace
            .clone()
            .unwrap_or_else(|| "default".into());
        let api = Api::namespaced(ctx.client.clone(), &namespace);
        let dir = pod_dir(&ctx.run_dir, &pod);
        let started = pod
            .status
            .as_ref()
            .and_then(|s| s.start_time.as_ref())
            .map(|t| t.0)
            .unwrap_or_else(Timestamp::now);
        Self {
            ctx,
            pod,
            api,
            dir,
            statuses: Vec::new(),
            started,
            ever_started: false,
            tasks: JoinSet::new(),
        }
    }

    fn key(&self) -> String {
        format!(
            "{}/{}",
            self.pod.metadata.namespace.as_deref().unwrap_or_default(),
            self.pod.metadata.name.as_deref().unwrap_or_default()
        )
    }

    fn containers(&self) -> Vec<Container> {
        self.pod
            .spec
            .as_ref()
            .map(|s| s.containers.clone())
            .unwrap_or_default()
    }

    async fn drive(
        &mut self,
        updates: &mut watch::Receiver<PodUpdate>,
        listed: bool,
    ) -> Result<(), kube::Error> {
        if is_terminal(&self.pod) {
            return self.finish_deletion_if_asked().await;
        }
        if listed && lost_by_previous_kubelet(&self.pod) {
            let message = "the process kubelet restarted and its processes ended with it";
            self.patch_phase("Failed", "ProcessLost", message).await?;
            return self.finish_deletion_if_asked().await;
        }
        if self
            .pod
            .spec
            .as_ref()
            .and_then(|s| s.init_containers.as_ref())
            .is_some_and(|c| !c.is_empty())
        {
            let message = "the process kubelet does not run init containers";
            self.patch_phase("Failed", "InitContainersUnsupported", message)
                .await?;
            return self.finish_deletion_if_asked().await;
        }
        std::fs::create_dir_all(&self.dir).map_err(io_error)?;
        std::fs::create_dir_all(self.ctx.run_dir.join("pids")).map_err(io_error)?;
        self.statuses = self.containers().iter().map(waiting_status).collect();

        let (events_tx, mut events) = mpsc::channel(16);
        let (stop_tx, stop_rx) = watch::channel(None);
        let mut token_refresher = None;
        let launches = loop {
            match self.prepare(&mut token_refresher).await {
                Ok(launches) => break launches,
                Err((reason, message)) => {
                    self.set_waiting(&reason, &message);
                    self.report(None).await?;
                    tokio::select! {
                        () = tokio::time::sleep(CONFIG_RETRY) => {}
                        outcome = next_stop(updates) => return self.end(outcome, 0).await,
                    }
                }
            }
        };
        let running = launches.len();
        for launch in launches {
            self.tasks.spawn(container::supervise(
                launch,
                events_tx.clone(),
                stop_rx.clone(),
            ));
        }
        drop(events_tx);

        let deadline = self.deadline();
        let mut outcome = Outcome::Finished;
        let mut reason = None;
        let mut stopping = false;
        loop {
            tokio::select! {
                event = events.recv() => match event {
                    Some(event) => {
                        self.apply(event);
                        self.report(reason).await?;
                    }
                    None => break,
                },
                next = next_stop(updates), if !stopping => {
                    stopping = true;
                    let grace = match next {
                        Outcome::Deleted { grace_seconds } => self.grace(grace_seconds),
                        _ => Duration::from_secs(5),
                    };
                    outcome = next;
                    let _ = stop_tx.send(Some(grace));
                }
                () = sleep_until(deadline), if !stopping => {
                    stopping = true;
                    reason = Some(("DeadlineExceeded", "Pod was active on the node longer than the specified deadline"));
                    let _ = stop_tx.send(Some(self.grace(None)));
                }
            }
        }
        while self.tasks.join_next().await.is_some() {}
        if let Some(task) = token_refresher {
            task.abort();
        }
        self.end(outcome, running).await?;
        match reason {
            Some((reason, message)) => self.patch_phase("Failed", reason, message).await,
            None => Ok(()),
        }
    }

    /// Identity, environment and program of every container, or the waiting reason.
    async fn prepare(
        &mut self,
        refresher: &mut Option<tokio::task::JoinHandle<()>>,
    ) -> Result<Vec<Launch>, (String, String)> {
        let config_error = |message: String| ("CreateContainerConfigError".to_string(), message);
        let namespace = self
            .pod
            .metadata
            .namespace
            .clone()
            .unwrap_or_else(|| "default".into());
        let client = self.ctx.client.clone();
        let mut base_env = vec![
            ("PATH".to_string(), self.ctx.path_var.clone()),
            ("HOME".to_string(), self.dir.display().to_string()),
            (
                "HOSTNAME".to_string(),
                self.pod.metadata.name.clone().unwrap_or_default(),
            ),
        ];
        let account_name = identity::service_account_name(&self.pod);
        let accounts: Api<ServiceAccount> = Api::namespaced(client.clone(), &namespace);
        let account = accounts
            .get_opt(&account_name)
            .await
            .map_err(|e| config_error(e.to_string()))?;
        let wants_token = identity::wants_token(&self.pod, account.as_ref());
        if wants_token {
            let kubeconfig = identity::issue(&client, &self.pod, &self.ctx.access, &self.dir)
                .await
                .map_err(|e| config_error(e.to_string()))?;
            base_env.push(("KUBECONFIG".to_string(), kubeconfig.display().to_string()));
        }
        let spec = self.pod.spec.clone().unwrap_or_default();
        let projected =
            projected::token_files(&spec, &self.dir).map_err(|e| config_error(e.to_string()))?;
        projected::write_all(&client, &self.pod, &projected)
            .await
            .map_err(|e| config_error(e.to_string()))?;
        if refresher.is_none() && (wants_token || !projected.is_empty()) {
            let (pod, dir) = (self.pod.clone(), self.dir.clone());
            let client = client.clone();
            let files = projected::keep_fresh(client.clone(), pod.clone(), projected);
            *refresher = Some(tokio::spawn(async move {
                let account = async move {
                    if wants_token {
                        identity::keep_fresh(client, pod, dir).await;
                    }
                };
                tokio::join!(account, files);
            }));
        }

        let restart_policy = spec
            .restart_policy
            .clone()
            .unwrap_or_else(|| "Always".into());
        let mut lookup = ClusterLookup::new(client, &namespace);
        let mut launches = Vec::new();
        for (index, c) in spec.containers.iter().enumerate() {
            let mut env = base_env.clone();
            env.extend(
                resolve(&self.pod, c, &mut lookup)
                    .await
                    .map_err(|e| config_error(e.to_string()))?,
            );
            projected::map_paths(&spec, c, &self.dir, &mut env);
            let program = container::program(c, &env, &self.ctx.bin_dir, &self.ctx.path_var)
                .map_err(|e| ("ErrImageNeverPull".to_string(), e.to_string()))?;
            launches.push(Launch {
                index,
                program,
                env,
                working_dir: self
                    .working_dir(&spec, c)
                    .map_err(|e| config_error(e.to_string()))?,
                log: self.dir.join(format!("{}.log", c.name)),
                termination_message: self.dir.join(format!("{}.termination-log", c.name)),
                fallback_to_logs: c.termination_message_policy.as_deref()
                    == Some("FallbackToLogsOnError"),
                pid_dir: self.ctx.run_dir.join("pids"),
                restart_policy: restart_policy.clone(),
                readiness: container::readiness(c),
            });
        }
        Ok(launches)
    }

    /// The folder a container starts in. An `emptyDir` volume is a folder of the pod's own
    /// (`volumes/<name>`), so a `workingDir` inside one lands there; any other `workingDir`
    /// would be a folder of the host and is refused rather than written to.
    fn working_dir(
        &self,
        spec: &k8s_openapi::api::core::v1::PodSpec,
        c: &Container,
    ) -> Result<PathBuf, WorkingDirError> {
        let Some(wanted) = &c.working_dir else {
            return Ok(self.dir.clone());
        };
        for mount in c.volume_mounts.iter().flatten() {
            let empty_dir = spec
                .volumes
                .iter()
                .flatten()
                .any(|v| v.name == mount.name && v.empty_dir.is_some());
            let Some(rest) = std::path::Path::new(wanted)
                .strip_prefix(&mount.mount_path)
                .ok()
            else {
                continue;
            };
            if empty_dir {
                let dir = self.dir.join("volumes").join(&mount.name).join(rest);
                std::fs::create_dir_all(&dir).map_err(|source| WorkingDirError::Create {
                    dir: dir.clone(),
                    source,
                })?;
                return Ok(dir);
            }
        }
        Err(WorkingDirError::NotInEmptyDir {
            wanted: wanted.clone(),
        })
    }

    fn set_waiting(&mut self, reason: &str, message: &str) {
        for status in &mut self.statuses {
            status["state"] = json!({"waiting": {"reason": reason, "message": message}});
        }
    }

    fn apply(&mut self, event: ContainerEvent) {
        match event {
            ContainerEvent::Started { index, at, ready } => {
                self.ever_started = true;
                let status = &mut self.statuses[index];
                status["state"] = json!({"running": {"startedAt": at}});
                status["ready"] = json!(ready);
                status["started"] = json!(true);
            }
            ContainerEvent::Ready { index } => self.statuses[index]["ready"] = json!(true),
            ContainerEvent::Exited {
                index,
                exit,
                restarting_in,
            } => {
                let status = &mut self.statuses[index];
                let terminated = terminated(&exit);
                status["ready"] = json!(false);
                status["started"] = json!(false);
                match restarting_in {
                    Some(wait) => {
                        let count = status["restartCount"].as_i64().unwrap_or(0) + 1;
                        status["restartCount"] = json!(count);
                        status["lastState"] = json!({"terminated": terminated});
                        let message =
                            format!("back-off {}s restarting failed container", wait.as_secs());
                        status["state"] =
                            json!({"waiting": {"reason": "CrashLoopBackOff", "message": message}});
                    }
                    None => status["state"] = json!({"terminated": terminated}),
                }
            }
            ContainerEvent::Failed {
                index,
                reason,
                message,
            } => {
                let now = Timestamp::now();
                self.statuses[index]["state"] = json!({"terminated": {
                    "exitCode": 128, "reason": reason, "message": message, "startedAt": now, "finishedAt": now,
                }});
            }
        }
    }

    /// Patches the pod's status from the container states; the phase follows them.
    async fn report(&self, failure: Option<(&str, &str)>) -> Result<(), kube::Error> {
        let states: Vec<&Value> = self.statuses.iter().map(|s| &s["state"]).collect();
        let all_done = states.iter().all(|s| s.get("terminated").is_some());
        let all_ok = states
            .iter()
            .all(|s| s["terminated"]["exitCode"].as_i64() == Some(0));
        let phase = match (failure, all_done) {
            (Some(_), _) => "Failed",
            (None, true) if all_ok => "Succeeded",
            (None, true) => "Failed",
            (None, false) if self.ever_started => "Running",
            (None, false) => "Pending",
        };
        let ready = !all_done && self.statuses.iter().all(|s| s["ready"] == json!(true));
        let now = Timestamp::now();
        let condition = |kind: &str, status: bool| json!({"type": kind, "status": if status { "True" } else { "False" }, "lastTransitionTime": now});
        let mut status = json!({
            "phase": phase,
            "hostIP": "127.0.0.1",
            "hostIPs": [{"ip": "127.0.0.1"}],
            "podIP": "127.0.0.1",
            "podIPs": [{"ip": "127.0.0.1"}],
            "startTime": self.started,
            "containerStatuses": self.statuses,
            "conditions": [
                condition("PodScheduled", true),
                condition("Initialized", true),
                condition("ContainersReady", ready),
                condition("Ready", ready),
            ],
        });
        if let Some((reason, message)) = failure {
            status["reason"] = json!(reason);
            status["message"] = json!(message);
        }
        self.patch_status(status).await
    }

    async fn patch_phase(
        &self,
        phase: &str,
        reason: &str,
        message: &str,
    ) -> Result<(), kube::Error> {
        self.patch_status(json!({"phase": phase, "reason": reason, "message": message}))
            .await
    }

    async fn patch_status(&self, status: Value) -> Result<(), kube::Error> {
        let name = self.pod.metadata.name.clone().unwrap_or_default();
        let patch = Patch::Merge(json!({"status": status}));
        match self
            .api
            .patch_status(&name, &PatchParams::default(), &patch)
            .await
        {
            Ok(_) => Ok(()),
            Err(kube::Error::Api(status)) if status.code == 404 => Ok(()),
            Err(error) => Err(error),
        }
    }

    async fn end(&mut self, outcome: Outcome, ran: usize) -> Result<(), kube::Error> {
        match outcome {
            Outcome::Finished => Ok(()),
            Outcome::Deleted { .. } => self.delete_now().await,
            // A pod that always restarts is started again by the next kubelet, as a real
            // kubelet restarts its containers; only run-to-completion pods end here.
            Outcome::Shutdown if ran > 0 && !self.always_restarts() => {
                self.patch_phase(
                    "Failed",
                    "NodeShutdown",
                    "the process kubelet shut down and stopped the pod",
                )
                .await
            }
            Outcome::Shutdown => Ok(()),
        }
    }

    async fn finish_deletion_if_asked(&self) -> Result<(), kube::Error> {
        match self.pod.metadata.deletion_timestamp {
            Some(_) => self.delete_now().await,
            None => Ok(()),
        }
    }

    /// The kubelet's half of a graceful deletion: once the processes are gone, remove the
    /// pod for good (only this incarnation of it, by uid).
    async fn delete_now(&self) -> Result<(), kube::Error> {
        let name = self.pod.metadata.name.clone().unwrap_or_default();
        let params = DeleteParams {
            grace_period_seconds: Some(0),
            preconditions: Some(Preconditions {
                uid: self.pod.metadata.uid.clone(),
                resource_version: None,
            }),
            ..Default::default()
        };
        match self.api.delete(&name, &params).await {
            Ok(_) => Ok(()),
            Err(kube::Error::Api(status)) if status.code == 404 || status.code == 409 => Ok(()),
            Err(error) => Err(error),
        }
    }

    fn always_restarts(&self) -> bool {
        let policy = self
            .pod
            .spec
            .as_ref()
            .and_then(|s| s.restart_policy.as_deref());
        policy.unwrap_or("Always") == "Always"
    }

    /// The grace period of a stop: the deletion's own (0 for a forced one, so the process
    /// gets SIGKILL at once), else the pod's `terminationGracePeriodSeconds`, at most 10 s.
    fn grace(&self, deletion: Option<i64>) -> Duration {
        let seconds = deletion
            .or_else(|| {
                self.pod
                    .spec
                    .as_ref()
                    .and_then(|s| s.termination_grace_period_seconds)
            })
            .unwrap_or(30);
        Duration::from_secs(seconds.max(0) as u64).min(MAX_GRACE)
    }

    fn deadline(&self) -> Option<tokio::time::Instant> {
        let seconds = self.pod.spec.as_ref()?.active_deadline_seconds?;
        let elapsed = Timestamp::now()
            .duration_since(self.started)
            .as_secs()
            .max(0);
        let left = (seconds - elapsed).max(0) as u64;
        Some(tokio::time::Instant::now() + Duration::from_secs(left))
    }
}

async fn next_stop(updates: &mut watch::Receiver<PodUpdate>) -> Outcome {
    loop {
        match &*updates.borrow_and_update() {
            PodUpdate::Seen(pod) if pod.metadata.deletion_timestamp.is_some() => {
                let grace_seconds = pod.metadata.deletion_grace_period_seconds;
                return Outcome::Deleted { grace_seconds };
            }
            // Gone from the API without our final delete: a forced deletion.
            PodUpdate::Gone => {
                return Outcome::Deleted {
                    grace_seconds: Some(0),
                };
            }
            PodUpdate::Shutdown => return Outcome::Shutdown,
            PodUpdate::Seen(_) => {}
        }
        if updates.changed().await.is_err() {
            return Outcome::Shutdown;
        }
    }
}

async fn sleep_until(deadline: Option<tokio::time::Instant>) {
    match deadline {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

fn waiting_status(c: &Container) -> Value {
    json!({
        "name": c.name,
        "image": c.image,
        "imageID": "",
        "ready": false,
        "started": false,
        "restartCount": 0,
        "state": {"waiting": {"reason": "ContainerCreating"}},
    })
}

fn terminated(exit: &Exit) -> Value {
    let reason = if exit.code == 0 { "Completed" } else { "Error" };
    let mut value = json!({
        "exitCode": exit.code,
        "reason": reason,
        "startedAt": exit.started,
        "finishedAt": exit.finished,
    });
    if let Some(signal) = exit.signal {
        value["signal"] = json!(signal);
    }
    if !exit.message.is_empty() {
        value["message"] = json!(exit.message);
    }
    value
}

pub fn is_terminal(pod: &Pod) -> bool {
    matches!(
        pod.status.as_ref().and_then(|s| s.phase.as_deref()),
        Some("Succeeded" | "Failed")
    )
}

/// A pod that a previous kubelet process started: its processes died with that kubelet
/// (they carry a parent-death signal), and only `Always` pods may simply start again.
fn lost_by_previous_kubelet(pod: &Pod) -> bool {
    let restart = pod
        .spec
        .as_ref()
        .and_then(|s| s.restart_policy.as_deref())
        .unwrap_or("Always");
    let ran = pod
        .status
        .as_ref()
        .and_then(|s| s.container_statuses.as_ref())
        .is_some_and(|all| {
            all.iter().any(|c| {
                c.state
                    .as_ref()
                    .is_some_and(|s| s.running.is_some() || s.terminated.is_some())
            })
        });
    ran && restart != "Always"
}

fn io_error(error: std::io::Error) -> kube::Error {
    kube::Error::Service(Box::new(error))
}
