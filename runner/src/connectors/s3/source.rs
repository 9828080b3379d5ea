//! Reading objects: the FQN's objects are listed below the prefix, then `formats::read` does
//! the rest on blocking threads, which reach S3 through the runtime's handle.
//!
//! CSV and JSONL are decoded straight from GET bodies, one network chunk at a time, so an
//! object is never held in memory whole. Parquet needs random access: inference reads only
//! the footer (the last 64 KiB in one ranged GET, more only for larger footers), and a read
//! streams the object into an anonymous temporary file (under `TMPDIR`) that Parquet then
//! reads like a local file. One object is spooled at a time and its file is gone when it is
//! read, so the disk needs room for the largest object. Every byte of the object is read
//! anyway (all columns are read), so spooling costs no extra transfer, and memory stays at
//! Parquet's own buffers however large the row groups.

use std::collections::HashMap;
use std::fs::File;
use std::io::{self, Cursor, Read};
use std::time::SystemTime;

use async_trait::async_trait;
use bytes::Bytes;
use futures::StreamExt;
use futures::stream::BoxStream;
use object_store::path::Path;
use object_store::{ObjectMeta, ObjectStoreExt};
use parquet::errors::ParquetError;
use parquet::file::reader::{ChunkReader, Length};
use tokio::runtime::Handle;

use super::connect::Bucket;
use crate::connectors::formats::Selection;
use crate::connectors::formats::read::{self, Listed, task_failed};
use crate::connectors::formats::scan::Opener;
use crate::engine::{ReadRequest, SchemaStream, Source};
use crate::error::{Context, Error, Result};

/// Bytes fetched from the end of a Parquet object to read its footer: enough for the
/// footers of most files in one request.
const FOOTER_PREFETCH: u64 = 64 * 1024;

/// Reads objects of a bucket.
pub struct S3Source {
    pub(super) bucket: Bucket,
}

#[async_trait]
impl Source for S3Source {
    async fn read(&self, request: &ReadRequest) -> Result<SchemaStream> {
        read(&self.bucket, request).await
    }
}

async fn read(bucket: &Bucket, request: &ReadRequest) -> Result<SchemaStream> {
    let selection = Selection::parse(&request.spec.asset.fqn)?;
    let (files, explicit) = list(bucket, &selection).await?;
    let opener = ObjectOpener::new(bucket.clone(), &files)?;
    let location = bucket.location();
    let request = request.clone();
    let prepared = tokio::task::spawn_blocking(move || {
        read::prepare(opener, &selection, files, explicit, &location, &request)
    })
    .await
    .map_err(task_failed)??;
    Ok(read::stream(prepared))
}

fn listed(name: String, meta: &ObjectMeta) -> Listed {
    Listed {
        name,
        modified: SystemTime::from(meta.last_modified),
        size: meta.size,
    }
}

/// The objects selected, sorted by key, and whether the FQN named a single object (whose
/// extension then does not have to match the format). A single name that is no object but
/// has objects below it is read as that folder, as a directory is for local files.
pub(super) async fn list(bucket: &Bucket, selection: &Selection) -> Result<(Vec<Listed>, bool)> {
    let Selection::File(name) = selection else {
        return Ok((list_below(bucket, selection).await?, false));
    };
    match bucket.store.head(&bucket.key(name)?).await {
        Ok(meta) => Ok((vec![listed(name.clone(), &meta)], true)),
        Err(object_store::Error::NotFound { .. }) => {
            let files = list_below(bucket, &Selection::Folder(format!("{name}/"))).await?;
            let single = files.is_empty();
            Ok((files, single))
        }
        Err(e) => Err(bucket.fail("reading", name, e)),
    }
}

/// Every object below the selection's base that it accepts, sorted by name.
pub(super) async fn list_below(bucket: &Bucket, selection: &Selection) -> Result<Vec<Listed>> {
    let base = selection.base();
    let prefix = bucket.key(base.trim_end_matches('/'))?;
    let prefix = (!prefix.as_ref().is_empty()).then_some(prefix);
    let mut objects = bucket.store.list(prefix.as_ref());
    let mut out = Vec::new();
    while let Some(meta) = objects.next().await {
        let meta = meta.map_err(|e| bucket.fail("listing", base, e))?;
        if let Some(name) = bucket.relative(&meta.location)
            && selection.accepts(&name)
        {
            out.push(listed(name, &meta));
        }
    }
    out.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(out)
}

/// Opens objects for the blocking readers of `formats`.
pub(super) struct ObjectOpener {
    bucket: Bucket,
    pub(super) handle: Handle,
    /// Sizes from the listing, so a footer read needs no HEAD request.
    sizes: HashMap<String, u64>,
}

impl ObjectOpener {
    /// Must be called on the runtime: the readers reach S3 through its handle.
    pub(super) fn new(bucket: Bucket, listed: &[Listed]) -> Result<Self> {
        let handle = Handle::try_current().map_err(|e| {
            Error::Config(format!(
                "Connection \"{}\": S3 needs the Tokio runtime: {e}",
                bucket.connection
            ))
        })?;
        let sizes = listed.iter().map(|f| (f.name.clone(), f.size)).collect();
        Ok(Self {
            bucket,
            handle,
            sizes,
        })
    }

