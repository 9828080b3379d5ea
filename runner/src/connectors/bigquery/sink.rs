//! Writing a table. Rows are loaded as Parquet (see [`super::load`]), or newline-delimited
//! JSON when the Connection's `loadFormat` says `json`, into a staging table beside the target (load jobs of up to [`PART_BYTES`], so memory stays bounded); then one
//! statement, or one transaction, moves them in, so a failed, cancelled or killed load leaves
//! the table as it was:
//!
//! - `append`: `INSERT INTO table SELECT … FROM staging`;
//! - `overwrite`: `BEGIN TRANSACTION; DELETE FROM table WHERE TRUE; INSERT …; COMMIT TRANSACTION`;
//! - `upsert`: `MERGE` on `primaryKey` from the last staged row of each key.
//!
//! The staging table is `_synqx_stage_<expiry>_<n>` in the table's dataset. A killed process
//! leaves it behind; every later load into the dataset drops those whose expiry (the step's
//! deadline, see `connectors::staging`) has passed.
//!
//! Load jobs rather than `tabledata.insertAll`: streamed rows sit in a buffer that DML cannot
//! touch for up to 90 minutes, which would make the final statement fail.
//! The table is created from the Arrow schema when it is missing; source columns it lacks
//! follow `schemaEvolution` (`ALTER TABLE … ADD COLUMN`, before the rows move: new columns are
//! nullable and change no row).

use arrow::array::{Int64Array, RecordBatch};
use arrow::datatypes::{DataType, Field, Schema};
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
use crate::connectors::staging::Expiry;
use crate::connectors::warehouse::{Staging, plan_load, settle, stage_input};
use crate::engine::{Counters, SchemaStream, Sink, WriteOutcome, WriteRequest};
use crate::error::{Context, Error, Result};

/// The file sent in one load job (Parquet: compressed, with what the writer still buffers).
pub const PART_BYTES: usize = 32 * 1024 * 1024;

#[async_trait]
impl Sink for BigQuerySink {
    async fn write(
        &self,
        request: &WriteRequest,
        input: SchemaStream,
        counters: &Counters,
    ) -> Result<WriteOutcome> {
        let settings = &self.settings;
        let table = super::table(settings, &request.spec.asset.fqn)?;
        let here = format!("{}, table \"{table}\"", settings.at());
        let client = Client::new(settings.clone()).map_err(|e| error(settings, e))?;
        let mut outcome = WriteOutcome::default();
        let loaded = load(
            &client,
            &here,
            &table,
            request,
            input,
            counters,
            &mut outcome,
        )
        .await;
        settle(loaded, outcome, counters)
    }
}

async fn load(
    client: &Client,
    here: &str,
    table: &Table,
    request: &WriteRequest,
    input: SchemaStream,
    counters: &Counters,
    outcome: &mut WriteOutcome,
) -> Result<()> {
    let settings = &client.settings;
    let failed = |e: Failure| error(settings, e);
    let spec = &request.spec;
    let existing = client
        .table(&table.dataset, &table.name)
        .await
        .map_err(failed)?;
    let existing_names: Option<Vec<&str>> = existing
        .as_ref()
        .map(|s| s.fields.iter().map(|f| f.name.as_str()).collect());
    let plan = plan_load(
        here,
        existing_names.as_deref(),
        &input.schema,
        spec,
        same_name,
    )?;
    let schema = input.schema.clone();
    let written: Vec<TableField> = plan
        .written
        .iter()
        .map(|&i| {
            let field = schema.field(i);
            table_field(field).map_err(|t| {
                Error::Config(format!("{here}: column \"{}\" has the type {t}, which BigQuery cannot store; cast it with a transform first", field.name()))
            })
        })
        .collect::<Result<_>>()?;

    if existing.is_none() {
        client
            .create_table(&table.dataset, &table.name, &written)
            .await
            .map_err(failed)?;
    }
    for &i in &plan.added {
        let field = written
            .iter()
            .find(|f| same_name(&f.name, schema.field(i).name()))
            .ok_or_else(|| {
                Error::Config(format!(
                    "{here}: added column \"{}\" is not written",
                    schema.field(i).name()
                ))
            })?;
        client
            .query(&add_column(table, field), &[])
            .await
            .map_err(failed)?;
    }

    sweep(client, table, here, counters).await;
    let expiry = Expiry::of(request);
    let staging = table.beside(&expiry.name(STAGE));
    let mut staged_fields = written.clone();
    staged_fields.push(TableField {
        name: ROW_COLUMN.into(),
        kind: "INT64".into(),
        ..Default::default()
    });
    client
        .create_table(&staging.dataset, &staging.name, &staged_fields)
        .await
        .map_err(failed)?;
    let moved = stage_and_move(
        client,
        here,
        table,
        expiry,
        &staging,
        &written,
        &staged_fields,
        &plan.written,
        request,
        input,
        counters,
        outcome,
    )
    .await;
    // Dropped after a failure too; only a killed process leaves a staging table behind.
    let _ = client.drop_table(&staging.dataset, &staging.name).await;
    moved
}

