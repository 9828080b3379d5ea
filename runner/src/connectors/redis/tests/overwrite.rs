//! Overwrite replaces exactly the keys its template wrote: not the keys of another template
//! under the same prefix, not unrelated keys a leading `{column}` would match, not staged
//! keys; a killed overwrite leaves staged keys that expire; `ttl` on hashes through every
//! mode; JSON strings flattened by `nested: flatten`.

use std::sync::Arc;
use std::time::{Duration, Instant};

use arrow::array::{Array, AsArray, Int64Array, RecordBatch, StringArray};
use arrow::datatypes::{DataType, Field, Schema};
use futures::StreamExt;
use synqx_api::pipeline::{Nested, RedisWriteKind, WriteMode};
use synqx_testkit::unique_name;

use super::support::{
    Db, column_i64, connection, get, hashes, hget, keys, nothing_staged, orders, password, pttl,
    put, raw, read, read_source, source, write, write_stream,
};
use crate::connectors::redis::owned::STAGING_TTL;
use crate::engine::SchemaStream;

async fn set(db: &mut Db, key: &str, value: &str) {
    redis::cmd("SET")
        .arg(key)
        .arg(value)
        .query_async::<()>(db)
        .await
        .unwrap_or_else(|e| panic!("SET {key}: {e}"));
}

/// Rows with a text `key` column (`{prefix}-{i}`), a `tenant` and an `n`.
fn keyed(prefix: &str, ids: std::ops::Range<i64>) -> RecordBatch {
    let schema = Arc::new(Schema::new(vec![
        Field::new("key", DataType::Utf8, false),
        Field::new("tenant", DataType::Utf8, false),
        Field::new("n", DataType::Int64, false),
    ]));
    RecordBatch::try_new(
        schema,
        vec![
            Arc::new(StringArray::from_iter_values(
                ids.clone().map(|i| format!("{prefix}-{i}")),
            )),
            Arc::new(StringArray::from_iter_values(ids.clone().map(|_| prefix))),
            Arc::new(Int64Array::from_iter_values(ids)),
        ],
    )
    .unwrap_or_else(|e| panic!("{e}"))
}

#[tokio::test]
async fn overwrite_keeps_the_keys_of_another_template_under_the_same_prefix() {
    let mut db = raw().await;
    let prefix = unique_name("rk");
    let conn = connection(&password());
    let users = format!("{prefix}:user:{{id}}");
    let sessions = format!("{prefix}:user:sessions:{{id}}");
    hashes(&conn, &users, WriteMode::Append, orders(0..5)).await;
    hashes(&conn, &sessions, WriteMode::Append, orders(0..2)).await;
    set(&mut db, &format!("{prefix}:user:sessions:raw"), "kept").await;
    // Two batches with a key in both: staged once, swapped in once.
    write(
        &conn,
        &users,
        RedisWriteKind::Hash,
        WriteMode::Overwrite,
        None,
        vec![Ok(orders(3..8)), Ok(orders(5..6))],
    )
    .await
    .unwrap_or_else(|e| panic!("overwrite: {e}"));
    let mut expected: Vec<String> = (3..8).map(|i| format!("{prefix}:user:{i}")).collect();
    expected.extend([
        format!("{prefix}:user:sessions:0"),
        format!("{prefix}:user:sessions:1"),
        format!("{prefix}:user:sessions:raw"),
    ]);
    expected.sort();
    assert_eq!(keys(&mut db, &format!("{prefix}:*")).await, expected);
    let (batches, _) = read(&conn, &format!("{prefix}:user:sessions:[0-9]*"), None)
        .await
        .unwrap();
    assert_eq!(column_i64(&batches, "id"), [0, 1]);
    // The template records exactly its keys.
    let recorded: Vec<String> = redis::cmd("ZRANGE")
        .arg(format!("synqx:keys:{users}"))
        .arg(0)
        .arg(-1)
        .query_async(&mut db)
        .await
        .unwrap();
    let mut recorded = recorded;
    recorded.sort();
    let mut users_now: Vec<String> = (3..8).map(|i| format!("{prefix}:user:{i}")).collect();
    users_now.sort();
    assert_eq!(recorded, users_now);
    nothing_staged(&mut db, &prefix).await;
}

#[tokio::test]
async fn overwrite_of_templates_that_start_with_a_column_touches_only_their_keys() {
    let mut db = raw().await;
    let prefix = unique_name("rc");
    let conn = connection(&password());
    let unrelated = [format!("{prefix}-unrelated"), format!("{prefix}:a:b")];
    for key in &unrelated {
        set(&mut db, key, "kept").await;
    }
    for (template, kind) in [
        ("{key}", RedisWriteKind::Json),
        ("{tenant}:{n}", RedisWriteKind::Hash),
    ] {
        put(
            &conn,
            template,
            kind,
            WriteMode::Append,
            keyed(&prefix, 0..4),
        )
        .await;
        put(
            &conn,
            template,
            kind,
            WriteMode::Overwrite,
            keyed(&prefix, 2..6),
        )
        .await;
    }
    let mut expected: Vec<String> = (2..6)
        .flat_map(|i| [format!("{prefix}-{i}"), format!("{prefix}:{i}")])
        .chain(unrelated.iter().cloned())
        .collect();
    expected.sort();
    assert_eq!(keys(&mut db, &format!("{prefix}*")).await, expected);
    for key in &unrelated {
        assert_eq!(get(&mut db, key).await.as_deref(), Some("kept"), "{key}");
    }
    let text = get(&mut db, &format!("{prefix}-5"))
        .await
        .unwrap_or_default();
    assert_eq!(
        serde_json::from_str::<serde_json::Value>(&text).unwrap()["n"],
        5,
        "{text}"
    );
    assert_eq!(
        hget(&mut db, &format!("{prefix}:5"), "n").await.as_deref(),
        Some("5")
    );
    nothing_staged(&mut db, &prefix).await;
}

