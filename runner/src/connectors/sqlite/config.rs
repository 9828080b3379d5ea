//! The Connection's `sqlite` block: the database file. Pure.

use std::path::PathBuf;

use crate::connectors::ConnectionRef;
use crate::connectors::sql::at_table;
use crate::error::{Error, Result};

/// A SQLite database file.
#[derive(Clone, Debug)]
pub struct SqliteConfig {
    /// Name of the Connection, for messages.
    pub connection: String,
    /// `sqlite.path`, resolved against the directory relative paths start at.
    pub path: PathBuf,
}

impl SqliteConfig {
    pub fn new(conn: &ConnectionRef<'_>) -> Result<Self> {
        let spec = conn.block(conn.spec.sqlite.as_ref())?;
        let path = conn.required("sqlite.path", &spec.path)?;
        Ok(Self {
            connection: conn.name.to_string(),
            path: conn.path(path),
        })
    }

    /// The table an asset FQN names: `table` or `main.table`.
    pub fn table(&self, fqn: &str) -> Result<String> {
        let fqn = fqn.trim();
        let name = match fqn.split_once('.') {
            None => fqn,
            Some((schema, table)) if schema.eq_ignore_ascii_case("main") => table,
            Some(_) => {
                return Err(Error::Config(format!(
                    "Connection \"{}\": asset \"{fqn}\" is not a SQLite table (write `table` or `main.table`)",
                    self.connection
                )));
            }
        };
        if name.is_empty() {
            return Err(Error::Config(format!(
                "Connection \"{}\": asset \"{fqn}\" has an empty table name",
                self.connection
            )));
        }
        Ok(name.to_string())
    }

    /// `Connection "c", table "t"`: the start of every message about a table.
    pub fn at(&self, table: &str) -> String {
        at_table(&self.connection, table)
    }
}
