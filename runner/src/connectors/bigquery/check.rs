//! The probe of `synqx check`: get a token (with a key), then read the Connection's dataset
//! (`datasets.get`), or run `SELECT 1` when it names none. Nothing is written.

use std::sync::Arc;
use std::time::Duration;

use synqx_api::connection::CheckReport;

use super::config::BigQueryConfig;
use super::connect::{Client, Failure, Kind};
use crate::check::{CheckReason, report};

const TIMEOUT: Duration = Duration::from_secs(30);

pub(super) async fn check(config: BigQueryConfig) -> CheckReport {
    let settings = Arc::new(config);
    match tokio::time::timeout(TIMEOUT, probe(settings.clone())).await {
        Ok(Ok(what)) => report(CheckReason::Connected, format!("{}: {what}", settings.at())),
        Ok(Err(f)) => report(f.kind.reason(), f.message),
        Err(_) => report(
            CheckReason::Unreachable,
            format!(
                "{}: no answer from {} within {}s",
                settings.at(),
                settings.endpoint,
                TIMEOUT.as_secs()
            ),
        ),
    }
}

async fn probe(settings: Arc<BigQueryConfig>) -> Result<String, Failure> {
    let client = Client::new(settings.clone())?;
    match &settings.dataset {
        Some(dataset) => {
            if !client.dataset_exists(dataset).await? {
                return Err(Failure {
                    kind: Kind::NotFound,
                    code: None,
                    message: format!(
                        "{}: dataset \"{dataset}\" does not exist in project \"{}\" (create it, or fix bigquery.dataset)",
                        settings.at(),
                        settings.project
                    ),
                });
            }
            Ok(format!(
                "dataset {}.{dataset} at {} is reachable",
                settings.project, settings.endpoint
            ))
        }
        None => {
            client.query("SELECT 1", &[]).await?;
            Ok(format!(
                "project {} at {} answers queries",
                settings.project, settings.endpoint
            ))
        }
    }
}
