//! The engine with in-memory sources and sinks: channel flow, counters, watermarks that move
//! only after a commit, cancellation and timeouts.

use std::sync::Mutex;

use arrow::array::{Int64Array, StringArray};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use synqx_api::pipeline::{Asset, Incremental, SyncStep, Transform};

use super::*;
use crate::error::BadRow;

fn schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("id", DataType::Int64, false),
        Field::new("status", DataType::Utf8, true),
    ]))
}

fn batch(ids: &[i64]) -> RecordBatch {
    let status: Vec<&str> = ids
        .iter()
        .map(|i| if i % 2 == 0 { "even" } else { "odd" })
        .collect();
    RecordBatch::try_new(
        schema(),
        vec![
            Arc::new(Int64Array::from(ids.to_vec())),
            Arc::new(StringArray::from(status)),
        ],
    )
    .unwrap_or_else(|e| panic!("{e}"))
}

/// Serves fixed batches, applying the pushed-down filter like a real source would.
struct Memory {
    batches: Vec<RecordBatch>,
    fail_after: Option<usize>,
    seen_filter: Mutex<Option<CursorFilter>>,
    /// Whether the stream says it is produced ahead: the engine then observes the batches
    /// as the sink takes them instead of in a task of its own.
    ahead: bool,
}

#[async_trait]
impl Source for Memory {
    async fn read(&self, request: &ReadRequest) -> Result<SchemaStream> {
        *self.seen_filter.lock().unwrap_or_else(|e| e.into_inner()) = request.filter.clone();
        let mut items: Vec<Result<RecordBatch>> = Vec::new();
        for (i, b) in self.batches.iter().enumerate() {
            if self.fail_after == Some(i) {
                items.push(Err(BadRow::new("memory: row 3", "broken")
                    .column("id")
                    .into()));
                break;
            }
            items.push(match &request.filter {
                Some(f) => cursor::filter_batch(b, f),
                None => Ok(b.clone()),
            });
        }
        let stream = SchemaStream::new(schema(), futures::stream::iter(items));
        Ok(if self.ahead { stream.ahead() } else { stream })
    }
}

/// Collects rows and "commits" them only when the whole stream was read.
#[derive(Default)]
struct Collect {
    committed: Mutex<Vec<i64>>,
    delay: Option<Duration>,
}

impl Collect {
    /// The ids committed so far: a lock poisoned by a panicking writer still holds them.
    fn ids(&self) -> Vec<i64> {
        self.committed
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }
}

#[async_trait]
impl Sink for Collect {
    async fn write(
        &self,
        _request: &WriteRequest,
        mut input: SchemaStream,
    ) -> Result<WriteOutcome> {
        let mut pending = Vec::new();
        while let Some(b) = input.stream.next().await {
            let b = b?;
            if let Some(d) = self.delay {
                tokio::time::sleep(d).await;
            }
            let ids = b
                .column(0)
                .as_any()
                .downcast_ref::<Int64Array>()
                .map(|a| a.values().to_vec())
                .unwrap_or_default();
            pending.extend(ids);
        }
        let rows = pending.len() as u64;
        self.committed
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .extend(pending);
        Ok(WriteOutcome {
            rows,
            bytes: rows * 8,
        })
    }
}

fn step(incremental: bool, transforms: Vec<Transform>) -> SyncStep {
    let mut s = SyncStep::default();
    s.source.asset = Asset {
        name: None,
        fqn: "t".into(),
    };
    s.source.incremental = incremental.then(|| Incremental {
        cursor: "id".into(),
        ..Default::default()
    });
    s.transforms = transforms;
    s
}

fn run_of(watermark: Option<&str>) -> StepRun {
    StepRun {
        step: "s".into(),
        watermark: watermark.map(str::to_string),
        counters: Arc::new(Counters::default()),
        cancel: CancellationToken::new(),
        timeout: None,
        dead_letter: None,
        memory: crate::transforms::MemoryBudget::detect().unwrap_or_else(|e| panic!("{e}")),
    }
}

fn memory(batches: Vec<RecordBatch>, fail_after: Option<usize>) -> Arc<Memory> {
    memory_ahead(batches, fail_after, false)
}

fn memory_ahead(batches: Vec<RecordBatch>, fail_after: Option<usize>, ahead: bool) -> Arc<Memory> {
    Arc::new(Memory {
        batches,
        fail_after,
        seen_filter: Mutex::new(None),
        ahead,
    })
}

