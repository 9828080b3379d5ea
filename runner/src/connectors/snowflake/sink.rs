//! Writing a table. Rows go to a staging table first (see [`super::load`]); then one statement,
//! a swap or one transaction moves them in, so a failed, cancelled or killed load leaves the
//! table as it was:
//!
//! - `append`: `INSERT INTO table SELECT … FROM staging`;
//! - `overwrite`: a copy of the table (`LIKE … COPY GRANTS`) filled and swapped in with
//!   `ALTER TABLE … SWAP WITH`, or, where the server cannot parse `SWAP`, `BEGIN; DELETE FROM
//!   table; INSERT … SELECT …; COMMIT` (see [`super::overwrite`]);
//! - `upsert`: `MERGE INTO table USING (staging, last row of each key)` on `primaryKey`.
//!
//! The staging table (and an overwrite's copy) is `SYNQX_STAGE_<expiry>_<n>` beside the table.
//! A killed process leaves it behind; every later load into the schema drops those whose expiry (the step's deadline,
//! see `connectors::staging`) has passed.
//!
//! The table is created from the Arrow schema when it is missing (with `PRIMARY KEY`, which
//! Snowflake records but does not enforce); source columns it lacks follow `schemaEvolution`.
//! Snowflake commits DDL at once, so tables and added columns are created before the
//! transaction (they are empty or nullable and change no row).

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
use crate::connectors::warehouse::{Staging, plan_load, settle, stage_input};
use crate::engine::{Counters, SchemaStream, Sink, WriteOutcome, WriteRequest};
use crate::error::Result;

#[async_trait]
impl Sink for SnowflakeSink {
    async fn write(
        &self,
        request: &WriteRequest,
        input: SchemaStream,
        counters: &Counters,
    ) -> Result<WriteOutcome> {
        let settings = &self.settings;
        let spec = &request.spec;
        let table = super::table(settings, &spec.asset.fqn)?;
        let here = format!("{}, table \"{table}\"", settings.at());
        let session = Session::login(settings.clone())
            .await
            .map_err(|e| error(settings, e))?;
        let mut outcome = WriteOutcome::default();
        let loaded = load(
            &session,
            &here,
            &table,
            request,
            input,
            counters,
            &mut outcome,
        )
        .await;
        session.close().await;
        settle(loaded, outcome, counters)
    }
}

async fn load(
    session: &Session,
    here: &str,
    table: &Table,
    request: &WriteRequest,
    input: SchemaStream,
    counters: &Counters,
    outcome: &mut WriteOutcome,
) -> Result<()> {
    let settings = session.settings();
    let failed = |e: Failure| error(settings, e);
    let spec = &request.spec;
    let existing = existing_columns(session, table).await.map_err(failed)?;
    let existing_refs: Option<Vec<&str>> = existing
        .as_ref()
        .map(|c| c.iter().map(String::as_str).collect());
    let plan = plan_load(
        here,
        existing_refs.as_deref(),
        &input.schema,
        spec,
        same_name,
    )?;
    let schema = input.schema.clone();
    let written: Vec<&Field> = plan.written.iter().map(|&i| schema.field(i)).collect();

    if existing.is_none() {
        session
            .query(&create_table(table, &written, &spec.primary_key), &[])
            .await
            .map_err(failed)?;
    }
    for &i in &plan.added {
        session
            .query(&add_column(table, schema.field(i)), &[])
            .await
            .map_err(failed)?;
    }

    sweep(session, table, here, counters).await;
    let expiry = Expiry::of(request);
    let staging = table.beside(&expiry.name(STAGE).to_ascii_uppercase());
    session
        .query(&create_staging(&staging, &written), &[])
        .await
        .map_err(failed)?;
    let load = Load {
        session,
        here,
        table,
        expiry,
        staging: &staging,
        written: &written,
        indexes: &plan.written,
    };
    let result = load.stage_and_move(request, input, counters, outcome).await;
    // Dropped after a failure too; only a killed process leaves a staging table behind.
    let _ = session.query(&drop_table(&staging), &[]).await;
    result
}

/// One load: where it goes, through which staging table, with which source columns.
struct Load<'a> {
    session: &'a Session,
    here: &'a str,
    table: &'a Table,
    expiry: Expiry,
    staging: &'a Table,
    written: &'a [&'a Field],
    /// The written columns' indexes in the source batches.
    indexes: &'a [usize],
}

impl Load<'_> {
    /// Fills the staging table from the input, then moves its rows into the table as the mode says.
    async fn stage_and_move(
        &self,
        request: &WriteRequest,
        input: SchemaStream,
        counters: &Counters,
        outcome: &mut WriteOutcome,
    ) -> Result<()> {
        let Load {
            session,
            here,
            table,
            expiry,
            staging,
            written,
            indexes,
        } = *self;
        let settings = session.settings();
        let failed = |e: Failure| error(settings, e);
        let mut loader = Loader::start(session, staging.clone(), written)
            .await
            .map_err(failed)?;
        stage_input(here, input, indexes, &mut loader, outcome, counters).await?;
        loader.finish().await.map_err(failed)?;
        expiry.check(here)?;

        match request.spec.mode() {
            WriteMode::Append => {
                session
                    .query_async(&insert_from_staging(table, staging, written), &[])
                    .await
                    .map_err(failed)?;
            }
            WriteMode::Upsert => {
                let sql = merge(table, staging, written, &request.spec.primary_key);
                session.query_async(&sql, &[]).await.map_err(failed)?;
            }
            WriteMode::Overwrite => {
                let fresh = table.beside(&expiry.name(STAGE).to_ascii_uppercase());
                Overwrite {
                    session,
                    here,
                    table,
                    staging,
                    fresh: &fresh,
                    written,
                }
                .run(counters)
                .await
                .map_err(failed)?;
            }
        }
        Ok(())
    }
}

/// Where staging tables' names begin.
const STAGE: &str = "SYNQX_STAGE_";

/// Drops the staging tables of killed loads in the table's schema once their expiry passed.
/// Best effort: what fails is noted, never fatal.
async fn sweep(session: &Session, table: &Table, here: &str, counters: &Counters) {
    let settings = session.settings();
    let listed = first_column(
        session,
        &tables_query(table),
        &[Binding::text(table.schema.clone())],
    )
    .await;
    let names = match listed {
        Ok(names) => names,
        Err(e) => {
            let e = error(settings, e);
            counters.note(format!(
                "{here}: staging tables of killed loads were not looked for: {e}"
            ));
            return;
        }
    };
    let now = std::time::SystemTime::now();
    for name in names.iter().filter(|n| Expiry::passed(n, STAGE, now)) {
        let orphan = table.beside(name);
        match session.query(&drop_table(&orphan), &[]).await {
            Ok(_) => counters.note(format!(
                "{here}: dropped the staging table \"{name}\" of a killed load"
            )),
            Err(e) => counters.note(format!(
                "{here}: dropping the staging table \"{name}\" of a killed load: {}",
                error(settings, e)
            )),
        }
    }
}

/// The table's column names in order, or `None` when there is no such table.
async fn existing_columns(
    session: &Session,
    table: &Table,
) -> Result<Option<Vec<String>>, Failure> {
    let bindings = [
        Binding::text(table.schema.clone()),
        Binding::text(table.name.clone()),
    ];
    let names = first_column(session, &columns_query(table), &bindings).await?;
    Ok((!names.is_empty()).then_some(names))
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
