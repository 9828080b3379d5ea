//! Which keys a key template owns, and the overwrite swap that replaces exactly those.
//!
//! A glob cannot say which keys a template wrote: `user:*` for `user:{id}` also matches
//! `user:sessions:1`, and `*` for `{id}` matches every key of the database, staged ones
//! included. So every key the sink writes through a template is recorded, in the same
//! `MULTI`/`EXEC` as the write, in a sorted set beside the keys: `synqx:keys:<template>`
//! (`synqx:keys:user:{id}`), scored by when the key expires (Unix ms on the server's clock,
//! `+inf` without `ttl`); each append or upsert first forgets the expired ones, so the set
//! holds about the live keys. An overwrite writes its keys under a staging prefix, then one
//! transaction deletes the recorded keys, renames the staged ones in and makes them the set.
//! Keys the template did not write (other templates', other programs', another run's staged
//! keys, or keys written before the set existed) are never deleted.
//!
//! The recorded keys are read before the transaction under `WATCH` of the set, so a write of
//! the same template in between aborts the swap, which then reads them again. Staged keys
//! expire after [`STAGING_TTL`], so a run killed before its swap leaves nothing behind for
//! longer; the swap first checks that every staged key still has at least [`SWAP_MARGIN`] to
//! live (a run longer than [`STAGING_TTL`] fails rather than swap in part of its keys).

use std::collections::HashSet;
use std::time::{Duration, Instant};

use redis::aio::MultiplexedConnection;

use super::config::RedisConfig;
use super::connect::failure;
use super::template::Template;
use crate::error::{Error, Result};

/// Where the keys of a template are recorded: this prefix and the template.
pub const INDEX_PREFIX: &str = "synqx:keys:";
/// The start of every staged key.
pub const STAGING_PREFIX: &str = "synqx-staging:";
/// How long a staged key lives if its run never swaps it in.
pub const STAGING_TTL: Duration = Duration::from_secs(24 * 60 * 60);
/// The least time to live a staged key needs when the swap starts.
pub const SWAP_MARGIN: Duration = Duration::from_secs(60);
/// Keys per command of the swap, and per pipeline of checks.
const CHUNK: usize = 1000;
/// Swaps retried when a concurrent write of the template changed its recorded keys.
const SWAP_ATTEMPTS: u32 = 5;

/// The sorted set recording the keys of `template`.
pub fn index_key(template: &Template) -> String {
    format!("{INDEX_PREFIX}{}", template.text())
}

/// The server's clock, read once and advanced by the local one, for expiry scores that agree
/// with Redis's own expiry.
pub struct Clock {
    server_ms: u64,
    started: Instant,
}

impl Clock {
    pub async fn read(db: &mut MultiplexedConnection) -> redis::RedisResult<Self> {
        let (secs, micros): (u64, u64) = redis::cmd("TIME").query_async(db).await?;
        Ok(Self {
            server_ms: secs.saturating_mul(1000).saturating_add(micros / 1000),
            started: Instant::now(),
        })
    }

    fn now_ms(&self) -> u64 {
        let elapsed = u64::try_from(self.started.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.server_ms.saturating_add(elapsed)
    }

    /// The score of a key written now with `ttl`: when it expires, or `+inf`.
    pub fn score(&self, ttl: Option<Duration>) -> String {
        match ttl {
            Some(ttl) => self.now_ms().saturating_add(millis(ttl)).to_string(),
            None => "+inf".to_string(),
        }
    }
}

/// Forgets the recorded keys of `index` that have expired.
pub async fn prune(
    db: &mut MultiplexedConnection,
    index: &str,
    clock: &Clock,
) -> redis::RedisResult<()> {
    redis::cmd("ZREMRANGEBYSCORE")
        .arg(index)
        .arg("-inf")
        .arg(format!("({}", clock.now_ms()))
        .query_async(db)
        .await
}

/// A duration in whole milliseconds, as `PX` and `PEXPIRE` take it.
pub fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// The keys an overwrite staged: written as `prefix` + key, renamed to the key at the swap.
pub struct Staged {
    pub prefix: String,
    pub keys: HashSet<String>,
}

impl Staged {
    /// A staging prefix unique to this write (process and clock).
    pub fn unique() -> Self {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0);
        Self {
            prefix: format!("{STAGING_PREFIX}{}:{nanos}:", std::process::id()),
            keys: HashSet::new(),
        }
    }

    pub fn staged(&self, key: &str) -> String {
        format!("{}{key}", self.prefix)
    }

    /// Deletes the staged keys (after a failed write).
    pub async fn discard(&self, db: &mut MultiplexedConnection) -> redis::RedisResult<()> {
        let keys: Vec<String> = self.keys.iter().map(|k| self.staged(k)).collect();
        for chunk in keys.chunks(CHUNK) {
            redis::cmd("DEL").arg(chunk).query_async::<()>(db).await?;
        }
        Ok(())
    }

