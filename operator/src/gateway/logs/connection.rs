//! The `s3` Connection of a log store, opened by the operator itself: the one place the
//! operator holds a Connection's credentials. They are read the way step pods get them, with
//! the same rules: a `secretKeyRef` only from a Secret labeled `synqx.io/connection-secret:
//! "true"`, a sealed value opened with the namespace's vault keyring for exactly this
//! Connection and field, ambient AWS credentials only where they are allowed. The values stay
//! in the client and the store's redactor; no message carries one.

use std::collections::BTreeMap;
use std::sync::Arc;

use k8s_openapi::api::core::v1::Secret;
use kube::{Api, Client};
use synqx_api::connection::S3Connection;
use synqx_api::redact::Redactor;
use synqx_api::vault::{Binding, Keyring, VaultError};
use synqx_api::{Connection, SecretValue};
use synqx_s3::{ClientError, Patience, S3Settings, SettingsError};

use super::s3::S3Store;
use crate::secret_opt_in::not_opted_in;

/// Prefix of the logs below the Connection's own prefix when none is given.
pub const DEFAULT_PREFIX: &str = "synqx-logs";

/// A Connection a log store is asked to use, and who named it (for messages).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct StoreRef {
    pub namespace: String,
    pub connection: String,
    /// The logs prefix as given (default [`DEFAULT_PREFIX`]).
    pub prefix: String,
    /// `--logs-connection`, or `spec.logs of Pipeline etl/orders`: what to change.
    pub named_by: String,
    /// Whether the Connection may use the operator's ambient AWS credentials: the operator's
    /// own store may (its administrator named it); a Pipeline's only where the operator lends
    /// them to every Connection (`--allow-ambient-credentials`).
    pub ambient: bool,
}

/// Why a log store's Connection cannot be used. No variant carries a credential.
#[derive(Debug, thiserror::Error)]
pub enum ConnectionError {
    #[error(
        "Connection {namespace}/{connection}, named by {named_by} as the log store, does not exist: create an s3 Connection of that name, or name another"
    )]
    Missing {
        namespace: String,
        connection: String,
        named_by: String,
    },
    #[error(
        "Connection {namespace}/{connection}, named by {named_by} as the log store, is not an s3 Connection: logs are kept in object storage through an s3 Connection only"
    )]
    NotS3 {
        namespace: String,
        connection: String,
        named_by: String,
    },
    #[error("Connection {namespace}/{connection} (the log store): {field}: {problem}")]
    Secret {
        namespace: String,
        connection: String,
        field: String,
        problem: String,
    },
    #[error("reading Connection {namespace}/{connection} (the log store) or its Secrets: {source}")]
    Api {
        namespace: String,
        connection: String,
        #[source]
        source: kube::Error,
    },
    #[error("the log store's Connection: {source}")]
    Vault {
        #[source]
        source: VaultError,
    },
    #[error("the vault of namespace {namespace} cannot be read for the log store: {source}")]
    Keyring {
        namespace: String,
        #[source]
        source: Box<crate::error::Error>,
    },
    /// The message names the Connection and the field.
    #[error("the log store: {0}")]
    Settings(#[from] SettingsError),
    #[error("the log store in namespace {namespace}: {source}")]
    Client {
        namespace: String,
        #[source]
        source: ClientError,
    },
    #[error(
        "Connection {namespace}/{connection} (the log store) asks for s3.useAmbientCredentials, which this operator lends to no Pipeline's log store: give the Connection its own keys, or run the operator with --allow-ambient-credentials (Helm value runner.allowAmbientCredentials)"
    )]
    AmbientWithheld {
        namespace: String,
        connection: String,
    },
    #[error("the logs prefix `{prefix}` of {named_by} may not contain `.` or `..`")]
    Prefix { prefix: String, named_by: String },
}

