//! BigQuery's side of the warehouse load ([`crate::connectors::warehouse::write`], which plans
//! the columns, creates or widens the table, sweeps and drops the staging tables). Rows are
//! loaded as Parquet (see [`super::load`]), or newline-delimited JSON when the Connection's
//! `loadFormat` says `json`, into a staging table beside the target (load jobs of up to
//! [`PART_BYTES`], so memory stays bounded); then one statement, or one transaction, moves
//! them in:
//!
//! - `append`: `INSERT INTO table SELECT … FROM staging`;
//! - `overwrite`: `BEGIN TRANSACTION; DELETE FROM table WHERE TRUE; INSERT …; COMMIT TRANSACTION`;
//! - `upsert`: `MERGE` on `primaryKey` from the last staged row of each key.
//!
//! The staging table is `_synqx_stage_<expiry>_<n>` in the table's dataset, so a later load
//! into the dataset drops what a killed one left.
//!
//! Load jobs rather than `tabledata.insertAll`: streamed rows sit in a buffer that DML cannot
//! touch for up to 90 minutes, which would make the final statement fail.

use arrow::array::{Int64Array, RecordBatch};
use arrow::datatypes::{DataType, Field};
use async_trait::async_trait;
use std::sync::Arc;
use synqx_api::connection::BigQueryLoadFormat;
use synqx_api::pipeline::WriteMode;

use super::connect::{Client, Failure};
use super::load::{Part, PartError};
use super::rows::encode;
use super::sql::{ROW_COLUMN, Table, add_column, insert_from_staging, merge, overwrite, same_name};
use super::types::{TableField, table_field};
use super::{BigQuerySink, error};
use crate::connectors::formats::convert::with_columns;
use crate::connectors::warehouse::{Load, Staging, Warehouse, write};
use crate::engine::{SchemaStream, Sink, WriteOutcome, WriteRequest};
use crate::error::{Context, Error, Result};

/// The file sent in one load job (Parquet: compressed, with what the writer still buffers).
pub const PART_BYTES: usize = 32 * 1024 * 1024;

#[async_trait]
impl Sink for BigQuerySink {
    async fn write(&self, request: &WriteRequest, input: SchemaStream) -> Result<WriteOutcome> {
        let settings = &self.settings;
        let table = super::table(settings, &request.spec.asset.fqn)?;
        let here = format!("{}, table \"{table}\"", settings.at());
        let client = Client::new(settings.clone()).map_err(|e| error(settings, e))?;
        write(&client, &here, &table, request, input).await
    }
}

#[async_trait]
impl Warehouse for Client {
    type Table = Table;
    type Column = TableField;
    const STAGE: &'static str = "_synqx_stage_";

    fn same_name(a: &str, b: &str) -> bool {
        same_name(a, b)
    }

    fn column(&self, here: &str, field: &Field) -> Result<TableField> {
        table_field(field).map_err(|t| {
            Error::Config(format!(
                "{here}: column \"{}\" has the type {t}, which BigQuery cannot store; cast it with a transform first",
                field.name()
            ))
        })
    }

    fn beside(&self, table: &Table, name: &str) -> Table {
        table.beside(name)
    }

    async fn existing_columns(&self, table: &Table) -> Result<Option<Vec<String>>> {
        let schema = self
            .table(&table.dataset, &table.name)
            .await
            .map_err(|e| error(&self.settings, e))?;
        Ok(schema.map(|s| s.fields.into_iter().map(|f| f.name).collect()))
    }

    /// BigQuery has no enforced keys: the table is created without one.
    async fn create_target(
        &self,
        table: &Table,
        columns: &[TableField],
        _key: &[String],
    ) -> Result<()> {
        self.create_table(&table.dataset, &table.name, columns)
            .await
            .map_err(|e| error(&self.settings, e))
    }

    async fn add_column(&self, table: &Table, column: &TableField) -> Result<()> {
        self.query(&add_column(table, column), &[])
            .await
            .map(drop)
            .map_err(|e| error(&self.settings, e))
    }

