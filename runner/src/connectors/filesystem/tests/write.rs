use std::collections::BTreeMap;
use std::time::Duration;

use arrow::array::{AsArray, RecordBatch};
use futures::StreamExt;
use synqx_api::pipeline::{Compression, FileFormat, SchemaEvolution, WriteMode};

use super::support::{Lake, destination, id_values, ids, nested, ok, scalars, source};
use crate::connectors::tests::drop_once_staged;
use crate::engine::{Counters, SchemaStream, WriteRequest};
use crate::error::{Error, Result};

fn overwrite(fqn: &str, format: Option<FileFormat>) -> synqx_api::pipeline::Destination {
    let mut d = destination(fqn, format);
    d.mode = Some(WriteMode::Overwrite);
    d
}

fn decimal_override() -> BTreeMap<String, String> {
    BTreeMap::from([("price".to_string(), "decimal(12,2)".to_string())])
}

#[tokio::test]
async fn csv_round_trips_every_scalar_type() {
    let lake = Lake::new();
    let batch = scalars();
    let outcome = ok(lake
        .write(
            overwrite("out/orders.csv", None),
            batch.schema(),
            vec![Ok(batch.clone())],
        )
        .await);
    assert_eq!(outcome.rows, 4);
    assert_eq!(
        outcome.bytes,
        std::fs::metadata(lake.path("out/orders.csv"))
            .map(|m| m.len())
            .unwrap_or_default()
    );
    let text = lake.text("out/orders.csv");
    assert!(text.starts_with("id,amount,price,name,paid,day,at\n1,10.5,1234.56,plain,true,2024-01-31,2024-01-31T10:00:00.123456Z\n"), "{text}");
    let mut spec = source("out/orders.csv");
    spec.columns = decimal_override();
    assert_eq!(ok(lake.read_all(spec).await), batch);
}

#[tokio::test]
async fn jsonl_round_trips_scalars_and_nested_values() {
    let lake = Lake::new();
    let batch = nested();
    ok(lake
        .write(
            overwrite("out/orders.jsonl", None),
            batch.schema(),
            vec![Ok(batch.clone())],
        )
        .await);
    let mut spec = source("out/orders.jsonl");
    spec.columns = decimal_override();
    assert_eq!(ok(lake.read_all(spec).await), batch);
}

#[tokio::test]
async fn parquet_round_trips_with_zstd_and_snappy() {
    for compression in [None, Some(Compression::Snappy)] {
        let lake = Lake::new();
        let batch = nested();
        let mut d = destination("out/", Some(FileFormat::Parquet));
        d.compression = compression;
        ok(lake
            .write(
                d,
                batch.schema(),
                vec![Ok(batch.slice(0, 2)), Ok(batch.slice(2, 2))],
            )
            .await);
        assert_eq!(ok(lake.read_all(source("out/")).await), batch);
    }
}

#[tokio::test]
async fn gzip_folders_write_csv_gz_parts() {
    let lake = Lake::new();
    let mut d = destination("out/", Some(FileFormat::Csv));
    d.compression = Some(Compression::Gzip);
    let outcome = ok(lake.write(d, ids(0..3).schema(), vec![Ok(ids(0..3))]).await);
    let files = lake.files();
    assert_eq!(files.len(), 1);
    assert!(
        files[0].starts_with("out/part-") && files[0].ends_with("-00000.csv.gz"),
        "{files:?}"
    );
    assert_eq!(
        outcome.bytes,
        std::fs::metadata(lake.path(&files[0]))
            .map(|m| m.len())
            .unwrap_or_default()
    );
    let (_, batches) = ok(lake.read(source("out/")).await);
    assert_eq!(id_values(&batches), vec![Some(0), Some(1), Some(2)]);
}

#[tokio::test]
async fn parts_rotate_when_they_reach_the_file_size() {
    let lake = Lake::new();
    let mut d = destination("out/", Some(FileFormat::Jsonl));
    d.file_size = Some("1KiB".into());
    // 25 batches of 10 rows of `{"id":NNN}\n` (11 bytes): a part is full after 10 batches.
    let batches: Vec<Result<RecordBatch>> = (0..25)
        .map(|i| Ok(ids(i * 10 + 100..i * 10 + 110)))
        .collect();
    let outcome = ok(lake.write(d, ids(0..1).schema(), batches).await);
    let files = lake.files();
    assert_eq!(files.len(), 3, "{files:?}");
    let sizes: Vec<u64> = files
        .iter()
        .map(|f| {
            std::fs::metadata(lake.path(f))
                .map(|m| m.len())
                .unwrap_or_default()
        })
        .collect();
    assert_eq!(sizes, vec![1100, 1100, 550]);
    assert_eq!(outcome.bytes, 2750);
    assert!(
        files
            .iter()
            .enumerate()
            .all(|(i, f)| f.ends_with(&format!("-{i:05}.jsonl"))),
        "{files:?}"
    );
    let (_, back) = ok(lake.read(source("out/")).await);
    assert_eq!(id_values(&back), (100..350).map(Some).collect::<Vec<_>>());
}

