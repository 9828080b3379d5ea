//! A Connection's `s3` block: bucket, prefix, endpoint and credentials, checked and resolved.
//! Pure: the client is built from it only when it is used ([`crate::client`]).

use synqx_api::SecretValue;
use synqx_api::connection::S3Connection;
use synqx_api::redact::Redactor;

/// A bucket and key prefix, and how to reach them.
#[derive(Clone, Debug)]
pub struct S3Settings {
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
    pub credentials: Credentials,
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
pub enum Credentials {
    Keys(Keys),
    /// `AWS_*` variables, web identity, container or instance metadata: only when the
    /// Connection asks and whoever runs the client allows it.
    Ambient,
}

/// Explicit credentials. Deliberately not `Debug`-printed with their values.
#[derive(Clone)]
pub struct Keys {
    pub id: String,
    pub secret: String,
    pub token: Option<String>,
}

impl std::fmt::Debug for Keys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Keys(***)")
    }
}

/// Why an `s3` block cannot be used; the message names the Connection and the field.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("Connection \"{connection}\": {problem}")]
pub struct SettingsError {
    pub connection: String,
    pub problem: String,
}

impl S3Settings {
    /// The settings of the block `spec` of Connection `name`. `secret` resolves a credential
    /// field (and remembers its value in `redactor`); `ambient` says whether this Connection
    /// may use the process's ambient AWS credentials, asked only when it wants them.
    pub fn new<E: From<SettingsError>>(
        name: &str,
        spec: &S3Connection,
        mut secret: impl FnMut(&str, &SecretValue) -> Result<String, E>,
        ambient: impl FnOnce() -> Result<(), E>,
        redactor: Redactor,
    ) -> Result<Self, E> {
        let invalid = |problem: String| SettingsError {
            connection: name.to_string(),
            problem,
        };
        let bucket = spec.bucket.trim();
        if bucket.is_empty() {
            return Err(invalid("s3.bucket is empty".into()).into());
        }
        let mut resolve = |field: &str, value: &Option<SecretValue>| {
            value.as_ref().map(|v| secret(field, v)).transpose()
        };
        let key_id = resolve("s3.accessKeyId", &spec.access_key_id)?;
        let secret_key = resolve("s3.secretAccessKey", &spec.secret_access_key)?;
        let token = resolve("s3.sessionToken", &spec.session_token)?;
        let wants_ambient = spec.use_ambient_credentials == Some(true);
        let keys = match (key_id, secret_key) {
            // Explicit keys stand alone: an ambient AWS_SESSION_TOKEN must not pair with them.
            (Some(_), Some(_)) if wants_ambient => {
                return Err(invalid("s3.useAmbientCredentials cannot go with s3.accessKeyId and s3.secretAccessKey: use the keys, or remove them".into()).into());
            }
            (Some(id), Some(secret)) => Some(Keys { id, secret, token }),
            (None, None) if token.is_none() => None,
            _ => {
                return Err(invalid("set s3.accessKeyId and s3.secretAccessKey together (s3.sessionToken only with both), or none of them with s3.useAmbientCredentials: true".into()).into());
            }
        };
        let endpoint = match spec.endpoint.as_deref().filter(|e| !e.is_empty()) {
            Some(url) => Some(endpoint(url, bucket, spec.force_path_style).ok_or_else(|| {
                invalid(format!(
                    "s3.endpoint must be a URL such as https://minio.example:9000, got `{}`",
                    url.trim_end_matches('/')
                ))
            })?),
            None => None,
        };
        let prefix = spec.prefix.as_deref().unwrap_or("");
        let prefix = normalise_prefix(prefix)
            .ok_or_else(|| invalid(format!("s3.prefix `{prefix}` may not contain `.` or `..`")))?;
        let credentials = match keys {
            Some(keys) => Credentials::Keys(keys),
            None if wants_ambient => {
                ambient()?;
                Credentials::Ambient
            }
            None => {
                return Err(invalid("s3 has no credentials: set s3.accessKeyId and s3.secretAccessKey, or s3.useAmbientCredentials: true to use the AWS credentials of the environment (on a cluster the operator must allow them)".into()).into());
            }
        };
        Ok(Self {
            connection: name.to_string(),
            prefix,
            bucket: bucket.to_string(),
            region: spec.region.clone().filter(|r| !r.is_empty()),
            path_style: spec.force_path_style.filter(|_| endpoint.is_none()),
            endpoint,
            credentials,
            redactor,
        })
    }

    /// `s3://bucket/prefix/relative`, for messages.
    pub fn url(&self, relative: &str) -> String {
        format!("s3://{}/{}{relative}", self.bucket, self.prefix)
    }
}

/// The endpoint of `url`: path style unless `forcePathStyle` is `false`, where object_store
/// wants the bucket in the host; `None` when the bucket cannot go in the host of `url` (not a
/// URL with a scheme and a host).
fn endpoint(url: &str, bucket: &str, path_style: Option<bool>) -> Option<Endpoint> {
    let url = url.trim_end_matches('/');
    match path_style {
        Some(false) => {
            let (scheme, rest) = url.split_once("://")?;
            (!rest.is_empty()).then(|| Endpoint {
                url: format!("{scheme}://{bucket}.{rest}"),
                virtual_hosted: true,
            })
        }
        _ => Some(Endpoint {
            url: url.to_string(),
            virtual_hosted: false,
        }),
    }
}

/// The prefix as keys start with it: no leading or doubled `/`, one trailing `/`; `None` when
/// a part of it is `.` or `..`.
pub fn normalise_prefix(prefix: &str) -> Option<String> {
    let parts: Vec<&str> = prefix.split('/').filter(|p| !p.is_empty()).collect();
    if parts.iter().any(|p| *p == "." || *p == "..") {
        return None;
    }
    Some(parts.iter().map(|p| format!("{p}/")).collect())
}
