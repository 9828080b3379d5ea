//! The probe of `synqx check`: connect, log in, and ask the server which database the session
//! is in. Nothing is written. One attempt only: a check reports at once, it does not wait for
//! a server to come back.

use std::time::Duration;

use synqx_api::connection::CheckReport;

use super::config::SqlServerConfig;
use super::connect::attempt;
use super::errors::{Failure, Kind, server_text};
use crate::check::{CheckReason, report};

/// Longest wait for the whole probe.
const TIMEOUT: Duration = Duration::from_secs(20);

pub(super) async fn check(settings: &SqlServerConfig) -> CheckReport {
    let server = format!("{}:{}", settings.host, settings.port);
    let probe = async {
        let mut client = attempt(settings)
            .await
            .map_err(|e| Failure::of_connect(settings, &e))?;
        let query_failed = |e: tiberius::error::Error| Failure {
            kind: Kind::Other,
            detail: settings.redact(format!("SELECT DB_NAME() failed: {}", server_text(&e))),
            text: settings.redact(format!(
                "{}: SELECT DB_NAME() failed: {}",
                settings.at(),
                server_text(&e)
            )),
        };
        let row = client
            .simple_query("SELECT DB_NAME()")
            .await
            .map_err(query_failed)?
            .into_row()
            .await
            .map_err(query_failed)?;
        let database = match &row {
            Some(r) => r
                .try_get::<&str, _>(0)
                .map_err(query_failed)?
                .unwrap_or_default()
                .to_string(),
            None => String::new(),
        };
        let _ = client.close().await;
        Ok::<_, Failure>(database)
    };
    match tokio::time::timeout(TIMEOUT, probe).await {
        Ok(Ok(database)) => report(
            CheckReason::Connected,
            format!(
                "{}: connected to SQL Server at {server} as \"{}\", database \"{database}\"",
                settings.at(),
                settings.user
            ),
        ),
        Ok(Err(failure)) => report(failure.reason(), failure.text),
        Err(_) => report(
            CheckReason::Unreachable,
            format!(
                "{}: SQL Server at {server} did not answer within {}s",
                settings.at(),
                TIMEOUT.as_secs()
            ),
        ),
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    use synqx_api::ConnectionSpec;

    use super::super::config::tests::spec;

    fn with(port: u16, host: &str) -> ConnectionSpec {
        let mut s = spec("hunter2-secret");
        if let Some(c) = s.sqlserver.as_mut() {
            c.host = host.into();
            c.port = Some(port);
        }
        s
    }

    /// A loopback port nothing listens on: bound, then released.
    fn free_port() -> u16 {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap().port()
    }

    #[tokio::test]
    async fn a_refused_port_is_unreachable_and_hides_the_password() {
        let port = free_port();
        let report =
            crate::check::check_spec("mssql", with(port, "127.0.0.1"), Path::new(".")).await;
        assert!(!report.ready);
        assert_eq!(report.reason.as_str(), "Unreachable", "{report:?}");
        assert!(
            report.message.starts_with(&format!(
                "Connection \"mssql\": cannot reach SQL Server at 127.0.0.1:{port} ("
            )),
            "{}",
            report.message
        );
        assert!(
            report
                .message
                .contains("check sqlserver.host, sqlserver.port")
        );
        assert!(!report.message.contains("hunter2-secret"));
    }

    /// A check answers with what one connect found: a server that hangs up is not tried again
    /// (the retries of a step's connect would keep `synqx check` and the Connection
    /// controller waiting). The listener counts the connections it was offered.
    #[tokio::test]
    async fn a_check_connects_once_and_does_not_retry() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let offered = Arc::new(AtomicUsize::new(0));
        let counted = offered.clone();
        let server = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                counted.fetch_add(1, Ordering::SeqCst);
                drop(stream);
            }
        });
        let report =
            crate::check::check_spec("mssql", with(port, "127.0.0.1"), Path::new(".")).await;
        server.abort();
        assert!(!report.ready, "{report:?}");
        assert!(!report.message.contains("hunter2-secret"), "{report:?}");
        assert_eq!(offered.load(Ordering::SeqCst), 1, "{report:?}");
    }

    #[tokio::test]
    async fn an_invalid_spec_is_invalid_without_connecting() {
        let report = crate::check::check_spec("mssql", with(1433, "  "), Path::new(".")).await;
        assert!(!report.ready);
        assert_eq!(report.reason.as_str(), "Invalid");
        assert_eq!(
            report.message,
            "Connection \"mssql\": sqlserver.host is empty"
        );
        let mut no_user = with(1433, "db");
        if let Some(c) = no_user.sqlserver.as_mut() {
            c.user.value = Some(String::new());
        }
        let report = crate::check::check_spec("mssql", no_user, Path::new(".")).await;
        assert_eq!(report.reason.as_str(), "Invalid");
        assert!(
            report.message.contains("sqlserver.user is empty"),
            "{}",
            report.message
        );
    }
}
