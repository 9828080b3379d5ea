//! Connectors: one folder per system, each a [`Connector`], all registered once in
//! [`CONNECTORS`]. The engine, `synqx validate`, `synqx check` and the `sql` step reach a
//! system only through the functions below, which find its connector by the Connection's
//! block; nothing else names a connector.
//!
//! # Adding a connector
//!
//! 1. Add its Connection block to the API, if it does not have it yet: the block's type in
//!    `api/src/connection/mod.rs` with its `impl Block` (secret fields, field checks) in
//!    `api/src/connection/blocks.rs`, and one line in the `connectors!` table there, which
//!    makes the `ConnectorKind`, the field of `ConnectionSpec` and the CRD's one-block rule,
//!    and names its `Family` (SQL, files, API, documents, key-value: what a step may do).
//!    Regenerate the CRDs (`cargo run --bin synqx -- crd --dir crds`).
//! 2. Make a folder `connectors/<system>/` with the same anatomy as every other:
//!    - `mod.rs`: what the connector does (the module docs are its reference: FQNs, type map,
//!      write modes), a unit struct `pub struct <System>;` and its `impl Connector` (a SQL
//!      database implements `sql::SqlDatabase` instead: its config, source and check; the
//!      rest of its `Connector` follows from its `SqlDialect`).
//!    - `config.rs`: `<System>Config::new(&ConnectionRef)`, the block parsed and checked with
//!      no I/O. Credentials go through `conn.secret(field, value)` so the run's redactor knows
//!      them; messages say where a value comes from with `secrets::describe`, never what it is.
//!    - `connect.rs`: `connect(&settings)`, opening a connection or client (retries of
//!      transient failures with `retry::retry`), and what each failure means to the user,
//!      text passed through the config's redactor. Where `check.rs` tells failures apart, one
//!      `attempt(&settings)` without retries and a classifier `connect_failure(&settings, &e)
//!      -> (CheckReason, String)` that both the error and the check report use. Sources and
//!      sinks hold the config as `settings`.
//!    - `source.rs`, `sink.rs`: `impl Source`/`impl Sink`. A SQL database implements
//!      `sql::SqlDialect` in `sink.rs` instead of a sink of its own: the generic `sql::SqlSink`
//!      plans, evolves the schema, stages and swaps; the dialect supplies its SQL and its bulk
//!      path. A warehouse (Snowflake, BigQuery: DDL outside transactions, loads through
//!      staging tables and bulk files) implements `warehouse::Warehouse` on its session or
//!      client, and `warehouse::write` is its sink's whole load. File stores use `formats`
//!      for everything but listing, opening and staging.
//!    - `check.rs`: the probe of `synqx check`: connect, authenticate, reach the target,
//!      write nothing, answer within seconds.
//!    - `types.rs`: the type map between the system and Arrow (file stores share `formats`,
//!      the REST source `json_table`, whose inference it documents in its module docs). A
//!      connector that only reads (REST) has no `sink.rs`: its `Connector::sink` refuses the
//!      role by name ([`unsupported`]).
//!    - `tests/`: `mod.rs` lists the test files, `support.rs` opens the connector with
//!      [`tests::Harness`] and reads data back through the system's own client
//!      (`synqx-testkit` has the servers); tests that need a server are behind the crate
//!      feature `<system>-integration-tests`, which `scripts/test-all.sh` turns on (and
//!      installs and starts the server).
//! 3. Add one line to [`CONNECTORS`].
//! 4. Add a row to the connector table of docs/connectors.md.

pub mod bigquery;
mod connector;
pub mod filesystem;
pub mod formats;
pub(crate) mod http_api;
pub mod json_table;
pub mod json_widen;
mod jwt;
pub mod mongodb;
pub mod mysql;
pub mod postgres;
pub mod redis;
pub mod rest;
pub mod retry;
pub mod s3;
pub mod snowflake;
pub mod sql;
pub mod sqlite;
pub mod sqlserver;
pub(crate) mod staging;
#[cfg(test)]
pub(crate) mod tests;
pub mod validate;
mod warehouse;

