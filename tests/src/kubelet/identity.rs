//! The in-cluster identity of a pod: a token for its service account from the TokenRequest
//! API, bound to the pod so it dies with it, handed to the process as a kubeconfig.
//!
//! A container would find the token under /var/run/secrets/kubernetes.io/serviceaccount;
//! a host process cannot have its own copy of that path, so it gets `KUBECONFIG` pointing
//! at a file that names the same server, CA and token. Clients that look for a kubeconfig
//! before the in-cluster files (kube-rs, client-go, kubectl) authenticate as the service
//! account, so RBAC applies to them exactly as in a real pod.

use std::path::{Path, PathBuf};
use std::time::Duration;

use k8s_openapi::api::authentication::v1::{BoundObjectReference, TokenRequest, TokenRequestSpec};
use k8s_openapi::api::core::v1::{Pod, ServiceAccount};
use kube::api::PostParams;
use kube::{Api, Client};

/// How long a token lives; the refresher renews it at 80% of this, as a kubelet does.
const TOKEN_SECONDS: i64 = 3600;

#[derive(Debug, thiserror::Error)]
pub enum IdentityError {
    #[error("requesting a token for service account {namespace}/{account}: {source}")]
    Token {
        namespace: String,
        account: String,
        source: kube::Error,
    },
    #[error("writing {path}: {source}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// Where the API server is and what CA signs its certificate, as the kubelet itself knows.
#[derive(Debug, Clone)]
pub struct ClusterAccess {
    pub server: String,
    pub ca_file: PathBuf,
}

/// Does the pod want its service account's credentials? (`automountServiceAccountToken`)
pub fn wants_token(pod: &Pod, account: Option<&ServiceAccount>) -> bool {
    let from_pod = pod
        .spec
        .as_ref()
        .and_then(|s| s.automount_service_account_token);
    let from_account = account.and_then(|a| a.automount_service_account_token);
    from_pod.or(from_account).unwrap_or(true)
}

/// Requests a pod-bound token and writes `token` and `kubeconfig` into `dir`. Returns the
/// kubeconfig's path.
pub async fn issue(
    client: &Client,
    pod: &Pod,
    access: &ClusterAccess,
    dir: &Path,
) -> Result<PathBuf, IdentityError> {
    write_token(client, pod, dir).await?;
    let namespace = pod
        .metadata
        .namespace
        .clone()
        .unwrap_or_else(|| "default".into());
    let kubeconfig = serde_json::json!({
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "cluster", "cluster": {
            "server": access.server,
            "certificate-authority": access.ca_file,
        }}],
        "users": [{"name": "pod", "user": {"tokenFile": dir.join("token")}}],
        "contexts": [{"name": "pod", "context": {"cluster": "cluster", "user": "pod", "namespace": namespace}}],
        "current-context": "pod",
    });
    let path = dir.join("kubeconfig");
    write(&path, kubeconfig.to_string().as_bytes())?;
    Ok(path)
}

/// Renews the token in `dir` until the task is dropped.
pub async fn keep_fresh(client: Client, pod: Pod, dir: PathBuf) {
    let every = Duration::from_secs((TOKEN_SECONDS as u64) * 4 / 5);
    loop {
        tokio::time::sleep(every).await;
        if let Err(error) = write_token(&client, &pod, &dir).await {
            tracing::warn!(%error, "renewing a pod token failed; retrying in a minute");
            tokio::time::sleep(Duration::from_secs(60)).await;
        }
    }
}

async fn write_token(client: &Client, pod: &Pod, dir: &Path) -> Result<(), IdentityError> {
    let token = request(client, pod, vec![], TOKEN_SECONDS).await?;
    write(&dir.join("token"), token.as_bytes())
}

/// A token of the pod's service account for `audiences` (none: the API server's), valid
/// for `seconds` and bound to the pod, so it dies with it.
pub async fn request(
    client: &Client,
    pod: &Pod,
    audiences: Vec<String>,
    seconds: i64,
) -> Result<String, IdentityError> {
    let namespace = pod
        .metadata
        .namespace
        .clone()
        .unwrap_or_else(|| "default".into());
    let account = service_account_name(pod);
    let request = TokenRequest {
        spec: TokenRequestSpec {
            audiences,
            expiration_seconds: Some(seconds),
            bound_object_ref: Some(BoundObjectReference {
                api_version: Some("v1".into()),
                kind: Some("Pod".into()),
                name: pod.metadata.name.clone(),
                uid: pod.metadata.uid.clone(),
            }),
        },
        ..Default::default()
    };
    let api: Api<ServiceAccount> = Api::namespaced(client.clone(), &namespace);
    let issued = api
        .create_token_request(&account, &PostParams::default(), &request)
        .await
        .map_err(|source| IdentityError::Token {
            namespace: namespace.clone(),
            account: account.clone(),
            source,
        })?;
    Ok(issued.status.map(|s| s.token).unwrap_or_default())
}

pub fn service_account_name(pod: &Pod) -> String {
    pod.spec
        .as_ref()
        .and_then(|s| s.service_account_name.clone())
        .unwrap_or_else(|| "default".into())
}

/// Writes through a temporary file so a reader never sees half a token.
pub fn write(path: &Path, bytes: &[u8]) -> Result<(), IdentityError> {
    let partial = path.with_extension("partial");
    std::fs::write(&partial, bytes)
        .and_then(|()| std::fs::rename(&partial, path))
        .map_err(|source| IdentityError::Write {
            path: path.to_path_buf(),
            source,
        })
}