#[tokio::test]
async fn rows_flow_through_transforms_into_the_sink() {
    let sink = Arc::new(Collect::default());
    let filter = Transform {
        filter: Some("status = 'even'".into()),
        ..Default::default()
    };
    let out = run_sync(
        &step(false, vec![filter]),
        memory(vec![batch(&[1, 2, 3]), batch(&[4, 5])], None),
        sink.clone(),
        run_of(None),
    )
    .await
    .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(sink.ids(), vec![2, 4]);
    assert_eq!(out.counters.rows_read, 5);
    assert_eq!(out.counters.rows_written, 2);
    assert_eq!(out.counters.batches, 2);
    assert_eq!(out.watermark_to, None);
}

/// Whether the engine observes the batches in a task of its own or as the sink takes them
/// (a source that produces ahead), the counters and the watermark are the same.
#[tokio::test]
async fn the_watermark_is_the_highest_cursor_and_is_pushed_down_next_time() {
    for ahead in [false, true] {
        watermark_is_the_highest_cursor(ahead).await;
    }
}

async fn watermark_is_the_highest_cursor(ahead: bool) {
    let source = memory_ahead(vec![batch(&[3, 9, 4]), batch(&[7])], None, ahead);
    let first = run_sync(
        &step(true, vec![]),
        source.clone(),
        Arc::new(Collect::default()),
        run_of(None),
    )
    .await
    .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(first.watermark_to.as_deref(), Some("9"), "ahead: {ahead}");
    assert_eq!((first.counters.rows_read, first.counters.batches), (4, 2));
    let sink = Arc::new(Collect::default());
    let second = run_sync(
        &step(true, vec![]),
        source.clone(),
        sink.clone(),
        run_of(Some("7")),
    )
    .await
    .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        *source.seen_filter.lock().unwrap_or_else(|e| e.into_inner()),
        Some(CursorFilter {
            column: "id".into(),
            after: "7".into()
        })
    );
    assert_eq!(sink.ids(), vec![9]);
    assert_eq!(
        (
            second.watermark_from.as_deref(),
            second.watermark_to.as_deref()
        ),
        (Some("7"), Some("9"))
    );
    // Nothing new: the watermark stays where it was.
    let third = run_sync(
        &step(true, vec![]),
        source,
        Arc::new(Collect::default()),
        run_of(Some("9")),
    )
    .await
    .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(third.counters.rows_read, 0);
    assert_eq!(third.watermark_to.as_deref(), Some("9"));
}

#[tokio::test]
async fn a_failing_source_commits_nothing_and_returns_no_watermark() {
    for ahead in [false, true] {
        let sink = Arc::new(Collect::default());
        let err = run_sync(
            &step(true, vec![]),
            memory_ahead(vec![batch(&[1]), batch(&[2])], Some(1), ahead),
            sink.clone(),
            run_of(None),
        )
        .await;
        assert_eq!(
            err.err().map(|e| e.to_string()).as_deref(),
            Some("memory: row 3, column \"id\": broken"),
            "ahead: {ahead}"
        );
        assert!(sink.ids().is_empty());
    }
}

#[tokio::test]
async fn cancellation_and_timeout_stop_before_the_commit() {
    let slow = || {
        Arc::new(Collect {
            delay: Some(Duration::from_millis(200)),
            ..Default::default()
        })
    };
    let sink = slow();
    let mut run = run_of(None);
    let cancel = run.cancel.clone();
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(50)).await;
        cancel.cancel();
    });
    run.step = "slow".into();
    let err = run_sync(
        &step(false, vec![]),
        memory(vec![batch(&[1]), batch(&[2])], None),
        sink.clone(),
        run,
    )
    .await;
    assert!(matches!(err, Err(Error::Cancelled(_))));
    assert!(sink.ids().is_empty());

    let sink = slow();
    let mut run = run_of(None);
    run.timeout = Some(Duration::from_millis(50));
    let err = run_sync(
        &step(false, vec![]),
        memory(vec![batch(&[1]), batch(&[2])], None),
        sink.clone(),
        run,
    )
    .await
    .err()
    .map(|e| e.to_string())
    .unwrap_or_default();
    assert!(err.contains("exceeded its timeout of 50ms"), "{err}");
    assert!(sink.ids().is_empty());
}

#[tokio::test]
async fn the_initial_watermark_applies_to_the_first_run_only() {
    let source = memory(vec![batch(&[1, 5, 10])], None);
    let mut s = step(true, vec![]);
    if let Some(inc) = s.source.incremental.as_mut() {
        inc.initial = Some("4".into());
    }
    let out = run_sync(
        &s,
        source.clone(),
        Arc::new(Collect::default()),
        run_of(None),
    )
    .await
    .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(out.counters.rows_read, 2);
    assert_eq!(out.watermark_from, None);
    assert_eq!(out.watermark_to.as_deref(), Some("10"));
}

