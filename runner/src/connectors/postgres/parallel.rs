//! A table read by several connections at once (`source.parallelism: N`), as exactly one
//! consistent copy of it.
//!
//! The read's own transaction (`REPEATABLE READ READ ONLY`, which learned the columns)
//! exports its snapshot with `pg_export_snapshot()`; each of N more connections begins its
//! own transaction with `SET TRANSACTION SNAPSHOT` on it, so all of them see the table as of
//! the same instant, whatever is written meanwhile. The table's pages are split into N
//! ranges of `ctid` (`ctid >= '(a,0)' AND ctid < '(b,0)'`, a TID range scan), which together
//! hold every row version exactly once: the last range is open-ended, and a row version
//! this snapshot sees was written before it, so it lies in a page that existed then. The
//! exporting transaction stays open until every reader has imported the snapshot (and, here,
//! until they finish). Batches of all ranges go into one stream, in no particular order.
//!
//! It pays when the server, not the decoding, is the limit: one backend produces COPY data
//! on one core, so N backends can use N of the server's cores.

use std::sync::Arc;

use arrow::array::RecordBatch;
use sqlx::Row;
use sqlx::postgres::PgConnection;
use tokio::sync::{mpsc, oneshot};

use super::connect::connect;
use super::source::{Plan, Read, Started};
use crate::error::{Error, Result};

/// Smallest batch budget of one range's reader: the step's budget is shared between them.
const MIN_BATCH_BYTES: usize = 1024 * 1024;

/// Page ranges `[start, end)` covering `pages` pages in `parts` parts (fewer when the table
/// has fewer pages); the last is open-ended so rows in pages added since are read too.
pub fn page_ranges(pages: u64, parts: usize) -> Vec<(u64, Option<u64>)> {
    let parts = (parts.max(1) as u64).min(pages.max(1));
    (0..parts)
        .map(|i| {
            let start = pages * i / parts;
            let end = (i + 1 < parts).then(|| pages * (i + 1) / parts);
            (start, end)
        })
        .collect()
}

/// The `WHERE` condition of a page range.
pub fn range_condition((start, end): (u64, Option<u64>)) -> String {
    match end {
        Some(end) => format!("ctid >= '({start},0)'::tid AND ctid < '({end},0)'::tid"),
        None => format!("ctid >= '({start},0)'::tid"),
    }
}

/// Runs a parallel read on `conn`, whose transaction `Read::prepare` began.
pub async fn run(
    read: Arc<Read>,
    mut conn: PgConnection,
    plan: Plan,
    started: Started,
    batches: mpsc::Sender<Result<RecordBatch>>,
) {
    let (snapshot, pages) = match export(&read, &mut conn).await {
        Ok(exported) => exported,
        Err(e) => {
            let _ = started.send(Err(e));
            return;
        }
    };
    let ranges = page_ranges(pages, read.parallelism);
    let batch_bytes = (read.batch_bytes / ranges.len()).max(MIN_BATCH_BYTES);
    let plan = Arc::new(plan);
    let mut readers = Vec::with_capacity(ranges.len());
    let mut starts = Vec::with_capacity(ranges.len());
    for range in ranges {
        let (begun, begun_rx) = oneshot::channel();
        starts.push(begun_rx);
        let (read, plan, snapshot, batches) = (
            read.clone(),
            plan.clone(),
            snapshot.clone(),
            batches.clone(),
        );
        readers.push(tokio::spawn(async move {
            read_range(&read, &plan, &snapshot, range, batch_bytes, begun, &batches).await;
        }));
    }
    drop(batches);
    // Every reader has imported the snapshot and started its COPY before the stream starts.
    let mut schema = None;
    for begun in starts {
        match begun.await {
            Ok(Ok(s)) => schema = Some(s),
            Ok(Err(e)) => {
                let _ = started.send(Err(e));
                return;
            }
            Err(_) => {
                let _ = started.send(Err(Error::Config(format!(
                    "{}: a reader of the parallel read ended before it started",
                    read.at
                ))));
                return;
            }
        }
    }
    let Some(schema) = schema else { return };
    if started.send(Ok(schema)).is_err() {
        return;
    }
    for reader in readers {
        let _ = reader.await;
    }
    let _ = read.execute(&mut conn, "ROLLBACK".into()).await;
}

/// Exports the transaction's snapshot; also returns the table's pages as of now.
async fn export(read: &Read, conn: &mut PgConnection) -> Result<(String, u64)> {
    let row = sqlx::query(
        "SELECT pg_export_snapshot(), \
         (pg_relation_size($1::regclass) / current_setting('block_size')::bigint)::int8",
    )
    .bind(read.table.sql())
    .fetch_one(&mut *conn)
    .await
    .map_err(|e| read.explain(e))?;
    let snapshot: String = row.try_get(0).map_err(|e| read.explain(e))?;
    let pages: i64 = row.try_get(1).map_err(|e| read.explain(e))?;
    Ok((snapshot, u64::try_from(pages).unwrap_or(0)))
}

/// One range's reader: its own connection, in the exported snapshot.
async fn read_range(
    read: &Read,
    plan: &Plan,
    snapshot: &str,
    range: (u64, Option<u64>),
    batch_bytes: usize,
    begun: Started,
    batches: &mpsc::Sender<Result<RecordBatch>>,
) {
    let mut conn = match connect(&read.settings).await {
        Ok(conn) => conn,
        Err(e) => {
            let _ = begun.send(Err(e));
            return;
        }
    };
    let mut decoder = match plan.decoder(batch_bytes, read.at.clone()) {
        Ok(decoder) => decoder,
        Err(e) => {
            let _ = begun.send(Err(e));
            return;
        }
    };
    for sql in [
        "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY".to_string(),
        format!(
            "SET TRANSACTION SNAPSHOT '{}'",
            snapshot.replace('\'', "''")
        ),
    ] {
        if let Err(e) = read.execute(&mut conn, sql).await {
            let _ = begun.send(Err(e));
            return;
        }
    }
    let chunks = match conn
        .copy_out_raw(&plan.sql(Some(&range_condition(range))))
        .await
    {
        Ok(chunks) => chunks,
        Err(e) => {
            let _ = begun.send(Err(read.explain(e)));
            return;
        }
    };
    if begun.send(Ok(decoder.schema())).is_err() {
        return;
    }
    if read.stream(chunks, &mut decoder, batches).await {
        let _ = read.execute(&mut conn, "ROLLBACK".into()).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn page_ranges_cover_every_page_once_and_the_last_is_open() {
        assert_eq!(
            page_ranges(10, 3),
            vec![(0, Some(3)), (3, Some(6)), (6, None)]
        );
        assert_eq!(page_ranges(2, 4), vec![(0, Some(1)), (1, None)]);
        assert_eq!(page_ranges(0, 4), vec![(0, None)]);
        assert_eq!(page_ranges(7, 1), vec![(0, None)]);
        assert_eq!(
            range_condition((3, Some(6))),
            "ctid >= '(3,0)'::tid AND ctid < '(6,0)'::tid"
        );
        assert_eq!(range_condition((6, None)), "ctid >= '(6,0)'::tid");
    }
}
