//! The operator's record of a run ([`RunRecord`], in the run's annotation) against the run's
//! status. Step pods may patch the status of any run in their namespace; the record is
//! written only by the operator. Decisions read the record; the status shown is checked
//! against it, and what contradicts it is named (field names only, never the values found)
//! and restored.

use synqx_api::run::{PipelineRunStatus, RunPhase, StepPhase, StepStatus};
use synqx_api::run_record::{RunRecord, StepRecord, has_outcome};
use synqx_api::scheduler::RESUMED;

/// The record the operator keeps of a status it built itself (its end time too: the status
/// of the pass that ends a run has the completion time that pass wrote).
pub fn project(status: &PipelineRunStatus) -> RunRecord {
    let phase = status.phase.filter(|p| p.is_finished());
    RunRecord {
        revision: status.revision.clone(),
        phase,
        finished_at: phase.and(status.completion_time.clone()),
        steps: status
            .steps
            .iter()
            .filter_map(|step| {
                let phase = step.phase.filter(|p| has_outcome(*p))?;
                let record = StepRecord {
                    phase,
                    attempt: step.attempt.unwrap_or(0),
                    resumed: phase == StepPhase::Skipped
                        && step.message.as_deref() == Some(RESUMED),
                };
                Some((step.name.clone(), record))
            })
            .collect(),
    }
}

/// A status rebuilt from the record, and which of its fields the status shown contradicted.
#[derive(Debug, PartialEq)]
pub struct Trusted {
    pub status: PipelineRunStatus,
    /// Fields the status claimed against the record, e.g. `status.steps[load].phase`.
    pub contradicted: Vec<String>,
}

/// The status `shown` with the record's revision, phase and step outcomes. A status that
/// lags behind the record (the operator writes the record first) is caught up silently; one
/// that claims what the record does not say (another revision, an end, an outcome of a step)
/// is contradicting. Steps for which `known` is false (not in the plan nor the record: an
/// entry someone else added) are neither checked nor changed.
pub fn trusted(
    shown: &PipelineRunStatus,
    record: &RunRecord,
    known: impl Fn(&str) -> bool,
) -> Trusted {
    let mut status = shown.clone();
    let mut contradicted = Vec::new();
    if shown.revision.is_some() && shown.revision != record.revision {
        contradicted.push("status.revision".to_string());
    }
    status.revision = record.revision.clone();
    let shown_end = shown.phase.filter(|p| p.is_finished());
    if shown_end.is_some() && shown_end != record.phase {
        contradicted.push("status.phase".to_string());
    }
    status.phase = match record.phase {
        Some(phase) if phase.is_finished() => Some(phase),
        _ if shown_end.is_some() => Some(if record.revision.is_some() {
            RunPhase::Running
        } else {
            RunPhase::Pending
        }),
        _ => shown.phase,
    };
    for step in status.steps.iter_mut().filter(|s| known(&s.name)) {
        let claimed = step.phase.filter(|p| has_outcome(*p));
        match record.steps.get(&step.name) {
            Some(kept) => {
                let same = claimed == Some(kept.phase) && step.attempt.unwrap_or(0) == kept.attempt;
                if claimed.is_some() && !same {
                    contradicted.push(format!("status.steps[{}].phase", step.name));
                }
                restore_step(step, kept);
            }
            None if claimed.is_some() => {
                contradicted.push(format!("status.steps[{}].phase", step.name));
                step.phase = Some(if step.attempt.unwrap_or(0) > 0 {
                    StepPhase::Running
                } else {
                    StepPhase::Pending
                });
            }
            None => {}
        }
    }
    for (name, kept) in &record.steps {
        if !status.steps.iter().any(|s| &s.name == name) {
            let mut step = StepStatus {
                name: name.clone(),
                ..Default::default()
            };
            restore_step(&mut step, kept);
            status.steps.push(step);
        }
    }
    Trusted {
        status,
        contradicted,
    }
}

fn restore_step(step: &mut StepStatus, kept: &StepRecord) {
    step.phase = Some(kept.phase);
    step.attempt = (kept.attempt > 0).then_some(kept.attempt);
    if kept.resumed {
        step.message = Some(RESUMED.to_string());
    }
}

