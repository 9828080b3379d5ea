//! Spelled as Arrow's CSV writer spells rows, with any delimiter, and every calendar day.

use std::sync::Arc;

use arrow::array::{
    BinaryArray, BooleanArray, Date32Array, Date64Array, Decimal32Array, Decimal64Array,
    Decimal128Array, Float32Array, Float64Array, Int8Array, Int64Array, LargeStringArray,
    StringArray, StringViewArray, TimestampMicrosecondArray, TimestampMillisecondArray,
    TimestampNanosecondArray, TimestampSecondArray, UInt64Array,
};
use arrow::datatypes::{Field, Schema};
use chrono::{Datelike, NaiveDate};

use super::*;

fn batch(columns: Vec<(&str, ArrayRef)>) -> RecordBatch {
    let fields: Vec<Field> = columns
        .iter()
        .map(|(name, array)| Field::new(*name, array.data_type().clone(), true))
        .collect();
    RecordBatch::try_new(
        Arc::new(Schema::new(fields)),
        columns.into_iter().map(|(_, a)| a).collect(),
    )
    .unwrap_or_else(|e| panic!("{e}"))
}

/// The file Arrow's CSV writer makes of `batch`, header first.
fn arrow_csv(batch: &RecordBatch, delimiter: u8) -> String {
    let mut out = Vec::new();
    arrow::csv::WriterBuilder::new()
        .with_delimiter(delimiter)
        .build(&mut out)
        .write(batch)
        .unwrap_or_else(|e| panic!("{e}"));
    String::from_utf8_lossy(&out).into_owned()
}

fn ours(batch: &RecordBatch, delimiter: u8) -> String {
    let text = CsvText::new(delimiter);
    let mut out = Vec::new();
    let schema = batch.schema();
    text.names(schema.fields().iter().map(|f| f.name().as_str()), &mut out);
    text.rows(batch, &mut out).unwrap_or_else(|e| panic!("{e}"));
    String::from_utf8_lossy(&out).into_owned()
}

