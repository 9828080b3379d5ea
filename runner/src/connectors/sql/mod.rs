//! What the SQL connectors (sqlite, postgres, mysql, sqlserver) share: one sink
//! ([`SqlSink`]) and one `sql` step body ([`statements::run`]) driven by each database's
//! [`SqlDialect`], the decisions every load makes alike (`plan`: which columns, which key),
//! and the names of the tables they create beside a user's (`names`).

pub mod dialect;
pub mod names;
pub mod plan;
pub mod root_cert;
pub mod sink;
pub mod statements;

pub use dialect::SqlDialect;
pub use names::{at_table, quoted_list, unique_suffix};
pub use sink::SqlSink;

/// What sqlx says when a Connection's `sslMode` asks for TLS and the server answers that it
/// has none (PostgreSQL and MySQL alike).
pub const NO_TLS: &str = "server does not support TLS";
