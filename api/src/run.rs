//! The `PipelineRun` resource: one execution of a Pipeline, pinned to one revision of its plan.

use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::condition::Condition;

/// One execution of a Pipeline. It pins the Pipeline's current revision when it starts, so
/// editing the Pipeline never changes a running run.
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, Default, PartialEq, KubeSchema)]
#[kube(
    group = "synqx.io",
    version = "v1alpha1",
    kind = "PipelineRun",
    doc = "PipelineRun: one execution of a Pipeline, pinned to one revision of its plan.",
    namespaced,
    status = "PipelineRunStatus",
    shortname = "sqr",
    category = "synqx",
    printcolumn = r#"{"name":"Pipeline","type":"string","jsonPath":".spec.pipelineRef.name"}"#,
    printcolumn = r#"{"name":"Phase","type":"string","jsonPath":".status.phase"}"#,
    printcolumn = r#"{"name":"Progress","type":"string","jsonPath":".status.progress"}"#,
    printcolumn = r#"{"name":"Started","type":"date","jsonPath":".status.startTime"}"#,
    printcolumn = r#"{"name":"Duration","type":"string","jsonPath":".status.duration"}"#
)]
#[serde(rename_all = "camelCase")]
pub struct PipelineRunSpec {
    /// The Pipeline to run, in the same namespace.
    pub pipeline_ref: PipelineRef,
    /// Name of an earlier run of the same Pipeline: steps that succeeded there are skipped.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resume_from: Option<String>,
    /// Set to true to cancel the run: active Jobs are deleted and the run ends `Cancelled`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cancel: Option<bool>,
}

/// A reference to a Pipeline.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct PipelineRef {
    /// Name of the Pipeline.
    #[schemars(length(min = 1))]
    pub name: String,
}

/// Phase of a run: `Pending`, `Running`, `Succeeded`, `Failed` or `Cancelled`.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
pub enum RunPhase {
    #[default]
    Pending,
    Running,
    Succeeded,
    Failed,
    Cancelled,
}

impl RunPhase {
    /// Whether the run has ended.
    pub fn is_finished(self) -> bool {
        matches!(self, Self::Succeeded | Self::Failed | Self::Cancelled)
    }

    /// The phase as it is written in status, Events, metrics and the local state database.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "Pending",
            Self::Running => "Running",
            Self::Succeeded => "Succeeded",
            Self::Failed => "Failed",
            Self::Cancelled => "Cancelled",
        }
    }
}

/// Phase of a step within a run: `Pending`, `Running`, `Retrying`, `Succeeded`, `Failed`,
/// `Skipped` (not run: resumed, or cut off by a failure) or `Cancelled`.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
pub enum StepPhase {
    #[default]
    Pending,
    Running,
    Retrying,
    Succeeded,
    Failed,
    Skipped,
    Cancelled,
}

impl StepPhase {
    /// Whether the step has ended for this run: it will not run (again).
    pub fn is_final(self) -> bool {
        matches!(
            self,
            Self::Succeeded | Self::Failed | Self::Skipped | Self::Cancelled
        )
    }

    /// The phase as it is written in status, Events and the local state database.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "Pending",
            Self::Running => "Running",
            Self::Retrying => "Retrying",
            Self::Succeeded => "Succeeded",
            Self::Failed => "Failed",
            Self::Skipped => "Skipped",
            Self::Cancelled => "Cancelled",
        }
    }
}

/// Observed state of a run. Small on purpose: no per-batch data, no logs.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct PipelineRunStatus {
    /// Phase of the run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<RunPhase>,
    /// Name of the ControllerRevision whose plan this run executes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revision: Option<String>,
    /// Finished steps out of all steps, e.g. `3/7`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub progress: Option<String>,
    /// When the run started (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_time: Option<String>,
    /// When the run ended (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub completion_time: Option<String>,
    /// Wall time of the run, e.g. `4m12s`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub duration: Option<String>,
    /// Conditions of the run.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
    /// One entry per step, keyed by name. Each step's runner applies its own entry.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[x_kube(merge_strategy = kube::core::ListMerge::Map(vec!["name".into()]))]
    pub steps: Vec<StepStatus>,
}

