//! Source tests: incremental pushdown, queries, declared types of other tools, bad values,
//! batching and overrides.

use std::collections::BTreeMap;
use std::sync::Arc;

use arrow::array::{ArrayRef, Int16Array, Int64Array, RecordBatch, TimestampMicrosecondArray};
use arrow::datatypes::{DataType, Field, Schema, TimeUnit};
use arrow::util::pretty::pretty_format_batches;
use synqx_api::pipeline::{OnError, WriteMode};

use super::support::{Db, decimals, dest, err, ok, table_source};
use crate::connectors::sql::tests::{cursor, data_types, named_types, write_batch, write_people};
use crate::engine::cursor::MaxTracker;
use crate::engine::{Counters, Rejects};

fn pretty(batches: &[RecordBatch]) -> String {
    pretty_format_batches(batches)
        .map(|t| t.to_string())
        .unwrap_or_else(|e| panic!("{e}"))
}

/// `(id, at)` rows with `at` in whole seconds after 2024-01-01.
fn events(rows: &[(i64, i64)]) -> RecordBatch {
    let schema = Arc::new(Schema::new(vec![
        Field::new("id", DataType::Int64, false),
        Field::new(
            "at",
            DataType::Timestamp(TimeUnit::Microsecond, None),
            false,
        ),
    ]));
    let ids: ArrayRef = Arc::new(Int64Array::from(
        rows.iter().map(|r| r.0).collect::<Vec<_>>(),
    ));
    let at: ArrayRef = Arc::new(TimestampMicrosecondArray::from(
        rows.iter()
            .map(|r| 1_704_067_200_000_000 + r.1)
            .collect::<Vec<_>>(),
    ));
    RecordBatch::try_new(schema, vec![ids, at]).unwrap_or_else(|e| panic!("{e}"))
}

/// The ids of a batch: its first column, of `Int64` (none when it is of another type).
fn first_ids(batch: &RecordBatch) -> Vec<i64> {
    batch
        .column(0)
        .as_any()
        .downcast_ref::<Int64Array>()
        .map(|a| a.values().to_vec())
        .unwrap_or_default()
}

/// Reads with the cursor above `after`, returns the ids read (sorted) and the new watermark.
async fn read_after(
    db: &Db,
    spec: &synqx_api::pipeline::Source,
    column: &str,
    after: Option<String>,
) -> (Vec<i64>, Option<String>) {
    let filter = after.map(|after| cursor(column, &after));
    let (_, batches) = ok(db.read(spec.clone(), filter, Rejects::failing()).await);
    let mut tracker = MaxTracker::new(column);
    let mut ids = Vec::new();
    for batch in &batches {
        ok(tracker.observe(batch));
        ids.extend(first_ids(batch));
    }
    ids.sort_unstable();
    (ids, ok(tracker.value()))
}

#[tokio::test]
async fn incremental_reads_push_the_cursor_down_and_never_repeat_a_row() {
    let db = Db::new().await;
    let append = |rows: &[(i64, i64)]| {
        write_batch(
            &db,
            dest("events", WriteMode::Append, &[], None),
            events(rows),
        )
    };
    ok(append(&[(1, 0), (2, 1_000_000), (3, 1_000_000)]).await);
    let spec = table_source("events");
    let (ids, mark) = read_after(&db, &spec, "at", None).await;
    assert_eq!(
        (ids, mark.as_deref()),
        (vec![1, 2, 3], Some("2024-01-01T00:00:01"))
    );

    // Row 4 shares the watermark (a late row, for lookback to catch); 5 and 6 share the next one.
    // Row 99 is below the bound and cannot be read: only the pushed-down filter keeps it out.
    ok(append(&[
        (4, 1_000_000),
        (5, 2_000_000),
        (6, 2_000_000),
        (7, 1_000_001),
    ])
    .await);
    db.sql("INSERT INTO events VALUES (99, '1999-12-31 not a time')")
        .await;
    let (ids, mark) = read_after(&db, &spec, "at", mark).await;
    assert_eq!(
        (ids, mark.as_deref()),
        (vec![5, 6, 7], Some("2024-01-01T00:00:02"))
    );

    ok(append(&[(8, 3_500_000), (9, 2_000_000)]).await);
    let (ids, mark) = read_after(&db, &spec, "at", mark).await;
    assert_eq!(
        (ids, mark.as_deref()),
        (vec![8], Some("2024-01-01T00:00:03.500"))
    );
    let (ids, _) = read_after(&db, &spec, "at", mark).await;
    assert!(ids.is_empty());

    // The same on an integer cursor of a query, wrapped as a subquery.
    let query = synqx_api::pipeline::Source {
        query: Some("SELECT id, at FROM events WHERE id NOT IN (5, 99);".into()),
        ..spec
    };
    let (ids, mark) = read_after(&db, &query, "id", Some("3".into())).await;
    assert_eq!((ids, mark.as_deref()), (vec![4, 6, 7, 8, 9], Some("9")));
}

