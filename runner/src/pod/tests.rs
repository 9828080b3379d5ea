//! `synqx step` without a cluster: the status entries it sends, the step chosen from a plan,
//! the termination message, and whole attempts run against a recording status writer.

use std::path::Path;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};

use synqx_api::run::{StepStatus, WatermarkRange};
use synqx_api::validate::{InputFile, validate};

use super::report::from_result;
use super::status::report_progress;
use super::*;
use crate::engine::{CounterSnapshot, StepOutcome};
use crate::error::Error;

const YAML: &str = r#"
apiVersion: synqx.io/v1alpha1
kind: Connection
metadata: {name: inbox}
spec:
  filesystem: {path: ./in}
---
apiVersion: synqx.io/v1alpha1
kind: Connection
metadata: {name: warehouse}
spec:
  sqlite: {path: ./w.db}
---
apiVersion: synqx.io/v1alpha1
kind: Pipeline
metadata: {name: orders}
spec:
  steps:
    - name: load
      sync:
        onError: skip
        source:
          connection: inbox
          asset: {fqn: orders.csv}
          columns: {id: int64}
          incremental: {cursor: id}
        destination:
          connection: warehouse
          asset: {fqn: orders}
          mode: append
    - name: count
      dependsOn: [load]
      sql:
        connection: warehouse
        statements: ["CREATE TABLE IF NOT EXISTS n AS SELECT count(*) AS c FROM orders"]
"#;

fn plan() -> Plan {
    let report = validate(&[InputFile {
        name: "orders.yaml",
        text: YAML,
    }]);
    assert!(report.is_valid(), "{:?}", report.problems);
    report
        .plans
        .get("orders")
        .cloned()
        .unwrap_or_else(|| panic!("no plan"))
}

fn target(step: &str) -> Attempt {
    Attempt {
        namespace: "etl".into(),
        run: "orders-1".into(),
        step: step.into(),
        attempt: 2,
    }
}

fn env(dir: &Path, watermark: Option<&str>) -> PodEnv {
    PodEnv {
        step_plan: None,
        gateway: None,
        token_file: None,
        connection: None,
        watermark: watermark.map(str::to_string),
        secrets: Secrets::default(),
        work_dir: dir.to_path_buf(),
        termination_path: dir.join("termination-log"),
        log: StepLog::default(),
    }
}

/// Runs `step` of `plan` as attempt 2 of PipelineRun etl/orders-1, uncancelled, keeping the
/// status entries it writes in `recorded`.
async fn attempt(
    step: &str,
    revision: &str,
    plan: &Plan,
    env: &PodEnv,
    recorded: &Arc<Recorded>,
) -> StepReport {
    execute_planned(
        &target(step),
        revision,
        plan,
        env,
        recorded.clone(),
        CancellationToken::new(),
    )
    .await
}

/// The message of a report that must say the attempt failed.
fn failure(report: &StepReport) -> String {
    assert_eq!(report.phase, StepPhase::Failed, "{report:?}");
    report.message.clone().unwrap_or_default()
}

/// A status writer that keeps every entry it is given.
#[derive(Default)]
struct Recorded(Mutex<Vec<StepStatus>>);

impl Recorded {
    fn entries(&self) -> Vec<StepStatus> {
        self.0.lock().map(|e| e.clone()).unwrap_or_default()
    }
}

#[async_trait::async_trait]
impl StatusWriter for Recorded {
    async fn apply(&self, entry: &StepStatus) -> Result<(), StatusWriteError> {
        self.0
            .lock()
            .unwrap_or_else(|e| panic!("the recorded entries: {e}"))
            .push(entry.clone());
        Ok(())
    }
}

/// A status writer whose every write fails, counting the attempts.
#[derive(Default)]
struct Unreachable(AtomicUsize);

