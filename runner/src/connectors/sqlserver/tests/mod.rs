//! The SQL Server connector: names without a server, and against iridium-server (a T-SQL
//! engine with a TDS server, the closest thing to SQL Server that runs here) what it supports.

mod names;
#[cfg(feature = "sqlserver-integration-tests")]
mod server;
#[cfg(feature = "sqlserver-integration-tests")]
mod support;