/// State of one step within a run.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct StepStatus {
    /// Name of the step.
    pub name: String,
    /// Phase of the step.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<StepPhase>,
    /// Current attempt, from 1.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attempt: Option<u32>,
    /// Name of the Job of the current attempt.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub job_name: Option<String>,
    /// Rows read from the source.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rows_read: Option<u64>,
    /// Rows written to the destination.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rows_written: Option<u64>,
    /// Rows rejected by `onError: skip`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rows_rejected: Option<u64>,
    /// Bytes read from the source.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bytes_read: Option<u64>,
    /// Bytes written to the destination.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bytes_written: Option<u64>,
    /// When the current attempt started (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started_at: Option<String>,
    /// When the step ended (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finished_at: Option<String>,
    /// Watermark range this step read.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub watermark: Option<WatermarkRange>,
    /// What happened, e.g. the error of a failed attempt.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

impl StepStatus {
    /// Only what a step counts as it goes: its name, counters and watermark range, as the
    /// telemetry and the gateway's counters messages carry them; the other fields unset.
    pub fn counters(&self) -> StepStatus {
        StepStatus {
            name: self.name.clone(),
            rows_read: self.rows_read,
            rows_written: self.rows_written,
            rows_rejected: self.rows_rejected,
            bytes_read: self.bytes_read,
            bytes_written: self.bytes_written,
            watermark: self.watermark.clone(),
            ..StepStatus::default()
        }
    }

    /// Takes the counters and watermark range of `from`, keeping the name, phase, attempt,
    /// Job, times and message.
    pub fn take_counters(&mut self, from: &StepStatus) {
        let kept = std::mem::take(self);
        *self = StepStatus {
            name: kept.name,
            phase: kept.phase,
            attempt: kept.attempt,
            job_name: kept.job_name,
            started_at: kept.started_at,
            finished_at: kept.finished_at,
            message: kept.message,
            ..from.counters()
        };
    }
}

/// The watermark a step started from and the one it reached.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct WatermarkRange {
    /// Watermark before the step (empty on a first or full run).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from: Option<String>,
    /// Highest cursor value committed by the step.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub to: Option<String>,
}

/// What an in-pod runner (`synqx step`) reports when it ends: written as JSON to the
/// container's termination message, so the operator learns the outcome even when the
/// runner could not write the run's status.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct StepReport {
    /// Name of the step.
    pub step: String,
    /// `Succeeded`, `Failed` or `Cancelled`.
    pub phase: StepPhase,
    #[serde(default)]
    pub rows_read: u64,
    #[serde(default)]
    pub rows_written: u64,
    #[serde(default)]
    pub rows_rejected: u64,
    #[serde(default)]
    pub bytes_read: u64,
    #[serde(default)]
    pub bytes_written: u64,
    /// The watermark the step started from and the one it committed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub watermark: Option<WatermarkRange>,
    /// The error of a failed or cancelled step (credentials redacted).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

impl StepReport {
    /// The longest termination message Kubernetes keeps.
    pub const MAX_BYTES: usize = 4096;

    /// The step's entry of its run's status with what the report tells: the final counters,
    /// and the watermark range when one is known. Phase, attempt, times and the message are
    /// the run controller's to write.
    pub fn counters_entry(&self) -> StepStatus {
        StepStatus {
            name: self.step.clone(),
            rows_read: Some(self.rows_read),
            rows_written: Some(self.rows_written),
            rows_rejected: Some(self.rows_rejected),
            bytes_read: Some(self.bytes_read),
            bytes_written: Some(self.bytes_written),
            watermark: self
                .watermark
                .clone()
                .filter(|w| w.from.is_some() || w.to.is_some()),
            ..Default::default()
        }
    }

    /// JSON that fits a termination message: a long error message is cut to fit.
    pub fn to_termination_message(&self) -> String {
        let mut report = self.clone();
        loop {
            let json = serde_json::to_string(&report).unwrap_or_default();
            let Some(message) = report
                .message
                .as_mut()
                .filter(|_| json.len() > Self::MAX_BYTES)
            else {
                return json;
            };
            let keep = message
                .len()
                .saturating_sub(json.len() - Self::MAX_BYTES + 3);
            let mut cut = keep;
            while !message.is_char_boundary(cut) {
                cut -= 1;
            }
            message.truncate(cut);
            message.push_str("...");
            if keep == 0 {
                report.message = None;
            }
        }
    }
}

/// The longest watermark, counted as JSON text: the watermark a step starts from, the one it
/// reached and the rest of its report fit the 4 KiB Kubernetes keeps of a termination
/// message, whatever the step's message.
pub const MAX_WATERMARK_BYTES: usize = 1536;

