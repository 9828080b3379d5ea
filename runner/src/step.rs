//! One step, executed: the code `synqx run` (every step of a local run) and `synqx step` (one
//! step in the pod of its Job) share. A `sql` body runs its statements on one Connection; a
//! `sync` body streams its source through its transforms into its destination. Both end at the
//! step's timeout and stop when cancelled, before anything is committed.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use synqx_api::duration::{format_duration, parse_duration};
use synqx_api::pipeline::{Destination, Step};
use tokio_util::sync::CancellationToken;

use crate::connectors::{self, ConnectionRef, Usage};
use crate::engine::kept_rejects::{self, RejectedRows};
use crate::engine::{self, Counters, StepOutcome, StepRun};
use crate::error::{Error, Result};
use crate::transforms::MemoryBudget;

/// What one execution of a step needs besides the step and its Connections.
pub struct StepInputs {
    /// The committed watermark of the step: an incremental source reads rows above it. `None`
    /// reads everything (a first run or a full refresh). Ignored by non-incremental steps.
    pub watermark: Option<String>,
    /// Counters the engine updates as rows move, read by progress displays and status writers.
    pub counters: Arc<Counters>,
    /// Cancels the step; nothing is committed after it fires.
    pub cancel: CancellationToken,
    /// Dead-letter file for rows skipped under `onError: skip`.
    pub dead_letter: Option<PathBuf>,
    /// The run, as the rows kept by `sync.rejects` name it: a local run's id, a
    /// PipelineRun's name.
    pub run: String,
}

/// Executes one step. `connection` opens a Connection by the name the step uses; it decides
/// where relative paths start and how secret values are resolved. The step's `timeout` ends it
/// as cancelled; so does `inputs.cancel`.
pub async fn execute<'c>(
    step: &Step,
    connection: impl Fn(&str) -> Result<ConnectionRef<'c>>,
    inputs: StepInputs,
) -> Result<StepOutcome> {
    let timeout = step
        .timeout
        .as_deref()
        .map(parse_duration)
        .transpose()
        .map_err(|e| Error::Config(format!("step \"{}\": timeout: {e}", step.name)))?;
    if let Some(sql) = &step.sql {
        let conn = connection(&sql.connection)?;
        let started = Instant::now();
        let work = connectors::run_sql(&conn, &sql.statements);
        let affected = tokio::select! {
            r = work => r?,
            () = inputs.cancel.cancelled() => return Err(Error::Cancelled(format!(
                "step \"{}\" was cancelled before its transaction committed", step.name
            ))),
            () = sleep_or_forever(timeout) => return Err(Error::Cancelled(format!(
                "step \"{}\" exceeded its timeout of {}; its transaction was rolled back",
                step.name,
                format_duration(timeout.unwrap_or_default())
            ))),
        };
        Counters::add(&inputs.counters.rows_written, affected);
        return Ok(StepOutcome {
            counters: inputs.counters.snapshot(),
            duration: started.elapsed(),
            ..Default::default()
        });
    }
    let Some(sync) = &step.sync else {
        return Err(Error::Config(format!(
            "step \"{}\" has no body: give it a sync or a sql block",
            step.name
        )));
    };
    // Checked before either is opened: a mistake in the destination fails the step before
    // the source is read.
    let from = connection(&sync.source.connection)?;
    let to = connection(&sync.destination.connection)?;
    connectors::validate(&from, Some(Usage::Source(&sync.source)))?;
    connectors::validate(&to, Some(Usage::Destination(&sync.destination)))?;
    let rejects = match &sync.rejects {
        Some(target) => {
            let conn = connection(&target.connection)?;
            connectors::validate(&conn, Some(Usage::Destination(target)))?;
            Some((target, connectors::sink(&conn)?))
        }
        None => None,
    };
    let source = connectors::source(&from)?;
    let sink = connectors::sink(&to)?;
    // A retry of the run appends to the rejected file its earlier attempts wrote; their rows
    // are kept already.
    let rejected_before = match &inputs.dead_letter {
        Some(path) => tokio::fs::metadata(path).await.map_or(0, |m| m.len()),
        None => 0,
    };
    let run = StepRun {
        step: step.name.clone(),
        watermark: inputs.watermark,
        counters: inputs.counters,
        cancel: inputs.cancel,
        timeout,
        dead_letter: inputs.dead_letter.clone(),
        memory: MemoryBudget::detect()?,
    };
    let result = engine::run_sync(sync, source, sink, run).await;
    let (Some((target, sink)), Some(file)) = (rejects, &inputs.dead_letter) else {
        return result;
    };
    let rows = RejectedRows {
        file,
        from: rejected_before,
        run: &inputs.run,
        step: &step.name,
    };
    let kept = kept_rejects::keep(&rows, target, sink.as_ref()).await;
    kept_where(result, kept, target, file)
}

