//! Reading a table or a query: the schema from the catalog before the first row, the
//! incremental cursor pushed down as a typed literal, rows streamed into batches cut near the
//! byte budget by a task that owns the connection.

use std::sync::Arc;

use arrow::array::RecordBatch;
use arrow::compute::cast;
use arrow::datatypes::{Field, Schema, SchemaRef};
use async_trait::async_trait;
use futures::TryStreamExt;
use tiberius::{ColumnData, QueryItem};
use tokio::sync::mpsc;

use super::config::SqlServerConfig;
use super::connect::{Client, connect};
use super::errors::statement_error;
use super::read_values::{Cell, ColumnBuilder, value_size};
use super::statements::{self, Source as From, columns_query, cursor_condition, describe_query};
use super::types::{ReadColumn, read_column};
use super::{Table, at};
use crate::engine::{ReadRequest, Rejects, SchemaStream, Source};
use crate::error::{BadRow, Context, Error, Result};

/// Reads tables and queries of a SQL Server database.
pub struct SqlServerSource {
    pub(super) settings: SqlServerConfig,
}

#[async_trait]
impl Source for SqlServerSource {
    async fn read(&self, request: &ReadRequest) -> Result<SchemaStream> {
        let settings = &self.settings;
        let spec = &request.spec;
        let table = Table::parse(&settings.connection, &spec.asset.fqn)?;
        let query = spec.query_text();
        let here = match query {
            Some(_) => format!("{}, query of asset \"{}\"", settings.at(), spec.asset.fqn),
            None => at(&settings.connection, &table),
        };
        let mut client = connect(settings).await?;
        let shown = table.shown();
        let columns = match query {
            Some(q) => query_columns(&mut client, settings, q, &here).await?,
            None => table_columns(&mut client, settings, &table, &here).await?,
        };
        if columns.is_empty() {
            return Err(Error::Config(match query {
                Some(_) => format!("{here}: the query returns no columns"),
                None => format!(
                    "{here}: the table does not exist, or login \"{}\" may not see its columns (create it, fix the asset fqn, or GRANT SELECT)",
                    settings.user
                ),
            }));
        }
        // `columns` overrides: the column is read as the map says, then cast.
        let mut targets: Vec<Field> = columns.iter().map(|c| c.field.clone()).collect();
        for (name, type_text) in &spec.columns {
            let Some(index) = position(&columns, name) else {
                return Err(Error::Config(format!(
                    "{here}: columns override \"{name}\" is not a column (columns: {})",
                    column_names(&columns)
                )));
            };
            let data_type = crate::types::parse_arrow(type_text)
                .map_err(|e| Error::Config(format!("{here}: columns override \"{name}\": {e}")))?;
            targets[index] = Field::new(columns[index].name.clone(), data_type, true);
        }
        let condition = match &request.filter {
            None => None,
            Some(filter) => {
                let Some(index) = position(&columns, &filter.column) else {
                    return Err(Error::Config(format!(
                        "{here}: incremental cursor column \"{}\" is not a column (columns: {})",
                        filter.column,
                        column_names(&columns)
                    )));
                };
                let column = &columns[index];
                Some(
                    cursor_condition(&column.name, &column.sql_type, &filter.after)
                        .map_err(|e| Error::Config(format!("{here}: {e}")))?,
                )
            }
        };
        let sql = match query {
            Some(q) => statements::select_query(q, &columns, condition.as_deref()),
            None => statements::select(From::Table(&table), &columns, condition.as_deref()),
        };
        let schema: SchemaRef = Arc::new(Schema::new(targets));
        // Builders follow the read type map; overrides are applied to finished columns.
        let builders = columns
            .iter()
            .map(|c| {
                ColumnBuilder::new(&c.field).ok_or_else(|| {
                    Error::Config(format!(
                        "{here}: column \"{}\" of type {} cannot be read",
                        c.name, c.sql_type
                    ))
                })
            })
            .collect::<Result<Vec<_>>>()?;
        let (tx, rx) = mpsc::channel::<Result<RecordBatch>>(1);
        let reader = Reader {
            settings: settings.clone(),
            table: (query.is_none()).then_some(shown),
            here,
            sql,
            columns,
            builders,
            schema: schema.clone(),
            batch_bytes: request.batch_bytes.max(1),
            rejects: request.rejects.clone(),
        };
        let producer = tokio::spawn(async move {
            if let Err(e) = reader.run(client, &tx).await {
                let _ = tx.send(Err(e)).await;
            }
        });
        Ok(SchemaStream::received(
            schema,
            rx,
            producer,
            "the SQL Server reading task",
        ))
    }
}

