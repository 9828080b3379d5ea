//! Writing a table. Every mode runs in one transaction committed after the last row, so an
//! error rolls everything back:
//!
//! - `append` creates the table from the Arrow schema when it is missing (with `PRIMARY KEY
//!   (primaryKey…)` when given) and bulk-loads into it; into an existing table it bulk-loads a
//!   `#staging` table and copies it with `INSERT … SELECT`.
//! - `overwrite` creates `<table>_synqx_new_<id>` from the Arrow schema, bulk-loads it, then
//!   renames the old table aside, the new one into place and drops the old one. Until the
//!   commit, readers see the old table. The new table has the primary key of `primaryKey`;
//!   other indexes, constraints and grants of the old table are not carried over.
//! - `upsert` bulk-loads a `#staging` table numbered in input order, then `MERGE`s it into the
//!   table by the primary key (the last row of a key wins).
//!
//! Bulk loads only go into tables created here from the Arrow schema: tiberius encodes every
//! value against its column's exact type (a decimal of another scale makes it panic), so an
//! existing table of other types is reached through `INSERT … SELECT`, where SQL Server
//! converts with its own rules and errors.
//!
//! Source columns the table lacks follow `schemaEvolution`: `addColumns` adds them (`ALTER
//! TABLE … ADD`; an overwritten table simply has them), `fail` stops before writing, `ignore`
//! leaves them out.

use arrow::datatypes::Field;
use async_trait::async_trait;
use futures::StreamExt;
use synqx_api::pipeline::{Destination, WriteMode};
use tiberius::{ColumnData, TokenRow};

use super::config::SqlServerConfig;
use super::connect::{Client, connect};
use super::errors::statement_error;
use super::sql::{batch, execute, rollback};
use super::statements::{
    ColumnDef, ORDINAL_COLUMN, add_columns, columns_query, create_table, insert_select, merge, swap,
};
use super::types::column_type;
use super::write_values::{Wire, WireColumn};
use super::{Table, at, quote};
use crate::connectors::sql::names::{quoted_list, unique_suffix};
use crate::connectors::sql::plan::{
    check_primary_key, count_sent, plan_columns, uncount, written_bytes,
};
use crate::engine::{Counters, SchemaStream, Sink, WriteOutcome, WriteRequest};
use crate::error::{Error, Result};

/// A source column to write: where it is in the batch, its name, declared type and wire form.
#[derive(Clone, Debug)]
struct WriteColumn {
    index: usize,
    name: String,
    sql_type: String,
    wire: Wire,
}

/// Writes tables of a SQL Server database.
pub struct SqlServerSink {
    pub(super) settings: SqlServerConfig,
}

#[async_trait]
impl Sink for SqlServerSink {
    async fn write(
        &self,
        request: &WriteRequest,
        input: SchemaStream,
        counters: &Counters,
    ) -> Result<WriteOutcome> {
        let settings = &self.settings;
        let table = Table::parse(&settings.connection, &request.spec.asset.fqn)?;
        let here = at(&settings.connection, &table);
        let key = &request.spec.primary_key;
        let columns = input
            .schema
            .fields()
            .iter()
            .enumerate()
            .map(|(index, field)| write_column(&here, index, field, key))
            .collect::<Result<Vec<_>>>()?;
        let mut client = connect(settings).await?;
        batch(
            &mut client,
            settings,
            Some(&table.shown()),
            "BEGIN TRANSACTION",
            "starting a transaction",
        )
        .await?;
        let mut writer = Writer {
            settings,
            here: &here,
            table: &table,
            spec: &request.spec,
            counters,
            outcome: WriteOutcome::default(),
        };
        let mut result = writer.run(&mut client, columns, input).await;
        if result.is_ok() {
            result = batch(
                &mut client,
                settings,
                Some(&table.shown()),
                "COMMIT TRANSACTION",
                "committing",
            )
            .await;
        }
        if result.is_err() {
            rollback(&mut client).await;
            // The progress counted while sending rows was not committed.
            uncount(counters, &writer.outcome);
        }
        let _ = client.close().await;
        result.map(|()| writer.outcome)
    }
}

