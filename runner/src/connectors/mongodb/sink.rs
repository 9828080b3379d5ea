//! The MongoDB sink. `append` inserts documents in batches (`insertMany`); `upsert` sends
//! each batch as one `update` command of replace-or-insert statements keyed by the primary
//! key (a bulk write); `overwrite` writes a new collection and renames it over the old one.
//!
//! MongoDB's `renameCollection` with `dropTarget` swaps atomically. FerretDB has no
//! `dropTarget`: there the old collection is renamed aside first, the new one renamed in,
//! and the old one dropped. A failed overwrite drops its new collection and leaves the old
//! one. A killed one leaves `<collection>__synqx_new_<expiry>_<n>` (and, on FerretDB, when
//! killed between the two renames, the old rows as `<collection>__synqx_old_<expiry>_<n>`):
//! the next overwrite into the database drops such collections once their expiry passed (the
//! step's deadline, see `connectors::staging`) and renames an old collection back when its
//! collection is missing, so the destination ends as the killed run found it. Append and
//! upsert write as they go (MongoDB without a replica set has no transactions): a failed run
//! keeps what it wrote, and upsert makes the rerun exact.

use async_trait::async_trait;
use futures::StreamExt;
use mongodb::bson::{Bson, Document, doc};
use mongodb::{Collection, Database};
use synqx_api::pipeline::{Destination, WriteMode};

use super::config::MongodbConfig;
use super::connect::{connect, failure};
use super::types::rows_to_documents;
use crate::connectors::staging::Expiry;
use crate::engine::{Counters, SchemaStream, Sink, WriteOutcome, WriteRequest};
use crate::error::{Error, Result};

/// Documents per `insertMany` or `update` command.
const CHUNK: usize = 1000;
/// "NotImplemented", what FerretDB answers for `dropTarget: true`.
const NOT_IMPLEMENTED: i32 = 238;
/// Between a collection's name and the rest of the name of the collection an overwrite loads.
const NEW: &str = "__synqx_new_";
/// … and of the old collection, renamed aside where `dropTarget` is missing.
const OLD: &str = "__synqx_old_";

/// Writes collections of one MongoDB Connection.
pub struct MongoSink {
    settings: MongodbConfig,
}

impl MongoSink {
    pub fn new(settings: MongodbConfig) -> Self {
        Self { settings }
    }
}

#[async_trait]
impl Sink for MongoSink {
    async fn write(&self, request: &WriteRequest, input: SchemaStream) -> Result<WriteOutcome> {
        let (s, spec, counters) = (&self.settings, &request.spec, &request.counters);
        let name = spec.asset.fqn.trim().to_string();
        let at = s.at_collection(&name);
        let mode = spec.mode();
        for key in &spec.primary_key {
            if input.schema.index_of(key).is_err() {
                return Err(Error::Config(format!(
                    "{at}: primaryKey column \"{key}\" is not in the rows"
                )));
            }
        }
        let db = connect(s).await?;
        match mode {
            WriteMode::Overwrite => {
                sweep(s, &db, counters).await;
                let expiry = Expiry::of(request);
                let staged = expiry.name(&format!("{name}{NEW}"));
                let old = format!("{name}{OLD}{}", &staged[name.len() + NEW.len()..]);
                let written = self
                    .load(&db, &staged, mode, &[], input, counters, &at)
                    .await;
                let outcome = match written.and_then(|o| expiry.check(&at).map(|()| o)) {
                    Ok(o) => self.swap(&db, &staged, &name, &old, &at).await.map(|()| o),
                    Err(e) => Err(e),
                };
                if outcome.is_err() {
                    // The old collection is untouched; the half-written new one goes.
                    let _ = db.collection::<Document>(&staged).drop().await;
                }
                outcome
            }
            _ => {
                self.load(&db, &name, mode, &spec.primary_key, input, counters, &at)
                    .await
            }
        }
    }

    /// An append keeps the documents it inserted before a failure; overwrite loads aside and
    /// upsert replaces by key, so running them again is exact.
    fn restartable(&self, destination: &Destination) -> bool {
        destination.mode() != WriteMode::Append
    }
}

