use arrow::array::{Array, AsArray, Int64Array, StringArray, StructArray};
use arrow::datatypes::{Fields, Float64Type, Int64Type, TimeUnit};
use synqx_api::pipeline::OnError;

use std::sync::Arc;

use arrow::array::RecordBatch;
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};

use super::*;
use crate::connectors::formats::tests::{Memory, Rejected, err, id_values, ok, row_counts};
use crate::connectors::formats::write::Counting;
use crate::connectors::formats::write::{Encoded, FileWriter};
use crate::engine::Rejects;

const ORDERS: &str = "id,total,paid,day,at,note\n\
1,10.5,true,2024-01-31,2024-01-31T10:00:00+00:00,\"a, b\"\n\
2,7,false,2024-02-01,2024-02-01 11:30:00Z,\"say \"\"hi\"\"\"\n\
3,,,,,\n\
4,1e3,TRUE,2024-02-03,2024-02-03T00:00:00.250+02:00,\"two\nlines\"\n";

fn schema_of(text: &str, settings: &CsvSettings) -> Schema {
    let mut sampler = CsvSampler::default();
    sampler
        .sample(text.as_bytes(), settings, "orders.csv", 1000)
        .unwrap_or_else(|e| panic!("{e}"));
    sampler
        .finish()
        .map(|(schema, _)| schema)
        .unwrap_or_else(|| panic!("no schema"))
}

fn read(
    text: &str,
    schema: &Schema,
    batch_rows: usize,
    rejects: Rejects,
) -> Result<Vec<RecordBatch>> {
    CsvBatches::new(
        std::io::Cursor::new(text.as_bytes().to_vec()),
        &CsvSettings::default(),
        "orders.csv",
        Arc::new(schema.clone()),
        batch_rows,
        1,
        rejects,
    )?
    .collect()
}

#[test]
fn sample_infers_every_scalar_type() {
    let schema = schema_of(ORDERS, &CsvSettings::default());
    let types: Vec<(&str, &DataType)> = schema
        .fields()
        .iter()
        .map(|f| (f.name().as_str(), f.data_type()))
        .collect();
    assert_eq!(
        types,
        vec![
            ("id", &DataType::Int64),
            ("total", &DataType::Float64),
            ("paid", &DataType::Boolean),
            ("day", &DataType::Date32),
            (
                "at",
                &DataType::Timestamp(TimeUnit::Microsecond, Some("+00:00".into()))
            ),
            ("note", &DataType::Utf8),
        ]
    );
}

#[test]
fn quoted_fields_and_nulls_are_read() {
    let schema = schema_of(ORDERS, &CsvSettings::default());
    let batches = ok(read(ORDERS, &schema, 3, Rejects::failing()));
    assert_eq!(row_counts(&batches), [3, 1]);
    let notes: Vec<Option<&str>> = batches
        .iter()
        .flat_map(|b| b.column(5).as_string::<i32>().iter())
        .collect();
    assert_eq!(
        notes,
        vec![Some("a, b"), Some("say \"hi\""), None, Some("two\nlines")]
    );
    let totals: Vec<Option<f64>> = batches
        .iter()
        .flat_map(|b| b.column(1).as_primitive::<Float64Type>().iter())
        .collect();
    assert_eq!(totals, vec![Some(10.5), Some(7.0), None, Some(1000.0)]);
    let at = batches[1]
        .column(4)
        .as_primitive::<arrow::datatypes::TimestampMicrosecondType>();
    // 2024-02-03T00:00:00.250+02:00 is 2024-02-02T22:00:00.250Z.
    assert_eq!(at.value(0), 1_706_911_200_250_000);
}

fn orders_schema() -> Schema {
    Schema::new(vec![
        Field::new("id", DataType::Int64, true),
        Field::new("total", DataType::Float64, true),
    ])
}

#[test]
fn a_bad_value_fails_the_read_naming_file_line_column_and_value() {
    let text = "id,total\n1,2.5\n2,\"x\ny\"\n3,\"12,5x\"\n";
    let schema = orders_schema();
    // The second record spans lines 3 and 4: it is reported at the line it starts on.
    assert_eq!(
        err(read(text, &schema, 100, Rejects::failing())),
        "orders.csv: line 3, column \"total\": cannot parse the value as float64; set onError: skip to skip such rows into the rejected file"
    );
    let only_last = "id,total\n1,2.5\n3,\"12,5x\"\n";
    let message = err(read(only_last, &schema, 100, Rejects::failing()));
    assert!(
        message
            .starts_with("orders.csv: line 3, column \"total\": cannot parse the value as float64"),
        "{message}"
    );
    assert!(!message.contains("12,5x"), "{message}");
}

