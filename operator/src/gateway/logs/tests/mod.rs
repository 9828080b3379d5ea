//! The log stores and the route: on a local folder here, on S3 (moto) in `moto.rs`.

use std::io::Write;
use std::sync::Arc;

use synqx_api::gateway::{LogLine, RunView, StepLog};
use synqx_api::run::{PipelineRunStatus, StepPhase, StepStatus};

use super::gzip::{decode, marker_text};
use super::route::{LogsQuery, pick};
use super::*;

#[cfg(feature = "s3-integration-tests")]
mod moto;

fn line(n: usize) -> LogLine {
    LogLine {
        time: format!("2026-12-02T10:00:{:02}.000000Z", n % 60),
        level: Some("INFO".into()),
        text: format!("line {n}"),
    }
}

fn key(step: &str, attempt: u32) -> LogKey {
    LogKey::new("etl", "orders", "orders-1", step, attempt).unwrap_or_else(|e| panic!("{e}"))
}

fn setup(max_bytes: u64) -> (tempfile::TempDir, Arc<DirStore>, Logs) {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("tempdir: {e}"));
    let store = Arc::new(DirStore::new(dir.path().to_path_buf()));
    let logs = Logs::new(store.clone(), max_bytes);
    (dir, store, logs)
}

async fn stored(store: &DirStore, key: &LogKey) -> Vec<LogLine> {
    match store.read(key).await {
        Ok(Some(bytes)) => decode(&bytes),
        other => panic!("{key}: {other:?}"),
    }
}

fn json_len(line: &LogLine) -> u64 {
    serde_json::to_vec(line).map_or(0, |v| v.len() as u64 + 1)
}

#[tokio::test]
async fn a_log_is_appended_in_batches_and_reads_back_whole_at_its_path() {
    let (dir, store, logs) = setup(1 << 20);
    let key = key("load", 1);
    let first: Vec<LogLine> = (0..3).map(line).collect();
    let second: Vec<LogLine> = (3..5).map(line).collect();
    for batch in [&first, &second] {
        logs.append(&key, batch)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
    }
    logs.finish(&key).await.unwrap_or_else(|e| panic!("{e}"));
    let path = dir.path().join("etl/orders/orders-1/load/1.jsonl.gz");
    assert_eq!(store.path(&key), path);
    let bytes = std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    // Two members, one a batch, each a whole gzip stream of its own.
    let magic = bytes
        .windows(3)
        .filter(|w| *w == [0x1f, 0x8b, 0x08])
        .count();
    assert!(magic >= 2, "{magic} gzip headers");
    let all: Vec<LogLine> = (0..5).map(line).collect();
    assert_eq!(stored(&store, &key).await, all);
    // Every line of the file is one LogLine as JSON.
    let mut text = String::new();
    std::io::Read::read_to_string(
        &mut flate2::read::MultiGzDecoder::new(&bytes[..]),
        &mut text,
    )
    .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(text.lines().count(), 5);
    assert!(
        text.starts_with(
            "{\"time\":\"2026-12-02T10:00:00.000000Z\",\"level\":\"INFO\",\"text\":\"line 0\"}\n"
        ),
        "{text}"
    );
}

#[tokio::test]
async fn a_log_past_its_bound_ends_with_a_marker_that_counts_what_was_dropped() {
    let per_line = json_len(&line(0));
    // Room for three lines and a half: the fourth line is dropped, and all after it.
    let (_dir, store, logs) = setup(per_line * 7 / 2);
    let key = key("load", 1);
    let lines: Vec<LogLine> = (0..10).map(line).collect();
    logs.append(&key, &lines[..2])
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    logs.append(&key, &lines[2..])
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    logs.finish(&key).await.unwrap_or_else(|e| panic!("{e}"));
    let back = stored(&store, &key).await;
    assert_eq!(back.len(), 4, "{back:?}");
    assert_eq!(back[..3], lines[..3]);
    let marker = &back[3];
    assert_eq!(marker.level.as_deref(), Some("WARN"));
    let dropped: u64 = lines[3..].iter().map(json_len).sum();
    assert_eq!(marker.text, marker_text(per_line * 7 / 2, 7, dropped));
    assert!(marker.text.contains("7 later lines"), "{}", marker.text);
    // A finished attempt is not open any more: finishing again adds nothing.
    logs.finish(&key).await.unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(stored(&store, &key).await.len(), 4);
}

#[tokio::test]
async fn a_log_cut_mid_batch_reads_back_to_its_last_whole_batch_and_takes_more_after_a_restart() {
    let (_dir, store, logs) = setup(1 << 20);
    let key = key("load", 2);
    let lines: Vec<LogLine> = (0..6).map(line).collect();
    logs.append(&key, &lines[..2])
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    logs.append(&key, &lines[2..4])
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    // The process dies while appending a third batch: half its member reaches the file.
    let mut third = gzip::AttemptLog::new(1 << 20, 0);
    let member = third
        .append(&lines[4..])
        .unwrap_or_else(|e| panic!("{e}"))
        .unwrap_or_default();
    let path = store.path(&key);
    let mut file = std::fs::OpenOptions::new()
        .append(true)
        .open(&path)
        .unwrap_or_else(|e| panic!("{e}"));
    file.write_all(&member[..member.len() / 2])
        .unwrap_or_else(|e| panic!("{e}"));
    drop(file);
    assert_eq!(stored(&store, &key).await, lines[..4]);

    // A new process resumes the attempt: the cut member goes, the new lines follow.
    let restarted = Logs::new(store.clone(), 1 << 20);
    restarted
        .append(&key, &lines[4..])
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(stored(&store, &key).await, lines);
}

