//! The source against the real server: schemas known up front, the text fallback, the cursor
//! pushed down, queries, and a large table in many batches, through `Source::read`.

use arrow::array::{Array, AsArray, RecordBatch};
use arrow::datatypes::{DataType, Int64Type, TimeUnit};

use super::support::{Pg, message, source};
use crate::connectors::tests::field_names;
use crate::engine::CursorFilter;

fn ids(batches: &[RecordBatch], column: &str) -> Vec<i64> {
    batches
        .iter()
        .flat_map(|b| {
            let i = b
                .schema()
                .index_of(column)
                .unwrap_or_else(|e| panic!("{e}"));
            b.column(i).as_primitive::<Int64Type>().values().to_vec()
        })
        .collect()
}

#[tokio::test]
async fn a_table_reads_with_its_schema_known_before_the_first_row() {
    let pg = Pg::new("pg_read").await;
    let table = format!("\"{}\".\"Things\"", pg.schema);
    pg.sql(&format!(
        "CREATE TABLE {table} (id bigint NOT NULL, name varchar(20), price numeric(10,2),
                               at timestamptz, spot point, tags text[]);
         INSERT INTO {table} VALUES
           (1, 'a', 1.50, '2024-01-01 10:00:00+02', '(1,2)', '{{x,y}}'),
           (2, NULL, NULL, NULL, NULL, NULL)"
    ))
    .await;
    let (schema, batches) = pg
        .harness()
        .read_filtered(source(&pg.fqn("Things")), None, 1 << 20)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let types: Vec<(String, DataType)> = schema
        .fields()
        .iter()
        .map(|f| (f.name().clone(), f.data_type().clone()))
        .collect();
    assert_eq!(types[0], ("id".into(), DataType::Int64));
    assert_eq!(types[1], ("name".into(), DataType::Utf8));
    assert_eq!(types[2], ("price".into(), DataType::Decimal128(10, 2)));
    assert_eq!(
        types[3],
        (
            "at".into(),
            DataType::Timestamp(TimeUnit::Microsecond, Some("+00:00".into()))
        )
    );
    // No binary mapping: read as text.
    assert_eq!(types[4], ("spot".into(), DataType::Utf8));
    assert!(matches!(types[5].1, DataType::List(_)), "{types:?}");
    let rows: usize = batches.iter().map(RecordBatch::num_rows).sum();
    assert_eq!(rows, 2);
    let first = &batches[0];
    assert_eq!(first.column(4).as_string::<i32>().value(0), "(1,2)");
    assert_eq!(
        first
            .column(3)
            .as_primitive::<arrow::datatypes::TimestampMicrosecondType>()
            .value(0),
        1_704_096_000_000_000
    );
    assert!(first.column(1).is_null(1));
}

#[tokio::test]
async fn the_integer_cursor_is_pushed_down_and_the_watermark_row_is_not_read_again() {
    let pg = Pg::new("pg_cursor_int").await;
    let table = format!("\"{}\".t", pg.schema);
    pg.sql(&format!(
        "CREATE TABLE {table} (id bigint, seq integer);
         INSERT INTO {table} VALUES (1, 10), (2, 20), (3, 20), (4, 30), (5, 9)"
    ))
    .await;
    let filter = CursorFilter {
        column: "seq".into(),
        after: "20".into(),
    };
    let (_, batches) = pg
        .harness()
        .read_filtered(source(&pg.fqn("t")), Some(filter), 1 << 20)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    // 20 < 9 as text, 20 > 9 as numbers: the comparison is numeric.
    assert_eq!(ids(&batches, "id"), [4]);
}

