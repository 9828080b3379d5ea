//! The counters of a step in its run's status (rows and bytes read, written and rejected, and
//! the watermark range), written by the operator from what the step's pod reported: the
//! final numbers from its termination message once its Job ended. Each step's counters are
//! applied under a field manager of their own ([`field_manager`]), apart from the run
//! controller's fields, so writing one step's counters never drops another's and the run
//! controller's status writes never drop them.

use std::collections::BTreeMap;

use kube::api::{Patch, PatchParams};
use kube::{Api, ResourceExt};
use synqx_api::PipelineRun;
use synqx_api::apply::StatusApply;
use synqx_api::run::{PipelineRunStatus, StepReport, StepStatus};

use crate::context::Operator;
use crate::error::Result;

/// The field manager of one step's counters in its run's status.
pub fn field_manager(step: &str) -> String {
    format!("synqx-operator-step-{step}")
}

/// The final counters to write: of each step, those of its latest attempt that left a report
/// (a termination message that is no report, as of a runner that died, tells no counters and
/// leaves the last ones shown).
pub fn final_counters(reports: &BTreeMap<(String, u32), StepReport>) -> Vec<StepStatus> {
    let mut latest: BTreeMap<&str, (u32, &StepReport)> = BTreeMap::new();
    for ((step, attempt), report) in reports {
        if report.step != *step {
            continue;
        }
        let newer = latest.get(step.as_str()).is_none_or(|(a, _)| attempt > a);
        if newer {
            latest.insert(step, (*attempt, report));
        }
    }
    latest
        .into_values()
        .map(|(_, report)| report.counters_entry())
        .collect()
}

/// Applies each entry under its step's field manager.
pub async fn apply(ctx: &Operator, run: &PipelineRun, entries: &[StepStatus]) -> Result<()> {
    let namespace = run.namespace().unwrap_or_default();
    let runs: Api<PipelineRun> = Api::namespaced(ctx.client.clone(), &namespace);
    for entry in entries {
        let body = StatusApply::of::<PipelineRun>(PipelineRunStatus {
            steps: vec![entry.clone()],
            ..Default::default()
        });
        let params = PatchParams::apply(&field_manager(&entry.name)).force();
        let written = runs
            .patch_status(&run.name_any(), &params, &Patch::Apply(&body))
            .await?;
        ctx.own_writes.saw(&written);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use synqx_api::run::{StepPhase, WatermarkRange};

    /// Step, rows and bytes written, watermark reached.
    type Shown<'a> = (&'a str, Option<u64>, Option<u64>, Option<&'a str>);

    fn report(step: &str, rows: u64) -> StepReport {
        StepReport {
            step: step.into(),
            phase: StepPhase::Succeeded,
            rows_read: rows,
            rows_written: rows,
            bytes_read: rows * 10,
            bytes_written: rows * 12,
            watermark: Some(WatermarkRange {
                from: Some("5".into()),
                to: Some(rows.to_string()),
            }),
            ..Default::default()
        }
    }

    #[test]
    fn the_latest_reported_attempt_of_each_step_gives_its_final_counters() {
        let reports = BTreeMap::from([
            (("load".to_string(), 1), report("load", 3)),
            (("load".to_string(), 2), report("load", 7)),
            (("count".to_string(), 1), report("count", 1)),
            // A runner that died left no report: its message became the reason, no counters.
            (
                ("extract".to_string(), 1),
                StepReport {
                    phase: StepPhase::Failed,
                    message: Some("exit code 137".into()),
                    ..Default::default()
                },
            ),
        ]);
        let entries = final_counters(&reports);
        let shown: Vec<Shown<'_>> = entries
            .iter()
            .map(|e| {
                (
                    e.name.as_str(),
                    e.rows_written,
                    e.bytes_written,
                    e.watermark.as_ref().and_then(|w| w.to.as_deref()),
                )
            })
            .collect();
        assert_eq!(
            shown,
            vec![
                ("count", Some(1), Some(12), Some("1")),
                ("load", Some(7), Some(84), Some("7")),
            ]
        );
        assert!(
            entries
                .iter()
                .all(|e| e.phase.is_none() && e.message.is_none())
        );
    }

    #[test]
    fn each_step_has_a_field_manager_of_its_own() {
        assert_eq!(field_manager("load"), "synqx-operator-step-load");
        assert!(field_manager(&"s".repeat(63)).len() <= 128);
    }
}
