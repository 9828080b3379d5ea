//! REST APIs as a source: GET requests below `baseUrl`, JSON bodies, pagination detected from
//! the first responses or forced, the records found in the body or at `recordsPath`,
//! incremental reads through `cursorParam`, bearer, basic, API-key and OAuth2
//! client-credentials auth, retries, a rate limit and timeouts.
//!
//! Types (JSON → Arrow), inferred from the first 1,000 records and widened over them:
//!
//! | JSON value                                  | Arrow                                     |
//! |---------------------------------------------|-------------------------------------------|
//! | `true`/`false`                              | `Boolean`                                 |
//! | integer within i64                          | `Int64`                                   |
//! | integer beyond i64                          | `Utf8` (exact digits)                     |
//! | other number, or integers mixed with them   | `Float64`                                 |
//! | string holding dates (`2024-01-31`)         | `Date32`                                  |
//! | string holding timestamps (RFC 3339)        | `Timestamp(µs)`, UTC when zoned           |
//! | other string, or values of mixed kinds      | `Utf8`                                    |
//! | object, array (`nested: json`)              | `Utf8` with `arrow.json`, the JSON text   |
//! | object (`nested: flatten`)                  | one column per field, `parent.child`      |
//! | only nulls                                  | `Utf8`                                    |
//!
//! `columns: {field: type}` on the source overrides a type or declares a field that the first
//! records lack. After the sample, a value its column cannot hold or an unknown field widens
//! the schema and the step reads again ([`crate::connectors::json_widen`]); in a declared
//! column it is a bad row (`onError`).

mod check;
mod config;
mod connect;
pub mod pagination;
mod probe;
pub mod records;
mod source;
#[cfg(test)]
mod tests;

use std::sync::Arc;

use synqx_api::ConnectorKind;
use synqx_api::connection::CheckReport;
use synqx_api::pipeline::{Destination, Source as SourceSpec};

pub use config::RestConfig;
pub use source::RestSource;

use crate::connectors::{ConnectionRef, Connector, Role, unsupported};
use crate::engine::{Sink, Source};
use crate::error::Result;
use config::Asset;

/// The `rest` connector: a source only.
pub struct Rest;

impl Connector for Rest {
    const KIND: ConnectorKind = ConnectorKind::Rest;
    type Config = RestConfig;

    fn config(conn: &ConnectionRef<'_>) -> Result<RestConfig> {
        RestConfig::new(conn)
    }

    fn validate_source(config: &RestConfig, source: &SourceSpec) -> Result<()> {
        Asset::new(config, source).map(drop)
    }

    fn validate_destination(_config: &RestConfig, _destination: &Destination) -> Result<()> {
        Err(unsupported(Self::KIND, Role::Destination))
    }

    fn source(config: RestConfig) -> Result<Arc<dyn Source>> {
        Ok(Arc::new(RestSource::new(config)))
    }

    fn sink(_config: RestConfig) -> Result<Arc<dyn Sink>> {
        Err(unsupported(Self::KIND, Role::Destination))
    }

    async fn check(config: RestConfig) -> CheckReport {
        check::check(config).await
    }
}
