//! The MongoDB source: a collection read with `find`, the step's `filter` and `projection`
//! applied, an incremental cursor pushed down as `{cursor: {$gt: watermark}}` in the
//! cursor field's own BSON type. The first 1,000 documents decide the schema (FerretDB has no
//! `$sample`, and the first documents of the read are what the batches start with).

use std::sync::Arc;

use arrow::datatypes::SchemaRef;
use async_trait::async_trait;
use futures::StreamExt;
use mongodb::bson::{self, Bson, Document, doc};
use mongodb::{Collection, Database};
use serde_json::{Map, Value};

use super::config::MongodbConfig;
use super::connect::{connect, failure};
use super::shape::Shape;
use super::types::{apply, document_to_json};
use crate::connectors::formats::infer::SAMPLE_RECORDS;
use crate::connectors::json_table::{Converter, Emitter, Inference};
use crate::connectors::json_widen::Widening;
use crate::engine::{CursorFilter, ReadRequest, SchemaStream, Source};
use crate::error::{Error, Result};

/// Documents converted per batch step (the byte budget cuts them further).
const CHUNK: usize = 2000;

/// Reads collections of one MongoDB Connection.
pub struct MongoSource {
    settings: MongodbConfig,
}

impl MongoSource {
    pub fn new(settings: MongodbConfig) -> Self {
        Self { settings }
    }
}

#[async_trait]
impl Source for MongoSource {
    async fn read(&self, request: &ReadRequest) -> Result<SchemaStream> {
        let s = &self.settings;
        let spec = &request.spec;
        let name = spec.asset.fqn.trim().to_string();
        let at = s.at_collection(&name);
        let nested = spec.nested.unwrap_or_default();
        let db = connect(s).await?;
        let collection: Collection<Document> = db.collection(&name);
        let mut filter = extended_json(spec.filter.as_deref(), "filter", &at)?.unwrap_or_default();
        if let Some(cursor) = &request.filter {
            let bound = typed_bound(&db, &collection, cursor, &at, s).await?;
            filter = if filter.is_empty() {
                doc! { cursor.column.as_str(): { "$gt": bound } }
            } else {
                doc! { "$and": [filter, { cursor.column.as_str(): { "$gt": bound } }] }
            };
        }
        let projection = extended_json(spec.projection.as_deref(), "projection", &at)?;
        let mut find = collection.find(filter).batch_size(CHUNK as u32);
        if let Some(p) = projection {
            find = find.projection(p);
        }
        let mut cursor = find.await.map_err(|e| failure(s, &at, "reading", e))?;
        let mut held: Vec<(Map<String, Value>, usize)> = Vec::new();
        let mut inference = Inference::new(nested);
        let mut shape = Shape::default();
        while held.len() < SAMPLE_RECORDS {
            match cursor.next().await {
                None => break,
                Some(document) => {
                    let document = document.map_err(|e| failure(s, &at, "reading", e))?;
                    let size = document_size(&document);
                    shape.observe_document(&document);
                    let json = document_to_json(document);
                    inference.observe(&json);
                    held.push((json, size));
                }
            }
        }
        let schema: SchemaRef = Arc::new(apply(
            &shape,
            inference.schema(&spec.columns)?,
            &spec.columns,
            nested,
        )?);
        let mut emitter = Emitter {
            converter: Converter::new(schema.clone(), nested),
            widening: Widening::new(&spec.columns, nested),
            rejects: request.rejects.clone(),
            filter: None,
            batch_bytes: request.batch_bytes,
        };
        let settings = s.clone();
        Ok(SchemaStream::produced_by(schema, move |tx| async move {
            let mut read = 0usize;
            let mut chunk = Vec::with_capacity(CHUNK);
            let mut bytes = 0;
            let mut held = held.into_iter();
            loop {
                let next = match held.next() {
                    Some(d) => Some(d),
                    None => match cursor.next().await {
                        None => None,
                        Some(d) => {
                            let d = d.map_err(|e| failure(&settings, &at, "reading", e))?;
                            let size = document_size(&d);
                            Some((document_to_json(d), size))
                        }
                    },
                };
                let done = next.is_none();
                if let Some((d, size)) = next {
                    chunk.push(d);
                    bytes += size;
                }
                if chunk.len() >= CHUNK || (done && !chunk.is_empty()) {
                    let location = format!("{at}: documents {}..{}", read + 1, read + chunk.len());
                    read += chunk.len();
                    if !emitter
                        .emit(std::mem::take(&mut chunk), bytes, location, &tx)
                        .await?
                    {
                        return Ok(());
                    }
                    bytes = 0;
                }
                if done {
                    return emitter.finish();
                }
            }
        }))
    }
}

