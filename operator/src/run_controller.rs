//! The PipelineRun controller: pins the Pipeline's current revision, reads the state of
//! every step from its Jobs, lets [`progress::decide`] choose what happens next, creates and
//! deletes Jobs accordingly, commits watermarks of steps that succeeded, and reports phase,
//! progress and per-step status with Events for every transition.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use k8s_openapi::api::apps::v1::ControllerRevision;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::runtime::controller::Action;
use kube::{Api, Resource, ResourceExt};
use serde_json::{Value, json};
use synqx_api::dag::Plan;
use synqx_api::run::{RunPhase, StepPhase, StepReport, StepStatus};
use synqx_api::{Pipeline, PipelineRun};

use crate::context::{self, Context, Error, Result, now_rfc3339, parse_time};
use crate::job::{LABEL_ATTEMPT, LABEL_RUN, LABEL_STEP, StepJob, is_finished};
use crate::pipeline_controller::condition;
use crate::progress::{self, JobState, RunFacts};
use crate::{names, revision, start_failure, watermark};

const CONTROLLER: &str = "pipelinerun";
pub const FIELD_MANAGER: &str = "synqx-operator";
/// How often a running run is looked at even without a Job event.
const RUNNING_RESYNC: Duration = Duration::from_secs(30);

pub async fn reconcile(run: Arc<PipelineRun>, ctx: Arc<Context>) -> Result<Action> {
    ctx.reconciled(CONTROLLER, reconcile_inner(&run, &ctx))
        .await
}

pub fn error_policy(run: Arc<PipelineRun>, error: &Error, ctx: Arc<Context>) -> Action {
    ctx.retry_after(CONTROLLER, &run.name_any(), error, Duration::from_secs(3))
}

/// One run as the controller works on it.
struct RunView<'a> {
    run: &'a PipelineRun,
    ctx: &'a Context,
    name: String,
    namespace: String,
    status: synqx_api::run::PipelineRunStatus,
    runs: Api<PipelineRun>,
}

