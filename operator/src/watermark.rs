//! Committing a step's watermark to its Pipeline: only after the step succeeded, only
//! forward from the value the step started from, and at most once per run.

use kube::api::{Patch, PatchParams};
use kube::{Api, Resource, ResourceExt};
use synqx_api::Pipeline;
use synqx_api::apply::StatusApply;
use synqx_api::pipeline::{PipelineStatus, Watermark};
use synqx_api::run::StepReport;

use crate::context::{self, Operator, now_rfc3339};
use crate::error::Result;
use crate::event_reason::EventReason;

/// What committing a reported watermark does.
#[derive(Debug, PartialEq)]
pub enum Commit {
    /// The report carries no new watermark (not incremental, or nothing read).
    Nothing,
    /// This run committed it before (the operator restarted in between).
    AlreadyDone,
    /// Someone moved the watermark since the step started: committing would lose rows.
    Moved {
        current: String,
    },
    Write {
        value: String,
    },
}

/// Decides from the Pipeline's current watermark of the step.
pub fn decide(current: Option<&Watermark>, run: &str, report: &StepReport) -> Commit {
    let Some(range) = &report.watermark else {
        return Commit::Nothing;
    };
    let Some(to) = range.to.clone() else {
        return Commit::Nothing;
    };
    match current {
        Some(w) if w.run.as_deref() == Some(run) => Commit::AlreadyDone,
        Some(w) if Some(&w.value) != range.from.as_ref() => Commit::Moved {
            current: w.value.clone(),
        },
        None if range.from.is_some() => Commit::Moved {
            current: String::new(),
        },
        _ if range.from.as_deref() == Some(to.as_str()) => Commit::Nothing,
        _ => Commit::Write { value: to },
    }
}

/// A step's report to commit.
pub struct Committed<'a> {
    pub run: &'a str,
    pub step: &'a str,
    /// The step's Job, which the Event names.
    pub job: &'a str,
    pub report: &'a StepReport,
}

/// The field manager of one step's watermark: each step's entry of `status.watermarks` has
/// its own, so a commit of one step never touches another's.
pub fn field_manager(step: &str) -> String {
    format!("synqx-watermark-{step}")
}

/// The Pipeline status a commit applies: only this step's watermark.
pub fn watermark_status(step: &str, watermark: Watermark) -> PipelineStatus {
    PipelineStatus {
        watermarks: [(step.to_string(), watermark)].into(),
        ..Default::default()
    }
}

/// Commits the watermark a step reported, guarded by the Pipeline's resourceVersion so two
/// writers never interleave.
pub async fn commit(ctx: &Operator, pipeline: &Pipeline, commit: &Committed<'_>) -> Result<()> {
    let name = pipeline.name_any();
    let namespace = pipeline.namespace().unwrap_or_default();
    // Most steps report no watermark: nothing to read the Pipeline for.
    if decide(None, commit.run, commit.report) == Commit::Nothing {
        return Ok(());
    }
    let pipelines: Api<Pipeline> = Api::namespaced(ctx.client.clone(), &namespace);
    let fresh = pipelines.get_status(&name).await?;
    let (run, step) = (commit.run, commit.step);
    let current = fresh.status.as_ref().and_then(|s| s.watermarks.get(step));
    match decide(current, run, commit.report) {
        Commit::Nothing | Commit::AlreadyDone => Ok(()),
        Commit::Moved { current } => {
            let note = format!(
                "step {step} of run {run} did not commit its watermark: it was moved to {current:?} while the step ran"
            );
            ctx.event(
                &pipeline.object_ref(&()),
                true,
                EventReason::WatermarkNotCommitted,
                note,
            );
            Ok(())
        }
        Commit::Write { value } => {
            let watermark = Watermark {
                value: value.clone(),
                run: Some(run.to_string()),
                updated_at: Some(now_rfc3339()),
            };
            let body = StatusApply::of::<Pipeline>(watermark_status(step, watermark))
                .at(fresh.resource_version());
            let params = PatchParams::apply(&field_manager(step)).force();
            pipelines
                .patch_status(&name, &params, &Patch::Apply(&body))
                .await?;
            let note = format!("step {step}: watermark {value} committed by run {run}");
            // Related to the step's Job, so the commits of different steps stay apart.
            let related = context::reference("batch/v1", "Job", &namespace, commit.job);
            ctx.event_about(
                &pipeline.object_ref(&()),
                Some(related),
                false,
                EventReason::WatermarkCommitted,
                note,
            );
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use synqx_api::run::WatermarkRange;

    fn report(from: Option<&str>, to: Option<&str>) -> StepReport {
        StepReport {
            watermark: Some(WatermarkRange {
                from: from.map(String::from),
                to: to.map(String::from),
            }),
            ..Default::default()
        }
    }

    fn mark(value: &str, run: &str) -> Watermark {
        Watermark {
            value: value.into(),
            run: Some(run.into()),
            updated_at: None,
        }
    }

    #[test]
    fn a_watermark_moves_forward_once_per_run_from_where_the_step_started() {
        assert_eq!(
            decide(None, "r1", &report(None, Some("5"))),
            Commit::Write { value: "5".into() }
        );
        assert_eq!(
            decide(Some(&mark("5", "r1")), "r2", &report(Some("5"), Some("9"))),
            Commit::Write { value: "9".into() }
        );
        assert_eq!(
            decide(Some(&mark("9", "r2")), "r2", &report(Some("5"), Some("9"))),
            Commit::AlreadyDone
        );
        assert_eq!(
            decide(Some(&mark("7", "r3")), "r2", &report(Some("5"), Some("9"))),
            Commit::Moved {
                current: "7".into()
            }
        );
        assert_eq!(
            decide(Some(&mark("5", "r1")), "r2", &report(Some("5"), Some("5"))),
            Commit::Nothing
        );
        assert_eq!(decide(None, "r1", &report(None, None)), Commit::Nothing);
        assert_eq!(decide(None, "r1", &StepReport::default()), Commit::Nothing);
    }

    #[test]
    fn a_commit_applies_only_its_steps_watermark_under_its_own_manager() {
        let status = watermark_status("load", mark("9", "r2"));
        let json = serde_json::to_value(&status).unwrap_or_default();
        assert_eq!(
            json,
            serde_json::json!({"watermarks": {"load": {"value": "9", "run": "r2"}}})
        );
        assert_eq!(field_manager("load"), "synqx-watermark-load");
    }
}
