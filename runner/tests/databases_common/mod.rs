//! What the database integration tests share: the test servers (a server that is not there
//! fails the test), one schema or database per test, pipeline files with the Connections of
//! both servers, and the `synqx` binary.

#![allow(dead_code)]

use std::path::Path;
use std::process::{Child, Command, Output, Stdio};

use sqlx::mysql::MySqlConnection;
use sqlx::postgres::PgConnection;
use sqlx::{AssertSqlSafe, Connection};
// The crate compiles its copy only for its own unit tests, so the integration tests take the
// same file.
#[path = "../../src/connectors/test_servers.rs"]
mod test_servers;

use test_servers::{mysql_url, postgres_url, unique_name, unreachable};

/// The parts of a server URL a Connection document needs.
pub struct Server {
    pub user: String,
    pub password: String,
    pub host: String,
    pub port: u16,
    pub database: String,
}

/// `scheme://user:password@host:port/database`, the only shape the test URLs have.
pub fn server(url: &str) -> Server {
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    let (login, rest) = rest.split_once('@').unwrap_or(("", rest));
    let (user, password) = login.split_once(':').unwrap_or((login, ""));
    let (address, database) = rest.split_once('/').unwrap_or((rest, ""));
    let (host, port) = address.split_once(':').unwrap_or((address, "0"));
    Server {
        user: user.into(),
        password: password.into(),
        host: host.into(),
        port: port
            .parse()
            .unwrap_or_else(|e| panic!("port of {url}: {e}")),
        database: database.split('?').next().unwrap_or("").into(),
    }
}

pub fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap_or_else(|e| panic!("{e}"))
}

pub async fn pg() -> PgConnection {
    let url = postgres_url();
    PgConnection::connect(&url)
        .await
        .unwrap_or_else(|e| panic!("{}", unreachable("PostgreSQL", &url, e)))
}

/// A connection to the MariaDB server, in `database` when given.
pub async fn my(database: Option<&str>) -> MySqlConnection {
    let mut url = mysql_url();
    if let Some(db) = database {
        let s = server(&url);
        url = format!(
            "mysql://{}:{}@{}:{}/{db}",
            s.user, s.password, s.host, s.port
        );
    }
    MySqlConnection::connect(&url)
        .await
        .unwrap_or_else(|e| panic!("{}", unreachable("MariaDB", &mysql_url(), e)))
}

pub async fn pg_exec(conn: &mut PgConnection, sql: &str) {
    sqlx::raw_sql(AssertSqlSafe(sql.to_string()))
        .execute(conn)
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"));
}

pub async fn my_exec(conn: &mut MySqlConnection, sql: &str) {
    sqlx::raw_sql(AssertSqlSafe(sql.to_string()))
        .execute(conn)
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"));
}

pub async fn pg_i64(conn: &mut PgConnection, sql: &str) -> i64 {
    sqlx::query_scalar::<_, i64>(AssertSqlSafe(sql.to_string()))
        .fetch_one(conn)
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"))
}

pub async fn pg_text(conn: &mut PgConnection, sql: &str) -> Option<String> {
    sqlx::query_scalar::<_, Option<String>>(AssertSqlSafe(sql.to_string()))
        .fetch_one(conn)
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"))
}

/// Every row of a query whose columns are all text.
pub async fn pg_rows(conn: &mut PgConnection, sql: &str) -> Vec<Vec<Option<String>>> {
    use sqlx::Row;
    let rows = sqlx::query(AssertSqlSafe(sql.to_string()))
        .fetch_all(conn)
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"));
    rows.iter()
        .map(|r| {
            (0..r.len())
                .map(|i| {
                    r.try_get::<Option<String>, _>(i)
                        .unwrap_or_else(|e| panic!("{sql}: column {i}: {e}"))
                })
                .collect()
        })
        .collect()
}

/// Every row of a MariaDB query whose columns are all text.
pub async fn my_rows(conn: &mut MySqlConnection, sql: &str) -> Vec<Vec<Option<String>>> {
    use sqlx::Row;
    let rows = sqlx::query(AssertSqlSafe(sql.to_string()))
        .fetch_all(conn)
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"));
    rows.iter()
        .map(|r| {
            (0..r.len())
                .map(|i| {
                    r.try_get::<Option<String>, _>(i)
                        .unwrap_or_else(|e| panic!("{sql}: column {i}: {e}"))
                })
                .collect()
        })
        .collect()
}

/// A PostgreSQL schema of its own, dropped when the test ends (also when it fails).
pub struct PgSchema {
    pub name: String,
}

impl PgSchema {
    pub async fn new(conn: &mut PgConnection, prefix: &str) -> PgSchema {
        let name = unique_name(prefix);
        pg_exec(conn, &format!("CREATE SCHEMA {name}")).await;
        PgSchema { name }
    }
}

