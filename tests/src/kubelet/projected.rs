//! Projected volumes with `serviceAccountToken` sources, as a kubelet fills them: a token
//! from the TokenRequest API for the pod's service account, with the source's audience and
//! expiry, bound to the pod (`boundObjectRef`), written as a file and renewed at 80% of its
//! life. A process cannot see a mount, so the volume is a folder of the pod's own
//! (`volumes/<name>`) and environment values naming a path inside its `mountPath` are
//! rewritten to that folder: a container that is told where its token is finds it.

use std::path::{Path, PathBuf};
use std::time::Duration;

use k8s_openapi::api::core::v1::{Container, Pod, PodSpec};
use kube::Client;

use super::identity::{self, IdentityError};

/// The life of a token whose source sets no `expirationSeconds` (the API's default).
const DEFAULT_SECONDS: i64 = 3600;

/// One token file of a projected volume.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TokenFile {
    pub path: PathBuf,
    pub audience: Option<String>,
    pub seconds: i64,
}

/// A token path of a projected volume that would leave the volume's folder.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("volume {volume}: path {path} must be relative and stay inside the volume")]
pub struct PathOutsideVolume {
    pub volume: String,
    pub path: String,
}

/// The folder of volume `name` in the pod's folder.
fn volume_dir(pod_dir: &Path, name: &str) -> PathBuf {
    pod_dir.join("volumes").join(name)
}

/// The token files of the pod's projected volumes (other sources are not written); an error
/// names a path that would leave its volume.
pub fn token_files(spec: &PodSpec, pod_dir: &Path) -> Result<Vec<TokenFile>, PathOutsideVolume> {
    let mut files = Vec::new();
    for volume in spec.volumes.iter().flatten() {
        let Some(projected) = &volume.projected else {
            continue;
        };
        for source in projected.sources.iter().flatten() {
            // The API server's own `kube-api-access-*` volume also projects the CA and the
            // namespace; a process reaches the API through `$KUBECONFIG` instead.
            let Some(token) = &source.service_account_token else {
                continue;
            };
            let relative = Path::new(&token.path);
            if relative.is_absolute()
                || relative
                    .components()
                    .any(|c| matches!(c, std::path::Component::ParentDir))
            {
                return Err(PathOutsideVolume {
                    volume: volume.name.clone(),
                    path: token.path.clone(),
                });
            }
            files.push(TokenFile {
                path: volume_dir(pod_dir, &volume.name).join(relative),
                audience: token.audience.clone().filter(|a| !a.is_empty()),
                seconds: token.expiration_seconds.unwrap_or(DEFAULT_SECONDS),
            });
        }
    }
    Ok(files)
}

/// Requests and writes every token file.
pub async fn write_all(
    client: &Client,
    pod: &Pod,
    files: &[TokenFile],
) -> Result<(), IdentityError> {
    for file in files {
        let audiences = file.audience.iter().cloned().collect();
        let token = identity::request(client, pod, audiences, file.seconds).await?;
        if let Some(parent) = file.path.parent() {
            std::fs::create_dir_all(parent).map_err(|source| IdentityError::Write {
                path: parent.to_path_buf(),
                source,
            })?;
        }
        identity::write(&file.path, token.as_bytes())?;
    }
    Ok(())
}

/// How often the files are renewed: at 80% of the shortest life among them.
pub fn renew_every(files: &[TokenFile]) -> Option<Duration> {
    let shortest = files.iter().map(|f| f.seconds).min()?;
    let seconds = u64::try_from(shortest).unwrap_or(0).max(10);
    Some(Duration::from_secs(seconds * 4 / 5))
}

/// Renews the token files until the task is dropped.
pub async fn keep_fresh(client: Client, pod: Pod, files: Vec<TokenFile>) {
    let Some(every) = renew_every(&files) else {
        return;
    };
    loop {
        tokio::time::sleep(every).await;
        if let Err(error) = write_all(&client, &pod, &files).await {
            tracing::warn!(%error, "renewing a projected token failed; retrying in 10 s");
            tokio::time::sleep(Duration::from_secs(10)).await;
        }
    }
}

