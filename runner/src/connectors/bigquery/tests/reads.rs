//! Incremental reads of tables and queries, a missing table, and `synqx check`.

use std::sync::Arc;

use arrow::array::{AsArray, Int64Array, RecordBatch, TimestampMicrosecondArray};
use arrow::datatypes::{DataType, Field, Int64Type, Schema, TimeUnit};
use synqx_api::connection::BigQueryLoadFormat;
use synqx_api::pipeline::WriteMode;

use crate::connectors::ConnectionRef;
use crate::connectors::tests::warehouses::person as row;
use crate::connectors::tests::{err, ok, people};
use crate::engine::CursorFilter;
use crate::secrets::Secrets;

use super::support::*;

#[tokio::test]
async fn incremental_reads_only_rows_above_the_watermark_over_three_runs() {
    // Its cursor is a TIMESTAMP, which the emulator misreads from Parquet.
    let lake = Lakehouse::loading(BigQueryLoadFormat::Json).await;
    let events = |rows: &[(i64, i64)]| {
        let schema = Arc::new(Schema::new(vec![
            Field::new("id", DataType::Int64, false),
            Field::new(
                "updated_at",
                DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
                false,
            ),
        ]));
        RecordBatch::try_new(
            schema,
            vec![
                Arc::new(Int64Array::from(
                    rows.iter().map(|r| r.0).collect::<Vec<_>>(),
                )),
                Arc::new(
                    TimestampMicrosecondArray::from(
                        rows.iter().map(|r| r.1 * 1_000_000).collect::<Vec<_>>(),
                    )
                    .with_timezone("UTC"),
                ),
            ],
        )
        .unwrap()
    };
    ok(lake
        .write(
            "events",
            WriteMode::Append,
            vec![events(&[(1, 1_704_103_200), (2, 1_704_189_600)])],
        )
        .await);
    let ids_after = |after: Option<&str>| {
        let lake = &lake;
        let filter = after.map(|a| CursorFilter {
            column: "updated_at".into(),
            after: a.into(),
        });
        async move {
            let (_, batches) = ok(lake.read("events", filter).await);
            let mut ids: Vec<i64> = batches
                .iter()
                .flat_map(|b| b.column(0).as_primitive::<Int64Type>().values().to_vec())
                .collect();
            ids.sort();
            ids
        }
    };
    assert_eq!(ids_after(None).await, vec![1, 2]);
    // The watermark is the highest cursor of run 1: 2024-01-02T10:00:00Z.
    assert_eq!(
        ids_after(Some("2024-01-02T10:00:00Z")).await,
        Vec::<i64>::new()
    );
    ok(lake
        .write(
            "events",
            WriteMode::Append,
            vec![events(&[(3, 1_704_189_600), (4, 1_704_272_400)])],
        )
        .await);
    assert_eq!(ids_after(Some("2024-01-02T10:00:00Z")).await, vec![4]);
}

#[tokio::test]
async fn a_query_source_reads_what_the_query_returns_and_filters_it_incrementally() {
    let lake = Lakehouse::new().await;
    let rows = people(&[(1, Some("ada")), (2, Some("bob")), (3, Some("cy"))]);
    ok(lake.write("people", WriteMode::Append, vec![rows]).await);
    // Unqualified: the Connection's dataset is the query's default. The semicolon is the user's.
    let query = "SELECT id, UPPER(name) AS name FROM people WHERE id <> 2;";
    let h = lake.harness();
    let read = |after| h.query_people(CONNECTION, query, "id", after);
    assert_eq!(read(None).await, vec![row(1, "ADA"), row(3, "CY")]);
    // The watermark filters what the query returns, not the table: row 2 stays out.
    assert_eq!(read(Some("0")).await, vec![row(1, "ADA"), row(3, "CY")]);
    assert_eq!(read(Some("1")).await, vec![row(3, "CY")]);
    assert_eq!(read(Some("3")).await, vec![]);
    h.assert_missing_cursor_is_named(CONNECTION, query, "id, name")
        .await;
}

#[tokio::test]
async fn a_missing_table_is_named() {
    let lake = Lakehouse::new().await;
    let e = err(lake.read("no_such_table", None).await);
    assert!(
        e.starts_with("Connection \"lakehouse\": `SELECT * FROM"),
        "{e}"
    );
    assert!(e.contains("no_such_table"), "{e}");
}

#[tokio::test]
async fn check_reaches_the_dataset_and_names_a_missing_one() {
    let lake = Lakehouse::new().await;
    let report = crate::connectors::check(&lake.conn()).await;
    assert!(report.ready, "{report:?}");
    let mut spec = lake.spec.clone();
    if let Some(b) = spec.bigquery.as_mut() {
        b.dataset = Some("no_such_dataset".into());
    }
    let secrets = Secrets::default();
    let conn = ConnectionRef {
        name: CONNECTION,
        spec: &spec,
        base_dir: ".".into(),
        secrets: &secrets,
    };
    let report = crate::connectors::check(&conn).await;
    assert_eq!(report.reason.as_str(), "NotFound", "{report:?}");
    assert!(
        report
            .message
            .contains("dataset \"no_such_dataset\" does not exist"),
        "{}",
        report.message
    );
}
