//! BSON to Arrow and back. Documents are read as JSON with these mappings, then typed by the
//! schema inference every JSON source shares (`json_table`):
//!
//! | BSON                         | Arrow (read)                               | written back as        |
//! |------------------------------|--------------------------------------------|------------------------|
//! | double                       | `Float64`                                  | double                 |
//! | int32 (every sampled value)  | `Int32`                                    | int32                  |
//! | int64, or int32 mixed with it | `Int64`                                   | int64 (`Int32` → int32)|
//! | string                       | `Utf8`                                     | string                 |
//! | bool                         | `Boolean`                                  | bool                   |
//! | date                         | `Timestamp(µs, UTC)` (millisecond values)  | date (milliseconds)    |
//! | objectId                     | `Utf8`, 24 hex digits, marked `synqx.bson: objectId` when every sampled value is one | objectId for `_id` and marked columns, else string |
//! | decimal128                   | `Utf8`, exact digits, marked `decimal128` likewise (`columns` can make it `decimal(p,s)`) | decimal128 from marked columns and `Decimal128` |
//! | binData                      | `Utf8`, base64, marked `binData` (subtype 0) or `binData:04` (its subtype) when every sampled value is binData of that subtype (of several: `binData`) | binData of the marked subtype; `Binary` as subtype 0 or the mark's |
//! | object, array (`nested: json`) | `Utf8` with `arrow.json`, plain JSON; `synqx.bson.nested` records what its integers and strings were | object, array, in the recorded types |
//! | object (`nested: flatten`)   | one column per field, `parent.child`, typed and marked as above | fields of the row |
//! | Arrow `Struct`, `List` (from other sources) | –                             | object, array          |
//! | timestamp (internal)         | `Int64`, seconds << 32 \| increment, marked `timestamp` | timestamp when marked, else int64 |
//! | regex, javascript, others    | `Utf8`, their relaxed extended JSON        | string (in JSON text: object) |
//! | null, missing                | null                                       | field left out         |
//!
//! Marks and `Int32` come from the BSON types of the sampled documents ([`Shape`]), so a
//! collection copied through SynqX keeps its types, inside objects and arrays too: JSON text
//! stays plain JSON for other destinations, and the column's `synqx.bson.nested` metadata
//! says, place by place, where its integers were int32 (or timestamps) and its strings
//! objectIds, dates, decimal128s or binData of a subtype — where every sampled value of that
//! JSON kind there was of that type. Elsewhere integers come back as int64 and strings as
//! strings.

use std::collections::BTreeMap;

use arrow::array::{Array, AsArray, RecordBatch};
use arrow::datatypes::{
    DataType, Field, Int8Type, Int16Type, Int32Type, Int64Type, Schema, TimeUnit, UInt8Type,
    UInt16Type, UInt32Type, UInt64Type,
};
use base64::Engine;
use mongodb::bson::{self, Bson, Document};
use serde_json::{Map, Number, Value};

use synqx_api::pipeline::Nested;

use super::shape::{self, BSON_NESTED, BSON_TYPE, BadMark, Integer, Mark, Restore, Shape};
use crate::connectors::json_table::JSON_EXTENSION;
use crate::error::{BadRow, Context, Error, Result};

