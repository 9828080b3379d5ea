//! Local state of `synqx run` in SQLite (`.synqx/state.db`): runs, step runs with their
//! counters, and committed watermarks. A watermark is written only after its step's sink
//! committed, so it never runs ahead of the data.

use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::atomic::{AtomicU32, Ordering};

use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions};
use sqlx::{Row, SqlitePool};

use crate::engine::CounterSnapshot;
use crate::error::{Context, Error, Result};

/// The state database file below a state directory.
pub const STATE_FILE: &str = "state.db";

/// How many ids `start_run` draws before it gives up.
const RUN_ID_DRAWS: usize = 32;

/// A run id that sorts by time: `20261127-093012-4f2a`. The suffix mixes the clock's
/// microseconds with the process id and a per-process counter, so ids drawn in the same
/// second differ; `start_run` still checks that the id is free.
pub fn new_run_id() -> String {
    static DRAWN: AtomicU32 = AtomicU32::new(0);
    let now = chrono::Utc::now();
    let mixed = now.timestamp_subsec_micros()
        ^ std::process::id().rotate_left(7)
        ^ DRAWN.fetch_add(1, Ordering::Relaxed).wrapping_mul(0x9e37);
    format!("{}-{:04x}", now.format("%Y%m%d-%H%M%S"), mixed & 0xffff)
}

/// A handle to the local state database.
#[derive(Clone)]
pub struct StateStore {
    pool: SqlitePool,
    dir: PathBuf,
}

/// A committed watermark.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WatermarkRow {
    pub pipeline: String,
    pub step: String,
    pub value: String,
    pub run_id: Option<String>,
    pub updated_at: String,
}

/// What a step run ended as.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct StepRecord {
    pub step: String,
    pub status: String,
    pub counters: CounterSnapshot,
    pub started_at: Option<String>,
    pub finished_at: Option<String>,
    pub watermark_from: Option<String>,
    pub watermark_to: Option<String>,
    pub message: Option<String>,
}

/// A run as the local state database keeps it (its steps are rows of their own).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RunRow {
    pub id: String,
    pub pipeline: String,
    pub status: String,
    pub started_at: String,
    pub finished_at: Option<String>,
}

fn now() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

impl StateStore {
    /// Opens (creating and migrating as needed) the state database in `dir`.
    pub async fn open(dir: &Path) -> Result<Self> {
        std::fs::create_dir_all(dir)
            .context(|| format!("creating state directory {}", dir.display()))?;
        let file = dir.join(STATE_FILE);
        let options = SqliteConnectOptions::from_str(&format!("sqlite://{}", file.display()))
            .context(|| format!("state database {}", file.display()))?
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .busy_timeout(std::time::Duration::from_secs(10))
            .foreign_keys(true);
        let pool = SqlitePoolOptions::new()
            .max_connections(2)
            .connect_with(options)
            .await
            .context(|| format!("opening state database {}", file.display()))?;
        sqlx::migrate!("./migrations")
            .run(&pool)
            .await
            .map_err(|e| {
                Error::database(format!("migrating state database {}", file.display()), e)
            })?;
        Ok(Self {
            pool,
            dir: dir.to_path_buf(),
        })
    }

    /// The state directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Records the start of a run under a fresh id and returns the id. Two runs started in
    /// the same state directory within one second (a rerun right after a killed run) can
    /// draw the same id; a taken id is never reused, a new one is drawn instead.
    pub async fn start_run(&self, pipeline: &str, plan_hash: &str) -> Result<String> {
        for _ in 0..RUN_ID_DRAWS {
            let id = new_run_id();
            if self.claim_run(&id, pipeline, plan_hash).await? {
                return Ok(id);
            }
        }
        Err(Error::Config(format!(
            "could not find a free run id in {} after {RUN_ID_DRAWS} tries; \
             check that the state database is not shared with a runaway process",
            self.dir.display()
        )))
    }

    /// Inserts the run `id` unless that id is taken; whether it was inserted.
    async fn claim_run(&self, id: &str, pipeline: &str, plan_hash: &str) -> Result<bool> {
        let done = sqlx::query(
            "INSERT INTO runs (id, pipeline, plan_hash, status, started_at) \
             VALUES (?, ?, ?, 'Running', ?) ON CONFLICT (id) DO NOTHING",
        )
        .bind(id)
        .bind(pipeline)
        .bind(plan_hash)
        .bind(now())
        .execute(&self.pool)
        .await
        .context(|| format!("recording run {id}"))?;
        Ok(done.rows_affected() == 1)
    }

    /// Records how a run ended.
    pub async fn finish_run(&self, id: &str, status: &str) -> Result<()> {
        sqlx::query("UPDATE runs SET status = ?, finished_at = ? WHERE id = ?")
            .bind(status)
            .bind(now())
            .bind(id)
            .execute(&self.pool)
            .await
            .context(|| format!("recording the end of run {id}"))?;
        Ok(())
    }

