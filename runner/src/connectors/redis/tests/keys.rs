//! Reading a key pattern that spans many `SCAN` rounds and mixes key types: hashes and
//! strings are rows, other types are skipped and counted.

use arrow::array::AsArray;
use arrow::datatypes::Int64Type;

use super::support::{column_i64, connection, password, raw, read};
use synqx_testkit::unique_name;

const HASHES: i64 = 2_345;
const STRINGS: i64 = 150;

#[tokio::test]
async fn a_pattern_reads_hashes_and_strings_over_many_scans_and_counts_what_it_skips() {
    let mut db = raw().await;
    let prefix = unique_name("rk");
    let mut pipe = redis::pipe();
    for i in 0..HASHES {
        pipe.cmd("HSET")
            .arg(format!("{prefix}:{i}"))
            .arg("id")
            .arg(i)
            .arg("name")
            .arg(format!("hash {i}"))
            .ignore();
    }
    for i in 0..STRINGS {
        let id = 100_000 + i;
        pipe.cmd("SET")
            .arg(format!("{prefix}:s{i}"))
            .arg(format!(r#"{{"id": {id}, "name": "string {id}"}}"#))
            .ignore();
    }
    for i in 0..3 {
        pipe.cmd("RPUSH")
            .arg(format!("{prefix}:l{i}"))
            .arg("x")
            .ignore();
    }
    pipe.cmd("SADD")
        .arg(format!("{prefix}:set"))
        .arg("x")
        .ignore();
    pipe.query_async::<()>(&mut db)
        .await
        .unwrap_or_else(|e| panic!("loading the keys: {e}"));

    let (batches, counters) = read(&connection(&password()), &format!("{prefix}:*"), None)
        .await
        .unwrap_or_else(|e| panic!("reading {prefix}:*: {e}"));
    let expected: Vec<i64> = (0..HASHES).chain(100_000..100_000 + STRINGS).collect();
    assert_eq!(column_i64(&batches, "id"), expected);
    for b in &batches {
        let ids = b.column_by_name("id").unwrap().as_primitive::<Int64Type>();
        let names = b.column_by_name("name").unwrap().as_string::<i32>();
        let keys = b.column_by_name("_key").unwrap().as_string::<i32>();
        for r in 0..b.num_rows() {
            let id = ids.value(r);
            let (key, name) = if id < 100_000 {
                (format!("{prefix}:{id}"), format!("hash {id}"))
            } else {
                (
                    format!("{prefix}:s{}", id - 100_000),
                    format!("string {id}"),
                )
            };
            assert_eq!(
                (keys.value(r), names.value(r)),
                (key.as_str(), name.as_str())
            );
        }
    }
    let notes = counters.notes().unwrap_or_default();
    assert!(
        notes.contains(&format!("skipped 4 keys matching \"{prefix}:*\"")),
        "{notes}"
    );
}
