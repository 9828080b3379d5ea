//! Committing a step's watermark to its Pipeline: only after the step succeeded, only
//! forward from the value the step started from, and at most once per run.

use kube::api::{Patch, PatchParams};
use kube::{Api, Resource, ResourceExt};
use serde_json::json;
use synqx_api::Pipeline;
use synqx_api::run::StepReport;

use crate::context::{self, Context, Result, now_rfc3339};

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
pub fn decide(
    current: Option<&synqx_api::pipeline::Watermark>,
    run: &str,
    report: &StepReport,
) -> Commit {
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

/// Commits the watermark of `step` reported by `report`, guarded by the Pipeline's
/// resourceVersion so two writers never interleave.
pub async fn commit(
    ctx: &Context,
    pipelines: &Api<Pipeline>,
    pipeline: &Pipeline,
    run: &str,
    step: &str,
    job: &str,
    report: &StepReport,
) -> Result<()> {
    let name = pipeline.name_any();
    let fresh = pipelines.get_status(&name).await?;
    let current = fresh.status.as_ref().and_then(|s| s.watermarks.get(step));
    match decide(current, run, report) {
        Commit::Nothing | Commit::AlreadyDone => Ok(()),
        Commit::Moved { current } => {
            let note = format!(
                "step {step} of run {run} did not commit its watermark: it was moved to {current:?} while the step ran"
            );
            ctx.event(
                &pipeline.object_ref(&()),
                true,
                "WatermarkNotCommitted",
                note,
            )
            .await;
            Ok(())
        }
        Commit::Write { value } => {
            let patch = json!({
                "metadata": {"resourceVersion": fresh.resource_version()},
                "status": {"watermarks": {step: {"value": value, "run": run, "updatedAt": now_rfc3339()}}},
            });
            pipelines
                .patch_status(&name, &PatchParams::default(), &Patch::Merge(&patch))
                .await?;
            let note = format!("step {step}: watermark {value} committed by run {run}");
            // Related to the step's Job, so the commits of different steps stay apart.
            let related = context::reference(
                "batch/v1",
                "Job",
                &pipeline.namespace().unwrap_or_default(),
                job,
            );
            ctx.event_about(
                &pipeline.object_ref(&()),
                Some(related),
                false,
                "WatermarkCommitted",
                note,
            )
            .await;
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use synqx_api::pipeline::Watermark;
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
}
