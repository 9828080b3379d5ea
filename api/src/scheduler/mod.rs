//! What a run does next, decided from what its attempts say and nothing else. One scheduler
//! for `synqx run` and the operator, so a pipeline behaves the same on a laptop and on a
//! cluster: a step starts as soon as every upstream step succeeded, at most `parallelism`
//! steps run at once, a failed attempt is retried after its backoff, `onFailure` decides what
//! a failure does to the rest, and a cancelled run starts nothing new.
//!
//! Pure: every rule is unit-tested, and the operator reaches the same decision after a
//! restart because the decision depends only on the attempts it reads back from its Jobs.

mod backoff;
pub mod scenarios;

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use chrono::{DateTime, Utc};

pub use backoff::{backoff, exponential};

use crate::dag::Plan;
use crate::pipeline::{OnFailure, PipelineSpec, RetryPolicy, Step};
use crate::run::{RunPhase, StepPhase};

/// The message of a step skipped because it succeeded in the run this one resumes from.
pub const RESUMED: &str = "succeeded in the run it resumes from";

/// What one attempt of a step says: a Job on the cluster, a task in `synqx run`.
#[derive(Clone, Debug, PartialEq)]
pub enum AttemptState {
    Active,
    Succeeded {
        finished: DateTime<Utc>,
        /// What the step noted (leftovers cleaned up, rejected rows kept, the pagination
        /// `auto` chose), shown as its message.
        note: Option<String>,
    },
    Failed {
        finished: DateTime<Utc>,
        reason: String,
    },
    /// Stopped by the run's cancellation before it could commit.
    Cancelled {
        finished: DateTime<Utc>,
    },
}

/// Every attempt of every step that has one, by step and attempt number (from 1).
pub type Attempts = BTreeMap<String, BTreeMap<u32, AttemptState>>;

/// The settings of a Pipeline that steer its runs.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct RunPolicy {
    pub on_failure: OnFailure,
    /// Most steps running at once; `None` runs every ready step.
    pub parallelism: Option<u32>,
    /// The Pipeline's retry policy; a step's own replaces it.
    pub retry: Option<RetryPolicy>,
}

impl RunPolicy {
    pub fn of(spec: &PipelineSpec) -> Self {
        Self {
            on_failure: spec.on_failure.unwrap_or_default(),
            parallelism: spec.parallelism,
            retry: spec.retry.clone(),
        }
    }

    /// The retry policy of `step`: its own, else the Pipeline's.
    pub fn retry_of<'a>(&'a self, step: &'a Step) -> Option<&'a RetryPolicy> {
        step.retry.as_ref().or(self.retry.as_ref())
    }
}

/// The inputs of a decision.
pub struct RunFacts<'a> {
    pub plan: &'a Plan,
    pub attempts: &'a Attempts,
    /// Steps taken as done without running: those that succeeded in the run named by
    /// `resumeFrom`, or those `synqx run --step` leaves out.
    pub resumed: &'a BTreeSet<String>,
    pub policy: &'a RunPolicy,
    pub cancel: bool,
    pub now: DateTime<Utc>,
}

/// The state of one step and why.
#[derive(Clone, Debug, PartialEq)]
pub struct StepState {
    pub phase: StepPhase,
    /// The latest attempt, 0 before the first.
    pub attempt: u32,
    pub message: Option<String>,
}

/// What to do now.
#[derive(Debug, Default, PartialEq)]
pub struct Decision {
    pub steps: BTreeMap<String, StepState>,
    /// Step attempts to start now, in plan order, within `parallelism`.
    pub start: Vec<(String, u32)>,
    /// Steps whose active attempts to stop (cancellation).
    pub stop: Vec<String>,
    /// When to look again for a retry whose backoff has not passed.
    pub wake_in: Option<Duration>,
    pub phase: RunPhase,
}

impl Decision {
    /// Steps that have ended one way or another, for `3/7` progress.
    pub fn done(&self) -> usize {
        self.steps.values().filter(|s| s.phase.is_final()).count()
    }

    /// Names of the steps that failed.
    pub fn failed(&self) -> Vec<&str> {
        self.steps
            .iter()
            .filter(|(_, s)| s.phase == StepPhase::Failed)
            .map(|(n, _)| n.as_str())
            .collect()
    }
}

