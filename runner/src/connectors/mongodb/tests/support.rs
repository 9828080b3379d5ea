//! The MongoDB test server (FerretDB from `scripts/nosql-services up`, `SYNQX_TEST_MONGODB`),
//! Connections to it, and read and write helpers. A missing server fails the test.

use arrow::array::RecordBatch;
use futures::StreamExt;
use mongodb::bson::Document;
use synqx_api::ConnectionSpec;
use synqx_api::SecretValue;
use synqx_api::connection::{CheckReport, MongoConnection};
use synqx_api::pipeline::{Asset, Source as SourceSpec, WriteMode};

use synqx_testkit::servers;

use crate::connectors::tests::{destination, named};
use crate::engine::{CursorFilter, DEFAULT_BATCH_BYTES, Rejects, WriteOutcome};
use crate::error::Result;

/// The name of the Connections of these tests.
pub const CONNECTION: &str = "docs";

/// URI of the test server.
pub fn uri() -> String {
    servers::mongodb_uri()
}

/// A Connection to database `database` with `uri`.
pub fn connection(uri: &str, database: &str) -> ConnectionSpec {
    ConnectionSpec {
        mongodb: Some(MongoConnection {
            uri: SecretValue {
                value: Some(uri.to_string()),
                ..Default::default()
            },
            database: database.to_string(),
        }),
        ..Default::default()
    }
}

/// A raw handle for setting up and checking data; fails the test when the server is down.
pub async fn raw(database: &str) -> mongodb::Database {
    let uri = uri();
    let client = mongodb::Client::with_uri_str(&uri)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let db = client.database(database);
    if let Err(e) = db.list_collection_names().await {
        panic!(
            "{}",
            servers::nosql_unreachable("MongoDB (FerretDB)", &uri, e)
        );
    }
    db
}

/// Reads `source` (its connection and asset are set here) with an optional cursor filter.
pub async fn read(
    spec: &ConnectionSpec,
    mut source: SourceSpec,
    collection: &str,
    filter: Option<CursorFilter>,
) -> Result<Vec<RecordBatch>> {
    source.connection = CONNECTION.into();
    source.asset = Asset {
        name: None,
        fqn: collection.into(),
    };
    let harness = named::open(CONNECTION, spec)?;
    let (_, batches) = harness
        .read_with(source, filter, DEFAULT_BATCH_BYTES, Rejects::failing())
        .await?;
    Ok(batches)
}

/// Writes `batches` to `collection` in `mode` keyed by `key`.
pub async fn write(
    spec: &ConnectionSpec,
    collection: &str,
    mode: WriteMode,
    key: &[&str],
    batches: Vec<Result<RecordBatch>>,
) -> Result<WriteOutcome> {
    let schema = match batches.first() {
        Some(Ok(b)) => b.schema(),
        _ => panic!("write needs a first batch for its schema"),
    };
    let to = destination(CONNECTION, collection, mode, key, None);
    named::open(CONNECTION, spec)?
        .write(to, schema, batches)
        .await
}

/// What `synqx check` reports of the Connection `spec`.
pub async fn check(spec: &ConnectionSpec) -> CheckReport {
    named::check(CONNECTION, spec).await
}

/// Every document of a collection, sorted by `sort`.
pub async fn documents(db: &mongodb::Database, collection: &str, sort: &str) -> Vec<Document> {
    let mut cursor = db
        .collection::<Document>(collection)
        .find(Document::new())
        .sort(mongodb::bson::doc! { sort: 1 })
        .await
        .unwrap_or_else(|e| panic!("reading {collection}: {e}"));
    let mut all = Vec::new();
    while let Some(d) = cursor.next().await {
        all.push(d.unwrap_or_else(|e| panic!("{e}")));
    }
    all
}
