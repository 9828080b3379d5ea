//! Opening the database file: one pool per connector, opened on first use (opening needs the
//! async runtime and does I/O, which `config` must not), creating the file and its folder.

use std::future::Future;
use std::time::{Duration, Instant};

use sqlx::Connection;
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteConnection, SqliteJournalMode, SqlitePool, SqlitePoolOptions,
};
use tokio::sync::OnceCell;

use super::config::SqliteConfig;
use crate::connectors::retry::{RetrySchedule, retry};
use crate::error::{Context, Result};

/// How long a writer waits for another writer of the same file. SQLite has one writer at a
/// time and every SynqX write holds it for its whole transaction, so parallel steps writing
/// to one file queue here instead of failing with `database is locked`.
pub(super) const BUSY_TIMEOUT: Duration = Duration::from_secs(300);
/// How an open that SQLite refused at once is retried: connections opening a new file
/// together race to switch it to WAL, which takes an exclusive lock, and SQLite answers
/// `database is locked` without waiting to one that already holds a shared lock (waiting could
/// deadlock). The winner holds the lock for a moment, so the retries are short and quick.
const OPEN_RETRIES: RetrySchedule = RetrySchedule {
    attempts: 20,
    initial: Duration::from_millis(5),
    max: Duration::from_millis(250),
};
/// Connections per pool: a reading stream holds one, schema probes and writes take another.
const MAX_CONNECTIONS: u32 = 4;

/// One database file and its pool.
pub(super) struct Database {
    pub config: SqliteConfig,
    pool: OnceCell<SqlitePool>,
}

impl Database {
    pub fn new(config: SqliteConfig) -> Self {
        Self {
            config,
            pool: OnceCell::new(),
        }
    }

    /// The pool, opening the file (and creating it and its directory) on first use.
    pub async fn pool(&self) -> Result<&SqlitePool> {
        self.pool.get_or_try_init(|| self.open()).await
    }

    async fn open(&self) -> Result<SqlitePool> {
        let options = prepare(&self.config).await?;
        refused_opens_retried(|| {
            SqlitePoolOptions::new()
                .max_connections(MAX_CONNECTIONS)
                .connect_with(options.clone())
        })
        .await
        .context(|| opening(&self.config))
    }

    /// The table an asset FQN names.
    pub fn table_name(&self, fqn: &str) -> Result<String> {
        self.config.table(fqn)
    }

    /// `Connection "c", table "t"`: the start of every message about a table.
    pub fn at(&self, table: &str) -> String {
        self.config.at(table)
    }
}

/// A connection of its own, as a write takes it: closing it (or dropping it, when the write
/// is cancelled) rolls back what it did not commit and releases the write lock at once.
pub(super) async fn connect(config: &SqliteConfig) -> Result<SqliteConnection> {
    let options = prepare(config).await?;
    refused_opens_retried(|| SqliteConnection::connect_with(&options))
        .await
        .context(|| opening(config))
}

/// Runs `open` again while SQLite refuses it as busy without having waited (see
/// [`OPEN_RETRIES`]); a refusal after the busy timeout ran out is final.
async fn refused_opens_retried<T, F, Fut>(open: F) -> sqlx::Result<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = sqlx::Result<T>>,
{
    let started = Instant::now();
    let refused = |e: &sqlx::Error| refused_as_busy(e) && started.elapsed() < BUSY_TIMEOUT;
    let log = |attempt: u32, e: &sqlx::Error, wait: Duration| {
        tracing::debug!("opening SQLite database refused ({e}); attempt {attempt} in {wait:?}");
    };
    retry(OPEN_RETRIES, refused, log, open).await
}

/// `SQLITE_BUSY` in any of its extended forms (the primary code is the low byte).
fn refused_as_busy(e: &sqlx::Error) -> bool {
    const SQLITE_BUSY: i64 = 5;
    e.as_database_error()
        .and_then(|db| db.code())
        .and_then(|code| code.parse::<i64>().ok())
        .is_some_and(|code| code & 0xff == SQLITE_BUSY)
}

/// Creates the folder of the database file, and the options every connection opens it with:
/// created when missing, in WAL mode, waiting for other writers.
async fn prepare(config: &SqliteConfig) -> Result<SqliteConnectOptions> {
    let path = &config.path;
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        tokio::fs::create_dir_all(parent).await.context(|| {
            format!(
                "Connection \"{}\": creating directory {}",
                config.connection,
                parent.display()
            )
        })?;
    }
    Ok(SqliteConnectOptions::new()
        .filename(path)
        .create_if_missing(true)
        .journal_mode(SqliteJournalMode::Wal)
        .busy_timeout(BUSY_TIMEOUT))
}

fn opening(config: &SqliteConfig) -> String {
    format!(
        "Connection \"{}\": opening SQLite database {}",
        config.connection,
        config.path.display()
    )
}
