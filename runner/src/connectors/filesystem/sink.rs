//! Writing a stream into a file or a folder of part files below the connection's root.
//! `formats::parts` encodes, rotates and counts; this stages every file under a hidden name
//! (which readers skip) and commits by renames (see `commit`), so a failed, cancelled or
//! dropped write leaves the destination as it was.

use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

use async_trait::async_trait;

use super::commit::{Staged, Swap, Temporaries};
use super::config::FilesystemConfig;
use super::connect::{DirOpener, list};
use super::write_behind::WriteBehind;
use crate::connectors::formats::Selection;
use crate::connectors::formats::parts::{self, PartStore, PartsTarget, write_id};
use crate::connectors::formats::read::task_failed;
use crate::engine::{SchemaStream, Sink, WriteOutcome, WriteRequest};
use crate::error::{Context, Result};

/// Writes files below a directory.
pub struct FilesystemSink {
    pub(super) settings: FilesystemConfig,
}

#[async_trait]
impl Sink for FilesystemSink {
    async fn write(&self, request: &WriteRequest, input: SchemaStream) -> Result<WriteOutcome> {
        write(self.settings.root.clone(), request, input).await
    }
}

async fn write(root: PathBuf, request: &WriteRequest, input: SchemaStream) -> Result<WriteOutcome> {
    let target = PartsTarget::resolve(&request.spec)?;
    let schema = input.schema.clone();
    let (staged, fed) = parts::pump(input, &request.counters, move |rx| {
        let id = write_id();
        let (mut store, existing) = DirParts::prepare(root, &target, &id)?;
        let outcome = parts::run(target, &id, schema, &mut store, &existing, rx)?;
        // On an error the store is dropped here and its guard removes the temporaries.
        Ok::<_, crate::Error>(store.stage(outcome))
    })
    .await?;
    fed?;
    let staged = staged?;
    tokio::task::spawn_blocking(move || staged.commit())
        .await
        .map_err(task_failed)?
}

enum Layout {
    /// Part files written into `staging` (hidden names when that is the folder itself),
    /// renamed into `dir`, or `staging` swapped for `dir` when `old` is set (overwrite).
    Parts {
        dir: PathBuf,
        staging: PathBuf,
        hidden: bool,
        old: Option<PathBuf>,
    },
    /// One file written aside as `staged`, then renamed over `target`.
    Single { target: PathBuf, staged: PathBuf },
}

/// A file being written: where it is staged and where it goes.
pub(super) struct StagedFile {
    file: File,
    staged: PathBuf,
    destination: PathBuf,
}

/// The staging area of one write.
struct DirParts {
    opener: DirOpener,
    layout: Layout,
    temps: Temporaries,
    done: Vec<(PathBuf, PathBuf)>,
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

impl DirParts {
    /// Creates the staging area and lists the files the write builds on.
    fn prepare(root: PathBuf, target: &PartsTarget, id: &str) -> Result<(Self, Vec<String>)> {
        let path = root.join(&target.relative);
        let parent = path
            .parent()
            .map(Path::to_path_buf)
            .unwrap_or_else(|| root.clone());
        let mut temps = Temporaries::default();
        let mut existing = Vec::new();
        let layout = match (target.folder, target.mode) {
            (true, synqx_api::pipeline::WriteMode::Append) => {
                let folder = Selection::Folder(format!("{}/", target.relative));
                existing = list(&root, &folder)?
                    .0
                    .into_iter()
                    .map(|f| f.name)
                    .collect();
                create_dir(&path)?;
                Layout::Parts {
                    dir: path.clone(),
                    staging: path,
                    hidden: true,
                    old: None,
                }
            }
            (true, _) => {
                create_dir(&parent)?;
                let staging = hidden_sibling(&path, "tmp", id);
                fs::create_dir(&staging).context(|| format!("creating {}", staging.display()))?;
                temps.add(staging.clone());
                Layout::Parts {
                    old: Some(hidden_sibling(&path, "old", id)),
                    dir: path,
                    staging,
                    hidden: false,
                }
            }
            (false, _) => {
                create_dir(&parent)?;
                if fs::metadata(&path).is_ok_and(|m| m.len() > 0) {
                    existing.push(target.relative.clone());
                }
                Layout::Single {
                    staged: hidden_sibling(&path, "tmp", id),
                    target: path,
                }
            }
        };
        let store = Self {
            opener: DirOpener { root },
            layout,
            temps,
            done: Vec::new(),
        };
        Ok((store, existing))
    }

    /// The finished files, waiting for their commit.
    fn stage(mut self, outcome: WriteOutcome) -> Staged {
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
            Layout::Single { target, staged } => Swap::File {
                staged: staged.clone(),
                target: target.clone(),
            },
        };
        Staged {
            swap,
            temps: std::mem::take(&mut self.temps),
            outcome,
        }
    }
}

impl PartStore for DirParts {
    type Opener = DirOpener;
    type Open = StagedFile;

    fn opener(&self) -> &DirOpener {
        &self.opener
    }

    fn create(&mut self, destination: &str) -> Result<(Box<dyn Write + Send>, StagedFile)> {
        let destination = self.opener.root.join(destination);
        let staged = match &self.layout {
            Layout::Parts {
                staging, hidden, ..
            } => {
                let name = destination
                    .file_name()
                    .map(|n| n.to_string_lossy().to_string())
                    .unwrap_or_default();
                if *hidden {
                    staging.join(format!(".{name}.synqx-tmp"))
                } else {
                    staging.join(name)
                }
            }
            Layout::Single { staged, .. } => staged.clone(),
        };
        let file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&staged)
            .context(|| format!("creating {}", staged.display()))?;
        self.temps.add(staged.clone());
        let sink = file
            .try_clone()
            .context(|| format!("writing {}", staged.display()))?;
        let open = StagedFile {
            file,
            staged,
            destination,
        };
        Ok((Box::new(WriteBehind::new(sink)), open))
    }

    fn close(&mut self, open: StagedFile) -> Result<u64> {
        open.file
            .sync_all()
            .context(|| format!("writing {}", open.staged.display()))?;
        let size = fs::metadata(&open.staged)
            .context(|| format!("reading {}", open.staged.display()))?
            .len();
        self.done.push((open.staged, open.destination));
        Ok(size)
    }
}
