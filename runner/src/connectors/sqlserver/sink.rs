//! Writing a table: the SQL Server dialect of the generic SQL sink (`connectors::sql`). Every
//! mode runs in one transaction committed after the last row, so an error rolls everything
//! back:
//!
//! - `append` bulk-loads (`INSERT BULK`) into a table it creates; into an existing table it
//!   bulk-loads a `#staging` table and copies it with `INSERT … SELECT`.
//! - `overwrite` creates `<table>_synqx_new_<id>` from the Arrow schema, bulk-loads it, then
//!   renames the old table aside, the new one into place and drops the old one. The new table
//!   has the primary key of `primaryKey`; other indexes, constraints and grants of the old
//!   table are not carried over.
//! - `upsert` bulk-loads a `#staging` table numbered in input order, then `MERGE`s it into the
//!   table by the primary key (the last row of a key wins).
//!
//! Bulk loads only go into tables created here from the Arrow schema: tiberius encodes every
//! value against its column's exact type (a decimal of another scale makes it panic), so an
//! existing table of other types is reached through `INSERT … SELECT`, where SQL Server
//! converts with its own rules and errors.

use arrow::datatypes::Field;
use async_trait::async_trait;
use futures::TryStreamExt;
use tiberius::{ColumnData, TokenRow};

use super::Table;
use super::config::SqlServerConfig;
use super::connect::{Client, connect};
use super::errors::{kind_of, server_text, statement_error, statement_message};
use super::statements::{
    ORDINAL_COLUMN, add_columns, columns_query, create_table, insert_select, merge, swap,
};
use super::transaction::{batch, execute, rollback};
use super::types::{ColumnTypeError, column_type};
use super::write_values::{Wire, WireColumn, WriteValueError};
use crate::connectors::formats::convert::value_text;
use crate::connectors::sql::dialect::{
    ColumnDef, ExistingColumn, FromStaging, LoadKind, LoadTarget, OverwriteAs, Progress,
    SqlDialect, UpsertPath, Write, WriteColumn, with_rows,
};
use crate::connectors::sql::unique_suffix;
use crate::engine::SchemaStream;
use crate::error::{BadRow, Error, Result};

#[async_trait]
impl SqlDialect for SqlServerConfig {
    type Conn = Client;
    type Table = Table;

    const TRANSACTIONAL_DDL: bool = true;
    const UPSERT: UpsertPath = UpsertPath::Staged;
    const OVERWRITE: OverwriteAs = OverwriteAs::FromSchema;
    const APPEND_STAGED: bool = true;

    fn connection(&self) -> &str {
        &self.connection
    }

    fn table(&self, fqn: &str) -> Result<Table> {
        Table::parse(&self.connection, fqn)
    }

    /// Under SQL Server's default, case-insensitive collation.
    fn same_name(a: &str, b: &str) -> bool {
        a.eq_ignore_ascii_case(b)
    }

    fn work_table(&self, table: &Table, role: &str) -> Table {
        let base: String = table.name.chars().take(80).collect();
        Table {
            name: format!("{base}_synqx_{role}_{}", unique_suffix()),
            ..table.clone()
        }
    }

    fn check_field(&self, at: &str, field: &Field, in_key: bool) -> Result<()> {
        sql_type(at, field, in_key)?;
        wire(at, field).map(drop)
    }

    fn column_type(&self, _conn: &Client, at: &str, field: &Field, in_key: bool) -> Result<String> {
        sql_type(at, field, in_key)
    }

    async fn connect(&self) -> Result<Client> {
        connect(self).await
    }

    async fn begin(&self, client: &mut Client, _at: &str) -> Result<()> {
        batch(
            client,
            self,
            None,
            "BEGIN TRANSACTION",
            "starting a transaction",
        )
        .await
    }

    async fn commit(&self, client: &mut Client, _at: &str) -> Result<()> {
        batch(client, self, None, "COMMIT TRANSACTION", "committing").await
    }

    async fn roll_back(&self, client: &mut Client) {
        rollback(client).await;
    }

    async fn close(&self, client: Client) {
        let _ = client.close().await;
    }

    async fn execute(&self, client: &mut Client, context: &str, statement: &str) -> Result<u64> {
        match client.execute(statement, &[]).await {
            Ok(done) => Ok(done.total()),
            Err(e) => {
                let (_, detail) = statement_message(self, None, "", kind_of(&e), &server_text(&e));
                let detail = detail.trim_start_matches(": ").to_string();
                Err(Error::database_detail(context, detail, e))
            }
        }
    }

