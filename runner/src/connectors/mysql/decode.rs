//! Parsed values into Arrow builders, and the text forms of values (decimals, dates, times)
//! shared by the binary decoder (`binary.rs`) and the cursor pushdown. No value is copied or
//! allocated before it lands in its builder.
//!
//! Zero dates (`0000-00-00`, and dates with a zero month or day, which MySQL accepts outside
//! strict modes) have no calendar date and are read as NULL. `time` values outside 00:00:00 to
//! 23:59:59.999999 (MySQL allows -838:59:59 to 838:59:59, as durations) are not times of day
//! and are bad rows.

use std::sync::Arc;

use arrow::array::{
    ArrayRef, BinaryBuilder, BooleanBuilder, Date32Builder, Decimal128Builder,
    FixedSizeBinaryBuilder, Float32Builder, Float64Builder, Int8Builder, Int16Builder,
    Int32Builder, Int64Builder, RecordBatch, StringBuilder, Time64MicrosecondBuilder,
    TimestampMicrosecondBuilder, UInt8Builder, UInt16Builder, UInt32Builder, UInt64Builder,
};
use arrow::datatypes::{DataType, SchemaRef};
use chrono::{Datelike, NaiveDate};

use super::types::Kind;
use crate::error::{Context, Result};

const MICROS_PER_SECOND: i64 = 1_000_000;
const MICROS_PER_DAY: i64 = 86_400 * MICROS_PER_SECOND;
/// Days from 0001-01-01 (day 1 of the common era) to 1970-01-01.
const UNIX_EPOCH_FROM_CE: i32 = 719_163;

/// Why a value read from MySQL has no Arrow value of its column's type. The message follows
/// "the value", and the caller names the row, the column and the value.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub(super) enum ValueError {
    #[error("is not valid UTF-8")]
    NotUtf8,
    #[error("is not a number of type {type_name}")]
    NotANumber { type_name: &'static str },
    #[error("does not fit {type_name}")]
    DoesNotFit { type_name: &'static str },
    #[error("is not a decimal({precision},{scale})")]
    NotADecimal { precision: u8, scale: i8 },
    #[error("is not a date (YYYY-MM-DD)")]
    NotADate,
    #[error("is not a time (HH:MM:SS)")]
    NotATime,
    #[error(
        "is outside 00:00:00 to 23:59:59.999999, so it is not a time of day (read it as text with CAST(… AS CHAR) in a query)"
    )]
    NotATimeOfDay,
    #[error("is not a datetime (YYYY-MM-DD HH:MM:SS)")]
    NotADatetime,
    #[error("is not a UUID")]
    NotAUuid,
}

