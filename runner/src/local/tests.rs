//! `synqx run` plays the scheduler's shared scenarios exactly as they expect: the operator's
//! tests hold its Jobs to the same scenarios, so both run a pipeline the same way.

use std::cell::RefCell;
use std::collections::BTreeSet;
use std::time::Duration;

use synqx_api::run::StepPhase;
use synqx_api::scheduler::scenarios::{self, SCRIPTED_FAILURE, Scenario, Trace};
use tokio_util::sync::CancellationToken;

use super::drive::{Observer, drive};
use super::summary::StepSummary;
use crate::engine::CounterSnapshot;

#[derive(Default)]
struct Seen {
    ended: Vec<String>,
    retried: Vec<(String, u32, Duration)>,
}

impl Observer for Seen {
    async fn ended(&mut self, summary: &StepSummary) {
        self.ended.push(summary.name.clone());
    }

    fn retrying(&mut self, summary: &StepSummary, wait: Duration) {
        self.retried
            .push((summary.name.clone(), summary.attempt, wait));
    }
}

/// Plays `scenario` with attempts that sleep (on tokio's paused clock) and end as scripted.
async fn play(scenario: &Scenario) -> (Trace, Seen) {
    let plan = scenario.plan().expect("the scenario compiles");
    let policy = scenario.policy();
    let started = tokio::time::Instant::now();
    let starts = RefCell::new(Vec::new());
    let running = RefCell::new(0u32);
    let peak = RefCell::new(0u32);
    let mut seen = Seen::default();
    let driven = drive(
        &plan,
        &policy,
        &BTreeSet::new(),
        &CancellationToken::new(),
        |step, attempt| {
            let second = started.elapsed().as_secs();
            starts.borrow_mut().push((step.clone(), attempt, second));
            *running.borrow_mut() += 1;
            let now = *running.borrow();
            peak.replace_with(|p| (*p).max(now));
            let (seconds, ok) = scenario.outcome(&step, attempt);
            let running = &running;
            async move {
                tokio::time::sleep(Duration::from_secs(seconds)).await;
                *running.borrow_mut() -= 1;
                let mut summary = if ok {
                    let mut s = StepSummary::skipped(&step, String::new());
                    s.status = StepPhase::Succeeded;
                    s
                } else {
                    StepSummary::ended(
                        &step,
                        StepPhase::Failed,
                        SCRIPTED_FAILURE.into(),
                        CounterSnapshot::default(),
                    )
                };
                summary.attempt = attempt;
                summary
            }
        },
        &mut seen,
    )
    .await;
    if let Some(limit) = scenario.parallelism {
        assert!(
            *peak.borrow() <= limit,
            "{}: {} steps ran at once",
            scenario.name,
            peak.borrow()
        );
    }
    let mut trace = Trace {
        starts: starts.into_inner(),
        ends: driven
            .steps
            .iter()
            .map(|s| (s.name.clone(), s.status, s.attempt))
            .collect(),
        phase: driven.phase,
    };
    trace.sort();
    (trace, seen)
}

#[tokio::test(start_paused = true)]
async fn synqx_run_plays_every_shared_scenario_as_the_operator_does() {
    for scenario in scenarios::all() {
        let (trace, seen) = play(&scenario).await;
        assert_eq!(trace, Trace::expected(&scenario), "{}", scenario.name);
        // Every step is recorded exactly once.
        let mut ended = seen.ended.clone();
        ended.sort();
        let mut steps: Vec<String> = scenario.steps.iter().map(|s| s.0.to_string()).collect();
        steps.sort();
        assert_eq!(ended, steps, "{}", scenario.name);
    }
}

#[tokio::test(start_paused = true)]
async fn a_retry_is_announced_with_the_backoff_it_waits() {
    let scenario = scenarios::all()
        .into_iter()
        .find(|s| s.name.contains("retried after its backoff"))
        .expect("the retry scenario");
    let (_, seen) = play(&scenario).await;
    assert_eq!(
        seen.retried,
        [
            ("flaky".to_string(), 1, Duration::from_secs(10)),
            ("flaky".to_string(), 2, Duration::from_secs(30)),
        ]
    );
}

#[tokio::test(start_paused = true)]
async fn a_cancelled_run_starts_nothing_new_and_waits_for_running_steps() {
    let scenario = scenarios::all()
        .into_iter()
        .find(|s| s.name.contains("as soon as"))
        .expect("the dependency scenario");
    let plan = scenario.plan().expect("compiles");
    let cancel = CancellationToken::new();
    let started = RefCell::new(Vec::new());
    let mut seen = Seen::default();
    let driven = drive(
        &plan,
        &scenario.policy(),
        &BTreeSet::new(),
        &cancel,
        |step, attempt| {
            started.borrow_mut().push(step.clone());
            let cancel = cancel.clone();
            async move {
                // The first step cancels the run; every running step stops as cancelled.
                if step == "a" {
                    tokio::time::sleep(Duration::from_millis(500)).await;
                    cancel.cancel();
                }
                cancel.cancelled().await;
                let mut s = StepSummary::ended(
                    &step,
                    StepPhase::Cancelled,
                    "cancelled".into(),
                    CounterSnapshot::default(),
                );
                s.attempt = attempt;
                s
            }
        },
        &mut seen,
    )
    .await;
    assert_eq!(started.into_inner(), ["a", "slow"]);
    assert_eq!(driven.phase, synqx_api::run::RunPhase::Cancelled);
    let phases: Vec<(&str, StepPhase)> = driven
        .steps
        .iter()
        .map(|s| (s.name.as_str(), s.status))
        .collect();
    assert_eq!(
        phases,
        [
            ("a", StepPhase::Cancelled),
            ("slow", StepPhase::Cancelled),
            ("b", StepPhase::Skipped),
            ("c", StepPhase::Skipped),
            ("d", StepPhase::Skipped),
        ]
    );
}
