use super::*;
use crate::pipeline::Backoff;
use crate::validate::{InputFile, validate};

/// a -> (b, c) -> d, and e on its own.
fn plan() -> Plan {
    let yaml = r#"
apiVersion: synqx.io/v1alpha1
kind: Connection
metadata: {name: db}
spec: {sqlite: {path: /tmp/db.sqlite}}
---
apiVersion: synqx.io/v1alpha1
kind: Pipeline
metadata: {name: p}
spec:
  steps:
    - {name: a, sql: {connection: db, statements: ["select 1"]}}
    - {name: b, dependsOn: [a], sql: {connection: db, statements: ["select 1"]}}
    - {name: c, dependsOn: [a], sql: {connection: db, statements: ["select 1"]}}
    - {name: d, dependsOn: [b, c], sql: {connection: db, statements: ["select 1"]}}
    - {name: e, sql: {connection: db, statements: ["select 1"]}}
"#;
    let report = validate(&[InputFile {
        name: "p.yaml",
        text: yaml,
    }]);
    assert!(report.is_valid(), "{:?}", report.problems);
    report.plans["p"].clone()
}

fn at(seconds: i64) -> DateTime<Utc> {
    DateTime::from_timestamp(1_800_000_000 + seconds, 0).unwrap_or_default()
}

struct Case {
    jobs: BTreeMap<String, BTreeMap<u32, AttemptState>>,
    resumed: BTreeSet<String>,
    on_failure: OnFailure,
    retry: Option<RetryPolicy>,
    parallelism: Option<u32>,
    cancel: bool,
    now: DateTime<Utc>,
}

impl Case {
    fn new() -> Self {
        Self {
            jobs: BTreeMap::new(),
            resumed: BTreeSet::new(),
            on_failure: OnFailure::Stop,
            retry: None,
            parallelism: None,
            cancel: false,
            now: at(0),
        }
    }

    fn job(mut self, step: &str, attempt: u32, state: AttemptState) -> Self {
        self.jobs
            .entry(step.into())
            .or_default()
            .insert(attempt, state);
        self
    }

    fn decide(&self) -> Decision {
        let plan = plan();
        let policy = RunPolicy {
            on_failure: self.on_failure,
            parallelism: self.parallelism,
            retry: self.retry.clone(),
        };
        decide(&RunFacts {
            plan: &plan,
            attempts: &self.jobs,
            resumed: &self.resumed,
            policy: &policy,
            cancel: self.cancel,
            now: self.now,
        })
    }
}

fn ok(at_s: i64) -> AttemptState {
    AttemptState::Succeeded {
        finished: at(at_s),
        note: None,
    }
}

fn failed(at_s: i64) -> AttemptState {
    AttemptState::Failed {
        finished: at(at_s),
        reason: "exit code 1".into(),
    }
}

fn phase(d: &Decision, step: &str) -> StepPhase {
    d.steps[step].phase
}

fn starts(d: &Decision) -> Vec<(&str, u32)> {
    d.start.iter().map(|(s, a)| (s.as_str(), *a)).collect()
}

#[test]
fn the_first_layer_starts_then_each_step_after_its_upstream() {
    let d = Case::new().decide();
    assert_eq!(starts(&d), [("a", 1), ("e", 1)]);
    assert_eq!(d.phase, RunPhase::Running);

    let d = Case::new()
        .job("a", 1, ok(1))
        .job("e", 1, AttemptState::Active)
        .decide();
    assert_eq!(starts(&d), [("b", 1), ("c", 1)]);

    // d waits for both b and c.
    let d = Case::new()
        .job("a", 1, ok(1))
        .job("e", 1, ok(1))
        .job("b", 1, ok(2))
        .job("c", 1, AttemptState::Active)
        .decide();
    assert!(starts(&d).is_empty());
    assert_eq!(phase(&d, "d"), StepPhase::Pending);

    let all = ["a", "b", "c", "d", "e"]
        .iter()
        .fold(Case::new(), |c, s| c.job(s, 1, ok(3)));
    let d = all.decide();
    assert_eq!(d.phase, RunPhase::Succeeded);
    assert!(d.start.is_empty());
}

#[test]
fn parallelism_caps_how_many_jobs_run_at_once() {
    let mut case = Case::new().job("a", 1, ok(1));
    case.parallelism = Some(2);
    // Plan order: layer by layer, then by name.
    assert_eq!(starts(&case.decide()), [("e", 1), ("b", 1)]);
    let case = {
        let mut c = Case::new()
            .job("a", 1, ok(1))
            .job("e", 1, AttemptState::Active);
        c.parallelism = Some(2);
        c
    };
    assert_eq!(starts(&case.decide()), [("b", 1)]);
}

