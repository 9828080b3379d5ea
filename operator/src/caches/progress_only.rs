//! Keeps the run controller from being woken by the gateway's progress writes.
//!
//! While a step runs, the gateway writes its counters into the run's status once a second
//! ([`crate::gateway::counters`]). Nothing the run controller decides depends on them, yet
//! each write would wake it: with a few hundred steps running, a reconcile of every running
//! run every second, each one slower for the others (and a run just created waits behind
//! them for its first look). So a run's trigger passes only when something other than the
//! step counters changed since the controller was last triggered for it.

use std::collections::HashMap;
use std::hash::{DefaultHasher, Hash, Hasher};

use futures::StreamExt;
use kube::ResourceExt;
use synqx_api::PipelineRun;

use super::Subscription;

/// Fingerprints kept before the table is forgotten: a forgotten run only lets its next
/// change through once, so this bounds memory and costs nothing else.
const REMEMBERED: usize = 10_000;

/// `runs` without the changes that only moved step counters.
pub fn skip_progress_only(runs: Subscription<PipelineRun>) -> Subscription<PipelineRun> {
    let mut last: HashMap<(String, String), u64> = HashMap::new();
    Box::pin(runs.filter(move |run| {
        let key = (run.namespace().unwrap_or_default(), run.name_any());
        if last.len() >= REMEMBERED && !last.contains_key(&key) {
            last.clear();
        }
        let changed = match fingerprint(run) {
            Some(print) => last.insert(key, print) != Some(print),
            // Not hashable (never seen): let it through rather than risk missing a change.
            None => {
                last.remove(&key);
                true
            }
        };
        futures::future::ready(changed)
    }))
}

/// A hash of the run with its step counters and resource version left out.
fn fingerprint(run: &PipelineRun) -> Option<u64> {
    let mut run = run.clone();
    run.metadata.resource_version = None;
    run.metadata.managed_fields = None;
    if let Some(status) = run.status.as_mut() {
        for step in &mut status.steps {
            step.rows_read = None;
            step.rows_written = None;
            step.rows_rejected = None;
            step.bytes_read = None;
            step.bytes_written = None;
            step.watermark = None;
        }
    }
    // Serialized into the hasher, since the API types do not implement Hash.
    let mut hasher = HashWriter(DefaultHasher::new());
    serde_json::to_writer(&mut hasher, &run).ok()?;
    Some(hasher.0.finish())
}

struct HashWriter(DefaultHasher);

impl std::io::Write for HashWriter {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        bytes.hash(&mut self.0);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use futures::StreamExt;
    use synqx_api::run::{PipelineRef, PipelineRunSpec, PipelineRunStatus, StepPhase, StepStatus};

    use super::*;

    fn run(phase: StepPhase, rows: Option<u64>, version: &str) -> Arc<PipelineRun> {
        let spec = PipelineRunSpec {
            pipeline_ref: PipelineRef {
                name: "orders".into(),
            },
            resume_from: None,
            cancel: None,
        };
        let mut run = PipelineRun::new("orders-1", spec);
        run.metadata.namespace = Some("etl".into());
        run.metadata.resource_version = Some(version.into());
        run.status = Some(PipelineRunStatus {
            steps: vec![StepStatus {
                name: "load".into(),
                phase: Some(phase),
                rows_read: rows,
                bytes_read: rows.map(|r| r * 8),
                ..Default::default()
            }],
            ..Default::default()
        });
        Arc::new(run)
    }

    #[tokio::test]
    async fn counter_only_changes_do_not_trigger_the_run_controller() {
        let events = vec![
            run(StepPhase::Running, None, "1"),
            run(StepPhase::Running, Some(10), "2"),
            run(StepPhase::Running, Some(20), "3"),
            run(StepPhase::Succeeded, Some(20), "4"),
            run(StepPhase::Succeeded, Some(20), "5"),
        ];
        let passed: Vec<_> = skip_progress_only(Box::pin(futures::stream::iter(events)))
            .map(|r| r.resource_version().unwrap_or_default())
            .collect()
            .await;
        // The first sight, then the phase change; counters and a bare resync are dropped.
        assert_eq!(passed, ["1", "4"]);
    }
}
