//! The Redis source and sink against redis-server: hashes, JSON strings and streams both
//! ways, streams read incrementally over three runs, overwrite (and a failed one), upsert,
//! TTL, a wrong password and an unreachable server.

use std::sync::Arc;

use arrow::array::{Array, AsArray, Float64Array, RecordBatch};
use arrow::datatypes::{DataType, Float64Type, Int64Type};
use synqx_api::pipeline::{RedisWriteKind, WriteMode};

use super::support::{
    check, column_i64, connection, get, hashes, hget, nothing_staged, orders, password, pttl, put,
    raw, read, write,
};
use crate::engine::cursor::{MaxTracker, later};
use crate::error::Error;
use synqx_testkit::unique_name;

#[tokio::test]
async fn hashes_round_trip_with_their_types() {
    let _ = raw().await;
    let prefix = unique_name("rh");
    let conn = connection(&password());
    let out = hashes(
        &conn,
        &format!("{prefix}:{{id}}"),
        WriteMode::Append,
        orders(0..25),
    )
    .await;
    assert_eq!(out.rows, 25);
    let (batches, _) = read(&conn, &format!("{prefix}:*"), None).await.unwrap();
    let schema = batches[0].schema();
    assert_eq!(schema.field(0).name(), "_key");
    assert_eq!(
        schema.field_with_name("id").unwrap().data_type(),
        &DataType::Int64
    );
    assert_eq!(
        schema.field_with_name("price").unwrap().data_type(),
        &DataType::Float64
    );
    assert_eq!(
        schema.field_with_name("paid").unwrap().data_type(),
        &DataType::Boolean
    );
    assert!(matches!(
        schema.field_with_name("at").unwrap().data_type(),
        DataType::Timestamp(_, Some(_))
    ));
    assert_eq!(column_i64(&batches, "id"), (0..25).collect::<Vec<_>>());
    for b in &batches {
        let ids = b.column_by_name("id").unwrap().as_primitive::<Int64Type>();
        let keys = b.column_by_name("_key").unwrap().as_string::<i32>();
        let names = b.column_by_name("name").unwrap().as_string::<i32>();
        let prices = b
            .column_by_name("price")
            .unwrap()
            .as_primitive::<Float64Type>();
        for r in 0..b.num_rows() {
            let id = ids.value(r);
            assert_eq!(keys.value(r), format!("{prefix}:{id}"));
            assert_eq!(names.value(r), format!("order {id}, \"quoted\" ü"));
            // A null is no field at all, and reads back as null.
            assert_eq!(prices.is_null(r), id % 3 == 0, "id {id}");
            if id % 3 != 0 {
                assert_eq!(prices.value(r), id as f64 * 2.5);
            }
        }
    }
}

#[tokio::test]
async fn json_strings_round_trip_and_expire_with_ttl() {
    let mut db = raw().await;
    let prefix = unique_name("rj");
    let conn = connection(&password());
    write(
        &conn,
        &format!("{prefix}:o:{{id}}"),
        RedisWriteKind::Json,
        WriteMode::Append,
        Some("1h"),
        vec![Ok(orders(0..10))],
    )
    .await
    .unwrap();
    let text = get(&mut db, &format!("{prefix}:o:4"))
        .await
        .unwrap_or_else(|| panic!("no key {prefix}:o:4"));
    let json: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert_eq!(json["id"], 4);
    assert_eq!(json["price"], 10.0);
    assert_eq!(json["paid"], true);
    let ttl = pttl(&mut db, &format!("{prefix}:o:4")).await;
    assert!(ttl > 3_500_000 && ttl <= 3_600_000, "PTTL {ttl}");
    let (batches, _) = read(&conn, &format!("{prefix}:o:*"), None).await.unwrap();
    assert_eq!(column_i64(&batches, "id"), (0..10).collect::<Vec<_>>());
    assert_eq!(
        batches[0]
            .schema()
            .field_with_name("paid")
            .unwrap()
            .data_type(),
        &DataType::Boolean
    );
}

