//! The write modes against MariaDB: what each commits, and that a failing load leaves the table
//! exactly as it was.

use std::sync::Arc;

use arrow::array::{ArrayRef, Float64Array, Int64Array, RecordBatch};
use arrow::datatypes::{DataType, Field, Schema};
use synqx_api::pipeline::{SchemaEvolution, WriteMode};

use super::support::{Db, dest, err, ok, people};
use crate::connectors::sql::tests::write_people;
use crate::engine::WriteOutcome;
use crate::error::Error;

const ALL: &str = "SELECT id, name FROM people ORDER BY id";

fn failure() -> crate::error::Result<RecordBatch> {
    Err(Error::Config("the source failed mid-stream".into()))
}

/// Tables of the database SynqX left behind (work tables of overwrite included).
async fn tables(db: &Db) -> Vec<String> {
    db.catalog("TABLE_NAME", "TABLES", "ORDER BY TABLE_NAME")
        .await
}

#[tokio::test]
async fn append_creates_adds_and_a_failed_append_adds_nothing() {
    let db = Db::new().await;
    let first = people(&[(1, Some("ada")), (2, None)]);
    let second = people(&[(3, Some("o'hara \\ 😀"))]);
    let bytes = (first.get_array_memory_size() + second.get_array_memory_size()) as u64;
    let schema = first.schema();
    let out = ok(db
        .write(
            dest("people", WriteMode::Append, &[], None),
            schema.clone(),
            vec![Ok(first), Ok(second)],
        )
        .await);
    assert_eq!(out, WriteOutcome { rows: 3, bytes });
    assert_eq!(
        db.catalog(
            "COLUMN_NAME, COLUMN_TYPE",
            "COLUMNS",
            "AND TABLE_NAME = 'people' ORDER BY ORDINAL_POSITION"
        )
        .await,
        ["id, bigint(20)", "name, longtext"]
    );
    // `database.table` names the same table.
    ok(write_people(
        &db,
        dest(&format!("{}.people", db.name), WriteMode::Append, &[], None),
        &[(4, Some(""))],
    )
    .await);
    let before = db.dump(ALL).await;
    assert_eq!(before, ["1, ada", "2, NULL", "3, o'hara \\ 😀", "4, "]);

    // A stream failing after a batch was inserted.
    let e = err(db
        .write(
            dest("people", WriteMode::Append, &[], None),
            schema.clone(),
            vec![Ok(people(&[(5, Some("eve"))])), failure()],
        )
        .await);
    assert!(e.contains("the source failed mid-stream"), "{e}");
    assert_eq!(db.dump(ALL).await, before);

    // A value MySQL cannot store, in the second batch.
    let schema2 = Arc::new(Schema::new(vec![
        Field::new("id", DataType::Int64, false),
        Field::new("score", DataType::Float64, true),
    ]));
    let batch = |ids: Vec<i64>, scores: Vec<f64>| {
        let columns: Vec<ArrayRef> = vec![
            Arc::new(Int64Array::from(ids)),
            Arc::new(Float64Array::from(scores)),
        ];
        RecordBatch::try_new(schema2.clone(), columns).unwrap_or_else(|e| panic!("{e}"))
    };
    let e = err(db
        .write(
            dest(
                "people",
                WriteMode::Append,
                &[],
                Some(SchemaEvolution::AddColumns),
            ),
            schema2.clone(),
            vec![
                Ok(batch(vec![6], vec![1.5])),
                Ok(batch(vec![7, 8], vec![2.0, f64::NAN])),
            ],
        )
        .await);
    assert_eq!(
        e,
        "Connection \"shop-db\", table \"people\", row 3 of the load, column \"score\": the value cannot be stored: MySQL floating-point columns hold finite numbers only"
    );
    // The added column stays (NULL everywhere); no row was added.
    assert_eq!(
        db.dump("SELECT id, name, score FROM people ORDER BY id")
            .await,
        [
            "1, ada, NULL",
            "2, NULL, NULL",
            "3, o'hara \\ 😀, NULL",
            "4, , NULL"
        ]
    );

    // A failed append to a missing table leaves no table.
    let e = err(db
        .write(
            dest("fresh", WriteMode::Append, &[], None),
            schema,
            vec![Ok(people(&[(1, Some("x"))])), failure()],
        )
        .await);
    assert!(e.contains("mid-stream"), "{e}");
    assert_eq!(tables(&db).await, ["people"]);
}

