//! Values read from SQL Server (tiberius `ColumnData`) into Arrow builders, and the calendar
//! arithmetic both directions share.

use std::borrow::Cow;
use std::sync::Arc;

use arrow::array::{
    ArrayRef, BinaryBuilder, BooleanBuilder, Date32Builder, Decimal128Builder,
    FixedSizeBinaryBuilder, Float32Builder, Float64Builder, Int16Builder, Int32Builder,
    Int64Builder, StringBuilder, Time64MicrosecondBuilder, TimestampMicrosecondBuilder,
    UInt8Builder,
};
use arrow::datatypes::{DataType, Field, TimeUnit};
use tiberius::ColumnData;
use tiberius::numeric::Numeric;
use tiberius::time::{Date, DateTime, DateTime2, SmallDateTime, Time};

/// Days from 0001-01-01 (SQL Server's `date` origin) to 1970-01-01.
pub const DAYS_TO_UNIX_EPOCH: i64 = 719_162;
/// Days from 1900-01-01 (`datetime`'s origin) to 1970-01-01.
pub const DAYS_1900_TO_UNIX_EPOCH: i64 = 25_567;
/// The last day SQL Server's `date` holds (9999-12-31), counted from 0001-01-01.
pub const MAX_DATE_DAYS: i64 = 3_652_058;
pub const MICROS_PER_DAY: i64 = 86_400_000_000;

/// Days since 1970-01-01 of a `date`.
pub fn date_to_unix_days(date: Date) -> i32 {
    (i64::from(date.days()) - DAYS_TO_UNIX_EPOCH) as i32
}

/// Microseconds since midnight of a `time` of any scale; digits below a microsecond (scale
/// 7) are truncated.
pub fn time_to_micros(time: Time) -> i64 {
    let increments = time.increments() as i64;
    let scale = u32::from(time.scale().min(7));
    if scale <= 6 {
        increments * 10_i64.pow(6 - scale)
    } else {
        increments / 10_i64.pow(scale - 6)
    }
}

/// Microseconds since 1970-01-01 of a `datetime2` (and of the UTC part of a
/// `datetimeoffset`).
pub fn datetime2_to_micros(value: DateTime2) -> i64 {
    i64::from(date_to_unix_days(value.date())) * MICROS_PER_DAY + time_to_micros(value.time())
}

/// Microseconds since 1970-01-01 of a legacy `datetime`: days since 1900 and 1/300 seconds,
/// rounded to the microsecond.
pub fn datetime_to_micros(value: DateTime) -> i64 {
    let days = i64::from(value.days()) - DAYS_1900_TO_UNIX_EPOCH;
    let fragments = i64::from(value.seconds_fragments());
    days * MICROS_PER_DAY + (fragments * 10_000 + 1) / 3
}

/// Microseconds since 1970-01-01 of a `smalldatetime`: days since 1900 and minutes.
pub fn smalldatetime_to_micros(value: SmallDateTime) -> i64 {
    let days = i64::from(value.days()) - DAYS_1900_TO_UNIX_EPOCH;
    days * MICROS_PER_DAY + i64::from(value.seconds_fragments()) * 60_000_000
}

/// A decimal's unscaled value at `scale`. `None` when it does not fit 38 digits or would lose
/// digits.
pub fn numeric_at_scale(value: Numeric, scale: i8) -> Option<i128> {
    rescale(value.value(), i32::from(value.scale()), i32::from(scale))
}

fn rescale(value: i128, from: i32, to: i32) -> Option<i128> {
    let out = if to >= from {
        value.checked_mul(10_i128.checked_pow((to - from) as u32)?)?
    } else {
        let divisor = 10_i128.checked_pow((from - to) as u32)?;
        if value % divisor != 0 {
            return None;
        }
        value / divisor
    };
    (out.unsigned_abs() < 10_u128.pow(38)).then_some(out)
}

/// A float (money from a query arrives so) as a decimal at `scale`.
fn float_at_scale(value: f64, scale: i8) -> Option<i128> {
    let scaled = (value * 10_f64.powi(i32::from(scale))).round();
    (scaled.is_finite() && scaled.abs() < 1e38).then_some(scaled as i128)
}

