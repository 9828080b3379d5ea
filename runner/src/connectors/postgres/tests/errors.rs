//! What users read when something is wrong, against the real server: credentials, hosts,
//! databases, tables, privileges; the check probe; the `sql` step body.

use std::sync::Arc;

use arrow::array::{ArrayRef, Int64Array, RecordBatch};
use arrow::datatypes::{DataType, Field, Schema};
use synqx_api::pipeline::WriteMode;

use synqx_testkit::servers::closed_port;
use synqx_testkit::unique_name;

use super::support::{Pg, SECRET, destination, message, server_url as server, source};

/// A Connection like the tests' with one field of its spec changed.
fn changed(change: impl FnOnce(&mut synqx_api::connection::PostgresConnection)) -> Pg {
    let mut pg = Pg::on_schema("public".into(), None, None);
    if let Some(spec) = pg.spec.postgres.as_mut() {
        change(spec);
    }
    pg
}

async fn read_error(pg: &Pg, fqn: &str) -> String {
    message(pg.harness().read_filtered(source(fqn), None, 1 << 20).await)
}

#[tokio::test]
async fn a_wrong_password_names_the_user_and_where_the_password_comes_from() {
    let pg = Pg::on_schema("public".into(), None, Some("Wr0ngPassw0rd"));
    let e = read_error(&pg, "t").await;
    let s = server();
    assert_eq!(
        e,
        format!(
            "Connection \"warehouse\": PostgreSQL at {}:{} rejected the password of user \"{}\" (28P01): the password in key \"password\" of Secret \"{SECRET}\" (postgres.password) is wrong, or the user does not exist; fix the Secret or the user",
            s.host, s.port, s.user
        )
    );
    assert!(!e.contains("Wr0ngPassw0rd"));
    let report = crate::connectors::check(&pg.conn()).await;
    assert_eq!(report.reason.as_str(), "Unauthorized", "{report:?}");
    assert!(!report.ready);
    assert!(!report.message.contains("Wr0ngPassw0rd"));
}

#[tokio::test]
async fn an_unknown_host_and_a_refused_port_say_so() {
    let pg = changed(|spec| spec.host = "no-such-host.invalid".into());
    let e = read_error(&pg, "t").await;
    assert!(
        e.starts_with("Connection \"warehouse\": cannot resolve host \"no-such-host.invalid\""),
        "{e}"
    );
    assert!(e.ends_with("fix postgres.host"), "{e}");

    // A port nothing listens on: refused at once, retried, then reported.
    let port = closed_port();
    let pg = changed(|spec| {
        spec.host = "127.0.0.1".into();
        spec.port = Some(port);
    });
    let report = crate::connectors::check(&pg.conn()).await;
    assert_eq!(report.reason.as_str(), "Unreachable", "{report:?}");
    assert_eq!(
        report.message,
        format!(
            "Connection \"warehouse\": cannot connect to PostgreSQL at 127.0.0.1:{port}: connection refused; is the server running and listening on port {port}?"
        )
    );
}

#[tokio::test]
async fn a_missing_database_is_named() {
    let pg = changed(|spec| spec.database = "no_such_db_x".into());
    let e = read_error(&pg, "t").await;
    assert!(
        e.starts_with(
            "Connection \"warehouse\": database \"no_such_db_x\" does not exist on PostgreSQL at"
        ),
        "{e}"
    );
    let report = crate::connectors::check(&pg.conn()).await;
    assert_eq!(report.reason.as_str(), "NotFound", "{report:?}");
}

#[tokio::test]
async fn the_check_connects_and_names_the_database() {
    // A login of its own: the test server's password is also the name of its database, and
    // a secret's value is masked wherever it appears, the database name included.
    let pg = Pg::new("pg_check").await;
    let role = unique_name("sx_check");
    pg.sql(&format!("CREATE ROLE \"{role}\" LOGIN PASSWORD 'ch3ck-pw'"))
        .await;
    let login = Pg::on_schema("public".into(), Some(&role), Some("ch3ck-pw"));
    let report = crate::connectors::check(&login.conn()).await;
    pg.sql(&format!("DROP ROLE \"{role}\"")).await;
    assert!(report.ready, "{report:?}");
    assert_eq!(report.reason.as_str(), "Connected");
    let s = server();
    assert!(
        report.message.starts_with(&format!(
            "Connection \"warehouse\": connected to database \"{}\" on PostgreSQL ",
            s.database
        )),
        "{}",
        report.message
    );
    assert!(
        report.message.contains(&format!("as user \"{role}\"")),
        "{}",
        report.message
    );
    assert!(!report.message.contains("ch3ck-pw"), "{}", report.message);
}

#[tokio::test]
async fn a_missing_source_table_is_named() {
    let pg = Pg::new("pg_missing").await;
    let e = read_error(&pg, &pg.fqn("nope")).await;
    let s = server();
    assert_eq!(
        e,
        format!(
            "Connection \"warehouse\", table \"{}.nope\": the source table does not exist in database \"{}\" (42P01); create it or fix asset.fqn (names are case-sensitive as written)",
            pg.schema, s.database
        )
    );
}

