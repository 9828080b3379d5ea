//! Helpers of the MySQL tests: a database of its own on the MariaDB test server per test,
//! read back through a separate connection so assertions see what was committed.

use arrow::array::RecordBatch;
use arrow::datatypes::SchemaRef;
use futures::TryStreamExt;
use sqlx::mysql::{MySql, MySqlConnectOptions, MySqlConnection};
use sqlx::{AssertSqlSafe, ConnectOptions, Decode, Row, ValueRef};
use synqx_api::connection::{MysqlConnection, SslMode};
use synqx_api::pipeline::{Destination, SchemaEvolution, Source as SourceSpec, WriteMode};
use synqx_api::{ConnectionSpec, SecretValue};

use super::{MysqlSink, MysqlSource};
use crate::connectors::ConnectionRef;
use crate::connectors::sql_test_support::{destination, read_all, write_batches};
pub(super) use crate::connectors::sql_test_support::{err, ok, people};
use crate::connectors::test_servers::{mysql_url, unique_name, unreachable};
use crate::engine::{Counters, CursorFilter, ReadRequest, Rejects, WriteOutcome};
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
        write_batches(&self.sink(), dest, schema, batches, &Counters::default()).await
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
        read_all(&self.source(), &request).await
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
    destination(CONNECTION, fqn, mode, key, evolution)
}

pub(super) fn table_source(fqn: &str) -> SourceSpec {
    crate::connectors::sql_test_support::table_source(CONNECTION, fqn)
}