#[tokio::test]
async fn a_restarted_writer_counts_what_is_stored_against_the_bound() {
    let per_line = json_len(&line(0));
    let (_dir, store, logs) = setup(per_line * 3);
    let key = key("load", 1);
    let lines: Vec<LogLine> = (0..5).map(line).collect();
    logs.append(&key, &lines[..2])
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let restarted = Logs::new(store.clone(), per_line * 3);
    restarted
        .append(&key, &lines[2..])
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    restarted
        .finish(&key)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let back = stored(&store, &key).await;
    assert_eq!(back[..3], lines[..3]);
    assert!(back[3].text.contains("2 later lines"), "{back:?}");
}

#[test]
fn names_that_could_leave_the_root_are_refused() {
    for bad in [
        "", "..", ".", ".hidden", "a/b", "../etc", "a\\b", "x\0y", "ü",
    ] {
        let refused = LogKey::new("etl", "orders", "orders-1", bad, 1);
        assert!(refused.is_err(), "step {bad:?} was taken");
        let refused = LogKey::new(bad, "orders", "orders-1", "load", 1);
        assert!(refused.is_err(), "namespace {bad:?} was taken");
    }
    let Err(error) = LogKey::new("etl", "../x", "orders-1", "load", 1) else {
        panic!("a Pipeline name with a slash was taken")
    };
    assert_eq!(error.what, "Pipeline");
    assert!(error.to_string().contains("\"../x\""), "{error}");
    let long = "a".repeat(254);
    assert!(LogKey::new("etl", "orders", &long, "load", 1).is_err());
    assert!(LogKey::new("etl", "orders.v2", "orders-1", "load_all", 3).is_ok());
}

/// The attempts `store` lists for a run with steps in two Pipelines, among other runs.
async fn attempts_listed(store: Arc<dyn LogStore>) {
    let logs = Logs::new(store.clone(), 1 << 20);
    let other =
        LogKey::new("etl", "billing", "orders-1", "sum", 1).unwrap_or_else(|e| panic!("{e}"));
    let elsewhere =
        LogKey::new("etl", "orders", "orders-2", "load", 1).unwrap_or_else(|e| panic!("{e}"));
    for k in [
        key("load", 1),
        key("load", 2),
        key("extract", 1),
        other.clone(),
        elsewhere,
    ] {
        logs.append(&k, &[line(0)])
            .await
            .unwrap_or_else(|e| panic!("{e}"));
    }
    let keys = store
        .attempts("etl", "orders-1")
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        keys,
        [other, key("extract", 1), key("load", 1), key("load", 2)],
        "{}",
        store.describe()
    );
    let none = store
        .attempts("etl", "other")
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(none.is_empty());
    assert!(store.attempts("..", "orders-1").await.is_err());
}

#[tokio::test]
async fn the_attempts_of_a_run_are_listed_whatever_its_pipeline() {
    let (_dir, store, _) = setup(1 << 20);
    attempts_listed(store).await;
    let (_, in_memory) = super::s3::in_memory();
    attempts_listed(in_memory).await;
}

#[tokio::test]
async fn attempts_end_when_their_step_is_final_moves_on_or_the_run_is_gone() {
    let (_dir, _store, logs) = setup(1 << 20);
    for (step, attempt) in [("a", 1), ("b", 1), ("c", 1)] {
        logs.append(&key(step, attempt), &[line(0)])
            .await
            .unwrap_or_else(|e| panic!("{e}"));
    }
    let step = |name: &str, phase: StepPhase, attempt: u32| StepStatus {
        name: name.into(),
        phase: Some(phase),
        attempt: Some(attempt),
        ..Default::default()
    };
    let view = RunView {
        status: PipelineRunStatus {
            steps: vec![
                step("a", StepPhase::Succeeded, 1),
                step("b", StepPhase::Running, 1),
                step("c", StepPhase::Running, 2),
            ],
            ..Default::default()
        },
        ..Default::default()
    };
    let mut ended = logs.ended("etl", "orders-1", Some(&view));
    ended.sort();
    assert_eq!(ended, [key("a", 1), key("c", 1)]);
    assert!(logs.ended("etl", "other", None).is_empty());
    assert_eq!(logs.ended("etl", "orders-1", None).len(), 3);
}

#[test]
fn the_route_picks_each_steps_latest_attempt_or_the_one_asked_for() {
    let log = |step: &str, attempt: u32, n: usize| StepLog {
        step: step.into(),
        attempt,
        lines: vec![line(n)],
    };
    let kept = vec![
        log("a", 1, 0),
        log("a", 2, 1),
        log("b", 1, 2),
        log("a", 2, 3),
    ];
    let all = pick(kept.clone(), &LogsQuery::default());
    assert_eq!(all.len(), 2);
    assert_eq!(all["a"].attempt, 2);
    assert_eq!(all["a"].lines, [line(1), line(3)]);
    let first = pick(
        kept,
        &LogsQuery {
            step: Some("a".into()),
            attempt: Some(1),
        },
    );
    assert_eq!(first.keys().collect::<Vec<_>>(), ["a"]);
    assert_eq!(first["a"].lines, [line(0)]);
}