/// One parsed value, borrowing the row's bytes.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(super) enum Value<'r> {
    Null,
    Bool(bool),
    Int(i64),
    UInt(u64),
    Float(f64),
    Decimal(i128),
    /// Days since 1970-01-01, or microseconds (since midnight or since 1970).
    Temporal(i64),
    Str(&'r str),
    Bytes(&'r [u8]),
    Uuid([u8; 16]),
}

/// Parses the text of a non-NULL value of the text protocol for a column of `kind`: the
/// decoder the source used before the binary protocol measured faster, kept for the
/// measurement in `tests_source.rs`.
#[cfg(test)]
pub(super) fn parse(kind: Kind, bytes: &[u8]) -> Result<Value<'_>, ValueError> {
    fn number<T: std::str::FromStr>(text: &str, type_name: &'static str) -> Result<T, ValueError> {
        text.parse()
            .map_err(|_| ValueError::NotANumber { type_name })
    }
    let text = || std::str::from_utf8(bytes).map_err(|_| ValueError::NotUtf8);
    Ok(match kind {
        Kind::BoolNumber => Value::Bool(number::<i64>(text()?, "Int64")? != 0),
        Kind::BoolBit => Value::Bool(bytes.iter().any(|b| *b != 0)),
        Kind::Int8 => Value::Int(number::<i8>(text()?, "Int8")?.into()),
        Kind::Int16 => Value::Int(number::<i16>(text()?, "Int16")?.into()),
        Kind::Int32 => Value::Int(number::<i32>(text()?, "Int32")?.into()),
        Kind::Int64 => Value::Int(number(text()?, "Int64")?),
        Kind::UInt8 => Value::UInt(number::<u8>(text()?, "UInt8")?.into()),
        Kind::UInt16 => Value::UInt(number::<u16>(text()?, "UInt16")?.into()),
        Kind::UInt32 => Value::UInt(number::<u32>(text()?, "UInt32")?.into()),
        Kind::UInt64 => Value::UInt(number(text()?, "UInt64")?),
        Kind::Float32 => Value::Float(number::<f32>(text()?, "Float32")?.into()),
        Kind::Float64 => Value::Float(number(text()?, "Float64")?),
        Kind::Decimal(p, s) => Value::Decimal(parse_decimal(text()?, p, s)?),
        Kind::Date => match parse_date(text()?)? {
            Some(days) => Value::Temporal(days.into()),
            None => Value::Null,
        },
        Kind::Time => Value::Temporal(parse_time(text()?)?),
        Kind::Timestamp => match parse_datetime(text()?)? {
            Some(micros) => Value::Temporal(micros),
            None => Value::Null,
        },
        Kind::Utf8 => Value::Str(text()?),
        Kind::Binary => Value::Bytes(bytes),
        Kind::Uuid => Value::Uuid(parse_uuid(text()?)?),
    })
}

/// `-123.4500` as the unscaled integer of a decimal with scale `scale`; more digits than the
/// precision allows are an error, never rounded.
pub(super) fn parse_decimal(text: &str, precision: u8, scale: i8) -> Result<i128, ValueError> {
    let bad = || ValueError::NotADecimal { precision, scale };
    let (negative, digits) = match text.as_bytes().first() {
        Some(b'-') => (true, &text[1..]),
        Some(b'+') => (false, &text[1..]),
        _ => (false, text),
    };
    let (whole, fraction) = digits.split_once('.').unwrap_or((digits, ""));
    if whole.is_empty() && fraction.is_empty() {
        return Err(bad());
    }
    let scale = usize::try_from(scale).map_err(|_| bad())?;
    let mut value: i128 = 0;
    let mut significant = 0usize;
    let fraction_bytes = fraction.as_bytes();
    let fraction_digits = (0..scale).map(|i| fraction_bytes.get(i).copied().unwrap_or(b'0'));
    for d in whole.bytes().chain(fraction_digits) {
        if !d.is_ascii_digit() {
            return Err(bad());
        }
        if value != 0 || d != b'0' {
            significant += 1;
        }
        value = value
            .checked_mul(10)
            .and_then(|v| v.checked_add(i128::from(d - b'0')))
            .ok_or_else(bad)?;
    }
    if fraction_bytes.len() > scale && fraction_bytes[scale..].iter().any(|d| *d != b'0') {
        return Err(bad());
    }
    if significant > usize::from(precision) {
        return Err(bad());
    }
    Ok(if negative { -value } else { value })
}

fn digits(text: &str) -> Option<i64> {
    if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    text.parse().ok()
}

/// `YYYY-MM-DD` as days since 1970-01-01; `None` for a zero date or one with a zero part.
pub(super) fn parse_date(text: &str) -> Result<Option<i32>, ValueError> {
    let bad = || ValueError::NotADate;
    let mut parts = text.splitn(3, '-');
    let (Some(y), Some(m), Some(d)) = (
        parts.next().and_then(digits),
        parts.next().and_then(digits),
        parts.next().and_then(digits),
    ) else {
        return Err(bad());
    };
    if y == 0 || m == 0 || d == 0 {
        return Ok(None);
    }
    let date = NaiveDate::from_ymd_opt(
        i32::try_from(y).map_err(|_| bad())?,
        u32::try_from(m).map_err(|_| bad())?,
        u32::try_from(d).map_err(|_| bad())?,
    )
    .ok_or_else(bad)?;
    Ok(Some(date.num_days_from_ce() - UNIX_EPOCH_FROM_CE))
}

