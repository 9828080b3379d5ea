//! Scenarios every driver of the scheduler must play out the same way: `synqx run` with its
//! tasks and the operator with its Jobs each run them in their own tests, against the same
//! expected starts and outcomes, so a pipeline behaves the same on a laptop and on a cluster.
//!
//! Time is in whole seconds from the start of the run; each attempt runs for the seconds its
//! script says and then succeeds or fails.

use std::collections::BTreeMap;

use crate::dag::{DagError, Plan, compile};
use crate::pipeline::{Backoff, OnFailure, PipelineSpec, RetryPolicy, SqlStep, Step};
use crate::run::{RunPhase, StepPhase};

use super::RunPolicy;

/// A step of a scenario: name, upstream steps and retries `(limit, initial seconds, factor)`.
pub type ScenarioStep = (
    &'static str,
    &'static [&'static str],
    Option<(u32, u64, f64)>,
);

/// One scenario and what must come of it.
#[derive(Clone, Debug)]
pub struct Scenario {
    pub name: &'static str,
    pub steps: &'static [ScenarioStep],
    pub on_failure: OnFailure,
    pub parallelism: Option<u32>,
    /// `(step, attempt, seconds, succeeds)`; an attempt not listed runs 1 s and succeeds.
    pub script: &'static [(&'static str, u32, u64, bool)],
    /// Every attempt started, as `(step, attempt, second)`, ordered by second, then step.
    pub starts: &'static [(&'static str, u32, u64)],
    /// How each step ends, with its last attempt (0: never started).
    pub ends: &'static [(&'static str, StepPhase, u32)],
    pub phase: RunPhase,
}

/// The message of a scripted failure.
pub const SCRIPTED_FAILURE: &str = "scripted failure";

impl Scenario {
    /// The Pipeline's spec: `sql` steps on a Connection `db`.
    pub fn spec(&self) -> PipelineSpec {
        let steps = self
            .steps
            .iter()
            .map(|(name, upstream, retry)| Step {
                name: (*name).into(),
                depends_on: upstream.iter().map(|u| (*u).into()).collect(),
                retry: retry.map(|(limit, initial, factor)| RetryPolicy {
                    limit,
                    backoff: Some(Backoff {
                        initial: Some(format!("{initial}s")),
                        factor: Some(factor),
                        max: Some("1h".into()),
                    }),
                }),
                sql: Some(SqlStep {
                    connection: "db".into(),
                    statements: vec!["SELECT 1".into()],
                }),
                ..Default::default()
            })
            .collect();
        PipelineSpec {
            steps,
            on_failure: Some(self.on_failure),
            parallelism: self.parallelism,
            ..Default::default()
        }
    }

    pub fn plan(&self) -> Result<Plan, Vec<DagError>> {
        compile(&self.spec(), &BTreeMap::new())
    }

    pub fn policy(&self) -> RunPolicy {
        RunPolicy::of(&self.spec())
    }

    /// How long an attempt runs and whether it succeeds.
    pub fn outcome(&self, step: &str, attempt: u32) -> (u64, bool) {
        self.script
            .iter()
            .find(|(s, a, _, _)| *s == step && *a == attempt)
            .map_or((1, true), |(_, _, seconds, ok)| (*seconds, *ok))
    }
}