#[async_trait::async_trait]
impl StatusWriter for Unreachable {
    async fn apply(&self, _: &StepStatus) -> Result<(), StatusWriteError> {
        self.0.fetch_add(1, Ordering::SeqCst);
        Err(StatusWriteError::Refused {
            url: "http://gateway".into(),
            code: 503,
            message: "unavailable".into(),
        })
    }
}

fn counters() -> CounterSnapshot {
    CounterSnapshot {
        rows_read: 10,
        bytes_read: 100,
        rows_written: 8,
        bytes_written: 80,
        batches: 1,
        rows_rejected: 2,
    }
}

#[test]
fn the_progress_entry_holds_only_the_counters() {
    let entry = serde_json::to_value(progress_entry("load", counters())).unwrap_or_default();
    assert_eq!(
        entry,
        serde_json::json!({
            "name": "load",
            "rowsRead": 10,
            "rowsWritten": 8,
            "rowsRejected": 2,
            "bytesRead": 100,
            "bytesWritten": 80,
        })
    );
}

#[test]
fn the_final_entry_adds_the_watermark_and_leaves_the_error_to_the_operator() {
    let succeeded = StepReport {
        step: "load".into(),
        phase: StepPhase::Succeeded,
        rows_read: 3,
        rows_written: 3,
        watermark: Some(WatermarkRange {
            from: None,
            to: Some("42".into()),
        }),
        ..Default::default()
    };
    let body = serde_json::to_value(final_entry(&succeeded)).unwrap_or_default();
    assert_eq!(
        body,
        serde_json::json!({
            "name": "load",
            "rowsRead": 3,
            "rowsWritten": 3,
            "rowsRejected": 0,
            "bytesRead": 0,
            "bytesWritten": 0,
            "watermark": {"to": "42"},
        })
    );

    let failed = StepReport {
        phase: StepPhase::Failed,
        watermark: Some(WatermarkRange::default()),
        message: Some("source: boom".into()),
        ..succeeded.clone()
    };
    let entry = final_entry(&failed);
    assert_eq!(entry.rows_read, Some(3));
    assert_eq!(entry.watermark, None, "an empty range is not written");
    let body = serde_json::to_value(&entry).unwrap_or_default();
    for field in [
        "phase",
        "attempt",
        "jobName",
        "startedAt",
        "finishedAt",
        "message",
    ] {
        assert!(body.get(field).is_none(), "{field} belongs to the operator");
    }
}

#[test]
fn a_step_is_chosen_by_name_and_a_wrong_name_lists_the_steps() {
    let plan = plan();
    assert_eq!(
        choose_step(&plan, "orders-1", "count")
            .map(|s| s.name.as_str())
            .ok(),
        Some("count")
    );
    let e = choose_step(&plan, "orders-1", "lod")
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
    assert!(
        e.contains("PipelineRun \"orders-1\" has no step \"lod\" (steps: load, count)"),
        "{e}"
    );
    assert!(e.contains("--step"), "{e}");
}

#[test]
fn the_plan_comes_from_the_pods_environment_without_the_api() {
    let plan = plan();
    let Some(step_plan) = synqx_api::step_plan::StepPlan::of(&plan, "orders-5d8f", "count") else {
        panic!("count is planned");
    };
    let text = step_plan.to_env_value().unwrap_or_else(|e| panic!("{e}"));
    let (revision, one) = plan_from_env(&text).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(revision, "orders-5d8f");
    assert_eq!(one.hash, plan.hash);
    assert_eq!(one.step("count"), plan.step("count"));
    assert_eq!(
        one.connections.keys().collect::<Vec<_>>(),
        vec!["warehouse"]
    );
    assert!(choose_step(&one, "orders-1", "load").is_err());

    let e = plan_from_env("{\"step\": 1}")
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
    assert!(
        e.starts_with("$SYNQX_STEP_PLAN does not hold the plan of a step: "),
        "{e}"
    );
    assert!(e.contains("different SynqX versions"), "{e}");
}

