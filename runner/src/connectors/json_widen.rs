//! Widening the schema of JSON documents (REST, MongoDB, Redis) when documents after the
//! sample disagree with it.
//!
//! The schema of a JSON source is inferred from its first 1,000 documents and fixed there: it
//! must be known before the first batch (tables are created from it), and batches already
//! sent cannot change type. A later value its column cannot hold (`2.5` in an int64 column,
//! `"n/a"` in a boolean one) or a field the sample never saw would be a bad row. Instead, from
//! the first such document on, the source sends no more rows but keeps reading to the end,
//! observing every document that disagrees, and then fails the read with
//! [`Error::Widened`]: the columns widened (int64 with a float becomes float64, any other mix
//! text) and the columns added (nullable, typed from their values), as `columns` overrides.
//! The engine runs the step again with them (`engine::run_sync`): the destination's load is
//! atomic (databases and files commit at the end; Redis and MongoDB sinks say when they are
//! not, and then the step fails with the same message instead), so the second attempt starts
//! from the destination as it was, with a schema that holds every value, and a new column
//! reaches the destination as its `schemaEvolution` allows.
//!
//! Why read again rather than hold everything: a read that agrees with its sample (most reads)
//! pays nothing, memory stays bounded by the batch budget with no spill to disk, and the
//! batches keep flowing while the read runs. The price, paid only on disagreement, is reading
//! the source twice (an API is called twice; an incremental read asks for the same range).
//!
//! Columns declared in `columns` are the user's word and are never widened: a value they
//! cannot hold stays a bad row (`onError`).

use std::collections::{BTreeMap, BTreeSet};

use arrow::datatypes::Schema;
use serde_json::{Map, Value};
use synqx_api::pipeline::Nested;

use super::formats::infer::{Inferred, SAMPLE_RECORDS, settle, type_name};
use super::json_table::{Inference, Misfit};
use crate::error::{Error, Result};

/// What the documents after the sample taught about the schema.
#[derive(Debug)]
pub struct Widening {
    declared: BTreeSet<String>,
    seen: Inference,
    /// The first disagreement, located, for the message.
    first: Option<String>,
    documents: u64,
}

impl Widening {
    /// Widens any column but those `declared` in `columns`.
    pub fn new(declared: &BTreeMap<String, String>, nested: Nested) -> Self {
        Self {
            declared: declared.keys().cloned().collect(),
            seen: Inference::new(nested),
            first: None,
            documents: 0,
        }
    }

    /// Whether some document disagreed: nothing more is sent, the read ends in a widening.
    pub fn started(&self) -> bool {
        self.documents > 0
    }

    /// Takes `document`, whose first misfit is `misfit` (at `at`), to widen the schema by;
    /// `false` when the misfit is in a declared column (it stays a bad row).
    pub fn take(&mut self, document: &Map<String, Value>, misfit: &Misfit, at: &str) -> bool {
        if self.declared.contains(&misfit.field) {
            return false;
        }
        self.seen.observe(document);
        if self.first.is_none() {
            self.first = Some(format!("{at}: {}", misfit.reason));
        }
        self.documents += 1;
        true
    }

    /// `Ok` when every document fitted `schema`; else [`Error::Widened`] with the `columns`
    /// that hold both `schema` and what was seen.
    pub fn finish(&self, schema: &Schema) -> Result<()> {
        let Some(first) = &self.first else {
            return Ok(());
        };
        let mut columns = BTreeMap::new();
        for (name, kinds, json) in self.seen.columns() {
            if self.declared.contains(name) {
                continue;
            }
            let (widened, before) = match schema.field_with_name(name) {
                Ok(field) => {
                    let widened = settle(&Inferred::of(field.data_type()).union(kinds).data_type());
                    if &widened == field.data_type() {
                        continue;
                    }
                    (widened, type_name(field.data_type()))
                }
                Err(_) => (settle(&kinds.data_type()), "new".to_string()),
            };
            let name_of = if json && before == "new" {
                "json".to_string()
            } else {
                type_name(&widened)
            };
            columns.insert(name.to_string(), (name_of, before));
        }
        let listed: Vec<String> = columns
            .iter()
            .map(|(name, (to, from))| format!("{name}: {from} → {to}"))
            .collect();
        Err(Error::Widened {
            message: format!(
                "{first} ({} documents after the first {SAMPLE_RECORDS} disagreed with the schema inferred from them); reading again with the columns widened or added ({})",
                self.documents,
                listed.join(", ")
            ),
            columns: columns.into_iter().map(|(k, (to, _))| (k, to)).collect(),
        })
    }
}

