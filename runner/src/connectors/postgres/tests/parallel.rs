//! Parallel reads against the real server: the rows of a single-stream read, in one snapshot
//! while the table changes, over several connections.

use std::sync::Arc;

use arrow::array::{AsArray, RecordBatch};
use arrow::datatypes::{Int32Type, Int64Type};
use futures::StreamExt;
use sqlx::{AssertSqlSafe, Connection};

use super::support::{Pg, source};
use crate::engine::{Counters, CursorFilter, ReadRequest, Rejects};

/// `(id, v, note)` of every row, sorted by id.
fn rows(batches: &[RecordBatch]) -> Vec<(i64, i32, String)> {
    let mut out: Vec<(i64, i32, String)> = batches
        .iter()
        .flat_map(|b| {
            let ids = b.column(0).as_primitive::<Int64Type>();
            let v = b.column(1).as_primitive::<Int32Type>();
            let notes = b.column(2).as_string::<i32>();
            (0..b.num_rows())
                .map(|i| (ids.value(i), v.value(i), notes.value(i).to_string()))
                .collect::<Vec<_>>()
        })
        .collect();
    out.sort();
    out
}

fn parallel(fqn: &str, n: u32) -> synqx_api::pipeline::Source {
    let mut spec = source(fqn);
    spec.parallelism = Some(n);
    spec
}

#[tokio::test]
async fn a_parallel_read_holds_exactly_the_rows_of_a_single_stream_read() {
    let pg = Pg::new("pg_parallel").await;
    let table = format!("\"{}\".t", pg.schema);
    pg.sql(&format!(
        "CREATE TABLE {table} (id bigint NOT NULL, v integer NOT NULL, note text NOT NULL);
         INSERT INTO {table} SELECT i, i % 97, repeat('n', i % 50) FROM generate_series(1, 50000) i;
         DELETE FROM {table} WHERE id % 7 = 0;
         UPDATE {table} SET v = -v WHERE id % 11 = 0;"
    ))
    .await;
    let fqn = pg.fqn("t");
    let (_, single) = pg
        .harness()
        .read_filtered(source(&fqn), None, 256 * 1024)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let expected = rows(&single);
    assert_eq!(expected.len(), 50_000 - 50_000 / 7);
    for n in [2, 4, 64] {
        let (_, batches) = pg
            .harness()
            .read_filtered(parallel(&fqn, n), None, 256 * 1024)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(rows(&batches), expected, "parallelism {n}");
    }
    let filter = || {
        Some(CursorFilter {
            column: "id".into(),
            after: "40000".into(),
        })
    };
    let (_, single) = pg
        .harness()
        .read_filtered(source(&fqn), filter(), 256 * 1024)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let (_, batches) = pg
        .harness()
        .read_filtered(parallel(&fqn, 3), filter(), 256 * 1024)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(rows(&batches), rows(&single));
    assert!(rows(&single).iter().all(|r| r.0 > 40_000));
}

#[tokio::test]
async fn a_parallel_read_is_one_snapshot_while_the_table_changes() {
    let pg = Pg::new("pg_parallel_snap").await;
    let table = format!("\"{}\".t", pg.schema);
    let total = 200_000;
    pg.sql(&format!(
        "CREATE TABLE {table} (id bigint NOT NULL, v integer NOT NULL, note text NOT NULL);
         INSERT INTO {table} SELECT i, 0, repeat('x', 60) FROM generate_series(1, {total}) i;"
    ))
    .await;
    let request = ReadRequest {
        spec: parallel(&pg.fqn("t"), 4),
        filter: None,
        batch_bytes: 64 * 1024,
        rejects: Rejects::new(Default::default(), None, Arc::new(Counters::default())),
        memory: Default::default(),
    };
    let mut stream = pg
        .harness()
        .source
        .read(&request)
        .await
        .unwrap_or_else(|e| panic!("{e}"))
        .stream;
    let first = stream
        .next()
        .await
        .unwrap_or_else(|| panic!("no batch"))
        .unwrap_or_else(|e| panic!("{e}"));

    // Every range's reader has begun its COPY in the exported snapshot (the server may have
    // sent all of it already, into the socket's buffers: the state is then idle in transaction).
    let mut conn = synqx_testkit::postgres::connect().await;
    let copies: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM pg_stat_activity WHERE query LIKE 'COPY (SELECT %' AND query LIKE '%ctid >= %' AND query LIKE '%' || $1 || '%'",
    )
    .bind(&pg.schema)
    .fetch_one(&mut conn)
    .await
    .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(copies, 4);

    // Committed while the read is under way: every row moves to a new version, half are
    // deleted, new ones arrive.
    sqlx::raw_sql(AssertSqlSafe(format!(
        "UPDATE {table} SET v = 1;
         DELETE FROM {table} WHERE id % 2 = 0;
         INSERT INTO {table} SELECT i, 2, 'new' FROM generate_series({total} + 1, {total} + 5000) i;"
    )))
    .execute(&mut conn)
    .await
    .unwrap_or_else(|e| panic!("{e}"));
    let _ = conn.close().await;

    let mut batches = vec![first];
    while let Some(batch) = stream.next().await {
        batches.push(batch.unwrap_or_else(|e| panic!("{e}")));
    }
    let read = rows(&batches);
    let expected: Vec<(i64, i32, String)> = (1..=total).map(|id| (id, 0, "x".repeat(60))).collect();
    assert_eq!(read.len(), expected.len());
    assert!(
        read == expected,
        "the read is not the table as it was when it started"
    );
}