#[test]
fn under_fail_the_bad_row_goes_to_the_rejected_file_the_error_names() {
    let text = "id,total\n1,2.5\n3,Ferdinand-4711\n";
    let schema = orders_schema();
    let rejected = Rejected::new(OnError::Fail);
    assert_eq!(
        err(read(text, &schema, 100, rejected.rejects())),
        format!(
            "orders.csv: line 3, column \"total\": cannot parse the value as float64; the row is in the rejected file {}; set onError: skip to skip such rows into the rejected file",
            rejected.path.display()
        )
    );
    assert_eq!(
        rejected.lines(),
        vec![
            serde_json::json!({"location": "orders.csv: line 3", "column": "total",
            "problem": "cannot parse the value as float64", "value": "Ferdinand-4711",
            "row": "3,Ferdinand-4711"})
        ]
    );
    assert_eq!(
        rejected.counters.snapshot().rows_rejected,
        0,
        "a failing row is not a skipped one"
    );
}

#[test]
fn skipped_rows_are_counted_and_written_to_the_dead_letter_file() {
    let text = "id,total\n1,2.5\n2,oops\n3\n4,4.5,extra\n5,5.5\n";
    let schema = orders_schema();
    let rejected = Rejected::new(OnError::Skip);
    let batches = ok(read(text, &schema, 2, rejected.rejects()));
    assert_eq!(id_values(&batches), [Some(1), Some(5)]);
    assert_eq!(rejected.counters.snapshot().rows_rejected, 3);
    assert_eq!(
        rejected.lines(),
        vec![
            serde_json::json!({"location": "orders.csv: line 3", "column": "total", "problem": "cannot parse the value as float64", "value": "oops", "row": "2,oops"}),
            serde_json::json!({"location": "orders.csv: line 4", "problem": "expected 2 fields, found 1", "row": "3"}),
            serde_json::json!({"location": "orders.csv: line 5", "problem": "expected 2 fields, found 3", "row": "4,4.5,extra"}),
        ]
    );
}

#[test]
fn a_row_rejected_by_a_parsed_or_a_cast_column_keeps_its_whole_line() {
    // `note` is in the file but not in the read; `total` is parsed as it is collected,
    // `price` collected as text and cast. The read lists its columns in another order than
    // the file, and the last record has no line end.
    let schema = Schema::new(vec![
        Field::new("price", DataType::Decimal128(12, 2), true),
        Field::new("id", DataType::Int64, true),
        Field::new("total", DataType::Float64, true),
    ]);
    let text = "id,note,total,price\n1,\"a, b\",2.5,1.00\n2,\"say \"\"hi\"\"\nthere\",oops,2.00\n\
                3,c,3.5,bad\n4,,,\n5,d,oops,bad";
    let rejected = Rejected::new(OnError::Skip);
    let batches = ok(read(text, &schema, 10, rejected.rejects()));
    assert_eq!(id_values(&batches), [Some(1), Some(4)]);
    let totals: Vec<Option<f64>> = batches
        .iter()
        .flat_map(|b| {
            b.column(2)
                .as_primitive::<Float64Type>()
                .iter()
                .collect::<Vec<_>>()
        })
        .collect();
    assert_eq!(totals, [Some(2.5), None]);
    let prices: Vec<Option<i128>> = batches
        .iter()
        .flat_map(|b| {
            b.column(0)
                .as_primitive::<arrow::datatypes::Decimal128Type>()
                .iter()
                .collect::<Vec<_>>()
        })
        .collect();
    assert_eq!(prices, [Some(100), None]);
    // A row that fails in two columns names the first of the read's.
    assert_eq!(
        rejected.lines(),
        vec![
            serde_json::json!({"location": "orders.csv: line 3", "column": "total", "problem": "cannot parse the value as float64", "value": "oops", "row": "2,\"say \"\"hi\"\"\nthere\",oops,2.00"}),
            serde_json::json!({"location": "orders.csv: line 5", "column": "price", "problem": "cannot parse the value as decimal(12,2)", "value": "bad", "row": "3,c,3.5,bad"}),
            serde_json::json!({"location": "orders.csv: line 7", "column": "price", "problem": "cannot parse the value as decimal(12,2)", "value": "bad", "row": "5,d,oops,bad"}),
        ]
    );
}