/// Why `value` cannot be a watermark: longer than [`MAX_WATERMARK_BYTES`] as JSON text.
pub fn watermark_too_long(value: &str) -> Option<String> {
    let bytes = serde_json::to_string(value)
        .map(|json| json.len().saturating_sub(2))
        .unwrap_or(usize::MAX);
    (bytes > MAX_WATERMARK_BYTES).then(|| {
        format!(
            "is {bytes} bytes long as JSON; a watermark holds at most {MAX_WATERMARK_BYTES} (it travels in the step's report, of which Kubernetes keeps 4 KiB)"
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn two_of_the_longest_watermarks_and_a_long_message_fit_a_termination_message() {
        // Control characters take six bytes as JSON: the bound counts what the report holds.
        let longest = "\u{1}".repeat(MAX_WATERMARK_BYTES / 6);
        assert_eq!(watermark_too_long(&longest), None);
        assert!(watermark_too_long(&"\u{1}".repeat(MAX_WATERMARK_BYTES / 6 + 1)).is_some());
        assert!(
            watermark_too_long(&"x".repeat(5000))
                .is_some_and(|m| m.starts_with("is 5000 bytes long as JSON")),
        );
        let report = StepReport {
            step: "s".repeat(63),
            phase: StepPhase::Succeeded,
            rows_read: u64::MAX,
            rows_written: u64::MAX,
            rows_rejected: u64::MAX,
            bytes_read: u64::MAX,
            bytes_written: u64::MAX,
            watermark: Some(WatermarkRange {
                from: Some("y".repeat(MAX_WATERMARK_BYTES)),
                to: Some(longest.clone()),
            }),
            message: Some("m".repeat(5000)),
        };
        let json = report.to_termination_message();
        assert!(json.len() <= StepReport::MAX_BYTES, "{}", json.len());
        let back: StepReport = serde_json::from_str(&json).expect("valid JSON");
        assert_eq!(back.watermark, report.watermark);
        assert_eq!(back.rows_written, u64::MAX);
    }

    #[test]
    fn a_report_fits_a_termination_message() {
        let report = StepReport {
            step: "load".into(),
            phase: StepPhase::Failed,
            rows_read: 7,
            message: Some("é".repeat(5000)),
            ..Default::default()
        };
        let json = report.to_termination_message();
        assert!(json.len() <= StepReport::MAX_BYTES, "{}", json.len());
        let back: StepReport = serde_json::from_str(&json).expect("valid JSON");
        assert_eq!(back.rows_read, 7);
        assert!(back.message.is_some_and(|m| m.ends_with("...")));

        let small = StepReport {
            step: "load".into(),
            phase: StepPhase::Succeeded,
            ..Default::default()
        };
        assert_eq!(
            serde_json::from_str::<StepReport>(&small.to_termination_message()).ok(),
            Some(small)
        );
    }

    #[test]
    fn counters_carry_only_what_a_step_counts_and_taking_them_keeps_the_rest() {
        let running = StepStatus {
            name: "load".into(),
            phase: Some(StepPhase::Running),
            attempt: Some(2),
            job_name: Some("orders-load-2".into()),
            rows_read: Some(10),
            started_at: Some("2026-12-05T03:00:00Z".into()),
            message: Some("retrying".into()),
            ..Default::default()
        };
        let reported = StepStatus {
            name: "load".into(),
            phase: Some(StepPhase::Failed),
            rows_read: Some(500),
            rows_written: Some(480),
            rows_rejected: Some(20),
            bytes_read: Some(9000),
            bytes_written: Some(7000),
            watermark: Some(WatermarkRange {
                from: Some("1".into()),
                to: Some("9".into()),
            }),
            message: Some("not shown".into()),
            ..Default::default()
        };
        let counters = reported.counters();
        assert_eq!(
            serde_json::to_value(&counters).ok(),
            Some(serde_json::json!({
                "name": "load", "rowsRead": 500, "rowsWritten": 480, "rowsRejected": 20,
                "bytesRead": 9000, "bytesWritten": 7000, "watermark": {"from": "1", "to": "9"}
            }))
        );
        let mut shown = running.clone();
        shown.take_counters(&counters);
        assert_eq!(
            shown,
            StepStatus {
                rows_read: Some(500),
                rows_written: Some(480),
                rows_rejected: Some(20),
                bytes_read: Some(9000),
                bytes_written: Some(7000),
                watermark: counters.watermark.clone(),
                ..running
            }
        );
    }
}
