//! Incremental reads of tables and queries, a missing table, and `synqx check`.

use arrow::array::AsArray;
use arrow::datatypes::{DataType, Int64Type};

use crate::connectors::tests::warehouses::person as row;
use crate::connectors::tests::{err, ok};
use crate::engine::CursorFilter;

use super::support::*;

#[tokio::test]
async fn incremental_reads_only_rows_above_the_watermark_over_three_runs() {
    let w = Warehouse::new().await;
    run_sql(
        &w,
        &[
            "CREATE TABLE events (id NUMBER(19,0), updated_at TIMESTAMP_NTZ(6))",
            "INSERT INTO events VALUES (1, '2024-01-01 10:00:00'), (2, '2024-01-02 10:00:00')",
        ],
    )
    .await;

    let read_after = |after: Option<String>| {
        let w = &w;
        async move {
            let filter = after.map(|after| CursorFilter {
                column: "updated_at".into(),
                after,
            });
            let (_, batches) = ok(w.read("events", filter).await);
            let mut ids: Vec<i64> = batches
                .iter()
                .flat_map(|b| {
                    let ids =
                        arrow::compute::cast(b.column_by_name("id").unwrap(), &DataType::Int64)
                            .unwrap();
                    ids.as_primitive::<Int64Type>().values().to_vec()
                })
                .collect();
            ids.sort();
            ids
        }
    };
    // Run 1 reads everything; its watermark is the highest cursor, 2024-01-02 10:00.
    assert_eq!(read_after(None).await, vec![1, 2]);
    // Run 2: nothing new, nothing read.
    assert_eq!(
        read_after(Some("2024-01-02T10:00:00".into())).await,
        Vec::<i64>::new()
    );
    // Run 3: one late row at the watermark (not re-read) and one above it.
    run_sql(
        &w,
        &["INSERT INTO events VALUES (3, '2024-01-02 10:00:00'), (4, '2024-01-03 09:00:00')"],
    )
    .await;
    assert_eq!(
        read_after(Some("2024-01-02T10:00:00".into())).await,
        vec![4]
    );

    let missing = w
        .read(
            "events",
            Some(CursorFilter {
                column: "changed".into(),
                after: "1".into(),
            }),
        )
        .await;
    assert!(err(missing).contains(
        "incremental cursor column \"changed\" is not a column (columns: ID, UPDATED_AT)"
    ),);
}

#[tokio::test]
async fn a_query_source_reads_what_the_query_returns_and_filters_it_incrementally() {
    let w = Warehouse::new().await;
    run_sql(
        &w,
        &[
            "CREATE TABLE orders (id NUMBER(19,0), status VARCHAR, updated_at TIMESTAMP_NTZ(6))",
            "INSERT INTO orders VALUES (1, 'open', '2024-01-01 10:00:00'), \
             (2, 'void', '2024-01-02 10:00:00'), (3, 'open', '2024-01-03 10:00:00')",
        ],
    )
    .await;
    // `name` so that the rows read as people; the trailing semicolon is the user's.
    let query = "SELECT id, UPPER(status) AS name, updated_at FROM orders WHERE status <> 'void';";
    let h = w.harness();
    let read = |after| h.query_people(CONNECTION, query, "updated_at", after);
    assert_eq!(read(None).await, vec![row(1, "OPEN"), row(3, "OPEN")]);
    // The watermark filters what the query returns, not the table: row 2 stays out.
    assert_eq!(
        read(Some("2024-01-01T10:00:00")).await,
        vec![row(3, "OPEN")]
    );
    assert_eq!(read(Some("2024-01-03T10:00:00")).await, vec![]);
    h.assert_missing_cursor_is_named(CONNECTION, query, "ID, NAME, UPDATED_AT")
        .await;
}

#[tokio::test]
async fn a_missing_table_is_named() {
    let w = Warehouse::new().await;
    let e = err(w.read("no_such_table", None).await);
    assert!(
        e.starts_with("Connection \"warehouse\": `SELECT * FROM"),
        "{e}"
    );
    assert!(e.contains("NO_SUCH_TABLE"), "{e}");
    assert!(
        e.contains("(check the database, schema and table names and the role's grants)"),
        "{e}"
    );
    assert!(!e.contains(PASSWORD));
}

#[tokio::test]
async fn check_reports_a_reachable_account() {
    let w = Warehouse::new().await;
    let report = crate::connectors::check(&w.conn()).await;
    assert!(report.ready, "{report:?}");
    assert_eq!(report.reason.as_str(), "Connected");
    assert!(
        report.message.contains("logged in to http://127.0.0.1:"),
        "{}",
        report.message
    );
}
