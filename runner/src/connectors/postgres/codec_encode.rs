//! Column encoders of binary COPY: each writes one Arrow value as a length-prefixed field into
//! the output buffer, with no allocation per value.

use std::ops::Range;

use arrow::array::{
    Array, BinaryArray, BooleanArray, Date32Array, Decimal128Array, FixedSizeBinaryArray,
    Float32Array, Float64Array, Int16Array, Int32Array, Int64Array, IntervalMonthDayNanoArray,
    ListArray, StringArray, Time64MicrosecondArray, TimestampMicrosecondArray,
};
use arrow::datatypes::DataType;
use bytes::{BufMut, BytesMut};

use super::codec_decode::{EPOCH_DAYS, EPOCH_MICROS};
use super::numeric::{self, NumericError};
use super::types::{PgType, oid};

/// PostgreSQL's date range in days from 2000-01-01: Julian day 0 (4714-11-24 BC) up to
/// 5874897-12-31.
const PG_DATE_MIN: i64 = -2_451_545;
const PG_DATE_END: i64 = 2_147_483_494 - 2_451_545;
/// PostgreSQL's timestamp range in microseconds from 2000-01-01: 4714-11-24 BC up to (not
/// including) 294277-01-01.
const PG_TIMESTAMP_MIN: i64 = -211_813_488_000_000_000;
const PG_TIMESTAMP_END: i64 = 9_223_371_331_200_000_000;
const MICROS_PER_DAY: i64 = 86_400_000_000;

/// Why PostgreSQL cannot take a value; the caller names the row, the column and its type.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EncodeError {
    /// The value became null when converted from its Arrow type (a failed cast).
    #[error("it cannot be converted from Arrow {from}")]
    Unconvertible { from: DataType },
    #[error("{0}; write it as decimal digits")]
    Numeric(#[source] NumericError),
    #[error(
        "PostgreSQL text cannot hold the NUL character (\\0); remove it in a transform, e.g. replace(column, chr(0), '')"
    )]
    NulInText,
    #[error("{bytes} bytes exceed PostgreSQL's 1 GB value limit")]
    TooLong { bytes: usize },
    #[error("outside PostgreSQL's date range (4713 BC to 5874897 AD)")]
    DateOutOfRange,
    #[error("outside the 24 hours of a time of day")]
    NotATimeOfDay,
    #[error("outside PostgreSQL's timestamp range (4713 BC to 294276 AD)")]
    TimestampOutOfRange,
    /// An element of an array value, counted from 1.
    #[error("element {element}: {source}")]
    Element {
        element: usize,
        #[source]
        source: Box<EncodeError>,
    },
}

/// How the values of one target column are written; chosen once from its type.
#[derive(Clone, Debug)]
pub enum Kind {
    Bool,
    I16,
    I32,
    I64,
    F32,
    F64,
    Decimal(u8),
    NumericText,
    Text,
    Jsonb,
    Bytea,
    Uuid,
    Date,
    Time,
    Timestamp,
    Interval,
    List(Box<Kind>, u32),
}

impl Kind {
    /// The kind for a target column of PostgreSQL type `t` whose Arrow form is `data_type`
    /// (from `arrow_type(t)`, or Utf8 for a type without a binary mapping).
    pub fn new(t: &PgType, data_type: &DataType) -> Option<Kind> {
        Some(match data_type {
            DataType::List(item) => {
                let element = t.element_type()?;
                Kind::List(
                    Box::new(Kind::new(&element, item.data_type())?),
                    element.oid,
                )
            }
            DataType::Boolean => Kind::Bool,
            DataType::Int16 => Kind::I16,
            DataType::Int32 => Kind::I32,
            DataType::Int64 => Kind::I64,
            DataType::Float32 => Kind::F32,
            DataType::Float64 => Kind::F64,
            DataType::Decimal128(_, s) => Kind::Decimal(u8::try_from(*s).ok()?),
            DataType::Utf8 => match t.oid {
                oid::NUMERIC => Kind::NumericText,
                oid::JSONB => Kind::Jsonb,
                _ => Kind::Text,
            },
            DataType::Binary => Kind::Bytea,
            DataType::FixedSizeBinary(16) => Kind::Uuid,
            DataType::Date32 => Kind::Date,
            DataType::Time64(_) => Kind::Time,
            DataType::Timestamp(..) => Kind::Timestamp,
            DataType::Interval(_) => Kind::Interval,
            _ => return None,
        })
    }
}

