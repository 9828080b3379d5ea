//! The Connection's `postgres` block as connect options. Pure: secrets are resolved from
//! memory, nothing touches the network, so `synqx validate` can call it and a bad spec fails
//! before a step starts.

use sqlx::postgres::{PgConnectOptions, PgSslMode};
use synqx_api::connection::SslMode;

use crate::connectors::ConnectionRef;
use crate::connectors::retry::RetrySchedule;
use crate::connectors::sql::at_table;
use crate::connectors::sql::root_cert::{RootCert, root_cert};
use crate::error::{Error, Result};
use crate::secrets::{Redactor, describe};

/// Port of a spec without one.
pub const DEFAULT_PORT: u16 = 5432;

/// What the connector needs to open connections, and to explain why one failed.
#[derive(Clone)]
pub struct PostgresConfig {
    /// Name of the Connection, for messages.
    pub connection: String,
    pub options: PgConnectOptions,
    pub host: String,
    pub port: u16,
    pub database: String,
    pub user: String,
    /// Where the password comes from, in the user's words (`Secret "pg" key "password"`).
    pub password_from: String,
    /// The TLS mode asked for (`require` when the Connection names none), for messages.
    pub ssl_mode: SslMode,
    /// The certificate authority of `sslRootCert`, for messages.
    pub root_cert: Option<RootCert>,
    /// Retries of a failed connect.
    pub retry: RetrySchedule,
    /// Knows the password: every text the server or driver returns passes through it.
    pub redactor: Redactor,
}

impl std::fmt::Debug for PostgresConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PostgresConfig")
            .field("connection", &self.connection)
            .field("host", &self.host)
            .field("port", &self.port)
            .field("database", &self.database)
            .field("user", &self.user)
            .finish_non_exhaustive()
    }
}

impl PostgresConfig {
    pub fn new(conn: &ConnectionRef<'_>) -> Result<PostgresConfig> {
        let name = conn.name;
        let spec = conn.block(conn.spec.postgres.as_ref())?;
        let host = conn.required("postgres.host", &spec.host)?;
        let database = conn.required("postgres.database", &spec.database)?;
        let user = conn.resolve("postgres.user", &spec.user)?;
        if user.is_empty() {
            return Err(Error::Config(format!(
                "Connection \"{name}\": postgres.user is empty"
            )));
        }
        let port = spec.port.unwrap_or(DEFAULT_PORT);
        let tls = spec.ssl_mode.unwrap_or_default();
        // `new_without_pgpass` with every field set: the environment of the runner (PGHOST,
        // PGPASSWORD, ~/.pgpass) must never change what a Connection connects to.
        let mut options = PgConnectOptions::new_without_pgpass()
            .host(host)
            .port(port)
            .database(database)
            .username(&user)
            .ssl_mode(ssl_mode(tls))
            .application_name("synqx")
            // A session zone other than UTC would shift every `timestamptz` rendered as text
            // (the `::text` fallback) and every watermark literal without an offset. String
            // literals (watermarks) double their quotes only: a role or database set to
            // `standard_conforming_strings = off` would read a backslash in one as an escape.
            .options([("TimeZone", "UTC"), ("standard_conforming_strings", "on")]);
        let root_cert = root_cert(conn, "postgres", tls, spec.ssl_root_cert.as_ref())?;
        options = match &root_cert {
            Some(RootCert::Pem(pem)) => options.ssl_root_cert_from_pem(pem.clone()),
            Some(RootCert::File(path)) => options.ssl_root_cert(path),
            None => options,
        };
        let password_from = match &spec.password {
            Some(value) => {
                let plain = conn.secret("postgres.password", value)?;
                options = options.password(&plain);
                describe("postgres.password", value)
            }
            None => "nowhere (postgres.password is not set)".into(),
        };
        Ok(PostgresConfig {
            connection: name.to_string(),
            options,
            host: host.to_string(),
            port,
            database: database.to_string(),
            user,
            password_from,
            ssl_mode: tls,
            root_cert,
            retry: RetrySchedule::default(),
            redactor: conn.secrets.redactor(),
        })
    }

