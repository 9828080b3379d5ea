//! SQLite: an embedded database file. Asset FQNs are table names, `orders` or `main.orders`.
//!
//! The source streams a table (or the step's query) row by row into Arrow batches cut to the
//! byte budget, with the incremental cursor pushed down as `WHERE cursor > ?`. The sink writes
//! every mode in one transaction, so a failed or cancelled write leaves the database as it was;
//! see `sink.rs` for the modes and `types.rs` for the type map.

mod batch;
mod cell;
mod check;
mod config;
mod connect;
mod insert;
mod sink;
mod source;
mod types;

#[cfg(test)]
mod tests;

use std::sync::Arc;

use sqlx::Executor;
use synqx_api::ConnectorKind;
use synqx_api::connection::CheckReport;

pub use config::SqliteConfig;
pub use source::SqliteSource;

use crate::connectors::ConnectionRef;
use crate::connectors::sql::SqlDatabase;
use crate::engine::Source;
use crate::error::Result;
use connect::Database;

/// The `sqlite` connector.
pub struct Sqlite;

impl SqlDatabase for Sqlite {
    const KIND: ConnectorKind = ConnectorKind::Sqlite;
    type Dialect = SqliteConfig;

    fn config(conn: &ConnectionRef<'_>) -> Result<SqliteConfig> {
        SqliteConfig::new(conn)
    }

    fn source(config: SqliteConfig) -> Arc<dyn Source> {
        Arc::new(SqliteSource {
            db: Database::new(config),
        })
    }

    async fn check(config: SqliteConfig) -> CheckReport {
        check::check(config).await
    }
}
/// An identifier in double quotes, with embedded quotes doubled.
fn quote(ident: &str) -> String {
    format!("\"{}\"", ident.replace('"', "\"\""))
}

/// A table of the main schema, so that a temporary table of the same name never shadows it.
fn qualified(table: &str) -> String {
    format!("\"main\".{}", quote(table))
}

/// A column of an existing table or view.
#[derive(Clone, Debug)]
struct TableColumn {
    name: String,
    declared: String,
    /// Position in the primary key, from 1; 0 when not part of it.
    pk: i64,
    /// 0 for an ordinary column, 1 for a hidden column of a virtual table, 2 and 3 for
    /// generated columns.
    hidden: i64,
}

/// The columns of a table or view in `schema` (`main` or `temp`), in order; empty when it does
/// not exist.
async fn table_columns<'c, E>(
    executor: E,
    schema: &str,
    table: &str,
) -> sqlx::Result<Vec<TableColumn>>
where
    E: Executor<'c, Database = sqlx::Sqlite>,
{
    let rows: Vec<(String, String, i64, i64)> = sqlx::query_as(
        "SELECT name, type, pk, hidden FROM pragma_table_xinfo(?1, ?2) ORDER BY cid",
    )
    .bind(table.to_string())
    .bind(schema.to_string())
    .fetch_all(executor)
    .await?;
    Ok(rows
        .into_iter()
        .map(|(name, declared, pk, hidden)| TableColumn {
            name,
            declared,
            pk,
            hidden,
        })
        .collect())
}

/// Whether two column names are the same to SQLite, which ignores ASCII case.
fn same_name(a: &str, b: &str) -> bool {
    a.eq_ignore_ascii_case(b)
}
