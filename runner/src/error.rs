//! Errors of the data plane. Every message names what failed and where (file, row, column,
//! step, connection), and never carries a credential.
//!
//! Each variant keeps the error it came from. Most expose it as their `source()`; the error
//! of a database, an object store or a remote service is kept in the variant but not chained,
//! because its text is what the redactor removed credentials from
//! ([`crate::secrets::Redactor`]): the message shows the redacted `detail`, and code that needs
//! the driver's error asks [`Error::driver_error`].

use crate::withheld::withhold;
use arrow::error::ArrowError;
use datafusion::common::DataFusionError;

pub use crate::bad_row::BadRow;

/// An error while reading, transforming or writing data.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A file or directory operation failed.
    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },
    /// Arrow could not decode, convert or encode data.
    #[error("{context}: {source}")]
    Arrow {
        context: String,
        #[source]
        source: ArrowError,
    },
    /// A row that cannot be read, converted or written: its message names the location, column
    /// and problem; the value is kept apart for the rejected file ([`BadRow`]).
    #[error("{0}")]
    BadRow(Box<BadRow>),
    /// A database, an object store or a remote service (an HTTP API, MongoDB, Redis) reported
    /// an error. `detail` is what it said, without
    /// credentials and with what to do where that is known; `driver` is the driver's error
    /// (`None` when SynqX itself found the answer wrong, such as a malformed COPY stream),
    /// deliberately not the error's `source()`.
    #[error("{context}: {detail}")]
    Database {
        context: String,
        detail: String,
        driver: Option<Box<DriverError>>,
    },
    /// The configuration cannot work (a missing secret, an unsupported option, a bad FQN).
    #[error("{0}")]
    Config(String),
    /// A sealed value or a vault keyring could not be opened: the vault's error names the
    /// binding or the keyring and what to do.
    #[error(transparent)]
    Vault(#[from] synqx_api::vault::VaultError),
    /// An `s3` block cannot work as written, or its client cannot be built from it.
    #[error(transparent)]
    S3Settings(#[from] synqx_s3::SettingsError),
    #[error(transparent)]
    S3Client(#[from] synqx_s3::ClientError),
    /// A transform failed to plan or run. `source` is DataFusion's error, when it had one.
    #[error("{message}")]
    Transform {
        message: String,
        #[source]
        source: Option<DataFusionError>,
    },
    /// Documents after a JSON source's sample disagreed with the schema inferred from it: the
    /// read is to run again with `columns` (widened or added), see `connectors::json_widen`.
    #[error("{message}")]
    Widened {
        message: String,
        columns: std::collections::BTreeMap<String, String>,
    },
    /// A step's load committed, but the rows it rejected could not be kept where
    /// `sync.rejects` says (`place`). The step fails, so that someone looks before its pod and
    /// the rejected file `file` go.
    #[error(
        "the load committed, but its rejected rows could not be kept in {place}: {source}; they are in the rejected file {} while it lasts: fix sync.rejects and run again (the watermark was not advanced)",
        file.display()
    )]
    RejectsNotKept {
        place: String,
        file: std::path::PathBuf,
        #[source]
        source: Box<Error>,
    },
    /// The step was cancelled (Ctrl-C or timeout) before it committed.
    #[error("cancelled: {0}")]
    Cancelled(String),
    /// An invariant of SynqX's own code did not hold: a defect, not a problem of the data or
    /// the configuration, so the message says to report it rather than what to change.
    #[error(
        "{0} (a defect of SynqX, not of the data or the configuration: please report it with this message)"
    )]
    Defect(String),
    /// A task of the engine panicked or was aborted: a defect of SynqX, not of the data or the
    /// configuration.
    #[error("{context} failed: {source}")]
    Internal {
        context: String,
        #[source]
        source: tokio::task::JoinError,
    },
}

