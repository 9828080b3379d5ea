//! The probe of `synqx check`: the database file opens read-only and answers a query on its
//! schema. A missing file in an existing folder is ready: the first write creates it.

use std::io::ErrorKind;
use std::path::Path;
use std::time::Duration;

use sqlx::sqlite::{SqliteConnectOptions, SqliteConnection};
use sqlx::{ConnectOptions, Connection};
use synqx_api::connection::CheckReport;

use super::config::SqliteConfig;
use crate::check::{CheckReason, report};

/// Longest wait for the file to open and answer; a writer of the same file can hold a lock.
const TIMEOUT: Duration = Duration::from_secs(10);

pub(super) async fn check(config: SqliteConfig) -> CheckReport {
    let path = config.path.as_path();
    let shown = path.display();
    let say = |reason: CheckReason, what: String| {
        report(
            reason,
            format!("Connection \"{}\": {what}", config.connection),
        )
    };
    let io_failure = |what: &str, e: std::io::Error| {
        if e.kind() == ErrorKind::PermissionDenied {
            say(
                CheckReason::Unauthorized,
                format!("cannot read {what}: {e}: give the runner's user access to it"),
            )
        } else {
            say(CheckReason::Unreachable, format!("cannot read {what}: {e}"))
        }
    };
    match tokio::fs::metadata(path).await {
        Ok(meta) if meta.is_dir() => {
            return say(
                CheckReason::Invalid,
                format!("{shown} is a directory: sqlite.path must name the database file"),
            );
        }
        Ok(_) => {}
        Err(e) if e.kind() == ErrorKind::NotFound => return missing_file(path, say, io_failure),
        Err(e) => return io_failure(&format!("database file {shown}"), e),
    }
    let options = SqliteConnectOptions::new()
        .filename(path)
        .read_only(true)
        .busy_timeout(Duration::from_secs(5));
    // Reading the schema proves the file is a database; `SELECT 1` alone never reads it.
    let probe = async {
        let mut connection: SqliteConnection = options.connect().await?;
        let tables: i64 =
            sqlx::query_scalar("SELECT count(*) FROM sqlite_master WHERE type = 'table'")
                .fetch_one(&mut connection)
                .await?;
        let _ = connection.close().await;
        Ok::<_, sqlx::Error>(tables)
    };
    match tokio::time::timeout(TIMEOUT, probe).await {
        Ok(Ok(tables)) => say(
            CheckReason::Connected,
            format!(
                "opened SQLite database {shown} ({tables} table{})",
                if tables == 1 { "" } else { "s" }
            ),
        ),
        Ok(Err(e)) => {
            let reason = reason_of(&e);
            let hint = match reason {
                CheckReason::Invalid => ": sqlite.path must name a SQLite database file",
                CheckReason::Unauthorized => ": give the runner's user read access to it",
                _ => "",
            };
            say(
                reason,
                format!("cannot open SQLite database {shown}: {e}{hint}"),
            )
        }
        Err(_) => say(
            CheckReason::Unreachable,
            format!(
                "SQLite database {shown} did not answer within {}s: another process may hold a lock on it",
                TIMEOUT.as_secs()
            ),
        ),
    }
}

/// The report of a database file that does not exist: ready when its folder does.
fn missing_file(
    path: &Path,
    say: impl Fn(CheckReason, String) -> CheckReport,
    io_failure: impl Fn(&str, std::io::Error) -> CheckReport,
) -> CheckReport {
    let shown = path.display();
    let folder = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    match std::fs::metadata(folder) {
        Ok(meta) if meta.is_dir() => say(
            CheckReason::Connected,
            format!(
                "database file {shown} does not exist yet: it will be created on the first write (its folder exists)"
            ),
        ),
        Ok(_) => say(
            CheckReason::Invalid,
            format!(
                "{} is a file, not a folder, so database file {shown} cannot be created: fix sqlite.path",
                folder.display()
            ),
        ),
        Err(e) if e.kind() == ErrorKind::NotFound => say(
            CheckReason::NotFound,
            format!(
                "folder {} of database file {shown} does not exist: create or mount it, or fix sqlite.path",
                folder.display()
            ),
        ),
        Err(e) => io_failure(&format!("folder {}", folder.display()), e),
    }
}

