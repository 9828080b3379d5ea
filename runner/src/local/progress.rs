//! Progress bars of running steps: rows, rows/s and bytes, redrawn from the step counters.
//! Hidden when stderr is not a terminal.

use std::sync::Arc;
use std::time::{Duration, Instant};

use indicatif::{HumanBytes, MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};

use synqx_api::run::StepPhase;

use super::summary::{StepSummary, group};
use crate::engine::Counters;

/// The progress display of a run.
#[derive(Clone)]
pub struct Progress {
    bars: MultiProgress,
}

/// One step's bar and the task that refreshes it.
pub struct StepBar {
    bar: ProgressBar,
    ticker: tokio::task::JoinHandle<()>,
}

impl Progress {
    /// Bars on stderr (indicatif draws nothing when it is not a terminal).
    pub fn stderr() -> Self {
        Self {
            bars: MultiProgress::with_draw_target(ProgressDrawTarget::stderr()),
        }
    }

    /// No bars at all.
    pub fn hidden() -> Self {
        Self {
            bars: MultiProgress::with_draw_target(ProgressDrawTarget::hidden()),
        }
    }

    /// Prints a line above the bars.
    pub fn note(&self, line: &str) {
        if self.bars.is_hidden() {
            eprintln!("{line}");
        } else {
            let _ = self.bars.println(line);
        }
    }

    /// Starts the bar of a step.
    pub fn start(&self, step: &str, counters: Arc<Counters>) -> StepBar {
        let bar = self.bars.add(ProgressBar::new_spinner());
        let style = ProgressStyle::with_template("{spinner} {prefix:<24} {msg}")
            .unwrap_or_else(|_| ProgressStyle::default_spinner());
        bar.set_style(style);
        bar.set_prefix(step.to_string());
        bar.enable_steady_tick(Duration::from_millis(120));
        let shown = bar.clone();
        let started = Instant::now();
        let ticker = tokio::spawn(async move {
            loop {
                let c = counters.snapshot();
                let secs = started.elapsed().as_secs_f64().max(0.001);
                shown.set_message(format!(
                    "{} rows read  {} rows/s  {} written",
                    group(c.rows_read),
                    group((c.rows_read as f64 / secs) as u64),
                    HumanBytes(c.bytes_written)
                ));
                tokio::time::sleep(Duration::from_millis(250)).await;
            }
        });
        StepBar { bar, ticker }
    }

    /// Ends the bar of a step with its outcome.
    pub fn finish(&self, step: StepBar, summary: &StepSummary) {
        step.ticker.abort();
        let mark = match summary.status {
            StepPhase::Succeeded => "done",
            StepPhase::Failed => "FAILED",
            StepPhase::Cancelled => "cancelled",
            StepPhase::Skipped => "skipped",
            StepPhase::Pending | StepPhase::Running | StepPhase::Retrying => "running",
        };
        step.bar.finish_with_message(format!(
            "{mark}: {} rows read, {} written in {}",
            group(summary.counters.rows_read),
            group(summary.counters.rows_written),
            synqx_api::duration::format_duration(summary.duration)
        ));
    }
}