#[tokio::test]
async fn query_sources_keep_declared_types_and_infer_the_rest() {
    let db = Db::new().await;
    let schema = Arc::new(Schema::new(vec![
        Field::new("id", DataType::Int16, false),
        Field::new("amount", DataType::Decimal128(10, 2), true),
    ]));
    let ids: ArrayRef = Arc::new(Int16Array::from(vec![1, 2, 3]));
    let batch = RecordBatch::try_new(
        schema,
        vec![ids, decimals(vec![Some(110), Some(111), Some(200)], 10, 2)],
    )
    .unwrap_or_else(|e| panic!("{e}"));
    ok(write_batch(&db, dest("orders", WriteMode::Append, &[], None), batch).await);
    let spec = synqx_api::pipeline::Source {
        query: Some("SELECT id, amount, amount * 2 AS twice, 'x' || id AS label FROM orders -- trailing comment".into()),
        ..table_source("orders")
    };
    let filter = cursor("amount", "1.10");
    let (schema, batches) = ok(db.read(spec, Some(filter), Rejects::failing()).await);
    assert_eq!(
        named_types(&schema),
        [
            "id Int16",
            "amount Decimal128(10, 2)",
            "twice Float64",
            "label Utf8"
        ]
    );
    assert_eq!(
        pretty(&batches),
        "+----+--------+-------+-------+\n\
         | id | amount | twice | label |\n\
         +----+--------+-------+-------+\n\
         | 2  | 1.11   | 2.22  | x2    |\n\
         | 3  | 2.00   | 4.0   | x3    |\n\
         +----+--------+-------+-------+"
    );

    // A statement a view cannot hold falls back to the statement's description and first row.
    let pragma = synqx_api::pipeline::Source {
        query: Some("PRAGMA table_info(orders)".into()),
        ..table_source("orders")
    };
    let (schema, batches) = ok(db.read(pragma, None, Rejects::failing()).await);
    assert_eq!(
        named_types(&schema),
        [
            "cid Int64",
            "name Utf8",
            "type Utf8",
            "notnull Int64",
            "dflt_value Utf8",
            "pk Int64"
        ]
    );
    assert_eq!(batches.iter().map(RecordBatch::num_rows).sum::<usize>(), 2);
}

#[tokio::test]
async fn tables_of_other_tools_map_their_declared_types() {
    let db = Db::new().await;
    db.sql(
        "CREATE TABLE \"odd \"\"name\"\"\" (a, b INT, c VARCHAR(10), d NUMERIC(8,3), e DATETIME, f REAL, g BOOLEAN, h BIGINT);
         INSERT INTO \"odd \"\"name\"\"\" VALUES (1, 2, 'x', 1.5, '2024-01-02 03:04:05', 2.5, 1, 9),
             (NULL, NULL, NULL, '2.125', '2024-01-02T03:04:05.5+01:00', 3, 0, NULL), (3, -4, 5, 7, '2024-01-02', NULL, NULL, -1);",
    )
    .await;
    let (schema, batches) = ok(db
        .read(table_source("main.odd \"name\""), None, Rejects::failing())
        .await);
    assert_eq!(
        data_types(&schema),
        [
            "Int64",
            "Int32",
            "Utf8",
            "Decimal128(8, 3)",
            "Timestamp(µs)",
            "Float64",
            "Boolean",
            "Int64"
        ]
    );
    assert_eq!(
        pretty(&batches),
        "+---+----+---+-------+-------------------------+-----+-------+----+\n\
         | a | b  | c | d     | e                       | f   | g     | h  |\n\
         +---+----+---+-------+-------------------------+-----+-------+----+\n\
         | 1 | 2  | x | 1.500 | 2024-01-02T03:04:05     | 2.5 | true  | 9  |\n\
         |   |    |   | 2.125 | 2024-01-02T02:04:05.500 | 3.0 | false |    |\n\
         | 3 | -4 | 5 | 7.000 | 2024-01-02T00:00:00     |     |       | -1 |\n\
         +---+----+---+-------+-------------------------+-----+-------+----+"
    );
}

#[tokio::test]
async fn a_bad_value_fails_the_read_naming_table_row_column_and_value() {
    let db = Db::new().await;
    db.sql("CREATE TABLE d (id INTEGER, day DATE); INSERT INTO d VALUES (1, '2024-01-01'), (2, 'not a date'), (3, '2024-01-03')").await;
    let message = err(db.read(table_source("d"), None, Rejects::failing()).await);
    assert_eq!(
        message,
        "Connection \"local-db\", table \"d\": row 2, column \"day\": cannot convert the value to date; \
         set onError: skip to skip such rows into the rejected file"
    );
}

