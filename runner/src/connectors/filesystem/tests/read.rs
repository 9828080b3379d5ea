//! Reading files: the scenarios every file connector shares (`formats::tests::lakes`), and
//! the modification time of local files as a cursor.

use std::time::{Duration, SystemTime};

use arrow::datatypes::{DataType, TimeUnit};

use super::support::Lake;
use crate::connectors::formats::tests::lakes::Lake as _;
use crate::connectors::formats::tests::lakes::lake_tests;
use crate::connectors::formats::tests::lakes::read::{after, incremental, modified_times};
use crate::connectors::formats::tests::{id_values, ok, source};
use crate::engine::{FILE_MODIFIED_COLUMN, Rejects};

lake_tests!(#[tokio::test] Lake::new() => read);

fn set_mtime(lake: &Lake, relative: &str, secs: u64) {
    let time = SystemTime::UNIX_EPOCH + Duration::from_secs(secs);
    let file = std::fs::OpenOptions::new()
        .write(true)
        .open(lake.path(relative))
        .unwrap_or_else(|e| panic!("{e}"));
    file.set_modified(time).unwrap_or_else(|e| panic!("{e}"));
}

#[tokio::test]
async fn file_modified_cursor_adds_the_column_and_skips_unchanged_files() {
    let lake = Lake::new();
    for (file, ids, secs) in [
        ("drop/a.jsonl", "{\"id\": 1}\n{\"id\": 2}\n", 1_700_000_000),
        ("drop/b.jsonl", "{\"id\": 3}\n", 1_700_000_100),
        ("drop/c.jsonl", "{\"id\": 4}\n", 1_700_000_200),
    ] {
        lake.put(file, ids).await;
        set_mtime(&lake, file, secs);
    }
    let spec = incremental(source("drop/"), FILE_MODIFIED_COLUMN);
    let read = |filter| lake.read_with(spec.clone(), filter, 1 << 20, Rejects::failing());

    let (schema, first_run) = ok(read(None).await);
    let modified_type = DataType::Timestamp(TimeUnit::Microsecond, Some("+00:00".into()));
    assert_eq!(
        schema
            .field_with_name(FILE_MODIFIED_COLUMN)
            .map(|f| f.data_type().clone())
            .ok(),
        Some(modified_type)
    );
    assert_eq!(id_values(&first_run), [Some(1), Some(2), Some(3), Some(4)]);
    assert_eq!(
        modified_times(&first_run),
        [
            1_700_000_000_000_000,
            1_700_000_000_000_000,
            1_700_000_100_000_000,
            1_700_000_200_000_000
        ]
    );

    // The watermark the engine stores after the first file: only later files are read.
    let first = after(FILE_MODIFIED_COLUMN, "2023-11-14T22:13:20+00:00");
    let (_, next_run) = ok(read(Some(first)).await);
    assert_eq!(id_values(&next_run), [Some(3), Some(4)]);
    let second = after(FILE_MODIFIED_COLUMN, "2023-11-14T22:16:40+00:00");
    let (schema, nothing) = ok(read(Some(second)).await);
    assert!(nothing.is_empty());
    assert_eq!(schema.fields().len(), 2);
}
