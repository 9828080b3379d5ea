//! What the SQL Server tests share: the Connection of iridium-server (`scripts/emulators up`
//! starts it and prints `SYNQX_TEST_SQLSERVER`), the connector opened through [`Harness`] as
//! the registry opens it, reads through it, and statements run on the server directly.

use std::collections::BTreeMap;

use arrow::array::RecordBatch;
use arrow::datatypes::SchemaRef;
use synqx_api::connection::SqlServerConnection;
use synqx_api::{ConnectionSpec, SecretValue};
use synqx_testkit::{emulators, unique_name};

use crate::connectors::sqlserver::connect::connect;
use crate::connectors::sqlserver::{SqlServer, SqlServerConfig};
use crate::connectors::tests::{Harness, ok, table_source};
use crate::connectors::{ConnectionRef, Connector};
use crate::engine::{CursorFilter, Rejects};
use crate::error::Result;
use crate::secrets::Secrets;

pub(super) const CONNECTION: &str = "mssql";

/// The login's password on the test server.
pub(super) fn password() -> String {
    emulators::sqlserver().password
}

pub(super) fn spec(password: &str) -> ConnectionSpec {
    let server = emulators::sqlserver();
    ConnectionSpec {
        sqlserver: Some(SqlServerConnection {
            host: server.host,
            port: Some(server.port),
            database: server.database,
            user: SecretValue::plain(&server.user),
            password: Some(SecretValue::plain(password)),
            encrypt: Some(false),
            trust_server_certificate: Some(true),
        }),
        ..Default::default()
    }
}

fn conn<'a>(spec: &'a ConnectionSpec, secrets: &'a Secrets) -> ConnectionRef<'a> {
    ConnectionRef {
        name: CONNECTION,
        spec,
        base_dir: ".".into(),
        secrets,
    }
}

/// The connector's config for the spec, with the login in plain text: iridium-server's TLS
/// does not interoperate with tiberius's (its handshake ends in "received corrupt message of
/// type InvalidContentType"), so the server runs without TLS.
pub(super) fn settings(spec: &ConnectionSpec) -> SqlServerConfig {
    let secrets = Secrets::default();
    let mut settings = ok(SqlServer::config(&conn(spec, &secrets)));
    settings.plaintext_login = true;
    settings
}

/// The connector opened from that config, as the registry opens it.
fn harness(spec: &ConnectionSpec) -> Harness {
    Harness {
        source: ok(SqlServer::source(settings(spec))),
        sink: ok(SqlServer::sink(settings(spec))),
    }
}

/// Reads a table (or a query), with an incremental cursor when given.
pub(super) async fn read(
    spec: &ConnectionSpec,
    fqn: &str,
    filter: Option<CursorFilter>,
) -> Result<(SchemaRef, Vec<RecordBatch>)> {
    let mut source = table_source(CONNECTION, fqn);
    source.columns = BTreeMap::new();
    harness(spec)
        .read_with(source, filter, 1 << 20, Rejects::failing())
        .await
}

/// Runs statements, as one batch on one connection of the connector's own connect (a
/// `#temporary` table lives as long as that connection); the server's answer to them.
pub(super) async fn try_exec(
    spec: &ConnectionSpec,
    sql: &str,
) -> std::result::Result<(), tiberius::error::Error> {
    let settings = settings(spec);
    let mut client = connect(&settings).await.unwrap_or_else(|e| {
        let at = format!("{}:{}", settings.host, settings.port);
        panic!("{}", emulators::unreachable("iridium-server", &at, e))
    });
    let outcome = match client.simple_query(sql).await {
        Ok(results) => results.into_results().await.map(drop),
        Err(e) => Err(e),
    };
    let _ = client.close().await;
    outcome
}

/// Runs setup statements, failing the test on an error.
pub(super) async fn exec(spec: &ConnectionSpec, sql: &str) {
    try_exec(spec, sql)
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"));
}

/// A table of its own with three rows.
pub(super) async fn orders(spec: &ConnectionSpec) -> String {
    let table = unique_name("orders");
    exec(
        spec,
        &format!(
            "CREATE TABLE {table} (id int NOT NULL, amount decimal(38,10) NULL, name nvarchar(50) NULL, \
             flag bit NULL)"
        ),
    )
    .await;
    exec(
        spec,
        &format!(
            "INSERT INTO {table} VALUES (1, 1234567890123456789012345678.0123456789, N'Zoë', 1), \
             (2, -0.0000000001, N'', 0), (3, NULL, NULL, NULL)"
        ),
    )
    .await;
    table
}
