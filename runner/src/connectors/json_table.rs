//! JSON documents as a table, for the REST source and Redis: the schema is inferred from a
//! sample of documents (types widened as the sample disagrees: integers and floats become
//! floats, anything else mixed becomes text, never truncated), nested objects become JSON text
//! or are flattened one level (`parent.child`), and documents become Arrow batches.
//!
//! After the sample the schema is fixed (it is known before the first batch). A later value
//! that the column cannot hold, or a field the sample never saw, widens the schema: the read
//! ends asking for another with wider columns ([`super::json_widen`]). In a column declared
//! in `columns` it is a bad row that names the document, the field and the value.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use arrow::array::{
    ArrayRef, BooleanBuilder, Float64Builder, Int64Builder, RecordBatch, StringArray, StringBuilder,
};
use arrow::compute::{CastOptions, cast_with_options};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use serde_json::{Map, Value};
use synqx_api::pipeline::Nested;

use tokio::sync::mpsc;

use super::formats::batching::{row_bytes, rows_per_batch};
use super::formats::infer::{Inferred, settle, type_name};
use super::json_widen::Widening;
use crate::engine::cursor::filter_batch;
use crate::engine::{CursorFilter, Rejects};
use crate::error::{BadRow, Context, Error, Result};

/// Field metadata that marks a text column holding JSON.
pub const JSON_EXTENSION: (&str, &str) = ("ARROW:extension:name", "arrow.json");

/// The columns of documents, as seen so far.
#[derive(Debug)]
pub struct Inference {
    nested: Nested,
    columns: Vec<Column>,
    index: HashMap<String, usize>,
}

#[derive(Debug)]
struct Column {
    name: String,
    kinds: Inferred,
    /// Every non-null value was an object or an array.
    json: bool,
    scalars: bool,
}

impl Inference {
    pub fn new(nested: Nested) -> Self {
        Self {
            nested,
            columns: Vec::new(),
            index: HashMap::new(),
        }
    }

    /// Looks at one document.
    pub fn observe(&mut self, document: &Map<String, Value>) {
        let nested = self.nested;
        for_each_field(document, nested, &mut |name, value| {
            let i = match self.index.get(name) {
                Some(i) => *i,
                None => {
                    self.columns.push(Column {
                        name: name.to_string(),
                        kinds: Inferred::default(),
                        json: false,
                        scalars: false,
                    });
                    self.index.insert(name.to_string(), self.columns.len() - 1);
                    self.columns.len() - 1
                }
            };
            let column = &mut self.columns[i];
            match value {
                Value::Null => {}
                Value::Bool(b) => {
                    column.scalars = true;
                    column.kinds.observe(if *b { "true" } else { "false" });
                }
                Value::Number(n) => {
                    column.scalars = true;
                    if n.is_i64() || n.is_f64() {
                        column.kinds.observe(&n.to_string());
                    } else {
                        // Beyond i64: an identifier, kept exactly as text.
                        column.kinds.observe_text();
                    }
                }
                Value::String(s) => {
                    column.scalars = true;
                    column.kinds.observe_json_string(s);
                }
                Value::Array(_) | Value::Object(_) => {
                    column.json = true;
                    column.kinds.observe_text();
                }
            }
        });
    }

    /// Every column seen: its name, the kinds of its values, and whether they were all
    /// objects or arrays.
    pub fn columns(&self) -> impl Iterator<Item = (&str, Inferred, bool)> {
        self.columns
            .iter()
            .map(|c| (c.name.as_str(), c.kinds, c.json && !c.scalars))
    }

