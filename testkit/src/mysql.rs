//! The MariaDB test server: connections, statements, rows read back as text, and a database
//! of a test's own.

use std::process::Command;

use futures::TryStreamExt;
use sqlx::mysql::{MySql, MySqlConnectOptions, MySqlConnection};
use sqlx::{AssertSqlSafe, ConnectOptions, Connection, Decode, Row, ValueRef};

use crate::rows::{cells, hex};
use crate::servers::mysql as server;
use crate::{clean_up, unique_name};

/// A connection to the test server as its admin user, in `database` (by default the server's
/// own, `synqx`); fails the test when the server is not there.
pub async fn connect(database: Option<&str>) -> MySqlConnection {
    options(database)
        .connect()
        .await
        .unwrap_or_else(|e| panic!("{}", server().unreachable("MariaDB", e)))
}

fn options(database: Option<&str>) -> MySqlConnectOptions {
    let s = server();
    let options = MySqlConnectOptions::new()
        .host(&s.host)
        .port(s.port)
        .username(&s.user)
        .password(&s.password)
        .charset("utf8mb4");
    match database.unwrap_or(&s.database) {
        "" => options,
        db => options.database(db),
    }
}

/// Runs statements (several, separated by `;`, are fine).
pub async fn exec(conn: &mut MySqlConnection, sql: &str) {
    sqlx::raw_sql(AssertSqlSafe(sql.to_string()))
        .execute(conn)
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"));
}

/// Every row of a query, each value as text (`None` for NULL; binary values that are not
/// text as `0x…` hex), whatever the column types.
pub async fn rows(conn: &mut MySqlConnection, sql: &str) -> Vec<Vec<Option<String>>> {
    let rows: Vec<_> = sqlx::raw_sql(AssertSqlSafe(sql.to_string()))
        .fetch(conn)
        .try_collect()
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"));
    cells(&rows, |row, i| {
        let raw = row
            .try_get_raw(i)
            .unwrap_or_else(|e| panic!("{sql}: column {i}: {e}"));
        if raw.is_null() {
            return None;
        }
        let bytes = <&[u8] as Decode<MySql>>::decode(raw)
            .unwrap_or_else(|e| panic!("{sql}: column {i}: {e}"));
        Some(match std::str::from_utf8(bytes) {
            Ok(s) if !s.contains('\0') => s.to_string(),
            _ => format!("0x{}", hex(bytes)),
        })
    })
}

/// A database of its own, dropped when the test ends (also when it fails).
pub struct Database {
    pub name: String,
}

impl Database {
    /// A new database `<prefix>_…` in utf8mb4.
    pub async fn new(prefix: &str) -> Database {
        let name = unique_name(prefix);
        let mut conn = connect(None).await;
        exec(
            &mut conn,
            &format!("CREATE DATABASE `{name}` CHARACTER SET utf8mb4"),
        )
        .await;
        Database { name }
    }

    /// A connection to this database.
    pub async fn connect(&self) -> MySqlConnection {
        connect(Some(&self.name)).await
    }
}

impl Drop for Database {
    fn drop(&mut self) {
        let sql = format!("DROP DATABASE IF EXISTS `{}`", self.name);
        clean_up(async move {
            if let Ok(mut c) = MySqlConnection::connect_with(&options(None)).await {
                let _ = sqlx::raw_sql(AssertSqlSafe(sql)).execute(&mut c).await;
            }
        });
    }
}

/// Runs SQL through the `mariadb` client (for tests that link no driver); returns the batch
/// output without column names.
pub fn mariadb(sql: &str) -> String {
    let s = server();
    let mut command = Command::new("mariadb");
    command
        .args(["--no-defaults", "-N", "-B", "-h", &s.host, "-P"])
        .arg(s.port.to_string())
        .args(["-u", &s.user])
        .arg(format!("-p{}", s.password))
        .args(["-e", sql]);
    crate::client_output(command, &format!("mariadb -e {sql:?}"))
}
