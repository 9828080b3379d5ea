//! The `sql` step body on SQLite: the statements in order, in one transaction.

use sqlx::Connection;
use sqlx::sqlite::{SqliteConnectOptions, SqliteConnection};

use super::config::SqliteConfig;
use super::connect::BUSY_TIMEOUT;
use crate::error::{Context, Result};

/// Runs the statements in order in one transaction; returns the rows they affected.
pub(super) async fn run(config: &SqliteConfig, statements: &[String]) -> Result<u64> {
    let name = &config.connection;
    let options = SqliteConnectOptions::new()
        .filename(&config.path)
        .create_if_missing(true)
        .busy_timeout(BUSY_TIMEOUT);
    let mut db = SqliteConnection::connect_with(&options)
        .await
        .context(|| format!("Connection \"{name}\": opening {}", config.path.display()))?;
    let mut tx = db
        .begin()
        .await
        .context(|| format!("Connection \"{name}\""))?;
    let mut affected = 0;
    // The statements are the pipeline author's own SQL, run as written.
    for (i, statement) in statements.iter().enumerate() {
        let done = sqlx::raw_sql(sqlx::AssertSqlSafe(statement.as_str()))
            .execute(&mut *tx)
            .await
            .context(|| format!("Connection \"{name}\": statements[{i}]"))?;
        affected += done.rows_affected();
    }
    tx.commit()
        .await
        .context(|| format!("Connection \"{name}\": commit"))?;
    Ok(affected)
}