/// The error of a database driver or object store client, kept by [`Error::Database`].
#[derive(Debug, thiserror::Error)]
pub enum DriverError {
    #[error(transparent)]
    Sqlx(#[from] sqlx::Error),
    #[error(transparent)]
    Tds(#[from] tiberius::error::Error),
    #[error(transparent)]
    ObjectStore(#[from] object_store::Error),
    #[error(transparent)]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error(transparent)]
    Http(#[from] reqwest::Error),
    #[error(transparent)]
    Mongo(#[from] mongodb::error::Error),
    #[error(transparent)]
    Redis(#[from] redis::RedisError),
    /// A failed exchange with a warehouse's HTTP API (Snowflake, BigQuery), its text redacted.
    #[error(transparent)]
    Api(#[from] crate::connectors::http_api::Failure),
}

impl From<BadRow> for Error {
    fn from(bad: BadRow) -> Self {
        Self::BadRow(Box::new(bad))
    }
}

/// Shorthand for data-plane results.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// An I/O error with what was being done.
    pub fn io(context: impl Into<String>, source: std::io::Error) -> Self {
        Self::Io {
            context: context.into(),
            source,
        }
    }

    /// An Arrow error with what was being done.
    pub fn arrow(context: impl Into<String>, source: ArrowError) -> Self {
        Self::Arrow {
            context: context.into(),
            source,
        }
    }

    /// A bad row at `at` whose problem is worded without the row's data: a limit of a block,
    /// a batch or a file, not one value.
    pub fn bad_row(at: impl Into<String>, problem: impl Into<String>) -> Self {
        Self::BadRow(Box::new(BadRow::new(at, problem)))
    }

    /// A driver's error with what was being done; its text, with the row values a server
    /// quoted withheld ([`withhold`]), is the detail. Use
    /// [`Error::database_detail`] where the text can carry a credential or needs a hint.
    pub fn database(context: impl Into<String>, source: impl Into<DriverError>) -> Self {
        let source = source.into();
        Self::Database {
            context: context.into(),
            detail: withhold(&source.to_string()),
            driver: Some(Box::new(source)),
        }
    }

    /// A driver's error with what was being done and the text the user reads (redacted, with
    /// what to do); the row values a server quoted in it are withheld ([`withhold`]).
    pub fn database_detail(
        context: impl Into<String>,
        detail: impl Into<String>,
        source: impl Into<DriverError>,
    ) -> Self {
        Self::Database {
            context: context.into(),
            detail: withhold(&detail.into()),
            driver: Some(Box::new(source.into())),
        }
    }

    /// A database answer SynqX found wrong, with no driver error behind it.
    pub fn protocol(context: impl Into<String>, detail: impl Into<String>) -> Self {
        Self::Database {
            context: context.into(),
            detail: detail.into(),
            driver: None,
        }
    }

    /// A transform error SynqX found itself.
    pub fn transform(message: impl Into<String>) -> Self {
        Self::Transform {
            message: message.into(),
            source: None,
        }
    }

    /// A task that panicked or was aborted; `context` names it (`the source task of step "x"`).
    pub fn internal(context: impl Into<String>, source: tokio::task::JoinError) -> Self {
        Self::Internal {
            context: context.into(),
            source,
        }
    }

    /// The driver's error behind a [`Error::Database`].
    pub fn driver_error(&self) -> Option<&DriverError> {
        match self {
            Self::Database { driver, .. } => driver.as_deref(),
            _ => None,
        }
    }

    /// The same error with its detail changed (a hint added, a message reworded).
    pub fn map_detail(self, f: impl FnOnce(String) -> String) -> Self {
        match self {
            Self::Database {
                context,
                detail,
                driver,
            } => Self::Database {
                context,
                detail: f(detail),
                driver,
            },
            other => other,
        }
    }
}

/// Adds context to foreign errors.
pub trait Context<T> {
    /// Wraps the error with a description of what was being done.
    fn context(self, context: impl FnOnce() -> String) -> Result<T>;
}

impl<T> Context<T> for std::result::Result<T, std::io::Error> {
    fn context(self, context: impl FnOnce() -> String) -> Result<T> {
        self.map_err(|e| Error::io(context(), e))
    }
}

impl<T> Context<T> for std::result::Result<T, ArrowError> {
    fn context(self, context: impl FnOnce() -> String) -> Result<T> {
        self.map_err(|e| Error::arrow(context(), e))
    }
}

impl<T> Context<T> for std::result::Result<T, parquet::errors::ParquetError> {
    fn context(self, context: impl FnOnce() -> String) -> Result<T> {
        self.map_err(|e| Error::arrow(context(), ArrowError::ExternalError(Box::new(e))))
    }
}

impl<T> Context<T> for std::result::Result<T, sqlx::Error> {
    fn context(self, context: impl FnOnce() -> String) -> Result<T> {
        self.map_err(|e| Error::database(context(), e))
    }
}

#[cfg(test)]
mod tests {
    use std::error::Error as _;

    use super::*;

    #[test]
    fn database_errors_keep_the_driver_error_out_of_the_message_chain() {
        let e = Error::database_detail(
            "Connection \"db\": connecting",
            "password authentication failed for ***",
            sqlx::Error::Protocol("password authentication failed for hunter2".into()),
        );
        assert_eq!(
            e.to_string(),
            "Connection \"db\": connecting: password authentication failed for ***"
        );
        assert!(e.source().is_none(), "the unredacted text would be printed");
        assert!(matches!(
            e.driver_error(),
            Some(DriverError::Sqlx(sqlx::Error::Protocol(_)))
        ));
        let hinted = e.map_detail(|d| format!("{d}; check the Secret"));
        assert!(
            hinted.to_string().ends_with("; check the Secret"),
            "{hinted}"
        );
    }

    #[tokio::test]
    async fn a_failed_task_is_internal_and_keeps_its_join_error() {
        let join = tokio::spawn(async { panic!("boom") }).await.unwrap_err();
        let e = Error::internal("the source task of step \"load\"", join);
        assert!(
            e.to_string()
                .starts_with("the source task of step \"load\" failed: task"),
            "{e}"
        );
        assert!(e.source().is_some());
    }
}
