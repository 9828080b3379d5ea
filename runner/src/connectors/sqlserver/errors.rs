//! What tiberius errors mean to the user: the server's error numbers and the I/O failures
//! classified, with what to do, the Connection and table named and the password scrubbed.

use std::io::ErrorKind;

use tiberius::error::Error as TdsError;

use super::config::SqlServerConfig;
use crate::check::CheckReason;
use crate::connectors::retry::io_transient;
use crate::error::Error;

/// What kind of failure an error is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// 18456: the login or its password is wrong.
    LoginFailed,
    /// 4060: the database does not exist or the login may not use it.
    NoDatabase,
    /// 208: the table (or another object) does not exist.
    MissingObject,
    /// 229, 230, 262, 300, 297: a permission is missing.
    PermissionDenied,
    /// A value does not convert or does not fit its column.
    Conversion,
    /// A key or constraint rejected a row.
    Constraint,
    /// The server could not be reached.
    Unreachable,
    /// The host name does not resolve.
    UnknownHost,
    /// TLS failed.
    Tls,
    /// The server is busy or failing over: worth retrying.
    Busy,
    Other,
}

/// The kind of a server error number.
pub fn kind_of_code(code: u32) -> Kind {
    match code {
        18456 | 18452 | 18470 | 18486 | 18487 | 18488 => Kind::LoginFailed,
        4060 | 911 | 916 | 4063 => Kind::NoDatabase,
        208 | 3701 | 15151 => Kind::MissingObject,
        229 | 230 | 262 | 297 | 300 | 1088 => Kind::PermissionDenied,
        8114 | 8115 | 245 | 241 | 242 | 8152 | 2628 | 220 | 232 | 248 | 8169 | 9455 | 4864
        | 4867 => Kind::Conversion,
        2627 | 2601 | 515 | 547 | 8672 => Kind::Constraint,
        // Azure SQL and failovers: database unavailable, service busy, resource limits.
        40613 | 40197 | 40501 | 49918 | 49919 | 49920 | 10928 | 10929 | 4221 | 1205 => Kind::Busy,
        _ => Kind::Other,
    }
}

/// The kind of any tiberius error.
pub fn kind_of(e: &TdsError) -> Kind {
    match e {
        TdsError::Server(token) => kind_of_code(token.code()),
        TdsError::Io { kind, message } => io_kind(*kind, message),
        TdsError::Tls(_) => Kind::Tls,
        TdsError::Conversion(_) | TdsError::BulkInput(_) | TdsError::Encoding(_) => {
            Kind::Conversion
        }
        _ => Kind::Other,
    }
}

fn io_kind(kind: ErrorKind, message: &str) -> Kind {
    let m = message.to_ascii_lowercase();
    if m.contains("failed to lookup address")
        || m.contains("name or service not known")
        || m.contains("nodename nor servname")
        || m.contains("no such host")
        || m.contains("temporary failure in name resolution")
    {
        Kind::UnknownHost
    } else if io_transient(&std::io::Error::from(kind)) {
        Kind::Unreachable
    } else {
        Kind::Other
    }
}

/// Whether a connect or statement failure may pass on its own.
pub fn is_transient(e: &TdsError) -> bool {
    matches!(kind_of(e), Kind::Unreachable | Kind::Busy)
}

/// A classified failure: its kind and the whole message (Connection named, password
/// scrubbed).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Failure {
    pub kind: Kind,
    /// The message without the `Connection "name": ` it starts with.
    pub detail: String,
    pub text: String,
}

impl Failure {
    /// A failed connect, with what to check.
    pub fn of_connect(settings: &SqlServerConfig, e: &TdsError) -> Self {
        Self::connect(settings, kind_of(e), &server_text(e))
    }

    /// A failed connect of a kind, with what the server or driver said.
    pub fn connect(settings: &SqlServerConfig, kind: Kind, said: &str) -> Self {
        let server = format!("{}:{}", settings.host, settings.port);
        let detail = match kind {
            Kind::LoginFailed => format!(
                "SQL Server at {server} rejected the login of user \"{}\" ({said}): the user or the password is wrong; check sqlserver.user and the password in {}",
                settings.user, settings.password_from
            ),
            Kind::NoDatabase => format!(
                "cannot open database \"{}\" on SQL Server at {server} ({said}): it does not exist, or login \"{}\" has no user in it; create it, fix sqlserver.database, or CREATE USER for the login there",
                settings.database, settings.user
            ),
            Kind::UnknownHost => format!(
                "the host \"{}\" of SQL Server is unknown ({said}): fix sqlserver.host",
                settings.host
            ),
            Kind::Unreachable => format!(
                "cannot reach SQL Server at {server} ({said}): is it running and listening there? check sqlserver.host, sqlserver.port and the network between them"
            ),
            Kind::Tls => format!(
                "the TLS handshake with SQL Server at {server} failed ({said}): for a self-signed certificate set trustServerCertificate: true, or encrypt: false where the network is trusted"
            ),
            _ => format!("cannot connect to SQL Server at {server}: {said}"),
        };
        let detail = settings.redact(detail);
        Self {
            kind,
            text: format!("{}: {detail}", settings.at()),
            detail,
        }
    }

