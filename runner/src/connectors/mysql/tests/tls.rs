//! MySQL over TLS, against the second MariaDB test server (the one that serves TLS with a
//! certificate the test certificate authority signed, `scripts/services`): the default
//! `sslMode: require` and `verify-full` with `sslRootCert` connect and move rows; a
//! certificate authority that did not sign the server's certificate is refused.

use sqlx::mysql::{MySqlConnectOptions, MySqlSslMode};
use sqlx::{AssertSqlSafe, ConnectOptions};
use synqx_api::connection::{MysqlConnection, SslMode};
use synqx_api::pipeline::WriteMode;
use synqx_api::{ConnectionSpec, SecretValue};
use synqx_testkit::servers::{mysql_tls, tls_ca, tls_other_ca};
use synqx_testkit::unique_name;

use super::support::{conn, dest, err, ok, people, table_source};
use crate::connectors::tests::Harness;
use crate::secrets::Secrets;

/// A Connection to the TLS server's database with `mode` and `root` as `sslRootCert`.
fn spec(mode: Option<SslMode>, root: Option<&std::path::Path>) -> ConnectionSpec {
    let s = mysql_tls();
    ConnectionSpec {
        mysql: Some(MysqlConnection {
            host: s.host,
            port: Some(s.port),
            database: s.database,
            user: SecretValue::plain(s.user),
            password: Some(SecretValue::plain(s.password)),
            ssl_mode: mode,
            ssl_root_cert: root.map(|p| SecretValue::plain(p.display().to_string())),
        }),
        ..Default::default()
    }
}

/// Runs a statement on the TLS server as the tests' user, over TLS.
async fn admin(sql: &str) {
    let s = mysql_tls();
    let mut conn = MySqlConnectOptions::new()
        .host(&s.host)
        .port(s.port)
        .username(&s.user)
        .password(&s.password)
        .database(&s.database)
        .ssl_mode(MySqlSslMode::Required)
        .connect()
        .await
        .unwrap_or_else(|e| panic!("{}", s.unreachable("the TLS MariaDB", e)));
    sqlx::raw_sql(AssertSqlSafe(sql.to_string()))
        .execute(&mut conn)
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"));
}

/// Writes two rows through the connector and reads them back through it, by content.
async fn round_trip(spec: &ConnectionSpec) {
    let secrets = Secrets::default();
    let harness = Harness::open(&conn(spec, &secrets));
    let table = unique_name("sx_tls");
    let batch = people(&[(1, Some("ada")), (2, Some("grace"))]);
    let written = ok(harness
        .write(
            dest(&table, WriteMode::Overwrite, &[], None),
            batch.schema(),
            vec![Ok(batch.clone())],
        )
        .await);
    assert_eq!(written.rows, 2);
    let (_, batches) = ok(harness
        .read_with(
            table_source(&table),
            None,
            1 << 20,
            crate::engine::Rejects::failing(),
        )
        .await);
    admin(&format!("DROP TABLE `{table}`")).await;
    assert_eq!(batches.len(), 1, "{batches:?}");
    // The table's columns are nullable; the values are what was written.
    assert_eq!(batches[0].columns(), batch.columns());
}

/// Why reading through a Connection `spec` fails.
async fn read_error(spec: &ConnectionSpec) -> String {
    let secrets = Secrets::default();
    let harness = Harness::open(&conn(spec, &secrets));
    err(harness
        .read_with(
            table_source("anything"),
            None,
            1 << 20,
            crate::engine::Rejects::failing(),
        )
        .await)
}

#[tokio::test]
async fn the_default_require_connects_over_tls_and_moves_rows() {
    round_trip(&spec(None, None)).await;
}

#[tokio::test]
async fn verify_full_with_the_authority_connects_and_moves_rows() {
    round_trip(&spec(Some(SslMode::VerifyFull), Some(&tls_ca()))).await;
    round_trip(&spec(Some(SslMode::VerifyCa), Some(&tls_ca()))).await;
}

#[tokio::test]
async fn another_authority_is_refused_saying_what_to_check() {
    let e = read_error(&spec(Some(SslMode::VerifyFull), Some(&tls_other_ca()))).await;
    let s = mysql_tls();
    assert!(
        e.starts_with(&format!(
            "Connection \"shop-db\" (MySQL at {}:{}, database \"{}\"): connecting: ",
            s.host, s.port, s.database
        )),
        "{e}"
    );
    assert!(
        e.contains("certificate")
            && e.contains("check mysql.sslMode (verify-full) and the server's certificate: is ")
            && e.contains("the certificate authority that signed the server's certificate"),
        "{e}"
    );
    let e = read_error(&spec(Some(SslMode::VerifyFull), None)).await;
    assert!(
        e.contains("a server whose certificate a private authority signed needs mysql.sslRootCert"),
        "{e}"
    );
}