    /// Fails unless every staged key still lives for at least [`SWAP_MARGIN`].
    async fn check_alive(
        &self,
        db: &mut MultiplexedConnection,
        settings: &RedisConfig,
        fqn: &str,
    ) -> Result<()> {
        let keys: Vec<&String> = self.keys.iter().collect();
        for chunk in keys.chunks(CHUNK) {
            let mut pipe = redis::pipe();
            for key in chunk {
                pipe.cmd("PTTL").arg(self.staged(key));
            }
            let ttls: Vec<i64> = pipe
                .query_async(db)
                .await
                .map_err(|e| failure(settings, "checking the staged keys on", e))?;
            // -2: gone; -1: no expiry (staged keys always have one, but it cannot run out).
            let margin = i64::try_from(millis(SWAP_MARGIN)).unwrap_or(i64::MAX);
            if let Some((key, _)) = chunk
                .iter()
                .zip(ttls)
                .find(|(_, ttl)| *ttl != -1 && *ttl < margin)
            {
                return Err(Error::Config(format!(
                    "{}: \"{fqn}\": the staged copy of key \"{key}\" expired or is about to (staged keys live {} h): the overwrite ran too long; nothing was replaced",
                    settings.at(),
                    STAGING_TTL.as_secs() / 3600
                )));
            }
        }
        Ok(())
    }
}

/// Swaps the staged keys of `template` in: one transaction deletes the keys recorded for it,
/// renames the staged ones in (with `ttl`, or persistent) and records them instead.
pub async fn swap_keys(
    db: &mut MultiplexedConnection,
    settings: &RedisConfig,
    fqn: &str,
    template: &Template,
    staged: &Staged,
    ttl: Option<Duration>,
) -> Result<()> {
    staged.check_alive(db, settings, fqn).await?;
    let index = index_key(template);
    let fail = |e: redis::RedisError| {
        failure(
            settings,
            &format!("swapping the keys of \"{fqn}\" in on"),
            e,
        )
    };
    for _ in 0..SWAP_ATTEMPTS {
        redis::cmd("WATCH")
            .arg(&index)
            .query_async::<()>(db)
            .await
            .map_err(fail)?;
        let clock = Clock::read(db).await.map_err(fail)?;
        let old: Vec<String> = redis::cmd("ZRANGE")
            .arg(&index)
            .arg(0)
            .arg(-1)
            .query_async(db)
            .await
            .map_err(fail)?;
        let mut pipe = redis::pipe();
        pipe.atomic();
        let gone: Vec<&String> = old.iter().filter(|k| !staged.keys.contains(*k)).collect();
        for chunk in gone.chunks(CHUNK) {
            pipe.cmd("DEL").arg(chunk).ignore();
        }
        pipe.cmd("DEL").arg(&index).ignore();
        let score = clock.score(ttl);
        let keys: Vec<&String> = staged.keys.iter().collect();
        for chunk in keys.chunks(CHUNK) {
            for key in chunk {
                pipe.cmd("RENAME")
                    .arg(staged.staged(key))
                    .arg(*key)
                    .ignore();
                match ttl {
                    Some(ttl) => pipe.cmd("PEXPIRE").arg(*key).arg(millis(ttl)).ignore(),
                    None => pipe.cmd("PERSIST").arg(*key).ignore(),
                };
            }
            let zadd = pipe.cmd("ZADD").arg(&index);
            for key in chunk {
                zadd.arg(&score).arg(*key);
            }
            zadd.ignore();
        }
        let done: Option<()> = pipe.query_async(db).await.map_err(fail)?;
        if done.is_some() {
            return Ok(());
        }
    }
    Err(Error::Config(format!(
        "{}: \"{fqn}\": other writes to the same key template kept changing its keys during the swap ({SWAP_ATTEMPTS} attempts); the staged keys were not swapped in: run the overwrite when nothing else writes \"{fqn}\"",
        settings.at()
    )))
}

/// Swaps a staged stream in: `RENAME` over the old one, or the old one deleted when nothing
/// was staged (the source was empty).
pub async fn swap_stream(
    db: &mut MultiplexedConnection,
    settings: &RedisConfig,
    fqn: &str,
    staged: &Staged,
) -> Result<()> {
    let mut pipe = redis::pipe();
    pipe.atomic();
    if staged.keys.contains(fqn) {
        staged.check_alive(db, settings, fqn).await?;
        pipe.cmd("RENAME").arg(staged.staged(fqn)).arg(fqn).ignore();
        pipe.cmd("PERSIST").arg(fqn).ignore();
    } else {
        pipe.cmd("DEL").arg(fqn).ignore();
    }
    pipe.query_async::<()>(db)
        .await
        .map_err(|e| failure(settings, &format!("swapping stream \"{fqn}\" in on"), e))
}
