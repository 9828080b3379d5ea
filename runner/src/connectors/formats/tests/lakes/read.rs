//! Reading through a file connector: what an FQN selects, compression, column overrides and
//! CSV options, files that disagree, bad rows, the byte budget of batches, and incremental
//! reads by a column.

use std::collections::BTreeMap;
use std::sync::Arc;

use arrow::array::{Array, AsArray, RecordBatch, StringArray};
use arrow::datatypes::{
    DataType, Decimal128Type, Field, Int32Type, Int64Type, Schema, TimestampMicrosecondType,
};
use synqx_api::pipeline::{
    Compression, CsvOptions, FileFormat, Incremental, OnError, Source as SourceSpec,
};

use super::super::{
    Rejected, destination, err, gzip, id_values, ids, ok, overwrite, row_counts, source,
};
use super::Lake;
use crate::connectors::tests::field_names;
use crate::engine::{CursorFilter, Rejects};

/// Hidden files, temporaries and files of another format are never read.
pub(crate) async fn folders_read_every_matching_file_sorted_and_globs_match_names(
    lake: &impl Lake,
) {
    lake.put("raw/orders/2024-02.csv", "id\n3\n4\n").await;
    lake.put("raw/orders/2024-01.csv", "id\n1\n2\n").await;
    lake.put("raw/orders/late/2024-03.csv", "id\n5\n").await;
    lake.put("raw/orders/notes.txt", "not data").await;
    lake.put("raw/orders/.part-x.csv.synqx-tmp", "id\n99\n")
        .await;
    lake.put("raw/.orders.synqx-tmp-1/part-1-00000.csv", "id\n98\n")
        .await;
    lake.put("raw/orders/_SUCCESS", "").await;
    let all: Vec<_> = (1..=5).map(Some).collect();
    let cases = [
        ("raw/orders/", all.clone()),
        ("raw/orders", all),
        ("raw/orders/*.csv", vec![Some(1), Some(2), Some(3), Some(4)]),
        ("raw/**/2024-0[13].csv", vec![Some(1), Some(2), Some(5)]),
        ("raw/orders/2024-02.csv", vec![Some(3), Some(4)]),
    ];
    for (fqn, expected) in cases {
        assert_eq!(lake.read_ids(source(fqn)).await, expected, "{fqn}");
    }
}

pub(crate) async fn no_matching_file_names_the_pattern_and_where_it_looked(lake: &impl Lake) {
    lake.put("raw/a.jsonl", "{}\n").await;
    let mut parquet_folder = source("raw/");
    parquet_folder.format = Some(FileFormat::Parquet);
    let cases = [
        (source("raw/*.csv"), "csv"),
        (source("raw/*.jsonl.gz"), "jsonl"),
        (parquet_folder, "parquet"),
        (source("missing.csv"), "csv"),
    ];
    for (spec, format) in cases {
        let fqn = spec.asset.fqn.clone();
        assert_eq!(
            err(lake.read(spec).await),
            format!("no {format} file matches `{fqn}` in {}", lake.location())
        );
    }
}

pub(crate) async fn gzip_files_are_decompressed_by_extension_or_option(lake: &impl Lake) {
    lake.put("in/a.csv.gz", gzip("id,name\n1,x\n2,y\n")).await;
    lake.put("in/b.jsonl.gz", gzip("{\"id\": 3}\n")).await;
    lake.put("in/c.data", gzip("{\"id\": 4}\n")).await;
    let (schema, batches) = ok(lake.read(source("in/a.csv.gz")).await);
    assert_eq!(schema.field(0).data_type(), &DataType::Int64);
    assert_eq!(batches[0].column(1).as_string::<i32>().value(1), "y");
    assert_eq!(lake.read_ids(source("in/*.jsonl.gz")).await, [Some(3)]);
    let mut option = source("in/c.data");
    option.format = Some(FileFormat::Jsonl);
    option.compression = Some(Compression::Gzip);
    assert_eq!(lake.read_ids(option).await, [Some(4)]);
}