/// A JSON-like source whose documents after the sample disagree until `price` is declared.
struct Widens {
    reads: Mutex<u32>,
    /// Widens on every read, whatever is declared.
    always: bool,
    /// Says it produces ahead, as the sources that widen (REST, MongoDB) do.
    ahead: bool,
}

impl Widens {
    /// How many times the step read it.
    fn read_count(&self) -> u32 {
        *self.reads.lock().unwrap_or_else(|e| e.into_inner())
    }
}

#[async_trait]
impl Source for Widens {
    async fn read(&self, request: &ReadRequest) -> Result<SchemaStream> {
        *self.reads.lock().unwrap_or_else(|e| e.into_inner()) += 1;
        let mut items = vec![Ok(batch(&[1, 2]))];
        if self.always || !request.spec.columns.contains_key("price") {
            items.push(Err(Error::Widened {
                message: "api: page 2, record 1: field \"price\" is a number 2.5".into(),
                columns: [("price".to_string(), "float64".to_string())].into(),
            }));
        } else {
            items.push(Ok(batch(&[3])));
        }
        let stream = SchemaStream::new(schema(), futures::stream::iter(items));
        Ok(if self.ahead { stream.ahead() } else { stream })
    }
}

/// A sink that keeps what it appended when a load fails.
struct KeepsAppends(Collect);

#[async_trait]
impl Sink for KeepsAppends {
    async fn write(&self, request: &WriteRequest, input: SchemaStream) -> Result<WriteOutcome> {
        self.0.write(request, input).await
    }

    fn restartable(&self, _destination: &Destination) -> bool {
        false
    }
}

fn widens(always: bool, ahead: bool) -> Arc<Widens> {
    Arc::new(Widens {
        reads: Mutex::new(0),
        always,
        ahead,
    })
}

#[tokio::test]
async fn a_widened_schema_runs_the_step_again_with_the_columns() {
    for ahead in [false, true] {
        let source = widens(false, ahead);
        let sink = Arc::new(Collect::default());
        let run = run_of(None);
        let counters = run.counters.clone();
        let outcome = run_sync(&step(false, vec![]), source.clone(), sink.clone(), run)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(source.read_count(), 2, "ahead: {ahead}");
        assert_eq!(sink.ids(), [1, 2, 3], "committed once (ahead: {ahead})");
        assert_eq!(
            (outcome.counters.rows_read, outcome.counters.rows_written),
            (3, 3),
            "counted once (ahead: {ahead}): {:?}",
            counters.snapshot()
        );
        assert!(
            outcome
                .message
                .unwrap_or_default()
                .contains("step \"s\": api: page 2, record 1: field \"price\" is a number 2.5"),
        );
    }
}

#[tokio::test]
async fn a_widening_is_not_run_again_into_a_sink_that_keeps_appends_nor_forever() {
    for ahead in [false, true] {
        let source = widens(false, ahead);
        let sink = Arc::new(KeepsAppends(Collect::default()));
        let e = run_sync(&step(false, vec![]), source.clone(), sink, run_of(None))
            .await
            .err()
            .unwrap_or_else(|| panic!("no error"))
            .to_string();
        assert_eq!(source.read_count(), 1, "ahead: {ahead}");
        assert!(
            e.ends_with("but the destination keeps what it appended, so step \"s\" is not run again: declare the columns in the source (columns: {\"price\": float64}) and run it again"),
            "{e}"
        );
        let source = widens(true, ahead);
        let e = run_sync(
            &step(false, vec![]),
            source.clone(),
            Arc::new(Collect::default()),
            run_of(None),
        )
        .await
        .err()
        .unwrap_or_else(|| panic!("no error"))
        .to_string();
        assert_eq!(source.read_count(), 3, "ahead: {ahead}");
        assert!(
            e.contains("the documents still disagreed after 3 reads"),
            "{e}"
        );
    }
}

/// Counts the batches it produces, one a millisecond without end: in its stream's
/// `poll_next`, or `ahead` in a task of its own. `stopped` is cancelled once whatever produces
/// the batches is dropped.
struct Endless {
    produced: Arc<std::sync::atomic::AtomicUsize>,
    ahead: bool,
    stopped: CancellationToken,
}

impl Endless {
    fn new(ahead: bool) -> Arc<Self> {
        Arc::new(Self {
            produced: Arc::default(),
            ahead,
            stopped: CancellationToken::new(),
        })
    }

    fn produced(&self) -> usize {
        self.produced.load(std::sync::atomic::Ordering::SeqCst)
    }
}

