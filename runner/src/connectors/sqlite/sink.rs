//! Writing a table. Every mode runs in one `BEGIN IMMEDIATE` transaction committed after the
//! last row, so an error, or a dropped future, rolls everything back:
//!
//! - `append` creates the table from the Arrow schema when it is missing (with
//!   `PRIMARY KEY (primaryKey…)` when given) and inserts the rows.
//! - `overwrite` creates `<table>__synqx_new_<id>` from the Arrow schema, loads it, then drops
//!   the old table, renames the new one into its place and re-creates the old table's indexes
//!   whose columns still exist. Until the commit, readers see the old table; a failure at any
//!   point leaves it intact and takes the new table away with the rollback.
//! - `upsert` inserts with `ON CONFLICT (key) DO UPDATE`, which needs a unique constraint on
//!   the key: a table without one gets a unique index first.
//!
//! Source columns the table lacks follow `schemaEvolution`: `addColumns` adds them (`ALTER
//! TABLE … ADD COLUMN`; an overwritten table simply has them), `fail` stops before writing,
//! `ignore` leaves them out.

use std::sync::atomic::Ordering;

use async_trait::async_trait;
use futures::StreamExt;
use sqlx::sqlite::SqliteConnection;
use sqlx::{AssertSqlSafe, Executor};
use synqx_api::pipeline::{Destination, SchemaEvolution, WriteMode};

use super::insert::{Inserter, WriteColumn};
use super::types::declared_type;
use super::{SqliteSink, TableColumn, qualified, quote, same_name, table_columns, unique_suffix};
use crate::engine::{Counters, SchemaStream, Sink, WriteOutcome, WriteRequest};
use crate::error::{Context, Error, Result};

#[async_trait]
impl Sink for SqliteSink {
    async fn write(
        &self,
        request: &WriteRequest,
        input: SchemaStream,
        counters: &Counters,
    ) -> Result<WriteOutcome> {
        let table = self.db.table_name(&request.spec.asset.fqn)?;
        let at = self.db.at(&table);
        let columns = input
            .schema
            .fields()
            .iter()
            .enumerate()
            .map(|(index, field)| {
                let (declared, storage) = declared_type(field.data_type()).ok_or_else(|| {
                    Error::Config(format!(
                        "{at}: column \"{}\" has the type {} which SQLite cannot store",
                        field.name(),
                        field.data_type()
                    ))
                })?;
                Ok(WriteColumn {
                    index,
                    name: field.name().clone(),
                    declared,
                    storage,
                })
            })
            .collect::<Result<Vec<_>>>()?;
        let pool = self.db.pool().await?;
        // IMMEDIATE takes the write lock up front: a deferred transaction that starts reading
        // and then writes can fail with SQLITE_BUSY without waiting.
        let mut tx = pool
            .begin_with("BEGIN IMMEDIATE")
            .await
            .context(|| format!("{at}: starting a write transaction"))?;
        let mut writer = Writer {
            at: &at,
            table: &table,
            spec: &request.spec,
            counters,
            outcome: WriteOutcome::default(),
        };
        let result = match writer.run(&mut tx, columns, input).await {
            Ok(()) => tx.commit().await.context(|| format!("{at}: committing")),
            Err(e) => {
                // Roll back now, not when the connection is next used, so the table is as it
                // was once the error is seen; the error that caused it matters more than a
                // failed rollback, and closing the connection rolls back anyway.
                let _ = tx.rollback().await;
                Err(e)
            }
        };
        if result.is_err() {
            // The progress counted while sending rows was not committed.
            let sent = &writer.outcome;
            counters
                .rows_written
                .fetch_sub(sent.rows, Ordering::Relaxed);
            counters
                .bytes_written
                .fetch_sub(sent.bytes, Ordering::Relaxed);
        }
        result.map(|()| writer.outcome)
    }
}

/// One write, inside its transaction.
struct Writer<'a> {
    at: &'a str,
    table: &'a str,
    spec: &'a Destination,
    counters: &'a Counters,
    /// Rows and bytes sent so far (committed only with the transaction).
    outcome: WriteOutcome,
}

