//! Opening a session: connect with retries of transient failures, then fix the session
//! settings every statement SynqX builds relies on.

use sqlx::Executor;
use sqlx::mysql::MySqlConnection;

use super::config::{CONNECT_TIMEOUT, MysqlConfig};
use crate::check::CheckReason;
use crate::connectors::retry::{RetrySchedule, log_connect_retry, retry, sqlx_transient};
use crate::connectors::sql::root_cert::{handshake_hint, is_certificate_failure};
use crate::connectors::sql::{NO_TLS, session};
use crate::error::{Error, Result};

/// The session SynqX sets, whatever the server's defaults:
/// - `STRICT_ALL_TABLES`: a value that does not fit its column is an error, never silently
///   truncated or zeroed.
/// - `NO_BACKSLASH_ESCAPES`: a backslash is an ordinary character in string literals, so the
///   literals built in `literal.rs` only double single quotes. (Without it, `\'` would end a
///   literal early; with it, the escaping is the SQL standard's and always right.)
/// - no `ANSI_QUOTES`: double quotes delimit strings, identifiers are quoted with backticks.
/// - `NO_ENGINE_SUBSTITUTION`: a table is never silently created with another engine, which
///   could lose the transactions every write mode relies on.
const SQL_MODE: &str = "SET SESSION sql_mode = 'STRICT_ALL_TABLES,NO_BACKSLASH_ESCAPES,NO_ENGINE_SUBSTITUTION,ERROR_FOR_DIVISION_BY_ZERO'";

/// Bytes of one INSERT statement at most, below `max_allowed_packet`: large enough that the
/// round trips do not matter, small enough that the server parses it without a spike.
const STATEMENT_BYTES: usize = 4 << 20;

/// An open connection and what was learned about its server.
pub struct Session {
    pub conn: MySqlConnection,
    /// The longest statement to send, below the server's `max_allowed_packet`.
    pub statement_bytes: usize,
    /// MariaDB (not Oracle MySQL): it stores JSON as checked longtext and has a `uuid` type
    /// from 10.7.
    pub mariadb: bool,
    /// Major and minor version of the server.
    pub version: (u32, u32),
}

impl Session {
    /// Whether the server has MariaDB's native `uuid` column type.
    pub fn has_uuid_type(&self) -> bool {
        self.mariadb && self.version >= (10, 7)
    }
}

/// Connects, retrying transient failures (a server restarting, a refused connection).
pub async fn connect(settings: &MysqlConfig) -> Result<Session> {
    let conn = retry(
        RetrySchedule::default(),
        sqlx_transient,
        |attempt, e, wait| log_connect_retry(&settings.server(), &e.to_string(), attempt, wait),
        || attempt(settings),
    )
    .await
    .map_err(|e| connect_error(settings, e))?;
    setup(settings, conn).await
}

/// One connect, bounded by [`CONNECT_TIMEOUT`]; a timeout is an I/O error, transient as the
/// others.
pub async fn attempt(settings: &MysqlConfig) -> sqlx::Result<MySqlConnection> {
    session::connect_within(&settings.options, CONNECT_TIMEOUT).await
}

async fn setup(settings: &MysqlConfig, mut conn: MySqlConnection) -> Result<Session> {
    let at = || format!("{}: setting up the session", settings.server());
    (&mut conn)
        .execute(SQL_MODE)
        .await
        .map_err(|e| database(settings, at(), e))?;
    let (packet, version): (u64, String) =
        sqlx::query_as("SELECT CAST(@@max_allowed_packet AS UNSIGNED), VERSION()")
            .fetch_one(&mut conn)
            .await
            .map_err(|e| database(settings, at(), e))?;
    // Room for the statement's header and the protocol's own bytes.
    let limit = usize::try_from(packet)
        .unwrap_or(usize::MAX)
        .saturating_sub(64 << 10);
    Ok(Session {
        conn,
        statement_bytes: limit.clamp(16 << 10, STATEMENT_BYTES),
        mariadb: version.to_ascii_lowercase().contains("mariadb"),
        version: parse_version(&version),
    })
}

fn parse_version(text: &str) -> (u32, u32) {
    let mut parts = text
        .split(|c: char| !c.is_ascii_digit())
        .filter(|p| !p.is_empty())
        .map(|p| p.parse::<u32>().unwrap_or(0));
    (parts.next().unwrap_or(0), parts.next().unwrap_or(0))
}

