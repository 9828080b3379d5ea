//! Observe: everything a decision about a run needs, read from the caches of the operator's
//! watches (never a list) — its Pipeline, the revision it pinned, its Jobs with the reports
//! their pods left, the run it resumes from, and the room `--max-concurrent-jobs` leaves. What the Jobs say is turned into
//! attempts by [`job_states`], a pure function the tests drive with Jobs they build.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use chrono::{DateTime, Utc};
use k8s_openapi::api::apps::v1::ControllerRevision;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::Pod;
use kube::{Api, ResourceExt};
use synqx_api::dag::Plan;
use synqx_api::run::{PipelineRunStatus, RunPhase, StepPhase, StepReport};
use synqx_api::run_record::RunRecord;
use synqx_api::scheduler::{AttemptState, Attempts};
use synqx_api::{Pipeline, PipelineRun};

use crate::caches::Caches;
use crate::condition::{ConditionType, Reason, find};
use crate::context::Operator;
use crate::error::{Error, Result};
use crate::job::{LABEL_ATTEMPT, LABEL_STEP, end_of, job_ended, owned_by};
use crate::{names, start_failure, termination};

/// What the API server says about a run.
pub enum Observed {
    /// The run cannot go on: it ends with this phase and reason.
    Ends {
        phase: RunPhase,
        reason: Reason,
        message: String,
    },
    /// The Pipeline is not Ready (or its status is older than its spec).
    Waits { message: String },
    /// Everything needed to decide.
    Ready(Box<Observation>),
}

pub struct Observation {
    pub pipeline: Arc<Pipeline>,
    pub revision: String,
    pub plan: Arc<Plan>,
    pub jobs: JobStates,
    pub resumed: BTreeSet<String>,
}

/// What the run's Jobs say.
#[derive(Debug, Default)]
pub struct JobStates {
    pub attempts: Attempts,
    pub names: BTreeMap<(String, u32), String>,
    pub started: BTreeMap<(String, u32), DateTime<Utc>>,
    pub finished: BTreeMap<(String, u32), DateTime<Utc>>,
    /// Final reports of attempts that ended, from their pods' termination messages.
    pub reports: BTreeMap<(String, u32), StepReport>,
}

impl JobStates {
    /// The Job of the latest attempt of `step`.
    pub fn latest_job(&self, step: &str) -> Option<&String> {
        let attempt = self.attempts.get(step)?.keys().next_back()?;
        self.names.get(&(step.to_string(), *attempt))
    }
}

/// Observes `run` as the operator's `record` of it says it went so far; the status is read
/// for nothing but the messages of attempts the record says ended.
pub async fn observe(run: &PipelineRun, ctx: &Operator, record: &RunRecord) -> Result<Observed> {
    let namespace = run.namespace().unwrap_or_default();
    let name = run.name_any();
    let status = run.status.clone().unwrap_or_default();
    let pipeline_name = &run.spec.pipeline_ref.name;
    let Some(pipeline) = pipeline_of(ctx, &namespace, pipeline_name).await? else {
        return Ok(Observed::Ends {
            phase: RunPhase::Failed,
            reason: Reason::PipelineNotFound,
            message: format!(
                "Pipeline \"{pipeline_name}\" does not exist in namespace {namespace}"
            ),
        });
    };
    // The revision is pinned once; a run never changes plan afterwards.
    let revision = match &record.revision {
        Some(revision) => revision.clone(),
        None if run.spec.cancel == Some(true) => {
            return Ok(Observed::Ends {
                phase: RunPhase::Cancelled,
                reason: Reason::Cancelled,
                message: "cancelled before it started".into(),
            });
        }
        None => match pinnable(&pipeline) {
            Pinnable::Revision(revision) => revision,
            Pinnable::NotReady(why) => {
                return Ok(Observed::Waits {
                    message: format!("Pipeline \"{pipeline_name}\" is not Ready: {why}"),
                });
            }
        },
    };
    let revisions: Api<ControllerRevision> = Api::namespaced(ctx.client.clone(), &namespace);
    let Some(plan) = ctx.plans.load(&revisions, &namespace, &revision).await? else {
        return Ok(Observed::Ends {
            phase: RunPhase::Failed,
            reason: Reason::RevisionMissing,
            message: format!("the pinned revision {revision} no longer exists"),
        });
    };
    // Only the Jobs this run controls: a Job labelled with the run's name by anyone else
    // (or left by a deleted run of the same name) says nothing about this run.
    let uid = run.metadata.uid.clone().unwrap_or_default();
    let jobs: Vec<Job> = ctx
        .caches
        .jobs_of(&namespace, &names::fit(&name))
        .iter()
        .filter(|job| owned_by(job, &uid))
        .map(|job| job.as_ref().clone())
        .collect();
    // A pod that cannot start (an image that cannot be pulled, a missing Secret) fails its
    // Job, so the attempt ends with the reason instead of hanging.
    let timeout = ctx.settings.pods.start_timeout;
    for job in jobs.iter().filter(|j| !job_ended(j)) {
        let pods: Vec<Pod> = ctx
            .caches
            .pods_of(&namespace, &job.name_any())
            .iter()
            .map(|pod| pod.as_ref().clone())
            .collect();
        if let Some(failure) = start_failure::inspect(&ctx.client, job, &pods, timeout).await? {
            start_failure::fail(&ctx.client, job, &failure).await?;
        }
    }
    let mut reports = BTreeMap::new();
    for job in jobs.iter().filter(|j| job_ended(j)) {
        if let Some(key) = attempt_of(job)
            && unread(record, &status, &key)
        {
            let report = report_of(ctx, &namespace, &job.name_any()).await?;
            if let Some(report) = report {
                reports.insert(key, report);
            }
        }
    }
    Ok(Observed::Ready(Box::new(Observation {
        jobs: job_states(&jobs, reports, &status, Utc::now()),
        resumed: resumed(ctx, run, &namespace).await?,
        pipeline,
        revision,
        plan,
    })))
}