/// The store of `target`: its Connection read, its credentials resolved, its client built
/// (no request to the bucket is sent yet).
pub async fn open(client: &Client, target: &StoreRef) -> Result<S3Store, ConnectionError> {
    let StoreRef {
        namespace,
        connection: name,
        ..
    } = target;
    let api_error = |source| ConnectionError::Api {
        namespace: namespace.clone(),
        connection: name.clone(),
        source,
    };
    let connections: Api<Connection> = Api::namespaced(client.clone(), namespace);
    let Some(connection) = connections.get_opt(name).await.map_err(api_error)? else {
        return Err(ConnectionError::Missing {
            namespace: namespace.clone(),
            connection: name.clone(),
            named_by: target.named_by.clone(),
        });
    };
    let Some(spec) = connection.spec.s3.as_ref() else {
        return Err(ConnectionError::NotS3 {
            namespace: namespace.clone(),
            connection: name.clone(),
            named_by: target.named_by.clone(),
        });
    };
    let redactor = Redactor::default();
    let values = resolve(client, target, spec, &redactor).await?;
    let settings = S3Settings::new(
        name,
        spec,
        |field, _| {
            values
                .get(field)
                .cloned()
                .ok_or_else(|| ConnectionError::Secret {
                    namespace: namespace.clone(),
                    connection: name.clone(),
                    field: field.to_string(),
                    problem: "no value was resolved".into(),
                })
        },
        || {
            if target.ambient {
                Ok(())
            } else {
                Err(ConnectionError::AmbientWithheld {
                    namespace: namespace.clone(),
                    connection: name.clone(),
                })
            }
        },
        redactor,
    )?;
    let logs_prefix = synqx_s3::settings::normalise_prefix(&target.prefix).ok_or_else(|| {
        ConnectionError::Prefix {
            prefix: target.prefix.clone(),
            named_by: target.named_by.clone(),
        }
    })?;
    let client = synqx_s3::client(&settings, Patience::TRANSFER).map_err(|source| {
        ConnectionError::Client {
            namespace: namespace.clone(),
            source,
        }
    })?;
    Ok(S3Store::new(
        Arc::new(client),
        format!("{namespace}/{name}"),
        settings.bucket.clone(),
        format!("{}{logs_prefix}", settings.prefix),
        settings.redactor,
    ))
}

/// The plaintext of every credential field the block sets, each remembered by `redactor`.
async fn resolve(
    client: &Client,
    target: &StoreRef,
    spec: &S3Connection,
    redactor: &Redactor,
) -> Result<BTreeMap<String, String>, ConnectionError> {
    let StoreRef {
        namespace,
        connection: name,
        ..
    } = target;
    let fields = [
        ("s3.accessKeyId", &spec.access_key_id),
        ("s3.secretAccessKey", &spec.secret_access_key),
        ("s3.sessionToken", &spec.session_token),
    ];
    let secrets: Api<Secret> = Api::namespaced(client.clone(), namespace);
    let mut keyring: Option<Keyring> = None;
    let mut values = BTreeMap::new();
    for (field, value) in fields {
        let Some(value) = value else { continue };
        let problem = |problem: String| ConnectionError::Secret {
            namespace: namespace.clone(),
            connection: name.clone(),
            field: field.to_string(),
            problem,
        };
        let plain = match value {
            SecretValue {
                value: Some(plain), ..
            } => plain.clone(),
            SecretValue {
                secret_key_ref: Some(reference),
                ..
            } => {
                let secret = secrets.get_opt(&reference.name).await.map_err(|source| {
                    ConnectionError::Api {
                        namespace: namespace.clone(),
                        connection: name.clone(),
                        source,
                    }
                })?;
                let Some(secret) = secret else {
                    return Err(problem(format!(
                        "Secret \"{}\" does not exist: create it with the key \"{}\"",
                        reference.name, reference.key
                    )));
                };
                if !synqx_api::secret::opted_in(secret.metadata.labels.as_ref()) {
                    return Err(problem(not_opted_in(field, &reference.name)));
                }
                let bytes = secret
                    .data
                    .as_ref()
                    .and_then(|d| d.get(&reference.key))
                    .map(|b| b.0.clone());
                let Some(bytes) = bytes else {
                    return Err(problem(format!(
                        "Secret \"{}\" has no key \"{}\": add it",
                        reference.name, reference.key
                    )));
                };
                String::from_utf8(bytes).map_err(|_| {
                    problem(format!(
                        "key \"{}\" of Secret \"{}\" is not UTF-8 text",
                        reference.key, reference.name
                    ))
                })?
            }
            SecretValue {
                sealed: Some(envelope),
                ..
            } => {
                if keyring.is_none() {
                    keyring = crate::vault::keyring(client, namespace)
                        .await
                        .map_err(|source| ConnectionError::Keyring {
                            namespace: namespace.clone(),
                            source: Box::new(source),
                        })?;
                }
                let Some(ring) = &keyring else {
                    return Err(problem(
                        "the value is sealed but the namespace has no vault keyring (Secret synqx-vault): seal it again with `synqx seal` once the operator created the keyring".into(),
                    ));
                };
                let binding = Binding::new(namespace.as_str(), name.as_str(), field);
                let opened = ring
                    .open(&binding, envelope)
                    .map_err(|source| ConnectionError::Vault { source })?;
                opened.to_string()
            }
            _ => return Err(problem("set one of value, secretKeyRef or sealed".into())),
        };
        redactor.remember(&plain);
        values.insert(field.to_string(), plain);
    }
    Ok(values)
}
