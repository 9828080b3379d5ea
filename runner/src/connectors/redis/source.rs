//! The Redis source. The asset FQN is either a stream's key, read with `XRANGE` in entry-id
//! order (incrementally with `cursor: _id`: entries after the watermark's id), or a key
//! pattern (`orders:*`), read with `SCAN` a few chunks ahead ([`super::scan`]): hashes
//! become rows of their fields, strings rows of their JSON (see [`super::types`]). Keys of
//! other types are skipped and counted in the step's message. The first 1,000 documents
//! decide the schema; objects inside JSON strings are JSON text or, with `nested: flatten`,
//! a column per field (`customer.name`).

use std::sync::Arc;

use arrow::datatypes::{Field, Schema, SchemaRef};
use async_trait::async_trait;
use redis::aio::MultiplexedConnection;
use serde_json::{Map, Value};
use tokio::sync::mpsc;

use super::config::RedisConfig;
use super::connect::{connect, failure};
use super::scan::{self, CHUNK, Fetched, Read, pairs};
use super::types::{fields_document, string_document};
use crate::connectors::formats::infer::SAMPLE_RECORDS;
use crate::connectors::json_table::{Converter, Emitter, Inference};
use crate::connectors::json_widen::Widening;
use crate::engine::cursor::{CURSOR_ORDER, STREAM_ID_ORDER, stream_id};
use crate::engine::{ReadRequest, SchemaStream, Source};
use crate::error::{Error, Result};

/// Reads keys and streams of one Redis Connection.
pub struct RedisSource {
    settings: RedisConfig,
}

impl RedisSource {
    pub fn new(settings: RedisConfig) -> Self {
        Self { settings }
    }
}

/// Where the documents come from.
enum Reader {
    Keys {
        pattern: String,
        fetched: mpsc::Receiver<Result<Fetched>>,
        /// The reading task: awaited when its chunks end, so a task that died is an error
        /// rather than the end of the keys.
        reading: Option<tokio::task::JoinHandle<()>>,
        skipped: u64,
    },
    Stream {
        key: String,
        /// Read entries after this id (exclusive); `None` reads from the start.
        after: Option<String>,
        done: bool,
    },
}

struct Chunk {
    documents: Vec<Map<String, Value>>,
    bytes: usize,
}

impl Reader {
    async fn next(
        &mut self,
        db: &mut MultiplexedConnection,
        settings: &RedisConfig,
    ) -> Result<Option<Chunk>> {
        match self {
            Self::Keys {
                pattern,
                fetched,
                reading,
                skipped,
            } => loop {
                let Some(chunk) = fetched.recv().await else {
                    if let Some(task) = reading.take() {
                        task.await.map_err(|e| {
                            Error::internal(
                                format!("{}: reading keys \"{pattern}\"", settings.at()),
                                e,
                            )
                        })?;
                    }
                    return Ok(None);
                };
                let chunk = chunk?;
                *skipped += chunk.skipped;
                let mut documents = Vec::with_capacity(chunk.keys.len());
                let mut bytes = 0;
                for (key, read) in chunk.keys {
                    documents.push(match read {
                        Read::Hash(fields) => {
                            bytes += fields.iter().map(|(k, v)| k.len() + v.len()).sum::<usize>();
                            fields_document(("_key", &key), fields)
                        }
                        Read::Text(text) => {
                            bytes += text.len();
                            string_document(&key, text)
                        }
                    });
                }
                if !documents.is_empty() {
                    return Ok(Some(Chunk { documents, bytes }));
                }
            },
            Self::Stream { key, after, done } => {
                if *done {
                    return Ok(None);
                }
                let start = match after {
                    Some(id) => format!("({id}"),
                    None => "-".to_string(),
                };
                let entries: Vec<(String, Vec<redis::Value>)> = redis::cmd("XRANGE")
                    .arg(key.as_str())
                    .arg(&start)
                    .arg("+")
                    .arg("COUNT")
                    .arg(CHUNK)
                    .query_async(db)
                    .await
                    .map_err(|e| failure(settings, &format!("reading stream \"{key}\" on"), e))?;
                if entries.len() < CHUNK {
                    *done = true;
                }
                let Some((last, _)) = entries.last() else {
                    return Ok(None);
                };
                *after = Some(last.clone());
                let mut bytes = 0;
                let documents = entries
                    .into_iter()
                    .map(|(id, fields)| {
                        let fields = pairs(redis::Value::Array(fields));
                        bytes +=
                            id.len() + fields.iter().map(|(k, v)| k.len() + v.len()).sum::<usize>();
                        fields_document(("_id", &id), fields)
                    })
                    .collect();
                Ok(Some(Chunk { documents, bytes }))
            }
        }
    }
}