/// A pod without the plan, or whose `--revision` is not the plan's, runs nothing, makes no
/// API call (it has no credentials) and says why in its termination message.
#[tokio::test]
async fn a_pod_without_its_plan_or_with_another_revision_runs_nothing() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let planless = run(
        Some("etl".into()),
        "orders-1".into(),
        "count".into(),
        1,
        None,
        &env(dir.path(), None),
        CancellationToken::new(),
    )
    .await;
    let message = failure(&planless);
    assert!(
        message.contains("the pod has no $SYNQX_STEP_PLAN, so no plan to run"),
        "{message}"
    );
    let written = std::fs::read_to_string(dir.path().join("termination-log"))
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(written.contains("no $SYNQX_STEP_PLAN"), "{written}");

    let Some(step_plan) = synqx_api::step_plan::StepPlan::of(&plan(), "orders-5d8f", "count")
    else {
        panic!("count is planned");
    };
    let mut with_plan = env(dir.path(), None);
    with_plan.step_plan = Some(step_plan.to_env_value().unwrap_or_else(|e| panic!("{e}")));
    let other = run(
        Some("etl".into()),
        "orders-1".into(),
        "count".into(),
        1,
        Some("orders-0000".into()),
        &with_plan,
        CancellationToken::new(),
    )
    .await;
    let message = failure(&other);
    assert_eq!(other.rows_read, 0);
    assert!(
        message.contains(
            "--revision names ControllerRevision \"orders-0000\" but $SYNQX_STEP_PLAN holds the plan of \"orders-5d8f\""
        ),
        "{message}"
    );
}

#[test]
fn connections_come_from_the_plan_and_start_at_the_working_directory() {
    let plan = plan();
    let secrets = Secrets::default();
    let work = Path::new("/work/dir");
    let conn = plan_connection(&plan, "warehouse", "load", &secrets, work)
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(conn.name, "warehouse");
    assert_eq!(conn.path("./w.db"), work.join("./w.db"));
    let e = plan_connection(&plan, "lake", "load", &secrets, work)
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
    assert!(
        e.contains("step \"load\" uses Connection \"lake\", which is not in the run's plan (connections: inbox, warehouse)"),
        "{e}"
    );
}

#[test]
fn the_report_says_how_the_step_ended() {
    let ok = from_result(
        "load",
        Ok(StepOutcome {
            counters: counters(),
            watermark_from: Some("7".into()),
            watermark_to: Some("9".into()),
            ..Default::default()
        }),
        CounterSnapshot::default(),
        Some("7".into()),
        false,
    );
    assert_eq!(ok.phase, StepPhase::Succeeded);
    assert_eq!((ok.rows_read, ok.rows_rejected), (10, 2));
    assert_eq!(
        ok.watermark,
        Some(WatermarkRange {
            from: Some("7".into()),
            to: Some("9".into())
        })
    );
    assert_eq!(exit_code(ok.phase), 0);

    let timeout = from_result(
        "load",
        Err(Error::Cancelled(
            "step \"load\" exceeded its timeout of 1s".into(),
        )),
        counters(),
        None,
        false,
    );
    assert_eq!(
        timeout.phase,
        StepPhase::Failed,
        "a timeout is a failed attempt"
    );
    assert_eq!(timeout.rows_read, 10);
    assert_eq!(timeout.watermark, None);
    assert!(timeout.message.is_some_and(|m| m.contains("timeout")));
    assert_eq!(exit_code(timeout.phase), 1);

    let signalled = from_result(
        "load",
        Err(Error::Cancelled("step \"load\" was cancelled".into())),
        counters(),
        Some("7".into()),
        true,
    );
    assert_eq!(signalled.phase, StepPhase::Cancelled);
    assert_eq!(
        signalled.watermark.and_then(|w| w.from).as_deref(),
        Some("7")
    );
    assert_eq!(exit_code(signalled.phase), 130);
}