/// Every scenario.
pub fn all() -> Vec<Scenario> {
    use StepPhase::{Failed, Skipped, Succeeded};
    vec![
        Scenario {
            // A step starts when its own upstream steps succeeded, not when its layer ended.
            name: "each step starts as soon as its upstream steps succeeded",
            steps: &[
                ("a", &[], None),
                ("b", &["a"], None),
                ("c", &["a"], None),
                ("d", &["b", "c"], None),
                ("slow", &[], None),
            ],
            on_failure: OnFailure::Stop,
            parallelism: None,
            script: &[("b", 1, 2, true), ("slow", 1, 10, true)],
            starts: &[
                ("a", 1, 0),
                ("slow", 1, 0),
                ("b", 1, 1),
                ("c", 1, 1),
                ("d", 1, 3),
            ],
            ends: &[
                ("a", Succeeded, 1),
                ("b", Succeeded, 1),
                ("c", Succeeded, 1),
                ("d", Succeeded, 1),
                ("slow", Succeeded, 1),
            ],
            phase: RunPhase::Succeeded,
        },
        Scenario {
            name: "parallelism caps the steps running at once",
            steps: &[
                ("p1", &[], None),
                ("p2", &[], None),
                ("p3", &[], None),
                ("p4", &[], None),
                ("p5", &["p1"], None),
            ],
            on_failure: OnFailure::Stop,
            parallelism: Some(2),
            script: &[("p2", 1, 3, true)],
            starts: &[
                ("p1", 1, 0),
                ("p2", 1, 0),
                ("p3", 1, 1),
                ("p4", 1, 2),
                ("p5", 1, 3),
            ],
            ends: &[
                ("p1", Succeeded, 1),
                ("p2", Succeeded, 1),
                ("p3", Succeeded, 1),
                ("p4", Succeeded, 1),
                ("p5", Succeeded, 1),
            ],
            phase: RunPhase::Succeeded,
        },
        Scenario {
            // Backoff 10 s, then 10 s × 3.
            name: "a failed attempt is retried after its backoff",
            steps: &[
                ("flaky", &[], Some((2, 10, 3.0))),
                ("after", &["flaky"], None),
            ],
            on_failure: OnFailure::Stop,
            parallelism: None,
            script: &[("flaky", 1, 1, false), ("flaky", 2, 1, false)],
            starts: &[
                ("flaky", 1, 0),
                ("flaky", 2, 11),
                ("flaky", 3, 42),
                ("after", 1, 43),
            ],
            ends: &[("flaky", Succeeded, 3), ("after", Succeeded, 1)],
            phase: RunPhase::Succeeded,
        },
        Scenario {
            name: "Stop starts nothing new after a failure and lets running steps finish",
            steps: &[
                ("broken", &[], Some((1, 5, 2.0))),
                ("after-broken", &["broken"], None),
                ("long", &[], None),
                ("after-long", &["long"], None),
            ],
            on_failure: OnFailure::Stop,
            parallelism: None,
            script: &[
                ("broken", 1, 1, false),
                ("broken", 2, 1, false),
                ("long", 1, 10, true),
            ],
            starts: &[("broken", 1, 0), ("long", 1, 0), ("broken", 2, 6)],
            ends: &[
                ("broken", Failed, 2),
                ("after-broken", Skipped, 0),
                ("long", Succeeded, 1),
                ("after-long", Skipped, 0),
            ],
            phase: RunPhase::Failed,
        },
        Scenario {
            name: "Continue runs every step that does not depend on the failure",
            steps: &[
                ("broken", &[], Some((1, 5, 2.0))),
                ("after-broken", &["broken"], None),
                ("long", &[], None),
                ("after-long", &["long"], None),
            ],
            on_failure: OnFailure::Continue,
            parallelism: None,
            script: &[
                ("broken", 1, 1, false),
                ("broken", 2, 1, false),
                ("long", 1, 10, true),
            ],
            starts: &[
                ("broken", 1, 0),
                ("long", 1, 0),
                ("broken", 2, 6),
                ("after-long", 1, 10),
            ],
            ends: &[
                ("broken", Failed, 2),
                ("after-broken", Skipped, 0),
                ("long", Succeeded, 1),
                ("after-long", Succeeded, 1),
            ],
            phase: RunPhase::Failed,
        },
    ]
}

/// The next second at which something happens in a played scenario: the first attempt to end
/// after `now`, or the end of a backoff the decision waits for. `None`: nothing will.
pub fn next_moment(
    now: u64,
    ends: impl IntoIterator<Item = u64>,
    wake_in: Option<std::time::Duration>,
) -> Option<u64> {
    let next_end = ends.into_iter().filter(|e| *e > now).min();
    let wake = wake_in.map(|w| now.saturating_add(w.as_secs()));
    next_end.into_iter().chain(wake).min()
}

/// What a driver saw while playing a scenario, to compare with what it expects.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Trace {
    /// `(step, attempt, second)` of every attempt started, sorted.
    pub starts: Vec<(String, u32, u64)>,
    /// `(step, phase, last attempt)` of every step, by name.
    pub ends: Vec<(String, StepPhase, u32)>,
    pub phase: RunPhase,
}

impl Trace {
    /// The trace the scenario expects.
    pub fn expected(scenario: &Scenario) -> Self {
        let mut trace = Self {
            starts: scenario
                .starts
                .iter()
                .map(|(s, a, t)| (s.to_string(), *a, *t))
                .collect(),
            ends: scenario
                .ends
                .iter()
                .map(|(s, p, a)| (s.to_string(), *p, *a))
                .collect(),
            phase: scenario.phase,
        };
        trace.sort();
        trace
    }

    /// Orders starts by second then step, and ends by step, so drivers compare equal however
    /// they collected them.
    pub fn sort(&mut self) {
        self.starts
            .sort_by(|a, b| (a.2, &a.0, a.1).cmp(&(b.2, &b.0, b.1)));
        self.ends.sort_by(|a, b| a.0.cmp(&b.0));
    }
}
