//! The Connection spec as tiberius settings, and opening a connection: TCP with a timeout,
//! retries of transient failures, and one reconnect where the server routes the client (Azure
//! SQL gateways answer the login with the address of the node that holds the database).

use std::io::ErrorKind;
use std::time::Duration;

use synqx_api::SecretValue;
use tiberius::error::Error as TdsError;
use tiberius::{AuthMethod, EncryptionLevel};
use tokio::net::TcpStream;
use tokio_util::compat::{Compat, TokioAsyncWriteCompatExt};

use super::errors::{Failure, is_transient};
use crate::connectors::ConnectionRef;
use crate::connectors::retry::{Backoff, retry};
use crate::connectors::sql_config::{block, required};
use crate::error::{Error, Result};

/// A connected client.
pub type Client = tiberius::Client<Compat<TcpStream>>;

/// Longest wait for the TCP connect, and separately for TLS and the login.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(15);

/// Everything needed to connect, resolved from the spec and its secrets.
#[derive(Clone)]
pub struct Settings {
    /// Name of the Connection, for messages.
    pub connection: String,
    pub host: String,
    pub port: u16,
    pub database: String,
    pub user: String,
    /// Where the password comes from, in the user's words (`key "password" of Secret "mssql"`).
    pub password_from: String,
    pub encrypt: bool,
    pub trust_server_certificate: bool,
    /// Retries of a failed connect.
    pub backoff: Backoff,
    /// Kept to log in and to scrub it from any text a message could carry.
    password: String,
}

impl std::fmt::Debug for Settings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Settings")
            .field("connection", &self.connection)
            .field("host", &self.host)
            .field("port", &self.port)
            .field("database", &self.database)
            .field("user", &self.user)
            .field("encrypt", &self.encrypt)
            .field("trust_server_certificate", &self.trust_server_certificate)
            .finish_non_exhaustive()
    }
}

impl Settings {
    /// Checks the spec and resolves its secrets; no network.
    pub fn from_connection(conn: &ConnectionRef<'_>) -> Result<Self> {
        let name = conn.name;
        let spec = block(name, "sqlserver", conn.spec.sqlserver.as_ref())?;
        let host = required(name, "sqlserver.host", &spec.host)?;
        let database = required(name, "sqlserver.database", &spec.database)?;
        let port = spec.port.unwrap_or(1433);
        if port == 0 {
            return Err(Error::Config(format!(
                "Connection \"{name}\": sqlserver.port 0 is not a port"
            )));
        }
        let user = conn.secrets.resolve(name, "sqlserver.user", &spec.user)?;
        if user.trim().is_empty() {
            return Err(Error::Config(format!(
                "Connection \"{name}\": sqlserver.user is empty (SQL Server logins need a user name)"
            )));
        }
        let (password, password_from) = match &spec.password {
            Some(value) => (
                conn.secrets.resolve(name, "sqlserver.password", value)?,
                describe(value),
            ),
            None => (
                String::new(),
                "nowhere (sqlserver.password is not set)".into(),
            ),
        };
        Ok(Self {
            connection: name.to_string(),
            host: host.to_string(),
            port,
            database: database.to_string(),
            user,
            password_from,
            encrypt: spec.encrypt.unwrap_or(true),
            trust_server_certificate: spec.trust_server_certificate.unwrap_or(false),
            backoff: Backoff::default(),
            password,
        })
    }

    /// `Connection "name"`: the start of every message.
    pub fn at(&self) -> String {
        format!("Connection \"{}\"", self.connection)
    }

    /// The tiberius configuration for a server (the spec's, or the one a gateway routes to).
    pub fn tiberius_config(&self, host: &str, port: u16) -> tiberius::Config {
        let mut config = tiberius::Config::new();
        config.host(host);
        config.port(port);
        config.database(&self.database);
        config.application_name("synqx");
        config.authentication(AuthMethod::sql_server(&self.user, &self.password));
        // Without `encrypt`, the login (and its password) is still encrypted; only the data
        // that follows is not.
        config.encryption(if self.encrypt {
            EncryptionLevel::Required
        } else {
            EncryptionLevel::Off
        });
        if self.trust_server_certificate {
            config.trust_cert();
        }
        config
    }

    /// Text with the password replaced by `***`, for anything the server or driver said.
    pub fn redact(&self, text: impl std::fmt::Display) -> String {
        let text = text.to_string();
        if self.password.is_empty() {
            text
        } else {
            text.replace(self.password.as_str(), "***")
        }
    }
}

/// Where a secret value comes from, without its value.
fn describe(value: &SecretValue) -> String {
    if let Some(r) = &value.secret_key_ref {
        format!(
            "key \"{}\" of Secret \"{}\" (sqlserver.password)",
            r.key, r.name
        )
    } else if value.sealed.is_some() {
        "the sealed value of sqlserver.password".into()
    } else {
        "sqlserver.password".into()
    }
}

