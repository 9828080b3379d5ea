//! A lake in a fresh bucket of the test binary's moto server: a connection with a key prefix,
//! its source and sink, and direct access to the bucket for what the tests check. The test
//! data is shared with the other file connectors (`formats::test_data`).

use std::io::{Read, Write};
use std::net::TcpListener;
use std::sync::{Arc, Mutex};

use arrow::array::RecordBatch;
use arrow::compute::concat_batches;
use arrow::datatypes::SchemaRef;
use futures::StreamExt;
use k8s_openapi::api::core::v1::Secret;
use object_store::path::Path;
use object_store::{ObjectStoreExt, PutPayload};
use synqx_api::connection::S3Connection;
use synqx_api::pipeline::{Destination, Source as SourceSpec};
use synqx_api::{ConnectionSpec, SecretValue};

use super::moto::{self, Moto};
use super::{Bucket, S3Sink, S3Source};
use crate::connectors::ConnectionRef;
pub(super) use crate::connectors::formats::test_data::{
    destination, id_values, ids, nested, ok, scalars, source,
};
use crate::engine::{
    Counters, CursorFilter, ReadRequest, Rejects, SchemaStream, Sink, WriteOutcome, WriteRequest,
};
use crate::error::{Error, Result};
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
        }),
        ..Default::default()
    }
}

/// A source and sink of `spec`, named `name`.
pub(super) fn open(name: &str, spec: &ConnectionSpec, secrets: &Secrets) -> (S3Source, S3Sink) {
    let conn = ConnectionRef {
        name,
        spec,
        base_dir: std::env::temp_dir(),
        secrets,
    };
    (ok(S3Source::new(&conn)), ok(S3Sink::new(&conn)))
}

pub(super) struct Lake {
    pub(super) moto: &'static Moto,
    pub(super) bucket: String,
    /// The whole bucket, without the prefix.
    pub(super) raw: Bucket,
    pub(super) source: S3Source,
    pub(super) sink: S3Sink,
}

impl Lake {
    /// A new bucket, and a connection `lake` to it with prefix `lake/`.
    pub(super) fn new(tag: &str) -> Self {
        let moto = moto::server();
        let bucket = moto.bucket(tag);
        let secrets = Secrets::default();
        let endpoint = moto.endpoint();
        let (source, sink) = open(
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
        let raw = ok(Bucket::new(&conn));
        Self {
            moto,
            bucket,
            raw,
            source,
            sink,
        }
    }

    fn key(relative: &str) -> Path {
        Path::from(format!("{PREFIX}/{relative}"))
    }

    /// Puts an object below the prefix.
    pub(super) async fn put(&self, relative: &str, contents: impl Into<Vec<u8>>) {
        let payload = PutPayload::from(contents.into());
        let put = self.raw.store.put(&Self::key(relative), payload).await;
        put.unwrap_or_else(|e| panic!("{relative}: {e}"));
    }

    pub(super) async fn bytes(&self, relative: &str) -> Vec<u8> {
        let got = self.raw.store.get(&Self::key(relative)).await;
        let body = got.unwrap_or_else(|e| panic!("{relative}: {e}")).bytes();
        body.await
            .unwrap_or_else(|e| panic!("{relative}: {e}"))
            .to_vec()
    }

    pub(super) async fn text(&self, relative: &str) -> String {
        String::from_utf8_lossy(&self.bytes(relative).await).to_string()
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

    /// Keys below the prefix, relative to it.
    pub(super) async fn files(&self) -> Vec<String> {
        let below = format!("{PREFIX}/");
        self.keys()
            .await
            .into_iter()
            .filter_map(|k| k.strip_prefix(&below).map(str::to_string))
            .collect()
    }

    pub(super) fn pending_uploads(&self) -> usize {
        self.moto.pending_uploads(&self.bucket)
    }

    pub(super) async fn read_with(
        &self,
        spec: SourceSpec,
        filter: Option<CursorFilter>,
        batch_bytes: usize,
        rejects: Rejects,
    ) -> Result<(SchemaRef, Vec<RecordBatch>)> {
        let request = ReadRequest {
            spec,
            filter,
            batch_bytes,
            rejects,
        };
        crate::connectors::formats::test_data::read_all(&self.source, &request).await
    }

    pub(super) async fn read(&self, spec: SourceSpec) -> Result<(SchemaRef, Vec<RecordBatch>)> {
        let budget = crate::engine::DEFAULT_BATCH_BYTES;
        self.read_with(spec, None, budget, Rejects::failing()).await
    }

    /// All rows of a read as one batch.
    pub(super) async fn read_all(&self, spec: SourceSpec) -> Result<RecordBatch> {
        let (schema, batches) = self.read(spec).await?;
        concat_batches(&schema, &batches).map_err(|e| Error::arrow("concat", e))
    }

    pub(super) async fn write(
        &self,
        spec: Destination,
        schema: SchemaRef,
        batches: Vec<Result<RecordBatch>>,
    ) -> Result<WriteOutcome> {
        let input = SchemaStream::new(schema, futures::stream::iter(batches));
        let request = WriteRequest {
            spec,
            batch_bytes: crate::engine::DEFAULT_BATCH_BYTES,
        };
        self.sink.write(&request, input, &Counters::default()).await
    }
}

pub(super) fn secret_documents() -> Secret {
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

/// A server that refuses every request with an S3 error whose message echoes the request
/// head, as a misconfigured proxy or a verbose store might: the credentials reach the error
/// body, and must not reach the error's text.
pub(super) fn echoing_server() -> (String, Arc<Mutex<Vec<String>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap_or_else(|e| panic!("{e}"));
    let port = listener.local_addr().map(|a| a.port()).unwrap_or(0);
    let seen = Arc::new(Mutex::new(Vec::new()));
    let log = seen.clone();
    std::thread::spawn(move || {
        for mut stream in listener.incoming().flatten() {
            let mut head = Vec::new();
            let mut byte = [0u8; 1];
            while !head.ends_with(b"\r\n\r\n") && stream.read(&mut byte).is_ok_and(|n| n == 1) {
                head.push(byte[0]);
            }
            let head = String::from_utf8_lossy(&head).to_string();
            // Logged before the answer, so the test sees it once its request failed.
            if let Ok(mut log) = log.lock() {
                log.push(head.clone());
            }
            let body = format!(
                "<?xml version=\"1.0\"?><Error><Code>InvalidAccessKeyId</Code><Message>request was: {}</Message></Error>",
                head.replace('&', "&amp;").replace('<', "&lt;")
            );
            let _ = write!(
                stream,
                "HTTP/1.1 403 Forbidden\r\nContent-Type: application/xml\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
        }
    });
    (format!("http://127.0.0.1:{port}"), seen)
}

/// An endpoint nothing listens on: every connection to it is refused.
pub(super) fn closed_endpoint() -> String {
    let port = TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .unwrap_or(9);
    format!("http://127.0.0.1:{port}")
}