    /// The schema: columns in the order first seen, types widened over the sample, `columns`
    /// overrides applied (an override may also declare a column the sample never saw).
    pub fn schema(&self, overrides: &BTreeMap<String, String>) -> Result<Schema> {
        let mut fields: Vec<Field> = self
            .columns
            .iter()
            .map(|c| {
                let field = Field::new(&c.name, settle(&c.kinds.data_type()), true);
                if c.json && !c.scalars {
                    field.with_metadata(
                        [(JSON_EXTENSION.0.to_string(), JSON_EXTENSION.1.to_string())].into(),
                    )
                } else {
                    field
                }
            })
            .collect();
        for (name, type_text) in overrides {
            let data_type = crate::types::parse_arrow(type_text)
                .map_err(|e| Error::Config(format!("columns.{name}: {e}")))?;
            let mut field = Field::new(name, data_type, true);
            if matches!(
                type_text.trim().to_ascii_lowercase().as_str(),
                "json" | "jsonb"
            ) {
                field = field.with_metadata(
                    [(JSON_EXTENSION.0.to_string(), JSON_EXTENSION.1.to_string())].into(),
                );
            }
            match fields.iter_mut().find(|f| f.name() == name) {
                Some(f) => *f = field,
                None => fields.push(field),
            }
        }
        Ok(Schema::new(fields))
    }
}

/// Calls `f` with each column name and value of a document: its fields, with objects
/// expanded one level when `nested` is `flatten`.
fn for_each_field<'a>(
    document: &'a Map<String, Value>,
    nested: Nested,
    f: &mut impl FnMut(&str, &'a Value),
) {
    for (key, value) in document {
        match value {
            Value::Object(inner) if nested == Nested::Flatten && !inner.is_empty() => {
                for (child, v) in inner {
                    f(&format!("{key}.{child}"), v);
                }
            }
            _ => f(key, value),
        }
    }
}

/// A document that does not fit the schema: which field, why (without the value), and the
/// value, for the rejected file only.
#[derive(Debug, PartialEq, Eq)]
pub struct Misfit {
    pub field: String,
    pub reason: String,
    pub value: Option<String>,
}

/// Turns documents into batches of one schema.
pub struct Converter {
    schema: SchemaRef,
    nested: Nested,
    index: HashMap<String, usize>,
}

impl Converter {
    pub fn new(schema: SchemaRef, nested: Nested) -> Self {
        let index = schema
            .fields()
            .iter()
            .enumerate()
            .map(|(i, f)| (f.name().clone(), i))
            .collect();
        Self {
            schema,
            nested,
            index,
        }
    }

    pub fn schema(&self) -> &SchemaRef {
        &self.schema
    }

    /// Why a document does not fit the schema, if it does not. Checked before conversion, so
    /// a bad document can be rejected alone.
    pub fn misfit(&self, document: &Map<String, Value>) -> Option<Misfit> {
        let mut found = None;
        for_each_field(document, self.nested, &mut |name, value| {
            if found.is_some() {
                return;
            }
            let Some(i) = self.index.get(name) else {
                found = Some(Misfit {
                    field: name.to_string(),
                    reason: format!(
                        "field \"{name}\" was not in the documents the schema was inferred from; declare it in the source's columns (e.g. columns: {{\"{name}\": text}}) to read it"
                    ),
                    value: None,
                });
                return;
            };
            let data_type = self.schema.field(*i).data_type();
            if !fits(value, data_type) {
                found = Some(Misfit {
                    field: name.to_string(),
                    reason: format!(
                        "field \"{name}\" is {}, but the column is {} (inferred from earlier documents); declare its type in the source's columns (e.g. columns: {{\"{name}\": text}})",
                        super::formats::jsonl::kind_of(value),
                        type_name(data_type)
                    ),
                    value: Some(value.to_string()),
                });
            }
        });
        found
    }

    /// A batch of documents that all fit (see [`Converter::misfit`]).
    pub fn batch(&self, documents: &[&Map<String, Value>]) -> Result<RecordBatch> {
        let mut columns: Vec<Vec<Option<&Value>>> =
            vec![Vec::with_capacity(documents.len()); self.schema.fields().len()];
        for document in documents {
            let mut row: Vec<Option<&Value>> = vec![None; columns.len()];
            for_each_field(document, self.nested, &mut |name, value| {
                if let Some(i) = self.index.get(name) {
                    row[*i] = Some(value);
                }
            });
            for (column, value) in columns.iter_mut().zip(row) {
                column.push(value.filter(|v| !v.is_null()));
            }
        }
        let arrays = self
            .schema
            .fields()
            .iter()
            .zip(&columns)
            .map(|(field, values)| build(field.name(), field.data_type(), values))
            .collect::<Result<Vec<_>>>()?;
        RecordBatch::try_new(self.schema.clone(), arrays)
            .context(|| "assembling a batch of JSON documents".to_string())
    }
}

