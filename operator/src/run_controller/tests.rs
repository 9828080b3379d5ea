//! The run controller's decisions without a cluster: the scheduler's shared scenarios played
//! through the operator's own decision code — Jobs it would create, read back by
//! [`job_states`], decided on, turned into status — against the expectations `synqx run` is
//! held to as well; and the status builders.

use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, Utc};
use k8s_openapi::api::batch::v1::{Job, JobCondition, JobStatus};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::api::ObjectMeta;
use synqx_api::Pipeline;
use synqx_api::run::{PipelineRunStatus, RunPhase, StepPhase, StepReport};
use synqx_api::scheduler::scenarios::{self, SCRIPTED_FAILURE, Scenario, Trace};

use super::observe::{Observation, job_states, parse_report};
use super::status::{Created, RunInputs, ended_status, run_status, transitions, waiting_status};
use super::*;
use crate::condition::Reason;
use crate::job::{LABEL_ATTEMPT, LABEL_STEP};
use crate::names;

fn at(seconds: u64) -> DateTime<Utc> {
    let seconds = i64::try_from(seconds).unwrap_or(i64::MAX);
    DateTime::from_timestamp(1_800_000_000 + seconds, 0).unwrap_or_default()
}

fn time(t: DateTime<Utc>) -> Time {
    Time(k8s_openapi::jiff::Timestamp::from_second(t.timestamp()).unwrap_or_default())
}

/// A step Job as the operator creates it, created at `start`.
fn job(run: &str, step: &str, attempt: u32, start: u64) -> Job {
    Job {
        metadata: ObjectMeta {
            name: Some(names::job_name(run, "uid", step, attempt)),
            labels: Some(
                [
                    (LABEL_STEP.to_string(), step.to_string()),
                    (LABEL_ATTEMPT.to_string(), attempt.to_string()),
                ]
                .into(),
            ),
            creation_timestamp: Some(time(at(start))),
            ..Default::default()
        },
        ..Default::default()
    }
}

/// The Job controller's verdict on a Job at `end`.
fn end(job: &mut Job, ok: bool, end: u64) {
    job.status = Some(JobStatus {
        conditions: Some(vec![JobCondition {
            type_: if ok { "Complete" } else { "Failed" }.into(),
            status: "True".into(),
            reason: (!ok).then(|| "BackoffLimitExceeded".into()),
            last_transition_time: Some(time(at(end))),
            ..Default::default()
        }]),
        ..Default::default()
    });
}

/// Plays a scenario as the cluster would: the controller decides, its Jobs run for the
/// scripted time, the Job controller marks them ended, the pods leave their reports.
fn play(scenario: &Scenario) -> Trace {
    let plan = scenario.plan().expect("the scenario compiles");
    let pipeline = Pipeline::new("scenario", scenario.spec());
    let mut jobs: Vec<(Job, u64, bool)> = Vec::new();
    let mut status = PipelineRunStatus::default();
    let mut trace = Trace::default();
    let mut now = 0;
    for _ in 0..1000 {
        let mut reports = BTreeMap::new();
        for (job, ends, ok) in &mut jobs {
            if *ends == now {
                end(job, *ok, now);
                let (step, attempt) = (
                    job.labels()[LABEL_STEP].clone(),
                    job.labels()[LABEL_ATTEMPT].parse().unwrap_or(0),
                );
                let message = if *ok {
                    String::new()
                } else {
                    format!(
                        r#"{{"step":"{step}","phase":"Failed","message":"{SCRIPTED_FAILURE}"}}"#
                    )
                };
                reports.insert((step, attempt), parse_report(i32::from(!*ok), &message));
            }
        }
        let listed: Vec<Job> = jobs.iter().map(|(j, _, _)| j.clone()).collect();
        let observation = Observation {
            pipeline: pipeline.clone().into(),
            revision: "scenario-1".into(),
            plan: plan.clone().into(),
            jobs: job_states(&listed, reports, &status, at(now)),
            resumed: BTreeSet::new(),
        };
        let decision = decide(&observation, false, at(now), usize::MAX);
        let mut created = Created::new();
        for (step, attempt) in &decision.start {
            let (seconds, ok) = scenario.outcome(step, *attempt);
            let job = job("run", step, *attempt, now);
            created.insert(step.clone(), (*attempt, job.name_any()));
            jobs.push((job, now + seconds, ok));
            trace.starts.push((step.clone(), *attempt, now));
        }
        status = run_status(&RunInputs {
            previous: &status,
            plan: &plan,
            decision: &decision,
            jobs: &observation.jobs,
            created: &created,
            revision: &observation.revision,
            now: at(now),
        });
        if decision.phase.is_finished() {
            trace.ends = status
                .steps
                .iter()
                .map(|s| {
                    (
                        s.name.clone(),
                        s.phase.unwrap_or_default(),
                        s.attempt.unwrap_or(0),
                    )
                })
                .collect();
            trace.phase = decision.phase;
            trace.sort();
            return trace;
        }
        now = scenarios::next_moment(now, jobs.iter().map(|(_, e, _)| *e), decision.wake_in)
            .unwrap_or_else(|| panic!("{}: stuck at {now}s: {decision:?}", scenario.name));
    }
    panic!("{}: did not finish", scenario.name)
}

