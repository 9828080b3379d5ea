//! A local run as the web UI follows it (`synqx run --ui`): the run's view (the status a
//! PipelineRun would have on a cluster) kept current as steps start, count and end, handed to
//! the same hub the operator's gateway uses, so followers get the same messages: snapshot,
//! run and step transitions, counters at most once a second, and each step's log lines.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use synqx_api::gateway::{LogLine, RunView};
use synqx_api::run::{PipelineRunStatus, RunPhase, StepPhase, StepStatus, WatermarkRange};
use synqx_web::Hub;

use super::summary::{RunSummary, StepSummary};
use crate::engine::CounterSnapshot;

/// The namespace local runs are listed in.
pub const NAMESPACE: &str = "local";

/// How often a running step's counters are read into the view; the hub sends them on at
/// most once a second.
const COUNTER_PERIOD: Duration = Duration::from_millis(500);

/// The live view of one local run; cheap to clone.
#[derive(Clone)]
pub struct Live {
    hub: Arc<Hub>,
    view: Arc<Mutex<RunView>>,
}

/// How much a log line matters, as the gateway's `log` messages say it.
#[derive(Clone, Copy, Debug)]
pub enum Level {
    Info,
    Warn,
    Error,
}

impl Level {
    fn as_str(self) -> &'static str {
        match self {
            Self::Info => "INFO",
            Self::Warn => "WARN",
            Self::Error => "ERROR",
        }
    }
}

fn now() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

impl Live {
    pub fn new(hub: Arc<Hub>) -> Self {
        Self {
            hub,
            view: Arc::default(),
        }
    }

    /// The run `run_id` of `pipeline` starts: every step is pending.
    pub fn begin<'s>(&self, run_id: &str, pipeline: &str, steps: impl Iterator<Item = &'s str>) {
        let started = now();
        let view = RunView {
            name: run_id.to_string(),
            namespace: NAMESPACE.to_string(),
            pipeline: pipeline.to_string(),
            created: Some(started.clone()),
            status: PipelineRunStatus {
                phase: Some(RunPhase::Running),
                start_time: Some(started),
                steps: steps
                    .map(|name| StepStatus {
                        name: name.to_string(),
                        phase: Some(StepPhase::Pending),
                        ..Default::default()
                    })
                    .collect(),
                ..Default::default()
            },
        };
        self.update(|v| *v = view);
    }

    /// Changes the view and hands it to the hub, which sends what changed.
    fn update(&self, change: impl FnOnce(&mut RunView)) {
        let view = {
            let mut view = self.view.lock().unwrap_or_else(PoisonError::into_inner);
            change(&mut view);
            progress(&mut view.status);
            view.clone()
        };
        self.hub.observe(view);
    }

    fn update_step(&self, step: &str, change: impl FnOnce(&mut StepStatus)) {
        self.update(|view| {
            if let Some(entry) = view.status.steps.iter_mut().find(|s| s.name == step) {
                change(entry);
            }
        });
    }

    /// An attempt of `step` starts.
    pub fn step_started(&self, step: &str, attempt: u32) {
        self.update_step(step, |s| {
            s.phase = Some(StepPhase::Running);
            s.attempt = Some(attempt);
            s.started_at = Some(now());
            s.finished_at = None;
            s.message = None;
            set_counters(s, &CounterSnapshot::default());
        });
    }

    /// A running step's counters now.
    pub fn counters(&self, step: &str, counters: &CounterSnapshot) {
        self.update_step(step, |s| set_counters(s, counters));
    }

    /// A step's attempt ended (or the step was skipped): its final phase and counters.
    pub fn step_ended(&self, summary: &StepSummary) {
        self.update_step(&summary.name, |s| {
            s.phase = Some(summary.status);
            if summary.attempt > 0 {
                s.attempt = Some(summary.attempt);
            }
            if summary.status != StepPhase::Skipped {
                s.finished_at = Some(now());
                set_counters(s, &summary.counters);
            }
            s.message.clone_from(&summary.message);
            if summary.watermark_from.is_some() || summary.watermark_to.is_some() {
                s.watermark = Some(WatermarkRange {
                    from: summary.watermark_from.clone(),
                    to: summary.watermark_to.clone(),
                });
            }
        });
    }

    /// A failed attempt of a step waits for its retry.
    pub fn retrying(&self, summary: &StepSummary) {
        self.update_step(&summary.name, |s| {
            s.phase = Some(StepPhase::Retrying);
            s.message.clone_from(&summary.message);
        });
    }

    /// A line of a step attempt's log.
    pub fn log(&self, step: &str, attempt: u32, level: Level, text: String) {
        let (namespace, name) = {
            let view = self.view.lock().unwrap_or_else(PoisonError::into_inner);
            (view.namespace.clone(), view.name.clone())
        };
        let line = LogLine {
            time: now(),
            level: Some(level.as_str().to_string()),
            text,
        };
        self.hub.log(&namespace, &name, step, attempt, vec![line]);
    }

    /// The run ended.
    pub fn finish(&self, summary: &RunSummary) {
        self.update(|view| {
            view.status.phase = Some(summary.status);
            view.status.completion_time = Some(now());
            view.status.duration = Some(synqx_api::duration::format_duration(summary.duration));
        });
    }

    /// Reads `counters` into the view until the returned task is aborted.
    pub fn follow_counters(
        &self,
        step: &str,
        counters: Arc<crate::engine::Counters>,
    ) -> tokio::task::JoinHandle<()> {
        let live = self.clone();
        let step = step.to_string();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(COUNTER_PERIOD);
            loop {
                tick.tick().await;
                live.counters(&step, &counters.snapshot());
            }
        })
    }
}