impl Drop for PgSchema {
    fn drop(&mut self) {
        let sql = format!("DROP SCHEMA IF EXISTS {} CASCADE", self.name);
        clean_up(async move {
            if let Ok(mut c) = PgConnection::connect(&postgres_url()).await {
                let _ = sqlx::raw_sql(AssertSqlSafe(sql)).execute(&mut c).await;
            }
        });
    }
}

/// Runs a clean-up on a thread of its own: `Drop` may run inside the test's runtime, which
/// cannot block on another future.
fn clean_up(work: impl std::future::Future<Output = ()> + Send + 'static) {
    let _ = std::thread::spawn(move || runtime().block_on(work)).join();
}

/// A MariaDB database of its own, dropped when the test ends (also when it fails).
pub struct MyDatabase {
    pub name: String,
}

impl MyDatabase {
    pub async fn new(conn: &mut MySqlConnection, prefix: &str) -> MyDatabase {
        let name = unique_name(prefix);
        my_exec(conn, &format!("CREATE DATABASE {name}")).await;
        MyDatabase { name }
    }
}

impl Drop for MyDatabase {
    fn drop(&mut self) {
        let sql = format!("DROP DATABASE IF EXISTS {}", self.name);
        clean_up(async move {
            if let Ok(mut c) = MySqlConnection::connect(&mysql_url()).await {
                let _ = sqlx::raw_sql(AssertSqlSafe(sql)).execute(&mut c).await;
            }
        });
    }
}

/// The Secret and Connection documents: `pg` (the PostgreSQL test database), `my` (the
/// MariaDB database `mysql_database`, when given) and `lake` (a folder), passwords from a
/// Secret so that they are never written into a Connection.
pub fn connections(mysql_database: Option<&str>, lake: Option<&Path>) -> String {
    let pg = server(&postgres_url());
    let my = server(&mysql_url());
    let mut docs = format!(
        r#"apiVersion: v1
kind: Secret
metadata: {{name: dbs}}
stringData: {{pg: "{}", my: "{}"}}
---
apiVersion: synqx.io/v1alpha1
kind: Connection
metadata: {{name: pg}}
spec:
  postgres:
    host: "{}"
    port: {}
    database: "{}"
    user: {{value: "{}"}}
    password: {{secretKeyRef: {{name: dbs, key: pg}}}}
    sslMode: disable
"#,
        pg.password, my.password, pg.host, pg.port, pg.database, pg.user
    );
    if let Some(db) = mysql_database {
        docs.push_str(&format!(
            r#"---
apiVersion: synqx.io/v1alpha1
kind: Connection
metadata: {{name: my}}
spec:
  mysql:
    host: "{}"
    port: {}
    database: "{db}"
    user: {{value: "{}"}}
    password: {{secretKeyRef: {{name: dbs, key: my}}}}
    sslMode: disable
"#,
            my.host, my.port, my.user
        ));
    }
    if let Some(path) = lake {
        docs.push_str(&format!(
            r#"---
apiVersion: synqx.io/v1alpha1
kind: Connection
metadata: {{name: lake}}
spec:
  filesystem: {{path: "{}"}}
"#,
            path.display()
        ));
    }
    docs
}

/// Writes `pipeline.yaml` (the connections, then `pipeline`) into `dir`.
pub fn write_pipeline(dir: &Path, connections: &str, pipeline: &str) {
    std::fs::write(
        dir.join("pipeline.yaml"),
        format!("{connections}---\n{pipeline}"),
    )
    .unwrap_or_else(|e| panic!("{e}"));
}

fn command(dir: &Path, args: &[&str]) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_synqx"));
    cmd.args(args).current_dir(dir);
    cmd
}

/// `synqx ARGS` in `dir`, to completion.
pub fn synqx(dir: &Path, args: &[&str]) -> Output {
    command(dir, args)
        .output()
        .unwrap_or_else(|e| panic!("cannot run synqx: {e}"))
}

/// `synqx ARGS` in `dir`, started and left running.
pub fn spawn_synqx(dir: &Path, args: &[&str]) -> Child {
    command(dir, args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run synqx: {e}"))
}

pub fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// `synqx run pipeline.yaml --state state` in `dir`, which must succeed.
pub fn run_ok(dir: &Path, extra: &[&str]) -> String {
    let mut args = vec!["run", "pipeline.yaml", "--state", "state"];
    args.extend_from_slice(extra);
    let out = synqx(dir, &args);
    let t = text(&out);
    assert!(out.status.success(), "synqx run failed:\n{t}");
    t
}

/// The watermark `synqx state show` prints for `pipeline/step`, None when there is none.
pub fn watermark(dir: &Path, pipeline: &str, step: &str) -> Option<String> {
    let out = synqx(dir, &["state", "show", "--state", "state"]);
    let t = text(&out);
    assert!(out.status.success(), "synqx state show failed:\n{t}");
    let key = format!("{pipeline}/{step}: ");
    t.lines()
        .filter_map(|l| l.trim_start().strip_prefix(&key))
        .map(|rest| rest.split("  (").next().unwrap_or(rest).trim().to_string())
        .next()
}
