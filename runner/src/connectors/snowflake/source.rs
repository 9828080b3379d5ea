//! Reading a table or a query: its columns from a `LIMIT 0` run before the first row, the
//! incremental cursor pushed down as `cursor > CAST(? AS <its type>)`, then the result's
//! inline part and chunks streamed as batches by a task that owns the session.

use std::sync::Arc;

use arrow::array::RecordBatch;
use arrow::datatypes::{Field, Schema, SchemaRef};
use async_trait::async_trait;
use tokio::sync::mpsc;

use super::config::SnowflakeConfig;
use super::connect::{Failure, Session};
use super::query::{Binding, QueryResult};
use super::result::{convert_batch, inline_batches};
use super::sql::{incremental, read_name, same_name, select};
use super::types::{ColumnType, arrow_field};
use super::{SnowflakeSource, error};
use crate::connectors::http_api::{cut, receiver_stream};
use crate::engine::{ReadRequest, SchemaStream, Source};
use crate::error::{Error, Result};

#[async_trait]
impl Source for SnowflakeSource {
    async fn read(&self, request: &ReadRequest) -> Result<SchemaStream> {
        let settings = &self.settings;
        let spec = &request.spec;
        let query = spec
            .query
            .as_deref()
            .map(trim_query)
            .filter(|q| !q.is_empty());
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
                let cursor = described
                    .rowtype
                    .iter()
                    .find(|c| same_name(&c.name, &filter.column))
                    .ok_or_else(|| {
                        Error::Config(format!(
                            "{here}: incremental cursor column \"{}\" is not a column (columns: {})",
                            filter.column,
                            names(&described.rowtype)
                        ))
                    })?;
                (
                    incremental(&base, cursor),
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
        tokio::spawn(async move {
            let outcome = stream_rows(&session, &result, &task_schema, budget, &tx).await;
            session.close().await;
            if let Err(e) = outcome {
                let _ = tx.send(Err(e)).await;
            }
        });
        Ok(SchemaStream::new(schema, receiver_stream(rx)))
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
    let failed = |m: String| error(settings, Failure::protocol(m));
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
    overrides: &std::collections::BTreeMap<String, String>,
) -> Result<SchemaRef> {
    // Names as the user wrote them before Snowflake folded them: `ORDER_ID` reads as `order_id`.
    let mut fields: Vec<Field> = rowtype
        .iter()
        .map(|c| {
            let field = arrow_field(c);
            let name = read_name(field.name());
            field.with_name(name)
        })
        .collect();
    for (name, type_text) in overrides {
        let Some(index) = rowtype.iter().position(|c| same_name(&c.name, name)) else {
            return Err(Error::Config(format!(
                "{here}: columns override \"{name}\" is not a column (columns: {})",
                names(rowtype)
            )));
        };
        let data_type = crate::types::parse_arrow(type_text)
            .map_err(|e| Error::Config(format!("{here}: columns override \"{name}\": {e}")))?;
        if !arrow::compute::can_cast_types(fields[index].data_type(), &data_type) {
            return Err(Error::Config(format!(
                "{here}: columns override \"{name}\": {} cannot be read as {data_type}",
                fields[index].data_type()
            )));
        }
        fields[index] = Field::new(fields[index].name(), data_type, true);
    }
    Ok(Arc::new(Schema::new(fields)))
}

fn names(rowtype: &[ColumnType]) -> String {
    rowtype
        .iter()
        .map(|c| c.name.as_str())
        .collect::<Vec<_>>()
        .join(", ")
}

/// A query without the trailing semicolon and blanks a subquery cannot have.
fn trim_query(q: &str) -> &str {
    q.trim().trim_end_matches(';').trim_end()
}
