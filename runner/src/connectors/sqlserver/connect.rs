//! Opening a connection: TCP with a timeout, retries of transient failures, and one reconnect
//! where the server routes the client (Azure SQL gateways answer the login with the address
//! of the node that holds the database).

use std::io::ErrorKind;
use std::time::Duration;

use tiberius::error::Error as TdsError;
use tokio::net::TcpStream;
use tokio_util::compat::{Compat, TokioAsyncWriteCompatExt};

use super::config::SqlServerConfig;
use super::errors::{Failure, is_transient};
use crate::check::CheckReason;
use crate::connectors::retry::{log_connect_retry, retry};
use crate::error::{Error, Result};

/// A connected client.
pub type Client = tiberius::Client<Compat<TcpStream>>;

/// Longest wait for the TCP connect, and separately for TLS and the login.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(15);

/// A connection, after up to `settings.retry.attempts` attempts while the server is
/// restarting or not reachable yet. The error names the Connection and says what to do.
pub async fn connect(settings: &SqlServerConfig) -> Result<Client> {
    retry(
        settings.retry,
        is_transient,
        |attempt, e, wait| log_connect_retry(&settings.at(), &settings.redact(e), attempt, wait),
        || attempt(settings),
    )
    .await
    .map_err(|e| {
        let (_, detail) = connect_failure(settings, &e);
        Error::database_detail(settings.at(), detail, e)
    })
}

/// One connect; when the server routes the client elsewhere, one connect there.
pub async fn attempt(settings: &SqlServerConfig) -> std::result::Result<Client, TdsError> {
    match attempt_at(settings, &settings.host, settings.port).await {
        Err(TdsError::Routing { host, port }) => attempt_at(settings, &host, port).await,
        other => other,
    }
}

/// Why a connect failed and what to do, for an error or a check report. Never contains the
/// password.
pub fn connect_failure(settings: &SqlServerConfig, e: &TdsError) -> (CheckReason, String) {
    let failure = Failure::of_connect(settings, e);
    (failure.reason(), failure.detail)
}

async fn attempt_at(
    settings: &SqlServerConfig,
    host: &str,
    port: u16,
) -> std::result::Result<Client, TdsError> {
    let timed_out = || TdsError::Io {
        kind: ErrorKind::TimedOut,
        message: format!("no answer within {}s", CONNECT_TIMEOUT.as_secs()),
    };
    let tcp = tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect((host, port)))
        .await
        .map_err(|_| timed_out())??;
    // Rows go out in small packets; waiting to coalesce them only adds latency.
    tcp.set_nodelay(true)?;
    let config = settings.tiberius_config(host, port);
    tokio::time::timeout(CONNECT_TIMEOUT, Client::connect(config, tcp.compat_write()))
        .await
        .map_err(|_| timed_out())?
}
