//! Writing to a real S3 server (moto): the scenarios every file connector shares
//! (`formats::tests::lakes`), and what is S3's own: multipart uploads, keys below the prefix,
//! and a whole step through the engine.

use std::io::Write;
use std::sync::Arc;
use std::time::Duration;

use synqx_api::ConnectionSpec;
use synqx_api::connection::FilesystemConnection;
use synqx_api::pipeline::{FileFormat, SyncStep};
use tokio::runtime::Handle;
use tokio_util::sync::CancellationToken;

use super::super::upload::{PART_SIZE, Upload};
use super::support::{Lake, PREFIX, open};
use crate::connectors::ConnectionRef;
use crate::connectors::formats::tests::lakes::{Lake as _, lake_tests, write};
use crate::connectors::formats::tests::{destination, ok, overwrite, source, wide};
use crate::connectors::tests::Harness;
use crate::engine::{Counters, StepRun, run_sync};
use crate::error::{Error, Result};
use crate::secrets::Secrets;

lake_tests!(#[tokio::test(flavor = "multi_thread", worker_threads = 2)] Lake::new("write") => write);

/// The round trips of every format on one lake, which then holds nothing but their objects,
/// all below the connection's prefix.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_format_round_trips_below_the_prefix() {
    let lake = Lake::new("formats");
    write::csv_round_trips_every_scalar_type(&lake).await;
    write::jsonl_round_trips_scalars_and_nested_values(&lake).await;
    write::parquet_round_trips_with_zstd_and_snappy(&lake).await;
    let keys = lake.keys().await;
    let below: Vec<String> = lake
        .files()
        .await
        .iter()
        .map(|f| format!("{PREFIX}/{f}"))
        .collect();
    assert_eq!(keys, below);
    assert!(keys.iter().all(|k| !k.contains("synqx-tmp")), "{keys:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn large_objects_go_up_in_multipart_parts() {
    let lake = Lake::new("large");
    // 100,000 rows of about 100 bytes: more than one 8 MiB part.
    let big = wide(0..100_000);
    let halves = vec![Ok(big.slice(0, 50_000)), Ok(big.slice(50_000, 50_000))];
    let outcome = ok(lake
        .write(overwrite("big/all.csv", None), big.schema(), halves)
        .await);
    let (size, _) = lake.head("big/all.csv").await;
    assert!(size > PART_SIZE as u64, "{size}");
    assert_eq!(outcome.bytes, size);
    let all = ok(lake.read_all(source("big/all.csv")).await);
    assert_eq!(all, big);
    assert_eq!(lake.pending_uploads(), 0);
}

/// Writes `bytes` through an upload of `relative` on a blocking thread, as encoders do.
async fn upload(lake: &Lake, relative: &str, bytes: usize, finish: bool) -> (Upload, Result<u64>) {
    let key = ok(lake.raw.key(&format!("{PREFIX}/{relative}")));
    let upload = Upload::new(lake.raw.clone(), Handle::current(), key, relative.into());
    let mut writer = upload.clone();
    let done = tokio::task::spawn_blocking(move || {
        let chunk = vec![b'x'; 64 * 1024];
        for _ in 0..bytes / chunk.len() {
            writer
                .write_all(&chunk)
                .map_err(|e| Error::io("test upload", e))?;
        }
        if finish { writer.finish() } else { Ok(0) }
    });
    let result = done.await.unwrap_or_else(|e| panic!("{e}"));
    (upload, result)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn more_than_a_part_goes_up_in_parts_and_an_abort_leaves_nothing() {
    let lake = Lake::new("multipart");
    let (_, small) = upload(&lake, "small.bin", 1 << 20, true).await;
    assert_eq!(ok(small), 1 << 20);
    let (_, etag) = lake.head("small.bin").await;
    assert!(!etag.contains('-'), "one PUT: {etag}");
    let (_, big) = upload(&lake, "big.bin", PART_SIZE + (1 << 20), true).await;
    assert_eq!(ok(big), (PART_SIZE + (1 << 20)) as u64);
    // The ETag of a multipart object ends with its number of parts.
    let (size, etag) = lake.head("big.bin").await;
    assert_eq!(size, (PART_SIZE + (1 << 20)) as u64);
    assert!(etag.trim_matches('"').ends_with("-2"), "{etag}");

    let (unfinished, _) = upload(&lake, "aborted.bin", PART_SIZE + (1 << 20), false).await;
    assert_eq!(lake.pending_uploads(), 1);
    unfinished.abort().await;
    assert_eq!(lake.pending_uploads(), 0);
    assert_eq!(lake.files().await, ["big.bin", "small.bin"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_step_moves_a_csv_folder_to_s3_parquet_and_back() {
    let lake = Lake::new("step");
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let inbox = dir.path().join("inbox/orders");
    std::fs::create_dir_all(&inbox).unwrap_or_else(|e| panic!("{e}"));
    let mut expected = String::from("id,status\n");
    for (file, range) in [("a.csv", 0..600), ("b.csv", 600..1000)] {
        let mut text = String::from("id,status\n");
        for i in range {
            let line = format!("{i},{}\n", if i % 3 == 0 { "paid" } else { "open" });
            text.push_str(&line);
            expected.push_str(&line);
        }
        std::fs::write(inbox.join(file), text).unwrap_or_else(|e| panic!("{e}"));
    }
    let local = ConnectionSpec {
        filesystem: Some(FilesystemConnection {
            path: dir.path().to_string_lossy().to_string(),
        }),
        ..Default::default()
    };
    let secrets = Secrets::default();
    let conn = ConnectionRef {
        name: "local",
        spec: &local,
        base_dir: dir.path().to_path_buf(),
        secrets: &secrets,
    };
    let files = Harness::open(&conn);
    let endpoint = lake.moto.endpoint();
    let spec = super::support::connection(&endpoint, &lake.bucket, Some("lake"));
    let s3 = open("lake", &spec, &secrets);
    let run = |step: &str| StepRun {
        step: step.into(),
        watermark: None,
        counters: Arc::new(Counters::default()),
        cancel: CancellationToken::new(),
        timeout: Some(Duration::from_secs(120)),
        dead_letter: None,
        memory: crate::transforms::MemoryBudget::detect().unwrap_or_else(|e| panic!("{e}")),
    };

    let to_lake = SyncStep {
        source: source("inbox/orders/"),
        destination: destination("orders/", Some(FileFormat::Parquet)),
        ..Default::default()
    };
    let out = ok(run_sync(&to_lake, files.source, s3.sink, run("to-lake")).await);
    assert_eq!(
        (out.counters.rows_read, out.counters.rows_written),
        (1000, 1000)
    );
    let parts = lake.files().await;
    assert!(
        parts.len() == 1 && parts[0].starts_with("orders/part-") && parts[0].ends_with(".parquet"),
        "{parts:?}"
    );
    assert_eq!(out.counters.bytes_written, lake.head(&parts[0]).await.0);

    let back = SyncStep {
        source: source("orders/"),
        destination: overwrite("back/orders.csv", None),
        ..Default::default()
    };
    let out = ok(run_sync(&back, s3.source, files.sink, run("back")).await);
    assert_eq!(out.counters.rows_written, 1000);
    let text = std::fs::read_to_string(dir.path().join("back/orders.csv")).unwrap_or_default();
    assert_eq!(text, expected);
}
