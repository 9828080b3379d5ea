//! The probe of `synqx check`: log in, then ask which database and schema the session is in
//! (`SELECT CURRENT_DATABASE(), CURRENT_SCHEMA()`); Snowflake leaves them empty when they do not
//! exist or the role may not use them. Nothing is written.

use std::sync::Arc;
use std::time::Duration;

use arrow::array::{Array, AsArray};
use arrow::datatypes::DataType;
use synqx_api::connection::CheckReport;

use super::config::SnowflakeConfig;
use super::connect::{Failure, Kind, Session};
use super::result::inline_batches;
use crate::check::{CheckReason, report};

/// Longest wait for the whole probe.
const TIMEOUT: Duration = Duration::from_secs(30);

pub(super) async fn check(config: SnowflakeConfig) -> CheckReport {
    let settings = Arc::new(config);
    match tokio::time::timeout(TIMEOUT, probe(settings.clone())).await {
        Ok(Ok(())) => report(
            CheckReason::Connected,
            format!(
                "{}: logged in to {} as {}, database {}, schema {}",
                settings.at(),
                settings.base_url,
                settings.user,
                settings.database,
                settings.schema
            ),
        ),
        Ok(Err(failure)) => report(failure.kind.reason(), failure.message),
        Err(_) => report(
            CheckReason::Unreachable,
            format!(
                "{}: no answer from {} within {}s",
                settings.at(),
                settings.base_url,
                TIMEOUT.as_secs()
            ),
        ),
    }
}

async fn probe(settings: Arc<SnowflakeConfig>) -> Result<(), Failure> {
    let session = Session::login(settings.clone()).await?;
    let result = session
        .query("SELECT CURRENT_DATABASE(), CURRENT_SCHEMA()", &[])
        .await;
    session.close().await;
    let batches = inline_batches(&result?).map_err(|e| Failure::protocol(e.to_string()))?;
    let current = |i: usize| -> Option<String> {
        let batch = batches.first()?;
        let column = arrow::compute::cast(batch.column(i), &DataType::Utf8).ok()?;
        let text = column.as_string::<i32>();
        (text.len() > 0 && text.is_valid(0)).then(|| text.value(0).to_string())
    };
    if current(0).is_none() || current(1).is_none() {
        return Err(Failure {
            kind: Kind::NotFound,
            code: None,
            message: format!(
                "{}: database \"{}\" or schema \"{}\" does not exist, or the role may not use it (GRANT USAGE ON DATABASE and SCHEMA to the role)",
                settings.at(),
                settings.database,
                settings.schema
            ),
        });
    }
    Ok(())
}
