//! Local directories. An asset FQN is a path below the Connection's `filesystem.path`: one
//! file, a folder of part files (trailing `/`) or a glob. Files are CSV, JSONL or Parquet: the
//! type map, inference, encoding and rotation are `formats`'s, shared with every file store;
//! this folder lists and opens files (`connect.rs`), stages writes under hidden names and
//! commits them by renames (`sink.rs`, `commit.rs`), having started their writeback as they
//! were written (`write_behind.rs`).

mod check;
mod commit;
mod config;
mod connect;
mod sink;
mod source;
mod write_behind;

#[cfg(test)]
mod tests;

use std::sync::Arc;

use synqx_api::ConnectorKind;
use synqx_api::connection::CheckReport;
use synqx_api::pipeline::{Destination, Source as SourceSpec};

pub use config::FilesystemConfig;
pub use sink::FilesystemSink;
pub use source::FilesystemSource;

use crate::connectors::{ConnectionRef, Connector, formats};
use crate::engine::{Sink, Source};
use crate::error::Result;

/// The `filesystem` connector.
pub struct Filesystem;

impl Connector for Filesystem {
    const KIND: ConnectorKind = ConnectorKind::Filesystem;
    type Config = FilesystemConfig;

    fn config(conn: &ConnectionRef<'_>) -> Result<FilesystemConfig> {
        FilesystemConfig::new(conn)
    }

    fn validate_source(_config: &FilesystemConfig, source: &SourceSpec) -> Result<()> {
        formats::validate_source(source)
    }

    fn validate_destination(_config: &FilesystemConfig, destination: &Destination) -> Result<()> {
        formats::validate_destination(destination)
    }

    fn source(config: FilesystemConfig) -> Result<Arc<dyn Source>> {
        Ok(Arc::new(FilesystemSource { settings: config }))
    }

    fn sink(config: FilesystemConfig) -> Result<Arc<dyn Sink>> {
        Ok(Arc::new(FilesystemSink { settings: config }))
    }

    async fn check(config: FilesystemConfig) -> CheckReport {
        check::check(config).await
    }
}
