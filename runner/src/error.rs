//! Errors of the data plane. Every message names what failed and where (file, row, column,
//! step, connection), and never carries a credential.

use arrow::error::ArrowError;

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
    /// A row that cannot be read or converted: names the location, column and value.
    #[error("{0}")]
    BadRow(String),
    /// The database reported an error.
    #[error("{context}: {message}")]
    Database { context: String, message: String },
    /// The configuration cannot work at run time (a missing secret, an unsupported option).
    #[error("{0}")]
    Config(String),
    /// A transform failed to plan or run.
    #[error("{0}")]
    Transform(String),
    /// The step was cancelled (Ctrl-C or timeout) before it committed.
    #[error("cancelled: {0}")]
    Cancelled(String),
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

    /// A database error with what was being done.
    pub fn database(context: impl Into<String>, message: impl std::fmt::Display) -> Self {
        Self::Database {
            context: context.into(),
            message: message.to_string(),
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
