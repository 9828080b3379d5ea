//! Connecting to Redis, and what its errors mean: a refused or unreachable server, a rejected
//! password, or a command the server refused. Messages name the Connection and the server and
//! never carry the password.

use std::time::Duration;

use redis::aio::MultiplexedConnection;
use redis::{AsyncConnectionConfig, ErrorKind, RedisError};

use super::config::RedisConfig;
use crate::check::CheckReason;
use crate::error::{Error, Result};

/// Longest wait for a connection or one command's answer.
pub const TIMEOUT: Duration = Duration::from_secs(30);

/// An open connection (multiplexed: pipelines from one task share it).
pub async fn connect(settings: &RedisConfig) -> Result<MultiplexedConnection> {
    let client =
        redis::Client::open(settings.info()?).map_err(|e| failure(settings, "opening", e))?;
    let config = AsyncConnectionConfig::new()
        .set_connection_timeout(Some(TIMEOUT.min(Duration::from_secs(10))))
        .set_response_timeout(Some(TIMEOUT));
    client
        .get_multiplexed_async_connection_with_config(&config)
        .await
        .map_err(|e| failure(settings, "connecting to", e))
}

/// What a Redis error means for `synqx check`.
pub fn reason(e: &RedisError) -> CheckReason {
    let code = e.code().unwrap_or_default();
    if e.kind() == ErrorKind::AuthenticationFailed
        || matches!(code, "WRONGPASS" | "NOAUTH" | "NOPERM")
    {
        CheckReason::Unauthorized
    } else if e.is_io_error() || e.is_connection_refusal() || e.is_timeout() {
        CheckReason::Unreachable
    } else {
        CheckReason::Invalid
    }
}

/// A Redis error as the step's error: what was being done, on which server, and what to do.
pub fn failure(settings: &RedisConfig, doing: &str, e: RedisError) -> Error {
    let hint = match reason(&e) {
        CheckReason::Unauthorized => " (check the Connection's username and password)",
        CheckReason::Unreachable => " (is the server running, and reachable from here?)",
        _ => "",
    };
    let detail = settings
        .redactor
        .redact(format!("{doing} Redis at {}: {e}{hint}", settings.server()));
    Error::database_detail(settings.at(), detail, e)
}
