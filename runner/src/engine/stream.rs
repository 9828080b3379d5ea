//! Streams of Arrow batches that know their schema before the first row.

use std::pin::Pin;

use arrow::array::RecordBatch;
use arrow::datatypes::SchemaRef;
use futures::Stream;

use crate::error::Result;

/// A stream of batches.
pub type BatchStream = Pin<Box<dyn Stream<Item = Result<RecordBatch>> + Send>>;

/// A stream of batches with its schema, known up front so tables can be created before the
/// first row arrives.
pub struct SchemaStream {
    pub schema: SchemaRef,
    pub stream: BatchStream,
}

impl SchemaStream {
    pub fn new(
        schema: SchemaRef,
        stream: impl Stream<Item = Result<RecordBatch>> + Send + 'static,
    ) -> Self {
        Self {
            schema,
            stream: Box::pin(stream),
        }
    }

    /// A stream with a schema and no rows.
    pub fn empty(schema: SchemaRef) -> Self {
        Self::new(schema, futures::stream::empty())
    }
}