#[async_trait]
impl Source for RedisSource {
    async fn read(&self, request: &ReadRequest) -> Result<SchemaStream> {
        let settings = &self.settings;
        let fqn = request.spec.asset.fqn.trim().to_string();
        let mut db = connect(settings).await?;
        let kind: String = redis::cmd("TYPE")
            .arg(&fqn)
            .query_async(&mut db)
            .await
            .map_err(|e| failure(settings, &format!("reading the type of \"{fqn}\" on"), e))?;
        let mut reader = if kind == "stream" {
            let after = match &request.filter {
                Some(f) if f.column == "_id" => {
                    if stream_id(&f.after).is_none() {
                        return Err(Error::Config(format!(
                            "{}: stream \"{fqn}\": watermark \"{}\" is not a stream entry id (<ms>-<seq>)",
                            settings.at(),
                            f.after
                        )));
                    }
                    Some(f.after.clone())
                }
                Some(f) => {
                    return Err(Error::Config(format!(
                        "{}: stream \"{fqn}\" is read incrementally by entry id only: set incremental.cursor to _id (not \"{}\")",
                        settings.at(),
                        f.column
                    )));
                }
                None => None,
            };
            Reader::Stream {
                key: fqn.clone(),
                after,
                done: false,
            }
        } else {
            if request.filter.is_some() {
                return Err(Error::Config(format!(
                    "{}: \"{fqn}\" is a key pattern, and keys have no cursor to read incrementally by; only streams are read incrementally (cursor: _id)",
                    settings.at()
                )));
            }
            let (fetched, reading) = scan::spawn(db.clone(), settings.clone(), fqn.clone());
            Reader::Keys {
                pattern: fqn.clone(),
                fetched,
                reading: Some(reading),
                skipped: 0,
            }
        };
        let label = if kind == "stream" { "_id" } else { "_key" };
        let mut held = Vec::new();
        let nested = request.spec.nested.unwrap_or_default();
        let mut inference = Inference::new(nested);
        let mut sampled = 0;
        while sampled < SAMPLE_RECORDS {
            let Some(chunk) = reader.next(&mut db, settings).await? else {
                break;
            };
            for d in chunk.documents.iter().take(SAMPLE_RECORDS - sampled) {
                inference.observe(d);
            }
            sampled += chunk.documents.len();
            held.push(chunk);
        }
        let mut schema = inference.schema(&request.spec.columns)?;
        if schema.fields().is_empty() {
            // Nothing matched: the one column every document has.
            schema = Schema::new(vec![Field::new(
                label,
                arrow::datatypes::DataType::Utf8,
                true,
            )]);
        }
        let schema: SchemaRef = Arc::new(mark_stream_ids(schema, label == "_id"));
        let mut emitter = Emitter {
            converter: Converter::new(schema.clone(), nested),
            widening: Widening::new(&request.spec.columns, nested),
            rejects: request.rejects.clone(),
            filter: None,
            batch_bytes: request.batch_bytes,
        };
        let at = format!("{}: \"{fqn}\"", settings.at());
        let settings = settings.clone();
        let counters = request.rejects.counters().clone();
        Ok(SchemaStream::produced_by(schema, move |tx| async move {
            let mut held = held.into_iter();
            loop {
                let chunk = match held.next() {
                    Some(c) => c,
                    None => match reader.next(&mut db, &settings).await? {
                        Some(c) => c,
                        None => break,
                    },
                };
                if !emitter
                    .emit(chunk.documents, chunk.bytes, at.clone(), &tx)
                    .await?
                {
                    return Ok(());
                }
            }
            if let Reader::Keys {
                skipped, pattern, ..
            } = &reader
                && *skipped > 0
            {
                counters.note(format!(
                    "{at}: skipped {skipped} keys matching \"{pattern}\" that are neither hashes nor strings"
                ));
            }
            emitter.finish()
        }))
    }
}

/// Marks `_id` of a stream as ordered like stream ids, so the watermark is the latest entry.
fn mark_stream_ids(schema: Schema, stream: bool) -> Schema {
    if !stream {
        return schema;
    }
    let fields: Vec<Field> = schema
        .fields()
        .iter()
        .map(|f| {
            if f.name() == "_id" {
                f.as_ref()
                    .clone()
                    .with_metadata([(CURSOR_ORDER.to_string(), STREAM_ID_ORDER.to_string())].into())
            } else {
                f.as_ref().clone()
            }
        })
        .collect();
    Schema::new(fields)
}
