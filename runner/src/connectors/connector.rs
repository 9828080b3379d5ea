//! The shape every connector has: a [`Connector`] parses its Connection block once, purely,
//! into its `Config`, checks the steps that use it against that config, and opens sources,
//! sinks, probes and `sql` steps from it. [`Registered`] is the same connector behind a
//! pointer, so the registry can hold every connector in one table.

use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use async_trait::async_trait;
use synqx_api::connection::CheckReport;
use synqx_api::pipeline::{Destination, Source as SourceSpec};
use synqx_api::validate::Doc;
use synqx_api::{Connection, ConnectionSpec, ConnectorKind, SecretValue};

use crate::check::invalid;
use crate::engine::{Sink, Source};
use crate::error::{Error, Result};
use crate::secrets::Secrets;

/// `Connection "c"`: how a connector's messages about its Connection start (its config's
/// `at()`).
pub fn connection_at(name: &str) -> String {
    format!("Connection \"{name}\"")
}

/// A Connection ready to be opened: its spec, where relative paths start, and how its secret
/// values are resolved.
pub struct ConnectionRef<'a> {
    pub name: &'a str,
    pub spec: &'a ConnectionSpec,
    /// Directory that relative paths in the spec are resolved against.
    pub base_dir: PathBuf,
    pub secrets: &'a Secrets,
}

impl<'a> ConnectionRef<'a> {
    /// A Connection of the files (`synqx run`, `validate`, `check`): relative paths in it start
    /// at the directory of the file that declares it.
    pub fn of_file(doc: &'a Doc<Connection>, secrets: &'a Secrets) -> Self {
        ConnectionRef {
            name: doc.object.metadata.name.as_deref().unwrap_or_default(),
            spec: &doc.object.spec,
            base_dir: Path::new(&doc.file)
                .parent()
                .map(Path::to_path_buf)
                .unwrap_or_default(),
            secrets,
        }
    }
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

    /// The connector's block of the spec, or an error naming the Connection.
    pub fn block<'s, T>(&'s self, block: Option<&'s T>) -> Result<&'s T> {
        block.ok_or_else(|| match self.spec.kind() {
            Some(kind) => Error::Config(format!(
                "Connection \"{}\" is a {kind} Connection, not the one this connector reads",
                self.name
            )),
            None => Error::Config(format!(
                "Connection \"{}\" must have exactly one connector block",
                self.name
            )),
        })
    }

    /// A text field that must hold something, trimmed; `field` is its path, as
    /// `postgres.host`.
    pub fn required<'v>(&self, field: &str, value: &'v str) -> Result<&'v str> {
        let value = value.trim();
        if value.is_empty() {
            return Err(Error::Config(format!(
                "Connection \"{}\": {field} is empty",
                self.name
            )));
        }
        Ok(value)
    }

    /// The plaintext of a field that is not a credential (a user name).
    pub fn resolve(&self, field: &str, value: &SecretValue) -> Result<String> {
        self.secrets.resolve(self.name, field, value)
    }

    /// The plaintext of a credential (a password, a key), remembered by the run's redactor.
    pub fn secret(&self, field: &str, value: &SecretValue) -> Result<String> {
        self.secrets.secret(self.name, field, value)
    }
}

/// A text field that may be left out: trimmed, and `None` when unset or blank.
pub fn optional_text(value: Option<&str>) -> Option<String> {
    value
        .map(str::trim)
        .filter(|v| !v.is_empty())
        .map(str::to_string)
}

/// What a step uses a Connection for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    /// Read by a sync step.
    Source,
    /// Written by a sync step.
    Destination,
    /// Runs the statements of a sql step.
    Sql,
}

impl Role {
    fn as_str(self) -> &'static str {
        match self {
            Role::Source => "a source",
            Role::Destination => "a destination",
            Role::Sql => "the Connection of a sql step",
        }
    }
}

/// The error of a connector asked for a role it does not have.
pub fn unsupported(kind: ConnectorKind, role: Role) -> Error {
    Error::Config(format!(
        "the {kind} connector cannot be {} in this version of synqx",
        role.as_str()
    ))
}

