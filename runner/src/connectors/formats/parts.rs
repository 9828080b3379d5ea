//! Writing a stream into one file or a folder of part files, for every file store. The store
//! says where a file is staged and how it is made durable (a [`PartStore`]); this resolves the
//! destination, decides the columns of an append, names and rotates the part files, puts an
//! appended file's old content in front, and counts rows and bytes. Encoding runs on a
//! blocking thread that takes the step's batches itself (see [`pump`]).

use std::io::Write;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use arrow::array::RecordBatch;
use arrow::datatypes::SchemaRef;
use chrono::Utc;
use futures::StreamExt;
use synqx_api::pipeline::{Destination, FileFormat, SchemaEvolution, WriteMode};
use tokio::runtime::Handle;
use tokio::sync::oneshot;

use super::convert::project;
use super::evolution::{copy_file, evolve, existing_columns, widen_csv};
use super::read::task_failed;
use super::scan::Opener;
use super::write::{FileWriter, WriteFormat};
use super::{CsvSettings, Selection, format_of, gzipped};
use crate::engine::{BatchStream, Counters, SchemaStream, WriteOutcome};
use crate::error::{Context, Error, Result};

/// Part size when `fileSize` is not given.
pub const DEFAULT_FILE_SIZE: u64 = 128 * 1024 * 1024;

/// An id for the files of one write: it sorts in the order writes started (so part files
/// list in the order they were appended), and differs between processes and between the
/// writes of one process.
pub fn write_id() -> String {
    static SEQUENCE: AtomicU32 = AtomicU32::new(0);
    let salt = std::process::id().rotate_left(16) ^ SEQUENCE.fetch_add(1, Ordering::Relaxed);
    format!("{}-{salt:08x}", Utc::now().format("%Y%m%dT%H%M%S%6fZ"))
}

/// A destination, checked without touching any store.
#[derive(Clone, Debug)]
pub struct PartsTarget {
    pub fqn: String,
    /// A folder of part files, or one file.
    pub folder: bool,
    /// The file, or the folder without its trailing `/`, relative to the connection's root.
    pub relative: String,
    pub format: WriteFormat,
    pub mode: WriteMode,
    pub file_size: u64,
    pub evolution: SchemaEvolution,
}

impl PartsTarget {
    pub fn resolve(spec: &Destination) -> Result<Self> {
        let fqn = spec.asset.fqn.clone();
        let mode = spec.mode();
        if mode == WriteMode::Upsert {
            return Err(Error::Config(format!(
                "destination {fqn}: files have no keys, so mode upsert is not possible (use append or overwrite)"
            )));
        }
        let (folder, relative) = match Selection::parse(&fqn)? {
            Selection::Glob { .. } => {
                return Err(Error::Config(format!(
                    "destination {fqn}: a destination cannot be a glob"
                )));
            }
            Selection::Folder(prefix) if prefix.is_empty() => {
                return Err(Error::Config(format!(
                    "destination {fqn}: name a file or a folder below the connection's path"
                )));
            }
            Selection::Folder(prefix) => (true, prefix.trim_end_matches('/').to_string()),
            Selection::File(path) => (false, path),
        };
        let format = if folder {
            spec.format
        } else {
            format_of(spec.format, &fqn)
        }
        .ok_or_else(|| {
            Error::Config(format!(
                "destination {fqn}: set `format` (csv, jsonl or parquet)"
            ))
        })?;
        if !folder && format == FileFormat::Parquet && mode == WriteMode::Append {
            return Err(Error::Config(format!(
                "destination {fqn}: a Parquet file cannot be appended to; write to a folder (an FQN ending in `/`) to add part files, or use mode overwrite"
            )));
        }
        let file_size = match spec.file_size.as_deref() {
            Some(text) => synqx_api::duration::parse_bytes(text)
                .map_err(|e| Error::Config(format!("destination {fqn}: fileSize: {e}")))?,
            None => DEFAULT_FILE_SIZE,
        };
        let csv = CsvSettings::from_options(spec.csv.as_ref())?;
        Ok(Self {
            format: WriteFormat::new(format, spec.compression, spec.compression_level, &fqn, csv)?,
            relative,
            fqn,
            folder,
            mode,
            file_size,
            evolution: spec.schema_evolution.unwrap_or_default(),
        })
    }
}

/// Where the files of a write are staged until the store commits them.
pub trait PartStore {
    /// What reads the files already at the destination: an append's columns and old content.
    type Opener: Opener;
    /// A file being written, as the store tracks it.
    type Open: Send;
    fn opener(&self) -> &Self::Opener;
    /// Starts the file that becomes `destination` (relative to the root) at the commit;
    /// nothing is visible under that name before.
    fn create(&mut self, destination: &str) -> Result<(Box<dyn Write + Send>, Self::Open)>;
    /// Ends a file whose encoder has finished writing into it: makes it durable and returns
    /// the bytes it holds.
    fn close(&mut self, open: Self::Open) -> Result<u64>;
}

