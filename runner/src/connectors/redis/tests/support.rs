//! The Redis test server (`scripts/nosql-services up`, `SYNQX_TEST_REDIS`), Connections to it,
//! and read and write helpers. A missing server fails the test and says how to start it.

use std::sync::Arc;

use arrow::array::RecordBatch;
use futures::StreamExt;
use synqx_api::ConnectionSpec;
use synqx_api::SecretValue;
use synqx_api::connection::RedisConnection;
use synqx_api::pipeline::{
    Asset, Destination, OnError, RedisWrite, RedisWriteKind, Source as SourceSpec, WriteMode,
};

use crate::connectors::ConnectionRef;
use crate::connectors::redis::{RedisSink, RedisSource, Settings};
use crate::engine::{
    Counters, CursorFilter, ReadRequest, Rejects, SchemaStream, Sink, Source, WriteOutcome,
    WriteRequest,
};
use crate::error::Result;
use crate::secrets::Secrets;

/// URL of the Redis test server.
pub fn url() -> reqwest::Url {
    let text = std::env::var("SYNQX_TEST_REDIS")
        .unwrap_or_else(|_| "redis://:synqx@127.0.0.1:56379/0".into());
    reqwest::Url::parse(&text).unwrap_or_else(|e| panic!("SYNQX_TEST_REDIS \"{text}\": {e}"))
}

/// A Connection to the test server with `password`.
pub fn connection(password: &str) -> ConnectionSpec {
    let url = url();
    ConnectionSpec {
        redis: Some(RedisConnection {
            host: url.host_str().unwrap_or("127.0.0.1").to_string(),
            port: url.port(),
            db: Some(0),
            password: Some(SecretValue {
                value: Some(password.to_string()),
                ..Default::default()
            }),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// The test server's password.
pub fn password() -> String {
    url().password().unwrap_or_default().to_string()
}

/// A raw connection for setting up and checking data; fails the test when the server is down.
pub async fn raw() -> redis::aio::MultiplexedConnection {
    let url = url();
    let client = redis::Client::open(url.as_str()).unwrap_or_else(|e| panic!("{e}"));
    client.get_multiplexed_async_connection().await.unwrap_or_else(|e| {
        panic!("the Redis test server at {url} is not reachable ({e}); start it with `eval \"$(scripts/nosql-services up)\"`")
    })
}

pub fn settings(spec: &ConnectionSpec) -> Result<Settings> {
    let secrets = Secrets::default();
    Settings::new(&ConnectionRef {
        name: "cache",
        spec,
        base_dir: std::env::temp_dir(),
        secrets: &secrets,
    })
}

/// Reads `fqn` (with `after` as the `_id` watermark).
pub async fn read(
    spec: &ConnectionSpec,
    fqn: &str,
    after: Option<&str>,
) -> Result<(Vec<RecordBatch>, Arc<Counters>)> {
    let source = RedisSource::new(settings(spec)?);
    let counters = Arc::new(Counters::default());
    let request = ReadRequest {
        spec: SourceSpec {
            connection: "cache".into(),
            asset: Asset {
                name: None,
                fqn: fqn.into(),
            },
            ..Default::default()
        },
        filter: after.map(|a| CursorFilter {
            column: "_id".into(),
            after: a.into(),
        }),
        batch_bytes: crate::engine::DEFAULT_BATCH_BYTES,
        rejects: Rejects::new(OnError::Fail, None, counters.clone()),
    };
    let mut stream = source.read(&request).await?;
    let mut batches = Vec::new();
    while let Some(b) = stream.stream.next().await {
        batches.push(b?);
    }
    Ok((batches, counters))
}

/// Writes `batches` to `fqn` as `kind` in `mode`.
pub async fn write(
    spec: &ConnectionSpec,
    fqn: &str,
    kind: RedisWriteKind,
    mode: WriteMode,
    ttl: Option<&str>,
    batches: Vec<Result<RecordBatch>>,
) -> Result<WriteOutcome> {
    let sink = RedisSink::new(settings(spec)?);
    let schema = match batches.first() {
        Some(Ok(b)) => b.schema(),
        _ => panic!("write needs a first batch for its schema"),
    };
    let request = WriteRequest {
        spec: Destination {
            connection: "cache".into(),
            asset: Asset {
                name: None,
                fqn: fqn.into(),
            },
            mode: Some(mode),
            redis: Some(RedisWrite {
                kind: Some(kind),
                ttl: ttl.map(str::to_string),
            }),
            ..Default::default()
        },
        batch_bytes: crate::engine::DEFAULT_BATCH_BYTES,
    };
    let input = SchemaStream::new(schema, futures::stream::iter(batches));
    sink.write(&request, input, &Counters::default()).await
}