/// `HH:MM:SS[.ffffff]` (hours may have more digits, or a sign) as microseconds of the day.
fn clock_micros(text: &str) -> Option<i64> {
    let (negative, text) = match text.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, text),
    };
    let (clock, fraction) = text.split_once('.').unwrap_or((text, ""));
    let mut parts = clock.splitn(3, ':');
    let h = parts.next().and_then(digits)?;
    let m = parts.next().and_then(digits)?;
    let s = parts.next().and_then(digits)?;
    if m > 59 || s > 59 || fraction.len() > 6 {
        return None;
    }
    let mut micros = 0;
    if !fraction.is_empty() {
        micros = digits(fraction)? * 10_i64.pow(6 - fraction.len() as u32);
    }
    let total = ((h * 60 + m) * 60 + s) * MICROS_PER_SECOND + micros;
    Some(if negative { -total } else { total })
}

/// A `time` value as microseconds since midnight.
pub(super) fn parse_time(text: &str) -> Result<i64, ValueError> {
    let micros = clock_micros(text).ok_or(ValueError::NotATime)?;
    if !(0..MICROS_PER_DAY).contains(&micros) {
        return Err(ValueError::NotATimeOfDay);
    }
    Ok(micros)
}

/// `YYYY-MM-DD HH:MM:SS[.ffffff]` as microseconds since 1970-01-01 00:00:00; `None` for a
/// zero date.
pub(super) fn parse_datetime(text: &str) -> Result<Option<i64>, ValueError> {
    let bad = || ValueError::NotADatetime;
    let (date, clock) = text
        .split_once(' ')
        .or_else(|| text.split_once('T'))
        .unwrap_or((text, "00:00:00"));
    let Some(days) = parse_date(date).map_err(|_| bad())? else {
        return Ok(None);
    };
    let micros = clock_micros(clock)
        .filter(|m| (0..MICROS_PER_DAY).contains(m))
        .ok_or_else(bad)?;
    Ok(Some(i64::from(days) * MICROS_PER_DAY + micros))
}

pub(super) fn parse_uuid(text: &str) -> Result<[u8; 16], ValueError> {
    let bad = || ValueError::NotAUuid;
    let mut out = [0u8; 16];
    let mut hex = text.bytes().filter(|b| *b != b'-');
    for byte in &mut out {
        let (Some(hi), Some(lo)) = (hex.next(), hex.next()) else {
            return Err(bad());
        };
        let nibble = |c: u8| (c as char).to_digit(16).ok_or_else(bad);
        *byte = u8::try_from(nibble(hi)? * 16 + nibble(lo)?).map_err(|_| bad())?;
    }
    if hex.next().is_some() {
        return Err(bad());
    }
    Ok(out)
}

/// The builder of one column.
enum Builder {
    Bool(BooleanBuilder),
    Int8(Int8Builder),
    Int16(Int16Builder),
    Int32(Int32Builder),
    Int64(Int64Builder),
    UInt8(UInt8Builder),
    UInt16(UInt16Builder),
    UInt32(UInt32Builder),
    UInt64(UInt64Builder),
    Float32(Float32Builder),
    Float64(Float64Builder),
    Decimal(Decimal128Builder, DataType),
    Date(Date32Builder),
    Time(Time64MicrosecondBuilder),
    Timestamp(TimestampMicrosecondBuilder, DataType),
    Utf8(StringBuilder),
    Binary(BinaryBuilder),
    Uuid(FixedSizeBinaryBuilder),
}

