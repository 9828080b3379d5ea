//! Schema inference of text files (CSV values, JSON strings), `columns` overrides, and the
//! agreement of the files of one read.
//!
//! Inference accepts only what `arrow::compute::cast` turns into the inferred type, so a
//! value seen in the sample always converts; values after the sample that do not convert are
//! bad rows, not errors of the whole read.

use std::collections::BTreeMap;
use std::sync::Arc;

use arrow::compute::kernels::cast_utils::string_to_datetime;
use arrow::datatypes::{DataType, Field, Fields, Schema, TimeUnit};
use chrono::Utc;

use crate::error::{Error, Result};

/// Records of the first file that schema inference looks at.
pub const SAMPLE_RECORDS: usize = 1000;

/// The time zone of timestamps that carry an offset: values are normalised to UTC.
pub const UTC: &str = "+00:00";

const BOOL: u16 = 1;
const INT: u16 = 1 << 1;
const FLOAT: u16 = 1 << 2;
const DATE: u16 = 1 << 3;
const TS: u16 = 1 << 4;
const TSTZ: u16 = 1 << 5;
const TEXT: u16 = 1 << 6;
/// Not a kind: some timestamp had more than microsecond precision.
const NANOS: u16 = 1 << 7;
const TEMPORAL: u16 = DATE | TS | TSTZ;

/// The kinds of the values seen in one column, folded into the narrowest type holding all.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Inferred(u16);

impl Inferred {
    /// Looks at one non-empty CSV value.
    pub fn observe(&mut self, value: &str) {
        self.0 |= classify(value);
    }

    /// Looks at one JSON string: only dates and timestamps are refined, because a quoted
    /// number or boolean was quoted on purpose.
    pub fn observe_json_string(&mut self, value: &str) {
        let kind = classify(value);
        self.0 |= if kind & TEMPORAL != 0 { kind } else { TEXT };
    }

    /// Marks a value that can only be text.
    pub fn observe_text(&mut self) {
        self.0 |= TEXT;
    }

    /// The kinds a column of `data_type` holds, to widen it by values seen later.
    pub fn of(data_type: &DataType) -> Self {
        Self(match data_type {
            DataType::Boolean => BOOL,
            t if t.is_integer() => INT,
            t if t.is_floating() => FLOAT,
            DataType::Date32 | DataType::Date64 => DATE,
            DataType::Timestamp(unit, zone) => {
                let kind = if zone.is_some() { TSTZ } else { TS };
                if *unit == TimeUnit::Nanosecond {
                    kind | NANOS
                } else {
                    kind
                }
            }
            _ => TEXT,
        })
    }

    /// The kinds of both.
    pub fn union(self, other: Self) -> Self {
        Self(self.0 | other.0)
    }

    /// Whether any value was seen.
    pub fn is_empty(self) -> bool {
        self.0 == 0
    }

    /// The narrowest type holding every value seen; text when nothing was seen.
    pub fn data_type(self) -> DataType {
        let unit = if self.0 & NANOS != 0 {
            TimeUnit::Nanosecond
        } else {
            TimeUnit::Microsecond
        };
        match self.0 & !NANOS {
            0 => DataType::Utf8,
            BOOL => DataType::Boolean,
            INT => DataType::Int64,
            k if k & !(INT | FLOAT) == 0 => DataType::Float64,
            DATE => DataType::Date32,
            k if k & !TEMPORAL == 0 => {
                DataType::Timestamp(unit, (k & TSTZ != 0).then(|| UTC.into()))
            }
            _ => DataType::Utf8,
        }
    }
}

fn classify(value: &str) -> u16 {
    if value.eq_ignore_ascii_case("true") || value.eq_ignore_ascii_case("false") {
        return BOOL;
    }
    let digits_only = value.strip_prefix('-').unwrap_or(value);
    if !digits_only.is_empty() && digits_only.bytes().all(|b| b.is_ascii_digit()) {
        // Past i64 a "number" is an identifier, better kept as text than rounded.
        return if value.parse::<i64>().is_ok() {
            INT
        } else {
            TEXT
        };
    }
    if is_float(value) {
        return FLOAT;
    }
    temporal(value).unwrap_or(TEXT)
}

fn is_float(value: &str) -> bool {
    if matches!(value, "NaN" | "nan" | "inf" | "-inf") {
        return true;
    }
    value.bytes().any(|b| b.is_ascii_digit())
        && value
            .bytes()
            .all(|b| b.is_ascii_digit() || matches!(b, b'.' | b'e' | b'E' | b'+' | b'-'))
        && value.parse::<f64>().is_ok()
}

