//! The counters step pods report, written into their runs' status: the latest report of each
//! step kept in memory and flushed once a second as one JSON patch per run (so at most one
//! status write per run a second, whatever the number of steps or reports). The patch tests
//! that each index it writes still holds that step, and never removes a field. Counters of
//! an attempt that ended are left to the run controller, which writes them from the step's
//! report in its termination message ([`crate::run_controller::counters`]): a late
//! telemetry write never undoes the final numbers.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Mutex, MutexGuard, PoisonError};

use json_patch::{AddOperation, PatchOperation, TestOperation};
use jsonptr::PointerBuf;
use kube::api::{Patch, PatchParams};
use kube::runtime::reflector::ObjectRef;
use kube::{Api, Client};
use serde_json::Value;
use synqx_api::PipelineRun;
use synqx_api::run::{PipelineRunStatus, StepPhase, StepStatus};
use synqx_api::telemetry::TelemetryReport;

use super::feed::Stores;

/// The field manager of the counters the gateway writes.
pub const FIELD_MANAGER: &str = "synqx-gateway";

type RunKey = (String, String);

/// A step's latest reported counters.
#[derive(Clone, Debug, PartialEq)]
pub struct Pending {
    pub attempt: u32,
    pub counters: StepStatus,
}

/// What one flush of a run writes.
#[derive(Debug, Default, PartialEq)]
pub struct RunPatch {
    /// JSON patch operations; empty when there is nothing to write.
    pub ops: Vec<PatchOperation>,
    /// Steps settled by this patch once it is written (or with nothing to write).
    pub settled: Vec<String>,
}

/// The reports not yet written, by run and step.
#[derive(Default)]
pub struct CounterWriter {
    pending: Mutex<HashMap<RunKey, BTreeMap<String, Pending>>>,
}

impl CounterWriter {
    fn pending(&self) -> MutexGuard<'_, HashMap<RunKey, BTreeMap<String, Pending>>> {
        self.pending.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Keeps a report's counters, unless a later attempt of its step reported already.
    pub fn take(&self, report: TelemetryReport) {
        let key = (report.namespace, report.run);
        let mut pending = self.pending();
        let steps = pending.entry(key).or_default();
        let newer = steps
            .get(&report.step)
            .is_none_or(|p| p.attempt <= report.attempt);
        if newer {
            let mut counters = report.counters;
            counters.name.clone_from(&report.step);
            steps.insert(
                report.step,
                Pending {
                    attempt: report.attempt,
                    counters,
                },
            );
        }
    }

    /// Writes every run's pending counters, one patch per run.
    pub async fn flush(&self, client: &Client, stores: &Stores) {
        let runs: Vec<(RunKey, BTreeMap<String, Pending>)> = self
            .pending()
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        for ((namespace, name), steps) in runs {
            let Some((_, store)) = stores.of(&namespace) else {
                self.settle(&(namespace, name), &steps, None);
                continue;
            };
            let Some(run) = store.get(&ObjectRef::new(&name).within(&namespace)) else {
                // A run deleted, or not seen by the watch yet: kept until it is.
                continue;
            };
            let status = run.status.clone().unwrap_or_default();
            let patch = run_patch(&status, &steps);
            let key = (namespace.clone(), name.clone());
            if patch.ops.is_empty() {
                self.settle(&key, &steps, Some(&patch.settled));
                continue;
            }
            let api: Api<PipelineRun> = Api::namespaced(client.clone(), &namespace);
            let params = PatchParams {
                field_manager: Some(FIELD_MANAGER.into()),
                ..Default::default()
            };
            let written = api
                .patch_status(
                    &name,
                    &params,
                    &Patch::<()>::Json(json_patch::Patch(patch.ops)),
                )
                .await
                .map(|_| ());
            match written {
                Ok(()) => self.settle(&key, &steps, Some(&patch.settled)),
                // A test that failed (the steps moved) or an unreachable API server: the
                // counters stay pending for the next flush, against the newer status.
                Err(error) => tracing::info!(
                    %error, namespace = %namespace, run = %name,
                    "writing step counters failed; trying again in a second"
                ),
            }
        }
    }

    /// Forgets the steps settled (all of them when `settled` is `None`) unless a newer
    /// report came in since `flushed` was taken.
    fn settle(
        &self,
        key: &RunKey,
        flushed: &BTreeMap<String, Pending>,
        settled: Option<&[String]>,
    ) {
        let mut pending = self.pending();
        let Some(steps) = pending.get_mut(key) else {
            return;
        };
        for (step, was) in flushed {
            if settled.is_some_and(|s| !s.contains(step)) {
                continue;
            }
            if steps.get(step) == Some(was) {
                steps.remove(step);
            }
        }
        if steps.is_empty() {
            pending.remove(key);
        }
    }
}

/// The patch that writes `pending` into `status`. A step is settled when written, when its
/// counters are shown already, when a later attempt of it runs, or when its attempt ended (the
/// run controller writes the final counters). A step whose attempt the status does not show
/// yet stays pending.
pub fn run_patch(status: &PipelineRunStatus, pending: &BTreeMap<String, Pending>) -> RunPatch {
    let mut patch = RunPatch::default();
    for (step, reported) in pending {
        let Some((index, shown)) = status
            .steps
            .iter()
            .enumerate()
            .find(|(_, s)| &s.name == step)
        else {
            continue;
        };
        let attempt = shown.attempt.unwrap_or(0);
        if attempt < reported.attempt {
            continue;
        }
        let ended = shown.phase.is_some_and(|p| p != StepPhase::Running);
        if attempt > reported.attempt || ended || shown.counters() == reported.counters {
            patch.settled.push(step.clone());
            continue;
        }
        // Each counter the report has, under the name the status gives it (the report's
        // counters serialize as the status entry's fields), after a test that the index
        // still holds the step.
        let at =
            |field: &str| PointerBuf::from_tokens(["status", "steps", &index.to_string(), field]);
        let Ok(Value::Object(fields)) = serde_json::to_value(&reported.counters) else {
            continue;
        };
        patch.ops.push(PatchOperation::Test(TestOperation {
            path: at("name"),
            value: Value::String(step.clone()),
        }));
        for (field, value) in fields.into_iter().filter(|(f, _)| f != "name") {
            patch.ops.push(PatchOperation::Add(AddOperation {
                path: at(&field),
                value,
            }));
        }
        patch.settled.push(step.clone());
    }
    patch
}

