//! Helpers of the MySQL tests: a database of its own on the MariaDB test server per test,
//! read back through a separate connection so assertions see what was committed.

use std::sync::Arc;

use arrow::array::{ArrayRef, Int64Array, RecordBatch, StringArray};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use futures::{StreamExt, TryStreamExt};
use sqlx::mysql::{MySql, MySqlConnectOptions, MySqlConnection};
use sqlx::{AssertSqlSafe, ConnectOptions, Decode, Row, ValueRef};
use synqx_api::connection::{MysqlConnection, SslMode};
use synqx_api::pipeline::{Asset, Destination, SchemaEvolution, Source as SourceSpec, WriteMode};
use synqx_api::{ConnectionSpec, SecretValue};

use super::{MysqlSink, MysqlSource};
use crate::connectors::ConnectionRef;
use crate::connectors::test_servers::{mysql_url, unique_name, unreachable};
use crate::engine::{
    Counters, CursorFilter, ReadRequest, Rejects, SchemaStream, Sink, Source, WriteOutcome,
    WriteRequest,
};
use crate::error::Result;
use crate::secrets::Secrets;

pub(super) const CONNECTION: &str = "shop-db";

/// Parts of the test server's URL `mysql://user:password@host:port/database`.
pub(super) struct Server {
    pub user: String,
    pub password: String,
    pub host: String,
    pub port: u16,
}

pub(super) fn server() -> Server {
    let url = mysql_url();
    let rest = url.strip_prefix("mysql://").unwrap_or(&url);
    let (credentials, rest) = rest.split_once('@').unwrap_or(("root:", rest));
    let (user, password) = credentials.split_once(':').unwrap_or((credentials, ""));
    let address = rest.split('/').next().unwrap_or(rest);
    let (host, port) = address.split_once(':').unwrap_or((address, "3306"));
    Server {
        user: user.into(),
        password: password.into(),
        host: host.into(),
        port: port.parse().unwrap_or(3306),
    }
}

fn value(v: &str) -> SecretValue {
    SecretValue {
        value: Some(v.into()),
        ..Default::default()
    }
}

/// A Connection spec for the test server with the given database, user and password.
pub(super) fn spec(database: &str, user: &str, password: &str, port: u16) -> ConnectionSpec {
    let s = server();
    ConnectionSpec {
        mysql: Some(MysqlConnection {
            host: s.host,
            port: Some(port),
            database: database.into(),
            user: value(user),
            password: Some(value(password)),
            ssl_mode: Some(SslMode::Disable),
        }),
        ..Default::default()
    }
}

/// A database of its own, dropped by `drop`.
pub(super) struct Db {
    pub name: String,
    pub spec: ConnectionSpec,
    secrets: Secrets,
}

impl Db {
    pub async fn new() -> Db {
        let name = unique_name("synqx_my");
        admin(&format!("CREATE DATABASE `{name}` CHARACTER SET utf8mb4")).await;
        let s = server();
        Db {
            spec: spec(&name, &s.user, &s.password, s.port),
            name,
            secrets: Secrets::default(),
        }
    }

    pub async fn drop(self) {
        admin(&format!("DROP DATABASE IF EXISTS `{}`", self.name)).await;
    }

