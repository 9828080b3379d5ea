//! Helpers shared by the tests (a real database file in a temporary directory, read back
//! through SQLite itself so assertions see what was committed) and the write-mode tests.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use arrow::array::{ArrayRef, Decimal128Array, RecordBatch};
use arrow::datatypes::SchemaRef;
use futures::StreamExt;
use sqlx::sqlite::{SqliteConnectOptions, SqliteConnection as RawConnection};
use sqlx::{AssertSqlSafe, Connection, Row};
use synqx_api::ConnectionSpec;
use synqx_api::connection::SqliteConnection;
use synqx_api::pipeline::{Destination, SchemaEvolution, Source as SourceSpec, WriteMode};

use super::cell::Cell;
use super::{SqliteSink, SqliteSource};
use crate::connectors::ConnectionRef;
use crate::connectors::sql_test_support::{destination, read_all, write_batches};
pub(super) use crate::connectors::sql_test_support::{err, ok, people};
use crate::engine::{
    Counters, CursorFilter, ReadRequest, Rejects, SchemaStream, Sink, WriteOutcome, WriteRequest,
};
use crate::error::{Error, Result};
use crate::secrets::Secrets;

pub(super) const CONNECTION: &str = "local-db";

/// A database file below a directory that does not exist yet.
pub(super) struct Db {
    pub dir: tempfile::TempDir,
    spec: ConnectionSpec,
    secrets: Secrets,
    path: PathBuf,
}

impl Db {
    pub async fn new() -> Db {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let spec = ConnectionSpec {
            sqlite: Some(SqliteConnection {
                path: "nested/dir/warehouse.db".into(),
            }),
            ..Default::default()
        };
        let secrets = Secrets::default();
        let path: PathBuf = dir.path().join("nested/dir/warehouse.db");
        // Opening through the connector creates the directory and the file.
        let conn = ConnectionRef {
            name: CONNECTION,
            spec: &spec,
            base_dir: dir.path().into(),
            secrets: &secrets,
        };
        let sink = SqliteSink::new(&conn).unwrap_or_else(|e| panic!("{e}"));
        sink.db.pool().await.unwrap_or_else(|e| panic!("{e}"));
        assert!(path.is_file());
        Db {
            dir,
            spec,
            secrets,
            path,
        }
    }

    /// A new connection: one kept open could prepare statements against the schema it saw
    /// before the connector changed it.
    async fn fresh(&self) -> RawConnection {
        let options = SqliteConnectOptions::new().filename(&self.path);
        RawConnection::connect_with(&options)
            .await
            .unwrap_or_else(|e| panic!("{e}"))
    }

    fn conn(&self) -> ConnectionRef<'_> {
        ConnectionRef {
            name: CONNECTION,
            spec: &self.spec,
            base_dir: self.dir.path().into(),
            secrets: &self.secrets,
        }
    }

    pub fn source(&self) -> SqliteSource {
        SqliteSource::new(&self.conn()).unwrap_or_else(|e| panic!("{e}"))
    }

    pub fn sink(&self) -> SqliteSink {
        SqliteSink::new(&self.conn()).unwrap_or_else(|e| panic!("{e}"))
    }

    pub async fn sql(&self, sql: &str) {
        let mut conn = self.fresh().await;
        sqlx::raw_sql(AssertSqlSafe(sql.to_string()))
            .execute(&mut conn)
            .await
            .unwrap_or_else(|e| panic!("{sql}: {e}"));
    }

    /// Every row of a query, its values in SQLite's literal form joined by `, `.
    pub async fn dump(&self, sql: &str) -> Vec<String> {
        let mut conn = self.fresh().await;
        let rows = sqlx::query(AssertSqlSafe(sql.to_string()))
            .fetch_all(&mut conn)
            .await
            .unwrap_or_else(|e| panic!("{sql}: {e}"));
        rows.iter()
            .map(|row| {
                (0..row.len())
                    .map(
                        |i| match Cell::read(row, i).unwrap_or_else(|e| panic!("{e}")) {
                            Cell::Null => "NULL".to_string(),
                            Cell::Int(v) => v.to_string(),
                            Cell::Real(v) => format!("{v:?}"),
                            Cell::Text(s) => format!("'{s}'"),
                            Cell::Blob(b) => format!(
                                "x'{}'",
                                b.iter().map(|x| format!("{x:02x}")).collect::<String>()
                            ),
                        },
                    )
                    .collect::<Vec<_>>()
                    .join(", ")
            })
            .collect()
    }

    pub async fn write(
        &self,
        dest: Destination,
        schema: SchemaRef,
        batches: Vec<Result<RecordBatch>>,
    ) -> Result<WriteOutcome> {
        write_batches(&self.sink(), dest, schema, batches, &Counters::default()).await
    }

    pub async fn read(
        &self,
        spec: SourceSpec,
        filter: Option<CursorFilter>,
        rejects: Rejects,
    ) -> Result<(SchemaRef, Vec<RecordBatch>)> {
        let request = ReadRequest {
            spec,
            filter,
            batch_bytes: 1 << 20,
            rejects,
        };
        read_all(&self.source(), &request).await
    }
}

