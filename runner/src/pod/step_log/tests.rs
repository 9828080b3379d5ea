//! The step's one log path: lines with their level, without credentials, bounded. A whole
//! step reporting through it is in `tests/step_log.rs`.

use tracing_subscriber::layer::SubscriberExt as _;

use super::*;

const KEY: &str = "s3cr3t-key-4711";

/// A subscriber of `layer`, for one thread.
fn subscriber(layer: StepLogLayer) -> impl Subscriber + Send + Sync {
    tracing_subscriber::registry().with(layer.with_filter(targets(true)))
}

#[test]
fn a_logged_line_keeps_its_level_and_loses_every_credential() {
    let log = StepLog::default();
    let redactor = Redactor::default();
    redactor.remember(KEY);
    let layer = StepLogLayer::new(Some(log.clone()), redactor);
    tracing::subscriber::with_default(subscriber(layer), || {
        tracing::warn!("GET https://api.example/records?key={KEY} failed; retrying");
        tracing::info!(rows = 3, "loaded");
        tracing::debug!("not kept: below INFO");
        tracing::info!(target: "hyper::proto", "not kept: a library's chatter");
    });
    let (dropped, lines) = log.take();
    assert_eq!(dropped, 0);
    let shown: Vec<(Option<&str>, &str)> = lines
        .iter()
        .map(|l| (l.level.as_deref(), l.text.as_str()))
        .collect();
    assert_eq!(
        shown,
        [
            (
                Some("WARN"),
                "GET https://api.example/records?key=*** failed; retrying"
            ),
            (Some("INFO"), "loaded rows=3"),
        ]
    );
    assert!(lines.iter().all(|l| l.time.ends_with('Z')), "{lines:?}");
}

#[test]
fn lines_beyond_the_bound_are_dropped_oldest_first_and_counted() {
    let log = StepLog::default();
    for n in 0..(MAX_KEPT_LINES + 3) {
        log.push("INFO", &format!("line {n}"));
    }
    let (dropped, lines) = log.take();
    assert_eq!(dropped, 3);
    assert_eq!(lines.first().map(|l| l.text.as_str()), Some("line 3"));
}
