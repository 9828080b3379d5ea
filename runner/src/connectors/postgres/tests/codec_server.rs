//! The binary COPY codec against the real PostgreSQL test server: every mapped type read out
//! and written back exactly, batches cut by bytes, and values Arrow cannot hold.

use std::time::Instant;

use arrow::array::{
    Array, AsArray, BinaryArray, Date32Array, Decimal128Array, Int64Array, ListArray, RecordBatch,
    StringArray,
};
use arrow::datatypes::{Int32Type, Int64Type};
use bytes::BytesMut;
use futures::TryStreamExt;
use sqlx::postgres::PgConnection;
use sqlx::{AssertSqlSafe, Row};
use synqx_testkit::postgres::{Schema, connect, exec};

use super::super::copy_in::CopyInEncoder;
use super::super::copy_out::CopyOutDecoder;
use super::super::types::PgType;
use crate::error::Error;

/// The columns of a table as the catalog describes them, in column order.
async fn columns(conn: &mut PgConnection, table: &str) -> Vec<(String, PgType)> {
    let sql = format!(
        "SELECT a.attname::text, a.atttypid::int8, a.atttypmod::int4,
                (CASE WHEN t.typcategory = 'A' THEN t.typelem END)::int8,
                format_type(a.atttypid, a.atttypmod)
           FROM pg_attribute a JOIN pg_type t ON t.oid = a.atttypid
          WHERE a.attrelid = '{table}'::regclass AND a.attnum > 0 AND NOT a.attisdropped
          ORDER BY a.attnum"
    );
    sqlx::query(AssertSqlSafe(sql))
        .fetch_all(&mut *conn)
        .await
        .unwrap()
        .into_iter()
        .map(|r| {
            let element: Option<i64> = r.get(3);
            (
                r.get::<String, _>(0),
                PgType {
                    oid: r.get::<i64, _>(1) as u32,
                    typmod: r.get(2),
                    element: element.map(|e| e as u32),
                    name: r.get(4),
                },
            )
        })
        .collect()
}

/// Runs a `COPY … TO STDOUT (FORMAT binary)` through the decoder.
async fn copy_out(
    conn: &mut PgConnection,
    statement: &str,
    columns: &[(String, PgType)],
    batch_bytes: usize,
) -> Result<Vec<RecordBatch>, Error> {
    let mut decoder = CopyOutDecoder::new(columns, batch_bytes, "test".into())?;
    let mut stream = conn.copy_out_raw(statement).await.unwrap();
    let mut batches = Vec::new();
    while let Some(chunk) = stream.try_next().await.unwrap() {
        decoder.push(&chunk, &mut batches)?;
    }
    batches.extend(decoder.finish()?);
    Ok(batches)
}

fn column_list(columns: &[(String, PgType)]) -> String {
    columns
        .iter()
        .map(|(n, _)| format!("\"{n}\""))
        .collect::<Vec<_>>()
        .join(", ")
}

const TABLE: &str = "
    id integer, i2 smallint, i4 integer, i8 bigint, f4 real, f8 double precision,
    n numeric(15,2), nbig numeric(38,10), nfree numeric, t text, vc varchar(20), c char(5),
    nm name, b boolean, d date, tm time, ts timestamp, tz timestamptz, iv interval, u uuid,
    j json, jb jsonb, by bytea, ai integer[], at text[], an numeric(10,3)[], ad date[],
    au uuid[], ats timestamptz[], ab bytea[]";

