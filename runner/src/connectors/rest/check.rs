//! The probe of `synqx check`: one GET of the base URL, authenticated as the steps will be
//! (an OAuth2 token is requested first). One attempt, no retries: a check reports the state of
//! now. A base URL that answers 404 or 405 still proves the server is there and took the
//! credentials, since many APIs serve nothing at their root.

use synqx_api::connection::CheckReport;

use super::config::RestConfig;
use super::connect::{Client, FailureKind};
use crate::check::{CheckReason, report};

pub async fn check(mut settings: RestConfig) -> CheckReport {
    settings.max_attempts = 1;
    let client = match Client::new(&settings, &settings.headers) {
        Ok(c) => c,
        Err(e) => return report(CheckReason::Invalid, e.message),
    };
    let url = settings.base_url.clone();
    match client.get(&url, 1).await {
        Ok(_) => report(
            CheckReason::Connected,
            format!(
                "{}: {} answered with {}",
                settings.at(),
                client.shown(&url),
                settings.auth.describe()
            ),
        ),
        Err(e) => match e.kind {
            FailureKind::NotFound => report(
                CheckReason::Connected,
                format!(
                    "{}: {} is reachable with {} (HTTP 404 at the base URL itself; steps read paths below it)",
                    settings.at(),
                    client.shown(&url),
                    settings.auth.describe()
                ),
            ),
            FailureKind::Rejected if e.message.contains("HTTP 405") => report(
                CheckReason::Connected,
                format!(
                    "{}: {} is reachable with {} (HTTP 405 at the base URL itself)",
                    settings.at(),
                    client.shown(&url),
                    settings.auth.describe()
                ),
            ),
            FailureKind::Unauthorized => report(CheckReason::Unauthorized, e.message),
            FailureKind::Unreachable => report(CheckReason::Unreachable, e.message),
            FailureKind::Rejected => report(CheckReason::Invalid, e.message),
        },
    }
}
