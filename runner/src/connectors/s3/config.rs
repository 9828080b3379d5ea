//! The Connection's `s3` block: bucket, prefix, endpoint and credentials, checked and resolved.
//! Pure: the client is built from it only when the connector is used (`connect.rs`).

use synqx_api::SecretValue;

use crate::connectors::ConnectionRef;
use crate::error::{Error, Result};
use crate::secrets::Redactor;

/// A bucket and key prefix, and how to reach them.
#[derive(Clone, Debug)]
pub struct S3Config {
    /// Name of the Connection, for messages.
    pub connection: String,
    pub bucket: String,
    /// Empty, or the Connection's prefix with one trailing `/`.
    pub prefix: String,
    pub region: Option<String>,
    pub endpoint: Option<Endpoint>,
    /// `forcePathStyle` without an endpoint: AWS with path-style requests (or not).
    pub path_style: Option<bool>,
    /// Explicit keys, or the ambient AWS environment the Connection asked for and was lent.
    pub(super) credentials: Credentials,
    /// Knows the keys: every message passes through it.
    pub redactor: Redactor,
}

/// An S3-compatible endpoint as object_store takes it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Endpoint {
    /// The URL, with the bucket in the host for virtual-hosted style.
    pub url: String,
    pub virtual_hosted: bool,
}

/// Where a bucket's requests get their signature from.
#[derive(Clone, Debug)]
pub(super) enum Credentials {
    Keys(Keys),
    /// `AWS_*` variables, web identity, container or instance metadata: only when the
    /// Connection asks and, in a pod, the operator lends them.
    Ambient,
}

/// Explicit credentials. Deliberately not `Debug`-printed with their values.
#[derive(Clone)]
pub(super) struct Keys {
    pub id: String,
    pub secret: String,
    pub token: Option<String>,
}

impl std::fmt::Debug for Keys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Keys(***)")
    }
}

impl S3Config {
    pub fn new(conn: &ConnectionRef<'_>) -> Result<Self> {
        let name = conn.name;
        let spec = conn.block(conn.spec.s3.as_ref())?;
        let bucket = conn.required("s3.bucket", &spec.bucket)?.to_string();
        let secret = |field: &str, value: &Option<SecretValue>| {
            value.as_ref().map(|v| conn.secret(field, v)).transpose()
        };
        let key_id = secret("s3.accessKeyId", &spec.access_key_id)?;
        let secret_key = secret("s3.secretAccessKey", &spec.secret_access_key)?;
        let token = secret("s3.sessionToken", &spec.session_token)?;
        let ambient = spec.use_ambient_credentials == Some(true);
        let keys = match (key_id, secret_key) {
            // Explicit keys stand alone: an ambient AWS_SESSION_TOKEN must not pair with them.
            (Some(_), Some(_)) if ambient => {
                return Err(Error::Config(format!(
                    "Connection \"{name}\": s3.useAmbientCredentials cannot go with s3.accessKeyId and s3.secretAccessKey: use the keys, or remove them"
                )));
            }
            (Some(id), Some(secret)) => Some(Keys { id, secret, token }),
            (None, None) if token.is_none() => None,
            _ => {
                return Err(Error::Config(format!(
                    "Connection \"{name}\": set s3.accessKeyId and s3.secretAccessKey together (s3.sessionToken only with both), or none of them with s3.useAmbientCredentials: true"
                )));
            }
        };
        let endpoint = match spec.endpoint.as_deref().filter(|e| !e.is_empty()) {
            Some(url) => Some(endpoint(name, url, &bucket, spec.force_path_style)?),
            None => None,
        };
        let prefix = normalise_prefix(spec.prefix.as_deref().unwrap_or(""), name)?;
        let credentials = match keys {
            Some(keys) => Credentials::Keys(keys),
            None if ambient => {
                conn.secrets
                    .ambient_credentials(name, "s3.useAmbientCredentials")?;
                Credentials::Ambient
            }
            None => {
                return Err(Error::Config(format!(
                    "Connection \"{name}\": s3 has no credentials: set s3.accessKeyId and s3.secretAccessKey, or s3.useAmbientCredentials: true to use the AWS credentials of the environment (on a cluster the operator must allow them)"
                )));
            }
        };
        Ok(Self {
            connection: name.to_string(),
            prefix,
            bucket,
            region: spec.region.clone().filter(|r| !r.is_empty()),
            path_style: spec.force_path_style.filter(|_| endpoint.is_none()),
            endpoint,
            credentials,
            redactor: conn.secrets.redactor(),
        })
    }

