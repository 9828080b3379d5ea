//! Reading a table or a query: `jobs.query` returns the schema with the first page; further
//! pages come from `jobs.getQueryResults` with the page token, read by a task one page ahead.
//! The incremental cursor is pushed down as `cursor > CAST(@watermark AS <its type>)`.

use std::collections::BTreeMap;

use arrow::array::RecordBatch;
use arrow::datatypes::SchemaRef;
use async_trait::async_trait;
use tokio::sync::mpsc;

use super::connect::{Client, ResultPage};
use super::rows::decode;
use super::sql::{incremental, same_name, select};
use super::types::{TableField, arrow_field};
use super::{BigQuerySource, error};
use crate::connectors::http_api::{cut, statement};
use crate::connectors::warehouse::{column_index, with_overrides};
use crate::engine::{ReadRequest, SchemaStream, Source};
use crate::error::{Error, Result};

#[async_trait]
impl Source for BigQuerySource {
    async fn read(&self, request: &ReadRequest) -> Result<SchemaStream> {
        let settings = &self.settings;
        let spec = &request.spec;
        let query = spec.query_text();
        let (base, here) = match query {
            Some(q) => (
                format!("SELECT * FROM ({q})"),
                format!("{}, query of asset \"{}\"", settings.at(), spec.asset.fqn),
            ),
            None => {
                let table = super::table(settings, &spec.asset.fqn)?;
                (
                    select(&table),
                    format!("{}, table \"{table}\"", settings.at()),
                )
            }
        };
        let client = Client::new(settings.clone()).map_err(|e| error(settings, e))?;
        let (sql, parameters) = match &request.filter {
            None => (base, Vec::new()),
            Some(filter) => {
                let described = client
                    .query(&format!("{base} LIMIT 0"), &[])
                    .await
                    .map_err(|e| error(settings, e))?;
                let fields = described.schema.map(|s| s.fields).unwrap_or_default();
                let what = "incremental cursor column";
                let cursor = column_index(&here, what, &names(&fields), &filter.column, same_name)?;
                (
                    incremental(&base, &fields[cursor]),
                    vec![("watermark".to_string(), filter.after.clone())],
                )
            }
        };
        let params: Vec<(&str, &str)> = parameters
            .iter()
            .map(|(n, v)| (n.as_str(), v.as_str()))
            .collect();
        let first = client
            .query(&sql, &params)
            .await
            .map_err(|e| error(settings, e))?;
        let fields = first.schema.clone().map(|s| s.fields).unwrap_or_default();
        let schema = schema_of(&here, &fields, &spec.columns)?;
        let (tx, rx) = mpsc::channel(1);
        let task_schema = schema.clone();
        let budget = request.batch_bytes;
        let what = statement(&sql);
        let producer = tokio::spawn(async move {
            if let Err(e) = pages(&client, &what, first, &fields, &task_schema, budget, &tx).await {
                let _ = tx.send(Err(e)).await;
            }
        });
        Ok(SchemaStream::received(
            schema,
            rx,
            producer,
            "the BigQuery reading task",
        ))
    }
}

/// Every page as batches cut near the byte budget; stops when the reader hangs up.
async fn pages(
    client: &Client,
    what: &str,
    first: ResultPage,
    fields: &[TableField],
    schema: &SchemaRef,
    budget: usize,
    tx: &mpsc::Sender<Result<RecordBatch>>,
) -> Result<()> {
    let settings = &client.settings;
    let mut page = first;
    loop {
        let batch = decode(fields, &page.rows, schema)
            .map_err(|e| Error::bad_row(format!("{}: {what}", settings.at()), e.to_string()))?;
        for part in cut(&batch, budget) {
            if part.num_rows() > 0 && tx.send(Ok(part)).await.is_err() {
                return Ok(());
            }
        }
        let (Some(token), Some(job)) = (page.page_token.clone(), page.job_reference.clone()) else {
            return Ok(());
        };
        page = client
            .results(what, &job, Some(&token))
            .await
            .map_err(|e| error(settings, e))?;
    }
}

/// The Arrow schema of a result, with the step's `columns` overrides.
fn schema_of(
    here: &str,
    fields: &[TableField],
    overrides: &BTreeMap<String, String>,
) -> Result<SchemaRef> {
    let arrow = fields.iter().map(arrow_field).collect();
    with_overrides(here, arrow, &names(fields), overrides, same_name)
}

/// The result's column names.
fn names(fields: &[TableField]) -> Vec<&str> {
    fields.iter().map(|f| f.name.as_str()).collect()
}
