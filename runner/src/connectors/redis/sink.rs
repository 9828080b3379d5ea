//! The Redis sink: each row becomes a hash (`kind: hash`, one field per column) or a JSON
//! string (`kind: json`) at the key its template names (`orders:{id}`), or an entry of a
//! stream (`kind: stream`, `XADD`). Rows are sent in pipelines of one `MULTI`/`EXEC` per
//! batch. `append` adds fields to existing hashes; `upsert` replaces each key whole; with
//! `ttl` every written key expires.
//!
//! `overwrite` writes aside and swaps at the end: keys are written under a staging prefix
//! (a stream to a staging key), then one `MULTI`/`EXEC` deletes the keys the template
//! matches and renames the staged ones in (`RENAME` of the staging stream). A failed run
//! deletes its staged keys and leaves the old ones. Readers see the old keys or the new ones,
//! never a mix; the swap is one transaction, so it holds every key name in memory once.

use std::time::Duration;

use arrow::datatypes::Schema;
use async_trait::async_trait;
use futures::StreamExt;
use redis::aio::MultiplexedConnection;
use synqx_api::pipeline::{Destination, RedisWriteKind, WriteMode};

use super::config::RedisConfig;
use super::connect::{connect, failure};
use super::types::Cells;
use crate::engine::{Counters, SchemaStream, Sink, WriteOutcome, WriteRequest};
use crate::error::{Error, Result};

/// Keys renamed or deleted per command batch of the swap, and rows per pipeline.
const CHUNK: usize = 1000;

/// What a destination asks of the sink, checked without I/O.
pub struct Options {
    pub kind: RedisWriteKind,
    pub ttl: Option<Duration>,
}

impl Options {
    /// The destination's `redis` options: a TTL that parses, and a mode the kind supports.
    pub fn of(settings: &RedisConfig, destination: &Destination) -> Result<Options> {
        let at = format!("{}: \"{}\"", settings.at(), destination.asset.fqn.trim());
        let options = destination.redis.clone().unwrap_or_default();
        let kind = options.kind.unwrap_or_default();
        let ttl = options
            .ttl
            .as_deref()
            .map(synqx_api::duration::parse_duration)
            .transpose()
            .map_err(|e| Error::Config(format!("{at}: redis.ttl: {e}")))?;
        if kind == RedisWriteKind::Stream && destination.mode() == WriteMode::Upsert {
            return Err(Error::Config(format!(
                "{at}: a stream only appends entries; upsert needs kind hash or json"
            )));
        }
        if destination.asset.fqn.trim().is_empty() {
            return Err(Error::Config(format!(
                "{at}: the asset is empty (write a key template such as orders:{{id}}, or a stream key)"
            )));
        }
        Ok(Options { kind, ttl })
    }
}

/// Writes rows to one Redis Connection.
pub struct RedisSink {
    settings: RedisConfig,
}

impl RedisSink {
    pub fn new(settings: RedisConfig) -> Self {
        Self { settings }
    }
}

/// A key template: literal text and `{column}` placeholders.
#[derive(Debug, PartialEq, Eq)]
pub struct Template {
    parts: Vec<Part>,
}

#[derive(Debug, PartialEq, Eq)]
enum Part {
    Text(String),
    Column(usize),
}

impl Template {
    /// Parses `orders:{id}` against the columns of `schema`.
    pub fn parse(text: &str, schema: &Schema) -> std::result::Result<Self, String> {
        let mut parts = Vec::new();
        let mut rest = text;
        while let Some(open) = rest.find('{') {
            let Some(close) = rest[open..].find('}').map(|c| c + open) else {
                return Err(format!(
                    "key template \"{text}\" has a '{{' without its '}}'"
                ));
            };
            if open > 0 {
                parts.push(Part::Text(rest[..open].to_string()));
            }
            let name = &rest[open + 1..close];
            let index = schema.index_of(name).map_err(|_| {
                format!(
                    "key template \"{text}\" names column \"{name}\", which the rows do not have (columns: {})",
                    schema.fields().iter().map(|f| f.name().as_str()).collect::<Vec<_>>().join(", ")
                )
            })?;
            parts.push(Part::Column(index));
            rest = &rest[close + 1..];
        }
        if !rest.is_empty() {
            parts.push(Part::Text(rest.to_string()));
        }
        if !parts.iter().any(|p| matches!(p, Part::Column(_))) {
            return Err(format!(
                "key template \"{text}\" has no {{column}}: every row would write the same key"
            ));
        }
        Ok(Self { parts })
    }

