//! The runs a Pipeline's controller creates and deletes: the run a due fire time of its
//! schedule asks for (cancelling active ones under `Replace`), and old runs beyond the
//! history limits. Which runs is decided by pure functions; this module acts on them.

use chrono::{DateTime, Utc};
use kube::api::{DeleteParams, ObjectMeta, Patch, PatchParams, PostParams};
use kube::{Api, Resource, ResourceExt};
use synqx_api::run::{PipelineRef, PipelineRunSpec, RunPhase};
use synqx_api::run_record::trusted_phase;
use synqx_api::{Pipeline, PipelineRun};

use crate::context::{self, Operator, parse_time};
use crate::error::{Error, Result, is_conflict, is_not_found};
use crate::event_reason::EventReason;
use crate::job::LABEL_PIPELINE;
use crate::names;
use crate::scheduling::{self, Fire};

/// Whether a run has ended, as the operator's record says: a run whose status alone says
/// so (which step pods may write) is still active for `concurrencyPolicy` and is never
/// deleted as history.
pub fn run_ended(run: &PipelineRun) -> bool {
    trusted_phase(run).is_some_and(RunPhase::is_finished)
}

/// What the schedule did in this pass.
#[derive(Default)]
pub struct Scheduled {
    /// The fire time handled (a run created, or skipped by policy).
    pub handled: Option<DateTime<Utc>>,
    /// When it fires next.
    pub next: Option<DateTime<Utc>>,
}

/// Creates the run a due fire time asks for.
pub async fn schedule(
    pipeline: &Pipeline,
    ctx: &Operator,
    active: &[&PipelineRun],
) -> Result<Scheduled> {
    let Some(schedule) = &pipeline.spec.schedule else {
        return Ok(Scheduled::default());
    };
    let runs = &runs_api(ctx, pipeline);
    let name = pipeline.name_any();
    let status = pipeline.status.clone().unwrap_or_default();
    let created = pipeline
        .metadata
        .creation_timestamp
        .as_ref()
        .map(|t| t.0.as_second())
        .unwrap_or_default();
    let last = status
        .last_schedule_time
        .as_deref()
        .and_then(parse_time)
        .or_else(|| DateTime::from_timestamp(created, 0))
        .unwrap_or_else(Utc::now);
    let decision =
        scheduling::decide(schedule, last, Utc::now(), active.len()).map_err(|source| {
            Error::Schedule {
                pipeline: name.clone(),
                source,
            }
        })?;
    let reference = pipeline.object_ref(&());
    let handled = match decision.fire {
        Fire::Nothing => None,
        Fire::Skip { at, reason } => {
            let note = format!("fire time {at}: {reason}");
            ctx.event(&reference, true, EventReason::ScheduleSkipped, note);
            Some(at)
        }
        Fire::Run { at, cancel } => {
            if cancel {
                replace(pipeline, ctx, runs, active).await?;
            }
            create(pipeline, ctx, runs, at).await?;
            Some(at)
        }
    };
    Ok(Scheduled {
        handled,
        next: decision.next,
    })
}

/// The runs of the Pipeline's namespace on the API server.
fn runs_api(ctx: &Operator, pipeline: &Pipeline) -> Api<PipelineRun> {
    Api::namespaced(
        ctx.client.clone(),
        &pipeline.namespace().unwrap_or_default(),
    )
}

/// `concurrencyPolicy: Replace`: cancels the active runs.
async fn replace(
    pipeline: &Pipeline,
    ctx: &Operator,
    runs: &Api<PipelineRun>,
    active: &[&PipelineRun],
) -> Result<()> {
    for run in active {
        // `spec.cancel` alone, as a user sets it with kubectl.
        let patch = serde_json::json!({"spec": {"cancel": true}});
        runs.patch(
            &run.name_any(),
            &PatchParams::default(),
            &Patch::Merge(&patch),
        )
        .await?;
        let related = run_reference(pipeline, &run.name_any());
        let note = format!("cancelled {} (concurrencyPolicy: Replace)", run.name_any());
        ctx.event_about(
            &pipeline.object_ref(&()),
            Some(related),
            false,
            EventReason::RunReplaced,
            note,
        );
    }
    Ok(())
}

async fn create(
    pipeline: &Pipeline,
    ctx: &Operator,
    runs: &Api<PipelineRun>,
    at: DateTime<Utc>,
) -> Result<()> {
    let name = pipeline.name_any();
    let run_name = names::scheduled_run_name(&name, at.timestamp());
    let run = PipelineRun {
        metadata: ObjectMeta {
            name: Some(run_name.clone()),
            labels: Some([(LABEL_PIPELINE.to_string(), names::fit(&name))].into()),
            annotations: Some([("synqx.io/scheduled-at".to_string(), at.to_rfc3339())].into()),
            owner_references: pipeline.controller_owner_ref(&()).map(|r| vec![r]),
            ..Default::default()
        },
        spec: PipelineRunSpec {
            pipeline_ref: PipelineRef { name },
            ..Default::default()
        },
        status: None,
    };
    match runs.create(&PostParams::default(), &run).await {
        Ok(_) => {
            let related = run_reference(pipeline, &run_name);
            let note = format!("created {run_name} for {at}");
            ctx.event_about(
                &pipeline.object_ref(&()),
                Some(related),
                false,
                EventReason::RunScheduled,
                note,
            );
            Ok(())
        }
        // Deterministic names: this fire time was handled before a restart.
        Err(error) if is_conflict(&error) => Ok(()),
        Err(error) => Err(error.into()),
    }
}

