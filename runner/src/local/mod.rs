//! `synqx run`: the whole DAG in-process, layer by layer, with `onFailure` semantics, retries,
//! progress bars, a summary, and runs and watermarks kept in the local state database.

mod progress;
mod summary;

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use synqx_api::Connection;
use synqx_api::dag::Plan;
use synqx_api::duration::parse_duration;
use synqx_api::pipeline::{OnFailure, RetryPolicy, Step};
use synqx_api::validate::{Doc, Report};
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;

pub use progress::Progress;
pub use summary::{RunSummary, StepStatus, StepSummary, group, render};

use crate::connectors::ConnectionRef;
use crate::engine::{self, Counters, rejects};
use crate::error::{Error, Result};
use crate::secrets::Secrets;
use crate::state::StateStore;
use crate::step::StepInputs;

/// A Connection of the files, ready to be opened: relative paths in it start at the directory
/// of the file that declares it.
pub fn file_connection<'a>(doc: &'a Doc<Connection>, secrets: &'a Secrets) -> ConnectionRef<'a> {
    ConnectionRef {
        name: doc.object.metadata.name.as_deref().unwrap_or_default(),
        spec: &doc.object.spec,
        base_dir: Path::new(&doc.file)
            .parent()
            .map(Path::to_path_buf)
            .unwrap_or_default(),
        secrets,
    }
}

/// Options of a local run.
#[derive(Clone, Debug, Default)]
pub struct RunOptions {
    /// Run only these steps (their upstream steps are assumed done).
    pub steps: Vec<String>,
    /// Ignore stored watermarks: read everything.
    pub full_refresh: bool,
    /// Steps of one layer running at once (default: the pipeline's `parallelism`, else 4).
    pub parallelism: Option<usize>,
}

/// Everything the run of one pipeline needs.
pub struct LocalRun<'a> {
    pub report: &'a Report,
    pub pipeline: &'a str,
    pub secrets: &'a Secrets,
    pub state: &'a StateStore,
    pub options: RunOptions,
    pub cancel: CancellationToken,
    pub progress: Progress,
}

/// A run id that sorts by time: `20261127-093012-4f2a`.
pub fn new_run_id() -> String {
    let now = chrono::Utc::now();
    format!(
        "{}-{:04x}",
        now.format("%Y%m%d-%H%M%S"),
        now.timestamp_subsec_micros() & 0xffff
    )
}