    /// The key of a row, or the column whose null leaves it without one.
    fn key(&self, cells: &Cells<'_>, row: usize) -> std::result::Result<String, usize> {
        let mut key = String::new();
        for part in &self.parts {
            match part {
                Part::Text(t) => key.push_str(t),
                Part::Column(c) => key.push_str(&cells.text(*c, row).ok_or(*c)?),
            }
        }
        Ok(key)
    }

    /// The glob that matches every key the template can make.
    pub fn pattern(&self) -> String {
        self.parts
            .iter()
            .map(|p| match p {
                Part::Text(t) => escape_glob(t),
                Part::Column(_) => "*".to_string(),
            })
            .collect()
    }
}

#[async_trait]
impl Sink for RedisSink {
    async fn write(
        &self,
        request: &WriteRequest,
        input: SchemaStream,
        counters: &Counters,
    ) -> Result<WriteOutcome> {
        let s = &self.settings;
        let spec = &request.spec;
        let fqn = spec.asset.fqn.trim();
        let mode = spec.mode();
        let at = format!("{}: \"{fqn}\"", s.at());
        let Options { kind, ttl } = Options::of(s, spec)?;
        let template = match kind {
            RedisWriteKind::Stream => None,
            _ => Some(
                Template::parse(fqn, &input.schema)
                    .map_err(|e| Error::Config(format!("{at}: {e}")))?,
            ),
        };
        let mut db = connect(s).await?;
        // Overwrite writes under a prefix no template of ours produces, unique to this write.
        let staging = (mode == WriteMode::Overwrite).then(|| {
            let nanos = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos())
                .unwrap_or(0);
            format!("synqx-staging:{}:{nanos}:", std::process::id())
        });
        let written = self
            .write_rows(
                &mut db,
                input,
                kind,
                template.as_ref(),
                staging.as_deref(),
                ttl,
                mode,
                counters,
                fqn,
            )
            .await;
        let outcome = match (written, &staging) {
            (Ok(outcome), None) => return Ok(outcome),
            (Ok(outcome), Some(prefix)) => self
                .swap(&mut db, prefix, fqn, template.as_ref())
                .await
                .map(|()| outcome),
            (Err(e), _) => Err(e),
        };
        if outcome.is_err()
            && let Some(prefix) = &staging
        {
            // Best effort: the staged keys are garbage either way; the error that matters is the one above.
            let _ = delete_matching(&mut db, &format!("{}*", escape_glob(prefix))).await;
        }
        outcome
    }
}

impl RedisSink {
    #[allow(clippy::too_many_arguments)]
    async fn write_rows(
        &self,
        db: &mut MultiplexedConnection,
        mut input: SchemaStream,
        kind: RedisWriteKind,
        template: Option<&Template>,
        staging: Option<&str>,
        ttl: Option<Duration>,
        mode: WriteMode,
        counters: &Counters,
        fqn: &str,
    ) -> Result<WriteOutcome> {
        let at = format!("{}: \"{fqn}\"", self.settings.at());
        let s = &self.settings;
        let mut outcome = WriteOutcome::default();
        let prefix = staging.unwrap_or_default();
        let stream_key = format!("{prefix}{fqn}");
        while let Some(batch) = input.stream.next().await {
            let batch = batch?;
            // Formatters are not Send: build the batch's pipelines first, then send them.
            let pipes = {
                let mut pipes = Vec::new();
                let cells = Cells::new(&batch)?;
                let mut start = 0;
                while start < batch.num_rows() {
                    let end = (start + CHUNK).min(batch.num_rows());
                    let mut pipe = redis::pipe();
                    pipe.atomic();
                    let mut bytes = 0u64;
                    for row in start..end {
                        match (kind, template) {
                            (RedisWriteKind::Stream, _) => {
                                let fields = cells.fields(row);
                                if fields.is_empty() {
                                    continue;
                                }
                                let cmd = pipe.cmd("XADD").arg(&stream_key).arg("*");
                                for (k, v) in &fields {
                                    bytes += (k.len() + v.len()) as u64;
                                    cmd.arg(*k).arg(v);
                                }
                            }
                            (_, Some(template)) => {
                                let key = template.key(&cells, row).map_err(|c| {
                                Error::BadRow(format!(
                                    "{at}: row {} has no value in column \"{}\", which the key template needs",
                                    outcome.rows + (row - start) as u64 + 1,
                                    batch.schema().field(c).name()
                                ))
                            })?;
                                let key = format!("{prefix}{key}");
                                if kind == RedisWriteKind::Json {
                                    let text =
                                        serde_json::Value::Object(cells.json(row)).to_string();
                                    bytes += text.len() as u64;
                                    let cmd = pipe.cmd("SET").arg(&key).arg(text);
                                    if let Some(ttl) = ttl {
                                        cmd.arg("PX").arg(ttl.as_millis() as u64);
                                    }
                                } else {
                                    let fields = cells.fields(row);
                                    if mode == WriteMode::Upsert {
                                        pipe.cmd("DEL").arg(&key).ignore();
                                    }
                                    if fields.is_empty() {
                                        continue;
                                    }
                                    let cmd = pipe.cmd("HSET").arg(&key);
                                    for (k, v) in &fields {
                                        bytes += (k.len() + v.len()) as u64;
                                        cmd.arg(*k).arg(v);
                                    }
                                    if let Some(ttl) = ttl {
                                        pipe.cmd("PEXPIRE")
                                            .arg(&key)
                                            .arg(ttl.as_millis() as u64)
                                            .ignore();
                                    }
                                }
                            }
                            (_, None) => {}
                        }
                    }
                    pipes.push((pipe, (end - start) as u64, bytes));
                    start = end;
                }
                pipes
            };
            for (pipe, rows, bytes) in pipes {
                pipe.query_async::<()>(db)
                    .await
                    .map_err(|e| failure(s, &format!("writing \"{fqn}\" to"), e))?;
                outcome.count(counters, rows, bytes);
            }
        }
        Ok(outcome)
    }