#[test]
fn the_termination_message_is_the_report_as_json() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let path = dir.path().join("termination-log");
    let report = StepReport {
        step: "load".into(),
        phase: StepPhase::Failed,
        rows_read: 5,
        message: Some("x".repeat(10_000)),
        ..Default::default()
    };
    write_termination_message(&path, &report).unwrap_or_else(|e| panic!("{e}"));
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{e}"));
    assert!(text.len() <= StepReport::MAX_BYTES, "{}", text.len());
    let back: StepReport = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        (back.step.as_str(), back.phase, back.rows_read),
        ("load", StepPhase::Failed, 5)
    );

    assert!(write_termination_message(&dir.path().join("no/such/dir"), &report).is_err());
}

// Paused time: the test's sleeps let the task's timer fire tick by tick, so "nothing written
// for five ticks" is a fact about ticks, not about how busy the machine was.
#[tokio::test(start_paused = true)]
async fn progress_is_written_while_counters_change_and_stops_when_told() {
    let recorded = Arc::new(Recorded::default());
    let counters = Arc::new(Counters::default());
    let stop = CancellationToken::new();
    let task = tokio::spawn(report_progress(
        recorded.clone(),
        target("load"),
        counters.clone(),
        Duration::from_millis(10),
        stop.clone(),
    ));
    Counters::add(&counters.rows_read, 4);
    let deadline = Instant::now() + Duration::from_secs(10);
    while recorded.entries().is_empty() && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let first = recorded.entries();
    assert_eq!(first.len(), 1, "{first:?}");
    assert_eq!(first[0].rows_read, Some(4));
    assert_eq!(first[0].watermark, None);

    // Unchanged counters are not written again: five ticks pass with nothing new, then a
    // change is written at the next one.
    tokio::time::sleep(Duration::from_millis(55)).await;
    assert_eq!(recorded.entries().len(), 1);
    Counters::add(&counters.rows_read, 5);
    tokio::time::sleep(Duration::from_millis(15)).await;
    let rows: Vec<_> = recorded.entries().iter().map(|e| e.rows_read).collect();
    assert_eq!(rows, [Some(4), Some(9)]);

    assert!(!task.is_finished(), "the progress task stopped on its own");
    stop.cancel();
    let ended = tokio::time::timeout(Duration::from_secs(5), task).await;
    assert!(
        matches!(ended, Ok(Ok(()))),
        "the progress task ends when told, without panicking: {ended:?}"
    );

    // A writer that always fails is logged, never fatal: the task keeps trying.
    let stop = CancellationToken::new();
    let unreachable = Arc::new(Unreachable::default());
    let task = tokio::spawn(report_progress(
        unreachable.clone(),
        target("load"),
        counters,
        Duration::from_millis(5),
        stop.clone(),
    ));
    let deadline = Instant::now() + Duration::from_secs(10);
    while unreachable.0.load(Ordering::SeqCst) < 3 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert!(
        unreachable.0.load(Ordering::SeqCst) >= 3,
        "the failed write was not tried again"
    );
    assert!(
        !task.is_finished(),
        "a failed write stopped the progress task"
    );
    stop.cancel();
    let ended = tokio::time::timeout(Duration::from_secs(5), task).await;
    assert!(matches!(ended, Ok(Ok(()))), "{ended:?}");
}

