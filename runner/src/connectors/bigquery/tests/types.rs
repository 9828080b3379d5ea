//! The mapped types through a load and a read, and what the emulator's Parquet reader reads.

use std::sync::Arc;

use arrow::array::{Array, AsArray, Decimal128Array};
use arrow::datatypes::{DataType, Field, Int64Type};
use synqx_api::connection::BigQueryLoadFormat;
use synqx_api::pipeline::WriteMode;

use crate::connectors::tests::warehouses::{
    MAPPED_NULLABLE, assert_mapped_values, batch_of, mapped_columns, sorted_by_id, value_text,
};
use crate::connectors::tests::{int64_list, ok};

use super::support::*;

#[tokio::test]
async fn the_mapped_types_round_trip() {
    // JSON of strings only: the emulator stores JSON numbers as strings.
    const DOC: &str = r#"{"a":"x"}"#;
    let lake = Lakehouse::loading(BigQueryLoadFormat::Json).await;
    let mut columns = mapped_columns(DOC);
    columns.insert(
        2,
        (
            Field::new("big", DataType::Decimal128(38, 10), true),
            Arc::new(
                Decimal128Array::from(vec![Some(-123_456_789_012_345_678_901_234_567_891), None])
                    .with_precision_and_scale(38, 10)
                    .unwrap(),
            ),
        ),
    );
    columns.push(point_column());
    let batch = batch_of(columns);
    assert_eq!(
        ok(lake
            .write("all_types", WriteMode::Append, vec![batch])
            .await),
        2
    );

    let (schema, batches) = ok(lake.read("all_types", None).await);
    let read = sorted_by_id(&schema, &batches);
    assert_mapped_values(&read, DOC);
    let col = |name: &str| {
        read.column_by_name(name)
            .unwrap_or_else(|| panic!("no {name} in {schema:?}"))
            .clone()
    };
    let text = |name: &str| value_text(&read, name, 0);
    assert_eq!(col("amount").data_type(), &DataType::Decimal128(38, 9));
    assert_eq!(text("amount"), "12345.678000000");
    // BIGNUMERIC reads as its exact decimal text.
    assert_eq!(col("big").data_type(), &DataType::Utf8);
    assert_eq!(text("big"), "-12345678901234567890.1234567891");
    assert_eq!(int64_list(&col("tags"), 0), vec![1, 2]);
    // BigQuery arrays are never NULL: a null list reads back empty.
    assert_eq!(col("tags").as_list::<i32>().value(1).len(), 0);
    let point = col("point");
    let point = point.as_struct();
    assert_eq!(point.column(0).as_primitive::<Int64Type>().value(0), 5);
    assert_eq!(point.column(1).as_string::<i32>().value(0), "p");
    for name in MAPPED_NULLABLE.iter().chain(&["big", "point"]) {
        assert!(col(name).is_null(1), "{name} keeps its null");
    }
}

#[tokio::test]
async fn parquet_loads_the_types_the_emulator_reads_by_content() {
    let lake = Lakehouse::new().await;
    let mut columns = mapped_columns("{}");
    columns.retain(|(f, _)| ["id", "ratio", "name", "flag"].contains(&f.name().as_str()));
    columns.push((
        Field::new("small", DataType::Int16, true),
        Arc::new(arrow::array::Int16Array::from(vec![Some(-7), None])),
    ));
    columns.push(point_column());
    assert_eq!(
        ok(lake
            .write("parquet_types", WriteMode::Append, vec![batch_of(columns)])
            .await),
        2
    );
    let (schema, batches) = ok(lake.read("parquet_types", None).await);
    let read = sorted_by_id(&schema, &batches);
    let text = |name: &str| value_text(&read, name, 0);
    assert_eq!(text("id"), "1");
    assert_eq!(text("ratio"), "0.25");
    assert_eq!(text("name"), "Zoë ✓");
    assert_eq!(text("flag"), "true");
    assert_eq!(text("small"), "-7");
    assert_eq!(text("point"), "{x: 5, label: p}");
    for name in ["ratio", "name", "flag", "small", "point"] {
        let column = read
            .column_by_name(name)
            .unwrap_or_else(|| panic!("no {name} in {schema:?}"));
        assert!(column.is_null(1), "{name} keeps its null");
    }
}