/// A value converted for its column, not yet appended.
#[derive(Debug, PartialEq)]
pub enum Cell<'a> {
    Null,
    Bool(bool),
    /// Integers, days and microseconds.
    Int(i64),
    Float(f64),
    Decimal(i128),
    Text(Cow<'a, str>),
    Bytes(Cow<'a, [u8]>),
    Uuid([u8; 16]),
}

/// One column being built.
pub enum ColumnBuilder {
    Boolean(BooleanBuilder),
    UInt8(UInt8Builder),
    Int16(Int16Builder),
    Int32(Int32Builder),
    Int64(Int64Builder),
    Float32(Float32Builder),
    Float64(Float64Builder),
    Decimal(Decimal128Builder, u8, i8),
    Utf8(StringBuilder),
    Binary(BinaryBuilder),
    Uuid(FixedSizeBinaryBuilder),
    Date(Date32Builder),
    Time(Time64MicrosecondBuilder),
    Timestamp(TimestampMicrosecondBuilder, Option<Arc<str>>),
}

/// A value a column cannot hold: what is wrong (for messages) and the value (for the
/// rejected file only).
#[derive(Debug)]
pub struct Unread {
    pub problem: String,
    pub value: String,
}

impl Unread {
    fn new(problem: String, value: impl std::fmt::Display) -> Self {
        Self {
            problem,
            value: value.to_string(),
        }
    }
}

impl std::fmt::Display for Unread {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.problem)
    }
}

impl ColumnBuilder {
    /// A builder for a field of the read type map. `None` for a type it never produces.
    pub fn new(field: &Field) -> Option<Self> {
        Some(match field.data_type() {
            DataType::Boolean => Self::Boolean(BooleanBuilder::new()),
            DataType::UInt8 => Self::UInt8(UInt8Builder::new()),
            DataType::Int16 => Self::Int16(Int16Builder::new()),
            DataType::Int32 => Self::Int32(Int32Builder::new()),
            DataType::Int64 => Self::Int64(Int64Builder::new()),
            DataType::Float32 => Self::Float32(Float32Builder::new()),
            DataType::Float64 => Self::Float64(Float64Builder::new()),
            DataType::Decimal128(p, s) => Self::Decimal(Decimal128Builder::new(), *p, *s),
            DataType::Utf8 => Self::Utf8(StringBuilder::new()),
            DataType::Binary => Self::Binary(BinaryBuilder::new()),
            DataType::FixedSizeBinary(16) => Self::Uuid(FixedSizeBinaryBuilder::new(16)),
            DataType::Date32 => Self::Date(Date32Builder::new()),
            DataType::Time64(TimeUnit::Microsecond) => Self::Time(Time64MicrosecondBuilder::new()),
            DataType::Timestamp(TimeUnit::Microsecond, tz) => {
                Self::Timestamp(TimestampMicrosecondBuilder::new(), tz.clone())
            }
            _ => return None,
        })
    }

    /// Appends one value. `Err` says why it does not fit (the caller adds row and column).
    #[cfg(test)]
    pub fn append(&mut self, value: ColumnData<'_>) -> Result<(), Unread> {
        let cell = self.convert(value)?;
        self.push(cell);
        Ok(())
    }

