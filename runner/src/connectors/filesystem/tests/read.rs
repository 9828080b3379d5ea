use std::collections::BTreeMap;
use std::io::Write;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use arrow::array::{Array, AsArray, RecordBatch, StringArray};
use arrow::datatypes::{DataType, Field, Int64Type, Schema, TimeUnit, TimestampMicrosecondType};
use synqx_api::pipeline::{Compression, CsvOptions, FileFormat, Incremental, OnError, WriteMode};

use super::support::{Lake, destination, id_values, ids, ok, source};
use crate::Error;
use crate::engine::{Counters, CursorFilter, FILE_MODIFIED_COLUMN, Rejects};

fn gzip(text: &str) -> Vec<u8> {
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    encoder
        .write_all(text.as_bytes())
        .unwrap_or_else(|e| panic!("{e}"));
    encoder.finish().unwrap_or_else(|e| panic!("{e}"))
}

#[tokio::test]
async fn folders_read_every_matching_file_sorted_and_globs_match_names() {
    let lake = Lake::new();
    lake.put("raw/orders/2024-02.csv", "id\n3\n4\n");
    lake.put("raw/orders/2024-01.csv", "id\n1\n2\n");
    lake.put("raw/orders/late/2024-03.csv", "id\n5\n");
    lake.put("raw/orders/notes.txt", "not data");
    lake.put("raw/orders/.part-x.csv.synqx-tmp", "id\n99\n");
    lake.put("raw/orders/_SUCCESS", "");
    let (_, folder) = ok(lake.read(source("raw/orders/")).await);
    assert_eq!(
        id_values(&folder),
        vec![Some(1), Some(2), Some(3), Some(4), Some(5)]
    );
    let (_, glob) = ok(lake.read(source("raw/orders/*.csv")).await);
    assert_eq!(id_values(&glob), vec![Some(1), Some(2), Some(3), Some(4)]);
    let (_, deep) = ok(lake.read(source("raw/**/2024-0[13].csv")).await);
    assert_eq!(id_values(&deep), vec![Some(1), Some(2), Some(5)]);
    let (_, one) = ok(lake.read(source("raw/orders/2024-02.csv")).await);
    assert_eq!(id_values(&one), vec![Some(3), Some(4)]);
}

#[tokio::test]
async fn no_matching_file_names_the_pattern_and_directory() {
    let lake = Lake::new();
    lake.put("raw/a.jsonl", "{}\n");
    let err = lake
        .read(source("raw/*.csv"))
        .await
        .err()
        .map(|e| e.to_string());
    assert_eq!(
        err,
        Some(format!(
            "no csv file matches `raw/*.csv` in {}",
            lake.root().display()
        ))
    );
    let mut folder = source("raw/");
    folder.format = Some(FileFormat::Parquet);
    let err = lake.read(folder).await.err().map(|e| e.to_string());
    assert_eq!(
        err,
        Some(format!(
            "no parquet file matches `raw/` in {}",
            lake.root().display()
        ))
    );
    let err = lake
        .read(source("missing.csv"))
        .await
        .err()
        .map(|e| e.to_string());
    assert_eq!(
        err,
        Some(format!(
            "no csv file matches `missing.csv` in {}",
            lake.root().display()
        ))
    );
}

#[tokio::test]
async fn gzip_files_are_decompressed_by_extension_or_option() {
    let lake = Lake::new();
    lake.put("in/a.csv.gz", gzip("id,name\n1,x\n2,y\n"));
    lake.put("in/b.jsonl.gz", gzip("{\"id\": 3}\n"));
    lake.put("in/c.data", gzip("{\"id\": 4}\n"));
    let (schema, batches) = ok(lake.read(source("in/a.csv.gz")).await);
    assert_eq!(schema.field(0).data_type(), &DataType::Int64);
    assert_eq!(batches[0].column(1).as_string::<i32>().value(1), "y");
    let (_, jsonl) = ok(lake.read(source("in/*.jsonl.gz")).await);
    assert_eq!(id_values(&jsonl), vec![Some(3)]);
    let mut option = source("in/c.data");
    option.format = Some(FileFormat::Jsonl);
    option.compression = Some(Compression::Gzip);
    let (_, by_option) = ok(lake.read(option).await);
    assert_eq!(id_values(&by_option), vec![Some(4)]);
}

