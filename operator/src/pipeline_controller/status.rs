//! The Pipeline's status as the Pipeline controller owns it, built by a pure function: the
//! conditions, the compiled plan's revision and shape, the last run and the schedule's
//! times. The watermarks are not the controller's: each is committed by the run of its step.

use chrono::{DateTime, Utc};
use kube::ResourceExt;
use synqx_api::condition::Condition;
use synqx_api::dag::Plan;
use synqx_api::pipeline::{PipelineStatus, PlanSummary, RunReference};
use synqx_api::run_record::trusted_phase;
use synqx_api::{Connection, Pipeline, PipelineRun};

use crate::condition::{ConditionType, Reason, condition, find};
use crate::context::rfc3339;

/// What compiling the Pipeline gave.
pub enum Compiled<'a> {
    Valid {
        plan: &'a Plan,
        /// The ControllerRevision that holds the plan.
        revision: &'a str,
    },
    Invalid {
        message: &'a str,
    },
}

/// What the Pipeline's status is built from.
pub struct PipelineInputs<'a> {
    pub pipeline: &'a Pipeline,
    pub compiled: Compiled<'a>,
    pub connections: &'a [Connection],
    /// The Pipeline's runs (after history clean-up).
    pub runs: &'a [PipelineRun],
    /// The fire time the schedule handled in this pass, if any.
    pub scheduled: Option<DateTime<Utc>>,
    /// When the schedule fires next.
    pub next_schedule: Option<DateTime<Utc>>,
    pub now: DateTime<Utc>,
}

/// `Ready` with the plan's shape, or `Invalid` with the problems.
pub fn ready_message(plan: &Plan) -> String {
    format!(
        "{} steps in {} layers; plan {}",
        plan.steps.len(),
        plan.layers.len(),
        &plan.hash[..12.min(plan.hash.len())]
    )
}

pub fn pipeline_status(i: &PipelineInputs<'_>) -> PipelineStatus {
    let previous = i.pipeline.status.clone().unwrap_or_default();
    let generation = i.pipeline.metadata.generation;
    let now = rfc3339(i.now);
    match i.compiled {
        Compiled::Invalid { message } => PipelineStatus {
            conditions: vec![condition(
                &previous.conditions,
                ConditionType::Ready,
                false,
                Reason::Invalid,
                message,
                generation,
                &now,
            )],
            observed_generation: generation,
            // The last good plan stays visible; runs pin nothing while Ready is False.
            revision: previous.revision,
            plan_hash: previous.plan_hash,
            summary: previous.summary,
            layers: previous.layers,
            last_run: previous.last_run,
            next_schedule_time: previous.next_schedule_time,
            last_schedule_time: previous.last_schedule_time,
            watermarks: Default::default(),
        },
        Compiled::Valid { plan, revision } => {
            let count = |n: usize| u32::try_from(n).unwrap_or(u32::MAX);
            PipelineStatus {
                conditions: vec![
                    condition(
                        &previous.conditions,
                        ConditionType::Ready,
                        true,
                        Reason::Compiled,
                        &ready_message(plan),
                        generation,
                        &now,
                    ),
                    connections_ready(i, &previous.conditions, &now),
                ],
                observed_generation: generation,
                revision: Some(revision.to_string()),
                plan_hash: Some(plan.hash.clone()),
                summary: Some(PlanSummary {
                    steps: count(plan.steps.len()),
                    edges: count(plan.edges.len()),
                    layers: count(plan.layers.len()),
                    critical_path: count(plan.critical_path.len()),
                }),
                layers: plan.layers.clone(),
                last_run: last_run(i.runs),
                next_schedule_time: i.next_schedule.map(rfc3339),
                last_schedule_time: i.scheduled.map(rfc3339).or(previous.last_schedule_time),
                watermarks: Default::default(),
            }
        }
    }
}

/// The status as this controller last wrote it: without the watermarks, which are not its.
pub fn owned(status: &PipelineStatus) -> PipelineStatus {
    PipelineStatus {
        watermarks: Default::default(),
        ..status.clone()
    }
}

/// The newest run, with its phase when last seen (an end only as the operator's record has
/// it).
fn last_run(runs: &[PipelineRun]) -> Option<RunReference> {
    runs.iter()
        .max_by_key(|r| r.metadata.creation_timestamp.as_ref().map(|t| t.0))
        .map(|r| RunReference {
            name: r.name_any(),
            phase: trusted_phase(r),
            start_time: r.status.as_ref().and_then(|s| s.start_time.clone()),
        })
}

