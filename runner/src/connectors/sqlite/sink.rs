//! Writing a table: the SQLite dialect of the generic SQL sink (`connectors::sql`). A write
//! takes a connection of its own and holds SQLite's one write lock for its whole transaction
//! (`BEGIN IMMEDIATE`), DDL included, so an error or a dropped future rolls everything back:
//!
//! - `overwrite` creates `<table>__synqx_new_<id>` from the Arrow schema, loads it, then
//!   drops the old table, renames the new one into its place and re-creates the old table's
//!   indexes whose columns still exist.
//! - `upsert` inserts with `ON CONFLICT (key) DO UPDATE`, which needs a unique constraint on
//!   the key: a table without one gets a unique index first.
//! - Rows go in as multi-row prepared `INSERT`s bound from Arrow (`insert.rs`).

use arrow::datatypes::Field;
use async_trait::async_trait;
use futures::TryStreamExt;
use sqlx::sqlite::SqliteConnection;
use sqlx::{AssertSqlSafe, Executor};

use super::config::SqliteConfig;
use super::connect::connect;
use super::insert::{InsertColumn, Inserter};
use super::types::{Storage, declared_type};
use super::{TableColumn, qualified, quote, same_name, table_columns};
use crate::connectors::sql::ddl::{create_table, identifiers};
use crate::connectors::sql::dialect::{
    ColumnDef, ExistingColumn, LoadKind, LoadTarget, OverwriteAs, Progress, SqlDialect, UpsertPath,
    Write, with_rows,
};
use crate::connectors::sql::session;
use crate::connectors::sql::{quoted_list, unique_suffix};
use crate::engine::SchemaStream;
use crate::error::{Context, Error, Result};

#[async_trait]
impl SqlDialect for SqliteConfig {
    type Conn = SqliteConnection;
    type Table = String;

    const TRANSACTIONAL_DDL: bool = true;
    const UPSERT: UpsertPath = UpsertPath::Direct;
    const OVERWRITE: OverwriteAs = OverwriteAs::FromSchema;
    // IMMEDIATE takes the write lock up front: a deferred transaction that starts reading and
    // then writes can fail with SQLITE_BUSY without waiting.
    const BEGIN: &'static str = "BEGIN IMMEDIATE";

    fn connection(&self) -> &str {
        &self.connection
    }

    fn table(&self, fqn: &str) -> Result<String> {
        SqliteConfig::table(self, fqn)
    }

    fn same_name(a: &str, b: &str) -> bool {
        same_name(a, b)
    }

    fn work_table(&self, table: &String, role: &str) -> String {
        format!("{table}__synqx_{role}_{}", unique_suffix())
    }

    fn check_field(&self, at: &str, field: &Field, _in_key: bool) -> Result<()> {
        storage_of(at, field).map(drop)
    }

    fn column_type(
        &self,
        _conn: &SqliteConnection,
        at: &str,
        field: &Field,
        _in_key: bool,
    ) -> Result<String> {
        storage_of(at, field).map(|(declared, _)| declared)
    }

    async fn connect(&self) -> Result<SqliteConnection> {
        connect(self).await
    }

    async fn close(&self, conn: SqliteConnection) {
        session::close(conn).await;
    }

    async fn execute(
        &self,
        conn: &mut SqliteConnection,
        context: &str,
        statement: &str,
    ) -> Result<u64> {
        session::run(conn, statement)
            .await
            .map(|done| done.rows_affected())
            .context(|| context.to_string())
    }

    async fn columns(
        &self,
        conn: &mut SqliteConnection,
        write: &Write<'_, String>,
    ) -> Result<Option<Vec<ExistingColumn>>> {
        let columns = table_columns(&mut *conn, "main", write.table)
            .await
            .context(|| format!("{}: reading its columns", write.at))?;
        Ok((!columns.is_empty()).then(|| {
            columns
                .into_iter()
                .map(|c| ExistingColumn {
                    name: c.name,
                    declared: c.declared,
                })
                .collect()
        }))
    }

    async fn create_table(
        &self,
        conn: &mut SqliteConnection,
        write: &Write<'_, String>,
        table: &String,
        columns: &[ColumnDef],
        key: &[String],
    ) -> Result<()> {
        let sql = create_table(&qualified(table), columns, key, quote);
        execute(conn, sql, || {
            format!("{}: creating table \"{table}\"", write.at)
        })
        .await
    }

    async fn add_columns(
        &self,
        conn: &mut SqliteConnection,
        write: &Write<'_, String>,
        table: &String,
        columns: &[ColumnDef],
    ) -> Result<()> {
        for column in columns {
            let sql = format!(
                "ALTER TABLE {} ADD COLUMN {} {}",
                qualified(table),
                quote(&column.name),
                column.declared
            );
            execute(conn, sql, || {
                format!("{}: adding column \"{}\"", write.at, column.name)
            })
            .await?;
        }
        Ok(())
    }

