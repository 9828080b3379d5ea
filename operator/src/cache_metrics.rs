//! The state gauges, read from the controllers' caches at scrape time: each Pipeline's
//! stale threshold and newest success, each incremental step's watermark, and when each
//! running step started. Read at scrape time, they are never stale, survive a restart of
//! the operator (they come from the resources' status) and vanish with their objects.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use kube::ResourceExt;
use kube::runtime::reflector::Store;
use synqx_api::run::{RunPhase, StepPhase};
use synqx_api::run_record::RunRecord;
use synqx_api::{Pipeline, PipelineRun};

use crate::context::parse_time;

/// The annotation that sets how long a Pipeline's watermarks may stand still.
pub const STALE_AFTER: &str = "synqx.io/stale-after";
/// The threshold of Pipelines without the annotation.
pub const DEFAULT_STALE_AFTER: Duration = Duration::from_secs(24 * 3600);

/// The caches of the Pipeline and PipelineRun controllers.
pub struct Caches {
    pub pipelines: Store<Pipeline>,
    pub runs: Store<PipelineRun>,
}

/// What every set of caches holds (the operator keeps one per namespace it serves).
pub fn observe_all(caches: &[Caches], now: chrono::DateTime<chrono::Utc>) -> Observed {
    let pipelines: Vec<Arc<Pipeline>> = caches.iter().flat_map(|c| c.pipelines.state()).collect();
    let runs: Vec<Arc<PipelineRun>> = caches.iter().flat_map(|c| c.runs.state()).collect();
    observe(&pipelines, &runs, now)
}

type PipelineKey = (String, String);
type StepKey = (String, String, String);

/// What the gauges show at one scrape; times are Unix seconds.
#[derive(Debug, Default, PartialEq)]
pub struct Observed {
    pub now: f64,
    /// Every Pipeline, with its stale threshold.
    pub stale_after: BTreeMap<PipelineKey, f64>,
    pub last_success: BTreeMap<PipelineKey, f64>,
    pub watermarks: BTreeMap<StepKey, f64>,
    pub step_started: BTreeMap<StepKey, f64>,
    /// Every step of every Pipeline, so its counters start at zero before its first run.
    pub steps: Vec<StepKey>,
}

/// Why a Pipeline's stale threshold annotation is not used: the threshold falls back to 24h.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StaleAfterError {
    #[error(
        "annotation {annotation}: \"{text}\" must be longer than zero (e.g. 6h); using the default 24h",
        annotation = STALE_AFTER
    )]
    Zero { text: String },
    #[error("annotation {annotation}: {source}; using the default 24h", annotation = STALE_AFTER)]
    NotADuration {
        #[source]
        source: synqx_api::duration::DurationError,
    },
}

/// The stale threshold a Pipeline sets with its annotation, or the default; an annotation
/// that is not a duration is an error that names it (the threshold falls back to 24h).
pub fn stale_after(pipeline: &Pipeline) -> Result<Duration, StaleAfterError> {
    let Some(text) = pipeline.annotations().get(STALE_AFTER) else {
        return Ok(DEFAULT_STALE_AFTER);
    };
    match synqx_api::duration::parse_duration(text) {
        Ok(duration) if !duration.is_zero() => Ok(duration),
        Ok(_) => Err(StaleAfterError::Zero { text: text.clone() }),
        Err(source) => Err(StaleAfterError::NotADuration { source }),
    }
}

fn unix(text: &str) -> Option<f64> {
    parse_time(text).map(|t| t.timestamp_millis() as f64 / 1000.0)
}

