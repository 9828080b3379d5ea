//! Reading the keys that match a pattern, ahead of their conversion. Each round trip is one
//! pipeline: `HGETALL` for every key the last `SCAN` returned and the next `SCAN`, so 1,000
//! keys cost one round trip, not one for the keys, one for their types and one for their
//! values. A key that answers `WRONGTYPE` is asked for again with `GET` (strings); one that
//! refuses that too is neither a hash nor a string and is counted as skipped. A task of its
//! own does the reading, a few chunks ahead, so the server, the driver's parsing and the
//! conversion to rows run at the same time.

use redis::aio::MultiplexedConnection;
use redis::{Cmd, RedisError, Value};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use super::config::RedisConfig;
use super::connect::failure;
use crate::error::Result;

/// Keys asked for per `SCAN`.
pub const CHUNK: usize = 1000;

/// Chunks read ahead of the conversion: enough that the server never waits on it, few
/// enough that memory stays a few thousand keys.
const AHEAD: usize = 2;

/// What one key read as.
pub enum Read {
    /// A hash's fields and values.
    Hash(Vec<(String, String)>),
    /// A string's text.
    Text(String),
}

/// The keys of one round trip that still existed when read, with how many were skipped.
pub struct Fetched {
    pub keys: Vec<(String, Read)>,
    pub skipped: u64,
}

/// Starts reading the keys matching `pattern`; the chunks arrive in the receiver, an error
/// as its last item, and the task ends when they do. Dropping the receiver stops the reading.
pub fn spawn(
    db: MultiplexedConnection,
    settings: RedisConfig,
    pattern: String,
) -> (mpsc::Receiver<Result<Fetched>>, JoinHandle<()>) {
    let (tx, rx) = mpsc::channel(AHEAD);
    let task = tokio::spawn(async move {
        if let Err(e) = fetch(db, &settings, &pattern, &tx).await {
            let _ = tx.send(Err(e)).await;
        }
    });
    (rx, task)
}

fn scan(cursor: u64, pattern: &str) -> Cmd {
    let mut cmd = redis::cmd("SCAN");
    cmd.arg(cursor)
        .arg("MATCH")
        .arg(pattern)
        .arg("COUNT")
        .arg(CHUNK);
    cmd
}

async fn fetch(
    mut db: MultiplexedConnection,
    settings: &RedisConfig,
    pattern: &str,
    tx: &mpsc::Sender<Result<Fetched>>,
) -> Result<()> {
    let scanning = |e| failure(settings, &format!("scanning keys \"{pattern}\" on"), e);
    let (mut cursor, mut keys): (u64, Vec<String>) = scan(0, pattern)
        .query_async(&mut db)
        .await
        .map_err(scanning)?;
    loop {
        let more = cursor != 0;
        if keys.is_empty() && !more {
            return Ok(());
        }
        let mut pipe = redis::pipe();
        pipe.ignore_errors();
        for key in &keys {
            pipe.cmd("HGETALL").arg(key);
        }
        if more {
            pipe.add_command(scan(cursor, pattern));
        }
        let mut answers: Vec<Value> = pipe
            .query_async(&mut db)
            .await
            .map_err(|e| failure(settings, "reading keys on", e))?;
        let next = if more {
            let answer = answers.pop().unwrap_or(Value::Nil);
            Some(scanned(answer).map_err(scanning)?)
        } else {
            None
        };
        let fetched = read(&mut db, settings, keys, answers).await?;
        if (!fetched.keys.is_empty() || fetched.skipped > 0) && tx.send(Ok(fetched)).await.is_err()
        {
            // The step stopped reading.
            return Ok(());
        }
        match next {
            Some((c, k)) => (cursor, keys) = (c, k),
            None => return Ok(()),
        }
    }
}

/// A `SCAN` answer: the next cursor and the keys.
fn scanned(answer: Value) -> std::result::Result<(u64, Vec<String>), RedisError> {
    match answer {
        Value::ServerError(e) => Err(e.into()),
        other => Ok(redis::from_redis_value(other)?),
    }
}

