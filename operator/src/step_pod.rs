//! What every step and check pod gets on a real node: a scratch volume with a size limit
//! that holds the working directory and `TMPDIR` (the root file system is read-only),
//! default resources and deadlines, and the parts of `spec.runner` a Pipeline adds
//! (volumes, mounts, env, labels, annotations, affinity, priority, pull secrets).

use std::collections::BTreeMap;
use std::time::Duration;

use k8s_openapi::api::core::v1::{
    Container, EmptyDirVolumeSource, EnvVar, PodSpec, ProjectedVolumeSource, ResourceRequirements,
    ServiceAccountTokenProjection, Volume, VolumeMount, VolumeProjection,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use synqx_api::runner::{RunnerSpec, RunnerVolume, SCRATCH_VOLUME, TMP_DIR, WORK_DIR};
use synqx_api::telemetry::{AUDIENCE, GATEWAY_ENV, TOKEN_DIR, TOKEN_FILE, TOKEN_FILE_ENV};

/// Defaults from the operator's command line.
#[derive(Clone, Debug)]
pub struct PodDefaults {
    /// Requests and limits of a runner container whose Pipeline sets none.
    pub resources: ResourceRequirements,
    /// Size limit of the scratch volume.
    pub scratch_size_limit: Quantity,
    /// `activeDeadlineSeconds` of a step Job whose step sets no `timeout`.
    pub step_deadline: Duration,
    /// Whether Pipelines may mount `hostPath` volumes.
    pub allow_host_path: bool,
    /// How long a pod may fail to start (image pull, configuration, scheduling) before its
    /// step fails with that reason.
    pub start_timeout: Duration,
    /// The gateway's URL as step pods reach it (`--gateway-url`); none: they report only
    /// through their termination message.
    pub gateway_url: Option<String>,
}

impl Default for PodDefaults {
    fn default() -> Self {
        Self {
            resources: default_resources(),
            scratch_size_limit: Quantity(DEFAULT_SCRATCH_SIZE_LIMIT.into()),
            step_deadline: Duration::from_secs(6 * 3600),
            allow_host_path: false,
            start_timeout: Duration::from_secs(300),
            gateway_url: None,
        }
    }
}

/// `--step-resources` default, as JSON.
pub const DEFAULT_RESOURCES: &str =
    r#"{"requests":{"cpu":"100m","memory":"256Mi"},"limits":{"memory":"2Gi"}}"#;
pub const DEFAULT_SCRATCH_SIZE_LIMIT: &str = "4Gi";

fn default_resources() -> ResourceRequirements {
    let quantities = |pairs: &[(&str, &str)]| {
        Some(
            pairs
                .iter()
                .map(|(k, v)| (k.to_string(), Quantity(v.to_string())))
                .collect::<BTreeMap<_, _>>(),
        )
    };
    ResourceRequirements {
        requests: quantities(&[("cpu", "100m"), ("memory", "256Mi")]),
        limits: quantities(&[("memory", "2Gi")]),
        ..Default::default()
    }
}

/// A `--step-resources` that is not a ResourceRequirements object.
#[derive(Debug, thiserror::Error)]
#[error(
    "--step-resources {text:?}: {source} (expected e.g. {})",
    DEFAULT_RESOURCES
)]
pub struct ResourcesError {
    text: String,
    #[source]
    source: serde_json::Error,
}

/// Parses `--step-resources`: a ResourceRequirements object as JSON.
pub fn parse_resources(text: &str) -> Result<ResourceRequirements, ResourcesError> {
    serde_json::from_str(text).map_err(|source| ResourcesError {
        text: text.to_string(),
        source,
    })
}

/// A `--scratch-size-limit` that is not a Kubernetes quantity.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "{text:?} is not a size: a number with an optional suffix (Ki, Mi, Gi, Ti, k, M, G, T), e.g. 4Gi"
)]
pub struct QuantityError {
    text: String,
}

/// Parses `--scratch-size-limit`: a Kubernetes quantity such as `4Gi` or `500M`.
pub fn parse_quantity(text: &str) -> Result<Quantity, QuantityError> {
    let digits = text.trim_end_matches(|c: char| c.is_ascii_alphabetic());
    let suffix = &text[digits.len()..];
    let known = [
        "", "k", "M", "G", "T", "P", "E", "Ki", "Mi", "Gi", "Ti", "Pi", "Ei",
    ];
    let number = !digits.is_empty()
        && digits.bytes().all(|b| b.is_ascii_digit() || b == b'.')
        && digits.bytes().filter(|b| *b == b'.').count() <= 1;
    if number && known.contains(&suffix) {
        Ok(Quantity(text.to_string()))
    } else {
        Err(QuantityError {
            text: text.to_string(),
        })
    }
}

