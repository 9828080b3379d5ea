//! What the dialects over sqlx sessions (PostgreSQL, MySQL, SQLite) do alike with one. `run`
//! returns sqlx's boxed future rather than being an `async fn`: a generic `async fn` over an
//! executor cannot be proven `Send` for every lifetime inside the dialects' `async_trait`
//! methods.

use futures::future::BoxFuture;
use std::time::Duration;

use sqlx::{AssertSqlSafe, ConnectOptions, Connection, Database, Executor};

/// Runs a `sql` step's statement as written, unprepared: it may hold several statements,
/// which one prepared statement cannot.
pub fn run<'c, E: Executor<'c>>(
    conn: E,
    statement: &str,
) -> BoxFuture<'c, sqlx::Result<<E::Database as Database>::QueryResult>> {
    conn.execute(sqlx::raw_sql(AssertSqlSafe(statement)))
}

/// Ends the session. A failed goodbye loses nothing: the server ends it too.
pub async fn close<C: Connection>(conn: C) {
    let _ = conn.close().await;
}

/// One connect, bounded by `timeout`; a timeout is an I/O error, transient as the others.
pub async fn connect_within<O: ConnectOptions>(
    options: &O,
    timeout: Duration,
) -> sqlx::Result<O::Connection>
where
    O::Connection: Sized,
{
    match tokio::time::timeout(timeout, options.connect()).await {
        Ok(result) => result,
        Err(_) => Err(sqlx::Error::Io(std::io::Error::new(
            std::io::ErrorKind::TimedOut,
            format!("no answer within {}s", timeout.as_secs()),
        ))),
    }
}
