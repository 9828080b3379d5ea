//! `synqx run`: the whole DAG in-process, scheduled exactly as the operator schedules it
//! (`synqx_api::scheduler`), with progress bars, a summary, and runs and watermarks kept in
//! the local state database.

mod drive;
pub mod live;
mod progress;
pub mod serve;
mod summary;
#[cfg(test)]
mod tests;

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use synqx_api::dag::Plan;
use synqx_api::pipeline::Step;
use synqx_api::run::{RunPhase, StepPhase};
use synqx_api::scheduler::RunPolicy;
use synqx_api::validate::Report;
use tokio_util::sync::CancellationToken;

pub use live::Live;
pub use progress::Progress;
pub use summary::{RunSummary, StepSummary, group, render};

use crate::connectors::ConnectionRef;
use crate::engine::{self, Counters, rejects};
use crate::error::{Error, Result};
use crate::secrets::Secrets;
use crate::state::StateStore;
use crate::step::StepInputs;
use live::Level;

/// Options of a local run.
#[derive(Clone, Debug, Default)]
pub struct RunOptions {
    /// Run only these steps (their upstream steps are assumed done).
    pub steps: Vec<String>,
    /// Ignore stored watermarks: read everything.
    pub full_refresh: bool,
    /// Steps running at once, replacing the pipeline's `parallelism` (default: every step
    /// whose upstream steps succeeded).
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
    /// The run as the web UI follows it (`synqx run --ui`), when served.
    pub live: Option<Live>,
}

impl LocalRun<'_> {
    /// Runs the pipeline's plan with the scheduler the operator uses: each step as soon as
    /// its upstream steps succeeded, at most `parallelism` at once, retries after their
    /// backoff, `onFailure` as on a cluster; records everything in the state database.
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
        let started = Instant::now();
        let run_id = self.state.start_run(self.pipeline, &plan.hash).await?;
        if let Some(live) = &self.live {
            let shown = plan.order().filter(|s| {
                self.options.steps.is_empty() || self.options.steps.iter().any(|w| w == s)
            });
            live.begin(&run_id, self.pipeline, shown);
        }
        let mut policy = RunPolicy::of(&pipeline.spec);
        if let Some(parallelism) = self.options.parallelism {
            policy.parallelism = Some(u32::try_from(parallelism.max(1)).unwrap_or(u32::MAX));
        }
        // Steps left out with --step are taken as done, as a resumed run takes the steps that
        // succeeded in the run it resumes from.
        let selected = |step: &str| {
            self.options.steps.is_empty() || self.options.steps.iter().any(|w| w == step)
        };
        let left_out: BTreeSet<String> = plan
            .order()
            .filter(|s| !selected(s))
            .map(String::from)
            .collect();
        let mut recorder = Recorder {
            run: self,
            run_id: &run_id,
            policy: &policy,
            failed: None,
        };
        let run = run_id.as_str();
        let driven = drive::drive(
            plan,
            &policy,
            &left_out,
            &self.cancel,
            |step, attempt| async move {
                match plan.step(&step) {
                    Some(planned) => self.run_step(run, &planned.step, attempt).await,
                    None => StepSummary::ended(
                        &step,
                        StepPhase::Failed,
                        format!("step \"{step}\" is not in the plan"),
                        Default::default(),
                    ),
                }
            },
            &mut recorder,
        )
        .await;
        if let Some(error) = recorder.failed {
            return Err(error);
        }
        let status = if self.cancel.is_cancelled() {
            RunPhase::Cancelled
        } else {
            driven.phase
        };
        self.state.finish_run(&run_id, status.as_str()).await?;
        let summary = RunSummary {
            pipeline: self.pipeline.to_string(),
            run_id,
            status,
            duration: started.elapsed(),
            steps: driven.steps,
        };
        if let Some(live) = &self.live {
            live.finish(&summary);
        }
        Ok(summary)
    }

    async fn run_step(&self, run_id: &str, step: &Step, attempt: u32) -> StepSummary {
        let counters = Arc::new(Counters::default());
        let bar = self.progress.start(&step.name, counters.clone());
        let started_at = chrono::Utc::now();
        let started = Instant::now();
        let follower = self.live.as_ref().map(|live| {
            live.step_started(&step.name, attempt);
            live.log(
                &step.name,
                attempt,
                Level::Info,
                live::describe(step, attempt),
            );
            live.follow_counters(&step.name, counters.clone())
        });
        let result = self.execute(run_id, step, counters.clone()).await;
        if let Some(follower) = follower {
            follower.abort();
        }
        let mut summary = match result {
            Ok(outcome) => StepSummary::succeeded(&step.name, outcome),
            Err(Error::Cancelled(message)) => StepSummary::ended(
                &step.name,
                StepPhase::Cancelled,
                message,
                counters.snapshot(),
            ),
            Err(e) => StepSummary::ended(
                &step.name,
                StepPhase::Failed,
                e.to_string(),
                counters.snapshot(),
            ),
        };
        summary.attempt = attempt;
        summary.started_at = Some(started_at);
        summary.duration = started.elapsed();
        self.progress.finish(bar, &summary);
        if let Some(live) = &self.live {
            for (level, line) in live::outcome(&summary) {
                live.log(&step.name, attempt, level, line);
            }
        }
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
        Ok(ConnectionRef::of_file(doc, self.secrets))
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
            run: run_id.to_string(),
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

/// Records each step in the state database as it ends and says when one is retried.
struct Recorder<'r, 'a> {
    run: &'r LocalRun<'a>,
    run_id: &'r str,
    policy: &'r RunPolicy,
    /// The first error of the state database; the run returns it at the end.
    failed: Option<Error>,
}

impl drive::Observer for Recorder<'_, '_> {
    async fn ended(&mut self, summary: &StepSummary) {
        if let Some(live) = &self.run.live {
            live.step_ended(summary);
        }
        if self.failed.is_some() {
            return;
        }
        let recorded = self
            .run
            .state
            .record_step(self.run_id, self.run.pipeline, &summary.record())
            .await;
        if let Err(error) = recorded {
            self.failed = Some(error);
        }
    }

    fn retrying(&mut self, summary: &StepSummary, wait: Duration) {
        let limit = self
            .run
            .report
            .plans
            .get(self.run.pipeline)
            .and_then(|p| p.step(&summary.name))
            .and_then(|p| self.policy.retry_of(&p.step))
            .map_or(0, |r| r.limit);
        let note = format!(
            "step \"{}\" failed (attempt {} of {}), retrying in {}: {}",
            summary.name,
            summary.attempt,
            limit.saturating_add(1),
            synqx_api::duration::format_duration(wait),
            summary.message.as_deref().unwrap_or_default()
        );
        if let Some(live) = &self.run.live {
            live.retrying(summary);
            live.log(&summary.name, summary.attempt, Level::Warn, note.clone());
        }
        self.run.progress.note(&note);
    }
}
