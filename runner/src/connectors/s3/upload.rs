//! One object written as a stream by a blocking encoder. Bytes are buffered up to one part
//! (8 MiB): an object that ends within it is one PUT; a larger one becomes a multipart upload
//! (`WriteMultipart`) whose parts go out while the encoder goes on, at most two in flight, so
//! a write holds about three parts of memory however large the object. A multipart upload
//! that does not complete is aborted, so S3 keeps none of its parts.

use std::io::{self, Write};
use std::sync::{Arc, Mutex, PoisonError};

use async_trait::async_trait;
use bytes::Bytes;
use object_store::path::Path;
use object_store::{
    MultipartUpload, ObjectStoreExt, PutPayload, PutResult, UploadPart, WriteMultipart,
};
use tokio::runtime::Handle;

use super::connect::Bucket;
use crate::error::{Error, Result};

/// Size of a multipart part (S3 requires at least 5 MiB for all but the last).
pub(super) const PART_SIZE: usize = 8 * 1024 * 1024;
/// Parts uploading at once, besides the one being filled.
const PARTS_IN_FLIGHT: usize = 2;

/// An object being written: the encoder writes into one clone, the store keeps another to
/// finish or abort it.
#[derive(Clone)]
pub(super) struct Upload(Arc<Mutex<State>>);

struct State {
    bucket: Bucket,
    handle: Handle,
    key: Path,
    /// The key relative to the prefix, for messages.
    name: String,
    phase: Phase,
    bytes: u64,
}

enum Phase {
    /// Less than one part so far.
    Buffering(Vec<u8>),
    /// A multipart upload, with a handle that can abort it even after `WriteMultipart` is
    /// gone (its `finish` drops the upload when a part fails).
    Streaming(WriteMultipart, Abortable),
    /// Completed, aborted, or failed with nothing left to abort.
    Done,
}

impl Upload {
    pub(super) fn new(bucket: Bucket, handle: Handle, key: Path, name: String) -> Self {
        Self(Arc::new(Mutex::new(State {
            bucket,
            handle,
            key,
            name,
            phase: Phase::Buffering(Vec::new()),
            bytes: 0,
        })))
    }

    /// Whether both are the same object's upload.
    pub(super) fn same(&self, other: &Upload) -> bool {
        Arc::ptr_eq(&self.0, &other.0)
    }

    fn state(&self) -> io::Result<std::sync::MutexGuard<'_, State>> {
        self.0
            .lock()
            .map_err(|_: PoisonError<_>| io::Error::other("an earlier upload panicked"))
    }

    /// Completes the object (blocking); returns its size. On error nothing is left behind.
    pub(super) fn finish(&self) -> Result<u64> {
        let mut state = self.state().map_err(|e| Error::io("uploading", e))?;
        let (handle, store, key) = (
            state.handle.clone(),
            state.bucket.store.clone(),
            state.key.clone(),
        );
        let fail =
            |state: &State, e: object_store::Error| state.bucket.fail("writing", &state.name, e);
        match std::mem::replace(&mut state.phase, Phase::Done) {
            Phase::Buffering(buffer) => {
                handle
                    .block_on(store.put(&key, PutPayload::from(buffer)))
                    .map_err(|e| fail(&state, e))?;
            }
            Phase::Streaming(parts, abortable) => {
                if let Err(e) = handle.block_on(parts.finish()) {
                    handle.block_on(abortable.abandon());
                    return Err(fail(&state, e));
                }
            }
            Phase::Done => {
                return Err(Error::Config(format!(
                    "{} was already finished or abandoned",
                    state.bucket.url(&state.name)
                )));
            }
        }
        Ok(state.bytes)
    }

    /// Abandons the object: a multipart upload in progress is aborted.
    pub(super) async fn abort(&self) {
        let phase = match self.0.lock() {
            Ok(mut state) => std::mem::replace(&mut state.phase, Phase::Done),
            Err(_) => return,
        };
        if let Phase::Streaming(parts, abortable) = phase {
            // Dropping `parts` cancels its part uploads; the upload itself is aborted here.
            drop(parts);
            abortable.abandon().await;
        }
    }
}

