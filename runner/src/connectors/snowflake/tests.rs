//! The connector against fakesnow (`scripts/emulators up` starts it and prints
//! `SYNQX_TEST_FAKESNOW`): every mapped type through a load and a read, each write mode,
//! incremental reads over three runs, a missing table, failed and cancelled overwrites, and
//! `synqx check`. Each test works in a database of its own. A missing emulator fails the test.

use std::sync::Arc;

use arrow::array::{Array, AsArray, BinaryArray, Int32Array, RecordBatch};
use arrow::datatypes::{DataType, Field, Int64Type, SchemaRef, TimeUnit};
use synqx_api::connection::SnowflakeConnection;
use synqx_api::pipeline::{SchemaEvolution, WriteMode};
use synqx_api::{ConnectionSpec, SecretValue};

use synqx_testkit::{emulators, unique_name};

use super::Snowflake;
use super::config::SnowflakeConfig;
use super::connect::Session;
use crate::connectors::tests::warehouses::{
    MAPPED_NULLABLE, assert_mapped_values, batch_of, breaking_input, mapped_columns, people_rows,
    people_with_score, person as row, sorted_by_id, value_text,
};
use crate::connectors::tests::{Harness, destination, err, ok, people};
use crate::connectors::{ConnectionRef, Connector};
use crate::engine::{Counters, CursorFilter};
use crate::error::Result;
use crate::secrets::Secrets;

const CONNECTION: &str = "warehouse";
const PASSWORD: &str = "sf-pass-8c1f";

