//! What users read when something is wrong, against the real MariaDB: every message names the
//! Connection and what failed, and no message carries the password. Also the `check` probe and
//! the `sql` step.

use synqx_api::ConnectionSpec;
use synqx_api::connection::CheckReport;
use synqx_api::pipeline::WriteMode;

use synqx_testkit::servers::{closed_port, mysql as server};
use synqx_testkit::unique_name;

use super::support::{CONNECTION, Db, admin, conn, dest, err, ok, people, spec, table_source};
use crate::connectors::tests::Harness;
use crate::engine::{ReadRequest, Rejects};
use crate::secrets::Secrets;

const SECRET: &str = "Sup3r-secret-pw!";

async fn read_error(spec: &ConnectionSpec, fqn: &str) -> String {
    let secrets = Secrets::default();
    let source = crate::connectors::source(&conn(spec, &secrets));
    let request = ReadRequest {
        spec: table_source(fqn),
        filter: None,
        batch_bytes: 1 << 20,
        rejects: Rejects::failing(),
        memory: Default::default(),
    };
    let result = match source {
        Ok(s) => s.read(&request).await.map(|_| ()),
        Err(e) => Err(e),
    };
    let message = err(result);
    assert!(!message.contains(SECRET), "the password leaked: {message}");
    message
}

async fn check(spec: ConnectionSpec) -> CheckReport {
    let report = crate::check::check_spec(CONNECTION, spec, std::path::Path::new(".")).await;
    assert!(
        !report.message.contains(SECRET),
        "the password leaked: {report:?}"
    );
    report
}

/// The test server has no TLS (on purpose: `scripts/services`), so a Connection that leaves
/// `sslMode` at its default refuses to log in there, and says what to do; `disable` is only
/// ever a choice written down.
#[tokio::test]
async fn the_default_ssl_mode_refuses_a_server_without_tls() {
    let s = server();
    let mut default = spec("synqx", &s.user, SECRET, s.port);
    if let Some(m) = default.mysql.as_mut() {
        m.ssl_mode = None;
    }
    let e = read_error(&default, "t").await;
    assert_eq!(
        e,
        format!(
            "Connection \"shop-db\" (MySQL at {}:{}, database \"synqx\"): connecting: error occurred while attempting to establish a TLS connection: server does not support TLS: the server does not offer TLS, which mysql.sslMode: require requires (require is the default): enable TLS on the server, or set mysql.sslMode: disable to send the login in plain text over a network you trust",
            s.host, s.port
        )
    );
    let report = check(default).await;
    assert_eq!(report.reason.as_str(), "Invalid", "{report:?}");
    assert!(report.message.contains("does not offer TLS"), "{report:?}");
}

#[tokio::test]
async fn a_wrong_password_is_named_without_the_password() {
    let s = server();
    let db_name = unique_name("sx_my");
    let wrong = spec("synqx", &s.user, SECRET, s.port);
    let e = read_error(&wrong, "t").await;
    assert!(
        e.starts_with(&format!(
            "Connection \"shop-db\" (MySQL at {}:{}, database \"synqx\"): connecting: error returned from database: 1045 (28000): Access denied for user",
            s.host, s.port
        )) && e.ends_with(": check mysql.user and mysql.password"),
        "{e}"
    );
    let report = check(wrong).await;
    assert_eq!(report.reason.as_str(), "Unauthorized", "{report:?}");
    assert!(report.message.contains("1045"), "{report:?}");

    let unknown = spec(&db_name, &s.user, &s.password, s.port);
    let e = read_error(&unknown, "t").await;
    assert!(
        e.contains("1049")
            && e.ends_with(": the database does not exist; create it or fix mysql.database"),
        "{e}"
    );
    let report = check(unknown).await;
    assert_eq!(report.reason.as_str(), "NotFound", "{report:?}");
}

#[tokio::test]
async fn unreachable_servers_are_named_with_what_to_check() {
    let s = server();
    let refused = spec("synqx", &s.user, SECRET, closed_port());
    let report = check(refused.clone()).await;
    assert_eq!(report.reason.as_str(), "Unreachable", "{report:?}");
    assert!(
        report.message.ends_with(
            "nothing accepts connections there; is the server running and mysql.port right?"
        ),
        "{report:?}"
    );
    let e = read_error(&refused, "t").await;
    assert!(e.contains("is the server running"), "{e}");

    let mut unknown_host = spec("synqx", &s.user, SECRET, s.port);
    if let Some(m) = unknown_host.mysql.as_mut() {
        m.host = "no-such-host.invalid".into();
    }
    let e = read_error(&unknown_host, "t").await;
    assert!(
        e.starts_with("Connection \"shop-db\" (MySQL at no-such-host.invalid:")
            && e.ends_with(": check mysql.host"),
        "{e}"
    );
}

#[tokio::test]
async fn check_reports_a_working_connection() {
    let db = Db::new().await;
    let report = check(db.spec.clone()).await;
    assert!(report.ready, "{report:?}");
    assert_eq!(report.reason.as_str(), "Connected");
    let s = server();
    assert_eq!(
        report.message,
        format!(
            "Connection \"shop-db\" (MySQL at {}:{}, database \"{}\"): connected; the session uses database \"{}\"",
            s.host, s.port, db.name, db.name
        )
    );
}