/// Sends documents on as batches cut to the byte budget; a document that does not fit widens
/// the schema (or, in a declared column, is rejected).
pub struct Emitter {
    pub converter: Converter,
    pub widening: Widening,
    pub rejects: Rejects,
    /// Rows at or below the watermark are dropped (for systems whose filter is inclusive).
    pub filter: Option<CursorFilter>,
    pub batch_bytes: usize,
}

impl Emitter {
    /// Sends `documents` (`bytes` of encoded size, at `location` for messages, where
    /// `, record N` is added) in batches. `Ok(false)` when the reader went away.
    pub async fn emit(
        &mut self,
        documents: Vec<Map<String, Value>>,
        bytes: usize,
        location: String,
        tx: &mpsc::Sender<Result<RecordBatch>>,
    ) -> Result<bool> {
        if documents.is_empty() {
            return Ok(true);
        }
        let width = self.converter.schema().fields().len();
        let rows = rows_per_batch(
            self.batch_bytes,
            row_bytes(bytes as u64, documents.len(), width),
        );
        let mut start = 0;
        while start < documents.len() {
            let end = (start + rows).min(documents.len());
            let mut good: Vec<&Map<String, Value>> = Vec::with_capacity(end - start);
            for (i, document) in documents[start..end].iter().enumerate() {
                match self.converter.misfit(document) {
                    None => good.push(document),
                    Some(misfit) => {
                        let at = format!("{location}, record {}", start + i + 1);
                        if !self.widening.take(document, &misfit, &at) {
                            let raw = Value::Object(document.clone()).to_string();
                            let mut bad = BadRow::new(at, misfit.reason).row(raw);
                            if let Some(value) = misfit.value {
                                bad = bad.value(value);
                            }
                            self.rejects.reject(bad)?;
                        }
                    }
                }
            }
            if self.widening.started() {
                // The read ends in a widening: rows sent now would be read again.
                start = end;
                continue;
            }
            let mut batch = self.converter.batch(&good)?;
            if let Some(filter) = &self.filter {
                batch = filter_batch(&batch, filter)?;
            }
            if batch.num_rows() > 0 && tx.send(Ok(batch)).await.is_err() {
                return Ok(false);
            }
            start = end;
        }
        Ok(true)
    }

    /// Ends the read: `Ok` when every document fitted, else [`Error::Widened`].
    pub fn finish(&self) -> Result<()> {
        self.widening.finish(self.converter.schema())
    }
}

/// Whether a JSON value converts into a column of `data_type` without loss.
fn fits(value: &Value, data_type: &DataType) -> bool {
    match (value, data_type) {
        (Value::Null, _) => true,
        (_, DataType::Utf8 | DataType::LargeUtf8) => true,
        (Value::Bool(_), DataType::Boolean) => true,
        (Value::Number(n), DataType::Int64) => n.is_i64(),
        (Value::Number(n), DataType::Float64) => n.as_f64().is_some(),
        (Value::String(s), DataType::Date32 | DataType::Timestamp(_, _)) => {
            parses_as_time(s, data_type).unwrap_or_else(|| {
                cast_text(&[Some(s.as_str())], data_type).is_some_and(|a| a.null_count() == 0)
            })
        }
        (Value::Number(_) | Value::String(_), t) if t.is_numeric() => {
            cast_text(&[Some(&scalar_text(value))], t).is_some_and(|a| a.null_count() == 0)
        }
        _ => false,
    }
}

