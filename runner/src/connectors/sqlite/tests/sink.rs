//! The write modes: append, overwrite and upsert, and what a failed or dropped write leaves.

use std::time::Duration;

use futures::StreamExt;
use synqx_api::pipeline::{Destination, WriteMode};

use super::support::{Db, dest, err, ok, people};
use crate::connectors::sql::tests::{write_batch, write_people};
use crate::connectors::tests::{drop_once_staged, upstream_error};
use crate::engine::{SchemaStream, WriteOutcome, WriteRequest};
use crate::error::Error;

/// An append to table `people`.
fn append_people() -> Destination {
    dest("people", WriteMode::Append, &[], None)
}

/// The request of an append to `people`, as the engine makes it.
fn append_request() -> WriteRequest {
    WriteRequest {
        batch_bytes: 1024,
        ..WriteRequest::to(append_people())
    }
}

/// A database whose table `people` holds one row, `(1, name)`: what a failed load must leave.
async fn one_person(name: &str) -> Db {
    let db = Db::new().await;
    ok(write_people(&db, append_people(), &[(1, Some(name))]).await);
    db
}

#[tokio::test]
async fn append_creates_the_table_then_adds_rows() {
    let db = Db::new().await;
    let first = people(&[(1, Some("ada")), (2, None)]);
    let second = people(&[(3, Some("grace"))]);
    let bytes = (first.get_array_memory_size() + second.get_array_memory_size()) as u64;
    let schema = first.schema();
    let out = ok(db
        .write(
            dest("main.people", WriteMode::Append, &[], None),
            schema,
            vec![Ok(first), Ok(second)],
        )
        .await);
    assert_eq!(out, WriteOutcome { rows: 3, bytes });
    assert_eq!(
        db.dump("SELECT name, type, pk FROM pragma_table_info('people')")
            .await,
        ["'id', 'INTEGER', 0", "'name', 'TEXT', 0"]
    );
    let out = ok(write_people(&db, append_people(), &[(4, Some("o'hara"))]).await);
    assert_eq!(out.rows, 1);
    assert_eq!(
        db.dump("SELECT id, name FROM people ORDER BY id").await,
        ["1, 'ada'", "2, NULL", "3, 'grace'", "4, 'o'hara'"]
    );
    assert_eq!(db.dump("PRAGMA journal_mode").await, ["'wal'"]);
}

#[tokio::test]
async fn append_that_fails_midway_leaves_the_table_and_counters_as_they_were() {
    let db = one_person("a").await;
    let schema = people(&[]).schema();
    let input = SchemaStream::new(
        schema,
        futures::stream::iter(vec![
            Ok(people(&[(2, Some("b")), (3, None)])),
            Err(upstream_error()),
        ]),
    );
    let request = append_request();
    let message = err(db.sink.write(&request, input).await);
    assert_eq!(message, "upstream broke");
    assert_eq!(request.counters.snapshot().rows_written, 0);
    assert_eq!(request.counters.snapshot().bytes_written, 0);
    assert_eq!(db.dump("SELECT id, name FROM people").await, ["1, 'a'"]);
}

#[tokio::test]
async fn a_dropped_write_rolls_back_and_releases_the_database() {
    let db = one_person("a").await;
    let schema = people(&[]).schema();
    let sink = db.own_sink();
    let stalled = SchemaStream::new(
        schema,
        futures::stream::iter(vec![Ok(people(&[(2, Some("b"))]))])
            .chain(futures::stream::pending()),
    );
    let request = append_request();
    // Staged: the first batch is inserted in the open transaction, then the input stalls.
    drop_once_staged(sink.write(&request, stalled), || {
        request.counters.snapshot().rows_written == 1
    })
    .await;
    let next = write_people(&db, append_people(), &[(3, Some("c"))]);
    ok(tokio::time::timeout(Duration::from_secs(30), next)
        .await
        .unwrap_or_else(|_| panic!("the write lock was not released")));
    assert_eq!(
        db.dump("SELECT id FROM people ORDER BY id").await,
        ["1", "3"]
    );
}

