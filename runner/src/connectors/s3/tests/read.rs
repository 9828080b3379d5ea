//! Reading from a real S3 server (moto): selection below the prefix, formats, batching, bad
//! rows, incremental reads, and errors that name where and never what the credentials are.

use std::collections::BTreeMap;
use std::io::Write;
use std::sync::Arc;

use arrow::array::{AsArray, RecordBatch};
use arrow::datatypes::{DataType, TimestampMicrosecondType};
use synqx_api::pipeline::{Compression, FileFormat, Incremental, OnError, WriteMode};

use super::support::{
    Lake, PREFIX, assert_redacted, connection, destination, id_values, ids, keyed, nested, ok,
    open, scalars, secret_documents, source,
};
use crate::engine::{Counters, CursorFilter, FILE_MODIFIED_COLUMN, Rejects};
use crate::secrets::Secrets;
use synqx_testkit::s3::{self as moto, closed_endpoint, echoing_server};

fn gzip(text: &str) -> Vec<u8> {
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    encoder
        .write_all(text.as_bytes())
        .unwrap_or_else(|e| panic!("{e}"));
    encoder.finish().unwrap_or_else(|e| panic!("{e}"))
}

fn overwrite(fqn: &str, format: Option<FileFormat>) -> synqx_api::pipeline::Destination {
    let mut d = destination(fqn, format);
    d.mode = Some(WriteMode::Overwrite);
    d
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_format_round_trips_through_s3() {
    let lake = Lake::new("formats");
    let decimal = BTreeMap::from([("price".to_string(), "decimal(12,2)".to_string())]);
    let flat = scalars();
    let outcome = ok(lake
        .write(
            overwrite("out/orders.csv", None),
            flat.schema(),
            vec![Ok(flat.clone())],
        )
        .await);
    assert_eq!(outcome.rows, 4);
    assert_eq!(outcome.bytes, lake.head("out/orders.csv").await.0);
    let mut csv = source("out/orders.csv");
    csv.columns = decimal.clone();
    assert_eq!(ok(lake.read_all(csv).await), flat);

    let deep = nested();
    ok(lake
        .write(
            overwrite("out/orders.jsonl.gz", None),
            deep.schema(),
            vec![Ok(deep.clone())],
        )
        .await);
    assert_eq!(&lake.bytes("out/orders.jsonl.gz").await[..2], b"\x1f\x8b");
    let mut jsonl = source("out/orders.jsonl.gz");
    jsonl.columns = decimal;
    assert_eq!(ok(lake.read_all(jsonl).await), deep);

    for (folder, compression) in [("zstd/", None), ("snappy/", Some(Compression::Snappy))] {
        let mut d = destination(folder, Some(FileFormat::Parquet));
        d.compression = compression;
        let halves = vec![Ok(deep.slice(0, 2)), Ok(deep.slice(2, 2))];
        ok(lake.write(d, deep.schema(), halves).await);
        assert_eq!(ok(lake.read_all(source(folder)).await), deep, "{folder}");
    }
    let mut gz = destination("gz/", Some(FileFormat::Csv));
    gz.compression = Some(Compression::Gzip);
    ok(lake
        .write(gz, ids(0..1).schema(), vec![Ok(ids(0..3))])
        .await);
    let (_, back) = ok(lake.read(source("gz/")).await);
    assert_eq!(id_values(&back), vec![Some(0), Some(1), Some(2)]);
    let files = lake.files().await;
    assert!(
        files
            .iter()
            .any(|f| f.starts_with("gz/part-") && f.ends_with("-00000.csv.gz")),
        "{files:?}"
    );
    // Everything went below the connection's prefix, and no temporary was left.
    let keys = lake.keys().await;
    assert_eq!(keys.len(), files.len());
    assert!(
        keys.iter()
            .all(|k| k.starts_with("lake/") && !k.contains("synqx-tmp")),
        "{keys:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn folders_globs_and_keys_select_objects_below_the_prefix() {
    let lake = Lake::new("select");
    lake.put("raw/orders/2024-02.csv", "id\n3\n4\n").await;
    lake.put("raw/orders/2024-01.csv", "id\n1\n2\n").await;
    lake.put("raw/orders/late/2024-03.csv", "id\n5\n").await;
    lake.put("raw/orders/notes.txt", "not data").await;
    lake.put("raw/orders/.part-x.csv.synqx-tmp", "id\n99\n")
        .await;
    lake.put("raw/.orders.synqx-tmp-1/part-1-00000.csv", "id\n98\n")
        .await;
    lake.put("raw/orders/_SUCCESS", "").await;
    // Outside the connection's prefix: never seen.
    let outside = ok(lake.raw.key("raw/orders/2024-00.csv"));
    let body = b"id\n0\n".to_vec().into();
    let put = object_store::ObjectStoreExt::put(lake.raw.store.as_ref(), &outside, body);
    put.await.unwrap_or_else(|e| panic!("{e}"));

    let (_, folder) = ok(lake.read(source("raw/orders/")).await);
    let all: Vec<_> = (1..=5).map(Some).collect();
    assert_eq!(id_values(&folder), all);
    let (_, named) = ok(lake.read(source("raw/orders")).await);
    assert_eq!(id_values(&named), all);
    let (_, glob) = ok(lake.read(source("raw/orders/*.csv")).await);
    assert_eq!(id_values(&glob), vec![Some(1), Some(2), Some(3), Some(4)]);
    let (_, deep) = ok(lake.read(source("raw/**/2024-0[13].csv")).await);
    assert_eq!(id_values(&deep), vec![Some(1), Some(2), Some(5)]);
    let (_, one) = ok(lake.read(source("raw/orders/2024-02.csv")).await);
    assert_eq!(id_values(&one), vec![Some(3), Some(4)]);

    let err = lake.read(source("raw/*.jsonl")).await.err();
    assert_eq!(
        err.map(|e| e.to_string()).as_deref(),
        Some(
            format!(
                "no jsonl file matches `raw/*.jsonl` in s3://{}/{PREFIX}/ (Connection \"lake\")",
                lake.bucket
            )
            .as_str()
        )
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gzip_bodies_stream_in_byte_budget_batches_and_bad_rows_are_skipped() {
    let lake = Lake::new("batches");
    // A 7-byte header and 100 rows of exactly 20 bytes, as in the filesystem tests.
    let mut text = String::from("id,pad\n");
    for i in 0..100 {
        text.push_str(&format!("{i:03},{}\n", "x".repeat(15)));
    }
    lake.put("wide.csv.gz", gzip(&text)).await;
    let sizes = |batches: &[RecordBatch]| batches.iter().map(|b| b.num_rows()).collect::<Vec<_>>();
    let (schema, ten) = ok(lake
        .read_with(source("wide.csv.gz"), None, 361, Rejects::failing())
        .await);
    assert_eq!(sizes(&ten), vec![10; 10]);
    assert_eq!(schema.field(0).data_type(), &DataType::Int64);

    lake.put("orders.csv", "id,total\n1,2.5\n2,3.5\n3,\"12,5x\"\n4,4.5\n")
        .await;
    let mut spec = source("orders.csv");
    spec.columns = BTreeMap::from([("total".to_string(), "float64".to_string())]);
    let err = lake.read(spec.clone()).await.err().map(|e| e.to_string());
    assert_eq!(
        err.as_deref(),
        Some(
            "orders.csv: line 4, column \"total\": cannot parse the value as float64; set onError: skip to skip such rows into the rejected file"
        )
    );
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let dead = dir.path().join("dead.jsonl");
    let counters = Arc::new(Counters::default());
    let rejects = Rejects::new(OnError::Skip, Some(dead.clone()), counters.clone());
    let (_, batches) = ok(lake.read_with(spec, None, 1 << 20, rejects).await);
    assert_eq!(id_values(&batches), vec![Some(1), Some(2), Some(4)]);
    assert_eq!(counters.snapshot().rows_rejected, 1);
    let line = std::fs::read_to_string(&dead).unwrap_or_default();
    assert!(
        line.contains("\"location\":\"orders.csv: line 4\""),
        "{line}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn incremental_reads_filter_rows_and_skip_unchanged_objects() {
    let lake = Lake::new("incremental");
    lake.put(
        "a.csv",
        "id,updated\n1,2024-01-01T00:00:00Z\n2,2024-01-02T00:00:00Z\n3,2024-01-03T00:00:00Z\n",
    )
    .await;
    let mut spec = source("a.csv");
    spec.incremental = Some(Incremental {
        cursor: "updated".into(),
        ..Default::default()
    });
    let filter = CursorFilter {
        column: "updated".into(),
        after: "2024-01-02T00:00:00+00:00".into(),
    };
    let (_, rows) = ok(lake
        .read_with(spec, Some(filter), 1 << 20, Rejects::failing())
        .await);
    assert_eq!(id_values(&rows), vec![Some(3)]);

    lake.put("drop/a.jsonl", "{\"id\": 1}\n{\"id\": 2}\n").await;
    // Last-modified times have a resolution of one second.
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    lake.put("drop/b.jsonl", "{\"id\": 3}\n").await;
    let mut spec = source("drop/");
    spec.incremental = Some(Incremental {
        cursor: FILE_MODIFIED_COLUMN.into(),
        ..Default::default()
    });
    let (_, first) = ok(lake
        .read_with(spec.clone(), None, 1 << 20, Rejects::failing())
        .await);
    assert_eq!(id_values(&first), vec![Some(1), Some(2), Some(3)]);
    let times: Vec<i64> = first
        .iter()
        .flat_map(|b| {
            let times = b.column(1).as_primitive::<TimestampMicrosecondType>();
            times.values().to_vec()
        })
        .collect();
    assert!(times[0] == times[1] && times[1] < times[2], "{times:?}");
    // The watermark after the first object: only the later one is read again.
    let after = chrono::DateTime::from_timestamp_micros(times[0])
        .map(|t| t.to_rfc3339())
        .unwrap_or_default();
    let filter = CursorFilter {
        column: FILE_MODIFIED_COLUMN.into(),
        after,
    };
    let (_, next) = ok(lake
        .read_with(spec, Some(filter), 1 << 20, Rejects::failing())
        .await);
    assert_eq!(id_values(&next), vec![Some(3)]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_endpoint_fails_with_the_connection_named() {
    // The connection is refused on every attempt.
    let spec = connection(&closed_endpoint(), "lake", None);
    let lake = open("offline-lake", &spec, &Secrets::default());
    let err = lake
        .read(source("raw/orders/"))
        .await
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
    assert!(
        err.starts_with("Connection \"offline-lake\": listing s3://lake/"),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_bucket_is_named_without_the_credentials() {
    let moto = moto::server();
    let secrets = Secrets::new([secret_documents()].iter(), []);
    let spec = keyed(moto.endpoint(), "synqx-no-such-bucket");
    let lake = open("vault-lake", &spec, &secrets);
    let err = lake
        .read(source("raw/orders/"))
        .await
        .err()
        .map(|e| e.to_string());
    assert_eq!(
        err.as_deref(),
        Some(
            "Connection \"vault-lake\": listing s3://synqx-no-such-bucket/lake/raw/orders/: NoSuchBucket: The specified bucket does not exist"
        )
    );
    let written = lake
        .write(
            overwrite("out/a.csv", None),
            ids(0..1).schema(),
            vec![Ok(ids(0..2))],
        )
        .await;
    let err = written.err().map(|e| e.to_string()).unwrap_or_default();
    assert!(
        err.starts_with("Connection \"vault-lake\": writing s3://synqx-no-such-bucket/lake/out/.a.csv.synqx-tmp-"),
        "{err}"
    );
    assert!(
        err.ends_with(": NoSuchBucket: The specified bucket does not exist"),
        "{err}"
    );
    assert_redacted(&err);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn credentials_echoed_by_the_server_are_redacted_from_errors() {
    let (endpoint, seen) = echoing_server();
    let secrets = Secrets::new([secret_documents()].iter(), []);
    let lake = open("vault-lake", &keyed(endpoint, "orders-bucket"), &secrets);
    let err = lake.read(source("raw/")).await.err().map(|e| e.to_string());
    let err = err.unwrap_or_default();
    let requests = seen.lock().map(|s| s.join("\n")).unwrap_or_default();
    assert!(
        requests.contains("AKIDSYNQXREDACTME01") && requests.contains("SESSIONTOKENSYNQXREDACTME"),
        "the server did not see the credentials: {requests}"
    );
    assert!(
        err.starts_with(
            "Connection \"vault-lake\": listing s3://orders-bucket/lake/raw/: InvalidAccessKeyId: request was: GET "
        ),
        "{err}"
    );
    assert!(err.contains("Credential=***/"), "{err}");
    assert_redacted(&err);
}