const ROWS: &str = r#"
    (1, 7, 42, 1234567890123, 1.5, 2.25, 1234.56, 1.5, 3.14159, 'hello', 'varchar', 'ab',
     'a_name', true, '2024-02-29', '13:14:15.123456', '2024-02-29 13:14:15.123456',
     '2024-02-29 13:14:15.123456+02', '1 year 2 mons 3 days 04:05:06.789',
     'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11', '{"a": [1, 2, {"b": null}]}', '{"k": "v"}',
     '\x00ff00', '{1,NULL,-3}', '{NULL,"",x}', '{1.5,NULL,-0.001}', '{2000-01-01,NULL}',
     '{a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11}', '{NULL}', '{"\\x00",NULL}'),
    (2, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL,
     NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL),
    (3, -32768, -2147483648, 9223372036854775807, 'NaN', '-Infinity', 9999999999999.99,
     -9999999999999999999999999999.9999999999,
     '-123456789012345678901234567890.123456789012345678901234567890', '', 'Grüße 🎉 ok', 'a',
     '', false, '4713-01-01 BC', '24:00:00', '294246-12-31 23:59:59.999999',
     '4713-01-01 00:00:00+00 BC', '-178000000 years', '00000000-0000-0000-0000-000000000000',
     '[]', '{}', '', '{}', '{}', '{}', '{}', '{}', '{}', '{}'),
    (4, 32767, 2147483647, -9223372036854775808, 'Infinity', 'NaN', -0.01,
     0.0000000001, 'NaN', E'tab\there\nnewline \\ back', 'x', 'abcde', 'n', true,
     '5874897-12-31', '00:00:00', '4713-01-01 00:00:00 BC', '294246-12-31 23:59:59.999999+00',
     '-3 days -00:00:00.000001', 'ffffffff-ffff-ffff-ffff-ffffffffffff', 'null', '[1, "x"]',
     '\x', '{2147483647}', '{"Grüße"}', '{0}', '{"4713-01-01 BC"}', '{NULL}', '{}', '{}')"#;

