//! Local directories. An asset FQN is a path below the connection's `filesystem.path`: one
//! file, a folder of part files (trailing `/`) or a glob. Files are CSV, JSONL or Parquet
//! (see `formats`); writes are staged under hidden names and committed by renames.

mod check;
mod commit;
mod listing;
mod sink;
mod source;

use std::path::PathBuf;

use async_trait::async_trait;

pub use check::check;

use crate::connectors::ConnectionRef;
use crate::engine::{
    Counters, ReadRequest, SchemaStream, Sink, Source, WriteOutcome, WriteRequest,
};
use crate::error::{Error, Result};

/// Reads files below a directory.
pub struct FilesystemSource {
    root: PathBuf,
}

/// Writes files below a directory.
pub struct FilesystemSink {
    root: PathBuf,
}

/// The connection's directory, resolved against the base directory.
fn root(conn: &ConnectionRef<'_>) -> Result<PathBuf> {
    let fs = conn.spec.filesystem.as_ref().ok_or_else(|| {
        Error::Config(format!(
            "Connection \"{}\" has no filesystem block",
            conn.name
        ))
    })?;
    Ok(conn.path(&fs.path))
}

impl FilesystemSource {
    pub fn new(conn: &ConnectionRef<'_>) -> Result<Self> {
        Ok(Self { root: root(conn)? })
    }
}

impl FilesystemSink {
    pub fn new(conn: &ConnectionRef<'_>) -> Result<Self> {
        Ok(Self { root: root(conn)? })
    }
}

#[async_trait]
impl Source for FilesystemSource {
    async fn read(&self, request: &ReadRequest) -> Result<SchemaStream> {
        source::read(self.root.clone(), request).await
    }
}

#[async_trait]
impl Sink for FilesystemSink {
    async fn write(
        &self,
        request: &WriteRequest,
        input: SchemaStream,
        counters: &Counters,
    ) -> Result<WriteOutcome> {
        sink::write(self.root.clone(), request, input, counters).await
    }
}

#[cfg(test)]
mod tests;
