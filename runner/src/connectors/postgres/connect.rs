//! Opening a connection, with retries of transient failures, and the messages of everything
//! that can go wrong while doing it or later.

use std::io::ErrorKind;
use std::time::Duration;

use sqlx::postgres::{PgConnection, PgDatabaseError};

use super::config::PostgresConfig;
use crate::check::CheckReason;
use crate::connectors::retry::{log_connect_retry, retry, sqlx_transient};
use crate::connectors::sql::root_cert::{handshake_hint, is_certificate_failure};
use crate::connectors::sql::{NO_TLS, session};
use crate::error::{Error, Result};
use crate::withheld::withhold_postgres_data_exception;

/// Longest wait for one connection attempt: the TCP connect, TLS and authentication.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(20);

/// A connection to the Connection's database, after up to `settings.retry.attempts`
/// attempts when the server is restarting or not reachable yet.
pub async fn connect(settings: &PostgresConfig) -> Result<PgConnection> {
    retry(
        settings.retry,
        sqlx_transient,
        |attempt, e, wait| log_connect_retry(&settings.at(), &settings.redact(e), attempt, wait),
        || attempt(settings),
    )
    .await
    .map_err(|e| {
        let (_, message) = connect_failure(settings, &e);
        Error::database_detail(settings.at(), message, e)
    })
}

/// One connect, bounded by [`CONNECT_TIMEOUT`]; a timeout is an I/O error, transient as the
/// others.
pub async fn attempt(settings: &PostgresConfig) -> sqlx::Result<PgConnection> {
    session::connect_within(&settings.options, CONNECT_TIMEOUT).await
}

/// Why a connect failed and what to do, for an error or a check report. Never contains the
/// password.
pub fn connect_failure(settings: &PostgresConfig, e: &sqlx::Error) -> (CheckReason, String) {
    let server = format!("{}:{}", settings.host, settings.port);
    let (reason, text) = match e {
        sqlx::Error::Database(db) => match db.code().as_deref() {
            Some("28P01") => (
                CheckReason::Unauthorized,
                format!(
                    "PostgreSQL at {server} rejected the password of user \"{}\" (28P01): the password in {} is wrong, or the user does not exist; fix the Secret or the user",
                    settings.user, settings.password_from
                ),
            ),
            Some("28000") => (
                CheckReason::Unauthorized,
                format!(
                    "PostgreSQL at {server} does not let user \"{}\" connect to database \"{}\" (28000): {}; allow it in pg_hba.conf or grant the role LOGIN",
                    settings.user,
                    settings.database,
                    db.message()
                ),
            ),
            Some("3D000") => (
                CheckReason::NotFound,
                format!(
                    "database \"{}\" does not exist on PostgreSQL at {server} (3D000): create it or fix postgres.database",
                    settings.database
                ),
            ),
            Some("42501") => (
                CheckReason::Unauthorized,
                format!(
                    "user \"{}\" may not connect to database \"{}\" on {server} (42501): {}; GRANT CONNECT ON DATABASE to it",
                    settings.user,
                    settings.database,
                    db.message()
                ),
            ),
            code => (
                CheckReason::Unreachable,
                format!(
                    "PostgreSQL at {server} refused the connection{}: {}",
                    code.map(|c| format!(" ({c})")).unwrap_or_default(),
                    db.message()
                ),
            ),
        },
        sqlx::Error::Io(io) if io.kind() == ErrorKind::ConnectionRefused => (
            CheckReason::Unreachable,
            format!(
                "cannot connect to PostgreSQL at {server}: connection refused; is the server running and listening on port {}?",
                settings.port
            ),
        ),
        sqlx::Error::Io(io) if io.kind() == ErrorKind::TimedOut => (
            CheckReason::Unreachable,
            format!(
                "cannot connect to PostgreSQL at {server}: {io}; check postgres.host, the port and any firewall between"
            ),
        ),
        sqlx::Error::Io(io) if is_name_resolution(io) => (
            CheckReason::Unreachable,
            format!(
                "cannot resolve host \"{}\" ({io}): fix postgres.host",
                settings.host
            ),
        ),
        // The Connection asks for what the server does not offer: only an edit fixes it.
        sqlx::Error::Tls(tls) if tls.to_string() == NO_TLS => (
            CheckReason::Invalid,
            format!(
                "PostgreSQL at {server} does not offer TLS, which postgres.sslMode: {} requires (require is the default): enable TLS on the server, or set postgres.sslMode: disable to send the login in plain text over a network you trust",
                settings.ssl_mode
            ),
        ),
        // Only an edit (the authority, the mode, the host) or a new server certificate fixes it.
        sqlx::Error::Io(io) if is_certificate_failure(e) => (
            CheckReason::Invalid,
            format!(
                "TLS with PostgreSQL at {server} failed: {io}; check postgres.sslMode ({}) and the server's certificate: {}",
                settings.ssl_mode,
                handshake_hint("postgres", settings.root_cert.as_ref())
            ),
        ),
        sqlx::Error::Tls(tls) => (
            CheckReason::Unreachable,
            format!(
                "TLS with PostgreSQL at {server} failed: {tls}; check postgres.sslMode ({}) and the server's certificate: {}",
                settings.ssl_mode,
                handshake_hint("postgres", settings.root_cert.as_ref())
            ),
        ),
        other => (
            CheckReason::Unreachable,
            format!("cannot connect to PostgreSQL at {server}: {other}"),
        ),
    };
    (reason, settings.redact(text))
}

