//! Plays a plan on this machine with the scheduler the operator uses
//! ([`synqx_api::scheduler`]): each attempt is a task, started when the scheduler says so,
//! and its outcome goes back to the scheduler as the outcome of a Job would on a cluster.

use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;
use std::time::Duration;

use chrono::{DateTime, Utc};
use futures::FutureExt;
use futures::stream::{FuturesUnordered, StreamExt};
use synqx_api::dag::Plan;
use synqx_api::run::{RunPhase, StepPhase};
use synqx_api::scheduler::{
    AttemptState, Attempts, Decision, RunFacts, RunPolicy, backoff, decide,
};
use tokio_util::sync::CancellationToken;

use super::summary::StepSummary;

/// The run's clock: wall time that advances with tokio's clock, so tests that pause tokio's
/// time see backoffs pass at once and exactly.
struct Clock {
    wall: DateTime<Utc>,
    started: tokio::time::Instant,
}

impl Clock {
    fn start() -> Self {
        Self {
            wall: Utc::now(),
            started: tokio::time::Instant::now(),
        }
    }

    fn now(&self) -> DateTime<Utc> {
        let elapsed = chrono::Duration::from_std(self.started.elapsed()).unwrap_or_default();
        self.wall + elapsed
    }
}

/// What a driven run ends with.
pub struct Driven {
    pub phase: RunPhase,
    /// The last attempt's summary of every step (skipped steps too), in plan order; steps
    /// in `resumed` only when they ran.
    pub steps: Vec<StepSummary>,
}

/// What the driver tells the caller as the run goes.
pub trait Observer {
    /// A step has ended for this run (succeeded, failed, skipped, cancelled): record it.
    fn ended(&mut self, summary: &StepSummary) -> impl Future<Output = ()>;
    /// An attempt failed and will be retried after `wait`.
    fn retrying(&mut self, summary: &StepSummary, wait: Duration);
}

/// Runs every step of `plan` not in `resumed`, each attempt through `execute`, until the
/// scheduler says the run ended and no attempt is still in flight.
pub async fn drive<F, Fut>(
    plan: &Plan,
    policy: &RunPolicy,
    resumed: &BTreeSet<String>,
    cancel: &CancellationToken,
    mut execute: F,
    observer: &mut impl Observer,
) -> Driven
where
    F: FnMut(String, u32) -> Fut,
    Fut: Future<Output = StepSummary>,
{
    let clock = Clock::start();
    let mut attempts = Attempts::new();
    let mut summaries: BTreeMap<String, StepSummary> = BTreeMap::new();
    let mut reported = BTreeSet::new();
    let mut running = FuturesUnordered::new();
    loop {
        let decision = decide(&RunFacts {
            plan,
            attempts: &attempts,
            resumed,
            policy,
            cancel: cancel.is_cancelled(),
            now: clock.now(),
        });
        for (step, attempt) in &decision.start {
            attempts
                .entry(step.clone())
                .or_default()
                .insert(*attempt, AttemptState::Active);
            running.push(execute(step.clone(), *attempt));
        }
        let taken_as_done = |step: &str| resumed.contains(step) && !attempts.contains_key(step);
        report_ended(
            &decision,
            &attempts,
            &taken_as_done,
            &mut summaries,
            &mut reported,
            observer,
        )
        .await;
        if running.is_empty() && decision.phase.is_finished() {
            let steps = plan.order().filter_map(|s| summaries.remove(s)).collect();
            return Driven {
                phase: decision.phase,
                steps,
            };
        }
        let wake = decision.wake_in;
        let ended = tokio::select! {
            Some(first) = running.next() => {
                // Attempts that ended at the same moment are taken together, as the
                // operator reads every Job's state at once.
                let mut ended = vec![first];
                while let Some(Some(more)) = running.next().now_or_never() {
                    ended.push(more);
                }
                ended
            }
            () = sleep(wake), if wake.is_some() => Vec::new(),
            () = cancel.cancelled(), if !cancel.is_cancelled() => Vec::new(),
        };
        for summary in ended {
            let state = attempt_state(&summary, clock.now());
            if matches!(state, AttemptState::Failed { .. }) && !cancel.is_cancelled() {
                let retry = plan
                    .step(&summary.name)
                    .and_then(|p| policy.retry_of(&p.step));
                if summary.attempt <= retry.map_or(0, |r| r.limit) {
                    let next = summary.attempt.saturating_add(1);
                    observer.retrying(&summary, backoff(retry, next));
                }
            }
            attempts
                .entry(summary.name.clone())
                .or_default()
                .insert(summary.attempt, state);
            summaries.insert(summary.name.clone(), summary);
        }
    }
}

async fn sleep(wake: Option<Duration>) {
    if let Some(wake) = wake {
        tokio::time::sleep(wake).await;
    }
}

fn attempt_state(summary: &StepSummary, now: DateTime<Utc>) -> AttemptState {
    match summary.status {
        StepPhase::Succeeded => AttemptState::Succeeded {
            finished: now,
            note: summary.message.clone(),
        },
        StepPhase::Cancelled => AttemptState::Cancelled { finished: now },
        _ => AttemptState::Failed {
            finished: now,
            reason: summary.message.clone().unwrap_or_default(),
        },
    }
}

/// Tells the observer about every step that reached a final phase, once, when no attempt of
/// it is in flight; a step that never ran gets a summary that says why.
async fn report_ended(
    decision: &Decision,
    attempts: &Attempts,
    taken_as_done: &dyn Fn(&str) -> bool,
    summaries: &mut BTreeMap<String, StepSummary>,
    reported: &mut BTreeSet<String>,
    observer: &mut impl Observer,
) {
    for (name, state) in &decision.steps {
        let in_flight = attempts
            .get(name)
            .and_then(|a| a.values().next_back())
            .is_some_and(|a| *a == AttemptState::Active);
        if !state.phase.is_final() || in_flight || taken_as_done(name) || reported.contains(name) {
            continue;
        }
        let summary = summaries
            .entry(name.clone())
            .or_insert_with(|| StepSummary::skipped(name, String::new()));
        summary.status = state.phase;
        if summary.message.is_none() {
            summary.message.clone_from(&state.message);
        }
        reported.insert(name.clone());
        observer.ended(summary).await;
    }
}
