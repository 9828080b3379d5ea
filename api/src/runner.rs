//! `spec.runner`: how a Pipeline's step pods run on the cluster (image, resources, volumes,
//! environment, placement). Checked without I/O by [`problems`]; whether `hostPath` is
//! allowed is the operator's decision ([`host_path_problems`]).

use std::collections::{BTreeMap, BTreeSet};

use k8s_openapi::api::core::v1::{
    Affinity, CSIVolumeSource, ConfigMapVolumeSource, EmptyDirVolumeSource, EnvVar,
    HostPathVolumeSource, LocalObjectReference, PersistentVolumeClaimVolumeSource,
    ResourceRequirements, Toleration, VolumeMount,
};
use kube::KubeSchema;
use serde::{Deserialize, Serialize};

/// Name of the scratch volume every step pod has (its working directory and `TMPDIR`).
pub const SCRATCH_VOLUME: &str = "scratch";
/// The step's working directory, on the scratch volume.
pub const WORK_DIR: &str = "/work";
/// `TMPDIR` of step pods, on the scratch volume.
pub const TMP_DIR: &str = "/tmp";
/// Environment variables the operator sets itself: a Pipeline cannot override them.
pub const RESERVED_ENV_PREFIX: &str = "SYNQX_";
const RESERVED_ENV: &[&str] = &["POD_NAMESPACE", "TMPDIR"];
/// Label and annotation keys the operator owns.
const RESERVED_KEY_PREFIXES: &[&str] = &["synqx.io/", "batch.kubernetes.io/"];
const RESERVED_KEYS: &[&str] = &["job-name", "controller-uid", "app.kubernetes.io/managed-by"];

/// Pod settings of step Jobs.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct RunnerSpec {
    /// Runner image (default: the operator's own version of `synqx`); another one only if
    /// the operator allows it (`--allowed-runner-images`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image: Option<String>,
    /// Resource requests and limits of the runner container; replaces the operator's
    /// defaults (`--step-resources`) as a whole.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resources: Option<ResourceRequirements>,
    /// Service account of the pods (default `synqx-runner`); another one only where the
    /// operator runs with `--allow-service-account-override`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service_account_name: Option<String>,
    /// Node labels the pods must match.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub node_selector: BTreeMap<String, String>,
    /// Taints the pods tolerate.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tolerations: Vec<Toleration>,
    /// Volumes of the pods: `persistentVolumeClaim`, `emptyDir`, `configMap`, `csi`, and
    /// `hostPath` where the operator runs with `--allow-host-path`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 64))]
    pub volumes: Vec<RunnerVolume>,
    /// Where the runner container mounts them, e.g. `{name: data, mountPath: /data}`; a
    /// `filesystem` or `sqlite` Connection then uses a path below `/data`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub volume_mounts: Vec<VolumeMount>,
    /// Extra environment variables of the runner container (`value`, `configMapKeyRef`,
    /// `fieldRef` or `resourceFieldRef`; Secrets reach steps only through Connections).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub env: Vec<EnvVar>,
    /// Labels added to the pods.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub pod_labels: BTreeMap<String, String>,
    /// Annotations added to the pods.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub pod_annotations: BTreeMap<String, String>,
    /// Node and pod (anti-)affinity of the pods.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub affinity: Option<Affinity>,
    /// PriorityClass of the pods.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub priority_class_name: Option<String>,
    /// Secrets holding credentials for pulling `image`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub image_pull_secrets: Vec<LocalObjectReference>,
}

