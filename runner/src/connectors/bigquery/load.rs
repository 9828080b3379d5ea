//! Arrow batches as the Parquet a load job reads. Each column is written in the Parquet type
//! that BigQuery's Parquet conversions load into the column the table holds for it (the job
//! carries that schema):
//!
//! | table column | Parquet written |
//! |---|---|
//! | `INT64` | INT64 (from every integer that maps to `INT64`) |
//! | `NUMERIC` | DECIMAL(38,9) |
//! | `BIGNUMERIC` | DECIMAL(76,38) (decimals and UInt64) |
//! | `FLOAT64` | DOUBLE |
//! | `BOOL` | BOOLEAN |
//! | `STRING`, `JSON` | BYTE_ARRAY UTF8 (JSON checked to parse) |
//! | `BYTES` | BYTE_ARRAY |
//! | `DATE` | INT32 DATE |
//! | `TIME` | INT64 TIME(MICROS) |
//! | `DATETIME` | INT64 TIMESTAMP(MICROS, isAdjustedToUTC = false) |
//! | `TIMESTAMP` | INT64 TIMESTAMP(MICROS, isAdjustedToUTC = true) |
//! | `T REPEATED` | LIST of `element` (read with `parquetOptions.enableListInference`) |
//! | `RECORD` | group |
//!
//! BigQuery arrays are never NULL: a NULL list is written empty, and a NULL inside a list is
//! refused with its row.

use std::sync::Arc;

use arrow::array::{Array, ArrayRef, AsArray, ListArray, RecordBatch, StructArray, UInt64Array};
use arrow::buffer::OffsetBuffer;
use arrow::compute::{cast, take};
use arrow::datatypes::{DataType, Field, Fields, Schema, TimeUnit};
use arrow::error::ArrowError;
use parquet::arrow::ArrowWriter;
use parquet::errors::ParquetError;

use super::rows::RowsError;
use super::types::scalar_kind;
use crate::connectors::http_api::checked_cast;
use crate::connectors::warehouse::parquet_writer;

/// The table's `NUMERIC` as Parquet: BigQuery's own precision and scale.
const NUMERIC: DataType = DataType::Decimal128(38, 9);
/// The table's `BIGNUMERIC` as Parquet.
const BIGNUMERIC: DataType = DataType::Decimal256(76, 38);