/// `schema` with the types of the sampled documents (`shape`) applied: a column whose
/// sampled values were all int32 as `Int32`; a text column whose values were all objectIds,
/// dates, decimal128s or binData of one subtype, or an integer column of timestamps,
/// marked ([`BSON_TYPE`]); a JSON text column given what its integers and strings were
/// ([`BSON_NESTED`]). Columns `declared` in `columns` stay as declared.
pub fn apply(
    shape: &Shape,
    schema: Schema,
    declared: &BTreeMap<String, String>,
    nested: Nested,
) -> Result<Schema> {
    let mut fields = Vec::with_capacity(schema.fields().len());
    for f in schema.fields() {
        let mut field = f.as_ref().clone();
        let Some(place) = shape
            .column(f.name(), nested == Nested::Flatten)
            .filter(|_| !declared.contains_key(f.name()))
        else {
            fields.push(field);
            continue;
        };
        let is_json =
            f.metadata().get(JSON_EXTENSION.0).map(String::as_str) == Some(JSON_EXTENSION.1);
        let mut metadata = field.metadata().clone();
        match f.data_type() {
            DataType::Utf8 if is_json => {
                if let Some(restore) = place.restore() {
                    let text = serde_json::to_string(&restore).map_err(|e| {
                        Error::Config(format!(
                            "column \"{}\": recording its BSON types: {e}",
                            f.name()
                        ))
                    })?;
                    metadata.insert(BSON_NESTED.to_string(), text);
                }
            }
            DataType::Int64 if place.integer() == Some(Integer::Int32) => {
                field = field.with_data_type(DataType::Int32);
            }
            DataType::Utf8 | DataType::Int64 => {
                if let Some(mark) = place.column_mark() {
                    metadata.insert(BSON_TYPE.to_string(), mark.to_string());
                }
            }
            _ => {}
        }
        fields.push(field.with_metadata(metadata));
    }
    Ok(Schema::new_with_metadata(fields, schema.metadata().clone()))
}

/// A BSON value as the JSON the schema inference reads.
pub fn to_json(value: Bson) -> Value {
    match value {
        Bson::Double(f) => Number::from_f64(f)
            .map(Value::Number)
            .unwrap_or_else(|| Value::String(f.to_string())),
        Bson::String(s) => Value::String(s),
        Bson::Boolean(b) => Value::Bool(b),
        Bson::Null | Bson::Undefined => Value::Null,
        Bson::Int32(i) => Value::Number(i.into()),
        Bson::Int64(i) => Value::Number(i.into()),
        Bson::ObjectId(id) => Value::String(id.to_hex()),
        Bson::DateTime(d) => Value::String(
            d.try_to_rfc3339_string()
                .unwrap_or_else(|_| d.timestamp_millis().to_string()),
        ),
        Bson::Decimal128(d) => Value::String(d.to_string()),
        Bson::Binary(b) => {
            Value::String(base64::engine::general_purpose::STANDARD.encode(&b.bytes))
        }
        Bson::Timestamp(t) => {
            Value::Number(((i64::from(t.time) << 32) | i64::from(t.increment)).into())
        }
        Bson::Document(d) => Value::Object(document_to_json(d)),
        Bson::Array(items) => Value::Array(items.into_iter().map(to_json).collect()),
        other => other.into_relaxed_extjson(),
    }
}

/// A document as a JSON object, fields in order.
pub fn document_to_json(document: Document) -> Map<String, Value> {
    document.into_iter().map(|(k, v)| (k, to_json(v))).collect()
}

/// The rows of a batch as documents: nulls left out, `_id` strings of 24 hex digits as
/// objectIds.
pub fn rows_to_documents(batch: &RecordBatch) -> Result<Vec<Document>> {
    let schema = batch.schema();
    let needs_json = schema.fields().iter().any(|f| {
        matches!(
            f.data_type(),
            DataType::Struct(_)
                | DataType::List(_)
                | DataType::LargeList(_)
                | DataType::Map(_, _)
                | DataType::FixedSizeList(_, _)
        )
    });
    let json_rows: Vec<Map<String, Value>> = if needs_json {
        let mut writer = arrow::json::ArrayWriter::new(Vec::new());
        writer
            .write(batch)
            .context(|| "encoding nested columns for MongoDB".to_string())?;
        writer
            .finish()
            .context(|| "encoding nested columns for MongoDB".to_string())?;
        let bytes = writer.into_inner();
        serde_json::from_slice(&bytes)
            .map_err(|e| Error::Config(format!("encoding nested columns for MongoDB: {e}")))?
    } else {
        Vec::new()
    };
    let mut documents = vec![Document::new(); batch.num_rows()];
    for (c, field) in schema.fields().iter().enumerate() {
        let column = batch.column(c);
        let plan = Plan::of(field)?;
        for (row, document) in documents.iter_mut().enumerate() {
            if column.is_null(row) {
                continue;
            }
            let value = cell(
                column.as_ref(),
                row,
                field.name(),
                &plan,
                json_rows.get(row),
            )?;
            document.insert(field.name().clone(), value);
        }
    }
    Ok(documents)
}

