//! Microsoft SQL Server, over TDS 7.3 with tiberius.
//!
//! **No SQL Server has run this connector**: none can run where it was written. What runs
//! against iridium-server (a T-SQL engine with a TDS server; `tests/server.rs`) is login,
//! `synqx check`, a refused login, streamed `SELECT`s of int, decimal(38,10), nvarchar and bit
//! columns, an integer cursor pushed down, and the sink's `#temporary` staging table and its
//! copy into the target. Everything else (bulk loads, `MERGE`, `sp_rename` swaps,
//! transactions, datetime2 and datetimeoffset values, query sources) is unproven I/O around
//! pure functions with unit tests of their exact SQL, type map, value conversions and error
//! classification; the bulk load's `INSERT BULK` is tiberius's own and proven nowhere. Treat
//! it as experimental.
//!
//! Asset FQNs are `table` (schema `dbo`), `schema.table` or `database.schema.table`;
//! identifiers are bracket-quoted (`[a]]b]`).
//!
//! The source streams `SELECT <columns> FROM <table>` (or the step's query as a derived table)
//! into Arrow batches cut near the byte budget, with the incremental cursor pushed down as
//! `WHERE cursor > <typed literal>`. The sink bulk-loads (`INSERT BULK`) inside a transaction;
//! see `sink.rs` for the modes.
//!
//! Types read (SQL Server -> Arrow):
//!
//! | SQL Server | Arrow |
//! |---|---|
//! | bit | Boolean |
//! | tinyint / smallint / int / bigint | UInt8 / Int16 / Int32 / Int64 |
//! | real / float | Float32 / Float64 |
//! | decimal(p,s), numeric(p,s) | Decimal128(p,s) |
//! | money / smallmoney | Decimal128(19,4) / Decimal128(10,4) (read as decimal by the table SELECT) |
//! | char, varchar, nchar, nvarchar, text, ntext, xml | Utf8 |
//! | binary, varbinary, image, rowversion | Binary |
//! | uniqueidentifier | FixedSizeBinary(16) with extension `arrow.uuid` |
//! | date | Date32 |
//! | time | Time64(Microsecond): SQL Server keeps 100 ns, the 7th digit is truncated |
//! | datetime, datetime2, smalldatetime | Timestamp(Microsecond, None): datetime2(7)'s 7th digit is truncated |
//! | datetimeoffset | Timestamp(Microsecond, "+00:00"), the instant in UTC (the offset is dropped) |
//! | hierarchyid, sql_variant | Utf8 (cast to nvarchar by the table SELECT) |
//! | geometry, geography | Utf8 (well-known text, by the table SELECT) |
//!
//! Types written (Arrow -> SQL Server, for created tables and added columns):
//!
//! | Arrow | SQL Server |
//! |---|---|
//! | Boolean | bit |
//! | Int8, Int16 / UInt8 | smallint / tinyint |
//! | Int32, UInt16 / Int64, UInt32 | int / bigint |
//! | UInt64 | decimal(20,0) |
//! | Float32 / Float64 | real / float |
//! | Decimal128(p,s) | decimal(p,s) (p ≤ 38, 0 ≤ s < 38) |
//! | Utf8, LargeUtf8, `arrow.json` | nvarchar(max); nvarchar(450) in a primary key (index keys are limited to 900 bytes) |
//! | Binary, LargeBinary | varbinary(max); varbinary(900) in a primary key |
//! | FixedSizeBinary(16) with `arrow.uuid` | uniqueidentifier |
//! | Date32 | date |
//! | Time64 | time(6) |
//! | Timestamp(_, None) | datetime2(6) |
//! | Timestamp(_, Some(tz)) | datetimeoffset(6), written as UTC |
//!
//! Other Arrow types are rejected with the column and type named.

mod check;
mod config;
mod connect;
mod errors;
mod read_values;
mod sink;
mod source;
mod statements;
mod transaction;
mod types;
mod write_values;

#[cfg(test)]
mod tests;

use std::sync::Arc;

use synqx_api::ConnectorKind;
use synqx_api::connection::CheckReport;

pub use config::SqlServerConfig;
pub use source::SqlServerSource;

use crate::connectors::ConnectionRef;
use crate::connectors::sql::{SqlDatabase, at_table};
use crate::engine::Source;
use crate::error::{Error, Result};