#[test]
fn columns_are_matched_by_header_name_and_missing_ones_are_null() {
    let schema = Schema::new(vec![
        Field::new("total", DataType::Decimal128(12, 2), true),
        Field::new("id", DataType::Int64, true),
        Field::new("later", DataType::Utf8, true),
    ]);
    let batches = ok(read(
        "id,total\n1,12.50\n2,0.1\n",
        &schema,
        10,
        Rejects::failing(),
    ));
    let batch = &batches[0];
    let totals = batch
        .column(0)
        .as_primitive::<arrow::datatypes::Decimal128Type>();
    assert_eq!(totals.values().to_vec(), vec![1250, 10]);
    assert_eq!(
        batch
            .column(1)
            .as_primitive::<Int64Type>()
            .values()
            .to_vec(),
        vec![1, 2]
    );
    assert_eq!(batch.column(2).null_count(), 2);
}

#[test]
fn files_without_header_use_positional_names_and_other_delimiters() {
    let settings = CsvSettings {
        delimiter: b';',
        header: false,
    };
    let text = "1;x\n2;y\n";
    let schema = schema_of(text, &settings);
    assert_eq!(
        crate::connectors::formats::infer::column_list(&schema),
        "column_1, column_2"
    );
    let batches: Vec<RecordBatch> = ok(ok(CsvBatches::new(
        std::io::Cursor::new(text.as_bytes().to_vec()),
        &settings,
        "t.csv",
        Arc::new(schema),
        10,
        2,
        Rejects::failing(),
    ))
    .collect());
    assert_eq!(batches[0].num_rows(), 2);
    assert_eq!(batches[0].column(1).as_string::<i32>().value(1), "y");
}

#[test]
fn duplicate_header_names_and_empty_files() {
    assert_eq!(
        err(header(
            "a,b,a\n".as_bytes(),
            &CsvSettings::default(),
            "d.csv"
        )),
        "d.csv: the header names column \"a\" twice"
    );
    assert!(ok(header("".as_bytes(), &CsvSettings::default(), "e.csv")).is_empty());
    let mut sampler = CsvSampler::default();
    ok(sampler.sample("".as_bytes(), &CsvSettings::default(), "e.csv", 10));
    assert!(sampler.finish().is_none());
    assert_eq!(
        ok(header(
            "\u{feff}id,x\n".as_bytes(),
            &CsvSettings::default(),
            "bom.csv"
        )),
        vec!["id", "x"]
    );
}

fn write_csv(schema: SchemaRef, batches: &[RecordBatch], settings: CsvSettings) -> String {
    let out = Memory::default();
    let mut writer = ok(CsvWriter::new(
        schema,
        Encoded::new(Counting::new(Box::new(out.clone())), None),
        settings,
        "o.csv",
    ));
    for b in batches {
        ok(writer.write(b));
    }
    let bytes = ok(Box::new(writer).finish());
    let text = String::from_utf8_lossy(&out.bytes()).to_string();
    assert_eq!(bytes, text.len() as u64);
    text
}

#[test]
fn the_writer_quotes_encodes_nested_values_as_json_and_heads_empty_files() {
    let point = Fields::from(vec![Field::new("x", DataType::Int64, true)]);
    let schema = Arc::new(Schema::new(vec![
        Field::new("note", DataType::Utf8, true),
        Field::new("point", DataType::Struct(point.clone()), true),
    ]));
    let batch = ok(RecordBatch::try_new(
        schema.clone(),
        vec![
            Arc::new(StringArray::from(vec![Some("a, \"b\"\nc"), None])),
            Arc::new(StructArray::new(
                point,
                vec![Arc::new(Int64Array::from(vec![1, 2]))],
                None,
            )),
        ],
    )
    .map_err(|e| Error::arrow("test", e)));
    assert_eq!(
        write_csv(schema.clone(), &[batch], CsvSettings::default()),
        "note,point\n\"a, \"\"b\"\"\nc\",\"{\"\"x\"\":1}\"\n,\"{\"\"x\"\":2}\"\n"
    );
    assert_eq!(
        write_csv(schema.clone(), &[], CsvSettings::default()),
        "note,point\n"
    );
    assert_eq!(
        write_csv(
            schema,
            &[],
            CsvSettings {
                delimiter: b';',
                header: false
            }
        ),
        ""
    );
}

/// Hands out at most `step` bytes per read, so the reader's chunks end anywhere, inside a
/// multi-byte character or between `\r` and `\n`.
struct Trickle {
    bytes: Vec<u8>,
    at: usize,
    step: usize,
}