    /// The value as this column holds it, without appending it: a row is appended only once
    /// all its values converted, so a bad row can be skipped whole.
    pub fn convert<'a>(&self, value: ColumnData<'a>) -> Result<Cell<'a>, Unread> {
        use ColumnData as V;
        let int = |v: Option<i64>| v.map_or(Cell::Null, Cell::Int);
        let float = |v: Option<f64>| v.map_or(Cell::Null, Cell::Float);
        let micros = |v: Option<i64>| v.map_or(Cell::Null, Cell::Int);
        Ok(match (self, value) {
            (Self::Boolean(_), V::Bit(v)) => v.map_or(Cell::Null, Cell::Bool),
            (Self::UInt8(_), V::U8(v)) => int(v.map(i64::from)),
            (Self::Int16(_), V::I16(v)) => int(v.map(i64::from)),
            (Self::Int16(_), V::U8(v)) => int(v.map(i64::from)),
            (Self::Int32(_), V::I32(v)) => int(v.map(i64::from)),
            (Self::Int32(_), V::I16(v)) => int(v.map(i64::from)),
            (Self::Int32(_), V::U8(v)) => int(v.map(i64::from)),
            (Self::Int64(_), V::I64(v)) => int(v),
            (Self::Int64(_), V::I32(v)) => int(v.map(i64::from)),
            (Self::Int64(_), V::I16(v)) => int(v.map(i64::from)),
            (Self::Int64(_), V::U8(v)) => int(v.map(i64::from)),
            (Self::Float32(_), V::F32(v)) => float(v.map(f64::from)),
            (Self::Float64(_), V::F64(v)) => float(v),
            (Self::Float64(_), V::F32(v)) => float(v.map(f64::from)),
            (Self::Decimal(_, p, s), V::Numeric(Some(n))) => Cell::Decimal(
                numeric_at_scale(n, *s)
                    .filter(|u| u.unsigned_abs() < 10_u128.pow(u32::from(*p)))
                    .ok_or_else(|| {
                        Unread::new(format!("the value does not fit decimal({p},{s})"), n)
                    })?,
            ),
            (Self::Decimal(_, p, s), V::F64(Some(f))) => Cell::Decimal(
                float_at_scale(f, *s)
                    .filter(|u| u.unsigned_abs() < 10_u128.pow(u32::from(*p)))
                    .ok_or_else(|| {
                        Unread::new(format!("the value does not fit decimal({p},{s})"), f)
                    })?,
            ),
            (Self::Decimal(..), V::Numeric(None) | V::F64(None)) => Cell::Null,
            (Self::Utf8(_), V::String(v)) => v.map_or(Cell::Null, Cell::Text),
            (Self::Utf8(_), V::Xml(v)) => v.map_or(Cell::Null, |x| {
                Cell::Text(Cow::Owned(x.into_owned().into_string()))
            }),
            (Self::Utf8(_), V::Guid(v)) => {
                v.map_or(Cell::Null, |u| Cell::Text(Cow::Owned(u.to_string())))
            }
            (Self::Binary(_), V::Binary(v)) => v.map_or(Cell::Null, Cell::Bytes),
            (Self::Uuid(_), V::Guid(v)) => v.map_or(Cell::Null, |u| Cell::Uuid(*u.as_bytes())),
            (Self::Date(_), V::Date(v)) => int(v.map(|d| i64::from(date_to_unix_days(d)))),
            (Self::Time(_), V::Time(v)) => micros(v.map(time_to_micros)),
            (Self::Timestamp(_, None), V::DateTime2(v)) => micros(v.map(datetime2_to_micros)),
            (Self::Timestamp(_, None), V::DateTime(v)) => micros(v.map(datetime_to_micros)),
            (Self::Timestamp(_, None), V::SmallDateTime(v)) => {
                micros(v.map(smalldatetime_to_micros))
            }
            (Self::Timestamp(_, None), V::Date(v)) => {
                micros(v.map(|d| i64::from(date_to_unix_days(d)) * MICROS_PER_DAY))
            }
            // The datetime2 of a datetimeoffset is the instant in UTC (MS-TDS 2.2.5.5.1.8);
            // the offset only says how it was written, and is dropped.
            (Self::Timestamp(_, Some(_)), V::DateTimeOffset(v)) => {
                micros(v.map(|dto| datetime2_to_micros(dto.datetime2())))
            }
            (builder, value) => {
                let shown = format!("{value:?}");
                let kind = shown.split('(').next().unwrap_or_default().to_string();
                return Err(Unread {
                    problem: format!(
                        "a value of type {kind} cannot be read as {}",
                        builder.arrow_name()
                    ),
                    value: shown,
                });
            }
        })
    }

    /// Appends a value [`convert`](Self::convert) made for this column.
    pub fn push(&mut self, cell: Cell<'_>) {
        match (self, cell) {
            (Self::Boolean(b), Cell::Bool(v)) => b.append_value(v),
            (Self::UInt8(b), Cell::Int(v)) => b.append_value(v as u8),
            (Self::Int16(b), Cell::Int(v)) => b.append_value(v as i16),
            (Self::Int32(b), Cell::Int(v)) => b.append_value(v as i32),
            (Self::Int64(b), Cell::Int(v)) => b.append_value(v),
            (Self::Float32(b), Cell::Float(v)) => b.append_value(v as f32),
            (Self::Float64(b), Cell::Float(v)) => b.append_value(v),
            (Self::Decimal(b, ..), Cell::Decimal(v)) => b.append_value(v),
            (Self::Utf8(b), Cell::Text(v)) => b.append_value(v),
            (Self::Binary(b), Cell::Bytes(v)) => b.append_value(v),
            (Self::Uuid(b), Cell::Uuid(v)) => {
                // 16 bytes into a 16-byte column cannot fail.
                let _ = b.append_value(v);
            }
            (Self::Date(b), Cell::Int(v)) => b.append_value(v as i32),
            (Self::Time(b), Cell::Int(v)) => b.append_value(v),
            (Self::Timestamp(b, _), Cell::Int(v)) => b.append_value(v),
            // Nulls; `convert` makes no other pair than those above.
            (builder, _) => builder.append_null(),
        }
    }

    fn append_null(&mut self) {
        match self {
            Self::Boolean(b) => b.append_null(),
            Self::UInt8(b) => b.append_null(),
            Self::Int16(b) => b.append_null(),
            Self::Int32(b) => b.append_null(),
            Self::Int64(b) => b.append_null(),
            Self::Float32(b) => b.append_null(),
            Self::Float64(b) => b.append_null(),
            Self::Decimal(b, ..) => b.append_null(),
            Self::Utf8(b) => b.append_null(),
            Self::Binary(b) => b.append_null(),
            Self::Uuid(b) => b.append_null(),
            Self::Date(b) => b.append_null(),
            Self::Time(b) => b.append_null(),
            Self::Timestamp(b, _) => b.append_null(),
        }
    }

    fn arrow_name(&self) -> String {
        match self {
            Self::Boolean(_) => "Boolean".into(),
            Self::UInt8(_) => "UInt8".into(),
            Self::Int16(_) => "Int16".into(),
            Self::Int32(_) => "Int32".into(),
            Self::Int64(_) => "Int64".into(),
            Self::Float32(_) => "Float32".into(),
            Self::Float64(_) => "Float64".into(),
            Self::Decimal(_, p, s) => format!("Decimal128({p}, {s})"),
            Self::Utf8(_) => "Utf8".into(),
            Self::Binary(_) => "Binary".into(),
            Self::Uuid(_) => "a uuid".into(),
            Self::Date(_) => "Date32".into(),
            Self::Time(_) => "Time64(Microsecond)".into(),
            Self::Timestamp(_, None) => "a timestamp without time zone".into(),
            Self::Timestamp(_, Some(_)) => "a timestamp with time zone".into(),
        }
    }

    /// The column built so far; the builder starts over.
    pub fn finish(&mut self) -> Result<ArrayRef, arrow::error::ArrowError> {
        Ok(match self {
            Self::Boolean(b) => Arc::new(b.finish()),
            Self::UInt8(b) => Arc::new(b.finish()),
            Self::Int16(b) => Arc::new(b.finish()),
            Self::Int32(b) => Arc::new(b.finish()),
            Self::Int64(b) => Arc::new(b.finish()),
            Self::Float32(b) => Arc::new(b.finish()),
            Self::Float64(b) => Arc::new(b.finish()),
            Self::Decimal(b, p, s) => Arc::new(b.finish().with_precision_and_scale(*p, *s)?),
            Self::Utf8(b) => Arc::new(b.finish()),
            Self::Binary(b) => Arc::new(b.finish()),
            Self::Uuid(b) => Arc::new(b.finish()),
            Self::Date(b) => Arc::new(b.finish()),
            Self::Time(b) => Arc::new(b.finish()),
            Self::Timestamp(b, tz) => Arc::new(b.finish().with_timezone_opt(tz.clone())),
        })
    }
}