#[tokio::test]
async fn a_killed_overwrite_leaves_staged_keys_that_expire_and_the_old_keys() {
    let mut db = raw().await;
    let prefix = unique_name("rkill");
    let conn = connection(&password());
    let template = format!("{prefix}:{{id}}");
    hashes(&conn, &template, WriteMode::Append, orders(0..3)).await;
    // A source that sends one batch and then never ends: the run is killed mid-write.
    let first = orders(10..15);
    let input = SchemaStream::new(
        first.schema(),
        futures::stream::iter([Ok(first)]).chain(futures::stream::pending()),
    );
    let killed = tokio::spawn({
        let conn = conn.clone();
        let template = template.clone();
        async move {
            write_stream(
                &conn,
                &template,
                RedisWriteKind::Hash,
                WriteMode::Overwrite,
                None,
                input,
            )
            .await
        }
    });
    let pattern = format!("synqx-staging:*:{prefix}:*");
    let deadline = Instant::now() + Duration::from_secs(30);
    let staged = loop {
        let found = keys(&mut db, &pattern).await;
        if found.len() == 5 {
            break found;
        }
        assert!(
            Instant::now() < deadline,
            "the first batch was never staged: {found:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    killed.abort();
    assert!(killed.await.is_err_and(|e| e.is_cancelled()));
    let most = i64::try_from(STAGING_TTL.as_millis()).unwrap();
    for key in &staged {
        let ttl = pttl(&mut db, key).await;
        assert!(ttl > most - 600_000 && ttl <= most, "{key}: PTTL {ttl}");
    }
    let (batches, _) = read(&conn, &format!("{prefix}:*"), None).await.unwrap();
    assert_eq!(column_i64(&batches, "id"), [0, 1, 2], "the old keys stay");
    // The next overwrite swaps in its own keys, never the leftovers.
    hashes(&conn, &template, WriteMode::Overwrite, orders(20..22)).await;
    let (batches, _) = read(&conn, &format!("{prefix}:*"), None).await.unwrap();
    assert_eq!(column_i64(&batches, "id"), [20, 21]);
    assert_eq!(keys(&mut db, &pattern).await, staged, "left to expire");
}

#[tokio::test]
async fn ttl_on_hashes_is_set_by_append_upsert_and_overwrite() {
    let mut db = raw().await;
    let prefix = unique_name("rttl");
    let conn = connection(&password());
    let template = format!("{prefix}:{{id}}");
    let hour = 3_600_000;
    for (mode, ttl, expected) in [
        (WriteMode::Append, Some("1h"), hour),
        (WriteMode::Upsert, Some("2h"), 2 * hour),
        (WriteMode::Overwrite, Some("30m"), hour / 2),
    ] {
        write(
            &conn,
            &template,
            RedisWriteKind::Hash,
            mode,
            ttl,
            vec![Ok(orders(0..3))],
        )
        .await
        .unwrap_or_else(|e| panic!("{mode:?}: {e}"));
        for id in 0..3 {
            let ttl = pttl(&mut db, &format!("{prefix}:{id}")).await;
            assert!(
                ttl > expected - 60_000 && ttl <= expected,
                "{mode:?}: PTTL {ttl}"
            );
        }
    }
    // An overwrite without ttl leaves keys that never expire (not the staging TTL).
    hashes(&conn, &template, WriteMode::Overwrite, orders(0..3)).await;
    assert_eq!(pttl(&mut db, &format!("{prefix}:1")).await, -1);
}

#[tokio::test]
async fn ttl_on_a_stream_is_refused_naming_the_field() {
    let _ = raw().await;
    let stream = unique_name("rst");
    let e = write(
        &connection(&password()),
        &stream,
        RedisWriteKind::Stream,
        WriteMode::Append,
        Some("1h"),
        vec![Ok(orders(0..1))],
    )
    .await
    .unwrap_err()
    .to_string();
    assert!(
        e.contains(&format!(
            "\"{stream}\": redis.ttl applies to keys written as kind hash or json"
        )),
        "{e}"
    );
}

#[tokio::test]
async fn json_strings_are_flattened_with_nested_flatten() {
    let mut db = raw().await;
    let prefix = unique_name("rn");
    for i in 0..3 {
        set(
            &mut db,
            &format!("{prefix}:{i}"),
            &format!(
                r#"{{"id": {i}, "customer": {{"name": "c{i}", "tier": {}}}}}"#,
                i * 10
            ),
        )
        .await;
    }
    let conn = connection(&password());
    let mut flat = source(&format!("{prefix}:*"));
    flat.nested = Some(Nested::Flatten);
    let (batches, _) = read_source(&conn, flat, None).await.unwrap();
    assert_eq!(column_i64(&batches, "id"), [0, 1, 2]);
    assert_eq!(column_i64(&batches, "customer.tier"), [0, 10, 20]);
    let mut names: Vec<String> = batches
        .iter()
        .flat_map(|b| {
            let c = b
                .column_by_name("customer.name")
                .unwrap()
                .as_string::<i32>();
            (0..c.len())
                .map(|r| c.value(r).to_string())
                .collect::<Vec<_>>()
        })
        .collect();
    names.sort();
    assert_eq!(names, ["c0", "c1", "c2"]);
    // By default the object stays JSON text.
    let (batches, _) = read(&conn, &format!("{prefix}:*"), None).await.unwrap();
    let schema = batches[0].schema();
    assert_eq!(
        schema.field_with_name("customer").unwrap().data_type(),
        &DataType::Utf8
    );
    assert!(schema.field_with_name("customer.name").is_err());
}
