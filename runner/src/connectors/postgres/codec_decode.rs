//! Column decoders of binary COPY: each appends one value's bytes straight to an Arrow
//! builder. The decoder of a column is chosen once from its type, so the per-value work is a
//! single enum dispatch and a length check.

use std::sync::Arc;

use arrow::array::builder::NullBufferBuilder;
use arrow::array::{
    ArrayRef, BinaryArray, BinaryBuilder, BooleanBuilder, Date32Builder, Decimal128Builder,
    FixedSizeBinaryBuilder, Float32Builder, Float64Builder, Int16Builder, Int32Builder,
    Int64Builder, IntervalMonthDayNanoBuilder, ListArray, StringArray, StringBuilder,
    Time64MicrosecondBuilder, TimestampMicrosecondBuilder,
};
use arrow::buffer::OffsetBuffer;
use arrow::datatypes::{DataType, FieldRef, IntervalMonthDayNano};
use arrow::error::ArrowError;

use super::numeric;
use super::types::{PgType, oid};

/// Days from 1970-01-01 (Arrow's epoch) to 2000-01-01 (PostgreSQL's).
pub const EPOCH_DAYS: i32 = 10_957;
/// Microseconds from 1970-01-01 to 2000-01-01.
pub const EPOCH_MICROS: i64 = 946_684_800_000_000;

/// Why a value cannot be decoded, and the value as a message shows it. Built only when a value
/// fails, so the success path allocates nothing.
#[derive(Debug)]
pub struct Bad {
    pub reason: String,
    pub value: String,
}

impl Bad {
    fn new(reason: impl Into<String>, value: impl Into<String>) -> Bad {
        Bad {
            reason: reason.into(),
            value: value.into(),
        }
    }

    fn bytes(reason: impl Into<String>, v: &[u8]) -> Bad {
        Bad::new(reason, shown_bytes(v))
    }
}

/// Bytes as a message shows them: hex, cut after 48 bytes.
pub fn shown_bytes(v: &[u8]) -> String {
    let mut s = String::from("0x");
    for b in v.iter().take(48) {
        s.push_str(&format!("{b:02x}"));
    }
    if v.len() > 48 {
        s.push_str(&format!("… ({} bytes)", v.len()));
    }
    s
}

/// Text as a message shows it: cut after about 100 characters.
pub fn shown_text(t: &str) -> String {
    match t.char_indices().nth(100) {
        Some((at, _)) => format!("\"{}…\" ({} bytes)", &t[..at], t.len()),
        None => format!("\"{t}\""),
    }
}

fn fixed<const N: usize>(v: &[u8], what: &str) -> Result<[u8; N], Bad> {
    <[u8; N]>::try_from(v)
        .map_err(|_| Bad::bytes(format!("a binary {what} has {N} bytes, not {}", v.len()), v))
}

/// Why a column's values could not become an array.
#[derive(Debug)]
pub enum Unfinished {
    /// Value `row` of the batch cannot be read (text that is not UTF-8, which is checked for
    /// the whole batch at once).
    Bad {
        row: usize,
        bad: Bad,
    },
    Arrow(ArrowError),
}

impl From<ArrowError> for Unfinished {
    fn from(e: ArrowError) -> Self {
        Unfinished::Arrow(e)
    }
}

/// A text column collected as bytes, then checked as UTF-8 in one pass over all of its
/// values (one call per value costs more than the check itself for short text); when that
/// fails, the first value that is not UTF-8 names the row.
fn text_array(bytes: BinaryArray) -> Result<StringArray, Unfinished> {
    StringArray::try_from_binary(bytes.clone()).map_err(|e| {
        let first_bad = bytes.iter().enumerate().find_map(|(row, v)| {
            Some(Unfinished::Bad {
                row,
                bad: utf8(v?).err()?,
            })
        });
        first_bad.unwrap_or(Unfinished::Arrow(e))
    })
}

fn utf8(v: &[u8]) -> Result<&str, Bad> {
    std::str::from_utf8(v).map_err(|e| {
        Bad::new(
            format!("invalid UTF-8 ({e}); set the database encoding to UTF8"),
            shown_text(&String::from_utf8_lossy(v)),
        )
    })
}

/// Appends the values of one column.
pub enum Decoder {
    Bool(BooleanBuilder),
    I16(Int16Builder),
    I32(Int32Builder),
    I64(Int64Builder),
    F32(Float32Builder),
    F64(Float64Builder),
    Decimal(Decimal128Builder, i8),
    NumericText(StringBuilder),
    Text(BinaryBuilder),
    Jsonb(StringBuilder),
    Bytea(BinaryBuilder),
    Uuid(FixedSizeBinaryBuilder),
    Date(Date32Builder),
    Time(Time64MicrosecondBuilder),
    Timestamp(TimestampMicrosecondBuilder),
    Interval(IntervalMonthDayNanoBuilder),
    List(Box<ListDecoder>),
}

