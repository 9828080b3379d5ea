//! A lake in a fresh bucket of the test binary's moto server: a connection with a key prefix,
//! its source and sink, and direct access to the bucket for what the tests check. The
//! scenarios and test data are shared with the other file connectors (`formats::tests`).

use futures::StreamExt;
use k8s_openapi::api::core::v1::Secret;
use object_store::path::Path;
use object_store::{ObjectStoreExt, PutPayload};
use synqx_api::connection::S3Connection;
use synqx_api::{ConnectionSpec, SecretValue};
use synqx_testkit::s3::{self as moto, Moto};

use super::super::config;
use super::super::connect::{Bucket, Patience};
use crate::connectors::ConnectionRef;
use crate::connectors::formats::tests::{lakes, ok};
use crate::connectors::tests::{Harness, opened_through_harness};
use crate::secrets::Secrets;

/// Key prefix of the lakes' connections.
pub(super) const PREFIX: &str = "lake";

/// The `s3` block of a connection to a moto bucket, with plain test keys.
pub(super) fn connection(endpoint: &str, bucket: &str, prefix: Option<&str>) -> ConnectionSpec {
    ConnectionSpec {
        s3: Some(S3Connection {
            bucket: bucket.into(),
            region: Some("us-east-1".into()),
            endpoint: Some(endpoint.into()),
            force_path_style: Some(true),
            prefix: prefix.map(str::to_string),
            access_key_id: Some(SecretValue::plain("testing-key")),
            secret_access_key: Some(SecretValue::plain("testing-secret")),
            session_token: None,
            use_ambient_credentials: None,
        }),
        ..Default::default()
    }
}

/// The Connection `spec`, named `name`, opened as a source and a sink.
pub(super) fn open(name: &str, spec: &ConnectionSpec, secrets: &Secrets) -> Harness {
    Harness::open(&ConnectionRef {
        name,
        spec,
        base_dir: std::env::temp_dir(),
        secrets,
    })
}

pub(super) struct Lake {
    pub(super) moto: &'static Moto,
    pub(super) bucket: String,
    /// The whole bucket, without the prefix.
    pub(super) raw: Bucket,
    harness: Harness,
}

opened_through_harness!(Lake);

impl Lake {
    /// A new bucket, and a connection `lake` to it with prefix `lake/`.
    pub(super) fn new(tag: &str) -> Self {
        let moto = moto::server();
        let bucket = moto.bucket(tag);
        let secrets = Secrets::default();
        let endpoint = moto.endpoint();
        let harness = open(
            "lake",
            &connection(&endpoint, &bucket, Some(PREFIX)),
            &secrets,
        );
        let whole = connection(&endpoint, &bucket, None);
        let conn = ConnectionRef {
            name: "raw",
            spec: &whole,
            base_dir: std::env::temp_dir(),
            secrets: &secrets,
        };
        let raw = ok(config::of(&conn).and_then(|c| Bucket::open(&c, Patience::TRANSFER)));
        Self {
            moto,
            bucket,
            raw,
            harness,
        }
    }

    fn key(relative: &str) -> Path {
        Path::from(format!("{PREFIX}/{relative}"))
    }

    /// Size and ETag of an object below the prefix.
    pub(super) async fn head(&self, relative: &str) -> (u64, String) {
        let meta = self.raw.store.head(&Self::key(relative)).await;
        let meta = meta.unwrap_or_else(|e| panic!("{relative}: {e}"));
        (meta.size, meta.e_tag.unwrap_or_default())
    }

    /// Every key of the bucket, sorted, hidden ones and those outside the prefix included.
    pub(super) async fn keys(&self) -> Vec<String> {
        let mut keys: Vec<String> = self
            .raw
            .store
            .list(None)
            .map(|meta| meta.map(|m| m.location.to_string()))
            .collect::<Vec<_>>()
            .await
            .into_iter()
            .map(|k| k.unwrap_or_else(|e| panic!("listing: {e}")))
            .collect();
        keys.sort();
        keys
    }

    pub(super) fn pending_uploads(&self) -> usize {
        self.moto.pending_uploads(&self.bucket)
    }
}

impl lakes::Lake for Lake {
    fn location(&self) -> String {
        format!("s3://{}/{PREFIX}/ (Connection \"lake\")", self.bucket)
    }

    async fn put(&self, relative: &str, contents: impl Into<Vec<u8>>) {
        let payload = PutPayload::from(contents.into());
        let put = self.raw.store.put(&Self::key(relative), payload).await;
        put.unwrap_or_else(|e| panic!("{relative}: {e}"));
    }

    async fn bytes(&self, relative: &str) -> Vec<u8> {
        let got = self.raw.store.get(&Self::key(relative)).await;
        let body = got.unwrap_or_else(|e| panic!("{relative}: {e}")).bytes();
        body.await
            .unwrap_or_else(|e| panic!("{relative}: {e}"))
            .to_vec()
    }

    async fn size(&self, relative: &str) -> u64 {
        self.head(relative).await.0
    }

    async fn files(&self) -> Vec<String> {
        let below = format!("{PREFIX}/");
        self.keys()
            .await
            .into_iter()
            .filter_map(|k| k.strip_prefix(&below).map(str::to_string))
            .collect()
    }

    /// Every key of the bucket, and the multipart uploads not finished, which the store keeps
    /// (and bills) until they are aborted.
    async fn snapshot(&self) -> Vec<String> {
        let mut everything = self.keys().await;
        let uploads = self.pending_uploads();
        if uploads > 0 {
            everything.push(format!("{uploads} unfinished multipart upload(s)"));
        }
        everything
    }

    /// Only a multipart upload stages before the commit: a smaller object goes up in one PUT
    /// when its encoder finishes.
    fn staging(&self) -> bool {
        self.pending_uploads() > 0
    }
}

/// The Secrets of `keyed` connections: their keys, which no message may show.
pub(super) fn keyed_secrets() -> Secrets {
    Secrets::new([secret_documents()].iter(), [])
}

fn secret_documents() -> Secret {
    let mut secret = Secret::default();
    secret.metadata.name = Some("lake-keys".into());
    secret.string_data = Some(
        [
            ("id", "AKIDSYNQXREDACTME01"),
            ("secret", "s3cr3t/SYNQX+redact-me-please"),
            ("token", "SESSIONTOKENSYNQXREDACTME"),
        ]
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .into(),
    );
    secret
}

pub(super) fn assert_redacted(message: &str) {
    for value in [
        "AKIDSYNQXREDACTME01",
        "s3cr3t/SYNQX+redact-me-please",
        "SESSIONTOKENSYNQXREDACTME",
    ] {
        assert!(!message.contains(value), "{value} leaked: {message}");
    }
}

/// A connection whose keys come from a Secret document.
pub(super) fn keyed(endpoint: String, bucket: &str) -> ConnectionSpec {
    let mut spec = connection(&endpoint, bucket, Some(PREFIX));
    if let Some(s3) = spec.s3.as_mut() {
        s3.access_key_id = Some(SecretValue::from_secret("lake-keys", "id"));
        s3.secret_access_key = Some(SecretValue::from_secret("lake-keys", "secret"));
        s3.session_token = Some(SecretValue::from_secret("lake-keys", "token"));
    }
    spec
}
