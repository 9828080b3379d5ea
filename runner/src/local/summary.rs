//! The outcome of a local run: one line per step, printed as a table at the end.

use std::fmt::Write as _;
use std::time::Duration;

use chrono::{DateTime, Utc};
use indicatif::HumanBytes;

use synqx_api::run::{RunPhase, StepPhase};

use crate::engine::{CounterSnapshot, StepOutcome};
use crate::state::StepRecord;

/// One step of a run.
#[derive(Clone, Debug)]
pub struct StepSummary {
    pub name: String,
    pub status: StepPhase,
    pub attempt: u32,
    pub counters: CounterSnapshot,
    pub started_at: Option<DateTime<Utc>>,
    pub duration: Duration,
    pub watermark_from: Option<String>,
    pub watermark_to: Option<String>,
    pub message: Option<String>,
    pub dead_letter: Option<std::path::PathBuf>,
}

impl StepSummary {
    pub fn succeeded(name: &str, o: StepOutcome) -> Self {
        Self {
            name: name.to_string(),
            status: StepPhase::Succeeded,
            attempt: 1,
            counters: o.counters,
            started_at: None,
            duration: o.duration,
            watermark_from: o.watermark_from,
            watermark_to: o.watermark_to,
            message: o.message,
            dead_letter: o.dead_letter,
        }
    }

    pub fn ended(
        name: &str,
        status: StepPhase,
        message: String,
        counters: CounterSnapshot,
    ) -> Self {
        Self {
            message: Some(message),
            counters,
            ..Self::skipped(name, String::new())
        }
        .with_status(status)
    }

    pub fn skipped(name: &str, why: String) -> Self {
        Self {
            name: name.to_string(),
            status: StepPhase::Skipped,
            attempt: 0,
            counters: CounterSnapshot::default(),
            started_at: None,
            duration: Duration::ZERO,
            watermark_from: None,
            watermark_to: None,
            message: (!why.is_empty()).then_some(why),
            dead_letter: None,
        }
    }

    fn with_status(mut self, status: StepPhase) -> Self {
        self.status = status;
        self
    }

    /// The row of the state database.
    pub fn record(&self) -> StepRecord {
        StepRecord {
            step: self.name.clone(),
            status: self.status.as_str().to_string(),
            counters: self.counters,
            started_at: self.started_at.map(|t| t.to_rfc3339()),
            finished_at: self.started_at.map(|t| {
                (t + chrono::Duration::from_std(self.duration).unwrap_or_default()).to_rfc3339()
            }),
            watermark_from: self.watermark_from.clone(),
            watermark_to: self.watermark_to.clone(),
            message: self.message.clone(),
        }
    }
}

/// A whole run.
#[derive(Clone, Debug)]
pub struct RunSummary {
    pub pipeline: String,
    pub run_id: String,
    pub status: RunPhase,
    pub duration: Duration,
    pub steps: Vec<StepSummary>,
}

impl RunSummary {
    pub fn succeeded(&self) -> bool {
        self.status == RunPhase::Succeeded
    }
}

/// `1234567` as `1,234,567`.
pub fn group(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// The summary table: step, status, rows read/written, bytes, duration, watermark from -> to,
/// then the message of every step that did not succeed.
pub fn render(run: &RunSummary) -> String {
    let header = [
        "STEP",
        "STATUS",
        "ROWS READ",
        "ROWS WRITTEN",
        "REJECTED",
        "BYTES WRITTEN",
        "DURATION",
        "WATERMARK",
    ];
    let rows: Vec<[String; 8]> = run
        .steps
        .iter()
        .map(|s| {
            let watermark = match (&s.watermark_from, &s.watermark_to) {
                (None, None) => "-".to_string(),
                (from, to) => format!(
                    "{} -> {}",
                    from.as_deref().unwrap_or("(start)"),
                    to.as_deref().unwrap_or("(none)")
                ),
            };
            [
                s.name.clone(),
                s.status.as_str().to_string(),
                group(s.counters.rows_read),
                group(s.counters.rows_written),
                group(s.counters.rows_rejected),
                HumanBytes(s.counters.bytes_written).to_string(),
                synqx_api::duration::format_duration(s.duration),
                watermark,
            ]
        })
        .collect();
    let mut widths = header.map(str::len);
    for row in &rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let mut out = format!(
        "Pipeline {} run {}: {} in {}\n",
        run.pipeline,
        run.run_id,
        run.status.as_str(),
        synqx_api::duration::format_duration(run.duration)
    );
    let line = |cells: &[String]| {
        let mut l = String::new();
        for (i, (cell, w)) in cells.iter().zip(widths).enumerate() {
            if i > 0 {
                l.push_str("  ");
            }
            let _ = write!(l, "{cell:<w$}");
        }
        l.trim_end().to_string() + "\n"
    };
    out.push_str(&line(&header.map(str::to_string)));
    for row in &rows {
        out.push_str(&line(row));
    }
    for s in &run.steps {
        if let Some(m) = &s.message
            && s.status != StepPhase::Succeeded
        {
            let _ = writeln!(out, "{} {}: {m}", s.status.as_str().to_lowercase(), s.name);
        }
        if let Some(path) = &s.dead_letter {
            let _ = writeln!(
                out,
                "{}: {} rejected rows written to {}",
                s.name,
                group(s.counters.rows_rejected),
                path.display()
            );
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_are_grouped() {
        assert_eq!(group(0), "0");
        assert_eq!(group(999), "999");
        assert_eq!(group(1000), "1,000");
        assert_eq!(group(1234567), "1,234,567");
    }

    #[test]
    fn the_table_lists_every_step_and_failures() {
        let mut ok = StepSummary::skipped("load", String::new());
        ok.status = StepPhase::Succeeded;
        ok.counters.rows_read = 1500;
        ok.counters.rows_written = 1500;
        ok.watermark_to = Some("2024-01-31".into());
        let failed = StepSummary::ended(
            "export",
            StepPhase::Failed,
            "disk full".into(),
            CounterSnapshot::default(),
        );
        let run = RunSummary {
            pipeline: "p".into(),
            run_id: "r".into(),
            status: RunPhase::Failed,
            duration: Duration::from_secs(2),
            steps: vec![ok, failed],
        };
        let out = render(&run);
        assert!(
            out.starts_with("Pipeline p run r: Failed in 2.0s\nSTEP "),
            "{out}"
        );
        assert!(out.contains("load    Succeeded  1,500"), "{out}");
        assert!(out.contains("(start) -> 2024-01-31"), "{out}");
        assert!(out.ends_with("failed export: disk full\n"), "{out}");
    }
}