#[tokio::test]
async fn a_value_the_server_rejects_names_the_row_of_the_load() {
    let db = Db::new().await;
    db.sql("CREATE TABLE people (id BIGINT PRIMARY KEY, name VARCHAR(3))")
        .await;
    db.sql("INSERT INTO people VALUES (9, 'old')").await;
    let e = err(db
        .write(
            dest("people", WriteMode::Append, &[], None),
            people(&[]).schema(),
            vec![
                Ok(people(&[(1, Some("abc"))])),
                Ok(people(&[(2, Some("ok")), (3, Some("toolong"))])),
            ],
        )
        .await);
    assert!(
        e.starts_with("Connection \"shop-db\", table \"people\", row 3 of the load: ")
            && e.contains("Data too long for column 'name'"),
        "{e}"
    );
    assert_eq!(db.dump(ALL).await, ["9, old"]);
}

#[tokio::test]
async fn overwrite_swaps_atomically_and_a_failed_overwrite_keeps_the_table() {
    let db = Db::new().await;
    db.sql("CREATE TABLE people (id BIGINT NOT NULL, name VARCHAR(50), UNIQUE KEY by_id (id), KEY by_name (name))").await;
    db.sql("INSERT INTO people VALUES (1, 'old'), (2, 'older')")
        .await;
    let schema = people(&[]).schema();
    let out = ok(db
        .write(
            dest("people", WriteMode::Overwrite, &[], None),
            schema.clone(),
            vec![Ok(people(&[(7, Some("new"))])), Ok(people(&[(8, None)]))],
        )
        .await);
    assert_eq!(out.rows, 2);
    assert_eq!(db.dump(ALL).await, ["7, new", "8, NULL"]);
    // The table's keys and column types are kept (CREATE TABLE … LIKE).
    assert_eq!(
        db.catalog(
            "DISTINCT INDEX_NAME",
            "STATISTICS",
            "AND TABLE_NAME = 'people' ORDER BY INDEX_NAME"
        )
        .await,
        ["by_id", "by_name"]
    );
    assert_eq!(tables(&db).await, ["people"]);

    for batches in [
        vec![Ok(people(&[(9, Some("x"))])), failure()],
        vec![
            Ok(people(&[(9, Some("x"))])),
            Ok(people(&[(9, Some("dup"))])),
        ],
    ] {
        let e = err(db
            .write(
                dest("people", WriteMode::Overwrite, &[], None),
                schema.clone(),
                batches,
            )
            .await);
        assert!(
            e.contains("mid-stream") || e.contains("Duplicate entry"),
            "{e}"
        );
        assert_eq!(db.dump(ALL).await, ["7, new", "8, NULL"]);
        assert_eq!(tables(&db).await, ["people"]);
    }

    // Overwriting a missing table creates it.
    ok(write_people(
        &db,
        dest("created", WriteMode::Overwrite, &["id"], None),
        &[(1, Some("a"))],
    )
    .await);
    assert_eq!(db.dump("SELECT * FROM created").await, ["1, a"]);
    assert_eq!(tables(&db).await, ["created", "people"]);
}