/// How one column's cells are written: what its field metadata says.
#[derive(Debug, Default)]
struct Plan {
    /// A text column holding JSON (`arrow.json`).
    json: bool,
    /// The BSON type its values are written back as ([`BSON_TYPE`]).
    mark: Option<Mark>,
    /// What the integers and strings inside its JSON were ([`BSON_NESTED`]).
    nested: Option<Restore>,
}

impl Plan {
    fn of(field: &Field) -> Result<Self> {
        let metadata = field.metadata();
        let invalid = |key: &str, e: String| {
            Error::Config(format!(
                "column \"{}\": field metadata {key} is not valid ({e}); it is what a MongoDB source records, remove it or correct it",
                field.name()
            ))
        };
        Ok(Self {
            json: metadata.get(JSON_EXTENSION.0).map(String::as_str) == Some(JSON_EXTENSION.1),
            mark: metadata
                .get(BSON_TYPE)
                .map(|m| {
                    m.parse()
                        .map_err(|e: BadMark| invalid(BSON_TYPE, e.to_string()))
                })
                .transpose()?,
            nested: metadata
                .get(BSON_NESTED)
                .map(|m| serde_json::from_str(m).map_err(|e| invalid(BSON_NESTED, e.to_string())))
                .transpose()?,
        })
    }
}

