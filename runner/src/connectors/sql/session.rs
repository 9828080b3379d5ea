//! What the dialects over sqlx sessions (PostgreSQL, MySQL, SQLite) do alike with one. These
//! return sqlx's boxed futures rather than being `async fn`s: a generic `async fn` over an
//! executor cannot be proven `Send` for every lifetime inside the dialects' `async_trait`
//! methods.

use futures::FutureExt;
use futures::future::BoxFuture;
use sqlx::{AssertSqlSafe, Connection, Database, Executor};

/// Runs a `sql` step's statement as written, unprepared: it may hold several statements,
/// which one prepared statement cannot.
pub fn run<'c, E: Executor<'c>>(
    conn: E,
    statement: &str,
) -> BoxFuture<'c, sqlx::Result<<E::Database as Database>::QueryResult>> {
    conn.execute(sqlx::raw_sql(AssertSqlSafe(statement)))
}

/// Rolls back what is open. The error that caused it matters more than a failed rollback,
/// and closing the session rolls back anyway.
pub fn roll_back<'c, E: Executor<'c>>(conn: E) -> BoxFuture<'c, ()> {
    conn.execute("ROLLBACK").map(drop).boxed()
}

/// Ends the session. A failed goodbye loses nothing: the server ends it too.
pub async fn close<C: Connection>(conn: C) {
    let _ = conn.close().await;
}
