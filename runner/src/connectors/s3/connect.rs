//! Reaching the bucket: the object_store client built from the config (`synqx_s3`), the keys of names
//! below the prefix, and the messages of failed requests, credentials removed.

use std::sync::Arc;

use object_store::ObjectStore;
use object_store::list::PaginatedListStore;
use object_store::path::Path;
pub(super) use synqx_s3::{Patience, xml_tag};

use super::config::S3Config;
use crate::error::{Error, Result};
use crate::secrets::Redactor;

/// A bucket and key prefix with its client: everything the source and sink share. Cheap to
/// clone; deliberately not `Debug`, so the client's credentials cannot be printed.
#[derive(Clone)]
pub(crate) struct Bucket {
    pub(super) store: Arc<dyn ObjectStore>,
    /// The same client, for listings of a bounded number of keys.
    pub(super) lister: Arc<dyn PaginatedListStore>,
    pub(super) connection: String,
    pub(super) bucket: String,
    /// Empty, or the connection's prefix with one trailing `/`.
    pub(super) prefix: String,
    /// Knows the credentials: every message passes through it.
    redactor: Redactor,
}

impl Bucket {
    /// The client of the config (no request is sent yet).
    pub(super) fn open(config: &S3Config, patience: Patience) -> Result<Self> {
        let store = Arc::new(synqx_s3::client(config, patience)?);
        Ok(Self {
            store: store.clone(),
            lister: store,
            connection: config.connection.clone(),
            bucket: config.bucket.clone(),
            prefix: config.prefix.clone(),
            redactor: config.redactor.clone(),
        })
    }

    /// The key of a name relative to the prefix.
    pub(super) fn key(&self, relative: &str) -> Result<Path> {
        let full = format!("{}{relative}", self.prefix);
        Path::parse(&full).map_err(|e| {
            Error::Config(format!(
                "Connection \"{}\": `{full}` is not a valid key of s3://{}: {e}",
                self.connection, self.bucket
            ))
        })
    }

    /// The name of a key relative to the prefix; `None` for keys outside it.
    pub(super) fn relative(&self, key: &Path) -> Option<String> {
        key.as_ref()
            .strip_prefix(self.prefix.as_str())
            .map(str::to_string)
    }

    /// `s3://bucket/prefix/relative`, for messages.
    pub(super) fn url(&self, relative: &str) -> String {
        format!("s3://{}/{}{relative}", self.bucket, self.prefix)
    }

    /// Where the connection's objects are, for messages.
    pub(super) fn location(&self) -> String {
        format!("{} (Connection \"{}\")", self.url(""), self.connection)
    }

    /// The reason of a failed request, without credentials.
    pub(super) fn describe(&self, e: &object_store::Error) -> String {
        synqx_s3::reason(e, &self.redactor)
    }

    /// The message of a failed request about `relative` (a key below the prefix).
    pub(super) fn message(&self, action: &str, relative: &str, e: &object_store::Error) -> String {
        format!(
            "Connection \"{}\": {action} {}: {}",
            self.connection,
            self.url(relative),
            self.describe(e)
        )
    }

    /// A failed request about `relative` as an error.
    pub(super) fn fail(&self, action: &str, relative: &str, e: object_store::Error) -> Error {
        let context = format!(
            "Connection \"{}\": {action} {}",
            self.connection,
            self.url(relative)
        );
        Error::database_detail(context, self.describe(&e), e)
    }
}