/// Encoded size of a document, for the batch budget.
fn document_size(document: &Document) -> usize {
    bson::to_vec(document).map(|v| v.len()).unwrap_or(256)
}

/// A step's `filter` or `projection`: MongoDB Extended JSON text as a document.
pub fn extended_json(text: Option<&str>, field: &str, at: &str) -> Result<Option<Document>> {
    let Some(text) = text.filter(|t| !t.trim().is_empty()) else {
        return Ok(None);
    };
    let value: Value = serde_json::from_str(text)
        .map_err(|e| Error::Config(format!("{at}: source.{field} is not valid JSON: {e}")))?;
    match Bson::try_from(value) {
        Ok(Bson::Document(d)) => Ok(Some(d)),
        Ok(_) => Err(Error::Config(format!(
            "{at}: source.{field} must be a JSON object"
        ))),
        Err(e) => Err(Error::Config(format!(
            "{at}: source.{field} is not valid Extended JSON: {e}"
        ))),
    }
}

/// The watermark in the BSON type the cursor field has in the collection, so `$gt` compares
/// dates with dates and numbers with numbers.
async fn typed_bound(
    _db: &Database,
    collection: &Collection<Document>,
    cursor: &CursorFilter,
    at: &str,
    s: &MongodbConfig,
) -> Result<Bson> {
    let field = cursor.column.as_str();
    let sample = collection
        .find_one(doc! { field: { "$exists": true, "$ne": Bson::Null } })
        .projection(doc! { field: 1 })
        .await
        .map_err(|e| failure(s, at, "reading the type of the cursor field from", e))?;
    let text = cursor.after.as_str();
    let bad = |kind: &str| {
        Error::Config(format!(
            "{at}: watermark \"{text}\" of cursor \"{field}\" is not a {kind}, the type the field has in the collection"
        ))
    };
    let Some(existing) = sample.as_ref().and_then(|d| d.get(field)) else {
        return Ok(Bson::String(text.to_string()));
    };
    Ok(match existing {
        Bson::DateTime(_) => {
            let parsed = chrono::DateTime::parse_from_rfc3339(text)
                .map(|d| d.timestamp_millis())
                .or_else(|_| {
                    chrono::NaiveDateTime::parse_from_str(text, "%Y-%m-%dT%H:%M:%S%.f")
                        .map(|d| d.and_utc().timestamp_millis())
                })
                .or_else(|_| {
                    chrono::NaiveDateTime::parse_from_str(text, "%Y-%m-%d %H:%M:%S%.f")
                        .map(|d| d.and_utc().timestamp_millis())
                })
                .map_err(|_| bad("date"))?;
            Bson::DateTime(bson::DateTime::from_millis(parsed))
        }
        Bson::Int32(_) | Bson::Int64(_) => match text.parse::<i64>() {
            Ok(i) => Bson::Int64(i),
            Err(_) => Bson::Double(text.parse().map_err(|_| bad("number"))?),
        },
        Bson::Double(_) | Bson::Decimal128(_) => {
            Bson::Double(text.parse().map_err(|_| bad("number"))?)
        }
        Bson::ObjectId(_) => {
            Bson::ObjectId(bson::oid::ObjectId::parse_str(text).map_err(|_| bad("objectId"))?)
        }
        _ => Bson::String(text.to_string()),
    })
}