impl std::io::Read for Trickle {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.step.min(buf.len()).min(self.bytes.len() - self.at);
        buf[..n].copy_from_slice(&self.bytes[self.at..self.at + n]);
        self.at += n;
        Ok(n)
    }
}

/// Every row of a read as text (nulls as `None`), and the dead-letter lines.
fn read_all(
    text: &[u8],
    batch_rows: usize,
    threads: usize,
    step: usize,
) -> (Vec<Vec<Option<String>>>, String) {
    let rejected = Rejected::new(OnError::Skip);
    let schema = Arc::new(Schema::new(vec![
        Field::new("id", DataType::Utf8, true),
        Field::new("text", DataType::Utf8, true),
        Field::new("more", DataType::Utf8, true),
    ]));
    let input = Trickle {
        bytes: text.to_vec(),
        at: 0,
        step,
    };
    let batches = CsvBatches::new(
        input,
        &CsvSettings::default(),
        "t.csv",
        schema,
        batch_rows,
        threads,
        rejected.rejects(),
    )
    .unwrap_or_else(|e| panic!("{e}"))
    .collect::<Result<Vec<_>>>()
    .unwrap_or_else(|e| panic!("{e}"));
    let mut rows = Vec::new();
    for batch in &batches {
        for row in 0..batch.num_rows() {
            rows.push(
                batch
                    .columns()
                    .iter()
                    .map(|c| {
                        let c = c.as_string::<i32>();
                        c.is_valid(row).then(|| c.value(row).to_string())
                    })
                    .collect(),
            );
        }
    }
    let dead = std::fs::read_to_string(&rejected.path).unwrap_or_default();
    (rows, dead)
}

#[test]
fn parallel_blocks_read_exactly_what_one_sequential_parse_reads() {
    let mut text = String::from("id,text,more\r\n");
    for i in 0..200 {
        match i % 9 {
            0 => text.push_str(&format!("{i},\"two\nlines \u{e9}\u{20ac}\",x\r\n")),
            1 => text.push_str(&format!("{i},\"say \"\"hi\"\"\r\nthere\",\r\n")),
            2 => text.push_str(&format!("{i},na\u{ef}ve \u{1f600},\"\"\n")),
            3 => text.push_str(&format!("{i},12\" pipe,\"a,b\"\n")),
            4 => text.push_str(&format!("{i},too,many,fields\n")),
            5 => text.push('\n'),
            6 => text.push_str(&format!("{i},\"\u{65e5}\u{672c}\u{8a9e}\",\"\r\"\r")),
            _ => text.push_str(&format!("{i},plain,{}\n", "\u{f6}".repeat(i % 5))),
        }
    }
    text.push_str("last,row,\"no newline\"");
    let bytes = text.as_bytes();

    // The reference: the csv crate over the whole text, row by row.
    let mut reference = Vec::new();
    let mut csv = csv::ReaderBuilder::new().flexible(true).from_reader(bytes);
    for record in csv.records() {
        let record = record.unwrap_or_else(|e| panic!("{e}"));
        if record.len() == 3 {
            reference.push(
                record
                    .iter()
                    .map(|v| (!v.is_empty()).then(|| v.to_string()))
                    .collect::<Vec<_>>(),
            );
        }
    }
    let (sequential, dead) = read_all(bytes, 1000, 1, 1 << 20);
    assert_eq!(sequential, reference);
    assert_eq!(dead.lines().count(), 22, "{dead}");
    assert!(dead.contains("\"t.csv: line 8\""), "{dead}");

    for (batch_rows, threads, step) in [
        (1, 2, 1),
        (2, 2, 3),
        (3, 3, 2),
        (7, 2, 5),
        (50, 2, 64),
        (1000, 3, 1 << 20),
    ] {
        let (rows, rejected) = read_all(bytes, batch_rows, threads, step);
        assert_eq!(
            rows, sequential,
            "{batch_rows} rows a batch on {threads} threads, {step}-byte reads"
        );
        assert_eq!(
            rejected, dead,
            "{batch_rows} rows a batch on {threads} threads"
        );
    }
}

#[test]
fn invalid_utf8_rejects_only_its_row_on_any_thread_count() {
    let text = b"id,text,more\n1,ok,a\n2,bad \xff,b\n3,\xc3\xa9,c\n".to_vec();
    for threads in [1, 2] {
        let (rows, dead) = read_all(&text, 2, threads, 7);
        let ids: Vec<_> = rows
            .iter()
            .map(|r| r[0].clone().unwrap_or_default())
            .collect();
        assert_eq!(ids, vec!["1", "3"]);
        assert_eq!(rows[1][1].as_deref(), Some("\u{e9}"));
        assert!(
            dead.contains("line 3") && dead.contains("not valid UTF-8"),
            "{dead}"
        );
    }
}