#[tokio::test]
async fn the_timestamp_cursor_compares_as_timestamps_at_the_boundary() {
    let pg = Pg::new("pg_cursor_ts").await;
    let table = format!("\"{}\".t", pg.schema);
    pg.sql(&format!(
        "CREATE TABLE {table} (id bigint, updated_at timestamp(3), changed timestamptz);
         INSERT INTO {table} VALUES
           (1, '2024-01-01 09:59:59.999', '2024-01-01 09:59:59.999+00'),
           (2, '2024-01-01 10:00:00', '2024-01-01 10:00:00+00'),
           (3, '2024-01-01 10:00:00', '2024-01-01 12:00:00+02'),
           (4, '2024-01-01 10:00:00.001', '2024-01-01 10:00:00.001+00')"
    ))
    .await;
    let read = |column: &str, after: &str| {
        let filter = CursorFilter {
            column: column.into(),
            after: after.into(),
        };
        let pg = &pg;
        async move {
            let (_, batches) = pg
                .harness()
                .read_filtered(source(&pg.fqn("t")), Some(filter), 1 << 20)
                .await
                .unwrap_or_else(|e| panic!("{e}"));
            let mut ids = ids(&batches, "id");
            ids.sort_unstable();
            ids
        }
    };
    // The watermark as the engine stores it, in Arrow's display of the column.
    assert_eq!(read("updated_at", "2024-01-01T10:00:00").await, [4]);
    assert_eq!(read("changed", "2024-01-01T10:00:00+00:00").await, [4]);
    assert_eq!(read("changed", "2024-01-01T09:00:00Z").await, [1, 2, 3, 4]);
}

#[tokio::test]
async fn a_query_source_reads_its_columns_and_filters_by_its_cursor() {
    let pg = Pg::new("pg_query").await;
    let table = format!("\"{}\".t", pg.schema);
    pg.sql(&format!(
        "CREATE TABLE {table} (id bigint, amount numeric(8,3), region text);
         INSERT INTO {table} VALUES (1, 1.5, 'eu'), (2, 2.5, 'us'), (3, 3.5, 'eu')"
    ))
    .await;
    let mut spec = source(&pg.fqn("t"));
    spec.query = Some(format!(
        "SELECT id, amount * 2 AS doubled, upper(region) AS region FROM {table} WHERE region = 'eu';"
    ));
    let (schema, batches) = pg
        .harness()
        .read_filtered(spec.clone(), None, 1 << 20)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(field_names(&schema), ["id", "doubled", "region"]);
    assert_eq!(ids(&batches, "id"), [1, 3]);
    assert_eq!(batches[0].column(2).as_string::<i32>().value(0), "EU");
    let filter = CursorFilter {
        column: "id".into(),
        after: "1".into(),
    };
    let (_, batches) = pg
        .harness()
        .read_filtered(spec.clone(), Some(filter), 1 << 20)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(ids(&batches, "id"), [3]);
    // The query's view is gone with its transaction.
    assert_eq!(
        pg.dump("SELECT count(*) FROM pg_class WHERE relname LIKE 'synqx_query_%' AND relpersistence = 't'")
            .await,
        ["(0)"]
    );
}

#[tokio::test]
async fn a_missing_cursor_column_names_the_column_the_table_and_its_columns() {
    let pg = Pg::new("pg_cursor_missing").await;
    pg.sql(&format!(
        "CREATE TABLE \"{}\".t (id bigint, seq int)",
        pg.schema
    ))
    .await;
    let filter = CursorFilter {
        column: "updated_at".into(),
        after: "1".into(),
    };
    let e = message(
        pg.harness()
            .read_filtered(source(&pg.fqn("t")), Some(filter), 1 << 20)
            .await,
    );
    assert_eq!(
        e,
        format!(
            "Connection \"warehouse\": incremental cursor column \"updated_at\" is not a column of table \"{}.t\" (columns: id, seq); names are case-sensitive",
            pg.schema
        )
    );
}

#[tokio::test]
async fn a_large_table_streams_in_many_batches_of_the_budget() {
    let pg = Pg::new("pg_large").await;
    let table = format!("\"{}\".big", pg.schema);
    pg.sql(&format!(
        "CREATE TABLE {table} AS
         SELECT g::bigint AS id, md5(g::text) AS label, g * 0.5 AS half
         FROM generate_series(1, 200000) g"
    ))
    .await;
    let (_, batches) = pg
        .harness()
        .read_filtered(source(&pg.fqn("big")), None, 256 * 1024)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(batches.len() >= 20, "{} batches", batches.len());
    let ids = ids(&batches, "id");
    assert_eq!(ids.len(), 200_000);
    assert_eq!(ids.iter().sum::<i64>(), 200_000 * 200_001 / 2);
}