/// The reason of a failed open or query, from SQLite's primary result code.
fn reason_of(e: &sqlx::Error) -> CheckReason {
    const SQLITE_PERM: i64 = 3;
    const SQLITE_READONLY: i64 = 8;
    const SQLITE_CORRUPT: i64 = 11;
    const SQLITE_CANTOPEN: i64 = 14;
    const SQLITE_AUTH: i64 = 23;
    const SQLITE_NOTADB: i64 = 26;
    let code = e
        .as_database_error()
        .and_then(|d| d.code())
        .and_then(|c| c.parse::<i64>().ok())
        .map(|c| c & 0xff);
    match code {
        Some(SQLITE_NOTADB | SQLITE_CORRUPT) => CheckReason::Invalid,
        Some(SQLITE_PERM | SQLITE_READONLY | SQLITE_AUTH | SQLITE_CANTOPEN) => {
            CheckReason::Unauthorized
        }
        _ => CheckReason::Unreachable,
    }
}

#[cfg(test)]
mod tests {
    use sqlx::sqlite::SqliteJournalMode;
    use synqx_api::ConnectionSpec;
    use synqx_api::connection::SqliteConnection as SqliteSpec;

    use super::*;

    async fn check_path(base: &Path, path: &str) -> CheckReport {
        let spec = ConnectionSpec {
            sqlite: Some(SqliteSpec { path: path.into() }),
            ..Default::default()
        };
        crate::check::check_spec("db", spec, base).await
    }

    fn tempdir() -> tempfile::TempDir {
        tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"))
    }

    #[tokio::test]
    async fn an_existing_database_opens_and_is_left_as_it_was() {
        let base = tempdir();
        let path = base.path().join("warehouse.db");
        // A database as the sink leaves it: in WAL mode, closed.
        let options = SqliteConnectOptions::new()
            .filename(&path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal);
        let mut db: SqliteConnection = options.connect().await.unwrap_or_else(|e| panic!("{e}"));
        sqlx::query("CREATE TABLE orders (id INTEGER PRIMARY KEY)")
            .execute(&mut db)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        db.close().await.unwrap_or_else(|e| panic!("{e}"));
        let before = std::fs::read(&path).unwrap_or_else(|e| panic!("{e}"));

        let report = check_path(base.path(), "warehouse.db").await;
        assert!(report.ready, "{report:?}");
        assert_eq!(report.reason.as_str(), "Connected");
        assert_eq!(
            report.message,
            format!(
                "Connection \"db\": opened SQLite database {} (1 table)",
                path.display()
            )
        );
        assert_eq!(std::fs::read(&path).ok(), Some(before));
    }

    #[tokio::test]
    async fn a_missing_file_in_an_existing_folder_is_created_later() {
        let base = tempdir();
        let report = check_path(base.path(), "new.db").await;
        assert!(report.ready, "{report:?}");
        assert_eq!(report.reason.as_str(), "Connected");
        assert!(
            report
                .message
                .contains("does not exist yet: it will be created on the first write"),
            "{}",
            report.message
        );
        assert!(!base.path().join("new.db").exists(), "the check created it");
    }

    #[tokio::test]
    async fn a_missing_folder_is_not_found() {
        let base = tempdir();
        let report = check_path(base.path(), "no/such/folder/x.db").await;
        assert!(!report.ready);
        assert_eq!(report.reason.as_str(), "NotFound");
        assert!(
            report.message.starts_with(&format!(
                "Connection \"db\": folder {} of database file",
                base.path().join("no/such/folder").display()
            )),
            "{}",
            report.message
        );
        assert!(!base.path().join("no").exists(), "the check created it");
    }

    #[tokio::test]
    async fn a_file_that_is_not_a_database_is_invalid() {
        let base = tempdir();
        std::fs::write(
            base.path().join("notes.db"),
            "not a database, just text\n".repeat(40),
        )
        .unwrap_or_else(|e| panic!("{e}"));
        let report = check_path(base.path(), "notes.db").await;
        assert!(!report.ready);
        assert_eq!(report.reason.as_str(), "Invalid", "{report:?}");
        assert!(
            report
                .message
                .ends_with(": sqlite.path must name a SQLite database file"),
            "{}",
            report.message
        );
        let report = check_path(base.path(), ".").await;
        assert_eq!(report.reason.as_str(), "Invalid", "{report:?}");
        assert!(report.message.contains("is a directory"), "{report:?}");
    }
}
