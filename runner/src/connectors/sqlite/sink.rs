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

use async_trait::async_trait;
use futures::StreamExt;
use sqlx::sqlite::SqliteConnection;
use sqlx::{AssertSqlSafe, Executor};
use synqx_api::pipeline::{Destination, WriteMode};

use super::connect::Database;
use super::insert::{Inserter, WriteColumn};
use super::types::declared_type;
use super::{TableColumn, qualified, quote, same_name, table_columns};
use crate::connectors::sql::names::{quoted_list, unique_suffix};
use crate::connectors::sql::plan::{
    check_primary_key, commit_or_roll_back, count_sent, plan_columns, written_bytes,
};
use crate::engine::{Counters, SchemaStream, Sink, WriteOutcome, WriteRequest};
use crate::error::{Context, Error, Result};

/// Writes tables of a SQLite database.
pub struct SqliteSink {
    pub(super) db: Database,
}

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
        let loaded = writer.run(&mut tx, columns, input).await;
        commit_or_roll_back(tx, loaded, counters, &writer.outcome, |e| {
            Error::database(format!("{at}: committing"), e)
        })
        .await?;
        Ok(writer.outcome)
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
        let names: Vec<&str> = existing.iter().map(|c| c.name.as_str()).collect();
        let plan = plan_columns(
            at,
            (!names.is_empty()).then_some(names.as_slice()),
            &input.schema,
            self.spec.schema_evolution.unwrap_or_default(),
            same_name,
        )?;
        columns.retain(|c| plan.written.contains(&c.index));
        // An overwritten table is created from the source schema, so it has them already.
        if mode != WriteMode::Overwrite {
            for column in columns.iter().filter(|c| plan.added.contains(&c.index)) {
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
        let key = &self.spec.primary_key;
        let creates = mode == WriteMode::Overwrite || existing.is_empty();
        let written: Vec<&str> = columns.iter().map(|c| c.name.as_str()).collect();
        check_primary_key(at, mode, key, &written, creates, same_name)?;

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
            let bytes = written_bytes(&batch, columns.iter().map(|c| c.index));
            count_sent(
                &mut self.outcome,
                self.counters,
                batch.num_rows() as u64,
                bytes,
            );
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
