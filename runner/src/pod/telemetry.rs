//! The step's reports to the operator's gateway (`POST /internal/v1/telemetry`): counters as
//! absolute values, the phase, and the lines the step logged since the last report that got
//! through ([`StepLog`]). The pod holds no Kubernetes credentials: it authenticates with the projected
//! token of audience `synqx` the operator mounts (read again for every report, as the
//! kubelet renews it). A report that does not get through is logged and its lines are kept
//! for the next one (up to [`super::step_log::MAX_KEPT_LINES`]); the step goes on either way, and its
//! termination message still tells the operator the final numbers.

use std::path::PathBuf;
use std::time::Duration;

use async_trait::async_trait;
use synqx_api::gateway::LogLine;
use synqx_api::run::{StepPhase, StepReport, StepStatus};
use synqx_api::telemetry::{PATH, TelemetryReport};

use super::Attempt;
use super::error::StatusWriteError;
use super::status::StatusWriter;
use super::step_log::{self, StepLog};

/// How often the counters are reported while they change (the gateway writes at most one
/// status a second per run).
pub const TELEMETRY_EVERY: Duration = Duration::from_secs(1);
/// Longest wait for the gateway to answer one report.
const SEND_TIMEOUT: Duration = Duration::from_secs(10);

/// Reports to the gateway at `url` for one attempt.
pub struct Telemetry {
    http: reqwest::Client,
    url: String,
    token_file: PathBuf,
    target: Attempt,
    log: StepLog,
}

impl Telemetry {
    /// `gateway` is the gateway's base URL (`$SYNQX_GATEWAY`), `token_file` the projected
    /// token (`$SYNQX_TOKEN_FILE`), `log` the lines the step logs ([`super::step_log`]).
    pub fn new(
        gateway: &str,
        token_file: PathBuf,
        target: Attempt,
        log: StepLog,
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
            log,
        })
    }

    async fn send(&self, phase: StepPhase, counters: StepStatus) -> Result<(), StatusWriteError> {
        let (dropped, lines) = self.log.take();
        let mut report = TelemetryReport {
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
                time: step_log::now(),
                level: Some("WARN".into()),
                text: format!(
                    "{dropped} lines were dropped while the gateway could not be reached"
                ),
            });
        }
        report.lines.extend(lines.iter().cloned());
        let result = self.post(&report).await;
        if result.is_err() {
            self.log.keep_unsent(dropped, lines);
        }
        result
    }

    async fn post(&self, report: &TelemetryReport) -> Result<(), StatusWriteError> {
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
        self.send(StepPhase::Running, entry.counters()).await
    }

    async fn finish(&self, report: &StepReport) -> Result<(), StatusWriteError> {
        self.send(report.phase, report.counters_entry().counters())
            .await
    }

    fn has_lines(&self) -> bool {
        self.log.has_lines()
    }

    fn every(&self) -> Duration {
        TELEMETRY_EVERY
    }
}

#[cfg(test)]
mod tests;
