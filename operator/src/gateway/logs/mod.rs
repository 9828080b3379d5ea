//! Step logs that outlive their pods. The telemetry route hands each report's lines to
//! [`Logs::append`] before it answers, so a pod's lines are stored once the pod hears 204;
//! each step attempt's log is kept by a [`LogStore`] as gzip JSON lines ([`gzip`]), bounded
//! in size, and finished with a truncation marker when its attempt ends. The route
//! `GET …/pipelineruns/{name}/logs` ([`route`]) reads it back, from the store when it holds
//! the attempt and from the gateway's memory otherwise.

pub mod connection;
mod dir;
pub mod gzip;
pub mod route;
pub mod s3;
pub mod select;

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, Mutex, PoisonError};

use async_trait::async_trait;
use synqx_api::gateway::{LogLine, RunView};

pub use self::connection::{ConnectionError, StoreRef};
pub use self::dir::DirStore;
use self::gzip::AttemptLog;
pub use self::select::Select;

/// One step attempt's log: where it is kept. Every part is a checked name ([`LogKey::new`]),
/// so no part can climb out of a store's root.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct LogKey {
    pub namespace: String,
    pub pipeline: String,
    pub run: String,
    pub step: String,
    pub attempt: u32,
}

/// Why a name cannot be part of a log's path.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
#[error(
    "the {what} \"{name}\" cannot name a stored log: names are 1 to 253 letters, digits, '-', '_' or '.', not starting with '.'"
)]
pub struct BadName {
    pub what: &'static str,
    pub name: String,
}

impl LogKey {
    pub fn new(
        namespace: &str,
        pipeline: &str,
        run: &str,
        step: &str,
        attempt: u32,
    ) -> Result<Self, BadName> {
        Ok(Self {
            namespace: checked("namespace", namespace)?,
            pipeline: checked("Pipeline", pipeline)?,
            run: checked("PipelineRun", run)?,
            step: checked("step", step)?,
            attempt,
        })
    }
}

impl fmt::Display for LogKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "the log of step \"{}\" attempt {} of PipelineRun {}/{}",
            self.step, self.attempt, self.namespace, self.run
        )
    }
}

/// `name` when it is safe as one path segment: Kubernetes names and step names are, and
/// nothing else (no `/`, no `..`, no leading `.`) is taken.
pub fn checked(what: &'static str, name: &str) -> Result<String, BadName> {
    let safe = !name.is_empty()
        && name.len() <= 253
        && !name.starts_with('.')
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
    if safe {
        Ok(name.to_string())
    } else {
        Err(BadName {
            what,
            name: name.to_string(),
        })
    }
}

/// Why a store failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("{action} {key} in {store}: {source}")]
    Io {
        action: &'static str,
        key: String,
        store: String,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    BadName(#[from] BadName),
    /// A request to object storage failed; the reason has the credentials removed, and the
    /// source is kept for its kind, not for printing.
    #[error(
        "{action} {url} (Connection {connection}): {reason}; check the bucket, the Connection's credentials and the network, then try again"
    )]
    Object {
        action: &'static str,
        connection: String,
        url: String,
        reason: String,
        #[source]
        source: object_store::Error,
    },
    /// The Connection of a log store cannot be used (kept a short while, so shared).
    #[error(transparent)]
    Connection(Arc<ConnectionError>),
    #[error("reading {what} to find its log store: {source}")]
    Api {
        what: String,
        #[source]
        source: kube::Error,
    },
}

/// Where step logs are kept: a directory (a PersistentVolume), or object storage.
#[async_trait]
pub trait LogStore: Send + Sync {
    /// What the store is, for messages: `directory /var/lib/synqx/logs`.
    fn describe(&self) -> String;
    /// The stored bytes of an attempt's log (gzip members), if any.
    async fn read(&self, key: &LogKey) -> Result<Option<Vec<u8>>, StoreError>;
    /// Makes an attempt's log ready for appending after a restart (a member cut short by a
    /// crash is cut off) and returns its uncompressed length.
    async fn resume(&self, key: &LogKey) -> Result<u64, StoreError>;
    /// Appends one gzip member to an attempt's log; `end` is the log's uncompressed length
    /// with it, larger with every member (a store may name members by it).
    async fn append(&self, key: &LogKey, member: Vec<u8>, end: u64) -> Result<(), StoreError>;
    /// The attempts of a run with a stored log, whatever its Pipeline.
    async fn attempts(&self, namespace: &str, run: &str) -> Result<Vec<LogKey>, StoreError>;
}

