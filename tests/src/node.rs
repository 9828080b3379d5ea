//! What the tests on the containerd node (`tests/cluster/up --node containerd`) need besides
//! the cluster: Helm releases of the chart, a local PersistentVolume, a moto S3 server on
//! the node's bridge address, and the synqx CLI to read what steps wrote.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::cluster::{Cluster, TestNamespace};
use crate::helm;

/// The node's address on its bridge: what pods reach the host's test servers on.
pub const NODE_ADDRESS: &str = "10.244.0.1";
pub const NODE_NAME: &str = "synqx-containerd-node";
pub const RELEASE_NAMESPACE: &str = "synqx-system";

/// `helm ARGS` against the node cluster; panics with Helm's output when it fails.
pub fn helm(cluster: &Cluster, args: &[&str]) -> String {
    let out = helm::run(args, Some(&cluster.kubeconfig));
    assert!(
        out.status.success(),
        "helm {args:?}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A folder of the node owned by the step pods' user (65532), removed when dropped, and a
/// local PersistentVolume on it pre-bound to a claim `data` in `ns`.
pub struct LocalVolume {
    pub dir: tempfile::TempDir,
    pv: String,
    kubectl: PathBuf,
    kubeconfig: PathBuf,
}

impl LocalVolume {
    pub fn create(cluster: &Cluster, ns: &TestNamespace) -> Self {
        let dir = tempfile::Builder::new()
            .prefix("synqx-node-volume-")
            .tempdir()
            .unwrap_or_else(|e| panic!("creating the volume's folder: {e}"));
        let pv = format!("{}-data", ns.name);
        let yaml = format!(
            r#"apiVersion: v1
kind: PersistentVolume
metadata: {{name: {pv}}}
spec:
  capacity: {{storage: 1Gi}}
  accessModes: [ReadWriteOnce]
  persistentVolumeReclaimPolicy: Retain
  storageClassName: synqx-local
  claimRef: {{namespace: {ns}, name: data}}
  local: {{path: {path}}}
  nodeAffinity:
    required:
      nodeSelectorTerms:
        - matchExpressions: [{{key: kubernetes.io/hostname, operator: In, values: [{NODE_NAME}]}}]
---
apiVersion: v1
kind: PersistentVolumeClaim
metadata: {{name: data, namespace: {ns}}}
spec:
  accessModes: [ReadWriteOnce]
  storageClassName: synqx-local
  volumeName: {pv}
  resources: {{requests: {{storage: 1Gi}}}}
"#,
            ns = ns.name,
            path = dir.path().display()
        );
        cluster.kubectl_ok(&["apply", "-f", "-"], Some(&yaml));
        Self {
            dir,
            pv,
            kubectl: cluster.testbin.join("kubectl"),
            kubeconfig: cluster.kubeconfig.clone(),
        }
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// Hands everything below the folder to the pods' user.
    pub fn give_to_pods(&self) {
        let status = Command::new("chown")
            .args(["-R", "65532:65532"])
            .arg(self.path())
            .status()
            .unwrap_or_else(|e| panic!("chown: {e}"));
        assert!(
            status.success(),
            "chown -R 65532:65532 {}",
            self.path().display()
        );
    }
}

impl Drop for LocalVolume {
    fn drop(&mut self) {
        let _ = Command::new(&self.kubectl)
            .args(["delete", "pv", &self.pv, "--wait=false"])
            .env("KUBECONFIG", &self.kubeconfig)
            .output();
    }
}

/// The volume a default install's claim `synqx-logs` binds to, as a cluster's provisioner
/// would give it one: a local PersistentVolume on the node, owned by the operator's user,
/// in a folder of the cluster's that outlives the releases (the claim is kept on uninstall).
pub fn logs_volume(cluster: &Cluster) {
    let dir = cluster.run_dir.join("node-operator-logs");
    std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("mkdir {}: {e}", dir.display()));
    let status = Command::new("chown")
        .args(["65532:65532"])
        .arg(&dir)
        .status()
        .unwrap_or_else(|e| panic!("chown: {e}"));
    assert!(status.success(), "chown 65532:65532 {}", dir.display());
    let yaml = format!(
        r#"apiVersion: v1
kind: PersistentVolume
metadata: {{name: synqx-logs-node}}
spec:
  capacity: {{storage: 8Gi}}
  accessModes: [ReadWriteOnce]
  persistentVolumeReclaimPolicy: Retain
  claimRef: {{namespace: {RELEASE_NAMESPACE}, name: synqx-logs}}
  local: {{path: {path}}}
  nodeAffinity:
    required:
      nodeSelectorTerms:
        - matchExpressions: [{{key: kubernetes.io/hostname, operator: In, values: [{NODE_NAME}]}}]
"#,
        path = dir.display()
    );
    cluster.kubectl_ok(&["apply", "-f", "-"], Some(&yaml));
}

/// Copies a folder tree.
pub fn copy_tree(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap_or_else(|e| panic!("mkdir {}: {e}", to.display()));
    let entries = std::fs::read_dir(from).unwrap_or_else(|e| panic!("{}: {e}", from.display()));
    for entry in entries.filter_map(Result::ok) {
        let target = to.join(entry.file_name());
        if entry.path().is_dir() {
            copy_tree(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target)
                .unwrap_or_else(|e| panic!("copying {}: {e}", entry.path().display()));
        }
    }
}

/// `synqx run FILE` on this machine, for reading what steps wrote; panics when it fails.
pub fn synqx_run(cluster: &Cluster, yaml: &str, dir: &Path) -> String {
    let file = dir.join("check.yaml");
    std::fs::write(&file, yaml).unwrap_or_else(|e| panic!("{e}"));
    let out = Command::new(cluster.bin_dir.join("synqx"))
        .arg("run")
        .arg(&file)
        .arg("--state")
        .arg(dir.join("state"))
        .output()
        .unwrap_or_else(|e| panic!("running synqx: {e}"));
    assert!(
        out.status.success(),
        "synqx run {}: {}{}",
        file.display(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// moto's S3 server on the node's bridge address, stopped when dropped.
pub struct NodeMoto {
    pub port: u16,
    child: Child,
}

impl NodeMoto {
    pub fn start() -> Self {
        let port = std::net::TcpListener::bind((NODE_ADDRESS, 0))
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .unwrap_or_else(|e| panic!("a free port on {NODE_ADDRESS}: {e}"));
        let child = Command::new("moto_server")
            .args(["-H", NODE_ADDRESS, "-p", &port.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| {
                panic!("starting moto_server: {e}; install it with pip install \"moto[server]\"")
            });
        let moto = Self { port, child };
        let started = Instant::now();
        while moto.request("GET / HTTP/1.1").is_err() {
            assert!(
                started.elapsed() < Duration::from_secs(60),
                "moto_server did not answer on {NODE_ADDRESS}:{port} within 60 s"
            );
            std::thread::sleep(Duration::from_millis(200));
        }
        moto
    }

    pub fn endpoint(&self) -> String {
        format!("http://{NODE_ADDRESS}:{}", self.port)
    }

    pub fn create_bucket(&self, name: &str) {
        let status = self
            .request(&format!("PUT /{name} HTTP/1.1"))
            .unwrap_or_else(|e| panic!("creating bucket {name}: {e}"));
        assert_eq!(status, 200, "creating bucket {name} on moto");
    }

    fn request(&self, line: &str) -> std::io::Result<u16> {
        let mut stream = TcpStream::connect((NODE_ADDRESS, self.port))?;
        stream.set_read_timeout(Some(Duration::from_secs(30)))?;
        write!(
            stream,
            "{line}\r\nHost: {NODE_ADDRESS}:{}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
            self.port
        )?;
        let mut response = String::new();
        stream.read_to_string(&mut response)?;
        Ok(response
            .split(' ')
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or(0))
    }
}

impl Drop for NodeMoto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
