//! The step's stream as a DataFusion table that can be scanned once.

use std::fmt;
use std::sync::{Arc, Mutex};

use arrow::datatypes::SchemaRef;
use datafusion::catalog::TableProvider;
use datafusion::catalog::streaming::StreamingTable;
use datafusion::common::DataFusionError;
use datafusion::execution::{SendableRecordBatchStream, TaskContext};
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use datafusion::physical_plan::streaming::PartitionStream;
use futures::StreamExt;

use crate::engine::{BatchStream, SchemaStream};
use crate::error::Error;

/// Our error, carried through DataFusion and taken out again on the other side, so a bad row
/// in the source reads the same with or without transforms.
#[derive(Debug)]
pub struct Carried(Mutex<Option<Error>>);

impl Carried {
    pub fn take(&self) -> Error {
        self.0
            .lock()
            .ok()
            .and_then(|mut e| e.take())
            .unwrap_or_else(|| Error::transform("an input error was already reported"))
    }
}

impl fmt::Display for Carried {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0.lock().ok().as_ref().and_then(|e| e.as_ref()) {
            Some(e) => write!(f, "{e}"),
            None => f.write_str("input error"),
        }
    }
}

impl std::error::Error for Carried {}

struct OnePass {
    schema: SchemaRef,
    stream: Mutex<Option<BatchStream>>,
}

impl fmt::Debug for OnePass {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OnePass").finish_non_exhaustive()
    }
}

impl PartitionStream for OnePass {
    fn schema(&self) -> &SchemaRef {
        &self.schema
    }

    fn execute(&self, _ctx: Arc<TaskContext>) -> SendableRecordBatchStream {
        let taken = self.stream.lock().ok().and_then(|mut s| s.take());
        let stream: BatchStream = taken.unwrap_or_else(|| {
            Box::pin(futures::stream::once(async {
                Err(Error::transform("the step input can be read only once"))
            }))
        });
        let mapped = stream.map(|item| {
            item.map_err(|e| DataFusionError::External(Box::new(Carried(Mutex::new(Some(e))))))
        });
        Box::pin(RecordBatchStreamAdapter::new(self.schema.clone(), mapped))
    }
}

/// A table over the stream; the plan built on it must scan it once.
pub fn single_use_table(input: SchemaStream) -> Result<Arc<dyn TableProvider>, DataFusionError> {
    let part = Arc::new(OnePass {
        schema: input.schema.clone(),
        stream: Mutex::new(Some(input.stream)),
    });
    Ok(Arc::new(StreamingTable::try_new(input.schema, vec![part])?))
}
