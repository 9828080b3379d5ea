//! Reports against a local gateway stand-in: what a report carries, and lines kept while the
//! gateway cannot be reached.

use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::{AtomicU16, Ordering};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;

use super::*;
use crate::pod::step_log::MAX_KEPT_LINES;
use std::sync::{Mutex, PoisonError};
use synqx_api::telemetry::{MAX_LINES, MAX_LINES_BYTES};

/// What the stand-in saw: the Authorization header and the report of each request.
type Seen = Arc<Mutex<Vec<(String, Report)>>>;

/// A gateway stand-in on loopback answering `status` (changeable while it runs).
async fn gateway(status: Arc<AtomicU16>) -> (String, Seen) {
    let listener = TcpListener::bind("127.0.0.1:0")
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let addr = listener.local_addr().unwrap_or_else(|e| panic!("{e}"));
    let seen: Seen = Arc::default();
    let log = seen.clone();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let log = log.clone();
            let status = status.clone();
            tokio::spawn(async move {
                let service = service_fn(move |request: hyper::Request<hyper::body::Incoming>| {
                    let log = log.clone();
                    let status = status.clone();
                    async move {
                        let auth = request
                            .headers()
                            .get("authorization")
                            .and_then(|v| v.to_str().ok())
                            .unwrap_or_default()
                            .to_string();
                        let path = request.uri().path().to_string();
                        let body = request
                            .into_body()
                            .collect()
                            .await
                            .map(|b| b.to_bytes())
                            .unwrap_or_default();
                        assert_eq!(path, PATH);
                        if let Ok(report) = serde_json::from_slice::<Report>(&body) {
                            log.lock()
                                .unwrap_or_else(PoisonError::into_inner)
                                .push((auth, report));
                        }
                        let mut response = hyper::Response::new(Full::new(Bytes::new()));
                        *response.status_mut() =
                            hyper::StatusCode::from_u16(status.load(Ordering::SeqCst))
                                .unwrap_or(hyper::StatusCode::INTERNAL_SERVER_ERROR);
                        Ok::<_, Infallible>(response)
                    }
                });
                let _ = http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    (format!("http://{addr}/"), seen)
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
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let token = dir.path().join("token");
    std::fs::write(&token, "tok-1\n").unwrap_or_else(|e| panic!("{e}"));
    let (url, seen) = gateway(Arc::new(AtomicU16::new(204))).await;
    let log = StepLog::default();
    let telemetry = Telemetry::new(&url, token.clone(), target(), log.clone())
        .unwrap_or_else(|e| panic!("{e}"));
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

    let seen = seen.lock().unwrap_or_else(PoisonError::into_inner).clone();
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
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let token = dir.path().join("token");
    std::fs::write(&token, "tok").unwrap_or_else(|e| panic!("{e}"));
    let status = Arc::new(AtomicU16::new(503));
    let (url, seen) = gateway(status.clone()).await;
    let log = StepLog::default();
    let telemetry =
        Telemetry::new(&url, token, target(), log.clone()).unwrap_or_else(|e| panic!("{e}"));
    for n in 0..(MAX_KEPT_LINES + 3) {
        log.push("INFO", &format!("line {n}"));
    }
    let refused = telemetry.apply(&counters(1)).await;
    assert!(
        matches!(refused, Err(StatusWriteError::Refused { code: 503, .. })),
        "{refused:?}"
    );
    status.store(204, Ordering::SeqCst);
    telemetry
        .apply(&counters(2))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let seen = seen.lock().unwrap_or_else(PoisonError::into_inner).clone();
    let (_, delivered) = seen.last().cloned().unwrap_or_else(|| panic!("no report"));
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
    let e = telemetry
        .apply(&counters(1))
        .await
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
    assert!(e.contains("none"), "{e}");
    std::fs::write(dir.path().join("none"), "tok").unwrap_or_else(|e| panic!("{e}"));
    let e = telemetry
        .apply(&counters(1))
        .await
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
    assert!(
        e.contains("http://127.0.0.1:9/internal/v1/telemetry"),
        "{e}"
    );
}

#[tokio::test]
async fn one_report_carries_at_most_a_mebibyte_of_lines() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let token = dir.path().join("token");
    std::fs::write(&token, "tok").unwrap_or_else(|e| panic!("{e}"));
    let (url, seen) = gateway(Arc::new(AtomicU16::new(204))).await;
    let log = StepLog::default();
    let telemetry =
        Telemetry::new(&url, token, target(), log.clone()).unwrap_or_else(|e| panic!("{e}"));
    for _ in 0..200 {
        log.push("INFO", &"x".repeat(8000));
    }
    telemetry
        .apply(&counters(1))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let seen = seen.lock().unwrap_or_else(PoisonError::into_inner).clone();
    let (_, first) = seen.last().cloned().unwrap_or_else(|| panic!("no report"));
    assert_eq!(first.lines.len(), MAX_LINES_BYTES / 8000);
    assert!(telemetry.has_lines(), "the rest goes with the next report");
}
