//! The probe of `synqx check`: connect, authenticate, and ask the database its name. One
//! attempt, no retries: a check reports the state of now, quickly.

use sqlx::Connection;
use synqx_api::connection::CheckReport;

use super::config::PostgresConfig;
use super::connect::{attempt, connect_failure, server_message};
use crate::check::{CheckReason, report};

pub(super) async fn check(settings: &PostgresConfig) -> CheckReport {
    let say =
        |reason: CheckReason, what: String| report(reason, format!("{}: {what}", settings.at()));
    let mut db = match attempt(settings).await {
        Ok(db) => db,
        Err(e) => {
            let (reason, text) = connect_failure(settings, &e);
            return say(reason, text);
        }
    };
    let answer: sqlx::Result<(String, String, String)> = sqlx::query_as(
        "SELECT current_database()::text, current_user::text, current_setting('server_version')",
    )
    .fetch_one(&mut db)
    .await;
    let _ = db.close().await;
    match answer {
        // A user name from a Secret or a sealed value is a credential: the redactor hides it.
        Ok((database, user, version)) => say(
            CheckReason::Connected,
            settings.redact(format!(
                "connected to database \"{database}\" on PostgreSQL {version} at {}:{} as user \"{user}\"",
                settings.host, settings.port
            )),
        ),
        Err(e) => say(
            CheckReason::Invalid,
            settings.redact(format!(
                "connected to {}, but the first query failed: {}",
                settings.server(),
                server_message(&e)
            )),
        ),
    }
}
