//! Decide, the second half: the run's status as the run controller owns it, built by pure
//! functions from the previous status and the decision. The controller owns the run's
//! phase, revision, progress, times and conditions, and of each step its phase, attempt,
//! Job, times and message; a step's counters and watermark range are written apart, by the
//! gateway from the pod's telemetry and by [`super::counters`] from its final report.

use std::collections::BTreeMap;
use std::time::Duration;

use chrono::{DateTime, Utc};
use synqx_api::dag::Plan;
use synqx_api::duration::format_duration;
use synqx_api::run::{PipelineRunStatus, RunPhase, StepPhase, StepStatus};
use synqx_api::scheduler::Decision;

use super::observe::JobStates;
use crate::condition::{ConditionType, Reason, condition};
use crate::context::rfc3339;

/// Attempts whose Jobs were created in this pass: step -> (attempt, Job name).
pub type Created = BTreeMap<String, (u32, String)>;

/// What the run's status is built from.
pub struct RunInputs<'a> {
    pub previous: &'a PipelineRunStatus,
    pub plan: &'a Plan,
    pub decision: &'a Decision,
    pub jobs: &'a JobStates,
    pub created: &'a Created,
    pub revision: &'a str,
    pub now: DateTime<Utc>,
}

/// The status of a run the scheduler decided about.
pub fn run_status(i: &RunInputs<'_>) -> PipelineRunStatus {
    let now = rfc3339(i.now);
    let steps = i
        .plan
        .steps
        .iter()
        .filter_map(|planned| step_status(i, &planned.step.name, &now))
        .collect();
    let start_time = i.previous.start_time.clone().unwrap_or(now);
    let phase = i.decision.phase;
    let mut status = PipelineRunStatus {
        phase: Some(phase),
        revision: Some(i.revision.to_string()),
        progress: Some(format!("{}/{}", i.decision.done(), i.plan.steps.len())),
        start_time: Some(start_time),
        steps,
        ..Default::default()
    };
    if phase.is_finished() {
        let (ok, reason) = match phase {
            RunPhase::Succeeded => (true, Reason::Succeeded),
            RunPhase::Cancelled => (false, Reason::Cancelled),
            _ => (false, Reason::StepsFailed),
        };
        let failed = i.decision.failed();
        let message = if failed.is_empty() {
            reason.as_str().to_string()
        } else {
            format!("failed steps: {failed:?}")
        };
        end(&mut status, i.previous, ok, reason, &message, i.now);
    }
    status
}

fn step_status(i: &RunInputs<'_>, name: &str, now: &str) -> Option<StepStatus> {
    let state = i.decision.steps.get(name)?;
    let (mut phase, mut attempt) = (state.phase, state.attempt);
    if let Some((new_attempt, _)) = i.created.get(name) {
        phase = StepPhase::Running;
        attempt = *new_attempt;
    }
    let mut entry = StepStatus {
        name: name.to_string(),
        phase: Some(phase),
        message: state.message.clone(),
        ..Default::default()
    };
    if attempt > 0 {
        let key = (name.to_string(), attempt);
        entry.attempt = Some(attempt);
        entry.job_name = i
            .jobs
            .names
            .get(&key)
            .or_else(|| i.created.get(name).map(|(_, job)| job))
            .cloned();
        entry.started_at = Some(
            i.jobs
                .started
                .get(&key)
                .map_or_else(|| now.to_string(), |t| rfc3339(*t)),
        );
        if matches!(
            phase,
            StepPhase::Succeeded | StepPhase::Failed | StepPhase::Retrying
        ) {
            entry.finished_at = i.jobs.finished.get(&key).map(|t| rfc3339(*t));
        }
    }
    Some(entry)
}

/// The status of a run that waits for its Pipeline.
pub fn waiting_status(
    previous: &PipelineRunStatus,
    message: &str,
    now: DateTime<Utc>,
) -> PipelineRunStatus {
    PipelineRunStatus {
        phase: Some(RunPhase::Pending),
        conditions: vec![condition(
            &previous.conditions,
            ConditionType::Waiting,
            true,
            Reason::PipelineNotReady,
            message,
            None,
            &rfc3339(now),
        )],
        ..Default::default()
    }
}

