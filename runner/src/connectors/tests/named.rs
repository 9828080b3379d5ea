//! A Connection that is its name and spec alone (no secrets to resolve, no files of its own),
//! opened and checked as a step and `synqx check` do: how the tests of the REST, MongoDB and
//! Redis connectors reach their connector.

use std::sync::Arc;

use synqx_api::ConnectionSpec;
use synqx_api::connection::CheckReport;

#[cfg(any(
    feature = "mongodb-integration-tests",
    feature = "redis-integration-tests"
))]
use super::Harness;
use crate::connectors::ConnectionRef;
use crate::engine::Source;
use crate::error::Result;
use crate::secrets::Secrets;

/// Connection `name` of `spec`, with no secrets, its relative paths under the temp folder.
fn at<'a>(name: &'a str, spec: &'a ConnectionSpec, secrets: &'a Secrets) -> ConnectionRef<'a> {
    ConnectionRef {
        name,
        spec,
        base_dir: std::env::temp_dir(),
        secrets,
    }
}

/// Connection `name` of `spec` opened as a source and a sink through the registry. Unlike
/// [`Harness::open`], a Connection the registry refuses is an error to assert on.
#[cfg(any(
    feature = "mongodb-integration-tests",
    feature = "redis-integration-tests"
))]
pub fn open(name: &str, spec: &ConnectionSpec) -> Result<Harness> {
    let secrets = Secrets::default();
    let conn = at(name, spec, &secrets);
    Ok(Harness {
        source: crate::connectors::source(&conn)?,
        sink: crate::connectors::sink(&conn)?,
    })
}

/// Connection `name` of `spec` opened as a source through the registry.
pub fn source(name: &str, spec: &ConnectionSpec) -> Result<Arc<dyn Source>> {
    crate::connectors::source(&at(name, spec, &Secrets::default()))
}

/// What `synqx check` reports of Connection `name` of `spec`.
pub async fn check(name: &str, spec: &ConnectionSpec) -> CheckReport {
    crate::connectors::check(&at(name, spec, &Secrets::default())).await
}
