//! Snowflake over its REST API, as the official drivers speak it: login with a password or a
//! key-pair JWT (RS256, signed with `ring`), statements with positional (array) bindings,
//! results as Arrow IPC (inline and in chunks), asynchronous statements for loads. Sources
//! read a table or a query with the incremental cursor pushed down; sinks stage rows in a
//! staging table (Parquet files through an internal stage, or array-bound `INSERT`s) and
//! move them into the table with one statement, a swap or one transaction. The type map is in
//! [`types`].

mod bind;
mod check;
mod config;
mod connect;
mod load;
mod overwrite;
mod query;
mod result;
mod sink;
mod source;
mod sql;
#[cfg(all(test, feature = "snowflake-integration-tests"))]
mod tests;
mod types;

use std::sync::Arc;

use synqx_api::ConnectorKind;
use synqx_api::connection::CheckReport;
use synqx_api::pipeline::{Destination, Source as SourceSpec};

pub use config::SnowflakeConfig;

use crate::connectors::{ConnectionRef, Connector};
use crate::engine::{Sink, Source};
use crate::error::{Error, Result};
use connect::Failure;
use sql::Table;

/// The `snowflake` connector.
pub struct Snowflake;

impl Connector for Snowflake {
    const KIND: ConnectorKind = ConnectorKind::Snowflake;
    type Config = SnowflakeConfig;

    fn config(conn: &ConnectionRef<'_>) -> Result<SnowflakeConfig> {
        SnowflakeConfig::new(conn)
    }

    fn validate_source(config: &SnowflakeConfig, source: &SourceSpec) -> Result<()> {
        table(config, &source.asset.fqn).map(drop)
    }

    fn validate_destination(config: &SnowflakeConfig, destination: &Destination) -> Result<()> {
        table(config, &destination.asset.fqn).map(drop)
    }

    fn source(config: SnowflakeConfig) -> Result<Arc<dyn Source>> {
        Ok(Arc::new(SnowflakeSource {
            settings: Arc::new(config),
        }))
    }

    fn sink(config: SnowflakeConfig) -> Result<Arc<dyn Sink>> {
        Ok(Arc::new(SnowflakeSink {
            settings: Arc::new(config),
        }))
    }

    async fn check(config: SnowflakeConfig) -> CheckReport {
        check::check(config).await
    }
}

/// Reads a Snowflake table or query.
pub struct SnowflakeSource {
    settings: Arc<SnowflakeConfig>,
}

/// Writes into a Snowflake table.
pub struct SnowflakeSink {
    settings: Arc<SnowflakeConfig>,
}

/// The table an asset FQN names, or a configuration error naming the Connection.
fn table(config: &SnowflakeConfig, fqn: &str) -> Result<Table> {
    Table::parse(fqn, &config.database, &config.schema)
        .map_err(|e| Error::Config(format!("{}: {e}", config.at())))
}

/// A failed exchange as the engine's error: the Connection as context, Snowflake's text
/// (redacted once more) as the message.
fn error(settings: &SnowflakeConfig, failure: Failure) -> Error {
    failure.into_error(&settings.at(), |t| settings.redact(t))
}
