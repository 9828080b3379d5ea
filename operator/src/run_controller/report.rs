//! Report: the run's status applied under the run controller's field manager, an Event for
//! every transition, and the metrics of steps and runs that ended.

use json_patch::{AddOperation, PatchOperation, ReplaceOperation, TestOperation};
use jsonptr::PointerBuf;
use kube::api::{Patch, PatchParams};
use kube::{Api, Resource, ResourceExt};
use synqx_api::PipelineRun;
use synqx_api::apply::StatusApply;
use synqx_api::run::{PipelineRunStatus, RunPhase, StepPhase};
use synqx_api::run_record::{RECORD_ANNOTATION, RunRecord};

use super::observe::JobStates;
use super::status::{Transition, controller_fields, transitions};
use crate::condition::Reason;
use crate::context::{self, Operator};
use crate::error::Result;
use crate::event_reason::EventReason;

/// The field manager of everything the run controller writes in a run's status.
pub const FIELD_MANAGER: &str = "synqx-run-controller";

/// One run being reported on.
pub struct Reporter<'a> {
    pub ctx: &'a Operator,
    pub run: &'a PipelineRun,
}

impl Reporter<'_> {
    fn namespace(&self) -> String {
        self.run.namespace().unwrap_or_default()
    }

    fn pipeline(&self) -> &str {
        &self.run.spec.pipeline_ref.name
    }

    pub async fn apply(&self, status: PipelineRunStatus) -> Result<()> {
        let runs: Api<PipelineRun> = Api::namespaced(self.ctx.client.clone(), &self.namespace());
        let body = StatusApply::of::<PipelineRun>(status);
        let params = PatchParams::apply(FIELD_MANAGER).force();
        let written = runs
            .patch_status(&self.run.name_any(), &params, &Patch::Apply(&body))
            .await?;
        self.ctx.own_writes.saw(&written);
        Ok(())
    }

    /// Writes `record` as the operator's record of the run unless `stored` (the annotation's
    /// text this pass read, or last wrote) holds it already; returns the text now stored. The
    /// write is a JSON patch that first tests that the run still holds `stored` (or, with
    /// none, still is the version read): a pass that decided from an older run writes
    /// nothing, fails and is tried again on the current one.
    pub async fn record(&self, stored: Option<&str>, record: &RunRecord) -> Result<String> {
        let text = record.to_annotation();
        if stored == Some(text.as_str()) {
            return Ok(text);
        }
        let ops = record_patch(self.run, stored, &text);
        let patch = Patch::<()>::Json(json_patch::Patch(ops));
        let runs: Api<PipelineRun> = Api::namespaced(self.ctx.client.clone(), &self.namespace());
        let written = runs
            .patch(&self.run.name_any(), &PatchParams::default(), &patch)
            .await?;
        self.ctx.own_writes.saw(&written);
        Ok(text)
    }

    /// Says that the status shown contradicted the operator's record in `fields` (a writer
    /// other than the operator, such as a step pod's service account, changed them): a
    /// warning in the log and an Event, naming the fields and never the values found. The
    /// status the caller applies next restores them.
    pub fn contradicted(&self, fields: &[String]) {
        if fields.is_empty() {
            return;
        }
        let listed = fields.join(", ");
        tracing::warn!(
            namespace = %self.namespace(),
            run = %self.run.name_any(),
            fields = %listed,
            "the run's status contradicted the operator's record; restoring it"
        );
        let note = format!(
            "{listed} did not match the operator's record of this run (written by another identity than the operator, such as a step pod's service account); restored from the record, which decides"
        );
        self.ctx.event(
            &self.run.object_ref(&()),
            true,
            EventReason::StatusRestored,
            note,
        );
    }

    /// Applies the status of a run that goes on (or ended normally) and tells what moved
    /// since `previous` (the status as the operator's record has it); a status the
    /// controller wrote before as it is now is not written again (most Job events change
    /// nothing a user sees).
    pub async fn progress(
        &self,
        previous: &PipelineRunStatus,
        status: PipelineRunStatus,
        jobs: &JobStates,
    ) -> Result<()> {
        let shown = self.run.status.clone().unwrap_or_default();
        if owned(&shown) == status {
            return Ok(());
        }
        let moved = transitions(previous, &status);
        let phase = status.phase.unwrap_or_default();
        let revision = status.revision.clone().unwrap_or_default();
        self.apply(status).await?;
        let reference = self.run.object_ref(&());
        if previous.revision.is_none() {
            let note = format!("pinned revision {revision}");
            self.ctx
                .event(&reference, false, EventReason::RunStarted, note);
        }
        let mut skipped = Vec::new();
        for transition in moved {
            self.measure(&transition, jobs);
            let Transition {
                step,
                phase: step_phase,
                attempt,
                message,
                job,
            } = transition;
            tracing::info!(
                namespace = %self.namespace(),
                run = %self.run.name_any(),
                step = %step,
                attempt,
                phase = step_phase.as_str(),
                message = message.as_deref().unwrap_or_default(),
                "step transition"
            );
            let Some(job) = job else {
                // Steps that never got a Job (skipped) are told in one Event below.
                skipped.push(match message {
                    Some(m) => format!("{step} ({m})"),
                    None => step,
                });
                continue;
            };
            if !self.ctx.settings.step_events.tells(step_phase) {
                continue;
            }
            let warning = matches!(step_phase, StepPhase::Failed | StepPhase::Retrying);
            let reason = EventReason::Step(step_phase);
            let note = match message {
                Some(m) => format!("step {step} attempt {attempt}: {m}"),
                None => format!("step {step} attempt {attempt}"),
            };
            let related = context::reference("batch/v1", "Job", &self.namespace(), &job);
            self.ctx
                .event_about(&reference, Some(related), warning, reason, note);
        }
        if !skipped.is_empty() {
            let note = format!("not run: {}", skipped.join("; "));
            self.ctx
                .event(&reference, false, EventReason::StepsSkipped, note);
        }
        if phase.is_finished() {
            self.ended(phase);
        }
        Ok(())
    }

    /// Applies the status of a run that cannot go on, with an Event saying why.
    pub async fn ends(
        &self,
        status: PipelineRunStatus,
        reason: Reason,
        message: &str,
    ) -> Result<()> {
        let phase = status.phase.unwrap_or(RunPhase::Failed);
        self.apply(status).await?;
        self.ctx.event(
            &self.run.object_ref(&()),
            true,
            EventReason::Condition(reason),
            message.to_string(),
        );
        self.count_run(phase);
        Ok(())
    }

    /// Applies the status of a run that waits for its Pipeline, once per message.
    pub async fn waits(&self, status: PipelineRunStatus, message: &str) -> Result<()> {
        let previous = self.run.status.clone().unwrap_or_default();
        if previous.conditions == status.conditions && previous.phase == status.phase {
            return Ok(());
        }
        self.apply(status).await?;
        self.ctx.event(
            &self.run.object_ref(&()),
            true,
            EventReason::Waiting,
            message.to_string(),
        );
        Ok(())
    }

    fn ended(&self, phase: RunPhase) {
        let name = self.run.name_any();
        tracing::info!(namespace = %self.namespace(), run = %name, phase = phase.as_str(), "run ended");
        let warning = phase != RunPhase::Succeeded;
        let note = format!("run {name} ended {}", phase.as_str());
        self.ctx.event(
            &self.run.object_ref(&()),
            warning,
            EventReason::RunEnded(phase),
            note,
        );
        self.count_run(phase);
    }

    fn count_run(&self, phase: RunPhase) {
        let started = self
            .run
            .status
            .as_ref()
            .and_then(|s| s.start_time.as_deref());
        let metrics = &self.ctx.metrics;
        metrics.run_ended(&self.namespace(), self.pipeline(), phase, started);
    }

    /// The duration of an attempt that ended, and the rows and bytes of one that succeeded.
    fn measure(&self, transition: &Transition, jobs: &JobStates) {
        if !matches!(
            transition.phase,
            StepPhase::Succeeded | StepPhase::Failed | StepPhase::Retrying
        ) {
            return;
        }
        let key = (transition.step.clone(), transition.attempt);
        let namespace = self.namespace();
        let step = transition.step.as_str();
        if let (Some(started), Some(finished)) = (jobs.started.get(&key), jobs.finished.get(&key)) {
            let seconds = (*finished - *started).num_milliseconds().max(0) as f64 / 1000.0;
            let metrics = &self.ctx.metrics;
            metrics.step_ended(&namespace, self.pipeline(), step, transition.phase, seconds);
        }
        if transition.phase == StepPhase::Succeeded
            && let Some(report) = jobs.reports.get(&key)
        {
            let metrics = &self.ctx.metrics;
            metrics.step_succeeded(&namespace, self.pipeline(), step, report);
        }
    }
}

