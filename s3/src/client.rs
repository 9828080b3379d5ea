//! The object_store client of [`S3Settings`], and the reason of a failed request with the
//! credentials removed (S3 error bodies can echo the access key id).

use std::time::Duration;

use object_store::aws::{AmazonS3, AmazonS3Builder};
use object_store::{BackoffConfig, ClientOptions, RetryConfig};
use synqx_api::redact::Redactor;

use crate::settings::{Credentials, S3Settings};

/// How long requests may take, and how often a failed one is tried again.
#[derive(Clone, Copy, Debug)]
pub struct Patience {
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

/// Why no client could be built; the reason carries no credential.
#[derive(Debug, Clone, thiserror::Error)]
#[error("Connection \"{connection}\": s3: {reason}")]
pub struct ClientError {
    pub connection: String,
    pub reason: String,
}

/// The client of `settings` (no request is sent yet).
pub fn client(settings: &S3Settings, patience: Patience) -> Result<AmazonS3, ClientError> {
    let mut builder = match &settings.credentials {
        Credentials::Keys(keys) => {
            let builder = AmazonS3Builder::new()
                .with_access_key_id(&keys.id)
                .with_secret_access_key(&keys.secret);
            match &keys.token {
                Some(token) => builder.with_token(token),
                None => builder,
            }
        }
        // The only place the process's AWS environment is read: S3Settings lets it through
        // only for a Connection that asked and was allowed.
        Credentials::Ambient => AmazonS3Builder::from_env(),
    };
    let mut options = ClientOptions::new().with_connect_timeout(patience.connect_timeout);
    if let Some(timeout) = patience.request_timeout {
        options = options.with_timeout(timeout);
    }
    builder = builder
        .with_bucket_name(&settings.bucket)
        .with_retry(RetryConfig {
            backoff: BackoffConfig::default(),
            max_retries: patience.max_retries,
            retry_timeout: patience.retry_timeout,
        })
        .with_client_options(options);
    if let Some(region) = &settings.region {
        builder = builder.with_region(region);
    }
    if let Some(endpoint) = &settings.endpoint {
        builder = builder
            .with_endpoint(&endpoint.url)
            .with_virtual_hosted_style_request(endpoint.virtual_hosted);
        if endpoint.url.starts_with("http://") {
            builder = builder.with_allow_http(true);
        }
    } else if let Some(path_style) = settings.path_style {
        builder = builder.with_virtual_hosted_style_request(!path_style);
    }
    builder.build().map_err(|e| ClientError {
        connection: settings.connection.clone(),
        reason: settings.redactor.redact(e),
    })
}

/// The reason of a failed request, without credentials: S3's error code and message when
/// the response carried them, else object_store's text.
pub fn reason(e: &object_store::Error, redactor: &Redactor) -> String {
    let text = e.to_string();
    let reason = match (xml_tag(&text, "Code"), xml_tag(&text, "Message")) {
        (Some(code), Some(message)) => format!("{code}: {message}"),
        (Some(code), None) => code,
        _ => text.clone(),
    };
    redactor.redact(reason)
}

/// The text of the first `<name>…</name>` element in an error's text: S3 error bodies carry
/// `<Code>` and `<Message>`.
pub fn xml_tag(text: &str, name: &str) -> Option<String> {
    let open = format!("<{name}>");
    let start = text.find(&open)? + open.len();
    let end = text[start..].find(&format!("</{name}>"))? + start;
    Some(text[start..end].trim().to_string())
}
