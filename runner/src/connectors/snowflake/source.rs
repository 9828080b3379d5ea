//! Reading a table or a query: its columns from a `LIMIT 0` run before the first row, the
//! incremental cursor pushed down as `cursor > CAST(? AS <its type>)`, then the result's
//! inline part and chunks streamed as batches by a task that owns the session.

use std::collections::BTreeMap;

use arrow::array::RecordBatch;
use arrow::datatypes::{Field, SchemaRef};
use async_trait::async_trait;
use tokio::sync::mpsc;

use super::config::SnowflakeConfig;
use super::connect::{Failure, Session};
use super::query::{Binding, QueryResult};
use super::result::{ResultError, convert_batch, inline_batches};
use super::sql::{incremental, read_name, same_name, select};
use super::types::{ColumnType, arrow_field};
use super::{SnowflakeSource, error};
use crate::connectors::http_api::cut;
use crate::connectors::warehouse::{column_index, with_overrides};
use crate::engine::{ReadRequest, SchemaStream, Source};
use crate::error::{Error, Result};

#[async_trait]
impl Source for SnowflakeSource {
    async fn read(&self, request: &ReadRequest) -> Result<SchemaStream> {
        let settings = &self.settings;
        let spec = &request.spec;
        let query = spec.query_text();
        let table = super::table(settings, &spec.asset.fqn)?;
        let here = match query {
            Some(_) => format!("{}, query of asset \"{}\"", settings.at(), spec.asset.fqn),
            None => format!("{}, table \"{table}\"", settings.at()),
        };
        let session = Session::login(settings.clone())
            .await
            .map_err(|e| error(settings, e))?;
        let base = select(&table, query);
        let described = session
            .query(&format!("{base} LIMIT 0"), &[])
            .await
            .map_err(|e| error(settings, e))?;
        let (sql, bindings) = match &request.filter {
            None => (base, Vec::new()),
            Some(filter) => {
                let columns = names(&described.rowtype);
                let what = "incremental cursor column";
                let cursor = column_index(&here, what, &columns, &filter.column, same_name)?;
                (
                    incremental(&base, &described.rowtype[cursor]),
                    vec![Binding::text(filter.after.clone())],
                )
            }
        };
        let result = session
            .query(&sql, &bindings)
            .await
            .map_err(|e| error(settings, e))?;
        let schema = schema_of(&here, &result.rowtype, &spec.columns)?;
        let (tx, rx) = mpsc::channel(1);
        let task_schema = schema.clone();
        let budget = request.batch_bytes;
        let producer = tokio::spawn(async move {
            let outcome = stream_rows(&session, &result, &task_schema, budget, &tx).await;
            session.close().await;
            if let Err(e) = outcome {
                let _ = tx.send(Err(e)).await;
            }
        });
        Ok(SchemaStream::received(
            schema,
            rx,
            producer,
            "the Snowflake reading task",
        ))
    }
}

/// The result's batches in order, converted and cut to the byte budget.
async fn stream_rows(
    session: &Session,
    result: &QueryResult,
    schema: &SchemaRef,
    budget: usize,
    tx: &mpsc::Sender<Result<RecordBatch>>,
) -> Result<()> {
    let settings: &SnowflakeConfig = session.settings();
    let failed = |e: ResultError| error(settings, Failure::protocol(e.to_string()));
    let send = |batches: Vec<RecordBatch>| async move {
        for batch in batches {
            let batch = convert_batch(&batch, &result.rowtype, schema).map_err(failed)?;
            for part in cut(&batch, budget) {
                if tx.send(Ok(part)).await.is_err() {
                    return Ok(false);
                }
            }
        }
        Ok::<bool, Error>(true)
    };
    if !send(inline_batches(result).map_err(failed)?).await? {
        return Ok(());
    }
    for chunk in &result.chunks {
        let batches = session
            .chunk(result, chunk)
            .await
            .map_err(|e| error(settings, e))?;
        if !send(batches).await? {
            return Ok(());
        }
    }
    Ok(())
}

/// The Arrow schema of a result, with the step's `columns` overrides applied by cast.
fn schema_of(
    here: &str,
    rowtype: &[ColumnType],
    overrides: &BTreeMap<String, String>,
) -> Result<SchemaRef> {
    // Names as the user wrote them before Snowflake folded them: `ORDER_ID` reads as `order_id`.
    let fields: Vec<Field> = rowtype
        .iter()
        .map(|c| {
            let field = arrow_field(c);
            let name = read_name(field.name());
            field.with_name(name)
        })
        .collect();
    with_overrides(here, fields, &names(rowtype), overrides, same_name)
}

/// The result's column names as Snowflake answered them.
fn names(rowtype: &[ColumnType]) -> Vec<&str> {
    rowtype.iter().map(|c| c.name.as_str()).collect()
}
