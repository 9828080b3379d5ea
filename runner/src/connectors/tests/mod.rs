//! What the connectors' tests share: a connector opened through the registry and driven the
//! way the engine drives it ([`Harness`]), the specs a test reads and writes with, and small
//! batches of rows. Servers, URLs and reading data back without the connector live in the
//! `synqx-testkit` crate; test data of file formats in `formats::tests`.

use std::sync::Arc;

use arrow::array::{Array, ArrayRef, AsArray, Int64Array, RecordBatch, StringArray};
use arrow::compute::concat_batches;
use arrow::datatypes::{DataType, Field, Int64Type, Schema, SchemaRef};
use futures::TryStreamExt;
use synqx_api::pipeline::{Asset, Destination, SchemaEvolution, Source as SourceSpec, WriteMode};

use super::ConnectionRef;
use crate::engine::{
    Counters, CursorFilter, DEFAULT_BATCH_BYTES, ReadRequest, Rejects, SchemaStream, Sink, Source,
    WriteOutcome, WriteRequest,
};
use crate::error::{Error, Result};

pub mod named;
#[cfg(any(
    feature = "snowflake-integration-tests",
    feature = "bigquery-integration-tests"
))]
pub mod warehouses;

/// Lets a test's database or lake (a struct with a `harness` field) read and write through
/// the connector it opened, as `db.read_with(..)` or `lake.sink`.
macro_rules! opened_through_harness {
    ($fixture:ty) => {
        impl std::ops::Deref for $fixture {
            type Target = $crate::connectors::tests::Harness;

            fn deref(&self) -> &Self::Target {
                &self.harness
            }
        }
    };
}
pub(crate) use opened_through_harness;

/// `dest` and `table_source` for a test module's Connection `$connection`: the specs its
/// tests write and read with, naming it.
macro_rules! specs_naming {
    ($connection:expr) => {
        pub(super) fn dest(
            fqn: &str,
            mode: synqx_api::pipeline::WriteMode,
            key: &[&str],
            evolution: Option<synqx_api::pipeline::SchemaEvolution>,
        ) -> synqx_api::pipeline::Destination {
            $crate::connectors::tests::destination($connection, fqn, mode, key, evolution)
        }

        pub(super) fn table_source(fqn: &str) -> synqx_api::pipeline::Source {
            $crate::connectors::tests::table_source($connection, fqn)
        }
    };
}
pub(crate) use specs_naming;

/// The value of a result that must be a success.
pub fn ok<T>(r: Result<T>) -> T {
    r.unwrap_or_else(|e| panic!("{e}"))
}

/// Drives a write whose input never ends until `staged` says it has put something where a
/// drop must clean it up, then drops it (as a killed step would). Panics when the write ends
/// on its own or stages nothing within 30 s: a cleanup test must have something to clean.
pub async fn drop_once_staged<T>(
    write: impl std::future::Future<Output = Result<T>>,
    staged: impl Fn() -> bool,
) {
    let mut write = std::pin::pin!(write);
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(30);
    while !staged() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the write staged nothing within 30 s"
        );
        tokio::select! {
            done = &mut write => panic!(
                "the write ended ({}) although its input never does",
                if done.is_ok() { "succeeded" } else { "failed" }
            ),
            () = tokio::time::sleep(std::time::Duration::from_millis(5)) => {}
        }
    }
}

/// The message of a result that must be an error.
pub fn err<T: std::fmt::Debug>(r: Result<T>) -> String {
    match r {
        Ok(v) => panic!("expected an error, got {v:?}"),
        Err(e) => e.to_string(),
    }
}

/// An error a stream can return in the middle of a load.
pub fn upstream_error() -> Error {
    Error::bad_row("", "upstream broke")
}

/// A destination of Connection `connection`.
pub fn destination(
    connection: &str,
    fqn: &str,
    mode: WriteMode,
    key: &[&str],
    evolution: Option<SchemaEvolution>,
) -> Destination {
    Destination {
        connection: connection.into(),
        asset: Asset {
            name: None,
            fqn: fqn.into(),
        },
        mode: Some(mode),
        primary_key: key.iter().map(|k| k.to_string()).collect(),
        schema_evolution: evolution,
        ..Default::default()
    }
}

/// A source reading the whole asset `fqn` of Connection `connection`.
pub fn table_source(connection: &str, fqn: &str) -> SourceSpec {
    SourceSpec {
        connection: connection.into(),
        asset: Asset {
            name: None,
            fqn: fqn.into(),
        },
        ..Default::default()
    }
}

/// A batch of `(id Int64, name Utf8)` rows.
pub fn people(rows: &[(i64, Option<&str>)]) -> RecordBatch {
    let schema = Arc::new(Schema::new(vec![
        Field::new("id", DataType::Int64, false),
        Field::new("name", DataType::Utf8, true),
    ]));
    let ids: ArrayRef = Arc::new(Int64Array::from(
        rows.iter().map(|r| r.0).collect::<Vec<_>>(),
    ));
    let names: ArrayRef = Arc::new(StringArray::from(
        rows.iter().map(|r| r.1).collect::<Vec<_>>(),
    ));
    RecordBatch::try_new(schema, vec![ids, names]).unwrap_or_else(|e| panic!("{e}"))
}