#[test]
fn the_operator_plays_every_shared_scenario_as_synqx_run_does() {
    for scenario in scenarios::all() {
        assert_eq!(
            play(&scenario),
            Trace::expected(&scenario),
            "{}",
            scenario.name
        );
    }
}

#[test]
fn a_failed_attempt_reads_its_reason_from_the_report_then_from_the_status() {
    let mut failed = job("r", "load", 1, 0);
    end(&mut failed, false, 5);
    let report = StepReport {
        step: "load".into(),
        phase: StepPhase::Failed,
        message: Some("table orders does not exist".into()),
        ..Default::default()
    };
    let reports = [(("load".to_string(), 1), report)].into();
    let states = job_states(
        std::slice::from_ref(&failed),
        reports,
        &PipelineRunStatus::default(),
        at(9),
    );
    assert_eq!(
        states.attempts["load"][&1],
        synqx_api::scheduler::AttemptState::Failed {
            finished: at(5),
            reason: "table orders does not exist".into()
        }
    );
    // Once the status shows the attempt, its pod (and report) may be gone.
    let recorded = PipelineRunStatus {
        steps: vec![synqx_api::run::StepStatus {
            name: "load".into(),
            phase: Some(StepPhase::Retrying),
            attempt: Some(1),
            message: Some("attempt 1 of 2 failed: table orders does not exist".into()),
            ..Default::default()
        }],
        ..Default::default()
    };
    let states = job_states(&[failed.clone()], BTreeMap::new(), &recorded, at(9));
    assert!(matches!(
        &states.attempts["load"][&1],
        synqx_api::scheduler::AttemptState::Failed { reason, .. } if reason == "table orders does not exist"
    ));
    // Neither: the Job's own condition says why.
    let states = job_states(
        &[failed],
        BTreeMap::new(),
        &PipelineRunStatus::default(),
        at(9),
    );
    assert!(matches!(
        &states.attempts["load"][&1],
        synqx_api::scheduler::AttemptState::Failed { reason, .. } if reason.starts_with("BackoffLimitExceeded")
    ));
}

#[test]
fn a_termination_message_that_is_no_report_becomes_the_reason() {
    let report = parse_report(137, "killed");
    assert_eq!(report.phase, StepPhase::Failed);
    assert_eq!(report.message.as_deref(), Some("exit code 137: killed"));
    assert_eq!(parse_report(0, "").phase, StepPhase::Succeeded);
}