pub(crate) async fn column_overrides_and_csv_options_apply(lake: &impl Lake) {
    lake.put("t.csv", "id;amount\n1;12.50\n2;0.1\n").await;
    let mut spec = source("t.csv");
    spec.csv = Some(CsvOptions {
        delimiter: Some(";".into()),
        header: Some(true),
    });
    spec.columns = BTreeMap::from([("amount".to_string(), "decimal(12,2)".to_string())]);
    let (schema, batches) = ok(lake.read(spec.clone()).await);
    assert_eq!(schema.field(1).data_type(), &DataType::Decimal128(12, 2));
    let amounts = batches[0].column(1).as_primitive::<Decimal128Type>();
    assert_eq!(amounts.values().to_vec(), [1250, 10]);
    spec.columns = BTreeMap::from([("amont".to_string(), "int".to_string())]);
    assert_eq!(
        err(lake.read(spec).await),
        "columns.amont: t.csv has no column \"amont\" (columns: id, amount)"
    );
}

pub(crate) async fn later_files_may_add_columns_but_not_change_parquet_types(lake: &impl Lake) {
    lake.put("csv/a.csv", "id\n1\n").await;
    lake.put("csv/b.csv", "name,id\nx,2\n").await;
    let all = ok(lake.read_all(source("csv/")).await);
    assert_eq!(field_names(all.schema_ref()), ["id", "name"]);
    assert_eq!(id_values(std::slice::from_ref(&all)), [Some(1), Some(2)]);
    assert!(all.column(1).is_null(0));
    assert_eq!(all.column(1).as_string::<i32>().value(1), "x");

    lake.write_batch(overwrite("pq2/a.parquet", None), ids(0..2))
        .await;
    let schema = Arc::new(Schema::new(vec![Field::new("id", DataType::Utf8, true)]));
    let text_ids = RecordBatch::try_new(schema, vec![Arc::new(StringArray::from(vec!["a"]))]);
    let text_ids = text_ids.unwrap_or_else(|e| panic!("{e}"));
    lake.write_batch(overwrite("pq2/b.parquet", None), text_ids)
        .await;
    assert_eq!(
        err(lake.read(source("pq2/")).await),
        "pq2/b.parquet: column \"id\" is string there but int64 in pq2/a.parquet; the files of one read must agree on column types"
    );
}

pub(crate) async fn malformed_rows_fail_the_read_or_are_skipped_into_the_rejected_file(
    lake: &impl Lake,
) {
    lake.put("orders.csv", "id,total\n1,2.5\n2,3.5\n3,\"12,5x\"\n4,4.5\n")
        .await;
    // The sample sees the bad value and would call the column text: the type is declared.
    let mut spec = source("orders.csv");
    spec.columns = BTreeMap::from([("total".to_string(), "float64".to_string())]);
    assert_eq!(
        err(lake.read(spec.clone()).await),
        "orders.csv: line 4, column \"total\": cannot parse the value as float64; set onError: skip to skip such rows into the rejected file"
    );
    let rejected = Rejected::new(OnError::Skip);
    let (_, batches) = ok(lake
        .read_with(spec, None, 1 << 20, rejected.rejects())
        .await);
    assert_eq!(id_values(&batches), [Some(1), Some(2), Some(4)]);
    assert_eq!(rejected.counters.snapshot().rows_rejected, 1);
    assert_eq!(
        rejected.lines(),
        [
            serde_json::json!({"location": "orders.csv: line 4", "column": "total", "problem": "cannot parse the value as float64", "value": "12,5x", "row": "3,\"12,5x\""})
        ]
    );

    lake.put("events.jsonl", "{\"id\": 1}\n{\"id\": \n{\"id\": 3}\n")
        .await;
    let message = err(lake.read(source("events.jsonl")).await);
    assert!(
        message.starts_with("events.jsonl: line 2: invalid JSON at column"),
        "{message}"
    );
}