fn cell(
    column: &dyn Array,
    row: usize,
    name: &str,
    plan: &Plan,
    json_row: Option<&Map<String, Value>>,
) -> Result<Bson> {
    let bad = |problem: &str, value: String| {
        Error::from(
            BadRow::new(format!("row {}", row + 1), problem)
                .column(name)
                .value(value),
        )
    };
    Ok(match column.data_type() {
        DataType::Boolean => Bson::Boolean(column.as_boolean().value(row)),
        DataType::Int8 => Bson::Int32(i32::from(column.as_primitive::<Int8Type>().value(row))),
        DataType::Int16 => Bson::Int32(i32::from(column.as_primitive::<Int16Type>().value(row))),
        DataType::Int32 => Bson::Int32(column.as_primitive::<Int32Type>().value(row)),
        DataType::Int64 => {
            let integer = (plan.mark == Some(Mark::Timestamp)).then_some(Integer::Timestamp);
            shape::integer(column.as_primitive::<Int64Type>().value(row), integer)
        }
        DataType::UInt8 => Bson::Int32(i32::from(column.as_primitive::<UInt8Type>().value(row))),
        DataType::UInt16 => Bson::Int32(i32::from(column.as_primitive::<UInt16Type>().value(row))),
        DataType::UInt32 => Bson::Int64(i64::from(column.as_primitive::<UInt32Type>().value(row))),
        DataType::UInt64 => {
            let v = column.as_primitive::<UInt64Type>().value(row);
            Bson::Int64(
                i64::try_from(v)
                    .map_err(|_| bad("the value does not fit MongoDB's int64", v.to_string()))?,
            )
        }
        DataType::Float16 | DataType::Float32 | DataType::Float64 => {
            let f = arrow::compute::cast(&column.slice(row, 1), &DataType::Float64)
                .context(|| format!("column \"{name}\""))?;
            Bson::Double(f.as_primitive::<arrow::datatypes::Float64Type>().value(0))
        }
        DataType::Timestamp(unit, _) => {
            let micros = arrow::compute::cast(
                &column.slice(row, 1),
                &DataType::Timestamp(TimeUnit::Millisecond, None),
            )
            .context(|| format!("column \"{name}\""))?;
            let _ = unit;
            Bson::DateTime(bson::DateTime::from_millis(
                micros
                    .as_primitive::<arrow::datatypes::TimestampMillisecondType>()
                    .value(0),
            ))
        }
        DataType::Date32 | DataType::Date64 => {
            let ms = arrow::compute::cast(&column.slice(row, 1), &DataType::Date64)
                .context(|| format!("column \"{name}\""))?;
            Bson::DateTime(bson::DateTime::from_millis(
                ms.as_primitive::<arrow::datatypes::Date64Type>().value(0),
            ))
        }
        DataType::Decimal128(_, _) | DataType::Decimal256(_, _) => {
            let text = arrow::util::display::array_value_to_string(column, row)
                .context(|| format!("column \"{name}\""))?;
            Bson::Decimal128(
                text.parse()
                    .map_err(|e| bad("the value is not a decimal128", format!("{text}: {e}")))?,
            )
        }
        DataType::Binary
        | DataType::LargeBinary
        | DataType::BinaryView
        | DataType::FixedSizeBinary(_) => {
            let bytes = arrow::compute::cast(&column.slice(row, 1), &DataType::LargeBinary)
                .context(|| format!("column \"{name}\""))?;
            let subtype = match plan.mark {
                Some(Mark::BinData(subtype)) => subtype,
                _ => 0,
            };
            Bson::Binary(bson::Binary {
                subtype: subtype.into(),
                bytes: bytes.as_binary::<i64>().value(0).to_vec(),
            })
        }
        DataType::Struct(_)
        | DataType::List(_)
        | DataType::LargeList(_)
        | DataType::Map(_, _)
        | DataType::FixedSizeList(_, _) => {
            let value = json_row
                .and_then(|r| r.get(name))
                .cloned()
                .unwrap_or(Value::Null);
            let shown = value.to_string();
            Bson::try_from(value).map_err(|e| {
                bad(
                    "the value cannot be converted to BSON",
                    format!("{shown}: {e}"),
                )
            })?
        }
        _ => {
            let text = arrow::util::display::array_value_to_string(column, row)
                .context(|| format!("column \"{name}\""))?;
            if plan.json {
                let value: Value = serde_json::from_str(&text).map_err(|e| {
                    bad(
                        &format!("the value is marked JSON but does not parse: {e}"),
                        text.clone(),
                    )
                })?;
                // Plain JSON (not extended JSON: a `$date` key stays a key), in the types
                // the source recorded.
                Restore::to_bson(value, plan.nested.as_ref())
            } else if name == "_id" && plan.mark.is_none() {
                shape::text(text, Mark::ObjectId)
            } else if let Some(mark) = plan.mark {
                shape::text(text, mark)
            } else {
                Bson::String(text)
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use mongodb::bson::doc;
    use serde_json::json;

    use super::*;

    #[test]
    fn bson_reads_as_json_the_inference_types() {
        let id = bson::oid::ObjectId::parse_str("65a1b2c3d4e5f60718293a4b").unwrap();
        let document = doc! {
            "_id": id, "i32": 7_i32, "i64": 1_i64 << 40, "f": 2.5, "s": "x", "b": true, "n": Bson::Null,
            "d": bson::DateTime::from_millis(1_700_000_000_123),
            "dec": Bson::Decimal128("12.50".parse().unwrap()),
            "bin": Bson::Binary(bson::Binary { subtype: bson::spec::BinarySubtype::Generic, bytes: vec![0, 255] }),
            "sub": {"a": [1, {"b": "c"}]},
        };
        assert_eq!(
            Value::Object(document_to_json(document)),
            json!({"_id": "65a1b2c3d4e5f60718293a4b", "i32": 7, "i64": 1_i64 << 40, "f": 2.5, "s": "x", "b": true, "n": null,
                   "d": "2023-11-14T22:13:20.123Z", "dec": "12.50", "bin": "AP8=", "sub": {"a": [1, {"b": "c"}]}})
        );
    }
}
