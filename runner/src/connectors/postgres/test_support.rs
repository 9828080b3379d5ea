//! Helpers of the tests: a schema of its own on the test server per test, the connector
//! opened on it as the engine opens it, and the database read back through a separate
//! connection so assertions see what was committed.

use std::str::FromStr;
use std::sync::Arc;

use arrow::array::RecordBatch;
use arrow::datatypes::SchemaRef;
use sqlx::postgres::{PgConnectOptions, PgConnection};
use sqlx::{AssertSqlSafe, ConnectOptions, Connection};
use synqx_api::connection::PostgresConnection;
use synqx_api::pipeline::{Destination, Source as SourceSpec, WriteMode};
use synqx_api::{ConnectionSpec, SecretValue};

use super::{PostgresSink, PostgresSource};
use crate::connectors::ConnectionRef;
use crate::connectors::sql_test_support::{self, read_all, write_batches};
use crate::connectors::test_servers::{postgres_url, unique_name, unreachable};
use crate::engine::{Counters, CursorFilter, ReadRequest, Rejects, WriteOutcome};
use crate::error::{Error, Result};
use crate::secrets::Secrets;

pub const CONNECTION: &str = "warehouse";
/// The Secret and key the tests' Connections read the password from.
pub const SECRET: &str = "pg-test";
pub const SECRET_KEY: &str = "password";

/// The parts of the test server's URL.
pub struct Server {
    pub host: String,
    pub port: u16,
    pub user: String,
    pub password: String,
    pub database: String,
}

pub fn server() -> Server {
    let url = postgres_url();
    let rest = url.split_once("://").map_or(url.as_str(), |(_, r)| r);
    let (userinfo, hostpart) = rest.split_once('@').unwrap_or(("", rest));
    let (user, password) = userinfo.split_once(':').unwrap_or((userinfo, ""));
    let (hostport, database) = hostpart.split_once('/').unwrap_or((hostpart, "postgres"));
    let (host, port) = hostport.split_once(':').unwrap_or((hostport, "5432"));
    Server {
        host: host.into(),
        port: port.parse().unwrap_or(5432),
        user: user.into(),
        password: password.into(),
        database: database.split('?').next().unwrap_or(database).into(),
    }
}

/// A connection to the test server as its superuser.
pub async fn admin() -> PgConnection {
    let url = postgres_url();
    let options = PgConnectOptions::from_str(&url).unwrap_or_else(|e| panic!("{url}: {e}"));
    options
        .connect()
        .await
        .unwrap_or_else(|e| panic!("{}", unreachable("PostgreSQL", &url, e)))
}

/// One test's schema and the Connection that reaches it.
pub struct Pg {
    pub schema: String,
    pub spec: ConnectionSpec,
    pub secrets: Secrets,
}

impl Pg {
    /// A fresh schema on the test server.
    pub async fn new(prefix: &str) -> Pg {
        // Schema names starting with `pg_` are reserved.
        let schema = unique_name(&format!("sx_{prefix}"));
        let pg = Pg::on_schema(schema, None, None);
        pg.sql(&format!("CREATE SCHEMA \"{}\"", pg.schema)).await;
        pg
    }

    /// A Connection to the test server as `user` with `password` (the superuser by default).
    pub fn on_schema(schema: String, user: Option<&str>, password: Option<&str>) -> Pg {
        let s = server();
        let spec = ConnectionSpec {
            postgres: Some(PostgresConnection {
                host: s.host,
                port: Some(s.port),
                database: s.database,
                user: SecretValue::plain(user.unwrap_or(&s.user)),
                password: Some(SecretValue::from_secret(SECRET, SECRET_KEY)),
                ssl_mode: Some(synqx_api::connection::SslMode::Disable),
            }),
            ..Default::default()
        };
        let secrets = Secrets::new(
            [],
            [(
                Secrets::env_name(SECRET, SECRET_KEY),
                password.unwrap_or(&s.password).to_string(),
            )],
        );
        Pg {
            schema,
            spec,
            secrets,
        }
    }

    pub fn conn(&self) -> ConnectionRef<'_> {
        ConnectionRef {
            name: CONNECTION,
            spec: &self.spec,
            base_dir: ".".into(),
            secrets: &self.secrets,
        }
    }

    pub fn source(&self) -> PostgresSource {
        PostgresSource::new(&self.conn()).unwrap_or_else(|e| panic!("{e}"))
    }

    pub fn sink(&self) -> PostgresSink {
        PostgresSink::new(&self.conn()).unwrap_or_else(|e| panic!("{e}"))
    }

    /// `schema.table`, the FQN of a table of this test.
    pub fn fqn(&self, table: &str) -> String {
        format!("{}.{table}", self.schema)
    }

    /// Runs statements as the superuser.
    pub async fn sql(&self, sql: &str) {
        let mut conn = admin().await;
        sqlx::raw_sql(AssertSqlSafe(sql.to_string()))
            .execute(&mut conn)
            .await
            .unwrap_or_else(|e| panic!("{sql}: {e}"));
        let _ = conn.close().await;
    }

    /// Every row of a query as PostgreSQL prints a row value: `(1,a,)`.
    pub async fn dump(&self, query: &str) -> Vec<String> {
        let mut conn = admin().await;
        let sql = format!("SELECT r::text FROM ({query}) r");
        let rows: Vec<String> = sqlx::query_scalar(AssertSqlSafe(sql.clone()))
            .fetch_all(&mut conn)
            .await
            .unwrap_or_else(|e| panic!("{sql}: {e}"));
        let _ = conn.close().await;
        rows
    }

    /// Whether a relation of this test's schema exists.
    pub async fn tables(&self) -> Vec<String> {
        let mut conn = admin().await;
        let rows: Vec<String> = sqlx::query_scalar(
            "SELECT tablename::text FROM pg_tables WHERE schemaname = $1 ORDER BY 1",
        )
        .bind(&self.schema)
        .fetch_all(&mut conn)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
        let _ = conn.close().await;
        rows
    }

    /// Drops the schema and everything in it.
    pub async fn drop(self) {
        self.sql(&format!("DROP SCHEMA \"{}\" CASCADE", self.schema))
            .await;
    }

    /// Writes batches through the engine's `Sink::write`.
    pub async fn write(
        &self,
        destination: Destination,
        schema: SchemaRef,
        batches: Vec<Result<RecordBatch>>,
    ) -> Result<WriteOutcome> {
        let counters = Counters::default();
        self.write_counted(destination, schema, batches, &counters)
            .await
    }

    pub async fn write_counted(
        &self,
        destination: Destination,
        schema: SchemaRef,
        batches: Vec<Result<RecordBatch>>,
        counters: &Counters,
    ) -> Result<WriteOutcome> {
        write_batches(&self.sink(), destination, schema, batches, counters).await
    }

    /// Reads an asset through the engine's `Source::read`.
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
            rejects: Rejects::new(Default::default(), None, Arc::new(Counters::default())),
        };
        read_all(&self.source(), &request).await
    }
}

pub fn destination(fqn: &str, mode: WriteMode, key: &[&str]) -> Destination {
    sql_test_support::destination(CONNECTION, fqn, mode, key, None)
}

pub fn source(fqn: &str) -> SourceSpec {
    sql_test_support::table_source(CONNECTION, fqn)
}

/// The message of an error, for assertions.
pub fn message(result: Result<impl std::fmt::Debug>) -> String {
    match result {
        Ok(v) => panic!("expected an error, got {v:?}"),
        Err(e) => e.to_string(),
    }
}

/// An error a stream can return mid-load.
pub fn upstream_error() -> Error {
    Error::BadRow("upstream broke".into())
}
