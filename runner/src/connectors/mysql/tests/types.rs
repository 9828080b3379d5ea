//! Every mapped Arrow type written to a table the sink creates, then read back by the source:
//! extremes, NULLs, empty strings, 4-byte characters, bytes that need escaping, JSON, UUIDs.

use std::collections::HashMap;
use std::sync::Arc;

use arrow::array::{
    Array, ArrayRef, BinaryArray, BooleanArray, Date32Array, Decimal128Array, FixedSizeBinaryArray,
    Float32Array, Float64Array, Int8Array, Int16Array, Int32Array, Int64Array, RecordBatch,
    StringArray, Time64MicrosecondArray, TimestampMicrosecondArray, UInt8Array, UInt16Array,
    UInt32Array, UInt64Array,
};
use arrow::datatypes::{DataType, Field, Schema, TimeUnit};
use synqx_api::pipeline::WriteMode;

use super::super::types::{EXTENSION, JSON, UUID};
use super::support::{Db, dest, ok, table_source};
use crate::connectors::sql::tests::{data_types, write_batch};

fn with_extension(field: Field, name: &str) -> Field {
    field.with_metadata(HashMap::from([(EXTENSION.to_string(), name.to_string())]))
}

#[tokio::test]
async fn every_mapped_type_round_trips_with_extremes_and_nulls() {
    let db = Db::new().await;
    let max_decimal = 10i128.pow(38) - 1;
    let uuid: Vec<u8> = (0u8..16).map(|b| b * 17).collect();
    let columns: Vec<(Field, ArrayRef)> = vec![
        (
            Field::new("id", DataType::Int64, false),
            Arc::new(Int64Array::from(vec![1, 2, 3])),
        ),
        (
            Field::new("flag", DataType::Boolean, true),
            Arc::new(BooleanArray::from(vec![Some(false), Some(true), None])),
        ),
        (
            Field::new("i8", DataType::Int8, true),
            Arc::new(Int8Array::from(vec![Some(i8::MIN), Some(i8::MAX), None])),
        ),
        (
            Field::new("i16", DataType::Int16, true),
            Arc::new(Int16Array::from(vec![Some(i16::MIN), Some(i16::MAX), None])),
        ),
        (
            Field::new("i32", DataType::Int32, true),
            Arc::new(Int32Array::from(vec![Some(i32::MIN), Some(i32::MAX), None])),
        ),
        (
            Field::new("i64", DataType::Int64, true),
            Arc::new(Int64Array::from(vec![Some(i64::MIN), Some(i64::MAX), None])),
        ),
        (
            Field::new("u8", DataType::UInt8, true),
            Arc::new(UInt8Array::from(vec![Some(0), Some(u8::MAX), None])),
        ),
        (
            Field::new("u16", DataType::UInt16, true),
            Arc::new(UInt16Array::from(vec![Some(0), Some(u16::MAX), None])),
        ),
        (
            Field::new("u32", DataType::UInt32, true),
            Arc::new(UInt32Array::from(vec![Some(0), Some(u32::MAX), None])),
        ),
        (
            Field::new("u64", DataType::UInt64, true),
            Arc::new(UInt64Array::from(vec![Some(0), Some(u64::MAX), None])),
        ),
        (
            Field::new("f32", DataType::Float32, true),
            Arc::new(Float32Array::from(vec![Some(-0.125), Some(3.5), None])),
        ),
        (
            Field::new("f64", DataType::Float64, true),
            Arc::new(Float64Array::from(vec![Some(-2.5e-300), Some(0.1), None])),
        ),
        (
            Field::new("amount", DataType::Decimal128(38, 10), true),
            Arc::new(
                Decimal128Array::from(vec![Some(-max_decimal), Some(max_decimal), None])
                    .with_precision_and_scale(38, 10)
                    .unwrap_or_else(|e| panic!("{e}")),
            ),
        ),
        (
            Field::new("text", DataType::Utf8, true),
            Arc::new(StringArray::from(vec![
                Some(""),
                Some("it's 😀 \\ \"q\""),
                None,
            ])),
        ),
        (
            Field::new("bytes", DataType::Binary, true),
            Arc::new(BinaryArray::from(vec![
                Some(&b""[..]),
                Some(&b"\x00\x27\xff\\"[..]),
                None,
            ])),
        ),
        (
            with_extension(Field::new("doc", DataType::Utf8, true), JSON),
            Arc::new(StringArray::from(vec![
                Some("{\"a\": [1, \"x'y\"]}"),
                Some("[]"),
                None,
            ])),
        ),
        (
            with_extension(Field::new("uid", DataType::FixedSizeBinary(16), true), UUID),
            Arc::new(
                FixedSizeBinaryArray::try_from_sparse_iter_with_size(
                    vec![Some(uuid.clone()), Some(vec![0u8; 16]), None].into_iter(),
                    16,
                )
                .unwrap_or_else(|e| panic!("{e}")),
            ),
        ),
        (
            Field::new("day", DataType::Date32, true),
            // 1000-01-01 and 9999-12-31.
            Arc::new(Date32Array::from(vec![
                Some(-354_285),
                Some(2_932_896),
                None,
            ])),
        ),
        (
            Field::new("clock", DataType::Time64(TimeUnit::Microsecond), true),
            Arc::new(Time64MicrosecondArray::from(vec![
                Some(0),
                Some(86_399_999_999),
                None,
            ])),
        ),
        (
            Field::new(
                "local",
                DataType::Timestamp(TimeUnit::Microsecond, None),
                true,
            ),
            Arc::new(TimestampMicrosecondArray::from(vec![
                Some(-30_610_224_000_000_000),
                Some(253_402_300_799_999_999),
                None,
            ])),
        ),
        (
            Field::new(
                "instant",
                DataType::Timestamp(TimeUnit::Microsecond, Some("+00:00".into())),
                true,
            ),
            Arc::new(
                TimestampMicrosecondArray::from(vec![Some(1_704_067_200_123_456), Some(0), None])
                    .with_timezone("+00:00"),
            ),
        ),
    ];
    let schema = Arc::new(Schema::new(
        columns.iter().map(|(f, _)| f.clone()).collect::<Vec<_>>(),
    ));
    let batch = RecordBatch::try_new(schema, columns.iter().map(|(_, a)| a.clone()).collect())
        .unwrap_or_else(|e| panic!("{e}"));
    ok(write_batch(
        &db,
        dest("everything", WriteMode::Append, &["id"], None),
        batch,
    )
    .await);
    assert_eq!(
        db.catalog(
            "COLUMN_TYPE",
            "COLUMNS",
            "AND TABLE_NAME = 'everything' ORDER BY ORDINAL_POSITION"
        )
        .await,
        [
            "bigint(20)",
            "tinyint(1)",
            "tinyint(4)",
            "smallint(6)",
            "int(11)",
            "bigint(20)",
            "tinyint(3) unsigned",
            "smallint(5) unsigned",
            "int(10) unsigned",
            "bigint(20) unsigned",
            "float",
            "double",
            "decimal(38,10)",
            "longtext",
            "longblob",
            "longtext",
            "uuid",
            "date",
            "time(6)",
            "datetime(6)",
            "datetime(6)"
        ]
    );

    let mut spec = table_source("everything");
    spec.query = None;
    let (read_schema, batches) = ok(db.read_filtered(spec, None, 1 << 20).await);
    assert_eq!(batches.len(), 1);
    let read = &batches[0];
    for (i, (field, written)) in columns.iter().enumerate() {
        let read_field = read_schema.field(i);
        assert_eq!(read_field.name(), field.name());
        let expected: ArrayRef = match field.data_type() {
            // timestamp columns are created as datetime(6) holding UTC.
            DataType::Timestamp(unit, Some(_)) => {
                arrow::compute::cast(written, &DataType::Timestamp(*unit, None))
                    .unwrap_or_else(|e| panic!("{e}"))
            }
            _ => written.clone(),
        };
        assert_eq!(
            read_field.data_type(),
            expected.data_type(),
            "{}",
            field.name()
        );
        assert_eq!(
            read_field.metadata().get(EXTENSION),
            field.metadata().get(EXTENSION),
            "{}",
            field.name()
        );
        assert_eq!(
            read.column(i).to_data(),
            expected.to_data(),
            "column {}",
            field.name()
        );
    }
}

