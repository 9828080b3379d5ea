//! Snowflake over its REST API, as the official drivers speak it: login with a password or a
//! key-pair JWT (RS256, signed with `ring`), statements with positional (array) bindings,
//! results as Arrow IPC (inline and in chunks), asynchronous statements for loads. Sources
//! read a table or a query with the incremental cursor pushed down; sinks stage rows in a
//! temporary table (Parquet files through an internal stage, or array-bound `INSERT`s) and
//! move them into the table with one statement or one transaction. The type map is in
//! [`types`].

mod bind;
mod check;
mod config;
mod connect;
mod load;
mod query;
mod result;
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
use config::Settings;
use connect::Failure;

/// Reads a Snowflake table or query.
pub struct SnowflakeSource {
    settings: Arc<Settings>,
}

/// Writes into a Snowflake table.
pub struct SnowflakeSink {
    settings: Arc<Settings>,
}

impl SnowflakeSource {
    pub fn new(conn: &ConnectionRef<'_>) -> Result<Self> {
        Ok(Self {
            settings: Arc::new(Settings::new(conn)?),
        })
    }
}

impl SnowflakeSink {
    pub fn new(conn: &ConnectionRef<'_>) -> Result<Self> {
        Ok(Self {
            settings: Arc::new(Settings::new(conn)?),
        })
    }
}

/// A failed exchange as the engine's error: the Connection as context, Snowflake's text
/// (redacted once more) as the message.
fn error(settings: &Settings, failure: Failure) -> Error {
    failure.into_error(&settings.at(), |t| settings.redact(t))
}
