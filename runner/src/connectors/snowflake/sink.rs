//! Snowflake's side of the warehouse load ([`crate::connectors::warehouse::write`], which
//! plans the columns, creates or widens the table, sweeps and drops the staging tables). Rows
//! go to a staging table first (see [`super::load`]); then one statement, a swap or one
//! transaction moves them in:
//!
//! - `append`: `INSERT INTO table SELECT … FROM staging`;
//! - `overwrite`: a copy of the table (`LIKE … COPY GRANTS`) filled and swapped in with
//!   `ALTER TABLE … SWAP WITH`, or, where the server cannot parse `SWAP`, `BEGIN; DELETE FROM
//!   table; INSERT … SELECT …; COMMIT` (see [`super::overwrite`]);
//! - `upsert`: `MERGE INTO table USING (staging, last row of each key)` on `primaryKey`.
//!
//! The staging table (and an overwrite's copy) is `SYNQX_STAGE_<expiry>_<n>` beside the
//! table, so a later load into the schema drops what a killed one left. A missing table is
//! created from the Arrow schema with `PRIMARY KEY`, which Snowflake records but does not
//! enforce.

use arrow::array::RecordBatch;
use arrow::datatypes::Field;
use async_trait::async_trait;
use synqx_api::pipeline::WriteMode;

use super::connect::{Failure, Session};
use super::load::Loader;
use super::overwrite::Overwrite;
use super::query::Binding;
use super::sql::{
    Table, add_column, columns_query, create_staging, create_table, drop_table,
    insert_from_staging, merge, same_name, tables_query,
};
use super::{SnowflakeSink, error};
use crate::connectors::staging::Expiry;
use crate::connectors::warehouse::{Load, Staging, Warehouse, write};
use crate::engine::{SchemaStream, Sink, WriteOutcome, WriteRequest};
use crate::error::Result;

#[async_trait]
impl Sink for SnowflakeSink {
    async fn write(&self, request: &WriteRequest, input: SchemaStream) -> Result<WriteOutcome> {
        let settings = &self.settings;
        let table = super::table(settings, &request.spec.asset.fqn)?;
        let here = format!("{}, table \"{table}\"", settings.at());
        let session = Session::login(settings.clone())
            .await
            .map_err(|e| error(settings, e))?;
        let written = write(&session, &here, &table, request, input).await;
        session.close().await;
        written
    }
}

impl Session {
    /// Runs one statement whose result is not needed, with the engine's error.
    async fn run(&self, sql: &str) -> Result<()> {
        self.query(sql, &[])
            .await
            .map(drop)
            .map_err(|e| error(self.settings(), e))
    }

    /// Runs one statement as an asynchronous query (a load's long statements).
    async fn run_async(&self, sql: &str) -> Result<()> {
        self.query_async(sql, &[])
            .await
            .map(drop)
            .map_err(|e| error(self.settings(), e))
    }
}

#[async_trait]
impl Warehouse for Session {
    type Table = Table;
    /// Snowflake's column types follow from the Arrow field (`types`).
    type Column = Field;
    const STAGE: &'static str = "SYNQX_STAGE_";

    fn same_name(a: &str, b: &str) -> bool {
        same_name(a, b)
    }

    fn column(&self, _here: &str, field: &Field) -> Result<Field> {
        Ok(field.clone())
    }

    fn beside(&self, table: &Table, name: &str) -> Table {
        table.beside(name)
    }

    /// Snowflake stores unquoted names upper-cased; the load's tables are named as stored.
    fn work_name(&self, expiry: Expiry) -> String {
        expiry.name(Self::STAGE).to_ascii_uppercase()
    }

    async fn existing_columns(&self, table: &Table) -> Result<Option<Vec<String>>> {
        let bindings = [
            Binding::text(table.schema.clone()),
            Binding::text(table.name.clone()),
        ];
        let names = first_column(self, &columns_query(table), &bindings)
            .await
            .map_err(|e| error(self.settings(), e))?;
        Ok((!names.is_empty()).then_some(names))
    }

    async fn create_target(&self, table: &Table, columns: &[Field], key: &[String]) -> Result<()> {
        self.run(&create_table(table, columns, key)).await
    }

    async fn add_column(&self, table: &Table, column: &Field) -> Result<()> {
        self.run(&add_column(table, column)).await
    }

    async fn tables_beside(&self, table: &Table) -> Result<Vec<String>> {
        first_column(
            self,
            &tables_query(table),
            &[Binding::text(table.schema.clone())],
        )
        .await
        .map_err(|e| error(self.settings(), e))
    }

    async fn drop_work_table(&self, table: &Table) -> Result<()> {
        self.run(&drop_table(table)).await
    }

    async fn create_staging(&self, load: &Load<'_, Self>) -> Result<()> {
        self.run(&create_staging(load.staging, load.columns)).await
    }

    async fn fill_staging(
        &self,
        load: &Load<'_, Self>,
        input: SchemaStream,
        outcome: &mut WriteOutcome,
    ) -> Result<()> {
        let failed = |e: Failure| error(self.settings(), e);
        let mut loader = Loader::start(self, load.staging.clone(), load.columns)
            .await
            .map_err(failed)?;
        load.stage(input, &mut loader, outcome).await?;
        loader.finish().await.map(drop).map_err(failed)
    }

    async fn move_rows(&self, load: &Load<'_, Self>) -> Result<()> {
        let (table, staging, columns) = (load.table, load.staging, load.columns);
        match load.spec.mode() {
            WriteMode::Append => {
                self.run_async(&insert_from_staging(table, staging, columns))
                    .await
            }
            WriteMode::Upsert => {
                self.run_async(&merge(table, staging, columns, &load.spec.primary_key))
                    .await
            }
            WriteMode::Overwrite => {
                let fresh = table.beside(&self.work_name(load.expiry));
                Overwrite {
                    session: self,
                    here: load.here,
                    table,
                    staging,
                    fresh: &fresh,
                    written: columns,
                }
                .run(load.counters)
                .await
                .map_err(|e| error(self.settings(), e))
            }
        }
    }
}

/// The first column of a statement's result, as text.
async fn first_column(
    session: &Session,
    sql: &str,
    bindings: &[Binding],
) -> Result<Vec<String>, Failure> {
    let result = session.query(sql, bindings).await?;
    let mut batches =
        super::result::inline_batches(&result).map_err(|e| Failure::protocol(e.to_string()))?;
    // Results beyond the inline part come in chunks.
    for chunk in &result.chunks {
        batches.extend(session.chunk(&result, chunk).await?);
    }
    let mut names = Vec::new();
    for batch in &batches {
        let column = arrow::compute::cast(batch.column(0), &arrow::datatypes::DataType::Utf8)
            .map_err(|e| Failure::protocol(e.to_string()))?;
        let column = arrow::array::AsArray::as_string::<i32>(&column);
        names.extend(column.iter().flatten().map(str::to_string));
    }
    Ok(names)
}

impl Staging for Loader<'_> {
    async fn stage(&mut self, batch: RecordBatch) -> Result<()> {
        let settings = self.session().settings();
        self.push(&batch).await.map_err(|e| error(settings, e))
    }
}