fn spec(database: &str) -> ConnectionSpec {
    ConnectionSpec {
        snowflake: Some(SnowflakeConnection {
            account: "synqx-test".into(),
            host: Some(emulators::fakesnow()),
            user: SecretValue::plain("loader"),
            password: Some(SecretValue::from_secret("sf-creds", "password")),
            warehouse: "WH".into(),
            database: database.into(),
            schema: Some("PUBLIC".into()),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// A database of its own, with the connection's schema, and the source and sink over it.
struct Warehouse {
    spec: ConnectionSpec,
    secrets: Secrets,
}

impl Warehouse {
    async fn new() -> Self {
        let database = unique_name("SYNQX_T").to_ascii_uppercase();
        let warehouse = Self {
            spec: spec(&database),
            secrets: Secrets::new(
                [],
                [(
                    "SYNQX_SECRET_SF_CREDS__PASSWORD".to_string(),
                    PASSWORD.to_string(),
                )],
            ),
        };
        let session = warehouse.session().await;
        for sql in [
            format!("CREATE DATABASE IF NOT EXISTS {database}"),
            format!("CREATE SCHEMA IF NOT EXISTS {database}.PUBLIC"),
        ] {
            session
                .query(&sql, &[])
                .await
                .unwrap_or_else(|e| panic!("{sql}: {e}"));
        }
        session.close().await;
        warehouse
    }

    fn conn(&self) -> ConnectionRef<'_> {
        ConnectionRef {
            name: CONNECTION,
            spec: &self.spec,
            base_dir: ".".into(),
            secrets: &self.secrets,
        }
    }

    async fn session(&self) -> Session {
        let settings = ok(SnowflakeConfig::new(&self.conn()));
        Session::login(Arc::new(settings))
            .await
            .unwrap_or_else(|e| {
                panic!(
                    "{}",
                    emulators::unreachable("fakesnow", &emulators::fakesnow(), e)
                )
            })
    }

    /// The Connection opened through the registry, as a step opens it.
    fn harness(&self) -> Harness {
        Harness::open(&self.conn())
    }

    /// A sink that loads with array-bound `INSERT`s, the path of stages this client cannot
    /// upload to (every real account's: their stages want client-side encryption).
    fn binding_harness(&self) -> Harness {
        let mut config = ok(Snowflake::config(&self.conn()));
        config.stage_files = false;
        Harness {
            source: ok(Snowflake::source(ok(Snowflake::config(&self.conn())))),
            sink: ok(Snowflake::sink(config)),
        }
    }

    async fn write(
        &self,
        fqn: &str,
        mode: WriteMode,
        key: &[&str],
        batches: Vec<RecordBatch>,
    ) -> Result<u64> {
        self.write_with(&self.harness(), fqn, mode, key, batches)
            .await
    }

    async fn write_with(
        &self,
        harness: &Harness,
        fqn: &str,
        mode: WriteMode,
        key: &[&str],
        batches: Vec<RecordBatch>,
    ) -> Result<u64> {
        let schema = batches[0].schema();
        let counters = Counters::default();
        let outcome = harness
            .write_counted(
                destination(
                    CONNECTION,
                    fqn,
                    mode,
                    key,
                    Some(SchemaEvolution::AddColumns),
                ),
                schema,
                batches.into_iter().map(Ok).collect(),
                &counters,
            )
            .await?;
        Ok(outcome.rows)
    }

    async fn read(
        &self,
        fqn: &str,
        filter: Option<CursorFilter>,
    ) -> Result<(SchemaRef, Vec<RecordBatch>)> {
        self.harness().read_table(CONNECTION, fqn, filter).await
    }

    /// `(id, name)` rows of a people table, by id.
    async fn people(&self, fqn: &str) -> Vec<(i64, Option<String>)> {
        people_rows(&ok(self.read(fqn, None).await).1)
    }
}

/// Runs each statement in a session of its own, failing the test on any error.
async fn run_sql(w: &Warehouse, statements: &[&str]) {
    let session = w.session().await;
    for sql in statements {
        session
            .query(sql, &[])
            .await
            .unwrap_or_else(|e| panic!("{sql}: {e}"));
    }
    session.close().await;
}

#[tokio::test]
async fn every_mapped_type_round_trips_through_stage_files() {
    let w = Warehouse::new().await;
    round_trip_every_mapped_type(&w, &w.harness(), "staged", true).await;
}

#[tokio::test]
async fn every_mapped_type_round_trips_through_array_bindings() {
    let w = Warehouse::new().await;
    // Without the NULL row: fakesnow 0.12.1 fails on a NULL in a typed binding (its converter
    // calls int(None)), which Snowflake takes.
    round_trip_every_mapped_type(&w, &w.binding_harness(), "bound", false).await;
}

/// Writes a row of every mapped type (and, `with_nulls`, a row of NULLs), reads them back,
/// checks each value.
async fn round_trip_every_mapped_type(
    w: &Warehouse,
    harness: &Harness,
    table: &str,
    with_nulls: bool,
) {
    const DOC: &str = r#"{"a":[1,2]}"#;
    let mut columns = mapped_columns(DOC);
    columns.insert(
        1,
        (
            Field::new("small", DataType::Int32, true),
            Arc::new(Int32Array::from(vec![Some(-7), None])),
        ),
    );
    columns.push((
        Field::new("raw", DataType::Binary, true),
        Arc::new(BinaryArray::from(vec![Some(&b"\x00\xff\x10"[..]), None])),
    ));
    let batch = batch_of(columns);
    let batch = if with_nulls { batch } else { batch.slice(0, 1) };
    let rows = batch.num_rows() as u64;
    let written = w.write_with(harness, table, WriteMode::Append, &[], vec![batch]);
    assert_eq!(ok(written.await), rows);

    let (schema, batches) = ok(w.read(table, None).await);
    let read = sorted_by_id(&schema, &batches);
    assert_mapped_values(&read, DOC);
    let col = |name: &str| {
        read.column_by_name(name)
            .unwrap_or_else(|| panic!("no column {name} in {schema:?}"))
            .clone()
    };
    let text = |name: &str| value_text(&read, name, 0);
    assert_eq!(col("id").data_type(), &DataType::Int64);
    assert_eq!(col("small").data_type(), &DataType::Int64);
    assert_eq!(text("small"), "-7");
    assert_eq!(col("amount").data_type(), &DataType::Decimal128(12, 3));
    assert_eq!(text("amount"), "12345.678");
    assert_eq!(
        col("utc_ts").data_type(),
        &DataType::Timestamp(TimeUnit::Nanosecond, Some("UTC".into()))
    );
    assert_eq!(col("raw").as_binary::<i32>().value(0), b"\x00\xff\x10");
    // Lists are written as VARIANT and read back as their JSON text.
    let tags: serde_json::Value = serde_json::from_str(&text("tags")).unwrap();
    assert_eq!(tags, serde_json::json!([1, 2]));
    if !with_nulls {
        return;
    }
    for name in MAPPED_NULLABLE.iter().chain(&["small", "raw", "tags"]) {
        assert!(col(name).is_null(1), "{name} keeps its null");
    }
}

#[tokio::test]
async fn append_overwrite_and_upsert_write_what_they_promise() {
    let w = Warehouse::new().await;
    ok(w.write(
        "people",
        WriteMode::Append,
        &["id"],
        vec![people(&[(1, Some("ada")), (2, Some("bob"))])],
    )
    .await);
    ok(w.write(
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
        ok(w.write("people", WriteMode::Upsert, &["id"], batches).await),
        3
    );
    assert_eq!(
        w.people("people").await,
        vec![row(1, "ada"), row(2, "bee"), (3, None), row(4, "dan")]
    );

    // fakesnow cannot parse `ALTER TABLE … SWAP WITH`: the overwrite replaces the rows in one
    // transaction instead, and the step's note says why.
    let counters = Counters::default();
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
    ok(w.write(
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
    ok(w.write("evolving", WriteMode::Append, &[], vec![batch])
        .await);
    let (schema, batches) = ok(w.read("evolving", None).await);
    assert!(schema.field_with_name("score").is_ok(), "{schema:?}");
    assert_eq!(batches.iter().map(|b| b.num_rows()).sum::<usize>(), 2);
}

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
async fn local_zoned_timestamps_objects_and_arrays_read_back_and_load_again() {
    let w = Warehouse::new().await;
    run_sql(
        &w,
        &[
            "CREATE TABLE shapes (id NUMBER(19,0), seen TIMESTAMP_LTZ(6), attrs OBJECT, \
             tags ARRAY)",
            "INSERT INTO shapes SELECT 1, '2024-05-01 12:30:00.25 +00:00'::TIMESTAMP_LTZ(6), \
             PARSE_JSON('{\"a\":1,\"b\":\"x\"}'), PARSE_JSON('[1,\"two\"]')",
        ],
    )
    .await;
    let json = |t: String| {
        serde_json::from_str::<serde_json::Value>(&t).unwrap_or_else(|e| panic!("{t}: {e}"))
    };
    let check = |read: &RecordBatch, row: usize| {
        let schema = read.schema();
        // In the unit of the scale the server describes (fakesnow says 9 for LTZ(6)), in UTC.
        let seen = schema
            .field_with_name("seen")
            .map(|f| f.data_type().clone());
        assert!(
            matches!(&seen, Ok(DataType::Timestamp(_, Some(zone))) if zone.as_ref() == "UTC"),
            "{seen:?}"
        );
        assert_eq!(value_text(read, "seen", row), "2024-05-01T12:30:00.250Z");
        for name in ["attrs", "tags"] {
            let field = schema
                .field_with_name(name)
                .unwrap_or_else(|e| panic!("{e}"));
            assert!(crate::connectors::http_api::is_json(field), "{field:?}");
        }
        assert_eq!(
            json(value_text(read, "attrs", row)),
            serde_json::json!({"a": 1, "b": "x"})
        );
        assert_eq!(
            json(value_text(read, "tags", row)),
            serde_json::json!([1, "two"])
        );
    };
    let (schema, batches) = ok(w.read("shapes", None).await);
    let first = sorted_by_id(&schema, &batches);
    check(&first, 0);

    // What was read loads into the same columns: the other direction of the map.
    let mut columns = first.columns().to_vec();
    columns[0] = Arc::new(arrow::array::Int64Array::from(vec![2]));
    let again = RecordBatch::try_new(first.schema(), columns).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        ok(w.write("shapes", WriteMode::Append, &[], vec![again]).await),
        1
    );
    let (schema, batches) = ok(w.read("shapes", None).await);
    let both = sorted_by_id(&schema, &batches);
    assert_eq!(both.num_rows(), 2);
    check(&both, 0);
    check(&both, 1);
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
async fn a_failed_or_cancelled_overwrite_leaves_the_old_rows() {
    let w = Warehouse::new().await;
    ok(w.write(
        "kept",
        WriteMode::Append,
        &[],
        vec![people(&[(1, Some("ada")), (2, Some("bob"))])],
    )
    .await);
    let request = crate::engine::WriteRequest {
        spec: destination(CONNECTION, "kept", WriteMode::Overwrite, &[], None),
        batch_bytes: 1 << 20,
        deadline: None,
    };
    let counters = Counters::default();
    let failed = w
        .harness()
        .sink
        .write(
            &request,
            breaking_input(people(&[(7, Some("new"))])),
            &counters,
        )
        .await;
    assert_eq!(err(failed), "the source broke");
    assert_eq!(
        counters.snapshot().rows_written,
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
