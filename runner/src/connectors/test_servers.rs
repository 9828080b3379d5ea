//! Where the connector tests find their database servers: `scripts/services up` starts
//! PostgreSQL and MariaDB on loopback and prints these variables; the defaults are its ports.
//! A test that needs a server fails when it is not there: a missing server is a broken test
//! setup, never a reason to skip.

/// URL of the PostgreSQL test server (a superuser `synqx`, database `synqx`).
pub fn postgres_url() -> String {
    std::env::var("SYNQX_TEST_POSTGRES")
        .unwrap_or_else(|_| "postgres://synqx:synqx@127.0.0.1:55432/synqx".into())
}

/// URL of the MariaDB test server (a user `synqx` with all privileges, database `synqx`).
pub fn mysql_url() -> String {
    std::env::var("SYNQX_TEST_MYSQL")
        .unwrap_or_else(|_| "mysql://synqx:synqx@127.0.0.1:53306/synqx".into())
}

/// The message of a test that could not reach its server.
pub fn unreachable(what: &str, url: &str, error: impl std::fmt::Display) -> String {
    format!(
        "the {what} test server at {url} is not reachable ({error}); start it with `scripts/services up`"
    )
}

/// A name no other test of this or a concurrent run uses, for schemas, databases and tables.
pub fn unique_name(prefix: &str) -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    format!(
        "{prefix}_{}_{nanos:x}_{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    )
}