/// Bytes a value adds to a batch, roughly: its fixed width, or the length of its text or
/// bytes. Used to cut batches near the byte budget.
pub fn value_size(value: &ColumnData<'_>) -> usize {
    match value {
        ColumnData::String(Some(s)) => s.len() + 4,
        ColumnData::Binary(Some(b)) => b.len() + 4,
        ColumnData::Xml(Some(x)) => x.as_ref().as_ref().len() + 4,
        ColumnData::Numeric(_) => 16,
        ColumnData::Guid(_) => 16,
        _ => 8,
    }
}

#[cfg(test)]
mod tests {
    use arrow::array::{
        Array, BinaryArray, BooleanArray, Date32Array, Decimal128Array, FixedSizeBinaryArray,
        Int16Array, Int32Array, Int64Array, StringArray, Time64MicrosecondArray,
        TimestampMicrosecondArray, UInt8Array,
    };
    use tiberius::Uuid;
    use tiberius::time::DateTimeOffset;

    use super::*;

    fn build(data_type: DataType, values: Vec<ColumnData<'static>>) -> ArrayRef {
        let field = Field::new("c", data_type.clone(), true);
        let mut b = ColumnBuilder::new(&field).unwrap_or_else(|| panic!("{data_type}"));
        for v in values {
            b.append(v).unwrap_or_else(|e| panic!("{e}"));
        }
        b.finish().unwrap()
    }

