//! Amazon S3 and S3-compatible stores (MinIO, moto), through `object_store`. An asset FQN is a
//! key below the connection's `prefix`: one object, a folder of part files (trailing `/`) or a
//! glob, in CSV, JSONL or Parquet, exactly as for local files: `formats` does the decoding,
//! encoding, inference and rotation; this folder only lists, opens and stages objects.
//!
//! - `source`: listing, GET bodies streamed into the text readers, Parquet spooled to a
//!   temporary file for random access.
//! - `upload`: one object written as a stream, in 8 MiB multipart parts.
//! - `sink`: parts staged under a hidden temporary prefix, copied into place at the commit.
//! - `check`: the probe of `synqx check`, one bounded listing of at most one key.
//!
//! Credentials come from the Connection's secret values or, without them, from the pod's
//! ambient AWS environment. Every error names the Connection, bucket and key, and passes
//! through [`Bucket::describe`], which removes the credential values from the text (S3 error
//! bodies can echo the access key id).

mod check;
mod sink;
mod source;
mod upload;

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use object_store::aws::AmazonS3Builder;
use object_store::list::PaginatedListStore;
use object_store::path::Path;
use object_store::{BackoffConfig, ClientOptions, ObjectStore, RetryConfig};
use synqx_api::SecretValue;

pub use check::check;

use crate::connectors::ConnectionRef;
use crate::engine::{
    Counters, ReadRequest, SchemaStream, Sink, Source, WriteOutcome, WriteRequest,
};
use crate::error::{Error, Result};

/// Reads objects of a bucket.
pub struct S3Source {
    bucket: Bucket,
}

/// Writes objects into a bucket.
pub struct S3Sink {
    bucket: Bucket,
}

impl S3Source {
    pub fn new(conn: &ConnectionRef<'_>) -> Result<Self> {
        Ok(Self {
            bucket: Bucket::new(conn)?,
        })
    }
}

impl S3Sink {
    pub fn new(conn: &ConnectionRef<'_>) -> Result<Self> {
        Ok(Self {
            bucket: Bucket::new(conn)?,
        })
    }
}

#[async_trait]
impl Source for S3Source {
    async fn read(&self, request: &ReadRequest) -> Result<SchemaStream> {
        source::read(&self.bucket, request).await
    }
}

#[async_trait]
impl Sink for S3Sink {
    async fn write(
        &self,
        request: &WriteRequest,
        input: SchemaStream,
        counters: &Counters,
    ) -> Result<WriteOutcome> {
        sink::write(&self.bucket, request, input, counters).await
    }
}

/// A bucket and key prefix with its client: everything the source and sink share. Cheap to
/// clone; deliberately not `Debug`, so the client's credentials cannot be printed.
#[derive(Clone)]
pub(crate) struct Bucket {
    store: Arc<dyn ObjectStore>,
    /// The same client, for listings of a bounded number of keys.
    lister: Arc<dyn PaginatedListStore>,
    connection: String,
    bucket: String,
    /// Empty, or the connection's prefix with one trailing `/`.
    prefix: String,
    /// Credential values, longest first, removed from every message.
    secrets: Arc<Vec<String>>,
}

/// How long requests may take, and how often a failed one is tried again.
#[derive(Clone, Copy, Debug)]
struct Patience {
    connect_timeout: Duration,
    /// Longest wait for one request; `None` keeps object_store's default.
    request_timeout: Option<Duration>,
    max_retries: usize,
    /// No retry starts later than this after the first attempt.
    retry_timeout: Duration,
}

impl Patience {
    /// Reads and writes: transient errors are retried with backoff, but an endpoint that
    /// refuses or never answers fails within seconds instead of object_store's default three
    /// minutes.
    const TRANSFER: Self = Self {
        connect_timeout: Duration::from_secs(5),
        request_timeout: None,
        max_retries: 4,
        retry_timeout: Duration::from_secs(60),
    };
}

impl Bucket {
    fn new(conn: &ConnectionRef<'_>) -> Result<Self> {
        Self::with_patience(conn, Patience::TRANSFER)
    }

