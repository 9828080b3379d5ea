//! Columns parsed straight from a block's field bytes into their type.
//!
//! Arrow's cast turns text into numbers and dates one value at a time with its `Parser`
//! (`parse_string`: a null stays null, a value that does not parse becomes null). These
//! columns call the same `Parser` on each field as it is collected, so the result is the
//! cast's, value for value, without first copying every field into a text column and
//! walking it again. Other types (text, booleans, decimals,
//! timestamps) are still collected as text and cast as a whole.
//!
//! A date written `YYYY-MM-DD`, the form nearly every file uses, is read by a shorter path
//! of its own (the `Parser` tries several forms through `chrono`); any other text, and a
//! date that does not exist, goes to the `Parser`, so the values stay the cast's.

use std::marker::PhantomData;
use std::sync::Arc;

use arrow::array::{ArrayRef, BooleanBufferBuilder, PrimitiveArray};
use arrow::buffer::{NullBuffer, ScalarBuffer};
use arrow::compute::kernels::cast_utils::Parser;
use arrow::datatypes::{
    ArrowPrimitiveType, DataType, Date32Type, Date64Type, Float16Type, Float32Type, Float64Type,
    Int8Type, Int16Type, Int32Type, Int64Type, UInt8Type, UInt16Type, UInt32Type, UInt64Type,
};
use arrow::error::ArrowError;

/// A column of one block being parsed.
pub trait ParsedColumn: Send {
    /// Adds a field (empty is null).
    fn push(&mut self, value: &str);

    /// The column, and its rows whose value did not parse (null in the column).
    fn finish(self: Box<Self>) -> Result<(ArrayRef, Vec<usize>), ArrowError>;
}

/// A column of `data_type` for about `rows` rows, when the cast from text parses that type
/// value by value; `None` for the types collected as text.
pub fn parsed_column(data_type: &DataType, rows: usize) -> Option<Box<dyn ParsedColumn>> {
    fn of<P: Parser>(rows: usize) -> Option<Box<dyn ParsedColumn>> {
        Some(Box::new(Values::<Cast<P>>::new(rows)))
    }
    match data_type {
        DataType::Int8 => of::<Int8Type>(rows),
        DataType::Int16 => of::<Int16Type>(rows),
        DataType::Int32 => of::<Int32Type>(rows),
        DataType::Int64 => of::<Int64Type>(rows),
        DataType::UInt8 => of::<UInt8Type>(rows),
        DataType::UInt16 => of::<UInt16Type>(rows),
        DataType::UInt32 => of::<UInt32Type>(rows),
        DataType::UInt64 => of::<UInt64Type>(rows),
        DataType::Float16 => of::<Float16Type>(rows),
        DataType::Float32 => of::<Float32Type>(rows),
        DataType::Float64 => of::<Float64Type>(rows),
        DataType::Date32 => Some(Box::new(Values::<IsoDate>::new(rows))),
        DataType::Date64 => of::<Date64Type>(rows),
        _ => None,
    }
}

/// How a column's fields become values: `None` where the cast would give a null.
trait Parse: Send + 'static {
    type Type: ArrowPrimitiveType;

    fn parse(value: &str) -> Option<<Self::Type as ArrowPrimitiveType>::Native>;
}

/// The cast's own parser.
struct Cast<P>(PhantomData<fn() -> P>);

impl<P: Parser> Parse for Cast<P> {
    type Type = P;

    fn parse(value: &str) -> Option<P::Native> {
        P::parse(value)
    }
}

/// Dates as days since 1970-01-01: `YYYY-MM-DD` read here, anything else by the cast's parser.
struct IsoDate;

impl Parse for IsoDate {
    type Type = Date32Type;

    fn parse(value: &str) -> Option<i32> {
        iso_date(value.as_bytes()).or_else(|| Date32Type::parse(value))
    }
}

