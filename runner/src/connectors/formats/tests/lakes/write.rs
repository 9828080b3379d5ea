//! Writing through a file connector: every format round trips, parts rotate, appends add part
//! files or extend a single file, destinations that cannot work are refused, a failed or
//! dropped write leaves the old data, and appends evolve the columns.

use std::time::Duration;

use arrow::array::{AsArray, RecordBatch, StringArray};
use arrow::datatypes::{DataType, Field, Schema};
use futures::StreamExt;
use synqx_api::pipeline::{Compression, FileFormat, SchemaEvolution, WriteMode};

use super::super::{
    decimal_price, destination, err, id_values, ids, nested, ok, overwrite, scalars, source, wide,
};
use super::Lake;
use crate::connectors::tests::drop_once_staged;
use crate::engine::{SchemaStream, WriteRequest};
use crate::error::{Error, Result};

pub(crate) async fn csv_round_trips_every_scalar_type(lake: &impl Lake) {
    let batch = scalars();
    let outcome = lake
        .write_batch(overwrite("out/orders.csv", None), batch.clone())
        .await;
    assert_eq!(outcome.rows, 4);
    assert_eq!(outcome.bytes, lake.size("out/orders.csv").await);
    let text = lake.text("out/orders.csv").await;
    assert!(text.starts_with("id,amount,price,name,paid,day,at\n1,10.5,1234.56,plain,true,2024-01-31,2024-01-31T10:00:00.123456Z\n"), "{text}");
    let mut spec = source("out/orders.csv");
    spec.columns = decimal_price();
    assert_eq!(ok(lake.read_all(spec).await), batch);
}

/// Plain, and gzipped because the name says so.
pub(crate) async fn jsonl_round_trips_scalars_and_nested_values(lake: &impl Lake) {
    let batch = nested();
    for (fqn, start) in [
        ("out/orders.jsonl", &b"{\""[..]),
        ("out/orders.jsonl.gz", &b"\x1f\x8b"[..]),
    ] {
        lake.write_batch(overwrite(fqn, None), batch.clone()).await;
        assert_eq!(&lake.bytes(fqn).await[..2], start, "{fqn}");
        let mut spec = source(fqn);
        spec.columns = decimal_price();
        assert_eq!(ok(lake.read_all(spec).await), batch, "{fqn}");
    }
}

/// Zstd is the default.
pub(crate) async fn parquet_round_trips_with_zstd_and_snappy(lake: &impl Lake) {
    let batch = nested();
    for (folder, compression) in [("zstd/", None), ("snappy/", Some(Compression::Snappy))] {
        let mut d = destination(folder, Some(FileFormat::Parquet));
        d.compression = compression;
        let halves = vec![Ok(batch.slice(0, 2)), Ok(batch.slice(2, 2))];
        ok(lake.write(d, batch.schema(), halves).await);
        assert_eq!(ok(lake.read_all(source(folder)).await), batch, "{folder}");
    }
}

pub(crate) async fn gzip_folders_write_csv_gz_parts(lake: &impl Lake) {
    let mut d = destination("out/", Some(FileFormat::Csv));
    d.compression = Some(Compression::Gzip);
    let outcome = lake.write_batch(d, ids(0..3)).await;
    let files = lake.files().await;
    assert!(
        files.len() == 1
            && files[0].starts_with("out/part-")
            && files[0].ends_with("-00000.csv.gz"),
        "{files:?}"
    );
    assert_eq!(outcome.bytes, lake.size(&files[0]).await);
    assert_eq!(
        lake.read_ids(source("out/")).await,
        [Some(0), Some(1), Some(2)]
    );
}

pub(crate) async fn parts_rotate_when_they_reach_the_file_size(lake: &impl Lake) {
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
        sizes.push(lake.size(file).await);
    }
    assert_eq!(sizes, [1100, 1100, 550]);
    assert_eq!(outcome.bytes, 2750);
    assert_eq!(
        lake.read_ids(source("out/")).await,
        (100..350).map(Some).collect::<Vec<_>>()
    );
}