    fn size(&self, name: &str, key: &Path) -> Result<u64> {
        if let Some(size) = self.sizes.get(name) {
            return Ok(*size);
        }
        let head = self.bucket.store.head(key);
        let meta = self
            .handle
            .block_on(head)
            .map_err(|e| self.bucket.fail("reading", name, e))?;
        Ok(meta.size)
    }
}

impl Opener for ObjectOpener {
    type Chunks = ObjectChunks;

    fn stream(&self, name: &str) -> Result<Box<dyn Read + Send>> {
        let key = self.bucket.key(name)?;
        let got = self
            .handle
            .block_on(self.bucket.store.get(&key))
            .map_err(|e| self.bucket.fail("reading", name, e))?;
        Ok(Box::new(Body {
            chunks: got.into_stream(),
            chunk: Bytes::new(),
            handle: self.handle.clone(),
            bucket: self.bucket.clone(),
            name: name.to_string(),
        }))
    }

    fn chunks(&self, name: &str) -> Result<ObjectChunks> {
        let mut file = tempfile::tempfile().context(|| {
            format!(
                "creating a temporary file to read {} into",
                self.bucket.url(name)
            )
        })?;
        // The body's errors already name the connection and object.
        io::copy(&mut self.stream(name)?, &mut file)
            .map_err(|e| Error::io(format!("spooling {name}"), e))?;
        Ok(ObjectChunks::Spooled(file))
    }

    fn footer(&self, name: &str) -> Result<ObjectChunks> {
        let key = self.bucket.key(name)?;
        let size = self.size(name, &key)?;
        let start = size.saturating_sub(FOOTER_PREFETCH);
        let tail = if size == 0 {
            Bytes::new()
        } else {
            self.handle
                .block_on(self.bucket.store.get_range(&key, start..size))
                .map_err(|e| self.bucket.fail("reading", name, e))?
        };
        Ok(ObjectChunks::Tail(Box::new(Tail {
            bucket: self.bucket.clone(),
            handle: self.handle.clone(),
            key,
            name: name.to_string(),
            size,
            start,
            tail,
        })))
    }
}

/// A GET body as a blocking reader: each `read` takes from the chunk that last arrived, and
/// waits for the next one only when it is used up.
struct Body {
    chunks: BoxStream<'static, object_store::Result<Bytes>>,
    chunk: Bytes,
    handle: Handle,
    bucket: Bucket,
    name: String,
}

impl Read for Body {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        while self.chunk.is_empty() {
            match self.handle.block_on(self.chunks.next()) {
                Some(Ok(bytes)) => self.chunk = bytes,
                Some(Err(e)) => {
                    return Err(io::Error::other(
                        self.bucket.message("reading", &self.name, &e),
                    ));
                }
                None => return Ok(0),
            }
        }
        let n = buf.len().min(self.chunk.len());
        buf[..n].copy_from_slice(&self.chunk.split_to(n));
        Ok(n)
    }
}

/// A Parquet object for random access.
pub(super) enum ObjectChunks {
    /// Only the end was fetched (for the footer); any other range is one ranged GET.
    Tail(Box<Tail>),
    /// The whole object, copied to a temporary file.
    Spooled(File),
}

pub(super) struct Tail {
    bucket: Bucket,
    handle: Handle,
    key: Path,
    name: String,
    size: u64,
    /// Offset of `tail` in the object.
    start: u64,
    tail: Bytes,
}

impl Tail {
    fn range(&self, start: u64, length: u64) -> parquet::errors::Result<Bytes> {
        let end = start.saturating_add(length).min(self.size);
        let cached_end = self.start + self.tail.len() as u64;
        if start >= self.start && end <= cached_end {
            let from = (start - self.start) as usize;
            return Ok(self.tail.slice(from..from + (end - start) as usize));
        }
        if start >= end {
            return Ok(Bytes::new());
        }
        self.handle
            .block_on(self.bucket.store.get_range(&self.key, start..end))
            .map_err(|e| {
                ParquetError::External(Box::new(io::Error::other(
                    self.bucket.message("reading", &self.name, &e),
                )))
            })
    }
}

impl Length for ObjectChunks {
    fn len(&self) -> u64 {
        match self {
            Self::Tail(tail) => tail.size,
            Self::Spooled(file) => file.len(),
        }
    }
}

impl ChunkReader for ObjectChunks {
    type T = Box<dyn Read + Send>;

    fn get_read(&self, start: u64) -> parquet::errors::Result<Self::T> {
        match self {
            Self::Tail(tail) => Ok(Box::new(Cursor::new(
                tail.range(start, tail.size.saturating_sub(start))?,
            ))),
            Self::Spooled(file) => Ok(Box::new(file.get_read(start)?)),
        }
    }

    fn get_bytes(&self, start: u64, length: usize) -> parquet::errors::Result<Bytes> {
        match self {
            Self::Tail(tail) => tail.range(start, length as u64),
            Self::Spooled(file) => file.get_bytes(start, length),
        }
    }
}
