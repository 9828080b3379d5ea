//! Reading the files an FQN selects below the connection's root: this lists and opens them;
//! `formats::read` does the rest, as for every file store.

use std::path::PathBuf;

use async_trait::async_trait;

use super::config::FilesystemConfig;
use super::connect::{DirOpener, list};
use crate::connectors::formats::Selection;
use crate::connectors::formats::read::{self, task_failed};
use crate::engine::{ReadRequest, SchemaStream, Source};
use crate::error::Result;

/// Reads files below a directory.
pub struct FilesystemSource {
    pub(super) settings: FilesystemConfig,
}

#[async_trait]
impl Source for FilesystemSource {
    async fn read(&self, request: &ReadRequest) -> Result<SchemaStream> {
        read(self.settings.root.clone(), request).await
    }
}

async fn read(root: PathBuf, request: &ReadRequest) -> Result<SchemaStream> {
    let request = request.clone();
    let prepared = tokio::task::spawn_blocking(move || {
        let selection = Selection::parse(&request.spec.asset.fqn)?;
        let (files, explicit) = list(&root, &selection)?;
        let location = root.display().to_string();
        let opener = DirOpener { root };
        read::prepare(opener, &selection, files, explicit, &location, &request)
    })
    .await
    .map_err(task_failed)??;
    Ok(read::stream(prepared))
}