/// The `HGETALL` answers of `keys`, with the keys that are not hashes read with `GET`.
async fn read(
    db: &mut MultiplexedConnection,
    settings: &RedisConfig,
    keys: Vec<String>,
    answers: Vec<Value>,
) -> Result<Fetched> {
    let mut fetched = Fetched {
        keys: Vec::with_capacity(keys.len()),
        skipped: 0,
    };
    let mut strings = Vec::new();
    for (key, answer) in keys.into_iter().zip(answers) {
        match answer {
            Value::ServerError(e) if e.code() == "WRONGTYPE" => strings.push(key),
            Value::ServerError(e) => {
                return Err(failure(
                    settings,
                    &format!("reading hash \"{key}\" on"),
                    e.into(),
                ));
            }
            answer => {
                let fields = pairs(answer);
                // A key deleted between SCAN and HGETALL answers an empty hash: it is gone.
                if !fields.is_empty() {
                    fetched.keys.push((key, Read::Hash(fields)));
                }
            }
        }
    }
    if strings.is_empty() {
        return Ok(fetched);
    }
    let mut pipe = redis::pipe();
    pipe.ignore_errors();
    for key in &strings {
        pipe.cmd("GET").arg(key);
    }
    let answers: Vec<Value> = pipe
        .query_async(db)
        .await
        .map_err(|e| failure(settings, "reading keys on", e))?;
    for (key, answer) in strings.into_iter().zip(answers) {
        match answer {
            Value::ServerError(e) if e.code() == "WRONGTYPE" => fetched.skipped += 1,
            Value::ServerError(e) => {
                return Err(failure(
                    settings,
                    &format!("reading string \"{key}\" on"),
                    e.into(),
                ));
            }
            // Deleted since it was scanned.
            Value::Nil => {}
            answer => fetched.keys.push((key, Read::Text(text(answer)))),
        }
    }
    Ok(fetched)
}

/// A flat array (or map) of field, value, field, value… as pairs of text.
pub fn pairs(value: Value) -> Vec<(String, String)> {
    match value {
        Value::Array(items) => {
            let mut out = Vec::with_capacity(items.len() / 2);
            let mut items = items.into_iter();
            while let (Some(k), Some(v)) = (items.next(), items.next()) {
                out.push((text(k), text(v)));
            }
            out
        }
        Value::Map(items) => items.into_iter().map(|(k, v)| (text(k), text(v))).collect(),
        _ => Vec::new(),
    }
}

/// A Redis value as text (bytes that are not UTF-8 are replaced).
pub fn text(value: Value) -> String {
    match value {
        Value::BulkString(b) => String::from_utf8(b)
            .unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned()),
        Value::SimpleString(s) => s,
        Value::Int(i) => i.to_string(),
        Value::Double(d) => d.to_string(),
        Value::Boolean(b) => b.to_string(),
        Value::VerbatimString { text, .. } => text,
        _ => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bulk(s: &str) -> Value {
        Value::BulkString(s.as_bytes().to_vec())
    }

    #[test]
    fn hash_answers_become_pairs_of_text() {
        let answer = Value::Array(vec![bulk("id"), bulk("7"), bulk("name"), bulk("Ada")]);
        assert_eq!(
            pairs(answer),
            [
                ("id".to_string(), "7".to_string()),
                ("name".to_string(), "Ada".to_string())
            ]
        );
        let map = Value::Map(vec![(bulk("n"), Value::Int(3))]);
        assert_eq!(pairs(map), [("n".to_string(), "3".to_string())]);
        // An odd element (never sent by a server) is dropped, not paired with the next key.
        assert_eq!(
            pairs(Value::Array(vec![bulk("a"), bulk("1"), bulk("b")])),
            [("a".to_string(), "1".to_string())]
        );
    }

    #[test]
    fn text_replaces_bytes_that_are_not_utf8() {
        assert_eq!(
            text(Value::BulkString(vec![b'o', 0xff, b'k'])),
            "o\u{fffd}k"
        );
        assert_eq!(text(Value::Nil), "");
    }

    #[test]
    fn scan_answers_give_the_cursor_and_keys() {
        let answer = Value::Array(vec![bulk("17"), Value::Array(vec![bulk("a"), bulk("b")])]);
        assert_eq!(scanned(answer).unwrap(), (17, vec!["a".into(), "b".into()]));
        assert!(scanned(Value::Int(3)).is_err());
    }
}
