//! The object-storage store: the bucket of an `s3` Connection (through `synqx_s3`, as the
//! runner reaches it). Objects cannot be appended to, so each gzip member is an object of its
//! own, named by the log's uncompressed length once it is appended:
//!
//! `<root><namespace>/<pipeline>/<run>/<step>/<attempt>/<end, 20 digits>.jsonl.gz`
//!
//! The zero-padded `end` grows with every member, so a listing returns an attempt's members
//! in order and the last one says how long the log is (what a restarted gateway resumes
//! from) without reading it. A PUT is whole or absent: no member is ever cut short.

use std::collections::BTreeSet;
use std::sync::Arc;

use async_trait::async_trait;
use futures::TryStreamExt;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};
use synqx_api::redact::Redactor;

use super::{LogKey, LogStore, StoreError, checked};

const SUFFIX: &str = ".jsonl.gz";

/// Step logs in a bucket, below a root prefix.
pub struct S3Store {
    store: Arc<dyn ObjectStore>,
    /// `namespace/name` of the Connection, for messages.
    connection: String,
    bucket: String,
    /// Empty, or segments each ending in `/`: the Connection's prefix and the logs prefix.
    root: String,
    /// Knows the Connection's credentials: every reason of a failed request passes through it.
    redactor: Redactor,
}

/// The name of the member whose log is `end` bytes long once it is appended.
pub fn member_name(end: u64) -> String {
    format!("{end:020}{SUFFIX}")
}

/// The `end` of a member's name; `None` for any other object.
pub fn member_end(name: &str) -> Option<u64> {
    let digits = name.strip_suffix(SUFFIX)?;
    (digits.len() == 20 && digits.bytes().all(|b| b.is_ascii_digit()))
        .then(|| digits.parse().ok())
        .flatten()
}

/// Key prefix of an attempt's members below the root.
pub fn attempt_dir(key: &LogKey) -> String {
    format!(
        "{}/{}/{}/{}/{}/",
        key.namespace, key.pipeline, key.run, key.step, key.attempt
    )
}

/// The members among `names` (object names of one attempt), in the order they were appended.
pub fn in_order<'a>(names: impl IntoIterator<Item = &'a str>) -> Vec<(u64, &'a str)> {
    let mut members: Vec<(u64, &str)> = names
        .into_iter()
        .filter_map(|n| member_end(n).map(|end| (end, n)))
        .collect();
    // Listings come back in key order already; sorting by `end` does not depend on it.
    members.sort_unstable();
    members
}

impl S3Store {
    /// A store in `store`, the bucket `bucket` of Connection `connection` (`namespace/name`),
    /// below `root` (empty, or ending in `/`).
    pub fn new(
        store: Arc<dyn ObjectStore>,
        connection: String,
        bucket: String,
        root: String,
        redactor: Redactor,
    ) -> Self {
        Self {
            store,
            connection,
            bucket,
            root,
            redactor,
        }
    }

    fn path(&self, relative: &str) -> Path {
        // Every part below the root is a checked name and the root is normalised, so the
        // text is a valid path; `from` would escape it otherwise, never climb out.
        Path::from(format!("{}{relative}", self.root).trim_end_matches('/'))
    }

    fn url(&self, relative: &str) -> String {
        format!("s3://{}/{}{relative}", self.bucket, self.root)
    }

    fn fail(
        &self,
        action: &'static str,
        relative: &str,
        source: object_store::Error,
    ) -> StoreError {
        StoreError::Object {
            action,
            connection: self.connection.clone(),
            url: self.url(relative),
            reason: synqx_s3::reason(&source, &self.redactor),
            source,
        }
    }

    /// The object names directly below `relative` (one segment each, without the prefix),
    /// and the names of the "folders" there.
    async fn children(&self, relative: &str) -> Result<(Vec<String>, Vec<String>), StoreError> {
        let listing = self
            .store
            .list_with_delimiter(Some(&self.path(relative)))
            .await
            .map_err(|e| self.fail("listing", relative, e))?;
        let name = |p: &Path| p.filename().map(str::to_string);
        let objects = listing
            .objects
            .iter()
            .filter_map(|o| name(&o.location))
            .collect();
        let folders = listing.common_prefixes.iter().filter_map(name).collect();
        Ok((objects, folders))
    }

    /// An attempt's members in order, as names below the attempt's prefix.
    async fn members(&self, key: &LogKey) -> Result<Vec<(u64, String)>, StoreError> {
        let dir = attempt_dir(key);
        let names: Vec<String> = self
            .store
            .list(Some(&self.path(&dir)))
            .map_ok(|o| o.location.filename().map(str::to_string))
            .try_collect::<Vec<_>>()
            .await
            .map_err(|e| self.fail("listing", &dir, e))?
            .into_iter()
            .flatten()
            .collect();
        Ok(in_order(names.iter().map(String::as_str))
            .into_iter()
            .map(|(end, name)| (end, name.to_string()))
            .collect())
    }
}

#[async_trait]
impl LogStore for S3Store {
    fn describe(&self) -> String {
        format!("{} (Connection {})", self.url(""), self.connection)
    }

    async fn read(&self, key: &LogKey) -> Result<Option<Vec<u8>>, StoreError> {
        let members = self.members(key).await?;
        if members.is_empty() {
            return Ok(None);
        }
        let dir = attempt_dir(key);
        let mut log = Vec::new();
        for (_, name) in members {
            let relative = format!("{dir}{name}");
            let body = async { self.store.get(&self.path(&relative)).await?.bytes().await };
            let bytes = body.await.map_err(|e| self.fail("reading", &relative, e))?;
            log.extend_from_slice(&bytes);
        }
        Ok(Some(log))
    }

