//! Redis values to documents and rows to Redis values. Redis stores text, so a hash field or
//! stream field that reads back exactly as a JSON number or boolean becomes one (`12`,
//! `2.5`, `true`); anything else (`007`, `1e3`, `x`) stays text. A string key holding a JSON
//! object is that object; any other string is `{"value": …}`. Every document gets `_key`
//! (keys) or `_id` (stream entries).
//!
//! Writing, each column becomes a field holding its value as text (timestamps in RFC 3339,
//! JSON columns as their JSON); a `json` key holds the row as one JSON object, numbers and
//! booleans as JSON numbers and booleans. Nulls are left out.

use arrow::array::{Array, AsArray, RecordBatch};
use arrow::datatypes::DataType;
use arrow::util::display::{ArrayFormatter, FormatOptions};
use serde_json::{Map, Number, Value};

use crate::connectors::json_table::JSON_EXTENSION;
use crate::error::{Context, Result};

/// A stored text as the JSON value it reads back as exactly, else the text itself.
pub fn scalar(text: String) -> Value {
    match text.as_str() {
        "true" => return Value::Bool(true),
        "false" => return Value::Bool(false),
        _ => {}
    }
    if canonical_integer(&text)
        && let Ok(i) = text.parse::<i64>()
    {
        return Value::Number(i.into());
    }
    if let Ok(f) = text.parse::<f64>()
        && let Some(n) = Number::from_f64(f)
        && n.to_string() == text
    {
        return Value::Number(n);
    }
    Value::String(text)
}

/// Whether `text` is an integer as an integer prints (`0`, `12`, `-3`; not `007`, `+1`,
/// `-0`): checked on the bytes, since every field of every hash passes here.
fn canonical_integer(text: &str) -> bool {
    let digits = text.strip_prefix('-').unwrap_or(text);
    match digits.as_bytes() {
        [] => false,
        [b'0'] => digits.len() == text.len(),
        [b'0', ..] => false,
        bytes => bytes.iter().all(u8::is_ascii_digit),
    }
}

/// A hash (or a stream entry's fields) as a document, `label` (`_key` or `_id`) first.
pub fn fields_document(label: (&str, &str), fields: Vec<(String, String)>) -> Map<String, Value> {
    let mut doc = Map::with_capacity(fields.len() + 1);
    doc.insert(label.0.to_string(), Value::String(label.1.to_string()));
    for (k, v) in fields {
        doc.insert(k, scalar(v));
    }
    doc
}

/// A string key as a document.
pub fn string_document(key: &str, text: String) -> Map<String, Value> {
    let mut doc = Map::new();
    doc.insert("_key".to_string(), Value::String(key.to_string()));
    match serde_json::from_str::<Value>(&text) {
        Ok(Value::Object(map)) => doc.extend(map),
        _ => {
            doc.insert("value".to_string(), scalar(text));
        }
    }
    doc
}

/// Formats the cells of one batch as text (timestamps in RFC 3339).
pub struct Cells<'a> {
    batch: &'a RecordBatch,
    formatters: Vec<ArrayFormatter<'a>>,
}

const FORMAT: FormatOptions<'static> = FormatOptions::new().with_null("");

impl<'a> Cells<'a> {
    pub fn new(batch: &'a RecordBatch) -> Result<Self> {
        let formatters = batch
            .columns()
            .iter()
            .map(|c| ArrayFormatter::try_new(c.as_ref(), &FORMAT))
            .collect::<std::result::Result<Vec<_>, _>>()
            .context(|| "formatting values for Redis".to_string())?;
        Ok(Self { batch, formatters })
    }

    /// The text of a cell, `None` for null.
    pub fn text(&self, column: usize, row: usize) -> Option<String> {
        if self.batch.column(column).is_null(row) {
            return None;
        }
        Some(self.formatters[column].value(row).to_string())
    }

    /// The row's non-null cells as `(column, text)`.
    pub fn fields(&self, row: usize) -> Vec<(&'a str, String)> {
        let schema = self.batch.schema_ref();
        (0..self.batch.num_columns())
            .filter_map(|c| Some((schema.field(c).name().as_str(), self.text(c, row)?)))
            .collect()
    }