#[tokio::test]
async fn column_overrides_and_csv_options_apply() {
    let lake = Lake::new();
    lake.put("t.csv", "id;amount\n1;12.50\n2;0.1\n");
    let mut spec = source("t.csv");
    spec.csv = Some(CsvOptions {
        delimiter: Some(";".into()),
        header: Some(true),
    });
    spec.columns = BTreeMap::from([("amount".to_string(), "decimal(12,2)".to_string())]);
    let (schema, batches) = ok(lake.read(spec.clone()).await);
    assert_eq!(schema.field(1).data_type(), &DataType::Decimal128(12, 2));
    assert_eq!(
        batches[0]
            .column(1)
            .as_primitive::<arrow::datatypes::Decimal128Type>()
            .values()
            .to_vec(),
        vec![1250, 10]
    );
    spec.columns = BTreeMap::from([("amont".to_string(), "int".to_string())]);
    let err = lake.read(spec).await.err().map(|e| e.to_string());
    assert_eq!(
        err.as_deref(),
        Some("columns.amont: t.csv has no column \"amont\" (columns: id, amount)")
    );
}

#[tokio::test]
async fn later_files_may_add_columns_but_not_change_parquet_types() {
    let lake = Lake::new();
    lake.put("csv/a.csv", "id\n1\n");
    lake.put("csv/b.csv", "name,id\nx,2\n");
    let all = ok(lake.read_all(source("csv/")).await);
    assert_eq!(
        all.schema()
            .fields()
            .iter()
            .map(|f| f.name().as_str())
            .collect::<Vec<_>>(),
        vec!["id", "name"]
    );
    assert_eq!(
        id_values(std::slice::from_ref(&all)),
        vec![Some(1), Some(2)]
    );
    assert!(all.column(1).is_null(0));
    assert_eq!(all.column(1).as_string::<i32>().value(1), "x");

    let single = |fqn: &str| {
        let mut d = destination(fqn, None);
        d.mode = Some(WriteMode::Overwrite);
        d
    };
    ok(lake
        .write(
            single("pq2/a.parquet"),
            ids(0..2).schema(),
            vec![Ok(ids(0..2))],
        )
        .await);
    let schema = Arc::new(Schema::new(vec![Field::new("id", DataType::Utf8, true)]));
    let batch = ok(RecordBatch::try_new(
        schema.clone(),
        vec![Arc::new(StringArray::from(vec!["a"]))],
    )
    .map_err(|e| Error::arrow("t", e)));
    ok(lake
        .write(single("pq2/b.parquet"), schema, vec![Ok(batch)])
        .await);
    let err = lake.read(source("pq2/")).await.err().map(|e| e.to_string());
    assert_eq!(
        err.as_deref(),
        Some(
            "pq2/b.parquet: column \"id\" is string there but int64 in pq2/a.parquet; the files of one read must agree on column types"
        )
    );
}

