//! SQLite: an embedded database file. Asset FQNs are table names, `orders` or `main.orders`.
//!
//! The source streams a table (or the step's query) row by row into Arrow batches cut to the
//! byte budget, with the incremental cursor pushed down as `WHERE cursor > ?`. The sink writes
//! every mode in one transaction, so a failed or cancelled write leaves the database as it was;
//! see `sink.rs` for the modes and `types.rs` for the type map.

mod batch;
mod cell;
mod check;
mod insert;
mod sink;
mod source;
mod types;

#[cfg(test)]
mod tests;

use std::path::PathBuf;
use std::time::Duration;

use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions};
use sqlx::{Executor, Sqlite};
use tokio::sync::OnceCell;

pub use check::check;

use crate::connectors::ConnectionRef;
use crate::connectors::sql_names::at_table;
use crate::error::{Context, Error, Result};

/// How long a writer waits for another writer of the same file. SQLite has one writer at a
/// time and every SynqX write holds it for its whole transaction, so parallel steps writing
/// to one file queue here instead of failing with `database is locked`.
const BUSY_TIMEOUT: Duration = Duration::from_secs(300);
/// Connections per pool: a reading stream holds one, schema probes and writes take another.
const MAX_CONNECTIONS: u32 = 4;

/// Reads tables and queries of a SQLite database.
pub struct SqliteSource {
    db: Database,
}

/// Writes tables of a SQLite database.
pub struct SqliteSink {
    db: Database,
}

impl SqliteSource {
    pub fn new(conn: &ConnectionRef<'_>) -> Result<Self> {
        Ok(Self {
            db: Database::new(conn)?,
        })
    }
}

impl SqliteSink {
    pub fn new(conn: &ConnectionRef<'_>) -> Result<Self> {
        Ok(Self {
            db: Database::new(conn)?,
        })
    }
}

/// One database file, opened on first use (opening needs the async runtime and does I/O,
/// which constructors must not).
struct Database {
    /// Name of the Connection, for messages.
    connection: String,
    path: PathBuf,
    pool: OnceCell<SqlitePool>,
}

impl Database {
    fn new(conn: &ConnectionRef<'_>) -> Result<Self> {
        let spec = conn.spec.sqlite.as_ref().ok_or_else(|| {
            Error::Config(format!("Connection \"{}\" has no sqlite block", conn.name))
        })?;
        if spec.path.trim().is_empty() {
            return Err(Error::Config(format!(
                "Connection \"{}\": sqlite.path is empty",
                conn.name
            )));
        }
        Ok(Self {
            connection: conn.name.to_string(),
            path: conn.path(spec.path.trim()),
            pool: OnceCell::new(),
        })
    }

    /// The pool, opening the file (and creating it and its directory) on first use.
    async fn pool(&self) -> Result<&SqlitePool> {
        self.pool.get_or_try_init(|| self.open()).await
    }

    async fn open(&self) -> Result<SqlitePool> {
        if let Some(parent) = self.path.parent().filter(|p| !p.as_os_str().is_empty()) {
            tokio::fs::create_dir_all(parent).await.context(|| {
                format!(
                    "Connection \"{}\": creating directory {}",
                    self.connection,
                    parent.display()
                )
            })?;
        }
        let options = SqliteConnectOptions::new()
            .filename(&self.path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .busy_timeout(BUSY_TIMEOUT);
        SqlitePoolOptions::new()
            .max_connections(MAX_CONNECTIONS)
            .connect_with(options)
            .await
            .context(|| {
                format!(
                    "Connection \"{}\": opening SQLite database {}",
                    self.connection,
                    self.path.display()
                )
            })
    }

    /// The table an asset FQN names.
    fn table_name(&self, fqn: &str) -> Result<String> {
        let fqn = fqn.trim();
        let name = match fqn.split_once('.') {
            None => fqn,
            Some((schema, table)) if schema.eq_ignore_ascii_case("main") => table,
            Some(_) => {
                return Err(Error::Config(format!(
                    "Connection \"{}\": asset \"{fqn}\" is not a SQLite table (write `table` or `main.table`)",
                    self.connection
                )));
            }
        };
        if name.is_empty() {
            return Err(Error::Config(format!(
                "Connection \"{}\": asset \"{fqn}\" has an empty table name",
                self.connection
            )));
        }
        Ok(name.to_string())
    }

    /// `Connection "c", table "t"`: the start of every message about a table.
    fn at(&self, table: &str) -> String {
        at_table(&self.connection, table)
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
    E: Executor<'c, Database = Sqlite>,
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