/// The run's Pipeline from the cache; one that is not there yet (created a moment ago) is
/// asked for, since a run whose Pipeline is missing fails.
async fn pipeline_of(ctx: &Operator, namespace: &str, name: &str) -> Result<Option<Arc<Pipeline>>> {
    if let Some(pipeline) = Caches::get(&ctx.caches.pipelines, namespace, name) {
        return Ok(Some(pipeline));
    }
    let pipelines: Api<Pipeline> = Api::namespaced(ctx.client.clone(), namespace);
    Ok(pipelines.get_opt(name).await?.map(Arc::new))
}

/// The revision a new run pins: the Pipeline's current one, if it is Ready and its status
/// describes the spec as it is now (or a run started right after an edit would pin the plan
/// from before it).
fn pinnable(pipeline: &Pipeline) -> Pinnable {
    let status = pipeline.status.clone().unwrap_or_default();
    let ready = find(&status.conditions, ConditionType::Ready);
    let current = status.observed_generation == pipeline.metadata.generation;
    match (ready, status.revision) {
        (Some(c), Some(revision)) if c.status == "True" && current => Pinnable::Revision(revision),
        _ => Pinnable::NotReady(
            ready
                .map(|c| c.message.clone())
                .unwrap_or_else(|| "not compiled yet".into()),
        ),
    }
}

enum Pinnable {
    Revision(String),
    /// Why not.
    NotReady(String),
}

/// The step and attempt a Job runs, from its labels.
fn attempt_of(job: &Job) -> Option<(String, u32)> {
    let labels = job.labels();
    let step = labels.get(LABEL_STEP)?.clone();
    let attempt = labels.get(LABEL_ATTEMPT)?.parse().ok()?;
    Some((step, attempt))
}

/// Whether the operator's record already holds the outcome of this attempt (its report was
/// read once, its watermark committed; the pod may be gone by now).
fn recorded(record: &RunRecord, (step, attempt): &(String, u32)) -> bool {
    record.steps.get(step).is_some_and(|s| {
        s.attempt == *attempt
            && matches!(
                s.phase,
                StepPhase::Succeeded | StepPhase::Failed | StepPhase::Retrying
            )
    })
}

/// Whether the report of an attempt that ended is still to be read: the record does not
/// hold its outcome yet, or it failed and the status does not show its reason yet (the
/// record is written first).
fn unread(record: &RunRecord, status: &PipelineRunStatus, key: &(String, u32)) -> bool {
    let failed = record
        .steps
        .get(&key.0)
        .is_some_and(|s| matches!(s.phase, StepPhase::Failed | StepPhase::Retrying));
    !recorded(record, key) || (failed && shown_message(status, key).is_none())
}

/// The message the status shows for this attempt of a step: the reason of a failed attempt,
/// or the notes of a succeeded one, whose report was read before (the pod may be gone since). A status that lags behind the
/// record shows none yet, and the report is read again.
fn shown_message(status: &PipelineRunStatus, (step, attempt): &(String, u32)) -> Option<String> {
    status
        .steps
        .iter()
        .find(|s| &s.name == step && s.attempt == Some(*attempt))
        .and_then(|s| s.message.clone())
        .filter(|m| !m.is_empty())
}

