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
//! records lack. After the sample, a value its column cannot hold or an unknown field is a bad
//! row (`onError`).

mod check;
mod config;
mod connect;
pub mod pagination;
pub mod records;
mod source;
#[cfg(test)]
mod tests;

pub use check::check;
pub use config::Settings;
pub use source::RestSource;

use crate::connectors::ConnectionRef;
use crate::error::Result;

/// The source of a REST Connection.
pub fn source(conn: &ConnectionRef<'_>) -> Result<RestSource> {
    Ok(RestSource::new(Settings::new(conn)?))
}
