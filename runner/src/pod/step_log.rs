//! One path for everything a step says in its pod: the runner, the engine and the connectors
//! log with `tracing`, and [`StepLogLayer`] writes each event to stderr (what `kubectl logs`
//! shows) and keeps it, with its level and time, in the [`StepLog`] the gateway reports
//! drain ([`super::telemetry`]). Every line goes through the run's [`Redactor`] first, so a
//! credential resolved for a Connection reaches neither stderr nor the gateway.

use std::collections::VecDeque;
use std::fmt::Write as _;
use std::io::Write as _;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use synqx_api::gateway::LogLine;
use synqx_api::telemetry::{MAX_LINES, MAX_LINES_BYTES, bounded_line};
use tracing::field::{Field, Visit};
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::Layer;
use tracing_subscriber::filter::{LevelFilter, Targets};
use tracing_subscriber::layer::{Context, SubscriberExt as _};

use crate::secrets::Redactor;

/// The most lines kept while the gateway cannot be reached; older ones are dropped and
/// counted in a line that says so.
pub const MAX_KEPT_LINES: usize = 5000;

/// The lines a step logged that no report has carried yet, bounded. Clones share them.
#[derive(Clone, Default)]
pub struct StepLog {
    lines: Arc<Mutex<Lines>>,
}

#[derive(Default)]
struct Lines {
    kept: VecDeque<LogLine>,
    dropped: u64,
}

impl Lines {
    /// Drops the oldest lines beyond [`MAX_KEPT_LINES`], counting them.
    fn bound(&mut self) {
        while self.kept.len() > MAX_KEPT_LINES {
            self.kept.pop_front();
            self.dropped = self.dropped.saturating_add(1);
        }
    }
}

impl StepLog {
    fn lines(&self) -> MutexGuard<'_, Lines> {
        self.lines.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Keeps a line logged now at `level` (`INFO`, `WARN`, …).
    pub fn push(&self, level: &str, text: &str) {
        let mut lines = self.lines();
        lines.kept.push_back(LogLine {
            time: now(),
            level: Some(level.to_string()),
            text: bounded_line(text),
        });
        lines.bound();
    }

    /// Whether lines wait to be sent.
    pub fn has_lines(&self) -> bool {
        let lines = self.lines();
        !lines.kept.is_empty() || lines.dropped > 0
    }

    /// Up to [`MAX_LINES`] of the lines waiting (and [`MAX_LINES_BYTES`] of text), oldest
    /// first, and how many were dropped before them.
    pub(super) fn take(&self) -> (u64, Vec<LogLine>) {
        let mut lines = self.lines();
        let dropped = std::mem::take(&mut lines.dropped);
        // The line that counts the dropped ones takes a place of its own.
        let room = MAX_LINES - usize::from(dropped > 0);
        let mut count = 0;
        let mut bytes = 0;
        for line in lines.kept.iter().take(room) {
            bytes += line.text.len();
            if count > 0 && bytes > MAX_LINES_BYTES {
                break;
            }
            count += 1;
        }
        (dropped, lines.kept.drain(..count).collect())
    }

    /// Puts lines that were not delivered back in front of the newer ones.
    pub(super) fn keep_unsent(&self, dropped: u64, unsent: Vec<LogLine>) {
        let mut lines = self.lines();
        lines.dropped = lines.dropped.saturating_add(dropped);
        for line in unsent.into_iter().rev() {
            lines.kept.push_front(line);
        }
        lines.bound();
    }
}

/// The time of a line, as the gateway shows it.
pub fn now() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

/// Writes each event to stderr as its text and keeps it in a [`StepLog`] when given one,
/// redacted.
pub struct StepLogLayer {
    log: Option<StepLog>,
    redactor: Redactor,
}

impl StepLogLayer {
    pub fn new(log: Option<StepLog>, redactor: Redactor) -> Self {
        Self { log, redactor }
    }
}

impl<S: Subscriber> Layer<S> for StepLogLayer {
    fn on_event(&self, event: &Event<'_>, _: Context<'_, S>) {
        let mut text = Text::default();
        event.record(&mut text);
        let line = self.redactor.redact(text.0);
        // stderr is the pod's log: a line that cannot be written there still goes to the
        // gateway.
        let _ = writeln!(std::io::stderr().lock(), "{line}");
        if let Some(log) = &self.log {
            log.push(event.metadata().level().as_str(), &line);
        }
    }
}

/// The message of an event, then its other fields as ` name=value`.
#[derive(Default)]
struct Text(String);

impl Visit for Text {
    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "message" {
            self.0.insert_str(0, value);
        } else {
            let _ = write!(self.0, " {}={value}", field.name());
        }
    }

    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        if field.name() == "message" {
            self.0.insert_str(0, &format!("{value:?}"));
        } else {
            let _ = write!(self.0, " {}={value:?}", field.name());
        }
    }
}

/// What a log holds: SynqX's own messages from `INFO` up and, with `libraries` (a step's
/// pod), warnings and errors of the libraries it uses (their `INFO` is chatter). Never
/// sqlx's statement log: a slow statement is logged with its SQL, which may quote data.
pub fn targets(libraries: bool) -> Targets {
    let others = if libraries {
        LevelFilter::WARN
    } else {
        LevelFilter::OFF
    };
    Targets::new()
        .with_target("synqx", Level::INFO)
        .with_target("synqx_runner", Level::INFO)
        .with_target("sqlx::query", LevelFilter::OFF)
        .with_default(others)
}

/// Makes [`StepLogLayer`] the process's one log path, feeding `log` (in a step's pod; a local
/// run has none and its messages only go to stderr, as they always did). A subscriber set
/// before (a test's) stays, and this one is not installed.
pub fn install(log: Option<StepLog>, redactor: Redactor) {
    let filter = targets(log.is_some());
    let subscriber =
        tracing_subscriber::registry().with(StepLogLayer::new(log, redactor).with_filter(filter));
    let _ = tracing::subscriber::set_global_default(subscriber);
}

#[cfg(test)]
mod tests;