#[test]
fn a_failed_attempt_is_retried_after_its_backoff() {
    let mut case = Case::new().job("a", 1, failed(0));
    case.retry = Some(RetryPolicy {
        limit: 2,
        backoff: Some(Backoff {
            initial: Some("10s".into()),
            factor: Some(3.0),
            max: Some("1m".into()),
        }),
    });
    case.now = at(4);
    let d = case.decide();
    assert_eq!(phase(&d, "a"), StepPhase::Retrying);
    assert!(d.start.iter().all(|(s, _)| s != "a"));
    assert_eq!(d.wake_in, Some(Duration::from_secs(6)));
    assert_eq!(d.phase, RunPhase::Running);

    case.now = at(10);
    assert!(starts(&case.decide()).contains(&("a", 2)));

    // The second retry waits 10s × 3.
    let mut case = case.job("a", 2, failed(20));
    case.now = at(49);
    assert_eq!(case.decide().wake_in, Some(Duration::from_secs(1)));
    case.now = at(50);
    assert!(starts(&case.decide()).contains(&("a", 3)));

    // The limit reached, the step fails and so does the run.
    let mut case = case.job("a", 3, failed(60));
    case.now = at(1000);
    let d = case.decide();
    assert_eq!(phase(&d, "a"), StepPhase::Failed);
    assert_eq!(d.steps["a"].attempt, 3);
}

#[test]
fn a_backoff_past_the_end_of_the_calendar_waits_instead_of_panicking() {
    // An object written before validation bounded these (or a file given to `synqx run`).
    for initial in ["100000000d", "999999999999999d"] {
        let mut case = Case::new().job("a", 1, failed(0));
        case.retry = Some(RetryPolicy {
            limit: u32::MAX,
            backoff: Some(Backoff {
                initial: Some(initial.into()),
                factor: Some(f64::MAX),
                max: Some(initial.into()),
            }),
        });
        case.now = at(4);
        let d = case.decide();
        assert_eq!(phase(&d, "a"), StepPhase::Retrying, "{initial}");
        assert!(d.wake_in.is_some(), "{initial}");
    }
}

#[test]
fn stop_starts_nothing_new_and_lets_running_steps_finish() {
    let d = Case::new()
        .job("a", 1, failed(1))
        .job("e", 1, AttemptState::Active)
        .decide();
    assert_eq!(phase(&d, "a"), StepPhase::Failed);
    assert_eq!(phase(&d, "e"), StepPhase::Running);
    assert_eq!(phase(&d, "b"), StepPhase::Skipped);
    assert!(d.start.is_empty() && d.stop.is_empty());
    assert_eq!(d.phase, RunPhase::Running, "e still runs");

    let d = Case::new()
        .job("a", 1, failed(1))
        .job("e", 1, ok(2))
        .decide();
    assert_eq!(d.phase, RunPhase::Failed);
}

#[test]
fn continue_finishes_every_branch_that_does_not_depend_on_the_failure() {
    let mut case = Case::new().job("a", 1, ok(1)).job("b", 1, failed(2));
    case.on_failure = OnFailure::Continue;
    let d = case.decide();
    assert_eq!(starts(&d), [("e", 1), ("c", 1)]);
    assert_eq!(phase(&d, "d"), StepPhase::Skipped);
    assert!(
        d.steps["d"]
            .message
            .as_deref()
            .is_some_and(|m| m.contains("\"b\""))
    );

    let mut case = case.job("c", 1, ok(3)).job("e", 1, ok(3));
    case.on_failure = OnFailure::Continue;
    assert_eq!(case.decide().phase, RunPhase::Failed);
}

#[test]
fn cancel_stops_active_jobs_and_ends_the_run() {
    let mut case = Case::new()
        .job("a", 1, ok(1))
        .job("b", 1, AttemptState::Active)
        .job("e", 1, AttemptState::Active);
    case.cancel = true;
    let d = case.decide();
    assert_eq!(d.stop, ["b", "e"]);
    assert!(d.start.is_empty());
    assert_eq!(phase(&d, "b"), StepPhase::Cancelled);
    assert_eq!(phase(&d, "c"), StepPhase::Skipped);
    assert_eq!(d.phase, RunPhase::Cancelled);
}

#[test]
fn resume_from_skips_what_succeeded_and_runs_the_rest() {
    let mut case = Case::new();
    case.resumed = ["a", "b", "e"].iter().map(|s| s.to_string()).collect();
    let d = case.decide();
    assert_eq!(starts(&d), [("c", 1)]);
    assert_eq!(phase(&d, "a"), StepPhase::Skipped);

    let mut case = case.job("c", 1, ok(1)).job("d", 1, ok(2));
    case.resumed = ["a", "b", "e"].iter().map(|s| s.to_string()).collect();
    assert_eq!(case.decide().phase, RunPhase::Succeeded);
}