/// The step's result once its rejected rows were kept in `target` (or failed to be).
fn kept_where(
    result: Result<StepOutcome>,
    kept: Result<u64>,
    target: &Destination,
    file: &std::path::Path,
) -> Result<StepOutcome> {
    let place = format!(
        "Connection \"{}\", asset \"{}\"",
        target.connection, target.asset.fqn
    );
    match (result, kept) {
        (result, Ok(0)) => result,
        (Ok(mut outcome), Ok(rows)) => {
            let note = format!("{rows} rejected rows kept in {place}");
            tracing::info!("{note}");
            outcome.message = Some(match outcome.message.take() {
                Some(before) => format!("{before}; {note}"),
                None => note,
            });
            Ok(outcome)
        }
        // The load committed, but the rows it rejected would be lost with the step's pod:
        // the step fails so that someone looks.
        (Ok(_), Err(e)) => Err(Error::RejectsNotKept {
            place,
            file: file.to_path_buf(),
            source: Box::new(e),
        }),
        (Err(Error::BadRow(bad)), Ok(_)) => {
            Err(bad.hint(format!("it is kept in {place} too")).into())
        }
        (Err(Error::BadRow(bad)), Err(e)) => Err(bad
            .hint(format!("it could not be kept in {place}: {e}"))
            .into()),
        (Err(e), _) => Err(e),
    }
}

async fn sleep_or_forever(timeout: Option<Duration>) {
    match timeout {
        Some(t) => tokio::time::sleep(t).await,
        None => std::future::pending().await,
    }
}

#[cfg(test)]
mod tests {
    use synqx_api::ConnectionSpec;
    use synqx_api::connection::SqliteConnection;
    use synqx_api::pipeline::SqlStep;

    use super::*;
    use crate::secrets::Secrets;

    fn sql_step(statements: &[&str]) -> Step {
        Step {
            name: "build".into(),
            sql: Some(SqlStep {
                connection: "db".into(),
                statements: statements.iter().map(|s| s.to_string()).collect(),
            }),
            ..Default::default()
        }
    }

    fn inputs(cancel: CancellationToken) -> StepInputs {
        StepInputs {
            watermark: None,
            counters: Arc::new(Counters::default()),
            cancel,
            dead_letter: None,
            run: "r1".into(),
        }
    }

    #[tokio::test]
    async fn a_sql_step_runs_on_the_connection_it_names() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let spec = ConnectionSpec {
            sqlite: Some(SqliteConnection {
                path: "w.db".into(),
            }),
            ..Default::default()
        };
        let secrets = Secrets::default();
        let open = |name: &str| {
            assert_eq!(name, "db");
            Ok(ConnectionRef {
                name: "db",
                spec: &spec,
                base_dir: dir.path().to_path_buf(),
                secrets: &secrets,
            })
        };
        let step = sql_step(&[
            "CREATE TABLE t (x INTEGER)",
            "INSERT INTO t VALUES (1), (2)",
        ]);
        let outcome = execute(&step, open, inputs(CancellationToken::new()))
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(outcome.counters.rows_written, 2);
        assert!(dir.path().join("w.db").exists());
    }

    #[tokio::test]
    async fn a_step_without_a_body_or_with_a_bad_timeout_says_what_to_fix() {
        let never = |name: &str| -> Result<ConnectionRef<'static>> {
            Err(Error::Config(format!("no Connection \"{name}\"")))
        };
        let step = Step {
            name: "empty".into(),
            ..Default::default()
        };
        let e = execute(&step, never, inputs(CancellationToken::new()))
            .await
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(e.contains("step \"empty\" has no body"), "{e}");

        let bad = Step {
            timeout: Some("soon".into()),
            ..sql_step(&["select 1"])
        };
        let e = execute(&bad, never, inputs(CancellationToken::new()))
            .await
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(e.contains("step \"build\": timeout"), "{e}");
    }
}
