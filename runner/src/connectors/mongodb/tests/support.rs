//! The MongoDB test server (FerretDB from `scripts/nosql-services up`, `SYNQX_TEST_MONGODB`),
//! Connections to it, and read and write helpers. A missing server fails the test.

use std::sync::Arc;

use arrow::array::RecordBatch;
use futures::StreamExt;
use mongodb::bson::Document;
use synqx_api::ConnectionSpec;
use synqx_api::SecretValue;
use synqx_api::connection::MongoConnection;
use synqx_api::pipeline::{Asset, Destination, OnError, Source as SourceSpec, WriteMode};

use synqx_testkit::servers;

use crate::connectors::ConnectionRef;
use crate::connectors::tests::Harness;
use crate::engine::{
    Counters, CursorFilter, ReadRequest, Rejects, SchemaStream, WriteOutcome, WriteRequest,
};
use crate::error::Result;
use crate::secrets::Secrets;

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

/// The Connection `docs` of `spec`, opened through the registry as a step opens it.
pub fn harness(spec: &ConnectionSpec) -> Result<Harness> {
    let secrets = Secrets::default();
    let conn = ConnectionRef {
        name: "docs",
        spec,
        base_dir: std::env::temp_dir(),
        secrets: &secrets,
    };
    Ok(Harness {
        source: crate::connectors::source(&conn)?,
        sink: crate::connectors::sink(&conn)?,
    })
}

/// Reads `source` (its connection and asset are set here) with an optional cursor filter.
pub async fn read(
    spec: &ConnectionSpec,
    mut source: SourceSpec,
    collection: &str,
    filter: Option<CursorFilter>,
) -> Result<Vec<RecordBatch>> {
    source.connection = "docs".into();
    source.asset = Asset {
        name: None,
        fqn: collection.into(),
    };
    let counters = Arc::new(Counters::default());
    let request = ReadRequest {
        spec: source,
        filter,
        batch_bytes: crate::engine::DEFAULT_BATCH_BYTES,
        rejects: Rejects::new(OnError::Fail, None, counters),
        memory: Default::default(),
    };
    let mut stream = harness(spec)?.source.read(&request).await?;
    let mut batches = Vec::new();
    while let Some(b) = stream.stream.next().await {
        batches.push(b?);
    }
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
    let request = WriteRequest {
        spec: Destination {
            connection: "docs".into(),
            asset: Asset {
                name: None,
                fqn: collection.into(),
            },
            mode: Some(mode),
            primary_key: key.iter().map(|k| k.to_string()).collect(),
            ..Default::default()
        },
        batch_bytes: crate::engine::DEFAULT_BATCH_BYTES,
        deadline: None,
    };
    let input = SchemaStream::new(schema, futures::stream::iter(batches));
    harness(spec)?
        .sink
        .write(&request, input, &Counters::default())
        .await
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
