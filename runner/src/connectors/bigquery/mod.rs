//! Google BigQuery over its REST API (v2), as the client libraries call it: a service-account
//! key signs an RS256 JWT that is exchanged for an OAuth2 token (refreshed before it expires),
//! `endpoint` points the client at an emulator. Sources run `jobs.query` and page through
//! `jobs.getQueryResults`, with the incremental cursor pushed down as a query parameter;
//! sinks load Parquet into a staging table with load jobs (multipart uploads), then move the
//! rows with one statement or one transaction. The type map is in [`types`].

mod auth;
mod check;
mod config;
mod connect;
mod load;
mod rows;
mod sink;
mod source;
mod sql;
#[cfg(all(test, feature = "bigquery-integration-tests"))]
mod tests;
mod types;

use std::sync::Arc;

use synqx_api::ConnectorKind;
use synqx_api::connection::CheckReport;
use synqx_api::pipeline::{Destination, Source as SourceSpec};

pub use config::BigQueryConfig;

use crate::connectors::{ConnectionRef, Connector};
use crate::engine::{Sink, Source};
use crate::error::{Error, Result};
use connect::Failure;
use sql::Table;

/// The `bigquery` connector.
pub struct BigQuery;

impl Connector for BigQuery {
    const KIND: ConnectorKind = ConnectorKind::BigQuery;
    type Config = BigQueryConfig;

    fn config(conn: &ConnectionRef<'_>) -> Result<BigQueryConfig> {
        BigQueryConfig::new(conn)
    }

    fn validate_source(config: &BigQueryConfig, source: &SourceSpec) -> Result<()> {
        table(config, &source.asset.fqn).map(drop)
    }

    fn validate_destination(config: &BigQueryConfig, destination: &Destination) -> Result<()> {
        table(config, &destination.asset.fqn).map(drop)
    }

    fn source(config: BigQueryConfig) -> Result<Arc<dyn Source>> {
        Ok(Arc::new(BigQuerySource {
            settings: Arc::new(config),
        }))
    }

    fn sink(config: BigQueryConfig) -> Result<Arc<dyn Sink>> {
        Ok(Arc::new(BigQuerySink {
            settings: Arc::new(config),
        }))
    }

    async fn check(config: BigQueryConfig) -> CheckReport {
        check::check(config).await
    }
}

/// Reads a BigQuery table or query.
pub struct BigQuerySource {
    settings: Arc<BigQueryConfig>,
}

/// Writes into a BigQuery table.
pub struct BigQuerySink {
    settings: Arc<BigQueryConfig>,
}

/// The table an asset FQN names, or a configuration error naming the Connection.
fn table(config: &BigQueryConfig, fqn: &str) -> Result<Table> {
    Table::parse(fqn, config.dataset.as_deref())
        .map_err(|e| Error::Config(format!("{}: {e}", config.at())))
}

/// A failed exchange as the engine's error: the Connection as context, the text (redacted
/// once more) as the message.
fn error(settings: &BigQueryConfig, failure: Failure) -> Error {
    failure.into_error(&settings.at(), |t| settings.redact(t))
}
