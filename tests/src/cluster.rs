//! The test harness's view of the control plane: starts it once per test process with
//! `tests/cluster/up` (which reuses a running one), and gives tests a client, kubectl and
//! throwaway namespaces.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;
use std::time::Duration;

use k8s_openapi::api::core::v1::{Namespace, ServiceAccount};
use kube::api::{DeleteParams, PostParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Api, Client};

/// A running test control plane.
#[derive(Debug)]
pub struct Cluster {
    pub repo: PathBuf,
    pub run_dir: PathBuf,
    pub kubeconfig: PathBuf,
    /// The folder of kubectl and the control-plane binaries.
    pub testbin: PathBuf,
    /// The folder of the built synqx binaries the kubelet runs.
    pub bin_dir: PathBuf,
}

static CLUSTER: OnceLock<Cluster> = OnceLock::new();
static NODE_CLUSTER: OnceLock<Cluster> = OnceLock::new();
static INSTALLED: OnceLock<Result<(), SetupError>> = OnceLock::new();

/// Why the test control plane, or SynqX on it, is not available.
#[derive(Debug, thiserror::Error)]
pub enum SetupError {
    #[error("no repository root above {}", .0.display())]
    NoRepositoryRoot(PathBuf),
    #[error("locating the test binary: {0}")]
    TestBinary(#[source] std::io::Error),
    #[error("cannot locate the target folder above {}", .0.display())]
    NoTargetFolder(PathBuf),
    #[error(
        "{} is not built; run `cargo build --workspace --bins` before these tests \
         (scripts/test-all.sh does)",
        .0.display()
    )]
    NotBuilt(PathBuf),
    #[error("{what}: {source}")]
    Io {
        what: String,
        source: std::io::Error,
    },
    /// A command that ran and failed: what it was for, and its stderr.
    #[error("{what}: {stderr}")]
    Failed { what: String, stderr: String },
    #[error("manifests/install.yaml has no {0}")]
    Manifest(String),
}

impl SetupError {
    fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> Self {
        let what = what.into();
        move |source| Self::Io { what, source }
    }

    fn failed(what: impl Into<String>, output: &Output) -> Self {
        Self::Failed {
            what: what.into(),
            stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
        }
    }
}

