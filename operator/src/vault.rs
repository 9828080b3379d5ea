//! The vault of each namespace served: the operator creates the private keyring (Secret
//! `synqx-vault`) once, publishes its newest public key (ConfigMap `synqx-vault`, what
//! `synqx seal` reads), and hands the keyring to the step and check pods whose Connections
//! hold sealed values, as a `secretKeyRef` the kubelet resolves: the keyring never passes
//! through a resource a step pod's service account can read, and no plaintext value ever
//! exists in the API server.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::{
    ConfigMap, EnvVar, EnvVarSource, ObjectFieldSelector, Secret, SecretKeySelector,
};
use kube::api::{ObjectMeta, Patch, PatchParams, PostParams};
use kube::{Api, Client};
use synqx_api::connection::ConnectionSpec;
use synqx_api::vault::{
    KEYRING_SECRET_KEY, Keyring, PUBLIC_KEY_CONFIG_KEY, VAULT_OBJECT_NAME, VaultError, Zeroizing,
};

use crate::error::{Error, Result, is_conflict};

/// The environment variable that carries the keyring into a pod (the runner reads it).
pub const KEYRING_ENV: &str = "SYNQX_VAULT_KEYRING";
/// The environment variable that names the pod's namespace: sealed values open only for the
/// namespace they were sealed for.
pub const NAMESPACE_ENV: &str = "POD_NAMESPACE";
const FIELD_MANAGER: &str = "synqx-vault";

/// Whether any secret field of a Connection is sealed: only then does its pod get the keyring.
pub fn needs_keyring(spec: &ConnectionSpec) -> bool {
    spec.secret_values()
        .into_iter()
        .any(|(_, value)| value.sealed.is_some())
}

/// The environment that gives a pod its namespace's keyring: resolved by the kubelet from the
/// `synqx-vault` Secret, never copied into the pod spec.
pub fn keyring_env() -> Vec<EnvVar> {
    vec![
        EnvVar {
            name: KEYRING_ENV.into(),
            value_from: Some(EnvVarSource {
                secret_key_ref: Some(SecretKeySelector {
                    name: VAULT_OBJECT_NAME.into(),
                    key: KEYRING_SECRET_KEY.into(),
                    optional: Some(false),
                }),
                ..Default::default()
            }),
            ..Default::default()
        },
        namespace_env(),
    ]
}