type Open = Arc<tokio::sync::Mutex<Option<AttemptLog>>>;

/// The gateway's writer of step logs: the store, the bound, and the attempts being written.
pub struct Logs {
    store: Arc<dyn LogStore>,
    max_bytes: u64,
    /// Attempts written since this process started and not finished yet; each behind its
    /// own lock, so one attempt's appends keep their order and others do not wait.
    open: Mutex<HashMap<LogKey, Open>>,
}

impl Logs {
    pub fn new(store: Arc<dyn LogStore>, max_bytes: u64) -> Self {
        Self {
            store,
            max_bytes,
            open: Mutex::default(),
        }
    }

    pub fn store(&self) -> &dyn LogStore {
        self.store.as_ref()
    }

    fn open(&self) -> std::sync::MutexGuard<'_, HashMap<LogKey, Open>> {
        // Entries are whole at every point a panic could happen: the map stays usable.
        self.open.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Appends lines of an attempt: the ones that fit its bound.
    pub async fn append(&self, key: &LogKey, lines: &[LogLine]) -> Result<(), StoreError> {
        if lines.is_empty() {
            return Ok(());
        }
        let entry = self.open().entry(key.clone()).or_default().clone();
        let mut state = entry.lock().await;
        if state.is_none() {
            let written = self.store.resume(key).await?;
            *state = Some(AttemptLog::new(self.max_bytes, written));
        }
        let Some(log) = state.as_mut() else {
            return Ok(());
        };
        let member = log
            .append(lines)
            .map_err(|source| self.io("encoding", key, source))?;
        if let Some(member) = member {
            self.store.append(key, member, log.written()).await?;
        }
        Ok(())
    }

    /// Ends an attempt's log: the truncation marker when lines were dropped.
    pub async fn finish(&self, key: &LogKey) -> Result<(), StoreError> {
        let Some(entry) = self.open().remove(key) else {
            return Ok(());
        };
        let mut state = entry.lock().await;
        let Some(log) = state.as_mut() else {
            return Ok(());
        };
        let now = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Micros, true);
        if let Some(marker) = log
            .finish(now)
            .map_err(|source| self.io("encoding", key, source))?
        {
            self.store.append(key, marker, log.written()).await?;
        }
        Ok(())
    }

    /// The attempts of `view`'s run that ended (their step is final, or moved to a later
    /// attempt, or the run is gone when `view` is `None`): what to [`Self::finish`].
    pub fn ended(&self, namespace: &str, run: &str, view: Option<&RunView>) -> Vec<LogKey> {
        self.open()
            .keys()
            .filter(|k| k.namespace == namespace && k.run == run)
            .filter(|k| {
                let Some(view) = view else { return true };
                view.status.steps.iter().any(|s| {
                    s.name == k.step
                        && (s.phase.is_some_and(|p| p.is_final())
                            || s.attempt.is_some_and(|a| a > k.attempt))
                })
            })
            .cloned()
            .collect()
    }

    /// Finishes the attempts of a run that ended, logging what fails (nothing waits on it).
    pub async fn finish_ended(&self, namespace: &str, run: &str, view: Option<&RunView>) {
        for key in self.ended(namespace, run, view) {
            if let Err(error) = self.finish(&key).await {
                tracing::warn!(%error, "finishing a step log failed");
            }
        }
    }

    fn io(&self, action: &'static str, key: &LogKey, source: std::io::Error) -> StoreError {
        StoreError::Io {
            action,
            key: key.to_string(),
            store: self.store.describe(),
            source,
        }
    }
}

#[cfg(test)]
mod tests;