    async fn columns(
        &self,
        client: &mut Client,
        write: &Write<'_, Table>,
    ) -> Result<Option<Vec<ExistingColumn>>> {
        let shown = write.table.shown();
        let failed = |e: tiberius::error::Error| {
            statement_error(self, Some(&shown), "reading its columns", e)
        };
        let rows = client
            .simple_query(columns_query(write.table))
            .await
            .map_err(failed)?
            .into_first_result()
            .await
            .map_err(failed)?;
        let columns = rows
            .iter()
            .map(|r| {
                let name = super::source::text(r, 0).map_err(failed)?;
                let declared = super::source::text(r, 1).map_err(failed)?;
                Ok(ExistingColumn {
                    name: name.unwrap_or_default().to_string(),
                    declared: declared.unwrap_or_default().to_ascii_lowercase(),
                })
            })
            .collect::<Result<Vec<_>>>()?;
        Ok((!columns.is_empty()).then_some(columns))
    }

    async fn create_table(
        &self,
        client: &mut Client,
        write: &Write<'_, Table>,
        table: &Table,
        columns: &[ColumnDef],
        key: &[String],
    ) -> Result<()> {
        let sql = create_table(&table.quoted(), columns, key);
        on_table(client, self, write, &sql, "creating the table").await
    }

    async fn add_columns(
        &self,
        client: &mut Client,
        write: &Write<'_, Table>,
        table: &Table,
        columns: &[ColumnDef],
    ) -> Result<()> {
        if columns.is_empty() {
            return Ok(());
        }
        let names: Vec<String> = columns.iter().map(|c| c.name.clone()).collect();
        let doing = format!(
            "adding column {}",
            crate::connectors::sql::quoted_list(&names)
        );
        on_table(
            client,
            self,
            write,
            &add_columns(&table.quoted(), columns),
            &doing,
        )
        .await
    }

    /// `MERGE` matches rows by the key columns itself; it needs no unique constraint.
    async fn ensure_unique_key(
        &self,
        _client: &mut Client,
        _write: &Write<'_, Table>,
    ) -> Result<()> {
        Ok(())
    }

    /// A `#table`, gone with the session, typed from the Arrow schema so the bulk load can
    /// encode into it.
    async fn create_staging(
        &self,
        client: &mut Client,
        write: &Write<'_, Table>,
        columns: &[WriteColumn],
        numbered: bool,
    ) -> Result<Table> {
        let mut defs = columns
            .iter()
            .map(|c| {
                let in_key = write.key().iter().any(|k| Self::same_name(k, c.name()));
                Ok(ColumnDef {
                    name: c.name().to_string(),
                    declared: sql_type(write.at, &c.field, in_key)?,
                })
            })
            .collect::<Result<Vec<_>>>()?;
        if numbered {
            defs.push(ColumnDef {
                name: ORDINAL_COLUMN.into(),
                declared: "bigint".into(),
            });
        }
        let staging = Table {
            database: None,
            schema: String::new(),
            name: format!("#synqx_stage_{}", unique_suffix()),
        };
        let sql = create_table(&staging.quoted(), &defs, &[]);
        on_table(client, self, write, &sql, "creating the staging table").await?;
        Ok(staging)
    }

