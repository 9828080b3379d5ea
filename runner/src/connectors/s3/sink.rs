//! Writing objects. `formats::parts` encodes, rotates and counts; this stages every object
//! under a hidden temporary prefix and commits by copying, because S3 has no rename:
//!
//! - A folder's parts are uploaded as `<parent>/.<folder>.synqx-tmp-<id>/part-<id>-NNNNN.<ext>`
//!   and a single object as `<parent>/.<name>.synqx-tmp-<id>`: hidden names, which readers of
//!   the parent folder and globs skip, like the filesystem connector's temporaries.
//! - At the commit each is copied to its final key, then the temporaries are deleted. An
//!   `overwrite` of a folder lists the objects there first and deletes them only after every
//!   new object is in place; a single key is replaced by its copy in one step.
//! - A failed or dropped write aborts its multipart uploads and deletes its temporaries; the
//!   old objects are untouched. A copy that fails at the commit deletes the copies already
//!   made (their part names are new), so the folder is as it was.
//!
//! Appending to an existing CSV or JSONL object rewrites it (old content, then the new rows)
//! into the new object, as for a local file; a Parquet object cannot be appended to.

use std::io::Write;

use async_trait::async_trait;
use futures::StreamExt;
use object_store::ObjectStoreExt;
use object_store::path::Path;
use synqx_api::pipeline::WriteMode;
use tokio::runtime::Handle;

use super::connect::Bucket;
use super::source::{ObjectOpener, list_below};
use super::upload::Upload;
use crate::connectors::formats::Selection;
use crate::connectors::formats::parts::{self, PartStore, PartsTarget, write_id};
use crate::connectors::formats::read::{Listed, task_failed};
use crate::engine::{SchemaStream, Sink, WriteOutcome, WriteRequest};
use crate::error::{Error, Result};

/// Writes objects into a bucket.
pub struct S3Sink {
    pub(super) bucket: Bucket,
}

#[async_trait]
impl Sink for S3Sink {
    async fn write(&self, request: &WriteRequest, input: SchemaStream) -> Result<WriteOutcome> {
        write(&self.bucket, request, input).await
    }
}

async fn write(
    bucket: &Bucket,
    request: &WriteRequest,
    input: SchemaStream,
) -> Result<WriteOutcome> {
    let target = PartsTarget::resolve(&request.spec)?;
    let existing = existing(bucket, &target).await?;
    let id = write_id();
    let store = ObjectParts::new(bucket.clone(), target.clone(), &id, &existing)?;
    let names: Vec<String> = existing.into_iter().map(|f| f.name).collect();
    let schema = input.schema.clone();
    let ((mut store, written), fed) = parts::pump(input, &request.counters, move |rx| {
        let mut store = store;
        let written = parts::run(target, &id, schema, &mut store, &names, rx);
        (store, written)
    })
    .await?;
    match fed.and(written) {
        // Spawned so that a commit, once started, runs to its end even if this future is
        // dropped, as the renames of a local commit do.
        Ok(outcome) => tokio::spawn(store.commit(outcome))
            .await
            .map_err(task_failed)?,
        Err(e) => {
            store.discard().await;
            Err(e)
        }
    }
}

/// The objects the write builds on: the folder's objects for an append to a folder, the
/// object itself when a single key exists and is not empty.
async fn existing(bucket: &Bucket, target: &PartsTarget) -> Result<Vec<Listed>> {
    if target.folder {
        if target.mode != WriteMode::Append {
            return Ok(Vec::new());
        }
        let folder = Selection::Folder(format!("{}/", target.relative));
        return list_below(bucket, &folder).await;
    }
    match bucket.store.head(&bucket.key(&target.relative)?).await {
        Ok(meta) if meta.size > 0 => Ok(vec![Listed {
            name: target.relative.clone(),
            modified: meta.last_modified.into(),
            size: meta.size,
        }]),
        Ok(_) | Err(object_store::Error::NotFound { .. }) => Ok(Vec::new()),
        Err(e) => Err(bucket.fail("reading", &target.relative, e)),
    }
}

/// An object being written: its upload, temporary key and final key.
pub(super) struct StagedObject {
    upload: Upload,
    temporary: Path,
    destination: Path,
}

/// The staging area of one write. Dropped without a commit or discard (the write's future
/// was dropped), it cleans up in a task of its own.
struct ObjectParts {
    opener: ObjectOpener,
    bucket: Bucket,
    handle: Handle,
    target: PartsTarget,
    /// `.<name>.synqx-tmp-<id>` next to the target, relative to the prefix.
    temporary: String,
    /// Every temporary key created, for the cleanup.
    temps: Vec<Path>,
    /// Uploads not finished yet.
    uploads: Vec<Upload>,
    /// Finished objects: temporary key, final key.
    staged: Vec<(Path, Path)>,
}

impl ObjectParts {
    fn new(bucket: Bucket, target: PartsTarget, id: &str, existing: &[Listed]) -> Result<Self> {
        let opener = ObjectOpener::new(bucket.clone(), existing)?;
        let handle = opener.handle.clone();
        let (parent, name) = match target.relative.rsplit_once('/') {
            Some((parent, name)) => (format!("{parent}/"), name),
            None => (String::new(), target.relative.as_str()),
        };
        Ok(Self {
            temporary: format!("{parent}.{name}.synqx-tmp-{id}"),
            opener,
            bucket,
            handle,
            target,
            temps: Vec::new(),
            uploads: Vec::new(),
            staged: Vec::new(),
        })
    }