    async fn tables_beside(&self, table: &Table) -> Result<Vec<String>> {
        self.list_tables(&table.dataset)
            .await
            .map_err(|e| error(&self.settings, e))
    }

    async fn drop_work_table(&self, table: &Table) -> Result<()> {
        self.drop_table(&table.dataset, &table.name)
            .await
            .map_err(|e| error(&self.settings, e))
    }

    async fn create_staging(&self, load: &Load<'_, Self>) -> Result<()> {
        let staging = load.staging;
        self.create_table(
            &staging.dataset,
            &staging.name,
            &staged_fields(load.columns),
        )
        .await
        .map_err(|e| error(&self.settings, e))
    }

    async fn fill_staging(
        &self,
        load: &Load<'_, Self>,
        input: SchemaStream,
        outcome: &mut WriteOutcome,
    ) -> Result<()> {
        let mut parts = Parts {
            client: self,
            here: load.here,
            staging: load.staging,
            fields: staged_fields(load.columns),
            part: match self.settings.load_format {
                BigQueryLoadFormat::Parquet => File::Parquet(Part::default()),
                BigQueryLoadFormat::Json => File::Json(Vec::new()),
            },
            next_row: 0,
        };
        load.stage(input, &mut parts, outcome).await?;
        parts.flush().await
    }

    async fn move_rows(&self, load: &Load<'_, Self>) -> Result<()> {
        let spec = load.spec;
        move_rows(
            self,
            spec.mode(),
            &spec.primary_key,
            load.table,
            load.staging,
            load.columns,
        )
        .await
        .map_err(|e| error(&self.settings, e))
    }
}

/// The staging table's columns: the written ones and the order rows arrived in.
fn staged_fields(columns: &[TableField]) -> Vec<TableField> {
    let mut fields = columns.to_vec();
    fields.push(TableField {
        name: ROW_COLUMN.into(),
        kind: "INT64".into(),
        ..Default::default()
    });
    fields
}

/// Moves the staged rows into the table as `mode` says, with one statement (`jobs.query`).
async fn move_rows(
    client: &Client,
    mode: WriteMode,
    key: &[String],
    table: &Table,
    staging: &Table,
    written: &[TableField],
) -> Result<(), Failure> {
    let sql = match mode {
        WriteMode::Append => insert_from_staging(table, staging, written),
        WriteMode::Overwrite => overwrite(table, staging, written),
        WriteMode::Upsert => merge(table, staging, written, key),
    };
    client.query(&sql, &[]).await.map(drop)
}

/// Fills the staging table: rows numbered in load order, written as files in the Connection's
/// `loadFormat` and sent in load jobs of about [`PART_BYTES`].
struct Parts<'a> {
    client: &'a Client,
    here: &'a str,
    staging: &'a Table,
    fields: Vec<TableField>,
    part: File,
    next_row: i64,
}

/// The load file being written.
enum File {
    Parquet(Part),
    /// Newline-delimited JSON.
    Json(Vec<u8>),
}

impl Parts<'_> {
    fn bad(&self, detail: impl std::fmt::Display) -> Error {
        Error::bad_row(self.here, detail.to_string())
    }

    /// Loads what is encoded and not yet sent.
    async fn flush(&mut self) -> Result<()> {
        let file = match &mut self.part {
            File::Parquet(part) => part.finish().map_err(|e| self.bad(e))?,
            File::Json(rows) if rows.is_empty() => None,
            File::Json(rows) => Some(std::mem::take(rows)),
        };
        let Some(file) = file else {
            return Ok(());
        };
        let (dataset, name) = (&self.staging.dataset, &self.staging.name);
        self.client
            .load(dataset, name, &self.fields, file)
            .await
            .map_err(|e| error(&self.client.settings, e))
    }
}

impl Staging for Parts<'_> {
    async fn stage(&mut self, batch: RecordBatch) -> Result<()> {
        let staged = with_row_numbers(&batch, self.next_row)?;
        self.next_row += batch.num_rows() as i64;
        let bytes = match &mut self.part {
            File::Parquet(part) => part.write(&staged).map(|()| part.bytes()),
            File::Json(rows) => encode(&staged, rows)
                .map(|()| rows.len())
                .map_err(PartError::from),
        }
        .map_err(|e| self.bad(e))?;
        if bytes >= PART_BYTES {
            self.flush().await?;
        }
        Ok(())
    }
}