/// Whether `text` casts to a date or a UTC timestamp, decided with the parsers the cast uses
/// but without building an array per value (every value of such a column passes here);
/// `None` for the types it does not decide (a zone other than UTC), which take the cast.
fn parses_as_time(text: &str, data_type: &DataType) -> Option<bool> {
    use arrow::compute::kernels::cast_utils::{Parser, string_to_datetime};
    use arrow::datatypes::{
        ArrowTimestampType, Date32Type, TimeUnit, TimestampMicrosecondType,
        TimestampMillisecondType, TimestampNanosecondType, TimestampSecondType,
    };
    match data_type {
        DataType::Date32 => Some(Date32Type::parse(text).is_some()),
        DataType::Timestamp(unit, zone)
            if zone
                .as_deref()
                .is_none_or(|z| matches!(z, "+00:00" | "UTC")) =>
        {
            let Ok(at) = string_to_datetime(&chrono::Utc, text) else {
                return Some(false);
            };
            let naive = at.naive_utc();
            Some(match unit {
                TimeUnit::Second => TimestampSecondType::from_naive_datetime(naive, None).is_some(),
                TimeUnit::Millisecond => {
                    TimestampMillisecondType::from_naive_datetime(naive, None).is_some()
                }
                TimeUnit::Microsecond => {
                    TimestampMicrosecondType::from_naive_datetime(naive, None).is_some()
                }
                TimeUnit::Nanosecond => {
                    TimestampNanosecondType::from_naive_datetime(naive, None).is_some()
                }
            })
        }
        _ => None,
    }
}

