//! Each write mode, schema evolution, and overwrites that fail or are cancelled.

use std::sync::Arc;

use synqx_api::pipeline::{SchemaEvolution, WriteMode};

use crate::connectors::tests::warehouses::{breaking_input, people_with_score, person as row};
use crate::connectors::tests::{destination, err, ok, people};
use crate::engine::Counters;

use super::support::*;

#[tokio::test]
async fn append_overwrite_and_upsert_write_what_they_promise() {
    let w = Warehouse::new().await;
    ok(w.write_keyed(
        "people",
        WriteMode::Append,
        &["id"],
        vec![people(&[(1, Some("ada")), (2, Some("bob"))])],
    )
    .await);
    ok(w.write_keyed(
        "people",
        WriteMode::Append,
        &["id"],
        vec![people(&[(3, None)])],
    )
    .await);
    assert_eq!(
        w.people("people").await,
        vec![row(1, "ada"), row(2, "bob"), (3, None)]
    );

    // Upsert: the last staged row of a key wins, new keys are inserted.
    let batches = vec![
        people(&[(2, Some("bea")), (4, Some("dan"))]),
        people(&[(2, Some("bee"))]),
    ];
    assert_eq!(
        ok(w.write_keyed("people", WriteMode::Upsert, &["id"], batches)
            .await),
        3
    );
    assert_eq!(
        w.people("people").await,
        vec![row(1, "ada"), row(2, "bee"), (3, None), row(4, "dan")]
    );

    // fakesnow cannot parse `ALTER TABLE … SWAP WITH`: the overwrite replaces the rows in one
    // transaction instead, and the step's note says why.
    let counters = Arc::new(Counters::default());
    let batch = people(&[(9, Some("zed"))]);
    let overwritten = w
        .harness()
        .write_counted(
            destination(CONNECTION, "people", WriteMode::Overwrite, &[], None),
            batch.schema(),
            vec![Ok(batch)],
            &counters,
        )
        .await;
    assert_eq!(ok(overwritten).rows, 1);
    assert_eq!(w.people("people").await, vec![row(9, "zed")]);
    let note = counters.notes().unwrap_or_default();
    assert!(
        note.starts_with("Connection \"warehouse\", table \"")
            && note.ends_with(
            ".PUBLIC.PEOPLE\": the server refused `ALTER TABLE … SWAP WITH` as a syntax error (001003 (42000): Parser Error: syntax error at or near \"SWAP\"), so the overwrite replaced the rows with DELETE and INSERT in one transaction"
        ),
        "{note}"
    );
}

#[tokio::test]
async fn new_columns_follow_schema_evolution() {
    let w = Warehouse::new().await;
    ok(w.write_keyed(
        "evolving",
        WriteMode::Append,
        &[],
        vec![people(&[(1, Some("ada"))])],
    )
    .await);
    let batch = people_with_score(2, "bob", 1.5);
    let wider = batch.schema();
    let fail = w
        .harness()
        .write(
            destination(
                CONNECTION,
                "evolving",
                WriteMode::Append,
                &[],
                Some(SchemaEvolution::Fail),
            ),
            wider.clone(),
            vec![Ok(batch.clone())],
        )
        .await;
    assert!(
        err(fail)
            .contains("the table has no column \"score\" of the source (schemaEvolution: fail")
    );
    ok(
        w.write_keyed("evolving", WriteMode::Append, &[], vec![batch])
            .await,
    );
    let (schema, batches) = ok(w.read("evolving", None).await);
    assert!(schema.field_with_name("score").is_ok(), "{schema:?}");
    assert_eq!(batches.iter().map(|b| b.num_rows()).sum::<usize>(), 2);
}

#[tokio::test]
async fn a_failed_or_cancelled_overwrite_leaves_the_old_rows() {
    let w = Warehouse::new().await;
    ok(w.write_keyed(
        "kept",
        WriteMode::Append,
        &[],
        vec![people(&[(1, Some("ada")), (2, Some("bob"))])],
    )
    .await);
    let request = crate::engine::WriteRequest::to(destination(
        CONNECTION,
        "kept",
        WriteMode::Overwrite,
        &[],
        None,
    ));
    let failed = w
        .harness()
        .sink
        .write(&request, breaking_input(people(&[(7, Some("new"))])))
        .await;
    assert_eq!(err(failed), "the source broke");
    assert_eq!(
        request.counters.snapshot().rows_written,
        0,
        "uncommitted rows are taken back"
    );
    assert_eq!(w.people("kept").await, vec![row(1, "ada"), row(2, "bob")]);

    // Cancelled while loading: the input stalls after one batch and the write is dropped, as
    // the engine drops a cancelled step.
    w.harness()
        .cancel_stalled_write(&request, people(&[(8, Some("half"))]))
        .await;
    assert_eq!(w.people("kept").await, vec![row(1, "ada"), row(2, "bob")]);
}