#[tokio::test]
async fn bad_values_are_skipped_counted_and_kept_under_skip() {
    let db = Db::new().await;
    db.sql(
        "CREATE TABLE d (id INTEGER, day DATE, n SMALLINT);
         INSERT INTO d VALUES (1, '2024-01-01', 1), (2, 'not a date', 2), (3, '2024-01-03', 40000), (4, NULL, 4)",
    )
    .await;
    let counters = Arc::new(Counters::default());
    let dead = db.dir.path().join("rejected/d.jsonl");
    let rejects = Rejects::new(OnError::Skip, Some(dead.clone()), counters.clone());
    let (_, batches) = ok(db.read(table_source("d"), None, rejects).await);
    assert_eq!(
        pretty(&batches),
        "+----+------------+---+\n\
         | id | day        | n |\n\
         +----+------------+---+\n\
         | 1  | 2024-01-01 | 1 |\n\
         | 4  |            | 4 |\n\
         +----+------------+---+"
    );
    assert_eq!(counters.snapshot().rows_rejected, 2);
    let lines: Vec<serde_json::Value> = std::fs::read_to_string(&dead)
        .unwrap_or_else(|e| panic!("{e}"))
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}")))
        .collect();
    let fields = |line: &serde_json::Value| -> (String, String, serde_json::Value) {
        let text = |key: &str| line[key].as_str().unwrap_or_default().to_string();
        (
            text("location"),
            format!(
                "{}: {} ({})",
                text("column"),
                text("problem"),
                text("value")
            ),
            serde_json::from_str(&text("row")).unwrap_or_else(|e| panic!("{e}")),
        )
    };
    assert_eq!(
        lines.iter().map(fields).collect::<Vec<_>>(),
        [
            (
                "Connection \"local-db\", table \"d\": row 2".to_string(),
                "day: cannot convert the value to date (not a date)".to_string(),
                serde_json::json!({"id": 2, "day": "not a date", "n": 2}),
            ),
            (
                "Connection \"local-db\", table \"d\": row 3".to_string(),
                "n: cannot convert the value to int16 (40000)".to_string(),
                serde_json::json!({"id": 3, "day": "2024-01-03", "n": 40000}),
            ),
        ]
    );
}

#[tokio::test]
async fn batches_are_cut_at_the_byte_budget() {
    let db = Db::new().await;
    let rows: Vec<(i64, Option<&str>)> = (0..1_000).map(|i| (i, Some("x"))).collect();
    ok(write_people(&db, dest("people", WriteMode::Append, &[], None), &rows).await);
    let request = crate::engine::ReadRequest {
        spec: table_source("people"),
        filter: None,
        batch_bytes: 2_000,
        rejects: Rejects::failing(),
        memory: Default::default(),
    };
    let stream = ok(db.source.read(&request).await);
    let batches: Vec<RecordBatch> = ok(futures::TryStreamExt::try_collect(stream.stream).await);
    // 8 + 1 bytes of id, 4 + 1 of name offsets and validity, 1 of text: 15 a row.
    let sizes: Vec<usize> = batches.iter().map(RecordBatch::num_rows).collect();
    assert_eq!(sizes, [134, 134, 134, 134, 134, 134, 134, 62]);
    let ids: Vec<i64> = batches.iter().flat_map(first_ids).collect();
    assert_eq!(ids, (0..1_000).collect::<Vec<_>>());
}

#[tokio::test]
async fn column_overrides_force_a_type() {
    let db = Db::new().await;
    db.sql("CREATE TABLE t (id INTEGER, amount TEXT, seen TEXT); INSERT INTO t VALUES (1, '12.50', '2024-05-06 07:08:09')").await;
    let columns = BTreeMap::from([
        ("amount".to_string(), "decimal(6,2)".to_string()),
        ("SEEN".to_string(), "timestamptz".to_string()),
    ]);
    let spec = synqx_api::pipeline::Source {
        columns,
        ..table_source("t")
    };
    let (schema, batches) = ok(db.read(spec.clone(), None, Rejects::failing()).await);
    assert_eq!(
        data_types(&schema),
        ["Int64", "Decimal128(6, 2)", "Timestamp(µs, \"+00:00\")"]
    );
    assert_eq!(
        pretty(&batches).lines().nth(3),
        Some("| 1  | 12.50  | 2024-05-06T07:08:09Z |")
    );
    let bad = synqx_api::pipeline::Source {
        columns: BTreeMap::from([("nope".to_string(), "int".to_string())]),
        ..spec
    };
    let message = err(db.read(bad, None, Rejects::failing()).await);
    assert_eq!(
        message,
        "Connection \"local-db\", table \"t\": columns override \"nope\" is not a column (columns: id, amount, seen)"
    );
}