    pub fn conn(&self) -> ConnectionRef<'_> {
        ConnectionRef {
            name: CONNECTION,
            spec: &self.spec,
            base_dir: ".".into(),
            secrets: &self.secrets,
        }
    }

    pub fn source(&self) -> MysqlSource {
        MysqlSource::new(&self.conn()).unwrap_or_else(|e| panic!("{e}"))
    }

    pub fn sink(&self) -> MysqlSink {
        MysqlSink::new(&self.conn()).unwrap_or_else(|e| panic!("{e}"))
    }

    pub async fn connect(&self) -> MySqlConnection {
        raw_connect(Some(&self.name)).await
    }

    pub async fn sql(&self, sql: &str) {
        let mut conn = self.connect().await;
        sqlx::raw_sql(AssertSqlSafe(sql.to_string()))
            .execute(&mut conn)
            .await
            .unwrap_or_else(|e| panic!("{sql}: {e}"));
    }

    /// Every row of a query, its values as text (`NULL`, binary as hex) joined by `, `.
    pub async fn dump(&self, sql: &str) -> Vec<String> {
        let mut conn = self.connect().await;
        let rows: Vec<_> = sqlx::raw_sql(AssertSqlSafe(sql.to_string()))
            .fetch(&mut conn)
            .try_collect()
            .await
            .unwrap_or_else(|e| panic!("{sql}: {e}"));
        rows.iter()
            .map(|row| {
                (0..row.len())
                    .map(|i| {
                        let raw = row.try_get_raw(i).unwrap_or_else(|e| panic!("{e}"));
                        if raw.is_null() {
                            return "NULL".to_string();
                        }
                        let bytes =
                            <&[u8] as Decode<MySql>>::decode(raw).unwrap_or_else(|e| panic!("{e}"));
                        match std::str::from_utf8(bytes) {
                            Ok(s) if !s.contains('\0') => s.to_string(),
                            _ => format!(
                                "0x{}",
                                bytes.iter().map(|b| format!("{b:02x}")).collect::<String>()
                            ),
                        }
                    })
                    .collect::<Vec<_>>()
                    .join(", ")
            })
            .collect()
    }

    pub async fn write(
        &self,
        dest: Destination,
        schema: SchemaRef,
        batches: Vec<Result<RecordBatch>>,
    ) -> Result<WriteOutcome> {
        let input = SchemaStream::new(schema, futures::stream::iter(batches));
        let request = WriteRequest {
            spec: dest,
            batch_bytes: 1 << 20,
        };
        self.sink()
            .write(&request, input, &Counters::default())
            .await
    }

    pub async fn read(
        &self,
        spec: SourceSpec,
        filter: Option<CursorFilter>,
        batch_bytes: usize,
    ) -> Result<(SchemaRef, Vec<RecordBatch>)> {
        let request = ReadRequest {
            spec,
            filter,
            batch_bytes,
            rejects: Rejects::failing(),
        };
        let stream = self.source().read(&request).await?;
        let mut batches = Vec::new();
        let mut s = stream.stream;
        while let Some(b) = s.next().await {
            batches.push(b?);
        }
        Ok((stream.schema, batches))
    }
}

/// A connection to the test server as its admin user, failing the test when unreachable.
pub(super) async fn raw_connect(database: Option<&str>) -> MySqlConnection {
    let s = server();
    let mut options = MySqlConnectOptions::new()
        .host(&s.host)
        .port(s.port)
        .username(&s.user)
        .password(&s.password)
        .charset("utf8mb4");
    if let Some(db) = database {
        options = options.database(db);
    }
    options
        .connect()
        .await
        .unwrap_or_else(|e| panic!("{}", unreachable("MariaDB", &mysql_url(), e)))
}

pub(super) async fn admin(sql: &str) {
    let mut conn = raw_connect(None).await;
    sqlx::raw_sql(AssertSqlSafe(sql.to_string()))
        .execute(&mut conn)
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"));
}

pub(super) fn dest(
    fqn: &str,
    mode: WriteMode,
    key: &[&str],
    evolution: Option<SchemaEvolution>,
) -> Destination {
    Destination {
        connection: CONNECTION.into(),
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

pub(super) fn table_source(fqn: &str) -> SourceSpec {
    SourceSpec {
        connection: CONNECTION.into(),
        asset: Asset {
            name: None,
            fqn: fqn.into(),
        },
        ..Default::default()
    }
}

/// A batch of `(id Int64, name Utf8)` rows.
pub(super) fn people(rows: &[(i64, Option<&str>)]) -> RecordBatch {
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

pub(super) fn ok<T>(r: Result<T>) -> T {
    r.unwrap_or_else(|e| panic!("{e}"))
}

pub(super) fn err<T>(r: Result<T>) -> String {
    match r {
        Ok(_) => panic!("expected an error"),
        Err(e) => e.to_string(),
    }
}