#[test]
fn a_steps_own_retry_policy_replaces_the_pipelines() {
    let mut case = Case::new().job("a", 1, failed(0));
    case.retry = Some(RetryPolicy {
        limit: 0,
        backoff: None,
    });
    // The pipeline allows no retry: a fails at once.
    assert_eq!(phase(&case.decide(), "a"), StepPhase::Failed);
    let mut plan = plan();
    if let Some(step) = plan.steps.iter_mut().find(|s| s.step.name == "a") {
        step.step.retry = Some(RetryPolicy {
            limit: 1,
            backoff: None,
        });
    }
    let policy = RunPolicy {
        retry: case.retry.clone(),
        ..Default::default()
    };
    let d = decide(&RunFacts {
        plan: &plan,
        attempts: &case.jobs,
        resumed: &case.resumed,
        policy: &policy,
        cancel: false,
        now: at(10),
    });
    assert_eq!(phase(&d, "a"), StepPhase::Retrying);
    assert_eq!(starts(&d), [("a", 2), ("e", 1)]);
}

#[test]
fn a_cancelled_attempt_ends_its_step_cancelled_and_blocks_what_follows() {
    let mut case = Case::new().job("a", 1, AttemptState::Cancelled { finished: at(1) });
    case.on_failure = OnFailure::Continue;
    let d = case.decide();
    assert_eq!(phase(&d, "a"), StepPhase::Cancelled);
    assert_eq!(phase(&d, "b"), StepPhase::Skipped);
    assert_eq!(starts(&d), [("e", 1)]);
}

#[test]
fn progress_counts_steps_that_ended() {
    let d = Case::new()
        .job("a", 1, ok(1))
        .job("e", 1, failed(1))
        .decide();
    // a succeeded, e failed, b, c and d are skipped by Stop.
    assert_eq!(d.done(), 5);
    assert_eq!(d.failed(), ["e"]);
}

/// The shared scenarios, played by the scheduler alone with an ideal clock: the reference
/// the drivers of `synqx run` and the operator are held to in their own tests.
#[test]
fn every_shared_scenario_plays_out_as_expected() {
    for scenario in scenarios::all() {
        let trace = play(&scenario);
        assert_eq!(
            trace,
            scenarios::Trace::expected(&scenario),
            "{}",
            scenario.name
        );
    }
}

fn play(scenario: &scenarios::Scenario) -> scenarios::Trace {
    let plan = scenario.plan().expect("the scenario compiles");
    let policy = scenario.policy();
    let resumed = BTreeSet::new();
    let mut attempts = Attempts::new();
    let mut ends: BTreeMap<(String, u32), u64> = BTreeMap::new();
    let mut trace = scenarios::Trace::default();
    let mut now = 0u64;
    for _ in 0..1000 {
        // Attempts due to end now end first.
        for ((step, attempt), end) in &ends {
            if *end == now {
                let (_, ok) = scenario.outcome(step, *attempt);
                let finished = at(now as i64);
                let state = if ok {
                    AttemptState::Succeeded {
                        finished,
                        note: None,
                    }
                } else {
                    AttemptState::Failed {
                        finished,
                        reason: scenarios::SCRIPTED_FAILURE.into(),
                    }
                };
                attempts
                    .entry(step.clone())
                    .or_default()
                    .insert(*attempt, state);
            }
        }
        let d = decide(&RunFacts {
            plan: &plan,
            attempts: &attempts,
            resumed: &resumed,
            policy: &policy,
            cancel: false,
            now: at(now as i64),
        });
        for (step, attempt) in &d.start {
            let (seconds, _) = scenario.outcome(step, *attempt);
            attempts
                .entry(step.clone())
                .or_default()
                .insert(*attempt, AttemptState::Active);
            ends.insert((step.clone(), *attempt), now + seconds);
            trace.starts.push((step.clone(), *attempt, now));
        }
        if d.phase.is_finished() {
            trace.ends = d
                .steps
                .iter()
                .map(|(n, s)| (n.clone(), s.phase, s.attempt))
                .collect();
            trace.phase = d.phase;
            trace.sort();
            return trace;
        }
        now = scenarios::next_moment(now, ends.values().copied(), d.wake_in)
            .unwrap_or_else(|| panic!("{}: stuck at {now}s: {d:?}", scenario.name));
    }
    panic!("{}: did not finish", scenario.name)
}