#[tokio::test]
async fn appends_add_part_files_and_extend_single_text_files() {
    let lake = Lake::new();
    let folder = destination("out/", Some(FileFormat::Parquet));
    ok(lake
        .write(folder.clone(), ids(0..2).schema(), vec![Ok(ids(0..2))])
        .await);
    ok(lake
        .write(folder, ids(0..2).schema(), vec![Ok(ids(2..4))])
        .await);
    assert_eq!(lake.files().len(), 2);
    let (_, parts) = ok(lake.read(source("out/")).await);
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
        let size = std::fs::metadata(lake.path(fqn))
            .map(|m| m.len())
            .unwrap_or_default();
        assert_eq!(first.bytes + second.bytes, size, "{fqn}");
        let (_, batches) = ok(lake.read(source(fqn)).await);
        assert_eq!(
            id_values(&batches),
            vec![Some(0), Some(1), Some(2), Some(3)],
            "{fqn}"
        );
    }
    assert_eq!(lake.text("one.csv"), "id\n0\n1\n2\n3\n");
    assert_eq!(
        lake.text("one.jsonl"),
        "{\"id\":0}\n{\"id\":1}\n{\"id\":2}\n{\"id\":3}\n"
    );
    assert!(
        !lake.files().iter().any(|f| f.contains("synqx")),
        "{:?}",
        lake.files()
    );
}

#[tokio::test]
async fn a_failed_overwrite_leaves_the_old_data_and_no_temporaries() {
    let lake = Lake::new();
    for (fqn, format) in [("out/", Some(FileFormat::Csv)), ("one.jsonl", None)] {
        ok(lake
            .write(
                overwrite(fqn, format),
                ids(0..1).schema(),
                vec![Ok(ids(0..3))],
            )
            .await);
        let before = lake.files();
        let input = vec![
            Ok(ids(10..20)),
            Err(Error::transform("boom in transform")),
            Ok(ids(20..30)),
        ];
        let err = lake
            .write(overwrite(fqn, format), ids(0..1).schema(), input)
            .await
            .err()
            .map(|e| e.to_string());
        assert_eq!(err.as_deref(), Some("boom in transform"));
        assert_eq!(lake.files(), before);
        let (_, batches) = ok(lake.read(source(fqn)).await);
        assert_eq!(id_values(&batches), vec![Some(0), Some(1), Some(2)]);
    }
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
    assert_eq!(lake.files().len(), 2, "{:?}", lake.files());
}

#[tokio::test]
async fn a_dropped_write_leaves_the_old_data_and_removes_its_temporaries() {
    let lake = Lake::new();
    ok(lake
        .write(
            overwrite("out/", Some(FileFormat::Csv)),
            ids(0..1).schema(),
            vec![Ok(ids(0..3))],
        )
        .await);
    let before = lake.files();
    // The input yields a batch, then never ends: the write is abandoned by the timeout.
    let input = futures::stream::iter(vec![Ok(ids(10..20))]).chain(futures::stream::pending());
    let request = WriteRequest {
        spec: overwrite("out/", Some(FileFormat::Csv)),
        batch_bytes: 1 << 20,
        deadline: None,
    };
    let counters = Counters::default();
    let write = lake.sink.write(
        &request,
        SchemaStream::new(ids(0..1).schema(), input),
        &counters,
    );
    drop_once_staged(write, || lake.files() != before).await;
    // The writing thread notices the closed channel and removes what it staged.
    let mut files = lake.files();
    for _ in 0..100 {
        if files == before {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
        files = lake.files();
    }
    assert_eq!(files, before);
    let (_, batches) = ok(lake.read(source("out/")).await);
    assert_eq!(id_values(&batches), vec![Some(0), Some(1), Some(2)]);
}

#[tokio::test]
async fn unsupported_destinations_are_refused_with_the_reason() {
    let lake = Lake::new();
    let schema = ids(0..1).schema();
    let mut upsert = destination("out/", Some(FileFormat::Parquet));
    upsert.mode = Some(WriteMode::Upsert);
    upsert.primary_key = vec!["id".into()];
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
    ];
    for (spec, message) in cases {
        let err = lake
            .write(spec, schema.clone(), vec![Ok(ids(0..1))])
            .await
            .err()
            .map(|e| e.to_string());
        assert_eq!(err.as_deref(), Some(message));
    }
    let mut zstd_csv = destination("x.csv", None);
    zstd_csv.compression = Some(Compression::Zstd);
    let err = lake
        .write(zstd_csv, schema, vec![])
        .await
        .err()
        .map(|e| e.to_string());
    assert_eq!(
        err.as_deref(),
        Some("compression zstd is not available for csv files (use gzip or none)")
    );
    assert!(lake.files().is_empty());
}

