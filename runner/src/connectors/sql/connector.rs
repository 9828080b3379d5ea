//! The [`Connector`] of a SQL database: whatever its dialect already knows (which FQNs name a
//! table, how a load and a `sql` step run) follows from [`SqlDatabase`], so each database
//! writes only what is its own: its Connection block, its source and its probe.

use std::future::Future;
use std::sync::Arc;

use synqx_api::ConnectorKind;
use synqx_api::connection::CheckReport;
use synqx_api::pipeline::{Destination, Source as SourceSpec};

use super::{SqlDialect, SqlSink, statements};
use crate::connectors::{ConnectionRef, Connector};
use crate::engine::{Sink, Source};
use crate::error::Result;

/// A database written through [`SqlSink`], whose config is its [`SqlDialect`].
pub trait SqlDatabase: Sync + 'static {
    /// The Connection block it reads.
    const KIND: ConnectorKind;
    /// The checked Connection block, which is also the dialect its loads speak.
    type Dialect: SqlDialect;

    /// Parses and checks the Connection block, without I/O (see [`Connector::config`]).
    fn config(conn: &ConnectionRef<'_>) -> Result<Self::Dialect>;

    /// Opens the Connection as a source.
    fn source(config: Self::Dialect) -> Arc<dyn Source>;

    /// Probes the database (see [`Connector::check`]).
    fn check(config: Self::Dialect) -> impl Future<Output = CheckReport> + Send;
}

impl<T: SqlDatabase> Connector for T {
    const KIND: ConnectorKind = T::KIND;
    type Config = T::Dialect;

    fn config(conn: &ConnectionRef<'_>) -> Result<T::Dialect> {
        T::config(conn)
    }

    /// A source's asset names a table of the database.
    fn validate_source(config: &T::Dialect, source: &SourceSpec) -> Result<()> {
        config.table(&source.asset.fqn).map(drop)
    }

    /// So does a destination's.
    fn validate_destination(config: &T::Dialect, destination: &Destination) -> Result<()> {
        config.table(&destination.asset.fqn).map(drop)
    }

    /// Statements are the database's to judge; they run as written.
    fn validate_sql(_config: &T::Dialect, _statements: &[String]) -> Result<()> {
        Ok(())
    }

    fn source(config: T::Dialect) -> Result<Arc<dyn Source>> {
        Ok(T::source(config))
    }

    fn sink(config: T::Dialect) -> Result<Arc<dyn Sink>> {
        Ok(Arc::new(SqlSink::new(config)))
    }

    fn check(config: T::Dialect) -> impl Future<Output = CheckReport> + Send {
        T::check(config)
    }

    async fn run_sql(config: T::Dialect, statements: &[String]) -> Result<u64> {
        statements::run(&config, statements).await
    }
}
