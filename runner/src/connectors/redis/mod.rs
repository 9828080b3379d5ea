//! Redis as a source and a sink (the `redis` crate). Source: keys matching a pattern (`SCAN`;
//! hashes as rows of their fields, strings as rows of their JSON) or a stream (`XRANGE`,
//! incremental by entry id with `cursor: _id`). Sink: hashes or JSON strings at keys from a
//! template (`orders:{id}`), or `XADD` to a stream; pipelined; optional TTL; overwrite swaps
//! staged keys in with one transaction, replacing exactly the keys the template wrote
//! ([`owned`]). Type map in [`types`].

mod check;
mod config;
mod connect;
mod owned;
mod scan;
mod sink;
mod source;
mod template;
#[cfg(all(test, feature = "redis-integration-tests"))]
mod tests;
pub mod types;

use std::sync::Arc;

use synqx_api::ConnectorKind;
use synqx_api::connection::CheckReport;
use synqx_api::pipeline::{Destination, Source as SourceSpec};

pub use config::RedisConfig;
pub use sink::RedisSink;
pub use source::RedisSource;
pub use template::Template;

use crate::connectors::{ConnectionRef, Connector};
use crate::engine::{Sink, Source};
use crate::error::{Error, Result};

/// The `redis` connector.
pub struct Redis;

impl Connector for Redis {
    const KIND: ConnectorKind = ConnectorKind::Redis;
    type Config = RedisConfig;

    fn config(conn: &ConnectionRef<'_>) -> Result<RedisConfig> {
        RedisConfig::new(conn)
    }

    fn validate_source(config: &RedisConfig, source: &SourceSpec) -> Result<()> {
        if source.asset.fqn.trim().is_empty() {
            return Err(Error::Config(format!(
                "{}: the asset is empty (write a key pattern such as orders:*, or a stream key)",
                config.at()
            )));
        }
        Ok(())
    }

    fn validate_destination(config: &RedisConfig, destination: &Destination) -> Result<()> {
        sink::Options::of(config, destination).map(drop)
    }

    fn source(config: RedisConfig) -> Result<Arc<dyn Source>> {
        Ok(Arc::new(RedisSource::new(config)))
    }

    fn sink(config: RedisConfig) -> Result<Arc<dyn Sink>> {
        Ok(Arc::new(RedisSink::new(config)))
    }

    async fn check(config: RedisConfig) -> CheckReport {
        check::check(config).await
    }
}