impl Builder {
    /// A builder with room for `rows` values and `bytes` of text or binary data.
    fn new(kind: Kind, data_type: &DataType, rows: usize, bytes: usize) -> Self {
        match kind {
            Kind::BoolNumber | Kind::BoolBit => Self::Bool(BooleanBuilder::with_capacity(rows)),
            Kind::Int8 => Self::Int8(Int8Builder::with_capacity(rows)),
            Kind::Int16 => Self::Int16(Int16Builder::with_capacity(rows)),
            Kind::Int32 => Self::Int32(Int32Builder::with_capacity(rows)),
            Kind::Int64 => Self::Int64(Int64Builder::with_capacity(rows)),
            Kind::UInt8 => Self::UInt8(UInt8Builder::with_capacity(rows)),
            Kind::UInt16 => Self::UInt16(UInt16Builder::with_capacity(rows)),
            Kind::UInt32 => Self::UInt32(UInt32Builder::with_capacity(rows)),
            Kind::UInt64 => Self::UInt64(UInt64Builder::with_capacity(rows)),
            Kind::Float32 => Self::Float32(Float32Builder::with_capacity(rows)),
            Kind::Float64 => Self::Float64(Float64Builder::with_capacity(rows)),
            Kind::Decimal(_, _) => {
                Self::Decimal(Decimal128Builder::with_capacity(rows), data_type.clone())
            }
            Kind::Date => Self::Date(Date32Builder::with_capacity(rows)),
            Kind::Time => Self::Time(Time64MicrosecondBuilder::with_capacity(rows)),
            Kind::Timestamp => Self::Timestamp(
                TimestampMicrosecondBuilder::with_capacity(rows),
                data_type.clone(),
            ),
            Kind::Utf8 => Self::Utf8(StringBuilder::with_capacity(rows, bytes)),
            Kind::Binary => Self::Binary(BinaryBuilder::with_capacity(rows, bytes)),
            Kind::Uuid => Self::Uuid(FixedSizeBinaryBuilder::with_capacity(rows, 16)),
        }
    }

    /// Appends a value parsed for this column's kind (so the variants always match).
    fn append(&mut self, value: Value<'_>) -> Result<()> {
        // Narrowing casts are exact: `parse` checked the range of the column's type.
        match (self, value) {
            (Self::Bool(b), Value::Bool(v)) => b.append_value(v),
            (Self::Int8(b), Value::Int(v)) => b.append_value(v as i8),
            (Self::Int16(b), Value::Int(v)) => b.append_value(v as i16),
            (Self::Int32(b), Value::Int(v)) => b.append_value(v as i32),
            (Self::Int64(b), Value::Int(v)) => b.append_value(v),
            (Self::UInt8(b), Value::UInt(v)) => b.append_value(v as u8),
            (Self::UInt16(b), Value::UInt(v)) => b.append_value(v as u16),
            (Self::UInt32(b), Value::UInt(v)) => b.append_value(v as u32),
            (Self::UInt64(b), Value::UInt(v)) => b.append_value(v),
            (Self::Float32(b), Value::Float(v)) => b.append_value(v as f32),
            (Self::Float64(b), Value::Float(v)) => b.append_value(v),
            (Self::Decimal(b, _), Value::Decimal(v)) => b.append_value(v),
            (Self::Date(b), Value::Temporal(v)) => b.append_value(v as i32),
            (Self::Time(b), Value::Temporal(v)) => b.append_value(v),
            (Self::Timestamp(b, _), Value::Temporal(v)) => b.append_value(v),
            (Self::Utf8(b), Value::Str(v)) => b.append_value(v),
            (Self::Binary(b), Value::Bytes(v)) => b.append_value(v),
            (Self::Uuid(b), Value::Uuid(v)) => b
                .append_value(v)
                .context(|| "appending a UUID".to_string())?,
            (builder, _) => builder.append_null(),
        }
        Ok(())
    }

