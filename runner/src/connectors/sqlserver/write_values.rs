//! Arrow values to the tiberius `ColumnData` of a bulk load. tiberius encodes each value
//! against the column's exact type (a decimal of another scale even panics), so the values
//! are made for the column types `types::column_type` declares, and bulk loads only go into
//! tables created from those types.

use std::borrow::Cow;
use std::sync::Arc;

use arrow::array::{
    Array, ArrayRef, AsArray, BinaryArray, BooleanArray, Date32Array, Decimal128Array,
    FixedSizeBinaryArray, Float32Array, Float64Array, Int16Array, Int32Array, Int64Array,
    StringArray, Time64MicrosecondArray, TimestampMicrosecondArray, UInt8Array, UInt64Array,
};
use arrow::compute::cast;
use arrow::datatypes::{DataType, Field, TimeUnit};
use arrow::error::ArrowError;
use tiberius::numeric::Numeric;
use tiberius::time::{Date, DateTime2, DateTimeOffset, Time};
use tiberius::{ColumnData, Uuid};

use super::read_values::{DAYS_TO_UNIX_EPOCH, MAX_DATE_DAYS, MICROS_PER_DAY};
use super::types::{UUID_EXTENSION, has_extension};

/// Why a column or a value cannot go to SQL Server; the caller names the load, row and column.
#[derive(Debug, thiserror::Error)]
pub enum WriteValueError {
    #[error("converting to {to}: {source}")]
    Cast {
        to: DataType,
        #[source]
        source: ArrowError,
    },
    /// The column was not converted to the type its wire form reads: a defect of SynqX.
    #[error("unexpected array type {0}")]
    UnexpectedArray(DataType),
    #[error("is not a uuid: it has {bytes} bytes, not 16")]
    NotAUuid { bytes: usize },
    #[error("is outside SQL Server's dates (0001-01-01 to 9999-12-31)")]
    DateOutOfRange,
    #[error("is not a time of day")]
    NotATimeOfDay,
}

/// How the values of one Arrow column go on the wire.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Wire {
    Bit,
    TinyInt,
    SmallInt,
    Int,
    BigInt,
    /// UInt64 as decimal(20,0).
    Unsigned64,
    Real,
    Float,
    Decimal(i8),
    Text,
    Bytes,
    Uuid,
    Date,
    Time,
    DateTime2,
    DateTimeOffset,
}

impl Wire {
    /// The wire form of a field; `None` for types `types::column_type` rejects too.
    pub fn of(field: &Field) -> Option<Self> {
        Some(match field.data_type() {
            DataType::Boolean => Self::Bit,
            DataType::UInt8 => Self::TinyInt,
            DataType::Int8 | DataType::Int16 => Self::SmallInt,
            DataType::Int32 | DataType::UInt16 => Self::Int,
            DataType::Int64 | DataType::UInt32 => Self::BigInt,
            DataType::UInt64 => Self::Unsigned64,
            DataType::Float32 => Self::Real,
            DataType::Float64 => Self::Float,
            DataType::Decimal128(_, s) if (0..38).contains(s) => Self::Decimal(*s),
            DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View => Self::Text,
            DataType::FixedSizeBinary(16) if has_extension(field, UUID_EXTENSION) => Self::Uuid,
            DataType::Binary
            | DataType::LargeBinary
            | DataType::BinaryView
            | DataType::FixedSizeBinary(_) => Self::Bytes,
            DataType::Date32 | DataType::Date64 => Self::Date,
            DataType::Time32(_) | DataType::Time64(_) => Self::Time,
            DataType::Timestamp(_, None) => Self::DateTime2,
            DataType::Timestamp(_, Some(_)) => Self::DateTimeOffset,
            _ => return None,
        })
    }

    /// The Arrow type values are converted to before they are read out.
    fn canonical(self, original: &DataType) -> DataType {
        match self {
            Self::SmallInt => DataType::Int16,
            Self::Int => DataType::Int32,
            Self::BigInt => DataType::Int64,
            Self::Text => DataType::Utf8,
            Self::Bytes if matches!(original, DataType::FixedSizeBinary(_)) => original.clone(),
            Self::Bytes => DataType::Binary,
            Self::Date => DataType::Date32,
            Self::Time => DataType::Time64(TimeUnit::Microsecond),
            Self::DateTime2 => DataType::Timestamp(TimeUnit::Microsecond, None),
            Self::DateTimeOffset => match original {
                DataType::Timestamp(_, tz) => {
                    DataType::Timestamp(TimeUnit::Microsecond, tz.clone())
                }
                other => other.clone(),
            },
            _ => original.clone(),
        }
    }
}

/// A column of a batch, converted to its canonical type, ready to be read row by row.
pub struct WireColumn {
    wire: Wire,
    array: ArrayRef,
}

