//! A container's environment, resolved the way a kubelet resolves it: `envFrom` first, then
//! `env` in order, with `$(VAR)` references expanded against what came before.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{ConfigMap, Container, EnvVar, Pod, Secret};
use kube::{Api, Client};

/// Why a container's environment cannot be built yet. A kubelet reports this as the
/// `CreateContainerConfigError` waiting reason and tries again later.
#[derive(Debug, thiserror::Error)]
pub enum EnvError {
    #[error("{kind} \"{name}\" not found")]
    MissingObject { kind: &'static str, name: String },
    #[error("couldn't find key {key} in {kind} {namespace}/{name}")]
    MissingKey {
        kind: &'static str,
        namespace: String,
        name: String,
        key: String,
    },
    #[error("env {var}: {detail}")]
    Unsupported { var: String, detail: String },
    #[error("reading {kind} {name}: {source}")]
    Api {
        kind: &'static str,
        name: String,
        source: kube::Error,
    },
}

/// Where `secretKeyRef` and `configMapKeyRef` look their values up; the cluster in
/// production, a map in unit tests.
pub trait KeyLookup {
    /// The keys of the named Secret (decoded) or ConfigMap, or `None` if it does not exist.
    fn secret(
        &mut self,
        name: &str,
    ) -> impl Future<Output = Result<Option<BTreeMap<String, String>>, EnvError>>;
    fn config_map(
        &mut self,
        name: &str,
    ) -> impl Future<Output = Result<Option<BTreeMap<String, String>>, EnvError>>;
}

/// Reads Secrets and ConfigMaps of one namespace through the API, each at most once.
pub struct ClusterLookup {
    secrets: Api<Secret>,
    config_maps: Api<ConfigMap>,
    cache: BTreeMap<(&'static str, String), Option<BTreeMap<String, String>>>,
}

impl ClusterLookup {
    pub fn new(client: Client, namespace: &str) -> Self {
        Self {
            secrets: Api::namespaced(client.clone(), namespace),
            config_maps: Api::namespaced(client, namespace),
            cache: BTreeMap::new(),
        }
    }
}

impl ClusterLookup {
    /// The keys of the object `kind/name`, from the cache or from `get`, which it fills.
    async fn cached<K>(
        &mut self,
        kind: &'static str,
        name: &str,
        api: Api<K>,
        keys: impl FnOnce(K) -> BTreeMap<String, String>,
    ) -> Result<Option<BTreeMap<String, String>>, EnvError>
    where
        K: kube::Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug,
    {
        if let Some(hit) = self.cache.get(&(kind, name.to_string())) {
            return Ok(hit.clone());
        }
        let found = api
            .get_opt(name)
            .await
            .map_err(|source| EnvError::Api {
                kind,
                name: name.to_string(),
                source,
            })?
            .map(keys);
        self.cache.insert((kind, name.to_string()), found.clone());
        Ok(found)
    }
}

impl KeyLookup for ClusterLookup {
    async fn secret(&mut self, name: &str) -> Result<Option<BTreeMap<String, String>>, EnvError> {
        let api = self.secrets.clone();
        self.cached("Secret", name, api, |secret: Secret| {
            let mut keys: BTreeMap<String, String> = secret
                .data
                .unwrap_or_default()
                .into_iter()
                .map(|(k, v)| (k, String::from_utf8_lossy(&v.0).into_owned()))
                .collect();
            keys.extend(secret.string_data.unwrap_or_default());
            keys
        })
        .await
    }

