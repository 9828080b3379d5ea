//! The sink against the real server: every mode, atomicity, table creation and schema
//! evolution, driven through `Sink::write` as the engine calls it.

use std::collections::HashMap;
use std::sync::Arc;

use arrow::array::{
    ArrayRef, BinaryArray, BooleanArray, Date32Array, Decimal128Array, FixedSizeBinaryArray,
    Float32Array, Float64Array, Int16Array, Int32Array, Int64Array, IntervalMonthDayNanoArray,
    ListArray, RecordBatch, StringArray, Time64MicrosecondArray, TimestampMicrosecondArray,
    UInt64Array,
};
use arrow::datatypes::{
    DataType, Field, Int32Type, IntervalMonthDayNano, Schema, SchemaRef, TimeUnit,
};
use synqx_api::pipeline::{SchemaEvolution, WriteMode};

use super::support::{Pg, destination, message, upstream_error};
use crate::engine::Counters;
use crate::error::Error;

fn people_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("id", DataType::Int64, false),
        Field::new("name", DataType::Utf8, true),
    ]))
}

fn people(ids: &[i64], names: &[&str]) -> RecordBatch {
    RecordBatch::try_new(
        people_schema(),
        vec![
            Arc::new(Int64Array::from(ids.to_vec())) as ArrayRef,
            Arc::new(StringArray::from(names.to_vec())),
        ],
    )
    .unwrap_or_else(|e| panic!("{e}"))
}

#[tokio::test]
async fn append_creates_the_table_and_a_second_load_doubles_the_rows() {
    let pg = Pg::new("pg_append").await;
    let fqn = pg.fqn("People");
    let counters = Arc::new(Counters::default());
    let outcome = pg
        .write_counted(
            destination(&fqn, WriteMode::Append, &[]),
            people_schema(),
            vec![Ok(people(&[1, 2], &["a", "b"])), Ok(people(&[3], &["c"]))],
            &counters,
        )
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(outcome.rows, 3);
    assert!(outcome.bytes > 0);
    assert_eq!(counters.snapshot().rows_written, 3);
    assert_eq!(counters.snapshot().bytes_written, outcome.bytes);
    pg.write(
        destination(&fqn, WriteMode::Append, &[]),
        people_schema(),
        vec![Ok(people(&[1, 2], &["a", "b"])), Ok(people(&[3], &["c"]))],
    )
    .await
    .unwrap_or_else(|e| panic!("{e}"));
    let table = format!("\"{}\".\"People\"", pg.schema);
    assert_eq!(
        pg.dump(&format!("SELECT id, name FROM {table} ORDER BY id"))
            .await,
        ["(1,a)", "(1,a)", "(2,b)", "(2,b)", "(3,c)", "(3,c)"]
    );
    // The FQN's case is kept: the table is "People", not people.
    assert_eq!(pg.tables().await, ["People"]);
}

#[tokio::test]
async fn overwrite_replaces_the_rows_and_keeps_the_tables_indexes() {
    let pg = Pg::new("pg_overwrite").await;
    let table = format!("\"{}\".\"t\"", pg.schema);
    pg.sql(&format!(
        "CREATE TABLE {table} (id bigint PRIMARY KEY, name text, note text DEFAULT 'kept');
         CREATE INDEX t_name ON {table} (name);
         INSERT INTO {table} (id, name) VALUES (1, 'old'), (2, 'old')"
    ))
    .await;
    let outcome = pg
        .write(
            destination(&pg.fqn("t"), WriteMode::Overwrite, &[]),
            people_schema(),
            vec![Ok(people(&[7, 8], &["x", "y"]))],
        )
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(outcome.rows, 2);
    assert_eq!(
        pg.dump(&format!("SELECT * FROM {table} ORDER BY id")).await,
        ["(7,x,kept)", "(8,y,kept)"]
    );
    assert_eq!(pg.tables().await, ["t"]);
    // The indexes carried over under their old names.
    let indexes = pg
        .dump(&format!(
            "SELECT indexname FROM pg_indexes WHERE schemaname = '{}' AND tablename = 't' ORDER BY 1",
            pg.schema
        ))
        .await;
    assert_eq!(indexes, ["(t_name)", "(t_pkey)"]);
}

