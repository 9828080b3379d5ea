use arrow::array::{Array, AsArray};
use arrow::datatypes::{Date32Type, Float64Type, Int64Type, TimeUnit, TimestampMicrosecondType};
use synqx_api::pipeline::OnError;

use super::*;
use crate::connectors::formats::tests::{Memory, Rejected, err, id_values, ok, row_counts};
use crate::connectors::formats::write::Counting;
use crate::connectors::tests::field_names;

const EVENTS: &str = r#"{"id": 1, "user": {"name": "ann", "tags": ["a", "b"]}, "score": 1.5, "ok": true, "day": "2024-01-31", "at": "2024-01-31T10:00:00Z", "note": null}

{"id": 2, "user": {"name": "bob", "tags": []}, "score": 2, "ok": false, "day": "2024-02-01", "at": "2024-02-01T10:00:00.5+01:00", "note": "2024"}
{"id": 3, "user": null, "score": null, "ok": null, "day": null, "at": null, "note": "x"}
"#;

fn schema_of(text: &str) -> Schema {
    let mut sampler = JsonlSampler::default();
    ok(sampler.sample(text.as_bytes(), "events.jsonl", 1000));
    ok(sampler.finish("events.jsonl"))
        .map(|(s, _)| s)
        .unwrap_or_else(|| panic!("no schema"))
}

fn read(
    text: &str,
    schema: &Schema,
    batch_rows: usize,
    rejects: Rejects,
) -> Result<Vec<RecordBatch>> {
    JsonlBatches::new(
        text.as_bytes(),
        "events.jsonl",
        Arc::new(schema.clone()),
        batch_rows,
        rejects,
    )
    .collect()
}

#[test]
fn inference_keeps_key_order_nesting_and_temporal_strings() {
    let schema = schema_of(EVENTS);
    assert_eq!(
        field_names(&schema),
        vec!["id", "user", "score", "ok", "day", "at", "note"]
    );
    let user = DataType::Struct(Fields::from(vec![
        Field::new("name", DataType::Utf8, true),
        Field::new(
            "tags",
            DataType::List(Arc::new(Field::new_list_field(DataType::Utf8, true))),
            true,
        ),
    ]));
    assert_eq!(schema.field(1).data_type(), &user);
    assert_eq!(schema.field(2).data_type(), &DataType::Float64);
    assert_eq!(schema.field(3).data_type(), &DataType::Boolean);
    assert_eq!(schema.field(4).data_type(), &DataType::Date32);
    assert_eq!(
        schema.field(5).data_type(),
        &DataType::Timestamp(TimeUnit::Microsecond, Some("+00:00".into()))
    );
    // A quoted number stays text.
    assert_eq!(schema.field(6).data_type(), &DataType::Utf8);
}

#[test]
fn lines_decode_into_typed_and_nested_columns() {
    let schema = schema_of(EVENTS);
    let batches = ok(read(EVENTS, &schema, 2, Rejects::failing()));
    assert_eq!(row_counts(&batches), [2, 1]);
    let first = &batches[0];
    assert_eq!(
        first
            .column(0)
            .as_primitive::<Int64Type>()
            .values()
            .to_vec(),
        vec![1, 2]
    );
    let user = first.column(1).as_struct();
    assert_eq!(user.column(0).as_string::<i32>().value(1), "bob");
    assert_eq!(
        user.column(1)
            .as_list::<i32>()
            .value(0)
            .as_string::<i32>()
            .value(1),
        "b"
    );
    assert_eq!(first.column(2).as_primitive::<Float64Type>().value(1), 2.0);
    assert_eq!(first.column(4).as_primitive::<Date32Type>().value(0), 19753);
    assert_eq!(
        first
            .column(5)
            .as_primitive::<TimestampMicrosecondType>()
            .value(1),
        1_706_778_000_500_000
    );
    assert!(batches[1].column(1).is_null(0));
}

#[test]
fn bad_lines_fail_with_file_line_column_and_value() {
    let schema = Schema::new(vec![
        Field::new("id", DataType::Int64, true),
        Field::new("total", DataType::Float64, true),
    ]);
    let text = "{\"id\": 1, \"total\": 2.5}\n\n{\"id\": 2, \"total\": \"12,5x\"}\n";
    assert_eq!(
        err(read(text, &schema, 100, Rejects::failing())),
        "events.jsonl: line 3, column \"total\": cannot parse the value as float64; set onError: skip to skip such rows into the rejected file"
    );
    let broken = "{\"id\": 1}\n{\"id\": 2,, }\n";
    assert_eq!(
        err(read(broken, &schema, 100, Rejects::failing())),
        "events.jsonl: line 2: invalid JSON at column 10: key must be a string; set onError: skip to skip such rows into the rejected file"
    );
    let array = "[1, 2]\n";
    let message = err(read(array, &schema, 100, Rejects::failing()));
    assert!(
        message.starts_with("events.jsonl: line 1: expected a JSON object, found an array"),
        "{message}"
    );
}

