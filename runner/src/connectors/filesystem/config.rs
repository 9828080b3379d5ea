//! The Connection's `filesystem` block: the directory assets are below. Pure.

use std::path::PathBuf;

use crate::connectors::ConnectionRef;
use crate::error::Result;

/// A directory of assets.
#[derive(Clone, Debug)]
pub struct FilesystemConfig {
    /// Name of the Connection, for messages.
    pub connection: String,
    /// `filesystem.path`, resolved against the directory relative paths start at.
    pub root: PathBuf,
}

impl FilesystemConfig {
    pub fn new(conn: &ConnectionRef<'_>) -> Result<Self> {
        let spec = conn.block(conn.spec.filesystem.as_ref())?;
        let path = conn.required("filesystem.path", &spec.path)?;
        Ok(Self {
            connection: conn.name.to_string(),
            root: conn.path(path),
        })
    }
}