fn temporal(value: &str) -> Option<u16> {
    if value.len() < 10 || string_to_datetime(&Utc, value).is_err() {
        return None;
    }
    if value.len() == 10 {
        return Some(DATE);
    }
    let time = value.get(11..)?;
    let fraction = time
        .split_once('.')
        .map_or(0, |(_, f)| f.bytes().take_while(u8::is_ascii_digit).count());
    let zone = time.trim_start_matches(|c: char| c.is_ascii_digit() || c == ':' || c == '.');
    let kind = if zone.is_empty() { TS } else { TSTZ };
    Some(if fraction > 6 { kind | NANOS } else { kind })
}

/// A type in the words users write in `columns` and `cast` (`float64`, `decimal(12,2)`).
pub fn type_name(data_type: &DataType) -> String {
    match data_type {
        DataType::Boolean => "boolean".into(),
        DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View => "string".into(),
        DataType::Binary | DataType::LargeBinary | DataType::BinaryView => "binary".into(),
        DataType::Date32 | DataType::Date64 => "date".into(),
        DataType::Time32(_) | DataType::Time64(_) => "time".into(),
        DataType::Timestamp(_, None) => "timestamp".into(),
        DataType::Timestamp(_, Some(_)) => "timestamptz".into(),
        DataType::Decimal128(p, s) | DataType::Decimal256(p, s) => format!("decimal({p},{s})"),
        DataType::List(f) | DataType::LargeList(f) => format!("list<{}>", type_name(f.data_type())),
        DataType::Struct(fields) => {
            let inner: Vec<String> = fields
                .iter()
                .map(|f| format!("{}: {}", f.name(), type_name(f.data_type())))
                .collect();
            format!("struct<{}>", inner.join(", "))
        }
        other => other.to_string().to_ascii_lowercase(),
    }
}

/// Replaces a type no value decided (all nulls) by text, so every writer can hold it.
pub fn settle(data_type: &DataType) -> DataType {
    match data_type {
        DataType::Null => DataType::Utf8,
        DataType::List(f) => DataType::List(Arc::new(
            f.as_ref().clone().with_data_type(settle(f.data_type())),
        )),
        DataType::Struct(fields) => DataType::Struct(
            fields
                .iter()
                .map(|f| f.as_ref().clone().with_data_type(settle(f.data_type())))
                .collect::<Fields>(),
        ),
        other => other.clone(),
    }
}

/// Applies the `columns` overrides of a source to an inferred schema. `file` is where the
/// schema came from, for the message when an override names no column.
pub fn apply_overrides(
    schema: Schema,
    overrides: &BTreeMap<String, String>,
    file: &str,
) -> Result<Schema> {
    if overrides.is_empty() {
        return Ok(schema);
    }
    let mut fields: Vec<Field> = schema.fields().iter().map(|f| f.as_ref().clone()).collect();
    for (column, type_text) in overrides {
        let data_type = crate::types::parse_arrow(type_text)
            .map_err(|e| Error::Config(format!("columns.{column}: {e}")))?;
        let Some(field) = fields.iter_mut().find(|f| f.name() == column) else {
            return Err(Error::Config(format!(
                "columns.{column}: {file} has no column \"{column}\" (columns: {})",
                column_list(&schema)
            )));
        };
        *field = field.clone().with_data_type(data_type);
    }
    Ok(Schema::new(fields))
}

/// The column names of a schema, for messages.
pub fn column_list(schema: &Schema) -> String {
    schema
        .fields()
        .iter()
        .map(|f| f.name().as_str())
        .collect::<Vec<_>>()
        .join(", ")
}