/// A converted column of one batch, typed for its kind.
pub enum View<'a> {
    Bool(&'a BooleanArray),
    I16(&'a Int16Array),
    I32(&'a Int32Array),
    I64(&'a Int64Array),
    F32(&'a Float32Array),
    F64(&'a Float64Array),
    Decimal(&'a Decimal128Array, u8),
    NumericText(&'a StringArray),
    /// And whether any of its values may hold a NUL byte.
    Text(&'a StringArray, bool),
    Jsonb(&'a StringArray),
    Bytea(&'a BinaryArray),
    Uuid(&'a FixedSizeBinaryArray),
    Date(&'a Date32Array),
    Time(&'a Time64MicrosecondArray),
    Timestamp(&'a TimestampMicrosecondArray),
    Interval(&'a IntervalMonthDayNanoArray),
    List(&'a ListArray, Box<View<'a>>, u32),
}

/// Whether a NUL byte is anywhere in the text of values `items` of `array`: one search of the
/// column spares a search of each value when there is none, as there nearly never is.
fn holds_nul(array: &StringArray, items: Range<usize>) -> bool {
    let offsets = array.value_offsets();
    let (Some(&start), Some(&end)) = (offsets.get(items.start), offsets.get(items.end)) else {
        return true;
    };
    if items.is_empty() {
        return false;
    }
    let text = array.value_data();
    let used = usize::try_from(start).ok().zip(usize::try_from(end).ok());
    used.and_then(|(start, end)| text.get(start..end))
        .is_none_or(|used| memchr::memchr(0, used).is_some())
}

fn cast<T: 'static>(array: &dyn Array) -> Option<&T> {
    array.as_any().downcast_ref::<T>()
}

impl<'a> View<'a> {
    /// The typed view of `array`, which has the Arrow type `kind` was made for.
    pub fn new(kind: &Kind, array: &'a dyn Array) -> Option<View<'a>> {
        View::of_items(kind, array, None)
    }

    /// The view of `array`, of which only the values `used` are written (an array column's
    /// elements: a slice of a list keeps all of its child's values); `None` for all.
    fn of_items(kind: &Kind, array: &'a dyn Array, used: Option<Range<usize>>) -> Option<Self> {
        Some(match kind {
            Kind::Bool => View::Bool(cast(array)?),
            Kind::I16 => View::I16(cast(array)?),
            Kind::I32 => View::I32(cast(array)?),
            Kind::I64 => View::I64(cast(array)?),
            Kind::F32 => View::F32(cast(array)?),
            Kind::F64 => View::F64(cast(array)?),
            Kind::Decimal(s) => View::Decimal(cast(array)?, *s),
            Kind::NumericText => View::NumericText(cast(array)?),
            Kind::Text => {
                let text: &StringArray = cast(array)?;
                View::Text(text, holds_nul(text, used.unwrap_or(0..text.len())))
            }
            Kind::Jsonb => View::Jsonb(cast(array)?),
            Kind::Bytea => View::Bytea(cast(array)?),
            Kind::Uuid => View::Uuid(cast(array)?),
            Kind::Date => View::Date(cast(array)?),
            Kind::Time => View::Time(cast(array)?),
            Kind::Timestamp => View::Timestamp(cast(array)?),
            Kind::Interval => View::Interval(cast(array)?),
            Kind::List(item, element) => {
                let list: &ListArray = cast(array)?;
                let offsets = list.value_offsets();
                let bound = |o: Option<&i32>| o.and_then(|&o| usize::try_from(o).ok());
                let items = bound(offsets.first()).zip(bound(offsets.last()));
                let used = items.map(|(first, last)| first..last);
                View::List(
                    list,
                    Box::new(View::of_items(item, list.values().as_ref(), used)?),
                    *element,
                )
            }
        })
    }

    fn is_null(&self, i: usize) -> bool {
        match self {
            View::Bool(a) => a.is_null(i),
            View::I16(a) => a.is_null(i),
            View::I32(a) => a.is_null(i),
            View::I64(a) => a.is_null(i),
            View::F32(a) => a.is_null(i),
            View::F64(a) => a.is_null(i),
            View::Decimal(a, _) => a.is_null(i),
            View::NumericText(a) | View::Text(a, _) | View::Jsonb(a) => a.is_null(i),
            View::Bytea(a) => a.is_null(i),
            View::Uuid(a) => a.is_null(i),
            View::Date(a) => a.is_null(i),
            View::Time(a) => a.is_null(i),
            View::Timestamp(a) => a.is_null(i),
            View::Interval(a) => a.is_null(i),
            View::List(a, ..) => a.is_null(i),
        }
    }

    /// Appends value `i` as a field; Err says why PostgreSQL cannot take it.
    #[inline]
    pub fn put(&self, i: usize, buf: &mut BytesMut) -> Result<(), EncodeError> {
        if self.is_null(i) {
            buf.put_i32(-1);
            return Ok(());
        }
        match self {
            View::Bool(a) => {
                buf.put_i32(1);
                buf.put_u8(u8::from(a.value(i)));
            }
            View::I16(a) => {
                buf.put_i32(2);
                buf.put_i16(a.value(i));
            }
            View::I32(a) => {
                buf.put_i32(4);
                buf.put_i32(a.value(i));
            }
            View::I64(a) => {
                buf.put_i32(8);
                buf.put_i64(a.value(i));
            }
            View::F32(a) => {
                buf.put_i32(4);
                buf.put_f32(a.value(i));
            }
            View::F64(a) => {
                buf.put_i32(8);
                buf.put_f64(a.value(i));
            }
            View::Decimal(a, scale) => numeric::put_i128(a.value(i), *scale, buf),
            View::NumericText(a) => {
                numeric::put_text(a.value(i), buf).map_err(EncodeError::Numeric)?
            }
            View::Text(a, nul) => {
                let text = a.value(i).as_bytes();
                // PostgreSQL refuses it for the whole COPY, naming neither row nor column.
                if *nul && text.contains(&0) {
                    return Err(EncodeError::NulInText);
                }
                put_bytes(text, buf)?
            }
            View::Jsonb(a) => {
                let json = a.value(i).as_bytes();
                buf.put_i32(length(json.len() + 1)?);
                // jsonb's binary form is a version byte, then the JSON text.
                buf.put_u8(1);
                buf.put_slice(json);
            }
            View::Bytea(a) => put_bytes(a.value(i), buf)?,
            View::Uuid(a) => {
                buf.put_i32(16);
                buf.put_slice(a.value(i));
            }
            View::Date(a) => {
                let days = i64::from(a.value(i)) - i64::from(EPOCH_DAYS);
                if !(PG_DATE_MIN..PG_DATE_END).contains(&days) {
                    return Err(EncodeError::DateOutOfRange);
                }
                buf.put_i32(4);
                buf.put_i32(days as i32);
            }
            View::Time(a) => {
                let micros = a.value(i);
                if !(0..=MICROS_PER_DAY).contains(&micros) {
                    return Err(EncodeError::NotATimeOfDay);
                }
                buf.put_i32(8);
                buf.put_i64(micros);
            }
            View::Timestamp(a) => {
                let micros = a.value(i).checked_sub(EPOCH_MICROS).unwrap_or(i64::MIN);
                if !(PG_TIMESTAMP_MIN..PG_TIMESTAMP_END).contains(&micros) {
                    return Err(EncodeError::TimestampOutOfRange);
                }
                buf.put_i32(8);
                buf.put_i64(micros);
            }
            View::Interval(a) => {
                let v = a.value(i);
                buf.put_i32(16);
                // PostgreSQL keeps microseconds: nanoseconds below that are dropped.
                buf.put_i64(v.nanoseconds / 1000);
                buf.put_i32(v.days);
                buf.put_i32(v.months);
            }
            View::List(a, items, element) => {
                let offsets = a.value_offsets();
                let (start, end) = (offsets[i] as usize, offsets[i + 1] as usize);
                let at = buf.len();
                buf.put_i32(0);
                let count = end - start;
                let has_null = (start..end).any(|j| items.is_null(j));
                buf.put_i32(i32::from(count > 0));
                buf.put_i32(i32::from(has_null));
                buf.put_u32(*element);
                if count > 0 {
                    buf.put_i32(length(count)?);
                    buf.put_i32(1);
                }
                for j in start..end {
                    items.put(j, buf).map_err(|e| EncodeError::Element {
                        element: j - start + 1,
                        source: Box::new(e),
                    })?;
                }
                let len = length(buf.len() - at - 4)?;
                buf[at..at + 4].copy_from_slice(&len.to_be_bytes());
            }
        }
        Ok(())
    }
}

fn length(n: usize) -> Result<i32, EncodeError> {
    i32::try_from(n).map_err(|_| EncodeError::TooLong { bytes: n })
}

fn put_bytes(v: &[u8], buf: &mut BytesMut) -> Result<(), EncodeError> {
    buf.put_i32(length(v.len())?);
    buf.put_slice(v);
    Ok(())
}

/// The 16 bytes of a UUID written as 32 hex digits, with optional hyphens and braces as
/// PostgreSQL's uuid input accepts them.
pub fn parse_uuid(text: &str) -> Option<[u8; 16]> {
    let t = text.trim();
    let t = t
        .strip_prefix('{')
        .and_then(|t| t.strip_suffix('}'))
        .unwrap_or(t);
    let mut out = [0u8; 16];
    let mut n = 0;
    for c in t.bytes() {
        if c == b'-' {
            continue;
        }
        let v = (c as char).to_digit(16)? as u8;
        if n >= 32 {
            return None;
        }
        out[n / 2] |= if n % 2 == 0 { v << 4 } else { v };
        n += 1;
    }
    (n == 32).then_some(out)
}

#[cfg(test)]
mod tests {
    use arrow::array::{Array, ListArray, ListBuilder, StringArray, StringBuilder};

    use super::{Kind, View, holds_nul};

    #[test]
    fn a_nul_is_found_only_in_the_values_a_slice_shows() {
        let text = StringArray::from(vec![Some("a\0b"), Some("plain"), None, Some("x\0")]);
        let all = |t: &StringArray| holds_nul(t, 0..t.len());
        assert!(all(&text));
        assert!(!all(&text.slice(1, 2)));
        assert!(all(&text.slice(2, 2)));
        assert!(all(&text.slice(0, 1)));
        assert!(!all(&text.slice(1, 0)));
        assert!(!all(&StringArray::from(vec!["none", "here"])));
        // The elements a list's rows use, out of all of its child's values.
        assert!(!holds_nul(&text, 1..3));
        assert!(holds_nul(&text, 3..4));
        assert!(!holds_nul(&text, 2..2));
        // A range beyond the values searches each value, as a NUL would.
        assert!(holds_nul(&text, 3..9));
    }

    #[test]
    fn a_list_slice_searches_only_the_elements_of_its_rows() {
        let rows = [
            Some(vec![Some("a\0")]),
            Some(vec![Some("b"), None]),
            Some(vec![]),
        ];
        let mut list = ListBuilder::new(StringBuilder::new());
        for row in rows {
            list.append_option(row);
        }
        let list = list.finish();
        let kind = Kind::List(Box::new(Kind::Text), 25);
        let nul_in = |array: &ListArray| match View::new(&kind, array) {
            Some(View::List(_, item, _)) => matches!(*item, View::Text(_, true)),
            _ => panic!("a text[] column has a list view"),
        };
        assert!(nul_in(&list));
        assert!(!nul_in(&list.slice(1, 2)));
        assert!(nul_in(&list.slice(0, 1)));
    }
}