#[tokio::test]
async fn every_mapped_type_survives_a_copy_out_and_back_in() {
    let mut conn = connect().await;
    let owned = Schema::new(&mut conn, "sx_codec").await;
    let schema = &owned.name;
    exec(
        &mut conn,
        &format!(
            "CREATE TABLE {schema}.src ({TABLE});
             CREATE TABLE {schema}.dst ({TABLE});
             INSERT INTO {schema}.src VALUES {ROWS};"
        ),
    )
    .await;
    let src = columns(&mut conn, &format!("{schema}.src")).await;
    let list = column_list(&src);
    let batches = copy_out(
        &mut conn,
        &format!("COPY (SELECT {list} FROM {schema}.src ORDER BY id) TO STDOUT (FORMAT binary)"),
        &src,
        1 << 20,
    )
    .await
    .unwrap();
    let batch = arrow::compute::concat_batches(&batches[0].schema(), &batches).unwrap();
    assert_eq!(batch.num_rows(), 4);
    let col = |name: &str| batch.column_by_name(name).unwrap().clone();
    let i8s = col("i8");
    let i8s = i8s.as_primitive::<Int64Type>();
    assert_eq!(
        i8s.values().as_ref(),
        &[1234567890123, 0, i64::MAX, i64::MIN]
    );
    let nbig = col("nbig");
    let nbig = nbig.as_any().downcast_ref::<Decimal128Array>().unwrap();
    assert_eq!(
        nbig.value(2),
        -99_999_999_999_999_999_999_999_999_999_999_999_999i128
    );
    let nfree = col("nfree");
    let nfree = nfree.as_any().downcast_ref::<StringArray>().unwrap();
    assert_eq!(
        nfree.value(2),
        "-123456789012345678901234567890.123456789012345678901234567890"
    );
    assert_eq!(nfree.value(3), "NaN");
    let vc = col("vc");
    assert_eq!(vc.as_string::<i32>().value(2), "Grüße 🎉 ok");
    assert_eq!(col("c").as_string::<i32>().value(2), "a    ");
    let by = col("by");
    let by = by.as_any().downcast_ref::<BinaryArray>().unwrap();
    assert_eq!((by.value(0), by.value(3)), (&[0u8, 255, 0][..], &[][..]));
    let ai = col("ai");
    let ai = ai.as_any().downcast_ref::<ListArray>().unwrap();
    assert_eq!(
        ai.value(0)
            .as_primitive::<Int32Type>()
            .iter()
            .collect::<Vec<_>>(),
        vec![Some(1), None, Some(-3)]
    );
    assert!(ai.value(2).is_empty() && ai.is_null(1));
    for c in batch.columns().iter().skip(1) {
        assert!(c.is_null(1), "{}", c.data_type());
    }
    let days: Vec<i32> = sqlx::query_scalar(AssertSqlSafe(format!(
        "SELECT (d - date '1970-01-01') FROM {schema}.src WHERE d IS NOT NULL ORDER BY id"
    )))
    .fetch_all(&mut conn)
    .await
    .unwrap();
    let d = col("d");
    let d = d.as_any().downcast_ref::<Date32Array>().unwrap();
    assert_eq!(vec![d.value(0), d.value(2), d.value(3)], days);

    let dst = columns(&mut conn, &format!("{schema}.dst")).await;
    let encoder = CopyInEncoder::new(&batch.schema(), &dst, "test".into()).unwrap();
    let mut copy = conn
        .copy_in_raw(&format!(
            "COPY {schema}.dst ({}) FROM STDIN (FORMAT binary)",
            column_list(&dst)
        ))
        .await
        .unwrap();
    let mut buf = BytesMut::new();
    CopyInEncoder::header(&mut buf);
    let mut first = 1;
    for b in &batches {
        encoder.encode(b, first, &mut buf).unwrap();
        first += b.num_rows() as u64;
    }
    CopyInEncoder::trailer(&mut buf);
    copy.send(buf.as_ref()).await.unwrap();
    assert_eq!(copy.finish().await.unwrap(), 4);

    // json has no equality operator: compare its text.
    let comparable = src
        .iter()
        .map(|(n, t)| {
            if t.name == "json" {
                format!("\"{n}\"::text")
            } else {
                format!("\"{n}\"")
            }
        })
        .collect::<Vec<_>>()
        .join(", ");
    for (a, b) in [("src", "dst"), ("dst", "src")] {
        let missing: i64 = sqlx::query_scalar(AssertSqlSafe(format!(
            "SELECT count(*) FROM (SELECT {comparable} FROM {schema}.{a}
                                   EXCEPT SELECT {comparable} FROM {schema}.{b}) x"
        )))
        .fetch_one(&mut conn)
        .await
        .unwrap();
        assert_eq!(missing, 0, "rows of {a} missing from {b}");
    }
    let count: i64 =
        sqlx::query_scalar(AssertSqlSafe(format!("SELECT count(*) FROM {schema}.dst")))
            .fetch_one(&mut conn)
            .await
            .unwrap();
    assert_eq!(count, 4);
}

#[tokio::test]
async fn a_large_copy_is_cut_into_batches_by_bytes() {
    let mut conn = connect().await;
    let columns: Vec<(String, PgType)> = [("id", "bigint"), ("h", "text"), ("n", "numeric(15,2)")]
        .iter()
        .map(|(n, t)| (n.to_string(), PgType::builtin(t).unwrap()))
        .collect();
    let batch_bytes = 256 * 1024;
    let started = Instant::now();
    let batches = copy_out(
        &mut conn,
        "COPY (SELECT g::bigint, md5(g::text), (g / 7.0)::numeric(15,2)
                 FROM generate_series(1, 200000) g) TO STDOUT (FORMAT binary)",
        &columns,
        batch_bytes,
    )
    .await
    .unwrap();
    let elapsed = started.elapsed();
    let rows: usize = batches.iter().map(RecordBatch::num_rows).sum();
    eprintln!(
        "decoded {rows} rows in {} batches in {elapsed:?} (debug build)",
        batches.len()
    );
    assert_eq!(rows, 200_000);
    // 8 + 16 + 4 + 32 Arrow bytes a row: about 4 400 rows a batch.
    assert!(batches.len() >= 40, "{} batches", batches.len());
    for b in &batches[..batches.len() - 1] {
        let size: usize = b.num_rows() * 60;
        assert!(
            (batch_bytes..batch_bytes + 60).contains(&size),
            "{} rows",
            b.num_rows()
        );
        assert!(b.get_array_memory_size() < 4 * batch_bytes);
    }
    let mut expected = 1i64;
    for b in &batches {
        let ids = b.column(0).as_any().downcast_ref::<Int64Array>().unwrap();
        for id in ids.values() {
            assert_eq!(*id, expected);
            expected += 1;
        }
    }
}