/// Adds the columns of a later file to the schema of a read. Files may add columns (a folder
/// appended to with `schemaEvolution: addColumns` gains them; older files read them as null),
/// but a column both have must have one type: when `check_types` (the later file's types are
/// known, as in Parquet) a different type is an error naming the file.
pub fn merge_columns(
    schema: &Schema,
    other: &Schema,
    file: &str,
    first_file: &str,
    check_types: bool,
) -> Result<Schema> {
    let mut fields: Vec<Field> = schema.fields().iter().map(|f| f.as_ref().clone()).collect();
    for field in other.fields() {
        match schema.field_with_name(field.name()) {
            Ok(existing) if check_types && existing.data_type() != field.data_type() => {
                return Err(Error::Config(format!(
                    "{file}: column \"{}\" is {} there but {} in {first_file}; the files of one read must agree on column types",
                    field.name(),
                    type_name(field.data_type()),
                    type_name(existing.data_type())
                )));
            }
            Ok(_) => {}
            Err(_) => fields.push(field.as_ref().clone().with_nullable(true)),
        }
    }
    Ok(Schema::new(fields))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn infer(values: &[&str]) -> DataType {
        let mut i = Inferred::default();
        values.iter().for_each(|v| i.observe(v));
        i.data_type()
    }

    #[test]
    fn values_fold_into_the_narrowest_type() {
        assert_eq!(infer(&["1", "-20", "300"]), DataType::Int64);
        assert_eq!(infer(&["1", "2.5", "1e3"]), DataType::Float64);
        assert_eq!(infer(&["true", "FALSE"]), DataType::Boolean);
        assert_eq!(infer(&["true", "1"]), DataType::Utf8);
        assert_eq!(infer(&["2024-01-31", "2023-12-01"]), DataType::Date32);
        assert_eq!(
            infer(&["2024-01-31 10:00:00", "2024-01-31T10:00:00.5"]),
            DataType::Timestamp(TimeUnit::Microsecond, None)
        );
        assert_eq!(
            infer(&[
                "2024-01-31T10:00:00+02:00",
                "2024-01-31 10:00:00Z",
                "2024-01-31"
            ]),
            DataType::Timestamp(TimeUnit::Microsecond, Some(UTC.into()))
        );
        assert_eq!(
            infer(&["2024-01-31T10:00:00.123456789"]),
            DataType::Timestamp(TimeUnit::Nanosecond, None)
        );
        assert_eq!(infer(&["12,5x"]), DataType::Utf8);
        assert_eq!(infer(&["99999999999999999999"]), DataType::Utf8);
        assert_eq!(infer(&["2024-13-45"]), DataType::Utf8);
        assert_eq!(infer(&[]), DataType::Utf8);
    }

    #[test]
    fn json_strings_refine_only_to_dates_and_times() {
        let mut i = Inferred::default();
        i.observe_json_string("123");
        assert_eq!(i.data_type(), DataType::Utf8);
        let mut d = Inferred::default();
        d.observe_json_string("2024-02-29");
        assert_eq!(d.data_type(), DataType::Date32);
    }

    #[test]
    fn overrides_replace_types_and_name_unknown_columns() {
        let schema = Schema::new(vec![Field::new("amount", DataType::Float64, true)]);
        let overrides = BTreeMap::from([("amount".to_string(), "decimal(12,2)".to_string())]);
        let out =
            apply_overrides(schema.clone(), &overrides, "a.csv").unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(out.field(0).data_type(), &DataType::Decimal128(12, 2));
        let wrong = BTreeMap::from([("amont".to_string(), "int".to_string())]);
        let err = apply_overrides(schema.clone(), &wrong, "a.csv")
            .err()
            .map(|e| e.to_string());
        assert_eq!(
            err.as_deref(),
            Some("columns.amont: a.csv has no column \"amont\" (columns: amount)")
        );
        let bad_type = BTreeMap::from([("amount".to_string(), "money".to_string())]);
        assert!(apply_overrides(schema, &bad_type, "a.csv").is_err());
    }

    #[test]
    fn later_files_add_columns_but_may_not_change_types() {
        let a = Schema::new(vec![Field::new("id", DataType::Int64, true)]);
        let b = Schema::new(vec![
            Field::new("id", DataType::Int64, false),
            Field::new("x", DataType::Utf8, false),
        ]);
        let merged =
            merge_columns(&a, &b, "b.parquet", "a.parquet", true).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(column_list(&merged), "id, x");
        assert!(merged.field(1).is_nullable());
        let c = Schema::new(vec![Field::new("id", DataType::Utf8, true)]);
        let err = merge_columns(&a, &c, "c.parquet", "a.parquet", true)
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert_eq!(
            err,
            "c.parquet: column \"id\" is string there but int64 in a.parquet; the files of one read must agree on column types"
        );
    }

    #[test]
    fn types_are_named_in_user_words() {
        assert_eq!(type_name(&DataType::Float64), "float64");
        assert_eq!(type_name(&DataType::Decimal128(12, 2)), "decimal(12,2)");
        assert_eq!(
            type_name(&DataType::Timestamp(
                TimeUnit::Microsecond,
                Some(UTC.into())
            )),
            "timestamptz"
        );
        assert_eq!(settle(&DataType::Null), DataType::Utf8);
    }
}
