//! Connectors: one folder per system, each implementing `Source` and/or `Sink` and a `check`
//! probe. The registry below maps a Connection's block to its constructor and its probe, so
//! adding a system never touches the engine.

pub mod filesystem;
pub mod formats;
pub mod mysql;
pub mod postgres;
pub mod retry;
pub mod s3;
mod sql_config;
mod sql_names;
mod sql_sink;
pub mod sql_step;
pub mod sqlite;
pub mod sqlserver;
#[cfg(test)]
pub(crate) mod tests;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use synqx_api::connection::CheckReport;
use synqx_api::{ConnectionSpec, ConnectorKind};

use crate::check::{Reason, invalid, report};
use crate::engine::{Sink, Source};
use crate::error::{Error, Result};
use crate::secrets::Secrets;

/// The connectors this version of synqx has, for messages.
const AVAILABLE: &str = "filesystem, mysql, postgres, s3, sqlite, sqlserver";

/// A Connection ready to be opened: its spec, where relative paths start, and how its secret
/// values are resolved.
pub struct ConnectionRef<'a> {
    pub name: &'a str,
    pub spec: &'a ConnectionSpec,
    /// Directory that relative paths in the spec are resolved against.
    pub base_dir: PathBuf,
    pub secrets: &'a Secrets,
}

impl ConnectionRef<'_> {
    /// The connector kind, or an error naming the Connection when its spec is ambiguous.
    pub fn kind(&self) -> Result<ConnectorKind> {
        self.spec.kind().ok_or_else(|| {
            Error::Config(format!(
                "Connection \"{}\" must have exactly one connector block",
                self.name
            ))
        })
    }

    /// A path of the spec, resolved against the base directory.
    pub fn path(&self, path: &str) -> PathBuf {
        let p = Path::new(path);
        if p.is_absolute() {
            p.to_path_buf()
        } else {
            self.base_dir.join(p)
        }
    }

    fn not_available(&self, kind: ConnectorKind, role: &str) -> Error {
        Error::Config(format!(
            "Connection \"{}\": the {kind} connector cannot be used as a {role} by this version of synqx (available: {AVAILABLE})",
            self.name
        ))
    }
}

/// Opens a Connection as a source.
pub fn source(conn: &ConnectionRef<'_>) -> Result<Arc<dyn Source>> {
    match conn.kind()? {
        ConnectorKind::Filesystem => Ok(Arc::new(filesystem::FilesystemSource::new(conn)?)),
        ConnectorKind::S3 => Ok(Arc::new(s3::S3Source::new(conn)?)),
        ConnectorKind::Sqlite => Ok(Arc::new(sqlite::SqliteSource::new(conn)?)),
        ConnectorKind::SqlServer => Ok(Arc::new(sqlserver::SqlServerSource::new(conn)?)),
        ConnectorKind::Mysql => Ok(Arc::new(mysql::MysqlSource::new(conn)?)),
        ConnectorKind::Postgres => Ok(Arc::new(postgres::PostgresSource::new(conn)?)),
        other => Err(conn.not_available(other, "source")),
    }
}

/// Opens a Connection as a sink.
pub fn sink(conn: &ConnectionRef<'_>) -> Result<Arc<dyn Sink>> {
    match conn.kind()? {
        ConnectorKind::Filesystem => Ok(Arc::new(filesystem::FilesystemSink::new(conn)?)),
        ConnectorKind::S3 => Ok(Arc::new(s3::S3Sink::new(conn)?)),
        ConnectorKind::Sqlite => Ok(Arc::new(sqlite::SqliteSink::new(conn)?)),
        ConnectorKind::SqlServer => Ok(Arc::new(sqlserver::SqlServerSink::new(conn)?)),
        ConnectorKind::Mysql => Ok(Arc::new(mysql::MysqlSink::new(conn)?)),
        ConnectorKind::Postgres => Ok(Arc::new(postgres::PostgresSink::new(conn)?)),
        other => Err(conn.not_available(other, "destination")),
    }
}

/// Probes a Connection: its connector connects, authenticates and reaches the target, quickly
/// and without writing data.
pub async fn check(conn: &ConnectionRef<'_>) -> CheckReport {
    match conn.kind() {
        Err(e) => invalid(&e),
        Ok(ConnectorKind::Filesystem) => filesystem::check(conn).await,
        Ok(ConnectorKind::S3) => s3::check(conn).await,
        Ok(ConnectorKind::Sqlite) => sqlite::check(conn).await,
        Ok(ConnectorKind::SqlServer) => sqlserver::check(conn).await,
        Ok(ConnectorKind::Mysql) => mysql::check(conn).await,
        Ok(ConnectorKind::Postgres) => postgres::check(conn).await,
        Ok(other) => report(
            Reason::Unsupported,
            format!(
                "Connection \"{}\": the {other} connector is not available in this version of synqx (available: {AVAILABLE}); steps that use this Connection cannot run until a version with it is installed",
                conn.name
            ),
        ),
    }
}