impl State {
    fn io_error(&self, e: &object_store::Error) -> io::Error {
        io::Error::other(self.bucket.message("writing", &self.name, e))
    }

    fn write(&mut self, buf: &[u8]) -> io::Result<()> {
        match std::mem::replace(&mut self.phase, Phase::Done) {
            Phase::Buffering(mut buffer) if buffer.len() + buf.len() < PART_SIZE => {
                buffer.extend_from_slice(buf);
                self.phase = Phase::Buffering(buffer);
            }
            Phase::Buffering(buffer) => {
                let started = self
                    .handle
                    .block_on(self.bucket.store.put_multipart(&self.key));
                let upload = started.map_err(|e| self.io_error(&e))?;
                let abortable = Abortable(Arc::new(Mutex::new(Some(upload))));
                let mut parts =
                    WriteMultipart::new_with_chunk_size(Box::new(abortable.clone()), PART_SIZE);
                // Part uploads are tasks of the runtime.
                let _runtime = self.handle.enter();
                parts.put(Bytes::from(buffer));
                parts.write(buf);
                self.phase = Phase::Streaming(parts, abortable);
            }
            Phase::Streaming(mut parts, abortable) => {
                let room = self
                    .handle
                    .block_on(parts.wait_for_capacity(PARTS_IN_FLIGHT));
                let failed = room.err().map(|e| self.io_error(&e));
                if failed.is_none() {
                    let _runtime = self.handle.enter();
                    parts.write(buf);
                }
                // Kept even after a failed part, so the upload can still be aborted.
                self.phase = Phase::Streaming(parts, abortable);
                if let Some(e) = failed {
                    return Err(e);
                }
            }
            Phase::Done => {
                return Err(io::Error::other(format!(
                    "{} was already finished",
                    self.bucket.url(&self.name)
                )));
            }
        }
        self.bytes += buf.len() as u64;
        Ok(())
    }
}

impl Write for Upload {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.state()?.write(buf)?;
        Ok(buf.len())
    }

    /// Nothing to do: parts go out when full, the rest at `finish`.
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// A multipart upload shared between `WriteMultipart` and its owner, so the owner can abort
/// it whatever state `WriteMultipart` ended in.
#[derive(Clone, Debug)]
struct Abortable(Arc<Mutex<Option<Box<dyn MultipartUpload>>>>);

impl Abortable {
    fn take(&self) -> Option<Box<dyn MultipartUpload>> {
        self.0.lock().ok().and_then(|mut upload| upload.take())
    }

    fn put_back(&self, upload: Box<dyn MultipartUpload>) {
        if let Ok(mut slot) = self.0.lock() {
            *slot = Some(upload);
        }
    }

    /// Best effort: an upload that cannot be aborted now is left to the bucket's lifecycle
    /// rules, and is never visible as an object.
    async fn abandon(&self) {
        if let Some(mut upload) = self.take() {
            let _ = upload.abort().await;
        }
    }
}

fn gone() -> object_store::Error {
    object_store::Error::Generic {
        store: "S3",
        source: "the multipart upload was already completed or aborted".into(),
    }
}

#[async_trait]
impl MultipartUpload for Abortable {
    fn put_part(&mut self, data: PutPayload) -> UploadPart {
        match self.0.lock().ok().as_mut().and_then(|u| u.as_mut()) {
            Some(upload) => upload.put_part(data),
            None => Box::pin(async { Err(gone()) }),
        }
    }

    async fn complete(&mut self) -> object_store::Result<PutResult> {
        let mut upload = self.take().ok_or_else(gone)?;
        let result = upload.complete().await;
        if result.is_err() {
            // `WriteMultipart::finish` aborts after a failed completion.
            self.put_back(upload);
        }
        result
    }

    async fn abort(&mut self) -> object_store::Result<()> {
        match self.take() {
            Some(mut upload) => upload.abort().await,
            None => Ok(()),
        }
    }
}