#[tokio::test]
async fn streams_are_read_incrementally_over_three_runs() {
    let mut db = raw().await;
    let stream = unique_name("rs");
    let conn = connection(&password());
    // Many entries in the same millisecond: ids like 5-10 must come after 5-9.
    for i in 0..12 {
        let _: String = redis::cmd("XADD")
            .arg(&stream)
            .arg(format!("5-{}", i + 1))
            .arg("n")
            .arg(i)
            .query_async(&mut db)
            .await
            .unwrap();
    }
    let mut watermark: Option<String> = None;
    let mut seen = Vec::new();
    for (run, new_entries) in [(1, 0), (2, 1500), (3, 0)] {
        for i in 0..new_entries {
            let _: String = redis::cmd("XADD")
                .arg(&stream)
                .arg("*")
                .arg("n")
                .arg(100 + i)
                .query_async(&mut db)
                .await
                .unwrap();
        }
        let (batches, _) = read(&conn, &stream, watermark.as_deref()).await.unwrap();
        let mut tracker = MaxTracker::new("_id");
        let mut n = Vec::new();
        for b in &batches {
            tracker.observe(b).unwrap();
            n.extend(
                b.column_by_name("n")
                    .unwrap()
                    .as_primitive::<Int64Type>()
                    .values()
                    .iter()
                    .copied(),
            );
        }
        watermark = later(watermark.as_deref(), tracker.value().unwrap().as_deref());
        match run {
            1 => {
                assert_eq!(n, (0..12).collect::<Vec<_>>());
                assert_eq!(watermark.as_deref(), Some("5-12"));
            }
            2 => assert_eq!(
                n,
                (100..1600).collect::<Vec<_>>(),
                "only the new entries, across XRANGE pages"
            ),
            _ => assert!(n.is_empty(), "nothing new: {n:?}"),
        }
        seen.extend(n);
    }
    assert_eq!(seen.len(), 1512);
    // Written back to another stream with XADD, the entries keep their fields.
    let copy = unique_name("rs_copy");
    put(
        &conn,
        &copy,
        RedisWriteKind::Stream,
        WriteMode::Append,
        orders(0..5),
    )
    .await;
    let len: i64 = redis::cmd("XLEN")
        .arg(&copy)
        .query_async(&mut db)
        .await
        .unwrap();
    assert_eq!(len, 5);
    let (batches, _) = read(&conn, &copy, None).await.unwrap();
    assert_eq!(column_i64(&batches, "id"), (0..5).collect::<Vec<_>>());
}

#[tokio::test]
async fn overwrite_swaps_keys_and_a_failed_one_leaves_the_old() {
    let mut db = raw().await;
    let prefix = unique_name("ro");
    let template = format!("{prefix}:{{id}}");
    let conn = connection(&password());
    hashes(&conn, &template, WriteMode::Append, orders(0..5)).await;
    hashes(&conn, &template, WriteMode::Overwrite, orders(3..8)).await;
    let (batches, _) = read(&conn, &format!("{prefix}:*"), None).await.unwrap();
    assert_eq!(column_i64(&batches, "id"), (3..8).collect::<Vec<_>>());
    // A failing input after a first batch: the old keys stay, nothing staged is left.
    let failed = write(
        &conn,
        &template,
        RedisWriteKind::Hash,
        WriteMode::Overwrite,
        None,
        vec![
            Ok(orders(100..110)),
            Err(Error::Config("source broke".into())),
        ],
    )
    .await;
    assert!(failed.is_err());
    let (batches, _) = read(&conn, &format!("{prefix}:*"), None).await.unwrap();
    assert_eq!(column_i64(&batches, "id"), (3..8).collect::<Vec<_>>());
    nothing_staged(&mut db, &prefix).await;
    // Streams are swapped whole.
    let stream = unique_name("ro_stream");
    for (mode, ids) in [(WriteMode::Append, 0..4), (WriteMode::Overwrite, 10..12)] {
        put(
            &conn,
            &stream,
            RedisWriteKind::Stream,
            mode,
            orders(ids.clone()),
        )
        .await;
        let (batches, _) = read(&conn, &stream, None).await.unwrap();
        assert_eq!(
            column_i64(&batches, "id"),
            ids.collect::<Vec<_>>(),
            "{mode:?}"
        );
    }
}