#[tokio::test]
async fn a_user_without_grants_gets_permission_errors_naming_the_table() {
    let db = Db::new().await;
    db.sql("CREATE TABLE allowed (id BIGINT); CREATE TABLE secret (id BIGINT)")
        .await;
    let user = unique_name("u");
    admin(&format!(
        "CREATE USER '{user}'@'%' IDENTIFIED BY '{SECRET}'"
    ))
    .await;
    admin(&format!(
        "CREATE USER '{user}'@'127.0.0.1' IDENTIFIED BY '{SECRET}'"
    ))
    .await;
    // Only SELECT on one table, so the user can connect to the database and nothing else.
    for host in ["%", "127.0.0.1"] {
        admin(&format!(
            "GRANT SELECT ON `{}`.`allowed` TO '{user}'@'{host}'",
            db.name
        ))
        .await;
    }
    let s = server();
    let limited = spec(&db.name, &user, SECRET, s.port);
    let e = read_error(&limited, "secret").await;
    assert!(
        e.starts_with(
            "Connection \"shop-db\", table \"secret\": error returned from database: 1142"
        ) && e.ends_with(": grant the Connection's user SELECT on it"),
        "{e}"
    );
    let secrets = Secrets::default();
    let sink = Harness::open(&conn(&limited, &secrets));
    let batch = people(&[(1, Some("x"))]);
    let destination = dest(
        "allowed",
        WriteMode::Append,
        &[],
        Some(synqx_api::pipeline::SchemaEvolution::Ignore),
    );
    let e = err(sink
        .write(destination, batch.schema(), vec![Ok(batch.clone())])
        .await);
    assert!(!e.contains(SECRET));
    assert!(
        e.starts_with("Connection \"shop-db\", table \"allowed\": inserting rows from 1 of the load: error returned from database: 1142 (42000): INSERT command denied"),
        "{e}"
    );
    for host in ["%", "127.0.0.1"] {
        admin(&format!("DROP USER '{user}'@'{host}'")).await;
    }
}

#[tokio::test]
async fn sql_steps_run_in_one_transaction_and_name_the_failing_statement() {
    let db = Db::new().await;
    db.sql("CREATE TABLE n (v INT)").await;
    let statements = vec![
        "INSERT INTO n VALUES (1), (2)".to_string(),
        "UPDATE n SET v = v * 10".to_string(),
    ];
    let affected = ok(crate::connectors::run_sql(&db.conn(), &statements).await);
    assert_eq!(affected, 4);
    assert_eq!(db.dump("SELECT v FROM n ORDER BY v").await, ["10", "20"]);
    let failing = vec![
        "INSERT INTO n VALUES (3)".to_string(),
        "INSERT INTO missing VALUES (1)".to_string(),
    ];
    let e = err(crate::connectors::run_sql(&db.conn(), &failing).await);
    assert!(
        e.starts_with("Connection \"shop-db\": statements[1] failed, the data statements before it were rolled back (DDL commits at once): error returned from database: 1146"),
        "{e}"
    );
    assert_eq!(db.dump("SELECT v FROM n ORDER BY v").await, ["10", "20"]);
    let affected = ok(crate::connectors::run_sql(
        &db.conn(),
        &["DELETE FROM n WHERE v = 10".to_string()],
    )
    .await);
    assert_eq!(affected, 1);
}

/// Why the sink does not use `LOAD DATA LOCAL INFILE`: sqlx 0.9 does not announce the
/// capability, so the server refuses the statement before asking for a file.
#[tokio::test]
async fn load_data_local_infile_is_refused_through_sqlx() {
    let db = Db::new().await;
    db.sql("CREATE TABLE target (id BIGINT)").await;
    let mut conn = db.connect().await;
    let result = sqlx::raw_sql("LOAD DATA LOCAL INFILE '/dev/null' INTO TABLE target")
        .execute(&mut conn)
        .await;
    let e = result
        .map(|_| ())
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
    assert!(
        e.contains("1148") || e.contains("4166") || e.to_ascii_lowercase().contains("not allowed"),
        "{e}"
    );
}

/// A row the table refuses is named by its key, never by its values: the message reaches the
/// run's status and Events, which readers of the run see.
#[tokio::test]
async fn a_refused_row_names_its_key_but_never_its_values() {
    let db = Db::new().await;
    db.sql("CREATE TABLE people (id BIGINT PRIMARY KEY, name VARCHAR(40) NOT NULL, UNIQUE KEY by_name (name))")
        .await;
    db.sql("INSERT INTO people VALUES (1, 'zq-hidden-name')")
        .await;
    let e = err(db
        .write(
            dest("people", WriteMode::Append, &[], None),
            people(&[]).schema(),
            vec![Ok(people(&[(2, Some("zq-hidden-name"))]))],
        )
        .await);
    assert!(e.contains("Duplicate entry '…' for key 'by_name'"), "{e}");
    assert!(!e.contains("zq-hidden"), "a value leaked: {e}");
    assert_eq!(
        db.dump("SELECT id, name FROM people").await,
        ["1, zq-hidden-name"]
    );
}
