//! PostgreSQL. Asset FQNs are `table` or `schema.table` (schema `public` when omitted). Each
//! part is quoted exactly as written, so `Orders` names the table created as `"Orders"`, not
//! `orders`: write the FQN in the case the table has in the catalog.
//!
//! Data moves with binary COPY both ways, encoded straight from and to Arrow (`copy_out.rs`,
//! `copy_in.rs`, `types.rs`). The source reads in one `REPEATABLE READ READ ONLY` transaction
//! with the incremental cursor pushed down as a typed literal; the sink loads every mode in one
//! transaction, so a failed or cancelled write leaves the table as it was. See `source.rs`,
//! `sink.rs` and `ddl.rs`.

mod catalog;
mod check;
mod codec_decode;
mod codec_encode;
mod config;
mod connect;
mod copy_in;
mod copy_out;
mod ddl;
mod numeric;
mod parallel;
mod sink;
mod source;
mod types;

#[cfg(test)]
mod tests;

use std::sync::Arc;

use synqx_api::ConnectorKind;
use synqx_api::connection::CheckReport;

pub use config::PostgresConfig;
pub use source::PostgresSource;

use crate::connectors::ConnectionRef;
use crate::connectors::sql::SqlDatabase;
use crate::engine::Source;
use crate::error::{Error, Result};

/// The `postgres` connector.
pub struct Postgres;

impl SqlDatabase for Postgres {
    const KIND: ConnectorKind = ConnectorKind::Postgres;
    type Dialect = PostgresConfig;

    fn config(conn: &ConnectionRef<'_>) -> Result<PostgresConfig> {
        PostgresConfig::new(conn)
    }

    fn source(config: PostgresConfig) -> Arc<dyn Source> {
        Arc::new(PostgresSource { settings: config })
    }

    async fn check(config: PostgresConfig) -> CheckReport {
        check::check(&config).await
    }
}

/// A table named by an asset FQN.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Table {
    schema: String,
    name: String,
}

impl Table {
    /// The table of an FQN: `table` or `schema.table`. A part in double quotes may contain
    /// dots (`"my.schema"."t"`).
    fn parse(connection: &str, fqn: &str) -> Result<Table> {
        let parts = split_fqn(fqn.trim()).ok_or_else(|| {
            Error::Config(format!(
                "Connection \"{connection}\": asset \"{fqn}\" is not a PostgreSQL table (write `table` or `schema.table`)"
            ))
        })?;
        match parts.as_slice() {
            [name] => Ok(Table {
                schema: "public".into(),
                name: name.clone(),
            }),
            [schema, name] => Ok(Table {
                schema: schema.clone(),
                name: name.clone(),
            }),
            _ => Err(Error::Config(format!(
                "Connection \"{connection}\": asset \"{fqn}\" has {} parts; write `table` or `schema.table` (the database is the Connection's)",
                parts.len()
            ))),
        }
    }

    /// `"schema"."table"`.
    fn sql(&self) -> String {
        format!("{}.{}", quote(&self.schema), quote(&self.name))
    }

    /// Another table of the same schema.
    fn sibling(&self, name: String) -> Table {
        Table {
            schema: self.schema.clone(),
            name,
        }
    }
}

impl std::fmt::Display for Table {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}.{}", self.schema, self.name)
    }
}

/// The dot-separated parts of an FQN, each without its surrounding quotes; `None` when a part
/// is empty or a quote is not closed.
fn split_fqn(fqn: &str) -> Option<Vec<String>> {
    let mut parts = Vec::new();
    let mut chars = fqn.chars().peekable();
    loop {
        let mut part = String::new();
        if chars.peek() == Some(&'"') {
            chars.next();
            loop {
                match chars.next()? {
                    '"' if chars.peek() == Some(&'"') => {
                        chars.next();
                        part.push('"');
                    }
                    '"' => break,
                    c => part.push(c),
                }
            }
        } else {
            while let Some(&c) = chars.peek() {
                if c == '.' {
                    break;
                }
                part.push(c);
                chars.next();
            }
        }
        if part.is_empty() {
            return None;
        }
        parts.push(part);
        match chars.next() {
            None => return Some(parts),
            Some('.') => {}
            Some(_) => return None,
        }
    }
}

/// An identifier in double quotes, with embedded quotes doubled: used exactly as written.
fn quote(ident: &str) -> String {
    format!("\"{}\"", ident.replace('"', "\"\""))
}

/// A string literal, with embedded quotes doubled (standard_conforming_strings is on since
/// PostgreSQL 9.1, so backslashes are plain characters).
fn literal(text: &str) -> String {
    format!("'{}'", text.replace('\'', "''"))
}
