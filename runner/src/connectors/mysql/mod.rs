//! MySQL and MariaDB.
//!
//! Asset FQNs are `table` (in the Connection's database) or `database.table`; each part is
//! quoted with backticks exactly as written, so its case is kept.
//!
//! The source streams `SELECT <columns> FROM <table>` (or the step's query) over the binary
//! protocol into Arrow batches cut near the byte budget, with the incremental cursor pushed
//! down as `WHERE cursor > <literal>` typed like the column (`source.rs`, `binary.rs`). The
//! sink writes append, overwrite and upsert so that a failed or killed load leaves the table as
//! it was (`sink.rs`). Sessions run in UTC with a fixed `sql_mode` (`connect.rs`).
//!
//! # Type map
//!
//! | MySQL / MariaDB                                   | Arrow (read)                       | written from Arrow as                          |
//! |---------------------------------------------------|------------------------------------|------------------------------------------------|
//! | `tinyint(1)`, `bool`, `bit(1)`                    | Boolean                            | Boolean → `tinyint(1)`                         |
//! | `tinyint` / `smallint` / `mediumint`, `int` / `bigint` | Int8 / Int16 / Int32 / Int64  | Int8..Int64 → `tinyint`..`bigint`              |
//! | the same `unsigned`                               | UInt8 / UInt16 / UInt32 / UInt64   | UInt8..UInt64 → `… unsigned`                   |
//! | `float` / `double`                                | Float32 / Float64                  | Float16, Float32 → `float`; Float64 → `double` |
//! | `decimal(p,s)`, p ≤ 38                            | Decimal128(p,s)                    | Decimal*(p,s) → `decimal(p,s)` (p > 65: error) |
//! | `decimal(p,s)`, p > 38                            | Utf8 (exact text)                  |                                                |
//! | `bit(n)`, n > 1                                   | Binary                             |                                                |
//! | `year`                                            | Int16                              |                                                |
//! | `char`, `varchar`, `*text`, `enum`, `set`         | Utf8                               | Utf8 → `longtext`; `varchar(255)` in a primary key |
//! | `json` (MariaDB: longtext with `json_valid` check)| Utf8, `ARROW:extension:name` = `arrow.json` | Utf8 + arrow.json → `json`           |
//! | `binary`, `varbinary`, `*blob`                    | Binary                             | Binary → `longblob`; `varbinary(255)` in a primary key |
//! | `uuid` (MariaDB 10.7+)                            | FixedSizeBinary(16) + `arrow.uuid` | → `uuid` (canonical text); `binary(16)` elsewhere |
//! | `date`                                            | Date32                             | Date32, Date64 → `date`                        |
//! | `time`                                            | Time64(µs); outside 00:00–24:00: bad row | Time32, Time64 → `time(6)`               |
//! | `datetime`                                        | Timestamp(µs)                      | Timestamp without zone → `datetime(6)`         |
//! | `timestamp`                                       | Timestamp(µs, "+00:00")            | Timestamp with zone → `datetime(6)` holding UTC (`timestamp` ends in 2038) |
//!
//! Zero dates (`0000-00-00`, or a zero month or day) are read as NULL. Primary-key text and
//! binary columns are `varchar(255)` / `varbinary(255)` because MySQL cannot index `longtext`
//! or `longblob` without a prefix length. List, Struct, Map, Interval and Duration columns are
//! refused with the column's name: cast them (to JSON text, or to a number of units) in a
//! transform. Spatial types cannot be read; select them as text (`ST_AsText`) in a query.
//!
//! The JSON of a query's columns is only recognised where the server types it as `json`
//! (MySQL); on MariaDB a query's JSON column is plain Utf8.

mod binary;
mod catalog;
mod check;
mod config;
mod connect;
mod ddl;
mod decode;
mod insert;
mod literal;
mod sink;
mod source;
mod types;

#[cfg(test)]
mod tests;

use std::sync::Arc;

use synqx_api::ConnectorKind;
use synqx_api::connection::CheckReport;

pub use config::MysqlConfig;
pub use source::MysqlSource;

use crate::connectors::ConnectionRef;
use crate::connectors::sql::{SqlDatabase, at_table, unique_suffix};
use crate::engine::Source;
use crate::error::{Error, Result};

/// The `mysql` connector (MySQL and MariaDB).
pub struct Mysql;

impl SqlDatabase for Mysql {
    const KIND: ConnectorKind = ConnectorKind::Mysql;
    type Dialect = MysqlConfig;

    fn config(conn: &ConnectionRef<'_>) -> Result<MysqlConfig> {
        MysqlConfig::new(conn)
    }

    fn source(config: MysqlConfig) -> Arc<dyn Source> {
        Arc::new(MysqlSource { settings: config })
    }

    async fn check(config: MysqlConfig) -> CheckReport {
        check::check(&config).await
    }
}

/// A table an asset FQN names.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TableRef {
    database: String,
    table: String,
    /// The FQN as written, for messages.
    shown: String,
}

impl TableRef {
    fn parse(settings: &MysqlConfig, fqn: &str) -> Result<Self> {
        let fqn = fqn.trim();
        let (database, table) = match fqn.split_once('.') {
            Some((database, table)) => (database, table),
            None => (settings.database.as_str(), fqn),
        };
        if database.is_empty() || table.is_empty() {
            return Err(Error::Config(format!(
                "Connection \"{}\": asset \"{fqn}\" is not a MySQL table (write `table` or `database.table`)",
                settings.connection
            )));
        }
        Ok(Self {
            database: database.to_string(),
            table: table.to_string(),
            shown: fqn.to_string(),
        })
    }

    /// The same database, another table.
    fn sibling(&self, table: String) -> Self {
        Self {
            database: self.database.clone(),
            shown: table.clone(),
            table,
        }
    }

    /// `` `database`.`table` ``.
    fn sql(&self) -> String {
        format!("{}.{}", quote(&self.database), quote(&self.table))
    }
}

impl std::fmt::Display for TableRef {
    /// The FQN as written.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.shown)
    }
}

/// `Connection "c", table "t"`: the start of every message about a table.
fn at(settings: &MysqlConfig, table: &TableRef) -> String {
    at_table(&settings.connection, &table.shown)
}

/// An identifier in backticks, with embedded backticks doubled.
fn quote(ident: &str) -> String {
    format!("`{}`", ident.replace('`', "``"))
}

/// A name for a table SynqX creates beside `table`, within MySQL's 64-character limit.
fn work_table(table: &str, role: &str) -> String {
    let suffix = format!("_synqx_{role}_{}", unique_suffix());
    let mut base: String = table.to_string();
    while base.chars().count() + suffix.len() > 64 {
        base.pop();
    }
    format!("{base}{suffix}")
}