pub(super) fn dest(
    fqn: &str,
    mode: WriteMode,
    key: &[&str],
    evolution: Option<SchemaEvolution>,
) -> Destination {
    destination(CONNECTION, fqn, mode, key, evolution)
}

pub(super) fn table_source(fqn: &str) -> SourceSpec {
    crate::connectors::sql_test_support::table_source(CONNECTION, fqn)
}

pub(super) fn decimals(values: Vec<Option<i128>>, p: u8, s: i8) -> ArrayRef {
    Arc::new(
        Decimal128Array::from(values)
            .with_precision_and_scale(p, s)
            .unwrap_or_else(|e| panic!("{e}")),
    )
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
            schema.clone(),
            vec![Ok(first), Ok(second)],
        )
        .await);
    assert_eq!(out, WriteOutcome { rows: 3, bytes });
    assert_eq!(
        db.dump("SELECT name, type, pk FROM pragma_table_info('people')")
            .await,
        ["'id', 'INTEGER', 0", "'name', 'TEXT', 0"]
    );
    let out = ok(db
        .write(
            dest("people", WriteMode::Append, &[], None),
            schema,
            vec![Ok(people(&[(4, Some("o'hara"))]))],
        )
        .await);
    assert_eq!(out.rows, 1);
    assert_eq!(
        db.dump("SELECT id, name FROM people ORDER BY id").await,
        ["1, 'ada'", "2, NULL", "3, 'grace'", "4, 'o'hara'"]
    );
    assert_eq!(db.dump("PRAGMA journal_mode").await, ["'wal'"]);
}

#[tokio::test]
async fn append_that_fails_midway_leaves_the_table_and_counters_as_they_were() {
    let db = Db::new().await;
    let schema = people(&[]).schema();
    ok(db
        .write(
            dest("people", WriteMode::Append, &[], None),
            schema.clone(),
            vec![Ok(people(&[(1, Some("a"))]))],
        )
        .await);
    let input = SchemaStream::new(
        schema,
        futures::stream::iter(vec![
            Ok(people(&[(2, Some("b")), (3, None)])),
            Err(Error::Config("upstream broke".into())),
        ]),
    );
    let counters = Counters::default();
    let request = WriteRequest {
        spec: dest("people", WriteMode::Append, &[], None),
        batch_bytes: 1024,
    };
    let message = err(db.sink().write(&request, input, &counters).await);
    assert_eq!(message, "upstream broke");
    assert_eq!(counters.snapshot().rows_written, 0);
    assert_eq!(counters.snapshot().bytes_written, 0);
    assert_eq!(db.dump("SELECT id, name FROM people").await, ["1, 'a'"]);
}

#[tokio::test]
async fn a_dropped_write_rolls_back_and_releases_the_database() {
    let db = Db::new().await;
    let schema = people(&[]).schema();
    ok(db
        .write(
            dest("people", WriteMode::Append, &[], None),
            schema.clone(),
            vec![Ok(people(&[(1, Some("a"))]))],
        )
        .await);
    let sink = db.sink();
    let stalled = SchemaStream::new(
        schema.clone(),
        futures::stream::iter(vec![Ok(people(&[(2, Some("b"))]))])
            .chain(futures::stream::pending()),
    );
    let request = WriteRequest {
        spec: dest("people", WriteMode::Append, &[], None),
        batch_bytes: 1024,
    };
    let counters = Counters::default();
    let cancelled = tokio::time::timeout(
        Duration::from_millis(300),
        sink.write(&request, stalled, &counters),
    )
    .await;
    assert!(
        cancelled.is_err(),
        "the write should still be waiting for rows"
    );
    let next = db.write(
        dest("people", WriteMode::Append, &[], None),
        schema,
        vec![Ok(people(&[(3, Some("c"))]))],
    );
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
    let out = ok(db
        .write(
            dest("people", WriteMode::Overwrite, &["id"], None),
            batch.schema(),
            vec![Ok(batch)],
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
    let db = Db::new().await;
    let schema = people(&[]).schema();
    ok(db
        .write(
            dest("people", WriteMode::Append, &[], None),
            schema.clone(),
            vec![Ok(people(&[(1, Some("kept"))]))],
        )
        .await);
    let batches = vec![
        Ok(people(&[(2, Some("lost"))])),
        Err(Error::Transform("derive failed".into())),
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
    ok(db
        .write(
            upsert(),
            schema.clone(),
            vec![Ok(people(&[(1, Some("a")), (2, Some("b")), (3, None)]))],
        )
        .await);
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
    ok(db
        .write(
            dest("plain", WriteMode::Upsert, &["id"], None),
            batch.schema(),
            vec![Ok(batch.clone())],
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
    let message = err(db
        .write(
            dest("dup", WriteMode::Upsert, &["id"], None),
            batch.schema(),
            vec![Ok(batch)],
        )
        .await);
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