    async fn config_map(
        &mut self,
        name: &str,
    ) -> Result<Option<BTreeMap<String, String>>, EnvError> {
        let api = self.config_maps.clone();
        self.cached("ConfigMap", name, api, |cm: ConfigMap| {
            cm.data.unwrap_or_default()
        })
        .await
    }
}

/// The environment of `container` in `pod`, in the order a kubelet builds it.
pub async fn resolve(
    pod: &Pod,
    container: &Container,
    lookup: &mut impl KeyLookup,
) -> Result<Vec<(String, String)>, EnvError> {
    let namespace = pod
        .metadata
        .namespace
        .clone()
        .unwrap_or_else(|| "default".into());
    let mut env: Vec<(String, String)> = Vec::new();
    let set = |env: &mut Vec<(String, String)>, name: String, value: String| {
        env.retain(|(n, _)| *n != name);
        env.push((name, value));
    };

    for source in container.env_from.iter().flatten() {
        let prefix = source.prefix.clone().unwrap_or_default();
        let (kind, name, optional, keys) = if let Some(r) = &source.secret_ref {
            (
                "Secret",
                r.name.clone(),
                r.optional.unwrap_or(false),
                lookup.secret(&r.name).await?,
            )
        } else if let Some(r) = &source.config_map_ref {
            (
                "ConfigMap",
                r.name.clone(),
                r.optional.unwrap_or(false),
                lookup.config_map(&r.name).await?,
            )
        } else {
            continue;
        };
        match keys {
            Some(keys) => keys
                .into_iter()
                .for_each(|(k, v)| set(&mut env, format!("{prefix}{k}"), v)),
            None if optional => {}
            None => return Err(EnvError::MissingObject { kind, name }),
        }
    }

    for var in container.env.iter().flatten() {
        if let Some(value) = value_of(var, pod, &namespace, lookup).await? {
            let expanded = expand(&value, &env);
            set(&mut env, var.name.clone(), expanded);
        }
    }
    Ok(env)
}

async fn value_of(
    var: &EnvVar,
    pod: &Pod,
    namespace: &str,
    lookup: &mut impl KeyLookup,
) -> Result<Option<String>, EnvError> {
    let Some(from) = &var.value_from else {
        return Ok(Some(var.value.clone().unwrap_or_default()));
    };
    if let Some(r) = &from.secret_key_ref {
        return keyed(
            "Secret",
            namespace,
            &r.name,
            &r.key,
            r.optional,
            lookup.secret(&r.name).await?,
        );
    }
    if let Some(r) = &from.config_map_key_ref {
        return keyed(
            "ConfigMap",
            namespace,
            &r.name,
            &r.key,
            r.optional,
            lookup.config_map(&r.name).await?,
        );
    }
    if let Some(r) = &from.field_ref {
        return field(pod, &r.field_path)
            .map(Some)
            .ok_or_else(|| EnvError::Unsupported {
                var: var.name.clone(),
                detail: format!(
                    "fieldRef {} is not one the process kubelet knows",
                    r.field_path
                ),
            });
    }
    Err(EnvError::Unsupported {
        var: var.name.clone(),
        detail: "only value, secretKeyRef, configMapKeyRef and fieldRef are supported".into(),
    })
}

fn keyed(
    kind: &'static str,
    namespace: &str,
    name: &str,
    key: &str,
    optional: Option<bool>,
    keys: Option<BTreeMap<String, String>>,
) -> Result<Option<String>, EnvError> {
    let optional = optional.unwrap_or(false);
    match keys {
        None if optional => Ok(None),
        None => Err(EnvError::MissingObject {
            kind,
            name: name.to_string(),
        }),
        Some(keys) => match keys.get(key) {
            Some(value) => Ok(Some(value.clone())),
            None if optional => Ok(None),
            None => Err(EnvError::MissingKey {
                kind,
                namespace: namespace.to_string(),
                name: name.to_string(),
                key: key.to_string(),
            }),
        },
    }
}

/// The downward-API fields a process pod can report truthfully.
fn field(pod: &Pod, path: &str) -> Option<String> {
    let meta = &pod.metadata;
    let spec = pod.spec.as_ref();
    match path {
        "metadata.name" => meta.name.clone(),
        "metadata.namespace" => meta.namespace.clone(),
        "metadata.uid" => meta.uid.clone(),
        "spec.nodeName" => spec.and_then(|s| s.node_name.clone()),
        "spec.serviceAccountName" => spec.and_then(|s| s.service_account_name.clone()),
        "status.podIP" | "status.hostIP" => Some("127.0.0.1".into()),
        _ => {
            let (map, key) = if let Some(rest) = path.strip_prefix("metadata.labels") {
                (meta.labels.as_ref(), rest)
            } else if let Some(rest) = path.strip_prefix("metadata.annotations") {
                (meta.annotations.as_ref(), rest)
            } else {
                return None;
            };
            let key = key.strip_prefix("['")?.strip_suffix("']")?;
            Some(map.and_then(|m| m.get(key).cloned()).unwrap_or_default())
        }
    }
}

/// Expands `$(NAME)` from `env`; `$$(NAME)` is an escaped literal and an unknown name is
/// left as written, both as in Kubernetes.
pub fn expand(input: &str, env: &[(String, String)]) -> String {
    let mut out = String::with_capacity(input.len());
    let mut rest = input;
    while let Some(at) = rest.find('$') {
        out.push_str(&rest[..at]);
        rest = &rest[at..];
        if let Some(after) = rest.strip_prefix("$$") {
            out.push('$');
            rest = after;
        } else if let Some(after) = rest.strip_prefix("$(")
            && let Some(end) = after.find(')')
        {
            let name = &after[..end];
            match env.iter().rev().find(|(n, _)| n == name) {
                Some((_, value)) => out.push_str(value),
                None => out.push_str(&rest[..end + 3]),
            }
            rest = &after[end + 1..];
        } else {
            out.push('$');
            rest = &rest[1..];
        }
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{
        ConfigMapKeySelector, EnvFromSource, EnvVarSource, ObjectFieldSelector, PodSpec,
        SecretEnvSource, SecretKeySelector,
    };
    use kube::api::ObjectMeta;

    #[derive(Default)]
    struct Fixed {
        secrets: BTreeMap<String, BTreeMap<String, String>>,
        config_maps: BTreeMap<String, BTreeMap<String, String>>,
    }

    impl KeyLookup for Fixed {
        async fn secret(
            &mut self,
            name: &str,
        ) -> Result<Option<BTreeMap<String, String>>, EnvError> {
            Ok(self.secrets.get(name).cloned())
        }
        async fn config_map(
            &mut self,
            name: &str,
        ) -> Result<Option<BTreeMap<String, String>>, EnvError> {
            Ok(self.config_maps.get(name).cloned())
        }
    }

    fn keys(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn pod() -> Pod {
        Pod {
            metadata: ObjectMeta {
                name: Some("load-1".into()),
                namespace: Some("etl".into()),
                labels: Some(keys(&[("app", "synqx")]).into_iter().collect()),
                ..Default::default()
            },
            spec: Some(PodSpec {
                service_account_name: Some("synqx-runner".into()),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    fn var(name: &str, value: &str) -> EnvVar {
        EnvVar {
            name: name.into(),
            value: Some(value.into()),
            ..Default::default()
        }
    }

    fn from(name: &str, source: EnvVarSource) -> EnvVar {
        EnvVar {
            name: name.into(),
            value_from: Some(source),
            ..Default::default()
        }
    }

    fn run(container: Container, lookup: &mut Fixed) -> Result<Vec<(String, String)>, EnvError> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .build()
            .expect("runtime");
        runtime.block_on(resolve(&pod(), &container, lookup))
    }

    #[test]
    fn resolves_every_kind_of_source_in_kubelet_order() {
        let mut lookup = Fixed::default();
        lookup.secrets.insert(
            "db".into(),
            keys(&[("password", "s3cret"), ("user", "etl")]),
        );
        lookup
            .config_maps
            .insert("cfg".into(), keys(&[("region", "eu")]));
        let container = Container {
            env_from: Some(vec![EnvFromSource {
                prefix: Some("DB_".into()),
                secret_ref: Some(SecretEnvSource {
                    name: "db".into(),
                    optional: None,
                }),
                ..Default::default()
            }]),
            env: Some(vec![
                var("GREETING", "hello"),
                from(
                    "PASSWORD",
                    EnvVarSource {
                        secret_key_ref: Some(SecretKeySelector {
                            name: "db".into(),
                            key: "password".into(),
                            optional: None,
                        }),
                        ..Default::default()
                    },
                ),
                from(
                    "REGION",
                    EnvVarSource {
                        config_map_key_ref: Some(ConfigMapKeySelector {
                            name: "cfg".into(),
                            key: "region".into(),
                            optional: None,
                        }),
                        ..Default::default()
                    },
                ),
                from(
                    "NS",
                    EnvVarSource {
                        field_ref: Some(ObjectFieldSelector {
                            field_path: "metadata.namespace".into(),
                            api_version: None,
                        }),
                        ..Default::default()
                    },
                ),
                from(
                    "APP",
                    EnvVarSource {
                        field_ref: Some(ObjectFieldSelector {
                            field_path: "metadata.labels['app']".into(),
                            api_version: None,
                        }),
                        ..Default::default()
                    },
                ),
                var(
                    "URL",
                    "postgres://$(DB_user):$(PASSWORD)@db/$(NS)?x=$(UNKNOWN)&y=$$(NS)",
                ),
                var("GREETING", "hi"),
            ]),
            ..Default::default()
        };
        let env = run(container, &mut lookup).expect("resolves");
        let get = |name: &str| env.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str());
        assert_eq!(get("DB_password"), Some("s3cret"));
        assert_eq!(get("PASSWORD"), Some("s3cret"));
        assert_eq!(get("REGION"), Some("eu"));
        assert_eq!(get("NS"), Some("etl"));
        assert_eq!(get("APP"), Some("synqx"));
        assert_eq!(
            get("URL"),
            Some("postgres://etl:s3cret@db/etl?x=$(UNKNOWN)&y=$(NS)")
        );
        // A later definition replaces an earlier one and moves to the end, as in a kubelet.
        assert_eq!(
            env.last(),
            Some(&("GREETING".to_string(), "hi".to_string()))
        );
    }

    #[test]
    fn a_missing_secret_or_key_names_it_unless_optional() {
        let secret_ref = |optional| EnvVarSource {
            secret_key_ref: Some(SecretKeySelector {
                name: "db".into(),
                key: "password".into(),
                optional,
            }),
            ..Default::default()
        };
        let container = |optional| Container {
            env: Some(vec![from("P", secret_ref(optional))]),
            ..Default::default()
        };

        let err = run(container(None), &mut Fixed::default()).expect_err("missing secret");
        assert_eq!(err.to_string(), "Secret \"db\" not found");
        assert_eq!(
            run(container(Some(true)), &mut Fixed::default()).expect("optional"),
            vec![]
        );

        let mut lookup = Fixed::default();
        lookup.secrets.insert("db".into(), keys(&[("user", "etl")]));
        let err = run(container(None), &mut lookup).expect_err("missing key");
        assert_eq!(
            err.to_string(),
            "couldn't find key password in Secret etl/db"
        );
    }

    #[test]
    fn unknown_field_refs_are_refused_by_name() {
        let container = Container {
            env: Some(vec![from(
                "X",
                EnvVarSource {
                    field_ref: Some(ObjectFieldSelector {
                        field_path: "status.phase".into(),
                        api_version: None,
                    }),
                    ..Default::default()
                },
            )]),
            ..Default::default()
        };
        let err = run(container, &mut Fixed::default()).expect_err("unsupported");
        assert!(
            err.to_string().contains("env X: fieldRef status.phase"),
            "{err}"
        );
    }

    #[test]
    fn expansion_handles_edges() {
        let env = vec![("A".to_string(), "1".to_string())];
        assert_eq!(expand("$(A)$(A)", &env), "11");
        assert_eq!(expand("$", &env), "$");
        assert_eq!(expand("$(A", &env), "$(A");
        assert_eq!(expand("cost $5 $$(A)", &env), "cost $5 $(A)");
    }
}
