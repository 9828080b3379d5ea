//! Why the operator published an Event: every reason it gives, named once. `kubectl get
//! events --field-selector reason=…`, alerts and the tests select Events by these names, so
//! they are part of the interface docs/kubernetes.md lists.

use std::borrow::Cow;

use synqx_api::run::{RunPhase, StepPhase};

use crate::condition::Reason;

/// The reason of an Event.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EventReason {
    /// The reason of the condition the Event reports: a Connection's check, how a run failed,
    /// a Pipeline that is invalid, a reconciliation that panicked.
    Condition(Reason),
    /// Pipeline: compiled into a plan ("Ready").
    PipelineReady,
    /// Pipeline: a Connection its steps use did not pass its check.
    ConnectionsNotReady,
    /// Pipeline: an annotation it carries cannot be used.
    InvalidAnnotation,
    /// Pipeline: a scheduled time was not run (a run still active, or the deadline passed).
    ScheduleSkipped,
    /// Pipeline: its schedule created a run.
    RunScheduled,
    /// Pipeline: `concurrencyPolicy: Replace` cancelled an active run.
    RunReplaced,
    /// Pipeline: a run beyond the history limits was deleted.
    RunDeleted,
    /// Pipeline: a step's watermark was committed.
    WatermarkCommitted,
    /// Pipeline: a step's watermark was moved while it ran, so its own was not committed.
    WatermarkNotCommitted,
    /// PipelineRun: it started.
    RunStarted,
    /// PipelineRun: it waits for its Pipeline.
    Waiting,
    /// PipelineRun: its status was written over by someone else and restored.
    StatusRestored,
    /// PipelineRun: the steps it does not run, in one Event.
    StepsSkipped,
    /// PipelineRun: a step with a Job changed phase (`StepRunning`, `StepFailed`, …).
    Step(StepPhase),
    /// PipelineRun: it ended (`RunSucceeded`, `RunFailed`, `RunCancelled`).
    RunEnded(RunPhase),
}

/// Which transitions of a step with a Job become Events (`--step-events`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum StepEvents {
    /// Every transition: `StepPending`, `StepRunning`, `StepSucceeded` too.
    All,
    /// Only attempts that did not succeed: `StepRetrying`, `StepFailed`, `StepCancelled`.
    /// A step starting and succeeding is in the run's status and in the Job controller's
    /// own Events on the step's Job; an Event for each would double the Event writes of a
    /// busy cluster for nothing a reader looks for in `kubectl describe`.
    #[default]
    Failures,
}

impl StepEvents {
    /// Whether a step that reached `phase` gets an Event.
    pub fn tells(self, phase: StepPhase) -> bool {
        match self {
            Self::All => true,
            Self::Failures => matches!(
                phase,
                StepPhase::Retrying | StepPhase::Failed | StepPhase::Cancelled
            ),
        }
    }
}

impl EventReason {
    pub fn as_str(self) -> Cow<'static, str> {
        let name = match self {
            Self::Condition(reason) => reason.as_str(),
            Self::PipelineReady => "Ready",
            Self::ConnectionsNotReady => "ConnectionsNotReady",
            Self::InvalidAnnotation => "InvalidAnnotation",
            Self::ScheduleSkipped => "ScheduleSkipped",
            Self::RunScheduled => "RunScheduled",
            Self::RunReplaced => "RunReplaced",
            Self::RunDeleted => "RunDeleted",
            Self::WatermarkCommitted => "WatermarkCommitted",
            Self::WatermarkNotCommitted => "WatermarkNotCommitted",
            Self::RunStarted => "RunStarted",
            Self::Waiting => "Waiting",
            Self::StatusRestored => "StatusRestored",
            Self::StepsSkipped => "StepsSkipped",
            Self::Step(phase) => return format!("Step{}", phase.as_str()).into(),
            Self::RunEnded(phase) => return format!("Run{}", phase.as_str()).into(),
        };
        Cow::Borrowed(name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every reason the operator publishes. A new variant goes here too: the match below
    /// fails to compile until it does.
    fn published() -> Vec<EventReason> {
        use EventReason::*;
        let every = |r: EventReason| match r {
            Condition(_)
            | PipelineReady
            | ConnectionsNotReady
            | InvalidAnnotation
            | ScheduleSkipped
            | RunScheduled
            | RunReplaced
            | RunDeleted
            | WatermarkCommitted
            | WatermarkNotCommitted
            | RunStarted
            | Waiting
            | StatusRestored
            | StepsSkipped
            | Step(_)
            | RunEnded(_) => r,
        };
        let mut out: Vec<EventReason> = [
            PipelineReady,
            ConnectionsNotReady,
            InvalidAnnotation,
            ScheduleSkipped,
            RunScheduled,
            RunReplaced,
            RunDeleted,
            WatermarkCommitted,
            WatermarkNotCommitted,
            RunStarted,
            Waiting,
            StatusRestored,
            StepsSkipped,
        ]
        .into_iter()
        .map(every)
        .collect();
        // Steps with a Job: a skipped step has none and is told in StepsSkipped.
        out.extend(
            [
                StepPhase::Pending,
                StepPhase::Running,
                StepPhase::Retrying,
                StepPhase::Succeeded,
                StepPhase::Failed,
                StepPhase::Cancelled,
            ]
            .map(Step),
        );
        out.extend([RunPhase::Succeeded, RunPhase::Failed, RunPhase::Cancelled].map(RunEnded));
        out.extend(
            [
                Reason::Invalid,
                Reason::Cancelled,
                Reason::PipelineNotFound,
                Reason::RevisionMissing,
                Reason::SecretNotFound,
                Reason::SecretNotLabeled,
                Reason::Connected,
                Reason::Unreachable,
                Reason::Unauthorized,
                Reason::NotFound,
                Reason::Unsupported,
                Reason::CheckFailed,
                Reason::OperatorError,
            ]
            .map(Condition),
        );
        out
    }

    #[test]
    fn reasons_are_names_the_api_server_takes() {
        for reason in published() {
            let name = reason.as_str();
            // An Event's reason: UpperCamelCase, at most 128 characters.
            assert!(name.len() <= 128, "{name}");
            assert!(name.starts_with(|c: char| c.is_ascii_uppercase()), "{name}");
            assert!(name.chars().all(|c| c.is_ascii_alphanumeric()), "{name}");
        }
        assert_eq!(EventReason::Step(StepPhase::Failed).as_str(), "StepFailed");
        assert_eq!(
            EventReason::RunEnded(RunPhase::Succeeded).as_str(),
            "RunSucceeded"
        );
    }

    #[test]
    fn by_default_only_steps_that_did_not_succeed_get_events() {
        let told = |events: StepEvents| -> Vec<StepPhase> {
            use StepPhase::*;
            [
                Pending, Running, Retrying, Succeeded, Failed, Skipped, Cancelled,
            ]
            .into_iter()
            .filter(|phase| events.tells(*phase))
            .collect()
        };
        assert_eq!(
            told(StepEvents::default()),
            [StepPhase::Retrying, StepPhase::Failed, StepPhase::Cancelled]
        );
        assert_eq!(told(StepEvents::All).len(), 7);
    }

    #[test]
    fn the_kubernetes_doc_lists_every_reason() {
        let doc = include_str!("../../docs/kubernetes.md");
        let missing: Vec<_> = published()
            .into_iter()
            .map(|r| r.as_str())
            .filter(|name| !doc.contains(&format!("`{name}`")))
            .collect();
        assert!(
            missing.is_empty(),
            "docs/kubernetes.md does not list {missing:?}"
        );
    }
}