/// What the blocking half of a write receives.
pub enum Msg {
    Batch(RecordBatch),
    /// The input ended normally: finish the files.
    Finish,
}

/// The input of a write's blocking half: it takes each batch from the step's stream itself,
/// so that no task and channel between them hold more batches in memory (each held batch is
/// several MiB, and a step's peak is the batches it holds).
pub struct Incoming {
    stream: BatchStream,
    handle: Handle,
    /// Resolves when the write's future is dropped (the step was cancelled or failed).
    stopped: oneshot::Receiver<()>,
    /// How the input ended, when it failed: the write's caller gets it back.
    failed: Arc<Mutex<Option<Error>>>,
    counters: Arc<Counters>,
    /// Set once `recv` answered `Finish` or `None`: after that it answers `None` and polls
    /// nothing (neither the stopped signal nor the stream may be polled again).
    ended: bool,
}

impl Incoming {
    /// The next batch, or `Finish` at the end of the input; `None` when the input failed or
    /// the write was dropped, after which nothing may be committed. Blocks.
    pub fn recv(&mut self) -> Option<Msg> {
        if self.ended {
            return None;
        }
        self.ended = true;
        let next = self.handle.block_on(async {
            tokio::select! {
                biased;
                _ = &mut self.stopped => None,
                item = self.stream.next() => Some(item),
            }
        });
        match next? {
            None => Some(Msg::Finish),
            Some(Ok(batch)) => {
                self.ended = false;
                Counters::add(&self.counters.rows_written, batch.num_rows() as u64);
                Some(Msg::Batch(batch))
            }
            Some(Err(e)) => {
                *self.failed.lock().unwrap_or_else(PoisonError::into_inner) = Some(e);
                None
            }
        }
    }
}

/// Runs `work` on a blocking thread with the input as [`Incoming`], and counts the rows it
/// takes. Returns what `work` returned and how the input ended; `work` runs to its end even
/// when the input failed, so it can clean up. Dropping the returned future makes `work`'s
/// next [`Incoming::recv`] answer `None`.
pub async fn pump<T: Send + 'static>(
    input: SchemaStream,
    counters: &Arc<Counters>,
    work: impl FnOnce(Incoming) -> T + Send + 'static,
) -> Result<(T, Result<()>)> {
    let (_stop, stopped) = oneshot::channel();
    let failed = Arc::new(Mutex::new(None));
    let incoming = Incoming {
        stream: input.stream,
        handle: Handle::current(),
        stopped,
        failed: failed.clone(),
        counters: counters.clone(),
        ended: false,
    };
    let done = tokio::task::spawn_blocking(move || work(incoming))
        .await
        .map_err(task_failed)?;
    let fed = match failed.lock().unwrap_or_else(PoisonError::into_inner).take() {
        Some(e) => Err(e),
        None => Ok(()),
    };
    Ok((done, fed))
}

/// Writes what arrives from `input` into `store` (blocking). `existing` names the files the write
/// builds on: for an append to a folder, the files in it; for one file, that file when it
/// exists and is not empty. `id` names the part files.
pub fn run<S: PartStore>(
    target: PartsTarget,
    id: &str,
    incoming: SchemaRef,
    store: &mut S,
    existing: &[String],
    mut input: Incoming,
) -> Result<WriteOutcome> {
    let mut writer = Writer::prepare(target, id, incoming, store, existing)?;
    loop {
        match input.recv() {
            Some(Msg::Batch(batch)) => writer.write(&batch)?,
            Some(Msg::Finish) => return writer.finish(),
            None => {
                return Err(Error::Cancelled(format!(
                    "the write to {} stopped before its input ended; nothing was committed",
                    writer.target.fqn
                )));
            }
        }
    }
}

/// What goes at the top of a single file appended to: its old content.
#[derive(Clone, Copy)]
enum Preamble {
    None,
    Copy { gzip: bool },
    Widen { gzip: bool },
}

struct Current<H> {
    writer: Box<dyn FileWriter>,
    handle: H,
    preamble_bytes: u64,
}

struct Writer<'s, S: PartStore> {
    target: PartsTarget,
    schema: SchemaRef,
    id: String,
    store: &'s mut S,
    preamble: Preamble,
    /// A single file that exists and is not empty.
    existed: bool,
    current: Option<Current<S::Open>>,
    next: usize,
    closed: usize,
    outcome: WriteOutcome,
}

