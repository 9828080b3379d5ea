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
use crate::connectors::retry::{log_connect_retry, retry};
use crate::error::{Error, Result};

/// A connected client.
pub type Client = tiberius::Client<Compat<TcpStream>>;

/// Longest wait for the TCP connect, and separately for TLS and the login.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(15);

/// A connection, after up to `settings.retry.attempts` attempts while the server is
/// restarting or not reachable yet. The error names the Connection and says what to do.
pub async fn connect(settings: &SqlServerConfig) -> Result<Client> {
    connect_failure(settings)
        .await
        .map_err(|(f, e)| Error::database_detail(settings.at(), f.detail, e))
}

/// Like [`connect`], with the failure classified (for the check probe).
pub async fn connect_failure(
    settings: &SqlServerConfig,
) -> std::result::Result<Client, (Failure, TdsError)> {
    retry(
        settings.retry,
        is_transient,
        |attempt, e, wait| log_connect_retry(&settings.at(), &settings.redact(e), attempt, wait),
        || following_routing(settings),
    )
    .await
    .map_err(|e| (Failure::of_connect(settings, &e), e))
}

/// One connect; when the server routes the client elsewhere, one connect there.
async fn following_routing(settings: &SqlServerConfig) -> std::result::Result<Client, TdsError> {
    match attempt(settings, &settings.host, settings.port).await {
        Err(TdsError::Routing { host, port }) => attempt(settings, &host, port).await,
        other => other,
    }
}

async fn attempt(
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
