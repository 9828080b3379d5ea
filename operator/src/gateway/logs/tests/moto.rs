//! The object-storage store against moto's S3 server (started per test binary by the
//! testkit; missing, the tests fail), and against a server that echoes the request into its
//! error: appending, reading back, listing attempts, resuming after a restart, and failures
//! that name the Connection, bucket and key but no credential.

use std::sync::Arc;

use synqx_api::SecretValue;
use synqx_api::connection::S3Connection;
use synqx_api::gateway::LogLine;
use synqx_api::redact::Redactor;
use synqx_s3::{Patience, S3Settings, SettingsError};
use synqx_testkit::s3 as moto;

use crate::gateway::logs::gzip::decode;
use crate::gateway::logs::s3::S3Store;
use crate::gateway::logs::{LogKey, LogStore, Logs};

const KEY_ID: &str = "AKIDLOGSTORE1234";
const SECRET: &str = "wJalrXUtnFEMI/logs/store/secret";

/// The store of a Connection `lake` in namespace `etl` to `bucket` at `endpoint`, below the
/// Connection prefix `raw` and the logs prefix `synqx-logs`.
fn store(endpoint: &str, bucket: &str) -> Arc<S3Store> {
    let spec = S3Connection {
        bucket: bucket.into(),
        region: Some("us-east-1".into()),
        endpoint: Some(endpoint.into()),
        force_path_style: Some(true),
        prefix: Some("raw".into()),
        access_key_id: Some(SecretValue::plain(KEY_ID)),
        secret_access_key: Some(SecretValue::plain(SECRET)),
        ..Default::default()
    };
    let redactor = Redactor::default();
    let settings = S3Settings::new(
        "lake",
        &spec,
        |_, value: &SecretValue| {
            let plain = value.value.clone().unwrap_or_default();
            redactor.remember(&plain);
            Ok::<_, SettingsError>(plain)
        },
        || Ok(()),
        redactor.clone(),
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let client = synqx_s3::client(&settings, Patience::TRANSFER).unwrap_or_else(|e| panic!("{e}"));
    Arc::new(S3Store::new(
        Arc::new(client),
        "etl/lake".into(),
        settings.bucket.clone(),
        format!("{}synqx-logs/", settings.prefix),
        settings.redactor,
    ))
}

fn key(run: &str, step: &str, attempt: u32) -> LogKey {
    LogKey::new("etl", "orders", run, step, attempt).unwrap_or_else(|e| panic!("{e}"))
}

fn lines(range: std::ops::Range<usize>) -> Vec<LogLine> {
    range
        .map(|n| LogLine {
            time: format!("2026-12-02T10:{:02}:00.000000Z", n % 60),
            level: Some("INFO".into()),
            text: format!("row batch {n} written"),
        })
        .collect()
}

#[tokio::test]
async fn batches_are_objects_in_order_and_a_restarted_gateway_resumes_the_log() {
    let server = moto::server();
    let bucket = server.bucket("logs");
    let store = store(&server.endpoint(), &bucket);
    let logs = Logs::new(store.clone(), 1 << 20);
    let load = key("orders-1", "load", 1);
    let all = lines(0..30);
    // Ten reports: ten members, more than nine so a lexical listing that ignored the padding
    // would misorder them.
    for batch in all[..20].chunks(2) {
        logs.append(&load, batch)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
    }
    let keys = server.keys(&bucket);
    assert_eq!(keys.len(), 10, "{keys:?}");
    assert!(
        keys.iter().all(
            |k| k.starts_with("raw/synqx-logs/etl/orders/orders-1/load/1/")
                && k.ends_with(".jsonl.gz")
        ),
        "{keys:?}"
    );

    // Another gateway takes over mid-step: it resumes where the objects end.
    let restarted = Logs::new(store.clone(), 1 << 20);
    restarted
        .append(&load, &all[20..])
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    restarted
        .finish(&load)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let back = store.read(&load).await.unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(decode(&back.unwrap_or_default()), all);

    // Two more attempts and another run: the run's attempts, and nothing of the other.
    for k in [
        key("orders-1", "load", 2),
        key("orders-1", "extract", 1),
        key("orders-2", "load", 1),
    ] {
        logs.append(&k, &lines(0..1))
            .await
            .unwrap_or_else(|e| panic!("{e}"));
    }
    let attempts = store
        .attempts("etl", "orders-1")
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        attempts,
        [
            key("orders-1", "extract", 1),
            key("orders-1", "load", 1),
            key("orders-1", "load", 2)
        ]
    );
    let absent = store
        .read(&key("orders-1", "load", 3))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(absent, None);
}

#[tokio::test]
async fn a_log_past_its_bound_ends_with_the_marker_in_the_bucket() {
    let server = moto::server();
    let bucket = server.bucket("bound");
    let store = store(&server.endpoint(), &bucket);
    let all = lines(0..10);
    let per_line = serde_json::to_vec(&all[0]).map_or(0, |v| v.len() as u64 + 1);
    let logs = Logs::new(store.clone(), per_line * 4);
    let load = key("orders-3", "load", 1);
    for batch in all.chunks(3) {
        logs.append(&load, batch)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
    }
    logs.finish(&load).await.unwrap_or_else(|e| panic!("{e}"));
    let back = decode(
        &store
            .read(&load)
            .await
            .unwrap_or_else(|e| panic!("{e}"))
            .unwrap_or_default(),
    );
    assert_eq!(back[..4], all[..4]);
    assert_eq!(back.len(), 5, "{back:?}");
    assert!(back[4].text.contains("6 later lines"), "{:?}", back[4]);
}

#[tokio::test]
async fn a_refused_request_names_connection_bucket_and_key_but_no_credential() {
    let (endpoint, seen) = moto::echoing_server();
    let store = store(&endpoint, "lake-logs");
    let load = key("orders-4", "load", 1);
    let Err(error) = store.append(&load, b"member".to_vec(), 6).await else {
        panic!("the echoing server refuses every request")
    };
    let text = error.to_string();
    assert!(
        text.starts_with(
            "writing s3://lake-logs/raw/synqx-logs/etl/orders/orders-4/load/1/00000000000000000006.jsonl.gz (Connection etl/lake): InvalidAccessKeyId"
        ),
        "{text}"
    );
    assert!(
        text.contains("check the bucket, the Connection's credentials"),
        "{text}"
    );
    // The server saw the key id (in the signature), and echoed it back.
    let heads = seen.lock().map(|h| h.join("\n")).unwrap_or_default();
    assert!(heads.contains(KEY_ID), "{heads}");
    assert!(!text.contains(KEY_ID), "{text}");
    assert!(!text.contains(SECRET), "{text}");
}