#[tokio::test]
async fn a_failing_overwrite_leaves_the_old_table_and_no_new_one() {
    let pg = Pg::new("pg_overwrite_fail").await;
    let table = format!("\"{}\".\"t\"", pg.schema);
    pg.sql(&format!(
        "CREATE TABLE {table} (id integer, name text);
         INSERT INTO {table} VALUES (1, 'old')"
    ))
    .await;
    // A stream that breaks after a batch.
    let counters = Arc::new(Counters::default());
    let e = message(
        pg.write_counted(
            destination(&pg.fqn("t"), WriteMode::Overwrite, &[]),
            people_schema(),
            vec![Ok(people(&[7], &["x"])), Err(upstream_error())],
            &counters,
        )
        .await,
    );
    assert_eq!(e, "upstream broke");
    assert_eq!(counters.snapshot().rows_written, 0);
    assert_eq!(counters.snapshot().bytes_written, 0);
    // A value the column cannot hold, in the second batch: id is an integer column.
    let e = pg
        .write(
            destination(&pg.fqn("t"), WriteMode::Overwrite, &[]),
            people_schema(),
            vec![
                Ok(people(&[7], &["x"])),
                Ok(people(&[8, 9_000_000_000], &["y", "z"])),
            ],
        )
        .await
        .err()
        .unwrap_or_else(|| panic!("an out-of-range value was written"));
    let Error::BadRow(bad) = &e else {
        panic!("{e:?}")
    };
    assert_eq!(bad.record()["value"], "9000000000");
    let text = e.to_string();
    assert!(text.contains("column \"id\""), "{text}");
    assert!(!text.contains("9000000000"), "{text}");
    assert_eq!(
        pg.dump(&format!("SELECT * FROM {table}")).await,
        ["(1,old)"]
    );
    assert_eq!(pg.tables().await, ["t"]);
}

#[tokio::test]
async fn overwrite_says_plainly_when_a_view_depends_on_the_table() {
    let pg = Pg::new("pg_overwrite_view").await;
    let table = format!("\"{}\".\"t\"", pg.schema);
    pg.sql(&format!(
        "CREATE TABLE {table} (id bigint, name text);
         INSERT INTO {table} VALUES (1, 'old');
         CREATE VIEW \"{}\".v AS SELECT id FROM {table}",
        pg.schema
    ))
    .await;
    let e = message(
        pg.write(
            destination(&pg.fqn("t"), WriteMode::Overwrite, &[]),
            people_schema(),
            vec![Ok(people(&[7], &["x"]))],
        )
        .await,
    );
    assert!(
        e.starts_with(&format!(
            "Connection \"warehouse\", table \"{}.t\": overwrite cannot replace the table because other objects depend on it",
            pg.schema
        )),
        "{e}"
    );
    assert!(e.contains("view"), "{e}");
    assert!(!e.contains("CASCADE"), "{e}");
    assert_eq!(
        pg.dump(&format!("SELECT * FROM {table}")).await,
        ["(1,old)"]
    );
    assert_eq!(pg.tables().await, ["t"]);
}

#[tokio::test]
async fn upsert_updates_inserts_keeps_the_last_duplicate_and_is_repeatable() {
    let pg = Pg::new("pg_upsert").await;
    let table = format!("\"{}\".\"t\"", pg.schema);
    let upsert = || destination(&pg.fqn("t"), WriteMode::Upsert, &["id"]);
    // Created with the key as its primary key.
    pg.write(
        upsert(),
        people_schema(),
        vec![Ok(people(&[1, 2], &["a", "b"]))],
    )
    .await
    .unwrap_or_else(|e| panic!("{e}"));
    let load = || {
        vec![
            Ok(people(&[2, 3], &["b2", "c"])),
            Ok(people(&[3, 4, 3], &["c2", "d", "c3"])),
        ]
    };
    let outcome = pg
        .write(upsert(), people_schema(), load())
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(outcome.rows, 5);
    let expected = ["(1,a)", "(2,b2)", "(3,c3)", "(4,d)"];
    let all = format!("SELECT * FROM {table} ORDER BY id");
    assert_eq!(pg.dump(&all).await, expected);
    pg.write(upsert(), people_schema(), load())
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(pg.dump(&all).await, expected);
    assert_eq!(pg.tables().await, ["t"]);
}

#[tokio::test]
async fn upsert_needs_a_key_and_a_unique_constraint_on_it() {
    let pg = Pg::new("pg_upsert_key").await;
    let table = format!("\"{}\".\"t\"", pg.schema);
    pg.sql(&format!("CREATE TABLE {table} (id bigint, name text)"))
        .await;
    let e = pg
        .write(
            destination(&pg.fqn("t"), WriteMode::Upsert, &[]),
            people_schema(),
            vec![],
        )
        .await
        .err();
    assert!(matches!(e, Some(Error::Config(_))), "{e:?}");
    let e = message(
        pg.write(
            destination(&pg.fqn("t"), WriteMode::Upsert, &["id"]),
            people_schema(),
            vec![Ok(people(&[1], &["a"]))],
        )
        .await,
    );
    assert!(
        e.contains("upsert needs a primary key or unique constraint on exactly (\"id\")"),
        "{e}"
    );
    assert!(e.contains("ADD PRIMARY KEY (\"id\")"), "{e}");
    // With a unique index, it works.
    pg.sql(&format!("CREATE UNIQUE INDEX ON {table} (id)"))
        .await;
    pg.write(
        destination(&pg.fqn("t"), WriteMode::Upsert, &["id"]),
        people_schema(),
        vec![Ok(people(&[1, 1], &["a", "b"]))],
    )
    .await
    .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(pg.dump(&format!("SELECT * FROM {table}")).await, ["(1,b)"]);
}