pub fn decide(facts: &RunFacts<'_>) -> Decision {
    let mut decision = Decision::default();
    let mut running = 0u32;
    let mut failed_any = false;

    // First what each step's own attempts say.
    for planned in &facts.plan.steps {
        let name = &planned.step.name;
        let latest = facts.attempts.get(name).and_then(|a| a.iter().next_back());
        let policy = facts.policy.retry_of(&planned.step);
        let limit = policy.map_or(0, |p| p.limit);
        let state = match latest {
            None if facts.resumed.contains(name) => StepState {
                phase: StepPhase::Skipped,
                attempt: 0,
                message: Some(RESUMED.into()),
            },
            None => StepState {
                phase: StepPhase::Pending,
                attempt: 0,
                message: None,
            },
            Some((&attempt, AttemptState::Active)) => {
                running = running.saturating_add(1);
                StepState {
                    phase: StepPhase::Running,
                    attempt,
                    message: None,
                }
            }
            Some((&attempt, AttemptState::Succeeded { note, .. })) => StepState {
                phase: StepPhase::Succeeded,
                attempt,
                message: note.clone(),
            },
            Some((&attempt, AttemptState::Cancelled { .. })) => StepState {
                phase: StepPhase::Cancelled,
                attempt,
                message: Some("the run was cancelled".into()),
            },
            Some((&attempt, AttemptState::Failed { finished, reason }))
                if attempt <= limit && !facts.cancel =>
            {
                let next = attempt.saturating_add(1);
                let wait = backoff(policy, next);
                // Checked: a delay past the end of the calendar means never, not a panic.
                let due = chrono::Duration::from_std(wait)
                    .ok()
                    .and_then(|wait| finished.checked_add_signed(wait))
                    .unwrap_or(DateTime::<Utc>::MAX_UTC);
                let message = format!(
                    "attempt {attempt} of {} failed: {reason}",
                    limit.saturating_add(1)
                );
                if due <= facts.now {
                    decision.start.push((name.clone(), next));
                } else {
                    let left = (due - facts.now).to_std().unwrap_or_default();
                    decision.wake_in = Some(decision.wake_in.map_or(left, |w| w.min(left)));
                }
                StepState {
                    phase: StepPhase::Retrying,
                    attempt,
                    message: Some(message),
                }
            }
            Some((&attempt, AttemptState::Failed { reason, .. })) => {
                failed_any = true;
                StepState {
                    phase: StepPhase::Failed,
                    attempt,
                    message: Some(reason.clone()),
                }
            }
        };
        decision.steps.insert(name.clone(), state);
    }

    let stopping = facts.cancel || (failed_any && facts.policy.on_failure == OnFailure::Stop);
    if stopping {
        stop(&mut decision, facts.cancel);
    } else {
        start_ready(&mut decision, facts);
        if let Some(limit) = facts.policy.parallelism {
            let room = limit.saturating_sub(running) as usize;
            // Retries come first in `start` (they were pushed above): they keep their place.
            decision.start.truncate(room);
        }
    }

    let busy = decision.steps.values().any(|s| {
        matches!(
            s.phase,
            StepPhase::Running | StepPhase::Retrying | StepPhase::Pending
        )
    });
    decision.phase = if facts.cancel {
        // Active attempts are stopped in the same pass: the run ends now.
        RunPhase::Cancelled
    } else if busy || !decision.start.is_empty() {
        RunPhase::Running
    } else if decision.steps.iter().all(|(n, s)| {
        s.phase == StepPhase::Succeeded
            || (s.phase == StepPhase::Skipped && facts.resumed.contains(n))
    }) {
        RunPhase::Succeeded
    } else {
        RunPhase::Failed
    };
    decision
}

/// Nothing new starts; retries waiting for their backoff end here.
fn stop(decision: &mut Decision, cancel: bool) {
    decision.start.clear();
    decision.wake_in = None;
    for (name, state) in decision.steps.iter_mut() {
        match state.phase {
            StepPhase::Running if cancel => {
                decision.stop.push(name.clone());
                state.phase = StepPhase::Cancelled;
                state.message = Some("the run was cancelled".into());
            }
            StepPhase::Retrying => {
                state.phase = if cancel {
                    StepPhase::Cancelled
                } else {
                    StepPhase::Failed
                };
            }
            StepPhase::Pending => {
                state.phase = StepPhase::Skipped;
                state.message = Some(if cancel {
                    "not started: the run was cancelled".into()
                } else {
                    "not started: a step failed (onFailure: Stop)".into()
                });
            }
            _ => {}
        }
    }
}

/// Pending steps start once every upstream step succeeded; a failed upstream skips them.
fn start_ready(decision: &mut Decision, facts: &RunFacts<'_>) {
    for planned in &facts.plan.steps {
        let name = &planned.step.name;
        if decision
            .steps
            .get(name)
            .is_none_or(|s| s.phase != StepPhase::Pending)
        {
            continue;
        }
        let blocked = planned.upstream.iter().find(|u| {
            decision.steps.get(*u).is_some_and(|s| match s.phase {
                StepPhase::Failed | StepPhase::Cancelled => true,
                StepPhase::Skipped => !facts.resumed.contains(*u),
                _ => false,
            })
        });
        if let Some(upstream) = blocked {
            let message = format!("not started: upstream step \"{upstream}\" did not succeed");
            if let Some(state) = decision.steps.get_mut(name) {
                state.phase = StepPhase::Skipped;
                state.message = Some(message);
            }
            continue;
        }
        let ready = planned.upstream.iter().all(|u| {
            facts.resumed.contains(u)
                || decision
                    .steps
                    .get(u)
                    .is_some_and(|s| s.phase == StepPhase::Succeeded)
        });
        if ready {
            decision.start.push((name.clone(), 1));
        }
    }
}

#[cfg(test)]
mod tests;