#[tokio::test]
async fn upsert_merges_by_key_last_duplicate_wins_and_reruns_are_idempotent() {
    let db = Db::new().await;
    let schema = people(&[]).schema();
    let load = || {
        vec![
            Ok(people(&[(1, Some("ada")), (2, Some("bob"))])),
            Ok(people(&[(2, Some("bobby")), (3, None)])),
        ]
    };
    // Twice: a rerun of the same load must change nothing.
    let upsert_load = || {
        let spec = dest("people", WriteMode::Upsert, &["id"], None);
        db.write(spec, schema.clone(), load())
    };
    ok(upsert_load().await);
    let expected = ["1, ada", "2, bobby", "3, NULL"];
    assert_eq!(db.dump(ALL).await, expected);
    assert_eq!(
        db.catalog(
            "COLUMN_NAME",
            "KEY_COLUMN_USAGE",
            "AND TABLE_NAME = 'people' AND CONSTRAINT_NAME = 'PRIMARY'"
        )
        .await,
        ["id"]
    );
    ok(upsert_load().await);
    assert_eq!(db.dump(ALL).await, expected);
    ok(write_people(
        &db,
        dest("people", WriteMode::Upsert, &["id"], None),
        &[(3, Some("cy")), (4, Some("dee"))],
    )
    .await);
    assert_eq!(
        db.dump(ALL).await,
        ["1, ada", "2, bobby", "3, cy", "4, dee"]
    );

    // A failed upsert changes nothing.
    let e = err(db
        .write(
            dest("people", WriteMode::Upsert, &["id"], None),
            schema.clone(),
            vec![Ok(people(&[(1, Some("changed"))])), failure()],
        )
        .await);
    assert!(e.contains("mid-stream"), "{e}");
    assert_eq!(
        db.dump(ALL).await,
        ["1, ada", "2, bobby", "3, cy", "4, dee"]
    );

    db.sql("CREATE TABLE nokey (id BIGINT, name TEXT)").await;
    let e = err(write_people(
        &db,
        dest("nokey", WriteMode::Upsert, &["id"], None),
        &[(1, Some("a"))],
    )
    .await);
    assert_eq!(
        e,
        "Connection \"shop-db\", table \"nokey\": upsert needs a unique key on (\"id\"), and the table has none; add one (ALTER TABLE `".to_string()
            + &db.name
            + "`.`nokey` ADD UNIQUE (`id`)) or choose another primaryKey"
    );
    let e = err(db
        .write(dest("people", WriteMode::Upsert, &[], None), schema, vec![])
        .await);
    assert_eq!(
        e,
        "Connection \"shop-db\", table \"people\": mode upsert needs primaryKey"
    );
}

#[tokio::test]
async fn schema_evolution_adds_fails_or_ignores_new_columns() {
    let db = Db::new().await;
    db.sql("CREATE TABLE people (id BIGINT PRIMARY KEY)").await;
    db.sql("INSERT INTO people VALUES (1)").await;
    let evolve = async |table: &str,
                        mode: WriteMode,
                        key: &[&str],
                        evolution: SchemaEvolution,
                        rows: &[(i64, Option<&str>)]| {
        write_people(&db, dest(table, mode, key, Some(evolution)), rows).await
    };
    let e = err(evolve(
        "people",
        WriteMode::Append,
        &[],
        SchemaEvolution::Fail,
        &[(2, Some("b"))],
    )
    .await);
    assert_eq!(
        e,
        "Connection \"shop-db\", table \"people\": the table has no column \"name\" of the source (schemaEvolution: fail; set addColumns to add them or ignore to leave them out)"
    );
    let ignore = SchemaEvolution::Ignore;
    ok(evolve("people", WriteMode::Append, &[], ignore, &[(2, Some("b"))]).await);
    assert_eq!(
        db.dump("SELECT * FROM people ORDER BY id").await,
        ["1", "2"]
    );
    let add = SchemaEvolution::AddColumns;
    let rows = [(2, Some("b")), (3, Some("c"))];
    ok(evolve("people", WriteMode::Upsert, &["id"], add, &rows).await);
    assert_eq!(db.dump(ALL).await, ["1, NULL", "2, b", "3, c"]);
    // Overwrite adds them to the table it loads.
    db.sql("CREATE TABLE narrow (id BIGINT)").await;
    ok(evolve("narrow", WriteMode::Overwrite, &[], add, &[(5, Some("e"))]).await);
    assert_eq!(db.dump("SELECT id, name FROM narrow").await, ["5, e"]);

    let list = DataType::List(Arc::new(Field::new("item", DataType::Int32, true)));
    let bad = Arc::new(Schema::new(vec![
        Field::new("name", DataType::Utf8, true),
        Field::new("tags", list, true),
    ]));
    let e = err(db
        .write(dest("people", WriteMode::Append, &[], None), bad, vec![])
        .await);
    assert!(
        e.starts_with(
            "Connection \"shop-db\", table \"people\": column \"tags\" has the type List("
        ),
        "{e}"
    );
}