    /// `s3://bucket/prefix/relative`, for messages.
    pub fn url(&self, relative: &str) -> String {
        format!("s3://{}/{}{relative}", self.bucket, self.prefix)
    }
}

/// The endpoint of `url`: path style unless `forcePathStyle` is `false`, where object_store
/// wants the bucket in the host.
fn endpoint(
    connection: &str,
    url: &str,
    bucket: &str,
    path_style: Option<bool>,
) -> Result<Endpoint> {
    let url = url.trim_end_matches('/');
    let hosted = |url: &str| {
        let (scheme, rest) = url.split_once("://")?;
        (!rest.is_empty()).then(|| format!("{scheme}://{bucket}.{rest}"))
    };
    match path_style {
        Some(false) => Ok(Endpoint {
            url: hosted(url).ok_or_else(|| {
                Error::Config(format!(
                    "Connection \"{connection}\": s3.endpoint must be a URL such as https://minio.example:9000, got `{url}`"
                ))
            })?,
            virtual_hosted: true,
        }),
        _ => Ok(Endpoint {
            url: url.to_string(),
            virtual_hosted: false,
        }),
    }
}

/// The prefix as keys start with it: no leading or doubled `/`, one trailing `/`.
fn normalise_prefix(prefix: &str, connection: &str) -> Result<String> {
    let parts: Vec<&str> = prefix.split('/').filter(|p| !p.is_empty()).collect();
    if parts.iter().any(|p| *p == "." || *p == "..") {
        return Err(Error::Config(format!(
            "Connection \"{connection}\": s3.prefix `{prefix}` may not contain `.` or `..`"
        )));
    }
    Ok(parts.iter().map(|p| format!("{p}/")).collect())
}

#[cfg(test)]
mod tests {
    use synqx_api::ConnectionSpec;
    use synqx_api::connection::S3Connection;

    use super::*;
    use crate::secrets::{AmbientCredentials, Secrets};

    fn config(s3: S3Connection, secrets: &Secrets) -> Result<S3Config> {
        let spec = ConnectionSpec {
            s3: Some(s3),
            ..Default::default()
        };
        S3Config::new(&ConnectionRef {
            name: "lake",
            spec: &spec,
            base_dir: ".".into(),
            secrets,
        })
    }

    fn message(r: Result<S3Config>) -> String {
        r.err().map(|e| e.to_string()).unwrap_or_default()
    }

    #[test]
    fn prefixes_endpoints_and_keys_are_checked_without_a_store() {
        let secrets = Secrets::new([], [("SYNQX_SECRET_S3__ID".into(), "AKIDEXAMPLE".into())]);
        let base = S3Connection {
            bucket: " lake ".into(),
            prefix: Some("/raw//orders".into()),
            endpoint: Some("http://127.0.0.1:9000/".into()),
            force_path_style: Some(false),
            use_ambient_credentials: Some(true),
            ..Default::default()
        };
        let c = config(base.clone(), &secrets).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            (c.bucket.as_str(), c.prefix.as_str()),
            ("lake", "raw/orders/")
        );
        assert_eq!(c.url("a.csv"), "s3://lake/raw/orders/a.csv");
        assert_eq!(
            c.endpoint,
            Some(Endpoint {
                url: "http://lake.127.0.0.1:9000".into(),
                virtual_hosted: true
            })
        );
        assert!(matches!(c.credentials, Credentials::Ambient));