/// Why a Parquet part cannot be written; the caller names the load.
#[derive(Debug, thiserror::Error)]
pub enum PartError {
    #[error(transparent)]
    Rows(#[from] RowsError),
    #[error("starting a Parquet part failed: {0}")]
    Start(#[source] ParquetError),
    #[error("writing a Parquet part failed: {0}")]
    Write(#[source] ParquetError),
    #[error("closing a Parquet part failed: {0}")]
    Close(#[source] ParquetError),
}

/// One Parquet file being written, sized by the bytes it holds.
#[derive(Default)]
pub struct Part {
    writer: Option<Box<ArrowWriter<Vec<u8>>>>,
}

impl Part {
    /// Writes a batch; the first one fixes the file's schema.
    pub fn write(&mut self, batch: &RecordBatch) -> Result<(), PartError> {
        let batch = as_loaded(batch)?;
        let writer = match &mut self.writer {
            Some(w) => w,
            None => self.writer.insert(Box::new(
                parquet_writer(&batch.schema()).map_err(PartError::Start)?,
            )),
        };
        writer.write(&batch).map_err(PartError::Write)
    }

    /// The bytes the file holds so far, written and buffered.
    pub fn bytes(&self) -> usize {
        self.writer
            .as_ref()
            .map_or(0, |w| w.bytes_written() + w.in_progress_size())
    }

    /// The finished file, or `None` when nothing was written since the last one.
    pub fn finish(&mut self) -> Result<Option<Vec<u8>>, PartError> {
        self.writer
            .take()
            .map(|w| w.into_inner().map_err(PartError::Close))
            .transpose()
    }
}

/// The batch with each column in the type the load reads (see the module's table).
pub fn as_loaded(batch: &RecordBatch) -> Result<RecordBatch, RowsError> {
    let schema = batch.schema();
    let (fields, columns): (Vec<Field>, Vec<ArrayRef>) = schema
        .fields()
        .iter()
        .zip(batch.columns())
        .map(|(f, a)| loaded(f, a).map_err(|e| e.in_column(f.name())))
        .collect::<Result<Vec<_>, _>>()?
        .into_iter()
        .unzip();
    Ok(RecordBatch::try_new(
        Arc::new(Schema::new(fields)),
        columns,
    )?)
}

/// One column as loaded, and its field (always nullable: table columns are `NULLABLE`).
fn loaded(field: &Field, array: &ArrayRef) -> Result<(Field, ArrayRef), RowsError> {
    // A value the load's type cannot hold is an error naming its row, never a NULL.
    let to = |t: DataType| -> Result<(Field, ArrayRef), RowsError> {
        let array = checked_cast(array, &t)?;
        Ok((Field::new(field.name(), t, true), array))
    };
    match array.data_type() {
        DataType::List(_) | DataType::LargeList(_) | DataType::FixedSizeList(..) => {
            return list(field, array);
        }
        DataType::Struct(_) => return record(field, array),
        _ => {}
    }
    // The column the table holds for this field decides the Parquet type written.
    match scalar_kind(field, array.data_type())? {
        "INT64" => to(DataType::Int64),
        "NUMERIC" => to(NUMERIC),
        "BIGNUMERIC" => to(BIGNUMERIC),
        "FLOAT64" => to(DataType::Float64),
        "BOOL" => to(DataType::Boolean),
        "DATE" => to(DataType::Date32),
        "TIME" => to(DataType::Time64(TimeUnit::Microsecond)),
        "DATETIME" => to(DataType::Timestamp(TimeUnit::Microsecond, None)),
        "TIMESTAMP" => to(DataType::Timestamp(
            TimeUnit::Microsecond,
            Some("UTC".into()),
        )),
        "BYTES" => to(DataType::Binary),
        kind => {
            let (plain, text) = to(DataType::Utf8)?;
            if kind == "JSON" {
                check_json(&text)?;
            }
            Ok((plain, text))
        }
    }
}

/// Every value of a JSON column parses as JSON; the first that does not is named by its row.
fn check_json(text: &ArrayRef) -> Result<(), RowsError> {
    for (i, value) in text.as_string::<i32>().iter().enumerate() {
        if let Some(value) = value {
            serde_json::from_str::<serde::de::IgnoredAny>(value)
                .map_err(|source| RowsError::NotJson { row: i + 1, source })?;
        }
    }
    Ok(())
}

/// A list column: NULL lists empty, items as loaded, under the `element` name of Parquet's
/// LIST layout that list inference reads.
fn list(field: &Field, array: &ArrayRef) -> Result<(Field, ArrayRef), RowsError> {
    let item = match array.data_type() {
        DataType::List(f) | DataType::LargeList(f) | DataType::FixedSizeList(f, _) => f.clone(),
        other => return Err(not_a(other, "list")),
    };
    let lists = cast(array, &DataType::List(item.clone()))?;
    let lists = lists.as_list::<i32>();
    let offsets = lists.value_offsets();
    let mut lengths = Vec::with_capacity(lists.len());
    let mut kept: Vec<u64> = Vec::new();
    for i in 0..lists.len() {
        if lists.is_null(i) {
            lengths.push(0);
            continue;
        }
        let (start, end) = (offsets[i], offsets[i + 1]);
        // The offsets of a valid list only grow.
        lengths.push(usize::try_from(end - start).unwrap_or(0));
        kept.extend((start..end).map(|p| p as u64));
    }
    let values = take(lists.values(), &UInt64Array::from(kept), None)?;
    if values.null_count() > 0 {
        let mut at = 0;
        for (row, length) in lengths.iter().enumerate() {
            if (at..at + length).any(|p| values.is_null(p)) {
                return Err(RowsError::NullInArray { row: row + 1 });
            }
            at += length;
        }
    }
    let (element, values) = loaded(&item.as_ref().clone().with_name("element"), &values)?;
    let element = Arc::new(element);
    let array = ListArray::try_new(
        element.clone(),
        OffsetBuffer::from_lengths(lengths),
        values,
        None,
    )?;
    Ok((
        Field::new(field.name(), DataType::List(element), true),
        Arc::new(array),
    ))
}

/// A struct column with its members as loaded.
fn record(field: &Field, array: &ArrayRef) -> Result<(Field, ArrayRef), RowsError> {
    let parts = array.as_struct();
    let DataType::Struct(members) = array.data_type() else {
        return Err(not_a(array.data_type(), "struct"));
    };
    let (fields, columns): (Vec<Field>, Vec<ArrayRef>) = members
        .iter()
        .zip(parts.columns())
        .map(|(f, a)| loaded(f, a).map_err(|e| e.in_member(f.name())))
        .collect::<Result<Vec<_>, _>>()?
        .into_iter()
        .unzip();
    let fields = Fields::from(fields);
    let array = StructArray::try_new(fields.clone(), columns, parts.nulls().cloned())?;
    Ok((
        Field::new(field.name(), DataType::Struct(fields), true),
        Arc::new(array),
    ))
}

/// A column whose type is not the `kind` its branch of [`loaded`] took it for: a defect.
fn not_a(data_type: &DataType, kind: &str) -> RowsError {
    ArrowError::InvalidArgumentError(format!("{data_type} is not a {kind}")).into()
}

#[cfg(test)]
mod tests {
    use arrow::array::{
        BinaryArray, Date64Array, Decimal128Array, Float32Array, Int32Array, StringArray,
        TimestampNanosecondArray, UInt64Array,
    };
    use arrow::datatypes::Int64Type;
    use bytes::Bytes;
    use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;

    use super::*;
    use crate::connectors::http_api::json_field;

    fn batch(columns: Vec<(Field, ArrayRef)>) -> RecordBatch {
        let (fields, arrays): (Vec<Field>, Vec<ArrayRef>) = columns.into_iter().unzip();
        RecordBatch::try_new(Arc::new(Schema::new(fields)), arrays).unwrap()
    }

    #[test]
    fn columns_are_written_in_the_parquet_types_bigquery_loads() {
        let utc = Some("+02:00".into());
        let input = batch(vec![
            (
                Field::new("small", DataType::Int32, false),
                Arc::new(Int32Array::from(vec![1, 2])),
            ),
            (
                Field::new("amount", DataType::Decimal128(12, 3), true),
                Arc::new(
                    Decimal128Array::from(vec![Some(12_345_678), None])
                        .with_precision_and_scale(12, 3)
                        .unwrap(),
                ),
            ),
            (
                Field::new("big", DataType::Decimal128(38, 10), true),
                Arc::new(
                    Decimal128Array::from(vec![Some(-15), None])
                        .with_precision_and_scale(38, 10)
                        .unwrap(),
                ),
            ),
            (
                Field::new("counter", DataType::UInt64, true),
                Arc::new(UInt64Array::from(vec![Some(u64::MAX), None])),
            ),
            (
                Field::new("ratio", DataType::Float32, true),
                Arc::new(Float32Array::from(vec![Some(0.5), None])),
            ),
            (
                Field::new("day", DataType::Date64, true),
                Arc::new(Date64Array::from(vec![Some(86_400_000), None])),
            ),
            (
                Field::new(
                    "at",
                    DataType::Timestamp(TimeUnit::Nanosecond, utc.clone()),
                    true,
                ),
                Arc::new(
                    TimestampNanosecondArray::from(vec![Some(1_000_001_000), None])
                        .with_timezone("+02:00"),
                ),
            ),
            (
                Field::new(
                    "local",
                    DataType::Timestamp(TimeUnit::Nanosecond, None),
                    true,
                ),
                Arc::new(TimestampNanosecondArray::from(vec![Some(2_000), None])),
            ),
            (
                json_field(Field::new("doc", DataType::Utf8, true)),
                Arc::new(StringArray::from(vec![Some(r#"{"a": [1]}"#), None])),
            ),
            (
                Field::new("raw", DataType::Binary, true),
                Arc::new(BinaryArray::from(vec![Some(&b"\x00\xff"[..]), None])),
            ),
            (
                Field::new_list("tags", Field::new("item", DataType::Int32, true), true),
                Arc::new(ListArray::from_iter_primitive::<
                    arrow::datatypes::Int32Type,
                    _,
                    _,
                >(vec![Some(vec![Some(1), Some(2)]), None])),
            ),
        ]);
        let mut part = Part::default();
        assert_eq!(part.bytes(), 0);
        part.write(&input).unwrap();
        assert!(part.bytes() > 0);
        let file = Bytes::from(part.finish().unwrap().unwrap());
        assert!(part.finish().unwrap().is_none(), "a part is finished once");

        let reader = ParquetRecordBatchReaderBuilder::try_new(file).unwrap();
        let mut printed = Vec::new();
        parquet::schema::printer::print_schema(
            &mut printed,
            reader.metadata().file_metadata().schema(),
        );
        let printed = String::from_utf8(printed).unwrap();
        assert_eq!(
            printed,
            concat!(
                "message arrow_schema {\n",
                "  OPTIONAL INT64 small;\n",
                "  OPTIONAL FIXED_LEN_BYTE_ARRAY (16) amount (DECIMAL(38,9));\n",
                "  OPTIONAL FIXED_LEN_BYTE_ARRAY (32) big (DECIMAL(76,38));\n",
                "  OPTIONAL FIXED_LEN_BYTE_ARRAY (32) counter (DECIMAL(76,38));\n",
                "  OPTIONAL DOUBLE ratio;\n",
                "  OPTIONAL INT32 day (DATE);\n",
                "  OPTIONAL INT64 at (TIMESTAMP(MICROS,true));\n",
                "  OPTIONAL INT64 local (TIMESTAMP(MICROS,false));\n",
                "  OPTIONAL BYTE_ARRAY doc (STRING);\n",
                "  OPTIONAL BYTE_ARRAY raw;\n",
                "  OPTIONAL group tags (LIST) {\n",
                "    REPEATED group list {\n",
                "      OPTIONAL INT64 element;\n",
                "    }\n",
                "  }\n",
                "}\n"
            )
        );

        let read: Vec<RecordBatch> = reader.build().unwrap().map(Result::unwrap).collect();
        let read = &read[0];
        let text = |name: &str, row: usize| {
            arrow::util::display::array_value_to_string(read.column_by_name(name).unwrap(), row)
                .unwrap()
        };
        assert_eq!(text("amount", 0), "12345.678000000");
        assert_eq!(text("big", 0), format!("-0.0000000015{}", "0".repeat(28)));
        assert_eq!(
            text("counter", 0),
            format!("18446744073709551615.{}", "0".repeat(38))
        );
        assert_eq!(text("day", 0), "1970-01-02");
        assert_eq!(text("at", 0), "1970-01-01T00:00:01.000001Z");
        assert_eq!(text("local", 0), "1970-01-01T00:00:00.000002");
        assert_eq!(text("doc", 0), r#"{"a": [1]}"#);
        let tags = read.column_by_name("tags").unwrap().as_list::<i32>();
        assert_eq!(
            tags.value(0).as_primitive::<Int64Type>().values().to_vec(),
            vec![1, 2]
        );
        assert!(tags.is_valid(1), "a NULL list is written empty");
        assert_eq!(tags.value(1).len(), 0);
        for name in [
            "amount", "big", "counter", "ratio", "day", "at", "local", "doc", "raw",
        ] {
            assert!(
                read.column_by_name(name).unwrap().is_null(1),
                "{name} keeps its NULL"
            );
        }
    }

    #[test]
    fn what_bigquery_cannot_load_is_named_with_its_column_and_row() {
        let not_json = batch(vec![(
            json_field(Field::new("doc", DataType::Utf8, true)),
            Arc::new(StringArray::from(vec![Some("{}"), Some("{nope")])),
        )]);
        let e = as_loaded(&not_json).unwrap_err();
        assert!(
            e.to_string()
                .starts_with("column \"doc\": row 2: not JSON: "),
            "{e}"
        );
        let RowsError::Column { source, .. } = &e else {
            panic!("{e:?}")
        };
        assert!(
            matches!(**source, RowsError::NotJson { row: 2, .. }),
            "{e:?}"
        );
        let null_item = batch(vec![(
            Field::new_list("tags", Field::new("item", DataType::Int64, true), true),
            Arc::new(ListArray::from_iter_primitive::<Int64Type, _, _>(vec![
                Some(vec![Some(1)]),
                None,
                Some(vec![Some(2), None]),
            ])),
        )]);
        assert_eq!(
            as_loaded(&null_item).unwrap_err().to_string(),
            "column \"tags\": row 3: BigQuery arrays cannot hold NULL"
        );
    }
}