    /// Bulk-loads the stream into `target`, a table created from the columns (and the
    /// ordinal column after them for a numbered staging table).
    async fn load(
        &self,
        client: &mut Client,
        write: &Write<'_, Table>,
        target: LoadTarget<'_, Table>,
        input: SchemaStream,
        progress: &mut Progress<'_>,
    ) -> Result<()> {
        let here = write.at;
        let numbered = matches!(target.kind, LoadKind::Staging { numbered: true });
        let shown = write.table.shown();
        let columns = target.columns;
        let wires = columns
            .iter()
            .map(|c| wire(here, &c.field))
            .collect::<Result<Vec<_>>>()?;
        let table = target.table.quoted();
        let mut bulk = client
            .bulk_insert(&table)
            .await
            .map_err(|e| statement_error(self, Some(&shown), "bulk loading", e))?;
        let mut batches = with_rows(input);
        while let Some(batch) = batches.try_next().await? {
            let values = columns
                .iter()
                .zip(&wires)
                .map(|(c, wire)| {
                    let array = batch.columns().get(c.index).ok_or_else(|| {
                        Error::Config(format!("{here}: the batch has no column \"{}\"", c.name()))
                    })?;
                    WireColumn::new(*wire, array)
                        .map(|w| (w, array))
                        .map_err(|e| {
                            // A failed cast quotes the value in Arrow's error.
                            let bad = match e {
                                WriteValueError::Cast { to, source } => {
                                    BadRow::new(here, format!("converting to {to} failed"))
                                        .value(source.to_string())
                                }
                                other => BadRow::new(here, other.to_string()),
                            };
                            Error::from(bad.column(c.name()))
                        })
                })
                .collect::<Result<Vec<_>>>()?;
            for row in 0..batch.num_rows() {
                let number = progress.outcome.rows + row as u64 + 1;
                let mut token = TokenRow::with_capacity(values.len() + usize::from(numbered));
                for ((value, array), column) in values.iter().zip(columns) {
                    token.push(value.value(row).map_err(|e| {
                        Error::from(
                            BadRow::new(format!("{here}: row {number}"), format!("the value {e}"))
                                .column(column.name())
                                .value(value_text(array.as_ref(), row)),
                        )
                    })?);
                }
                if numbered {
                    token.push(ColumnData::I64(Some(number as i64)));
                }
                bulk.send(token).await.map_err(|e| {
                    statement_error(self, Some(&shown), &format!("bulk loading row {number}"), e)
                })?;
            }
            progress.sent_batch(&batch, columns.iter().map(|c| c.index));
        }
        bulk.finalize()
            .await
            .map_err(|e| statement_error(self, Some(&shown), "bulk loading", e))?;
        Ok(())
    }

    async fn move_staged(
        &self,
        client: &mut Client,
        write: &Write<'_, Table>,
        staging: &Table,
        columns: &[String],
        how: FromStaging,
    ) -> Result<()> {
        let (target, staged) = (write.table.quoted(), staging.quoted());
        let (sql, doing) = match how {
            FromStaging::Merge => (
                merge(&target, &staged, columns, write.key()),
                "merging the staged rows",
            ),
            FromStaging::Copy => (
                insert_select(&target, &staged, columns),
                "copying the staged rows",
            ),
        };
        let shown = write.table.shown();
        execute(client, self, Some(&shown), &sql, doing)
            .await
            .map(drop)
    }

    async fn swap(
        &self,
        client: &mut Client,
        write: &Write<'_, Table>,
        loaded: &Table,
        existed: bool,
        _columns: &[String],
    ) -> Result<()> {
        let old = self.work_table(write.table, "old");
        for statement in swap(write.table, &loaded.name, &old.name, existed) {
            on_table(
                client,
                self,
                write,
                &statement,
                "swapping the new table into place",
            )
            .await?;
        }
        Ok(())
    }
}

/// The SQL Server type of a column created for `field`.
fn sql_type(at: &str, field: &Field, in_key: bool) -> Result<String> {
    column_type(field, in_key).map_err(|why| unsupported(at, why))
}

/// How values of `field` go over the wire in a bulk load.
fn wire(at: &str, field: &Field) -> Result<Wire> {
    Wire::of(field).ok_or_else(|| {
        let why = ColumnTypeError::Unsupported {
            column: field.name().clone(),
            data_type: field.data_type().clone(),
        };
        unsupported(at, why)
    })
}

fn unsupported(at: &str, why: ColumnTypeError) -> Error {
    Error::Config(format!("{at}: {why}"))
}

/// Runs the connector's own statements about the write's table as a batch.
async fn on_table(
    client: &mut Client,
    config: &SqlServerConfig,
    write: &Write<'_, Table>,
    sql: &str,
    doing: &str,
) -> Result<()> {
    batch(client, config, Some(&write.table.shown()), sql, doing).await
}

#[cfg(test)]
mod tests {
    use super::super::config::tests::{settings_of, spec};
    use super::*;

    #[test]
    fn staging_and_work_tables_are_named_for_sql_server() {
        let staging = Table {
            database: None,
            schema: String::new(),
            name: "#synqx_stage_1".into(),
        };
        assert_eq!(staging.quoted(), "[#synqx_stage_1]");
        let table = Table {
            database: Some("dw".into()),
            schema: "sales".into(),
            name: "o".repeat(100),
        };
        let config = settings_of(&spec("pw")).unwrap_or_else(|e| panic!("{e}"));
        let new = config.work_table(&table, "new");
        assert!(
            new.name
                .starts_with(&format!("{}_synqx_new_", "o".repeat(80))),
            "{}",
            new.name
        );
        assert_eq!(
            (new.database.as_deref(), new.schema.as_str()),
            (Some("dw"), "sales")
        );
        assert_ne!(new, config.work_table(&table, "new"));
    }
}
