//! The outcome of an attempt: a [`StepReport`] for the termination message, and the process's
//! exit code.

use std::path::Path;

use synqx_api::run::{StepPhase, StepReport, WatermarkRange};

use crate::engine::{CounterSnapshot, StepOutcome};
use crate::error::Result;

/// A step that failed before it could move rows.
pub(super) fn failed(step: &str, message: String) -> StepReport {
    StepReport {
        step: step.to_string(),
        phase: StepPhase::Failed,
        message: Some(message),
        ..Default::default()
    }
}

/// A step cancelled before it started.
pub(super) fn cancelled(step: &str, message: String) -> StepReport {
    StepReport {
        phase: StepPhase::Cancelled,
        ..failed(step, message)
    }
}

/// The report of an executed step. `signalled`: the pod was told to stop (SIGTERM or SIGINT);
/// a step that ends without committing then is `Cancelled`. A step that exceeded its timeout
/// was not asked to stop: that attempt `Failed`, and the operator's retry policy decides.
/// `watermark` is the one the step started from.
pub(super) fn from_result(
    step: &str,
    result: Result<StepOutcome>,
    counters: CounterSnapshot,
    watermark: Option<String>,
    signalled: bool,
) -> StepReport {
    let (phase, counters, range, message) = match result {
        Ok(o) => (
            StepPhase::Succeeded,
            o.counters,
            (o.watermark_from, o.watermark_to),
            o.message,
        ),
        Err(e) => {
            let phase = if signalled {
                StepPhase::Cancelled
            } else {
                StepPhase::Failed
            };
            (phase, counters, (watermark, None), Some(e.to_string()))
        }
    };
    StepReport {
        step: step.to_string(),
        phase,
        rows_read: counters.rows_read,
        rows_written: counters.rows_written,
        rows_rejected: counters.rows_rejected,
        bytes_read: counters.bytes_read,
        bytes_written: counters.bytes_written,
        watermark: match range {
            (None, None) => None,
            (from, to) => Some(WatermarkRange { from, to }),
        },
        message,
    }
}

/// 0 when the step succeeded, 130 when it was cancelled, 1 otherwise.
pub fn exit_code(phase: StepPhase) -> u8 {
    match phase {
        StepPhase::Succeeded => 0,
        StepPhase::Cancelled => 130,
        _ => 1,
    }
}

/// A report a pod leaves in its container's termination message for the operator: a step's
/// [`StepReport`], a check's `CheckReport`.
pub trait TerminationMessage {
    /// The longest termination message Kubernetes keeps.
    const MAX_BYTES: usize = StepReport::MAX_BYTES;

    /// The report as JSON of at most [`Self::MAX_BYTES`] bytes.
    fn to_termination_message(&self) -> String;
}

impl TerminationMessage for StepReport {
    fn to_termination_message(&self) -> String {
        StepReport::to_termination_message(self)
    }
}

/// Writes the report, cut to what Kubernetes keeps, to the termination-message file.
pub fn write_termination_message(
    path: &Path,
    report: &impl TerminationMessage,
) -> std::io::Result<()> {
    std::fs::write(path, report.to_termination_message())
}