use std::sync::Arc;

use synqx_api::ConnectorKind;
use synqx_api::connection::CheckReport;

pub use connector::{
    ConnectionRef, Connector, Registered, Role, Usage, connection_at, optional_text, unsupported,
};

use crate::check::{CheckReason, invalid, report};
use crate::engine::{Sink, Source};
use crate::error::{Error, Result};

/// Every connector of this version of synqx, once.
pub static CONNECTORS: &[&dyn Registered] = &[
    &bigquery::BigQuery,
    &filesystem::Filesystem,
    &mongodb::Mongodb,
    &mysql::Mysql,
    &postgres::Postgres,
    &redis::Redis,
    &rest::Rest,
    &s3::S3,
    &snowflake::Snowflake,
    &sqlite::Sqlite,
    &sqlserver::SqlServer,
];

/// The kinds of Connection this version of synqx can use, in the registry's order.
pub fn available() -> impl Iterator<Item = ConnectorKind> {
    CONNECTORS.iter().map(|c| c.kind())
}

/// `filesystem, mysql, …`, for messages.
fn available_list(registry: &[&dyn Registered]) -> String {
    registry
        .iter()
        .map(|c| c.kind().to_string())
        .collect::<Vec<_>>()
        .join(", ")
}

/// The connector of a Connection, or why there is none.
fn connector(conn: &ConnectionRef<'_>) -> Result<&'static dyn Registered> {
    connector_in(CONNECTORS, conn)
}

/// The connector of a Connection in `registry`: every kind of the API has one in
/// [`CONNECTORS`], but a Connection written for a newer version of synqx may name a kind this
/// one does not know how to run.
fn connector_in<'r>(
    registry: &[&'r dyn Registered],
    conn: &ConnectionRef<'_>,
) -> Result<&'r dyn Registered> {
    let kind = conn.kind()?;
    registry
        .iter()
        .copied()
        .find(|c| c.kind() == kind)
        .ok_or_else(|| {
            Error::Config(format!(
                "Connection \"{}\": the {kind} connector is not available in this version of synqx (available: {})",
                conn.name,
                available_list(registry)
            ))
        })
}

/// Opens a Connection as a source.
pub fn source(conn: &ConnectionRef<'_>) -> Result<Arc<dyn Source>> {
    connector(conn)?.source(conn)
}

/// Opens a Connection as a sink.
pub fn sink(conn: &ConnectionRef<'_>) -> Result<Arc<dyn Sink>> {
    connector(conn)?.sink(conn)
}

/// Runs a sql step's statements on a Connection, in one transaction; returns the rows they
/// affected.
pub async fn run_sql(conn: &ConnectionRef<'_>, statements: &[String]) -> Result<u64> {
    connector(conn)?.run_sql(conn, statements).await
}

/// Checks, without I/O, that a Connection's block works and that a step can use it as it
/// says: what `synqx validate` and a step call before anything runs.
pub fn validate(conn: &ConnectionRef<'_>, usage: Option<Usage<'_>>) -> Result<()> {
    let connector = connector(conn)?;
    match usage {
        Some(usage) => connector.validate(conn, usage),
        None => connector.validate_connection(conn),
    }
}

/// Probes a Connection: its connector connects, authenticates and reaches the target, quickly
/// and without writing data.
pub async fn check(conn: &ConnectionRef<'_>) -> CheckReport {
    check_in(CONNECTORS, conn).await
}

/// [`check`] with the connectors of `registry`.
async fn check_in(registry: &[&dyn Registered], conn: &ConnectionRef<'_>) -> CheckReport {
    let kind = match conn.kind() {
        Ok(kind) => kind,
        Err(e) => return invalid(&e),
    };
    match connector_in(registry, conn) {
        Ok(connector) => connector.check(conn).await,
        Err(_) => report(
            CheckReason::Unsupported,
            format!(
                "Connection \"{}\": the {kind} connector is not available in this version of synqx (available: {}); steps that use this Connection cannot run until a version with it is installed",
                conn.name,
                available_list(registry)
            ),
        ),
    }
}