/// The attempts the Jobs describe. `reports` holds the termination reports read for Jobs that
/// ended since the record last held them; a failed attempt's reason comes from its report,
/// else from the message the status shows for it (its pod may be gone), else from the Job's
/// condition.
pub fn job_states(
    jobs: &[Job],
    mut reports: BTreeMap<(String, u32), StepReport>,
    status: &PipelineRunStatus,
    now: DateTime<Utc>,
) -> JobStates {
    let mut states = JobStates::default();
    for job in jobs {
        let Some(key) = attempt_of(job) else {
            continue;
        };
        let state = match end_of(job) {
            None => AttemptState::Active,
            Some(c) => {
                let finished = c
                    .last_transition_time
                    .as_ref()
                    .and_then(|t| DateTime::from_timestamp(t.0.as_second(), 0))
                    .unwrap_or(now);
                states.finished.insert(key.clone(), finished);
                if c.type_ == "Complete" {
                    // The notes of the step, from its report, else as the status shows them
                    // (the report is read once, when the Job ends).
                    let note = reports
                        .get(&key)
                        .and_then(|r| r.message.clone())
                        .or_else(|| shown_message(status, &key));
                    AttemptState::Succeeded { finished, note }
                } else {
                    let report = reports.get(&key);
                    let reason = if let Some(message) = report.and_then(|r| r.message.clone()) {
                        message
                    } else if let Some(message) = shown_message(status, &key) {
                        message
                    } else {
                        start_failure::recorded(job).unwrap_or_else(|| {
                            format!(
                                "{}: {}",
                                c.reason.clone().unwrap_or_default(),
                                c.message.clone().unwrap_or_default()
                            )
                        })
                    };
                    AttemptState::Failed {
                        finished,
                        reason: strip_attempt_prefix(&reason),
                    }
                }
            }
        };
        if let Some(created) = &job.metadata.creation_timestamp {
            let at = DateTime::from_timestamp(created.0.as_second(), 0).unwrap_or(now);
            states.started.insert(key.clone(), at);
        }
        if let Some(report) = reports.remove(&key) {
            states.reports.insert(key.clone(), report);
        }
        states.names.insert(key.clone(), job.name_any());
        states
            .attempts
            .entry(key.0)
            .or_default()
            .insert(key.1, state);
    }
    states
}

/// A failed attempt's message as the status recorded it carries the scheduler's prefix
/// ("attempt 1 of 3 failed: "); the reason is kept only once.
fn strip_attempt_prefix(reason: &str) -> String {
    match reason
        .strip_prefix("attempt ")
        .and_then(|r| r.split_once(" failed: "))
    {
        Some((_, rest)) => rest.to_string(),
        None => reason.to_string(),
    }
}

/// The `StepReport` an attempt's pod left as its termination message, if any. A message that
/// is not a report (the runner died before writing one) becomes the reason of the outcome.
async fn report_of(ctx: &Operator, namespace: &str, job: &str) -> Result<Option<StepReport>> {
    let ended = termination::of_job(ctx, namespace, job).await?;
    Ok(ended.map(|t| parse_report(t.exit_code, &t.message)))
}

pub fn parse_report(code: i32, text: &str) -> StepReport {
    serde_json::from_str::<StepReport>(text).unwrap_or_else(|_| StepReport {
        phase: if code == 0 {
            StepPhase::Succeeded
        } else {
            StepPhase::Failed
        },
        message: Some(if text.is_empty() {
            format!("exit code {code}")
        } else {
            format!("exit code {code}: {text}")
        }),
        ..Default::default()
    })
}

/// Steps that succeeded in the run this one resumes from (or that it resumed itself), as the
/// operator's record of that run says: its status could say anything its step pods wrote.
async fn resumed(ctx: &Operator, run: &PipelineRun, namespace: &str) -> Result<BTreeSet<String>> {
    let Some(from) = &run.spec.resume_from else {
        return Ok(BTreeSet::new());
    };
    let earlier = match Caches::get(&ctx.caches.runs, namespace, from) {
        Some(earlier) => earlier,
        None => {
            let runs: Api<PipelineRun> = Api::namespaced(ctx.client.clone(), namespace);
            match runs.get_opt(from).await? {
                Some(earlier) => Arc::new(earlier),
                None => return Err(Error::ResumeFrom { run: from.clone() }),
            }
        }
    };
    let record = RunRecord::of(&earlier).unwrap_or_default();
    Ok(record.done_steps().map(str::to_string).collect())
}