    /// Makes the write visible. On error the destination is as it was, and the temporaries
    /// are gone.
    async fn commit(mut self, outcome: WriteOutcome) -> Result<WriteOutcome> {
        let staged = std::mem::take(&mut self.staged);
        if staged.is_empty() {
            self.discard().await;
            return Ok(outcome);
        }
        let folder = self.target.relative.clone();
        let old = if self.target.folder && self.target.mode == WriteMode::Overwrite {
            self.old_objects(&folder).await?
        } else {
            Vec::new()
        };
        let mut copied = Vec::with_capacity(staged.len());
        for (temporary, destination) in &staged {
            if let Err(e) = self.bucket.store.copy(temporary, destination).await {
                if self.target.folder {
                    delete(&self.bucket, copied).await;
                }
                self.discard().await;
                let name = self.bucket.relative(destination).unwrap_or_default();
                return Err(self.bucket.fail("committing", &name, e));
            }
            copied.push(destination.clone());
        }
        // Old objects go only now that every new one is in place.
        let mut failed = 0;
        let mut first_error = None;
        let mut results = self.bucket.store.delete_stream(paths(old));
        while let Some(result) = results.next().await {
            if let Err(e) = result {
                failed += 1;
                first_error.get_or_insert(e);
            }
        }
        self.discard().await;
        match first_error {
            None => Ok(outcome),
            Some(e) => Err(Error::io(
                format!(
                    "Connection \"{}\": overwriting {}: the new objects are in place, but {failed} old object(s) could not be deleted",
                    self.bucket.connection,
                    self.bucket.url(&format!("{folder}/"))
                ),
                std::io::Error::other(self.bucket.describe(&e)),
            )),
        }
    }

    /// Every object in the folder an overwrite replaces, hidden ones included.
    async fn old_objects(&self, folder: &str) -> Result<Vec<Path>> {
        let prefix = self.bucket.key(folder)?;
        let mut listing = self.bucket.store.list(Some(&prefix));
        let mut old = Vec::new();
        while let Some(meta) = listing.next().await {
            let meta = meta.map_err(|e| self.bucket.fail("listing", &format!("{folder}/"), e))?;
            old.push(meta.location);
        }
        Ok(old)
    }

    /// Aborts unfinished uploads and deletes every temporary object.
    async fn discard(&mut self) {
        let (uploads, temps) = (
            std::mem::take(&mut self.uploads),
            std::mem::take(&mut self.temps),
        );
        cleanup(self.bucket.clone(), uploads, temps).await;
    }
}

async fn cleanup(bucket: Bucket, uploads: Vec<Upload>, temps: Vec<Path>) {
    for upload in uploads {
        upload.abort().await;
    }
    delete(&bucket, temps).await;
}

fn paths(keys: Vec<Path>) -> futures::stream::BoxStream<'static, object_store::Result<Path>> {
    futures::stream::iter(keys.into_iter().map(Ok)).boxed()
}

/// Deletes objects, best effort: what remains is hidden (temporaries) or was never visible.
async fn delete(bucket: &Bucket, keys: Vec<Path>) {
    if keys.is_empty() {
        return;
    }
    let mut results = bucket.store.delete_stream(paths(keys));
    while results.next().await.is_some() {}
}

impl Drop for ObjectParts {
    fn drop(&mut self) {
        if self.uploads.is_empty() && self.temps.is_empty() {
            return;
        }
        let (uploads, temps) = (
            std::mem::take(&mut self.uploads),
            std::mem::take(&mut self.temps),
        );
        drop(
            self.handle
                .spawn(cleanup(self.bucket.clone(), uploads, temps)),
        );
    }
}

impl PartStore for ObjectParts {
    type Opener = ObjectOpener;
    type Open = StagedObject;

    fn opener(&self) -> &ObjectOpener {
        &self.opener
    }

    fn create(&mut self, destination: &str) -> Result<(Box<dyn Write + Send>, StagedObject)> {
        let temporary = if self.target.folder {
            let file = destination.rsplit('/').next().unwrap_or(destination);
            format!("{}/{file}", self.temporary)
        } else {
            self.temporary.clone()
        };
        let key = self.bucket.key(&temporary)?;
        let upload = Upload::new(
            self.bucket.clone(),
            self.handle.clone(),
            key.clone(),
            temporary,
        );
        self.temps.push(key.clone());
        self.uploads.push(upload.clone());
        let open = StagedObject {
            upload: upload.clone(),
            temporary: key,
            destination: self.bucket.key(destination)?,
        };
        Ok((Box::new(upload), open))
    }

    fn close(&mut self, open: StagedObject) -> Result<u64> {
        let size = open.upload.finish()?;
        self.uploads.retain(|u| !u.same(&open.upload));
        self.staged.push((open.temporary, open.destination));
        Ok(size)
    }
}
