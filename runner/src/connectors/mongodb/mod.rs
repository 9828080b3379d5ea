//! MongoDB as a source and a sink (the official `mongodb` crate): a collection as the asset,
//! `filter` and `projection` on the source, incremental on a field, documents to Arrow with
//! the schema inferred from the first documents; sink modes append (`insertMany`), overwrite
//! (a new collection renamed in) and upsert (bulk `update` by primary key). Type map in
//! [`types`].

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
pub use sink::MongoSink;
pub use source::MongoSource;

use crate::connectors::ConnectionRef;
use crate::error::Result;

/// The source of a MongoDB Connection.
pub fn source(conn: &ConnectionRef<'_>) -> Result<MongoSource> {
    Ok(MongoSource::new(Settings::new(conn)?))
}

/// The sink of a MongoDB Connection.
pub fn sink(conn: &ConnectionRef<'_>) -> Result<MongoSink> {
    Ok(MongoSink::new(Settings::new(conn)?))
}