    /// A table without a unique key on exactly the key columns gets a unique index.
    async fn ensure_unique_key(
        &self,
        conn: &mut SqliteConnection,
        write: &Write<'_, String>,
    ) -> Result<()> {
        let (at, table, key) = (write.at, write.table, write.key());
        let existing = table_columns(&mut *conn, "main", table)
            .await
            .context(|| format!("{at}: reading its columns"))?;
        let wanted = normalized(key.iter().map(String::as_str));
        let mut primary: Vec<&TableColumn> = existing.iter().filter(|c| c.pk > 0).collect();
        primary.sort_by_key(|c| c.pk);
        if normalized(primary.iter().map(|c| c.name.as_str())) == wanted {
            return Ok(());
        }
        let indexes: Vec<(String,)> = sqlx::query_as(
            "SELECT name FROM pragma_index_list(?1, 'main') WHERE \"unique\" = 1 AND partial = 0",
        )
        .bind(table.to_string())
        .fetch_all(&mut *conn)
        .await
        .context(|| format!("{at}: listing its indexes"))?;
        for (index,) in indexes {
            let columns = index_columns(conn, &index)
                .await
                .context(|| format!("{at}: reading index \"{index}\""))?;
            if columns.iter().all(Option::is_some)
                && normalized(columns.iter().flatten().map(String::as_str)) == wanted
            {
                return Ok(());
            }
        }
        let index = format!("{table}__synqx_key_{}", key.join("_"));
        let sql = format!(
            "CREATE UNIQUE INDEX \"main\".{} ON {} ({})",
            quote(&index),
            quote(table),
            identifiers(key, quote)
        );
        (&mut *conn).execute(AssertSqlSafe(sql)).await.map_err(|e| {
            Error::Config(format!(
                "{at}: upsert needs a unique key on ({}), and creating the unique index \"{index}\" failed: {e}; remove the rows that share a key or choose another primaryKey",
                quoted_list(key)
            ))
        })?;
        Ok(())
    }

    async fn load(
        &self,
        conn: &mut SqliteConnection,
        write: &Write<'_, String>,
        target: LoadTarget<'_, String>,
        input: SchemaStream,
        progress: &mut Progress<'_>,
    ) -> Result<()> {
        let at = write.at;
        let columns = target
            .columns
            .iter()
            .map(|c| {
                let (_, storage) = storage_of(at, &c.field)?;
                Ok(InsertColumn {
                    index: c.index,
                    name: c.name().to_string(),
                    storage,
                })
            })
            .collect::<Result<Vec<_>>>()?;
        let key = match target.kind {
            LoadKind::Upsert(key) => Some(key),
            LoadKind::Insert | LoadKind::Staging { .. } => None,
        };
        let inserter = Inserter::new(at, &qualified(target.table), &columns, key);
        let mut batches = with_rows(input);
        while let Some(batch) = batches.try_next().await? {
            inserter.insert(conn, &batch, progress.outcome.rows).await?;
            progress.sent_batch(&batch, columns.iter().map(|c| c.index));
        }
        Ok(())
    }

    /// Drops the old table, renames the loaded one into its place, and re-creates the old
    /// table's indexes whose columns the new one still has.
    async fn swap(
        &self,
        conn: &mut SqliteConnection,
        write: &Write<'_, String>,
        loaded: &String,
        existed: bool,
        columns: &[String],
    ) -> Result<()> {
        let (at, table) = (write.at, write.table);
        let indexes: Vec<(String, String)> = if existed {
            sqlx::query_as(
                "SELECT name, sql FROM \"main\".sqlite_master WHERE type = 'index' AND tbl_name = ?1 COLLATE NOCASE AND sql IS NOT NULL",
            )
            .bind(table.to_string())
            .fetch_all(&mut *conn)
            .await
            .context(|| format!("{at}: listing its indexes"))?
        } else {
            Vec::new()
        };
        let mut kept = Vec::new();
        for (name, sql) in indexes {
            let names = index_columns(conn, &name)
                .await
                .context(|| format!("{at}: reading index \"{name}\""))?;
            if names
                .iter()
                .flatten()
                .all(|n| columns.iter().any(|c| same_name(c, n)))
            {
                kept.push((name, sql));
            }
        }
        if existed {
            execute(conn, format!("DROP TABLE {}", qualified(table)), || {
                format!("{at}: dropping the old table")
            })
            .await?;
        }
        // Legacy renaming does not re-check views that name the table, which SQLite would
        // otherwise reject while the table is missing.
        execute(conn, "PRAGMA legacy_alter_table = ON".into(), || {
            format!("{at}: preparing the rename")
        })
        .await?;
        let renamed = execute(
            conn,
            format!(
                "ALTER TABLE {} RENAME TO {}",
                qualified(loaded),
                quote(table)
            ),
            || format!("{at}: renaming \"{loaded}\" into its place"),
        )
        .await;
        execute(conn, "PRAGMA legacy_alter_table = OFF".into(), || {
            format!("{at}: finishing the rename")
        })
        .await?;
        renamed?;
        for (name, sql) in kept {
            execute(conn, sql, || {
                format!("{at}: re-creating index \"{name}\" on the new table")
            })
            .await?;
        }
        Ok(())
    }
}

/// The declared type and storage class of a column for `field`.
fn storage_of(at: &str, field: &Field) -> Result<(String, Storage)> {
    declared_type(field.data_type()).ok_or_else(|| {
        Error::Config(format!(
            "{at}: column \"{}\" has the type {} which SQLite cannot store",
            field.name(),
            field.data_type()
        ))
    })
}

/// Column names of an index, `None` for an expression.
async fn index_columns(
    conn: &mut SqliteConnection,
    index: &str,
) -> sqlx::Result<Vec<Option<String>>> {
    let rows: Vec<(Option<String>,)> =
        sqlx::query_as("SELECT name FROM pragma_index_info(?1, 'main') ORDER BY seqno")
            .bind(index.to_string())
            .fetch_all(&mut *conn)
            .await?;
    Ok(rows.into_iter().map(|(name,)| name).collect())
}

async fn execute(
    conn: &mut SqliteConnection,
    sql: String,
    context: impl FnOnce() -> String,
) -> Result<()> {
    (&mut *conn)
        .execute(AssertSqlSafe(sql))
        .await
        .map(|_| ())
        .context(context)
}

/// Column names compared as SQLite compares them: without case, in any order.
fn normalized<'a>(names: impl Iterator<Item = &'a str>) -> Vec<String> {
    let mut names: Vec<String> = names.map(str::to_ascii_lowercase).collect();
    names.sort();
    names
}