/// The scratch volume, its mounts (`/work` and `/tmp`) and `TMPDIR` on the pod and its one
/// container, plus default resources where the container has none.
pub fn add_scratch(pod: &mut PodSpec, container: &mut Container, defaults: &PodDefaults) {
    pod.volumes.get_or_insert_with(Vec::new).push(Volume {
        name: SCRATCH_VOLUME.into(),
        empty_dir: Some(EmptyDirVolumeSource {
            size_limit: Some(defaults.scratch_size_limit.clone()),
            medium: None,
        }),
        ..Default::default()
    });
    let mounts = container.volume_mounts.get_or_insert_with(Vec::new);
    mounts.push(VolumeMount {
        name: SCRATCH_VOLUME.into(),
        mount_path: WORK_DIR.into(),
        ..Default::default()
    });
    mounts.push(VolumeMount {
        name: SCRATCH_VOLUME.into(),
        mount_path: TMP_DIR.into(),
        sub_path: Some("tmp".into()),
        ..Default::default()
    });
    container.working_dir = Some(WORK_DIR.into());
    container.env.get_or_insert_with(Vec::new).push(EnvVar {
        name: "TMPDIR".into(),
        value: Some(TMP_DIR.into()),
        ..Default::default()
    });
    if container.resources.is_none() {
        container.resources = Some(defaults.resources.clone());
    }
}

/// The volume of the step pod's token for the gateway.
pub const GATEWAY_TOKEN_VOLUME: &str = "synqx-gateway-token";
/// The life of that token: the shortest the API server grants; the kubelet renews it at 80%.
pub const GATEWAY_TOKEN_SECONDS: i64 = 600;

/// No Kubernetes credentials in the pod (`automountServiceAccountToken: false`); with a
/// gateway, a projected token for it alone (audience `synqx`, bound to the pod, short-lived)
/// and where to send it (`SYNQX_GATEWAY`, `SYNQX_TOKEN_FILE`).
pub fn add_gateway(pod: &mut PodSpec, container: &mut Container, gateway_url: Option<&str>) {
    pod.automount_service_account_token = Some(false);
    let Some(url) = gateway_url else {
        return;
    };
    pod.volumes.get_or_insert_with(Vec::new).push(Volume {
        name: GATEWAY_TOKEN_VOLUME.into(),
        projected: Some(ProjectedVolumeSource {
            sources: Some(vec![VolumeProjection {
                service_account_token: Some(ServiceAccountTokenProjection {
                    audience: Some(AUDIENCE.into()),
                    expiration_seconds: Some(GATEWAY_TOKEN_SECONDS),
                    path: TOKEN_FILE.into(),
                }),
                ..Default::default()
            }]),
            default_mode: None,
        }),
        ..Default::default()
    });
    container
        .volume_mounts
        .get_or_insert_with(Vec::new)
        .push(VolumeMount {
            name: GATEWAY_TOKEN_VOLUME.into(),
            mount_path: TOKEN_DIR.into(),
            read_only: Some(true),
            ..Default::default()
        });
    let env = container.env.get_or_insert_with(Vec::new);
    env.push(EnvVar {
        name: GATEWAY_ENV.into(),
        value: Some(url.to_string()),
        ..Default::default()
    });
    env.push(EnvVar {
        name: TOKEN_FILE_ENV.into(),
        value: Some(format!("{TOKEN_DIR}/{TOKEN_FILE}")),
        ..Default::default()
    });
}

/// The parts of `spec.runner` that go into the pod besides image, resources, service
/// account, node selector and tolerations. The Pipeline was validated (`runner::problems`)
/// before any Job is built, so names and keys here are already known to be valid.
pub fn add_runner(
    pod: &mut PodSpec,
    container: &mut Container,
    labels: &mut BTreeMap<String, String>,
    annotations: &mut BTreeMap<String, String>,
    runner: &RunnerSpec,
) {
    if !runner.volumes.is_empty() {
        pod.volumes
            .get_or_insert_with(Vec::new)
            .extend(runner.volumes.iter().map(volume));
    }
    if !runner.volume_mounts.is_empty() {
        container
            .volume_mounts
            .get_or_insert_with(Vec::new)
            .extend(runner.volume_mounts.iter().cloned());
    }
    if !runner.env.is_empty() {
        container
            .env
            .get_or_insert_with(Vec::new)
            .extend(runner.env.iter().cloned());
    }
    for (key, value) in &runner.pod_labels {
        // The operator's own labels select the pod; they win.
        labels.entry(key.clone()).or_insert_with(|| value.clone());
    }
    annotations.extend(runner.pod_annotations.clone());
    pod.affinity = runner.affinity.clone();
    pod.priority_class_name = runner.priority_class_name.clone();
    if !runner.image_pull_secrets.is_empty() {
        pod.image_pull_secrets = Some(runner.image_pull_secrets.clone());
    }
}

fn volume(v: &RunnerVolume) -> Volume {
    Volume {
        name: v.name.clone(),
        persistent_volume_claim: v.persistent_volume_claim.clone(),
        empty_dir: v.empty_dir.clone(),
        config_map: v.config_map.clone(),
        csi: v.csi.clone(),
        host_path: v.host_path.clone(),
        ..Default::default()
    }
}

