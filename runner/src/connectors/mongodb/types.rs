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
//! | decimal128                   | `Utf8`, exact digits (`columns` can make it `decimal(p,s)`) | decimal128 from `Decimal128` |
//! | binData                      | `Utf8`, base64, marked `synqx.bson: binData` when every sampled value is one | binData (subtype 0) from `Binary` and marked columns |
//! | object, array (`nested: json`) | `Utf8` with `arrow.json`                 | object, array          |
//! | object (`nested: flatten`)   | one column per field, `parent.child`       | fields of the row      |
//! | Arrow `Struct`, `List` (from other sources) | –                             | object, array          |
//! | timestamp (internal)         | `Int64`, seconds << 32 | increment         | int64                  |
//! | regex, javascript, others    | `Utf8`, their extended JSON                | string                 |
//! | null, missing                | null                                       | field left out         |
//!
//! The marks and `Int32` come from the BSON types of the sampled documents' top-level fields
//! ([`BsonKinds`]), so a collection copied through SynqX keeps them; inside objects and
//! arrays (JSON text) integers come back as int64 and objectIds and binData as strings.

use std::collections::{BTreeMap, HashMap};

use arrow::array::{Array, AsArray, RecordBatch};
use arrow::datatypes::{
    DataType, Field, Int8Type, Int16Type, Int32Type, Int64Type, Schema, TimeUnit, UInt8Type,
    UInt16Type, UInt32Type, UInt64Type,
};
use base64::Engine;
use mongodb::bson::{self, Bson, Document};
use serde_json::{Map, Number, Value};

use crate::connectors::json_table::JSON_EXTENSION;
use crate::error::{BadRow, Context, Error, Result};

/// Field metadata naming the BSON type a text column's values are written back as.
pub const BSON_TYPE: &str = "synqx.bson";
const OBJECT_ID: &str = "objectId";
const BIN_DATA: &str = "binData";

const INT32_KIND: u8 = 1;
const OBJECT_ID_KIND: u8 = 1 << 1;
const BIN_DATA_KIND: u8 = 1 << 2;
const OTHER_KIND: u8 = 1 << 3;

/// The BSON types seen in each top-level field of the sampled documents (nulls aside): what
/// JSON cannot say about them.
#[derive(Debug, Default)]
pub struct BsonKinds(HashMap<String, u8>);

impl BsonKinds {
    pub fn observe(&mut self, document: &Document) {
        for (key, value) in document {
            let kind = match value {
                Bson::Null | Bson::Undefined => continue,
                Bson::Int32(_) => INT32_KIND,
                Bson::ObjectId(_) => OBJECT_ID_KIND,
                Bson::Binary(_) => BIN_DATA_KIND,
                _ => OTHER_KIND,
            };
            *self.0.entry(key.clone()).or_default() |= kind;
        }
    }

    /// `schema` with each column whose sampled values were all int32 as `Int32`, and all
    /// objectIds or all binData marked ([`BSON_TYPE`]); columns `declared` in `columns` stay.
    pub fn apply(&self, schema: Schema, declared: &BTreeMap<String, String>) -> Schema {
        let fields: Vec<Field> = schema
            .fields()
            .iter()
            .map(|f| {
                let field = f.as_ref().clone();
                if declared.contains_key(f.name()) {
                    return field;
                }
                match (self.0.get(f.name()).copied(), f.data_type()) {
                    (Some(INT32_KIND), DataType::Int64) => field.with_data_type(DataType::Int32),
                    (Some(OBJECT_ID_KIND), DataType::Utf8) => marked(field, OBJECT_ID),
                    (Some(BIN_DATA_KIND), DataType::Utf8) => marked(field, BIN_DATA),
                    _ => field,
                }
            })
            .collect();
        Schema::new_with_metadata(fields, schema.metadata().clone())
    }
}

/// `field` marked as holding values of the BSON type `tag`.
fn marked(field: Field, tag: &str) -> Field {
    let mut metadata = field.metadata().clone();
    metadata.insert(BSON_TYPE.to_string(), tag.to_string());
    field.with_metadata(metadata)
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
        let is_json =
            field.metadata().get(JSON_EXTENSION.0).map(String::as_str) == Some(JSON_EXTENSION.1);
        let bson_type = field.metadata().get(BSON_TYPE).map(String::as_str);
        for (row, document) in documents.iter_mut().enumerate() {
            if column.is_null(row) {
                continue;
            }
            let value = cell(
                column.as_ref(),
                row,
                field.name(),
                (is_json, bson_type),
                json_rows.get(row),
            )?;
            document.insert(field.name().clone(), value);
        }
    }
    Ok(documents)
}

fn cell(
    column: &dyn Array,
    row: usize,
    name: &str,
    (is_json, bson_type): (bool, Option<&str>),
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
        DataType::Int64 => Bson::Int64(column.as_primitive::<Int64Type>().value(row)),
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
            Bson::Binary(bson::Binary {
                subtype: bson::spec::BinarySubtype::Generic,
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
            if is_json {
                let value: Value = serde_json::from_str(&text).map_err(|e| {
                    bad(
                        &format!("the value is marked JSON but does not parse: {e}"),
                        text.clone(),
                    )
                })?;
                json_to_bson(value)
            } else if (name == "_id" || bson_type == Some(OBJECT_ID))
                && text.len() == 24
                && let Ok(id) = bson::oid::ObjectId::parse_str(&text)
            {
                Bson::ObjectId(id)
            } else if bson_type == Some(BIN_DATA)
                && let Ok(bytes) = base64::engine::general_purpose::STANDARD.decode(&text)
            {
                Bson::Binary(bson::Binary {
                    subtype: bson::spec::BinarySubtype::Generic,
                    bytes,
                })
            } else {
                Bson::String(text)
            }
        }
    })
}

/// Plain JSON (not extended JSON: a `$date` key stays a key) as BSON.
fn json_to_bson(value: Value) -> Bson {
    match value {
        Value::Null => Bson::Null,
        Value::Bool(b) => Bson::Boolean(b),
        Value::Number(n) => match n.as_i64() {
            Some(i) => Bson::Int64(i),
            None => Bson::Double(n.as_f64().unwrap_or(f64::NAN)),
        },
        Value::String(s) => Bson::String(s),
        Value::Array(items) => Bson::Array(items.into_iter().map(json_to_bson).collect()),
        Value::Object(map) => {
            Bson::Document(map.into_iter().map(|(k, v)| (k, json_to_bson(v))).collect())
        }
    }
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