/// The first line of an attempt's log: what it does.
pub fn describe(step: &synqx_api::Step, attempt: u32) -> String {
    let what = match (&step.sync, &step.sql) {
        (Some(sync), _) => format!(
            "reading {}:{} into {}:{} ({})",
            sync.source.connection,
            sync.source.asset.fqn,
            sync.destination.connection,
            sync.destination.asset.fqn,
            format!("{:?}", sync.destination.mode.unwrap_or_default()).to_lowercase()
        ),
        (None, Some(sql)) => format!(
            "running {} statement(s) on {}",
            sql.statements.len(),
            sql.connection
        ),
        (None, None) => "nothing to do".to_string(),
    };
    format!("attempt {attempt} started: {what}")
}

/// The last lines of an attempt's log: how it ended, with its counts.
pub fn outcome(summary: &StepSummary) -> Vec<(Level, String)> {
    let c = &summary.counters;
    let duration = synqx_api::duration::format_duration(summary.duration);
    let mut lines = Vec::new();
    match summary.status {
        StepPhase::Succeeded => {
            let mut line = format!(
                "succeeded in {duration}: {} rows read, {} rows written ({} bytes)",
                c.rows_read, c.rows_written, c.bytes_written
            );
            if let Some(to) = &summary.watermark_to {
                line.push_str(&format!("; watermark now {to}"));
            }
            lines.push((Level::Info, line));
            if let Some(notes) = &summary.message {
                lines.push((Level::Info, notes.clone()));
            }
        }
        StepPhase::Cancelled => lines.push((
            Level::Warn,
            format!(
                "cancelled after {duration}: {}",
                summary.message.as_deref().unwrap_or_default()
            ),
        )),
        _ => lines.push((
            Level::Error,
            format!(
                "failed after {duration}: {}",
                summary.message.as_deref().unwrap_or_default()
            ),
        )),
    }
    if let Some(path) = &summary.dead_letter {
        lines.push((
            Level::Warn,
            format!(
                "{} rejected rows written to {}",
                c.rows_rejected,
                path.display()
            ),
        ));
    }
    lines
}

fn set_counters(step: &mut StepStatus, c: &CounterSnapshot) {
    step.rows_read = Some(c.rows_read);
    step.rows_written = Some(c.rows_written);
    step.rows_rejected = Some(c.rows_rejected);
    step.bytes_read = Some(c.bytes_read);
    step.bytes_written = Some(c.bytes_written);
}

/// `finished/all`, as the operator writes a run's progress.
fn progress(status: &mut PipelineRunStatus) {
    let done = status
        .steps
        .iter()
        .filter(|s| s.phase.is_some_and(StepPhase::is_final))
        .count();
    status.progress = Some(format!("{done}/{}", status.steps.len()));
}

#[cfg(test)]
mod tests {
    use synqx_api::gateway::{Body, Message};
    use synqx_web::Limits;
    use synqx_web::log::Start;

    use super::*;

    #[tokio::test]
    async fn a_local_run_sends_the_messages_the_gateway_sends() {
        let hub = Arc::new(Hub::with_base(Limits::default(), 0));
        let live = Live::new(hub.clone());
        live.begin("r1", "p", ["load"].into_iter());
        let Ok(mut follow) = hub.follow(NAMESPACE, "r1", None) else {
            panic!("the run is followed")
        };
        assert!(matches!(&follow.start, Start::Snapshot(m) if m.seq == 0));
        live.step_started("load", 1);
        live.log("load", 1, Level::Info, "reading".into());
        let mut done = StepSummary::skipped("load", String::new());
        done.status = StepPhase::Succeeded;
        done.attempt = 1;
        done.counters.rows_written = 2;
        live.step_ended(&done);
        let mut seen: Vec<Message> = Vec::new();
        for _ in 0..3 {
            match follow.rx.recv().await {
                // The queue holds weak references: the run's buffer keeps the messages.
                Ok(m) => match m.upgrade() {
                    Some(m) => seen.push((*m).clone()),
                    None => panic!("message {} was evicted before it was read", seen.len()),
                },
                Err(e) => panic!("{e}"),
            }
        }
        assert!(
            matches!(&seen[0].body, Body::Step { from: Some(StepPhase::Pending), step } if step.phase == Some(StepPhase::Running))
        );
        assert!(
            matches!(&seen[1].body, Body::Log { step, attempt: 1, lines } if step == "load" && lines[0].text == "reading")
        );
        assert!(
            matches!(&seen[2].body, Body::Step { step, .. } if step.rows_written == Some(2) && step.phase == Some(StepPhase::Succeeded))
        );
        assert_eq!(seen.iter().map(|m| m.seq).collect::<Vec<_>>(), [1, 2, 3]);
    }
}