#[tokio::test]
async fn upsert_replaces_whole_hashes_and_append_merges_fields() {
    let mut db = raw().await;
    let prefix = unique_name("ru");
    let template = format!("{prefix}:{{id}}");
    let conn = connection(&password());
    hashes(&conn, &template, WriteMode::Append, orders(0..3)).await;
    // Rows of id 1 without a price: upsert drops the old price, append would keep it.
    let mut one = orders(1..2);
    let cols: Vec<Arc<dyn Array>> = one
        .columns()
        .iter()
        .enumerate()
        .map(|(i, c)| {
            if i == 2 {
                Arc::new(Float64Array::from(vec![None::<f64>])) as Arc<dyn Array>
            } else {
                c.clone()
            }
        })
        .collect();
    one = RecordBatch::try_new(one.schema(), cols).unwrap();
    let key = format!("{prefix}:1");
    for (mode, price) in [(WriteMode::Append, Some("2.5")), (WriteMode::Upsert, None)] {
        hashes(&conn, &template, mode, one.clone()).await;
        assert_eq!(
            hget(&mut db, &key, "price").await.as_deref(),
            price,
            "{mode:?}"
        );
        assert_eq!(
            hget(&mut db, &key, "id").await.as_deref(),
            Some("1"),
            "{mode:?}"
        );
    }
}

#[tokio::test]
async fn bad_templates_wrong_passwords_and_unreachable_servers_are_clear() {
    let _ = raw().await;
    let conn = connection(&password());
    let e = write(
        &conn,
        "x:{missing}",
        RedisWriteKind::Hash,
        WriteMode::Append,
        None,
        vec![Ok(orders(0..1))],
    )
    .await
    .err()
    .unwrap()
    .to_string();
    assert!(e.contains("key template \"x:{missing}\" names column \"missing\", which the rows do not have (columns: id, name, price, paid, at)"), "{e}");
    let bad = connection("not-the-password");
    let e = read(&bad, "x:*", None).await.err().unwrap().to_string();
    assert!(
        e.starts_with("Connection \"cache\": connecting to Redis at 127.0.0.1:"),
        "{e}"
    );
    assert!(
        e.contains("check the Connection's username and password"),
        "{e}"
    );
    assert!(!e.contains("not-the-password"), "{e}");
    let report = check(&bad).await;
    assert_eq!(report.reason.as_str(), "Unauthorized", "{report:?}");
    let ok = check(&conn).await;
    assert!(
        ok.ready && ok.message.contains("connected to Redis 7."),
        "{ok:?}"
    );
    let mut down = connection("x");
    if let Some(r) = down.redis.as_mut() {
        r.port = Some(9);
    }
    let report = check(&down).await;
    assert_eq!(report.reason.as_str(), "Unreachable", "{report:?}");
}

#[tokio::test]
async fn schema_drift_after_the_sample_names_the_entry_and_field() {
    let mut db = raw().await;
    let stream = unique_name("r_drift");
    let mut pipe = redis::pipe();
    for i in 0..1000 {
        pipe.cmd("XADD")
            .arg(&stream)
            .arg("*")
            .arg("n")
            .arg(i)
            .ignore();
    }
    pipe.cmd("XADD")
        .arg(&stream)
        .arg("*")
        .arg("n")
        .arg(1)
        .arg("surprise")
        .arg("x")
        .ignore();
    pipe.query_async::<()>(&mut db).await.unwrap();
    let e = read(&connection(&password()), &stream, None)
        .await
        .err()
        .unwrap()
        .to_string();
    assert!(e.contains("record 1"), "{e}");
    assert!(
        e.contains("field \"surprise\" was not in the documents the schema was inferred from"),
        "{e}"
    );
}
