//! Upper bounds of every count and duration a Pipeline sets. The API server's schema bounds
//! some of them, but `synqx run` reads files, and an object written before a bound existed
//! reaches the operator as it is: the operator compiles every Pipeline with these checks, so
//! no number a user writes reaches an addition, a timer or a Job field unchecked.

use std::time::Duration;

use crate::duration::{format_duration, parse_bytes, parse_duration};
use crate::pipeline::{PipelineSpec, RetryPolicy, Step};

/// Retries after the first attempt of a step.
pub const MAX_RETRIES: u32 = 100;
/// The longest delay between attempts.
pub const MAX_BACKOFF: Duration = Duration::from_secs(24 * 3600);
/// The longest an attempt may run (the Job's `activeDeadlineSeconds`).
pub const MAX_STEP_TIMEOUT: Duration = Duration::from_secs(7 * 24 * 3600);
/// Steps of one run executing at once.
pub const MAX_PARALLELISM: u32 = 1000;
/// Runs kept per outcome by the history limits.
pub const MAX_HISTORY: u32 = 1000;
/// How late a scheduled run may still start: a year.
pub const MAX_STARTING_DEADLINE_SECONDS: i64 = 366 * 24 * 3600;
/// The byte budget of one batch in flight.
pub const MAX_BATCH_BYTES: u64 = 1 << 30;

/// Problems of the Pipeline-wide numbers, as (field below `spec`, message).
pub fn pipeline_problems(spec: &PipelineSpec) -> Vec<(String, String)> {
    let mut out = Vec::new();
    match spec.parallelism {
        Some(0) => out.push(("parallelism".into(), "must be at least 1".into())),
        Some(n) if n > MAX_PARALLELISM => out.push((
            "parallelism".into(),
            format!("{n} is more than {MAX_PARALLELISM} steps at once"),
        )),
        _ => {}
    }
    for (field, limit) in [
        (
            "successfulRunsHistoryLimit",
            spec.successful_runs_history_limit,
        ),
        ("failedRunsHistoryLimit", spec.failed_runs_history_limit),
    ] {
        if let Some(n) = limit.filter(|n| *n > MAX_HISTORY) {
            out.push((
                field.into(),
                format!("{n} is more than {MAX_HISTORY} runs to keep"),
            ));
        }
    }
    if let Some(deadline) = spec
        .schedule
        .as_ref()
        .and_then(|s| s.starting_deadline_seconds)
    {
        let field = "schedule.startingDeadlineSeconds";
        if deadline < 0 {
            out.push((field.into(), "must not be negative".into()));
        } else if deadline > MAX_STARTING_DEADLINE_SECONDS {
            out.push((
                field.into(),
                format!("{deadline} is more than {MAX_STARTING_DEADLINE_SECONDS} seconds (a year)"),
            ));
        }
    }
    if let Some(retry) = &spec.retry {
        for (field, message) in retry_problems(retry) {
            out.push((format!("retry.{field}"), message));
        }
    }
    out
}

/// Problems of one step's numbers, as (field below the step, message).
pub fn step_problems(step: &Step) -> Vec<(String, String)> {
    let mut out = Vec::new();
    if let Some(text) = &step.timeout {
        match parse_duration(text) {
            Err(e) => out.push(("timeout".into(), e.to_string())),
            Ok(d) if d < Duration::from_secs(1) => {
                out.push(("timeout".into(), format!("`{text}` is shorter than 1s")))
            }
            Ok(d) => out.extend(at_most("timeout", text, d, MAX_STEP_TIMEOUT)),
        }
    }
    if let Some(retry) = &step.retry {
        for (field, message) in retry_problems(retry) {
            out.push((format!("retry.{field}"), message));
        }
    }
    if let Some(text) = step.sync.as_ref().and_then(|s| s.batch_size.as_ref()) {
        match parse_bytes(text) {
            Err(e) => out.push(("sync.batchSize".into(), e.to_string())),
            Ok(bytes) if bytes > MAX_BATCH_BYTES => out.push((
                "sync.batchSize".into(),
                format!("`{text}` is more than 1GiB in one batch"),
            )),
            Ok(_) => {}
        }
    }
    out
}

/// Problems of a retry policy, as (field below `retry`, message).
fn retry_problems(retry: &RetryPolicy) -> Vec<(String, String)> {
    let mut out = Vec::new();
    if retry.limit > MAX_RETRIES {
        out.push((
            "limit".into(),
            format!("{} is more than {MAX_RETRIES} retries", retry.limit),
        ));
    }
    let Some(b) = &retry.backoff else {
        return out;
    };
    for (field, value) in [("backoff.initial", &b.initial), ("backoff.max", &b.max)] {
        let Some(text) = value else { continue };
        match parse_duration(text) {
            Err(e) => out.push((field.into(), e.to_string())),
            Ok(d) => out.extend(at_most(field, text, d, MAX_BACKOFF)),
        }
    }
    if b.factor.is_some_and(|f| !(1.0..=100.0).contains(&f)) {
        out.push(("backoff.factor".into(), "must be from 1 to 100".into()));
    }
    out
}

fn at_most(field: &str, text: &str, d: Duration, max: Duration) -> Option<(String, String)> {
    (d > max).then(|| {
        (
            field.to_string(),
            format!("`{text}` is longer than {}", format_duration(max)),
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pipeline::Backoff;

    fn fields(problems: &[(String, String)]) -> Vec<&str> {
        problems.iter().map(|(f, _)| f.as_str()).collect()
    }

    #[test]
    fn every_count_and_duration_of_a_pipeline_has_a_named_bound() {
        let spec: PipelineSpec = serde_yaml::from_str(
            r#"
parallelism: 4294967295
successfulRunsHistoryLimit: 4000000000
failedRunsHistoryLimit: 1001
schedule: {cron: "* * * * *", startingDeadlineSeconds: 9223372036854775807}
retry: {limit: 4294967295, backoff: {initial: 999999999999999d, factor: 1e308, max: 25h}}
steps: []
"#,
        )
        .unwrap_or_else(|e| panic!("{e}"));
        let problems = pipeline_problems(&spec);
        assert_eq!(
            fields(&problems),
            [
                "parallelism",
                "successfulRunsHistoryLimit",
                "failedRunsHistoryLimit",
                "schedule.startingDeadlineSeconds",
                "retry.limit",
                "retry.backoff.initial",
                "retry.backoff.max",
                "retry.backoff.factor",
            ],
            "{problems:?}"
        );
        assert!(problems[0].1.contains("more than 1000"), "{problems:?}");
        assert_eq!(problems[6].1, "`25h` is longer than 24h");
    }

    #[test]
    fn a_step_timeout_backoff_and_batch_are_bounded() {
        let step = Step {
            name: "s".into(),
            timeout: Some("999999999999999d".into()),
            retry: Some(RetryPolicy {
                limit: 101,
                backoff: Some(Backoff {
                    max: Some("2d".into()),
                    ..Default::default()
                }),
            }),
            ..Default::default()
        };
        let problems = step_problems(&step);
        assert_eq!(
            fields(&problems),
            ["timeout", "retry.limit", "retry.backoff.max"],
            "{problems:?}"
        );
        let within = Step {
            timeout: Some("7d".into()),
            ..Step::default()
        };
        assert!(step_problems(&within).is_empty());
        let instant = Step {
            timeout: Some("0s".into()),
            ..Step::default()
        };
        assert_eq!(
            step_problems(&instant),
            [("timeout".to_string(), "`0s` is shorter than 1s".to_string())]
        );
    }
}
