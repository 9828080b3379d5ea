//! Writing a table. MySQL commits DDL implicitly, so tables are created and altered before the
//! load's transaction, and the rows go in one InnoDB transaction:
//!
//! - `append` creates the table from the Arrow schema when it is missing (with
//!   `PRIMARY KEY (primaryKey…)` when given) and inserts every row in one transaction, so a
//!   failed load adds nothing (and a table it created is dropped again).
//! - `overwrite` creates `<table>_synqx_new_<id>` (`CREATE TABLE … LIKE` the table when it
//!   exists, so its keys and indexes are kept; from the Arrow schema otherwise), loads it in one
//!   transaction, then swaps it in with one `RENAME TABLE t TO old, new TO t`, which is atomic,
//!   and drops the old table. Until the rename, readers see the old table; a failed or killed
//!   load leaves it intact (a killed one can leave a `_synqx_new_` table behind).
//! - `upsert` needs `primaryKey`; a table it creates gets that primary key, an existing table
//!   must have a unique key on exactly those columns. Rows are inserted with
//!   `ON DUPLICATE KEY UPDATE` in the load's transaction, in order, so the last of several rows
//!   with one key wins. Inserting directly writes every row once; a temporary staging table
//!   merged with `INSERT … SELECT` would write it twice (the two were not benchmarked).
//!
//! Rows are sent as multi-row `INSERT … VALUES` statements (`insert.rs`). `LOAD DATA LOCAL
//! INFILE` is not an alternative with sqlx 0.9: its MySQL driver never announces the
//! `CLIENT_LOCAL_FILES` capability (sqlx-mysql 0.9.0, `connection/stream.rs`) and does not
//! handle the server's local-infile request packet (`connection/executor.rs` lists it as
//! unhandled), so the server refuses the statement.
//!
//! Source columns the table lacks follow `schemaEvolution`: `addColumns` adds them as
//! nullable columns before the load (safe outside the transaction: they are NULL in every
//! existing row), `fail` stops before writing, `ignore` leaves them out.

use async_trait::async_trait;
use futures::StreamExt;
use sqlx::Connection;
use sqlx::mysql::MySqlConnection;
use synqx_api::pipeline::{Destination, WriteMode};

use super::catalog::{table_columns, unique_keys};
use super::config::MysqlConfig;
use super::connect::{Session, connect};
use super::ddl::{ColumnDef, add_columns, create_table, execute};
use super::insert::{Inserter, WriteColumn};
use super::literal::writable_type;
use super::types::declared_type;
use super::{TableRef, at, quote, work_table};
use crate::connectors::sql::names::quoted_list;
use crate::connectors::sql::plan::{
    check_primary_key, count_sent, plan_columns, uncount, written_bytes,
};
use crate::engine::{Counters, SchemaStream, Sink, WriteOutcome, WriteRequest};
use crate::error::{Error, Result};

/// Writes tables of a MySQL or MariaDB database.
pub struct MysqlSink {
    pub(super) target: MysqlConfig,
}

#[async_trait]
impl Sink for MysqlSink {
    async fn write(
        &self,
        request: &WriteRequest,
        input: SchemaStream,
        counters: &Counters,
    ) -> Result<WriteOutcome> {
        let table = TableRef::parse(&self.target, &request.spec.asset.fqn)?;
        let at = at(&self.target, &table);
        for field in input.schema.fields() {
            if writable_type(field.data_type()).is_none() {
                return Err(Error::Config(format!(
                    "{at}: column \"{}\" has the type {} which MySQL cannot store; cast it to a string or number in a transform first",
                    field.name(),
                    field.data_type()
                )));
            }
        }
        let mut session = connect(&self.target).await?;
        let mut load = Load {
            at: &at,
            table: &table,
            spec: &request.spec,
            counters,
            outcome: WriteOutcome::default(),
            created: None,
        };
        let result = load.run(&mut session, input).await;
        if result.is_err() {
            // The progress counted while sending rows was not committed.
            uncount(counters, &load.outcome);
            if let Some(created) = &load.created {
                // Best effort: the error that stopped the load matters more, and a table left
                // behind by a broken connection holds no committed rows.
                let _ = execute(
                    &mut session.conn,
                    format!("DROP TABLE IF EXISTS {}", created.sql()),
                    String::new,
                )
                .await;
            }
        }
        let _ = session.conn.close().await;
        result.map(|()| load.outcome)
    }
}