/// The task that reads the rows and sends batches; it ends when the rows do or the receiver
/// is gone (a cancelled step), closing the connection either way.
struct Reader {
    settings: SqlServerConfig,
    /// The table for error messages; `None` for a query.
    table: Option<String>,
    here: String,
    sql: String,
    columns: Vec<ReadColumn>,
    builders: Vec<ColumnBuilder>,
    schema: SchemaRef,
    batch_bytes: usize,
    rejects: Rejects,
}

impl Reader {
    async fn run(
        mut self,
        mut client: Client,
        tx: &mpsc::Sender<Result<RecordBatch>>,
    ) -> Result<()> {
        let (settings, table) = (self.settings.clone(), self.table.clone());
        let failed =
            |e: tiberius::error::Error| statement_error(&settings, table.as_deref(), "reading", e);
        let mut stream = client
            .simple_query(self.sql.as_str())
            .await
            .map_err(failed)?;
        let mut rows = 0_usize;
        let mut bytes = 0_usize;
        let mut row_number = 0_u64;
        while let Some(item) = stream.try_next().await.map_err(failed)? {
            let QueryItem::Row(row) = item else { continue };
            // A query with several result sets: only the first is the asset.
            if row.result_index() > 0 {
                break;
            }
            row_number += 1;
            let values: Vec<ColumnData<'static>> = row.into_iter().collect();
            let size: usize = values.iter().map(value_size).sum();
            match self.convert(values) {
                Ok(cells) => {
                    for (builder, cell) in self.builders.iter_mut().zip(cells) {
                        builder.push(cell);
                    }
                    rows += 1;
                    bytes += size;
                }
                Err(bad) => {
                    self.rejects
                        .reject(bad.within(format_args!("{}, row {row_number}", self.here)))?;
                }
            }
            if bytes >= self.batch_bytes {
                let batch = self.finish()?;
                (rows, bytes) = (0, 0);
                if tx.send(Ok(batch)).await.is_err() {
                    return Ok(());
                }
            }
        }
        drop(stream);
        if rows > 0 {
            let batch = self.finish()?;
            let _ = tx.send(Ok(batch)).await;
        }
        let _ = client.close().await;
        Ok(())
    }

    /// Every value of a row converted for its column, or the first that does not convert.
    fn convert(
        &self,
        values: Vec<ColumnData<'static>>,
    ) -> std::result::Result<Vec<Cell<'static>>, Box<BadRow>> {
        if values.len() != self.builders.len() {
            return Err(Box::new(BadRow::new(
                "",
                format!(
                    "the row has {} values for {} columns",
                    values.len(),
                    self.builders.len()
                ),
            )));
        }
        values
            .into_iter()
            .zip(&self.builders)
            .zip(&self.columns)
            .map(|((value, builder), column)| {
                builder.convert(value).map_err(|unread| {
                    Box::new(
                        BadRow::new("", unread.problem)
                            .column(&column.name)
                            .value(unread.value),
                    )
                })
            })
            .collect()
    }

    fn finish(&mut self) -> Result<RecordBatch> {
        let arrays = self
            .builders
            .iter_mut()
            .zip(self.schema.fields())
            .map(|(builder, field)| {
                let array = builder
                    .finish()
                    .context(|| format!("{}: building column \"{}\"", self.here, field.name()))?;
                if array.data_type() == field.data_type() {
                    Ok(array)
                } else {
                    cast(&array, field.data_type()).context(|| {
                        format!(
                            "{}: column \"{}\" cannot be read as {} (columns override)",
                            self.here,
                            field.name(),
                            field.data_type()
                        )
                    })
                }
            })
            .collect::<Result<Vec<_>>>()?;
        RecordBatch::try_new(self.schema.clone(), arrays)
            .context(|| format!("{}: assembling a batch", self.here))
    }
}

