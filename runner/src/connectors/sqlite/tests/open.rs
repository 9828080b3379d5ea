//! Several connections opening one new database file at the same moment, as parallel steps
//! of a run do.

use std::sync::Arc;

use sqlx::Row;
use tokio::sync::Barrier;

use super::super::SqliteConfig;
use super::super::connect::connect;
use super::support::CONNECTION;

/// Connections racing to open each new file.
const AT_ONCE: usize = 6;
/// New files opened by a race.
const ROUNDS: usize = 400;

/// Switching a new file to WAL takes an exclusive lock; SQLite refuses a connection that
/// already holds a shared lock at once (`database is locked`, its busy handler is not called,
/// as waiting could deadlock), so the open retries that refusal itself.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn connections_opening_a_new_file_together_all_succeed() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    for round in 0..ROUNDS {
        let config = Arc::new(SqliteConfig {
            connection: CONNECTION.into(),
            path: dir.path().join(format!("round-{round}.db")),
        });
        let start = Arc::new(Barrier::new(AT_ONCE));
        let opens: Vec<_> = (0..AT_ONCE)
            .map(|_| {
                let (config, start) = (config.clone(), start.clone());
                tokio::spawn(async move {
                    start.wait().await;
                    let mut conn = connect(&config).await.map_err(|e| e.to_string())?;
                    let row = sqlx::query("PRAGMA journal_mode")
                        .fetch_one(&mut conn)
                        .await
                        .map_err(|e| e.to_string())?;
                    Ok::<String, String>(row.get(0))
                })
            })
            .collect();
        for open in opens {
            let mode = open
                .await
                .unwrap_or_else(|e| panic!("{e}"))
                .unwrap_or_else(|e| panic!("round {round}: {e}"));
            assert_eq!(mode, "wal", "round {round}");
        }
    }
}
