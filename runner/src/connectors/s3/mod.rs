//! Amazon S3 and S3-compatible stores (MinIO, moto), through `object_store`. An asset FQN is a
//! key below the connection's `prefix`: one object, a folder of part files (trailing `/`) or a
//! glob, in CSV, JSONL or Parquet, exactly as for local files: `formats` does the decoding,
//! encoding, inference and rotation; this folder only lists, opens and stages objects.
//!
//! - `config`: the Connection's block, checked and resolved without I/O.
//! - `connect`: the object_store client, keys below the prefix, messages of failed requests.
//! - `source`: listing, GET bodies streamed into the text readers, Parquet spooled to a
//!   temporary file for random access.
//! - `upload`: one object written as a stream, in 8 MiB multipart parts.
//! - `sink`: parts staged under a hidden temporary prefix, copied into place at the commit.
//! - `check`: the probe of `synqx check`, one bounded listing of at most one key.
//!
//! Credentials come from the Connection's secret values, or from the ambient AWS environment
//! only when the Connection says `useAmbientCredentials: true` and, in a pod, the operator
//! lends them (`--allow-ambient-credentials`); otherwise none are read. Every error names the Connection, bucket and key, and passes
//! through the run's redactor, which removes the credential values from the text (S3 error
//! bodies can echo the access key id).

mod check;
mod config;
mod connect;
mod sink;
mod source;
mod upload;

#[cfg(all(test, feature = "s3-integration-tests"))]
mod tests;

use std::sync::Arc;

use synqx_api::ConnectorKind;
use synqx_api::connection::CheckReport;
use synqx_api::pipeline::{Destination, Source as SourceSpec};

pub use config::S3Config;
pub use sink::S3Sink;
pub use source::S3Source;

use crate::connectors::{ConnectionRef, Connector, formats};
use crate::engine::{Sink, Source};
use crate::error::Result;
use connect::{Bucket, Patience};

/// The `s3` connector.
pub struct S3;

impl Connector for S3 {
    const KIND: ConnectorKind = ConnectorKind::S3;
    type Config = S3Config;

    fn config(conn: &ConnectionRef<'_>) -> Result<S3Config> {
        config::of(conn)
    }

    fn validate_source(_config: &S3Config, source: &SourceSpec) -> Result<()> {
        formats::validate_source(source)
    }

    fn validate_destination(_config: &S3Config, destination: &Destination) -> Result<()> {
        formats::validate_destination(destination)
    }

    fn source(config: S3Config) -> Result<Arc<dyn Source>> {
        let bucket = Bucket::open(&config, Patience::TRANSFER)?;
        Ok(Arc::new(S3Source { bucket }))
    }

    fn sink(config: S3Config) -> Result<Arc<dyn Sink>> {
        let bucket = Bucket::open(&config, Patience::TRANSFER)?;
        Ok(Arc::new(S3Sink { bucket }))
    }

    async fn check(config: S3Config) -> CheckReport {
        check::check(config).await
    }
}