impl<'s, S: PartStore> Writer<'s, S> {
    fn prepare(
        target: PartsTarget,
        id: &str,
        incoming: SchemaRef,
        store: &'s mut S,
        existing: &[String],
    ) -> Result<Self> {
        let format = target.format;
        let mut schema = incoming.clone();
        let mut preamble = Preamble::None;
        if target.folder && target.mode == WriteMode::Append {
            let files: Vec<(String, bool)> = existing
                .iter()
                .filter(|name| FileFormat::from_path(name) == Some(format.format))
                .map(|name| {
                    let gzip = gzipped(None, format.format, name).unwrap_or(false);
                    (name.clone(), gzip)
                })
                .collect();
            if let Some(columns) = existing_columns(store.opener(), &files, &format)? {
                schema = evolve(&incoming, &columns, target.evolution, &target.fqn, false)?.schema;
            }
        } else if !target.folder && target.mode == WriteMode::Append && !existing.is_empty() {
            let gzip = format.gzipped_text();
            let fixed_order = format.format == FileFormat::Csv;
            let mut widen = false;
            let file = [(target.relative.clone(), gzip)];
            if let Some(columns) = existing_columns(store.opener(), &file, &format)? {
                let evolved = evolve(
                    &incoming,
                    &columns,
                    target.evolution,
                    &target.fqn,
                    fixed_order,
                )?;
                (schema, widen) = (evolved.schema, evolved.widen_old);
            }
            preamble = if widen {
                Preamble::Widen { gzip }
            } else {
                Preamble::Copy { gzip }
            };
        }
        Ok(Self {
            existed: !target.folder && !existing.is_empty(),
            target,
            schema,
            id: id.to_string(),
            store,
            preamble,
            current: None,
            next: 0,
            closed: 0,
            outcome: WriteOutcome::default(),
        })
    }

    fn open(&mut self) -> Result<Current<S::Open>> {
        let destination = if self.target.folder {
            let name = format!(
                "{}/part-{}-{:05}.{}",
                self.target.relative,
                self.id,
                self.next,
                self.target.format.extension()
            );
            self.next += 1;
            name
        } else {
            self.target.relative.clone()
        };
        let (mut sink, handle) = self.store.create(&destination)?;
        let old = self.target.relative.as_str();
        let mut format = self.target.format;
        let preamble_bytes = match self.preamble {
            Preamble::None => 0,
            Preamble::Copy { gzip } => {
                copy_file(self.store.opener().stream(old)?, gzip, &mut *sink, old)?
            }
            Preamble::Widen { gzip } => {
                let header: Vec<String> = self
                    .schema
                    .fields()
                    .iter()
                    .map(|f| f.name().clone())
                    .collect();
                widen_csv(
                    self.store.opener().stream(old)?,
                    gzip,
                    &header,
                    &format,
                    &mut *sink,
                    old,
                )?
            }
        };
        if preamble_bytes > 0 {
            // The old content starts with the header.
            format.csv.header = false;
        }
        let writer = format.writer(self.schema.clone(), sink, &destination)?;
        Ok(Current {
            writer,
            handle,
            preamble_bytes,
        })
    }

    fn write(&mut self, batch: &RecordBatch) -> Result<()> {
        if batch.num_rows() == 0 {
            return Ok(());
        }
        let batch =
            project(batch, &self.schema).context(|| format!("destination {}", self.target.fqn))?;
        let current = match self.current.take() {
            Some(current) => current,
            None => self.open()?,
        };
        let current = self.current.insert(current);
        current.writer.write(&batch)?;
        self.outcome.rows += batch.num_rows() as u64;
        if self.target.folder && current.writer.size() >= self.target.file_size {
            self.close()?;
        }
        Ok(())
    }

    /// Ends the current file and makes it durable.
    fn close(&mut self) -> Result<()> {
        let Some(current) = self.current.take() else {
            return Ok(());
        };
        current.writer.finish()?;
        let size = self.store.close(current.handle)?;
        self.outcome.bytes += size.saturating_sub(current.preamble_bytes);
        self.closed += 1;
        Ok(())
    }

    fn finish(mut self) -> Result<WriteOutcome> {
        self.close()?;
        let needs_file = self.closed == 0
            && (self.target.mode == WriteMode::Overwrite || !(self.target.folder || self.existed));
        if needs_file {
            // An overwrite with no rows still replaces the data, and keeps the columns.
            self.current = Some(self.open()?);
            self.close()?;
        }
        Ok(self.outcome.clone())
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::AtomicUsize;
    use std::time::Duration;

    use arrow::array::Int32Array;
    use arrow::datatypes::{DataType, Field, Schema};

    use super::*;

    fn batch() -> RecordBatch {
        let schema = Arc::new(Schema::new(vec![Field::new("n", DataType::Int32, false)]));
        RecordBatch::try_new(schema, vec![Arc::new(Int32Array::from(vec![1, 2, 3]))])
            .unwrap_or_else(|e| panic!("{e}"))
    }

    fn input(
        stream: impl futures::Stream<Item = Result<RecordBatch>> + Send + 'static,
    ) -> SchemaStream {
        SchemaStream::new(batch().schema(), stream)
    }

    /// What a blocking half was given.
    fn tag(msg: Option<Msg>) -> &'static str {
        match msg {
            Some(Msg::Batch(_)) => "batch",
            Some(Msg::Finish) => "finish",
            None => "stopped",
        }
    }