/// A volume of step pods: a name and exactly one source.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = kube::core::Rule::new("(has(self.persistentVolumeClaim) ? 1 : 0) + (has(self.emptyDir) ? 1 : 0) + (has(self.configMap) ? 1 : 0) + (has(self.csi) ? 1 : 0) + (has(self.hostPath) ? 1 : 0) == 1").message("a volume has exactly one source: persistentVolumeClaim, emptyDir, configMap, csi or hostPath"))]
pub struct RunnerVolume {
    /// Name that `volumeMounts` refer to (a DNS label; `scratch` is the pod's own).
    pub name: String,
    /// A PersistentVolumeClaim of the Pipeline's namespace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub persistent_volume_claim: Option<PersistentVolumeClaimVolumeSource>,
    /// An empty folder that lives as long as the pod.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub empty_dir: Option<EmptyDirVolumeSource>,
    /// The keys of a ConfigMap as files.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config_map: Option<ConfigMapVolumeSource>,
    /// An inline volume of a CSI driver.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub csi: Option<CSIVolumeSource>,
    /// A folder of the node: only where the operator runs with `--allow-host-path`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host_path: Option<HostPathVolumeSource>,
}

impl RunnerVolume {
    /// The sources set, by their field names.
    pub fn sources(&self) -> Vec<&'static str> {
        [
            (
                self.persistent_volume_claim.is_some(),
                "persistentVolumeClaim",
            ),
            (self.empty_dir.is_some(), "emptyDir"),
            (self.config_map.is_some(), "configMap"),
            (self.csi.is_some(), "csi"),
            (self.host_path.is_some(), "hostPath"),
        ]
        .into_iter()
        .filter_map(|(set, name)| set.then_some(name))
        .collect()
    }
}

/// Problems of `spec.runner`, as (field below `spec.runner`, message). Pure: whether
/// `hostPath` is allowed is checked by [`host_path_problems`], where the policy is known.
pub fn problems(runner: &RunnerSpec) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut names = BTreeSet::new();
    for (i, volume) in runner.volumes.iter().enumerate() {
        let field = format!("volumes[{i}]");
        if !is_dns_label(&volume.name) {
            out.push((
                format!("{field}.name"),
                format!(
                    "\"{}\" must be 1-63 lower-case letters, digits or '-', starting and ending with a letter or digit",
                    volume.name
                ),
            ));
        } else if volume.name == SCRATCH_VOLUME {
            out.push((
                format!("{field}.name"),
                format!(
                    "\"{SCRATCH_VOLUME}\" is the step pod's own scratch volume; choose another name"
                ),
            ));
        } else if !names.insert(volume.name.as_str()) {
            out.push((
                format!("{field}.name"),
                format!("volume \"{}\" is defined twice", volume.name),
            ));
        }
        let sources = volume.sources();
        if sources.len() != 1 {
            out.push((
                field,
                format!(
                    "a volume has exactly one source (persistentVolumeClaim, emptyDir, configMap, csi or hostPath); found {}",
                    if sources.is_empty() { "none".to_string() } else { sources.join(", ") }
                ),
            ));
        }
    }
    let mut paths = BTreeSet::new();
    for (i, mount) in runner.volume_mounts.iter().enumerate() {
        let field = format!("volumeMounts[{i}]");
        if !names.contains(mount.name.as_str()) {
            let known: Vec<&str> = names.iter().copied().collect();
            out.push((
                format!("{field}.name"),
                format!(
                    "volume \"{}\" is not in spec.runner.volumes (volumes: {})",
                    mount.name,
                    if known.is_empty() {
                        "none".to_string()
                    } else {
                        known.join(", ")
                    }
                ),
            ));
        }
        let path = mount.mount_path.trim_end_matches('/');
        if !mount.mount_path.starts_with('/') {
            out.push((
                format!("{field}.mountPath"),
                format!("\"{}\" must be an absolute path", mount.mount_path),
            ));
        } else if path.is_empty() || path == WORK_DIR || path == TMP_DIR {
            out.push((
                format!("{field}.mountPath"),
                format!(
                    "\"{}\" is taken: {WORK_DIR} and {TMP_DIR} are the pod's scratch volume and / is the image; mount below them or elsewhere",
                    mount.mount_path
                ),
            ));
        } else if !paths.insert(path) {
            out.push((
                format!("{field}.mountPath"),
                format!("\"{}\" is mounted twice", mount.mount_path),
            ));
        }
    }
    for (i, var) in runner.env.iter().enumerate() {
        let field = format!("env[{i}]");
        if !is_env_name(&var.name) {
            out.push((
                format!("{field}.name"),
                format!("\"{}\" is not a valid environment variable name", var.name),
            ));
        } else if var.name.starts_with(RESERVED_ENV_PREFIX)
            || RESERVED_ENV.contains(&var.name.as_str())
        {
            out.push((
                format!("{field}.name"),
                format!(
                    "\"{}\" is set by the operator (names starting with {RESERVED_ENV_PREFIX}, {}); choose another name",
                    var.name,
                    RESERVED_ENV.join(", ")
                ),
            ));
        }
        if var
            .value_from
            .as_ref()
            .is_some_and(|v| v.secret_key_ref.is_some())
        {
            out.push((
                format!("{field}.valueFrom.secretKeyRef"),
                "step pods read Secrets only through Connections (a secretKeyRef in the Connection's spec); use a Connection field, or a configMapKeyRef for values that are not secret".into(),
            ));
        }
    }
    for (map, what) in [
        (&runner.pod_labels, "podLabels"),
        (&runner.pod_annotations, "podAnnotations"),
    ] {
        for (key, value) in map {
            let field = format!("{what}[\"{key}\"]");
            if !is_key(key) {
                out.push((
                    field.clone(),
                    format!(
                        "\"{key}\" is not a valid key: an optional DNS prefix and '/', then at most 63 letters, digits, '-', '_' or '.', starting and ending with a letter or digit"
                    ),
                ));
            } else if RESERVED_KEYS.contains(&key.as_str())
                || RESERVED_KEY_PREFIXES.iter().any(|p| key.starts_with(p))
            {
                out.push((
                    field.clone(),
                    format!(
                        "\"{key}\" is set by the operator or Kubernetes (keys {}, {}); choose another key",
                        RESERVED_KEY_PREFIXES.iter().map(|p| format!("{p}*")).collect::<Vec<_>>().join(", "),
                        RESERVED_KEYS.join(", ")
                    ),
                ));
            }
            if what == "podLabels" && !is_label_value(value) {
                out.push((
                    field,
                    format!(
                        "label value \"{value}\" must be at most 63 letters, digits, '-', '_' or '.', starting and ending with a letter or digit"
                    ),
                ));
            }
        }
    }
    out
}