    /// Swaps the staged keys in: one transaction deletes the old keys and renames the new.
    async fn swap(
        &self,
        db: &mut MultiplexedConnection,
        prefix: &str,
        fqn: &str,
        template: Option<&Template>,
    ) -> Result<()> {
        let s = &self.settings;
        let mut pipe = redis::pipe();
        pipe.atomic();
        let Some(template) = template else {
            // A stream: one key, renamed over the old one (or the old one deleted when no row
            // was written, so the stream is empty as the source was).
            let staged = format!("{prefix}{fqn}");
            let exists: bool = redis::cmd("EXISTS")
                .arg(&staged)
                .query_async(db)
                .await
                .map_err(|e| failure(s, "checking the staged stream on", e))?;
            if exists {
                pipe.cmd("RENAME").arg(&staged).arg(fqn).ignore();
            } else {
                pipe.cmd("DEL").arg(fqn).ignore();
            }
            return pipe
                .query_async::<()>(db)
                .await
                .map_err(|e| failure(s, &format!("swapping stream \"{fqn}\" in on"), e));
        };
        let old = scan(db, &template.pattern())
            .await
            .map_err(|e| failure(s, "listing the keys to replace on", e))?;
        let staged = scan(db, &format!("{}*", escape_glob(prefix)))
            .await
            .map_err(|e| failure(s, "listing the staged keys on", e))?;
        for keys in old.chunks(CHUNK) {
            pipe.cmd("DEL").arg(keys).ignore();
        }
        for key in &staged {
            pipe.cmd("RENAME")
                .arg(key)
                .arg(&key[prefix.len()..])
                .ignore();
        }
        pipe.query_async::<()>(db)
            .await
            .map_err(|e| failure(s, &format!("swapping the keys of \"{fqn}\" in on"), e))
    }
}

/// Every key matching `pattern`.
async fn scan(db: &mut MultiplexedConnection, pattern: &str) -> redis::RedisResult<Vec<String>> {
    let mut keys = Vec::new();
    let mut cursor = 0u64;
    loop {
        let (next, found): (u64, Vec<String>) = redis::cmd("SCAN")
            .arg(cursor)
            .arg("MATCH")
            .arg(pattern)
            .arg("COUNT")
            .arg(CHUNK)
            .query_async(db)
            .await?;
        keys.extend(found);
        if next == 0 {
            return Ok(keys);
        }
        cursor = next;
    }
}

async fn delete_matching(db: &mut MultiplexedConnection, pattern: &str) -> redis::RedisResult<()> {
    let keys = scan(db, pattern).await?;
    for chunk in keys.chunks(CHUNK) {
        redis::cmd("DEL").arg(chunk).query_async::<()>(db).await?;
    }
    Ok(())
}

/// Text matched literally by a `SCAN MATCH` glob.
fn escape_glob(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        if matches!(c, '*' | '?' | '[' | ']' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}