    /// The reason a check reports for it.
    pub fn reason(&self) -> CheckReason {
        match self.kind {
            Kind::LoginFailed | Kind::PermissionDenied => CheckReason::Unauthorized,
            Kind::NoDatabase | Kind::MissingObject => CheckReason::NotFound,
            _ => CheckReason::Unreachable,
        }
    }
}

/// The server's own words, with its error number: `Invalid object name 'x'. (error 208)`.
pub fn server_text(e: &TdsError) -> String {
    match e {
        TdsError::Server(token) => format!("{} (error {})", token.message(), token.code()),
        TdsError::Io { message, .. } => message.clone(),
        other => other.to_string(),
    }
}

/// A failed statement on a table (or the step's SQL), with what to do. `doing` says what was
/// being done (`reading`, `bulk loading`, `statements[2]`).
pub fn statement_error(
    settings: &SqlServerConfig,
    table: Option<&str>,
    doing: &str,
    e: TdsError,
) -> Error {
    let (context, detail) =
        statement_message(settings, table, doing, kind_of(&e), &server_text(&e));
    Error::database_detail(context, detail, e)
}

/// The context and detail of a failed statement of a kind, with what the server or driver
/// said.
pub fn statement_message(
    settings: &SqlServerConfig,
    table: Option<&str>,
    doing: &str,
    kind: Kind,
    said: &str,
) -> (String, String) {
    let context = match table {
        Some(t) => format!("{}, table \"{t}\"", settings.at()),
        None => settings.at(),
    };
    let target = table.map_or("the object".to_string(), |t| format!("table \"{t}\""));
    let message = match kind {
        Kind::MissingObject => format!(
            "{doing}: {target} does not exist ({said}); create it, or fix the asset fqn (`table`, `schema.table` or `database.schema.table`)"
        ),
        Kind::PermissionDenied => format!(
            "{doing}: login \"{}\" lacks a permission on {target} ({said}); GRANT it (SELECT to read; INSERT, CREATE TABLE and ALTER on the schema to write)",
            settings.user
        ),
        Kind::Conversion => format!(
            "{doing}: a value does not fit its column ({said}); check the column types of {target} against the source, or cast in the source query"
        ),
        Kind::Constraint => {
            format!("{doing}: a row breaks a key or constraint of {target} ({said})")
        }
        Kind::LoginFailed
        | Kind::NoDatabase
        | Kind::Unreachable
        | Kind::UnknownHost
        | Kind::Tls => format!("{doing}: {}", Failure::connect(settings, kind, said).detail),
        Kind::Busy | Kind::Other => format!("{doing}: {said}"),
    };
    (context, settings.redact(message))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::connectors::sqlserver::config::tests::{settings_of, spec};

    /// The message of a failed statement of a kind.
    fn statement_failure(
        s: &SqlServerConfig,
        table: Option<&str>,
        doing: &str,
        kind: Kind,
        said: &str,
    ) -> String {
        let (context, detail) = statement_message(s, table, doing, kind, said);
        format!("{context}: {detail}")
    }

    fn io(kind: ErrorKind, message: &str) -> TdsError {
        TdsError::Io {
            kind,
            message: message.into(),
        }
    }

    #[test]
    fn server_error_numbers_are_classified() {
        let cases = [
            (18456, Kind::LoginFailed),
            (4060, Kind::NoDatabase),
            (208, Kind::MissingObject),
            (229, Kind::PermissionDenied),
            (230, Kind::PermissionDenied),
            (262, Kind::PermissionDenied),
            (300, Kind::PermissionDenied),
            (8114, Kind::Conversion),
            (245, Kind::Conversion),
            (8152, Kind::Conversion),
            (2627, Kind::Constraint),
            (40613, Kind::Busy),
            (102, Kind::Other),
        ];
        for (code, kind) in cases {
            assert_eq!(kind_of_code(code), kind, "{code}");
        }
    }

    #[test]
    fn io_failures_are_unreachable_or_unknown_hosts_and_only_those_retry() {
        let refused = io(
            ErrorKind::ConnectionRefused,
            "Connection refused (os error 111)",
        );
        assert_eq!(kind_of(&refused), Kind::Unreachable);
        assert!(is_transient(&refused));
        let unknown = io(
            ErrorKind::Other,
            "failed to lookup address information: Name or service not known",
        );
        assert_eq!(kind_of(&unknown), Kind::UnknownHost);
        assert!(!is_transient(&unknown));
        assert_eq!(kind_of(&TdsError::Tls("bad cert".into())), Kind::Tls);
        assert!(!is_transient(&TdsError::Tls("bad cert".into())));
        assert_eq!(
            kind_of(&TdsError::BulkInput(
                "Encoded string length 900 exceed column limit 450".into()
            )),
            Kind::Conversion
        );
        assert!(!is_transient(&TdsError::Protocol("bad packet".into())));
    }

    #[test]
    fn connect_failures_say_what_to_fix_and_never_carry_the_password() {
        let s = settings_of(&spec("Pa55-w0rd!")).unwrap();
        let refused = Failure::of_connect(
            &s,
            &io(
                ErrorKind::ConnectionRefused,
                "Connection refused (os error 111)",
            ),
        );
        assert_eq!(refused.reason(), CheckReason::Unreachable);
        assert_eq!(
            refused.text,
            "Connection \"mssql\": cannot reach SQL Server at db.example:1433 (Connection refused (os error 111)): is it running and listening there? check sqlserver.host, sqlserver.port and the network between them"
        );
        let unknown = Failure::of_connect(
            &s,
            &io(ErrorKind::Other, "failed to lookup address information"),
        );
        assert!(
            unknown
                .text
                .contains("the host \"db.example\" of SQL Server is unknown")
        );
        // A driver message that echoes the password (as a connection string would) is
        // scrubbed.
        let echoed = Failure::of_connect(
            &s,
            &TdsError::Protocol("login packet for etl/Pa55-w0rd! malformed".into()),
        );
        assert!(!echoed.text.contains("Pa55-w0rd!"), "{}", echoed.text);
        assert!(echoed.text.contains("etl/***"), "{}", echoed.text);
        let tls = Failure::of_connect(&s, &TdsError::Tls("UnknownIssuer".into()));
        assert!(
            tls.text.contains("trustServerCertificate: true"),
            "{}",
            tls.text
        );
        for f in [refused, unknown, echoed, tls] {
            assert!(!f.text.contains("Pa55-w0rd!"));
        }
    }

    #[test]
    fn statement_errors_name_the_connection_the_table_and_what_to_do() {
        let s = settings_of(&spec("pw-123456")).unwrap();
        let e = statement_error(
            &s,
            Some("dbo.orders"),
            "bulk loading",
            TdsError::BulkInput("invalid data type".into()),
        )
        .to_string();
        assert!(
            e.starts_with("Connection \"mssql\", table \"dbo.orders\": bulk loading: a value does not fit its column (BULK UPLOAD input failure: invalid data type)"),
            "{e}"
        );
        let e = statement_error(
            &s,
            None,
            "statements[1]",
            io(ErrorKind::ConnectionReset, "connection reset by peer"),
        )
        .to_string();
        assert!(
            e.starts_with("Connection \"mssql\": statements[1]: cannot reach SQL Server at db.example:1433 (connection reset by peer)"),
            "{e}"
        );
        let missing = statement_failure(
            &s,
            Some("dbo.nope"),
            "reading its columns",
            kind_of_code(208),
            "Invalid object name 'dbo.nope'. (error 208)",
        );
        assert_eq!(
            missing,
            "Connection \"mssql\", table \"dbo.nope\": reading its columns: table \"dbo.nope\" does not exist (Invalid object name 'dbo.nope'. (error 208)); create it, or fix the asset fqn (`table`, `schema.table` or `database.schema.table`)"
        );
        let denied = statement_failure(
            &s,
            Some("dbo.orders"),
            "bulk loading",
            kind_of_code(229),
            "The INSERT permission was denied on the object 'orders'. (error 229)",
        );
        assert!(
            denied.contains("login \"etl\" lacks a permission on table \"dbo.orders\""),
            "{denied}"
        );
        assert!(denied.contains("GRANT it"), "{denied}");
        let login = Failure::connect(
            &s,
            kind_of_code(18456),
            "Login failed for user 'etl'. (error 18456)",
        );
        assert_eq!(login.reason(), CheckReason::Unauthorized);
        assert!(login.text.contains("the user or the password is wrong; check sqlserver.user and the password in the plain value of sqlserver.password"), "{}", login.text);
        let db = Failure::connect(
            &s,
            kind_of_code(4060),
            "Cannot open database \"sales\" (error 4060)",
        );
        assert_eq!(db.reason(), CheckReason::NotFound);
        assert!(
            db.text.contains("cannot open database \"sales\""),
            "{}",
            db.text
        );
        // The server echoing the password back is scrubbed from statement errors too.
        let echoed = statement_failure(&s, None, "statements[0]", Kind::Other, "near 'pw-123456'");
        assert!(
            !echoed.contains("pw-123456") && echoed.contains("near '***'"),
            "{echoed}"
        );
    }
}
