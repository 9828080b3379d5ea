//! The type map both ways: BigQuery's table fields to Arrow, and Arrow to the fields of tables
//! created for a load.
//!
//! | BigQuery | Arrow | created from Arrow |
//! |---|---|---|
//! | `INT64` | Int64 | Int8…Int64, UInt8…UInt32 → `INT64` |
//! | `NUMERIC` | Decimal128(38,9) | Decimal128(p,s) with s ≤ 9 and p − s ≤ 29 → `NUMERIC` |
//! | `BIGNUMERIC` | Utf8, the exact decimal text | other decimals, UInt64 → `BIGNUMERIC` |
//! | `FLOAT64` | Float64 | Float16/32/64 → `FLOAT64` |
//! | `STRING` | Utf8 | Utf8 → `STRING` |
//! | `BOOL` | Boolean | `BOOL` |
//! | `DATE` | Date32 | Date32/64 → `DATE` |
//! | `TIME` | Time64(µs) | Time32/64 → `TIME` |
//! | `DATETIME` | Timestamp(µs) | Timestamp without zone → `DATETIME` |
//! | `TIMESTAMP` | Timestamp(µs, UTC) | Timestamp with zone → `TIMESTAMP` |
//! | `JSON` | Utf8, extension `arrow.json` | Utf8 `arrow.json` → `JSON` |
//! | `BYTES` | Binary | Binary, FixedSizeBinary → `BYTES` |
//! | `ARRAY<T>` (mode `REPEATED`) | List(T) | List(T) → `T` `REPEATED` |
//! | `STRUCT` (`RECORD`) | Struct | Struct → `RECORD` |
//! | `GEOGRAPHY`, `INTERVAL`, `RANGE` | Utf8 | |

use std::sync::Arc;

use arrow::datatypes::{DataType, Field, Fields, TimeUnit};
use serde::{Deserialize, Serialize};

pub use crate::connectors::http_api::is_json;
use crate::connectors::http_api::json_field;

/// A table field as the API describes it.
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq)]
pub struct TableField {
    pub name: String,
    #[serde(rename = "type")]
    pub kind: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mode: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub fields: Vec<TableField>,
}

impl TableField {
    pub fn repeated(&self) -> bool {
        self.mode.as_deref() == Some("REPEATED")
    }
}

/// The Arrow type of one value of a field (its element type when repeated).
pub fn element_type(field: &TableField) -> DataType {
    match field.kind.to_ascii_uppercase().as_str() {
        "INT64" | "INTEGER" => DataType::Int64,
        "NUMERIC" => DataType::Decimal128(38, 9),
        "FLOAT64" | "FLOAT" => DataType::Float64,
        "BOOL" | "BOOLEAN" => DataType::Boolean,
        "DATE" => DataType::Date32,
        "TIME" => DataType::Time64(TimeUnit::Microsecond),
        "DATETIME" => DataType::Timestamp(TimeUnit::Microsecond, None),
        "TIMESTAMP" => DataType::Timestamp(TimeUnit::Microsecond, Some(Arc::from("UTC"))),
        "BYTES" => DataType::Binary,
        "RECORD" | "STRUCT" => {
            DataType::Struct(field.fields.iter().map(arrow_field).collect::<Fields>())
        }
        _ => DataType::Utf8,
    }
}

/// The Arrow field of a table field.
pub fn arrow_field(field: &TableField) -> Field {
    let element = Field::new(&field.name, element_type(field), true);
    let element = if field.kind.eq_ignore_ascii_case("JSON") {
        json_field(element)
    } else {
        element
    };
    if field.repeated() {
        Field::new(
            &field.name,
            DataType::List(Arc::new(element.with_name("item"))),
            true,
        )
    } else {
        element
    }
}

/// A type BigQuery cannot hold, as the message's "has the type …" names it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FieldTypeError {
    #[error("a list of lists (BigQuery has no ARRAY<ARRAY>; wrap the inner list in a struct)")]
    ListOfLists,
    #[error("{0}")]
    Unsupported(DataType),
}

/// The table field created for an Arrow field; `Err` names a type BigQuery cannot hold.
pub fn table_field(field: &Field) -> Result<TableField, FieldTypeError> {
    let (kind, mode, fields) = match field.data_type() {
        DataType::List(item) | DataType::LargeList(item) | DataType::FixedSizeList(item, _) => {
            if matches!(
                item.data_type(),
                DataType::List(_) | DataType::LargeList(_) | DataType::FixedSizeList(..)
            ) {
                return Err(FieldTypeError::ListOfLists);
            }
            let inner = table_field(item)?;
            (inner.kind, Some("REPEATED".to_string()), inner.fields)
        }
        DataType::Struct(children) => {
            let fields = children
                .iter()
                .map(|c| table_field(c))
                .collect::<Result<Vec<_>, _>>()?;
            ("RECORD".to_string(), None, fields)
        }
        other => (scalar_kind(field, other)?.to_string(), None, Vec::new()),
    };
    Ok(TableField {
        name: field.name().clone(),
        kind,
        mode,
        fields,
    })
}