    fn append_null(&mut self) {
        match self {
            Self::Bool(b) => b.append_null(),
            Self::Int8(b) => b.append_null(),
            Self::Int16(b) => b.append_null(),
            Self::Int32(b) => b.append_null(),
            Self::Int64(b) => b.append_null(),
            Self::UInt8(b) => b.append_null(),
            Self::UInt16(b) => b.append_null(),
            Self::UInt32(b) => b.append_null(),
            Self::UInt64(b) => b.append_null(),
            Self::Float32(b) => b.append_null(),
            Self::Float64(b) => b.append_null(),
            Self::Decimal(b, _) => b.append_null(),
            Self::Date(b) => b.append_null(),
            Self::Time(b) => b.append_null(),
            Self::Timestamp(b, _) => b.append_null(),
            Self::Utf8(b) => b.append_null(),
            Self::Binary(b) => b.append_null(),
            Self::Uuid(b) => b.append_null(),
        }
    }

    fn finish(&mut self) -> Result<ArrayRef> {
        Ok(match self {
            Self::Bool(b) => Arc::new(b.finish()),
            Self::Int8(b) => Arc::new(b.finish()),
            Self::Int16(b) => Arc::new(b.finish()),
            Self::Int32(b) => Arc::new(b.finish()),
            Self::Int64(b) => Arc::new(b.finish()),
            Self::UInt8(b) => Arc::new(b.finish()),
            Self::UInt16(b) => Arc::new(b.finish()),
            Self::UInt32(b) => Arc::new(b.finish()),
            Self::UInt64(b) => Arc::new(b.finish()),
            Self::Float32(b) => Arc::new(b.finish()),
            Self::Float64(b) => Arc::new(b.finish()),
            Self::Decimal(b, t) => Arc::new(b.finish().with_data_type(t.clone())),
            Self::Date(b) => Arc::new(b.finish()),
            Self::Time(b) => Arc::new(b.finish()),
            Self::Timestamp(b, t) => Arc::new(b.finish().with_data_type(t.clone())),
            Self::Utf8(b) => Arc::new(b.finish()),
            Self::Binary(b) => Arc::new(b.finish()),
            Self::Uuid(b) => Arc::new(b.finish()),
        })
    }
}

/// The batch being built.
pub(super) struct Batch {
    schema: SchemaRef,
    kinds: Vec<Kind>,
    builders: Vec<Builder>,
    rows: usize,
    /// Approximate bytes of the rows appended, to cut the batch near its budget.
    pub bytes: usize,
}

/// Rows the first batch's builders have room for before they grow.
const FIRST_ROWS: usize = 1024;

impl Batch {
    pub fn new(schema: SchemaRef, kinds: &[Kind]) -> Self {
        let builders = builders(&schema, kinds, FIRST_ROWS, &[]);
        Self {
            schema,
            kinds: kinds.to_vec(),
            builders,
            rows: 0,
            bytes: 0,
        }
    }

    pub fn rows(&self) -> usize {
        self.rows
    }