#[test]
fn invalid_utf8_in_a_parsed_column_or_one_not_read_rejects_its_row() {
    // Blocks of at most two records: rows 1 and 2 share one, whose only bad byte is in
    // `note`, a column the read does not take.
    let text = b"id,note,amount\n1,a,1.5\n2,\xff,2.5\n3,b,3\xff\n4,\xc3\xa9,4.5\n".to_vec();
    let schema = Arc::new(Schema::new(vec![
        Field::new("id", DataType::Int64, true),
        Field::new("amount", DataType::Float64, true),
    ]));
    for threads in [1, 2] {
        let rejected = Rejected::new(OnError::Skip);
        let batches: Vec<RecordBatch> = ok(ok(CsvBatches::new(
            std::io::Cursor::new(text.clone()),
            &CsvSettings::default(),
            "orders.csv",
            schema.clone(),
            2,
            threads,
            rejected.rejects(),
        ))
        .collect::<Result<Vec<_>>>());
        assert_eq!(id_values(&batches), [Some(1), Some(4)]);
        let problems: Vec<(String, String)> = rejected
            .lines()
            .iter()
            .map(|l| (l["location"].to_string(), l["problem"].to_string()))
            .collect();
        let bad = |line: u32| {
            (
                format!("\"orders.csv: line {line}\""),
                "\"the value is not valid UTF-8\"".to_string(),
            )
        };
        assert_eq!(problems, [bad(3), bad(4)]);
    }
}

/// Rows formatted in pieces on several threads, in rounds, come out as one thread writes
/// them: same bytes, same order, the header once.
#[test]
fn pieces_formatted_on_several_threads_make_the_same_file() {
    let schema = Arc::new(Schema::new(vec![
        Field::new("id", DataType::Int64, false),
        Field::new("price", DataType::Float64, true),
        Field::new("note", DataType::Utf8, true),
        Field::new("day", DataType::Date32, true),
    ]));
    let batch = |from: i64, rows: i64| {
        let ids: Vec<i64> = (from..from + rows).collect();
        ok(RecordBatch::try_new(
            schema.clone(),
            vec![
                Arc::new(Int64Array::from(ids.clone())),
                Arc::new(arrow::array::Float64Array::from(
                    ids.iter()
                        .map(|i| (i % 7 != 0).then_some(*i as f64 / 3.0))
                        .collect::<Vec<_>>(),
                )),
                Arc::new(StringArray::from(
                    ids.iter()
                        .map(|i| (i % 5 != 0).then(|| format!("row {i}, \"q\"\n")))
                        .collect::<Vec<_>>(),
                )),
                Arc::new(arrow::array::Date32Array::from(
                    ids.iter().map(|i| Some(*i as i32)).collect::<Vec<_>>(),
                )),
            ],
        )
        .map_err(|e| Error::arrow("test", e)))
    };
    let batches = [batch(0, 1000), batch(1000, 0), batch(1000, 333)];
    let write = |threads: usize, piece_bytes: usize| {
        let out = Memory::default();
        let mut writer = CsvWriter::with_pieces(
            schema.clone(),
            Encoded::new(Counting::new(Box::new(out.clone())), None),
            CsvSettings::default(),
            "o.csv",
            crate::connectors::formats::pieces::Pieces::sized(threads, piece_bytes),
        );
        for b in &batches {
            ok(writer.write(b));
        }
        let bytes = ok(Box::new(writer).finish());
        assert_eq!(bytes, out.bytes().len() as u64);
        String::from_utf8_lossy(&out.bytes()).to_string()
    };
    let one = write(1, usize::MAX);
    assert!(one.starts_with("id,price,note,day\n0,,,1970-01-01\n1,0.3333333333333333,\"row 1, \"\"q\"\"\n\",1970-01-02\n"));
    assert_eq!(one.matches("id,price").count(), 1);
    assert!(
        one.ends_with("1332,444.0,\"row 1332, \"\"q\"\"\n\",1973-08-25\n"),
        "{}",
        &one[one.len() - 80..]
    );
    // A few hundred bytes a piece: dozens of rounds of three pieces per batch.
    for (threads, piece_bytes) in [(2, usize::MAX), (3, 512), (2, 1)] {
        assert_eq!(
            write(threads, piece_bytes),
            one,
            "{threads} threads, {piece_bytes} bytes"
        );
    }
}