fn scalar_text(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

fn cast_text(values: &[Option<&str>], data_type: &DataType) -> Option<ArrayRef> {
    let text = StringArray::from(values.to_vec());
    cast_with_options(&text, data_type, &CastOptions::default()).ok()
}

fn build(name: &str, data_type: &DataType, values: &[Option<&Value>]) -> Result<ArrayRef> {
    Ok(match data_type {
        DataType::Boolean => {
            let mut b = BooleanBuilder::with_capacity(values.len());
            values
                .iter()
                .for_each(|v| b.append_option(v.and_then(Value::as_bool)));
            Arc::new(b.finish())
        }
        DataType::Int64 => {
            let mut b = Int64Builder::with_capacity(values.len());
            values
                .iter()
                .for_each(|v| b.append_option(v.and_then(Value::as_i64)));
            Arc::new(b.finish())
        }
        DataType::Float64 => {
            let mut b = Float64Builder::with_capacity(values.len());
            values
                .iter()
                .for_each(|v| b.append_option(v.and_then(Value::as_f64)));
            Arc::new(b.finish())
        }
        DataType::Utf8 => {
            let mut b = StringBuilder::with_capacity(values.len(), values.len() * 16);
            for v in values {
                match v {
                    None => b.append_null(),
                    Some(Value::String(s)) => b.append_value(s),
                    Some(other) => b.append_value(other.to_string()),
                }
            }
            Arc::new(b.finish())
        }
        other => {
            let text: Vec<Option<String>> = values.iter().map(|v| v.map(scalar_text)).collect();
            let text = StringArray::from(text);
            cast_with_options(
                &text,
                other,
                &CastOptions {
                    safe: false,
                    ..Default::default()
                },
            )
            .context(|| format!("converting field \"{name}\" to {}", type_name(other)))?
        }
    })
}

#[cfg(test)]
mod tests {
    use arrow::array::{Array, AsArray};
    use arrow::datatypes::{Float64Type, Int64Type};
    use serde_json::json;

    use super::*;

    fn docs(values: Value) -> Vec<Map<String, Value>> {
        values
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_object().unwrap().clone())
            .collect()
    }

    fn infer(values: Value, nested: Nested) -> Schema {
        let mut inference = Inference::new(nested);
        docs(values).iter().for_each(|d| inference.observe(d));
        inference.schema(&BTreeMap::new()).unwrap()
    }

    fn types(schema: &Schema) -> Vec<(String, DataType)> {
        schema
            .fields()
            .iter()
            .map(|f| (f.name().clone(), f.data_type().clone()))
            .collect()
    }

    #[test]
    fn dates_and_utc_timestamps_fit_exactly_when_the_cast_takes_them() {
        use arrow::datatypes::TimeUnit;
        let types = [
            DataType::Date32,
            DataType::Timestamp(TimeUnit::Second, None),
            DataType::Timestamp(TimeUnit::Microsecond, None),
            DataType::Timestamp(TimeUnit::Microsecond, Some("+00:00".into())),
            DataType::Timestamp(TimeUnit::Nanosecond, Some("UTC".into())),
        ];
        let texts = [
            "2024-03-01",
            "2024-02-30",
            "2024-03-01T10:20:30Z",
            "2024-03-01 10:20:30.123456+02:00",
            "2024-03-01T10:20:30",
            "1500-01-01T00:00:00Z",
            "9999-12-31T23:59:59Z",
            "03/01/2024",
            "",
            "x",
        ];
        for data_type in &types {
            for text in texts {
                let by_cast =
                    cast_text(&[Some(text)], data_type).is_some_and(|a| a.null_count() == 0);
                assert_eq!(
                    parses_as_time(text, data_type),
                    Some(by_cast),
                    "{text} as {data_type}"
                );
            }
        }
        let elsewhere = DataType::Timestamp(TimeUnit::Microsecond, Some("Europe/Paris".into()));
        assert_eq!(parses_as_time("2024-03-01T10:20:30", &elsewhere), None);
    }

    #[test]
    fn types_widen_over_the_sample_and_never_truncate() {
        let schema = infer(
            json!([
                {"id": 1, "price": 1, "flag": true, "code": 7, "when": "2024-01-02T03:04:05Z", "day": "2024-01-02", "big": 1},
                {"id": 2, "price": 2.5, "flag": false, "code": "A7", "when": "2024-01-03T00:00:00Z", "day": "2024-01-03", "big": 18446744073709551615u64},
                {"id": 3, "price": null, "none": null}
            ]),
            Nested::Json,
        );
        assert_eq!(
            types(&schema),
            [
                ("id".to_string(), DataType::Int64),
                ("price".to_string(), DataType::Float64),
                ("flag".to_string(), DataType::Boolean),
                ("code".to_string(), DataType::Utf8),
                (
                    "when".to_string(),
                    DataType::Timestamp(
                        arrow::datatypes::TimeUnit::Microsecond,
                        Some("+00:00".into())
                    )
                ),
                ("day".to_string(), DataType::Date32),
                ("big".to_string(), DataType::Utf8),
                ("none".to_string(), DataType::Utf8),
            ]
        );
    }

    #[test]
    fn nested_objects_as_json_text_or_flattened_one_level() {
        let values = json!([{"id": 1, "customer": {"name": "Ada", "address": {"city": "Paris"}}, "tags": ["a", "b"]}]);
        let schema = infer(values.clone(), Nested::Json);
        let customer = schema.field_with_name("customer").unwrap();
        assert_eq!(customer.data_type(), &DataType::Utf8);
        assert_eq!(
            customer
                .metadata()
                .get("ARROW:extension:name")
                .map(String::as_str),
            Some("arrow.json")
        );
        let converter = Converter::new(Arc::new(schema), Nested::Json);
        let documents = docs(values.clone());
        let batch = converter
            .batch(&documents.iter().collect::<Vec<_>>())
            .unwrap();
        let text = batch
            .column_by_name("customer")
            .unwrap()
            .as_string::<i32>()
            .value(0)
            .to_string();
        assert_eq!(
            serde_json::from_str::<Value>(&text).unwrap(),
            json!({"name": "Ada", "address": {"city": "Paris"}})
        );
        assert_eq!(
            batch
                .column_by_name("tags")
                .unwrap()
                .as_string::<i32>()
                .value(0),
            "[\"a\",\"b\"]"
        );

        let schema = infer(values.clone(), Nested::Flatten);
        assert_eq!(
            crate::connectors::tests::field_names(&schema),
            ["id", "customer.name", "customer.address", "tags"]
        );
        let converter = Converter::new(Arc::new(schema), Nested::Flatten);
        let documents = docs(values);
        let batch = converter
            .batch(&documents.iter().collect::<Vec<_>>())
            .unwrap();
        assert_eq!(
            batch
                .column_by_name("customer.name")
                .unwrap()
                .as_string::<i32>()
                .value(0),
            "Ada"
        );
        assert_eq!(
            batch
                .column_by_name("customer.address")
                .unwrap()
                .as_string::<i32>()
                .value(0),
            "{\"city\":\"Paris\"}"
        );
    }

    #[test]
    fn documents_convert_with_missing_fields_as_nulls() {
        let values = json!([{"id": 1, "price": 2.5, "ok": true}, {"id": 2}, {"price": 3}]);
        let schema = infer(values.clone(), Nested::Json);
        let converter = Converter::new(Arc::new(schema), Nested::Json);
        let documents = docs(values);
        let batch = converter
            .batch(&documents.iter().collect::<Vec<_>>())
            .unwrap();
        let ids = batch
            .column_by_name("id")
            .unwrap()
            .as_primitive::<Int64Type>();
        assert_eq!((ids.value(0), ids.value(1), ids.is_null(2)), (1, 2, true));
        let prices = batch
            .column_by_name("price")
            .unwrap()
            .as_primitive::<Float64Type>();
        assert_eq!(
            (prices.value(0), prices.is_null(1), prices.value(2)),
            (2.5, true, 3.0)
        );
    }

    #[test]
    fn drift_after_the_sample_names_the_field_and_the_fix() {
        let schema = infer(json!([{"id": 1, "name": "a"}]), Nested::Json);
        let converter = Converter::new(Arc::new(schema), Nested::Json);
        let late = docs(json!([{"id": 1.5}, {"id": 2, "extra": 1}, {"id": 3, "name": 5}]));
        let misfit = converter.misfit(&late[0]).unwrap();
        assert_eq!(misfit.field, "id");
        assert!(
            misfit
                .reason
                .contains("is a number, but the column is int64"),
            "{}",
            misfit.reason
        );
        assert_eq!(misfit.value.as_deref(), Some("1.5"));
        assert!(
            misfit.reason.contains("columns: {\"id\": text}"),
            "{}",
            misfit.reason
        );
        assert!(
            converter
                .misfit(&late[1])
                .unwrap()
                .reason
                .contains("field \"extra\" was not in the documents")
        );
        assert_eq!(
            converter.misfit(&late[2]),
            None,
            "text columns take any scalar"
        );
    }

    #[test]
    fn overrides_retype_and_declare_columns() {
        let mut inference = Inference::new(Nested::Json);
        docs(json!([{"id": 1, "amount": "12.50"}]))
            .iter()
            .for_each(|d| inference.observe(d));
        let overrides = [
            ("amount".to_string(), "decimal(10,2)".to_string()),
            ("late".to_string(), "text".to_string()),
        ]
        .into();
        let schema = Arc::new(inference.schema(&overrides).unwrap());
        assert_eq!(
            schema.field_with_name("amount").unwrap().data_type(),
            &DataType::Decimal128(10, 2)
        );
        let converter = Converter::new(schema, Nested::Json);
        let documents = docs(json!([{"id": 2, "amount": "3.25", "late": "x"}]));
        assert_eq!(converter.misfit(&documents[0]), None);
        let batch = converter
            .batch(&documents.iter().collect::<Vec<_>>())
            .unwrap();
        let amounts = batch
            .column_by_name("amount")
            .unwrap()
            .as_primitive::<arrow::datatypes::Decimal128Type>();
        assert_eq!(amounts.value(0), 325);
        let bad = docs(json!([{"amount": "lots"}]));
        assert!(converter.misfit(&bad[0]).is_some());
    }
}
