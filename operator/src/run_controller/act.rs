//! Act: what the decision asks of the cluster — commit the watermarks of steps that just
//! succeeded, delete the Jobs of a cancelled run, create the Jobs of attempts that start.

use k8s_openapi::api::batch::v1::Job;
use kube::api::{DeleteParams, PostParams};
use kube::{Api, ResourceExt};
use synqx_api::PipelineRun;
use synqx_api::pipeline::Step;
use synqx_api::run::PipelineRunStatus;
use synqx_api::scheduler::Decision;

use super::observe::Observation;
use super::status::{Created, newly_succeeded};
use crate::context::Operator;
use crate::error::{Error, Result, is_conflict, is_not_found};
use crate::job::{StepJob, owned_by, refused};
use crate::secret_opt_in::OptIns;
use crate::{policy, watermark};

/// Steps that just succeeded commit their watermark before anything reports them done.
/// `previous` is the status as the operator's record has it.
pub async fn commit_watermarks(
    ctx: &Operator,
    run: &PipelineRun,
    previous: &PipelineRunStatus,
    observation: &Observation,
    decision: &Decision,
) -> Result<()> {
    for (step, attempt) in newly_succeeded(previous, decision, &observation.jobs) {
        let key = (step.to_string(), attempt);
        let (Some(report), Some(job)) = (
            observation.jobs.reports.get(&key),
            observation.jobs.names.get(&key),
        ) else {
            continue;
        };
        let commit = watermark::Committed {
            run: &run.name_any(),
            step,
            job,
            report,
        };
        watermark::commit(ctx, &observation.pipeline, &commit).await?;
    }
    Ok(())
}

/// Deletes the Jobs the decision stops and creates the ones it starts; returns the attempts
/// created (a Job that exists already, from before a restart, counts as created).
pub async fn stop_and_start(
    ctx: &Operator,
    run: &PipelineRun,
    observation: &Observation,
    decision: &Decision,
) -> Result<Created> {
    let namespace = run.namespace().unwrap_or_default();
    let jobs: Api<Job> = Api::namespaced(ctx.client.clone(), &namespace);
    for step in &decision.stop {
        if let Some(job) = observation.jobs.latest_job(step) {
            match jobs.delete(job, &DeleteParams::background()).await {
                Ok(_) => {}
                Err(error) if is_not_found(&error) => {}
                Err(error) => return Err(error.into()),
            }
        }
    }
    let pipeline = &observation.pipeline;
    let mut created = Created::new();
    let mut opt_ins = OptIns::new(&ctx.client, &namespace);
    for (step, attempt) in &decision.start {
        let Some(planned) = observation.plan.step(step) else {
            continue;
        };
        let incremental = planned
            .step
            .sync
            .as_ref()
            .is_some_and(|s| s.source.incremental.is_some());
        let watermark = pipeline
            .status
            .as_ref()
            .and_then(|s| s.watermarks.get(step))
            .filter(|_| incremental)
            .map(|w| w.value.as_str());
        let job = StepJob {
            run,
            pipeline: &pipeline.spec,
            plan: &observation.plan,
            revision: &observation.revision,
            step: &planned.step,
            attempt: *attempt,
            watermark,
            default_image: &ctx.settings.runner_image,
            pods: &ctx.settings.pods,
            lend_ambient_credentials: ctx.settings.policy.allow_ambient_credentials,
        };
        let why = match refusal(ctx, &mut opt_ins, observation, &planned.step).await? {
            Some(why) => Some(why),
            None => job.plan_problem(),
        };
        let body = match why {
            Some(why) => refused(job.build(), &why),
            None => job.build(),
        };
        match jobs.create(&PostParams::default(), &body).await {
            Ok(_) => {}
            // Created before a restart: deterministic names make this the same Job, as long
            // as this run controls it.
            Err(error) if is_conflict(&error) => {
                let uid = run.metadata.uid.as_deref().unwrap_or_default();
                let existing = jobs.get(&job.name()).await?;
                if !owned_by(&existing, uid) {
                    return Err(Error::NameTaken {
                        kind: "Job",
                        name: job.name(),
                    });
                }
            }
            Err(error) => return Err(error.into()),
        }
        created.insert(step.clone(), (*attempt, job.name()));
    }
    Ok(created)
}

/// Why the operator will not start `step` now, asked right before its Job: the Pipeline's
/// `spec.runner` (which the Job takes as it is now, not as the run pinned it) asks for what
/// this operator does not allow, or a Connection of the step names a Secret that has not
/// opted in. A run pinned under laxer flags, or before a Secret lost its label, starts no pod
/// these forbid.
async fn refusal(
    ctx: &Operator,
    opt_ins: &mut OptIns,
    observation: &Observation,
    step: &Step,
) -> Result<Option<String>> {
    let pipeline = &observation.pipeline;
    let settings = &ctx.settings;
    let problems = policy::runner_problems(
        &pipeline.name_any(),
        pipeline.spec.runner.as_ref(),
        &settings.runner_image,
        &settings.policy,
        settings.pods.allow_host_path,
    );
    if !problems.is_empty() {
        return Ok(Some(problems.join("; ")));
    }
    for name in step.connections() {
        if let Some(spec) = observation.plan.connections.get(name)
            && let Some(why) = opt_ins.refusal(name, spec).await?
        {
            return Ok(Some(why));
        }
    }
    Ok(None)
}
