//! Streams of Arrow batches that know their schema before the first row.

use std::future::Future;
use std::pin::Pin;

use arrow::array::RecordBatch;
use arrow::datatypes::SchemaRef;
use futures::{Stream, StreamExt};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use crate::error::{Error, Result};

/// A stream of batches.
pub type BatchStream = Pin<Box<dyn Stream<Item = Result<RecordBatch>> + Send>>;

/// A stream of batches with its schema, known up front so tables can be created before the
/// first row arrives.
pub struct SchemaStream {
    pub schema: SchemaRef,
    pub stream: BatchStream,
    /// Whether a task of the source's own produces the batches ahead and the stream only
    /// receives them: the engine then needs no task of its own to keep the source working
    /// while the sink writes, and one that only passed batches on would hold more of them.
    pub produced_ahead: bool,
}

impl SchemaStream {
    pub fn new(
        schema: SchemaRef,
        stream: impl Stream<Item = Result<RecordBatch>> + Send + 'static,
    ) -> Self {
        Self {
            schema,
            stream: Box::pin(stream),
            produced_ahead: false,
        }
    }

    /// The same stream, said to be produced ahead by a task of its own (see
    /// [`SchemaStream::produced_ahead`]).
    pub fn ahead(mut self) -> Self {
        self.produced_ahead = true;
        self
    }

    /// The batches `producer`, a task of the source's own, sends into `rx`; `what` names it.
    /// A producer that panicked ends the stream with an error: its channel closes as it would
    /// at the end, and a sink that took that for the end would commit a partial load.
    pub fn received<T: Send + 'static>(
        schema: SchemaRef,
        mut rx: mpsc::Receiver<Result<RecordBatch>>,
        producer: JoinHandle<T>,
        what: impl Into<String>,
    ) -> Self {
        let what = what.into();
        let died = futures::stream::once(producer).filter_map(move |ended| {
            let failed = ended.err().map(|e| Err(Error::internal(what.clone(), e)));
            async move { failed }
        });
        let batches = futures::stream::poll_fn(move |cx| rx.poll_recv(cx));
        Self::new(schema, batches.chain(died)).ahead()
    }

    /// A stream with a schema and no rows.
    pub fn empty(schema: SchemaRef) -> Self {
        Self::new(schema, futures::stream::empty())
    }

    /// The batches `produce` sends from a task of its own, one batch ahead (the task waits
    /// while the engine works on the last one). An error `produce` returns is the stream's
    /// last item. Detached: the task ends when `produce` does, or at its next send once the
    /// stream is dropped.
    pub fn produced_by<F, Fut>(schema: SchemaRef, produce: F) -> Self
    where
        F: FnOnce(mpsc::Sender<Result<RecordBatch>>) -> Fut,
        Fut: Future<Output = Result<()>> + Send + 'static,
    {
        let (tx, rx) = mpsc::channel(1);
        let failed = tx.clone();
        let produced = produce(tx);
        let producer = tokio::spawn(async move {
            if let Err(e) = produced.await {
                let _ = failed.send(Err(e)).await;
            }
        });
        Self::received(schema, rx, producer, "the source's reading task")
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use arrow::array::{AsArray, RecordBatch};
    use arrow::datatypes::Int64Type;
    use futures::StreamExt;

    use super::*;
    use crate::connectors::tests::{people, upstream_error};

    fn ids(batch: &RecordBatch) -> Vec<i64> {
        batch
            .column(0)
            .as_primitive::<Int64Type>()
            .values()
            .to_vec()
    }

    #[tokio::test]
    async fn a_produced_stream_yields_what_its_task_sent_then_the_error_it_ended_with() {
        let mut stream = SchemaStream::produced_by(people(&[]).schema(), |tx| async move {
            for id in [1, 2] {
                let batch = people(&[(id, Some("x"))]);
                tx.send(Ok(batch)).await.map_err(|_| upstream_error())?;
            }
            Err(upstream_error())
        });
        let mut seen = Vec::new();
        let mut last = None;
        while let Some(item) = stream.stream.next().await {
            match item {
                Ok(batch) => seen.extend(ids(&batch)),
                Err(e) => last = Some(e.to_string()),
            }
        }
        assert_eq!(seen, vec![1, 2]);
        assert_eq!(last, Some(upstream_error().to_string()));
    }

    #[tokio::test]
    async fn dropping_a_produced_stream_ends_its_task_at_the_next_send() {
        let (ended_tx, ended) = tokio::sync::oneshot::channel();
        let mut stream = SchemaStream::produced_by(people(&[]).schema(), |tx| async move {
            let mut sent = 0u64;
            while tx.send(Ok(people(&[(1, None)]))).await.is_ok() {
                sent += 1;
            }
            let _ = ended_tx.send(sent);
            Ok(())
        });
        assert!(stream.stream.next().await.is_some_and(|b| b.is_ok()));
        drop(stream);
        let sent = tokio::time::timeout(Duration::from_secs(10), ended)
            .await
            .unwrap_or_else(|_| panic!("the task still runs after its stream was dropped"))
            .unwrap_or_else(|e| panic!("{e}"));
        // One batch read, at most one more held in the channel of one.
        assert!((1..=2).contains(&sent), "{sent}");
    }

    /// A producer that dies (a decoder panicking on a corrupt file) closes its channel as
    /// one that finished would: the stream must end with an error, not as if complete.
    #[tokio::test]
    async fn a_producer_that_panics_ends_its_stream_with_an_error() {
        let (tx, rx) = mpsc::channel(1);
        let producer = tokio::spawn(async move {
            let _ = tx.send(Ok(people(&[(1, Some("x"))]))).await;
            panic!("corrupt page");
        });
        let stream = SchemaStream::received(people(&[]).schema(), rx, producer, "the test reader");
        let items: Vec<_> = stream.stream.collect().await;
        assert_eq!(items.len(), 2);
        assert!(items[0].as_ref().is_ok_and(|b| ids(b) == vec![1]));
        let last = items[1]
            .as_ref()
            .err()
            .map(ToString::to_string)
            .unwrap_or_default();
        assert!(last.contains("the test reader"), "{last}");
    }

    #[tokio::test]
    async fn a_producer_that_finishes_adds_nothing_to_its_stream() {
        let (tx, rx) = mpsc::channel(1);
        let producer = tokio::spawn(async move {
            let _ = tx.send(Ok(people(&[(1, Some("x"))]))).await;
        });
        let stream = SchemaStream::received(people(&[]).schema(), rx, producer, "the test reader");
        let items: Vec<_> = stream.stream.collect().await;
        assert_eq!(items.len(), 1);
        assert!(items[0].is_ok());
    }
}