/// A connection, after up to `settings.backoff.attempts` attempts while the server is
/// restarting or not reachable yet. The error names the Connection and says what to do.
pub async fn connect(settings: &Settings) -> Result<Client> {
    connect_failure(settings)
        .await
        .map_err(|f| Error::database(settings.at(), f.text))
}

/// Like [`connect`], with the failure classified (for the check probe).
pub async fn connect_failure(settings: &Settings) -> std::result::Result<Client, Failure> {
    retry(
        settings.backoff,
        is_transient,
        |attempt, e, wait| {
            eprintln!(
                "{}: connecting failed ({}); attempt {attempt} in {:.1}s",
                settings.at(),
                settings.redact(e),
                wait.as_secs_f64()
            )
        },
        || following_routing(settings),
    )
    .await
    .map_err(|e| Failure::of_connect(settings, &e))
}

/// One connect; when the server routes the client elsewhere, one connect there.
async fn following_routing(settings: &Settings) -> std::result::Result<Client, TdsError> {
    match attempt(settings, &settings.host, settings.port).await {
        Err(TdsError::Routing { host, port }) => attempt(settings, &host, port).await,
        other => other,
    }
}

async fn attempt(
    settings: &Settings,
    host: &str,
    port: u16,
) -> std::result::Result<Client, TdsError> {
    let timed_out = || TdsError::Io {
        kind: ErrorKind::TimedOut,
        message: format!("no answer within {}s", CONNECT_TIMEOUT.as_secs()),
    };
    let tcp = tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect((host, port)))
        .await
        .map_err(|_| timed_out())??;
    // Rows go out in small packets; waiting to coalesce them only adds latency.
    tcp.set_nodelay(true)?;
    let config = settings.tiberius_config(host, port);
    tokio::time::timeout(CONNECT_TIMEOUT, Client::connect(config, tcp.compat_write()))
        .await
        .map_err(|_| timed_out())?
}

#[cfg(test)]
pub(super) mod tests {
    use std::path::PathBuf;

    use synqx_api::ConnectionSpec;
    use synqx_api::connection::SqlServerConnection;

    use super::*;
    use crate::secrets::Secrets;

    pub fn spec(password: &str) -> ConnectionSpec {
        ConnectionSpec {
            sqlserver: Some(SqlServerConnection {
                host: " db.example ".into(),
                port: None,
                database: "sales".into(),
                user: SecretValue {
                    value: Some("etl".into()),
                    ..Default::default()
                },
                password: Some(SecretValue {
                    value: Some(password.into()),
                    ..Default::default()
                }),
                encrypt: None,
                trust_server_certificate: None,
            }),
            ..Default::default()
        }
    }

    pub fn settings_of(spec: &ConnectionSpec) -> Result<Settings> {
        let secrets = Secrets::default();
        let conn = ConnectionRef {
            name: "mssql",
            spec,
            base_dir: PathBuf::from("."),
            secrets: &secrets,
        };
        Settings::from_connection(&conn)
    }

    #[test]
    fn the_spec_becomes_settings_with_defaults_and_no_password_in_debug() {
        let s = settings_of(&spec("s3cret-pw")).unwrap();
        assert_eq!((s.host.as_str(), s.port), ("db.example", 1433));
        assert_eq!((s.database.as_str(), s.user.as_str()), ("sales", "etl"));
        assert!(s.encrypt && !s.trust_server_certificate);
        assert_eq!(s.password_from, "sqlserver.password");
        assert!(!format!("{s:?}").contains("s3cret"));
        let config = s.tiberius_config(&s.host, s.port);
        assert_eq!(config.get_addr(), "db.example:1433");
        assert_eq!(
            s.redact("login for s3cret-pw failed"),
            "login for *** failed"
        );
    }

    #[test]
    fn invalid_specs_are_configuration_errors_naming_the_field() {
        let mut bad = spec("pw");
        if let Some(s) = bad.sqlserver.as_mut() {
            s.host = " ".into();
        }
        let e = settings_of(&bad).unwrap_err().to_string();
        assert_eq!(e, "Connection \"mssql\": sqlserver.host is empty");
        let mut bad = spec("pw");
        if let Some(s) = bad.sqlserver.as_mut() {
            s.database = String::new();
        }
        assert!(
            settings_of(&bad)
                .unwrap_err()
                .to_string()
                .contains("sqlserver.database is empty")
        );
        let e = settings_of(&ConnectionSpec::default())
            .err()
            .map(|e| e.to_string());
        assert_eq!(
            e.as_deref(),
            Some("Connection \"mssql\" has no sqlserver block")
        );
    }
}