/// `ConnectionsReady`: whether every Connection the steps use passed its last check.
fn connections_ready(i: &PipelineInputs<'_>, existing: &[Condition], now: &str) -> Condition {
    let used = i.pipeline.spec.connections();
    let not_ready: Vec<String> = i
        .connections
        .iter()
        .filter(|c| used.contains(c.name_any().as_str()))
        .filter_map(|c| {
            let conditions = c.status.as_ref().map(|s| s.conditions.as_slice());
            match conditions.and_then(|cs| find(cs, ConditionType::Ready)) {
                Some(r) if r.status == "True" => None,
                Some(r) => Some(format!("{} ({}: {})", c.name_any(), r.reason, r.message)),
                None => Some(format!("{} (not checked yet)", c.name_any())),
            }
        })
        .collect();
    let generation = i.pipeline.metadata.generation;
    let kind = ConditionType::ConnectionsReady;
    if not_ready.is_empty() {
        let message = "every Connection passed its check";
        condition(
            existing,
            kind,
            true,
            Reason::ConnectionsReady,
            message,
            generation,
            now,
        )
    } else {
        let message = not_ready.join("; ");
        condition(
            existing,
            kind,
            false,
            Reason::ConnectionsNotReady,
            &message,
            generation,
            now,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use synqx_api::pipeline::Watermark;
    use synqx_api::run::{PipelineRunStatus, RunPhase};

    fn pipeline() -> Pipeline {
        let spec = serde_yaml::from_str(
            "steps:\n- {name: a, sql: {connection: db, statements: [\"select 1\"]}}\n",
        )
        .expect("spec");
        let mut p = Pipeline::new("p", spec);
        p.metadata.generation = Some(4);
        p
    }

    fn now() -> DateTime<Utc> {
        DateTime::from_timestamp(1_800_000_000, 0).unwrap_or_default()
    }

    fn run(name: &str, created: i64, phase: RunPhase) -> PipelineRun {
        let mut run = PipelineRun::new(name, Default::default());
        run.metadata.creation_timestamp =
            Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(
                k8s_openapi::jiff::Timestamp::from_second(created).unwrap_or_default(),
            ));
        run.status = Some(PipelineRunStatus {
            phase: Some(phase),
            ..Default::default()
        });
        run
    }

    #[test]
    fn a_compiled_pipeline_reports_its_plan_its_last_run_and_not_its_watermarks() {
        let mut p = pipeline();
        let mut previous = PipelineStatus::default();
        previous.watermarks.insert(
            "a".into(),
            Watermark {
                value: "9".into(),
                ..Default::default()
            },
        );
        p.status = Some(previous);
        let plan = synqx_api::dag::compile(&p.spec, &Default::default()).expect("plan");
        let runs = [
            run("p-1", 100, RunPhase::Succeeded),
            run("p-2", 200, RunPhase::Running),
        ];
        let decide = |p: &Pipeline, at: DateTime<Utc>| {
            pipeline_status(&PipelineInputs {
                pipeline: p,
                compiled: Compiled::Valid {
                    plan: &plan,
                    revision: "p-abc",
                },
                connections: &[],
                runs: &runs,
                scheduled: None,
                next_schedule: Some(now()),
                now: at,
            })
        };
        let status = decide(&p, now());
        assert_eq!(status.revision.as_deref(), Some("p-abc"));
        assert_eq!(status.observed_generation, Some(4));
        assert_eq!(status.summary.as_ref().map(|s| s.steps), Some(1));
        let last = status.last_run.clone().expect("last run");
        assert_eq!(
            (last.name.as_str(), last.phase),
            ("p-2", Some(synqx_api::run::RunPhase::Running))
        );
        assert_eq!(
            status.next_schedule_time.as_deref(),
            Some("2027-01-15T08:00:00Z")
        );
        assert!(
            status.watermarks.is_empty(),
            "watermarks are committed by runs"
        );
        let ready = find(&status.conditions, ConditionType::Ready).expect("Ready");
        assert_eq!(
            (ready.status.as_str(), ready.reason.as_str()),
            ("True", "Compiled")
        );
        let connections = find(&status.conditions, ConditionType::ConnectionsReady).expect("c");
        assert_eq!(connections.status, "True");

        // Applied, then decided again with nothing new: the same status, nothing to write.
        p.status = Some(status.clone());
        let again = decide(&p, now() + chrono::Duration::seconds(30));
        assert_eq!(again, owned(&status));
    }

    #[test]
    fn connections_that_failed_or_were_never_checked_are_named() {
        let p = pipeline();
        let plan = synqx_api::dag::compile(&p.spec, &Default::default()).expect("plan");
        let db: Connection = serde_yaml::from_str(
            "apiVersion: synqx.io/v1alpha1\nkind: Connection\nmetadata: {name: db}\nspec: {sqlite: {path: /x}}\n",
        )
        .expect("connection");
        let status = pipeline_status(&PipelineInputs {
            pipeline: &p,
            compiled: Compiled::Valid {
                plan: &plan,
                revision: "p-abc",
            },
            connections: &[db],
            runs: &[],
            scheduled: None,
            next_schedule: None,
            now: now(),
        });
        let c = find(&status.conditions, ConditionType::ConnectionsReady).expect("condition");
        assert_eq!(
            (c.status.as_str(), c.reason.as_str(), c.message.as_str()),
            ("False", "NotReady", "db (not checked yet)")
        );
    }

    #[test]
    fn an_invalid_pipeline_keeps_its_last_good_plan_in_view() {
        let mut p = pipeline();
        p.status = Some(PipelineStatus {
            revision: Some("p-old".into()),
            layers: vec![vec!["a".into()]],
            ..Default::default()
        });
        let status = pipeline_status(&PipelineInputs {
            pipeline: &p,
            compiled: Compiled::Invalid {
                message: "Pipeline/p: step \"a\": boom",
            },
            connections: &[],
            runs: &[],
            scheduled: None,
            next_schedule: None,
            now: now(),
        });
        assert_eq!(status.revision.as_deref(), Some("p-old"));
        assert_eq!(status.conditions.len(), 1);
        assert_eq!(status.conditions[0].reason, "Invalid");
        assert_eq!(status.conditions[0].message, "Pipeline/p: step \"a\": boom");
    }
}
