//! What the MySQL tests share: a database of its own on the MariaDB test server per test, the
//! connector opened on it through the registry, and the database read back through a
//! separate connection so assertions see what was committed.

use sqlx::mysql::MySqlConnection;
use synqx_api::connection::{MysqlConnection, SslMode};
use synqx_api::{ConnectionSpec, SecretValue};
use synqx_testkit::mysql::{self as server, Database};
use synqx_testkit::rows::lines;

use crate::connectors::ConnectionRef;
use crate::connectors::tests::{Harness, opened_through_harness, specs_naming};
pub(super) use crate::connectors::tests::{err, ok, people};

use crate::secrets::Secrets;

pub(super) const CONNECTION: &str = "shop-db";

/// The tests' Connections carry their passwords as plain values.
static SECRETS: std::sync::LazyLock<Secrets> = std::sync::LazyLock::new(Secrets::default);

/// A Connection spec for the test server with the given database, user and password.
pub(super) fn spec(database: &str, user: &str, password: &str, port: u16) -> ConnectionSpec {
    ConnectionSpec {
        mysql: Some(MysqlConnection {
            host: synqx_testkit::servers::mysql().host,
            port: Some(port),
            database: database.into(),
            user: SecretValue::plain(user),
            password: Some(SecretValue::plain(password)),
            ssl_mode: Some(SslMode::Disable),
            ssl_root_cert: None,
        }),
        ..Default::default()
    }
}

/// A database of its own, dropped when the test ends, and the connector opened on it.
pub(super) struct Db {
    pub name: String,
    pub spec: ConnectionSpec,
    database: Database,
    harness: Harness,
}

opened_through_harness!(Db);

impl Db {
    pub async fn new() -> Db {
        let database = Database::new("sx_my").await;
        let s = synqx_testkit::servers::mysql();
        let spec = spec(&database.name, &s.user, &s.password, s.port);
        let harness = Harness::open(&conn(&spec, &SECRETS));
        Db {
            name: database.name.clone(),
            spec,
            database,
            harness,
        }
    }

    pub async fn connect(&self) -> MySqlConnection {
        self.database.connect().await
    }

    pub async fn sql(&self, sql: &str) {
        server::exec(&mut self.connect().await, sql).await;
    }

    pub fn conn(&self) -> ConnectionRef<'_> {
        conn(&self.spec, &SECRETS)
    }

    /// What an `information_schema` view says about this test's database: `SELECT {columns}
    /// FROM information_schema.{view} WHERE TABLE_SCHEMA = <this database> {rest}`.
    pub async fn catalog(&self, columns: &str, view: &str, rest: &str) -> Vec<String> {
        let schema = &self.name;
        self.dump(&format!(
            "SELECT {columns} FROM information_schema.{view} WHERE TABLE_SCHEMA = '{schema}' {rest}"
        ))
        .await
    }

    /// Every row of a query, its values as text (`NULL`, binary as hex) joined by `, `.
    pub async fn dump(&self, sql: &str) -> Vec<String> {
        let rows = server::rows(&mut self.connect().await, sql).await;
        lines(
            rows.into_iter()
                .map(|row| {
                    row.into_iter()
                        .map(|v| v.unwrap_or_else(|| "NULL".into()))
                        .collect()
                })
                .collect(),
        )
    }
}

/// The Connection `spec` as the tests name it.
pub(super) fn conn<'a>(spec: &'a ConnectionSpec, secrets: &'a Secrets) -> ConnectionRef<'a> {
    ConnectionRef {
        name: CONNECTION,
        spec,
        base_dir: ".".into(),
        secrets,
    }
}

/// Runs statements as the admin user, outside any test database.
pub(super) async fn admin(sql: &str) {
    server::exec(&mut server::connect(None).await, sql).await;
}

specs_naming!(CONNECTION);
