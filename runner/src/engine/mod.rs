//! The streaming engine: a step is `Source -> Transform* -> Sink`, each working concurrently,
//! joined by bounded channels of Arrow batches. Memory is bounded by bytes: sources cut
//! batches to a byte budget, each channel holds at most a few batches, and no task exists only
//! to pass batches on (a source that produces ahead is read by the sink directly, see
//! `observe`; a step without transforms has no transform task).

pub mod counters;
pub mod cursor;
pub mod kept_rejects;
mod observe;
pub mod rejects;
pub mod stream;
pub mod threads;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use arrow::array::RecordBatch;
use async_trait::async_trait;
use futures::StreamExt;
use synqx_api::pipeline::{Destination, Source as SourceSpec, SyncStep};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tokio_util::task::AbortOnDropHandle;

pub use counters::{CounterSnapshot, Counters};
pub use cursor::CursorFilter;
use observe::{Observed, Observer};
pub use rejects::Rejects;
pub use stream::{BatchStream, SchemaStream};

use crate::error::{Error, Result};
use crate::transforms::MemoryBudget;

/// Default byte budget of one batch. Batches are the unit of work, not of speed: decoders build
/// them row by row and writers consume them column by column, so a database or Parquet source
/// runs as fast with 2 MiB as with 8 MiB, and a step holds a few batches less memory (6–16
/// MiB less of lineitem at 6M rows, see docs/benchmarks.md). CSV parsing, which splits work
/// by batch, sizes its blocks from this budget so that they stay large enough to pay.
pub const DEFAULT_BATCH_BYTES: usize = 2 * 1024 * 1024;
/// Batches a channel between two tasks holds at most.
pub const CHANNEL_DEPTH: usize = 2;
/// The pseudo-column of file sources that carries each file's modification time.
pub const FILE_MODIFIED_COLUMN: &str = "_file_modified";

/// What a source is asked to read.
#[derive(Clone)]
pub struct ReadRequest {
    /// The source block of the step.
    pub spec: SourceSpec,
    /// Rows to skip, pushed down where the system can filter.
    pub filter: Option<CursorFilter>,
    /// Byte budget of one batch.
    pub batch_bytes: usize,
    /// Where bad rows go.
    pub rejects: Rejects,
    /// What the step may hold: sources that must hold a unit whole (a REST page) size it by
    /// this.
    pub memory: MemoryBudget,
}

/// What a sink is asked to write.
#[derive(Clone)]
pub struct WriteRequest {
    /// The destination block of the step.
    pub spec: Destination,
    /// Byte budget of one batch.
    pub batch_bytes: usize,
    /// When the step's timeout stops it (`None`: it has none). Sinks name what they stage
    /// with it, so that a later load knows when a killed run's work objects are orphans
    /// (`connectors::staging`).
    pub deadline: Option<SystemTime>,
    /// The step's counters, which a sink advances as it sends rows ([`WriteOutcome::count`]).
    pub counters: Arc<Counters>,
}

impl WriteRequest {
    /// A write into `spec` in batches of the default size, with no deadline and counters of
    /// its own.
    pub fn to(spec: Destination) -> Self {
        WriteRequest {
            spec,
            batch_bytes: DEFAULT_BATCH_BYTES,
            deadline: None,
            counters: Arc::default(),
        }
    }
}

/// What a sink wrote, once committed.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct WriteOutcome {
    pub rows: u64,
    pub bytes: u64,
}

impl WriteOutcome {
    /// Adds rows and bytes sent to the system, to the outcome and to the step's counters.
    pub fn count(&mut self, counters: &Counters, rows: u64, bytes: u64) {
        self.rows += rows;
        self.bytes += bytes;
        Counters::add(&counters.rows_written, rows);
        Counters::add(&counters.bytes_written, bytes);
    }
}

/// Reads an asset as a stream of batches whose schema is known before the first row.
#[async_trait]
pub trait Source: Send + Sync {
    async fn read(&self, request: &ReadRequest) -> Result<SchemaStream>;
}

/// Writes a stream into an asset and commits it as its mode promises: append adds, overwrite
/// replaces atomically, upsert merges by primary key. Nothing is visible before the commit, so
/// a failed or cancelled write leaves the destination as it was.
#[async_trait]
pub trait Sink: Send + Sync {
    async fn write(&self, request: &WriteRequest, input: SchemaStream) -> Result<WriteOutcome>;

    /// Whether a failed write leaves `destination` as it was (or a rerun makes it exact), so
    /// the step may run again, as it does when a JSON source widens its schema. True for
    /// loads that commit at the end; a sink that keeps what it appended says false.
    fn restartable(&self, _destination: &Destination) -> bool {
        true
    }
}