#[cfg(test)]
mod tests {
    use arrow::datatypes::DataType;
    use serde_json::json;

    use super::*;
    use crate::connectors::json_table::Converter;

    fn document(value: Value) -> Map<String, Value> {
        value.as_object().cloned().unwrap_or_default()
    }

    /// The schema of the sample, and what widening learns from `later` documents.
    fn widen(
        sample: Value,
        later: Value,
        declared: &[(&str, &str)],
    ) -> (Widening, std::result::Result<(), Error>) {
        let declared: BTreeMap<String, String> = declared
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let mut inference = Inference::new(Nested::Json);
        for d in sample.as_array().into_iter().flatten() {
            inference.observe(&document(d.clone()));
        }
        let schema = std::sync::Arc::new(inference.schema(&declared).unwrap());
        let converter = Converter::new(schema.clone(), Nested::Json);
        let mut widening = Widening::new(&declared, Nested::Json);
        for (i, d) in later.as_array().into_iter().flatten().enumerate() {
            let d = document(d.clone());
            if let Some(misfit) = converter.misfit(&d) {
                widening.take(&d, &misfit, &format!("page 2, record {}", i + 1));
            }
        }
        let result = widening.finish(&schema);
        (widening, result)
    }

    #[test]
    fn ints_meeting_floats_become_floats_and_new_fields_new_columns() {
        let (widening, result) = widen(
            json!([{"id": 1, "price": 10, "paid": true, "name": "a"}]),
            json!([
                {"id": 2, "price": 10.5, "paid": true},
                {"id": 3, "paid": "unknown", "coupon": "C3", "meta": {"a": 1}},
                {"id": 4, "name": 7}
            ]),
            &[],
        );
        assert!(widening.started());
        let Err(Error::Widened { message, columns }) = &result else {
            panic!("not widened: {result:?}");
        };
        assert_eq!(
            columns,
            &BTreeMap::from([
                ("coupon".to_string(), "string".to_string()),
                ("meta".to_string(), "json".to_string()),
                ("paid".to_string(), "string".to_string()),
                ("price".to_string(), "float64".to_string()),
            ]),
            "name takes any scalar already"
        );
        assert!(
            message.starts_with(
                "page 2, record 1: field \"price\" is a number, but the column is int64"
            ),
            "{message}"
        );
        assert!(
            message.contains(
                "(2 documents after the first 1000 disagreed with the schema inferred from them); reading again with the columns widened or added (coupon: new → string, meta: new → json, paid: boolean → string, price: int64 → float64)"
            ),
            "{message}"
        );
    }

    #[test]
    fn declared_columns_are_never_widened_and_agreeing_documents_change_nothing() {
        let declared = [("price", "int64")];
        let (widening, result) = widen(
            json!([{"id": 1, "price": 10}]),
            json!([{"id": 2, "price": 10.5}]),
            &declared,
        );
        assert!(
            !widening.started(),
            "a declared column's misfit stays a bad row"
        );
        assert!(result.is_ok());
        let (widening, result) = widen(
            json!([{"id": 1, "price": 1.5}]),
            json!([{"id": 2, "price": 3}, {"id": 3}]),
            &[],
        );
        assert!(!widening.started());
        assert!(result.is_ok());
    }

    #[test]
    fn inferred_kinds_of_arrow_types_widen_as_the_sample_would() {
        let kinds = |t: &DataType, value: &str| {
            let mut seen = Inferred::default();
            seen.observe(value);
            Inferred::of(t).union(seen).data_type()
        };
        assert_eq!(kinds(&DataType::Int64, "2.5"), DataType::Float64);
        assert_eq!(kinds(&DataType::Float64, "2"), DataType::Float64);
        assert_eq!(kinds(&DataType::Boolean, "2"), DataType::Utf8);
        assert_eq!(kinds(&DataType::Date32, "2024-01-02"), DataType::Date32);
    }
}
