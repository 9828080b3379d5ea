//! Arrow values as MySQL literals, written into a reused `String`. The session runs with
//! `NO_BACKSLASH_ESCAPES` (see `connect.rs`), so a string literal only needs its single quotes
//! doubled; binary values are written as hex (`X'…'`), which needs no escaping at all.

use std::fmt::Write;
use std::sync::Arc;

use arrow::array::{
    Array, ArrayRef, AsArray, BinaryArray, BooleanArray, Decimal128Array, Decimal256Array,
    FixedSizeBinaryArray, PrimitiveArray, StringArray,
};
use arrow::compute::cast;
use arrow::datatypes::{
    ArrowPrimitiveType, DataType, Date32Type, Float32Type, Float64Type, Int8Type, Int16Type,
    Int32Type, Int64Type, Time64MicrosecondType, TimeUnit, TimestampMicrosecondType, UInt8Type,
    UInt16Type, UInt32Type, UInt64Type,
};
use arrow::error::ArrowError;
use chrono::NaiveDate;

const MICROS_PER_SECOND: i64 = 1_000_000;
const MICROS_PER_DAY: i64 = 86_400 * MICROS_PER_SECOND;
const UNIX_EPOCH_FROM_CE: i32 = 719_163;

/// The Arrow type a column is cast to before its values are written: one per kind of literal.
/// `None` when the type cannot be written (the sink refused such columns before loading).
pub(super) fn writable_type(data_type: &DataType) -> Option<DataType> {
    Some(match data_type {
        DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View => DataType::Utf8,
        DataType::Binary | DataType::LargeBinary | DataType::BinaryView => DataType::Binary,
        DataType::Float16 => DataType::Float32,
        DataType::Decimal32(p, s) | DataType::Decimal64(p, s) => DataType::Decimal128(*p, *s),
        DataType::Date32 | DataType::Date64 => DataType::Date32,
        DataType::Time32(_) | DataType::Time64(_) => DataType::Time64(TimeUnit::Microsecond),
        DataType::Timestamp(_, tz) => DataType::Timestamp(TimeUnit::Microsecond, tz.clone()),
        DataType::Dictionary(_, value) => writable_type(value)?,
        DataType::Null
        | DataType::Boolean
        | DataType::Int8
        | DataType::Int16
        | DataType::Int32
        | DataType::Int64
        | DataType::UInt8
        | DataType::UInt16
        | DataType::UInt32
        | DataType::UInt64
        | DataType::Float32
        | DataType::Float64
        | DataType::Decimal128(_, _)
        | DataType::Decimal256(_, _)
        | DataType::FixedSizeBinary(_) => data_type.clone(),
        _ => return None,
    })
}

/// Why a column or one of its values cannot be written as a MySQL literal. The caller names
/// the load, the column and the row.
#[derive(Debug, thiserror::Error)]
pub(super) enum LiteralError {
    #[error("the type {0} cannot be written")]
    Unwritable(DataType),
    #[error("converting {from} to {to}: {source}")]
    Cast {
        from: DataType,
        to: DataType,
        #[source]
        source: ArrowError,
    },
    #[error("cannot be stored: MySQL floating-point columns hold finite numbers only")]
    NotFinite,
    #[error("is outside the years 1 to 9999 MySQL dates can hold")]
    DateOutOfRange,
    #[error("is not a time of day (00:00:00 to 23:59:59.999999)")]
    NotATimeOfDay,
}