#[cfg(test)]
mod tests {

    use super::*;

    fn shown(name: &str, attempt: u32, phase: StepPhase, rows: Option<u64>) -> StepStatus {
        StepStatus {
            name: name.into(),
            attempt: Some(attempt),
            phase: Some(phase),
            rows_read: rows,
            ..Default::default()
        }
    }

    fn reported(step: &str, attempt: u32, rows: u64) -> TelemetryReport {
        TelemetryReport {
            namespace: "etl".into(),
            run: "orders-1".into(),
            step: step.into(),
            attempt,
            counters: StepStatus {
                name: step.into(),
                rows_read: Some(rows),
                bytes_read: Some(rows * 8),
                ..Default::default()
            },
            ..Default::default()
        }
    }

    fn pending(reports: Vec<TelemetryReport>) -> BTreeMap<String, Pending> {
        let writer = CounterWriter::default();
        for report in reports {
            writer.take(report);
        }
        writer
            .pending()
            .remove(&("etl".to_string(), "orders-1".to_string()))
            .unwrap_or_default()
    }

    #[test]
    fn the_latest_report_of_the_latest_attempt_is_kept() {
        let kept = pending(vec![
            reported("load", 2, 5),
            reported("load", 1, 99),
            reported("load", 2, 7),
            reported("count", 1, 1),
        ]);
        let rows: Vec<(&str, u32, Option<u64>)> = kept
            .iter()
            .map(|(s, p)| (s.as_str(), p.attempt, p.counters.rows_read))
            .collect();
        assert_eq!(rows, vec![("count", 1, Some(1)), ("load", 2, Some(7))]);
    }

    #[test]
    fn one_patch_writes_every_running_step_and_tests_its_index() {
        let status = PipelineRunStatus {
            steps: vec![
                shown("extract", 1, StepPhase::Succeeded, Some(3)),
                shown("load", 2, StepPhase::Running, Some(1)),
                shown("count", 1, StepPhase::Running, None),
            ],
            ..Default::default()
        };
        let patch = run_patch(
            &status,
            &pending(vec![reported("load", 2, 7), reported("count", 1, 4)]),
        );
        assert_eq!(
            serde_json::to_value(&patch.ops).unwrap_or_default(),
            serde_json::json!([
                serde_json::json!({"op": "test", "path": "/status/steps/2/name", "value": "count"}),
                serde_json::json!({"op": "add", "path": "/status/steps/2/rowsRead", "value": 4}),
                serde_json::json!({"op": "add", "path": "/status/steps/2/bytesRead", "value": 32}),
                serde_json::json!({"op": "test", "path": "/status/steps/1/name", "value": "load"}),
                serde_json::json!({"op": "add", "path": "/status/steps/1/rowsRead", "value": 7}),
                serde_json::json!({"op": "add", "path": "/status/steps/1/bytesRead", "value": 56}),
            ])
        );
        assert_eq!(patch.settled, vec!["count".to_string(), "load".to_string()]);
    }

    #[test]
    fn ended_older_unshown_and_unchanged_attempts_write_nothing() {
        let status = PipelineRunStatus {
            steps: vec![
                // Ended: the run controller writes the final counters from the report.
                shown("extract", 1, StepPhase::Succeeded, Some(3)),
                // Retried since: the report is of an older attempt.
                shown("load", 3, StepPhase::Running, None),
                // Shown as reported already.
                StepStatus {
                    bytes_read: Some(16),
                    ..shown("count", 1, StepPhase::Running, Some(2))
                },
                // The controller has not recorded attempt 2 yet.
                shown("stats", 1, StepPhase::Retrying, None),
            ],
            ..Default::default()
        };
        let patch = run_patch(
            &status,
            &pending(vec![
                reported("extract", 1, 2),
                reported("load", 2, 7),
                reported("count", 1, 2),
                reported("stats", 2, 9),
                reported("missing", 1, 9),
            ]),
        );
        assert!(patch.ops.is_empty(), "{:?}", patch.ops);
        assert_eq!(
            patch.settled,
            vec![
                "count".to_string(),
                "extract".to_string(),
                "load".to_string()
            ]
        );
    }

    #[test]
    fn settled_steps_are_forgotten_unless_a_newer_report_came_in() {
        let writer = CounterWriter::default();
        writer.take(reported("load", 1, 5));
        writer.take(reported("count", 1, 1));
        let key = ("etl".to_string(), "orders-1".to_string());
        let flushed = writer.pending().get(&key).cloned().unwrap_or_default();
        writer.take(reported("load", 1, 6));
        writer.settle(
            &key,
            &flushed,
            Some(&["load".to_string(), "count".to_string()]),
        );
        let left = writer.pending().get(&key).cloned().unwrap_or_default();
        assert_eq!(
            left.values()
                .map(|p| p.counters.rows_read)
                .collect::<Vec<_>>(),
            vec![Some(6)]
        );
    }
}
