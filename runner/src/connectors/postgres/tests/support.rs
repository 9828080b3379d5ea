//! What the PostgreSQL tests share: a schema of its own on the test server per test, the
//! connector opened on it through the registry, and the database read back through a separate
//! connection so assertions see what was committed.

use std::sync::Arc;

use arrow::array::RecordBatch;
use arrow::datatypes::SchemaRef;
use synqx_api::connection::PostgresConnection;
use synqx_api::pipeline::{Destination, Source as SourceSpec, WriteMode};
use synqx_api::{ConnectionSpec, SecretValue};
use synqx_testkit::postgres::{self as server, Schema};
pub(super) use synqx_testkit::servers::postgres as server_url;

use crate::connectors::ConnectionRef;
use crate::connectors::tests::{self, Harness};
pub(super) use crate::connectors::tests::{err as message, upstream_error};
use crate::engine::{Counters, WriteOutcome};
use crate::error::Result;
use crate::secrets::Secrets;

pub const CONNECTION: &str = "warehouse";
/// The Secret and key the tests' Connections read the password from.
pub const SECRET: &str = "pg-test";
pub const SECRET_KEY: &str = "password";

/// One test's schema and the Connection that reaches it.
pub struct Pg {
    pub schema: String,
    pub spec: ConnectionSpec,
    pub secrets: Secrets,
    /// The schema this test created, dropped when it ends; `None` for a schema it only uses.
    _owned: Option<Schema>,
}

impl Pg {
    /// A fresh schema on the test server.
    pub async fn new(prefix: &str) -> Pg {
        // Schema names starting with `pg_` are reserved.
        let owned = Schema::new(&mut server::connect().await, &format!("sx_{prefix}")).await;
        let mut pg = Pg::on_schema(owned.name.clone(), None, None);
        pg._owned = Some(owned);
        pg
    }

    /// A Connection to the test server as `user` with `password` (the superuser by default).
    pub fn on_schema(schema: String, user: Option<&str>, password: Option<&str>) -> Pg {
        let s = server_url();
        let spec = ConnectionSpec {
            postgres: Some(PostgresConnection {
                host: s.host,
                port: Some(s.port),
                database: s.database,
                user: SecretValue::plain(user.unwrap_or(&s.user)),
                password: Some(SecretValue::from_secret(SECRET, SECRET_KEY)),
                // The default, `require`: the test server serves TLS (scripts/services).
                ssl_mode: None,
                ssl_root_cert: None,
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
            _owned: None,
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

    /// The Connection as it is now, opened as a step opens it.
    pub fn harness(&self) -> Harness {
        Harness::open(&self.conn())
    }

    /// `schema.table`, the FQN of a table of this test.
    pub fn fqn(&self, table: &str) -> String {
        format!("{}.{table}", self.schema)
    }

    /// Runs statements as the superuser.
    pub async fn sql(&self, sql: &str) {
        server::exec(&mut server::connect().await, sql).await;
    }

    /// Every row of a query as PostgreSQL prints a row value: `(1,a,)`.
    pub async fn dump(&self, query: &str) -> Vec<String> {
        server::row_values(&mut server::connect().await, query).await
    }

    /// The tables of this test's schema.
    pub async fn tables(&self) -> Vec<String> {
        let sql = format!(
            "SELECT tablename::text FROM pg_tables WHERE schemaname = '{}' ORDER BY 1",
            self.schema
        );
        server::rows(&mut server::connect().await, &sql)
            .await
            .into_iter()
            .flatten()
            .flatten()
            .collect()
    }

    pub async fn write(
        &self,
        destination: Destination,
        schema: SchemaRef,
        batches: Vec<Result<RecordBatch>>,
    ) -> Result<WriteOutcome> {
        self.harness().write(destination, schema, batches).await
    }

    pub async fn write_counted(
        &self,
        destination: Destination,
        schema: SchemaRef,
        batches: Vec<Result<RecordBatch>>,
        counters: &Arc<Counters>,
    ) -> Result<WriteOutcome> {
        self.harness()
            .write_counted(destination, schema, batches, counters)
            .await
    }
}

pub fn destination(fqn: &str, mode: WriteMode, key: &[&str]) -> Destination {
    tests::destination(CONNECTION, fqn, mode, key, None)
}

pub fn source(fqn: &str) -> SourceSpec {
    tests::table_source(CONNECTION, fqn)
}