impl Writer<'_> {
    async fn run(
        &mut self,
        conn: &mut SqliteConnection,
        mut columns: Vec<WriteColumn>,
        input: SchemaStream,
    ) -> Result<()> {
        let at = self.at;
        let existing = table_columns(&mut *conn, "main", self.table)
            .await
            .context(|| format!("{at}: reading its columns"))?;
        let mode = self.spec.mode();
        let missing: Vec<String> = columns
            .iter()
            .filter(|c| {
                !existing.is_empty() && !existing.iter().any(|e| same_name(&e.name, &c.name))
            })
            .map(|c| c.name.clone())
            .collect();
        if !missing.is_empty() {
            match self.spec.schema_evolution.unwrap_or_default() {
                SchemaEvolution::Fail => {
                    return Err(Error::Config(format!(
                        "{at}: the table has no column {} of the source (schemaEvolution: fail; set addColumns to add them or ignore to leave them out)",
                        quoted_list(&missing)
                    )));
                }
                SchemaEvolution::Ignore => columns.retain(|c| !missing.contains(&c.name)),
                SchemaEvolution::AddColumns if mode == WriteMode::Overwrite => {}
                SchemaEvolution::AddColumns => {
                    for column in columns.iter().filter(|c| missing.contains(&c.name)) {
                        let sql = format!(
                            "ALTER TABLE {} ADD COLUMN {} {}",
                            qualified(self.table),
                            quote(&column.name),
                            column.declared
                        );
                        execute(conn, sql, || {
                            format!("{at}: adding column \"{}\"", column.name)
                        })
                        .await?;
                    }
                }
            }
        }
        if columns.is_empty() {
            return Err(Error::Config(format!(
                "{at}: the source has no column to write"
            )));
        }
        let key = &self.spec.primary_key;
        let creates = mode == WriteMode::Overwrite || existing.is_empty();
        if mode == WriteMode::Upsert && key.is_empty() {
            return Err(Error::Config(format!("{at}: mode upsert needs primaryKey")));
        }
        let unknown_key = key
            .iter()
            .find(|k| !columns.iter().any(|c| same_name(&c.name, k)));
        if let (true, Some(k)) = (creates || mode == WriteMode::Upsert, unknown_key) {
            let names: Vec<String> = columns.iter().map(|c| c.name.clone()).collect();
            return Err(Error::Config(format!(
                "{at}: primaryKey column \"{k}\" is not among the columns written ({})",
                quoted_list(&names)
            )));
        }

        let target = if mode == WriteMode::Overwrite {
            format!("{}__synqx_new_{}", self.table, unique_suffix())
        } else {
            self.table.to_string()
        };
        if creates {
            create_table(conn, &target, &columns, key, at).await?;
        } else if mode == WriteMode::Upsert {
            self.ensure_unique(conn, &existing, key).await?;
        }

        let inserter = Inserter::new(
            at,
            &qualified(&target),
            &columns,
            (mode == WriteMode::Upsert).then_some(key.as_slice()),
        );
        let mut stream = input.stream;
        while let Some(batch) = stream.next().await {
            let batch = batch?;
            if batch.num_rows() == 0 {
                continue;
            }
            inserter.insert(conn, &batch, self.outcome.rows).await?;
            let rows = batch.num_rows() as u64;
            let bytes: usize = columns
                .iter()
                .filter_map(|c| batch.columns().get(c.index))
                .map(|a| a.get_array_memory_size())
                .sum();
            self.outcome.rows += rows;
            self.outcome.bytes += bytes as u64;
            Counters::add(&self.counters.rows_written, rows);
            Counters::add(&self.counters.bytes_written, bytes as u64);
        }
        if mode == WriteMode::Overwrite {
            self.swap(conn, &target, !existing.is_empty(), &columns)
                .await?;
        }
        Ok(())
    }

    /// Makes sure the key is unique in the existing table, creating a unique index if needed.
    async fn ensure_unique(
        &self,
        conn: &mut SqliteConnection,
        existing: &[TableColumn],
        key: &[String],
    ) -> Result<()> {
        let at = self.at;
        let wanted = normalized(key.iter().map(String::as_str));
        let mut primary: Vec<&TableColumn> = existing.iter().filter(|c| c.pk > 0).collect();
        primary.sort_by_key(|c| c.pk);
        if normalized(primary.iter().map(|c| c.name.as_str())) == wanted {
            return Ok(());
        }
        let indexes: Vec<(String,)> = sqlx::query_as(
            "SELECT name FROM pragma_index_list(?1, 'main') WHERE \"unique\" = 1 AND partial = 0",
        )
        .bind(self.table.to_string())
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
        let index = format!("{}__synqx_key_{}", self.table, key.join("_"));
        let list: Vec<String> = key.iter().map(|k| quote(k)).collect();
        let sql = format!(
            "CREATE UNIQUE INDEX \"main\".{} ON {} ({})",
            quote(&index),
            quote(self.table),
            list.join(", ")
        );
        (&mut *conn).execute(AssertSqlSafe(sql)).await.map_err(|e| {
            Error::Config(format!(
                "{at}: upsert needs a unique key on ({}), and creating the unique index \"{index}\" failed: {e}; remove the rows that share a key or choose another primaryKey",
                quoted_list(key)
            ))
        })?;
        Ok(())
    }

    /// Puts the loaded table in place of the old one.
    async fn swap(
        &self,
        conn: &mut SqliteConnection,
        loaded: &str,
        existed: bool,
        columns: &[WriteColumn],
    ) -> Result<()> {
        let at = self.at;
        let indexes: Vec<(String, String)> = if existed {
            sqlx::query_as(
                "SELECT name, sql FROM \"main\".sqlite_master WHERE type = 'index' AND tbl_name = ?1 COLLATE NOCASE AND sql IS NOT NULL",
            )
            .bind(self.table.to_string())
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
                .all(|n| columns.iter().any(|c| same_name(&c.name, n)))
            {
                kept.push((name, sql));
            }
        }
        if existed {
            execute(
                conn,
                format!("DROP TABLE {}", qualified(self.table)),
                || format!("{at}: dropping the old table"),
            )
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
                quote(self.table)
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

async fn create_table(
    conn: &mut SqliteConnection,
    table: &str,
    columns: &[WriteColumn],
    key: &[String],
    at: &str,
) -> Result<()> {
    let mut definitions: Vec<String> = columns
        .iter()
        .map(|c| format!("{} {}", quote(&c.name), c.declared))
        .collect();
    if !key.is_empty() {
        let list: Vec<String> = key.iter().map(|k| quote(k)).collect();
        definitions.push(format!("PRIMARY KEY ({})", list.join(", ")));
    }
    let sql = format!(
        "CREATE TABLE {} (\n  {}\n)",
        qualified(table),
        definitions.join(",\n  ")
    );
    execute(conn, sql, || format!("{at}: creating table \"{table}\"")).await
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

fn quoted_list(names: &[String]) -> String {
    names
        .iter()
        .map(|n| format!("\"{n}\""))
        .collect::<Vec<_>>()
        .join(", ")
}
