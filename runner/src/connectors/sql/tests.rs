//! What the SQL connectors' tests share beyond `connectors::tests`: cursors, writes of one
//! batch, and schemas as the assertions compare them.

use arrow::array::RecordBatch;
use arrow::datatypes::Schema;
use synqx_api::pipeline::Destination;

use crate::connectors::tests::{Harness, people};
use crate::engine::{CursorFilter, WriteOutcome};
use crate::error::Result;

/// An incremental read of the rows whose `column` is above `after`.
pub fn cursor(column: &str, after: &str) -> CursorFilter {
    CursorFilter {
        column: column.into(),
        after: after.into(),
    }
}

/// Writes one batch through the sink, as the engine does.
pub async fn write_batch(
    harness: &Harness,
    spec: Destination,
    batch: RecordBatch,
) -> Result<WriteOutcome> {
    harness.write(spec, batch.schema(), vec![Ok(batch)]).await
}

/// Writes one batch of `(id Int64, name Utf8)` rows through the sink.
pub async fn write_people(
    harness: &Harness,
    spec: Destination,
    rows: &[(i64, Option<&str>)],
) -> Result<WriteOutcome> {
    write_batch(harness, spec, people(rows)).await
}

/// The Arrow type of every column, as Arrow prints it.
pub fn data_types(schema: &Schema) -> Vec<String> {
    schema
        .fields()
        .iter()
        .map(|f| f.data_type().to_string())
        .collect()
}

/// Every column as `name type`.
pub fn named_types(schema: &Schema) -> Vec<String> {
    schema
        .fields()
        .iter()
        .map(|f| format!("{} {}", f.name(), f.data_type()))
        .collect()
}