/// A one-dimensional array column: offsets and validity here, elements in `items`.
pub struct ListDecoder {
    items: Decoder,
    element: u32,
    item_field: FieldRef,
    offsets: Vec<i32>,
    nulls: NullBufferBuilder,
}

impl Decoder {
    /// The decoder of a column whose Arrow type is `data_type` (from `arrow_type(t)`), sized
    /// for `rows` values of `bytes` variable-width data.
    pub fn new(t: &PgType, data_type: &DataType, rows: usize, bytes: usize) -> Option<Decoder> {
        Some(match data_type {
            DataType::List(item) => {
                let element = t.element_type()?;
                Decoder::List(Box::new(ListDecoder {
                    items: Decoder::new(&element, item.data_type(), rows, bytes)?,
                    element: element.oid,
                    item_field: item.clone(),
                    offsets: {
                        let mut o = Vec::with_capacity(rows + 1);
                        o.push(0);
                        o
                    },
                    nulls: NullBufferBuilder::new(rows),
                }))
            }
            DataType::Boolean => Decoder::Bool(BooleanBuilder::with_capacity(rows)),
            DataType::Int16 => Decoder::I16(Int16Builder::with_capacity(rows)),
            DataType::Int32 => Decoder::I32(Int32Builder::with_capacity(rows)),
            DataType::Int64 => Decoder::I64(Int64Builder::with_capacity(rows)),
            DataType::Float32 => Decoder::F32(Float32Builder::with_capacity(rows)),
            DataType::Float64 => Decoder::F64(Float64Builder::with_capacity(rows)),
            DataType::Decimal128(p, s) => Decoder::Decimal(
                Decimal128Builder::with_capacity(rows)
                    .with_precision_and_scale(*p, *s)
                    .ok()?,
                *s,
            ),
            DataType::Utf8 => match t.oid {
                oid::NUMERIC => Decoder::NumericText(StringBuilder::with_capacity(rows, bytes)),
                oid::JSONB => Decoder::Jsonb(StringBuilder::with_capacity(rows, bytes)),
                _ => Decoder::Text(BinaryBuilder::with_capacity(rows, bytes)),
            },
            DataType::Binary => Decoder::Bytea(BinaryBuilder::with_capacity(rows, bytes)),
            DataType::FixedSizeBinary(16) => {
                Decoder::Uuid(FixedSizeBinaryBuilder::with_capacity(rows, 16))
            }
            DataType::Date32 => Decoder::Date(Date32Builder::with_capacity(rows)),
            DataType::Time64(_) => Decoder::Time(Time64MicrosecondBuilder::with_capacity(rows)),
            DataType::Timestamp(_, tz) => Decoder::Timestamp(
                TimestampMicrosecondBuilder::with_capacity(rows).with_timezone_opt(tz.clone()),
            ),
            DataType::Interval(_) => {
                Decoder::Interval(IntervalMonthDayNanoBuilder::with_capacity(rows))
            }
            _ => return None,
        })
    }

    /// Whether the column's Arrow memory grows with its values' lengths.
    pub fn variable(&self) -> bool {
        matches!(
            self,
            Decoder::NumericText(_)
                | Decoder::Text(_)
                | Decoder::Jsonb(_)
                | Decoder::Bytea(_)
                | Decoder::List(_)
        )
    }

    /// Arrow bytes per value not counting variable data: the value or offset width.
    pub fn width(&self) -> usize {
        match self {
            Decoder::Bool(_) => 1,
            Decoder::I16(_) => 2,
            Decoder::I32(_) | Decoder::Date(_) => 4,
            Decoder::I64(_) | Decoder::F64(_) | Decoder::Time(_) | Decoder::Timestamp(_) => 8,
            Decoder::F32(_) => 4,
            Decoder::Decimal(..) | Decoder::Interval(_) | Decoder::Uuid(_) => 16,
            Decoder::NumericText(_)
            | Decoder::Text(_)
            | Decoder::Jsonb(_)
            | Decoder::Bytea(_)
            | Decoder::List(_) => 4,
        }
    }