/// Every fast type at its edges, and types left to Arrow, with a null in every column.
fn every_type() -> RecordBatch {
    let decimal = |values: Vec<Option<i128>>, precision, scale| -> ArrayRef {
        Arc::new(
            Decimal128Array::from(values)
                .with_precision_and_scale(precision, scale)
                .unwrap_or_else(|e| panic!("{e}")),
        )
    };
    batch(vec![
        (
            "i8",
            Arc::new(Int8Array::from(vec![
                Some(i8::MIN),
                Some(i8::MAX),
                None,
                Some(0),
                Some(-1),
                Some(7),
            ])),
        ),
        (
            "i64",
            Arc::new(Int64Array::from(vec![
                Some(i64::MIN),
                Some(i64::MAX),
                Some(0),
                None,
                Some(-1),
                Some(1_000),
            ])),
        ),
        (
            "u64",
            Arc::new(UInt64Array::from(vec![
                Some(u64::MAX),
                Some(0),
                Some(1),
                Some(10),
                None,
                Some(99),
            ])),
        ),
        (
            "f32",
            Arc::new(Float32Array::from(vec![
                Some(f32::NAN),
                Some(f32::INFINITY),
                Some(-0.0),
                Some(1e-7),
                Some(f32::MAX),
                None,
            ])),
        ),
        (
            "f64",
            Arc::new(Float64Array::from(vec![
                Some(f64::NEG_INFINITY),
                Some(0.1),
                Some(1e16),
                None,
                Some(123_456.789),
                Some(f64::MIN_POSITIVE),
            ])),
        ),
        (
            "d128",
            decimal(
                vec![
                    Some(12_345),
                    Some(-5),
                    Some(0),
                    None,
                    Some(-99_999_999),
                    Some(100),
                ],
                10,
                2,
            ),
        ),
        // More digits than the precision: Arrow cuts the value.
        (
            "d128_over",
            decimal(
                vec![
                    Some(123_456),
                    Some(-123_456),
                    Some(12),
                    Some(1_000),
                    None,
                    Some(999),
                ],
                3,
                1,
            ),
        ),
        (
            "d128_whole",
            decimal(
                vec![Some(0), Some(-42), None, Some(10), Some(7), Some(99_999)],
                5,
                0,
            ),
        ),
        (
            "d128_negative_scale",
            decimal(
                vec![Some(12), Some(-3), Some(0), None, Some(5), Some(1)],
                5,
                -2,
            ),
        ),
        (
            "d128_extreme",
            decimal(
                vec![
                    Some(i128::MIN),
                    Some(i128::MAX),
                    Some(1),
                    None,
                    Some(-1),
                    Some(0),
                ],
                38,
                38,
            ),
        ),
        (
            "d64",
            Arc::new(
                Decimal64Array::from(vec![
                    Some(i64::MAX),
                    Some(-1),
                    None,
                    Some(10_000),
                    Some(5),
                    Some(0),
                ])
                .with_precision_and_scale(18, 4)
                .unwrap_or_else(|e| panic!("{e}")),
            ),
        ),
        (
            "d32",
            Arc::new(
                Decimal32Array::from(vec![
                    Some(5),
                    Some(-999_999_999),
                    None,
                    Some(0),
                    Some(1),
                    Some(20),
                ])
                .with_precision_and_scale(9, 9)
                .unwrap_or_else(|e| panic!("{e}")),
            ),
        ),
        (
            "date",
            Arc::new(Date32Array::from(vec![
                Some(FIRST_DAY),
                Some(LAST_DAY),
                Some(0),
                Some(-1),
                Some(FIRST_DAY - 1),
                Some(LAST_DAY + 1),
            ])),
        ),
        (
            "date_null",
            Arc::new(Date32Array::from(vec![
                None,
                Some(19_753),
                Some(11_016),
                Some(-719_162),
                Some(-25_567),
                Some(59),
            ])),
        ),
        (
            "bool",
            Arc::new(BooleanArray::from(vec![
                Some(true),
                Some(false),
                None,
                Some(true),
                Some(false),
                Some(true),
            ])),
        ),
        (
            "text",
            Arc::new(StringArray::from(vec![
                Some("plain"),
                Some("a, \"b\""),
                Some("two\nlines"),
                Some(""),
                None,
                Some("cr\rhere; é|1.e"),
            ])),
        ),
        (
            "large",
            Arc::new(LargeStringArray::from(vec![
                Some("x\"y"),
                None,
                Some(""),
                Some("tab\there"),
                Some("-1.5"),
                Some("NaN"),
            ])),
        ),
        (
            "view",
            Arc::new(StringViewArray::from(vec![
                Some("longer than twelve bytes, with a comma"),
                Some("short"),
                None,
                Some(""),
                Some("e"),
                Some("\""),
            ])),
        ),
        (
            "at",
            Arc::new(TimestampMicrosecondArray::from(vec![
                Some(0),
                Some(1_700_000_000_123_456),
                None,
                Some(-1),
                Some(86_400_000_000),
                Some(1),
            ])),
        ),
        (
            "ts_s",
            Arc::new(TimestampSecondArray::from(vec![
                Some(0),
                Some(-1),
                None,
                Some(1_700_000_000),
                Some(300_000_000_000),
                Some(-62_167_219_200),
            ])),
        ),
        (
            "ts_ms",
            Arc::new(TimestampMillisecondArray::from(vec![
                Some(1),
                Some(-1),
                Some(1_700_000_000_120),
                None,
                Some(86_399_999),
                Some(253_402_300_800_000),
            ])),
        ),
        (
            "ts_us_utc",
            Arc::new(
                TimestampMicrosecondArray::from(vec![
                    Some(0),
                    Some(-1),
                    Some(1_700_000_000_123_456),
                    Some(1_500),
                    None,
                    Some(5_000),
                ])
                .with_timezone("UTC"),
            ),
        ),
        (
            "ts_ns_offset",
            Arc::new(
                TimestampNanosecondArray::from(vec![
                    Some(1),
                    Some(i64::MAX),
                    Some(i64::MIN),
                    Some(1_000_000),
                    Some(1_001_000),
                    None,
                ])
                .with_timezone("+00:00"),
            ),
        ),
        (
            "ts_ms_paris",
            Arc::new(
                TimestampMillisecondArray::from(vec![
                    Some(0),
                    None,
                    Some(1_700_000_000_120),
                    Some(-1),
                    Some(5),
                    Some(86_400_000),
                ])
                .with_timezone("Europe/Paris"),
            ),
        ),
        (
            "d64",
            Arc::new(Date64Array::from(vec![
                Some(0),
                Some(-1),
                Some(1_700_000_000_123),
                None,
                Some(86_400_000),
                Some(253_402_300_800_000),
            ])),
        ),
        (
            "bytes",
            Arc::new(BinaryArray::from(vec![
                Some(b"\x00\xff".as_ref()),
                None,
                Some(b"".as_ref()),
                Some(b"ab".as_ref()),
                Some(b",".as_ref()),
                Some(b"z".as_ref()),
            ])),
        ),
    ])
}

