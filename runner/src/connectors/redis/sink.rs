//! The Redis sink: each row becomes a hash (`kind: hash`, one field per column) or a JSON
//! string (`kind: json`) at the key its template names (`orders:{id}`), or an entry of a
//! stream (`kind: stream`, `XADD`). Rows are sent in pipelines of one `MULTI`/`EXEC` per
//! 1,000 rows, each also recording its keys as the template's ([`super::owned`]). `append`
//! adds fields to existing hashes; `upsert` replaces each key whole; with `ttl` every written
//! key expires (streams take no `ttl`: their entries cannot expire one by one).
//!
//! `overwrite` writes aside and swaps at the end: keys are written under a staging prefix
//! (a stream to a staging key), then one `MULTI`/`EXEC` deletes exactly the keys recorded for
//! the template and renames the staged ones in (`RENAME` of the staging stream). A failed run
//! deletes its staged keys and leaves the old ones; a killed one leaves staged keys that
//! expire. Readers see the old keys or the new ones, never a mix; the swap is one
//! transaction, so it holds every key name in memory once.

use std::time::Duration;

use async_trait::async_trait;
use futures::StreamExt;
use redis::aio::MultiplexedConnection;
use synqx_api::pipeline::{Destination, RedisWriteKind, WriteMode};

use super::config::RedisConfig;
use super::connect::{connect, failure};
use super::owned::{Clock, STAGING_TTL, Staged, index_key, millis, prune, swap_keys, swap_stream};
use super::template::Template;
use super::types::Cells;
use crate::engine::{Counters, SchemaStream, Sink, WriteOutcome, WriteRequest};
use crate::error::{BadRow, Error, Result};

/// Rows per pipeline.
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
        if kind == RedisWriteKind::Stream && ttl.is_some() {
            return Err(Error::Config(format!(
                "{at}: redis.ttl applies to keys written as kind hash or json; a stream's entries cannot expire one by one: remove redis.ttl (trim the stream with XTRIM instead)"
            )));
        }
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

/// How one write turns rows into commands.
struct Plan<'a> {
    fqn: &'a str,
    kind: RedisWriteKind,
    /// The key template (not for streams), and the set recording its keys.
    template: Option<(Template, String)>,
    ttl: Option<Duration>,
    mode: WriteMode,
    clock: Clock,
}

#[async_trait]
impl Sink for RedisSink {
    async fn write(&self, request: &WriteRequest, input: SchemaStream) -> Result<WriteOutcome> {
        let s = &self.settings;
        let spec = &request.spec;
        let fqn = spec.asset.fqn.trim();
        let mode = spec.mode();
        let at = format!("{}: \"{fqn}\"", s.at());
        let Options { kind, ttl } = Options::of(s, spec)?;
        let template = match kind {
            RedisWriteKind::Stream => None,
            _ => {
                let template = Template::parse(fqn, &input.schema)
                    .map_err(|e| Error::Config(format!("{at}: {e}")))?;
                let index = index_key(&template);
                Some((template, index))
            }
        };
        let mut db = connect(s).await?;
        let clock = Clock::read(&mut db)
            .await
            .map_err(|e| failure(s, "reading the clock of", e))?;
        let mut staged = (mode == WriteMode::Overwrite).then(Staged::unique);
        if staged.is_none()
            && let Some((_, index)) = &template
        {
            prune(&mut db, index, &clock)
                .await
                .map_err(|e| failure(s, &format!("forgetting expired keys of \"{fqn}\" on"), e))?;
        }
        let plan = Plan {
            fqn,
            kind,
            template,
            ttl,
            mode,
            clock,
        };
        let written = self
            .write_rows(&mut db, input, &plan, staged.as_mut(), &request.counters)
            .await;
        let Some(staged) = staged else {
            return written;
        };
        let outcome = match written {
            Ok(outcome) => match &plan.template {
                Some((template, _)) => swap_keys(&mut db, s, fqn, template, &staged, ttl).await,
                None => swap_stream(&mut db, s, fqn, &staged).await,
            }
            .map(|()| outcome),
            Err(e) => Err(e),
        };
        if outcome.is_err() {
            // Best effort: the staged keys expire anyway; the error that matters is the one above.
            let _ = staged.discard(&mut db).await;
        }
        outcome
    }