#[tokio::test]
async fn an_attempt_runs_the_planned_step_from_its_watermark() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    std::fs::create_dir_all(dir.path().join("in")).unwrap_or_else(|e| panic!("{e}"));
    std::fs::write(
        dir.path().join("in/orders.csv"),
        "id,item\n1,tea\n2,cake\nthree,jam\n3,milk\n",
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let plan = plan();
    let recorded = Arc::new(Recorded::default());
    let t = target("load");

    let first = attempt(
        "load",
        "orders-5d8f",
        &plan,
        &env(dir.path(), None),
        &recorded,
    )
    .await;
    assert_eq!(first.phase, StepPhase::Succeeded, "{:?}", first.message);
    assert_eq!(
        (first.rows_read, first.rows_written, first.rows_rejected),
        (3, 3, 1)
    );
    assert_eq!(
        first.watermark,
        Some(WatermarkRange {
            from: None,
            to: Some("3".into())
        })
    );
    let rejects = dir.path().join("rejects/load-orders-1-2.jsonl");
    assert!(rejects.exists(), "the dead-letter file is under ./rejects/");

    finish(&t, &first, recorded.as_ref(), Duration::from_millis(1)).await;
    let last = recorded.entries().pop().unwrap_or_default();
    assert_eq!(last.rows_written, Some(3));
    assert_eq!(last.watermark.and_then(|w| w.to).as_deref(), Some("3"));

    // From the committed watermark: nothing new.
    let second = attempt(
        "load",
        "orders-5d8f",
        &plan,
        &env(dir.path(), Some("3")),
        &recorded,
    )
    .await;
    assert_eq!(second.phase, StepPhase::Succeeded, "{:?}", second.message);
    assert_eq!((second.rows_read, second.rows_written), (0, 0));
    assert_eq!(second.watermark.and_then(|w| w.from).as_deref(), Some("3"));

    // The sql step of the same plan, on the same working directory.
    let count = attempt(
        "count",
        "orders-5d8f",
        &plan,
        &env(dir.path(), Some("ignored")),
        &recorded,
    )
    .await;
    assert_eq!(count.phase, StepPhase::Succeeded, "{:?}", count.message);
    assert_eq!(count.watermark, None);
}

#[tokio::test]
async fn an_attempt_that_cannot_run_fails_or_is_cancelled_with_a_reason() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let mut plan = plan();
    let recorded = Arc::new(Recorded::default());

    let missing = attempt("lod", "r", &plan, &env(dir.path(), None), &recorded).await;
    let message = failure(&missing);
    assert!(
        message.starts_with("PipelineRun etl/orders-1 step \"lod\" attempt 2: "),
        "{message}"
    );
    assert!(message.contains("(steps: load, count)"), "{message}");

    let cancel = CancellationToken::new();
    cancel.cancel();
    let cancelled = execute_planned(
        &target("load"),
        "r",
        &plan,
        &env(dir.path(), None),
        recorded.clone(),
        cancel,
    )
    .await;
    assert_eq!(cancelled.phase, StepPhase::Cancelled);
    assert_eq!(exit_code(cancelled.phase), 130);

    // A watermark too long to come back in the report: refused before a row moves.
    let huge = "9".repeat(5000);
    let too_long = attempt("load", "r", &plan, &env(dir.path(), Some(&huge)), &recorded).await;
    let message = failure(&too_long);
    assert_eq!(too_long.rows_read, 0);
    assert!(
        message.contains(
            "step \"load\" attempt 2: the watermark it starts from is 5000 bytes long as JSON; a watermark holds at most 1536"
        ),
        "{message}"
    );
    assert!(too_long.to_termination_message().len() <= StepReport::MAX_BYTES);

    plan.connections.remove("warehouse");
    let broken = attempt("count", "r", &plan, &env(dir.path(), None), &recorded).await;
    assert_eq!(broken.phase, StepPhase::Failed);
    finish(
        &target("count"),
        &broken,
        &Unreachable::default(),
        Duration::from_millis(1),
    )
    .await;
    finish(
        &target("count"),
        &broken,
        recorded.as_ref(),
        Duration::from_millis(1),
    )
    .await;
    // The error goes to the termination message, where the operator reads it; the status
    // entry the runner writes holds its counters only.
    assert!(
        broken
            .message
            .as_deref()
            .is_some_and(|m| m.contains("Connection \"warehouse\", which is not in the run's plan")),
        "{broken:?}"
    );
    let entry = recorded.entries().pop().unwrap_or_default();
    assert_eq!((entry.name.as_str(), entry.message), ("count", None));
}