pub(crate) async fn appends_add_part_files_and_extend_single_text_files(lake: &impl Lake) {
    let all = [Some(0), Some(1), Some(2), Some(3)];
    let folder = destination("out/", Some(FileFormat::Parquet));
    for range in [0..2, 2..4] {
        lake.write_batch(folder.clone(), ids(range)).await;
    }
    assert_eq!(lake.files().await.len(), 2);
    assert_eq!(lake.read_ids(source("out/")).await, all);

    for fqn in ["one.csv", "one.csv.gz", "one.jsonl"] {
        let first = lake.write_batch(destination(fqn, None), ids(0..2)).await;
        let second = lake.write_batch(destination(fqn, None), ids(2..4)).await;
        assert_eq!(first.bytes + second.bytes, lake.size(fqn).await, "{fqn}");
        assert_eq!(lake.read_ids(source(fqn)).await, all, "{fqn}");
    }
    assert_eq!(lake.text("one.csv").await, "id\n0\n1\n2\n3\n");
    assert_eq!(
        lake.text("one.jsonl").await,
        "{\"id\":0}\n{\"id\":1}\n{\"id\":2}\n{\"id\":3}\n"
    );
    let files = lake.files().await;
    assert!(!files.iter().any(|f| f.contains("synqx")), "{files:?}");
}

pub(crate) async fn unsupported_destinations_are_refused_with_the_reason(lake: &impl Lake) {
    let mut upsert = destination("out/", Some(FileFormat::Parquet));
    upsert.mode = Some(WriteMode::Upsert);
    upsert.primary_key = vec!["id".into()];
    let mut zstd_csv = destination("x.csv", None);
    zstd_csv.compression = Some(Compression::Zstd);
    let cases = [
        (
            upsert,
            "destination out/: files have no keys, so mode upsert is not possible (use append or overwrite)",
        ),
        (
            destination("out.parquet", None),
            "destination out.parquet: a Parquet file cannot be appended to; write to a folder (an FQN ending in `/`) to add part files, or use mode overwrite",
        ),
        (
            destination("out/", None),
            "destination out/: set `format` (csv, jsonl or parquet)",
        ),
        (
            destination("out/*.csv", None),
            "destination out/*.csv: a destination cannot be a glob",
        ),
        (
            zstd_csv,
            "compression zstd is not available for csv files (use gzip or none)",
        ),
    ];
    for (spec, message) in cases {
        let refused = lake.write(spec, ids(0..1).schema(), vec![Ok(ids(0..1))]);
        assert_eq!(err(refused.await), message);
    }
    assert_eq!(lake.files().await, Vec::<String>::new());
}

/// The batch before the failure is more than a part of a multipart upload, so that S3 has an
/// upload under way when the input fails.
pub(crate) async fn a_failed_overwrite_leaves_the_old_data_and_no_temporaries(lake: &impl Lake) {
    for (fqn, format) in [("out/", Some(FileFormat::Csv)), ("one.jsonl", None)] {
        lake.write_batch(overwrite(fqn, format), wide(0..3)).await;
        let before = lake.snapshot().await;
        let input = vec![
            Ok(wide(10..100_010)),
            Err(Error::transform("boom in transform")),
            Ok(wide(20..30)),
        ];
        let failed = lake.write(overwrite(fqn, format), wide(0..1).schema(), input);
        assert_eq!(err(failed.await), "boom in transform");
        assert_eq!(lake.snapshot().await, before, "{fqn}");
        assert_eq!(
            lake.read_ids(source(fqn)).await,
            [Some(0), Some(1), Some(2)],
            "{fqn}"
        );
    }
    // A successful overwrite replaces every file of the folder, even one it did not write,
    // with one new part.
    lake.put("out/_SUCCESS", "").await;
    let replaced = lake
        .write_batch(overwrite("out/", Some(FileFormat::Csv)), ids(7..8))
        .await;
    assert_eq!(replaced.rows, 1);
    assert_eq!(lake.read_ids(source("out/")).await, [Some(7)]);
    let files = lake.files().await;
    assert!(
        files.len() == 2 && files[0] == "one.jsonl" && files[1].starts_with("out/part-"),
        "{files:?}"
    );
}