    /// Records a step run's outcome and, when it succeeded with a new watermark, commits the
    /// watermark in the same transaction.
    pub async fn record_step(
        &self,
        run_id: &str,
        pipeline: &str,
        record: &StepRecord,
    ) -> Result<()> {
        let mut tx = self
            .pool
            .begin()
            .await
            .context(|| "starting a state transaction".to_string())?;
        let c = &record.counters;
        sqlx::query(
            "INSERT OR REPLACE INTO step_runs (run_id, step, status, rows_read, rows_written, rows_rejected, bytes_read, bytes_written, started_at, finished_at, watermark_from, watermark_to, message)
             VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        )
        .bind(run_id)
        .bind(&record.step)
        .bind(&record.status)
        .bind(c.rows_read as i64)
        .bind(c.rows_written as i64)
        .bind(c.rows_rejected as i64)
        .bind(c.bytes_read as i64)
        .bind(c.bytes_written as i64)
        .bind(&record.started_at)
        .bind(&record.finished_at)
        .bind(&record.watermark_from)
        .bind(&record.watermark_to)
        .bind(&record.message)
        .execute(&mut *tx)
        .await
        .context(|| format!("recording step {} of run {run_id}", record.step))?;
        if record.status == "Succeeded"
            && let Some(value) = &record.watermark_to
        {
            upsert_watermark(&mut tx, pipeline, &record.step, value, Some(run_id)).await?;
        }
        tx.commit()
            .await
            .context(|| format!("committing state of step {}", record.step))?;
        Ok(())
    }

    /// The committed watermark of a step.
    pub async fn watermark(&self, pipeline: &str, step: &str) -> Result<Option<String>> {
        let row = sqlx::query("SELECT value FROM watermarks WHERE pipeline = ? AND step = ?")
            .bind(pipeline)
            .bind(step)
            .fetch_optional(&self.pool)
            .await
            .context(|| format!("reading the watermark of {pipeline}/{step}"))?;
        Ok(row.map(|r| r.get::<String, _>(0)))
    }

    /// Every committed watermark, optionally of one pipeline.
    pub async fn watermarks(&self, pipeline: Option<&str>) -> Result<Vec<WatermarkRow>> {
        let rows = sqlx::query(
            "SELECT pipeline, step, value, run_id, updated_at FROM watermarks WHERE ?1 IS NULL OR pipeline = ?1 ORDER BY pipeline, step",
        )
        .bind(pipeline)
        .fetch_all(&self.pool)
        .await
        .context(|| "reading watermarks".to_string())?;
        Ok(rows
            .into_iter()
            .map(|r| WatermarkRow {
                pipeline: r.get(0),
                step: r.get(1),
                value: r.get(2),
                run_id: r.get(3),
                updated_at: r.get(4),
            })
            .collect())
    }

    /// The most recent runs, newest first, optionally of one pipeline.
    pub async fn runs(&self, pipeline: Option<&str>, limit: u32) -> Result<Vec<RunRow>> {
        let rows = sqlx::query(
            "SELECT id, pipeline, status, started_at, finished_at FROM runs WHERE ?1 IS NULL OR pipeline = ?1 ORDER BY started_at DESC, id DESC LIMIT ?2",
        )
        .bind(pipeline)
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await
        .context(|| "reading runs".to_string())?;
        Ok(rows
            .into_iter()
            .map(|r| RunRow {
                id: r.get(0),
                pipeline: r.get(1),
                status: r.get(2),
                started_at: r.get(3),
                finished_at: r.get(4),
            })
            .collect())
    }

    /// The steps of one run.
    pub async fn steps(&self, run_id: &str) -> Result<Vec<StepRecord>> {
        let rows = sqlx::query(
            "SELECT step, status, rows_read, rows_written, rows_rejected, bytes_read, bytes_written, started_at, finished_at, watermark_from, watermark_to, message FROM step_runs WHERE run_id = ? ORDER BY started_at, step",
        )
        .bind(run_id)
        .fetch_all(&self.pool)
        .await
        .context(|| format!("reading steps of run {run_id}"))?;
        let n = |r: &sqlx::sqlite::SqliteRow, i: usize| r.get::<i64, _>(i).max(0) as u64;
        Ok(rows
            .iter()
            .map(|r| StepRecord {
                step: r.get(0),
                status: r.get(1),
                counters: CounterSnapshot {
                    rows_read: n(r, 2),
                    rows_written: n(r, 3),
                    rows_rejected: n(r, 4),
                    bytes_read: n(r, 5),
                    bytes_written: n(r, 6),
                    batches: 0,
                },
                started_at: r.get(7),
                finished_at: r.get(8),
                watermark_from: r.get(9),
                watermark_to: r.get(10),
                message: r.get(11),
            })
            .collect())
    }