fn write_column(here: &str, index: usize, field: &Field, key: &[String]) -> Result<WriteColumn> {
    let in_key = key.iter().any(|k| k == field.name());
    let unsupported = |why: String| {
        Error::Config(format!(
            "{here}: column \"{}\" has the type {why}, which SQL Server cannot store; cast it with a transform first",
            field.name()
        ))
    };
    let sql_type = column_type(field, in_key).map_err(unsupported)?;
    let wire = Wire::of(field).ok_or_else(|| unsupported(field.data_type().to_string()))?;
    Ok(WriteColumn {
        index,
        name: field.name().clone(),
        sql_type,
        wire,
    })
}

/// One write, inside its transaction.
struct Writer<'a> {
    settings: &'a SqlServerConfig,
    here: &'a str,
    table: &'a Table,
    spec: &'a Destination,
    counters: &'a Counters,
    /// Rows and bytes sent so far (committed only with the transaction).
    outcome: WriteOutcome,
}

impl Writer<'_> {
    async fn run(
        &mut self,
        client: &mut Client,
        mut columns: Vec<WriteColumn>,
        input: SchemaStream,
    ) -> Result<()> {
        let here = self.here;
        let existing = self.existing_columns(client).await?;
        let mode = self.spec.mode();
        let names: Vec<&str> = existing.iter().map(String::as_str).collect();
        let plan = plan_columns(
            here,
            (!names.is_empty()).then_some(names.as_slice()),
            &input.schema,
            self.spec.schema_evolution.unwrap_or_default(),
            same_name,
        )?;
        columns.retain(|c| plan.written.contains(&c.index));
        // An overwritten table is created from the source schema, so it has them already.
        if mode != WriteMode::Overwrite && !plan.added.is_empty() {
            let added: Vec<&WriteColumn> = columns
                .iter()
                .filter(|c| plan.added.contains(&c.index))
                .collect();
            let added_names: Vec<&str> = added.iter().map(|c| c.name.as_str()).collect();
            let defs: Vec<ColumnDef> = added.into_iter().map(def).collect();
            self.batch(
                client,
                &add_columns(&self.table.quoted(), &defs),
                &format!("adding column {}", quoted_list(&added_names)),
            )
            .await?;
        }
        let key = &self.spec.primary_key;
        let creates = mode == WriteMode::Overwrite || existing.is_empty();
        let written: Vec<&str> = columns.iter().map(|c| c.name.as_str()).collect();
        check_primary_key(here, mode, key, &written, creates, same_name)?;
        let defs: Vec<ColumnDef> = columns.iter().map(def).collect();
        let names: Vec<String> = columns.iter().map(|c| c.name.clone()).collect();
        let suffix = unique_suffix();
        let base: String = self.table.name.chars().take(80).collect();
        let staging = quote(&format!("#synqx_stage_{suffix}"));
        match mode {
            WriteMode::Overwrite => {
                let new = format!("{base}_synqx_new_{suffix}");
                let loaded = self.table.with_name(&new);
                self.batch(
                    client,
                    &create_table(&loaded, &defs, key),
                    "creating the new table",
                )
                .await?;
                self.load(client, &loaded, &columns, false, input).await?;
                let old = format!("{base}_synqx_old_{suffix}");
                for statement in swap(self.table, &new, &old, !existing.is_empty()) {
                    self.batch(client, &statement, "swapping the new table into place")
                        .await?;
                }
            }
            WriteMode::Append if existing.is_empty() => {
                let target = self.table.quoted();
                self.batch(
                    client,
                    &create_table(&target, &defs, key),
                    "creating the table",
                )
                .await?;
                self.load(client, &target, &columns, false, input).await?;
            }
            WriteMode::Append => {
                self.batch(
                    client,
                    &create_table(&staging, &defs, &[]),
                    "creating the staging table",
                )
                .await?;
                self.load(client, &staging, &columns, false, input).await?;
                let copy = insert_select(&self.table.quoted(), &staging, &names);
                self.execute(client, &copy, "copying the staged rows")
                    .await?;
            }
            WriteMode::Upsert => {
                let target = self.table.quoted();
                if existing.is_empty() {
                    self.batch(
                        client,
                        &create_table(&target, &defs, key),
                        "creating the table",
                    )
                    .await?;
                }
                let mut staged = defs.clone();
                staged.push(ColumnDef {
                    name: ORDINAL_COLUMN.into(),
                    sql_type: "bigint".into(),
                });
                self.batch(
                    client,
                    &create_table(&staging, &staged, &[]),
                    "creating the staging table",
                )
                .await?;
                self.load(client, &staging, &columns, true, input).await?;
                let merge = merge(&target, &staging, &names, key);
                self.execute(client, &merge, "merging the staged rows")
                    .await?;
            }
        }
        Ok(())
    }

    /// The columns of the table, empty when it does not exist.
    async fn existing_columns(&self, client: &mut Client) -> Result<Vec<String>> {
        let shown = self.table.shown();
        let failed = |e: tiberius::error::Error| {
            statement_error(self.settings, Some(&shown), "reading its columns", e)
        };
        let rows = client
            .simple_query(columns_query(self.table))
            .await
            .map_err(failed)?
            .into_first_result()
            .await
            .map_err(failed)?;
        rows.iter()
            .map(|r| {
                super::source::text(r, 0)
                    .map(|name| name.unwrap_or_default().to_string())
                    .map_err(failed)
            })
            .collect()
    }

    /// Bulk-loads the stream into `target`, a table created from `columns` (and the ordinal
    /// column after them when `numbered`).
    async fn load(
        &mut self,
        client: &mut Client,
        target: &str,
        columns: &[WriteColumn],
        numbered: bool,
        input: SchemaStream,
    ) -> Result<()> {
        let here = self.here;
        let shown = self.table.shown();
        let failed = |e: tiberius::error::Error| {
            statement_error(self.settings, Some(&shown), "bulk loading", e)
        };
        let mut bulk = client.bulk_insert(target).await.map_err(failed)?;
        let mut stream = input.stream;
        while let Some(batch) = stream.next().await {
            let batch = batch?;
            if batch.num_rows() == 0 {
                continue;
            }
            let wires = columns
                .iter()
                .map(|c| {
                    let array = batch.columns().get(c.index).ok_or_else(|| {
                        Error::Config(format!("{here}: the batch has no column \"{}\"", c.name))
                    })?;
                    WireColumn::new(c.wire, array)
                        .map_err(|e| Error::BadRow(format!("{here}: column \"{}\": {e}", c.name)))
                })
                .collect::<Result<Vec<_>>>()?;
            for row in 0..batch.num_rows() {
                let number = self.outcome.rows + row as u64 + 1;
                let mut values = TokenRow::with_capacity(wires.len() + usize::from(numbered));
                for (wire, column) in wires.iter().zip(columns) {
                    let value = wire.value(row).map_err(|e| {
                        Error::BadRow(format!(
                            "{here}: row {number}, column \"{}\": {e}",
                            column.name
                        ))
                    })?;
                    values.push(value);
                }
                if numbered {
                    values.push(ColumnData::I64(Some(number as i64)));
                }
                bulk.send(values).await.map_err(|e| {
                    statement_error(
                        self.settings,
                        Some(&shown),
                        &format!("bulk loading row {number}"),
                        e,
                    )
                })?;
            }
            let bytes = written_bytes(&batch, columns.iter().map(|c| c.index));
            count_sent(
                &mut self.outcome,
                self.counters,
                batch.num_rows() as u64,
                bytes,
            );
        }
        bulk.finalize().await.map_err(failed)?;
        Ok(())
    }

    async fn batch(&self, client: &mut Client, sql: &str, doing: &str) -> Result<()> {
        batch(client, self.settings, Some(&self.table.shown()), sql, doing).await
    }

    async fn execute(&self, client: &mut Client, sql: &str, doing: &str) -> Result<u64> {
        execute(client, self.settings, Some(&self.table.shown()), sql, doing).await
    }
}

fn def(c: &WriteColumn) -> ColumnDef {
    ColumnDef {
        name: c.name.clone(),
        sql_type: c.sql_type.clone(),
    }
}

/// Whether two column names are the same to SQL Server under its default, case-insensitive
/// collation.
fn same_name(a: &str, b: &str) -> bool {
    a.eq_ignore_ascii_case(b)
}
