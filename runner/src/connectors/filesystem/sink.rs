//! Writing a stream into a file or a folder of part files. Encoding and file I/O run on a
//! blocking thread fed by a bounded channel; nothing becomes visible before the commit
//! (see `commit`), so a failed, cancelled or dropped write leaves the destination as it was.

use std::fs::{self, File, OpenOptions};
use std::path::{Path, PathBuf};

use arrow::array::RecordBatch;
use arrow::datatypes::SchemaRef;
use futures::StreamExt;
use synqx_api::pipeline::{Destination, FileFormat, SchemaEvolution, WriteMode};
use tokio::sync::mpsc;

use super::commit::{Staged, Swap, Temporaries, write_id};
use super::evolution::{copy_file, evolve, existing_columns, widen_csv};
use super::listing::list;
use super::task_failed;
use crate::connectors::formats::convert::project;
use crate::connectors::formats::write::{FileWriter, WriteFormat};
use crate::connectors::formats::{CsvSettings, Selection, format_of, gzipped};
use crate::engine::{
    BatchStream, CHANNEL_DEPTH, Counters, SchemaStream, WriteOutcome, WriteRequest,
};
use crate::error::{Context, Error, Result};

/// Part size when `fileSize` is not given.
const DEFAULT_FILE_SIZE: u64 = 128 * 1024 * 1024;

/// A destination, checked without touching the disk.
#[derive(Clone, Debug)]
pub(super) struct Target {
    fqn: String,
    /// A folder of part files, or one file.
    folder: bool,
    path: PathBuf,
    root: PathBuf,
    format: WriteFormat,
    mode: WriteMode,
    file_size: u64,
    evolution: SchemaEvolution,
}

impl Target {
    pub(super) fn resolve(root: &Path, spec: &Destination) -> Result<Self> {
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
            Selection::Folder(prefix) => (true, prefix),
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
            format: WriteFormat::new(format, spec.compression, &fqn, csv)?,
            path: root.join(relative.trim_end_matches('/')),
            root: root.to_path_buf(),
            fqn,
            folder,
            mode,
            file_size,
            evolution: spec.schema_evolution.unwrap_or_default(),
        })
    }
}

enum Msg {
    Batch(RecordBatch),
    /// The input ended normally: finish the files.
    Finish,
}

pub(super) async fn write(
    root: PathBuf,
    request: &WriteRequest,
    input: SchemaStream,
    counters: &Counters,
) -> Result<WriteOutcome> {
    let target = Target::resolve(&root, &request.spec)?;
    let (tx, rx) = mpsc::channel(CHANNEL_DEPTH);
    let schema = input.schema.clone();
    let worker = tokio::task::spawn_blocking(move || run(target, schema, rx));
    let fed = feed(input.stream, &tx, counters).await;
    drop(tx);
    // Awaited even when the input failed: the worker removes its temporaries first.
    let staged = worker.await.map_err(task_failed)?;
    fed?;
    let staged = staged?;
    tokio::task::spawn_blocking(move || staged.commit())
        .await
        .map_err(task_failed)?
}

async fn feed(mut stream: BatchStream, tx: &mpsc::Sender<Msg>, counters: &Counters) -> Result<()> {
    while let Some(item) = stream.next().await {
        let batch = item?;
        let rows = batch.num_rows() as u64;
        if tx.send(Msg::Batch(batch)).await.is_err() {
            // The worker stopped on an error, which it returns.
            return Ok(());
        }
        Counters::add(&counters.rows_written, rows);
    }
    let _ = tx.send(Msg::Finish).await;
    Ok(())
}