#[tokio::test]
async fn server_types_read_as_the_map_says_with_zero_dates_as_null() {
    let db = Db::new().await;
    db.sql(
        "SET SESSION sql_mode = '';
         CREATE TABLE legacy (y YEAR, b BIT(1), bits BIT(12), e ENUM('a','b'), s SET('x','y'),
           d DATE, ts TIMESTAMP(3) NULL, big DECIMAL(60,5), j JSON);
         INSERT INTO legacy VALUES (2024, b'1', b'101010101010', 'b', 'x,y', '0000-00-00',
           '2024-05-01 10:00:00.123', 123456789012345678901234567890123456789012345678901234.5, '{}')",
    )
    .await;
    let (schema, batches) = ok(db
        .read_filtered(table_source("legacy"), None, 1 << 20)
        .await);
    assert_eq!(
        data_types(&schema),
        [
            "Int16",
            "Boolean",
            "Binary",
            "Utf8",
            "Utf8",
            "Date32",
            "Timestamp(µs, \"+00:00\")",
            "Utf8",
            "Utf8"
        ]
    );
    assert_eq!(
        schema
            .field(8)
            .metadata()
            .get(EXTENSION)
            .map(String::as_str),
        Some(JSON)
    );
    let row = &batches[0];
    let show = |i: usize| {
        arrow::util::display::array_value_to_string(row.column(i), 0)
            .unwrap_or_else(|e| panic!("{e}"))
    };
    assert_eq!(show(0), "2024");
    assert_eq!(show(1), "true");
    assert_eq!(show(2), "0aaa");
    assert_eq!(show(3), "b");
    assert_eq!(show(4), "x,y");
    assert!(row.column(5).is_null(0), "a zero date reads as NULL");
    assert_eq!(show(6), "2024-05-01T10:00:00.123Z");
    assert_eq!(
        show(7),
        "123456789012345678901234567890123456789012345678901234.50000"
    );
    assert_eq!(show(8), "{}");
}