impl Cluster {
    /// The cluster for this test process; the first call starts it (or finds it running).
    /// Panics with the reason and what to do if it cannot start: these tests need it.
    pub fn shared() -> &'static Cluster {
        CLUSTER.get_or_init(
            || match Self::up(&[], "SYNQX_CLUSTER_DIR", ".synqx-cluster") {
                Ok(cluster) => cluster,
                Err(message) => panic!("the test control plane is not available: {message}"),
            },
        )
    }

    /// The cluster with a real node (`tests/cluster/up --node containerd`), in its own run
    /// directory (`SYNQX_NODE_CLUSTER_DIR`, default `.synqx-node-cluster`), shared by every
    /// test of this process and reused when it runs already.
    pub fn containerd_node() -> &'static Cluster {
        NODE_CLUSTER.get_or_init(|| {
            match Self::up(
                &["--node", "containerd"],
                "SYNQX_NODE_CLUSTER_DIR",
                ".synqx-node-cluster",
            ) {
                Ok(cluster) => cluster,
                Err(message) => panic!("the containerd test node is not available: {message}"),
            }
        })
    }

    fn up(args: &[&str], dir_variable: &str, default_dir: &str) -> Result<Cluster, SetupError> {
        let manifest_dir = Path::new(env!("CARGO_MANIFEST_DIR"));
        let repo = manifest_dir
            .parent()
            .ok_or_else(|| SetupError::NoRepositoryRoot(manifest_dir.to_path_buf()))?
            .to_path_buf();
        // Test binaries live in <target>/<profile>/deps; the synqx binaries one level up.
        let exe = std::env::current_exe().map_err(SetupError::TestBinary)?;
        let bin_dir = exe
            .parent()
            .and_then(Path::parent)
            .ok_or_else(|| SetupError::NoTargetFolder(exe.clone()))?
            .to_path_buf();
        for binary in ["synqx", "synqx-operator", "synqx-kubelet"] {
            if !bin_dir.join(binary).is_file() {
                return Err(SetupError::NotBuilt(bin_dir.join(binary)));
            }
        }
        let run_dir = std::env::var_os(dir_variable)
            .map(PathBuf::from)
            .unwrap_or_else(|| repo.join(default_dir));
        let output = Command::new(repo.join("tests/cluster/up"))
            .args(args)
            .env("SYNQX_BIN_DIR", &bin_dir)
            .env("SYNQX_CLUSTER_DIR", &run_dir)
            .output()
            .map_err(SetupError::io("running tests/cluster/up"))?;
        if !output.status.success() {
            return Err(SetupError::failed("tests/cluster/up failed", &output));
        }
        let bin_path = run_dir.join("bin-path");
        let testbin = std::fs::read_to_string(&bin_path)
            .map_err(SetupError::io(format!("reading {}", bin_path.display())))?;
        Ok(Cluster {
            kubeconfig: run_dir.join("kubeconfig"),
            testbin: PathBuf::from(testbin.trim()),
            run_dir,
            repo,
            bin_dir,
        })
    }

    /// A client for the admin identity, on the calling test's runtime.
    pub async fn client(&self) -> Client {
        let file = Kubeconfig::read_from(&self.kubeconfig)
            .unwrap_or_else(|e| panic!("reading the kubeconfig: {e}"));
        let config = kube::Config::from_custom_kubeconfig(file, &KubeConfigOptions::default())
            .await
            .unwrap_or_else(|e| panic!("using the kubeconfig: {e}"));
        Client::try_from(config).unwrap_or_else(|e| panic!("building a client: {e}"))
    }

    /// `kubectl ARGS` as the admin, with `stdin` piped in when given.
    pub fn kubectl(&self, args: &[&str], stdin: Option<&str>) -> Output {
        use std::io::Write;
        let mut command = Command::new(self.testbin.join("kubectl"));
        command.args(args).env("KUBECONFIG", &self.kubeconfig);
        command
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped());
        let mut child = command
            .spawn()
            .unwrap_or_else(|e| panic!("starting kubectl: {e}"));
        if let Some(mut pipe) = child.stdin.take() {
            pipe.write_all(stdin.unwrap_or_default().as_bytes())
                .unwrap_or_else(|e| panic!("writing to kubectl: {e}"));
        }
        child
            .wait_with_output()
            .unwrap_or_else(|e| panic!("running kubectl: {e}"))
    }

    /// `kubectl ARGS` as the admin, which must succeed: its stdout. Fails naming the command
    /// and kubectl's error.
    pub fn kubectl_ok(&self, args: &[&str], stdin: Option<&str>) -> String {
        let out = self.kubectl(args, stdin);
        assert!(
            out.status.success(),
            "kubectl {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Installs SynqX with `manifests/install.yaml`, as users do, once per test process, and
    /// waits until the operator's pod is available. One replica: process pods share the
    /// host's network, so a second would find the metrics port taken.
    pub fn install_synqx(&self) {
        let installed = INSTALLED.get_or_init(|| {
            let manifest = std::fs::read_to_string(self.repo.join("manifests/install.yaml"))
                .map_err(SetupError::io("reading manifests/install.yaml"))?;
            let manifest = one_replica(&manifest, &self.run_dir)?;
            let deployment = ["-n", "synqx-system", "deployment/synqx-operator"];
            let steps: [(&str, Vec<&str>, Option<&str>); 3] = [
                (
                    "kubectl apply -f manifests/install.yaml",
                    vec!["apply", "--server-side", "--force-conflicts", "-f", "-"],
                    Some(&manifest),
                ),
                // A pod started before the binaries were rebuilt runs the old operator.
                (
                    "restarting the operator",
                    [&["rollout", "restart"][..], &deployment].concat(),
                    None,
                ),
                (
                    "the operator did not become available",
                    [&["rollout", "status", "--timeout=90s"][..], &deployment].concat(),
                    None,
                ),
            ];
            for (what, args, stdin) in steps {
                let out = self.kubectl(&args, stdin);
                if !out.status.success() {
                    return Err(SetupError::failed(what, &out));
                }
            }
            Ok(())
        });
        if let Err(message) = installed {
            panic!("{message}");
        }
    }

    /// Applies `manifests/install.yaml` with the operator Deployment at zero replicas: the
    /// CRDs, the operator's service account and RBAC, for a test that runs its own operator.
    pub fn install_synqx_without_operator(&self) {
        let manifest = std::fs::read_to_string(self.repo.join("manifests/install.yaml"))
            .unwrap_or_else(|e| panic!("reading manifests/install.yaml: {e}"));
        let manifest = one_replica(&manifest, &self.run_dir)
            .unwrap_or_else(|e| panic!("{e}"))
            .replacen("\nspec:\n  replicas: 1\n", "\nspec:\n  replicas: 0\n", 1);
        let args = ["apply", "--server-side", "--force-conflicts", "-f", "-"];
        let out = self.kubectl(&args, Some(&manifest));
        assert!(
            out.status.success(),
            "kubectl apply -f manifests/install.yaml: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// A token of the service account `name` of `namespace`, valid for an hour.
    pub fn service_account_token(&self, namespace: &str, name: &str) -> String {
        self.kubectl_ok(
            &["create", "token", name, "-n", namespace, "--duration", "1h"],
            None,
        )
        .trim()
        .to_string()
    }

    /// A kubeconfig (written into `dir`) that acts as the service account `name` of
    /// `namespace`, with a token the API server issues for an hour.
    pub fn service_account_kubeconfig(&self, namespace: &str, name: &str, dir: &Path) -> PathBuf {
        let token = self.service_account_token(namespace, name);
        let admin = Kubeconfig::read_from(&self.kubeconfig)
            .unwrap_or_else(|e| panic!("reading the kubeconfig: {e}"));
        let server = admin
            .clusters
            .iter()
            .find_map(|c| c.cluster.as_ref()?.server.clone())
            .unwrap_or_else(|| panic!("{} names no server", self.kubeconfig.display()));
        let ca = self.run_dir.join("certs/ca.crt");
        let text = format!(
            "apiVersion: v1\nkind: Config\nclusters: [{{name: test, cluster: {{server: \"{server}\", certificate-authority: \"{}\"}}}}]\nusers: [{{name: {name}, user: {{token: \"{token}\"}}}}]\ncontexts: [{{name: test, context: {{cluster: test, user: {name}, namespace: {namespace}}}}}]\ncurrent-context: test\n",
            ca.display()
        );
        let path = dir.join(format!("{name}.kubeconfig"));
        std::fs::write(&path, text).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        path
    }

    /// Lets step Jobs run in `namespace`: the runner identity of `manifests/runner.yaml`.
    pub fn serve_namespace(&self, namespace: &str) {
        let path = self.repo.join("manifests/runner.yaml");
        let template = std::fs::read_to_string(&path)
            .unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
        let apply = self.kubectl(
            &["apply", "-f", "-"],
            Some(&template.replace("NAMESPACE", namespace)),
        );
        assert!(
            apply.status.success(),
            "applying manifests/runner.yaml: {}",
            String::from_utf8_lossy(&apply.stderr)
        );
    }

    /// The logs the process kubelet kept of the newest pod with this name; fails the test when
    /// they cannot be read (a pod that never ran on the node included).
    pub fn pod_logs(&self, namespace: &str, pod: &str) -> String {
        self.pod_logs_if_ran(namespace, pod)
            .unwrap_or_else(|| panic!("no pod {namespace}/{pod} ran on this node: it has no logs"))
    }

    /// The logs of the newest pod with this name, `None` when no such pod ran on the node (a
    /// pod the scheduler never bound, say); fails the test when they cannot be read.
    pub fn pod_logs_if_ran(&self, namespace: &str, pod: &str) -> Option<String> {
        match crate::kubelet::pod_logs(&self.run_dir.join("kubelet"), namespace, pod) {
            Ok(logs) => Some(logs),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
            Err(e) => panic!("reading the logs of pod {namespace}/{pod}: {e}"),
        }
    }

    /// A fresh namespace whose `default` service account exists, deleted when dropped.
    /// Its name starts with `prefix`.
    pub async fn namespace(&self, prefix: &str) -> TestNamespace {
        let client = self.client().await;
        let namespaces: Api<Namespace> = Api::all(client.clone());
        let namespace = Namespace {
            metadata: kube::api::ObjectMeta {
                generate_name: Some(format!("{prefix}-")),
                ..Default::default()
            },
            ..Default::default()
        };
        let created = namespaces
            .create(&PostParams::default(), &namespace)
            .await
            .unwrap_or_else(|e| panic!("creating a namespace: {e}"));
        let name = created.metadata.name.unwrap_or_default();
        let accounts: Api<ServiceAccount> = Api::namespaced(client.clone(), &name);
        wait_until(
            Duration::from_secs(30),
            "the default service account",
            || async {
                accounts
                    .get_opt("default")
                    .await
                    .unwrap_or_else(|e| {
                        panic!("reading the default service account of namespace {name}: {e}")
                    })
                    .is_some()
            },
        )
        .await;
        TestNamespace {
            name,
            client,
            kubectl: self.testbin.join("kubectl"),
            kubeconfig: self.kubeconfig.clone(),
        }
    }
}

/// `manifests/install.yaml` with the operator Deployment at one replica, and step pods
/// sending their telemetry to the gateway on the host's loopback: process pods share the
/// host's network, and the process kubelet has no Service network. The claim of the step
/// logs' volume binds to a hostPath PersistentVolume in `run_dir`, and the operator keeps
/// its logs there: the process kubelet runs containers on the host's file system, so the
/// volume's path is the one the operator writes to.
fn one_replica(manifest: &str, run_dir: &Path) -> Result<String, SetupError> {
    let replicas = "\nspec:\n  replicas: 2\n";
    if !manifest.contains(replicas) {
        return Err(SetupError::Manifest("Deployment with `replicas: 2`".into()));
    }
    let url = "- --gateway-url=http://synqx-gateway.synqx-system.svc:8081\n";
    if !manifest.contains(url) {
        return Err(SetupError::Manifest(format!("`{}`", url.trim())));
    }
    let logs_dir = "- --logs-dir=/var/lib/synqx/logs\n";
    if !manifest.contains(logs_dir) {
        return Err(SetupError::Manifest(format!("`{}`", logs_dir.trim())));
    }
    let volume = run_dir.join("operator-logs");
    let volume = volume.display();
    let persistent_volume = format!(
        "---\napiVersion: v1\nkind: PersistentVolume\nmetadata:\n  name: synqx-logs-test\nspec:\n  capacity: {{storage: 8Gi}}\n  accessModes: [ReadWriteOnce]\n  persistentVolumeReclaimPolicy: Retain\n  hostPath: {{path: \"{volume}\", type: DirectoryOrCreate}}\n  claimRef: {{namespace: synqx-system, name: synqx-logs}}\n"
    );
    Ok(manifest
        .replacen(replicas, "\nspec:\n  replicas: 1\n", 1)
        .replacen(url, "- --gateway-url=http://127.0.0.1:8081\n", 1)
        .replacen(logs_dir, &format!("- --logs-dir={volume}\n"), 1)
        + &persistent_volume)
}

/// A namespace a test works in; deleted (in the background) when the test ends.
pub struct TestNamespace {
    pub name: String,
    pub client: Client,
    kubectl: PathBuf,
    kubeconfig: PathBuf,
}

impl TestNamespace {
    pub fn api<K>(&self) -> Api<K>
    where
        K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope>,
        <K as kube::Resource>::DynamicType: Default,
    {
        Api::namespaced(self.client.clone(), &self.name)
    }
}

impl Drop for TestNamespace {
    fn drop(&mut self) {
        // The runtime may be ending; kubectl needs none and returns at once.
        let _ = Command::new(&self.kubectl)
            .args(["delete", "namespace", &self.name, "--wait=false"])
            .env("KUBECONFIG", &self.kubeconfig)
            .output();
    }
}

/// Polls `check` every 200 ms until it holds; panics naming `what` after `timeout`.
pub async fn wait_until<F, Fut>(timeout: Duration, what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    wait_for_value(timeout, what, || {
        let holds = check();
        async move { holds.await.then_some(()) }
    })
    .await
}

/// Polls `look` every 200 ms until it finds something and returns what it found (the state
/// it saw, not a second reading that may have moved on); panics naming `what` after
/// `timeout`.
pub async fn wait_for_value<T, F, Fut>(timeout: Duration, what: &str, mut look: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        if let Some(found) = look().await {
            return found;
        }
        if tokio::time::Instant::now() >= deadline {
            panic!("timed out after {timeout:?} waiting for {what}");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Watches the object `name` for `window` and fails at the first state in which `bad` holds:
/// a negative check ("this never happens") that looks at every change while it waits, not
/// at one moment after a sleep. An error of the watch fails too.
pub async fn never_within<K>(
    api: Api<K>,
    name: &str,
    window: Duration,
    what: &str,
    bad: impl Fn(&K) -> bool,
) where
    K: kube::Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug + Send + 'static,
{
    use futures::StreamExt;
    use kube::runtime::{WatchStreamExt, watcher};
    let config = watcher::Config::default().fields(&format!("metadata.name={name}"));
    let mut stream = std::pin::pin!(watcher(api, config).touched_objects());
    let deadline = tokio::time::sleep(window);
    let mut deadline = std::pin::pin!(deadline);
    let mut seen = false;
    loop {
        tokio::select! {
            () = &mut deadline => break,
            next = stream.next() => match next {
                Some(Ok(object)) => {
                    seen = true;
                    assert!(!bad(&object), "{what} happened: {object:?}");
                }
                Some(Err(e)) => panic!("watching {name} while checking that {what} never happens: {e}"),
                None => panic!("the watch on {name} ended before {window:?}"),
            }
        }
    }
    assert!(
        seen,
        "{name} was never seen while checking that {what} never happens"
    );
}

/// Deletes with background propagation, as `kubectl delete` does.
pub fn background() -> DeleteParams {
    DeleteParams::background()
}