    fn with_patience(conn: &ConnectionRef<'_>, patience: Patience) -> Result<Self> {
        let name = conn.name;
        let spec = conn
            .spec
            .s3
            .as_ref()
            .ok_or_else(|| Error::Config(format!("Connection \"{name}\" has no s3 block")))?;
        let bucket = spec.bucket.trim().to_string();
        if bucket.is_empty() {
            return Err(Error::Config(format!(
                "Connection \"{name}\": s3.bucket is empty"
            )));
        }
        let resolve = |field: &str, value: &Option<SecretValue>| {
            value
                .as_ref()
                .map(|v| conn.secrets.resolve(name, field, v))
                .transpose()
        };
        let key_id = resolve("s3.accessKeyId", &spec.access_key_id)?;
        let secret_key = resolve("s3.secretAccessKey", &spec.secret_access_key)?;
        let token = resolve("s3.sessionToken", &spec.session_token)?;
        let mut builder = match (&key_id, &secret_key) {
            // Explicit keys stand alone: an ambient AWS_SESSION_TOKEN must not pair with them.
            (Some(id), Some(secret)) => {
                let builder = AmazonS3Builder::new()
                    .with_access_key_id(id)
                    .with_secret_access_key(secret);
                match &token {
                    Some(token) => builder.with_token(token),
                    None => builder,
                }
            }
            (None, None) if token.is_none() => AmazonS3Builder::from_env(),
            _ => {
                return Err(Error::Config(format!(
                    "Connection \"{name}\": set s3.accessKeyId and s3.secretAccessKey together (s3.sessionToken only with both), or none of them to use the ambient AWS credentials"
                )));
            }
        };
        let mut options = ClientOptions::new().with_connect_timeout(patience.connect_timeout);
        if let Some(timeout) = patience.request_timeout {
            options = options.with_timeout(timeout);
        }
        builder = builder
            .with_bucket_name(&bucket)
            .with_retry(RetryConfig {
                backoff: BackoffConfig::default(),
                max_retries: patience.max_retries,
                retry_timeout: patience.retry_timeout,
            })
            .with_client_options(options);
        if let Some(region) = spec.region.as_deref().filter(|r| !r.is_empty()) {
            builder = builder.with_region(region);
        }
        if let Some(endpoint) = spec.endpoint.as_deref().filter(|e| !e.is_empty()) {
            let endpoint = endpoint.trim_end_matches('/');
            builder = match spec.force_path_style {
                // object_store takes a virtual-hosted endpoint with the bucket in the host.
                Some(false) => builder
                    .with_endpoint(virtual_host(endpoint, &bucket).ok_or_else(|| {
                        Error::Config(format!(
                            "Connection \"{name}\": s3.endpoint must be a URL such as https://minio.example:9000, got `{endpoint}`"
                        ))
                    })?)
                    .with_virtual_hosted_style_request(true),
                _ => builder
                    .with_endpoint(endpoint)
                    .with_virtual_hosted_style_request(false),
            };
            if endpoint.starts_with("http://") {
                builder = builder.with_allow_http(true);
            }
        } else if let Some(path_style) = spec.force_path_style {
            builder = builder.with_virtual_hosted_style_request(!path_style);
        }
        let mut secrets: Vec<String> = [key_id, secret_key, token]
            .into_iter()
            .flatten()
            .filter(|s| !s.is_empty())
            .collect();
        secrets.sort_by_key(|s| std::cmp::Reverse(s.len()));
        let store = Arc::new(builder.build().map_err(|e| {
            Error::Config(format!(
                "Connection \"{name}\": s3: {}",
                redact(&secrets, &e.to_string())
            ))
        })?);
        Ok(Self {
            store: store.clone(),
            lister: store,
            connection: name.to_string(),
            bucket,
            prefix: normalise_prefix(spec.prefix.as_deref().unwrap_or(""), name)?,
            secrets: Arc::new(secrets),
        })
    }

    /// The key of a name relative to the prefix.
    fn key(&self, relative: &str) -> Result<Path> {
        let full = format!("{}{relative}", self.prefix);
        Path::parse(&full).map_err(|e| {
            Error::Config(format!(
                "Connection \"{}\": `{full}` is not a valid key of s3://{}: {e}",
                self.connection, self.bucket
            ))
        })
    }

    /// The name of a key relative to the prefix; `None` for keys outside it.
    fn relative(&self, key: &Path) -> Option<String> {
        key.as_ref()
            .strip_prefix(self.prefix.as_str())
            .map(str::to_string)
    }

    /// `s3://bucket/prefix/relative`, for messages.
    fn url(&self, relative: &str) -> String {
        format!("s3://{}/{}{relative}", self.bucket, self.prefix)
    }

    /// Where the connection's objects are, for messages.
    fn location(&self) -> String {
        format!("{} (Connection \"{}\")", self.url(""), self.connection)
    }

    /// The reason of a failed request, without credentials: S3's error code and message
    /// when the response carried them, else object_store's text.
    fn describe(&self, e: &object_store::Error) -> String {
        let text = e.to_string();
        let reason = match (xml_tag(&text, "Code"), xml_tag(&text, "Message")) {
            (Some(code), Some(message)) => format!("{code}: {message}"),
            (Some(code), None) => code,
            _ => text.clone(),
        };
        redact(&self.secrets, &reason)
    }

    /// The message of a failed request about `relative` (a key below the prefix).
    fn message(&self, action: &str, relative: &str, e: &object_store::Error) -> String {
        format!(
            "Connection \"{}\": {action} {}: {}",
            self.connection,
            self.url(relative),
            self.describe(e)
        )
    }

    /// A failed request about `relative` as an error.
    fn fail(&self, action: &str, relative: &str, e: &object_store::Error) -> Error {
        Error::io(
            format!(
                "Connection \"{}\": {action} {}",
                self.connection,
                self.url(relative)
            ),
            std::io::Error::other(self.describe(e)),
        )
    }
}

/// The text of the first `<name>…</name>` element in an error's text: S3 error bodies carry
/// `<Code>` and `<Message>`.
fn xml_tag(text: &str, name: &str) -> Option<String> {
    let open = format!("<{name}>");
    let start = text.find(&open)? + open.len();
    let end = text[start..].find(&format!("</{name}>"))? + start;
    Some(text[start..end].trim().to_string())
}

/// `text` with every credential value replaced by `***`.
fn redact(secrets: &[String], text: &str) -> String {
    secrets
        .iter()
        .fold(text.to_string(), |text, secret| text.replace(secret, "***"))
}

/// `https://host:port/path` as `https://bucket.host:port/path`.
fn virtual_host(endpoint: &str, bucket: &str) -> Option<String> {
    let (scheme, rest) = endpoint.split_once("://")?;
    (!rest.is_empty()).then(|| format!("{scheme}://{bucket}.{rest}"))
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

#[cfg(all(test, feature = "s3-integration-tests"))]
mod tests;