#[tokio::test]
async fn a_table_is_created_from_every_arrow_type_the_map_covers() {
    let pg = Pg::new("pg_create").await;
    let uuid = HashMap::from([("ARROW:extension:name".to_string(), "arrow.uuid".to_string())]);
    let json = HashMap::from([("ARROW:extension:name".to_string(), "arrow.json".to_string())]);
    let fields = vec![
        Field::new("b", DataType::Boolean, true),
        Field::new("i16", DataType::Int16, true),
        Field::new("i32", DataType::Int32, true),
        Field::new("i64", DataType::Int64, true),
        Field::new("u64", DataType::UInt64, true),
        Field::new("f32", DataType::Float32, true),
        Field::new("f64", DataType::Float64, true),
        Field::new("dec", DataType::Decimal128(12, 2), true),
        Field::new("s", DataType::Utf8, true),
        Field::new("j", DataType::Utf8, true).with_metadata(json),
        Field::new("bin", DataType::Binary, true),
        Field::new("u", DataType::FixedSizeBinary(16), true).with_metadata(uuid),
        Field::new("d", DataType::Date32, true),
        Field::new("tm", DataType::Time64(TimeUnit::Microsecond), true),
        Field::new("ts", DataType::Timestamp(TimeUnit::Microsecond, None), true),
        Field::new(
            "tstz",
            DataType::Timestamp(TimeUnit::Microsecond, Some("+00:00".into())),
            true,
        ),
        Field::new(
            "iv",
            DataType::Interval(arrow::datatypes::IntervalUnit::MonthDayNano),
            true,
        ),
        Field::new(
            "li",
            DataType::List(Arc::new(Field::new("item", DataType::Int32, true))),
            true,
        ),
    ];
    let schema = Arc::new(Schema::new(fields));
    let columns: Vec<ArrayRef> = vec![
        Arc::new(BooleanArray::from(vec![Some(true), None])),
        Arc::new(Int16Array::from(vec![Some(-3), None])),
        Arc::new(Int32Array::from(vec![Some(70000), None])),
        Arc::new(Int64Array::from(vec![Some(1 << 40), None])),
        Arc::new(UInt64Array::from(vec![Some(u64::MAX), None])),
        Arc::new(Float32Array::from(vec![Some(1.5), None])),
        Arc::new(Float64Array::from(vec![Some(-0.25), None])),
        Arc::new(
            Decimal128Array::from(vec![Some(123456), None])
                .with_precision_and_scale(12, 2)
                .unwrap_or_else(|e| panic!("{e}")),
        ),
        Arc::new(StringArray::from(vec![Some("héllo"), None])),
        Arc::new(StringArray::from(vec![Some("{\"a\": 1}"), None])),
        Arc::new(BinaryArray::from(vec![Some(&b"\x00\xff"[..]), None])),
        Arc::new(
            FixedSizeBinaryArray::try_from_sparse_iter_with_size(
                vec![Some([0x11u8; 16]), None].into_iter(),
                16,
            )
            .unwrap_or_else(|e| panic!("{e}")),
        ),
        Arc::new(Date32Array::from(vec![Some(19723), None])),
        Arc::new(Time64MicrosecondArray::from(vec![
            Some(3_600_000_001),
            None,
        ])),
        Arc::new(TimestampMicrosecondArray::from(vec![
            Some(1_704_067_200_000_001),
            None,
        ])),
        Arc::new(
            TimestampMicrosecondArray::from(vec![Some(1_704_067_200_000_000), None])
                .with_timezone("+00:00"),
        ),
        Arc::new(IntervalMonthDayNanoArray::from(vec![
            Some(IntervalMonthDayNano::new(1, 2, 3_000)),
            None,
        ])),
        Arc::new(ListArray::from_iter_primitive::<Int32Type, _, _>(vec![
            Some(vec![Some(1), None, Some(3)]),
            None,
        ])),
    ];
    let batch = RecordBatch::try_new(schema.clone(), columns).unwrap_or_else(|e| panic!("{e}"));
    pg.write(
        destination(&pg.fqn("all_types"), WriteMode::Append, &[]),
        schema,
        vec![Ok(batch)],
    )
    .await
    .unwrap_or_else(|e| panic!("{e}"));
    let types = pg
        .dump(&format!(
            "SELECT attname, format_type(atttypid, atttypmod) FROM pg_attribute
             WHERE attrelid = '\"{}\".all_types'::regclass AND attnum > 0 ORDER BY attnum",
            pg.schema
        ))
        .await;
    assert_eq!(
        types,
        [
            "(b,boolean)",
            "(i16,smallint)",
            "(i32,integer)",
            "(i64,bigint)",
            "(u64,\"numeric(20,0)\")",
            "(f32,real)",
            "(f64,\"double precision\")",
            "(dec,\"numeric(12,2)\")",
            "(s,text)",
            "(j,jsonb)",
            "(bin,bytea)",
            "(u,uuid)",
            "(d,date)",
            "(tm,\"time without time zone\")",
            "(ts,\"timestamp without time zone\")",
            "(tstz,\"timestamp with time zone\")",
            "(iv,interval)",
            "(li,integer[])",
        ]
    );
    let rows = pg
        .dump(&format!(
            "SELECT * FROM \"{}\".all_types ORDER BY b NULLS LAST",
            pg.schema
        ))
        .await;
    assert_eq!(
        rows,
        [
            "(t,-3,70000,1099511627776,18446744073709551615,1.5,-0.25,1234.56,héllo,\"{\"\"a\"\": 1}\",\"\\\\x00ff\",11111111-1111-1111-1111-111111111111,2024-01-01,01:00:00.000001,\"2024-01-01 00:00:00.000001\",\"2024-01-01 00:00:00+00\",\"1 mon 2 days 00:00:00.000003\",\"{1,NULL,3}\")",
            "(,,,,,,,,,,,,,,,,,)",
        ]
    );
}