/// The names of a schema's fields, in order: what a test compares a read's columns with.
pub fn field_names(schema: &Schema) -> Vec<&str> {
    schema.fields().iter().map(|f| f.name().as_str()).collect()
}

/// The values of the list at `row` of a column of Int64 lists.
pub fn int64_list(column: &dyn Array, row: usize) -> Vec<i64> {
    column
        .as_list::<i32>()
        .value(row)
        .as_primitive::<Int64Type>()
        .values()
        .to_vec()
}

/// A Connection opened as a source and as a sink through the registry, as a step opens it.
#[derive(Clone)]
pub struct Harness {
    pub source: Arc<dyn Source>,
    pub sink: Arc<dyn Sink>,
}

impl Harness {
    pub fn open(conn: &ConnectionRef<'_>) -> Harness {
        Harness {
            source: ok(super::source(conn)),
            sink: ok(super::sink(conn)),
        }
    }

    /// Reads through `Source::read` to the end: the schema and every batch.
    pub async fn read_with(
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
            memory: Default::default(),
        };
        let stream = self.source.read(&request).await?;
        let schema = stream.schema.clone();
        Ok((schema, stream.stream.try_collect().await?))
    }

    /// Reads what `filter` lets through in batches of `batch_bytes`; a bad row fails the read.
    pub async fn read_filtered(
        &self,
        spec: SourceSpec,
        filter: Option<CursorFilter>,
        batch_bytes: usize,
    ) -> Result<(SchemaRef, Vec<RecordBatch>)> {
        self.read_with(spec, filter, batch_bytes, Rejects::failing())
            .await
    }

    /// Reads everything with the default batch budget; a bad row fails the read.
    pub async fn read(&self, spec: SourceSpec) -> Result<(SchemaRef, Vec<RecordBatch>)> {
        self.read_filtered(spec, None, DEFAULT_BATCH_BYTES).await
    }

    /// Every row a read yields, as one batch.
    pub async fn read_all(&self, spec: SourceSpec) -> Result<RecordBatch> {
        let (schema, batches) = self.read(spec).await?;
        concat_batches(&schema, &batches).map_err(|e| Error::arrow("concat", e))
    }

    /// Writes batches through `Sink::write` as the engine does.
    pub async fn write(
        &self,
        spec: Destination,
        schema: SchemaRef,
        batches: Vec<Result<RecordBatch>>,
    ) -> Result<WriteOutcome> {
        self.write_counted(spec, schema, batches, &Arc::default())
            .await
    }

    /// Writes batches, counting progress into `counters`.
    pub async fn write_counted(
        &self,
        spec: Destination,
        schema: SchemaRef,
        batches: Vec<Result<RecordBatch>>,
        counters: &Arc<Counters>,
    ) -> Result<WriteOutcome> {
        let request = WriteRequest {
            counters: counters.clone(),
            ..WriteRequest::to(spec)
        };
        let input = SchemaStream::new(schema, futures::stream::iter(batches));
        self.sink.write(&request, input).await
    }
}

mod registry {
    use synqx_api::connection::{FilesystemConnection, SnowflakeConnection};
    use synqx_api::{ConnectionSpec, ConnectorKind};

    use super::*;
    use crate::connectors::{CONNECTORS, Registered, available, check_in, connector_in};
    use crate::secrets::Secrets;

    fn conn<'a>(spec: &'a ConnectionSpec, secrets: &'a Secrets) -> ConnectionRef<'a> {
        ConnectionRef {
            name: "c",
            spec,
            base_dir: ".".into(),
            secrets,
        }
    }

    #[test]
    fn every_connector_is_registered_once() {
        let kinds: Vec<ConnectorKind> = available().collect();
        let mut unique = kinds.clone();
        unique.dedup();
        assert_eq!(kinds, unique);
        assert_eq!(kinds.len(), CONNECTORS.len());
        assert_eq!(
            kinds.iter().map(|k| k.to_string()).collect::<Vec<_>>(),
            [
                "bigquery",
                "filesystem",
                "mongodb",
                "mysql",
                "postgres",
                "redis",
                "rest",
                "s3",
                "snowflake",
                "sqlite",
                "sqlserver"
            ]
        );
    }

    #[test]
    fn every_kind_of_connection_has_a_connector() {
        let mut kinds: Vec<String> = available().map(|k| k.to_string()).collect();
        let mut all: Vec<String> = ConnectorKind::ALL.iter().map(|k| k.to_string()).collect();
        kinds.sort();
        all.sort();
        assert_eq!(kinds, all);
    }