#[async_trait]
impl Source for Endless {
    async fn read(&self, _request: &ReadRequest) -> Result<SchemaStream> {
        let produced = self.produced.clone();
        let guard = self.stopped.clone().drop_guard();
        let next = move |i: i64| {
            let produced = produced.clone();
            async move {
                tokio::time::sleep(Duration::from_millis(1)).await;
                produced.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                Ok(batch(&[i]))
            }
        };
        if self.ahead {
            return Ok(SchemaStream::produced_by(schema(), move |tx| async move {
                let _guard = guard;
                for i in 0.. {
                    if tx.send(next(i).await).await.is_err() {
                        break;
                    }
                }
                Ok(())
            }));
        }
        let batches = futures::stream::iter(0..).then(next).map(move |b| {
            let _held = &guard;
            b
        });
        Ok(SchemaStream::new(schema(), batches))
    }
}

/// Takes one batch, then never reads again (a destination that stalls).
struct Stalls;

#[async_trait]
impl Sink for Stalls {
    async fn write(
        &self,
        _request: &WriteRequest,
        mut input: SchemaStream,
    ) -> Result<WriteOutcome> {
        let _first = input.stream.next().await;
        std::future::pending().await
    }
}

/// The batches a step without transforms has made its source produce when its destination
/// stalls: with the clock paused, the step's timeout fires only once no task can move, so the
/// count is taken when the source is blocked.
async fn produced_when_stalled(ahead: bool) -> usize {
    let mut run = run_of(None);
    run.timeout = Some(Duration::from_secs(3600));
    let source = Endless::new(ahead);
    let err = run_sync(&step(false, vec![]), source.clone(), Arc::new(Stalls), run)
        .await
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
    assert!(err.contains("exceeded its timeout"), "{err}");
    source.produced()
}

/// The batch the sink holds, the engine's channel's, and the one the engine's task waits to
/// send; a transform task that only passed batches on would hold three more.
#[tokio::test(start_paused = true)]
async fn a_step_without_transforms_holds_only_the_source_channel_s_batches() {
    assert_eq!(produced_when_stalled(false).await, 1 + CHANNEL_DEPTH + 1);
}

/// A source that produces ahead is observed as the sink takes its batches: the batch the
/// sink holds, the one in the source's own channel and the one its task waits to send. A task
/// of the engine's own between them would hold three more (the one it waits to send and its
/// channel's).
#[tokio::test(start_paused = true)]
async fn a_source_that_produces_ahead_gets_no_task_of_the_engine_s_own() {
    assert_eq!(produced_when_stalled(true).await, 3);
}

/// Refuses the destination before it reads a batch (a connection refused, say).
struct Refuses;

#[async_trait]
impl Sink for Refuses {
    async fn write(&self, _request: &WriteRequest, _input: SchemaStream) -> Result<WriteOutcome> {
        Err(Error::Config("the destination refused the load".into()))
    }
}

/// A transform that reads its whole input before it yields a row.
fn sorted() -> Vec<Transform> {
    vec![Transform {
        sql: Some("SELECT * FROM input ORDER BY id DESC".into()),
        ..Default::default()
    }]
}

/// Waits, bounded, until the source's producer was dropped.
async fn stops_reading(source: &Endless) {
    let stopped = source.stopped.cancelled();
    if tokio::time::timeout(Duration::from_secs(60), stopped)
        .await
        .is_err()
    {
        panic!(
            "the source was still read after the step ended ({} batches)",
            source.produced()
        );
    }
}

/// The sort would read the (endless) source to its end before its first send found the
/// sink gone: the step must end with the sink's error and stop reading at once.
#[tokio::test(start_paused = true)]
async fn a_failed_sink_stops_a_transform_that_reads_its_whole_input() {
    for ahead in [false, true] {
        let source = Endless::new(ahead);
        let mut run = run_of(None);
        run.timeout = Some(Duration::from_secs(60));
        let err = run_sync(
            &step(false, sorted()),
            source.clone(),
            Arc::new(Refuses),
            run,
        )
        .await
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
        assert!(
            err.contains("the destination refused the load"),
            "ahead: {ahead}: {err}"
        );
        stops_reading(&source).await;
    }
}

/// A cancelled step drops its transform with it instead of leaving it to read the source.
#[tokio::test(start_paused = true)]
async fn a_cancelled_step_stops_its_transform() {
    for ahead in [false, true] {
        let source = Endless::new(ahead);
        let run = run_of(None);
        let cancel = run.cancel.clone();
        let step = step(false, sorted());
        let running = run_sync(&step, source.clone(), Arc::new(Stalls), run);
        let cancelled = async {
            while source.produced() < 10 {
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
            cancel.cancel();
        };
        let (outcome, ()) = tokio::join!(running, cancelled);
        assert!(
            matches!(outcome, Err(Error::Cancelled(_))),
            "ahead: {ahead}"
        );
        stops_reading(&source).await;
    }
}