/// The columns of a table, from `INFORMATION_SCHEMA.COLUMNS`.
pub async fn table_columns(
    client: &mut Client,
    settings: &SqlServerConfig,
    table: &Table,
    here: &str,
) -> Result<Vec<ReadColumn>> {
    let shown = table.shown();
    let failed = |e: tiberius::error::Error| {
        statement_error(settings, Some(&shown), "reading its columns", e)
    };
    let rows = client
        .simple_query(columns_query(table))
        .await
        .map_err(failed)?
        .into_first_result()
        .await
        .map_err(failed)?;
    rows.iter()
        .map(|row| {
            let name = text(row, 0).map_err(failed)?.unwrap_or_default();
            let sql_type = text(row, 1).map_err(failed)?.unwrap_or_default();
            let precision = number(row, 2).map_err(failed)?;
            let scale = number(row, 3).map_err(failed)?;
            column(here, name, sql_type, precision, scale)
        })
        .collect()
}

/// The columns of a query, described by the server without running it.
async fn query_columns(
    client: &mut Client,
    settings: &SqlServerConfig,
    query: &str,
    here: &str,
) -> Result<Vec<ReadColumn>> {
    let failed =
        |e: tiberius::error::Error| statement_error(settings, None, "describing the query", e);
    let rows = client
        .simple_query(describe_query(query))
        .await
        .map_err(failed)?
        .into_first_result()
        .await
        .map_err(failed)?;
    let mut columns = Vec::new();
    for (i, row) in rows.iter().enumerate() {
        if let Some(error) = text(row, 4).map_err(failed)? {
            return Err(Error::Config(format!(
                "{here}: SQL Server cannot describe the query: {}",
                settings.redact(error)
            )));
        }
        let Some(name) = text(row, 0).map_err(failed)?.filter(|n| !n.is_empty()) else {
            return Err(Error::Config(format!(
                "{here}: column {} of the query has no name; give it one with AS",
                i + 1
            )));
        };
        let sql_type = text(row, 1).map_err(failed)?.unwrap_or_default();
        let precision = number(row, 2).map_err(failed)?;
        let scale = number(row, 3).map_err(failed)?;
        columns.push(column(here, name, sql_type, precision, scale)?);
    }
    Ok(columns)
}

/// A text cell of a catalog row (`Row::get` would panic on a surprise type).
pub fn text(row: &tiberius::Row, index: usize) -> tiberius::Result<Option<&str>> {
    row.try_get::<&str, _>(index)
}

fn number(row: &tiberius::Row, index: usize) -> tiberius::Result<Option<i32>> {
    row.try_get::<i32, _>(index)
}

fn column(
    here: &str,
    name: &str,
    sql_type: &str,
    precision: Option<i32>,
    scale: Option<i32>,
) -> Result<ReadColumn> {
    let precision = precision.and_then(|p| u8::try_from(p).ok());
    let scale = scale.and_then(|s| i8::try_from(s).ok());
    read_column(name, sql_type, precision, scale).map_err(|e| Error::Config(format!("{here}: {e}")))
}

/// The column of that name: exact first, then without case (SQL Server's default collation
/// ignores case).
fn position(columns: &[ReadColumn], name: &str) -> Option<usize> {
    columns.iter().position(|c| c.name == name).or_else(|| {
        columns
            .iter()
            .position(|c| c.name.eq_ignore_ascii_case(name))
    })
}

fn column_names(columns: &[ReadColumn]) -> String {
    columns
        .iter()
        .map(|c| c.name.as_str())
        .collect::<Vec<_>>()
        .join(", ")
}