/// The `sqlserver` connector.
pub struct SqlServer;

impl SqlDatabase for SqlServer {
    const KIND: ConnectorKind = ConnectorKind::SqlServer;
    type Dialect = SqlServerConfig;

    fn config(conn: &ConnectionRef<'_>) -> Result<SqlServerConfig> {
        SqlServerConfig::new(conn)
    }

    fn source(config: SqlServerConfig) -> Arc<dyn Source> {
        Arc::new(SqlServerSource { settings: config })
    }

    async fn check(config: SqlServerConfig) -> CheckReport {
        check::check(&config).await
    }
}

/// A table named by an asset FQN.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Table {
    pub database: Option<String>,
    pub schema: String,
    pub name: String,
}

impl Table {
    /// `table`, `schema.table` or `database.schema.table`. Brackets around a part are
    /// accepted (`[my.schema].[t]`), so names with dots can be written.
    pub fn parse(connection: &str, fqn: &str) -> Result<Self> {
        let parts = split_fqn(fqn.trim()).ok_or_else(|| {
            Error::Config(format!(
                "Connection \"{connection}\": asset \"{fqn}\" has an unclosed [ bracket"
            ))
        })?;
        if parts.iter().any(|p| p.is_empty()) {
            return Err(Error::Config(format!(
                "Connection \"{connection}\": asset \"{fqn}\" has an empty name part (write `table`, `schema.table` or `database.schema.table`)"
            )));
        }
        let mut parts = parts.into_iter();
        match (parts.next(), parts.next(), parts.next(), parts.next()) {
            (Some(name), None, None, None) => Ok(Self {
                database: None,
                schema: "dbo".into(),
                name,
            }),
            (Some(schema), Some(name), None, None) => Ok(Self {
                database: None,
                schema,
                name,
            }),
            (Some(database), Some(schema), Some(name), None) => Ok(Self {
                database: Some(database),
                schema,
                name,
            }),
            _ => Err(Error::Config(format!(
                "Connection \"{connection}\": asset \"{fqn}\" has too many parts (write `table`, `schema.table` or `database.schema.table`)"
            ))),
        }
    }

    /// The quoted, qualified name: `[db].[schema].[table]` or `[schema].[table]`.
    pub fn quoted(&self) -> String {
        self.with_name(&self.name)
    }

    /// Another table of the same schema, quoted. A table without a schema is a `#temporary`
    /// one, named alone.
    pub fn with_name(&self, name: &str) -> String {
        match &self.database {
            Some(db) => format!("{}.{}.{}", quote(db), quote(&self.schema), quote(name)),
            None if self.schema.is_empty() => quote(name),
            None => format!("{}.{}", quote(&self.schema), quote(name)),
        }
    }

    /// For messages: `schema.table` (or `db.schema.table`).
    pub fn shown(&self) -> String {
        match &self.database {
            Some(db) => format!("{db}.{}.{}", self.schema, self.name),
            None => format!("{}.{}", self.schema, self.name),
        }
    }
}

impl std::fmt::Display for Table {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.shown())
    }
}

/// Splits at dots outside brackets; `]]` inside brackets is a literal `]`. `None` when a
/// bracket is not closed.
fn split_fqn(fqn: &str) -> Option<Vec<String>> {
    let mut parts = Vec::new();
    let mut current = String::new();
    let mut chars = fqn.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '[' if current.trim().is_empty() => {
                current.clear();
                loop {
                    match chars.next()? {
                        ']' if chars.peek() == Some(&']') => {
                            chars.next();
                            current.push(']');
                        }
                        ']' => break,
                        other => current.push(other),
                    }
                }
            }
            '.' => parts.push(std::mem::take(&mut current)),
            other => current.push(other),
        }
    }
    parts.push(current);
    Some(parts.into_iter().map(|p| p.trim().to_string()).collect())
}

/// An identifier in brackets, with `]` doubled.
pub(crate) fn quote(ident: &str) -> String {
    format!("[{}]", ident.replace(']', "]]"))
}

/// `Connection "c", table "s.t"`: the start of every message about a table.
pub(crate) fn at(connection: &str, table: &Table) -> String {
    at_table(connection, table.shown())
}
