//! SQLite database files read back, from tests that are not async themselves.

use std::path::Path;

use sqlx::sqlite::{SqliteConnectOptions, SqliteConnection};
use sqlx::{AssertSqlSafe, ConnectOptions, Row};

use crate::rows::cells;

/// Every row of a query, each value as text (`None` for NULL): integers and reals in their
/// usual form, text as it is.
pub fn rows(db: &Path, sql: &str) -> Vec<Vec<Option<String>>> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap_or_else(|e| panic!("starting a runtime: {e}"));
    runtime.block_on(async {
        let mut conn: SqliteConnection = SqliteConnectOptions::new()
            .filename(db)
            .read_only(true)
            .connect()
            .await
            .unwrap_or_else(|e| panic!("{}: {e}", db.display()));
        // SQLite types values, not columns: try integer, then real, then text, per value.
        let wrapped = format!("SELECT * FROM ({sql})");
        let rows = sqlx::query(AssertSqlSafe(wrapped))
            .fetch_all(&mut conn)
            .await
            .unwrap_or_else(|e| panic!("{sql}: {e}"));
        cells(&rows, |row, i| {
            if let Ok(v) = row.try_get::<Option<i64>, _>(i) {
                return v.map(|v| v.to_string());
            }
            if let Ok(v) = row.try_get::<Option<f64>, _>(i) {
                return v.map(|v| v.to_string());
            }
            row.try_get::<Option<String>, _>(i)
                .unwrap_or_else(|e| panic!("{sql}: column {i}: {e}"))
        })
    })
}

/// The one integer a query returns.
pub fn int(db: &Path, sql: &str) -> i64 {
    let rows = rows(db, sql);
    rows.first()
        .and_then(|r| r.first())
        .cloned()
        .flatten()
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("{sql}: not one integer: {rows:?}"))
}
