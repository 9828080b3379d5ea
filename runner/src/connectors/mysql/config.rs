//! The Connection's `mysql` block as connect options. Pure: nothing here touches the network,
//! so `synqx validate` can call it.

use std::time::Duration;

use sqlx::mysql::{MySqlConnectOptions, MySqlSslMode};
use synqx_api::connection::SslMode;

use crate::connectors::ConnectionRef;
use crate::connectors::sql::root_cert::{RootCert, root_cert};
use crate::error::Result;
use crate::secrets::Redactor;

/// Port of a MySQL server when the spec names none.
pub(super) const DEFAULT_PORT: u16 = 3306;
/// Longest wait for one connection attempt: TCP, TLS, authentication and session setup.
pub(super) const CONNECT_TIMEOUT: Duration = Duration::from_secs(20);

/// Where and as whom to connect, and how messages name it.
#[derive(Clone)]
pub struct MysqlConfig {
    /// Name of the Connection, for messages.
    pub connection: String,
    pub host: String,
    pub port: u16,
    pub database: String,
    /// Carries the password: never formatted into a message (`MySqlConnectOptions` has no
    /// `Display`, and its `Debug` is never used here).
    pub options: MySqlConnectOptions,
    /// The TLS mode asked for (`require` when the Connection names none), for messages.
    pub ssl_mode: SslMode,
    /// The certificate authority of `sslRootCert`, for messages.
    pub root_cert: Option<RootCert>,
    /// Knows the password: every text the server or driver returns passes through it.
    pub redactor: Redactor,
}

impl MysqlConfig {
    pub fn new(conn: &ConnectionRef<'_>) -> Result<Self> {
        let spec = conn.block(conn.spec.mysql.as_ref())?;
        let host = conn.required("mysql.host", &spec.host)?;
        let database = conn.required("mysql.database", &spec.database)?;
        let user = conn.resolve("mysql.user", &spec.user)?;
        let port = spec.port.unwrap_or(DEFAULT_PORT);
        let tls = spec.ssl_mode.unwrap_or_default();
        let mut options = MySqlConnectOptions::new()
            .host(host)
            .port(port)
            .username(&user)
            .database(database)
            .ssl_mode(ssl_mode(tls))
            // utf8mb4 so 4-byte characters survive both ways.
            .charset("utf8mb4")
            // The session's sql_mode is set whole after connecting (see `connect.rs`); these
            // two would only be appended to the server's default.
            .pipes_as_concat(false)
            .no_engine_substitution(false)
            // Datetimes and timestamps are read and written as UTC text.
            .timezone(Some("+00:00".to_string()))
            // Each read and write prepares few statements; a large cache only holds server
            // resources.
            .statement_cache_capacity(16);
        let root_cert = root_cert(conn, "mysql", tls, spec.ssl_root_cert.as_ref())?;
        options = match &root_cert {
            Some(RootCert::Pem(pem)) => options.ssl_ca_from_pem(pem.clone()),
            Some(RootCert::File(path)) => options.ssl_ca(path),
            None => options,
        };
        if let Some(password) = &spec.password {
            let password = conn.secret("mysql.password", password)?;
            options = options.password(&password);
        }
        Ok(Self {
            connection: conn.name.to_string(),
            host: host.to_string(),
            port,
            database: database.to_string(),
            options,
            ssl_mode: tls,
            root_cert,
            redactor: conn.secrets.redactor(),
        })
    }

    /// `Connection "c" (MySQL at host:port, database "db")`, for connect errors.
    pub fn server(&self) -> String {
        format!(
            "Connection \"{}\" (MySQL at {}:{}, database \"{}\")",
            self.connection, self.host, self.port, self.database
        )
    }
}

fn ssl_mode(mode: SslMode) -> MySqlSslMode {
    match mode {
        SslMode::Disable => MySqlSslMode::Disabled,
        SslMode::Prefer => MySqlSslMode::Preferred,
        SslMode::Require => MySqlSslMode::Required,
        SslMode::VerifyCa => MySqlSslMode::VerifyCa,
        SslMode::VerifyFull => MySqlSslMode::VerifyIdentity,
    }
}

#[cfg(test)]
mod tests {
    use synqx_api::ConnectionSpec;
    use synqx_api::SecretValue;
    use synqx_api::connection::MysqlConnection;

    use super::*;
    use crate::secrets::Secrets;

    fn value(v: &str) -> SecretValue {
        SecretValue {
            value: Some(v.into()),
            ..Default::default()
        }
    }

    #[test]
    fn spec_fields_become_options_and_empty_fields_are_refused() {
        let secrets = Secrets::default();
        let mut spec = ConnectionSpec {
            mysql: Some(MysqlConnection {
                host: " db.internal ".into(),
                port: None,
                database: "shop".into(),
                user: value("app"),
                password: Some(value("pw")),
                ssl_mode: None,
                ssl_root_cert: None,
            }),
            ..Default::default()
        };
        let conn = ConnectionRef {
            name: "orders-db",
            spec: &spec,
            base_dir: ".".into(),
            secrets: &secrets,
        };
        let settings = MysqlConfig::new(&conn).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(settings.port, 3306);
        assert_eq!(settings.options.get_host(), "db.internal");
        assert_eq!(settings.options.get_username(), "app");
        assert_eq!(settings.options.get_database(), Some("shop"));
        // TLS unless the Connection says otherwise.
        assert!(matches!(
            settings.options.get_ssl_mode(),
            MySqlSslMode::Required
        ));
        assert_eq!(settings.ssl_mode, SslMode::Require);
        assert_eq!(
            settings.server(),
            "Connection \"orders-db\" (MySQL at db.internal:3306, database \"shop\")"
        );

        if let Some(m) = spec.mysql.as_mut() {
            m.database = " ".into();
        }
        let conn = ConnectionRef {
            name: "orders-db",
            spec: &spec,
            base_dir: ".".into(),
            secrets: &secrets,
        };
        let err = MysqlConfig::new(&conn).err().map(|e| e.to_string());
        assert_eq!(
            err.as_deref(),
            Some("Connection \"orders-db\": mysql.database is empty")
        );
    }
}