/// Plain and gzipped: the budget counts decoded bytes.
pub(crate) async fn batches_follow_the_byte_budget(lake: &impl Lake) {
    // A 7-byte header and 100 rows of exactly 20 bytes: 20.07 bytes a row in the sample,
    // plus 8 bytes for each of the 2 columns.
    let mut text = String::from("id,pad\n");
    for i in 0..100 {
        text.push_str(&format!("{i:03},{}\n", "x".repeat(15)));
    }
    lake.put("wide.csv", text.as_str()).await;
    lake.put("wide.csv.gz", gzip(&text)).await;
    for fqn in ["wide.csv", "wide.csv.gz"] {
        let read = move |budget| lake.read_with(source(fqn), None, budget, Rejects::failing());
        let (schema, tens) = ok(read(361).await);
        assert_eq!(schema.field(0).data_type(), &DataType::Int64, "{fqn}");
        assert_eq!(row_counts(&tens), [10; 10], "{fqn}");
        let (_, ones) = ok(read(1).await);
        assert_eq!(row_counts(&ones), [1; 100], "{fqn}");
        let (_, all) = ok(read(1 << 30).await);
        assert_eq!(row_counts(&all), [100], "{fqn}");
    }
}

pub(crate) async fn incremental_reads_keep_rows_above_the_cursor(lake: &impl Lake) {
    lake.put(
        "a.csv",
        "id,updated\n1,2024-01-01T00:00:00Z\n2,2024-01-02T00:00:00Z\n3,2024-01-03T00:00:00Z\n",
    )
    .await;
    let spec = incremental(source("a.csv"), "updated");
    let (_, batches) = ok(lake
        .read_with(
            spec.clone(),
            Some(after("updated", "2024-01-02T00:00:00+00:00")),
            1 << 20,
            Rejects::failing(),
        )
        .await);
    assert_eq!(id_values(&batches), [Some(3)]);
    let missing = after("changed", "1");
    assert_eq!(
        err(lake
            .read_with(spec, Some(missing), 1 << 20, Rejects::failing())
            .await),
        "incremental cursor column \"changed\" is not in a.csv (columns: id, updated)"
    );
}

pub(crate) async fn parquet_folders_read_with_the_types_of_their_footers(lake: &impl Lake) {
    let folder = destination("pq/", Some(FileFormat::Parquet));
    lake.write_batch(folder.clone(), ids(0..3)).await;
    lake.write_batch(folder, ids(3..5)).await;
    let mut spec = source("pq/");
    spec.columns = BTreeMap::from([("id".to_string(), "int32".to_string())]);
    let (schema, batches) = ok(lake.read(spec).await);
    assert_eq!(schema.field(0).data_type(), &DataType::Int32);
    let values: Vec<i32> = batches
        .iter()
        .flat_map(|b| b.column(0).as_primitive::<Int32Type>().values().to_vec())
        .collect();
    assert_eq!(values, [0, 1, 2, 3, 4]);
    let (_, plain) = ok(lake.read(source("pq/")).await);
    assert_eq!(plain[0].column(0).as_primitive::<Int64Type>().value(2), 2);
}

/// `source`, read incrementally by `cursor`.
pub(crate) fn incremental(mut source: SourceSpec, cursor: &str) -> SourceSpec {
    source.incremental = Some(Incremental {
        cursor: cursor.into(),
        ..Default::default()
    });
    source
}

/// The filter of a read after the watermark `after` of `column`.
pub(crate) fn after(column: &str, after: &str) -> CursorFilter {
    CursorFilter {
        column: column.into(),
        after: after.into(),
    }
}

/// The second column of batches read with the file-modified cursor: the time each row's file
/// was last modified, in microseconds.
pub(crate) fn modified_times(batches: &[RecordBatch]) -> Vec<i64> {
    batches
        .iter()
        .flat_map(|b| {
            let times = b.column(1).as_primitive::<TimestampMicrosecondType>();
            times.values().to_vec()
        })
        .collect()
}
