//! Columns parsed straight from a block's field bytes into their type.
//!
//! Arrow's cast turns text into numbers and dates one value at a time with its `Parser`
//! (`parse_string`: a null stays null, a value that does not parse becomes null). These
//! columns call the same `Parser` on each field as it is collected, so the result is the
//! cast's, value for value, without first copying every field into a text column and
//! walking it again. Other types (text, booleans, decimals,
//! timestamps) are still collected as text and cast as a whole.

use std::sync::Arc;

use arrow::array::{ArrayRef, BooleanBufferBuilder, PrimitiveArray};
use arrow::buffer::{NullBuffer, ScalarBuffer};
use arrow::compute::kernels::cast_utils::Parser;
use arrow::datatypes::{
    DataType, Date32Type, Date64Type, Float16Type, Float32Type, Float64Type, Int8Type, Int16Type,
    Int32Type, Int64Type, UInt8Type, UInt16Type, UInt32Type, UInt64Type,
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
        Some(Box::new(Values::<P>::new(rows)))
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
        DataType::Date32 => of::<Date32Type>(rows),
        DataType::Date64 => of::<Date64Type>(rows),
        _ => None,
    }
}

struct Values<P: Parser> {
    values: Vec<P::Native>,
    valid: BooleanBufferBuilder,
    failed: Vec<usize>,
}

impl<P: Parser> Values<P> {
    fn new(rows: usize) -> Self {
        Self {
            values: Vec::with_capacity(rows),
            valid: BooleanBufferBuilder::new(rows),
            failed: Vec::new(),
        }
    }
}

impl<P: Parser> ParsedColumn for Values<P> {
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
        let array = PrimitiveArray::<P>::try_new(values, nulls)?;
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

    proptest! {
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