/// `hostPath` volumes, refused unless the operator allows them.
pub fn host_path_problems(runner: &RunnerSpec) -> Vec<(String, String)> {
    runner
        .volumes
        .iter()
        .enumerate()
        .filter(|(_, v)| v.host_path.is_some())
        .map(|(i, v)| {
            (
                format!("volumes[{i}].hostPath"),
                format!(
                    "volume \"{}\": hostPath volumes are not allowed by this operator (an administrator can allow them with --allow-host-path); use a persistentVolumeClaim",
                    v.name
                ),
            )
        })
        .collect()
}

/// RFC 1123 label: what Kubernetes requires of volume names.
fn is_dns_label(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 63
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !name.starts_with('-')
        && !name.ends_with('-')
}

fn is_env_name(name: &str) -> bool {
    !name.is_empty()
        && !name.as_bytes()[0].is_ascii_digit()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'))
}

/// A label value: empty, or at most 63 characters of `[A-Za-z0-9_.-]`, alphanumeric at
/// both ends.
fn is_label_value(value: &str) -> bool {
    value.is_empty() || is_name_part(value)
}

fn is_name_part(text: &str) -> bool {
    let alnum = |c: Option<u8>| c.is_some_and(|c| c.is_ascii_alphanumeric());
    text.len() <= 63
        && alnum(text.bytes().next())
        && alnum(text.bytes().last())
        && text
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
}