/// Rewrites environment values naming a path inside a projected volume's `mountPath` to the
/// volume's folder.
pub fn map_paths(
    spec: &PodSpec,
    container: &Container,
    pod_dir: &Path,
    env: &mut [(String, String)],
) {
    let projected: Vec<(&str, PathBuf)> = container
        .volume_mounts
        .iter()
        .flatten()
        .filter(|m| {
            spec.volumes
                .iter()
                .flatten()
                .any(|v| v.name == m.name && v.projected.is_some())
        })
        .map(|m| (m.mount_path.as_str(), volume_dir(pod_dir, &m.name)))
        .collect();
    for (_, value) in env.iter_mut() {
        for (mount, dir) in &projected {
            if let Ok(rest) = Path::new(value.as_str()).strip_prefix(mount) {
                *value = dir.join(rest).display().to_string();
                break;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use k8s_openapi::api::core::v1::{
        ProjectedVolumeSource, ServiceAccountTokenProjection, Volume, VolumeMount, VolumeProjection,
    };

    use super::*;

    fn spec(path: &str) -> PodSpec {
        PodSpec {
            volumes: Some(vec![Volume {
                name: "gateway-token".into(),
                projected: Some(ProjectedVolumeSource {
                    sources: Some(vec![VolumeProjection {
                        service_account_token: Some(ServiceAccountTokenProjection {
                            audience: Some("synqx".into()),
                            expiration_seconds: Some(600),
                            path: path.into(),
                        }),
                        ..Default::default()
                    }]),
                    ..Default::default()
                }),
                ..Default::default()
            }]),
            ..Default::default()
        }
    }

    #[test]
    fn a_token_source_is_a_file_of_the_pods_folder_renewed_before_it_expires() {
        let files = token_files(&spec("token"), Path::new("/run/pods/p1"));
        assert_eq!(
            files,
            Ok(vec![TokenFile {
                path: PathBuf::from("/run/pods/p1/volumes/gateway-token/token"),
                audience: Some("synqx".into()),
                seconds: 600,
            }])
        );
        assert_eq!(
            renew_every(&files.unwrap_or_default()),
            Some(Duration::from_secs(480))
        );
        for bad in ["/etc/passwd", "../../escape"] {
            assert_eq!(
                token_files(&spec(bad), Path::new("/p")),
                Err(PathOutsideVolume {
                    volume: "gateway-token".into(),
                    path: bad.into(),
                }),
                "{bad}"
            );
        }
    }

    #[test]
    fn paths_inside_the_mount_point_at_the_pods_folder() {
        let container = Container {
            volume_mounts: Some(vec![VolumeMount {
                name: "gateway-token".into(),
                mount_path: "/var/run/secrets/synqx.io/gateway".into(),
                read_only: Some(true),
                ..Default::default()
            }]),
            ..Default::default()
        };
        let mut env = vec![
            (
                "SYNQX_TOKEN_FILE".to_string(),
                "/var/run/secrets/synqx.io/gateway/token".to_string(),
            ),
            ("TMPDIR".to_string(), "/tmp".to_string()),
            (
                "OTHER".to_string(),
                "/var/run/secrets/synqx.io/gatewayx".to_string(),
            ),
        ];
        map_paths(
            &spec("token"),
            &container,
            Path::new("/run/pods/p1"),
            &mut env,
        );
        let values: Vec<&str> = env.iter().map(|(_, v)| v.as_str()).collect();
        assert_eq!(
            values,
            vec![
                "/run/pods/p1/volumes/gateway-token/token",
                "/tmp",
                "/var/run/secrets/synqx.io/gatewayx"
            ]
        );
    }
}