fn run(target: Target, schema: SchemaRef, mut rx: mpsc::Receiver<Msg>) -> Result<Staged> {
    let mut writer = Writer::prepare(target, schema)?;
    loop {
        match rx.blocking_recv() {
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
enum Preamble {
    None,
    Copy { from: PathBuf, gzip: bool },
    Widen { from: PathBuf, gzip: bool },
}

enum Layout {
    /// Part files written into `staging` (hidden names when that is the folder itself),
    /// renamed into `dir`, or `staging` swapped for `dir` when `old` is set (overwrite).
    Parts {
        dir: PathBuf,
        staging: PathBuf,
        hidden: bool,
        old: Option<PathBuf>,
        next: usize,
    },
    /// One file written aside as `staged`, then renamed over `target`.
    Single {
        target: PathBuf,
        staged: PathBuf,
        preamble: Preamble,
        existed: bool,
    },
}

struct Open {
    writer: Box<dyn FileWriter>,
    file: File,
    staged: PathBuf,
    destination: PathBuf,
    preamble_bytes: u64,
}

struct Writer {
    target: Target,
    schema: SchemaRef,
    id: String,
    layout: Layout,
    temps: Temporaries,
    current: Option<Open>,
    done: Vec<(PathBuf, PathBuf)>,
    outcome: WriteOutcome,
}

fn hidden_sibling(path: &Path, kind: &str, id: &str) -> PathBuf {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().to_string())
        .unwrap_or_default();
    path.with_file_name(format!(".{name}.synqx-{kind}-{id}"))
}

fn create_dir(path: &Path) -> Result<()> {
    fs::create_dir_all(path).context(|| format!("creating {}", path.display()))
}

impl Writer {
    fn prepare(target: Target, incoming: SchemaRef) -> Result<Self> {
        let id = write_id();
        let mut temps = Temporaries::default();
        let mut schema = incoming.clone();
        let parent = target
            .path
            .parent()
            .map(Path::to_path_buf)
            .unwrap_or_else(|| target.root.clone());
        let layout = match (target.folder, target.mode) {
            (true, WriteMode::Append) => {
                let (files, _) = list(
                    &target.root,
                    &Selection::Folder(format!("{}/", relative(&target))),
                )?;
                let existing: Vec<(&Path, bool)> = files
                    .iter()
                    .filter(|f| FileFormat::from_path(&f.name) == Some(target.format.format))
                    .map(|f| {
                        (
                            f.path.as_path(),
                            gzipped(None, target.format.format, &f.name).unwrap_or(false),
                        )
                    })
                    .collect();
                if let Some(columns) = existing_columns(&existing, &target.format)? {
                    schema =
                        evolve(&incoming, &columns, target.evolution, &target.fqn, false)?.schema;
                }
                create_dir(&target.path)?;
                Layout::Parts {
                    dir: target.path.clone(),
                    staging: target.path.clone(),
                    hidden: true,
                    old: None,
                    next: 0,
                }
            }
            (true, _) => {
                create_dir(&parent)?;
                let staging = hidden_sibling(&target.path, "tmp", &id);
                fs::create_dir(&staging).context(|| format!("creating {}", staging.display()))?;
                temps.add(staging.clone());
                let old = Some(hidden_sibling(&target.path, "old", &id));
                Layout::Parts {
                    dir: target.path.clone(),
                    staging,
                    hidden: false,
                    old,
                    next: 0,
                }
            }
            (false, mode) => {
                create_dir(&parent)?;
                let existed = fs::metadata(&target.path).is_ok_and(|m| m.len() > 0);
                let gzip = target.format.compression == synqx_api::pipeline::Compression::Gzip;
                let mut preamble = Preamble::None;
                if mode == WriteMode::Append && existed {
                    let fixed_order = target.format.format == FileFormat::Csv;
                    let mut widen = false;
                    if let Some(columns) =
                        existing_columns(&[(target.path.as_path(), gzip)], &target.format)?
                    {
                        let evolved = evolve(
                            &incoming,
                            &columns,
                            target.evolution,
                            &target.fqn,
                            fixed_order,
                        )?;
                        (schema, widen) = (evolved.schema, evolved.widen_old);
                    }
                    let from = target.path.clone();
                    preamble = if widen {
                        Preamble::Widen { from, gzip }
                    } else {
                        Preamble::Copy { from, gzip }
                    };
                }
                let staged = hidden_sibling(&target.path, "tmp", &id);
                Layout::Single {
                    target: target.path.clone(),
                    staged,
                    preamble,
                    existed,
                }
            }
        };
        Ok(Self {
            target,
            schema,
            id,
            layout,
            temps,
            current: None,
            done: Vec::new(),
            outcome: WriteOutcome::default(),
        })
    }

    fn open(&mut self) -> Result<Open> {
        let extension = self.target.format.extension();
        let (staged, destination) = match &mut self.layout {
            Layout::Parts {
                dir,
                staging,
                hidden,
                next,
                ..
            } => {
                let name = format!("part-{}-{:05}.{extension}", self.id, next);
                *next += 1;
                let staged = if *hidden {
                    staging.join(format!(".{name}.synqx-tmp"))
                } else {
                    staging.join(&name)
                };
                (staged, dir.join(name))
            }
            Layout::Single { target, staged, .. } => (staged.clone(), target.clone()),
        };
        let mut file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&staged)
            .context(|| format!("creating {}", staged.display()))?;
        self.temps.add(staged.clone());
        let mut format = self.target.format;
        let preamble_bytes = match &self.layout {
            Layout::Single {
                preamble: Preamble::Copy { from, gzip },
                ..
            } => copy_file(from, *gzip, &mut file)?,
            Layout::Single {
                preamble: Preamble::Widen { from, gzip },
                ..
            } => {
                let header: Vec<String> = self
                    .schema
                    .fields()
                    .iter()
                    .map(|f| f.name().clone())
                    .collect();
                widen_csv(from, *gzip, &header, &format, &file)?
            }
            _ => 0,
        };
        if preamble_bytes > 0 {
            // The old content starts with the header.
            format.csv.header = false;
        }
        let sink = file
            .try_clone()
            .context(|| format!("writing {}", staged.display()))?;
        let name = destination
            .strip_prefix(&self.target.root)
            .unwrap_or(&destination)
            .display()
            .to_string();
        let writer = format.writer(self.schema.clone(), Box::new(sink), &name)?;
        Ok(Open {
            writer,
            file,
            staged,
            destination,
            preamble_bytes,
        })
    }

    fn write(&mut self, batch: &RecordBatch) -> Result<()> {
        if batch.num_rows() == 0 {
            return Ok(());
        }
        let batch =
            project(batch, &self.schema).context(|| format!("destination {}", self.target.fqn))?;
        let open = match self.current.take() {
            Some(open) => open,
            None => self.open()?,
        };
        let open = self.current.insert(open);
        open.writer.write(&batch)?;
        self.outcome.rows += batch.num_rows() as u64;
        if matches!(self.layout, Layout::Parts { .. })
            && open.writer.size() >= self.target.file_size
        {
            self.close()?;
        }
        Ok(())
    }

    /// Ends the current file and makes it durable.
    fn close(&mut self) -> Result<()> {
        let Some(open) = self.current.take() else {
            return Ok(());
        };
        open.writer.finish()?;
        open.file
            .sync_all()
            .context(|| format!("writing {}", open.staged.display()))?;
        let size = fs::metadata(&open.staged)
            .context(|| format!("reading {}", open.staged.display()))?
            .len();
        self.outcome.bytes += size.saturating_sub(open.preamble_bytes);
        self.done.push((open.staged, open.destination));
        Ok(())
    }

    fn finish(mut self) -> Result<Staged> {
        self.close()?;
        let needs_file = self.done.is_empty()
            && match &self.layout {
                Layout::Parts { old, .. } => old.is_some(),
                Layout::Single { existed, .. } => {
                    self.target.mode == WriteMode::Overwrite || !existed
                }
            };
        if needs_file {
            // An overwrite with no rows still replaces the data, and keeps the columns.
            self.current = Some(self.open()?);
            self.close()?;
        }
        let swap = match &self.layout {
            _ if self.done.is_empty() => Swap::Nothing,
            Layout::Parts { old: None, .. } => Swap::Parts(std::mem::take(&mut self.done)),
            Layout::Parts {
                dir,
                staging,
                old: Some(old),
                ..
            } => Swap::Folder {
                staged: staging.clone(),
                target: dir.clone(),
                old: old.clone(),
            },
            Layout::Single { target, staged, .. } => Swap::File {
                staged: staged.clone(),
                target: target.clone(),
            },
        };
        Ok(Staged {
            swap,
            temps: std::mem::take(&mut self.temps),
            outcome: self.outcome.clone(),
        })
    }
}

/// The target's path relative to the root, for listing.
fn relative(target: &Target) -> String {
    target
        .path
        .strip_prefix(&target.root)
        .unwrap_or(&target.path)
        .to_string_lossy()
        .replace('\\', "/")
}