/// Whether `key` is a qualified key `[prefix/]name`: the prefix a DNS subdomain, the name a
/// name part.
fn is_key(key: &str) -> bool {
    let (prefix, name) = match key.split_once('/') {
        Some((prefix, name)) => (Some(prefix), name),
        None => (None, key),
    };
    let prefix_ok =
        prefix.is_none_or(|p| !p.is_empty() && p.len() <= 253 && p.split('.').all(is_dns_label));
    prefix_ok && is_name_part(name)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn runner(yaml: &str) -> RunnerSpec {
        serde_yaml::from_str(yaml).unwrap_or_else(|e| panic!("{e}"))
    }

    fn fields(problems: &[(String, String)]) -> Vec<&str> {
        problems.iter().map(|(f, _)| f.as_str()).collect()
    }

    #[test]
    fn a_runner_with_volumes_env_labels_and_placement_is_valid() {
        let spec = runner(
            r#"
volumes:
  - {name: data, persistentVolumeClaim: {claimName: etl-data}}
  - {name: config, configMap: {name: etl-config}}
  - {name: cache, emptyDir: {sizeLimit: 1Gi}}
  - {name: host, hostPath: {path: /srv/etl}}
volumeMounts:
  - {name: data, mountPath: /data}
  - {name: config, mountPath: /config, readOnly: true}
  - {name: cache, mountPath: /work/cache}
env:
  - {name: RUST_LOG, value: debug}
  - {name: NODE, valueFrom: {fieldRef: {fieldPath: spec.nodeName}}}
podLabels: {team: data, "example.com/cost-centre": "42"}
podAnnotations: {"cluster-autoscaler.kubernetes.io/safe-to-evict": "false"}
priorityClassName: batch-low
imagePullSecrets: [{name: registry}]
affinity:
  nodeAffinity:
    requiredDuringSchedulingIgnoredDuringExecution:
      nodeSelectorTerms: [{matchExpressions: [{key: pool, operator: In, values: [etl]}]}]
"#,
        );
        assert_eq!(problems(&spec), vec![]);
        assert_eq!(
            fields(&host_path_problems(&spec)),
            vec!["volumes[3].hostPath"]
        );
        assert!(host_path_problems(&spec)[0].1.contains("--allow-host-path"));
    }

    #[test]
    fn every_mistake_is_named_by_its_field() {
        let spec = runner(
            r#"
volumes:
  - {name: scratch, emptyDir: {}}
  - {name: Data, persistentVolumeClaim: {claimName: x}}
  - {name: twice, emptyDir: {}}
  - {name: twice, emptyDir: {}, configMap: {name: c}}
  - {name: none}
volumeMounts:
  - {name: missing, mountPath: /m}
  - {name: twice, mountPath: relative}
  - {name: twice, mountPath: /tmp}
  - {name: none, mountPath: /a}
  - {name: none, mountPath: /a/}
env:
  - {name: SYNQX_WATERMARK, value: x}
  - {name: 1BAD, value: x}
  - {name: PASSWORD, valueFrom: {secretKeyRef: {name: s, key: k}}}
podLabels: {"synqx.io/step": x, "bad key!": y, ok: "not valid!"}
podAnnotations: {"job-name": x}
"#,
        );
        let found = problems(&spec);
        assert_eq!(
            fields(&found),
            vec![
                "volumes[0].name",
                "volumes[1].name",
                "volumes[3].name",
                "volumes[3]",
                "volumes[4]",
                "volumeMounts[0].name",
                "volumeMounts[1].mountPath",
                "volumeMounts[2].mountPath",
                "volumeMounts[4].mountPath",
                "env[0].name",
                "env[1].name",
                "env[2].valueFrom.secretKeyRef",
                "podLabels[\"bad key!\"]",
                "podLabels[\"ok\"]",
                "podLabels[\"synqx.io/step\"]",
                "podAnnotations[\"job-name\"]",
            ],
            "{found:#?}"
        );
        let text = |f: &str| {
            found
                .iter()
                .find(|(field, _)| field == f)
                .map(|(_, m)| m.clone())
                .unwrap_or_default()
        };
        assert!(text("volumes[3]").contains("found emptyDir, configMap"));
        assert!(text("volumes[4]").contains("found none"));
        assert!(
            text("volumeMounts[0].name")
                .contains("volume \"missing\" is not in spec.runner.volumes")
        );
        assert!(text("env[2].valueFrom.secretKeyRef").contains("only through Connections"));
        assert!(host_path_problems(&spec).is_empty());
    }
}
