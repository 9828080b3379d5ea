//! Statements of the connector's own, and transaction control: what the sink and `sql` steps
//! send besides rows.

use super::config::SqlServerConfig;
use super::connect::Client;
use super::errors::statement_error;
use crate::error::Result;

/// Runs statements of the connector's own as a batch. Transaction control and temporary
/// tables go this way: a `BEGIN TRANSACTION` inside `sp_executesql` (which `execute` uses)
/// fails with error 266, and a `#table` created there is gone when it returns.
pub(super) async fn batch(
    client: &mut Client,
    settings: &SqlServerConfig,
    table: Option<&str>,
    sql: &str,
    doing: &str,
) -> Result<()> {
    let failed = |e: tiberius::error::Error| statement_error(settings, table, doing, e);
    client
        .simple_query(sql)
        .await
        .map_err(failed)?
        .into_results()
        .await
        .map_err(failed)?;
    Ok(())
}

/// Runs one statement of the connector's own; returns the rows it affected.
pub(super) async fn execute(
    client: &mut Client,
    settings: &SqlServerConfig,
    table: Option<&str>,
    sql: &str,
    doing: &str,
) -> Result<u64> {
    client
        .execute(sql, &[])
        .await
        .map(|done| done.total())
        .map_err(|e| statement_error(settings, table, doing, e))
}

/// Rolls back when a transaction is open. The error that caused it matters more than a failed
/// rollback, and closing the connection rolls back anyway.
pub(super) async fn rollback(client: &mut Client) {
    if let Ok(stream) = client
        .simple_query("IF @@TRANCOUNT > 0 ROLLBACK TRANSACTION")
        .await
    {
        let _ = stream.into_results().await;
    }
}