/// One write.
struct Load<'a> {
    at: &'a str,
    table: &'a TableRef,
    spec: &'a Destination,
    counters: &'a Counters,
    /// Rows and bytes sent so far (committed only with the transaction).
    outcome: WriteOutcome,
    /// A table this load created, dropped again when the load fails.
    created: Option<TableRef>,
}

impl Load<'_> {
    async fn run(&mut self, session: &mut Session, input: SchemaStream) -> Result<()> {
        let at = self.at;
        let uuid_type = session.has_uuid_type();
        let conn = &mut session.conn;
        let existing = table_columns(conn, self.table)
            .await
            .map_err(|e| Error::database(format!("{at}: reading its columns"), e))?;
        let mode = self.spec.mode();
        let key = &self.spec.primary_key;
        let names: Vec<&str> = existing.iter().map(|c| c.name.as_str()).collect();
        let plan = plan_columns(
            at,
            (!names.is_empty()).then_some(names.as_slice()),
            &input.schema,
            self.spec.schema_evolution.unwrap_or_default(),
            same_name,
        )?;
        let fields: Vec<(usize, arrow::datatypes::FieldRef)> = plan
            .written
            .iter()
            .map(|&i| (i, input.schema.fields()[i].clone()))
            .collect();
        let creates = existing.is_empty();
        let written: Vec<&str> = fields.iter().map(|(_, f)| f.name().as_str()).collect();
        check_primary_key(at, mode, key, &written, creates, same_name)?;
        let definition = |(_, f): &(usize, arrow::datatypes::FieldRef)| {
            let in_key = key.iter().any(|k| k.eq_ignore_ascii_case(f.name()));
            declared_type(f, in_key, uuid_type)
                .map(|declared| ColumnDef {
                    name: f.name().clone(),
                    declared,
                })
                .map_err(|e| Error::Config(format!("{at}: column \"{}\": {e}", f.name())))
        };
        let added: Vec<ColumnDef> = fields
            .iter()
            .filter(|(i, _)| plan.added.contains(i))
            .map(definition)
            .collect::<Result<_>>()?;

        let target = if mode == WriteMode::Overwrite {
            self.table.sibling(work_table(&self.table.table, "new"))
        } else {
            self.table.clone()
        };
        let mut declared: Vec<(String, String)> = existing
            .iter()
            .map(|c| (c.name.clone(), c.column_type.to_ascii_lowercase()))
            .collect();
        if creates {
            let definitions: Vec<ColumnDef> =
                fields.iter().map(definition).collect::<Result<_>>()?;
            create_table(conn, &target, &definitions, key, at).await?;
            self.created = Some(target.clone());
            declared = definitions
                .into_iter()
                .map(|d| (d.name, d.declared))
                .collect();
        } else {
            if mode == WriteMode::Overwrite {
                let sql = format!("CREATE TABLE {} LIKE {}", target.sql(), self.table.sql());
                execute(conn, sql, || {
                    format!("{at}: creating \"{}\" to load", target.table)
                })
                .await?;
                self.created = Some(target.clone());
            } else if mode == WriteMode::Upsert {
                self.ensure_unique(conn, key).await?;
            }
            add_columns(conn, &target, &added, at).await?;
            declared.extend(added.into_iter().map(|d| (d.name, d.declared)));
        }

        let columns: Vec<WriteColumn> = fields
            .iter()
            .map(|(index, f)| WriteColumn {
                index: *index,
                name: f.name().clone(),
                uuid_text: declared
                    .iter()
                    .any(|(name, t)| name.eq_ignore_ascii_case(f.name()) && t.starts_with("uuid")),
            })
            .collect();
        let mut inserter = Inserter::new(
            at,
            &target.sql(),
            &columns,
            (mode == WriteMode::Upsert).then_some(key.as_slice()),
            session.statement_bytes,
        );
        let conn = &mut session.conn;
        let mut tx = conn
            .begin()
            .await
            .map_err(|e| Error::database(format!("{at}: starting the load's transaction"), e))?;
        let mut stream = input.stream;
        while let Some(batch) = stream.next().await {
            let batch = batch?;
            if batch.num_rows() == 0 {
                continue;
            }
            inserter.insert(&mut tx, &batch, self.outcome.rows).await?;
            let bytes = written_bytes(&batch, columns.iter().map(|c| c.index));
            count_sent(
                &mut self.outcome,
                self.counters,
                batch.num_rows() as u64,
                bytes,
            );
        }
        tx.commit()
            .await
            .map_err(|e| Error::database(format!("{at}: committing"), e))?;
        if mode == WriteMode::Overwrite {
            self.swap(conn, &target, !creates).await?;
        }
        self.created = None;
        Ok(())
    }

    /// Makes sure an existing table has a unique key on exactly the upsert's key columns, which
    /// `ON DUPLICATE KEY UPDATE` needs to find the rows to update.
    async fn ensure_unique(&self, conn: &mut MySqlConnection, key: &[String]) -> Result<()> {
        let at = self.at;
        let keys = unique_keys(conn, self.table)
            .await
            .map_err(|e| Error::database(format!("{at}: reading its unique keys"), e))?;
        let wanted = normalized(key);
        if keys.iter().any(|k| normalized(k) == wanted) {
            return Ok(());
        }
        let list: Vec<String> = key.iter().map(|k| quote(k)).collect();
        Err(Error::Config(format!(
            "{at}: upsert needs a unique key on ({}), and the table has none; add one (ALTER TABLE {} ADD UNIQUE ({})) or choose another primaryKey",
            quoted_list(key),
            self.table.sql(),
            list.join(", ")
        )))
    }

    /// Puts the loaded table in place of the old one.
    async fn swap(
        &mut self,
        conn: &mut MySqlConnection,
        loaded: &TableRef,
        existed: bool,
    ) -> Result<()> {
        let at = self.at;
        if !existed {
            let sql = format!("RENAME TABLE {} TO {}", loaded.sql(), self.table.sql());
            return execute(conn, sql, || {
                format!("{at}: renaming \"{}\" into its place", loaded.table)
            })
            .await;
        }
        let old = self.table.sibling(work_table(&self.table.table, "old"));
        let sql = format!(
            "RENAME TABLE {} TO {}, {} TO {}",
            self.table.sql(),
            old.sql(),
            loaded.sql(),
            self.table.sql()
        );
        execute(conn, sql, || {
            format!("{at}: swapping \"{}\" into its place", loaded.table)
        })
        .await?;
        // The new rows are in place: a failure to drop the old table only leaves it behind.
        self.created = None;
        execute(conn, format!("DROP TABLE {}", old.sql()), || {
            format!(
                "{at}: the new rows are in place, but dropping the old table \"{}\" failed; drop it by hand",
                old.table
            )
        })
        .await
    }
}

/// Whether two column names are the same to MySQL, whose column names ignore case.
fn same_name(a: &str, b: &str) -> bool {
    a.eq_ignore_ascii_case(b)
}

/// Column names as MySQL compares them: without case, in any order.
fn normalized(names: &[String]) -> Vec<String> {
    let mut names: Vec<String> = names.iter().map(|n| n.to_ascii_lowercase()).collect();
    names.sort();
    names
}
