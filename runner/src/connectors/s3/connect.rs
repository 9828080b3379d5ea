//! Reaching the bucket: the object_store client built from the config, the keys of names
//! below the prefix, and the messages of failed requests, credentials removed.

use std::sync::Arc;
use std::time::Duration;

use object_store::aws::AmazonS3Builder;
use object_store::list::PaginatedListStore;
use object_store::path::Path;
use object_store::{BackoffConfig, ClientOptions, ObjectStore, RetryConfig};

use super::config::{Credentials, S3Config};
use crate::error::{Error, Result};
use crate::secrets::Redactor;

/// A bucket and key prefix with its client: everything the source and sink share. Cheap to
/// clone; deliberately not `Debug`, so the client's credentials cannot be printed.
#[derive(Clone)]
pub(crate) struct Bucket {
    pub(super) store: Arc<dyn ObjectStore>,
    /// The same client, for listings of a bounded number of keys.
    pub(super) lister: Arc<dyn PaginatedListStore>,
    pub(super) connection: String,
    pub(super) bucket: String,
    /// Empty, or the connection's prefix with one trailing `/`.
    pub(super) prefix: String,
    /// Knows the credentials: every message passes through it.
    redactor: Redactor,
}

/// How long requests may take, and how often a failed one is tried again.
#[derive(Clone, Copy, Debug)]
pub(super) struct Patience {
    pub connect_timeout: Duration,
    /// Longest wait for one request; `None` keeps object_store's default.
    pub request_timeout: Option<Duration>,
    pub max_retries: usize,
    /// No retry starts later than this after the first attempt.
    pub retry_timeout: Duration,
}

impl Patience {
    /// Reads and writes: transient errors are retried with backoff, but an endpoint that
    /// refuses or never answers fails within seconds instead of object_store's default three
    /// minutes.
    pub const TRANSFER: Self = Self {
        connect_timeout: Duration::from_secs(5),
        request_timeout: None,
        max_retries: 4,
        retry_timeout: Duration::from_secs(60),
    };
}

impl Bucket {
    /// The client of the config (no request is sent yet).
    pub(super) fn open(config: &S3Config, patience: Patience) -> Result<Self> {
        let mut builder = match &config.credentials {
            Credentials::Keys(keys) => {
                let builder = AmazonS3Builder::new()
                    .with_access_key_id(&keys.id)
                    .with_secret_access_key(&keys.secret);
                match &keys.token {
                    Some(token) => builder.with_token(token),
                    None => builder,
                }
            }
            // The only place the process's AWS environment is read: S3Config lets it through
            // only for a Connection that asked, where the operator lends it.
            Credentials::Ambient => AmazonS3Builder::from_env(),
        };
        let mut options = ClientOptions::new().with_connect_timeout(patience.connect_timeout);
        if let Some(timeout) = patience.request_timeout {
            options = options.with_timeout(timeout);
        }
        builder = builder
            .with_bucket_name(&config.bucket)
            .with_retry(RetryConfig {
                backoff: BackoffConfig::default(),
                max_retries: patience.max_retries,
                retry_timeout: patience.retry_timeout,
            })
            .with_client_options(options);
        if let Some(region) = &config.region {
            builder = builder.with_region(region);
        }
        if let Some(endpoint) = &config.endpoint {
            builder = builder
                .with_endpoint(&endpoint.url)
                .with_virtual_hosted_style_request(endpoint.virtual_hosted);
            if endpoint.url.starts_with("http://") {
                builder = builder.with_allow_http(true);
            }
        } else if let Some(path_style) = config.path_style {
            builder = builder.with_virtual_hosted_style_request(!path_style);
        }
        let store = Arc::new(builder.build().map_err(|e| {
            Error::Config(format!(
                "Connection \"{}\": s3: {}",
                config.connection,
                config.redactor.redact(e)
            ))
        })?);
        Ok(Self {
            store: store.clone(),
            lister: store,
            connection: config.connection.clone(),
            bucket: config.bucket.clone(),
            prefix: config.prefix.clone(),
            redactor: config.redactor.clone(),
        })
    }

    /// The key of a name relative to the prefix.
    pub(super) fn key(&self, relative: &str) -> Result<Path> {
        let full = format!("{}{relative}", self.prefix);
        Path::parse(&full).map_err(|e| {
            Error::Config(format!(
                "Connection \"{}\": `{full}` is not a valid key of s3://{}: {e}",
                self.connection, self.bucket
            ))
        })
    }

    /// The name of a key relative to the prefix; `None` for keys outside it.
    pub(super) fn relative(&self, key: &Path) -> Option<String> {
        key.as_ref()
            .strip_prefix(self.prefix.as_str())
            .map(str::to_string)
    }

    /// `s3://bucket/prefix/relative`, for messages.
    pub(super) fn url(&self, relative: &str) -> String {
        format!("s3://{}/{}{relative}", self.bucket, self.prefix)
    }

    /// Where the connection's objects are, for messages.
    pub(super) fn location(&self) -> String {
        format!("{} (Connection \"{}\")", self.url(""), self.connection)
    }

    /// The reason of a failed request, without credentials: S3's error code and message
    /// when the response carried them, else object_store's text.
    pub(super) fn describe(&self, e: &object_store::Error) -> String {
        let text = e.to_string();
        let reason = match (xml_tag(&text, "Code"), xml_tag(&text, "Message")) {
            (Some(code), Some(message)) => format!("{code}: {message}"),
            (Some(code), None) => code,
            _ => text.clone(),
        };
        self.redactor.redact(reason)
    }

    /// The message of a failed request about `relative` (a key below the prefix).
    pub(super) fn message(&self, action: &str, relative: &str, e: &object_store::Error) -> String {
        format!(
            "Connection \"{}\": {action} {}: {}",
            self.connection,
            self.url(relative),
            self.describe(e)
        )
    }

    /// A failed request about `relative` as an error.
    pub(super) fn fail(&self, action: &str, relative: &str, e: object_store::Error) -> Error {
        let context = format!(
            "Connection \"{}\": {action} {}",
            self.connection,
            self.url(relative)
        );
        Error::database_detail(context, self.describe(&e), e)
    }
}

/// The text of the first `<name>…</name>` element in an error's text: S3 error bodies carry
/// `<Code>` and `<Message>`.
pub(super) fn xml_tag(text: &str, name: &str) -> Option<String> {
    let open = format!("<{name}>");
    let start = text.find(&open)? + open.len();
    let end = text[start..].find(&format!("</{name}>"))? + start;
    Some(text[start..end].trim().to_string())
}