        let e = message(config(
            S3Connection {
                prefix: Some("a/../b".into()),
                ..base.clone()
            },
            &secrets,
        ));
        assert_eq!(
            e,
            "Connection \"lake\": s3.prefix `a/../b` may not contain `.` or `..`"
        );
        let e = message(config(
            S3Connection {
                access_key_id: Some(SecretValue::from_secret("s3", "id")),
                ..base.clone()
            },
            &secrets,
        ));
        assert!(
            e.contains("set s3.accessKeyId and s3.secretAccessKey together"),
            "{e}"
        );
        let e = message(config(
            S3Connection {
                access_key_id: Some(SecretValue::from_secret("nope", "id")),
                secret_access_key: Some(SecretValue::from_secret("nope", "key")),
                ..base.clone()
            },
            &secrets,
        ));
        assert!(
            e.starts_with(
                "Connection \"lake\": s3.accessKeyId: secret key \"id\" of Secret \"nope\" is missing"
            ),
            "{e}"
        );
        let e = message(config(
            S3Connection {
                endpoint: Some("minio:9000".into()),
                ..base.clone()
            },
            &secrets,
        ));
        assert!(e.contains("s3.endpoint must be a URL"), "{e}");
        let e = message(config(
            S3Connection {
                bucket: " ".into(),
                ..base
            },
            &secrets,
        ));
        assert_eq!(e, "Connection \"lake\": s3.bucket is empty");
    }

    #[test]
    fn ambient_credentials_only_when_the_connection_asks_and_the_pod_may() {
        // In a pod, only the operator's exact word lends them.
        assert_eq!(
            AmbientCredentials::of_pod(Some("allowed")),
            AmbientCredentials::Lent
        );
        for other in [None, Some(""), Some("true"), Some("Allowed")] {
            assert_eq!(
                AmbientCredentials::of_pod(other),
                AmbientCredentials::Withheld
            );
        }
        let trusted = Secrets::default();
        let lent = Secrets::default().with_ambient_credentials(AmbientCredentials::Lent);
        let withheld = Secrets::default().with_ambient_credentials(AmbientCredentials::Withheld);
        let asking = S3Connection {
            bucket: "lake".into(),
            use_ambient_credentials: Some(true),
            ..Default::default()
        };
        for secrets in [&trusted, &lent] {
            let c = config(asking.clone(), secrets).unwrap_or_else(|e| panic!("{e}"));
            assert!(matches!(c.credentials, Credentials::Ambient));
        }
        assert_eq!(
            message(config(asking.clone(), &withheld)),
            "Connection \"lake\": s3.useAmbientCredentials: this operator lends no ambient cloud credentials to Connections; an administrator can allow them with --allow-ambient-credentials (Helm value runner.allowAmbientCredentials), or give the Connection its own keys"
        );
        // Not asking: nothing is lent, wherever it runs.
        for secrets in [&trusted, &lent, &withheld] {
            for flag in [None, Some(false)] {
                let e = message(config(
                    S3Connection {
                        use_ambient_credentials: flag,
                        ..asking.clone()
                    },
                    secrets,
                ));
                assert_eq!(
                    e,
                    "Connection \"lake\": s3 has no credentials: set s3.accessKeyId and s3.secretAccessKey, or s3.useAmbientCredentials: true to use the AWS credentials of the environment (on a cluster the operator must allow them)"
                );
            }
        }
        let both = S3Connection {
            access_key_id: Some(SecretValue::plain("AKIDEXAMPLE")),
            secret_access_key: Some(SecretValue::plain("secret")),
            ..asking
        };
        assert!(
            message(config(both, &lent)).contains("s3.useAmbientCredentials cannot go with"),
            "keys and ambient credentials at once"
        );
    }

    #[test]
    fn keys_from_secrets_are_redacted_and_never_printed() {
        let secrets = Secrets::new(
            [],
            [
                ("SYNQX_SECRET_S3__ID".into(), "AKIDEXAMPLE".into()),
                (
                    "SYNQX_SECRET_S3__KEY".into(),
                    "wJalrXUtnFEMI/K7MDENG".into(),
                ),
            ],
        );
        let c = config(
            S3Connection {
                bucket: "lake".into(),
                access_key_id: Some(SecretValue::from_secret("s3", "id")),
                secret_access_key: Some(SecretValue::from_secret("s3", "key")),
                ..Default::default()
            },
            &secrets,
        )
        .unwrap_or_else(|e| panic!("{e}"));
        assert!(!format!("{c:?}").contains("AKIDEXAMPLE"));
        assert_eq!(
            c.redactor
                .redact("id AKIDEXAMPLE key wJalrXUtnFEMI/K7MDENG"),
            "id *** key ***"
        );
    }
}
