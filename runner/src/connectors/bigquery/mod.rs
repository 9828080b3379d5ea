//! Google BigQuery over its REST API (v2), as the client libraries call it: a service-account
//! key signs an RS256 JWT that is exchanged for an OAuth2 token (refreshed before it expires),
//! `endpoint` points the client at an emulator. Sources run `jobs.query` and page through
//! `jobs.getQueryResults`, with the incremental cursor pushed down as a query parameter;
//! sinks load newline-delimited JSON into a staging table with load jobs (multipart uploads),
//! then move the rows with one statement or one transaction. The type map is in [`types`].

mod auth;
mod check;
mod client;
mod config;
mod rows;
mod sink;
mod source;
mod sql;
#[cfg(test)]
mod tests;
mod types;

use std::sync::Arc;

pub use check::check;

use crate::connectors::ConnectionRef;
use crate::error::{Error, Result};
use client::Failure;
use config::Settings;

/// Reads a BigQuery table or query.
pub struct BigQuerySource {
    settings: Arc<Settings>,
}

/// Writes into a BigQuery table.
pub struct BigQuerySink {
    settings: Arc<Settings>,
}

impl BigQuerySource {
    pub fn new(conn: &ConnectionRef<'_>) -> Result<Self> {
        Ok(Self {
            settings: Arc::new(Settings::new(conn)?),
        })
    }
}

impl BigQuerySink {
    pub fn new(conn: &ConnectionRef<'_>) -> Result<Self> {
        Ok(Self {
            settings: Arc::new(Settings::new(conn)?),
        })
    }
}

/// A failed exchange as the engine's error: the Connection as context, the text (redacted
/// once more) as the message.
fn error(settings: &Settings, failure: Failure) -> Error {
    failure.into_error(&settings.at(), |t| settings.redact(t))
}