#[tokio::test]
async fn values_beyond_arrow_from_postgres_are_bad_rows() {
    let mut conn = connect().await;
    let columns: Vec<(String, PgType)> = [("id", "integer"), ("due", "date")]
        .iter()
        .map(|(n, t)| (n.to_string(), PgType::builtin(t).unwrap()))
        .collect();
    let e = copy_out(
        &mut conn,
        "COPY (VALUES (1, date '2024-01-01'), (2, date 'infinity')) TO STDOUT (FORMAT binary)",
        &columns,
        1 << 20,
    )
    .await
    .unwrap_err();
    let Error::BadRow(bad) = &e else {
        panic!("{e:?}")
    };
    assert_eq!(bad.record()["value"], "infinity");
    let e = e.to_string();
    assert!(
        e.contains("row 2, column \"due\": cannot read the value as date")
            && !e.contains("infinity"),
        "{e}"
    );
    // PostgreSQL's timestamps reach 294276 AD, Arrow's microseconds from 1970 only 294247.
    let mut conn = connect().await;
    let columns = vec![("ts".to_string(), PgType::builtin("timestamp").unwrap())];
    let e = copy_out(
        &mut conn,
        "COPY (SELECT timestamp '294276-12-31 23:59:59') TO STDOUT (FORMAT binary)",
        &columns,
        1 << 20,
    )
    .await
    .unwrap_err()
    .to_string();
    assert!(
        e.contains("row 1, column \"ts\"") && e.contains("294247 AD"),
        "{e}"
    );
}

#[tokio::test]
async fn enum_columns_take_their_labels_as_text() {
    let mut conn = connect().await;
    let owned = Schema::new(&mut conn, "sx_codec_enum").await;
    let schema = &owned.name;
    exec(
        &mut conn,
        &format!(
            "CREATE TYPE {schema}.mood AS ENUM ('sad', 'happy');
             CREATE TABLE {schema}.t (id bigint, m {schema}.mood);"
        ),
    )
    .await;
    let target = columns(&mut conn, &format!("{schema}.t")).await;
    assert_eq!(super::super::types::arrow_type(&target[1].1), None);
    let batch = RecordBatch::try_from_iter([
        (
            "id",
            std::sync::Arc::new(Int64Array::from(vec![1, 2])) as arrow::array::ArrayRef,
        ),
        (
            "m",
            std::sync::Arc::new(StringArray::from(vec![Some("happy"), None])),
        ),
    ])
    .unwrap();
    let encoder = CopyInEncoder::new(&batch.schema(), &target, "test".into()).unwrap();
    let mut buf = BytesMut::new();
    CopyInEncoder::header(&mut buf);
    encoder.encode(&batch, 1, &mut buf).unwrap();
    CopyInEncoder::trailer(&mut buf);
    let mut copy = conn
        .copy_in_raw(&format!(
            "COPY {schema}.t (id, m) FROM STDIN (FORMAT binary)"
        ))
        .await
        .unwrap();
    copy.send(buf.as_ref()).await.unwrap();
    assert_eq!(copy.finish().await.unwrap(), 2);
    let moods: Vec<Option<String>> = sqlx::query_scalar(AssertSqlSafe(format!(
        "SELECT m::text FROM {schema}.t ORDER BY id"
    )))
    .fetch_all(&mut conn)
    .await
    .unwrap();
    assert_eq!(moods, vec![Some("happy".to_string()), None]);
}