    #[tokio::test]
    async fn the_blocking_half_takes_each_batch_when_it_needs_it() {
        let produced = Arc::new(AtomicUsize::new(0));
        let counting = produced.clone();
        let endless = futures::stream::repeat_with(move || {
            counting.fetch_add(1, Ordering::SeqCst);
            Ok(batch())
        });
        let counters = Arc::new(Counters::default());
        let seen = produced.clone();
        let (held, fed) = pump(input(endless), &counters, move |mut incoming| {
            // Nothing reads ahead of the writer: while it holds a batch, that batch is all
            // the input has produced.
            (0..3)
                .map(|_| {
                    assert_eq!(tag(incoming.recv()), "batch");
                    seen.load(Ordering::SeqCst)
                })
                .collect::<Vec<_>>()
        })
        .await
        .unwrap_or_else(|e| panic!("{e}"));
        assert!(fed.is_ok());
        assert_eq!(held, vec![1, 2, 3]);
        assert_eq!(counters.snapshot().rows_written, 9);
    }

    #[tokio::test]
    async fn a_failed_input_is_returned_and_its_writer_is_stopped() {
        let items = vec![
            Ok(batch()),
            Err(Error::Config("row 7 is bad".into())),
            Ok(batch()),
        ];
        let counters = Arc::new(Counters::default());
        let (seen, fed) = pump(
            input(futures::stream::iter(items)),
            &counters,
            |mut incoming| {
                [
                    tag(incoming.recv()),
                    tag(incoming.recv()),
                    tag(incoming.recv()),
                ]
            },
        )
        .await
        .unwrap_or_else(|e| panic!("{e}"));
        // The batch after the failure is never handed over.
        assert_eq!(seen, ["batch", "stopped", "stopped"]);
        let e = fed.err().map(|e| e.to_string()).unwrap_or_default();
        assert!(e.contains("row 7 is bad"), "{e}");
    }

    #[tokio::test]
    async fn dropping_the_write_stops_its_blocking_half() {
        // One batch, then an input that never ends nor yields: only the drop can stop it.
        let stalled = futures::stream::iter([Ok(batch())]).chain(futures::stream::pending());
        let (took, first) = tokio::sync::oneshot::channel();
        let (ended, last) = tokio::sync::oneshot::channel();
        let counters = Arc::new(Counters::default());
        let write = tokio::spawn(async move {
            pump(input(stalled), &counters, move |mut incoming| {
                let _ = took.send(tag(incoming.recv()));
                let _ = ended.send(tag(incoming.recv()));
            })
            .await
        });
        let first = tokio::time::timeout(Duration::from_secs(10), first).await;
        assert_eq!(first.ok().and_then(Result::ok), Some("batch"));
        write.abort();
        let last = tokio::time::timeout(Duration::from_secs(10), last).await;
        assert_eq!(last.ok().and_then(Result::ok), Some("stopped"));
    }

    #[test]
    fn write_ids_differ_and_sort_by_time() {
        let (a, b) = (write_id(), write_id());
        assert_ne!(a, b);
        let time = |id: &str| id.split('-').next().map(str::to_string);
        assert!(time(&a) <= time(&b), "{a} {b}");
    }

    #[test]
    fn targets_name_a_file_or_a_folder() {
        let mut spec = Destination {
            asset: synqx_api::pipeline::Asset {
                name: None,
                fqn: "raw/orders/".into(),
            },
            format: Some(FileFormat::Csv),
            file_size: Some("1KiB".into()),
            ..Default::default()
        };
        let folder = PartsTarget::resolve(&spec).unwrap_or_else(|e| panic!("{e}"));
        assert!(folder.folder);
        assert_eq!(
            (folder.relative.as_str(), folder.file_size),
            ("raw/orders", 1024)
        );
        spec.asset.fqn = "/out/a.jsonl.gz".into();
        spec.format = None;
        let file = PartsTarget::resolve(&spec).unwrap_or_else(|e| panic!("{e}"));
        assert!(!file.folder);
        assert_eq!(file.relative, "out/a.jsonl.gz");
        assert_eq!(file.format.extension(), "jsonl.gz");
    }
}
