//! Reading from a real S3 server (moto): the scenarios every file connector shares
//! (`formats::tests::lakes`), objects outside the prefix, last-modified times as a cursor, and
//! errors that name where and never what the credentials are.

use object_store::ObjectStoreExt;

use super::support::{Lake, assert_redacted, connection, keyed, keyed_secrets, open};
use crate::connectors::formats::tests::lakes::read::{self, after, incremental, modified_times};
use crate::connectors::formats::tests::lakes::{Lake as _, lake_tests};
use crate::connectors::formats::tests::{err, id_values, ids, ok, overwrite, source};
use crate::engine::{FILE_MODIFIED_COLUMN, Rejects};
use crate::secrets::Secrets;
use synqx_testkit::s3::{self as moto, closed_endpoint, echoing_server};

lake_tests!(#[tokio::test(flavor = "multi_thread", worker_threads = 2)] Lake::new("read") => read);

/// The selection scenario, with an object that would match but lies outside the connection's
/// prefix: it is never read.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn folders_globs_and_keys_select_objects_below_the_prefix() {
    let lake = Lake::new("select");
    let outside = ok(lake.raw.key("raw/orders/2024-00.csv"));
    let put = lake.raw.store.put(&outside, b"id\n0\n".to_vec().into());
    put.await.unwrap_or_else(|e| panic!("{e}"));
    read::folders_read_every_matching_file_sorted_and_globs_match_names(&lake).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_last_modified_cursor_adds_the_column_and_skips_unchanged_objects() {
    let lake = Lake::new("modified");
    lake.put("drop/a.jsonl", "{\"id\": 1}\n{\"id\": 2}\n").await;
    // Last-modified times have a resolution of one second.
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    lake.put("drop/b.jsonl", "{\"id\": 3}\n").await;
    let spec = incremental(source("drop/"), FILE_MODIFIED_COLUMN);
    let read = |filter| lake.read_with(spec.clone(), filter, 1 << 20, Rejects::failing());
    let (_, first) = ok(read(None).await);
    assert_eq!(id_values(&first), [Some(1), Some(2), Some(3)]);
    let times = modified_times(&first);
    assert!(times[0] == times[1] && times[1] < times[2], "{times:?}");
    // The watermark after the first object: only the later one is read again.
    let watermark = chrono::DateTime::from_timestamp_micros(times[0])
        .map(|t| t.to_rfc3339())
        .unwrap_or_default();
    let (_, next) = ok(read(Some(after(FILE_MODIFIED_COLUMN, &watermark))).await);
    assert_eq!(id_values(&next), [Some(3)]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_endpoint_fails_with_the_connection_named() {
    // The connection is refused on every attempt.
    let spec = connection(&closed_endpoint(), "lake", None);
    let lake = open("offline-lake", &spec, &Secrets::default());
    let message = err(lake.read(source("raw/orders/")).await);
    assert!(
        message.starts_with("Connection \"offline-lake\": listing s3://lake/"),
        "{message}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_bucket_is_named_without_the_credentials() {
    let moto = moto::server();
    let spec = keyed(moto.endpoint(), "synqx-no-such-bucket");
    let lake = open("vault-lake", &spec, &keyed_secrets());
    assert_eq!(
        err(lake.read(source("raw/orders/")).await),
        "Connection \"vault-lake\": listing s3://synqx-no-such-bucket/lake/raw/orders/: NoSuchBucket: The specified bucket does not exist"
    );
    let written = lake.write(
        overwrite("out/a.csv", None),
        ids(0..1).schema(),
        vec![Ok(ids(0..2))],
    );
    let message = err(written.await);
    assert!(
        message.starts_with("Connection \"vault-lake\": writing s3://synqx-no-such-bucket/lake/out/.a.csv.synqx-tmp-"),
        "{message}"
    );
    assert!(
        message.ends_with(": NoSuchBucket: The specified bucket does not exist"),
        "{message}"
    );
    assert_redacted(&message);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn credentials_echoed_by_the_server_are_redacted_from_errors() {
    let (endpoint, seen) = echoing_server();
    let lake = open(
        "vault-lake",
        &keyed(endpoint, "orders-bucket"),
        &keyed_secrets(),
    );
    let message = err(lake.read(source("raw/")).await);
    let requests = seen.lock().map(|s| s.join("\n")).unwrap_or_default();
    assert!(
        requests.contains("AKIDSYNQXREDACTME01") && requests.contains("SESSIONTOKENSYNQXREDACTME"),
        "the server did not see the credentials: {requests}"
    );
    assert!(
        message.starts_with(
            "Connection \"vault-lake\": listing s3://orders-bucket/lake/raw/: InvalidAccessKeyId: request was: GET "
        ),
        "{message}"
    );
    assert!(message.contains("Credential=***/"), "{message}");
    assert_redacted(&message);
}