    /// Forgets the watermarks of a pipeline (or of one step): the next run reads everything.
    /// Returns how many were removed.
    pub async fn reset(&self, pipeline: &str, step: Option<&str>) -> Result<u64> {
        let done =
            sqlx::query("DELETE FROM watermarks WHERE pipeline = ?1 AND (?2 IS NULL OR step = ?2)")
                .bind(pipeline)
                .bind(step)
                .execute(&self.pool)
                .await
                .context(|| format!("resetting watermarks of {pipeline}"))?;
        Ok(done.rows_affected())
    }

    /// Sets a watermark on purpose (backfills, skipping bad history).
    pub async fn set(&self, pipeline: &str, step: &str, value: &str) -> Result<()> {
        let mut tx = self
            .pool
            .begin()
            .await
            .context(|| "starting a state transaction".to_string())?;
        upsert_watermark(&mut tx, pipeline, step, value, None).await?;
        tx.commit()
            .await
            .context(|| format!("setting the watermark of {pipeline}/{step}"))?;
        Ok(())
    }
}

async fn upsert_watermark(
    tx: &mut sqlx::Transaction<'_, sqlx::Sqlite>,
    pipeline: &str,
    step: &str,
    value: &str,
    run_id: Option<&str>,
) -> Result<()> {
    sqlx::query(
        "INSERT INTO watermarks (pipeline, step, value, run_id, updated_at) VALUES (?, ?, ?, ?, ?)
         ON CONFLICT (pipeline, step) DO UPDATE SET value = excluded.value, run_id = excluded.run_id, updated_at = excluded.updated_at",
    )
    .bind(pipeline)
    .bind(step)
    .bind(value)
    .bind(run_id)
    .bind(now())
    .execute(&mut **tx)
    .await
    .context(|| format!("writing the watermark of {pipeline}/{step}"))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use super::*;

    fn record(step: &str, status: &str, to: Option<&str>) -> StepRecord {
        StepRecord {
            step: step.into(),
            status: status.into(),
            watermark_to: to.map(str::to_string),
            ..Default::default()
        }
    }

    #[tokio::test]
    async fn watermarks_move_only_with_succeeded_steps() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let state = StateStore::open(dir.path())
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        assert!(
            state
                .claim_run("r1", "p", "h")
                .await
                .unwrap_or_else(|e| panic!("{e}"))
        );
        state
            .record_step("r1", "p", &record("a", "Succeeded", Some("10")))
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        state
            .record_step("r1", "p", &record("b", "Failed", Some("99")))
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        state
            .finish_run("r1", "Failed")
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            state.watermark("p", "a").await.ok().flatten().as_deref(),
            Some("10")
        );
        assert_eq!(state.watermark("p", "b").await.ok().flatten(), None);
        let steps = state.steps("r1").await.unwrap_or_default();
        assert_eq!(steps.len(), 2);
        let runs = state.runs(Some("p"), 10).await.unwrap_or_default();
        assert_eq!(runs[0].status, "Failed");
    }

    #[tokio::test]
    async fn a_taken_run_id_is_never_reused() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let state = StateStore::open(dir.path())
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        let claim = async |id: &str| {
            state
                .claim_run(id, "p", "h")
                .await
                .unwrap_or_else(|e| panic!("{e}"))
        };
        assert!(claim("r1").await);
        assert!(!claim("r1").await, "a second run took a taken id");
        let mut ids = BTreeSet::new();
        for _ in 0..200 {
            let id = state
                .start_run("p", "h")
                .await
                .unwrap_or_else(|e| panic!("{e}"));
            assert!(ids.insert(id.clone()), "run id {id} handed out twice");
        }
        let runs = state.runs(Some("p"), 1000).await.unwrap_or_default();
        assert_eq!(runs.len(), 201);
        assert!(runs.iter().all(|r| r.status == "Running"));
    }

    #[tokio::test]
    async fn set_and_reset_are_explicit() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let state = StateStore::open(dir.path())
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        state
            .set("p", "a", "2024-01-01")
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        state
            .set("p", "b", "5")
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        state
            .set("q", "a", "7")
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            state.watermarks(Some("p")).await.map(|w| w.len()).ok(),
            Some(2)
        );
        assert_eq!(state.reset("p", Some("a")).await.ok(), Some(1));
        assert_eq!(state.reset("p", None).await.ok(), Some(1));
        assert_eq!(state.watermarks(None).await.map(|w| w.len()).ok(), Some(1));
        // Reopening keeps the data and does not re-run migrations.
        drop(state);
        let again = StateStore::open(dir.path())
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            again.watermark("q", "a").await.ok().flatten().as_deref(),
            Some("7")
        );
    }
}
