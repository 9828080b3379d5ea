//! The step's reports to the operator's gateway (`POST /internal/v1/telemetry`): counters as
//! absolute values, the phase, and the lines the step logged since the last report that got
//! through. The pod holds no Kubernetes credentials: it authenticates with the projected
//! token of audience `synqx` the operator mounts (read again for every report, as the
//! kubelet renews it). A report that does not get through is logged and its lines are kept
//! for the next one (up to [`MAX_KEPT_LINES`]); the step goes on either way, and its
//! termination message still tells the operator the final numbers.

use std::collections::VecDeque;
use std::path::PathBuf;
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use async_trait::async_trait;
use synqx_api::gateway::{LogLine, StepCounters};
use synqx_api::run::{StepPhase, StepReport, StepStatus};
use synqx_api::telemetry::{MAX_LINES, MAX_LINES_BYTES, PATH, Report, bounded_line};

use super::Attempt;
use super::error::StatusWriteError;
use super::status::StatusWriter;

/// How often the counters are reported while they change (the gateway writes at most one
/// status a second per run).
pub const TELEMETRY_EVERY: Duration = Duration::from_secs(1);
/// The most lines kept while the gateway cannot be reached; older ones are dropped and
/// counted in a line that says so.
pub const MAX_KEPT_LINES: usize = 5000;
/// Longest wait for the gateway to answer one report.
const SEND_TIMEOUT: Duration = Duration::from_secs(10);

/// The lines waiting to be sent, bounded.
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

/// Reports to the gateway at `url` for one attempt.
pub struct Telemetry {
    http: reqwest::Client,
    url: String,
    token_file: PathBuf,
    target: Attempt,
    lines: Mutex<Lines>,
}

impl Telemetry {
    /// `gateway` is the gateway's base URL (`$SYNQX_GATEWAY`), `token_file` the projected
    /// token (`$SYNQX_TOKEN_FILE`).
    pub fn new(
        gateway: &str,
        token_file: PathBuf,
        target: Attempt,
    ) -> Result<Self, StatusWriteError> {
        let http = reqwest::Client::builder()
            .timeout(SEND_TIMEOUT)
            .build()
            .map_err(|source| StatusWriteError::Gateway {
                url: gateway.to_string(),
                source,
            })?;
        Ok(Self {
            http,
            url: format!("{}{PATH}", gateway.trim_end_matches('/')),
            token_file,
            target,
            lines: Mutex::default(),
        })
    }

    fn lines(&self) -> MutexGuard<'_, Lines> {
        self.lines.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Up to [`MAX_LINES`] of the lines waiting (and [`MAX_LINES_BYTES`] of text), oldest
    /// first, and how many were dropped before them.
    fn take_lines(&self) -> (u64, Vec<LogLine>) {
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
    fn keep_unsent(&self, dropped: u64, unsent: Vec<LogLine>) {
        let mut lines = self.lines();
        lines.dropped = lines.dropped.saturating_add(dropped);
        for line in unsent.into_iter().rev() {
            lines.kept.push_front(line);
        }
        lines.bound();
    }

    async fn send(&self, phase: StepPhase, counters: StepCounters) -> Result<(), StatusWriteError> {
        let (dropped, lines) = self.take_lines();
        let mut report = Report {
            namespace: self.target.namespace.clone(),
            run: self.target.run.clone(),
            step: self.target.step.clone(),
            attempt: self.target.attempt,
            phase: Some(phase),
            counters,
            lines: Vec::with_capacity(lines.len() + 1),
        };
        if dropped > 0 {
            report.lines.push(LogLine {
                time: now(),
                level: Some("WARN".into()),
                text: format!(
                    "{dropped} lines were dropped while the gateway could not be reached"
                ),
            });
        }
        report.lines.extend(lines.iter().cloned());
        let result = self.post(&report).await;
        if result.is_err() {
            self.keep_unsent(dropped, lines);
        }
        result
    }

    async fn post(&self, report: &Report) -> Result<(), StatusWriteError> {
        let token = std::fs::read_to_string(&self.token_file).map_err(|source| {
            StatusWriteError::Token {
                path: self.token_file.clone(),
                source,
            }
        })?;
        let body = serde_json::to_vec(report).map_err(StatusWriteError::Encode)?;
        let response = self
            .http
            .post(&self.url)
            .bearer_auth(token.trim())
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .body(body)
            .send()
            .await
            .map_err(|source| StatusWriteError::Gateway {
                url: self.url.clone(),
                source,
            })?;
        let code = response.status();
        if code.is_success() {
            return Ok(());
        }
        let text = response.text().await.unwrap_or_default();
        let message = serde_json::from_str::<serde_json::Value>(&text)
            .ok()
            .and_then(|v| {
                v.get("message")
                    .and_then(|m| m.as_str())
                    .map(str::to_string)
            })
            .unwrap_or(text);
        Err(StatusWriteError::Refused {
            url: self.url.clone(),
            code: code.as_u16(),
            message,
        })
    }
}

#[async_trait]
impl StatusWriter for Telemetry {
    async fn apply(&self, entry: &StepStatus) -> Result<(), StatusWriteError> {
        self.send(StepPhase::Running, StepCounters::of(entry)).await
    }

    async fn finish(&self, report: &StepReport) -> Result<(), StatusWriteError> {
        self.send(report.phase, StepCounters::of(&report.counters_entry()))
            .await
    }

    fn log(&self, text: String) {
        eprintln!("{text}");
        let mut lines = self.lines();
        lines.kept.push_back(LogLine {
            time: now(),
            level: None,
            text: bounded_line(&text),
        });
        lines.bound();
    }

    fn has_lines(&self) -> bool {
        !self.lines().kept.is_empty()
    }

    fn every(&self) -> Duration {
        TELEMETRY_EVERY
    }
}

fn now() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

#[cfg(test)]
mod tests;
