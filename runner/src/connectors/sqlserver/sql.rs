//! The `sql` step body on SQL Server: the statements in one transaction, in order, with the
//! rows they affected summed.

use super::config::SqlServerConfig;
use super::connect::{Client, connect};
use super::errors::statement_error;
use crate::error::Result;

/// Runs the statements in one transaction; returns the rows they affected. A failure rolls
/// everything back and names the statement by its index.
pub(super) async fn run(settings: &SqlServerConfig, statements: &[String]) -> Result<u64> {
    let mut client = connect(settings).await?;
    batch(
        &mut client,
        settings,
        None,
        "BEGIN TRANSACTION",
        "starting a transaction",
    )
    .await?;
    let mut affected = 0;
    for (i, statement) in statements.iter().enumerate() {
        // The statements are the pipeline author's own SQL, run as written.
        match client.execute(statement.as_str(), &[]).await {
            Ok(done) => affected += done.total(),
            Err(e) => {
                rollback(&mut client).await;
                return Err(statement_error(
                    settings,
                    None,
                    &format!("statements[{i}]"),
                    e,
                ));
            }
        }
    }
    if let Err(e) = batch(
        &mut client,
        settings,
        None,
        "COMMIT TRANSACTION",
        "committing",
    )
    .await
    {
        rollback(&mut client).await;
        return Err(e);
    }
    let _ = client.close().await;
    Ok(affected)
}

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
