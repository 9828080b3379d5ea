//! The probe of `synqx check`: connect, authenticate, and ask the server which database the
//! session uses. One attempt, no retries: a check reports the state of the moment, quickly.

use std::time::Duration;

use sqlx::{ConnectOptions, Connection};
use synqx_api::connection::CheckReport;

use super::config::MysqlConfig;
use super::connect::{connect_error, mysql_code};
use crate::check::{CheckReason, report};

/// Longest wait for the server to accept and answer.
const TIMEOUT: Duration = Duration::from_secs(10);

pub(super) async fn check(target: &MysqlConfig) -> CheckReport {
    let probe = async {
        let mut connection = target.options.connect().await?;
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
                target.server(),
                database.unwrap_or_default()
            ),
        ),
        Ok(Err(e)) => report(reason_of(&e), connect_error(target, e).to_string()),
        Err(_) => report(
            CheckReason::Unreachable,
            format!(
                "{}: no answer within {}s; check mysql.host, mysql.port and the network between them",
                target.server(),
                TIMEOUT.as_secs()
            ),
        ),
    }
}

fn reason_of(e: &sqlx::Error) -> CheckReason {
    match mysql_code(e) {
        // Access denied: wrong password, no access to the database, a command denied.
        Some(1045 | 1044 | 1142 | 1227 | 1698) => CheckReason::Unauthorized,
        Some(1049) => CheckReason::NotFound,
        Some(_) => CheckReason::Invalid,
        None => match e {
            sqlx::Error::Tls(_) | sqlx::Error::Configuration(_) => CheckReason::Invalid,
            _ => CheckReason::Unreachable,
        },
    }
}