impl MongoSink {
    #[allow(clippy::too_many_arguments)]
    async fn load(
        &self,
        db: &Database,
        name: &str,
        mode: WriteMode,
        key: &[String],
        mut input: SchemaStream,
        counters: &Counters,
        at: &str,
    ) -> Result<WriteOutcome> {
        let s = &self.settings;
        let collection: Collection<Document> = db.collection(name);
        let mut outcome = WriteOutcome::default();
        // The new collection exists even when no row comes, as an empty source means.
        if mode == WriteMode::Overwrite {
            db.create_collection(name)
                .await
                .map_err(|e| failure(s, at, "creating the new collection in", e))?;
        }
        while let Some(batch) = input.stream.next().await {
            let batch = batch?;
            let documents = rows_to_documents(&batch).map_err(|e| match e {
                Error::BadRow(bad) => bad.within(at).into(),
                other => other,
            })?;
            for chunk in documents.chunks(CHUNK) {
                let bytes: u64 = chunk
                    .iter()
                    .map(|d| {
                        mongodb::bson::to_vec(d)
                            .map(|v| v.len() as u64)
                            .unwrap_or(0)
                    })
                    .sum();
                if mode == WriteMode::Upsert {
                    let updates = chunk
                        .iter()
                        .map(|d| {
                            let mut q = Document::new();
                            for k in key {
                                q.insert(k.clone(), d.get(k).cloned().unwrap_or(Bson::Null));
                            }
                            doc! { "q": q, "u": d.clone(), "upsert": true }
                        })
                        .collect::<Vec<_>>();
                    db.run_command(doc! { "update": name, "updates": updates, "ordered": true })
                        .await
                        .map_err(|e| failure(s, at, "upserting into", e))?;
                } else {
                    collection
                        .insert_many(chunk)
                        .await
                        .map_err(|e| failure(s, at, "inserting into", e))?;
                }
                outcome.count(counters, chunk.len() as u64, bytes);
            }
        }
        Ok(outcome)
    }

    /// Puts `staged` in place of `target`.
    async fn swap(
        &self,
        db: &Database,
        staged: &str,
        target: &str,
        old: &str,
        at: &str,
    ) -> Result<()> {
        let s = &self.settings;
        let database = &s.database;
        let admin = db.client().database("admin");
        let rename = |from: &str, to: &str, drop_target: bool| {
            let mut command = doc! { "renameCollection": format!("{database}.{from}"), "to": format!("{database}.{to}") };
            if drop_target {
                command.insert("dropTarget", true);
            }
            admin.run_command(command)
        };
        match rename(staged, target, true).await {
            Ok(_) => return Ok(()),
            Err(e) if matches!(e.kind.as_ref(), mongodb::error::ErrorKind::Command(c) if c.code == NOT_IMPLEMENTED) =>
                {}
            Err(e) => return Err(failure(s, at, "swapping the new collection in on", e)),
        }
        let names = db
            .list_collection_names()
            .await
            .map_err(|e| failure(s, at, "listing collections of", e))?;
        if !names.iter().any(|n| n == target) {
            return rename(staged, target, false)
                .await
                .map(|_| ())
                .map_err(|e| failure(s, at, "renaming the new collection in on", e));
        }
        rename(target, old, false)
            .await
            .map_err(|e| failure(s, at, "renaming the old collection aside on", e))?;
        if let Err(e) = rename(staged, target, false).await {
            // Put the old data back before reporting.
            let _ = rename(old, target, false).await;
            return Err(failure(s, at, "renaming the new collection in on", e));
        }
        db.collection::<Document>(old)
            .drop()
            .await
            .map_err(|e| failure(s, at, "dropping the replaced collection from", e))
    }
}

/// Drops the collections overwrites of killed runs left in the database once their expiry
/// passed, and renames an old collection back when its collection is missing (a FerretDB
/// swap killed between its two renames). Best effort: what fails is noted, never fatal.
async fn sweep(settings: &MongodbConfig, db: &Database, counters: &Counters) {
    let at = settings.at();
    let names = match db.list_collection_names().await {
        Ok(names) => names,
        Err(e) => {
            let e = failure(settings, &at, "listing collections of", e);
            counters.note(format!(
                "{e}; expired staging collections were not looked for"
            ));
            return;
        }
    };
    let now = std::time::SystemTime::now();
    for name in &names {
        let Some((target, kind)) = [NEW, OLD]
            .into_iter()
            .find_map(|kind| name.find(kind).map(|i| (&name[..i], kind)))
        else {
            continue;
        };
        if target.is_empty() || !Expiry::passed(name, &format!("{target}{kind}"), now) {
            continue;
        }
        let restore = kind == OLD && !names.iter().any(|n| n == target);
        let done = if restore {
            let database = &settings.database;
            db.client()
                .database("admin")
                .run_command(doc! {
                    "renameCollection": format!("{database}.{name}"),
                    "to": format!("{database}.{target}"),
                })
                .await
                .map(|_| format!("renamed \"{name}\", the rows a killed overwrite had renamed aside, back to \"{target}\""))
        } else {
            db.collection::<Document>(name)
                .drop()
                .await
                .map(|()| format!("dropped \"{name}\", left by a killed overwrite of \"{target}\""))
        };
        match done {
            Ok(what) => counters.note(format!("{}: {what}", settings.at_collection(target))),
            Err(e) => counters.note(
                failure(
                    settings,
                    &settings.at_collection(target),
                    &format!("cleaning up \"{name}\" in"),
                    e,
                )
                .to_string(),
            ),
        }
    }
}