/// The part of a run's status the controller writes: all of it but the runner's fields of
/// each step.
pub fn owned(status: &PipelineRunStatus) -> PipelineRunStatus {
    PipelineRunStatus {
        steps: status.steps.iter().map(controller_fields).collect(),
        ..status.clone()
    }
}
/// The JSON patch that writes `text` as the run's record: it tests that the run still holds
/// `stored` (or, with none, still is the version read) before it writes.
fn record_patch(run: &PipelineRun, stored: Option<&str>, text: &str) -> Vec<PatchOperation> {
    let path = PointerBuf::from_tokens(["metadata", "annotations", RECORD_ANNOTATION]);
    match stored {
        Some(old) => vec![
            PatchOperation::Test(TestOperation {
                path: path.clone(),
                value: old.into(),
            }),
            PatchOperation::Replace(ReplaceOperation {
                path,
                value: text.to_string().into(),
            }),
        ],
        None => {
            let version = run.resource_version().unwrap_or_default();
            let add = if run.metadata.annotations.is_some() {
                AddOperation {
                    path,
                    value: text.to_string().into(),
                }
            } else {
                let annotations = serde_json::Map::from_iter([(
                    RECORD_ANNOTATION.to_string(),
                    text.to_string().into(),
                )]);
                AddOperation {
                    path: PointerBuf::from_tokens(["metadata", "annotations"]),
                    value: annotations.into(),
                }
            };
            vec![
                PatchOperation::Test(TestOperation {
                    path: PointerBuf::from_tokens(["metadata", "resourceVersion"]),
                    value: version.into(),
                }),
                PatchOperation::Add(add),
            ]
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(annotations: Option<&[(&str, &str)]>) -> PipelineRun {
        let mut run = PipelineRun::new("r", Default::default());
        run.metadata.resource_version = Some("41".into());
        run.metadata.annotations = annotations.map(|a| {
            a.iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect()
        });
        run
    }

    /// The record's key escapes its `/` in the pointer; the write tests what it read first.
    #[test]
    fn the_record_patch_tests_what_was_read_before_it_writes() {
        let json = |ops: Vec<PatchOperation>| serde_json::to_value(ops).unwrap_or_default();
        let key = "/metadata/annotations/synqx.io~1record";
        assert_eq!(
            json(record_patch(&run(None), Some("old"), "new")),
            serde_json::json!([
                {"op": "test", "path": key, "value": "old"},
                {"op": "replace", "path": key, "value": "new"},
            ])
        );
        assert_eq!(
            json(record_patch(&run(Some(&[("a", "b")])), None, "new")),
            serde_json::json!([
                {"op": "test", "path": "/metadata/resourceVersion", "value": "41"},
                {"op": "add", "path": key, "value": "new"},
            ])
        );
        assert_eq!(
            json(record_patch(&run(None), None, "new")),
            serde_json::json!([
                {"op": "test", "path": "/metadata/resourceVersion", "value": "41"},
                {"op": "add", "path": "/metadata/annotations", "value": {RECORD_ANNOTATION: "new"}},
            ])
        );
    }
}
