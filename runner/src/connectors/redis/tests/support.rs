//! The Redis test server (`scripts/nosql-services up`, `SYNQX_TEST_REDIS`), Connections to it,
//! and read and write helpers. A missing server fails the test and says how to start it.

use std::sync::Arc;

use arrow::array::{
    AsArray, BooleanArray, Float64Array, Int64Array, RecordBatch, StringArray,
    TimestampMicrosecondArray,
};
use arrow::datatypes::{DataType, Field, Int64Type, Schema, TimeUnit};
use synqx_api::ConnectionSpec;
use synqx_api::SecretValue;
use synqx_api::connection::{CheckReport, RedisConnection};
use synqx_api::pipeline::{OnError, RedisWrite, RedisWriteKind, Source as SourceSpec, WriteMode};

use synqx_testkit::servers;

use crate::connectors::tests::{destination, named, table_source};
use crate::engine::{
    Counters, CursorFilter, DEFAULT_BATCH_BYTES, Rejects, SchemaStream, WriteOutcome, WriteRequest,
};
use crate::error::Result;

/// The name of the Connections of these tests.
pub const CONNECTION: &str = "cache";

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
pub async fn raw() -> Db {
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

/// What `synqx check` reports of the Connection `spec`.
pub async fn check(spec: &ConnectionSpec) -> CheckReport {
    named::check(CONNECTION, spec).await
}

/// Reads `fqn` (with `after` as the `_id` watermark).
pub async fn read(
    spec: &ConnectionSpec,
    fqn: &str,
    after: Option<&str>,
) -> Result<(Vec<RecordBatch>, Arc<Counters>)> {
    read_source(spec, source(fqn), after).await
}

/// A source block reading `fqn` from the Connection of these tests.
pub fn source(fqn: &str) -> SourceSpec {
    table_source(CONNECTION, fqn)
}

/// Reads the source `spec_source` (with `after` as the `_id` watermark).
pub async fn read_source(
    spec: &ConnectionSpec,
    spec_source: SourceSpec,
    after: Option<&str>,
) -> Result<(Vec<RecordBatch>, Arc<Counters>)> {
    let counters = Arc::new(Counters::default());
    let filter = after.map(|a| CursorFilter {
        column: "_id".into(),
        after: a.into(),
    });
    let rejects = Rejects::new(OnError::Fail, None, counters.clone());
    let (_, batches) = named::open(CONNECTION, spec)?
        .read_with(spec_source, filter, DEFAULT_BATCH_BYTES, rejects)
        .await?;
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
    let sink = named::open(CONNECTION, spec)?.sink;
    let mut to = destination(CONNECTION, fqn, mode, &[], None);
    to.redis = Some(RedisWrite {
        kind: Some(kind),
        ttl: ttl.map(str::to_string),
    });
    sink.write(&WriteRequest::to(to), input).await
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

/// Writes `batch` to `fqn` as `kind` in `mode`, without a TTL; the write must succeed.
pub async fn put(
    conn: &ConnectionSpec,
    fqn: &str,
    kind: RedisWriteKind,
    mode: WriteMode,
    batch: RecordBatch,
) -> WriteOutcome {
    write(conn, fqn, kind, mode, None, vec![Ok(batch)])
        .await
        .unwrap_or_else(|e| panic!("writing {kind:?} at {fqn} ({mode:?}): {e}"))
}

/// Writes `batch` as hashes at `template`.
pub async fn hashes(
    conn: &ConnectionSpec,
    template: &str,
    mode: WriteMode,
    batch: RecordBatch,
) -> WriteOutcome {
    put(conn, template, RedisWriteKind::Hash, mode, batch).await
}

/// A raw connection of [`raw`].
pub type Db = redis::aio::MultiplexedConnection;

/// The keys matching `pattern`, sorted.
pub async fn keys(db: &mut Db, pattern: &str) -> Vec<String> {
    let mut found: Vec<String> = redis::cmd("KEYS")
        .arg(pattern)
        .query_async(db)
        .await
        .unwrap_or_else(|e| panic!("KEYS {pattern}: {e}"));
    found.sort();
    found
}

/// No key an overwrite staged for keys of `prefix` is left.
pub async fn nothing_staged(db: &mut Db, prefix: &str) {
    let staged = keys(db, &format!("synqx-staging:*{prefix}*")).await;
    assert!(staged.is_empty(), "staged keys left: {staged:?}");
}

/// The string at `key`, None when there is none.
pub async fn get(db: &mut Db, key: &str) -> Option<String> {
    redis::cmd("GET")
        .arg(key)
        .query_async(db)
        .await
        .unwrap_or_else(|e| panic!("GET {key}: {e}"))
}

/// Field `field` of the hash at `key`, None when there is none.
pub async fn hget(db: &mut Db, key: &str, field: &str) -> Option<String> {
    redis::cmd("HGET")
        .arg(key)
        .arg(field)
        .query_async(db)
        .await
        .unwrap_or_else(|e| panic!("HGET {key} {field}: {e}"))
}

/// The time to live of `key` in milliseconds (-1: none, -2: no key).
pub async fn pttl(db: &mut Db, key: &str) -> i64 {
    redis::cmd("PTTL")
        .arg(key)
        .query_async(db)
        .await
        .unwrap_or_else(|e| panic!("PTTL {key}: {e}"))
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