impl WireColumn {
    pub fn new(wire: Wire, array: &ArrayRef) -> Result<Self, WriteValueError> {
        let target = wire.canonical(array.data_type());
        let array = if array.data_type() == &target {
            Arc::clone(array)
        } else {
            cast(array, &target).map_err(|source| WriteValueError::Cast { to: target, source })?
        };
        Ok(Self { wire, array })
    }

    /// The value of one row. `Err` describes a value SQL Server cannot hold.
    pub fn value(&self, row: usize) -> Result<ColumnData<'static>, WriteValueError> {
        let a = &self.array;
        let null = a.is_null(row);
        macro_rules! prim {
            ($t:ty, $variant:ident) => {{
                let arr = downcast::<$t>(a)?;
                ColumnData::$variant((!null).then(|| arr.value(row)))
            }};
        }
        Ok(match self.wire {
            Wire::Bit => prim!(BooleanArray, Bit),
            Wire::TinyInt => prim!(UInt8Array, U8),
            Wire::SmallInt => prim!(Int16Array, I16),
            Wire::Int => prim!(Int32Array, I32),
            Wire::BigInt => prim!(Int64Array, I64),
            Wire::Real => prim!(Float32Array, F32),
            Wire::Float => prim!(Float64Array, F64),
            Wire::Unsigned64 => {
                let arr = downcast::<UInt64Array>(a)?;
                ColumnData::Numeric(
                    (!null).then(|| Numeric::new_with_scale(i128::from(arr.value(row)), 0)),
                )
            }
            Wire::Decimal(scale) => {
                let arr = downcast::<Decimal128Array>(a)?;
                ColumnData::Numeric(
                    (!null).then(|| Numeric::new_with_scale(arr.value(row), scale as u8)),
                )
            }
            Wire::Text => {
                let arr = downcast::<StringArray>(a)?;
                ColumnData::String((!null).then(|| Cow::Owned(arr.value(row).to_string())))
            }
            Wire::Bytes => match a.data_type() {
                DataType::FixedSizeBinary(_) => {
                    let arr = downcast::<FixedSizeBinaryArray>(a)?;
                    ColumnData::Binary((!null).then(|| Cow::Owned(arr.value(row).to_vec())))
                }
                _ => {
                    let arr = downcast::<BinaryArray>(a)?;
                    ColumnData::Binary((!null).then(|| Cow::Owned(arr.value(row).to_vec())))
                }
            },
            Wire::Uuid => {
                let arr = downcast::<FixedSizeBinaryArray>(a)?;
                if null {
                    ColumnData::Guid(None)
                } else {
                    let bytes = arr.value(row);
                    let uuid = Uuid::from_slice(bytes)
                        .map_err(|_| WriteValueError::NotAUuid { bytes: bytes.len() })?;
                    ColumnData::Guid(Some(uuid))
                }
            }
            Wire::Date => {
                let arr = downcast::<Date32Array>(a)?;
                match null {
                    true => ColumnData::Date(None),
                    false => ColumnData::Date(Some(unix_days_to_date(arr.value(row))?)),
                }
            }
            Wire::Time => {
                let arr = downcast::<Time64MicrosecondArray>(a)?;
                match null {
                    true => ColumnData::Time(None),
                    false => ColumnData::Time(Some(micros_to_time(arr.value(row))?)),
                }
            }
            Wire::DateTime2 => {
                let arr = downcast::<TimestampMicrosecondArray>(a)?;
                match null {
                    true => ColumnData::DateTime2(None),
                    false => ColumnData::DateTime2(Some(micros_to_datetime2(arr.value(row))?)),
                }
            }
            Wire::DateTimeOffset => {
                let arr = a.as_primitive_opt::<arrow::datatypes::TimestampMicrosecondType>();
                let arr =
                    arr.ok_or_else(|| WriteValueError::UnexpectedArray(a.data_type().clone()))?;
                match null {
                    true => ColumnData::DateTimeOffset(None),
                    // Arrow timestamps are UTC instants whatever their zone; written with
                    // offset 0, they read back as the same instant.
                    false => ColumnData::DateTimeOffset(Some(DateTimeOffset::new(
                        micros_to_datetime2(arr.value(row))?,
                        0,
                    ))),
                }
            }
        })
    }
}

fn downcast<T: 'static>(a: &ArrayRef) -> Result<&T, WriteValueError> {
    a.as_any()
        .downcast_ref::<T>()
        .ok_or_else(|| WriteValueError::UnexpectedArray(a.data_type().clone()))
}

/// A `date` from days since 1970-01-01; `Err` outside 0001-01-01..9999-12-31.
pub fn unix_days_to_date(days: i32) -> Result<Date, WriteValueError> {
    let sql_days = i64::from(days) + DAYS_TO_UNIX_EPOCH;
    if !(0..=MAX_DATE_DAYS).contains(&sql_days) {
        return Err(WriteValueError::DateOutOfRange);
    }
    Ok(Date::new(sql_days as u32))
}

