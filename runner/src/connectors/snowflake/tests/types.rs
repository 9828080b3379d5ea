//! Every mapped type through a load and a read, and the types SynqX reads but never creates.

use std::sync::Arc;

use arrow::array::{Array, AsArray, BinaryArray, Int32Array, RecordBatch};
use arrow::datatypes::{DataType, Field, TimeUnit};
use synqx_api::pipeline::WriteMode;

use crate::connectors::tests::warehouses::{
    MAPPED_NULLABLE, assert_mapped_values, batch_of, mapped_columns, sorted_by_id, value_text,
};
use crate::connectors::tests::{Harness, ok};

use super::support::*;

#[tokio::test]
async fn every_mapped_type_round_trips_through_stage_files() {
    let w = Warehouse::new().await;
    round_trip_every_mapped_type(&w, &w.harness(), "staged", true).await;
}

#[tokio::test]
async fn every_mapped_type_round_trips_through_array_bindings() {
    let w = Warehouse::new().await;
    // Without the NULL row: fakesnow 0.12.1 fails on a NULL in a typed binding (its converter
    // calls int(None)), which Snowflake takes.
    round_trip_every_mapped_type(&w, &w.binding_harness(), "bound", false).await;
}

/// Writes a row of every mapped type (and, `with_nulls`, a row of NULLs), reads them back,
/// checks each value.
async fn round_trip_every_mapped_type(
    w: &Warehouse,
    harness: &Harness,
    table: &str,
    with_nulls: bool,
) {
    const DOC: &str = r#"{"a":[1,2]}"#;
    let mut columns = mapped_columns(DOC);
    columns.insert(
        1,
        (
            Field::new("small", DataType::Int32, true),
            Arc::new(Int32Array::from(vec![Some(-7), None])),
        ),
    );
    columns.push((
        Field::new("raw", DataType::Binary, true),
        Arc::new(BinaryArray::from(vec![Some(&b"\x00\xff\x10"[..]), None])),
    ));
    let batch = batch_of(columns);
    let batch = if with_nulls { batch } else { batch.slice(0, 1) };
    let rows = batch.num_rows() as u64;
    let written = w.write_with(harness, table, WriteMode::Append, &[], vec![batch]);
    assert_eq!(ok(written.await), rows);

    let (schema, batches) = ok(w.read(table, None).await);
    let read = sorted_by_id(&schema, &batches);
    assert_mapped_values(&read, DOC);
    let col = |name: &str| {
        read.column_by_name(name)
            .unwrap_or_else(|| panic!("no column {name} in {schema:?}"))
            .clone()
    };
    let text = |name: &str| value_text(&read, name, 0);
    assert_eq!(col("id").data_type(), &DataType::Int64);
    assert_eq!(col("small").data_type(), &DataType::Int64);
    assert_eq!(text("small"), "-7");
    assert_eq!(col("amount").data_type(), &DataType::Decimal128(12, 3));
    assert_eq!(text("amount"), "12345.678");
    assert_eq!(
        col("utc_ts").data_type(),
        &DataType::Timestamp(TimeUnit::Nanosecond, Some("UTC".into()))
    );
    assert_eq!(col("raw").as_binary::<i32>().value(0), b"\x00\xff\x10");
    // Lists are written as VARIANT and read back as their JSON text.
    let tags: serde_json::Value = serde_json::from_str(&text("tags")).unwrap();
    assert_eq!(tags, serde_json::json!([1, 2]));
    if !with_nulls {
        return;
    }
    for name in MAPPED_NULLABLE.iter().chain(&["small", "raw", "tags"]) {
        assert!(col(name).is_null(1), "{name} keeps its null");
    }
}

#[tokio::test]
async fn local_zoned_timestamps_objects_and_arrays_read_back_and_load_again() {
    let w = Warehouse::new().await;
    run_sql(
        &w,
        &[
            "CREATE TABLE shapes (id NUMBER(19,0), seen TIMESTAMP_LTZ(6), attrs OBJECT, \
             tags ARRAY)",
            "INSERT INTO shapes SELECT 1, '2024-05-01 12:30:00.25 +00:00'::TIMESTAMP_LTZ(6), \
             PARSE_JSON('{\"a\":1,\"b\":\"x\"}'), PARSE_JSON('[1,\"two\"]')",
        ],
    )
    .await;
    let json = |t: String| {
        serde_json::from_str::<serde_json::Value>(&t).unwrap_or_else(|e| panic!("{t}: {e}"))
    };
    let check = |read: &RecordBatch, row: usize| {
        let schema = read.schema();
        // In the unit of the scale the server describes (fakesnow says 9 for LTZ(6)), in UTC.
        let seen = schema
            .field_with_name("seen")
            .map(|f| f.data_type().clone());
        assert!(
            matches!(&seen, Ok(DataType::Timestamp(_, Some(zone))) if zone.as_ref() == "UTC"),
            "{seen:?}"
        );
        assert_eq!(value_text(read, "seen", row), "2024-05-01T12:30:00.250Z");
        for name in ["attrs", "tags"] {
            let field = schema
                .field_with_name(name)
                .unwrap_or_else(|e| panic!("{e}"));
            assert!(crate::connectors::http_api::is_json(field), "{field:?}");
        }
        assert_eq!(
            json(value_text(read, "attrs", row)),
            serde_json::json!({"a": 1, "b": "x"})
        );
        assert_eq!(
            json(value_text(read, "tags", row)),
            serde_json::json!([1, "two"])
        );
    };
    let (schema, batches) = ok(w.read("shapes", None).await);
    let first = sorted_by_id(&schema, &batches);
    check(&first, 0);

    // What was read loads into the same columns: the other direction of the map.
    let mut columns = first.columns().to_vec();
    columns[0] = Arc::new(arrow::array::Int64Array::from(vec![2]));
    let again = RecordBatch::try_new(first.schema(), columns).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        ok(w.write_keyed("shapes", WriteMode::Append, &[], vec![again])
            .await),
        1
    );
    let (schema, batches) = ok(w.read("shapes", None).await);
    let both = sorted_by_id(&schema, &batches);
    assert_eq!(both.num_rows(), 2);
    check(&both, 0);
    check(&both, 1);
}
