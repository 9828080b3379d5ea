//! Tables SynqX creates, alters, swaps and drops. MySQL commits every DDL statement on its
//! own (an implicit commit before and after), so none of these is part of a load's
//! transaction; the generic sink orders them so that a failure between them never changes the
//! data readers see.

use sqlx::AssertSqlSafe;
use sqlx::mysql::MySqlConnection;

use super::{TableRef, quote};
use crate::connectors::sql::{self, dialect::ColumnDef};
use crate::error::{Error, Result};

/// Creates `table` with the columns and, when given, `PRIMARY KEY (key…)`.
pub(super) async fn create_table(
    conn: &mut MySqlConnection,
    table: &TableRef,
    columns: &[ColumnDef],
    key: &[String],
    at: &str,
) -> Result<()> {
    // InnoDB is named: the write modes rely on its transactions, and NO_ENGINE_SUBSTITUTION
    // makes a server without it fail here rather than create a table that cannot roll back.
    let sql = format!(
        "{} ENGINE=InnoDB DEFAULT CHARSET=utf8mb4",
        sql::ddl::create_table(&table.sql(), columns, key, quote)
    );
    execute(conn, sql, || {
        format!("{at}: creating table \"{}\"", table.table)
    })
    .await
}

/// Adds nullable columns. Safe outside the load's transaction: the new columns are NULL in
/// every existing row, so the data readers see does not change even if the load then fails.
pub(super) async fn add_columns(
    conn: &mut MySqlConnection,
    table: &TableRef,
    columns: &[ColumnDef],
    at: &str,
) -> Result<()> {
    if columns.is_empty() {
        return Ok(());
    }
    let adds: Vec<String> = columns
        .iter()
        .map(|c| format!("ADD COLUMN {} {} NULL", quote(&c.name), c.declared))
        .collect();
    let sql = format!("ALTER TABLE {} {}", table.sql(), adds.join(", "));
    let names: Vec<&str> = columns.iter().map(|c| c.name.as_str()).collect();
    execute(conn, sql, || {
        format!("{at}: adding columns \"{}\"", names.join("\", \""))
    })
    .await
}

pub(super) async fn execute(
    conn: &mut MySqlConnection,
    sql: String,
    context: impl FnOnce() -> String,
) -> Result<()> {
    sqlx::raw_sql(AssertSqlSafe(sql))
        .execute(conn)
        .await
        .map(|_| ())
        .map_err(|e| Error::database(context(), e))
}