/// Why a connect failed and what to do, for an error or a check report: where, what the
/// server said, and what to check. The password is never part of it: sqlx's errors do not
/// carry it and the server is named by host, port and database only.
pub fn connect_failure(settings: &MysqlConfig, e: &sqlx::Error) -> (CheckReason, String) {
    let no_tls = format!(
        ": the server does not offer TLS, which mysql.sslMode: {} requires (require is the default): enable TLS on the server, or set mysql.sslMode: disable to send the login in plain text over a network you trust",
        settings.ssl_mode
    );
    let handshake = format!(
        ": check mysql.sslMode ({}) and the server's certificate: {}",
        settings.ssl_mode,
        handshake_hint("mysql", settings.root_cert.as_ref())
    );
    let hint = match mysql_code(e) {
        Some(1045) => ": check mysql.user and mysql.password",
        Some(1044) => ": the user has no access to this database; grant it or fix mysql.database",
        Some(1049) => ": the database does not exist; create it or fix mysql.database",
        _ => match e {
            sqlx::Error::Io(io) if io.kind() == std::io::ErrorKind::ConnectionRefused => {
                ": nothing accepts connections there; is the server running and mysql.port right?"
            }
            sqlx::Error::Io(io) if io.kind() == std::io::ErrorKind::TimedOut => {
                ": check mysql.host, mysql.port and the network between them"
            }
            sqlx::Error::Io(_) if is_name_failure(e) => ": check mysql.host",
            sqlx::Error::Tls(tls) if tls.to_string() == NO_TLS => no_tls.as_str(),
            sqlx::Error::Tls(_) => handshake.as_str(),
            _ if is_certificate_failure(e) => handshake.as_str(),
            _ => "",
        },
    };
    let reason = match mysql_code(e) {
        // Access denied: wrong password, no access to the database, a command denied.
        Some(1045 | 1044 | 1142 | 1227 | 1698) => CheckReason::Unauthorized,
        Some(1049) => CheckReason::NotFound,
        Some(_) => CheckReason::Invalid,
        None => match e {
            sqlx::Error::Tls(_) | sqlx::Error::Configuration(_) => CheckReason::Invalid,
            _ => CheckReason::Unreachable,
        },
    };
    (reason, format!("{}{hint}", settings.redactor.redact(e)))
}

/// A failed connect as an error naming the server.
fn connect_error(settings: &MysqlConfig, e: sqlx::Error) -> Error {
    let (_, detail) = connect_failure(settings, &e);
    Error::database_detail(format!("{}: connecting", settings.server()), detail, e)
}

/// A server or driver error about `context`, the credentials removed from its text.
pub(super) fn database(
    settings: &MysqlConfig,
    context: impl Into<String>,
    e: sqlx::Error,
) -> Error {
    Error::database_detail(context, settings.redactor.redact(&e), e)
}

fn is_name_failure(e: &sqlx::Error) -> bool {
    let text = e.to_string().to_ascii_lowercase();
    text.contains("lookup") || text.contains("name or service") || text.contains("resolve")
}

/// The MySQL error number of a server error (1045, 1146, …).
pub(super) fn mysql_code(e: &sqlx::Error) -> Option<u16> {
    e.as_database_error()
        .and_then(|d| d.try_downcast_ref::<sqlx::mysql::MySqlDatabaseError>())
        .map(|d| d.number())
}

#[cfg(test)]
mod tests {
    use synqx_api::ConnectionSpec;
    use synqx_api::SecretValue;
    use synqx_api::connection::MysqlConnection;

    use super::*;
    use crate::connectors::ConnectionRef;
    use crate::secrets::Secrets;

    #[test]
    fn connect_errors_name_the_server_and_never_the_password() {
        let secrets = Secrets::new([], [("SYNQX_SECRET_MY__PW".into(), "Sup3r-s3cret".into())]);
        let spec = ConnectionSpec {
            mysql: Some(MysqlConnection {
                host: "db".into(),
                database: "shop".into(),
                user: SecretValue::plain("app"),
                password: Some(SecretValue::from_secret("my", "pw")),
                ..Default::default()
            }),
            ..Default::default()
        };
        let config = MysqlConfig::new(&ConnectionRef {
            name: "orders",
            spec: &spec,
            base_dir: ".".into(),
            secrets: &secrets,
        })
        .unwrap_or_else(|e| panic!("{e}"));
        // A driver that echoed what it was given.
        let echoed = sqlx::Error::Protocol("handshake with password Sup3r-s3cret failed".into());
        let e = connect_error(&config, echoed);
        assert_eq!(
            e.to_string(),
            "Connection \"orders\" (MySQL at db:3306, database \"shop\"): connecting: encountered unexpected or invalid data: handshake with password *** failed"
        );
        assert!(e.driver_error().is_some());
    }

    #[test]
    fn versions_are_read_from_both_servers_strings() {
        assert_eq!(parse_version("10.11.19-MariaDB-0+deb12u1"), (10, 11));
        assert_eq!(parse_version("8.0.36"), (8, 0));
        assert_eq!(parse_version("garbage"), (0, 0));
    }
}