    /// Appends one row whose values were all parsed.
    pub fn push(&mut self, values: &[Value<'_>]) -> Result<()> {
        for (builder, value) in self.builders.iter_mut().zip(values) {
            self.bytes += match value {
                Value::Str(s) => s.len() + 4,
                Value::Bytes(b) => b.len() + 4,
                Value::Decimal(_) | Value::Uuid(_) => 16,
                _ => 8,
            };
            builder.append(*value)?;
        }
        self.rows += 1;
        Ok(())
    }

    /// The rows so far as a batch. The builders start over sized like this batch, since the
    /// next one is about as large: growing them by doubling would copy every value several
    /// times and leave the allocator with freed buffers of every size.
    pub fn take(&mut self, context: &str) -> Result<RecordBatch> {
        let columns = self
            .builders
            .iter_mut()
            .map(Builder::finish)
            .collect::<Result<Vec<_>>>()?;
        let bytes: Vec<usize> = columns
            .iter()
            .map(|c| c.to_data().buffers().get(1).map_or(0, |b| b.len()))
            .collect();
        self.builders = builders(&self.schema, &self.kinds, self.rows.max(FIRST_ROWS), &bytes);
        self.rows = 0;
        self.bytes = 0;
        RecordBatch::try_new(self.schema.clone(), columns)
            .context(|| format!("{context}: building a batch"))
    }
}

/// A builder per column, with room for `rows` rows and `bytes[i]` of column i's data.
fn builders(schema: &SchemaRef, kinds: &[Kind], rows: usize, bytes: &[usize]) -> Vec<Builder> {
    kinds
        .iter()
        .zip(schema.fields())
        .enumerate()
        .map(|(i, (kind, field))| {
            let data = bytes.get(i).copied().unwrap_or(rows * 16);
            Builder::new(*kind, field.data_type(), rows, data)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decimals_parse_exactly_and_refuse_what_does_not_fit() {
        assert_eq!(parse_decimal("-123.4500", 10, 4), Ok(-1_234_500));
        assert_eq!(parse_decimal("7", 5, 2), Ok(700));
        assert_eq!(parse_decimal("0.5", 3, 2), Ok(50));
        let max = "9999999999999999999999999999.9999999999";
        assert_eq!(
            parse_decimal(max, 38, 10),
            Ok(99_999_999_999_999_999_999_999_999_999_999_999_999)
        );
        assert_eq!(
            parse_decimal("1.234", 5, 2),
            Err(ValueError::NotADecimal {
                precision: 5,
                scale: 2
            })
        );
        assert!(parse_decimal("123456", 5, 0).is_err());
        assert!(parse_decimal("1e5", 5, 0).is_err());
        assert!(parse_decimal("-", 5, 0).is_err());
    }

    #[test]
    fn dates_times_and_datetimes_parse_with_zero_dates_as_null() {
        assert_eq!(parse_date("1970-01-02"), Ok(Some(1)));
        assert_eq!(parse_date("1000-01-01"), Ok(Some(-354_285)));
        assert_eq!(parse_date("0000-00-00"), Ok(None));
        assert_eq!(parse_date("2024-00-10"), Ok(None));
        assert!(parse_date("2024-02-30").is_err());
        assert_eq!(parse_time("01:02:03.5"), Ok(3_723_500_000));
        assert_eq!(parse_time("23:59:59.999999"), Ok(MICROS_PER_DAY - 1));
        assert_eq!(parse_time("24:00:00"), Err(ValueError::NotATimeOfDay));
        assert_eq!(parse_time("-00:00:01"), Err(ValueError::NotATimeOfDay));
        assert_eq!(parse_time("noon"), Err(ValueError::NotATime));
        assert_eq!(
            parse_datetime("1970-01-01 00:00:01.000002"),
            Ok(Some(1_000_002))
        );
        assert_eq!(parse_datetime("0000-00-00 00:00:00"), Ok(None));
        assert!(parse_datetime("2024-01-01 25:00:00").is_err());
    }

    #[test]
    fn values_parse_by_kind() {
        assert_eq!(parse(Kind::BoolNumber, b"1"), Ok(Value::Bool(true)));
        assert_eq!(parse(Kind::BoolBit, b"\x00"), Ok(Value::Bool(false)));
        assert_eq!(
            parse(Kind::UInt64, b"18446744073709551615"),
            Ok(Value::UInt(u64::MAX))
        );
        assert_eq!(
            parse(Kind::Int8, b"128"),
            Err(ValueError::NotANumber { type_name: "Int8" })
        );
        assert_eq!(
            parse(Kind::Uuid, b"00112233-4455-6677-8899-aabbccddeeff"),
            Ok(Value::Uuid([
                0x00, 0x11, 0x22, 0x33, 0x44, 0x55, 0x66, 0x77, 0x88, 0x99, 0xaa, 0xbb, 0xcc, 0xdd,
                0xee, 0xff
            ]))
        );
        assert_eq!(parse(Kind::Utf8, b"\xff"), Err(ValueError::NotUtf8));
    }
}
