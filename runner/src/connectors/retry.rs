//! Retries of transient failures with exponential backoff: a database that restarts, a
//! connection reset, a server not accepting connections yet. Permanent failures (a wrong
//! password, a missing table, a syntax error) fail at once, since retrying them only delays
//! the message the user needs.

use std::future::Future;
use std::io::ErrorKind;
use std::time::Duration;

/// How often and how patiently a transient failure is retried: the attempts and the waits
/// between them (not a step's `retry` policy, which the scheduler applies to whole attempts).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RetrySchedule {
    /// Attempts in all, the first included.
    pub attempts: u32,
    /// Wait before the second attempt.
    pub initial: Duration,
    /// Longest wait between two attempts.
    pub max: Duration,
}

impl Default for RetrySchedule {
    /// Five attempts over about 15 seconds: long enough for a server restart or a failover,
    /// short enough that an unreachable host is reported quickly.
    fn default() -> Self {
        Self {
            attempts: 5,
            initial: Duration::from_millis(500),
            max: Duration::from_secs(8),
        }
    }
}

impl RetrySchedule {
    /// The wait before attempt `n` (from 2): doubling from `initial`, capped at `max`.
    pub fn delay(&self, n: u32) -> Duration {
        synqx_api::scheduler::exponential(self.initial, 2.0, self.max, n)
    }
}

/// Logs a connect attempt that failed and is tried again: `at` names the server, `error` is
/// the failure with credentials already removed.
pub fn log_connect_retry(at: &str, error: &str, attempt: u32, wait: Duration) {
    tracing::warn!(
        "{at}: connecting failed ({error}); attempt {attempt} in {:.1}s",
        wait.as_secs_f64()
    );
}

/// Runs `op` until it succeeds, fails permanently, or the attempts are used up; returns the
/// last error. `on_retry` hears about each retried failure (for logs).
pub async fn retry<T, E, F, Fut>(
    schedule: RetrySchedule,
    is_transient: impl Fn(&E) -> bool,
    mut on_retry: impl FnMut(u32, &E, Duration),
    mut op: F,
) -> Result<T, E>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, E>>,
{
    let mut attempt = 1;
    loop {
        match op().await {
            Ok(value) => return Ok(value),
            Err(e) if attempt < schedule.attempts && is_transient(&e) => {
                attempt += 1;
                let wait = schedule.delay(attempt);
                on_retry(attempt, &e, wait);
                tokio::time::sleep(wait).await;
            }
            Err(e) => return Err(e),
        }
    }
}

/// Whether a database driver error is worth retrying: the network failed, or the server said
/// it cannot take connections right now. Name resolution failures are not: an unknown host
/// stays unknown.
pub fn sqlx_transient(e: &sqlx::Error) -> bool {
    match e {
        sqlx::Error::Io(io) => io_transient(io),
        sqlx::Error::PoolTimedOut => true,
        sqlx::Error::Database(db) => db.code().is_some_and(|code| {
            matches!(
                code.as_ref(),
                // PostgreSQL: admin shutdown, crash shutdown, cannot connect now, too many
                // connections.
                "57P01" | "57P02" | "57P03" | "53300"
                // MySQL/MariaDB: too many connections, server shutdown in progress.
                | "08004" | "08S01" | "HY000"
            ) && !is_mysql_permanent_hy000(db.message())
        }),
        _ => false,
    }
}

/// MySQL reports many permanent errors as SQLSTATE HY000; only the shutdown and connection
/// ones among them are transient.
fn is_mysql_permanent_hy000(message: &str) -> bool {
    let m = message.to_ascii_lowercase();
    !(m.contains("shutdown") || m.contains("too many connections") || m.contains("lost connection"))
}

/// Whether an I/O error is a network failure that may pass.
pub fn io_transient(e: &std::io::Error) -> bool {
    matches!(
        e.kind(),
        ErrorKind::ConnectionRefused
            | ErrorKind::ConnectionReset
            | ErrorKind::ConnectionAborted
            | ErrorKind::BrokenPipe
            | ErrorKind::TimedOut
            | ErrorKind::UnexpectedEof
            | ErrorKind::NotConnected
    )
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicU32, Ordering};

    use super::*;

    fn quick() -> RetrySchedule {
        RetrySchedule {
            attempts: 4,
            initial: Duration::from_millis(1),
            max: Duration::from_millis(3),
        }
    }

    #[test]
    fn delays_double_up_to_the_cap() {
        let b = RetrySchedule {
            attempts: 10,
            initial: Duration::from_millis(100),
            max: Duration::from_millis(500),
        };
        let waits: Vec<u128> = (2..=6).map(|n| b.delay(n).as_millis()).collect();
        assert_eq!(waits, vec![100, 200, 400, 500, 500]);
    }

    #[tokio::test]
    async fn transient_failures_are_retried_until_success() {
        let calls = AtomicU32::new(0);
        let mut heard = Vec::new();
        let result: Result<u32, &str> = retry(
            quick(),
            |e: &&str| *e == "reset",
            |n, _, _| heard.push(n),
            || async {
                let n = calls.fetch_add(1, Ordering::SeqCst) + 1;
                if n < 3 { Err("reset") } else { Ok(n) }
            },
        )
        .await;
        assert_eq!(result, Ok(3));
        assert_eq!(heard, vec![2, 3]);
    }

    #[tokio::test]
    async fn permanent_failures_and_exhausted_attempts_return_the_error() {
        let calls = AtomicU32::new(0);
        let result: Result<(), &str> = retry(
            quick(),
            |e: &&str| *e == "reset",
            |_, _, _| {},
            || async {
                calls.fetch_add(1, Ordering::SeqCst);
                Err("bad password")
            },
        )
        .await;
        assert_eq!(result, Err("bad password"));
        assert_eq!(calls.load(Ordering::SeqCst), 1);

        let calls = AtomicU32::new(0);
        let result: Result<(), &str> = retry(
            quick(),
            |_: &&str| true,
            |_, _, _| {},
            || async {
                calls.fetch_add(1, Ordering::SeqCst);
                Err("reset")
            },
        )
        .await;
        assert_eq!(result, Err("reset"));
        assert_eq!(calls.load(Ordering::SeqCst), 4);
    }

    #[test]
    fn network_errors_are_transient_and_others_are_not() {
        let refused = sqlx::Error::Io(std::io::Error::from(ErrorKind::ConnectionRefused));
        assert!(sqlx_transient(&refused));
        let missing = sqlx::Error::Io(std::io::Error::from(ErrorKind::NotFound));
        assert!(!sqlx_transient(&missing));
        assert!(!sqlx_transient(&sqlx::Error::RowNotFound));
        assert!(sqlx_transient(&sqlx::Error::PoolTimedOut));
    }
}
