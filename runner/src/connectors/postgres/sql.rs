//! The `sql` step body on PostgreSQL: the statements in order, in one transaction.

use sqlx::{AssertSqlSafe, Connection};

use super::config::PostgresConfig;
use super::connect::{connect, database};
use crate::error::Result;

/// Runs the statements in one transaction and returns the rows they affected. A failing
/// statement rolls back all of them.
pub(super) async fn run(settings: &PostgresConfig, statements: &[String]) -> Result<u64> {
    let settings = settings.clone();
    let mut db = connect(&settings).await?;
    let mut tx = db
        .begin()
        .await
        .map_err(|e| database(&settings, settings.at(), e))?;
    let mut affected = 0;
    for (i, statement) in statements.iter().enumerate() {
        // The statements are the pipeline author's own SQL, run as written.
        match sqlx::raw_sql(AssertSqlSafe(statement.as_str()))
            .execute(&mut *tx)
            .await
        {
            Ok(done) => affected += done.rows_affected(),
            Err(e) => {
                // Roll back now, so the database is as it was once the error is seen; the
                // statement's error matters more than a failed rollback.
                let _ = tx.rollback().await;
                return Err(database(
                    &settings,
                    format!(
                        "{}: statements[{i}] failed, nothing was committed",
                        settings.at()
                    ),
                    e,
                ));
            }
        }
    }
    tx.commit()
        .await
        .map_err(|e| database(&settings, format!("{}: commit", settings.at()), e))?;
    Ok(affected)
}