async fn reconcile_inner(run: &PipelineRun, ctx: &Context) -> Result<Action> {
    let status = run.status.clone().unwrap_or_default();
    if status.phase.is_some_and(|p| p.is_finished()) {
        return Ok(Action::await_change());
    }
    let namespace = run.namespace().unwrap_or_default();
    let view = RunView {
        run,
        ctx,
        name: run.name_any(),
        runs: Api::namespaced(ctx.client.clone(), &namespace),
        namespace,
        status,
    };
    let pipelines: Api<Pipeline> = Api::namespaced(ctx.client.clone(), &view.namespace);
    let pipeline_name = run.spec.pipeline_ref.name.clone();
    let Some(pipeline) = pipelines.get_opt(&pipeline_name).await? else {
        let message = format!(
            "Pipeline \"{pipeline_name}\" does not exist in namespace {}",
            view.namespace
        );
        return view
            .end_early(RunPhase::Failed, "PipelineNotFound", &message)
            .await;
    };

    // Pin the revision once; a run never changes plan afterwards.
    let revision_name = match &view.status.revision {
        Some(name) => name.clone(),
        None => {
            if run.spec.cancel == Some(true) {
                return view
                    .end_early(
                        RunPhase::Cancelled,
                        "Cancelled",
                        "cancelled before it started",
                    )
                    .await;
            }
            let pipeline_status = pipeline.status.clone().unwrap_or_default();
            let ready = pipeline_status
                .conditions
                .iter()
                .find(|c| c.r#type == "Ready");
            // The status must describe the spec as it is now, or a run started right after
            // an edit would pin the plan from before it.
            let current = pipeline_status.observed_generation == pipeline.metadata.generation;
            match (ready, &pipeline_status.revision) {
                (Some(c), Some(revision)) if c.status == "True" && current => revision.clone(),
                _ => {
                    let why = ready
                        .map(|c| c.message.clone())
                        .unwrap_or_else(|| "not compiled yet".into());
                    view.wait(&format!("Pipeline \"{pipeline_name}\" is not Ready: {why}"))
                        .await?;
                    return Ok(Action::requeue(Duration::from_secs(5)));
                }
            }
        }
    };
    let revisions: Api<ControllerRevision> = Api::namespaced(ctx.client.clone(), &view.namespace);
    let Some(plan) = revision::load(&revisions, &revision_name).await? else {
        let message = format!("the pinned revision {revision_name} no longer exists");
        return view
            .end_early(RunPhase::Failed, "RevisionMissing", &message)
            .await;
    };

    let jobs_api: Api<Job> = Api::namespaced(ctx.client.clone(), &view.namespace);
    let selector = format!("{LABEL_RUN}={}", names::fit(&view.name));
    let jobs = jobs_api
        .list(&ListParams::default().labels(&selector))
        .await?
        .items;
    let states = view.job_states(&jobs).await?;
    let resumed = view.resumed().await?;
    let spec = &pipeline.spec;
    let retry_of = |step: &str| {
        plan.step(step)
            .and_then(|s| s.step.retry.clone())
            .or_else(|| spec.retry.clone())
    };
    let decision = progress::decide(&RunFacts {
        plan: &plan,
        jobs: &states.by_step,
        resumed: &resumed,
        on_failure: spec.on_failure.unwrap_or_default(),
        retry: &retry_of,
        parallelism: spec.parallelism,
        cancel: run.spec.cancel == Some(true),
        now: Utc::now(),
    });

    // Steps that just succeeded commit their watermark before anything reports them done.
    let before: BTreeMap<&str, &StepStatus> = view
        .status
        .steps
        .iter()
        .map(|s| (s.name.as_str(), s))
        .collect();
    for (step, state) in &decision.steps {
        let was = before.get(step.as_str()).and_then(|s| s.phase);
        if state.phase == StepPhase::Succeeded
            && was != Some(StepPhase::Succeeded)
            && let Some(report) = states.reports.get(&(step.clone(), state.attempt))
        {
            let job = states
                .names
                .get(&(step.clone(), state.attempt))
                .cloned()
                .unwrap_or_default();
            watermark::commit(ctx, &pipelines, &pipeline, &view.name, step, &job, report).await?;
        }
    }

    for step in &decision.stop {
        if let Some(job) = states.latest_job(step) {
            match jobs_api.delete(&job, &DeleteParams::background()).await {
                Ok(_) => {}
                Err(kube::Error::Api(status)) if status.code == 404 => {}
                Err(error) => return Err(error.into()),
            }
        }
    }
    let room = view.room().await?;
    let mut created = BTreeMap::new();
    for (step, attempt) in decision.start.iter().take(room) {
        let Some(planned) = plan.step(step) else {
            continue;
        };
        let incremental = planned
            .step
            .sync
            .as_ref()
            .is_some_and(|s| s.source.incremental.is_some());
        let watermark = incremental
            .then(|| {
                pipeline
                    .status
                    .as_ref()?
                    .watermarks
                    .get(step)
                    .map(|w| w.value.clone())
            })
            .flatten();
        let job = StepJob {
            run,
            pipeline: spec,
            plan: &plan,
            step: &planned.step,
            attempt: *attempt,
            watermark: watermark.as_deref(),
            default_image: &ctx.settings.runner_image,
            pods: &ctx.settings.pods,
        };
        let body = job.build();
        match jobs_api.create(&PostParams::default(), &body).await {
            Ok(_) => {}
            // Created before a restart: deterministic names make this the same Job.
            Err(kube::Error::Api(status)) if status.code == 409 => {}
            Err(error) => return Err(error.into()),
        }
        created.insert(step.clone(), (*attempt, job.name()));
    }

    let phase = decision.phase;
    view.report(&plan, &decision, &states, &created, &revision_name, phase)
        .await?;
    if phase.is_finished() {
        view.finished(&pipelines, &pipeline, phase).await?;
        return Ok(Action::await_change());
    }
    Ok(Action::requeue(
        decision.wake_in.map_or(RUNNING_RESYNC, |w| {
            w.min(RUNNING_RESYNC) + Duration::from_millis(100)
        }),
    ))
}

/// What the run's Jobs say.
#[derive(Default)]
struct JobStates {
    by_step: BTreeMap<String, BTreeMap<u32, JobState>>,
    names: BTreeMap<(String, u32), String>,
    started: BTreeMap<(String, u32), String>,
    finished: BTreeMap<(String, u32), String>,
    /// Final reports of attempts that ended, from their pods' termination messages.
    reports: BTreeMap<(String, u32), StepReport>,
    active: usize,
}

impl JobStates {
    fn latest_job(&self, step: &str) -> Option<String> {
        let attempt = self.by_step.get(step)?.keys().next_back()?;
        self.names.get(&(step.to_string(), *attempt)).cloned()
    }
}

impl RunView<'_> {
    async fn job_states(&self, jobs: &[Job]) -> Result<JobStates> {
        let mut states = JobStates::default();
        let known: BTreeMap<&str, &StepStatus> = self
            .status
            .steps
            .iter()
            .map(|s| (s.name.as_str(), s))
            .collect();
        for job in jobs {
            let labels = job.labels();
            let (Some(step), Some(attempt)) = (
                labels.get(LABEL_STEP).cloned(),
                labels
                    .get(LABEL_ATTEMPT)
                    .and_then(|a| a.parse::<u32>().ok()),
            ) else {
                continue;
            };
            let key = (step.clone(), attempt);
            let status = job.status.clone().unwrap_or_default();
            let ended = status
                .conditions
                .unwrap_or_default()
                .into_iter()
                .find(|c| c.status == "True" && (c.type_ == "Complete" || c.type_ == "Failed"));
            let state = match ended {
                None => {
                    let timeout = self.ctx.settings.pods.start_timeout;
                    if let Some(failure) =
                        start_failure::inspect(&self.ctx.client, job, timeout).await?
                    {
                        start_failure::fail(&self.ctx.client, job, &failure).await?;
                    }
                    states.active += 1;
                    JobState::Active
                }
                Some(c) => {
                    let finished = c
                        .last_transition_time
                        .map(|t| t.0)
                        .map_or_else(Utc::now, |t| {
                            chrono::DateTime::from_timestamp(t.as_second(), 0)
                                .unwrap_or_else(Utc::now)
                        });
                    states.finished.insert(
                        key.clone(),
                        finished.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
                    );
                    // Read the pod's report once per attempt: when the status does not have it yet.
                    let recorded = known.get(step.as_str()).is_some_and(|s| {
                        s.attempt == Some(attempt)
                            && matches!(
                                s.phase,
                                Some(
                                    StepPhase::Succeeded | StepPhase::Failed | StepPhase::Retrying
                                )
                            )
                    });
                    let report = if recorded {
                        None
                    } else {
                        self.report_of(&job.name_any()).await?
                    };
                    if c.type_ == "Complete" {
                        if let Some(report) = report {
                            states.reports.insert(key.clone(), report);
                        }
                        JobState::Succeeded { finished }
                    } else {
                        let reason = match (&report, recorded) {
                            (_, true) => known
                                .get(step.as_str())
                                .and_then(|s| s.message.clone())
                                .unwrap_or_default(),
                            (Some(r), _) if r.message.is_some() => {
                                r.message.clone().unwrap_or_default()
                            }
                            _ => start_failure::recorded(job).unwrap_or_else(|| {
                                format!(
                                    "{}: {}",
                                    c.reason.unwrap_or_default(),
                                    c.message.unwrap_or_default()
                                )
                            }),
                        };
                        if let Some(report) = report {
                            states.reports.insert(key.clone(), report);
                        }
                        JobState::Failed {
                            finished,
                            reason: strip_attempt_prefix(&reason),
                        }
                    }
                }
            };
            if let Some(created) = &job.metadata.creation_timestamp {
                states.started.insert(key.clone(), created.0.to_string());
            }
            states.names.insert(key, job.name_any());
            states
                .by_step
                .entry(step)
                .or_default()
                .insert(attempt, state);
        }
        Ok(states)
    }

    /// The `StepReport` an attempt's pod left as its termination message, if any.
    async fn report_of(&self, job: &str) -> Result<Option<StepReport>> {
        let pods: Api<Pod> = Api::namespaced(self.ctx.client.clone(), &self.namespace);
        let list = pods
            .list(&ListParams::default().labels(&format!("job-name={job}")))
            .await?;
        let message = list.items.iter().find_map(|pod| {
            pod.status
                .as_ref()?
                .container_statuses
                .as_ref()?
                .iter()
                .find_map(|c| {
                    let terminated = c.state.as_ref()?.terminated.as_ref()?;
                    Some((
                        terminated.exit_code,
                        terminated.message.clone().unwrap_or_default(),
                    ))
                })
        });
        Ok(message.map(|(code, text)| {
            serde_json::from_str::<StepReport>(&text).unwrap_or_else(|_| StepReport {
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
        }))
    }

    /// Steps that succeeded in the run this one resumes from (or that it resumed itself).
    async fn resumed(&self) -> Result<BTreeSet<String>> {
        let Some(from) = &self.run.spec.resume_from else {
            return Ok(BTreeSet::new());
        };
        let Some(earlier) = self.runs.get_opt(from).await? else {
            return Err(Error::Other(format!(
                "resumeFrom names run \"{from}\", which does not exist"
            )));
        };
        Ok(earlier
            .status
            .unwrap_or_default()
            .steps
            .into_iter()
            .filter(|s| {
                s.phase == Some(StepPhase::Succeeded)
                    || (s.phase == Some(StepPhase::Skipped)
                        && s.message.as_deref() == Some(progress::RESUMED))
            })
            .map(|s| s.name)
            .collect())
    }

    /// How many Jobs may start now under `--max-concurrent-jobs`, which counts every step
    /// Job the operator serves (all its namespaces), not just this run's.
    async fn room(&self) -> Result<usize> {
        let Some(max) = self.ctx.settings.max_concurrent_jobs else {
            return Ok(usize::MAX);
        };
        let scopes: Vec<Api<Job>> = match &self.ctx.settings.namespaces[..] {
            [] => vec![Api::all(self.ctx.client.clone())],
            some => some
                .iter()
                .map(|ns| Api::namespaced(self.ctx.client.clone(), ns))
                .collect(),
        };
        let mut active = 0;
        for jobs in scopes {
            let managed = jobs.list(&ListParams::default().labels(LABEL_RUN)).await?;
            active += managed.items.iter().filter(|j| !is_finished(j)).count();
        }
        Ok((max as usize).saturating_sub(active))
    }

    /// Applies the operator's part of the run's status and publishes an Event per transition.
    async fn report(
        &self,
        plan: &Plan,
        decision: &progress::Decision,
        states: &JobStates,
        created: &BTreeMap<String, (u32, String)>,
        revision: &str,
        phase: RunPhase,
    ) -> Result<()> {
        let before: BTreeMap<&str, &StepStatus> = self
            .status
            .steps
            .iter()
            .map(|s| (s.name.as_str(), s))
            .collect();
        let mut steps = Vec::new();
        let mut transitions = Vec::new();
        for planned in &plan.steps {
            let name = planned.step.name.as_str();
            let Some(state) = decision.steps.get(name) else {
                continue;
            };
            let (mut step_phase, mut attempt) = (state.phase, state.attempt);
            if let Some((new_attempt, _)) = created.get(name) {
                step_phase = StepPhase::Running;
                attempt = *new_attempt;
            }
            let key = (name.to_string(), attempt);
            let mut entry = json!({"name": name, "phase": step_phase, "message": state.message});
            if attempt > 0 {
                entry["attempt"] = json!(attempt);
                let job = states
                    .names
                    .get(&key)
                    .cloned()
                    .or_else(|| created.get(name).map(|(_, j)| j.clone()));
                entry["jobName"] = json!(job);
                entry["startedAt"] = json!(
                    states
                        .started
                        .get(&key)
                        .cloned()
                        .unwrap_or_else(now_rfc3339)
                );
                if matches!(
                    step_phase,
                    StepPhase::Succeeded | StepPhase::Failed | StepPhase::Retrying
                ) {
                    entry["finishedAt"] = json!(states.finished.get(&key));
                }
            }
            if let Some(report) = states.reports.get(&key) {
                entry["rowsRead"] = json!(report.rows_read);
                entry["rowsWritten"] = json!(report.rows_written);
                entry["rowsRejected"] = json!(report.rows_rejected);
                entry["bytesRead"] = json!(report.bytes_read);
                entry["bytesWritten"] = json!(report.bytes_written);
                if report.watermark.is_some() {
                    entry["watermark"] = json!(report.watermark);
                }
                if step_phase == StepPhase::Succeeded {
                    let pipeline = self.run.spec.pipeline_ref.name.as_str();
                    let metrics = &self.ctx.metrics;
                    metrics.step_succeeded(&self.namespace, pipeline, name, report);
                }
            }
            let previous = before.get(name);
            let moved = previous.and_then(|s| s.phase) != Some(step_phase)
                || (attempt > 0 && previous.and_then(|s| s.attempt) != Some(attempt));
            if moved
                && matches!(
                    step_phase,
                    StepPhase::Succeeded | StepPhase::Failed | StepPhase::Retrying
                )
            {
                let started = states.started.get(&key).and_then(|t| parse_time(t));
                let finished = states.finished.get(&key).and_then(|t| parse_time(t));
                if let (Some(started), Some(finished)) = (started, finished) {
                    let seconds = (finished - started).num_milliseconds().max(0) as f64 / 1000.0;
                    let pipeline = self.run.spec.pipeline_ref.name.as_str();
                    let metrics = &self.ctx.metrics;
                    metrics.step_ended(&self.namespace, pipeline, name, step_phase, seconds);
                }
            }
            if moved {
                transitions.push((name.to_string(), step_phase, attempt, state.message.clone()));
            }
            steps.push(strip_nulls(entry));
        }
        let done = decision.steps.values().filter(|s| {
            matches!(
                s.phase,
                StepPhase::Succeeded
                    | StepPhase::Failed
                    | StepPhase::Skipped
                    | StepPhase::Cancelled
            )
        });
        let started = self.status.start_time.clone().unwrap_or_else(now_rfc3339);
        let mut status = json!({
            "phase": phase,
            "revision": revision,
            "progress": format!("{}/{}", done.count(), plan.steps.len()),
            "startTime": started,
            "steps": steps,
        });
        if phase.is_finished() {
            let now = Utc::now();
            status["completionTime"] =
                json!(now.to_rfc3339_opts(chrono::SecondsFormat::Secs, true));
            if let Some(start) = parse_time(&started) {
                let took = (now - start).to_std().unwrap_or_default();
                status["duration"] = json!(synqx_api::duration::format_duration(
                    Duration::from_secs(took.as_secs())
                ));
            }
            let (ok, reason) = match phase {
                RunPhase::Succeeded => (true, "Succeeded"),
                RunPhase::Cancelled => (false, "Cancelled"),
                _ => (false, "StepsFailed"),
            };
            let failed: Vec<&String> = decision
                .steps
                .iter()
                .filter(|(_, s)| s.phase == StepPhase::Failed)
                .map(|(n, _)| n)
                .collect();
            let message = if failed.is_empty() {
                reason.to_string()
            } else {
                format!("failed steps: {failed:?}")
            };
            status["conditions"] = json!([condition(
                &self.status.conditions,
                "Succeeded",
                ok,
                reason,
                &message,
                None
            )]);
        }
        self.apply_status(status).await?;

        let reference = self.run.object_ref(&());
        if self.status.revision.is_none() {
            self.ctx
                .event(
                    &reference,
                    false,
                    "RunStarted",
                    format!("pinned revision {revision}"),
                )
                .await;
        }
        let mut skipped = Vec::new();
        for (step, step_phase, attempt, message) in transitions {
            tracing::info!(
                namespace = %self.namespace,
                run = %self.name,
                step = %step,
                attempt,
                phase = ?step_phase,
                message = message.as_deref().unwrap_or_default(),
                "step transition"
            );
            let job = states
                .names
                .get(&(step.clone(), attempt))
                .or_else(|| created.get(&step).map(|(_, job)| job));
            let Some(job) = job else {
                // Steps that never got a Job (skipped) are told in one Event below.
                skipped.push(match message {
                    Some(m) => format!("{step} ({m})"),
                    None => step,
                });
                continue;
            };
            let warning = matches!(step_phase, StepPhase::Failed | StepPhase::Retrying);
            let reason = format!("Step{step_phase:?}");
            let note = match message {
                Some(m) => format!("step {step} attempt {attempt}: {m}"),
                None => format!("step {step} attempt {attempt}"),
            };
            let related = context::reference("batch/v1", "Job", &self.namespace, job);
            self.ctx
                .event_about(&reference, Some(related), warning, &reason, note)
                .await;
        }
        if !skipped.is_empty() {
            let note = format!("not run: {}", skipped.join("; "));
            self.ctx
                .event(&reference, false, "StepsSkipped", note)
                .await;
        }
        if phase.is_finished() {
            tracing::info!(namespace = %self.namespace, run = %self.name, phase = ?phase, "run ended");
            let warning = phase != RunPhase::Succeeded;
            self.ctx
                .event(
                    &reference,
                    warning,
                    &format!("Run{phase:?}"),
                    format!("run {} ended {phase:?}", self.name),
                )
                .await;
        }
        Ok(())
    }

    async fn apply_status(&self, status: Value) -> Result<()> {
        let body =
            json!({"apiVersion": "synqx.io/v1alpha1", "kind": "PipelineRun", "status": status});
        let params = PatchParams::apply(FIELD_MANAGER).force();
        self.runs
            .patch_status(&self.name, &params, &Patch::Apply(&body))
            .await?;
        Ok(())
    }

    async fn wait(&self, message: &str) -> Result<()> {
        let waiting = condition(
            &self.status.conditions,
            "Waiting",
            true,
            "PipelineNotReady",
            message,
            None,
        );
        if self.status.conditions.first() == Some(&waiting) {
            return Ok(());
        }
        self.apply_status(json!({"phase": RunPhase::Pending, "conditions": [waiting]}))
            .await?;
        self.ctx
            .event(
                &self.run.object_ref(&()),
                true,
                "Waiting",
                message.to_string(),
            )
            .await;
        Ok(())
    }

    async fn end_early(&self, phase: RunPhase, reason: &str, message: &str) -> Result<Action> {
        let now = now_rfc3339();
        let ended = condition(
            &self.status.conditions,
            "Succeeded",
            false,
            reason,
            message,
            None,
        );
        self.apply_status(json!({"phase": phase, "completionTime": now, "conditions": [ended]}))
            .await?;
        self.ctx
            .event(&self.run.object_ref(&()), true, reason, message.to_string())
            .await;
        let (pipeline, started) = (&self.run.spec.pipeline_ref.name, &self.status.start_time);
        let metrics = &self.ctx.metrics;
        metrics.run_ended(&self.namespace, pipeline, phase, started.as_deref());
        Ok(Action::await_change())
    }

    async fn finished(
        &self,
        pipelines: &Api<Pipeline>,
        pipeline: &Pipeline,
        phase: RunPhase,
    ) -> Result<()> {
        let name = pipeline.name_any();
        let started = self.status.start_time.as_deref();
        self.ctx
            .metrics
            .run_ended(&self.namespace, &name, phase, started);
        let patch = json!({"status": {"lastRun": {
            "name": self.name,
            "phase": format!("{phase:?}"),
            "startTime": self.status.start_time,
        }}});
        pipelines
            .patch_status(&name, &PatchParams::default(), &Patch::Merge(&patch))
            .await?;
        Ok(())
    }
}

/// Attempt messages are prefixed by the decision; keep the underlying reason only once.
fn strip_attempt_prefix(reason: &str) -> String {
    match reason
        .strip_prefix("attempt ")
        .and_then(|r| r.split_once(" failed: "))
    {
        Some((_, rest)) => rest.to_string(),
        None => reason.to_string(),
    }
}

fn strip_nulls(mut value: Value) -> Value {
    if let Some(map) = value.as_object_mut() {
        map.retain(|_, v| !v.is_null());
    }
    value
}