impl LocalRun<'_> {
    /// Runs the pipeline's plan layer by layer and records everything in the state database.
    pub async fn run(&self) -> Result<RunSummary> {
        let plan = self.report.plans.get(self.pipeline).ok_or_else(|| {
            Error::Config(format!(
                "no valid Pipeline \"{}\" in the files",
                self.pipeline
            ))
        })?;
        let pipeline = self.report.bundle.pipeline(self.pipeline).ok_or_else(|| {
            Error::Config(format!("no Pipeline \"{}\" in the files", self.pipeline))
        })?;
        for wanted in &self.options.steps {
            if plan.step(wanted).is_none() {
                let names: Vec<&str> = plan.order().collect();
                return Err(Error::Config(format!(
                    "Pipeline \"{}\" has no step \"{wanted}\" (steps: {})",
                    self.pipeline,
                    names.join(", ")
                )));
            }
        }
        let run_id = new_run_id();
        let started = Instant::now();
        self.state
            .start_run(&run_id, self.pipeline, &plan.hash)
            .await?;
        let run = run_id.as_str();
        let on_failure = pipeline.spec.on_failure.unwrap_or_default();
        let parallelism = self
            .options
            .parallelism
            .or(pipeline.spec.parallelism.map(|p| p as usize))
            .unwrap_or(4)
            .max(1);
        let semaphore = Arc::new(Semaphore::new(parallelism));
        let stopped = Arc::new(AtomicBool::new(false));
        let mut results: BTreeMap<String, StepSummary> = BTreeMap::new();

        for layer in &plan.layers {
            let mut tasks = Vec::new();
            for name in layer {
                let Some(planned) = plan.step(name) else {
                    continue;
                };
                if !self.options.steps.is_empty() && !self.options.steps.contains(name) {
                    continue;
                }
                let blocked: Vec<&String> = planned
                    .upstream
                    .iter()
                    .filter(|u| {
                        results
                            .get(*u)
                            .is_some_and(|r| r.status != StepStatus::Succeeded)
                    })
                    .collect();
                if let Some(first) = blocked.first() {
                    results.insert(
                        name.clone(),
                        StepSummary::skipped(
                            name,
                            format!("upstream step \"{first}\" did not succeed"),
                        ),
                    );
                    continue;
                }
                let step = planned.step.clone();
                let semaphore = semaphore.clone();
                let stopped = stopped.clone();
                let retry = step.retry.clone().or_else(|| pipeline.spec.retry.clone());
                tasks.push(async move {
                    let _permit = semaphore.acquire().await;
                    if stopped.load(Ordering::SeqCst) {
                        return StepSummary::skipped(
                            &step.name,
                            "not started: an earlier step failed (onFailure: Stop)".into(),
                        );
                    }
                    let summary = self.run_with_retries(run, &step, retry.as_ref()).await;
                    if summary.status != StepStatus::Succeeded && on_failure == OnFailure::Stop {
                        stopped.store(true, Ordering::SeqCst);
                    }
                    summary
                });
            }
            for summary in futures::future::join_all(tasks).await {
                self.state
                    .record_step(&run_id, self.pipeline, &summary.record())
                    .await?;
                results.insert(summary.name.clone(), summary);
            }
            if stopped.load(Ordering::SeqCst) || self.cancel.is_cancelled() {
                // Stop: nothing new starts; the steps not reached are reported as skipped.
                for name in plan.order() {
                    let selected = self.options.steps.is_empty()
                        || self.options.steps.iter().any(|s| s == name);
                    if selected && !results.contains_key(name) {
                        let why = if self.cancel.is_cancelled() {
                            "not started: the run was cancelled"
                        } else {
                            "not started: an earlier step failed (onFailure: Stop)"
                        };
                        let s = StepSummary::skipped(name, why.into());
                        self.state
                            .record_step(&run_id, self.pipeline, &s.record())
                            .await?;
                        results.insert(name.to_string(), s);
                    }
                }
                break;
            }
        }

        let steps: Vec<StepSummary> = plan.order().filter_map(|n| results.remove(n)).collect();
        let status = if self.cancel.is_cancelled() {
            "Cancelled"
        } else if steps.iter().all(|s| s.status == StepStatus::Succeeded) {
            "Succeeded"
        } else {
            "Failed"
        };
        self.state.finish_run(&run_id, status).await?;
        Ok(RunSummary {
            pipeline: self.pipeline.to_string(),
            run_id,
            status: status.to_string(),
            duration: started.elapsed(),
            steps,
        })
    }

    async fn run_with_retries(
        &self,
        run_id: &str,
        step: &Step,
        retry: Option<&RetryPolicy>,
    ) -> StepSummary {
        let limit = retry.map_or(0, |r| r.limit);
        let backoff = retry.and_then(|r| r.backoff.clone()).unwrap_or_default();
        let mut delay = backoff
            .initial
            .as_deref()
            .and_then(|d| parse_duration(d).ok())
            .unwrap_or(Duration::from_secs(10));
        let max = backoff
            .max
            .as_deref()
            .and_then(|d| parse_duration(d).ok())
            .unwrap_or(Duration::from_secs(300));
        let factor = backoff.factor.unwrap_or(2.0).max(1.0);
        let mut attempt = 1;
        loop {
            let summary = self.run_step(run_id, step, attempt).await;
            let retryable =
                matches!(summary.status, StepStatus::Failed) && !self.cancel.is_cancelled();
            if !retryable || attempt > limit {
                return summary;
            }
            self.progress.note(&format!(
                "step \"{}\" failed (attempt {attempt} of {}), retrying in {}: {}",
                step.name,
                limit + 1,
                synqx_api::duration::format_duration(delay),
                summary.message.as_deref().unwrap_or_default()
            ));
            tokio::select! {
                () = tokio::time::sleep(delay) => {}
                () = self.cancel.cancelled() => return summary,
            }
            delay = Duration::from_secs_f64((delay.as_secs_f64() * factor).min(max.as_secs_f64()));
            attempt += 1;
        }
    }

    async fn run_step(&self, run_id: &str, step: &Step, attempt: u32) -> StepSummary {
        let counters = Arc::new(Counters::default());
        let bar = self.progress.start(&step.name, counters.clone());
        let started_at = chrono::Utc::now();
        let started = Instant::now();
        let result = self.execute(run_id, step, counters.clone()).await;
        let mut summary = match result {
            Ok(outcome) => StepSummary::succeeded(&step.name, outcome),
            Err(Error::Cancelled(message)) => StepSummary::ended(
                &step.name,
                StepStatus::Cancelled,
                message,
                counters.snapshot(),
            ),
            Err(e) => StepSummary::ended(
                &step.name,
                StepStatus::Failed,
                e.to_string(),
                counters.snapshot(),
            ),
        };
        summary.attempt = attempt;
        summary.started_at = Some(started_at);
        summary.duration = started.elapsed();
        self.progress.finish(bar, &summary);
        summary
    }

    fn connection(&self, name: &str) -> Result<ConnectionRef<'_>> {
        let doc = self
            .report
            .bundle
            .connections
            .iter()
            .find(|d| d.object.metadata.name.as_deref() == Some(name))
            .ok_or_else(|| Error::Config(format!("Connection \"{name}\" is not in the given files (add its YAML to the command line)")))?;
        Ok(file_connection(doc, self.secrets))
    }

    async fn execute(
        &self,
        run_id: &str,
        step: &Step,
        counters: Arc<Counters>,
    ) -> Result<engine::StepOutcome> {
        let incremental = step
            .sync
            .as_ref()
            .is_some_and(|s| s.source.incremental.is_some());
        let watermark = if self.options.full_refresh || !incremental {
            None
        } else {
            self.state.watermark(self.pipeline, &step.name).await?
        };
        let inputs = StepInputs {
            watermark,
            counters,
            cancel: self.cancel.child_token(),
            dead_letter: Some(rejects::dead_letter_file(
                self.state.dir(),
                self.pipeline,
                &step.name,
                run_id,
            )),
        };
        crate::step::execute(step, |name| self.connection(name), inputs).await
    }
}

/// The plan of the only pipeline, or of the one named.
pub fn choose_pipeline<'r>(
    report: &'r Report,
    wanted: Option<&str>,
) -> Result<(&'r str, &'r Plan)> {
    let names: Vec<&String> = report.plans.keys().collect();
    let list = || {
        names
            .iter()
            .map(|s| s.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    };
    match wanted {
        Some(w) => report
            .plans
            .get_key_value(w)
            .map(|(k, p)| (k.as_str(), p))
            .ok_or_else(|| {
                Error::Config(format!(
                    "no Pipeline \"{w}\" in the files (pipelines: {})",
                    list()
                ))
            }),
        None => match names.as_slice() {
            [one] => Ok((one.as_str(), &report.plans[*one])),
            [] => Err(Error::Config("the files hold no Pipeline".into())),
            _ => Err(Error::Config(format!(
                "the files hold several pipelines: choose one with --pipeline ({})",
                list()
            ))),
        },
    }
}