/// One system SynqX reads from or writes to. A connector is a unit struct in its own folder
/// (`connectors/<system>/`), registered once in [`super::CONNECTORS`].
///
/// Everything starts from [`Connector::config`]: the Connection block parsed and checked
/// without I/O. `synqx validate` calls it and the `validate_*` methods with placeholder
/// secrets, so a mistake in a block, an FQN or an option is reported before anything runs;
/// the I/O methods take the config the same call made.
pub trait Connector: Sync + 'static {
    /// The Connection block this connector reads.
    const KIND: ConnectorKind;
    /// The Connection block, checked and with its secrets resolved: what the I/O needs.
    type Config: Send + Sync + 'static;

    /// Parses and checks the Connection block and resolves its secrets. Pure: no network, no
    /// files, no clients built.
    fn config(conn: &ConnectionRef<'_>) -> Result<Self::Config>;

    /// Checks a step's source against the Connection, without I/O: the asset names something
    /// the system can read, and the options fit it.
    fn validate_source(config: &Self::Config, source: &SourceSpec) -> Result<()>;

    /// Checks a step's destination against the Connection, without I/O.
    fn validate_destination(config: &Self::Config, destination: &Destination) -> Result<()>;

    /// Checks a sql step's statements, without I/O. Systems that run no SQL keep the default.
    fn validate_sql(_config: &Self::Config, _statements: &[String]) -> Result<()> {
        Err(unsupported(Self::KIND, Role::Sql))
    }

    /// Opens the Connection as a source.
    fn source(config: Self::Config) -> Result<Arc<dyn Source>>;

    /// Opens the Connection as a sink.
    fn sink(config: Self::Config) -> Result<Arc<dyn Sink>>;

    /// Probes the system: connects, authenticates and reaches the target, quickly and without
    /// writing data.
    fn check(config: Self::Config) -> impl Future<Output = CheckReport> + Send;

    /// Runs a sql step's statements in one transaction; returns the rows they affected.
    fn run_sql(
        _config: Self::Config,
        _statements: &[String],
    ) -> impl Future<Output = Result<u64>> + Send {
        async { Err(unsupported(Self::KIND, Role::Sql)) }
    }
}

/// A [`Connector`] behind a pointer: what the registry table holds. Every connector has it
/// through the blanket implementation below; nothing implements it by hand.
#[async_trait]
pub trait Registered: Sync {
    fn kind(&self) -> ConnectorKind;
    fn validate_connection(&self, conn: &ConnectionRef<'_>) -> Result<()>;
    fn validate(&self, conn: &ConnectionRef<'_>, usage: Usage<'_>) -> Result<()>;
    fn source(&self, conn: &ConnectionRef<'_>) -> Result<Arc<dyn Source>>;
    fn sink(&self, conn: &ConnectionRef<'_>) -> Result<Arc<dyn Sink>>;
    async fn check(&self, conn: &ConnectionRef<'_>) -> CheckReport;
    async fn run_sql(&self, conn: &ConnectionRef<'_>, statements: &[String]) -> Result<u64>;
}

/// How a step uses a Connection, for validation.
#[derive(Clone, Copy, Debug)]
pub enum Usage<'a> {
    Source(&'a SourceSpec),
    Destination(&'a Destination),
    Sql(&'a [String]),
}

#[async_trait]
impl<C: Connector> Registered for C {
    fn kind(&self) -> ConnectorKind {
        C::KIND
    }

    fn validate_connection(&self, conn: &ConnectionRef<'_>) -> Result<()> {
        C::config(conn).map(drop)
    }

    fn validate(&self, conn: &ConnectionRef<'_>, usage: Usage<'_>) -> Result<()> {
        let config = C::config(conn)?;
        match usage {
            Usage::Source(source) => C::validate_source(&config, source),
            Usage::Destination(destination) => C::validate_destination(&config, destination),
            Usage::Sql(statements) => C::validate_sql(&config, statements),
        }
        .map_err(|e| named(conn, e))
    }

    fn source(&self, conn: &ConnectionRef<'_>) -> Result<Arc<dyn Source>> {
        C::source(C::config(conn)?)
    }

    fn sink(&self, conn: &ConnectionRef<'_>) -> Result<Arc<dyn Sink>> {
        C::sink(C::config(conn)?)
    }

    async fn check(&self, conn: &ConnectionRef<'_>) -> CheckReport {
        match C::config(conn) {
            Ok(config) => C::check(config).await,
            Err(e) => invalid(&e),
        }
    }

    async fn run_sql(&self, conn: &ConnectionRef<'_>, statements: &[String]) -> Result<u64> {
        let config = C::config(conn)?;
        C::validate_sql(&config, statements).map_err(|e| named(conn, e))?;
        C::run_sql(config, statements).await
    }
}

/// A configuration error that starts with the Connection it is about.
fn named(conn: &ConnectionRef<'_>, e: Error) -> Error {
    match e {
        Error::Config(message) if !message.starts_with("Connection \"") => {
            Error::Config(format!("Connection \"{}\": {message}", conn.name))
        }
        other => other,
    }
}
