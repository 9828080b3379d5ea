//! Arrow columns as array bindings, in the text forms the API documents for each binding type:
//! integers as `FIXED`, dates as milliseconds since the epoch, times as nanoseconds since
//! midnight, timestamps as nanoseconds since the epoch (`TIMESTAMP_TZ` adds the offset in
//! minutes plus 1440), binary as hex, everything else as `TEXT` that the column casts.

use arrow::array::{Array, ArrayRef, AsArray};
use arrow::compute::cast;
use arrow::datatypes::{
    DataType, Date32Type, Time64NanosecondType, TimeUnit, TimestampNanosecondType,
};
use arrow::error::ArrowError;
use arrow::util::display::{ArrayFormatter, FormatOptions};

use super::query::{BindValue, Binding};
use crate::connectors::http_api::{CastError, binary_values, checked_cast};

/// Why a column cannot be bound; the caller names the column.
#[derive(Debug, thiserror::Error)]
pub enum BindError {
    #[error(transparent)]
    Arrow(#[from] ArrowError),
    #[error("timestamps beyond the years 1677-2262 cannot be sent: {0}")]
    Timestamp(#[source] CastError),
    #[error(transparent)]
    Json(#[from] serde_json::Error),
}

/// One column as an array binding; `Err` names the row that cannot be sent.
pub fn column(array: &ArrayRef) -> Result<Binding, BindError> {
    let n = array.len();
    let (kind, values): (&'static str, Vec<Option<String>>) = match array.data_type() {
        DataType::Int8
        | DataType::Int16
        | DataType::Int32
        | DataType::Int64
        | DataType::UInt8
        | DataType::UInt16
        | DataType::UInt32
        | DataType::UInt64 => ("FIXED", formatted(array)?),
        DataType::Boolean => {
            let b = array.as_boolean();
            (
                "BOOLEAN",
                (0..n)
                    .map(|i| b.is_valid(i).then(|| b.value(i).to_string()))
                    .collect(),
            )
        }
        DataType::Date32 | DataType::Date64 => {
            let days = cast(array, &DataType::Date32)?;
            let days = days.as_primitive::<Date32Type>();
            (
                "DATE",
                days.iter()
                    .map(|d| d.map(|d| (i64::from(d) * 86_400_000).to_string()))
                    .collect(),
            )
        }
        DataType::Time32(_) | DataType::Time64(_) => {
            let nanos = cast(array, &DataType::Time64(TimeUnit::Nanosecond))?;
            let nanos = nanos.as_primitive::<Time64NanosecondType>();
            (
                "TIME",
                nanos.iter().map(|v| v.map(|v| v.to_string())).collect(),
            )
        }
        DataType::Timestamp(_, zone) => {
            let nanos = checked_cast(array, &DataType::Timestamp(TimeUnit::Nanosecond, None))
                .map_err(BindError::Timestamp)?;
            let nanos = nanos.as_primitive::<TimestampNanosecondType>();
            match zone {
                // Instants are sent in UTC: offset 0, written as 0 + 1440.
                Some(_) => (
                    "TIMESTAMP_TZ",
                    nanos
                        .iter()
                        .map(|v| v.map(|v| format!("{v} 1440")))
                        .collect(),
                ),
                None => (
                    "TIMESTAMP_NTZ",
                    nanos.iter().map(|v| v.map(|v| v.to_string())).collect(),
                ),
            }
        }
        DataType::Binary
        | DataType::LargeBinary
        | DataType::BinaryView
        | DataType::FixedSizeBinary(_) => ("BINARY", binary_values(array, hex)?),
        DataType::List(_)
        | DataType::LargeList(_)
        | DataType::FixedSizeList(..)
        | DataType::Struct(_)
        | DataType::Map(..) => ("TEXT", json_values(array)?),
        _ => ("TEXT", formatted(array)?),
    };
    Ok(Binding {
        kind,
        value: BindValue::Many(values),
    })
}

/// Values as Arrow displays them (numbers, decimals, text, floats with `NaN`/`inf`).
fn formatted(array: &ArrayRef) -> Result<Vec<Option<String>>, ArrowError> {
    let options = FormatOptions::default();
    let formatter = ArrayFormatter::try_new(array.as_ref(), &options)?;
    Ok((0..array.len())
        .map(|i| array.is_valid(i).then(|| formatter.value(i).to_string()))
        .collect())
}

/// Nested values as JSON text, one document per row.
fn json_values(array: &ArrayRef) -> Result<Vec<Option<String>>, BindError> {
    let batch = arrow::array::RecordBatch::try_from_iter([("v", array.clone())])?;
    let mut writer = arrow::json::ArrayWriter::new(Vec::new());
    writer.write(&batch)?;
    writer.finish()?;
    let rows: Vec<serde_json::Value> = serde_json::from_slice(&writer.into_inner())?;
    Ok(rows
        .into_iter()
        .enumerate()
        .map(|(i, row)| {
            if array.is_valid(i) {
                row.get("v").map(|v| v.to_string())
            } else {
                None
            }
        })
        .collect())
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use arrow::array::{
        BinaryArray, BooleanArray, Date32Array, Decimal128Array, Int32Array, ListArray,
        StringArray, Time64MicrosecondArray, TimestampMicrosecondArray,
    };
    use arrow::datatypes::Int64Type;

    use super::*;

    fn values(b: Binding) -> (&'static str, Vec<Option<String>>) {
        match b.value {
            BindValue::Many(v) => (b.kind, v),
            BindValue::One(_) => panic!("an array binding"),
        }
    }

    fn s(v: &str) -> Option<String> {
        Some(v.to_string())
    }

    #[test]
    fn each_type_is_sent_in_its_documented_form() {
        let cases: Vec<(ArrayRef, &str, Vec<Option<String>>)> = vec![
            (
                Arc::new(Int32Array::from(vec![Some(7), None])),
                "FIXED",
                vec![s("7"), None],
            ),
            (
                Arc::new(
                    Decimal128Array::from(vec![150])
                        .with_precision_and_scale(10, 2)
                        .unwrap(),
                ),
                "TEXT",
                vec![s("1.50")],
            ),
            (
                Arc::new(BooleanArray::from(vec![true, false])),
                "BOOLEAN",
                vec![s("true"), s("false")],
            ),
            (
                Arc::new(Date32Array::from(vec![19_723])),
                "DATE",
                vec![s("1704067200000")],
            ),
            (
                Arc::new(Time64MicrosecondArray::from(vec![3_723_000_001])),
                "TIME",
                vec![s("3723000001000")],
            ),
            (
                Arc::new(TimestampMicrosecondArray::from(vec![1_704_067_200_000_001])),
                "TIMESTAMP_NTZ",
                vec![s("1704067200000001000")],
            ),
            (
                Arc::new(TimestampMicrosecondArray::from(vec![1_000_000]).with_timezone("UTC")),
                "TIMESTAMP_TZ",
                vec![s("1000000000 1440")],
            ),
            (
                Arc::new(BinaryArray::from(vec![&b"\x00\xffA"[..]])),
                "BINARY",
                vec![s("00ff41")],
            ),
            (
                Arc::new(StringArray::from(vec![Some("é"), None])),
                "TEXT",
                vec![s("é"), None],
            ),
            (
                Arc::new(ListArray::from_iter_primitive::<Int64Type, _, _>(vec![
                    Some(vec![Some(1), Some(2)]),
                    None,
                ])),
                "TEXT",
                vec![s("[1,2]"), None],
            ),
        ];
        for (array, kind, expected) in cases {
            assert_eq!(
                values(column(&array).unwrap()),
                (kind, expected),
                "{:?}",
                array.data_type()
            );
        }
    }

    #[test]
    fn a_timestamp_nanoseconds_cannot_hold_is_refused_with_its_row() {
        // 3000-01-01 in microseconds: beyond what nanoseconds since 1970 hold in an i64.
        let array: ArrayRef = Arc::new(TimestampMicrosecondArray::from(vec![
            Some(0),
            None,
            Some(32_503_680_000_000_000),
        ]));
        let e = column(&array).unwrap_err().to_string();
        assert!(
            e.starts_with("timestamps beyond the years 1677-2262 cannot be sent: "),
            "{e}"
        );
        assert!(e.contains("row 3"), "{e}");
    }
}