pub(crate) async fn a_dropped_write_leaves_the_old_data_and_removes_its_temporaries(
    lake: &impl Lake,
) {
    let destination = overwrite("out/", Some(FileFormat::Csv));
    lake.write_batch(destination.clone(), ids(0..3)).await;
    let before = lake.snapshot().await;
    // More than a part of a multipart upload, then an input that never ends: the write is
    // dropped, as a killed step's would be, once it has staged something.
    let input = futures::stream::iter(vec![Ok(wide(0..100_000))]).chain(futures::stream::pending());
    let request = WriteRequest::to(destination);
    let write = lake
        .sink
        .write(&request, SchemaStream::new(wide(0..1).schema(), input));
    drop_once_staged(write, || lake.staging()).await;
    // The writing thread notices the closed channel and cleans up; S3 in a task of its own.
    let mut left = lake.snapshot().await;
    for _ in 0..150 {
        if left == before {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
        left = lake.snapshot().await;
    }
    assert_eq!(left, before);
    assert_eq!(
        lake.read_ids(source("out/")).await,
        [Some(0), Some(1), Some(2)]
    );
}

/// `ids` with a `name` column `n<id>`.
fn with_name(values: std::ops::Range<i64>) -> RecordBatch {
    let schema = std::sync::Arc::new(Schema::new(vec![
        Field::new("id", DataType::Int64, true),
        Field::new("name", DataType::Utf8, true),
    ]));
    let names: StringArray = values.clone().map(|v| Some(format!("n{v}"))).collect();
    let columns = vec![
        ids(values).column(0).clone(),
        std::sync::Arc::new(names) as _,
    ];
    RecordBatch::try_new(schema, columns).unwrap_or_else(|e| panic!("{e}"))
}

pub(crate) async fn schema_evolution_of_folder_appends(lake: &impl Lake) {
    let mut d = destination("out/", Some(FileFormat::Parquet));
    lake.write_batch(d.clone(), ids(0..2)).await;
    d.schema_evolution = Some(SchemaEvolution::Fail);
    let refused = lake.write(
        d.clone(),
        with_name(2..4).schema(),
        vec![Ok(with_name(2..4))],
    );
    assert_eq!(
        err(refused.await),
        "destination out/: schemaEvolution is fail and the rows differ from the existing files: new columns \"name\""
    );
    assert_eq!(lake.files().await.len(), 1);

    d.schema_evolution = Some(SchemaEvolution::Ignore);
    lake.write_batch(d.clone(), with_name(2..4)).await;
    d.schema_evolution = Some(SchemaEvolution::AddColumns);
    lake.write_batch(d, with_name(4..6)).await;
    let all = ok(lake.read_all(source("out/")).await);
    assert_eq!(
        id_values(std::slice::from_ref(&all)),
        (0..6).map(Some).collect::<Vec<_>>()
    );
    let names: Vec<Option<&str>> = all.column(1).as_string::<i32>().iter().collect();
    assert_eq!(names, [None, None, None, None, Some("n4"), Some("n5")]);
}

pub(crate) async fn appending_columns_to_a_single_csv_rewrites_its_header(lake: &impl Lake) {
    lake.write_batch(destination("one.csv", None), ids(0..2))
        .await;
    lake.write_batch(destination("one.csv", None), with_name(2..3))
        .await;
    assert_eq!(lake.text("one.csv").await, "id,name\n0,\n1,\n2,n2\n");
    let mut ignore = destination("one.csv", None);
    ignore.schema_evolution = Some(SchemaEvolution::Ignore);
    lake.write_batch(ignore, ids(3..4)).await;
    assert_eq!(lake.text("one.csv").await, "id,name\n0,\n1,\n2,n2\n3,\n");
}

pub(crate) async fn an_empty_overwrite_keeps_the_columns(lake: &impl Lake) {
    let replace = overwrite("out/", Some(FileFormat::Csv));
    lake.write_batch(replace.clone(), ids(0..3)).await;
    let outcome = ok(lake.write(replace, ids(0..1).schema(), vec![]).await);
    assert_eq!(outcome.rows, 0);
    let files = lake.files().await;
    assert_eq!(files.len(), 1);
    assert_eq!(lake.text(&files[0]).await, "id\n");
    // An append of nothing writes nothing.
    let append = destination("out/", Some(FileFormat::Csv));
    let nothing = ok(lake.write(append, ids(0..1).schema(), vec![]).await);
    assert_eq!((nothing.rows, nothing.bytes), (0, 0));
    assert_eq!(lake.files().await, files);
    let (schema, batches) = ok(lake.read(source("out/")).await);
    assert!(batches.is_empty());
    assert_eq!(schema.fields().len(), 1);
}
