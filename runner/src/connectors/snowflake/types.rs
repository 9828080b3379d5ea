//! The type map both ways: Snowflake's result column types (`rowtype`) to Arrow, and Arrow to
//! the column types created for a load.
//!
//! | Snowflake | Arrow | created from Arrow |
//! |---|---|---|
//! | `NUMBER(p,0)`, p ≤ 19 | Int64 | Int8…Int64, UInt8…UInt32 → `NUMBER(19,0)` |
//! | `NUMBER(p,s)` otherwise | Decimal128(p,s) | Decimal128(p,s) → `NUMBER(p,s)`; UInt64 → `NUMBER(20,0)` |
//! | `FLOAT` (`REAL`, `DOUBLE`) | Float64 | Float16/32/64 → `FLOAT` |
//! | `VARCHAR`, `TEXT` | Utf8 | Utf8 → `VARCHAR` |
//! | `BOOLEAN` | Boolean | `BOOLEAN` |
//! | `DATE` | Date32 | Date32/64 → `DATE` |
//! | `TIME(s)` | Time64(µs) for s ≤ 6, else Time64(ns) | Time32/64 → `TIME(6)` or `TIME(9)` |
//! | `TIMESTAMP_NTZ(s)` | Timestamp(µs or ns) | Timestamp without zone → `TIMESTAMP_NTZ` |
//! | `TIMESTAMP_LTZ`, `TIMESTAMP_TZ` | Timestamp(µs or ns, UTC) | Timestamp with zone → `TIMESTAMP_TZ` |
//! | `VARIANT`, `OBJECT`, `ARRAY` | Utf8 (JSON text), extension `arrow.json` | Utf8 `arrow.json` → `VARIANT`; List, Struct, Map → `VARIANT` |
//! | `BINARY` | Binary | Binary, FixedSizeBinary → `BINARY` |

use std::sync::Arc;

use arrow::datatypes::{DataType, Field, TimeUnit};
use serde::Deserialize;

pub use crate::connectors::http_api::is_json;
use crate::connectors::http_api::json_field;

/// One column of a result as the API describes it (`data.rowtype[]`).
#[derive(Clone, Debug, Deserialize, PartialEq)]
pub struct ColumnType {
    pub name: String,
    #[serde(rename = "type")]
    pub kind: String,
    #[serde(default)]
    pub precision: Option<i64>,
    #[serde(default)]
    pub scale: Option<i64>,
    #[serde(default = "yes")]
    pub nullable: bool,
}

fn yes() -> bool {
    true
}

impl ColumnType {
    pub fn scale(&self) -> i64 {
        self.scale.unwrap_or(0)
    }
}

/// The Arrow type a result column is read as; `None` for types this connector does not read
/// (`GEOGRAPHY`, `GEOMETRY`, `VECTOR`), which are read as text instead.
pub fn arrow_type(column: &ColumnType) -> DataType {
    let scale = column.scale();
    match column.kind.to_ascii_lowercase().as_str() {
        "fixed" => {
            let precision = column.precision.unwrap_or(38).clamp(1, 38);
            if scale == 0 && precision <= 19 {
                DataType::Int64
            } else {
                DataType::Decimal128(precision as u8, scale.clamp(0, 37) as i8)
            }
        }
        "real" => DataType::Float64,
        "boolean" => DataType::Boolean,
        "date" => DataType::Date32,
        "time" => DataType::Time64(time_unit(column.scale.unwrap_or(9))),
        "timestamp_ntz" => DataType::Timestamp(time_unit(column.scale.unwrap_or(9)), None),
        "timestamp_ltz" | "timestamp_tz" => {
            DataType::Timestamp(time_unit(column.scale.unwrap_or(9)), Some(Arc::from("UTC")))
        }
        "binary" => DataType::Binary,
        _ => DataType::Utf8,
    }
}

/// The Arrow field of a result column, JSON types marked as such.
pub fn arrow_field(column: &ColumnType) -> Field {
    let field = Field::new(&column.name, arrow_type(column), column.nullable);
    match column.kind.to_ascii_lowercase().as_str() {
        "variant" | "object" | "array" => json_field(field),
        _ => field,
    }
}

fn time_unit(scale: i64) -> TimeUnit {
    if scale <= 6 {
        TimeUnit::Microsecond
    } else {
        TimeUnit::Nanosecond
    }
}