fn wide_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("id", DataType::Int64, false),
        Field::new("name", DataType::Utf8, true),
        Field::new("extra", DataType::Int32, true),
    ]))
}

fn wide(id: i64) -> RecordBatch {
    RecordBatch::try_new(
        wide_schema(),
        vec![
            Arc::new(Int64Array::from(vec![id])) as ArrayRef,
            Arc::new(StringArray::from(vec!["n"])),
            Arc::new(Int32Array::from(vec![42])),
        ],
    )
    .unwrap_or_else(|e| panic!("{e}"))
}

#[tokio::test]
async fn schema_evolution_adds_fails_or_ignores_new_columns() {
    let pg = Pg::new("pg_evolution").await;
    let table = format!("\"{}\".\"t\"", pg.schema);
    pg.sql(&format!(
        "CREATE TABLE {table} (id bigint, name text, kept text DEFAULT 'd')"
    ))
    .await;
    let with = |evolution| {
        let mut d = destination(&pg.fqn("t"), WriteMode::Append, &[]);
        d.schema_evolution = Some(evolution);
        d
    };
    let e = message(
        pg.write(
            with(SchemaEvolution::Fail),
            wide_schema(),
            vec![Ok(wide(1))],
        )
        .await,
    );
    assert_eq!(
        e,
        format!(
            "Connection \"warehouse\", table \"{}.t\": the table has no column \"extra\" of the source (schemaEvolution: fail; set addColumns to add them or ignore to leave them out)",
            pg.schema
        )
    );
    pg.write(
        with(SchemaEvolution::Ignore),
        wide_schema(),
        vec![Ok(wide(2))],
    )
    .await
    .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        pg.dump(&format!("SELECT * FROM {table}")).await,
        ["(2,n,d)"]
    );
    pg.write(
        with(SchemaEvolution::AddColumns),
        wide_schema(),
        vec![Ok(wide(3))],
    )
    .await
    .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        pg.dump(&format!("SELECT * FROM {table} ORDER BY id")).await,
        ["(2,n,d,)", "(3,n,d,42)"]
    );
    // Overwrite with addColumns: the new table has the old columns and the new one.
    pg.sql(&format!("ALTER TABLE {table} DROP COLUMN extra"))
        .await;
    let mut d = with(SchemaEvolution::AddColumns);
    d.mode = Some(WriteMode::Overwrite);
    pg.write(d, wide_schema(), vec![Ok(wide(4))])
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        pg.dump(&format!("SELECT id, name, kept, extra FROM {table}"))
            .await,
        ["(4,n,d,42)"]
    );
}

#[tokio::test]
async fn a_missing_schema_is_named() {
    let pg = Pg::new("pg_no_schema").await;
    let e = message(
        pg.write(
            destination("no_such_schema_x.t", WriteMode::Append, &[]),
            people_schema(),
            vec![Ok(people(&[1], &["a"]))],
        )
        .await,
    );
    assert!(
        e.starts_with("Connection \"warehouse\", table \"no_such_schema_x.t\": schema \"no_such_schema_x\" does not exist in database"),
        "{e}"
    );
}
