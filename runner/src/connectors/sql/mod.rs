//! What the SQL connectors (sqlite, postgres, mysql, sqlserver) share: their [`Connector`]
//! (`connector`), one sink ([`SqlSink`]) and one `sql` step body ([`statements::run`]) driven by each database's
//! [`SqlDialect`], the decisions every load makes alike (`plan`: which columns, which key),
//! the names of the tables they create beside a user's (`names`), the DDL they write alike
//! (`ddl`), what the sqlx-based ones do alike with a session (`session`), and what their tests
//! share (`tests`).

pub mod connector;
pub mod ddl;
pub mod dialect;
pub mod names;
pub mod plan;
pub mod root_cert;
pub mod session;
pub mod sink;
pub mod statements;
#[cfg(test)]
pub(crate) mod tests;

pub use connector::SqlDatabase;
pub use dialect::SqlDialect;
pub use names::{at_table, quoted_list, unique_suffix};
pub use sink::SqlSink;

/// What sqlx says when a Connection's `sslMode` asks for TLS and the server answers that it
/// has none (PostgreSQL and MySQL alike).
pub const NO_TLS: &str = "server does not support TLS";