/// The record to decide from when the run carries none: a run whose Jobs an operator
/// before the record existed created is adopted from the status that operator wrote (no
/// Job can exist for a run this operator has not pinned: it writes the record first, and
/// the step pods' identity cannot create Jobs); any other run has not started.
pub fn adopted(shown: &PipelineRunStatus, has_jobs: bool) -> RunRecord {
    if has_jobs {
        project(shown)
    } else {
        RunRecord::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn step(name: &str, phase: StepPhase, attempt: u32) -> StepStatus {
        StepStatus {
            name: name.into(),
            phase: Some(phase),
            attempt: (attempt > 0).then_some(attempt),
            rows_written: Some(7),
            ..Default::default()
        }
    }

    fn status(phase: RunPhase, revision: &str, steps: Vec<StepStatus>) -> PipelineRunStatus {
        PipelineRunStatus {
            phase: Some(phase),
            revision: Some(revision.into()),
            steps,
            ..Default::default()
        }
    }

    fn operators() -> PipelineRunStatus {
        status(
            RunPhase::Running,
            "orders-aaa",
            vec![
                step("extract", StepPhase::Succeeded, 1),
                step("load", StepPhase::Running, 2),
                step("stats", StepPhase::Pending, 0),
            ],
        )
    }

    #[test]
    fn a_status_the_operator_wrote_agrees_with_its_record() {
        let written = operators();
        let record = project(&written);
        assert_eq!(record.revision.as_deref(), Some("orders-aaa"));
        assert_eq!(record.phase, None, "a run going on has no ended phase");
        assert_eq!(record.steps.keys().collect::<Vec<_>>(), ["extract"]);
        let checked = trusted(&written, &record, |_| true);
        assert_eq!(checked.contradicted, Vec::<String>::new());
        assert_eq!(checked.status, written);
    }

    #[test]
    fn the_record_keeps_the_end_time_of_the_pass_that_ended_the_run() {
        let mut going = operators();
        going.completion_time = Some("2099-01-01T00:00:00Z".into());
        assert_eq!(
            project(&going).finished_at,
            None,
            "a run going on has no end time, whatever its status says"
        );
        let mut ended = status(RunPhase::Succeeded, "orders-aaa", vec![]);
        ended.completion_time = Some("2026-01-01T00:03:00Z".into());
        assert_eq!(
            project(&ended).finished_at.as_deref(),
            Some("2026-01-01T00:03:00Z")
        );
    }

    #[test]
    fn what_another_writer_claims_is_named_and_replaced_by_the_record() {
        let record = project(&operators());
        let forged = status(
            RunPhase::Succeeded,
            "orders-bbb",
            vec![
                step("extract", StepPhase::Failed, 1),
                step("load", StepPhase::Succeeded, 2),
                step("stats", StepPhase::Succeeded, 0),
                step("ghost", StepPhase::Succeeded, 1),
            ],
        );
        let checked = trusted(&forged, &record, |s| s != "ghost");
        assert_eq!(
            checked.contradicted,
            [
                "status.revision",
                "status.phase",
                "status.steps[extract].phase",
                "status.steps[load].phase",
                "status.steps[stats].phase",
            ]
        );
        let restored = &checked.status;
        assert_eq!(restored.revision.as_deref(), Some("orders-aaa"));
        assert_eq!(restored.phase, Some(RunPhase::Running));
        let phases: Vec<_> = restored
            .steps
            .iter()
            .map(|s| (s.name.as_str(), s.phase, s.attempt))
            .collect();
        assert_eq!(
            phases,
            [
                ("extract", Some(StepPhase::Succeeded), Some(1)),
                ("load", Some(StepPhase::Running), Some(2)),
                ("stats", Some(StepPhase::Pending), None),
                ("ghost", Some(StepPhase::Succeeded), Some(1)),
            ]
        );
        // The runner's counters stay.
        assert!(restored.steps.iter().all(|s| s.rows_written == Some(7)));
        // A revision removed, or another attempt claimed, contradicts too.
        let mut cleared = operators();
        cleared.revision = None;
        cleared.steps[0].attempt = Some(3);
        let checked = trusted(&cleared, &record, |_| true);
        assert_eq!(checked.contradicted, ["status.steps[extract].phase"]);
        assert_eq!(checked.status, operators());
    }

    #[test]
    fn a_status_behind_the_record_is_caught_up_without_a_contradiction() {
        let mut ended = operators();
        ended.phase = Some(RunPhase::Failed);
        ended.steps[1] = step("load", StepPhase::Failed, 2);
        ended.steps[2] = StepStatus {
            message: Some(RESUMED.into()),
            ..step("stats", StepPhase::Skipped, 0)
        };
        let record = project(&ended);
        assert!(record.steps["stats"].resumed);
        let mut behind = operators();
        behind.steps.truncate(1);
        behind.revision = None;
        let checked = trusted(&behind, &record, |_| true);
        assert_eq!(checked.contradicted, Vec::<String>::new());
        assert_eq!(checked.status.phase, Some(RunPhase::Failed));
        let names: Vec<_> = checked
            .status
            .steps
            .iter()
            .map(|s| s.name.as_str())
            .collect();
        assert_eq!(names, ["extract", "load", "stats"]);
        assert_eq!(checked.status.steps[2].message.as_deref(), Some(RESUMED));
    }

    #[test]
    fn only_a_run_with_jobs_is_adopted_from_its_status() {
        let shown = operators();
        assert_eq!(adopted(&shown, true), project(&shown));
        assert_eq!(adopted(&shown, false), RunRecord::default());
    }
}