#[test]
fn the_run_status_holds_only_the_fields_the_controller_owns() {
    let scenario = &scenarios::all()[0];
    let plan = scenario.plan().expect("compiles");
    let mut a = job("run", "a", 1, 0);
    end(&mut a, true, 1);
    let slow = job("run", "slow", 1, 0);
    let jobs = job_states(
        &[a, slow],
        BTreeMap::new(),
        &PipelineRunStatus::default(),
        at(1),
    );
    let observation = Observation {
        pipeline: Pipeline::new("p", scenario.spec()).into(),
        revision: "p-1".into(),
        plan: plan.clone().into(),
        jobs,
        resumed: BTreeSet::new(),
    };
    let decision = decide(&observation, false, at(1), 1);
    // Room for one Job: b starts, c waits.
    assert_eq!(decision.start, [("b".to_string(), 1)]);
    let created: Created = [("b".to_string(), (1, "run-b-1".to_string()))].into();
    let status = run_status(&RunInputs {
        previous: &PipelineRunStatus::default(),
        plan: &plan,
        decision: &decision,
        jobs: &observation.jobs,
        created: &created,
        revision: "p-1",
        now: at(1),
    });
    assert_eq!(status.phase, Some(RunPhase::Running));
    assert_eq!(status.progress.as_deref(), Some("1/5"));
    let json = serde_json::to_value(&status).unwrap_or_default();
    let steps = json["steps"].as_array().cloned().unwrap_or_default();
    let b = steps
        .iter()
        .find(|s| s["name"] == "b")
        .cloned()
        .unwrap_or_default();
    assert_eq!(b["phase"], "Running");
    assert_eq!(b["jobName"], "run-b-1");
    let c = steps
        .iter()
        .find(|s| s["name"] == "c")
        .cloned()
        .unwrap_or_default();
    assert_eq!(c["phase"], "Pending");
    for step in &steps {
        for field in [
            "rowsRead",
            "rowsWritten",
            "bytesRead",
            "bytesWritten",
            "watermark",
        ] {
            assert!(step.get(field).is_none(), "the runner owns {field}: {step}");
        }
    }
    // Every step moved from nothing: one transition each.
    assert_eq!(transitions(&PipelineRunStatus::default(), &status).len(), 5);
    assert!(transitions(&status, &status).is_empty());
}

#[test]
fn a_run_that_cannot_go_on_keeps_what_the_controller_wrote_before() {
    let before = PipelineRunStatus {
        phase: Some(RunPhase::Running),
        revision: Some("p-1".into()),
        start_time: Some("2027-01-15T08:00:00Z".into()),
        steps: vec![synqx_api::run::StepStatus {
            name: "load".into(),
            phase: Some(StepPhase::Running),
            attempt: Some(1),
            rows_read: Some(10),
            ..Default::default()
        }],
        ..Default::default()
    };
    let now = DateTime::parse_from_rfc3339("2027-01-15T08:01:30Z")
        .map(|t| t.with_timezone(&Utc))
        .unwrap_or_default();
    let ended = ended_status(
        &before,
        RunPhase::Failed,
        Reason::PipelineNotFound,
        "gone",
        now,
    );
    assert_eq!(ended.phase, Some(RunPhase::Failed));
    assert_eq!(ended.revision.as_deref(), Some("p-1"));
    assert_eq!(ended.duration.as_deref(), Some("1m30s"));
    assert_eq!(ended.steps[0].attempt, Some(1));
    assert_eq!(ended.steps[0].rows_read, None, "counters are the runner's");
    let condition = &ended.conditions[0];
    assert_eq!(
        (
            condition.r#type.as_str(),
            condition.status.as_str(),
            condition.reason.as_str()
        ),
        ("Succeeded", "False", "PipelineNotFound")
    );

    let waiting = waiting_status(&PipelineRunStatus::default(), "not compiled yet", now);
    assert_eq!(waiting.phase, Some(RunPhase::Pending));
    assert_eq!(waiting.conditions[0].reason, "PipelineNotReady");
    assert!(waiting.revision.is_none() && waiting.steps.is_empty());
}
