//! The Connection's `sqlserver` block as tiberius settings. Pure: secrets are resolved from
//! memory and nothing touches the network.

use secrecy::{ExposeSecret, SecretString};
use tiberius::{AuthMethod, EncryptionLevel};

use crate::connectors::ConnectionRef;
use crate::connectors::retry::RetrySchedule;
use crate::error::{Error, Result};
use crate::secrets::{Redactor, describe};

/// Everything needed to connect, resolved from the spec and its secrets. Its `Debug` shows no
/// secret: the password is a [`SecretString`].
#[derive(Clone, Debug)]
pub struct SqlServerConfig {
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
    /// Send even the login in plain text (TDS encryption `NOT_SUP`). No Connection field sets
    /// it: only the tests against iridium-server turn it on, whose TLS does not interoperate
    /// with tiberius's TLS-inside-TDS handshake.
    pub plaintext_login: bool,
    /// Retries of a failed connect.
    pub retry: RetrySchedule,
    /// Kept to log in.
    password: SecretString,
    /// Knows the password: every text the server or driver returns passes through it.
    pub redactor: Redactor,
}

impl SqlServerConfig {
    /// Checks the spec and resolves its secrets; no network.
    pub fn new(conn: &ConnectionRef<'_>) -> Result<Self> {
        let name = conn.name;
        let spec = conn.block(conn.spec.sqlserver.as_ref())?;
        let host = conn.required("sqlserver.host", &spec.host)?;
        let database = conn.required("sqlserver.database", &spec.database)?;
        let port = spec.port.unwrap_or(1433);
        if port == 0 {
            return Err(Error::Config(format!(
                "Connection \"{name}\": sqlserver.port 0 is not a port"
            )));
        }
        let user = conn.resolve("sqlserver.user", &spec.user)?;
        if user.trim().is_empty() {
            return Err(Error::Config(format!(
                "Connection \"{name}\": sqlserver.user is empty (SQL Server logins need a user name)"
            )));
        }
        let (password, password_from) = match &spec.password {
            Some(value) => (
                SecretString::from(conn.secret("sqlserver.password", value)?),
                describe("sqlserver.password", value),
            ),
            None => (
                SecretString::default(),
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
            plaintext_login: false,
            retry: RetrySchedule::default(),
            password,
            redactor: conn.secrets.redactor(),
        })
    }

    /// `Connection "name"`: the start of every message.
    pub fn at(&self) -> String {
        crate::connectors::connection_at(&self.connection)
    }

    /// The tiberius configuration for a server (the spec's, or the one a gateway routes to).
    pub fn tiberius_config(&self, host: &str, port: u16) -> tiberius::Config {
        let mut config = tiberius::Config::new();
        config.host(host);
        config.port(port);
        config.database(&self.database);
        config.application_name("synqx");
        config.authentication(AuthMethod::sql_server(
            &self.user,
            self.password.expose_secret(),
        ));
        // Without `encrypt`, the login (and its password) is still encrypted; only the data
        // that follows is not.
        config.encryption(if self.plaintext_login {
            EncryptionLevel::NotSupported
        } else if self.encrypt {
            EncryptionLevel::Required
        } else {
            EncryptionLevel::Off
        });
        if self.trust_server_certificate {
            config.trust_cert();
        }
        config
    }

    /// Text with the credentials replaced by `***`, for anything the server or driver said.
    pub fn redact(&self, text: impl std::fmt::Display) -> String {
        self.redactor.redact(text)
    }
}

#[cfg(test)]
pub(super) mod tests {
    use std::path::PathBuf;

    use synqx_api::ConnectionSpec;
    use synqx_api::connection::SqlServerConnection;

    use synqx_api::SecretValue;

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

    pub fn settings_of(spec: &ConnectionSpec) -> Result<SqlServerConfig> {
        let secrets = Secrets::default();
        let conn = ConnectionRef {
            name: "mssql",
            spec,
            base_dir: PathBuf::from("."),
            secrets: &secrets,
        };
        SqlServerConfig::new(&conn)
    }

    #[test]
    fn the_spec_becomes_settings_with_defaults_and_no_password_in_debug() {
        let s = settings_of(&spec("s3cret-pw")).unwrap();
        assert_eq!((s.host.as_str(), s.port), ("db.example", 1433));
        assert_eq!((s.database.as_str(), s.user.as_str()), ("sales", "etl"));
        assert!(s.encrypt && !s.trust_server_certificate);
        assert_eq!(s.password_from, "the plain value of sqlserver.password");
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
            Some("Connection \"mssql\" must have exactly one connector block")
        );
    }
}