    fn get<T: 'static>(a: &ArrayRef) -> &T {
        a.as_any().downcast_ref::<T>().unwrap()
    }

    #[test]
    fn integers_keep_their_extremes_and_nulls() {
        let a = build(
            DataType::UInt8,
            vec![
                ColumnData::U8(Some(0)),
                ColumnData::U8(Some(255)),
                ColumnData::U8(None),
            ],
        );
        let a = get::<UInt8Array>(&a);
        assert_eq!((a.value(0), a.value(1), a.is_null(2)), (0, 255, true));
        let a = build(
            DataType::Int16,
            vec![
                ColumnData::I16(Some(i16::MIN)),
                ColumnData::I16(Some(i16::MAX)),
            ],
        );
        assert_eq!(
            get::<Int16Array>(&a).values().to_vec(),
            vec![i16::MIN, i16::MAX]
        );
        let a = build(
            DataType::Int32,
            vec![ColumnData::I32(Some(i32::MIN)), ColumnData::I32(None)],
        );
        assert_eq!(get::<Int32Array>(&a).value(0), i32::MIN);
        assert!(get::<Int32Array>(&a).is_null(1));
        let a = build(
            DataType::Int64,
            vec![
                ColumnData::I64(Some(i64::MAX)),
                ColumnData::I64(Some(i64::MIN)),
            ],
        );
        assert_eq!(
            get::<Int64Array>(&a).values().to_vec(),
            vec![i64::MAX, i64::MIN]
        );
        let a = build(
            DataType::Boolean,
            vec![ColumnData::Bit(Some(true)), ColumnData::Bit(None)],
        );
        assert!(get::<BooleanArray>(&a).value(0));
        assert!(get::<BooleanArray>(&a).is_null(1));
    }

    #[test]
    fn decimals_keep_38_digits_and_money_floats_round_to_four_places() {
        let max = 10_i128.pow(38) - 1;
        let a = build(
            DataType::Decimal128(38, 10),
            vec![
                ColumnData::Numeric(Some(Numeric::new_with_scale(max, 10))),
                ColumnData::Numeric(Some(Numeric::new_with_scale(-max, 10))),
                ColumnData::Numeric(Some(Numeric::new_with_scale(-125, 2))),
                ColumnData::Numeric(None),
            ],
        );
        let d = get::<Decimal128Array>(&a);
        assert_eq!(d.value(0), max);
        assert_eq!(d.value(1), -max);
        assert_eq!(d.value(2), -12_500_000_000);
        assert!(d.is_null(3));
        assert_eq!(d.data_type(), &DataType::Decimal128(38, 10));
        let a = build(
            DataType::Decimal128(19, 4),
            vec![
                ColumnData::F64(Some(-214_748.364_8)),
                ColumnData::F64(Some(0.0001)),
            ],
        );
        let d = get::<Decimal128Array>(&a);
        assert_eq!(d.value(0), -2_147_483_648);
        assert_eq!(d.value(1), 1);
    }

    #[test]
    fn a_decimal_too_wide_for_its_column_is_an_error() {
        let field = Field::new("c", DataType::Decimal128(5, 2), true);
        let mut b = ColumnBuilder::new(&field).unwrap();
        let e = b
            .append(ColumnData::Numeric(Some(Numeric::new_with_scale(
                1_000_000, 2,
            ))))
            .unwrap_err();
        assert_eq!(e.problem, "the value does not fit decimal(5,2)");
        assert_eq!(e.value, "10000.00");
        let e = b.append(ColumnData::String(Some("x".into()))).unwrap_err();
        assert!(
            e.problem.contains("cannot be read as Decimal128(5, 2)"),
            "{e}"
        );
    }

    #[test]
    fn text_binary_and_uuids_arrive_as_they_are() {
        let a = build(
            DataType::Utf8,
            vec![
                ColumnData::String(Some(Cow::Borrowed("Zürich ✓"))),
                ColumnData::String(None),
                ColumnData::Xml(Some(Cow::Owned(tiberius::xml::XmlData::new("<a/>")))),
            ],
        );
        let s = get::<StringArray>(&a);
        assert_eq!(
            (s.value(0), s.is_null(1), s.value(2)),
            ("Zürich ✓", true, "<a/>")
        );
        let a = build(
            DataType::Binary,
            vec![
                ColumnData::Binary(Some(Cow::Borrowed(&[0, 255]))),
                ColumnData::Binary(None),
            ],
        );
        assert_eq!(get::<BinaryArray>(&a).value(0), &[0, 255]);
        let u = Uuid::parse_str("67e55044-10b1-426f-9247-bb680e5fe0c8").unwrap();
        let a = build(
            DataType::FixedSizeBinary(16),
            vec![ColumnData::Guid(Some(u)), ColumnData::Guid(None)],
        );
        let f = get::<FixedSizeBinaryArray>(&a);
        assert_eq!(f.value(0), u.as_bytes());
        assert!(f.is_null(1));
    }

    #[test]
    fn dates_and_times_cover_year_1_to_9999() {
        let a = build(
            DataType::Date32,
            vec![
                ColumnData::Date(Some(Date::new(0))),
                ColumnData::Date(Some(Date::new(MAX_DATE_DAYS as u32))),
                ColumnData::Date(Some(Date::new(DAYS_TO_UNIX_EPOCH as u32))),
            ],
        );
        let d = get::<Date32Array>(&a);
        // 0001-01-01 and 9999-12-31 as days since 1970-01-01.
        assert_eq!(d.values().to_vec(), vec![-719_162, 2_932_896, 0]);
        let a = build(
            DataType::Time64(TimeUnit::Microsecond),
            vec![
                // 23:59:59.9999999 at scale 7: the 100 ns digit is truncated.
                ColumnData::Time(Some(Time::new(863_999_999_999, 7))),
                ColumnData::Time(Some(Time::new(1, 0))),
                ColumnData::Time(Some(Time::new(5, 3))),
            ],
        );
        assert_eq!(
            get::<Time64MicrosecondArray>(&a).values().to_vec(),
            vec![86_399_999_999, 1_000_000, 5_000]
        );
        let first = DateTime2::new(Date::new(0), Time::new(0, 7));
        let last = DateTime2::new(
            Date::new(MAX_DATE_DAYS as u32),
            Time::new(863_999_999_999, 7),
        );
        let a = build(
            DataType::Timestamp(TimeUnit::Microsecond, None),
            vec![
                ColumnData::DateTime2(Some(first)),
                ColumnData::DateTime2(Some(last)),
                // 1900-01-01 00:00:01.003 and 1969-12-31 23:59.
                ColumnData::DateTime(Some(DateTime::new(0, 301))),
                ColumnData::SmallDateTime(Some(SmallDateTime::new(25_566, 1439))),
                ColumnData::DateTime2(None),
            ],
        );
        let t = get::<TimestampMicrosecondArray>(&a);
        assert_eq!(t.value(0), -62_135_596_800_000_000);
        assert_eq!(t.value(1), 253_402_300_799_999_999);
        assert_eq!(t.value(2), -2_208_988_800_000_000 + 1_003_333);
        assert_eq!(t.value(3), -60_000_000);
        assert!(t.is_null(4));
    }

    #[test]
    fn datetimeoffsets_become_the_same_utc_instant_whatever_their_offset() {
        // 2024-03-10 12:00:00 UTC, written at +05:30, -08:00 and +00:00.
        let utc = DateTime2::new(
            Date::new((DAYS_TO_UNIX_EPOCH + 19_792) as u32),
            Time::new(12 * 3_600 * 10_000_000, 7),
        );
        let a = build(
            DataType::Timestamp(TimeUnit::Microsecond, Some("+00:00".into())),
            vec![
                ColumnData::DateTimeOffset(Some(DateTimeOffset::new(utc, 330))),
                ColumnData::DateTimeOffset(Some(DateTimeOffset::new(utc, -480))),
                ColumnData::DateTimeOffset(Some(DateTimeOffset::new(utc, 0))),
            ],
        );
        let t = get::<TimestampMicrosecondArray>(&a);
        let want = (19_792 * 86_400 + 12 * 3_600) * 1_000_000_i64;
        assert_eq!(t.values().to_vec(), vec![want, want, want]);
        assert_eq!(t.timezone(), Some("+00:00"));
    }

    #[test]
    fn a_value_of_another_type_is_an_error_naming_it() {
        let field = Field::new("c", DataType::Int32, true);
        let mut b = ColumnBuilder::new(&field).unwrap();
        let e = b.append(ColumnData::I64(Some(7))).unwrap_err();
        assert_eq!(e.problem, "a value of type I64 cannot be read as Int32");
        assert_eq!(e.value, "I64(Some(7))");
        assert!(!e.to_string().contains('7'), "{e}");
    }
}
