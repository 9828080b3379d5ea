//! Microsoft SQL Server.
