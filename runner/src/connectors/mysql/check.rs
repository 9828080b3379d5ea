//! The probe of `synqx check`: connect, authenticate, and ask the server which database the
//! session uses. One attempt, no retries: a check reports the state of the moment, quickly.

use std::time::Duration;

use sqlx::Connection;
use synqx_api::connection::CheckReport;

use super::config::MysqlConfig;
use super::connect::{attempt, connect_failure};
use crate::check::{CheckReason, report};

/// Longest wait for the server to accept and answer.
const TIMEOUT: Duration = Duration::from_secs(10);

pub(super) async fn check(settings: &MysqlConfig) -> CheckReport {
    let probe = async {
        let mut connection = attempt(settings).await?;
        let database: Option<String> = sqlx::query_scalar("SELECT DATABASE()")
            .fetch_one(&mut connection)
            .await?;
        let _ = connection.close().await;
        Ok::<_, sqlx::Error>(database)
    };
    match tokio::time::timeout(TIMEOUT, probe).await {
        Ok(Ok(database)) => report(
            CheckReason::Connected,
            format!(
                "{}: connected; the session uses database \"{}\"",
                settings.server(),
                database.unwrap_or_default()
            ),
        ),
        Ok(Err(e)) => {
            let (reason, text) = connect_failure(settings, &e);
            report(reason, format!("{}: connecting: {text}", settings.server()))
        }
        Err(_) => report(
            CheckReason::Unreachable,
            format!(
                "{}: no answer within {}s; check mysql.host, mysql.port and the network between them",
                settings.server(),
                TIMEOUT.as_secs()
            ),
        ),
    }
}
