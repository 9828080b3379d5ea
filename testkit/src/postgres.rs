//! The PostgreSQL test server: connections, statements, rows read back as text, and a schema
//! of a test's own.

use std::process::Command;

use sqlx::postgres::PgConnection;
use sqlx::{AssertSqlSafe, Connection, Row};

use crate::rows::cells;
use crate::servers::{Server, postgres as server};
use crate::{clean_up, unique_name};

/// A connection to the test server as its superuser; fails the test when it is not there.
pub async fn connect() -> PgConnection {
    let s = server();
    PgConnection::connect(&s.url())
        .await
        .unwrap_or_else(|e| panic!("{}", s.unreachable("PostgreSQL", e)))
}

/// Runs statements (several, separated by `;`, are fine).
pub async fn exec(conn: &mut PgConnection, sql: &str) {
    sqlx::raw_sql(AssertSqlSafe(sql.to_string()))
        .execute(conn)
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"));
}

/// The one `bigint` a query returns.
pub async fn int(conn: &mut PgConnection, sql: &str) -> i64 {
    sqlx::query_scalar::<_, i64>(AssertSqlSafe(sql.to_string()))
        .fetch_one(conn)
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"))
}

/// The one text value (or NULL) a query returns.
pub async fn text(conn: &mut PgConnection, sql: &str) -> Option<String> {
    sqlx::query_scalar::<_, Option<String>>(AssertSqlSafe(sql.to_string()))
        .fetch_one(conn)
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"))
}

/// Every row of a query whose columns are all text (cast them with `::text`).
pub async fn rows(conn: &mut PgConnection, sql: &str) -> Vec<Vec<Option<String>>> {
    let rows = sqlx::query(AssertSqlSafe(sql.to_string()))
        .fetch_all(conn)
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"));
    cells(&rows, |row, i| {
        row.try_get::<Option<String>, _>(i)
            .unwrap_or_else(|e| panic!("{sql}: column {i}: {e}"))
    })
}

/// Every row of a query as PostgreSQL prints a row value, `(1,a,)`, in the query's order.
pub async fn row_values(conn: &mut PgConnection, query: &str) -> Vec<String> {
    let sql = format!("SELECT r::text FROM ({query}) r");
    sqlx::query_scalar(AssertSqlSafe(sql.clone()))
        .fetch_all(conn)
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"))
}

/// A schema of its own, dropped with everything in it when the test ends (also when it fails).
pub struct Schema {
    pub name: String,
}

impl Schema {
    /// A new schema `<prefix>_…`. Names starting with `pg_` are reserved: use another prefix.
    pub async fn new(conn: &mut PgConnection, prefix: &str) -> Schema {
        let name = unique_name(prefix);
        exec(conn, &format!("CREATE SCHEMA \"{name}\"")).await;
        Schema { name }
    }
}

impl Drop for Schema {
    fn drop(&mut self) {
        let sql = format!("DROP SCHEMA IF EXISTS \"{}\" CASCADE", self.name);
        clean_up(async move {
            if let Ok(mut c) = PgConnection::connect(&server().url()).await {
                let _ = sqlx::raw_sql(AssertSqlSafe(sql)).execute(&mut c).await;
            }
        });
    }
}

/// Runs SQL through `psql` (for tests that link no driver); returns the unaligned,
/// tuples-only output.
pub fn psql(sql: &str) -> String {
    let s: Server = server();
    let mut command = Command::new("psql");
    command
        .args([
            "-h",
            &s.host,
            "-p",
            &s.port.to_string(),
            "-U",
            &s.user,
            "-d",
        ])
        .arg(&s.database)
        .args(["-v", "ON_ERROR_STOP=1", "-qtAc", sql])
        .env("PGPASSWORD", &s.password);
    crate::client_output(command, &format!("psql -c {sql:?}"))
}
