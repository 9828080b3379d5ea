//! The messages of the operator's gateway: what a follower of a run receives over its
//! WebSocket, as JSON text frames, each with the run's sequence number. The operator writes
//! them and `synqx runs watch` reads them; step transitions and counters come from the run's
//! status today, and the step pods' telemetry will publish the same messages.

use serde::{Deserialize, Serialize};

use crate::run::{PipelineRunStatus, RunPhase, StepPhase, StepStatus, WatermarkRange};

/// The WebSocket subprotocol of the watch route: a client offers it (besides the token's
/// `base64url.bearer.authorization.k8s.io.<token>`, when it sends the token that way) and the
/// gateway selects it.
pub const PROTOCOL: &str = "v1.watch.synqx.io";
/// The WebSocket subprotocol that carries a token (base64url, unpadded): the API server's
/// convention for clients that cannot set an `Authorization` header (browsers).
pub const BEARER_PROTOCOL: &str = "base64url.bearer.authorization.k8s.io.";
/// Close code of a follower whose token is no longer accepted (HTTP's 401).
pub const CLOSE_UNAUTHORIZED: u16 = 4401;
/// Close code of a follower whose right to read the run was revoked (HTTP's 403).
pub const CLOSE_FORBIDDEN: u16 = 4403;

/// One message of a run's stream.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Message {
    /// Position in the run's stream; resume after it with `?since=`.
    pub seq: u64,
    #[serde(flatten)]
    pub body: Body,
}

/// What a message says.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "camelCase")]
pub enum Body {
    /// The whole run as of `seq`: first on every connection that does not resume.
    #[serde(rename_all = "camelCase")]
    Snapshot {
        /// Why a resume was not possible (`since` named no message this operator keeps):
        /// the follower must replace what it holds with this snapshot.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        reset: Option<Reset>,
        run: RunView,
    },
    /// The run's phase changed.
    #[serde(rename_all = "camelCase")]
    Run {
        from: Option<RunPhase>,
        phase: Option<RunPhase>,
        progress: Option<String>,
        completion_time: Option<String>,
        duration: Option<String>,
    },
    /// A step changed phase, attempt, Job or message: its whole status entry, counters
    /// included.
    #[serde(rename_all = "camelCase")]
    Step {
        from: Option<StepPhase>,
        step: StepStatus,
    },
    /// Counters of the steps that moved since the last counters message of the run (at
    /// most one a second per run).
    Counters { steps: Vec<StepCounters> },
    /// Lines a step attempt logged, in the order it wrote them.
    #[serde(rename_all = "camelCase")]
    Log {
        step: String,
        attempt: u32,
        lines: Vec<LogLine>,
    },
}

/// One line of a step's log.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LogLine {
    /// When the step wrote it (RFC 3339).
    pub time: String,
    /// `ERROR`, `WARN`, `INFO`, `DEBUG` or `TRACE`; absent for text that is not an event.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub level: Option<String>,
    pub text: String,
}

/// Why a follower gets a fresh snapshot instead of the messages after its `since`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum Reset {
    /// `since` is older than the oldest message kept: evicted, or numbered by an operator
    /// process that has restarted since (or another replica).
    NotKept,
    /// `since` is ahead of the newest message: numbered by another operator process.
    Unknown,
}

/// The run as followers see it.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RunView {
    pub name: String,
    pub namespace: String,
    pub pipeline: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created: Option<String>,
    #[serde(default)]
    pub status: PipelineRunStatus,
}

/// A step's counters and watermark range.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StepCounters {
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rows_read: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rows_written: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rows_rejected: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bytes_read: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bytes_written: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub watermark: Option<WatermarkRange>,
}

impl StepCounters {
    pub fn of(step: &StepStatus) -> Self {
        Self {
            name: step.name.clone(),
            rows_read: step.rows_read,
            rows_written: step.rows_written,
            rows_rejected: step.rows_rejected,
            bytes_read: step.bytes_read,
            bytes_written: step.bytes_written,
            watermark: step.watermark.clone(),
        }
    }

    /// Writes these counters into a step's status entry.
    pub fn apply_to(&self, step: &mut StepStatus) {
        step.rows_read = self.rows_read;
        step.rows_written = self.rows_written;
        step.rows_rejected = self.rows_rejected;
        step.bytes_read = self.bytes_read;
        step.bytes_written = self.bytes_written;
        step.watermark.clone_from(&self.watermark);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_read_back_as_written() {
        let messages = [
            Message {
                seq: 1_764_650_000_000_001,
                body: Body::Snapshot {
                    reset: Some(Reset::NotKept),
                    run: RunView {
                        name: "orders-1".into(),
                        namespace: "etl".into(),
                        pipeline: "orders".into(),
                        created: None,
                        status: PipelineRunStatus {
                            phase: Some(RunPhase::Running),
                            ..Default::default()
                        },
                    },
                },
            },
            Message {
                seq: 2,
                body: Body::Step {
                    from: Some(StepPhase::Running),
                    step: StepStatus {
                        name: "load".into(),
                        phase: Some(StepPhase::Succeeded),
                        rows_written: Some(500),
                        ..Default::default()
                    },
                },
            },
            Message {
                seq: 3,
                body: Body::Counters {
                    steps: vec![StepCounters {
                        name: "load".into(),
                        rows_read: Some(9),
                        ..Default::default()
                    }],
                },
            },
            Message {
                seq: 4,
                body: Body::Log {
                    step: "load".into(),
                    attempt: 1,
                    lines: vec![LogLine {
                        time: "2026-12-02T07:30:00.000Z".into(),
                        level: Some("INFO".into()),
                        text: "loaded 500 rows".into(),
                    }],
                },
            },
        ];
        for message in messages {
            let json = serde_json::to_string(&message).unwrap_or_default();
            let back: Result<Message, _> = serde_json::from_str(&json);
            assert_eq!(back.ok(), Some(message), "{json}");
        }
        let json = r#"{"seq":2,"type":"step","from":"Running","step":{"name":"load","phase":"Succeeded","rowsWritten":500}}"#;
        let read: Result<Message, _> = serde_json::from_str(json);
        assert!(read.is_ok(), "{read:?}");
    }
}