/// Whether an I/O error is a failed host name lookup (the standard library reports these as
/// uncategorized errors, so only the text tells).
fn is_name_resolution(e: &std::io::Error) -> bool {
    let text = e.to_string().to_ascii_lowercase();
    ["lookup", "resolve", "name or service not known", "nodename"]
        .iter()
        .any(|needle| text.contains(needle))
}

/// A database error during work on a connection: the server's message with its SQLSTATE and
/// detail, the password scrubbed.
pub fn database(settings: &PostgresConfig, context: String, e: sqlx::Error) -> Error {
    Error::database_detail(context, settings.redact(server_message(&e)), e)
}

/// What the server said: message, SQLSTATE and detail, the values of a data exception
/// withheld (the rest are withheld with every driver error's text). The server's hints are left out: the
/// one it gives for a failed `DROP` recommends `CASCADE`, which would drop the user's views.
pub fn server_message(e: &sqlx::Error) -> String {
    match e {
        sqlx::Error::Database(db) => {
            let code = db.code().unwrap_or_default();
            let mut text = withhold_postgres_data_exception(&code, db.message());
            if !code.is_empty() {
                text.push_str(&format!(" ({code})"));
            }
            if let Some(detail) = db
                .try_downcast_ref::<PgDatabaseError>()
                .and_then(|pg| pg.detail())
            {
                text.push_str(&format!("; {detail}"));
            }
            text
        }
        other => other.to_string(),
    }
}

/// The SQLSTATE of a database error.
pub fn sqlstate(e: &sqlx::Error) -> Option<String> {
    e.as_database_error()
        .and_then(|d| d.code())
        .map(|c| c.into_owned())
}

#[cfg(test)]
mod tests {
    use synqx_api::connection::PostgresConnection;
    use synqx_api::{ConnectionSpec, SecretValue};

    use super::*;
    use crate::connectors::ConnectionRef;
    use crate::connectors::retry::RetrySchedule;
    use crate::secrets::Secrets;

    #[tokio::test]
    async fn a_connect_error_never_shows_the_password() {
        // A password that also appears in the host name, so that any echo of the host or the
        // options would carry it.
        let spec = ConnectionSpec {
            postgres: Some(PostgresConnection {
                host: "no-such-host-Hunter2pw.invalid".into(),
                database: "Hunter2pw".into(),
                user: SecretValue::plain("etl"),
                password: Some(SecretValue::plain("Hunter2pw")),
                ..Default::default()
            }),
            ..Default::default()
        };
        let secrets = Secrets::default();
        let mut settings = PostgresConfig::new(&ConnectionRef {
            name: "warehouse",
            spec: &spec,
            base_dir: ".".into(),
            secrets: &secrets,
        })
        .unwrap_or_else(|e| panic!("{e}"));
        settings.retry = RetrySchedule {
            attempts: 1,
            ..RetrySchedule::default()
        };
        let e = connect(&settings)
            .await
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(e.starts_with("Connection \"warehouse\": "), "{e}");
        assert!(!e.contains("Hunter2pw"), "{e}");
        assert!(e.contains("no-such-host-***.invalid"), "{e}");
        let (_, text) = connect_failure(
            &settings,
            &sqlx::Error::Configuration("password=Hunter2pw is bad".into()),
        );
        assert!(!text.contains("Hunter2pw"), "{text}");
    }

    /// A server that answers PostgreSQL's TLS request with "no" (as one started without
    /// `ssl = on` does): the default `sslMode` refuses to log in there, saying what to do.
    #[tokio::test]
    async fn the_default_ssl_mode_refuses_a_server_without_tls() {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        let port = listener.local_addr().map(|a| a.port()).unwrap_or_default();
        let server = tokio::spawn(async move {
            let (mut socket, _) = listener.accept().await?;
            let mut request = [0u8; 8];
            socket.read_exact(&mut request).await?;
            socket.write_all(b"N").await?;
            // Whatever a client sends after the refusal (a plain login) is read and dropped.
            let mut rest = Vec::new();
            let _ = tokio::time::timeout(
                std::time::Duration::from_millis(500),
                socket.read_to_end(&mut rest),
            )
            .await;
            Ok::<_, std::io::Error>((request, rest))
        });
        let spec = ConnectionSpec {
            postgres: Some(PostgresConnection {
                host: "127.0.0.1".into(),
                port: Some(port),
                database: "shop".into(),
                user: SecretValue::plain("etl"),
                password: Some(SecretValue::plain("Plain-text-pw")),
                ..Default::default()
            }),
            ..Default::default()
        };
        let secrets = Secrets::default();
        let settings = PostgresConfig::new(&ConnectionRef {
            name: "warehouse",
            spec: &spec,
            base_dir: ".".into(),
            secrets: &secrets,
        })
        .unwrap_or_else(|e| panic!("{e}"));
        let error = attempt(&settings)
            .await
            .err()
            .unwrap_or_else(|| panic!("connected"));
        let (reason, text) = connect_failure(&settings, &error);
        assert_eq!(reason, CheckReason::Invalid);
        assert_eq!(
            text,
            format!(
                "PostgreSQL at 127.0.0.1:{port} does not offer TLS, which postgres.sslMode: require requires (require is the default): enable TLS on the server, or set postgres.sslMode: disable to send the login in plain text over a network you trust"
            )
        );
        let (request, rest) = server
            .await
            .unwrap_or_else(|e| panic!("{e}"))
            .unwrap_or_else(|e| panic!("{e}"));
        // The SSLRequest: length 8, code 80877103.
        assert_eq!(request, [0, 0, 0, 8, 4, 210, 22, 47]);
        assert!(
            !String::from_utf8_lossy(&rest).contains("etl"),
            "nothing of the login was sent in plain text"
        );
    }
}