/// One column of a batch, cast and downcast once per batch.
pub(super) enum Values<'a> {
    Null,
    Bool(&'a BooleanArray),
    Int8(&'a PrimitiveArray<Int8Type>),
    Int16(&'a PrimitiveArray<Int16Type>),
    Int32(&'a PrimitiveArray<Int32Type>),
    Int64(&'a PrimitiveArray<Int64Type>),
    UInt8(&'a PrimitiveArray<UInt8Type>),
    UInt16(&'a PrimitiveArray<UInt16Type>),
    UInt32(&'a PrimitiveArray<UInt32Type>),
    UInt64(&'a PrimitiveArray<UInt64Type>),
    Float32(&'a PrimitiveArray<Float32Type>),
    Float64(&'a PrimitiveArray<Float64Type>),
    Decimal(&'a Decimal128Array, i8),
    Decimal256(&'a Decimal256Array),
    Date(&'a PrimitiveArray<Date32Type>),
    Time(&'a PrimitiveArray<Time64MicrosecondType>),
    Timestamp(&'a PrimitiveArray<TimestampMicrosecondType>),
    Utf8(&'a StringArray),
    Binary(&'a BinaryArray),
    /// 16-byte UUIDs written as their canonical text (for MariaDB's `uuid` columns).
    UuidText(&'a FixedSizeBinaryArray),
    FixedBinary(&'a FixedSizeBinaryArray),
}

/// A column cast to its writable type (kept alive while `Values` borrows it).
pub(super) fn prepare(array: &ArrayRef) -> Result<ArrayRef, LiteralError> {
    let from = array.data_type();
    let wanted = writable_type(from).ok_or_else(|| LiteralError::Unwritable(from.clone()))?;
    if &wanted == from {
        return Ok(Arc::clone(array));
    }
    cast(array, &wanted).map_err(|source| LiteralError::Cast {
        from: from.clone(),
        to: wanted,
        source,
    })
}

impl<'a> Values<'a> {
    /// The values of a prepared column; `uuid_text` when its target column is `uuid`.
    pub fn of(array: &'a ArrayRef, uuid_text: bool) -> Result<Self, LiteralError> {
        fn p<T: ArrowPrimitiveType>(a: &ArrayRef) -> &PrimitiveArray<T> {
            a.as_primitive::<T>()
        }
        Ok(match array.data_type() {
            DataType::Null => Self::Null,
            DataType::Boolean => Self::Bool(array.as_boolean()),
            DataType::Int8 => Self::Int8(p(array)),
            DataType::Int16 => Self::Int16(p(array)),
            DataType::Int32 => Self::Int32(p(array)),
            DataType::Int64 => Self::Int64(p(array)),
            DataType::UInt8 => Self::UInt8(p(array)),
            DataType::UInt16 => Self::UInt16(p(array)),
            DataType::UInt32 => Self::UInt32(p(array)),
            DataType::UInt64 => Self::UInt64(p(array)),
            DataType::Float32 => Self::Float32(p(array)),
            DataType::Float64 => Self::Float64(p(array)),
            DataType::Decimal128(_, s) => Self::Decimal(array.as_primitive(), *s),
            DataType::Decimal256(_, _) => Self::Decimal256(array.as_primitive()),
            DataType::Date32 => Self::Date(p(array)),
            DataType::Time64(TimeUnit::Microsecond) => Self::Time(p(array)),
            DataType::Timestamp(TimeUnit::Microsecond, _) => Self::Timestamp(p(array)),
            DataType::Utf8 => Self::Utf8(array.as_string()),
            DataType::Binary => Self::Binary(array.as_binary()),
            DataType::FixedSizeBinary(16) if uuid_text => {
                Self::UuidText(array.as_fixed_size_binary())
            }
            DataType::FixedSizeBinary(_) => Self::FixedBinary(array.as_fixed_size_binary()),
            other => return Err(LiteralError::Unwritable(other.clone())),
        })
    }

    fn is_null(&self, row: usize) -> bool {
        match self {
            Self::Null => true,
            Self::Bool(a) => a.is_null(row),
            Self::Int8(a) => a.is_null(row),
            Self::Int16(a) => a.is_null(row),
            Self::Int32(a) => a.is_null(row),
            Self::Int64(a) => a.is_null(row),
            Self::UInt8(a) => a.is_null(row),
            Self::UInt16(a) => a.is_null(row),
            Self::UInt32(a) => a.is_null(row),
            Self::UInt64(a) => a.is_null(row),
            Self::Float32(a) => a.is_null(row),
            Self::Float64(a) => a.is_null(row),
            Self::Decimal(a, _) => a.is_null(row),
            Self::Decimal256(a) => a.is_null(row),
            Self::Date(a) => a.is_null(row),
            Self::Time(a) => a.is_null(row),
            Self::Timestamp(a) => a.is_null(row),
            Self::Utf8(a) => a.is_null(row),
            Self::Binary(a) => a.is_null(row),
            Self::UuidText(a) | Self::FixedBinary(a) => a.is_null(row),
        }
    }

    /// Appends the literal of `row`. The error says what is wrong with the value, without it.
    pub fn write(&self, out: &mut String, row: usize) -> Result<(), LiteralError> {
        if self.is_null(row) {
            out.push_str("NULL");
            return Ok(());
        }
        // Writing into a String cannot fail.
        let _ = match self {
            Self::Null => Ok(()),
            Self::Bool(a) => {
                out.push(if a.value(row) { '1' } else { '0' });
                Ok(())
            }
            Self::Int8(a) => write!(out, "{}", a.value(row)),
            Self::Int16(a) => write!(out, "{}", a.value(row)),
            Self::Int32(a) => write!(out, "{}", a.value(row)),
            Self::Int64(a) => write!(out, "{}", a.value(row)),
            Self::UInt8(a) => write!(out, "{}", a.value(row)),
            Self::UInt16(a) => write!(out, "{}", a.value(row)),
            Self::UInt32(a) => write!(out, "{}", a.value(row)),
            Self::UInt64(a) => write!(out, "{}", a.value(row)),
            Self::Float32(a) => return float32(out, a.value(row)),
            Self::Float64(a) => return float(out, a.value(row)),
            Self::Decimal(a, scale) => {
                decimal(out, a.value(row), *scale);
                Ok(())
            }
            Self::Decimal256(a) => {
                out.push_str(&a.value_as_string(row));
                Ok(())
            }
            Self::Date(a) => {
                out.push('\'');
                date(out, a.value(row))?;
                out.push('\'');
                Ok(())
            }
            Self::Time(a) => {
                let micros = a.value(row);
                if !(0..MICROS_PER_DAY).contains(&micros) {
                    return Err(LiteralError::NotATimeOfDay);
                }
                out.push('\'');
                clock(out, micros);
                out.push('\'');
                Ok(())
            }
            Self::Timestamp(a) => {
                let micros = a.value(row);
                out.push('\'');
                date(out, micros.div_euclid(MICROS_PER_DAY))?;
                out.push(' ');
                clock(out, micros.rem_euclid(MICROS_PER_DAY));
                out.push('\'');
                Ok(())
            }
            Self::Utf8(a) => {
                string(out, a.value(row));
                Ok(())
            }
            Self::Binary(a) => {
                hex(out, a.value(row));
                Ok(())
            }
            Self::FixedBinary(a) => {
                hex(out, a.value(row));
                Ok(())
            }
            Self::UuidText(a) => {
                out.push('\'');
                for (i, b) in a.value(row).iter().enumerate() {
                    if matches!(i, 4 | 6 | 8 | 10) {
                        out.push('-');
                    }
                    let _ = write!(out, "{b:02x}");
                }
                out.push('\'');
                Ok(())
            }
        };
        Ok(())
    }
}

fn float32(out: &mut String, value: f32) -> Result<(), LiteralError> {
    if !value.is_finite() {
        return Err(LiteralError::NotFinite);
    }
    let _ = write!(out, "{value:e}");
    Ok(())
}

fn float(out: &mut String, value: f64) -> Result<(), LiteralError> {
    if !value.is_finite() {
        return Err(LiteralError::NotFinite);
    }
    // `{:e}` is the shortest text that reads back to the same value, with an exponent: MySQL
    // reads it as a double, where plain digits (`0.000…25`) would be an exact decimal literal
    // limited to 65 digits.
    let _ = write!(out, "{value:e}");
    Ok(())
}

fn decimal(out: &mut String, value: i128, scale: i8) {
    let Ok(scale) = u32::try_from(scale) else {
        // A negative scale counts zeros to append.
        let _ = write!(out, "{value}");
        for _ in 0..scale.unsigned_abs() {
            out.push('0');
        }
        return;
    };
    let magnitude = value.unsigned_abs();
    let unit = 10u128.pow(scale);
    if value < 0 {
        out.push('-');
    }
    let _ = write!(out, "{}", magnitude / unit);
    if scale > 0 {
        let _ = write!(out, ".{:0width$}", magnitude % unit, width = scale as usize);
    }
}

/// `YYYY-MM-DD` of a day counted from 1970-01-01.
fn date(out: &mut String, days: impl TryInto<i32>) -> Result<(), LiteralError> {
    let day = days
        .try_into()
        .ok()
        .and_then(|d| d.checked_add(UNIX_EPOCH_FROM_CE))
        .and_then(NaiveDate::from_num_days_from_ce_opt)
        .filter(|d| (1..=9999).contains(&chrono::Datelike::year(d)))
        .ok_or(LiteralError::DateOutOfRange)?;
    let _ = write!(out, "{}", day.format("%Y-%m-%d"));
    Ok(())
}

/// `HH:MM:SS.ffffff` of microseconds since midnight.
fn clock(out: &mut String, micros: i64) {
    let seconds = micros / MICROS_PER_SECOND;
    let _ = write!(
        out,
        "{:02}:{:02}:{:02}.{:06}",
        seconds / 3600,
        seconds / 60 % 60,
        seconds % 60,
        micros % MICROS_PER_SECOND
    );
}

/// A string literal: single quotes doubled, everything else as it is.
pub(super) fn string(out: &mut String, value: &str) {
    out.push('\'');
    let mut parts = value.split('\'');
    if let Some(first) = parts.next() {
        out.push_str(first);
    }
    for part in parts {
        out.push_str("''");
        out.push_str(part);
    }
    out.push('\'');
}

fn hex(out: &mut String, bytes: &[u8]) {
    const DIGITS: &[u8; 16] = b"0123456789ABCDEF";
    out.reserve(bytes.len() * 2 + 3);
    out.push_str("X'");
    for b in bytes {
        out.push(char::from(DIGITS[usize::from(b >> 4)]));
        out.push(char::from(DIGITS[usize::from(b & 0x0f)]));
    }
    out.push('\'');
}

#[cfg(test)]
mod tests {
    use arrow::array::{
        Date32Array, Float64Array, Int64Array, Time64MicrosecondArray, TimestampMicrosecondArray,
    };

    use super::*;

    fn literal(array: ArrayRef, row: usize) -> Result<String, LiteralError> {
        let prepared = prepare(&array)?;
        let values = Values::of(&prepared, false)?;
        let mut out = String::new();
        values.write(&mut out, row)?;
        Ok(out)
    }

    fn text(array: ArrayRef, row: usize) -> Option<String> {
        literal(array, row).ok()
    }

    #[test]
    fn strings_double_quotes_only_and_binary_is_hex() {
        let strings: ArrayRef = Arc::new(StringArray::from(vec![
            Some("it's a \\ back\u{0}slash 😀"),
            Some(""),
            None,
        ]));
        assert_eq!(
            text(strings.clone(), 0).as_deref(),
            Some("'it''s a \\ back\u{0}slash 😀'")
        );
        assert_eq!(text(strings.clone(), 1).as_deref(), Some("''"));
        assert_eq!(text(strings, 2).as_deref(), Some("NULL"));
        let binary: ArrayRef = Arc::new(BinaryArray::from(vec![&b"\x00'\xff"[..], &b""[..]]));
        assert_eq!(text(binary.clone(), 0).as_deref(), Some("X'0027FF'"));
        assert_eq!(text(binary, 1).as_deref(), Some("X''"));
        let large: ArrayRef = Arc::new(arrow::array::LargeStringArray::from(vec!["a'b"]));
        assert_eq!(text(large, 0).as_deref(), Some("'a''b'"));
    }

    #[test]
    fn numbers_decimals_and_times_are_exact() {
        let ints: ArrayRef = Arc::new(Int64Array::from(vec![i64::MIN]));
        assert_eq!(text(ints, 0).as_deref(), Some("-9223372036854775808"));
        let decimals: ArrayRef = Arc::new(
            Decimal128Array::from(vec![-1_234_500, 5, i128::from(i64::MAX)])
                .with_precision_and_scale(38, 4)
                .unwrap_or_else(|e| panic!("{e}")),
        );
        assert_eq!(text(decimals.clone(), 0).as_deref(), Some("-123.4500"));
        assert_eq!(text(decimals.clone(), 1).as_deref(), Some("0.0005"));
        assert_eq!(text(decimals, 2).as_deref(), Some("922337203685477.5807"));
        let floats: ArrayRef = Arc::new(Float64Array::from(vec![0.1, f64::NAN]));
        assert_eq!(text(floats.clone(), 0).as_deref(), Some("1e-1"));
        assert!(matches!(literal(floats, 1), Err(LiteralError::NotFinite)));
        let far: ArrayRef = Arc::new(Date32Array::from(vec![2_932_897]));
        assert!(matches!(literal(far, 0), Err(LiteralError::DateOutOfRange)));
        let list: ArrayRef = Arc::new(arrow::array::ListArray::new_null(
            Arc::new(arrow::datatypes::Field::new("item", DataType::Int32, true)),
            1,
        ));
        assert!(matches!(
            literal(list, 0),
            Err(LiteralError::Unwritable(DataType::List(_)))
        ));
        let dates: ArrayRef = Arc::new(Date32Array::from(vec![-354_285, 2_932_896]));
        assert_eq!(text(dates.clone(), 0).as_deref(), Some("'1000-01-01'"));
        assert_eq!(text(dates, 1).as_deref(), Some("'9999-12-31'"));
        let times: ArrayRef = Arc::new(Time64MicrosecondArray::from(vec![3_723_000_004]));
        assert_eq!(text(times, 0).as_deref(), Some("'01:02:03.000004'"));
        let stamps: ArrayRef =
            Arc::new(TimestampMicrosecondArray::from(vec![-1]).with_timezone("+00:00"));
        assert_eq!(
            text(stamps, 0).as_deref(),
            Some("'1969-12-31 23:59:59.999999'")
        );
    }

    #[test]
    fn uuids_are_canonical_text_for_uuid_columns() {
        let bytes: Vec<u8> = (0u8..16).collect();
        let array: ArrayRef = Arc::new(
            FixedSizeBinaryArray::try_from_iter(std::iter::once(bytes))
                .unwrap_or_else(|e| panic!("{e}")),
        );
        let values = Values::of(&array, true).unwrap_or_else(|e| panic!("{e}"));
        let mut out = String::new();
        values.write(&mut out, 0).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(out, "'00010203-0405-0607-0809-0a0b0c0d0e0f'");
    }
}