    async fn resume(&self, key: &LogKey) -> Result<u64, StoreError> {
        Ok(self.members(key).await?.last().map_or(0, |(end, _)| *end))
    }

    async fn append(&self, key: &LogKey, member: Vec<u8>, end: u64) -> Result<(), StoreError> {
        let relative = format!("{}{}", attempt_dir(key), member_name(end));
        self.store
            .put(&self.path(&relative), PutPayload::from(member))
            .await
            .map_err(|e| self.fail("writing", &relative, e))?;
        Ok(())
    }

    async fn attempts(&self, namespace: &str, run: &str) -> Result<Vec<LogKey>, StoreError> {
        let namespace = checked("namespace", namespace)?;
        let run = checked("PipelineRun", run)?;
        let mut keys = BTreeSet::new();
        let (_, pipelines) = self.children(&format!("{namespace}/")).await?;
        for pipeline in pipelines {
            let run_dir = format!("{namespace}/{pipeline}/{run}/");
            let (_, steps) = self.children(&run_dir).await?;
            for step in steps {
                let (_, attempts) = self.children(&format!("{run_dir}{step}/")).await?;
                for attempt in attempts.iter().filter_map(|a| a.parse::<u32>().ok()) {
                    keys.extend(LogKey::new(&namespace, &pipeline, &run, &step, attempt).ok());
                }
            }
        }
        Ok(keys.into_iter().collect())
    }
}

/// A store in memory, of Connection `ops/lake` below `raw/synqx-logs/`, and its objects.
#[cfg(test)]
pub fn in_memory() -> (Arc<object_store::memory::InMemory>, Arc<S3Store>) {
    let memory = Arc::new(object_store::memory::InMemory::new());
    let store = S3Store::new(
        memory.clone(),
        "ops/lake".into(),
        "lake".into(),
        "raw/synqx-logs/".into(),
        Redactor::default(),
    );
    (memory, Arc::new(store))
}

#[cfg(test)]
mod tests {
    use object_store::memory::InMemory;

    use super::super::Logs;
    use super::super::gzip::decode;
    use super::*;
    use synqx_api::gateway::LogLine;

    fn key(step: &str, attempt: u32) -> LogKey {
        LogKey::new("etl", "orders", "orders-1", step, attempt).unwrap_or_else(|e| panic!("{e}"))
    }

    fn line(n: usize) -> LogLine {
        LogLine {
            time: format!("2026-12-02T10:00:{:02}.000000Z", n % 60),
            level: None,
            text: format!("line {n}"),
        }
    }

    async fn names(memory: &InMemory) -> Vec<String> {
        let all: Vec<_> = memory
            .list(None)
            .try_collect()
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        let mut names: Vec<String> = all.into_iter().map(|o| o.location.to_string()).collect();
        names.sort();
        names
    }

    #[test]
    fn members_are_named_by_their_end_so_key_order_is_append_order() {
        assert_eq!(member_name(0), "00000000000000000000.jsonl.gz");
        assert_eq!(member_name(u64::MAX), "18446744073709551615.jsonl.gz");
        assert_eq!(member_end(&member_name(1234)), Some(1234));
        for other in ["1234.jsonl.gz", "0000000000000000123x.jsonl.gz", "x", ""] {
            assert_eq!(member_end(other), None, "{other}");
        }
        assert_eq!(attempt_dir(&key("load", 3)), "etl/orders/orders-1/load/3/");
        // Lexical order of the names is numeric order of the ends (9 < 10 < 100).
        let ends = [100, 9, 10, 12_000_000_000];
        let mut by_name: Vec<String> = ends.iter().map(|e| member_name(*e)).collect();
        by_name.sort();
        let parsed: Vec<u64> = by_name.iter().filter_map(|n| member_end(n)).collect();
        assert_eq!(parsed, [9, 10, 100, 12_000_000_000]);
        // A listing in any order reads back in append order; other objects are left out.
        let listed = [
            member_name(100),
            "notes.txt".into(),
            member_name(9),
            member_name(10),
        ];
        let order: Vec<u64> = in_order(listed.iter().map(String::as_str))
            .into_iter()
            .map(|(end, _)| end)
            .collect();
        assert_eq!(order, [9, 10, 100]);
    }

    #[tokio::test]
    async fn each_batch_is_an_object_and_the_log_reads_back_whole_after_a_restart() {
        let (memory, store) = in_memory();
        let logs = Logs::new(store.clone(), 1 << 20);
        let key = key("load", 1);
        let lines: Vec<LogLine> = (0..6).map(line).collect();
        for batch in [&lines[..2], &lines[2..4]] {
            logs.append(&key, batch)
                .await
                .unwrap_or_else(|e| panic!("{e}"));
        }
        let objects = names(&memory).await;
        assert_eq!(objects.len(), 2, "{objects:?}");
        assert!(
            objects
                .iter()
                .all(|n| n.starts_with("raw/synqx-logs/etl/orders/orders-1/load/1/")),
            "{objects:?}"
        );
        let resumed_at = store.resume(&key).await.unwrap_or_else(|e| panic!("{e}"));
        let first_two: u64 = lines[..4]
            .iter()
            .map(|l| serde_json::to_vec(l).map_or(0, |v| v.len() as u64 + 1))
            .sum();
        assert_eq!(resumed_at, first_two);
        // A new gateway takes the attempt over where the store says it ends.
        let restarted = Logs::new(store.clone(), 1 << 20);
        restarted
            .append(&key, &lines[4..])
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        let back = store.read(&key).await.unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(decode(&back.unwrap_or_default()), lines);
        let missing = store
            .read(&LogKey {
                attempt: 9,
                ..key.clone()
            })
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(missing, None);
    }
}