#[tokio::test]
async fn malformed_rows_fail_the_stream_or_are_skipped_into_the_dead_letter_file() {
    let lake = Lake::new();
    lake.put("orders.csv", "id,total\n1,2.5\n2,3.5\n3,\"12,5x\"\n4,4.5\n");
    // The sample sees the bad value and would call the column text: the type is declared.
    let mut spec = source("orders.csv");
    spec.columns = BTreeMap::from([("total".to_string(), "float64".to_string())]);
    let err = lake.read(spec.clone()).await.err().map(|e| e.to_string());
    assert_eq!(
        err.as_deref(),
        Some(
            "orders.csv: line 4, column \"total\": cannot parse the value as float64; set onError: skip to skip such rows into the rejected file"
        )
    );
    let dead = lake.base.path().join("dead.jsonl");
    let counters = Arc::new(Counters::default());
    let rejects = Rejects::new(OnError::Skip, Some(dead.clone()), counters.clone());
    let (_, batches) = ok(lake.read_with(spec, None, 1 << 20, rejects).await);
    assert_eq!(id_values(&batches), vec![Some(1), Some(2), Some(4)]);
    assert_eq!(counters.snapshot().rows_rejected, 1);
    let line: serde_json::Value =
        serde_json::from_str(std::fs::read_to_string(&dead).unwrap_or_default().trim())
            .unwrap_or_default();
    assert_eq!(
        line,
        serde_json::json!({"location": "orders.csv: line 4", "column": "total", "problem": "cannot parse the value as float64", "value": "12,5x", "row": "3,\"12,5x\""})
    );

    lake.put("events.jsonl", "{\"id\": 1}\n{\"id\": \n{\"id\": 3}\n");
    let err = lake
        .read(source("events.jsonl"))
        .await
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
    assert!(
        err.starts_with("events.jsonl: line 2: invalid JSON at column"),
        "{err}"
    );
}

#[tokio::test]
async fn batches_follow_the_byte_budget() {
    let lake = Lake::new();
    // A 7-byte header and 100 rows of exactly 20 bytes: 20.07 bytes a row in the sample,
    // plus 8 bytes for each of the 2 columns.
    let mut text = String::from("id,pad\n");
    for i in 0..100 {
        text.push_str(&format!("{i:03},{}\n", "x".repeat(15)));
    }
    lake.put("wide.csv", &text);
    let sizes = |batches: &[RecordBatch]| batches.iter().map(|b| b.num_rows()).collect::<Vec<_>>();
    let (_, ten) = ok(lake
        .read_with(source("wide.csv"), None, 361, Rejects::failing())
        .await);
    assert_eq!(sizes(&ten), vec![10; 10]);
    let (_, ones) = ok(lake
        .read_with(source("wide.csv"), None, 1, Rejects::failing())
        .await);
    assert_eq!(ones.len(), 100);
    let (_, all) = ok(lake
        .read_with(source("wide.csv"), None, 1 << 30, Rejects::failing())
        .await);
    assert_eq!(sizes(&all), vec![100]);
}

#[tokio::test]
async fn incremental_reads_keep_rows_above_the_cursor() {
    let lake = Lake::new();
    lake.put(
        "a.csv",
        "id,updated\n1,2024-01-01T00:00:00Z\n2,2024-01-02T00:00:00Z\n3,2024-01-03T00:00:00Z\n",
    );
    let mut spec = source("a.csv");
    spec.incremental = Some(Incremental {
        cursor: "updated".into(),
        ..Default::default()
    });
    let filter = CursorFilter {
        column: "updated".into(),
        after: "2024-01-02T00:00:00+00:00".into(),
    };
    let (_, batches) = ok(lake
        .read_with(spec.clone(), Some(filter), 1 << 20, Rejects::failing())
        .await);
    assert_eq!(id_values(&batches), vec![Some(3)]);
    let missing = CursorFilter {
        column: "changed".into(),
        after: "1".into(),
    };
    let err = lake
        .read_with(spec, Some(missing), 1 << 20, Rejects::failing())
        .await
        .err()
        .map(|e| e.to_string());
    assert_eq!(
        err.as_deref(),
        Some("incremental cursor column \"changed\" is not in a.csv (columns: id, updated)")
    );
}

fn set_mtime(lake: &Lake, relative: &str, secs: u64) -> SystemTime {
    let time = SystemTime::UNIX_EPOCH + Duration::from_secs(secs);
    let file = std::fs::OpenOptions::new()
        .write(true)
        .open(lake.path(relative))
        .unwrap_or_else(|e| panic!("{e}"));
    file.set_modified(time).unwrap_or_else(|e| panic!("{e}"));
    time
}

