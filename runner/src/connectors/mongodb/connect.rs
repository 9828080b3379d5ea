//! Connecting to MongoDB and what its errors mean. The driver connects lazily, so every
//! operation can be the one that fails to authenticate; messages name the Connection and
//! collection and never carry the URI's credentials.

use std::time::Duration;

use mongodb::error::ErrorKind;
use mongodb::options::ClientOptions;
use mongodb::{Client, Database};

use super::config::MongodbConfig;
use crate::check::CheckReason;
use crate::error::{Error, Result};

/// Longest wait to find a server.
pub const SERVER_TIMEOUT: Duration = Duration::from_secs(10);

/// The Connection's database.
pub async fn connect(settings: &MongodbConfig) -> Result<Database> {
    let mut options = ClientOptions::parse(&settings.uri)
        .await
        .map_err(|e| failure(settings, &settings.at(), "parsing the URI of", e))?;
    // The URI's own timeouts win; without them, a missing server is reported in seconds.
    options
        .server_selection_timeout
        .get_or_insert(SERVER_TIMEOUT);
    options.connect_timeout.get_or_insert(SERVER_TIMEOUT);
    options.app_name = Some("synqx".to_string());
    let client = Client::with_options(options)
        .map_err(|e| failure(settings, &settings.at(), "opening", e))?;
    Ok(client.database(&settings.database))
}

/// What a MongoDB error means for `synqx check`.
pub fn reason(e: &mongodb::error::Error) -> CheckReason {
    let text = e.to_string().to_lowercase();
    match e.kind.as_ref() {
        ErrorKind::Authentication { .. } => CheckReason::Unauthorized,
        ErrorKind::Command(c) if matches!(c.code, 13 | 18) => CheckReason::Unauthorized,
        ErrorKind::ServerSelection { .. } | ErrorKind::Io(_) | ErrorKind::DnsResolve { .. } => {
            CheckReason::Unreachable
        }
        // FerretDB passes the login on to PostgreSQL and reports its refusal as a plain error.
        _ if text.contains("password authentication failed")
            || text.contains("authentication failed") =>
        {
            CheckReason::Unauthorized
        }
        _ => CheckReason::Invalid,
    }
}

/// A MongoDB error as the step's error: where, what was being done, and what to check.
pub fn failure(settings: &MongodbConfig, at: &str, doing: &str, e: mongodb::error::Error) -> Error {
    let hint = match reason(&e) {
        CheckReason::Unauthorized => " (check the user and password in the Connection's uri)",
        CheckReason::Unreachable => " (is the server running, and reachable from here?)",
        _ => "",
    };
    let detail = settings
        .redactor
        .redact(format!("{doing} MongoDB: {}{hint}", first_line(&e)));
    Error::database_detail(at, detail, e)
}

/// The driver's message without FerretDB's stack of source locations.
fn first_line(e: &mongodb::error::Error) -> String {
    let text = e.to_string();
    let text = text
        .split(", full error:")
        .next()
        .unwrap_or(&text)
        .to_string();
    // FerretDB prefixes errors with `[file.go:123 func] ` frames.
    let mut rest = text.as_str();
    while let Some(stripped) = rest
        .strip_prefix('[')
        .and_then(|r| r.split_once("] "))
        .map(|(_, r)| r)
    {
        rest = stripped;
    }
    rest.to_string()
}