#[allow(clippy::too_many_arguments)]
async fn stage_and_move(
    client: &Client,
    here: &str,
    table: &Table,
    expiry: Expiry,
    staging: &Table,
    written: &[TableField],
    staged_fields: &[TableField],
    indexes: &[usize],
    request: &WriteRequest,
    input: SchemaStream,
    counters: &Counters,
    outcome: &mut WriteOutcome,
) -> Result<()> {
    let settings = &client.settings;
    let failed = |e: Failure| error(settings, e);
    let mut parts = Parts {
        client,
        here,
        staging,
        fields: staged_fields,
        part: match settings.load_format {
            BigQueryLoadFormat::Parquet => File::Parquet(Part::default()),
            BigQueryLoadFormat::Json => File::Json(Vec::new()),
        },
        next_row: 0,
    };
    stage_input(here, input, indexes, &mut parts, outcome, counters).await?;
    parts.flush().await?;
    expiry.check(here)?;
    let mode = request.spec.mode();
    move_rows(
        client,
        mode,
        &request.spec.primary_key,
        table,
        staging,
        written,
    )
    .await
    .map_err(failed)
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

/// Where staging tables' names begin.
const STAGE: &str = "_synqx_stage_";

/// Drops the staging tables of killed loads in the table's dataset once their expiry passed.
/// Best effort: what fails is noted, never fatal.
async fn sweep(client: &Client, table: &Table, here: &str, counters: &Counters) {
    let settings = &client.settings;
    let names = match client.list_tables(&table.dataset).await {
        Ok(names) => names,
        Err(e) => {
            counters.note(format!(
                "{here}: staging tables of killed loads were not looked for: {}",
                error(settings, e)
            ));
            return;
        }
    };
    let now = std::time::SystemTime::now();
    for name in names.iter().filter(|n| Expiry::passed(n, STAGE, now)) {
        match client.drop_table(&table.dataset, name).await {
            Ok(()) => counters.note(format!(
                "{here}: dropped the staging table \"{name}\" of a killed load"
            )),
            Err(e) => counters.note(format!(
                "{here}: dropping the staging table \"{name}\" of a killed load: {}",
                error(settings, e)
            )),
        }
    }
}

/// Fills the staging table: rows numbered in load order, written as files in the Connection's
/// `loadFormat` and sent in load jobs of about [`PART_BYTES`].
struct Parts<'a> {
    client: &'a Client,
    here: &'a str,
    staging: &'a Table,
    fields: &'a [TableField],
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
            .load(dataset, name, self.fields, file)
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
    let mut fields: Vec<Field> = batch
        .schema()
        .fields()
        .iter()
        .map(|f| f.as_ref().clone())
        .collect();
    fields.push(Field::new(ROW_COLUMN, DataType::Int64, false));
    let mut columns = batch.columns().to_vec();
    columns.push(Arc::new(Int64Array::from_iter_values(
        first..first + batch.num_rows() as i64,
    )));
    RecordBatch::try_new(Arc::new(Schema::new(fields)), columns)
        .context(|| "numbering staged rows".to_string())
}

#[cfg(test)]
mod tests {
    use serde_json::json;
    use synqx_testkit::http::Reply;

    use super::*;
    use crate::connectors::bigquery::connect::PAGE_ROWS;
    use crate::connectors::bigquery::connect::tests::{client, token};

    fn field(name: &str, kind: &str) -> TableField {
        TableField {
            name: name.into(),
            kind: kind.into(),
            ..Default::default()
        }
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
        let query = &requests[1];
        assert_eq!(query.method, "POST");
        assert_eq!(query.path(), "/bigquery/v2/projects/proj/queries");
        assert_eq!(query.header("Authorization"), Some("Bearer ya29.token"));
        // The whole request: the statement, GoogleSQL, no parameters, the dataset's location,
        // the Connection's dataset as the default.
        assert_eq!(
            query.json(),
            json!({"query": "MERGE `sales`.`orders` AS t USING (SELECT `id`, `name` FROM `sales`.`_synqx_stage_1900000001_a_b_0` WHERE TRUE QUALIFY ROW_NUMBER() OVER (PARTITION BY `id` ORDER BY _synqx_row DESC) = 1) AS s ON t.`id` = s.`id` WHEN MATCHED THEN UPDATE SET `name` = s.`name` WHEN NOT MATCHED THEN INSERT (`id`, `name`) VALUES (s.`id`, s.`name`)",
                   "useLegacySql": false, "maxResults": PAGE_ROWS, "timeoutMs": 10_000, "location": "EU",
                   "defaultDataset": {"projectId": "proj", "datasetId": "ds"}})
        );
    }
}
