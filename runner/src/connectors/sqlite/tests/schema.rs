//! Type round trip, schema evolution, statement sizes and messages of the sink.

use std::sync::Arc;

use arrow::array::{
    Array, ArrayRef, BinaryArray, BooleanArray, Date32Array, Float32Array, Float64Array, Int8Array,
    Int16Array, Int32Array, Int64Array, LargeStringArray, ListArray, RecordBatch, StringArray,
    StructArray, Time64MicrosecondArray, TimestampMicrosecondArray, TimestampMillisecondArray,
    TimestampNanosecondArray, UInt8Array, UInt16Array, UInt32Array, UInt64Array,
};
use arrow::buffer::NullBuffer;
use arrow::datatypes::{DataType, Field, Fields, Int32Type, Schema};
use synqx_api::ConnectionSpec;
use synqx_api::pipeline::{SchemaEvolution, WriteMode};

use super::support::{Db, decimals, dest, err, ok, people, table_source};
use crate::connectors::ConnectionRef;
use crate::connectors::formats::convert::with_columns;
use crate::connectors::sql::tests::{write_batch, write_people};
use crate::engine::Rejects;
use crate::secrets::Secrets;

/// Written column, and the array reading it back must give.
fn round_trip_columns() -> Vec<(&'static str, ArrayRef, ArrayRef)> {
    let same = |a: ArrayRef| (a.clone(), a);
    let max38 = 10i128.pow(38) - 1;
    let utc = |v: Vec<Option<i64>>| -> ArrayRef {
        Arc::new(TimestampMicrosecondArray::from(v).with_timezone("+00:00"))
    };
    let list: ArrayRef = Arc::new(ListArray::from_iter_primitive::<Int32Type, _, _>(vec![
        Some(vec![Some(1), Some(2)]),
        None,
        Some(vec![]),
    ]));
    let fields = Fields::from(vec![
        Field::new("a", DataType::Int32, true),
        Field::new("b", DataType::Utf8, true),
    ]);
    let children: Vec<ArrayRef> = vec![
        Arc::new(Int32Array::from(vec![Some(1), Some(0), None])),
        Arc::new(StringArray::from(vec!["x", "", "y"])),
    ];
    let nulls = Some(NullBuffer::from(vec![true, false, true]));
    let structs: ArrayRef =
        Arc::new(StructArray::try_new(fields, children, nulls).unwrap_or_else(|e| panic!("{e}")));
    let ints = |v: Vec<Option<i64>>| -> ArrayRef { Arc::new(Int64Array::from(v)) };
    let texts = |v: Vec<Option<&str>>| -> ArrayRef { Arc::new(StringArray::from(v)) };
    let pairs: Vec<(&str, (ArrayRef, ArrayRef))> = vec![
        (
            "b",
            same(Arc::new(BooleanArray::from(vec![
                Some(true),
                None,
                Some(false),
            ]))),
        ),
        (
            "i8",
            same(Arc::new(Int8Array::from(vec![
                Some(i8::MIN),
                None,
                Some(i8::MAX),
            ]))),
        ),
        (
            "i16",
            same(Arc::new(Int16Array::from(vec![
                Some(i16::MIN),
                None,
                Some(i16::MAX),
            ]))),
        ),
        (
            "i32",
            same(Arc::new(Int32Array::from(vec![
                Some(i32::MIN),
                None,
                Some(i32::MAX),
            ]))),
        ),
        (
            "i64",
            same(Arc::new(Int64Array::from(vec![
                Some(i64::MIN),
                None,
                Some(i64::MAX),
            ]))),
        ),
        (
            "u8",
            (
                Arc::new(UInt8Array::from(vec![Some(0), None, Some(u8::MAX)])),
                ints(vec![Some(0), None, Some(255)]),
            ),
        ),
        (
            "u16",
            (
                Arc::new(UInt16Array::from(vec![Some(0), None, Some(u16::MAX)])),
                ints(vec![Some(0), None, Some(65_535)]),
            ),
        ),
        (
            "u32",
            (
                Arc::new(UInt32Array::from(vec![Some(0), None, Some(u32::MAX)])),
                ints(vec![Some(0), None, Some(4_294_967_295)]),
            ),
        ),
        (
            "u64",
            (
                Arc::new(UInt64Array::from(vec![
                    Some(0),
                    None,
                    Some(i64::MAX as u64),
                ])),
                ints(vec![Some(0), None, Some(i64::MAX)]),
            ),
        ),
        (
            "f32",
            same(Arc::new(Float32Array::from(vec![
                Some(-1.5e38),
                None,
                Some(0.1),
            ]))),
        ),
        (
            "f64",
            same(Arc::new(Float64Array::from(vec![
                Some(f64::MIN_POSITIVE),
                None,
                Some(f64::MAX),
            ]))),
        ),
        (
            "d38",
            same(decimals(vec![Some(max38), None, Some(-max38)], 38, 10)),
        ),
        (
            "d10",
            same(decimals(vec![Some(12_345), None, Some(-5)], 10, 2)),
        ),
        (
            "dneg",
            same(decimals(vec![Some(7), None, Some(-123)], 5, -2)),
        ),
        (
            "s",
            same(texts(vec![Some("héllo \"q\" 'x'"), None, Some("")])),
        ),
        (
            "ls",
            (
                Arc::new(LargeStringArray::from(vec![Some("large"), None, Some("x")])),
                texts(vec![Some("large"), None, Some("x")]),
            ),
        ),
        (
            "bin",
            same(Arc::new(BinaryArray::from(vec![
                Some(&b"\x00\xff"[..]),
                None,
                Some(&b""[..]),
            ]))),
        ),
        (
            "date",
            same(Arc::new(Date32Array::from(vec![
                Some(-719_162),
                None,
                Some(2_932_896),
            ]))),
        ),
        (
            "time",
            same(Arc::new(Time64MicrosecondArray::from(vec![
                Some(0),
                None,
                Some(86_399_999_999),
            ]))),
        ),
        (
            "ts",
            same(Arc::new(TimestampMicrosecondArray::from(vec![
                Some(-62_135_596_800_000_000),
                None,
                Some(253_402_300_799_999_999),
            ]))),
        ),
        (
            "tsz",
            same(utc(vec![Some(-1), None, Some(1_700_000_000_123_456)])),
        ),
        (
            "tsny",
            (
                Arc::new(
                    TimestampMillisecondArray::from(vec![Some(1_700_000_000_123), None, Some(0)])
                        .with_timezone("America/New_York"),
                ),
                utc(vec![Some(1_700_000_000_123_000), None, Some(0)]),
            ),
        ),
        (
            "tsns",
            (
                Arc::new(TimestampNanosecondArray::from(vec![
                    Some(1_700_000_000_123_456_789),
                    None,
                    Some(1_000),
                ])),
                Arc::new(TimestampMicrosecondArray::from(vec![
                    Some(1_700_000_000_123_456),
                    None,
                    Some(1),
                ])),
            ),
        ),
        ("list", (list, texts(vec![Some("[1,2]"), None, Some("[]")]))),
        (
            "st",
            (
                structs,
                texts(vec![
                    Some(r#"{"a":1,"b":"x"}"#),
                    None,
                    Some(r#"{"a":null,"b":"y"}"#),
                ]),
            ),
        ),
    ];
    pairs
        .into_iter()
        .map(|(name, (written, read))| (name, written, read))
        .collect()
}

#[tokio::test]
async fn every_type_round_trips_with_nulls_and_extremes() {
    let db = Db::new().await;
    let columns = round_trip_columns();
    let schema = Arc::new(Schema::new(
        columns
            .iter()
            .map(|(name, written, _)| Field::new(*name, written.data_type().clone(), true))
            .collect::<Vec<_>>(),
    ));
    let batch = RecordBatch::try_new(schema, columns.iter().map(|c| c.1.clone()).collect())
        .unwrap_or_else(|e| panic!("{e}"));
    ok(write_batch(&db, dest("rt", WriteMode::Append, &[], None), batch).await);

    let declared = db
        .dump("SELECT group_concat(name || ' ' || type, ', ') FROM pragma_table_info('rt')")
        .await;
    assert_eq!(
        declared,
        [
            "'b BOOLEAN, i8 TINYINT, i16 SMALLINT, i32 INT, i64 INTEGER, u8 INTEGER, u16 INTEGER, u32 INTEGER, u64 INTEGER, \
          f32 FLOAT4, f64 DOUBLE, d38 DECIMAL TEXT(38,10), d10 DECIMAL TEXT(10,2), dneg DECIMAL TEXT(5,-2), s TEXT, ls TEXT, \
          bin BLOB, date DATE, time TIME, ts TIMESTAMP, tsz TIMESTAMPTZ, tsny TIMESTAMPTZ, tsns TIMESTAMP, list JSON, st JSON'"
        ]
    );
    let stored = db.dump("SELECT b, typeof(d38), d38, d10, dneg, date, time, ts, tsz, list, st, length(bin), typeof(bin) FROM rt ORDER BY rowid").await;
    assert_eq!(
        stored,
        [
            "1, 'text', '9999999999999999999999999999.9999999999', '123.45', '700', '0001-01-01', '00:00:00.000000', \
             '0001-01-01 00:00:00.000000', '1969-12-31T23:59:59.999999Z', '[1,2]', '{\"a\":1,\"b\":\"x\"}', 2, 'blob'",
            "NULL, 'null', NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, 'null'",
            "0, 'text', '-9999999999999999999999999999.9999999999', '-0.05', '-12300', '9999-12-31', '23:59:59.999999', \
             '9999-12-31 23:59:59.999999', '2023-11-14T22:13:20.123456Z', '[]', '{\"a\":null,\"b\":\"y\"}', 0, 'blob'",
        ]
    );

    let (read_schema, batches) = ok(db.read(table_source("rt"), None, Rejects::failing()).await);
    assert_eq!(batches.len(), 1);
    for (i, (name, _, expected)) in columns.iter().enumerate() {
        let field = read_schema.field(i);
        assert_eq!(
            (field.name().as_str(), field.data_type()),
            (*name, expected.data_type())
        );
        assert_eq!(
            batches[0].column(i).to_data(),
            expected.to_data(),
            "column {name}"
        );
    }
}

#[tokio::test]
async fn uint64_above_the_sqlite_range_is_an_error_naming_column_row_and_value() {
    let db = Db::new().await;
    let schema = Arc::new(Schema::new(vec![Field::new("big", DataType::UInt64, true)]));
    let values: ArrayRef = Arc::new(UInt64Array::from(vec![Some(1), None, Some(u64::MAX)]));
    let batch = RecordBatch::try_new(schema, vec![values]).unwrap_or_else(|e| panic!("{e}"));
    let message = err(write_batch(&db, dest("big", WriteMode::Append, &[], None), batch).await);
    assert_eq!(
        message,
        "Connection \"local-db\", table \"big\", row 3, column \"big\": the value is above the largest SQLite INTEGER, 9223372036854775807"
    );
    assert_eq!(
        db.dump("SELECT count(*) FROM sqlite_master WHERE name = 'big'")
            .await,
        ["0"]
    );
}

/// `(id, name, extra)` rows for schema evolution.
fn with_extra() -> RecordBatch {
    with_columns(
        &people(&[(9, Some("i"))]),
        vec![(
            Field::new("extra", DataType::Utf8, true),
            Arc::new(StringArray::from(vec![Some("e")])),
        )],
    )
    .unwrap_or_else(|e| panic!("{e}"))
}

#[tokio::test]
async fn schema_evolution_adds_fails_or_ignores_new_columns() {
    let db = Db::new().await;
    for table in ["added", "failed", "ignored", "replaced"] {
        db.sql(&format!(
            "CREATE TABLE {table} (id INTEGER, name TEXT); INSERT INTO {table} VALUES (1, 'a')"
        ))
        .await;
    }
    let batch = with_extra();
    let write = |table: &str, mode, evolution| {
        write_batch(&db, dest(table, mode, &[], evolution), batch.clone())
    };

    ok(write("added", WriteMode::Append, None).await);
    assert_eq!(
        db.dump("SELECT * FROM added ORDER BY id").await,
        ["1, 'a', NULL", "9, 'i', 'e'"]
    );

    let message = err(write("failed", WriteMode::Append, Some(SchemaEvolution::Fail)).await);
    assert_eq!(
        message,
        "Connection \"local-db\", table \"failed\": the table has no column \"extra\" of the source (schemaEvolution: fail; set addColumns to add them or ignore to leave them out)"
    );
    assert_eq!(db.dump("SELECT * FROM failed").await, ["1, 'a'"]);

    ok(write("ignored", WriteMode::Append, Some(SchemaEvolution::Ignore)).await);
    assert_eq!(
        db.dump("SELECT * FROM ignored ORDER BY id").await,
        ["1, 'a'", "9, 'i'"]
    );

    ok(write(
        "replaced",
        WriteMode::Overwrite,
        Some(SchemaEvolution::Ignore),
    )
    .await);
    assert_eq!(db.dump("SELECT * FROM replaced").await, ["9, 'i'"]);
}

#[tokio::test]
async fn large_writes_are_split_under_the_parameter_limit() {
    let db = Db::new().await;
    let rows: Vec<(i64, Option<&str>)> = (0..2_500).map(|i| (i, Some("x"))).collect();
    let out = ok(write_people(&db, dest("many", WriteMode::Append, &[], None), &rows).await);
    assert_eq!(out.rows, 2_500);
    assert_eq!(
        db.dump("SELECT count(*), sum(id), min(id), max(id) FROM many")
            .await,
        ["2500, 3123750, 0, 2499"]
    );
    // 40 columns make 819 rows per statement at most.
    let fields: Vec<Field> = (0..40)
        .map(|i| Field::new(format!("c{i}"), DataType::Int64, true))
        .collect();
    let columns: Vec<ArrayRef> = (0..40)
        .map(|i| {
            Arc::new(Int64Array::from_iter_values(
                (0..2_000).map(move |r| r * 40 + i),
            )) as ArrayRef
        })
        .collect();
    let wide = RecordBatch::try_new(Arc::new(Schema::new(fields)), columns)
        .unwrap_or_else(|e| panic!("{e}"));
    ok(write_batch(&db, dest("wide", WriteMode::Append, &[], None), wide).await);
    assert_eq!(
        db.dump("SELECT count(*), sum(c0), max(c39) FROM wide")
            .await,
        ["2000, 79960000, 79999"]
    );
}

#[tokio::test]
async fn messages_name_the_connection_and_table() {
    let db = Db::new().await;
    let batch = people(&[(1, None)]);
    let message = err(write_batch(
        &db,
        dest("other.people", WriteMode::Append, &[], None),
        batch.clone(),
    )
    .await);
    assert_eq!(
        message,
        "Connection \"local-db\": asset \"other.people\" is not a SQLite table (write `table` or `main.table`)"
    );
    let message = err(write_batch(
        &db,
        dest("people", WriteMode::Append, &["nope"], None),
        batch,
    )
    .await);
    assert_eq!(
        message,
        "Connection \"local-db\", table \"people\": primaryKey column \"nope\" is not among the columns written (\"id\", \"name\")"
    );
    let message = err(db
        .read(table_source("missing"), None, Rejects::failing())
        .await);
    assert_eq!(
        message,
        "Connection \"local-db\", table \"missing\": the table does not exist"
    );
    let spec = ConnectionSpec::default();
    let secrets = Secrets::default();
    let conn = ConnectionRef {
        name: "empty",
        spec: &spec,
        base_dir: db.dir.path().into(),
        secrets: &secrets,
    };
    assert_eq!(
        err(crate::connectors::sink(&conn).map(|_| ())),
        "Connection \"empty\" must have exactly one connector block"
    );
}