/// `activeDeadlineSeconds` for a step: its own `timeout`, else the operator's default.
pub fn deadline_seconds(timeout: Option<Duration>, defaults: &PodDefaults) -> i64 {
    let seconds = timeout.unwrap_or(defaults.step_deadline).as_secs().max(1);
    i64::try_from(seconds).unwrap_or(i64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scratch_holds_work_and_tmp_and_resources_default() {
        let mut pod = PodSpec::default();
        let mut container = Container::default();
        add_scratch(&mut pod, &mut container, &PodDefaults::default());
        let volumes = pod.volumes.unwrap_or_default();
        assert_eq!(volumes.len(), 1);
        assert_eq!(
            volumes[0]
                .empty_dir
                .as_ref()
                .and_then(|e| e.size_limit.clone()),
            Some(Quantity("4Gi".into()))
        );
        let mounts: Vec<(String, Option<String>)> = container
            .volume_mounts
            .unwrap_or_default()
            .into_iter()
            .map(|m| (m.mount_path, m.sub_path))
            .collect();
        assert_eq!(
            mounts,
            vec![
                ("/work".to_string(), None),
                ("/tmp".to_string(), Some("tmp".to_string()))
            ]
        );
        let env = container.env.unwrap_or_default();
        assert_eq!(env[0].name, "TMPDIR");
        assert_eq!(env[0].value.as_deref(), Some("/tmp"));
        assert_eq!(container.resources, Some(default_resources()));
        assert_eq!(
            parse_resources(DEFAULT_RESOURCES).ok(),
            Some(default_resources())
        );
        let err = parse_resources("{\"requests\": 1}")
            .unwrap_err()
            .to_string();
        assert!(err.contains("--step-resources"), "{err}");
    }

    #[test]
    fn a_pipelines_own_resources_replace_the_defaults() {
        let mut container = Container {
            resources: Some(ResourceRequirements {
                limits: Some(BTreeMap::from([(
                    "memory".to_string(),
                    Quantity("8Gi".into()),
                )])),
                ..Default::default()
            }),
            ..Default::default()
        };
        add_scratch(
            &mut PodSpec::default(),
            &mut container,
            &PodDefaults::default(),
        );
        let resources = container.resources.unwrap_or_default();
        assert_eq!(resources.requests, None);
        assert_eq!(
            resources.limits.and_then(|l| l.get("memory").cloned()),
            Some(Quantity("8Gi".into()))
        );
    }

    #[test]
    fn a_pod_gets_no_api_credentials_and_a_token_for_the_gateway_only() {
        let mut pod = PodSpec::default();
        let mut container = Container::default();
        add_gateway(&mut pod, &mut container, None);
        assert_eq!(pod.automount_service_account_token, Some(false));
        assert_eq!((pod.volumes.as_ref(), container.env.as_ref()), (None, None));

        add_gateway(
            &mut pod,
            &mut container,
            Some("http://synqx-gateway.synqx-system.svc:8081"),
        );
        let volumes = pod.volumes.unwrap_or_default();
        let token = volumes[0]
            .projected
            .as_ref()
            .and_then(|p| p.sources.as_ref())
            .and_then(|s| s[0].service_account_token.clone());
        assert_eq!(
            token,
            Some(ServiceAccountTokenProjection {
                audience: Some("synqx".into()),
                expiration_seconds: Some(600),
                path: "token".into(),
            })
        );
        let mounts = container.volume_mounts.unwrap_or_default();
        assert_eq!(
            (
                mounts[0].name.as_str(),
                mounts[0].mount_path.as_str(),
                mounts[0].read_only
            ),
            (
                GATEWAY_TOKEN_VOLUME,
                "/var/run/secrets/synqx.io/gateway",
                Some(true)
            )
        );
        let env: Vec<(String, Option<String>)> = container
            .env
            .unwrap_or_default()
            .into_iter()
            .map(|e| (e.name, e.value))
            .collect();
        assert_eq!(
            env,
            vec![
                (
                    "SYNQX_GATEWAY".to_string(),
                    Some("http://synqx-gateway.synqx-system.svc:8081".to_string())
                ),
                (
                    "SYNQX_TOKEN_FILE".to_string(),
                    Some("/var/run/secrets/synqx.io/gateway/token".to_string())
                ),
            ]
        );
    }

    #[test]
    fn deadlines_come_from_the_step_or_the_default() {
        let defaults = PodDefaults::default();
        assert_eq!(deadline_seconds(None, &defaults), 21_600);
        assert_eq!(
            deadline_seconds(Some(Duration::from_secs(90)), &defaults),
            90
        );
        assert_eq!(deadline_seconds(Some(Duration::ZERO), &defaults), 1);
    }

    #[test]
    fn sizes_are_kubernetes_quantities() {
        for ok in ["4Gi", "500M", "1.5Gi", "1024"] {
            assert_eq!(parse_quantity(ok), Ok(Quantity(ok.into())));
        }
        for bad in ["", "Gi", "4 Gi", "4GB", "1.2.3Gi"] {
            assert!(parse_quantity(bad).is_err(), "{bad}");
        }
    }
}
