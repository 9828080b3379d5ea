//! What the engine takes from a source's batches on their way to the sink: the step's
//! counters, the incremental cursor's highest value, the file sources' pseudo-column dropped,
//! and the widening a source's stream ends with.
//!
//! A source whose stream does its work when polled (decoding in `poll_next`) is drained by a
//! task of the engine's own into a channel, so it keeps working while the sink writes. A
//! source that produces ahead in a task of its own ([`SchemaStream::produced_ahead`]) is
//! observed as the sink polls it: another task and channel would only pass its batches on,
//! and hold more of them in memory.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, PoisonError};

use arrow::array::RecordBatch;
use futures::StreamExt;
use tokio::sync::mpsc;
use tokio_util::task::AbortOnDropHandle;

use super::cursor::MaxTracker;
use super::{CHANNEL_DEPTH, Counters, FILE_MODIFIED_COLUMN, SchemaStream};
use crate::error::{Error, Result};

/// The widening a source ended its stream with: its message and the widened columns.
type Widened = (String, BTreeMap<String, String>);

/// Takes each batch of a source as it passes.
pub struct Observer {
    counters: Arc<Counters>,
    tracker: Option<MaxTracker>,
    drop_modified: bool,
    widened: Option<Widened>,
}

/// What the batches that passed said, once the sink is done.
pub struct Observed {
    /// The incremental cursor's highest value.
    pub max_seen: Result<Option<String>>,
    pub widened: Option<Widened>,
}

impl Observer {
    /// `cursor`: the incremental cursor column, if any.
    pub fn new(counters: Arc<Counters>, cursor: Option<&str>) -> Self {
        Self {
            counters,
            tracker: cursor.map(MaxTracker::new),
            drop_modified: cursor == Some(FILE_MODIFIED_COLUMN),
            widened: None,
        }
    }

    fn take(&mut self, item: Result<RecordBatch>) -> Result<RecordBatch> {
        if let Err(Error::Widened { message, columns }) = &item {
            self.widened = Some((message.clone(), columns.clone()));
        }
        let batch = item?;
        Counters::add(&self.counters.rows_read, batch.num_rows() as u64);
        Counters::add(
            &self.counters.bytes_read,
            batch.get_array_memory_size() as u64,
        );
        Counters::add(&self.counters.batches, 1);
        if let Some(t) = self.tracker.as_mut() {
            t.observe(&batch)?;
        }
        if self.drop_modified {
            drop_column(&batch, FILE_MODIFIED_COLUMN)
        } else {
            Ok(batch)
        }
    }

    fn finish(&mut self) -> Observed {
        Observed {
            max_seen: self
                .tracker
                .take()
                .map(|t| t.value())
                .transpose()
                .map(Option::flatten),
            widened: self.widened.take(),
        }
    }
}

/// Where the observer runs, to ask it what it saw once the sink is done.
pub enum Watch {
    /// Aborted if the step is dropped (cancelled, timed out) before it asked.
    Task(AbortOnDropHandle<Observer>),
    Inline(Arc<Mutex<Observer>>),
}

impl Watch {
    /// What the batches said; `step` names the step if the engine's task failed.
    pub async fn finish(self, step: &str) -> Result<Observed> {
        match self {
            Watch::Task(task) => {
                let mut observer = task.await.map_err(|e| {
                    Error::internal(format!("the source task of step \"{step}\""), e)
                })?;
                Ok(observer.finish())
            }
            Watch::Inline(shared) => Ok(shared
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .finish()),
        }
    }
}

/// The source's batches as the sink gets them, and where the observer runs. The stream ends
/// at its first error.
pub fn observe(input: SchemaStream, mut observer: Observer) -> (SchemaStream, Watch) {
    let schema = if observer.drop_modified {
        without_column(&input.schema, FILE_MODIFIED_COLUMN)
    } else {
        input.schema.clone()
    };
    let mut stream = input.stream;
    if input.produced_ahead {
        let shared = Arc::new(Mutex::new(observer));
        let inline = shared.clone();
        let observed = futures::stream::unfold(Some(stream), move |left| {
            let inline = inline.clone();
            async move {
                let mut stream = left?;
                let item = stream.next().await?;
                let item = inline
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .take(item);
                let go_on = item.is_ok().then_some(stream);
                Some((item, go_on))
            }
        });
        return (SchemaStream::new(schema, observed), Watch::Inline(shared));
    }
    let (tx, mut rx) = mpsc::channel::<Result<RecordBatch>>(CHANNEL_DEPTH);
    let task = AbortOnDropHandle::new(tokio::spawn(async move {
        while let Some(item) = stream.next().await {
            let item = observer.take(item);
            let failed = item.is_err();
            if tx.send(item).await.is_err() || failed {
                break;
            }
        }
        observer
    }));
    let received = futures::stream::poll_fn(move |cx| rx.poll_recv(cx));
    (SchemaStream::new(schema, received), Watch::Task(task))
}

fn drop_column(batch: &RecordBatch, name: &str) -> Result<RecordBatch> {
    match batch.schema().index_of(name) {
        Ok(i) => {
            let mut b = batch.clone();
            b.remove_column(i);
            Ok(b)
        }
        Err(_) => Ok(batch.clone()),
    }
}

fn without_column(schema: &arrow::datatypes::SchemaRef, name: &str) -> arrow::datatypes::SchemaRef {
    let fields: Vec<_> = schema
        .fields()
        .iter()
        .filter(|f| f.name() != name)
        .cloned()
        .collect();
    Arc::new(arrow::datatypes::Schema::new_with_metadata(
        fields,
        schema.metadata().clone(),
    ))
}