/// Everything a sync step needs besides its connectors.
pub struct StepRun {
    /// Name of the step, for messages.
    pub step: String,
    /// The watermark stored by the last committed run (ignored on a full refresh).
    pub watermark: Option<String>,
    pub counters: Arc<Counters>,
    pub cancel: CancellationToken,
    /// Longest time the step may take.
    pub timeout: Option<Duration>,
    /// Dead-letter file for `onError: skip`.
    pub dead_letter: Option<PathBuf>,
    /// What the step's transforms may hold, and where they spill.
    pub memory: MemoryBudget,
}

/// The result of a committed sync step.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct StepOutcome {
    pub counters: CounterSnapshot,
    pub watermark_from: Option<String>,
    /// The new watermark: the highest cursor committed, never lower than the old one.
    pub watermark_to: Option<String>,
    pub duration: Duration,
    pub dead_letter: Option<PathBuf>,
    /// What the step's connectors noted (see [`Counters::note`]).
    pub message: Option<String>,
}

/// Runs one sync step: source, transforms and sink as tasks joined by bounded channels (the
/// transforms' task only when there are transforms). The new watermark is returned only
/// after the sink committed.
pub async fn run_sync(
    sync: &SyncStep,
    source: Arc<dyn Source>,
    sink: Arc<dyn Sink>,
    run: StepRun,
) -> Result<StepOutcome> {
    let started = Instant::now();
    let step = run.step.clone();
    let cancel = run.cancel.clone();
    let timeout = run.timeout;
    let deadline = timeout.and_then(|t| SystemTime::now().checked_add(t));
    let work = run_widening(sync, source, sink, &run, deadline);
    let outcome = tokio::select! {
        result = work => result,
        () = cancel.cancelled() => Err(Error::Cancelled(format!("step \"{step}\" was cancelled before it committed; the destination is unchanged"))),
        () = sleep_or_forever(timeout) => Err(Error::Cancelled(format!(
            "step \"{step}\" exceeded its timeout of {}; the destination is unchanged",
            synqx_api::duration::format_duration(timeout.unwrap_or_default())
        ))),
    };
    outcome.map(|mut o| {
        o.duration = started.elapsed();
        o
    })
}

async fn sleep_or_forever(timeout: Option<Duration>) {
    match timeout {
        Some(t) => tokio::time::sleep(t).await,
        None => std::future::pending().await,
    }
}

/// Reads a JSON source's step at most this many times when later documents keep disagreeing
/// with the schema inferred from the first ones.
const MAX_READS: u32 = 3;

/// Runs the step, and again with the columns a JSON source widened when documents after its
/// sample disagreed with it (see `connectors::json_widen`): the first attempt's load failed,
/// so the destination is as it was.
async fn run_widening(
    sync: &SyncStep,
    source: Arc<dyn Source>,
    sink: Arc<dyn Sink>,
    run: &StepRun,
    deadline: Option<SystemTime>,
) -> Result<StepOutcome> {
    let mut sync = std::borrow::Cow::Borrowed(sync);
    let mut reads = 0;
    loop {
        reads += 1;
        let (message, columns) =
            match run_sync_inner(&sync, source.clone(), sink.clone(), run, deadline).await {
                Err(Error::Widened { message, columns }) => (message, columns),
                other => return other,
            };
        let declare = columns
            .iter()
            .map(|(k, v)| format!("\"{k}\": {v}"))
            .collect::<Vec<_>>()
            .join(", ");
        if !sink.restartable(&sync.destination) {
            return Err(Error::bad_row(
                "",
                format!(
                    "{message}; but the destination keeps what it appended, so step \"{}\" is not run again: declare the columns in the source (columns: {{{declare}}}) and run it again",
                    run.step
                ),
            ));
        }
        if reads >= MAX_READS {
            return Err(Error::bad_row(
                "",
                format!(
                    "{message}; the documents still disagreed after {MAX_READS} reads: declare the columns in the source (columns: {{{declare}}})"
                ),
            ));
        }
        run.counters.restart();
        run.counters
            .note(format!("step \"{}\": {message}", run.step));
        sync.to_mut().source.columns.extend(columns);
    }
}