/// The column type created for an Arrow field.
pub fn column_type(field: &Field) -> String {
    match field.data_type() {
        DataType::Boolean => "BOOLEAN".into(),
        DataType::Int8
        | DataType::Int16
        | DataType::Int32
        | DataType::Int64
        | DataType::UInt8
        | DataType::UInt16
        | DataType::UInt32 => "NUMBER(19,0)".into(),
        DataType::UInt64 => "NUMBER(20,0)".into(),
        DataType::Float16 | DataType::Float32 | DataType::Float64 => "FLOAT".into(),
        DataType::Decimal128(p, s) | DataType::Decimal256(p, s) if *p <= 38 => {
            format!("NUMBER({p},{})", (*s).max(0))
        }
        DataType::Date32 | DataType::Date64 => "DATE".into(),
        DataType::Time32(_) | DataType::Time64(TimeUnit::Microsecond) => "TIME(6)".into(),
        DataType::Time64(_) => "TIME(9)".into(),
        DataType::Timestamp(unit, zone) => {
            let scale = if *unit == TimeUnit::Nanosecond { 9 } else { 6 };
            match zone {
                Some(_) => format!("TIMESTAMP_TZ({scale})"),
                None => format!("TIMESTAMP_NTZ({scale})"),
            }
        }
        DataType::Binary
        | DataType::LargeBinary
        | DataType::BinaryView
        | DataType::FixedSizeBinary(_) => "BINARY".into(),
        DataType::List(_)
        | DataType::LargeList(_)
        | DataType::FixedSizeList(..)
        | DataType::Struct(_)
        | DataType::Map(..) => "VARIANT".into(),
        _ if is_json(field) => "VARIANT".into(),
        _ => "VARCHAR".into(),
    }
}

/// Whether values of this column are loaded through `PARSE_JSON` (semi-structured targets).
pub fn loads_as_json(field: &Field) -> bool {
    column_type(field) == "VARIANT"
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;

    /// A result column `C` of Snowflake's `kind`, as the result's row type describes it.
    pub(in crate::connectors::snowflake) fn col(
        kind: &str,
        precision: Option<i64>,
        scale: Option<i64>,
    ) -> ColumnType {
        ColumnType {
            name: "C".into(),
            kind: kind.into(),
            precision,
            scale,
            nullable: true,
        }
    }

    #[test]
    fn result_columns_map_to_arrow() {
        let cases = [
            (col("fixed", Some(19), Some(0)), DataType::Int64),
            (col("fixed", Some(38), Some(0)), DataType::Decimal128(38, 0)),
            (col("fixed", Some(10), Some(2)), DataType::Decimal128(10, 2)),
            (col("real", None, None), DataType::Float64),
            (col("text", None, None), DataType::Utf8),
            (col("boolean", None, None), DataType::Boolean),
            (col("date", None, None), DataType::Date32),
            (
                col("time", Some(0), Some(9)),
                DataType::Time64(TimeUnit::Nanosecond),
            ),
            (
                col("time", Some(0), Some(6)),
                DataType::Time64(TimeUnit::Microsecond),
            ),
            (
                col("timestamp_ntz", Some(0), Some(6)),
                DataType::Timestamp(TimeUnit::Microsecond, None),
            ),
            (
                col("timestamp_tz", Some(0), Some(9)),
                DataType::Timestamp(TimeUnit::Nanosecond, Some("UTC".into())),
            ),
            (
                col("timestamp_ltz", Some(0), Some(3)),
                DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
            ),
            (col("variant", None, None), DataType::Utf8),
            (col("binary", None, None), DataType::Binary),
            (col("geography", None, None), DataType::Utf8),
        ];
        for (column, expected) in cases {
            assert_eq!(arrow_type(&column), expected, "{column:?}");
        }
        assert!(is_json(&arrow_field(&col("object", None, None))));
        assert!(!is_json(&arrow_field(&col("text", None, None))));
    }

    #[test]
    fn arrow_fields_create_snowflake_columns() {
        let json = json_field(Field::new("j", DataType::Utf8, true));
        let cases = [
            (Field::new("a", DataType::Int32, true), "NUMBER(19,0)"),
            (Field::new("a", DataType::UInt64, true), "NUMBER(20,0)"),
            (
                Field::new("a", DataType::Decimal128(12, 3), true),
                "NUMBER(12,3)",
            ),
            (
                Field::new("a", DataType::Decimal256(50, 3), true),
                "VARCHAR",
            ),
            (Field::new("a", DataType::Float32, true), "FLOAT"),
            (Field::new("a", DataType::Utf8, true), "VARCHAR"),
            (json, "VARIANT"),
            (Field::new("a", DataType::Boolean, true), "BOOLEAN"),
            (Field::new("a", DataType::Date32, true), "DATE"),
            (
                Field::new("a", DataType::Time64(TimeUnit::Microsecond), true),
                "TIME(6)",
            ),
            (
                Field::new("a", DataType::Time64(TimeUnit::Nanosecond), true),
                "TIME(9)",
            ),
            (
                Field::new("a", DataType::Timestamp(TimeUnit::Microsecond, None), true),
                "TIMESTAMP_NTZ(6)",
            ),
            (
                Field::new(
                    "a",
                    DataType::Timestamp(TimeUnit::Nanosecond, Some("UTC".into())),
                    true,
                ),
                "TIMESTAMP_TZ(9)",
            ),
            (Field::new("a", DataType::Binary, true), "BINARY"),
            (
                Field::new_list("a", Field::new("item", DataType::Int64, true), true),
                "VARIANT",
            ),
        ];
        for (field, expected) in cases {
            assert_eq!(column_type(&field), expected, "{field:?}");
        }
    }
}
