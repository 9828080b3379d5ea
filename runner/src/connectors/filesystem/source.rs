//! Reading the files an FQN selects below the connection's root: this lists and opens them;
//! `formats::read` does the rest, as for every file store.

use std::fs::File;
use std::io::Read;
use std::path::PathBuf;

use super::listing::list;
use crate::connectors::formats::Selection;
use crate::connectors::formats::read::{self, task_failed};
use crate::connectors::formats::scan::Opener;
use crate::engine::{ReadRequest, SchemaStream};
use crate::error::{Context, Result};

/// Opens files below the connection's root.
pub(super) struct DirOpener {
    pub(super) root: PathBuf,
}

impl Opener for DirOpener {
    type Chunks = File;

    fn stream(&self, name: &str) -> Result<Box<dyn Read + Send>> {
        Ok(Box::new(self.chunks(name)?))
    }

    fn chunks(&self, name: &str) -> Result<File> {
        let path = self.root.join(name);
        File::open(&path).context(|| format!("opening {}", path.display()))
    }
}

pub(super) async fn read(root: PathBuf, request: &ReadRequest) -> Result<SchemaStream> {
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