async fn run_sync_inner(
    sync: &SyncStep,
    source: Arc<dyn Source>,
    sink: Arc<dyn Sink>,
    run: &StepRun,
    deadline: Option<SystemTime>,
) -> Result<StepOutcome> {
    let rejects = Rejects::new(
        sync.on_error.unwrap_or_default(),
        run.dead_letter.clone(),
        run.counters.clone(),
    );
    // A bad row that ends the step (a sink's, a converter's) leaves its data in the rejected
    // file, as the rejects do under `onError: fail`.
    move_rows(sync, source, sink, run, deadline, &rejects)
        .await
        .map_err(|e| rejects.keep_error(e))
}

/// Reads, transforms and writes the step's rows and commits them.
async fn move_rows(
    sync: &SyncStep,
    source: Arc<dyn Source>,
    sink: Arc<dyn Sink>,
    run: &StepRun,
    deadline: Option<SystemTime>,
    rejects: &Rejects,
) -> Result<StepOutcome> {
    let batch_bytes = match sync.batch_size.as_deref() {
        Some(text) => synqx_api::duration::parse_bytes(text)
            .map_err(|e| Error::Config(format!("batchSize: {e}")))? as usize,
        None => DEFAULT_BATCH_BYTES,
    };
    let incremental = sync.source.incremental.as_ref();
    let watermark_from = incremental.and(run.watermark.clone());
    let filter = match incremental {
        Some(inc) => {
            let initial = watermark_from.clone().or_else(|| inc.initial.clone());
            let after = match (&watermark_from, initial) {
                (Some(_), _) => {
                    cursor::lower_bound(watermark_from.as_deref(), inc.lookback.as_deref())?
                }
                (None, initial) => initial,
            };
            after.map(|after| CursorFilter {
                column: inc.cursor.clone(),
                after,
            })
        }
        None => None,
    };
    let request = ReadRequest {
        spec: sync.source.clone(),
        filter,
        batch_bytes,
        rejects: rejects.clone(),
        memory: run.memory.clone(),
    };
    let input = source.read(&request).await?;

    // Count, track the cursor, drop pseudo-columns: in a task of the engine's own unless the
    // source produces ahead in one of its own (see `observe`).
    let observer = Observer::new(
        run.counters.clone(),
        incremental.map(|inc| inc.cursor.as_str()),
    );
    let (from_source, watch) = observe::observe(input, observer);

    // Transform task, then the sink drains the last channel and commits. Without transforms
    // the sink reads the source's channel itself: a task and channel that only pass batches
    // on would hold three more of them in memory (a tenth of the peak of Parquet → CSV each).
    let (to_sink, transform_task) = if sync.transforms.is_empty() {
        (from_source, None)
    } else {
        let transformed =
            crate::transforms::apply(&sync.transforms, from_source, &run.step, &run.memory).await?;
        let (tx2, rx2) = mpsc::channel::<Result<RecordBatch>>(CHANNEL_DEPTH);
        let mut tstream = transformed.stream;
        // Aborted when the step ends or is dropped (cancelled, timed out): a sort or an
        // aggregation would otherwise read the rest of the source before its next send found
        // that nobody listens any more.
        let task = AbortOnDropHandle::new(tokio::spawn(async move {
            while let Some(item) = tstream.next().await {
                let failed = item.is_err();
                if tx2.send(item).await.is_err() || failed {
                    break;
                }
            }
        }));
        let to_sink = SchemaStream::new(transformed.schema, receiver_stream(rx2));
        (to_sink, Some(task))
    };
    let write = WriteRequest {
        spec: sync.destination.clone(),
        batch_bytes,
        deadline,
        counters: run.counters.clone(),
    };
    let written = sink.write(&write, to_sink).await;
    // The sink has read to the end or failed: either way the transform has nothing left to
    // do, and dropping it drops the source's stream, which ends the observer's task.
    drop(transform_task);
    let Observed { max_seen, widened } = watch.finish(&run.step).await?;
    if let Some((message, columns)) = widened {
        return Err(Error::Widened { message, columns });
    }
    let max_seen = max_seen?;
    let written = written?;
    let mut counters = run.counters.snapshot();
    counters.rows_written = written.rows;
    counters.bytes_written = written.bytes;
    Ok(StepOutcome {
        counters,
        watermark_to: cursor::later(watermark_from.as_deref(), max_seen.as_deref()),
        watermark_from,
        duration: Duration::ZERO,
        dead_letter: rejects.dead_letter_path(),
        message: run.counters.notes(),
    })
}

fn receiver_stream(
    mut rx: mpsc::Receiver<Result<RecordBatch>>,
) -> impl futures::Stream<Item = Result<RecordBatch>> + Send {
    futures::stream::poll_fn(move |cx| rx.poll_recv(cx))
}

#[cfg(test)]
mod tests;