/// The status of a run that cannot go on: what the controller wrote before is kept (the
/// steps' runner-owned fields are not the controller's to write).
pub fn ended_status(
    previous: &PipelineRunStatus,
    phase: RunPhase,
    reason: Reason,
    message: &str,
    now: DateTime<Utc>,
) -> PipelineRunStatus {
    let mut status = PipelineRunStatus {
        phase: Some(phase),
        revision: previous.revision.clone(),
        progress: previous.progress.clone(),
        start_time: previous.start_time.clone(),
        steps: previous.steps.iter().map(controller_fields).collect(),
        ..Default::default()
    };
    end(&mut status, previous, false, reason, message, now);
    status
}

/// The status of an ended run put back as the operator's record has it: `trusted` (the
/// status shown with the record's revision, phase and step outcomes), its end written again
/// (condition, completion time) when the status shown did not end that way.
pub fn restored_status(
    shown: &PipelineRunStatus,
    trusted: &PipelineRunStatus,
    now: DateTime<Utc>,
) -> PipelineRunStatus {
    let mut status = PipelineRunStatus {
        steps: trusted.steps.iter().map(controller_fields).collect(),
        ..trusted.clone()
    };
    let phase = trusted.phase.unwrap_or(RunPhase::Failed);
    if shown.phase != Some(phase) {
        let (ok, reason) = match phase {
            RunPhase::Succeeded => (true, Reason::Succeeded),
            RunPhase::Cancelled => (false, Reason::Cancelled),
            _ => (false, Reason::StepsFailed),
        };
        let message = format!(
            "the run ended {} (restored from the operator's record)",
            phase.as_str()
        );
        end(&mut status, shown, ok, reason, &message, now);
    }
    status
}

/// The fields of a step entry the controller owns.
pub fn controller_fields(step: &StepStatus) -> StepStatus {
    StepStatus {
        name: step.name.clone(),
        phase: step.phase,
        attempt: step.attempt,
        job_name: step.job_name.clone(),
        started_at: step.started_at.clone(),
        finished_at: step.finished_at.clone(),
        message: step.message.clone(),
        ..Default::default()
    }
}

fn end(
    status: &mut PipelineRunStatus,
    previous: &PipelineRunStatus,
    ok: bool,
    reason: Reason,
    message: &str,
    now: DateTime<Utc>,
) {
    status.completion_time = Some(rfc3339(now));
    status.duration = status
        .start_time
        .as_deref()
        .and_then(|t| DateTime::parse_from_rfc3339(t).ok())
        .and_then(|start| (now - start.with_timezone(&Utc)).to_std().ok())
        .map(|took| format_duration(Duration::from_secs(took.as_secs())));
    status.conditions = vec![condition(
        &previous.conditions,
        ConditionType::Succeeded,
        ok,
        reason,
        message,
        None,
        &rfc3339(now),
    )];
}

/// A step that changed phase (or attempt) since the previous status.
#[derive(Clone, Debug, PartialEq)]
pub struct Transition {
    pub step: String,
    pub phase: StepPhase,
    pub attempt: u32,
    pub message: Option<String>,
    pub job: Option<String>,
}

/// Every step that moved between the previous status and the new one, in plan order.
pub fn transitions(previous: &PipelineRunStatus, new: &PipelineRunStatus) -> Vec<Transition> {
    new.steps
        .iter()
        .filter_map(|step| {
            let before = previous.steps.iter().find(|s| s.name == step.name);
            let phase = step.phase?;
            let attempt = step.attempt.unwrap_or(0);
            let moved = before.and_then(|s| s.phase) != Some(phase)
                || (attempt > 0 && before.and_then(|s| s.attempt) != Some(attempt));
            moved.then(|| Transition {
                step: step.name.clone(),
                phase,
                attempt,
                message: step.message.clone(),
                job: step.job_name.clone(),
            })
        })
        .collect()
}

/// Steps that succeeded in this pass and left a report: their watermarks are committed
/// before the status says they are done. `(step, Job, attempt)`.
pub fn newly_succeeded<'a>(
    previous: &PipelineRunStatus,
    decision: &'a Decision,
    jobs: &'a JobStates,
) -> Vec<(&'a str, u32)> {
    decision
        .steps
        .iter()
        .filter(|(step, state)| {
            let was = previous
                .steps
                .iter()
                .find(|s| &s.name == *step)
                .and_then(|s| s.phase);
            state.phase == StepPhase::Succeeded
                && was != Some(StepPhase::Succeeded)
                && jobs.reports.contains_key(&((*step).clone(), state.attempt))
        })
        .map(|(step, state)| (step.as_str(), state.attempt))
        .collect()
}