fn run_reference(pipeline: &Pipeline, run: &str) -> k8s_openapi::api::core::v1::ObjectReference {
    let namespace = pipeline.namespace().unwrap_or_default();
    context::reference("synqx.io/v1alpha1", "PipelineRun", &namespace, run)
}

/// The runs beyond the history limits: all but the newest `successfulRunsHistoryLimit`
/// succeeded and `failedRunsHistoryLimit` failed or cancelled ones (3 each by default).
pub fn beyond_history(pipeline: &Pipeline, runs: &[PipelineRun]) -> Vec<String> {
    let keep_ok = pipeline.spec.successful_runs_history_limit.unwrap_or(3) as usize;
    let keep_failed = pipeline.spec.failed_runs_history_limit.unwrap_or(3) as usize;
    let mut newest_first: Vec<&PipelineRun> = runs.iter().collect();
    newest_first
        .sort_by_key(|r| std::cmp::Reverse(r.metadata.creation_timestamp.as_ref().map(|t| t.0)));
    let (mut ok, mut failed) = (0usize, 0usize);
    let mut doomed = Vec::new();
    for run in newest_first {
        let over = match trusted_phase(run) {
            Some(RunPhase::Succeeded) => {
                ok = ok.saturating_add(1);
                ok > keep_ok
            }
            Some(RunPhase::Failed | RunPhase::Cancelled) => {
                failed = failed.saturating_add(1);
                failed > keep_failed
            }
            _ => false,
        };
        if over {
            doomed.push(run.name_any());
        }
    }
    doomed
}

/// Deletes the runs beyond the history limits, with their Jobs.
pub async fn delete_old_runs(
    pipeline: &Pipeline,
    ctx: &Operator,
    runs: &mut Vec<PipelineRun>,
) -> Result<()> {
    let doomed = beyond_history(pipeline, runs);
    let api = runs_api(ctx, pipeline);
    for name in &doomed {
        match api.delete(name, &DeleteParams::background()).await {
            Ok(_) => {
                let related = run_reference(pipeline, name);
                let note = format!("{name} is beyond the history limit");
                ctx.event_about(
                    &pipeline.object_ref(&()),
                    Some(related),
                    false,
                    EventReason::RunDeleted,
                    note,
                )
            }
            Err(error) if is_not_found(&error) => {}
            Err(error) => return Err(error.into()),
        }
    }
    runs.retain(|r| !doomed.contains(&r.name_any()));
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use synqx_api::run::PipelineRunStatus;
    use synqx_api::run_record::{RECORD_ANNOTATION, RunRecord};

    fn run(name: &str, created: i64, phase: Option<RunPhase>) -> PipelineRun {
        let mut run = PipelineRun::new(name, Default::default());
        run.metadata.creation_timestamp =
            Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(
                k8s_openapi::jiff::Timestamp::from_second(created).unwrap_or_default(),
            ));
        run.status = Some(PipelineRunStatus {
            phase,
            ..Default::default()
        });
        // The operator records the end of every run it ended.
        let record = RunRecord {
            phase: phase.filter(|p| p.is_finished()),
            ..Default::default()
        };
        run.metadata.annotations =
            Some([(RECORD_ANNOTATION.to_string(), record.to_annotation())].into());
        run
    }

    #[test]
    fn a_run_whose_status_alone_says_it_ended_stays_active_and_in_history() {
        let mut pipeline = Pipeline::new("p", Default::default());
        pipeline.spec.successful_runs_history_limit = Some(0);
        let mut forged = run("forged", 1, Some(RunPhase::Running));
        if let Some(status) = forged.status.as_mut() {
            status.phase = Some(RunPhase::Succeeded);
        }
        assert!(!run_ended(&forged));
        let runs = [forged, run("ok", 2, Some(RunPhase::Succeeded))];
        assert_eq!(beyond_history(&pipeline, &runs), ["ok"]);
    }

    #[test]
    fn the_oldest_runs_beyond_each_limit_go_and_active_ones_stay() {
        let mut pipeline = Pipeline::new("p", Default::default());
        pipeline.spec.successful_runs_history_limit = Some(1);
        pipeline.spec.failed_runs_history_limit = Some(2);
        let runs = [
            run("ok-1", 1, Some(RunPhase::Succeeded)),
            run("ok-2", 2, Some(RunPhase::Succeeded)),
            run("bad-1", 3, Some(RunPhase::Failed)),
            run("bad-2", 4, Some(RunPhase::Cancelled)),
            run("bad-3", 5, Some(RunPhase::Failed)),
            run("running", 0, Some(RunPhase::Running)),
            run("new", 0, None),
        ];
        assert_eq!(beyond_history(&pipeline, &runs), ["bad-1", "ok-1"]);
        assert!(run_ended(&runs[0]) && !run_ended(&runs[5]) && !run_ended(&runs[6]));
    }
}