#[test]
fn skipped_lines_are_isolated_counted_and_dead_lettered() {
    let schema = Schema::new(vec![Field::new("id", DataType::Int64, true)]);
    let mut text = String::new();
    for i in 1..=20 {
        match i {
            5 => text.push_str("{\"id\": \"five\"}\n"),
            6 => text.push_str("{\"id\": 6\n"),
            17 => text.push_str("{\"id\": 1} {\"id\": 2}\n"),
            _ => text.push_str(&format!("{{\"id\": {i}}}\n")),
        }
    }
    let rejected = Rejected::new(OnError::Skip);
    let batches = ok(read(&text, &schema, 8, rejected.rejects()));
    let expected: Vec<Option<i64>> = (1..=20)
        .filter(|i| ![5, 6, 17].contains(i))
        .map(Some)
        .collect();
    assert_eq!(id_values(&batches), expected);
    assert_eq!(rejected.counters.snapshot().rows_rejected, 3);
    let dead_lines = rejected.lines();
    let locations: Vec<&str> = dead_lines
        .iter()
        .filter_map(|v| v["location"].as_str())
        .collect();
    assert_eq!(
        locations,
        vec![
            "events.jsonl: line 5",
            "events.jsonl: line 6",
            "events.jsonl: line 17"
        ]
    );
    assert_eq!(dead_lines[0]["column"], "id");
    assert_eq!(dead_lines[0]["problem"], "cannot parse the value as int64");
    assert_eq!(dead_lines[0]["value"], "five");
    assert_eq!(dead_lines[0]["row"], "{\"id\": \"five\"}");
    assert_eq!(
        dead_lines[1]["problem"],
        "invalid JSON at column 8: EOF while parsing an object"
    );
    assert_eq!(
        dead_lines[2]["problem"],
        "invalid JSON at column 11: trailing characters"
    );
}

#[test]
fn written_lines_read_back_with_the_same_values() {
    let schema = Arc::new(schema_of(EVENTS));
    let batches = ok(read(EVENTS, &schema, 10, Rejects::failing()));
    let out = Memory::default();
    let mut writer = JsonlWriter::new(
        Encoded::new(
            Counting::new(Box::new(out.clone())),
            Some(flate2::Compression::default()),
        ),
        "o.jsonl.gz",
    );
    for b in &batches {
        ok(writer.write(b));
    }
    let bytes = ok(Box::new(writer).finish());
    let gz = out.bytes();
    assert_eq!(bytes, gz.len() as u64);
    let text = crate::connectors::formats::text_input(Box::new(std::io::Cursor::new(gz)), true);
    let again: Vec<RecordBatch> =
        ok(JsonlBatches::new(text, "o.jsonl.gz", schema.clone(), 10, Rejects::failing()).collect());
    assert_eq!(again, batches);
    let mut plain = Vec::new();
    let mut w = arrow::json::WriterBuilder::new()
        .with_explicit_nulls(true)
        .build::<_, LineDelimited>(&mut plain);
    ok(w.write(&batches[0]).map_err(|e| Error::arrow("test", e)));
    let first_line = String::from_utf8_lossy(&plain)
        .lines()
        .next()
        .unwrap_or_default()
        .to_string();
    assert_eq!(
        first_line,
        r#"{"id":1,"user":{"name":"ann","tags":["a","b"]},"score":1.5,"ok":true,"day":"2024-01-31","at":"2024-01-31T10:00:00Z","note":null}"#
    );
    assert_eq!(
        ok(first_keys("\n{\"b\":1,\"a\":2}\n".as_bytes(), "k.jsonl")),
        vec!["b", "a"]
    );
}

/// Lines formatted in pieces on several threads come out as one thread writes them.
#[test]
fn pieces_formatted_on_several_threads_make_the_same_lines() {
    let schema = Arc::new(schema_of(EVENTS));
    let batches = ok(read(EVENTS, &schema, 10, Rejects::failing()));
    let write = |pieces: Pieces| {
        let out = Memory::default();
        let mut writer = JsonlWriter::with_pieces(
            Encoded::new(Counting::new(Box::new(out.clone())), None),
            "o.jsonl",
            pieces,
        );
        for b in &batches {
            ok(writer.write(b));
        }
        let bytes = ok(Box::new(writer).finish());
        assert_eq!(bytes, out.bytes().len() as u64);
        String::from_utf8_lossy(&out.bytes()).to_string()
    };
    let one = write(Pieces::sized(1, usize::MAX));
    let rows: usize = batches.iter().map(RecordBatch::num_rows).sum();
    assert_eq!(one.lines().count(), rows);
    assert!(one.starts_with(r#"{"id":1,"user":{"name":"ann""#), "{one}");
    // One row a piece: every row formatted on its own, three at a time.
    assert_eq!(write(Pieces::sized(3, 1)), one);
}