/// A `time(6)` from microseconds since midnight.
pub fn micros_to_time(micros: i64) -> Result<Time, WriteValueError> {
    if !(0..MICROS_PER_DAY).contains(&micros) {
        return Err(WriteValueError::NotATimeOfDay);
    }
    Ok(Time::new(micros as u64, 6))
}

/// A `datetime2(6)` from microseconds since 1970-01-01.
pub fn micros_to_datetime2(micros: i64) -> Result<DateTime2, WriteValueError> {
    let days = micros.div_euclid(MICROS_PER_DAY);
    let time = micros.rem_euclid(MICROS_PER_DAY);
    let days = i32::try_from(days).map_err(|_| WriteValueError::DateOutOfRange)?;
    Ok(DateTime2::new(
        unix_days_to_date(days)?,
        micros_to_time(time)?,
    ))
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use arrow::array::{
        Date64Array, FixedSizeBinaryBuilder, Int8Array, LargeStringArray, UInt16Array, UInt32Array,
    };

    use super::super::read_values::{ColumnBuilder, datetime2_to_micros};
    use super::super::types::EXTENSION_KEY;
    use super::*;

    fn values(field: &Field, array: ArrayRef) -> Vec<ColumnData<'static>> {
        let wire = Wire::of(field).unwrap_or_else(|| panic!("{}", field.data_type()));
        let column = WireColumn::new(wire, &array).unwrap_or_else(|e| panic!("{e}"));
        (0..array.len())
            .map(|i| column.value(i).unwrap_or_else(|e| panic!("{e}")))
            .collect()
    }

    fn field(data_type: DataType) -> Field {
        Field::new("c", data_type, true)
    }

    #[test]
    fn integers_go_out_in_the_width_of_their_column() {
        let a: ArrayRef = Arc::new(Int8Array::from(vec![Some(i8::MIN), None]));
        assert_eq!(
            values(&field(DataType::Int8), a),
            vec![ColumnData::I16(Some(-128)), ColumnData::I16(None)]
        );
        let a: ArrayRef = Arc::new(UInt16Array::from(vec![u16::MAX]));
        assert_eq!(
            values(&field(DataType::UInt16), a),
            vec![ColumnData::I32(Some(65_535))]
        );
        let a: ArrayRef = Arc::new(UInt32Array::from(vec![u32::MAX]));
        assert_eq!(
            values(&field(DataType::UInt32), a),
            vec![ColumnData::I64(Some(4_294_967_295))]
        );
        let a: ArrayRef = Arc::new(Int64Array::from(vec![i64::MIN, i64::MAX]));
        assert_eq!(
            values(&field(DataType::Int64), a),
            vec![
                ColumnData::I64(Some(i64::MIN)),
                ColumnData::I64(Some(i64::MAX))
            ]
        );
        let a: ArrayRef = Arc::new(UInt64Array::from(vec![u64::MAX]));
        assert_eq!(
            values(&field(DataType::UInt64), a),
            vec![ColumnData::Numeric(Some(Numeric::new_with_scale(
                i128::from(u64::MAX),
                0
            )))]
        );
    }

    #[test]
    fn decimals_keep_their_scale_and_38_digits() {
        let max = 10_i128.pow(38) - 1;
        let a: ArrayRef = Arc::new(
            Decimal128Array::from(vec![Some(max), Some(-max), None])
                .with_precision_and_scale(38, 37)
                .unwrap(),
        );
        let got = values(&field(DataType::Decimal128(38, 37)), a);
        assert_eq!(
            got[0],
            ColumnData::Numeric(Some(Numeric::new_with_scale(max, 37)))
        );
        assert_eq!(
            got[1],
            ColumnData::Numeric(Some(Numeric::new_with_scale(-max, 37)))
        );
        assert_eq!(got[2], ColumnData::Numeric(None));
        assert!(Wire::of(&field(DataType::Decimal128(38, 38))).is_none());
    }

    #[test]
    fn text_and_uuids_round_trip_through_the_read_side() {
        let a: ArrayRef = Arc::new(LargeStringArray::from(vec![Some("O'Brien ✓"), None]));
        let got = values(&field(DataType::LargeUtf8), a);
        assert_eq!(got[0], ColumnData::String(Some("O'Brien ✓".into())));
        assert_eq!(got[1], ColumnData::String(None));

        let uuid_field = field(DataType::FixedSizeBinary(16)).with_metadata(HashMap::from([(
            EXTENSION_KEY.to_string(),
            UUID_EXTENSION.to_string(),
        )]));
        let u = Uuid::parse_str("67e55044-10b1-426f-9247-bb680e5fe0c8").unwrap();
        let mut b = FixedSizeBinaryBuilder::new(16);
        b.append_value(u.as_bytes()).unwrap();
        b.append_null();
        let a: ArrayRef = Arc::new(b.finish());
        let got = values(&uuid_field, a.clone());
        assert_eq!(got, vec![ColumnData::Guid(Some(u)), ColumnData::Guid(None)]);
        let mut back = ColumnBuilder::new(&uuid_field).unwrap();
        for v in got {
            back.append(v).unwrap();
        }
        assert_eq!(&back.finish().unwrap(), &a);
        // Without the extension, 16 bytes are just bytes.
        let plain = values(&field(DataType::FixedSizeBinary(16)), a);
        assert_eq!(
            plain[0],
            ColumnData::Binary(Some(Cow::Owned(u.as_bytes().to_vec())))
        );
    }

    #[test]
    fn timestamps_from_year_1_to_9999_round_trip_and_beyond_is_an_error() {
        let first = -62_135_596_800_000_000_i64;
        let last = 253_402_300_799_999_999_i64;
        for micros in [first, last, 0, -1, 1_710_072_000_123_456] {
            let dt2 = micros_to_datetime2(micros).unwrap();
            assert_eq!(dt2.time().scale(), 6);
            assert_eq!(datetime2_to_micros(dt2), micros, "{micros}");
        }
        for outside in [first - 1, last + 1, i64::MIN] {
            assert!(matches!(
                micros_to_datetime2(outside),
                Err(WriteValueError::DateOutOfRange)
            ));
        }
        assert!(matches!(
            unix_days_to_date(2_932_897),
            Err(WriteValueError::DateOutOfRange)
        ));
        assert!(matches!(
            micros_to_time(MICROS_PER_DAY),
            Err(WriteValueError::NotATimeOfDay)
        ));
    }

    #[test]
    fn zoned_timestamps_go_out_as_utc_with_offset_zero() {
        let a: ArrayRef = Arc::new(
            TimestampMicrosecondArray::from(vec![Some(1_000_000), None])
                .with_timezone("Europe/Berlin"),
        );
        let f = field(a.data_type().clone());
        let got = values(&f, a);
        let want = DateTimeOffset::new(micros_to_datetime2(1_000_000).unwrap(), 0);
        assert_eq!(
            got,
            vec![
                ColumnData::DateTimeOffset(Some(want)),
                ColumnData::DateTimeOffset(None)
            ]
        );
        let secs: ArrayRef = Arc::new(arrow::array::TimestampSecondArray::from(vec![86_400]));
        let got = values(&field(secs.data_type().clone()), secs);
        assert_eq!(
            got,
            vec![ColumnData::DateTime2(Some(
                micros_to_datetime2(86_400_000_000).unwrap()
            ))]
        );
        let d: ArrayRef = Arc::new(Date64Array::from(vec![86_400_000]));
        assert_eq!(
            values(&field(DataType::Date64), d),
            vec![ColumnData::Date(Some(Date::new(
                (DAYS_TO_UNIX_EPOCH + 1) as u32
            )))]
        );
    }

    #[test]
    fn values_read_back_into_the_same_arrow_column() {
        let cases: Vec<ArrayRef> = vec![
            Arc::new(BooleanArray::from(vec![Some(true), None, Some(false)])),
            Arc::new(UInt8Array::from(vec![Some(0), Some(255), None])),
            Arc::new(Int16Array::from(vec![Some(i16::MIN), None])),
            Arc::new(Int32Array::from(vec![Some(i32::MAX), None])),
            Arc::new(Float32Array::from(vec![Some(1.5_f32), None])),
            Arc::new(Float64Array::from(vec![Some(f64::MAX), None])),
            Arc::new(StringArray::from(vec![Some("a"), None, Some("")])),
            Arc::new(BinaryArray::from(vec![Some(&[1_u8, 2][..]), None])),
            Arc::new(Date32Array::from(vec![
                Some(-719_162),
                Some(2_932_896),
                None,
            ])),
            Arc::new(Time64MicrosecondArray::from(vec![
                Some(86_399_999_999),
                None,
            ])),
            Arc::new(TimestampMicrosecondArray::from(vec![
                Some(-62_135_596_800_000_000),
                None,
            ])),
            Arc::new(
                Decimal128Array::from(vec![Some(-12_345), None])
                    .with_precision_and_scale(10, 2)
                    .unwrap(),
            ),
        ];
        for a in cases {
            let f = field(a.data_type().clone());
            let mut back = ColumnBuilder::new(&f).unwrap();
            for v in values(&f, a.clone()) {
                back.append(v).unwrap();
            }
            assert_eq!(&back.finish().unwrap(), &a, "{}", a.data_type());
        }
    }
}
