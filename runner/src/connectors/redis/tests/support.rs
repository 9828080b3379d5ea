//! The Redis test server (`scripts/nosql-services up`, `SYNQX_TEST_REDIS`), Connections to it,
//! and read and write helpers. A missing server fails the test and says how to start it.

use std::sync::Arc;

use arrow::array::{
    AsArray, BooleanArray, Float64Array, Int64Array, RecordBatch, StringArray,
    TimestampMicrosecondArray,
};
use arrow::datatypes::{DataType, Field, Int64Type, Schema, TimeUnit};
use futures::StreamExt;
use synqx_api::ConnectionSpec;
use synqx_api::SecretValue;
use synqx_api::connection::RedisConnection;
use synqx_api::pipeline::{
    Asset, Destination, OnError, RedisWrite, RedisWriteKind, Source as SourceSpec, WriteMode,
};

use synqx_testkit::servers;

use crate::connectors::ConnectionRef;
use crate::connectors::tests::Harness;
use crate::engine::{
    Counters, CursorFilter, ReadRequest, Rejects, SchemaStream, WriteOutcome, WriteRequest,
};
use crate::error::Result;
use crate::secrets::Secrets;

/// A Connection to the test server with `password`.
pub fn connection(password: &str) -> ConnectionSpec {
    let server = servers::redis();
    ConnectionSpec {
        redis: Some(RedisConnection {
            host: server.host,
            port: Some(server.port),
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
    servers::redis().password
}

/// A raw connection for setting up and checking data; fails the test when the server is down.
pub async fn raw() -> redis::aio::MultiplexedConnection {
    let server = servers::redis();
    let client = redis::Client::open(server.url()).unwrap_or_else(|e| panic!("{e}"));
    client
        .get_multiplexed_async_connection()
        .await
        .unwrap_or_else(|e| {
            panic!(
                "{}",
                servers::nosql_unreachable("Redis", &format!("{}:{}", server.host, server.port), e)
            )
        })
}

/// The Connection `cache` of `spec`, opened through the registry as a step opens it.
pub fn harness(spec: &ConnectionSpec) -> Result<Harness> {
    let secrets = Secrets::default();
    let conn = ConnectionRef {
        name: "cache",
        spec,
        base_dir: std::env::temp_dir(),
        secrets: &secrets,
    };
    Ok(Harness {
        source: crate::connectors::source(&conn)?,
        sink: crate::connectors::sink(&conn)?,
    })
}

/// Reads `fqn` (with `after` as the `_id` watermark).
pub async fn read(
    spec: &ConnectionSpec,
    fqn: &str,
    after: Option<&str>,
) -> Result<(Vec<RecordBatch>, Arc<Counters>)> {
    read_source(spec, source(fqn), after).await
}

/// A source block reading `fqn` from the Connection `cache`.
pub fn source(fqn: &str) -> SourceSpec {
    SourceSpec {
        connection: "cache".into(),
        asset: Asset {
            name: None,
            fqn: fqn.into(),
        },
        ..Default::default()
    }
}

/// Reads the source `spec_source` (with `after` as the `_id` watermark).
pub async fn read_source(
    spec: &ConnectionSpec,
    spec_source: SourceSpec,
    after: Option<&str>,
) -> Result<(Vec<RecordBatch>, Arc<Counters>)> {
    let source = harness(spec)?.source;
    let counters = Arc::new(Counters::default());
    let request = ReadRequest {
        spec: spec_source,
        filter: after.map(|a| CursorFilter {
            column: "_id".into(),
            after: a.into(),
        }),
        batch_bytes: crate::engine::DEFAULT_BATCH_BYTES,
        rejects: Rejects::new(OnError::Fail, None, counters.clone()),
        memory: Default::default(),
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
    let schema = match batches.first() {
        Some(Ok(b)) => b.schema(),
        _ => panic!("write needs a first batch for its schema"),
    };
    let input = SchemaStream::new(schema, futures::stream::iter(batches));
    write_stream(spec, fqn, kind, mode, ttl, input).await
}

/// Writes the batches of `input` to `fqn` as `kind` in `mode`.
pub async fn write_stream(
    spec: &ConnectionSpec,
    fqn: &str,
    kind: RedisWriteKind,
    mode: WriteMode,
    ttl: Option<&str>,
    input: SchemaStream,
) -> Result<WriteOutcome> {
    let sink = harness(spec)?.sink;
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
        deadline: None,
    };
    sink.write(&request, input, &Counters::default()).await
}

/// Rows of orders `ids`: id, name, price (null every third), paid, at.
pub fn orders(ids: std::ops::Range<i64>) -> RecordBatch {
    let schema = Arc::new(Schema::new(vec![
        Field::new("id", DataType::Int64, true),
        Field::new("name", DataType::Utf8, true),
        Field::new("price", DataType::Float64, true),
        Field::new("paid", DataType::Boolean, true),
        Field::new(
            "at",
            DataType::Timestamp(TimeUnit::Microsecond, Some("+00:00".into())),
            true,
        ),
    ]));
    let n = ids.clone().count();
    RecordBatch::try_new(
        schema,
        vec![
            Arc::new(Int64Array::from_iter_values(ids.clone())),
            Arc::new(StringArray::from_iter_values(
                ids.clone().map(|i| format!("order {i}, \"quoted\" ü")),
            )),
            Arc::new(Float64Array::from_iter(
                ids.clone().map(|i| (i % 3 != 0).then_some(i as f64 * 2.5)),
            )),
            Arc::new(BooleanArray::from_iter(
                ids.clone().map(|i| Some(i % 2 == 0)),
            )),
            Arc::new(
                TimestampMicrosecondArray::from_iter_values(
                    ids.map(|i| 1_700_000_000_000_000 + i * 1_000_000),
                )
                .with_timezone("+00:00"),
            ),
        ],
    )
    .unwrap_or_else(|e| panic!("{e} ({n} rows)"))
}

/// Writes `batch` as hashes at `template`.
pub async fn hashes(
    conn: &synqx_api::ConnectionSpec,
    template: &str,
    mode: WriteMode,
    batch: RecordBatch,
) -> crate::engine::WriteOutcome {
    write(
        conn,
        template,
        RedisWriteKind::Hash,
        mode,
        None,
        vec![Ok(batch)],
    )
    .await
    .unwrap_or_else(|e| panic!("writing hashes at {template}: {e}"))
}

/// The values of Int64 column `name` in every batch, sorted.
pub fn column_i64(batches: &[RecordBatch], name: &str) -> Vec<i64> {
    let mut all: Vec<i64> = batches
        .iter()
        .flat_map(|b| {
            b.column_by_name(name)
                .unwrap_or_else(|| panic!("no {name} in {:?}", b.schema()))
                .as_primitive::<Int64Type>()
                .values()
                .to_vec()
        })
        .collect();
    all.sort();
    all
}
