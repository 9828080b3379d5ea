//! The `sql` step body on any SQL database: the statements in order, in one transaction, as
//! the pipeline's author wrote them. A failing statement rolls back what the transaction
//! holds, and the error names it by its index.

use super::dialect::SqlDialect;
use crate::error::Result;

/// Runs the statements; returns the rows they affected.
pub async fn run<D: SqlDialect>(dialect: &D, statements: &[String]) -> Result<u64> {
    let at = crate::connectors::connection_at(dialect.connection());
    let mut conn = dialect.connect().await?;
    let result = run_in(dialect, &mut conn, &at, statements).await;
    if result.is_err() {
        dialect.roll_back(&mut conn).await;
    }
    dialect.close(conn).await;
    result
}

async fn run_in<D: SqlDialect>(
    dialect: &D,
    conn: &mut D::Conn,
    at: &str,
    statements: &[String],
) -> Result<u64> {
    dialect.begin(conn, at).await?;
    // Where DDL commits at once, only the data statements roll back together.
    let rolled_back = if D::TRANSACTIONAL_DDL {
        "nothing was committed"
    } else {
        "the data statements before it were rolled back (DDL commits at once)"
    };
    let mut affected = 0;
    for (i, statement) in statements.iter().enumerate() {
        let context = format!("{at}: statements[{i}] failed, {rolled_back}");
        affected += dialect.execute(conn, &context, statement).await?;
    }
    dialect.commit(conn, at).await?;
    Ok(affected)
}