    #[tokio::test]
    async fn a_kind_without_a_connector_says_which_are_available() {
        // A Connection of a kind this version cannot run, as one written for a newer version.
        let registry: Vec<&dyn Registered> = CONNECTORS
            .iter()
            .copied()
            .filter(|c| c.kind() != ConnectorKind::Snowflake)
            .collect();
        let secrets = Secrets::default();
        let spec = ConnectionSpec {
            snowflake: Some(SnowflakeConnection {
                account: "org-account".into(),
                ..Default::default()
            }),
            ..Default::default()
        };
        let e = err(connector_in(&registry, &conn(&spec, &secrets)).map(drop));
        assert_eq!(
            e,
            "Connection \"c\": the snowflake connector is not available in this version of synqx (available: bigquery, filesystem, mongodb, mysql, postgres, redis, rest, s3, sqlite, sqlserver)"
        );
        let report = check_in(&registry, &conn(&spec, &secrets)).await;
        assert_eq!(report.reason.as_str(), "Unsupported");
        assert!(report.message.starts_with(&e), "{}", report.message);
    }

    #[tokio::test]
    async fn a_role_a_connector_lacks_is_refused_before_any_io() {
        let secrets = Secrets::default();
        let spec = ConnectionSpec {
            filesystem: Some(FilesystemConnection {
                path: "/nonexistent".into(),
            }),
            ..Default::default()
        };
        let e = err(crate::connectors::run_sql(&conn(&spec, &secrets), &["SELECT 1".into()]).await);
        assert_eq!(
            e,
            "Connection \"c\": the filesystem connector cannot be the Connection of a sql step in this version of synqx"
        );
    }

    #[test]
    fn rest_mongodb_and_redis_check_their_assets_without_io() {
        use synqx_api::SecretValue;
        use synqx_api::connection::{MongoConnection, RedisConnection, RestConnection};
        use synqx_api::pipeline::{RedisWrite, RedisWriteKind, WriteMode};

        use crate::connectors::{Usage, validate};

        let secrets = Secrets::placeholders();
        let rest = ConnectionSpec {
            rest: Some(RestConnection {
                base_url: "http://127.0.0.1:9/v1".into(),
                ..Default::default()
            }),
            ..Default::default()
        };
        ok(validate(
            &conn(&rest, &secrets),
            Some(Usage::Source(&table_source("c", "orders"))),
        ));
        let e = err(validate(
            &conn(&rest, &secrets),
            Some(Usage::Destination(&destination(
                "c",
                "orders",
                WriteMode::Append,
                &[],
                None,
            ))),
        ));
        assert_eq!(
            e,
            "Connection \"c\": the rest connector cannot be a destination in this version of synqx"
        );

        // The URI is a secret: validation sees a placeholder and checks the rest.
        let mongodb = ConnectionSpec {
            mongodb: Some(MongoConnection {
                uri: SecretValue::from_secret("mongo", "uri"),
                database: "shop".into(),
            }),
            ..Default::default()
        };
        let mut source = table_source("c", "orders");
        source.filter = Some("{\"status\": ".into());
        let e = err(validate(
            &conn(&mongodb, &secrets),
            Some(Usage::Source(&source)),
        ));
        assert!(
            e.starts_with(
                "Connection \"c\", collection \"shop.orders\": source.filter is not valid JSON"
            ),
            "{e}"
        );
        let e = err(validate(
            &conn(&mongodb, &secrets),
            Some(Usage::Destination(&destination(
                "c",
                "a$b",
                WriteMode::Append,
                &[],
                None,
            ))),
        ));
        assert_eq!(
            e,
            "Connection \"c\", collection \"shop.a$b\": a collection name cannot contain $ or NUL"
        );

        let redis = ConnectionSpec {
            redis: Some(RedisConnection {
                host: "127.0.0.1".into(),
                password: Some(SecretValue::from_secret("redis", "password")),
                ..Default::default()
            }),
            ..Default::default()
        };
        let mut to_stream = destination("c", "events", WriteMode::Upsert, &["id"], None);
        to_stream.redis = Some(RedisWrite {
            kind: Some(RedisWriteKind::Stream),
            ttl: None,
        });
        let e = err(validate(
            &conn(&redis, &secrets),
            Some(Usage::Destination(&to_stream)),
        ));
        assert_eq!(
            e,
            "Connection \"c\": \"events\": a stream only appends entries; upsert needs kind hash or json"
        );
        let mut expiring = destination("c", "events", WriteMode::Append, &[], None);
        expiring.redis = Some(RedisWrite {
            kind: Some(RedisWriteKind::Stream),
            ttl: Some("1h".into()),
        });
        let e = err(validate(
            &conn(&redis, &secrets),
            Some(Usage::Destination(&expiring)),
        ));
        assert!(
            e.starts_with("Connection \"c\": \"events\": redis.ttl applies to keys written as kind hash or json"),
            "{e}"
        );
        let e = err(validate(
            &conn(&redis, &secrets),
            Some(Usage::Source(&table_source("c", " "))),
        ));
        assert!(e.contains("the asset is empty"), "{e}");
    }
}