/// The days since 1970-01-01 of a date written exactly `YYYY-MM-DD` that exists; `None` for
/// any other text (which the cast's parser then decides on).
fn iso_date(text: &[u8]) -> Option<i32> {
    let &[y0, y1, y2, y3, b'-', m0, m1, b'-', d0, d1] = text else {
        return None;
    };
    let digit = |b: u8| b.is_ascii_digit().then(|| i32::from(b - b'0'));
    let year = ((digit(y0)? * 10 + digit(y1)?) * 10 + digit(y2)?) * 10 + digit(y3)?;
    let month = digit(m0)? * 10 + digit(m1)?;
    let day = digit(d0)? * 10 + digit(d1)?;
    let leap = year % 4 == 0 && (year % 100 != 0 || year % 400 == 0);
    let days_in_month = match month {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        2 if leap => 29,
        2 => 28,
        _ => return None,
    };
    if day < 1 || day > days_in_month {
        return None;
    }
    // Days from the civil calendar in 400-year eras that start on March 1st (so a leap day
    // ends its year), as in H. Hinnant's `days_from_civil`.
    let year = if month <= 2 { year - 1 } else { year };
    let era = year.div_euclid(400);
    let year_of_era = year.rem_euclid(400);
    let month_from_march = (month + 9) % 12;
    let day_of_year = (153 * month_from_march + 2) / 5 + day - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    Some(era * 146_097 + day_of_era - 719_468)
}

struct Values<P: Parse> {
    values: Vec<<P::Type as ArrowPrimitiveType>::Native>,
    valid: BooleanBufferBuilder,
    failed: Vec<usize>,
}

impl<P: Parse> Values<P> {
    fn new(rows: usize) -> Self {
        Self {
            values: Vec::with_capacity(rows),
            valid: BooleanBufferBuilder::new(rows),
            failed: Vec::new(),
        }
    }
}

impl<P: Parse> ParsedColumn for Values<P> {
    fn push(&mut self, value: &str) {
        let parsed = if value.is_empty() {
            None
        } else {
            let parsed = P::parse(value);
            if parsed.is_none() {
                self.failed.push(self.values.len());
            }
            parsed
        };
        self.valid.append(parsed.is_some());
        self.values.push(parsed.unwrap_or_default());
    }

    fn finish(mut self: Box<Self>) -> Result<(ArrayRef, Vec<usize>), ArrowError> {
        let nulls = NullBuffer::new(self.valid.finish());
        let nulls = (nulls.null_count() > 0).then_some(nulls);
        let values = ScalarBuffer::from(std::mem::take(&mut self.values));
        let array = PrimitiveArray::<P::Type>::try_new(values, nulls)?;
        Ok((Arc::new(array), std::mem::take(&mut self.failed)))
    }
}

#[cfg(test)]
mod tests {
    use arrow::array::{Array, StringArray};
    use proptest::prelude::*;

    use super::*;
    use crate::connectors::formats::convert::convert;

