//! Reports against a local gateway stand-in: what a report carries, and lines kept while the
//! gateway cannot be reached.

use std::sync::Arc;
use std::sync::atomic::{AtomicU16, Ordering};

use synqx_testkit::http::{Reply, StandIn};

use super::*;
use crate::pod::step_log::MAX_KEPT_LINES;
use synqx_api::telemetry::{MAX_LINES, MAX_LINES_BYTES};

/// A gateway stand-in on loopback answering `status` (changeable while it runs), and the
/// telemetry of [`target`] reporting to it with the token in the file `token`.
struct Rig {
    /// Holds the token file: a test binds it, or a pattern with `..` deletes it at once.
    _dir: tempfile::TempDir,
    token: std::path::PathBuf,
    status: Arc<AtomicU16>,
    gateway: StandIn,
    log: StepLog,
    telemetry: Telemetry,
}

fn rig(status: u16, token: &str) -> Rig {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let token_file = dir.path().join("token");
    std::fs::write(&token_file, token).unwrap_or_else(|e| panic!("{e}"));
    let status = Arc::new(AtomicU16::new(status));
    let answer = status.clone();
    let gateway = StandIn::start(move |_| Reply::status(answer.load(Ordering::SeqCst)));
    let log = StepLog::default();
    let telemetry = Telemetry::new(
        &format!("{}/", gateway.url()),
        token_file.clone(),
        target(),
        log.clone(),
    )
    .unwrap_or_else(|e| panic!("{e}"));
    Rig {
        _dir: dir,
        token: token_file,
        status,
        gateway,
        log,
        telemetry,
    }
}

/// The Authorization header and the report of each request the gateway received; fails on
/// a request to any other path or one that is no report.
fn seen(gateway: &StandIn) -> Vec<(String, TelemetryReport)> {
    gateway
        .requests()
        .iter()
        .map(|r| {
            assert_eq!(r.path(), PATH, "{r:?}");
            (
                r.header("authorization").unwrap_or_default().to_string(),
                r.parse(),
            )
        })
        .collect()
}

/// Applies `rows` as the counters, which must be delivered, and returns the last report the
/// gateway received.
async fn delivered(telemetry: &Telemetry, gateway: &StandIn, rows: u64) -> TelemetryReport {
    telemetry
        .apply(&counters(rows))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let (_, last) = seen(gateway)
        .pop()
        .unwrap_or_else(|| panic!("the gateway received no report"));
    last
}

/// The error of applying counters, which must fail.
async fn refusal(telemetry: &Telemetry) -> String {
    match telemetry.apply(&counters(1)).await {
        Ok(()) => panic!("the counters were delivered"),
        Err(e) => e.to_string(),
    }
}

/// Authorization, phase, rows read and written, and lines of a report seen.
type Shown<'a> = (
    &'a str,
    Option<StepPhase>,
    Option<u64>,
    Option<u64>,
    Vec<&'a str>,
);

fn target() -> Attempt {
    Attempt {
        namespace: "etl".into(),
        run: "orders-1".into(),
        step: "load".into(),
        attempt: 2,
    }
}

fn counters(rows: u64) -> StepStatus {
    StepStatus {
        name: "load".into(),
        rows_read: Some(rows),
        rows_written: Some(rows),
        bytes_read: Some(rows * 10),
        ..Default::default()
    }
}

#[tokio::test]
async fn a_report_carries_the_token_the_attempt_the_counters_and_the_lines() {
    let Rig {
        _dir,
        token,
        gateway,
        log,
        telemetry,
        ..
    } = rig(204, "tok-1\n");
    log.push("INFO", "synqx step: started");
    assert!(telemetry.has_lines());
    telemetry
        .apply(&counters(5))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(!telemetry.has_lines());
    // The kubelet renewed the token: the next report sends the new one.
    std::fs::write(&token, "tok-2").unwrap_or_else(|e| panic!("{e}"));
    let report = StepReport {
        step: "load".into(),
        phase: StepPhase::Succeeded,
        rows_read: 9,
        rows_written: 8,
        ..Default::default()
    };
    telemetry
        .finish(&report)
        .await
        .unwrap_or_else(|e| panic!("{e}"));

    let seen = seen(&gateway);
    let shown: Vec<Shown<'_>> = seen
        .iter()
        .map(|(auth, r)| {
            (
                auth.as_str(),
                r.phase,
                r.counters.rows_read,
                r.counters.rows_written,
                r.lines.iter().map(|l| l.text.as_str()).collect(),
            )
        })
        .collect();
    assert_eq!(
        shown,
        vec![
            (
                "Bearer tok-1",
                Some(StepPhase::Running),
                Some(5),
                Some(5),
                vec!["synqx step: started"]
            ),
            (
                "Bearer tok-2",
                Some(StepPhase::Succeeded),
                Some(9),
                Some(8),
                vec![]
            ),
        ]
    );
    let (_, first) = &seen[0];
    assert_eq!(
        (
            first.namespace.as_str(),
            first.run.as_str(),
            first.step.as_str(),
            first.attempt
        ),
        ("etl", "orders-1", "load", 2)
    );
}

#[tokio::test]
async fn lines_wait_while_the_gateway_refuses_and_go_with_the_next_report() {
    let Rig {
        _dir,
        status,
        gateway,
        log,
        telemetry,
        ..
    } = rig(503, "tok");
    for n in 0..(MAX_KEPT_LINES + 3) {
        log.push("INFO", &format!("line {n}"));
    }
    let refused = telemetry.apply(&counters(1)).await;
    assert!(
        matches!(refused, Err(StatusWriteError::Refused { code: 503, .. })),
        "{refused:?}"
    );
    status.store(204, Ordering::SeqCst);
    let delivered = delivered(&telemetry, &gateway, 2).await;
    assert_eq!(delivered.counters.rows_read, Some(2));
    assert_eq!(delivered.lines.len(), MAX_LINES);
    assert_eq!(
        delivered.lines[0].text,
        "3 lines were dropped while the gateway could not be reached"
    );
    assert_eq!(
        delivered.lines[1].text, "line 3",
        "the oldest kept line comes first"
    );
    assert!(telemetry.has_lines(), "the rest waits for the next report");
}

#[tokio::test]
async fn a_missing_token_or_an_unreachable_gateway_is_an_error_naming_it() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let telemetry = Telemetry::new(
        "http://127.0.0.1:9",
        dir.path().join("none"),
        target(),
        StepLog::default(),
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let e = refusal(&telemetry).await;
    assert!(e.contains("none"), "{e}");
    std::fs::write(dir.path().join("none"), "tok").unwrap_or_else(|e| panic!("{e}"));
    let e = refusal(&telemetry).await;
    assert!(
        e.contains("http://127.0.0.1:9/internal/v1/telemetry"),
        "{e}"
    );
}

#[tokio::test]
async fn one_report_carries_at_most_a_mebibyte_of_lines() {
    let Rig {
        _dir,
        gateway,
        log,
        telemetry,
        ..
    } = rig(204, "tok");
    for _ in 0..200 {
        log.push("INFO", &"x".repeat(8000));
    }
    let first = delivered(&telemetry, &gateway, 1).await;
    assert_eq!(first.lines.len(), MAX_LINES_BYTES / 8000);
    assert!(telemetry.has_lines(), "the rest goes with the next report");
}
