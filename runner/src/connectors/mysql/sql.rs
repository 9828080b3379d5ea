//! The `sql` step body on MySQL: the statements in order, in one transaction, in the session
//! every SynqX connection uses (UTC, the `sql_mode` of `connect.rs`). MySQL commits DDL
//! implicitly (`CREATE`, `ALTER`, `DROP`, `TRUNCATE`, `RENAME` end the transaction before and
//! after them), so only the data statements between them roll back together when one fails.

use sqlx::{AssertSqlSafe, Connection};

use super::config::MysqlConfig;
use super::connect::{connect, database};
use crate::error::Result;

/// Runs the statements in order in one transaction; returns the rows they affected.
pub(super) async fn run(target: &MysqlConfig, statements: &[String]) -> Result<u64> {
    let mut session = connect(target).await?;
    let name = &target.connection;
    let mut tx = session.conn.begin().await.map_err(|e| {
        database(
            target,
            format!("Connection \"{name}\": starting a transaction"),
            e,
        )
    })?;
    let mut affected = 0;
    // The statements are the pipeline author's own SQL, run as written.
    for (i, statement) in statements.iter().enumerate() {
        let done = sqlx::raw_sql(AssertSqlSafe(statement.as_str()))
            .execute(&mut *tx)
            .await
            .map_err(|e| database(target, format!("Connection \"{name}\": statements[{i}]"), e))?;
        affected += done.rows_affected();
    }
    tx.commit()
        .await
        .map_err(|e| database(target, format!("Connection \"{name}\": commit"), e))?;
    Ok(affected)
}
