//! Redis as a source and a sink (the `redis` crate). Source: keys matching a pattern (`SCAN`;
//! hashes as rows of their fields, strings as rows of their JSON) or a stream (`XRANGE`,
//! incremental by entry id with `cursor: _id`). Sink: hashes or JSON strings at keys from a
//! template (`orders:{id}`), or `XADD` to a stream; pipelined; optional TTL; overwrite swaps
//! staged keys in with one transaction. Type map in [`types`].

mod check;
mod config;
mod connect;
mod sink;
mod source;
#[cfg(test)]
mod tests;
pub mod types;

pub use check::check;
pub use config::Settings;
pub use sink::{RedisSink, Template};
pub use source::RedisSource;

use crate::connectors::ConnectionRef;
use crate::error::Result;

/// The source of a Redis Connection.
pub fn source(conn: &ConnectionRef<'_>) -> Result<RedisSource> {
    Ok(RedisSource::new(Settings::new(conn)?))
}

/// The sink of a Redis Connection.
pub fn sink(conn: &ConnectionRef<'_>) -> Result<RedisSink> {
    Ok(RedisSink::new(Settings::new(conn)?))
}
