//! Writing to a real S3 server (moto): rotation, multipart uploads, commits by copy, cleanup
//! after failed and dropped writes, appends, and a whole step through the engine.

use std::io::Write;
use std::sync::Arc;
use std::time::Duration;

use arrow::array::{Int64Array, RecordBatch, StringArray};
use arrow::datatypes::{DataType, Field, Schema};
use futures::StreamExt;
use synqx_api::ConnectionSpec;
use synqx_api::connection::FilesystemConnection;
use synqx_api::pipeline::{FileFormat, SyncStep, WriteMode};
use tokio::runtime::Handle;
use tokio_util::sync::CancellationToken;

use super::super::upload::{PART_SIZE, Upload};
use super::support::{Lake, PREFIX, destination, id_values, ids, ok, open, source};
use crate::connectors::ConnectionRef;
use crate::connectors::tests::{Harness, drop_once_staged};
use crate::engine::{Counters, SchemaStream, StepRun, WriteRequest, run_sync};
use crate::error::{Error, Result};
use crate::secrets::Secrets;

fn overwrite(fqn: &str, format: Option<FileFormat>) -> synqx_api::pipeline::Destination {
    let mut d = destination(fqn, format);
    d.mode = Some(WriteMode::Overwrite);
    d
}

/// `rows` rows of an id and 90 bytes of text: about 100 bytes a row as CSV.
fn wide(rows: std::ops::Range<i64>) -> RecordBatch {
    let schema = Arc::new(Schema::new(vec![
        Field::new("id", DataType::Int64, true),
        Field::new("pad", DataType::Utf8, true),
    ]));
    let pad: StringArray = rows.clone().map(|i| Some(format!("r{i:089}"))).collect();
    let columns = vec![
        Arc::new(Int64Array::from_iter_values(rows)) as _,
        Arc::new(pad) as _,
    ];
    RecordBatch::try_new(schema, columns).unwrap_or_else(|e| panic!("{e}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn parts_rotate_and_large_objects_go_up_in_multipart_parts() {
    let lake = Lake::new("rotate");
    let mut d = destination("out/", Some(FileFormat::Jsonl));
    d.file_size = Some("1KiB".into());
    // 25 batches of 10 rows of `{"id":NNN}\n` (11 bytes): a part is full after 10 batches.
    let batches: Vec<Result<RecordBatch>> = (0..25)
        .map(|i| Ok(ids(i * 10 + 100..i * 10 + 110)))
        .collect();
    let outcome = ok(lake.write(d, ids(0..1).schema(), batches).await);
    let files = lake.files().await;
    assert_eq!(files.len(), 3, "{files:?}");
    let mut sizes = Vec::new();
    for (i, file) in files.iter().enumerate() {
        assert!(file.ends_with(&format!("-{i:05}.jsonl")), "{files:?}");
        sizes.push(lake.head(file).await.0);
    }
    assert_eq!(sizes, vec![1100, 1100, 550]);
    assert_eq!(outcome.bytes, 2750);
    let (_, back) = ok(lake.read(source("out/")).await);
    assert_eq!(id_values(&back), (100..350).map(Some).collect::<Vec<_>>());

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
    let files = lake.files().await;
    assert_eq!(files, vec!["big.bin", "small.bin"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_overwrite_leaves_the_old_objects_and_no_temporaries() {
    let lake = Lake::new("failed");
    for (fqn, format) in [("out/", Some(FileFormat::Csv)), ("one.jsonl", None)] {
        ok(lake
            .write(
                overwrite(fqn, format),
                wide(0..1).schema(),
                vec![Ok(wide(0..3))],
            )
            .await);
        let before = lake.keys().await;
        // The first batch alone is more than a part: a multipart upload is under way when
        // the input fails.
        let input = vec![
            Ok(wide(10..100_010)),
            Err(Error::transform("boom in transform")),
            Ok(wide(20..30)),
        ];
        let err = lake
            .write(overwrite(fqn, format), wide(0..1).schema(), input)
            .await
            .err()
            .map(|e| e.to_string());
        assert_eq!(err.as_deref(), Some("boom in transform"));
        assert_eq!(lake.keys().await, before, "{fqn}");
        assert_eq!(lake.pending_uploads(), 0, "{fqn}");
        let (_, batches) = ok(lake.read(source(fqn)).await);
        assert_eq!(id_values(&batches), vec![Some(0), Some(1), Some(2)]);
    }
    // A successful overwrite replaces every object of the folder, in one new part.
    lake.put("out/_SUCCESS", "").await;
    let replaced = ok(lake
        .write(
            overwrite("out/", Some(FileFormat::Csv)),
            ids(0..1).schema(),
            vec![Ok(ids(7..8))],
        )
        .await);
    assert_eq!(replaced.rows, 1);
    let (_, batches) = ok(lake.read(source("out/")).await);
    assert_eq!(id_values(&batches), vec![Some(7)]);
    let files = lake.files().await;
    assert_eq!(files.len(), 2, "{files:?}");
    assert!(files.iter().all(|f| !f.contains("synqx-tmp")), "{files:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dropped_write_aborts_its_upload_and_removes_its_temporaries() {
    let lake = Lake::new("dropped");
    ok(lake
        .write(
            overwrite("out/", Some(FileFormat::Csv)),
            ids(0..1).schema(),
            vec![Ok(ids(0..3))],
        )
        .await);
    let before = lake.keys().await;
    // More than a part, then an input that never ends: the write is dropped once a multipart
    // upload is under way.
    let input = futures::stream::iter(vec![Ok(wide(0..100_000))]).chain(futures::stream::pending());
    let request = WriteRequest {
        spec: overwrite("out/", Some(FileFormat::Csv)),
        batch_bytes: 1 << 20,
        deadline: None,
    };
    let counters = Counters::default();
    let write = lake.sink.write(
        &request,
        SchemaStream::new(wide(0..1).schema(), input),
        &counters,
    );
    drop_once_staged(write, || lake.pending_uploads() > 0).await;
    // The writing thread notices the closed channel; its staging area cleans up in a task.
    let mut clean = false;
    for _ in 0..150 {
        if lake.keys().await == before && lake.pending_uploads() == 0 {
            clean = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        clean,
        "{:?} uploads: {}",
        lake.keys().await,
        lake.pending_uploads()
    );
    let (_, batches) = ok(lake.read(source("out/")).await);
    assert_eq!(id_values(&batches), vec![Some(0), Some(1), Some(2)]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn appends_add_parts_and_rewrite_single_text_objects() {
    let lake = Lake::new("append");
    let folder = destination("pq/", Some(FileFormat::Parquet));
    for range in [0..2, 2..4] {
        ok(lake
            .write(folder.clone(), ids(0..1).schema(), vec![Ok(ids(range))])
            .await);
    }
    assert_eq!(lake.files().await.len(), 2);
    let (_, parts) = ok(lake.read(source("pq/")).await);
    assert_eq!(id_values(&parts), vec![Some(0), Some(1), Some(2), Some(3)]);

    for fqn in ["one.csv", "one.csv.gz", "one.jsonl"] {
        let first = ok(lake
            .write(
                destination(fqn, None),
                ids(0..1).schema(),
                vec![Ok(ids(0..2))],
            )
            .await);
        let second = ok(lake
            .write(
                destination(fqn, None),
                ids(0..1).schema(),
                vec![Ok(ids(2..4))],
            )
            .await);
        assert_eq!(first.bytes + second.bytes, lake.head(fqn).await.0, "{fqn}");
        let (_, batches) = ok(lake.read(source(fqn)).await);
        assert_eq!(
            id_values(&batches),
            vec![Some(0), Some(1), Some(2), Some(3)],
            "{fqn}"
        );
    }
    assert_eq!(lake.text("one.csv").await, "id\n0\n1\n2\n3\n");
    let files = lake.files().await;
    assert!(!files.iter().any(|f| f.contains("synqx")), "{files:?}");

    let schema = ids(0..1).schema();
    let mut upsert = destination("pq/", Some(FileFormat::Parquet));
    upsert.mode = Some(WriteMode::Upsert);
    upsert.primary_key = vec!["id".into()];
    let cases = [
        (
            upsert,
            "destination pq/: files have no keys, so mode upsert is not possible (use append or overwrite)",
        ),
        (
            destination("one.parquet", None),
            "destination one.parquet: a Parquet file cannot be appended to; write to a folder (an FQN ending in `/`) to add part files, or use mode overwrite",
        ),
    ];
    for (spec, message) in cases {
        let err = lake.write(spec, schema.clone(), vec![Ok(ids(0..1))]).await;
        assert_eq!(err.err().map(|e| e.to_string()).as_deref(), Some(message));
    }
    assert_eq!(lake.files().await, files);
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
