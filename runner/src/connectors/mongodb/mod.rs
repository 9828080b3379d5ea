//! MongoDB as a source and a sink (the official `mongodb` crate): a collection as the asset,
//! `filter` and `projection` on the source, incremental on a field, documents to Arrow with
//! the schema inferred from the first documents; sink modes append (`insertMany`), overwrite
//! (a new collection renamed in) and upsert (bulk `update` by primary key). Type map in
//! [`types`].

mod check;
mod config;
mod connect;
mod shape;
mod sink;
mod source;
#[cfg(all(test, feature = "mongodb-integration-tests"))]
mod tests;
pub mod types;

use std::sync::Arc;

use synqx_api::ConnectorKind;
use synqx_api::connection::CheckReport;
use synqx_api::pipeline::{Destination, Source as SourceSpec};

pub use config::MongodbConfig;
pub use sink::MongoSink;
pub use source::MongoSource;

use crate::connectors::{ConnectionRef, Connector};
use crate::engine::{Sink, Source};
use crate::error::Result;

/// The `mongodb` connector.
pub struct Mongodb;

impl Connector for Mongodb {
    const KIND: ConnectorKind = ConnectorKind::Mongodb;
    type Config = MongodbConfig;

    fn config(conn: &ConnectionRef<'_>) -> Result<MongodbConfig> {
        MongodbConfig::new(conn)
    }

    fn validate_source(config: &MongodbConfig, source: &SourceSpec) -> Result<()> {
        let at = config.collection(&source.asset.fqn)?;
        source::extended_json(source.filter.as_deref(), "filter", &at)?;
        source::extended_json(source.projection.as_deref(), "projection", &at)?;
        Ok(())
    }

    fn validate_destination(config: &MongodbConfig, destination: &Destination) -> Result<()> {
        config.collection(&destination.asset.fqn).map(drop)
    }

    fn source(config: MongodbConfig) -> Result<Arc<dyn Source>> {
        Ok(Arc::new(MongoSource::new(config)))
    }

    fn sink(config: MongodbConfig) -> Result<Arc<dyn Sink>> {
        Ok(Arc::new(MongoSink::new(config)))
    }

    async fn check(config: MongodbConfig) -> CheckReport {
        check::check(config).await
    }
}
