//! The probe of `synqx check`: connect, authenticate, `PING`, and ask the server's version.
//! One attempt, no retries.

use synqx_api::connection::CheckReport;

use super::config::RedisConfig;
use super::connect::{self, reason};
use crate::check::{CheckReason, report};

pub async fn check(settings: RedisConfig) -> CheckReport {
    let say = |r: CheckReason, what: String| {
        report(
            r,
            settings
                .redactor
                .redact(format!("{}: {what}", settings.at())),
        )
    };
    let client = match settings.info().and_then(|info| {
        redis::Client::open(info).map_err(|e| connect::failure(&settings, "opening", e))
    }) {
        Ok(c) => c,
        Err(e) => return say(CheckReason::Invalid, e.to_string()),
    };
    let config = redis::AsyncConnectionConfig::new()
        .set_connection_timeout(Some(std::time::Duration::from_secs(10)))
        .set_response_timeout(Some(std::time::Duration::from_secs(10)));
    let mut db = match client
        .get_multiplexed_async_connection_with_config(&config)
        .await
    {
        Ok(db) => db,
        Err(e) => {
            return say(
                reason(&e),
                format!("cannot connect to Redis at {}: {e}", settings.server()),
            );
        }
    };
    let info: redis::RedisResult<String> =
        redis::cmd("INFO").arg("server").query_async(&mut db).await;
    match info {
        Ok(text) => {
            let version = text
                .lines()
                .find_map(|l| l.strip_prefix("redis_version:"))
                .unwrap_or("unknown version")
                .trim()
                .to_string();
            say(
                CheckReason::Connected,
                format!("connected to Redis {version} at {}", settings.server()),
            )
        }
        Err(e) => say(
            reason(&e),
            format!("connected to {}, but INFO failed: {e}", settings.server()),
        ),
    }
}
