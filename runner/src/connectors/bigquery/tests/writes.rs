//! Append and overwrite, the emulator's refusal of the upsert's MERGE, schema evolution, and
//! overwrites that fail or are cancelled.

use synqx_api::pipeline::{SchemaEvolution, WriteMode};

use crate::connectors::tests::warehouses::{
    breaking_input, people_rows, people_with_score, person as row,
};
use crate::connectors::tests::{destination, err, ok, people};
use crate::engine::WriteRequest;

use super::support::*;

/// The rows a test starts from: ada (1) and bob (2), appended to `people`.
async fn append_ada_and_bob(lake: &Lakehouse) {
    ok(lake
        .write(
            "people",
            WriteMode::Append,
            vec![people(&[(1, Some("ada")), (2, Some("bob"))])],
        )
        .await);
}

#[tokio::test]
async fn append_and_overwrite_write_what_they_promise() {
    let lake = Lakehouse::new().await;
    append_ada_and_bob(&lake).await;
    ok(lake
        .write(
            "people",
            WriteMode::Append,
            vec![people(&[(3, None)]), people(&[(4, Some("dan"))])],
        )
        .await);
    assert_eq!(
        lake.people("people").await,
        vec![row(1, "ada"), row(2, "bob"), (3, None), row(4, "dan")]
    );
    assert_eq!(
        ok(lake
            .write(
                "people",
                WriteMode::Overwrite,
                vec![people(&[(9, Some("zed"))])]
            )
            .await),
        1
    );
    assert_eq!(lake.people("people").await, vec![row(9, "zed")]);
}

/// bigquery-emulator v0.6.6 cannot run the upsert's `MERGE`: its rewrite puts the `USING`
/// subquery where SQLite wants a table ("near \"SELECT\": syntax error"). This holds that
/// answer, so the day an emulator runs it this test fails and says so (then prove upsert
/// here); until then the statement and its request are unit-tested (`sql::tests`,
/// `sink::tests`).
#[tokio::test]
async fn the_emulator_refuses_the_upserts_merge_and_the_rows_stay() {
    let lake = Lakehouse::new().await;
    let old = vec![row(1, "ada"), row(2, "bob")];
    append_ada_and_bob(&lake).await;
    let upsert = lake
        .write_keyed(
            "people",
            WriteMode::Upsert,
            &["id"],
            vec![people(&[(2, Some("bea")), (3, Some("cy"))])],
        )
        .await;
    let e = match upsert {
        Ok(rows) => panic!(
            "bigquery-emulator ran the upsert's MERGE ({rows} rows; now {:?}): prove upsert against it and say so in docs/connectors.md",
            lake.people("people").await
        ),
        Err(e) => e.to_string(),
    };
    // The statement it fails on is its own rewrite of the MERGE (several kilobytes): its
    // start and SQLite's reason are what this checks.
    let e = generic(&e, lake.dataset());
    assert!(
        e.starts_with(
            "Connection \"lakehouse\": `MERGE INTO `<dataset>`.`people` AS t USING (SELECT `id`, `name` FROM `<dataset>`.`<staging>` WHERE …`: BigQuery error 400 jobInternalError: failed to exec merge statement CREATE TABLE zetasqlite_merged_table AS SELECT DISTINCT * FROM (SELECT * FROM SELECT `id#3`,`name#4` FROM ( SELECT"
        ),
        "{e}"
    );
    assert!(e.ends_with(": near \"SELECT\": syntax error"), "{e}");
    assert_eq!(lake.people("people").await, old);
}

#[tokio::test]
async fn new_columns_fail_or_are_left_out_as_schema_evolution_says() {
    let lake = Lakehouse::new().await;
    ok(lake
        .write(
            "evolving",
            WriteMode::Append,
            vec![people(&[(1, Some("ada"))])],
        )
        .await);
    let batch = people_with_score(2, "bob", 1.5);
    let wider = batch.schema();
    let harness = lake.harness();
    let write = |evolution| {
        let spec = destination(
            CONNECTION,
            "evolving",
            WriteMode::Append,
            &[],
            Some(evolution),
        );
        harness.write(spec, wider.clone(), vec![Ok(batch.clone())])
    };
    assert!(
        err(write(SchemaEvolution::Fail).await)
            .contains("the table has no column \"score\" of the source (schemaEvolution: fail")
    );
    assert_eq!(ok(write(SchemaEvolution::Ignore).await).rows, 1);
    let (schema, batches) = ok(lake.read("evolving", None).await);
    assert!(schema.field_with_name("score").is_err(), "{schema:?}");
    assert_eq!(people_rows(&batches), vec![row(1, "ada"), row(2, "bob")]);
}

#[tokio::test]
async fn a_failed_or_cancelled_overwrite_leaves_the_old_rows() {
    let lake = Lakehouse::new().await;
    ok(lake
        .write("kept", WriteMode::Append, vec![people(&[(1, Some("ada"))])])
        .await);
    let input = breaking_input(people(&[(7, Some("new"))]));
    let request = WriteRequest::to(destination(
        CONNECTION,
        "kept",
        WriteMode::Overwrite,
        &[],
        None,
    ));
    assert_eq!(
        err(lake.harness().sink.write(&request, input).await),
        "the source broke"
    );
    assert_eq!(request.counters.snapshot().rows_written, 0);
    assert_eq!(lake.people("kept").await, vec![row(1, "ada")]);

    // Cancelled while loading: the input stalls after one batch and the write is dropped, as
    // the engine drops a cancelled step.
    lake.harness()
        .cancel_stalled_write(&request, people(&[(8, Some("half"))]))
        .await;
    assert_eq!(lake.people("kept").await, vec![row(1, "ada")]);
}