#[tokio::test]
async fn a_user_without_privileges_is_told_what_to_grant() {
    let pg = Pg::new("pg_denied").await;
    let role = unique_name("sx_role");
    pg.sql(&format!(
        "CREATE TABLE \"{0}\".t (id bigint); INSERT INTO \"{0}\".t VALUES (1);
         CREATE ROLE \"{role}\" LOGIN PASSWORD 'r0le-pw';
         GRANT USAGE ON SCHEMA \"{0}\" TO \"{role}\"",
        pg.schema
    ))
    .await;
    let limited = Pg::on_schema(pg.schema.clone(), Some(&role), Some("r0le-pw"));
    let e = read_error(&limited, &pg.fqn("t")).await;
    assert!(
        e.starts_with(&format!(
            "Connection \"warehouse\", table \"{}.t\": permission denied for table t (42501); user \"{role}\" lacks the SELECT privilege: GRANT SELECT ON \"{}\".\"t\" TO \"{role}\"",
            pg.schema, pg.schema
        )),
        "{e}"
    );
    let schema = Arc::new(Schema::new(vec![Field::new("id", DataType::Int64, false)]));
    let batch = RecordBatch::try_new(
        schema.clone(),
        vec![Arc::new(Int64Array::from(vec![2])) as ArrayRef],
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let e = message(
        limited
            .write(
                destination(&pg.fqn("t"), WriteMode::Append, &[]),
                schema,
                vec![Ok(batch)],
            )
            .await,
    );
    assert!(e.contains("permission denied for table t (42501)"), "{e}");
    assert!(e.contains(&format!("user \"{role}\" needs INSERT")), "{e}");
    assert!(!e.contains("r0le-pw"), "{e}");
    assert_eq!(
        pg.dump(&format!("SELECT * FROM \"{}\".t", pg.schema)).await,
        ["(1)"]
    );
    pg.sql(&format!(
        "DROP SCHEMA \"{}\" CASCADE; DROP ROLE \"{role}\"",
        pg.schema
    ))
    .await;
}

#[tokio::test]
async fn sql_statements_run_in_one_transaction_and_a_failure_rolls_all_back() {
    let pg = Pg::new("pg_sql").await;
    let t = format!("\"{}\".t", pg.schema);
    let statements = vec![
        format!("CREATE TABLE {t} (id int)"),
        format!("INSERT INTO {t} VALUES (1), (2), (3)"),
        format!("UPDATE {t} SET id = id + 10 WHERE id > 1"),
    ];
    let affected = crate::connectors::run_sql(&pg.conn(), &statements)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(affected, 5);
    let failing = vec![
        format!("DELETE FROM {t}"),
        format!("INSERT INTO {t} VALUES ('not a number')"),
    ];
    let e = message(crate::connectors::run_sql(&pg.conn(), &failing).await);
    assert!(
        e.starts_with("Connection \"warehouse\": statements[1] failed, nothing was committed: invalid input syntax for type integer: \"…\" (22P02)"),
        "{e}"
    );
    assert!(!e.contains("not a number"), "the value leaked: {e}");
    assert_eq!(
        pg.dump(&format!("SELECT * FROM {t} ORDER BY id")).await,
        ["(1)", "(12)", "(13)"]
    );
}

/// A row the table refuses is named by its constraint and key columns, never by its values:
/// the message reaches the run's status and Events, which readers of the run see.
#[tokio::test]
async fn a_refused_row_names_its_constraint_but_never_its_values() {
    let pg = Pg::new("pg_withheld").await;
    let t = pg.fqn("people");
    pg.sql(&format!(
        "CREATE TABLE {t} (id bigint PRIMARY KEY, name text NOT NULL UNIQUE); INSERT INTO {t} VALUES (1, 'zq-hidden-name')"
    ))
    .await;
    let write = |rows: &'static [(i64, Option<&'static str>)]| {
        let batch = crate::connectors::tests::people(rows);
        pg.write(
            destination(&t, WriteMode::Append, &[]),
            batch.schema(),
            vec![Ok(batch)],
        )
    };
    let duplicate = message(write(&[(2, Some("zq-hidden-name"))]).await);
    assert!(
        duplicate.contains(
            "violates unique constraint \"people_name_key\" (23505); Key (name)=(…) already exists."
        ),
        "{duplicate}"
    );
    let missing = message(write(&[(3, None)]).await);
    assert!(
        missing.contains("violates not-null constraint (23502); Failing row contains (…)."),
        "{missing}"
    );
    for e in [&duplicate, &missing] {
        assert!(
            !e.contains("zq-hidden") && !e.contains("(3,"),
            "a value leaked: {e}"
        );
    }
    assert_eq!(
        pg.dump(&format!("SELECT id, name FROM {t}")).await,
        ["(1,zq-hidden-name)"]
    );
}