pub fn observe(
    pipelines: &[Arc<Pipeline>],
    runs: &[Arc<PipelineRun>],
    now: chrono::DateTime<chrono::Utc>,
) -> Observed {
    let mut observed = Observed {
        now: now.timestamp_millis() as f64 / 1000.0,
        ..Default::default()
    };
    for pipeline in pipelines {
        let namespace = pipeline.namespace().unwrap_or_default();
        let name = pipeline.name_any();
        let threshold = stale_after(pipeline).unwrap_or(DEFAULT_STALE_AFTER);
        observed
            .stale_after
            .insert((namespace.clone(), name.clone()), threshold.as_secs_f64());
        for step in &pipeline.spec.steps {
            let key = (namespace.clone(), name.clone(), step.name.clone());
            observed.steps.push(key);
        }
        let watermarks = pipeline.status.iter().flat_map(|s| &s.watermarks);
        for (step, watermark) in watermarks {
            if let Some(at) = watermark.updated_at.as_deref().and_then(unix) {
                let key = (namespace.clone(), name.clone(), step.clone());
                observed.watermarks.insert(key, at);
            }
        }
    }
    for run in runs {
        let Some(status) = &run.status else { continue };
        let namespace = run.namespace().unwrap_or_default();
        let pipeline = run.spec.pipeline_ref.name.clone();
        // What the operator's record says: a status may claim an end it does not, or a later
        // end than the real one (which would hold SynqXPipelineStale back).
        match synqx_api::run_record::trusted_phase(run) {
            Some(RunPhase::Succeeded) => {
                let finished = RunRecord::of(run).and_then(|r| r.finished_at);
                if let Some(at) = finished.as_deref().and_then(unix) {
                    let newest = observed
                        .last_success
                        .entry((namespace, pipeline))
                        .or_insert(at);
                    *newest = newest.max(at);
                }
            }
            Some(RunPhase::Running) => {
                for step in &status.steps {
                    let started = step.started_at.as_deref().and_then(unix);
                    if let (Some(StepPhase::Running), Some(at)) = (step.phase, started) {
                        let key = (namespace.clone(), pipeline.clone(), step.name.clone());
                        let oldest = observed.step_started.entry(key).or_insert(at);
                        *oldest = oldest.min(at);
                    }
                }
            }
            _ => {}
        }
    }
    observed
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pipeline(yaml: &str) -> Arc<Pipeline> {
        Arc::new(serde_yaml::from_str(yaml).expect("pipeline"))
    }

    fn run(yaml: &str) -> Arc<PipelineRun> {
        Arc::new(serde_yaml::from_str(yaml).expect("run"))
    }

    const HEAD: &str = "apiVersion: synqx.io/v1alpha1\nkind: Pipeline\n";

    #[test]
    fn thresholds_watermarks_successes_and_running_steps_come_from_the_caches() {
        let orders = pipeline(&format!(
            "{HEAD}metadata: {{name: orders, namespace: etl, annotations: {{synqx.io/stale-after: 90m}}}}\n\
             spec: {{steps: [{{name: extract, sql: {{connection: db, statements: [x]}}}}]}}\n\
             status:\n  watermarks:\n    extract: {{value: '7', updatedAt: '2026-01-01T00:00:10Z'}}\n    never: {{value: '1'}}\n"
        ));
        let plain = pipeline(&format!(
            "{HEAD}metadata: {{name: plain, namespace: etl}}\nspec: {{steps: []}}\n"
        ));
        let runs = [
            run(
                "apiVersion: synqx.io/v1alpha1\nkind: PipelineRun\nmetadata: {name: a, namespace: etl, annotations: {synqx.io/record: '{\"phase\":\"Succeeded\",\"finishedAt\":\"2026-01-01T00:01:00Z\"}'}}\n\
                 spec: {pipelineRef: {name: orders}}\nstatus: {phase: Succeeded, completionTime: '2026-01-01T00:01:00Z'}\n",
            ),
            run(
                "apiVersion: synqx.io/v1alpha1\nkind: PipelineRun\nmetadata: {name: b, namespace: etl, annotations: {synqx.io/record: '{\"phase\":\"Succeeded\",\"finishedAt\":\"2026-01-01T00:03:00Z\"}'}}\n\
                 spec: {pipelineRef: {name: orders}}\nstatus: {phase: Succeeded, completionTime: '2026-01-01T00:03:00Z'}\n",
            ),
            // A step pod forged a later end into the status: the record's time counts.
            run(
                "apiVersion: synqx.io/v1alpha1\nkind: PipelineRun\nmetadata: {name: f, namespace: etl, annotations: {synqx.io/record: '{\"phase\":\"Succeeded\",\"finishedAt\":\"2026-01-01T00:02:00Z\"}'}}\n\
                 spec: {pipelineRef: {name: orders}}\nstatus: {phase: Succeeded, completionTime: '2099-01-01T00:00:00Z'}\n",
            ),
            // A record without an end time (an older operator's): the status alone proves nothing.
            run(
                "apiVersion: synqx.io/v1alpha1\nkind: PipelineRun\nmetadata: {name: g, namespace: etl, annotations: {synqx.io/record: '{\"phase\":\"Succeeded\"}'}}\n\
                 spec: {pipelineRef: {name: orders}}\nstatus: {phase: Succeeded, completionTime: '2099-01-01T00:00:00Z'}\n",
            ),
            run(
                "apiVersion: synqx.io/v1alpha1\nkind: PipelineRun\nmetadata: {name: c, namespace: etl}\n\
                 spec: {pipelineRef: {name: orders}}\nstatus: {phase: Failed, completionTime: '2026-01-01T00:04:00Z'}\n",
            ),
            run(
                "apiVersion: synqx.io/v1alpha1\nkind: PipelineRun\nmetadata: {name: d, namespace: etl}\n\
                 spec: {pipelineRef: {name: orders}}\nstatus:\n  phase: Running\n  steps:\n\
                 \x20   - {name: extract, phase: Running, startedAt: '2026-01-01T00:05:00Z'}\n\
                 \x20   - {name: load, phase: Pending}\n",
            ),
            run(
                "apiVersion: synqx.io/v1alpha1\nkind: PipelineRun\nmetadata: {name: e, namespace: etl}\n\
                 spec: {pipelineRef: {name: orders}}\nstatus:\n  phase: Running\n  steps:\n\
                 \x20   - {name: extract, phase: Running, startedAt: '2026-01-01T00:04:30Z'}\n",
            ),
        ];
        let now = parse_time("2026-01-01T00:10:00Z").expect("time");
        let observed = observe(&[orders, plain], &runs, now);
        let key = |p: &str| ("etl".to_string(), p.to_string());
        let step = |s: &str| ("etl".to_string(), "orders".to_string(), s.to_string());
        let base = 1_767_225_600.0; // 2026-01-01T00:00:00Z
        assert_eq!(observed.now, base + 600.0);
        assert_eq!(
            observed.stale_after,
            [(key("orders"), 5400.0), (key("plain"), 86400.0)].into()
        );
        assert_eq!(observed.watermarks, [(step("extract"), base + 10.0)].into());
        assert_eq!(
            observed.last_success,
            [(key("orders"), base + 180.0)].into()
        );
        assert_eq!(
            observed.step_started,
            [(step("extract"), base + 270.0)].into()
        );
    }

    #[test]
    fn a_threshold_that_is_not_a_duration_is_named_and_falls_back_to_a_day() {
        let broken = pipeline(&format!(
            "{HEAD}metadata: {{name: p, namespace: etl, annotations: {{synqx.io/stale-after: soon}}}}\nspec: {{steps: []}}\n"
        ));
        let problem = stale_after(&broken)
            .expect_err("not a duration")
            .to_string();
        assert!(problem.contains("synqx.io/stale-after"), "{problem}");
        assert!(problem.contains("soon"), "{problem}");
        let zero = pipeline(&format!(
            "{HEAD}metadata: {{name: p, namespace: etl, annotations: {{synqx.io/stale-after: 0s}}}}\nspec: {{steps: []}}\n"
        ));
        assert_eq!(
            stale_after(&zero),
            Err(StaleAfterError::Zero { text: "0s".into() })
        );
        let observed = observe(&[broken], &[], chrono::Utc::now());
        assert_eq!(observed.stale_after.values().next(), Some(&86400.0));
    }
}