    /// Text with the credentials replaced by `***`, for anything the server or driver said.
    pub fn redact(&self, text: impl std::fmt::Display) -> String {
        self.redactor.redact(text)
    }

    /// `Connection "c"`: the start of every message.
    pub fn at(&self) -> String {
        crate::connectors::connection_at(&self.connection)
    }

    /// `Connection "c", table "s.t"`.
    pub fn at_table(&self, table: &impl std::fmt::Display) -> String {
        at_table(&self.connection, table)
    }

    /// `host:port/database`, for messages.
    pub fn server(&self) -> String {
        format!("{}:{}/{}", self.host, self.port, self.database)
    }
}

fn ssl_mode(mode: SslMode) -> PgSslMode {
    match mode {
        SslMode::Disable => PgSslMode::Disable,
        SslMode::Prefer => PgSslMode::Prefer,
        SslMode::Require => PgSslMode::Require,
        SslMode::VerifyCa => PgSslMode::VerifyCa,
        SslMode::VerifyFull => PgSslMode::VerifyFull,
    }
}

#[cfg(test)]
mod tests {
    use synqx_api::connection::PostgresConnection;
    use synqx_api::{ConnectionSpec, SecretValue};

    use super::*;
    use crate::secrets::Secrets;

    fn settings(spec: PostgresConnection, env: Vec<(String, String)>) -> Result<PostgresConfig> {
        let spec = ConnectionSpec {
            postgres: Some(spec),
            ..Default::default()
        };
        let secrets = Secrets::new([], env);
        PostgresConfig::new(&ConnectionRef {
            name: "warehouse",
            spec: &spec,
            base_dir: ".".into(),
            secrets: &secrets,
        })
    }

    #[test]
    fn a_spec_becomes_options_with_defaults() {
        let s = settings(
            PostgresConnection {
                host: " db.internal ".into(),
                database: "sales".into(),
                user: SecretValue::plain("etl"),
                password: Some(SecretValue::from_secret("pg", "password")),
                ..Default::default()
            },
            vec![(Secrets::env_name("pg", "password"), "s3cret".into())],
        )
        .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(s.options.get_host(), "db.internal");
        assert_eq!(s.options.get_port(), 5432);
        assert_eq!(s.options.get_database(), Some("sales"));
        assert_eq!(s.options.get_username(), "etl");
        assert_eq!(s.options.get_application_name(), Some("synqx"));
        // TLS unless the Connection says otherwise.
        assert!(matches!(s.options.get_ssl_mode(), PgSslMode::Require));
        assert_eq!(s.ssl_mode, SslMode::Require);
        assert_eq!(
            s.password_from,
            "key \"password\" of Secret \"pg\" (postgres.password)"
        );
        assert!(!format!("{s:?}").contains("s3cret"));
    }

    #[test]
    fn missing_fields_and_secrets_are_named() {
        let e = |spec| {
            settings(spec, vec![])
                .err()
                .map(|e| e.to_string())
                .unwrap_or_default()
        };
        let base = PostgresConnection {
            host: "db".into(),
            database: "sales".into(),
            user: SecretValue::plain("etl"),
            ssl_mode: Some(SslMode::VerifyFull),
            ..Default::default()
        };
        assert_eq!(
            e(PostgresConnection {
                host: " ".into(),
                ..base.clone()
            }),
            "Connection \"warehouse\": postgres.host is empty"
        );
        assert_eq!(
            e(PostgresConnection {
                database: String::new(),
                ..base.clone()
            }),
            "Connection \"warehouse\": postgres.database is empty"
        );
        let missing = e(PostgresConnection {
            password: Some(SecretValue::from_secret("pg", "password")),
            ..base.clone()
        });
        assert!(
            missing.starts_with("Connection \"warehouse\": postgres.password: secret key \"password\" of Secret \"pg\" is missing"),
            "{missing}"
        );
        let ok = settings(base, vec![]).unwrap_or_else(|e| panic!("{e}"));
        assert!(matches!(ok.options.get_ssl_mode(), PgSslMode::VerifyFull));
    }
}