/// The column type created for a field of a scalar type; `Err` names a type BigQuery cannot
/// hold.
pub fn scalar_kind(field: &Field, data_type: &DataType) -> Result<&'static str, FieldTypeError> {
    Ok(match data_type {
        DataType::Boolean => "BOOL",
        DataType::Int8
        | DataType::Int16
        | DataType::Int32
        | DataType::Int64
        | DataType::UInt8
        | DataType::UInt16
        | DataType::UInt32 => "INT64",
        DataType::UInt64 => "BIGNUMERIC",
        DataType::Float16 | DataType::Float32 | DataType::Float64 => "FLOAT64",
        DataType::Decimal128(p, s) | DataType::Decimal256(p, s) => {
            if *s >= 0 && *s <= 9 && i16::from(*p) - i16::from(*s) <= 29 {
                "NUMERIC"
            } else {
                "BIGNUMERIC"
            }
        }
        DataType::Date32 | DataType::Date64 => "DATE",
        DataType::Time32(_) | DataType::Time64(_) => "TIME",
        DataType::Timestamp(_, None) => "DATETIME",
        DataType::Timestamp(_, Some(_)) => "TIMESTAMP",
        DataType::Binary
        | DataType::LargeBinary
        | DataType::BinaryView
        | DataType::FixedSizeBinary(_) => "BYTES",
        DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View if is_json(field) => "JSON",
        DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View => "STRING",
        other => return Err(FieldTypeError::Unsupported(other.clone())),
    })
}

/// The SQL type a field is compared as in the incremental condition.
pub fn sql_type(field: &TableField) -> String {
    match field.kind.to_ascii_uppercase().as_str() {
        "INTEGER" => "INT64".into(),
        "FLOAT" => "FLOAT64".into(),
        "BOOLEAN" => "BOOL".into(),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn f(kind: &str) -> TableField {
        TableField {
            name: "c".into(),
            kind: kind.into(),
            ..Default::default()
        }
    }

    #[test]
    fn table_fields_map_to_arrow() {
        assert_eq!(element_type(&f("INTEGER")), DataType::Int64);
        assert_eq!(element_type(&f("NUMERIC")), DataType::Decimal128(38, 9));
        assert_eq!(element_type(&f("BIGNUMERIC")), DataType::Utf8);
        assert_eq!(element_type(&f("FLOAT")), DataType::Float64);
        assert_eq!(element_type(&f("BOOLEAN")), DataType::Boolean);
        assert_eq!(
            element_type(&f("TIME")),
            DataType::Time64(TimeUnit::Microsecond)
        );
        assert_eq!(
            element_type(&f("DATETIME")),
            DataType::Timestamp(TimeUnit::Microsecond, None)
        );
        assert_eq!(
            element_type(&f("TIMESTAMP")),
            DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into()))
        );
        assert_eq!(element_type(&f("BYTES")), DataType::Binary);
        assert_eq!(element_type(&f("GEOGRAPHY")), DataType::Utf8);
        assert!(is_json(&arrow_field(&f("JSON"))));
        let tags = TableField {
            mode: Some("REPEATED".into()),
            ..f("INT64")
        };
        assert_eq!(
            arrow_field(&tags).data_type(),
            &DataType::List(Arc::new(Field::new("item", DataType::Int64, true)))
        );
        let rec = TableField {
            fields: vec![f("STRING")],
            ..f("RECORD")
        };
        assert_eq!(
            element_type(&rec),
            DataType::Struct(Fields::from(vec![Field::new("c", DataType::Utf8, true)]))
        );
    }

    #[test]
    fn arrow_fields_create_bigquery_fields() {
        let kind = |dt: DataType| table_field(&Field::new("c", dt, true)).map(|t| (t.kind, t.mode));
        assert_eq!(kind(DataType::Int32).unwrap().0, "INT64");
        assert_eq!(kind(DataType::UInt64).unwrap().0, "BIGNUMERIC");
        assert_eq!(kind(DataType::Decimal128(12, 3)).unwrap().0, "NUMERIC");
        assert_eq!(kind(DataType::Decimal128(38, 10)).unwrap().0, "BIGNUMERIC");
        assert_eq!(
            kind(DataType::Timestamp(TimeUnit::Nanosecond, None))
                .unwrap()
                .0,
            "DATETIME"
        );
        assert_eq!(
            kind(DataType::Timestamp(
                TimeUnit::Microsecond,
                Some("UTC".into())
            ))
            .unwrap()
            .0,
            "TIMESTAMP"
        );
        assert_eq!(
            kind(DataType::List(Arc::new(Field::new(
                "item",
                DataType::Utf8,
                true
            ))))
            .unwrap(),
            ("STRING".to_string(), Some("REPEATED".to_string()))
        );
        let nested = DataType::List(Arc::new(Field::new(
            "item",
            DataType::List(Arc::new(Field::new("item", DataType::Int64, true))),
            true,
        )));
        assert_eq!(kind(nested), Err(FieldTypeError::ListOfLists));
        let json = json_field(Field::new("j", DataType::Utf8, true));
        assert_eq!(table_field(&json).unwrap().kind, "JSON");
        assert!(kind(DataType::Duration(TimeUnit::Second)).is_err());
    }
}