/// The batch with the staging table's row-order column added.
fn with_row_numbers(batch: &RecordBatch, first: i64) -> Result<RecordBatch> {
    let numbers = Int64Array::from_iter_values(first..first + batch.num_rows() as i64);
    with_columns(
        batch,
        vec![(
            Field::new(ROW_COLUMN, DataType::Int64, false),
            Arc::new(numbers),
        )],
    )
    .context(|| "numbering staged rows".to_string())
}

#[cfg(test)]
mod tests {
    use serde_json::json;
    use synqx_testkit::http::Reply;

    use super::*;
    use crate::connectors::bigquery::connect::PAGE_ROWS;
    use crate::connectors::bigquery::connect::tests::{client, jobs_query, token};

    fn field(name: &str, kind: &str) -> TableField {
        TableField {
            name: name.into(),
            kind: kind.into(),
            ..Default::default()
        }
    }

    #[test]
    fn staged_rows_are_numbered_after_their_columns_from_the_first_row() {
        let batch = crate::connectors::tests::people(&[(7, Some("ada")), (8, None)]);
        let staged = with_row_numbers(&batch, 41).unwrap_or_else(|e| panic!("{e}"));
        let (fields, staged_fields) = (batch.schema_ref().fields(), staged.schema_ref().fields());
        assert_eq!(staged_fields.len(), 3);
        assert_eq!(staged_fields[..2], fields[..]);
        assert_eq!(
            staged_fields[2].as_ref(),
            &Field::new(ROW_COLUMN, DataType::Int64, false)
        );
        assert_eq!(staged.columns()[..2], batch.columns()[..]);
        let numbers = staged.column(2).as_any().downcast_ref::<Int64Array>();
        assert_eq!(numbers.map(|n| n.values().to_vec()), Some(vec![41, 42]));
    }

    #[tokio::test]
    async fn an_upsert_is_one_jobs_query_of_its_merge() {
        // The answer of jobs.query in the v2 reference to a DML statement (a running one is
        // followed on getQueryResults: `connect::tests`).
        let (client, stub) = client(vec![
            token(),
            Reply::json(200, json!({"kind": "bigquery#queryResponse", "jobComplete": true,
                                    "jobReference": {"projectId": "proj", "jobId": "job_m", "location": "EU"},
                                    "numDmlAffectedRows": "3", "totalRows": "0"})),
        ])
        .await;
        let table = Table::parse("sales.orders", None).unwrap();
        let staging = table.beside("_synqx_stage_1900000001_a_b_0");
        let written = [field("id", "INT64"), field("name", "STRING")];
        move_rows(
            &client,
            WriteMode::Upsert,
            &["id".into()],
            &table,
            &staging,
            &written,
        )
        .await
        .unwrap();

        let requests = stub.requests();
        assert_eq!(requests.len(), 2);
        // The whole request: the statement, GoogleSQL, no parameters, the dataset's location,
        // the Connection's dataset as the default.
        assert_eq!(
            jobs_query(&requests[1]),
            json!({"query": "MERGE INTO `sales`.`orders` AS t USING (SELECT `id`, `name` FROM `sales`.`_synqx_stage_1900000001_a_b_0` WHERE TRUE QUALIFY ROW_NUMBER() OVER (PARTITION BY `id` ORDER BY _synqx_row DESC) = 1) AS s ON t.`id` = s.`id` WHEN MATCHED THEN UPDATE SET `name` = s.`name` WHEN NOT MATCHED THEN INSERT (`id`, `name`) VALUES (s.`id`, s.`name`)",
                   "useLegacySql": false, "maxResults": PAGE_ROWS, "timeoutMs": 10_000, "location": "EU",
                   "defaultDataset": {"projectId": "proj", "datasetId": "ds"}})
        );
    }
}
