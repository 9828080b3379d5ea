//! Test helpers the SQL connectors' tests share: the specs a test writes and reads with, a
//! small batch of rows, and driving a `Sink` or `Source` the way the engine does. Reaching each
//! test server stays with its connector, as the servers and their drivers differ.

use std::sync::Arc;

use arrow::array::{ArrayRef, Int64Array, RecordBatch, StringArray};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use futures::TryStreamExt;
use synqx_api::pipeline::{Asset, Destination, SchemaEvolution, Source as SourceSpec, WriteMode};

use crate::engine::{
    Counters, ReadRequest, SchemaStream, Sink, Source, WriteOutcome, WriteRequest,
};
use crate::error::Result;

/// A destination of Connection `connection`.
pub fn destination(
    connection: &str,
    fqn: &str,
    mode: WriteMode,
    key: &[&str],
    evolution: Option<SchemaEvolution>,
) -> Destination {
    Destination {
        connection: connection.into(),
        asset: Asset {
            name: None,
            fqn: fqn.into(),
        },
        mode: Some(mode),
        primary_key: key.iter().map(|k| k.to_string()).collect(),
        schema_evolution: evolution,
        ..Default::default()
    }
}

/// A source reading the whole table `fqn` of Connection `connection`.
pub fn table_source(connection: &str, fqn: &str) -> SourceSpec {
    SourceSpec {
        connection: connection.into(),
        asset: Asset {
            name: None,
            fqn: fqn.into(),
        },
        ..Default::default()
    }
}

/// A batch of `(id Int64, name Utf8)` rows.
pub fn people(rows: &[(i64, Option<&str>)]) -> RecordBatch {
    let schema = Arc::new(Schema::new(vec![
        Field::new("id", DataType::Int64, false),
        Field::new("name", DataType::Utf8, true),
    ]));
    let ids: ArrayRef = Arc::new(Int64Array::from(
        rows.iter().map(|r| r.0).collect::<Vec<_>>(),
    ));
    let names: ArrayRef = Arc::new(StringArray::from(
        rows.iter().map(|r| r.1).collect::<Vec<_>>(),
    ));
    RecordBatch::try_new(schema, vec![ids, names]).unwrap_or_else(|e| panic!("{e}"))
}

pub fn ok<T>(r: Result<T>) -> T {
    r.unwrap_or_else(|e| panic!("{e}"))
}

/// The message of an error, for assertions.
pub fn err<T>(r: Result<T>) -> String {
    match r {
        Ok(_) => panic!("expected an error"),
        Err(e) => e.to_string(),
    }
}

/// Writes batches through `Sink::write` as the engine does, with a 1 MiB batch budget.
pub async fn write_batches(
    sink: &impl Sink,
    destination: Destination,
    schema: SchemaRef,
    batches: Vec<Result<RecordBatch>>,
    counters: &Counters,
) -> Result<WriteOutcome> {
    let request = WriteRequest {
        spec: destination,
        batch_bytes: 1 << 20,
    };
    let input = SchemaStream::new(schema, futures::stream::iter(batches));
    sink.write(&request, input, counters).await
}

/// Reads through `Source::read` to the end: the schema and every batch.
pub async fn read_all(
    source: &impl Source,
    request: &ReadRequest,
) -> Result<(SchemaRef, Vec<RecordBatch>)> {
    let stream = source.read(request).await?;
    let batches: Vec<RecordBatch> = stream.stream.try_collect().await?;
    Ok((stream.schema, batches))
}