/// `POD_NAMESPACE` from the downward API.
pub fn namespace_env() -> EnvVar {
    EnvVar {
        name: NAMESPACE_ENV.into(),
        value_from: Some(EnvVarSource {
            field_ref: Some(ObjectFieldSelector {
                field_path: "metadata.namespace".into(),
                api_version: None,
            }),
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn labels() -> BTreeMap<String, String> {
    BTreeMap::from([(
        "app.kubernetes.io/managed-by".to_string(),
        "synqx-operator".to_string(),
    )])
}

/// How long a namespace's vault, once ensured, is taken as still there. `synqx vault rotate`
/// publishes its new key itself, so this only bounds how long a deleted ConfigMap or Secret
/// stays missing; without it every Connection pass spent two GETs on the vault, which under
/// thousands of Connections used most of the `--api-qps` budget.
pub const FRESH: Duration = Duration::from_secs(60);

/// The namespaces whose vault was ensured, and when.
#[derive(Default)]
pub struct Ensured {
    at: Mutex<HashMap<String, Instant>>,
}

impl Ensured {
    /// [`ensure`] unless it succeeded for `namespace` within [`FRESH`].
    pub async fn ensure(&self, client: &Client, namespace: &str) -> Result<()> {
        if !self.due(namespace, Instant::now()) {
            return Ok(());
        }
        ensure(client, namespace).await?;
        self.note(namespace, Instant::now());
        Ok(())
    }

    fn due(&self, namespace: &str, now: Instant) -> bool {
        let at = self.at.lock().unwrap_or_else(PoisonError::into_inner);
        at.get(namespace)
            .is_none_or(|then| now.saturating_duration_since(*then) >= FRESH)
    }

    fn note(&self, namespace: &str, now: Instant) {
        let mut at = self.at.lock().unwrap_or_else(PoisonError::into_inner);
        at.insert(namespace.to_string(), now);
    }
}

/// Makes sure `namespace` has a keyring (created once, never replaced: replacing it would
/// make every sealed value unreadable) and that its newest public key is published.
/// Returns the id of the key that seals.
pub async fn ensure(client: &Client, namespace: &str) -> Result<String> {
    let secrets: Api<Secret> = Api::namespaced(client.clone(), namespace);
    let secret = match secrets.get_opt(VAULT_OBJECT_NAME).await? {
        Some(secret) => secret,
        None => {
            let created = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
            let keyring = Keyring::generate(&created).map_err(|e| vault_error(namespace, e))?;
            let secret = Secret {
                metadata: ObjectMeta {
                    name: Some(VAULT_OBJECT_NAME.into()),
                    namespace: Some(namespace.into()),
                    labels: Some(labels()),
                    ..Default::default()
                },
                type_: Some("Opaque".into()),
                data: Some(BTreeMap::from([(
                    KEYRING_SECRET_KEY.to_string(),
                    ByteString(keyring.to_text().as_bytes().to_vec()),
                )])),
                ..Default::default()
            };
            match secrets.create(&PostParams::default(), &secret).await {
                Ok(created) => {
                    tracing::info!(namespace, key = %keyring.newest().id(), "created the vault keyring");
                    created
                }
                // Another replica or a concurrent reconcile created it first: use theirs.
                Err(e) if is_conflict(&e) => secrets.get(VAULT_OBJECT_NAME).await?,
                Err(e) => return Err(e.into()),
            }
        }
    };
    let keyring = parse_keyring(namespace, &secret).map_err(|e| vault_error(namespace, e))?;
    let public = keyring.newest().public_key();
    let maps: Api<ConfigMap> = Api::namespaced(client.clone(), namespace);
    let published = maps
        .get_opt(VAULT_OBJECT_NAME)
        .await?
        .and_then(|m| m.data)
        .and_then(|d| d.get(PUBLIC_KEY_CONFIG_KEY).cloned());
    let line = public.to_line();
    if published.as_deref() != Some(line.as_str()) {
        let map = ConfigMap {
            metadata: ObjectMeta {
                name: Some(VAULT_OBJECT_NAME.into()),
                namespace: Some(namespace.into()),
                labels: Some(labels()),
                ..Default::default()
            },
            data: Some(BTreeMap::from([(PUBLIC_KEY_CONFIG_KEY.to_string(), line)])),
            ..Default::default()
        };
        maps.patch(
            VAULT_OBJECT_NAME,
            &PatchParams::apply(FIELD_MANAGER).force(),
            &Patch::Apply(&map),
        )
        .await?;
        tracing::info!(namespace, key = %public.id(), "published the vault public key");
    }
    Ok(public.id().to_string())
}

/// The keyring of `namespace`, if its Secret exists: what opens the sealed values of the
/// Connections the operator itself uses (a Pipeline's log store).
pub async fn keyring(client: &Client, namespace: &str) -> Result<Option<Keyring>> {
    let secrets: Api<Secret> = Api::namespaced(client.clone(), namespace);
    match secrets.get_opt(VAULT_OBJECT_NAME).await? {
        Some(secret) => parse_keyring(namespace, &secret)
            .map(Some)
            .map_err(|e| vault_error(namespace, e)),
        None => Ok(None),
    }
}

/// The keyring in the vault Secret of `namespace`.
fn parse_keyring(namespace: &str, secret: &Secret) -> std::result::Result<Keyring, VaultError> {
    let source = format!("Secret {namespace}/{VAULT_OBJECT_NAME}");
    let text = secret
        .data
        .as_ref()
        .and_then(|d| d.get(KEYRING_SECRET_KEY))
        .map(|b| Zeroizing::new(String::from_utf8_lossy(&b.0).into_owned()))
        .ok_or_else(|| VaultError::Keyring {
            source_name: source.clone(),
            reason: format!("it has no key \"{KEYRING_SECRET_KEY}\": restore it from a backup (deleting the Secret makes the operator create a new keyring, and every value sealed before must be sealed again)"),
        })?;
    Keyring::from_text(&source, &text)
}

fn vault_error(namespace: &str, source: VaultError) -> Error {
    Error::Vault {
        namespace: namespace.into(),
        source,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use synqx_api::SecretValue;
    use synqx_api::connection::PostgresConnection;

    #[test]
    fn only_connections_with_sealed_values_get_the_keyring() {
        let mut spec = ConnectionSpec {
            postgres: Some(PostgresConnection {
                user: SecretValue::plain("etl"),
                password: Some(SecretValue::from_secret("db", "password")),
                ..Default::default()
            }),
            ..Default::default()
        };
        assert!(!needs_keyring(&spec));
        if let Some(pg) = spec.postgres.as_mut() {
            pg.password = Some(SecretValue {
                sealed: Some("sqx1:k1:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA:BBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBB".into()),
                ..Default::default()
            });
        }
        assert!(needs_keyring(&spec));
        let env = keyring_env();
        let keyring = env[0]
            .value_from
            .as_ref()
            .and_then(|v| v.secret_key_ref.as_ref())
            .map(|r| (r.name.as_str(), r.key.as_str()));
        assert_eq!(keyring, Some((VAULT_OBJECT_NAME, KEYRING_SECRET_KEY)));
        assert!(env.iter().all(|e| e.value.is_none()), "no value inline");
        assert_eq!(env[1].name, NAMESPACE_ENV);
    }

    #[test]
    fn a_namespace_is_ensured_again_only_once_its_vault_is_no_longer_fresh() {
        let ensured = Ensured::default();
        let start = Instant::now();
        assert!(ensured.due("a", start), "never ensured");
        ensured.note("a", start);
        assert!(!ensured.due("a", start + FRESH / 2));
        assert!(ensured.due("b", start + FRESH / 2), "per namespace");
        assert!(ensured.due("a", start + FRESH));
        ensured.note("a", start + FRESH);
        assert!(!ensured.due("a", start + FRESH + Duration::from_secs(1)));
    }
}