    /// Entries appended to a stream stay after a failure; keys are written whole (or their
    /// fields set), so writing them again is exact.
    fn restartable(&self, destination: &Destination) -> bool {
        let stream =
            destination.redis.as_ref().and_then(|r| r.kind) == Some(RedisWriteKind::Stream);
        !(stream && destination.mode() == WriteMode::Append)
    }
}

impl RedisSink {
    async fn write_rows(
        &self,
        db: &mut MultiplexedConnection,
        mut input: SchemaStream,
        plan: &Plan<'_>,
        mut staged: Option<&mut Staged>,
        counters: &Counters,
    ) -> Result<WriteOutcome> {
        let s = &self.settings;
        let fqn = plan.fqn;
        let at = format!("{}: \"{fqn}\"", s.at());
        let mut outcome = WriteOutcome::default();
        let staging_ms = millis(STAGING_TTL);
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
                    let score = plan.clock.score(plan.ttl);
                    // Staged keys live STAGING_TTL; the destination's ttl is set at the swap.
                    let expire = match staged {
                        Some(_) => Some(staging_ms),
                        None => plan.ttl.map(millis),
                    };
                    for row in start..end {
                        let fields = match plan.kind {
                            RedisWriteKind::Json => Vec::new(),
                            _ => cells.fields(row),
                        };
                        let Some((template, index)) = &plan.template else {
                            if fields.is_empty() {
                                continue;
                            }
                            let key = match staged.as_deref_mut() {
                                Some(st) => {
                                    st.keys.insert(fqn.to_string());
                                    st.staged(fqn)
                                }
                                None => fqn.to_string(),
                            };
                            let cmd = pipe.cmd("XADD").arg(&key).arg("*");
                            for (k, v) in &fields {
                                bytes += (k.len() + v.len()) as u64;
                                cmd.arg(*k).arg(v);
                            }
                            continue;
                        };
                        let key = template.key(&cells, row).map_err(|c| {
                            Error::from(
                                BadRow::new(
                                    format!(
                                        "{at}: row {}",
                                        outcome.rows + (row - start) as u64 + 1
                                    ),
                                    "no value, which the key template needs",
                                )
                                .column(batch.schema().field(c).name()),
                            )
                        })?;
                        let target = match staged.as_deref() {
                            Some(st) => st.staged(&key),
                            None => key.clone(),
                        };
                        if plan.kind == RedisWriteKind::Json {
                            let text = serde_json::Value::Object(cells.json(row)).to_string();
                            bytes += text.len() as u64;
                            let cmd = pipe.cmd("SET").arg(&target).arg(text);
                            if let Some(ms) = expire {
                                cmd.arg("PX").arg(ms);
                            }
                        } else {
                            if plan.mode == WriteMode::Upsert {
                                pipe.cmd("DEL").arg(&target).ignore();
                            }
                            if fields.is_empty() {
                                continue;
                            }
                            let cmd = pipe.cmd("HSET").arg(&target);
                            for (k, v) in &fields {
                                bytes += (k.len() + v.len()) as u64;
                                cmd.arg(*k).arg(v);
                            }
                            if let Some(ms) = expire {
                                pipe.cmd("PEXPIRE").arg(&target).arg(ms).ignore();
                            }
                        }
                        match staged.as_deref_mut() {
                            Some(st) => {
                                st.keys.insert(key);
                            }
                            None => {
                                pipe.cmd("ZADD").arg(index).arg(&score).arg(key).ignore();
                            }
                        }
                    }
                    if let Some(st) = staged.as_deref()
                        && plan.template.is_none()
                        && st.keys.contains(fqn)
                    {
                        pipe.cmd("PEXPIRE")
                            .arg(st.staged(fqn))
                            .arg(staging_ms)
                            .ignore();
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
}