#[tokio::test]
async fn file_modified_cursor_adds_the_column_and_skips_unchanged_files() {
    let lake = Lake::new();
    lake.put("drop/a.jsonl", "{\"id\": 1}\n{\"id\": 2}\n");
    lake.put("drop/b.jsonl", "{\"id\": 3}\n");
    lake.put("drop/c.jsonl", "{\"id\": 4}\n");
    set_mtime(&lake, "drop/a.jsonl", 1_700_000_000);
    set_mtime(&lake, "drop/b.jsonl", 1_700_000_100);
    set_mtime(&lake, "drop/c.jsonl", 1_700_000_200);
    let mut spec = source("drop/");
    spec.incremental = Some(Incremental {
        cursor: FILE_MODIFIED_COLUMN.into(),
        ..Default::default()
    });

    let (schema, first_run) = ok(lake
        .read_with(spec.clone(), None, 1 << 20, Rejects::failing())
        .await);
    let modified_type = DataType::Timestamp(TimeUnit::Microsecond, Some("+00:00".into()));
    assert_eq!(
        schema
            .field_with_name(FILE_MODIFIED_COLUMN)
            .map(|f| f.data_type().clone())
            .ok(),
        Some(modified_type)
    );
    assert_eq!(
        id_values(&first_run),
        vec![Some(1), Some(2), Some(3), Some(4)]
    );
    let times: Vec<i64> = first_run
        .iter()
        .flat_map(|b| {
            b.column(1)
                .as_primitive::<TimestampMicrosecondType>()
                .values()
                .to_vec()
        })
        .collect();
    assert_eq!(
        times,
        vec![
            1_700_000_000_000_000,
            1_700_000_000_000_000,
            1_700_000_100_000_000,
            1_700_000_200_000_000
        ]
    );

    // The watermark the engine stores after the first file: only later files are read.
    let filter = CursorFilter {
        column: FILE_MODIFIED_COLUMN.into(),
        after: "2023-11-14T22:13:20+00:00".into(),
    };
    let (_, next_run) = ok(lake
        .read_with(spec.clone(), Some(filter), 1 << 20, Rejects::failing())
        .await);
    assert_eq!(id_values(&next_run), vec![Some(3), Some(4)]);
    let filter = CursorFilter {
        column: FILE_MODIFIED_COLUMN.into(),
        after: "2023-11-14T22:16:40+00:00".into(),
    };
    let (schema, nothing) = ok(lake
        .read_with(spec, Some(filter), 1 << 20, Rejects::failing())
        .await);
    assert!(nothing.is_empty());
    assert_eq!(schema.fields().len(), 2);
}

#[tokio::test]
async fn parquet_folders_read_with_the_types_of_their_footers() {
    let lake = Lake::new();
    let destination = destination("pq/", Some(FileFormat::Parquet));
    ok(lake
        .write(destination.clone(), ids(0..3).schema(), vec![Ok(ids(0..3))])
        .await);
    ok(lake
        .write(destination, ids(3..5).schema(), vec![Ok(ids(3..5))])
        .await);
    let mut spec = source("pq/");
    spec.columns = BTreeMap::from([("id".to_string(), "int32".to_string())]);
    let (schema, batches) = ok(lake.read(spec).await);
    assert_eq!(schema.field(0).data_type(), &DataType::Int32);
    let values: Vec<i32> = batches
        .iter()
        .flat_map(|b| {
            b.column(0)
                .as_primitive::<arrow::datatypes::Int32Type>()
                .values()
                .to_vec()
        })
        .collect();
    assert_eq!(values, vec![0, 1, 2, 3, 4]);
    let (_, plain) = ok(lake.read(source("pq/")).await);
    assert_eq!(plain[0].column(0).as_primitive::<Int64Type>().value(2), 2);
}
