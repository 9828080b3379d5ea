//! Result rows in Arrow and Arrow rows as load input. Query results come as JSON,
//! `{"f": [{"v": …}]}` per row: scalars as text (TIMESTAMP as seconds since the epoch, BYTES as
//! base64), repeated fields as lists of `{"v": …}`, records as nested `{"f": …}`. Loads take
//! newline-delimited JSON with the values in the forms the load documentation lists.

use std::sync::Arc;

use arrow::array::{
    Array, ArrayRef, AsArray, BinaryArray, ListArray, RecordBatch, StringArray, StructArray,
    TimestampMicrosecondArray,
};
use arrow::buffer::{NullBuffer, OffsetBuffer};
use arrow::compute::cast;
use arrow::datatypes::{DataType, Field, Fields, SchemaRef};
use arrow::error::ArrowError;
use arrow::util::display::{ArrayFormatter, FormatOptions};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use serde_json::Value;

use super::types::{FieldTypeError, TableField, is_json};
use crate::connectors::http_api::{CastError, binary_values, checked_cast};

/// Why rows cannot be read from a result page or written for a load. Messages name the column
/// (and record member) and the row, never the value; the caller names the table.
#[derive(Debug, thiserror::Error)]
pub enum RowsError {
    #[error("column \"{column}\": {source}")]
    Column {
        column: String,
        #[source]
        source: Box<RowsError>,
    },
    /// A member of a record (struct) column.
    #[error("{member}: {source}")]
    Member {
        member: String,
        #[source]
        source: Box<RowsError>,
    },
    #[error("a repeated field read as {0}")]
    RepeatedAs(DataType),
    #[error("row {row}: the value is not a TIMESTAMP")]
    NotATimestamp { row: usize },
    #[error("row {row}: BYTES not in base64")]
    NotBase64 {
        row: usize,
        #[source]
        source: base64::DecodeError,
    },
    #[error("row {row}: not JSON: {source}")]
    NotJson {
        row: usize,
        #[source]
        source: serde_json::Error,
    },
    #[error("row {row}: BigQuery arrays cannot hold NULL")]
    NullInArray { row: usize },
    #[error(transparent)]
    Type(#[from] FieldTypeError),
    #[error(transparent)]
    Cast(#[from] CastError),
    #[error(transparent)]
    Arrow(#[from] ArrowError),
}

impl RowsError {
    /// The error of column `column`.
    pub fn in_column(self, column: &str) -> Self {
        Self::Column {
            column: column.to_string(),
            source: Box::new(self),
        }
    }

    /// The error of record member `member`.
    pub fn in_member(self, member: &str) -> Self {
        Self::Member {
            member: member.to_string(),
            source: Box::new(self),
        }
    }
}

/// One page of rows as a batch of `schema` (built from `fields` by [`super::types`]).
pub fn decode(
    fields: &[TableField],
    rows: &[Value],
    schema: &SchemaRef,
) -> Result<RecordBatch, RowsError> {
    let cells: Vec<&[Value]> = rows
        .iter()
        .map(|r| {
            r.get("f")
                .and_then(Value::as_array)
                .map(Vec::as_slice)
                .unwrap_or(&[])
        })
        .collect();
    let mut columns = Vec::with_capacity(fields.len());
    for (i, (field, target)) in fields.iter().zip(schema.fields()).enumerate() {
        let values: Vec<&Value> = cells
            .iter()
            .map(|c| c.get(i).and_then(|v| v.get("v")).unwrap_or(&Value::Null))
            .collect();
        let array =
            column(field, &values, target.data_type()).map_err(|e| e.in_column(&field.name))?;
        columns.push(array);
    }
    Ok(RecordBatch::try_new_with_options(
        schema.clone(),
        columns,
        &arrow::array::RecordBatchOptions::new().with_row_count(Some(rows.len())),
    )?)
}

/// One column from the `v` of each row.
fn column(field: &TableField, values: &[&Value], target: &DataType) -> Result<ArrayRef, RowsError> {
    if field.repeated() {
        let DataType::List(item) = target else {
            return Err(RowsError::RepeatedAs(target.clone()));
        };
        let element = TableField {
            mode: None,
            ..field.clone()
        };
        let mut lengths = Vec::with_capacity(values.len());
        let mut flat: Vec<&Value> = Vec::new();
        for v in values {
            let items = v.as_array().map(Vec::as_slice).unwrap_or(&[]);
            lengths.push(items.len());
            flat.extend(items.iter().map(|i| i.get("v").unwrap_or(&Value::Null)));
        }
        let child = column(&element, &flat, item.data_type())?;
        return Ok(Arc::new(ListArray::new(
            item.clone(),
            OffsetBuffer::from_lengths(lengths),
            child,
            None,
        )));
    }
    if let DataType::Struct(children) = target {
        return record(field, values, children);
    }
    let text: StringArray = values.iter().map(|v| scalar_text(v)).collect();
    match field.kind.to_ascii_uppercase().as_str() {
        "TIMESTAMP" => {
            let micros = text
                .iter()
                .enumerate()
                .map(|(i, t)| {
                    t.map(|t| epoch_micros(t).ok_or(RowsError::NotATimestamp { row: i + 1 }))
                        .transpose()
                })
                .collect::<Result<Vec<_>, _>>()?;
            let array = TimestampMicrosecondArray::from(micros).with_timezone("UTC");
            Ok(checked_cast(&(Arc::new(array) as ArrayRef), target)?)
        }
        "BYTES" => {
            let bytes = text
                .iter()
                .enumerate()
                .map(|(i, t)| {
                    t.map(|t| {
                        STANDARD
                            .decode(t)
                            .map_err(|source| RowsError::NotBase64 { row: i + 1, source })
                    })
                    .transpose()
                })
                .collect::<Result<Vec<_>, _>>()?;
            let array = BinaryArray::from_iter(bytes);
            Ok(checked_cast(&(Arc::new(array) as ArrayRef), target)?)
        }
        _ => Ok(checked_cast(&(Arc::new(text) as ArrayRef), target)?),
    }
}

fn record(field: &TableField, values: &[&Value], children: &Fields) -> Result<ArrayRef, RowsError> {
    let nulls = NullBuffer::from(values.iter().map(|v| !v.is_null()).collect::<Vec<_>>());
    let mut arrays = Vec::with_capacity(children.len());
    for (i, (child, target)) in field.fields.iter().zip(children.iter()).enumerate() {
        let child_values: Vec<&Value> = values
            .iter()
            .map(|v| {
                v.get("f")
                    .and_then(|f| f.get(i))
                    .and_then(|c| c.get("v"))
                    .unwrap_or(&Value::Null)
            })
            .collect();
        arrays.push(
            column(child, &child_values, target.data_type())
                .map_err(|e| e.in_member(&child.name))?,
        );
    }
    Ok(Arc::new(StructArray::try_new(
        children.clone(),
        arrays,
        Some(nulls),
    )?))
}

fn scalar_text(v: &Value) -> Option<String> {
    match v {
        Value::Null => None,
        Value::String(s) => Some(s.clone()),
        other => Some(other.to_string()),
    }
}

/// Microseconds since the epoch from seconds as BigQuery writes them: `1704067200.654321`,
/// `1.704067200654321E9`, `-1.5E-4`. Exact: no floating point.
pub fn epoch_micros(text: &str) -> Option<i64> {
    let (mantissa, exponent) = match text.find(['E', 'e']) {
        Some(p) => (&text[..p], text[p + 1..].parse::<i32>().ok()?),
        None => (text, 0),
    };
    let negative = mantissa.starts_with('-');
    let mantissa = mantissa.trim_start_matches(['-', '+']);
    let (whole, fraction) = mantissa.split_once('.').unwrap_or((mantissa, ""));
    let digits: String = format!("{whole}{fraction}");
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    // value = digits * 10^(exponent - fraction.len()) seconds; in microseconds add 6.
    let shift = exponent + 6 - fraction.len() as i32;
    let mut value: i128 = digits.parse().ok()?;
    if shift >= 0 {
        value = value.checked_mul(10i128.checked_pow(shift as u32)?)?;
    } else {
        let divisor = 10i128.checked_pow((-shift) as u32)?;
        value /= divisor;
    }
    let value = i64::try_from(value).ok()?;
    Some(if negative { -value } else { value })
}

/// The batch as newline-delimited JSON, one object per row, keys the field names.
pub fn encode(batch: &RecordBatch, out: &mut Vec<u8>) -> Result<(), RowsError> {
    let schema = batch.schema();
    let columns = schema
        .fields()
        .iter()
        .zip(batch.columns())
        .map(|(f, a)| values(f, a).map_err(|e| e.in_column(f.name())))
        .collect::<Result<Vec<_>, _>>()?;
    let keys: Vec<String> = schema
        .fields()
        .iter()
        .map(|f| Value::String(f.name().clone()).to_string())
        .collect();
    for row in 0..batch.num_rows() {
        out.push(b'{');
        let mut first = true;
        for (key, column) in keys.iter().zip(&columns) {
            let Some(value) = &column[row] else { continue };
            if !first {
                out.push(b',');
            }
            first = false;
            out.extend_from_slice(key.as_bytes());
            out.push(b':');
            out.extend_from_slice(value.as_bytes());
        }
        out.extend_from_slice(b"}\n");
    }
    Ok(())
}

/// Each value of a column as JSON text, `None` for null.
fn values(field: &Field, array: &ArrayRef) -> Result<Vec<Option<String>>, RowsError> {
    let n = array.len();
    let quoted = |text: &str| Value::String(text.to_string()).to_string();
    Ok(match array.data_type() {
        DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View if is_json(field) => {
            let text = cast(array, &DataType::Utf8)?;
            let text = text.as_string::<i32>();
            (0..n)
                .map(|i| {
                    text.is_valid(i)
                        .then(|| {
                            serde_json::from_str::<Value>(text.value(i))
                                .map(|v| v.to_string())
                                .map_err(|source| RowsError::NotJson { row: i + 1, source })
                        })
                        .transpose()
                })
                .collect::<Result<_, _>>()?
        }
        DataType::Binary
        | DataType::LargeBinary
        | DataType::BinaryView
        | DataType::FixedSizeBinary(_) => binary_values(array, |b| quoted(&STANDARD.encode(b)))?,
        DataType::Boolean
        | DataType::Int8
        | DataType::Int16
        | DataType::Int32
        | DataType::Int64
        | DataType::UInt8
        | DataType::UInt16
        | DataType::UInt32 => plain(array)?,
        DataType::Float16 | DataType::Float32 | DataType::Float64 => plain(array)?
            .into_iter()
            .map(|v| {
                v.map(|t| match t.as_str() {
                    "NaN" | "inf" | "-inf" => quoted(&t.replace("inf", "Infinity")),
                    _ => t,
                })
            })
            .collect(),
        DataType::Timestamp(unit, Some(_)) => {
            let utc = cast(array, &DataType::Timestamp(*unit, Some("+00:00".into())))?;
            plain(&utc)?
                .into_iter()
                .map(|v| v.map(|t| quoted(&t)))
                .collect()
        }
        DataType::List(_) | DataType::LargeList(_) | DataType::FixedSizeList(..) => {
            let list = cast(
                array,
                &DataType::List(Arc::new(list_item(array.data_type()))),
            )?;
            let list = list.as_list::<i32>();
            let item_field = list_item(array.data_type());
            (0..n)
                .map(|i| {
                    if list.is_null(i) {
                        // BigQuery arrays are never NULL: a missing list is an empty one.
                        return Ok(Some("[]".to_string()));
                    }
                    let items = values(&item_field, &list.value(i))?;
                    if items.iter().any(Option::is_none) {
                        return Err(RowsError::NullInArray { row: i + 1 });
                    }
                    Ok(Some(format!(
                        "[{}]",
                        items.into_iter().flatten().collect::<Vec<_>>().join(",")
                    )))
                })
                .collect::<Result<_, RowsError>>()?
        }
        DataType::Struct(children) => {
            let parts = array.as_struct();
            let child_values = children
                .iter()
                .zip(parts.columns())
                .map(|(f, a)| values(f, a))
                .collect::<Result<Vec<_>, _>>()?;
            (0..n)
                .map(|i| {
                    parts.is_valid(i).then(|| {
                        let members: Vec<String> = children
                            .iter()
                            .zip(&child_values)
                            .filter_map(|(f, v)| {
                                v[i].as_ref().map(|v| format!("{}:{v}", quoted(f.name())))
                            })
                            .collect();
                        format!("{{{}}}", members.join(","))
                    })
                })
                .collect()
        }
        // Decimals, dates, times, DATETIME and text: their display form, as a JSON string.
        _ => plain(array)?
            .into_iter()
            .map(|v| v.map(|t| quoted(&t)))
            .collect(),
    })
}

fn list_item(data_type: &DataType) -> Field {
    match data_type {
        DataType::List(f) | DataType::LargeList(f) | DataType::FixedSizeList(f, _) => {
            f.as_ref().clone()
        }
        _ => Field::new("item", DataType::Null, true),
    }
}

/// Values as Arrow displays them.
fn plain(array: &ArrayRef) -> Result<Vec<Option<String>>, ArrowError> {
    let options = FormatOptions::default();
    let formatter = ArrayFormatter::try_new(array.as_ref(), &options)?;
    Ok((0..array.len())
        .map(|i| array.is_valid(i).then(|| formatter.value(i).to_string()))
        .collect())
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use arrow::array::{
        Date32Array, Decimal128Array, Float64Array, Int64Array, TimestampMicrosecondArray,
    };
    use arrow::datatypes::{Int64Type, Schema};
    use serde_json::json;

    use super::*;
    use crate::connectors::bigquery::types::arrow_field;

    #[test]
    fn timestamps_are_read_exactly_in_every_form_bigquery_writes() {
        assert_eq!(
            epoch_micros("1704067200.654321"),
            Some(1_704_067_200_654_321)
        );
        assert_eq!(
            epoch_micros("1.704067200654321E9"),
            Some(1_704_067_200_654_321)
        );
        assert_eq!(epoch_micros("1704067200"), Some(1_704_067_200_000_000));
        assert_eq!(epoch_micros("-1.5E-4"), Some(-150));
        assert_eq!(epoch_micros("abc"), None);
    }

    #[test]
    fn json_rows_decode_into_the_schema() {
        let fields: Vec<TableField> = serde_json::from_value(json!([
            {"name": "id", "type": "INTEGER"},
            {"name": "amount", "type": "NUMERIC"},
            {"name": "ts", "type": "TIMESTAMP"},
            {"name": "raw", "type": "BYTES"},
            {"name": "tags", "type": "INTEGER", "mode": "REPEATED"},
            {"name": "st", "type": "RECORD", "fields": [{"name": "x", "type": "INTEGER"}]}
        ]))
        .unwrap();
        let schema = Arc::new(Schema::new(
            fields.iter().map(arrow_field).collect::<Vec<_>>(),
        ));
        let rows = vec![
            json!({"f": [{"v": "1"}, {"v": "1.5"}, {"v": "1.704067200654321E9"}, {"v": "AP8Q"},
                         {"v": [{"v": "1"}, {"v": "2"}]}, {"v": {"f": [{"v": "5"}]}}]}),
            json!({"f": [{"v": "2"}, {"v": null}, {"v": null}, {"v": null}, {"v": []}, {"v": null}]}),
        ];
        let batch = decode(&fields, &rows, &schema).unwrap();
        assert_eq!(
            batch
                .column(0)
                .as_primitive::<Int64Type>()
                .values()
                .to_vec(),
            vec![1, 2]
        );
        assert_eq!(
            arrow::util::display::array_value_to_string(batch.column(1), 0).unwrap(),
            "1.500000000"
        );
        assert_eq!(
            arrow::util::display::array_value_to_string(batch.column(2), 0).unwrap(),
            "2024-01-01T00:00:00.654321Z"
        );
        assert_eq!(batch.column(3).as_binary::<i32>().value(0), b"\x00\xff\x10");
        assert_eq!(
            crate::connectors::tests::int64_list(batch.column(4), 0),
            vec![1, 2]
        );
        assert_eq!(batch.column(4).as_list::<i32>().value(1).len(), 0);
        assert!(batch.column(5).is_null(1));
        let bad = vec![
            json!({"f": [{"v": "x"}, {"v": null}, {"v": null}, {"v": null}, {"v": []}, {"v": null}]}),
        ];
        assert_eq!(
            decode(&fields, &bad, &schema).unwrap_err().to_string(),
            "column \"id\": row 1: the value does not fit Int64"
        );
    }

    #[test]
    fn batches_encode_as_the_load_documentation_asks() {
        let json_field = Field::new("doc", DataType::Utf8, true).with_metadata(HashMap::from([(
            "ARROW:extension:name".to_string(),
            "arrow.json".to_string(),
        )]));
        let schema = Arc::new(Schema::new(vec![
            Field::new("id", DataType::Int64, false),
            Field::new("amount", DataType::Decimal128(10, 2), true),
            Field::new("ratio", DataType::Float64, true),
            Field::new("day", DataType::Date32, true),
            Field::new(
                "at",
                DataType::Timestamp(arrow::datatypes::TimeUnit::Microsecond, Some("UTC".into())),
                true,
            ),
            json_field,
            Field::new("raw", DataType::Binary, true),
            Field::new_list("tags", Field::new("item", DataType::Int64, true), true),
        ]));
        let batch = RecordBatch::try_new(
            schema,
            vec![
                Arc::new(Int64Array::from(vec![1, 2])),
                Arc::new(
                    Decimal128Array::from(vec![Some(150), None])
                        .with_precision_and_scale(10, 2)
                        .unwrap(),
                ),
                Arc::new(Float64Array::from(vec![Some(f64::NAN), Some(0.5)])),
                Arc::new(Date32Array::from(vec![Some(19_723), None])),
                Arc::new(
                    TimestampMicrosecondArray::from(vec![Some(1_000_001), None])
                        .with_timezone("UTC"),
                ),
                Arc::new(StringArray::from(vec![Some(r#"{"a": [1]}"#), None])),
                Arc::new(BinaryArray::from(vec![Some(&b"\x00\xff"[..]), None])),
                Arc::new(ListArray::from_iter_primitive::<Int64Type, _, _>(vec![
                    Some(vec![Some(1)]),
                    None,
                ])),
            ],
        )
        .unwrap();
        let mut out = Vec::new();
        encode(&batch, &mut out).unwrap();
        assert_eq!(
            String::from_utf8(out).unwrap(),
            concat!(
                r#"{"id":1,"amount":"1.50","ratio":"NaN","day":"2024-01-01","at":"1970-01-01T00:00:01.000001Z","doc":{"a":[1]},"raw":"AP8=","tags":[1]}"#,
                "\n",
                r#"{"id":2,"ratio":0.5,"tags":[]}"#,
                "\n"
            )
        );
    }
}