#[tokio::test]
async fn overwrite_replaces_the_table_and_keeps_its_indexes_and_views() {
    let db = Db::new().await;
    db.sql("CREATE TABLE people (id INTEGER, name TEXT, legacy TEXT); INSERT INTO people VALUES (1, 'old', 'x'), (2, 'old', 'y');
            CREATE INDEX people_name ON people (name); CREATE INDEX people_legacy ON people (legacy);
            CREATE VIEW named AS SELECT name FROM people")
        .await;
    let batch = people(&[(7, Some("new")), (8, Some("newer"))]);
    let out = ok(write_batch(
        &db,
        dest("people", WriteMode::Overwrite, &["id"], None),
        batch,
    )
    .await);
    assert_eq!(out.rows, 2);
    assert_eq!(
        db.dump("SELECT * FROM people ORDER BY id").await,
        ["7, 'new'", "8, 'newer'"]
    );
    assert_eq!(
        db.dump("SELECT name, pk FROM pragma_table_info('people')")
            .await,
        ["'id', 1", "'name', 0"]
    );
    // The index on a column that is gone is not re-created; the view reads the new table.
    assert_eq!(
        db.dump("SELECT name FROM sqlite_master WHERE type = 'index' AND tbl_name = 'people'")
            .await,
        ["'people_name'"]
    );
    assert_eq!(
        db.dump("SELECT name FROM named ORDER BY name").await,
        ["'new'", "'newer'"]
    );
    assert_eq!(
        db.dump("SELECT count(*) FROM sqlite_master WHERE name LIKE '%synqx_new%'")
            .await,
        ["0"]
    );
}

#[tokio::test]
async fn overwrite_that_fails_midway_leaves_the_old_table_intact() {
    let db = one_person("kept").await;
    let schema = people(&[]).schema();
    let batches = vec![
        Ok(people(&[(2, Some("lost"))])),
        Err(Error::transform("derive failed")),
        Ok(people(&[(3, None)])),
    ];
    let message = err(db
        .write(
            dest("people", WriteMode::Overwrite, &[], None),
            schema.clone(),
            batches,
        )
        .await);
    assert_eq!(message, "derive failed");
    assert_eq!(db.dump("SELECT id, name FROM people").await, ["1, 'kept'"]);
    assert_eq!(
        db.dump("SELECT name FROM sqlite_master").await,
        ["'people'"]
    );
    // A failure inside the database (a key shared by two rows) also leaves it intact.
    let dup = people(&[(5, Some("a")), (5, Some("b"))]);
    let message = err(db
        .write(
            dest("people", WriteMode::Overwrite, &["id"], None),
            schema,
            vec![Ok(dup)],
        )
        .await);
    assert!(
        message.starts_with("Connection \"local-db\", table \"people\": writing rows 1 to 2:"),
        "{message}"
    );
    assert!(message.contains("UNIQUE constraint failed"), "{message}");
    assert_eq!(db.dump("SELECT id, name FROM people").await, ["1, 'kept'"]);
    assert_eq!(
        db.dump("SELECT name FROM sqlite_master").await,
        ["'people'"]
    );
}

#[tokio::test]
async fn upsert_merges_by_key_and_running_it_twice_changes_nothing() {
    let db = Db::new().await;
    let schema = people(&[]).schema();
    let upsert = || dest("people", WriteMode::Upsert, &["id"], None);
    ok(write_people(&db, upsert(), &[(1, Some("a")), (2, Some("b")), (3, None)]).await);
    let change = || {
        vec![
            Ok(people(&[(2, Some("B")), (4, Some("d"))])),
            Ok(people(&[(3, Some("c")), (4, Some("D"))])),
        ]
    };
    let out = ok(db.write(upsert(), schema.clone(), change()).await);
    assert_eq!(out.rows, 4);
    let expected = ["1, 'a'", "2, 'B'", "3, 'c'", "4, 'D'"];
    assert_eq!(
        db.dump("SELECT id, name FROM people ORDER BY id").await,
        expected
    );
    ok(db.write(upsert(), schema.clone(), change()).await);
    assert_eq!(
        db.dump("SELECT rowid, id, name FROM people ORDER BY rowid")
            .await,
        ["1, 1, 'a'", "2, 2, 'B'", "3, 3, 'c'", "4, 4, 'D'"]
    );
    let message = err(db
        .write(
            dest("people", WriteMode::Upsert, &[], None),
            schema,
            change(),
        )
        .await);
    assert_eq!(
        message,
        "Connection \"local-db\", table \"people\": mode upsert needs primaryKey"
    );
}

#[tokio::test]
async fn upsert_adds_a_unique_index_or_says_which_duplicates_prevent_it() {
    let db = Db::new().await;
    db.sql(
        "CREATE TABLE plain (id INTEGER, name TEXT); INSERT INTO plain VALUES (1, 'a'), (2, 'b');
            CREATE TABLE dup (id INTEGER, name TEXT); INSERT INTO dup VALUES (1, 'a'), (1, 'b');",
    )
    .await;
    let batch = people(&[(2, Some("B")), (3, Some("c"))]);
    ok(write_batch(
        &db,
        dest("plain", WriteMode::Upsert, &["id"], None),
        batch.clone(),
    )
    .await);
    assert_eq!(
        db.dump("SELECT id, name FROM plain ORDER BY id").await,
        ["1, 'a'", "2, 'B'", "3, 'c'"]
    );
    assert_eq!(
        db.dump("SELECT name FROM pragma_index_list('plain') WHERE \"unique\" = 1")
            .await,
        ["'plain__synqx_key_id'"]
    );
    let message = err(write_batch(&db, dest("dup", WriteMode::Upsert, &["id"], None), batch).await);
    assert!(message.starts_with("Connection \"local-db\", table \"dup\": upsert needs a unique key on (\"id\"), and creating the unique index \"dup__synqx_key_id\" failed:"), "{message}");
    assert!(
        message.contains("remove the rows that share a key or choose another primaryKey"),
        "{message}"
    );
    assert_eq!(
        db.dump("SELECT id, name FROM dup ORDER BY name").await,
        ["1, 'a'", "1, 'b'"]
    );
}