    /// The row as a JSON object.
    pub fn json(&self, row: usize) -> Map<String, Value> {
        let schema = self.batch.schema_ref();
        let mut doc = Map::new();
        for (c, field) in schema.fields().iter().enumerate() {
            let column = self.batch.column(c);
            if column.is_null(row) {
                continue;
            }
            let json_text = field.metadata().get(JSON_EXTENSION.0).map(String::as_str)
                == Some(JSON_EXTENSION.1);
            let value = match column.data_type() {
                DataType::Boolean => Value::Bool(column.as_boolean().value(row)),
                t if t.is_integer() || t.is_floating() => {
                    let text = self.text(c, row).unwrap_or_default();
                    serde_json::from_str::<Number>(&text)
                        .map(Value::Number)
                        .unwrap_or(Value::String(text))
                }
                _ => {
                    let text = self.text(c, row).unwrap_or_default();
                    if json_text {
                        serde_json::from_str(&text).unwrap_or(Value::String(text))
                    } else {
                        Value::String(text)
                    }
                }
            };
            doc.insert(field.name().clone(), value);
        }
        doc
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use arrow::array::{
        BooleanArray, Float64Array, Int64Array, StringArray, TimestampMicrosecondArray,
    };
    use arrow::datatypes::{Field, Schema, TimeUnit};
    use serde_json::json;

    use super::*;

    #[test]
    fn stored_text_reads_back_as_the_scalar_it_spells_exactly() {
        assert_eq!(scalar("12".into()), json!(12));
        assert_eq!(scalar("-3".into()), json!(-3));
        assert_eq!(scalar("0".into()), json!(0));
        assert_eq!(scalar("2.5".into()), json!(2.5));
        assert_eq!(scalar("true".into()), json!(true));
        for text in [
            "007",
            "-0",
            "-007",
            "--1",
            "-",
            "1_000",
            "1e3",
            "1.50",
            "+1",
            "True",
            "",
            "x",
            "99999999999999999999",
        ] {
            assert_eq!(scalar(text.into()), json!(text), "{text}");
        }
    }

    #[test]
    fn documents_of_hashes_and_strings() {
        let doc = fields_document(
            ("_key", "o:1"),
            vec![("id".into(), "1".into()), ("name".into(), "Ada".into())],
        );
        assert_eq!(
            Value::Object(doc),
            json!({"_key": "o:1", "id": 1, "name": "Ada"})
        );
        assert_eq!(
            Value::Object(string_document("k", "{\"a\": [1]}".into())),
            json!({"_key": "k", "a": [1]})
        );
        assert_eq!(
            Value::Object(string_document("k", "plain".into())),
            json!({"_key": "k", "value": "plain"})
        );
        assert_eq!(
            Value::Object(string_document("k", "42".into())),
            json!({"_key": "k", "value": 42})
        );
    }

    #[test]
    fn rows_as_fields_and_as_json() {
        let schema = Arc::new(Schema::new(vec![
            Field::new("id", DataType::Int64, true),
            Field::new("price", DataType::Float64, true),
            Field::new("ok", DataType::Boolean, true),
            Field::new(
                "at",
                DataType::Timestamp(TimeUnit::Microsecond, Some("+00:00".into())),
                true,
            ),
            Field::new("meta", DataType::Utf8, true).with_metadata(
                [(JSON_EXTENSION.0.to_string(), JSON_EXTENSION.1.to_string())].into(),
            ),
            Field::new("note", DataType::Utf8, true),
        ]));
        let batch = RecordBatch::try_new(
            schema,
            vec![
                Arc::new(Int64Array::from(vec![1, 2])),
                Arc::new(Float64Array::from(vec![Some(2.5), None])),
                Arc::new(BooleanArray::from(vec![true, false])),
                Arc::new(
                    TimestampMicrosecondArray::from(vec![1_700_000_000_000_000, 0])
                        .with_timezone("+00:00"),
                ),
                Arc::new(StringArray::from(vec![Some("{\"a\":1}"), None])),
                Arc::new(StringArray::from(vec![Some("x"), Some("y")])),
            ],
        )
        .unwrap();
        let cells = Cells::new(&batch).unwrap();
        assert_eq!(
            cells.fields(1),
            [
                ("id", "2".to_string()),
                ("ok", "false".to_string()),
                ("at", "1970-01-01T00:00:00Z".to_string()),
                ("note", "y".to_string())
            ]
        );
        assert_eq!(
            Value::Object(cells.json(0)),
            json!({"id": 1, "price": 2.5, "ok": true, "at": "2023-11-14T22:13:20Z", "meta": {"a": 1}, "note": "x"})
        );
    }
}
