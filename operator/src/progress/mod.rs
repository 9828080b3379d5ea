//! What a run does next, decided from what its Jobs say and nothing else: pure, so every
//! rule (dependencies, retries with backoff, `onFailure`, cancellation, `resumeFrom`,
//! parallelism) is unit-tested, and a restarted operator reaches the same decision.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use chrono::{DateTime, Utc};
use synqx_api::dag::Plan;
use synqx_api::duration::parse_duration;
use synqx_api::pipeline::{OnFailure, RetryPolicy};
use synqx_api::run::{RunPhase, StepPhase};

/// The message of a step skipped because it succeeded in the run this one resumes from.
pub const RESUMED: &str = "succeeded in the run it resumes from";

/// What one attempt's Job says.
#[derive(Clone, Debug, PartialEq)]
pub enum JobState {
    Active,
    Succeeded {
        finished: DateTime<Utc>,
    },
    Failed {
        finished: DateTime<Utc>,
        reason: String,
    },
}

/// The inputs of a decision.
pub struct RunFacts<'a> {
    pub plan: &'a Plan,
    /// Jobs by step and attempt.
    pub jobs: &'a BTreeMap<String, BTreeMap<u32, JobState>>,
    /// Steps that succeeded in the run named by `resumeFrom`.
    pub resumed: &'a BTreeSet<String>,
    pub on_failure: OnFailure,
    /// Retry policy of each step (its own, else the pipeline's).
    pub retry: &'a dyn Fn(&str) -> Option<RetryPolicy>,
    pub parallelism: Option<u32>,
    pub cancel: bool,
    pub now: DateTime<Utc>,
}

/// The state of one step and why.
#[derive(Clone, Debug, PartialEq)]
pub struct StepState {
    pub phase: StepPhase,
    pub attempt: u32,
    pub message: Option<String>,
}

/// What to do now.
#[derive(Debug, Default, PartialEq)]
pub struct Decision {
    pub steps: BTreeMap<String, StepState>,
    /// Step attempts whose Jobs to create now, in plan order, before any budget cut.
    pub start: Vec<(String, u32)>,
    /// Steps whose active Jobs to delete (cancellation).
    pub stop: Vec<String>,
    /// When to look again for a retry whose backoff has not passed.
    pub wake_in: Option<Duration>,
    pub phase: RunPhase,
}

/// The delay before attempt `next` (2, 3, ...): `initial × factor^(next-2)`, at most `max`.
pub fn backoff(policy: Option<&RetryPolicy>, next: u32) -> Duration {
    let backoff = policy.and_then(|p| p.backoff.clone()).unwrap_or_default();
    let initial = backoff
        .initial
        .as_deref()
        .and_then(|d| parse_duration(d).ok())
        .unwrap_or(Duration::from_secs(10));
    let max = backoff
        .max
        .as_deref()
        .and_then(|d| parse_duration(d).ok())
        .unwrap_or(Duration::from_secs(300));
    let factor = backoff.factor.unwrap_or(2.0).max(1.0);
    let exponent = next.saturating_sub(2).min(64) as i32;
    Duration::from_secs_f64((initial.as_secs_f64() * factor.powi(exponent)).min(max.as_secs_f64()))
}

pub fn decide(facts: &RunFacts<'_>) -> Decision {
    let mut decision = Decision::default();
    let mut running = 0u32;
    let mut failed_any = false;

    // First what each step's own Jobs say.
    for planned in &facts.plan.steps {
        let name = &planned.step.name;
        let attempts = facts.jobs.get(name);
        let latest = attempts.and_then(|a| a.iter().next_back());
        let policy = (facts.retry)(name);
        let limit = policy.as_ref().map_or(0, |p| p.limit);
        let state = match latest {
            _ if facts.resumed.contains(name) && latest.is_none() => StepState {
                phase: StepPhase::Skipped,
                attempt: 0,
                message: Some(RESUMED.into()),
            },
            None => StepState {
                phase: StepPhase::Pending,
                attempt: 0,
                message: None,
            },
            Some((&attempt, JobState::Active)) => {
                running += 1;
                StepState {
                    phase: StepPhase::Running,
                    attempt,
                    message: None,
                }
            }
            Some((&attempt, JobState::Succeeded { .. })) => StepState {
                phase: StepPhase::Succeeded,
                attempt,
                message: None,
            },
            Some((&attempt, JobState::Failed { finished, reason }))
                if attempt <= limit && !facts.cancel =>
            {
                let wait = backoff(policy.as_ref(), attempt + 1);
                let due = *finished + chrono::Duration::from_std(wait).unwrap_or_default();
                let message = format!("attempt {attempt} of {} failed: {reason}", limit + 1);
                if due <= facts.now {
                    decision.start.push((name.clone(), attempt + 1));
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
            Some((&attempt, JobState::Failed { reason, .. })) => {
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

    let stopping = facts.cancel || (failed_any && facts.on_failure == OnFailure::Stop);
    if stopping {
        // Nothing new starts; retries waiting for their backoff end here.
        decision.start.clear();
        decision.wake_in = None;
        for (name, state) in decision.steps.iter_mut() {
            match state.phase {
                StepPhase::Running if facts.cancel => {
                    decision.stop.push(name.clone());
                    state.phase = StepPhase::Cancelled;
                    state.message = Some("the run was cancelled".into());
                }
                StepPhase::Retrying => {
                    state.phase = if facts.cancel {
                        StepPhase::Cancelled
                    } else {
                        StepPhase::Failed
                    };
                }
                StepPhase::Pending => {
                    state.phase = StepPhase::Skipped;
                    state.message = Some(if facts.cancel {
                        "not started: the run was cancelled".into()
                    } else {
                        "not started: a step failed (onFailure: Stop)".into()
                    });
                }
                _ => {}
            }
        }
    } else {
        // Pending steps start once every upstream step succeeded; a failed upstream skips them.
        for planned in &facts.plan.steps {
            let name = &planned.step.name;
            if decision.steps[name].phase != StepPhase::Pending {
                continue;
            }
            let blocked = planned.upstream.iter().find(|u| {
                matches!(
                    decision
                        .steps
                        .get(*u)
                        .map(|s| (s.phase, facts.resumed.contains(*u))),
                    Some((StepPhase::Failed | StepPhase::Cancelled, _))
                        | Some((StepPhase::Skipped, false))
                )
            });
            if let Some(upstream) = blocked {
                let state = decision
                    .steps
                    .get_mut(name)
                    .expect("every step has a state");
                state.phase = StepPhase::Skipped;
                state.message = Some(format!(
                    "not started: upstream step \"{upstream}\" did not succeed"
                ));
                continue;
            }
            let ready = planned.upstream.iter().all(|u| {
                decision
                    .steps
                    .get(u)
                    .is_some_and(|s| s.phase == StepPhase::Succeeded || facts.resumed.contains(u))
            });
            if ready {
                decision.start.push((name.clone(), 1));
            }
        }
        if let Some(limit) = facts.parallelism {
            let room = limit.saturating_sub(running) as usize;
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
        // The active Jobs are deleted in the same pass: the run ends now.
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

#[cfg(test)]
mod tests;
