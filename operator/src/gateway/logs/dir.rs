//! The directory store: a PersistentVolume mounted at the log root (the chart's default),
//! one file per step attempt at `<root>/<namespace>/<pipeline>/<run>/<step>/<attempt>.jsonl.gz`.
//! Members are appended with one `write` each and not synced: the failure this guards
//! against is the operator's process dying, after which the page cache still reaches the
//! volume; a node crash may lose the last batches.

use std::io::Write;
use std::path::{Path, PathBuf};

use async_trait::async_trait;

use super::gzip::whole_members;
use super::{LogKey, LogStore, StoreError, checked};

const SUFFIX: &str = ".jsonl.gz";

/// Step logs in a directory.
pub struct DirStore {
    root: PathBuf,
}

impl DirStore {
    pub fn new(root: PathBuf) -> Self {
        Self { root }
    }

    /// The file of an attempt's log. The key's names are checked, so the path stays below
    /// the root.
    pub fn path(&self, key: &LogKey) -> PathBuf {
        self.root
            .join(&key.namespace)
            .join(&key.pipeline)
            .join(&key.run)
            .join(&key.step)
            .join(format!("{}{SUFFIX}", key.attempt))
    }

    fn error(&self, action: &'static str, what: &str, source: std::io::Error) -> StoreError {
        StoreError::Io {
            action,
            key: what.to_string(),
            store: self.describe(),
            source,
        }
    }

    /// Blocking file work off the async threads.
    async fn blocking<T: Send + 'static>(
        &self,
        action: &'static str,
        what: String,
        work: impl FnOnce() -> std::io::Result<T> + Send + 'static,
    ) -> Result<T, StoreError> {
        match tokio::task::spawn_blocking(work).await {
            Ok(result) => result.map_err(|e| self.error(action, &what, e)),
            Err(join) => Err(self.error(action, &what, std::io::Error::other(join))),
        }
    }
}

fn read_opt(path: &Path) -> std::io::Result<Option<Vec<u8>>> {
    match std::fs::read(path) {
        Ok(bytes) => Ok(Some(bytes)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

/// The entries of a directory that name a directory; none when it does not exist.
fn subdirs(dir: &Path) -> std::io::Result<Vec<String>> {
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e),
    };
    let mut names = Vec::new();
    for entry in entries {
        let entry = entry?;
        if entry.file_type()?.is_dir()
            && let Ok(name) = entry.file_name().into_string()
        {
            names.push(name);
        }
    }
    Ok(names)
}

/// The attempts stored below `<root>/<namespace>/*/<run>`.
fn list(root: &Path, namespace: &str, run: &str) -> std::io::Result<Vec<LogKey>> {
    let mut keys = Vec::new();
    let namespace_dir = root.join(namespace);
    for pipeline in subdirs(&namespace_dir)? {
        let run_dir = namespace_dir.join(&pipeline).join(run);
        for step in subdirs(&run_dir)? {
            for entry in std::fs::read_dir(run_dir.join(&step))? {
                let name = entry?.file_name();
                let attempt = name
                    .to_str()
                    .and_then(|n| n.strip_suffix(SUFFIX))
                    .and_then(|n| n.parse::<u32>().ok());
                let key =
                    attempt.and_then(|a| LogKey::new(namespace, &pipeline, run, &step, a).ok());
                keys.extend(key);
            }
        }
    }
    keys.sort();
    Ok(keys)
}

#[async_trait]
impl LogStore for DirStore {
    fn describe(&self) -> String {
        format!("directory {}", self.root.display())
    }

    async fn read(&self, key: &LogKey) -> Result<Option<Vec<u8>>, StoreError> {
        let path = self.path(key);
        self.blocking("reading", key.to_string(), move || read_opt(&path))
            .await
    }

    async fn resume(&self, key: &LogKey) -> Result<u64, StoreError> {
        let path = self.path(key);
        self.blocking("resuming", key.to_string(), move || {
            let Some(stored) = read_opt(&path)? else {
                return Ok(0);
            };
            let (whole, text) = whole_members(&stored);
            if whole < stored.len() {
                let file = std::fs::OpenOptions::new().write(true).open(&path)?;
                file.set_len(u64::try_from(whole).unwrap_or(u64::MAX))?;
            }
            Ok(u64::try_from(text.len()).unwrap_or(u64::MAX))
        })
        .await
    }

    async fn append(&self, key: &LogKey, member: Vec<u8>, _end: u64) -> Result<(), StoreError> {
        let path = self.path(key);
        self.blocking("writing", key.to_string(), move || {
            if let Some(dir) = path.parent() {
                std::fs::create_dir_all(dir)?;
            }
            let mut file = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(&path)?;
            file.write_all(&member)
        })
        .await
    }

    async fn attempts(&self, namespace: &str, run: &str) -> Result<Vec<LogKey>, StoreError> {
        let namespace = checked("namespace", namespace)?;
        let run = checked("PipelineRun", run)?;
        let root = self.root.clone();
        let what = format!("the logs of PipelineRun {namespace}/{run}");
        self.blocking("listing", what, move || list(&root, &namespace, &run))
            .await
    }
}
