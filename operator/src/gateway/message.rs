//! What a follower of a run receives: JSON text frames, each with the run's sequence number.
//! Step transitions and counters come from the run's status today; the step pods' telemetry
//! will publish the same messages (and log lines) into the same log.

use std::collections::BTreeSet;

use serde::Serialize;
use synqx_api::run::{PipelineRunStatus, RunPhase, StepPhase, StepStatus, WatermarkRange};

/// One message of a run's stream.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Message {
    /// Position in the run's stream; resume after it with `?since=`.
    pub seq: u64,
    #[serde(flatten)]
    pub body: Body,
}

/// What a message says.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(tag = "type", rename_all = "camelCase")]
pub enum Body {
    /// The whole run as of `seq`: first on every connection that does not resume.
    #[serde(rename_all = "camelCase")]
    Snapshot {
        /// Why a resume was not possible (`since` named no message this operator keeps):
        /// the follower must replace what it holds with this snapshot.
        #[serde(skip_serializing_if = "Option::is_none")]
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
}

/// Why a follower gets a fresh snapshot instead of the messages after its `since`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub enum Reset {
    /// `since` is older than the oldest message kept: evicted, or numbered by an operator
    /// process that has restarted since (or another replica).
    NotKept,
    /// `since` is ahead of the newest message: numbered by another operator process.
    Unknown,
}

/// The run as followers see it.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RunView {
    pub name: String,
    pub namespace: String,
    pub pipeline: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub created: Option<String>,
    pub status: PipelineRunStatus,
}

/// A step's counters and watermark range.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct StepCounters {
    pub name: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rows_read: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rows_written: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rows_rejected: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bytes_read: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bytes_written: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
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
}

/// The steps a follower asked for with `?step=a,b` (none: every step).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct StepFilter(Option<BTreeSet<String>>);

impl StepFilter {
    /// `a,b` as a filter; empty names are ignored, and an empty list means every step.
    pub fn parse(list: Option<&str>) -> Self {
        let names: BTreeSet<String> = list
            .unwrap_or_default()
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(String::from)
            .collect();
        Self((!names.is_empty()).then_some(names))
    }

    fn keeps(&self, step: &str) -> bool {
        self.0.as_ref().is_none_or(|names| names.contains(step))
    }

    /// The message as this follower sees it: `None` when nothing of it concerns the steps
    /// asked for. Run messages and snapshots always pass (a snapshot with only those steps).
    pub fn apply(&self, message: &Message) -> Option<Message> {
        if self.0.is_none() {
            return Some(message.clone());
        }
        let body = match &message.body {
            Body::Snapshot { reset, run } => {
                let mut run = run.clone();
                run.status.steps.retain(|s| self.keeps(&s.name));
                Body::Snapshot { reset: *reset, run }
            }
            Body::Step { step, .. } if !self.keeps(&step.name) => return None,
            Body::Counters { steps } => {
                let steps: Vec<StepCounters> = steps
                    .iter()
                    .filter(|s| self.keeps(&s.name))
                    .cloned()
                    .collect();
                if steps.is_empty() {
                    return None;
                }
                Body::Counters { steps }
            }
            other => other.clone(),
        };
        Some(Message {
            seq: message.seq,
            body,
        })
    }
}