fn with_name(values: std::ops::Range<i64>) -> RecordBatch {
    let base = ids(values.clone());
    let names: Vec<String> = values.map(|v| format!("n{v}")).collect();
    let schema = std::sync::Arc::new(arrow::datatypes::Schema::new(vec![
        arrow::datatypes::Field::new("id", arrow::datatypes::DataType::Int64, true),
        arrow::datatypes::Field::new("name", arrow::datatypes::DataType::Utf8, true),
    ]));
    let name_column = std::sync::Arc::new(arrow::array::StringArray::from(names));
    RecordBatch::try_new(schema, vec![base.column(0).clone(), name_column])
        .unwrap_or_else(|e| panic!("{e}"))
}

#[tokio::test]
async fn schema_evolution_of_folder_appends() {
    let lake = Lake::new();
    let mut d = destination("out/", Some(FileFormat::Parquet));
    ok(lake
        .write(d.clone(), ids(0..1).schema(), vec![Ok(ids(0..2))])
        .await);
    d.schema_evolution = Some(SchemaEvolution::Fail);
    let wider = with_name(2..4);
    let err = lake
        .write(d.clone(), wider.schema(), vec![Ok(wider.clone())])
        .await
        .err()
        .map(|e| e.to_string());
    assert_eq!(
        err.as_deref(),
        Some(
            "destination out/: schemaEvolution is fail and the rows differ from the existing files: new columns \"name\""
        )
    );
    assert_eq!(lake.files().len(), 1);

    d.schema_evolution = Some(SchemaEvolution::Ignore);
    ok(lake
        .write(d.clone(), wider.schema(), vec![Ok(wider.clone())])
        .await);
    d.schema_evolution = Some(SchemaEvolution::AddColumns);
    ok(lake
        .write(d, wider.schema(), vec![Ok(with_name(4..6))])
        .await);
    let all = ok(lake.read_all(source("out/")).await);
    assert_eq!(
        id_values(std::slice::from_ref(&all)),
        (0..6).map(Some).collect::<Vec<_>>()
    );
    let names: Vec<Option<&str>> = all.column(1).as_string::<i32>().iter().collect();
    assert_eq!(names, vec![None, None, None, None, Some("n4"), Some("n5")]);
}

#[tokio::test]
async fn appending_columns_to_a_single_csv_rewrites_its_header() {
    let lake = Lake::new();
    ok(lake
        .write(
            destination("one.csv", None),
            ids(0..1).schema(),
            vec![Ok(ids(0..2))],
        )
        .await);
    let wider = with_name(2..3);
    ok(lake
        .write(
            destination("one.csv", None),
            wider.schema(),
            vec![Ok(wider)],
        )
        .await);
    assert_eq!(lake.text("one.csv"), "id,name\n0,\n1,\n2,n2\n");
    let mut ignore = destination("one.csv", None);
    ignore.schema_evolution = Some(SchemaEvolution::Ignore);
    ok(lake
        .write(ignore, ids(0..1).schema(), vec![Ok(ids(3..4))])
        .await);
    assert_eq!(lake.text("one.csv"), "id,name\n0,\n1,\n2,n2\n3,\n");
}

#[tokio::test]
async fn an_empty_overwrite_keeps_the_columns() {
    let lake = Lake::new();
    ok(lake
        .write(
            overwrite("out/", Some(FileFormat::Csv)),
            ids(0..1).schema(),
            vec![Ok(ids(0..3))],
        )
        .await);
    let outcome = ok(lake
        .write(
            overwrite("out/", Some(FileFormat::Csv)),
            ids(0..1).schema(),
            vec![],
        )
        .await);
    assert_eq!(outcome.rows, 0);
    let files = lake.files();
    assert_eq!(files.len(), 1);
    assert_eq!(lake.text(&files[0]), "id\n");
    let nothing = ok(lake
        .write(
            destination("out/", Some(FileFormat::Csv)),
            ids(0..1).schema(),
            vec![],
        )
        .await);
    assert_eq!((nothing.rows, nothing.bytes), (0, 0));
    assert_eq!(lake.files(), files);
    let (schema, batches) = ok(lake.read(source("out/")).await);
    assert!(batches.is_empty());
    assert_eq!(schema.fields().len(), 1);
}
