//! The operator's own record of a run: the revision it pinned, the phase it ended with, and
//! the outcome of every step attempt it saw end. It lives in the annotation
//! [`RECORD_ANNOTATION`] of the PipelineRun itself, not in its status.
//!
//! Why an annotation: step pods run as the namespace's `synqx-runner` service account, which
//! may patch `pipelineruns/status` (to write its counters) of every run in its namespace.
//! The API server drops every change to metadata made through the `/status` subresource, and
//! the runner has no right on the run itself, so an annotation is something the runner
//! identity cannot write, while it survives an operator restart (a cache in memory would
//! not). Whoever may edit a run (its author) may edit the annotation too, as they may
//! cancel or delete the run: that is no wider than what they have.
//!
//! Every decision that used to read the status (is the run over, which plan does it run,
//! which attempts ended, which steps a resuming run skips) reads this record; the status is
//! what the operator shows, rebuilt from the record where it disagrees.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::run::{PipelineRun, RunPhase, StepPhase};

/// The annotation holding the operator's [`RunRecord`] as JSON.
pub const RECORD_ANNOTATION: &str = "synqx.io/record";

/// What the operator decided about a run, as only it writes it.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RunRecord {
    /// The ControllerRevision the run pinned.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revision: Option<String>,
    /// The phase the run ended with; absent while it goes on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<RunPhase>,
    /// When the run ended (RFC 3339), as the operator wrote it when it ended the run: what
    /// the time of a run's last success is read from, never the status's `completionTime`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finished_at: Option<String>,
    /// Steps whose current attempt ended, or that will not run.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub steps: BTreeMap<String, StepRecord>,
}

/// The outcome of a step's latest attempt.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct StepRecord {
    pub phase: StepPhase,
    /// The attempt (0: the step never got one, e.g. skipped).
    #[serde(default)]
    pub attempt: u32,
    /// Skipped because the run it resumes from ran it.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub resumed: bool,
}

/// Whether a step in this phase has an outcome the record keeps (its attempt ended, or it
/// will not run); `Pending` and `Running` are only on their way.
pub fn has_outcome(phase: StepPhase) -> bool {
    !matches!(phase, StepPhase::Pending | StepPhase::Running)
}

impl RunRecord {
    /// The record the operator keeps on `run`; `None` when it has none yet (a run it has not
    /// started) or the annotation does not hold one.
    pub fn of(run: &PipelineRun) -> Option<RunRecord> {
        let text = run.metadata.annotations.as_ref()?.get(RECORD_ANNOTATION)?;
        serde_json::from_str(text).ok()
    }

    /// The annotation's text.
    pub fn to_annotation(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
    }

    /// Whether the run has ended, by the record.
    pub fn finished(&self) -> bool {
        self.phase.is_some_and(RunPhase::is_finished)
    }

    /// Steps that succeeded in this run or that it skipped because an earlier run had: what
    /// a run resuming from it skips.
    pub fn done_steps(&self) -> impl Iterator<Item = &str> {
        self.steps
            .iter()
            .filter(|(_, s)| s.phase == StepPhase::Succeeded || s.resumed)
            .map(|(name, _)| name.as_str())
    }
}

/// A run's phase as far as anyone may act on it: the ended phase from the operator's record,
/// else the status's phase unless the status claims an end the record does not know (which
/// only a writer other than the operator can have put there): such a run is still `Running`.
pub fn trusted_phase(run: &PipelineRun) -> Option<RunPhase> {
    let record = RunRecord::of(run).unwrap_or_default();
    if let Some(phase) = record.phase.filter(|p| p.is_finished()) {
        return Some(phase);
    }
    let shown = run.status.as_ref().and_then(|s| s.phase)?;
    Some(if shown.is_finished() {
        RunPhase::Running
    } else {
        shown
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::run::PipelineRunStatus;

    fn run(annotation: Option<&str>, shown: Option<RunPhase>) -> PipelineRun {
        let mut run = PipelineRun::new("r", Default::default());
        run.metadata.annotations =
            annotation.map(|a| [(RECORD_ANNOTATION.to_string(), a.to_string())].into());
        run.status = Some(PipelineRunStatus {
            phase: shown,
            ..Default::default()
        });
        run
    }

    #[test]
    fn the_record_round_trips_through_its_annotation() {
        let record = RunRecord {
            revision: Some("orders-5d8f".into()),
            phase: Some(RunPhase::Succeeded),
            finished_at: Some("2026-01-01T00:03:00Z".into()),
            steps: [
                (
                    "extract".to_string(),
                    StepRecord {
                        phase: StepPhase::Succeeded,
                        attempt: 2,
                        resumed: false,
                    },
                ),
                (
                    "load".to_string(),
                    StepRecord {
                        phase: StepPhase::Skipped,
                        attempt: 0,
                        resumed: true,
                    },
                ),
            ]
            .into(),
        };
        let text = record.to_annotation();
        assert_eq!(
            text,
            r#"{"revision":"orders-5d8f","phase":"Succeeded","finishedAt":"2026-01-01T00:03:00Z","steps":{"extract":{"phase":"Succeeded","attempt":2},"load":{"phase":"Skipped","attempt":0,"resumed":true}}}"#
        );
        let parsed = RunRecord::of(&run(Some(&text), None));
        assert_eq!(parsed.as_ref(), Some(&record));
        let done: Vec<&str> = record.done_steps().collect();
        assert_eq!(done, ["extract", "load"]);
        assert!(RunRecord::of(&run(Some("{\"phase\":\"Over\"}"), None)).is_none());
        assert!(RunRecord::of(&run(None, None)).is_none());
    }

    #[test]
    fn an_end_only_the_status_claims_is_not_trusted() {
        let ended = RunRecord {
            phase: Some(RunPhase::Failed),
            ..Default::default()
        };
        let annotation = ended.to_annotation();
        assert_eq!(
            trusted_phase(&run(Some(&annotation), Some(RunPhase::Succeeded))),
            Some(RunPhase::Failed)
        );
        assert_eq!(
            trusted_phase(&run(Some("{}"), Some(RunPhase::Succeeded))),
            Some(RunPhase::Running)
        );
        assert_eq!(
            trusted_phase(&run(None, Some(RunPhase::Pending))),
            Some(RunPhase::Pending)
        );
        assert_eq!(trusted_phase(&run(None, None)), None);
    }
}