    pub fn append_null(&mut self) {
        match self {
            Decoder::Bool(b) => b.append_null(),
            Decoder::I16(b) => b.append_null(),
            Decoder::I32(b) => b.append_null(),
            Decoder::I64(b) => b.append_null(),
            Decoder::F32(b) => b.append_null(),
            Decoder::F64(b) => b.append_null(),
            Decoder::Decimal(b, _) => b.append_null(),
            Decoder::NumericText(b) | Decoder::Jsonb(b) => b.append_null(),
            Decoder::Text(b) | Decoder::Bytea(b) => b.append_null(),
            Decoder::Uuid(b) => b.append_null(),
            Decoder::Date(b) => b.append_null(),
            Decoder::Time(b) => b.append_null(),
            Decoder::Timestamp(b) => b.append_null(),
            Decoder::Interval(b) => b.append_null(),
            Decoder::List(l) => {
                l.offsets.push(l.offsets.last().copied().unwrap_or(0));
                l.nulls.append_null();
            }
        }
    }

    /// Appends one non-null value.
    #[inline]
    pub fn append(&mut self, v: &[u8]) -> Result<(), Bad> {
        match self {
            Decoder::Bool(b) => b.append_value(fixed::<1>(v, "boolean")?[0] != 0),
            Decoder::I16(b) => b.append_value(i16::from_be_bytes(fixed(v, "smallint")?)),
            Decoder::I32(b) => b.append_value(i32::from_be_bytes(fixed(v, "integer")?)),
            Decoder::I64(b) => b.append_value(i64::from_be_bytes(fixed(v, "bigint")?)),
            Decoder::F32(b) => b.append_value(f32::from_be_bytes(fixed(v, "real")?)),
            Decoder::F64(b) => b.append_value(f64::from_be_bytes(fixed(v, "double")?)),
            Decoder::Decimal(b, scale) => match numeric::to_i128(v, *scale) {
                Ok(n) => b.append_value(n),
                Err(e) => {
                    let mut text = String::new();
                    let shown = match numeric::write_text(v, &mut text) {
                        Ok(()) => text,
                        Err(_) => shown_bytes(v),
                    };
                    return Err(Bad::new(
                        format!(
                            "{e}; Arrow Decimal128 cannot hold it (filter it out, or read the column as text with a query casting it to numeric without precision)"
                        ),
                        shown,
                    ));
                }
            },
            Decoder::NumericText(b) => {
                numeric::write_text(v, b).map_err(|e| Bad::bytes(e.to_string(), v))?;
                b.append_value("");
            }
            Decoder::Text(b) => b.append_value(v),
            Decoder::Jsonb(b) => match v.split_first() {
                Some((1, json)) => b.append_value(utf8(json)?),
                _ => return Err(Bad::bytes("binary jsonb without version byte 1", v)),
            },
            Decoder::Bytea(b) => b.append_value(v),
            Decoder::Uuid(b) => {
                let u = fixed::<16>(v, "uuid")?;
                b.append_value(u)
                    .map_err(|e| Bad::bytes(e.to_string(), v))?;
            }
            Decoder::Date(b) => {
                let d = i32::from_be_bytes(fixed(v, "date")?);
                let days = match d {
                    i32::MAX => return Err(infinite("infinity", "date")),
                    i32::MIN => return Err(infinite("-infinity", "date")),
                    d => d.checked_add(EPOCH_DAYS),
                };
                b.append_value(days.ok_or_else(|| {
                    Bad::new(
                        "beyond Arrow's date range",
                        format!("{d} days after 2000-01-01"),
                    )
                })?);
            }
            Decoder::Time(b) => b.append_value(i64::from_be_bytes(fixed(v, "time")?)),
            Decoder::Timestamp(b) => {
                let t = i64::from_be_bytes(fixed(v, "timestamp")?);
                let micros = match t {
                    i64::MAX => return Err(infinite("infinity", "timestamp")),
                    i64::MIN => return Err(infinite("-infinity", "timestamp")),
                    t => t.checked_add(EPOCH_MICROS),
                };
                b.append_value(micros.ok_or_else(|| {
                    Bad::new(
                        "beyond Arrow's timestamp range (microseconds from 1970 end in 294247 AD); filter the row out or select the column as text",
                        format!("{t} microseconds after 2000-01-01"),
                    )
                })?);
            }
            Decoder::Interval(b) => {
                let raw: [u8; 16] = fixed(v, "interval")?;
                let [
                    m0,
                    m1,
                    m2,
                    m3,
                    m4,
                    m5,
                    m6,
                    m7,
                    d0,
                    d1,
                    d2,
                    d3,
                    n0,
                    n1,
                    n2,
                    n3,
                ] = raw;
                let micros = i64::from_be_bytes([m0, m1, m2, m3, m4, m5, m6, m7]);
                let days = i32::from_be_bytes([d0, d1, d2, d3]);
                let months = i32::from_be_bytes([n0, n1, n2, n3]);
                let nanos = micros
                    .checked_mul(1000)
                    .ok_or_else(|| Bad::bytes("interval too long for nanoseconds", v))?;
                b.append_value(IntervalMonthDayNano::new(months, days, nanos));
            }
            Decoder::List(l) => l.append(v)?,
        }
        Ok(())
    }