#[test]
fn rows_are_spelled_as_arrows_csv_writer_spells_them_with_any_delimiter() {
    let every = every_type();
    // Delimiters that numbers, dates and booleans are spelled with are checked too.
    for delimiter in [b',', b';', b'\t', b'|', b'.', b'e', b'1', b'-', b'a', b' '] {
        assert_eq!(
            ours(&every, delimiter),
            arrow_csv(&every, delimiter),
            "delimiter {:?}",
            char::from(delimiter)
        );
    }
}

#[test]
fn a_line_with_a_single_empty_value_is_quoted_so_that_it_stays_a_row() {
    let single = batch(vec![(
        "note",
        Arc::new(StringArray::from(vec![Some(""), None, Some("x")])) as ArrayRef,
    )]);
    assert_eq!(ours(&single, b','), "note\n\"\"\n\"\"\nx\n");
    assert_eq!(ours(&single, b','), arrow_csv(&single, b','));
    let unnamed = batch(vec![("", Arc::new(Int64Array::from(vec![1])) as ArrayRef)]);
    assert_eq!(ours(&unnamed, b','), "\"\"\n1\n");
}

#[test]
fn a_value_arrow_cannot_spell_fails_naming_its_column() {
    let far = batch(vec![(
        "shipped",
        Arc::new(Date32Array::from(vec![i32::MAX])) as ArrayRef,
    )]);
    let mut out = Vec::new();
    let message = match CsvText::new(b',').rows(&far, &mut out) {
        Ok(()) => panic!("spelled {}", String::from_utf8_lossy(&out)),
        Err(e) => e.to_string(),
    };
    assert!(
        message.contains("column \"shipped\"") && message.contains("2147483647"),
        "{message}"
    );
}

#[test]
fn every_day_from_year_0_to_9999_is_the_calendar_date() {
    let epoch = NaiveDate::from_ymd_opt(1970, 1, 1).unwrap_or_else(|| panic!("epoch"));
    for days in FIRST_DAY..=LAST_DAY {
        let expected = epoch
            .checked_add_signed(chrono::Duration::days(i64::from(days)))
            .unwrap_or_else(|| panic!("day {days}"));
        assert_eq!(
            civil(days),
            (expected.year() as u32, expected.month(), expected.day()),
            "day {days}"
        );
    }
}

/// What the CSV writer spells `value` as, through the short path when it takes it.
fn spelled(value: f64) -> String {
    let mut out = Vec::new();
    if !short_float(value, &mut out) {
        out.extend_from_slice(ryu::Buffer::new().format(value).as_bytes());
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[test]
fn short_floats_are_spelled_as_ryu_spells_them() {
    let mut taken = 0;
    let mut check = |value: f64| {
        let mut out = Vec::new();
        if short_float(value, &mut out) {
            taken += 1;
        }
        assert_eq!(
            spelled(value),
            ryu::Buffer::new().format(value),
            "bits {:#x}",
            value.to_bits()
        );
    };
    // Edges of the range, and values whose products round badly.
    for value in [
        1e-3,
        1e9,
        0.1 + 0.2,
        0.3,
        2.675,
        1.005,
        999_999_999.999_9,
        123_456_789.012_3,
        0.0001,
        0.000_999_999,
        5e-324,
        f64::MAX,
        1e16,
        0.0,
        -0.0,
        33_078.94,
        0.04,
        100.0,
    ] {
        check(value);
        check(-value);
        check(f64::from_bits(value.to_bits() + 1));
        check(f64::from_bits(value.to_bits().saturating_sub(1)));
    }
    // Decimals with 0 to 6 places across the range, and their neighbours; then any bits.
    let mut state: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut next = || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    for _ in 0..300_000 {
        let places = (next() % 7) as i32;
        let whole = next() % 10u64.pow(1 + (next() % 12) as u32);
        let value = whole as f64 / 10f64.powi(places);
        check(value);
        check(f64::from_bits(value.to_bits() + 1));
        check(f64::from_bits(next()));
        let in_range = f64::from_bits(0x3f50_0000_0000_0000 + next() % 0x0700_0000_0000_0000);
        check(in_range);
    }
    assert!(taken > 150_000, "the short path spelled {taken} values");
}

#[test]
fn a_special_byte_anywhere_in_a_value_quotes_it() {
    for delimiter in [b',', b';', b'\t', 0xff] {
        let text = CsvText::new(delimiter);
        for special in [delimiter, b'"', b'\r', b'\n'] {
            for len in 1..20 {
                for at in 0..len {
                    let mut value = vec![b'x'; len];
                    value[at] = special;
                    assert!(text.needs_quotes(&value), "{value:?}");
                    value[at] = special ^ 0x80;
                    assert!(!text.needs_quotes(&value), "{value:?}");
                }
            }
        }
    }
}