    /// Parses `fields` into `data_type` here and through the cast of a text column (where an
    /// empty field is null, as the CSV reader has it) and asserts both give the same column
    /// and the same failed rows.
    fn same_as_cast(data_type: &DataType, fields: &[String]) {
        let mut column = parsed_column(data_type, fields.len())
            .unwrap_or_else(|| panic!("{data_type} is not parsed by value"));
        for field in fields {
            column.push(field);
        }
        let (array, failed) = column.finish().unwrap_or_else(|e| panic!("{e}"));
        let text: ArrayRef = Arc::new(
            fields
                .iter()
                .map(|f| (!f.is_empty()).then_some(f.as_str()))
                .collect::<StringArray>(),
        );
        let cast = convert(&text, data_type).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            array.to_data(),
            cast.array.to_data(),
            "{data_type}: {fields:?}"
        );
        assert_eq!(failed, cast.failed, "{data_type}: {fields:?}");
    }

    const TYPES: [DataType; 13] = [
        DataType::Int8,
        DataType::Int16,
        DataType::Int32,
        DataType::Int64,
        DataType::UInt8,
        DataType::UInt16,
        DataType::UInt32,
        DataType::UInt64,
        DataType::Float16,
        DataType::Float32,
        DataType::Float64,
        DataType::Date32,
        DataType::Date64,
    ];

    #[test]
    fn every_type_parses_its_edges_as_the_cast_does() {
        let fields: Vec<String> = [
            "",
            "0",
            "-0",
            "+7",
            " 12",
            "12 ",
            "127",
            "128",
            "-129",
            "255",
            "256",
            "65535",
            "-32769",
            "2147483648",
            "4294967296",
            "9223372036854775807",
            "9223372036854775808",
            "18446744073709551616",
            "-1",
            "007",
            "1e3",
            "2.5",
            ".5",
            "-.5",
            "NaN",
            "inf",
            "-Infinity",
            "1.7976931348623157e308",
            "1e400",
            "6.1e-5",
            "x",
            "1_000",
            "0x10",
            "2024-01-31",
            "2024-02-29",
            "2023-02-29",
            "2024-13-01",
            "2024-1-5",
            "20240131",
            "+10999-12-31",
            "-0012-05-06",
            "0001-01-01",
            "9999-12-31",
            "2024-01-31T12:34:56",
            "2024-01-31 12:34:56.789+02:00",
            "31/01/2024",
            "é",
            "12\u{a0}",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        for data_type in &TYPES {
            same_as_cast(data_type, &fields);
        }
    }

    #[test]
    fn text_and_types_the_cast_parses_in_steps_are_not_parsed_by_value() {
        for data_type in [
            DataType::Utf8,
            DataType::Boolean,
            DataType::Decimal128(12, 2),
            DataType::Timestamp(arrow::datatypes::TimeUnit::Microsecond, None),
        ] {
            assert!(parsed_column(&data_type, 1).is_none(), "{data_type}");
        }
    }

    /// The short path's days for `text`, which must be the cast's whenever it gives any.
    fn same_date(text: &str) -> Option<i32> {
        let short = iso_date(text.as_bytes());
        assert_eq!(short, Date32Type::parse(text), "{text}");
        short
    }

    #[test]
    fn iso_dates_are_the_casts_days_for_every_day_of_every_year() {
        let mut days = 0;
        for year in 0..=9999 {
            // Every day of the years around 1970 and of the leap rules' edges; the ends and
            // leap days of every month of the others.
            let all = (1890..=2110).contains(&year) || year % 100 == 0;
            for month in 0..=13 {
                for day in 0..=32 {
                    if all || [0, 1, 28, 29, 30, 31, 32].contains(&day) {
                        let text = format!("{year:04}-{month:02}-{day:02}");
                        days += usize::from(same_date(&text).is_some());
                    }
                }
            }
        }
        // The short path read the valid dates itself (none fell through to the cast).
        assert!(days > 500_000, "{days}");
        assert_eq!(same_date("1970-01-01"), Some(0));
        assert_eq!(same_date("1969-12-31"), Some(-1));
        assert_eq!(same_date("2000-03-01"), Some(11_017));
        assert_eq!(same_date("0000-01-01"), Some(-719_528));
        assert_eq!(same_date("9999-12-31"), Some(2_932_896));
    }

    #[test]
    fn other_date_forms_fall_through_to_the_cast() {
        for text in [
            "2024-1-05",
            "2024-01-5",
            "+2024-01-05",
            " 2024-01-05",
            "2024-01-05 ",
            "2024/01/05",
            "2024-01-05T00:00:00",
            "2023-02-29",
            "2024-00-10",
            "2024-13-10",
            "2024-01-00",
            "2024-04-31",
            "20x4-01-05",
            "2024-0a-05",
            "2024-01-0\u{e9}",
        ] {
            assert_eq!(iso_date(text.as_bytes()), None, "{text}");
            assert_eq!(
                IsoDate::parse(text),
                Date32Type::parse(text),
                "{text} through the column's parser"
            );
        }
    }

    proptest! {
        #[test]
        fn dates_of_any_digits_and_dashes_are_the_casts(
            text in "[-0-9 +]{10}|[0-9]{4}-[0-9]{2}-[0-9]{2}",
        ) {
            // The cast reads some forms the short path leaves to it (`2024-01-5 `, extended
            // years): only a date the short path reads must be the cast's.
            if let Some(days) = iso_date(text.as_bytes()) {
                prop_assert_eq!(Some(days), Date32Type::parse(&text));
            }
            prop_assert_eq!(IsoDate::parse(&text), Date32Type::parse(&text));
        }

        #[test]
        fn random_fields_parse_as_the_cast_parses_them(
            fields in proptest::collection::vec(
                "[-+0-9.eE: T]{0,12}|[0-9]{4}-[0-9]{1,2}-[0-9]{1,2}|-?[0-9]{1,20}",
                1..40,
            ),
        ) {
            for data_type in &TYPES {
                same_as_cast(data_type, &fields);
            }
        }
    }
}