    /// The column's values since the last call; the builder is left empty.
    pub fn finish(&mut self) -> Result<ArrayRef, Unfinished> {
        Ok(match self {
            Decoder::Bool(b) => Arc::new(b.finish()),
            Decoder::I16(b) => Arc::new(b.finish()),
            Decoder::I32(b) => Arc::new(b.finish()),
            Decoder::I64(b) => Arc::new(b.finish()),
            Decoder::F32(b) => Arc::new(b.finish()),
            Decoder::F64(b) => Arc::new(b.finish()),
            Decoder::Decimal(b, _) => Arc::new(b.finish()),
            Decoder::NumericText(b) | Decoder::Jsonb(b) => Arc::new(b.finish()),
            Decoder::Text(b) => Arc::new(text_array(b.finish())?),
            Decoder::Bytea(b) => Arc::new(b.finish()),
            Decoder::Uuid(b) => Arc::new(b.finish()),
            Decoder::Date(b) => Arc::new(b.finish()),
            Decoder::Time(b) => Arc::new(b.finish()),
            Decoder::Timestamp(b) => Arc::new(b.finish()),
            Decoder::Interval(b) => Arc::new(b.finish()),
            Decoder::List(l) => l.finish()?,
        })
    }
}

fn infinite(value: &str, what: &str) -> Bad {
    Bad::new(
        format!("Arrow has no infinite {what}; filter the row out or replace the value in a query"),
        value,
    )
}

fn be_i32(v: &[u8], at: usize) -> Option<i32> {
    Some(i32::from_be_bytes(v.get(at..at + 4)?.try_into().ok()?))
}

impl ListDecoder {
    fn append(&mut self, v: &[u8]) -> Result<(), Bad> {
        let malformed = || Bad::bytes("malformed binary array", v);
        let ndim = be_i32(v, 0).ok_or_else(malformed)?;
        let element = be_i32(v, 8).ok_or_else(malformed)? as u32;
        let mut count = 0usize;
        let mut at = 12;
        match ndim {
            0 => {}
            1 => {
                count = usize::try_from(be_i32(v, 12).ok_or_else(malformed)?)
                    .map_err(|_| malformed())?;
                at = 20;
            }
            n => {
                return Err(Bad::new(
                    format!(
                        "a {n}-dimensional array has no Arrow list form; unnest it or select it as text in a query"
                    ),
                    shown_bytes(v),
                ));
            }
        }
        if element != self.element {
            return Err(Bad::bytes(
                format!(
                    "array elements have type oid {element}, expected {}",
                    self.element
                ),
                v,
            ));
        }
        for k in 0..count {
            let len = be_i32(v, at).ok_or_else(malformed)?;
            at += 4;
            if len < 0 {
                self.items.append_null();
                continue;
            }
            let end = at + len as usize;
            let item = v.get(at..end).ok_or_else(malformed)?;
            self.items.append(item).map_err(|b| Bad {
                reason: format!("element {}: {}", k + 1, b.reason),
                value: b.value,
            })?;
            at = end;
        }
        let last = self.offsets.last().copied().unwrap_or(0);
        let next = i32::try_from(count)
            .ok()
            .and_then(|c| last.checked_add(c))
            .ok_or_else(|| Bad::bytes("more than 2^31 array elements in one batch", v))?;
        self.offsets.push(next);
        self.nulls.append_non_null();
        Ok(())
    }

    fn finish(&mut self) -> Result<ArrayRef, Unfinished> {
        let offsets = std::mem::replace(&mut self.offsets, vec![0]);
        // A bad element names its array's row, and its place in the array.
        let values = self.items.finish().map_err(|e| match e {
            Unfinished::Bad { row: item, bad } => {
                let within = |o: &i32| usize::try_from(*o).is_ok_and(|o| o <= item);
                let row = offsets.partition_point(within).saturating_sub(1);
                let first = offsets.get(row).and_then(|&o| usize::try_from(o).ok());
                let element = first.map_or(0, |first| item - first + 1);
                let reason = format!("element {element}: {}", bad.reason);
                let bad = Bad::new(reason, bad.value);
                Unfinished::Bad { row, bad }
            }
            other => other,
        })?;
        let nulls = self.nulls.finish();
        Ok(Arc::new(ListArray::try_new(
            self.item_field.clone(),
            OffsetBuffer::new(offsets.into()),
            values,
            nulls,
        )?))
    }
}
