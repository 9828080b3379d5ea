//! The type map both ways (see the tables in `mod.rs`): SQL Server column types to Arrow
//! fields for reading, Arrow fields to column types for created tables.

use std::collections::HashMap;

use arrow::datatypes::{DataType, Field, TimeUnit};

/// Field metadata key of Arrow extension types.
pub const EXTENSION_KEY: &str = "ARROW:extension:name";
/// Extension of 16-byte UUIDs.
pub const UUID_EXTENSION: &str = "arrow.uuid";

/// How a column is selected: most as they are, some converted by the server into a type
/// tiberius reads exactly.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Select {
    Plain,
    /// money and smallmoney arrive as floating point from tiberius; as decimal they keep
    /// every digit.
    AsDecimal(u8, i8),
    /// Types tiberius cannot decode (hierarchyid, sql_variant) as their text form.
    AsText,
    /// geometry and geography as well-known text.
    AsWellKnownText,
}

/// A column to read: its name, its SQL Server type (lower case, without length), the Arrow
/// field it becomes and how it is selected.
#[derive(Clone, Debug, PartialEq)]
pub struct ReadColumn {
    pub name: String,
    pub sql_type: String,
    pub field: Field,
    pub select: Select,
}

/// Why a SQL Server column cannot be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReadTypeError {
    #[error(
        "column \"{column}\" has the type {sql_type} with precision {precision} and scale {scale}, which synqx cannot read; cast it in a source query"
    )]
    Decimal {
        column: String,
        sql_type: String,
        precision: u8,
        scale: i8,
    },
    #[error(
        "column \"{column}\" has the type {sql_type}, which synqx cannot read; cast it in a source query"
    )]
    Unknown { column: String, sql_type: String },
}

/// Why a column cannot be created for an Arrow field.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ColumnTypeError {
    #[error(
        "column \"{column}\" has the type {data_type}, which SQL Server cannot store; cast it with a transform first"
    )]
    Unsupported { column: String, data_type: DataType },
    #[error(
        "column \"{column}\" has the type Decimal128({precision}, {scale}), which SQL Server cannot store: its decimals have at most 38 digits; cast it with a transform first"
    )]
    Precision {
        column: String,
        precision: u8,
        scale: i8,
    },
    #[error(
        "column \"{column}\" has the type Decimal128({precision}, {scale}), which SQL Server cannot store: the scale must be between 0 and the precision, and below 38; cast it with a transform first"
    )]
    Scale {
        column: String,
        precision: u8,
        scale: i8,
    },
}

/// The column a SQL Server type becomes. `precision`/`scale` are those of decimal and numeric
/// columns. `Err` names the type when it cannot be read.
pub fn read_column(
    name: &str,
    sql_type: &str,
    precision: Option<u8>,
    scale: Option<i8>,
) -> Result<ReadColumn, ReadTypeError> {
    let sql_type = sql_type.trim().to_ascii_lowercase();
    // `sys.dm_exec_describe_first_result_set` spells types with their length: `nvarchar(50)`.
    let base = sql_type
        .split('(')
        .next()
        .unwrap_or_default()
        .trim()
        .to_string();
    let mut select = Select::Plain;
    let mut metadata = HashMap::new();
    let data_type = match base.as_str() {
        "bit" => DataType::Boolean,
        "tinyint" => DataType::UInt8,
        "smallint" => DataType::Int16,
        "int" => DataType::Int32,
        "bigint" => DataType::Int64,
        "real" => DataType::Float32,
        "float" => DataType::Float64,
        "decimal" | "numeric" => {
            let (p, s) = (precision.unwrap_or(18), scale.unwrap_or(0));
            if !(1..=38).contains(&p) || s < 0 || s as u8 > p {
                return Err(ReadTypeError::Decimal {
                    column: name.to_string(),
                    sql_type,
                    precision: p,
                    scale: s,
                });
            }
            DataType::Decimal128(p, s)
        }
        "money" => {
            select = Select::AsDecimal(19, 4);
            DataType::Decimal128(19, 4)
        }
        "smallmoney" => {
            select = Select::AsDecimal(10, 4);
            DataType::Decimal128(10, 4)
        }
        "char" | "varchar" | "nchar" | "nvarchar" | "text" | "ntext" | "xml" | "sysname" => {
            DataType::Utf8
        }
        "binary" | "varbinary" | "image" | "timestamp" | "rowversion" => DataType::Binary,
        "uniqueidentifier" => {
            metadata.insert(EXTENSION_KEY.to_string(), UUID_EXTENSION.to_string());
            DataType::FixedSizeBinary(16)
        }
        "date" => DataType::Date32,
        "time" => DataType::Time64(TimeUnit::Microsecond),
        "datetime" | "datetime2" | "smalldatetime" => {
            DataType::Timestamp(TimeUnit::Microsecond, None)
        }
        "datetimeoffset" => DataType::Timestamp(TimeUnit::Microsecond, Some("+00:00".into())),
        "hierarchyid" | "sql_variant" => {
            select = Select::AsText;
            DataType::Utf8
        }
        "geometry" | "geography" => {
            select = Select::AsWellKnownText;
            DataType::Utf8
        }
        _ => {
            return Err(ReadTypeError::Unknown {
                column: name.to_string(),
                sql_type,
            });
        }
    };
    Ok(ReadColumn {
        name: name.to_string(),
        sql_type: base,
        field: Field::new(name, data_type, true).with_metadata(metadata),
        select,
    })
}

/// Whether a field carries the extension `name`.
pub fn has_extension(field: &Field, name: &str) -> bool {
    field.metadata().get(EXTENSION_KEY).map(String::as_str) == Some(name)
}

/// The column type a created table gives an Arrow field; `in_key` for primary-key columns,
/// whose index keys SQL Server limits to 900 bytes. `Err` describes the unsupported type.
pub fn column_type(field: &Field, in_key: bool) -> Result<String, ColumnTypeError> {
    let text = |key: &str, max: &str| if in_key { key } else { max }.to_string();
    Ok(match field.data_type() {
        DataType::Boolean => "bit".into(),
        DataType::Int8 | DataType::Int16 => "smallint".into(),
        DataType::UInt8 => "tinyint".into(),
        DataType::Int32 | DataType::UInt16 => "int".into(),
        DataType::Int64 | DataType::UInt32 => "bigint".into(),
        DataType::UInt64 => "decimal(20,0)".into(),
        DataType::Float32 => "real".into(),
        DataType::Float64 => "float".into(),
        DataType::Decimal128(p, s) => {
            if *p > 38 {
                return Err(ColumnTypeError::Precision {
                    column: field.name().clone(),
                    precision: *p,
                    scale: *s,
                });
            }
            // tiberius cannot encode a decimal of scale 38, nor can a negative scale be
            // declared.
            if *s < 0 || *s >= 38 || *s as u8 > *p {
                return Err(ColumnTypeError::Scale {
                    column: field.name().clone(),
                    precision: *p,
                    scale: *s,
                });
            }
            format!("decimal({p},{s})")
        }
        DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View => {
            text("nvarchar(450)", "nvarchar(max)")
        }
        DataType::FixedSizeBinary(16) if has_extension(field, UUID_EXTENSION) => {
            "uniqueidentifier".into()
        }
        DataType::Binary
        | DataType::LargeBinary
        | DataType::BinaryView
        | DataType::FixedSizeBinary(_) => text("varbinary(900)", "varbinary(max)"),
        DataType::Date32 | DataType::Date64 => "date".into(),
        DataType::Time32(_) | DataType::Time64(_) => "time(6)".into(),
        DataType::Timestamp(_, None) => "datetime2(6)".into(),
        DataType::Timestamp(_, Some(_)) => "datetimeoffset(6)".into(),
        other => {
            return Err(ColumnTypeError::Unsupported {
                column: field.name().clone(),
                data_type: other.clone(),
            });
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(sql: &str) -> DataType {
        read_column("c", sql, Some(12), Some(3))
            .unwrap_or_else(|e| panic!("{sql}: {e}"))
            .field
            .data_type()
            .clone()
    }

    #[test]
    fn every_sql_server_type_reads_as_its_arrow_type() {
        let micros = || DataType::Timestamp(TimeUnit::Microsecond, None);
        let cases = [
            ("bit", DataType::Boolean),
            ("tinyint", DataType::UInt8),
            ("smallint", DataType::Int16),
            ("INT", DataType::Int32),
            ("bigint", DataType::Int64),
            ("real", DataType::Float32),
            ("float", DataType::Float64),
            ("decimal", DataType::Decimal128(12, 3)),
            ("numeric(12,3)", DataType::Decimal128(12, 3)),
            ("money", DataType::Decimal128(19, 4)),
            ("smallmoney", DataType::Decimal128(10, 4)),
            ("char", DataType::Utf8),
            ("varchar(20)", DataType::Utf8),
            ("nchar", DataType::Utf8),
            ("nvarchar(max)", DataType::Utf8),
            ("text", DataType::Utf8),
            ("ntext", DataType::Utf8),
            ("xml", DataType::Utf8),
            ("binary", DataType::Binary),
            ("varbinary(max)", DataType::Binary),
            ("image", DataType::Binary),
            ("uniqueidentifier", DataType::FixedSizeBinary(16)),
            ("date", DataType::Date32),
            ("time(7)", DataType::Time64(TimeUnit::Microsecond)),
            ("datetime", micros()),
            ("datetime2(7)", micros()),
            ("smalldatetime", micros()),
            (
                "datetimeoffset(7)",
                DataType::Timestamp(TimeUnit::Microsecond, Some("+00:00".into())),
            ),
            ("hierarchyid", DataType::Utf8),
            ("geography", DataType::Utf8),
        ];
        for (sql, want) in cases {
            assert_eq!(read(sql), want, "{sql}");
        }
        let uuid = read_column("id", "uniqueidentifier", None, None).unwrap();
        assert!(has_extension(&uuid.field, UUID_EXTENSION));
        assert_eq!(uuid.sql_type, "uniqueidentifier");
        let money = read_column("m", "money", None, None).unwrap();
        assert_eq!(money.select, Select::AsDecimal(19, 4));
        let geo = read_column("g", "geometry", None, None).unwrap();
        assert_eq!(geo.select, Select::AsWellKnownText);
        assert_eq!(
            read_column("n", "nvarchar(40)", None, None)
                .unwrap()
                .sql_type,
            "nvarchar"
        );
    }

    #[test]
    fn unknown_types_and_bad_decimals_are_named() {
        assert_eq!(
            read_column("c", "vector(3)", None, None).unwrap_err(),
            ReadTypeError::Unknown {
                column: "c".into(),
                sql_type: "vector(3)".into()
            }
        );
        assert_eq!(
            read_column("c", "decimal", Some(40), Some(2))
                .unwrap_err()
                .to_string(),
            "column \"c\" has the type decimal with precision 40 and scale 2, which synqx cannot read; cast it in a source query"
        );
        assert_eq!(
            read_column("c", "decimal", Some(38), Some(38))
                .unwrap()
                .field
                .data_type(),
            &DataType::Decimal128(38, 38)
        );
    }

    #[test]
    fn every_supported_arrow_type_has_a_column_type() {
        let uuid = Field::new("u", DataType::FixedSizeBinary(16), true).with_metadata(
            HashMap::from([(EXTENSION_KEY.to_string(), UUID_EXTENSION.to_string())]),
        );
        let json = Field::new("j", DataType::Utf8, true).with_metadata(HashMap::from([(
            EXTENSION_KEY.to_string(),
            "arrow.json".to_string(),
        )]));
        let cases = [
            (DataType::Boolean, "bit"),
            (DataType::Int8, "smallint"),
            (DataType::Int16, "smallint"),
            (DataType::UInt8, "tinyint"),
            (DataType::Int32, "int"),
            (DataType::UInt16, "int"),
            (DataType::Int64, "bigint"),
            (DataType::UInt32, "bigint"),
            (DataType::UInt64, "decimal(20,0)"),
            (DataType::Float32, "real"),
            (DataType::Float64, "float"),
            (DataType::Decimal128(38, 10), "decimal(38,10)"),
            (DataType::Utf8, "nvarchar(max)"),
            (DataType::LargeUtf8, "nvarchar(max)"),
            (DataType::Binary, "varbinary(max)"),
            (DataType::FixedSizeBinary(16), "varbinary(max)"),
            (DataType::Date32, "date"),
            (DataType::Time64(TimeUnit::Nanosecond), "time(6)"),
            (DataType::Timestamp(TimeUnit::Second, None), "datetime2(6)"),
            (
                DataType::Timestamp(TimeUnit::Microsecond, Some("Europe/Berlin".into())),
                "datetimeoffset(6)",
            ),
        ];
        for (data_type, want) in cases {
            let field = Field::new("c", data_type.clone(), true);
            assert_eq!(
                column_type(&field, false).as_deref(),
                Ok(want),
                "{data_type}"
            );
        }
        assert_eq!(column_type(&uuid, false).as_deref(), Ok("uniqueidentifier"));
        assert_eq!(column_type(&json, false).as_deref(), Ok("nvarchar(max)"));
        let key = Field::new("k", DataType::Utf8, false);
        assert_eq!(column_type(&key, true).as_deref(), Ok("nvarchar(450)"));
    }

    #[test]
    fn unsupported_arrow_types_are_errors() {
        let too_wide = Field::new("d", DataType::Decimal128(39, 2), true);
        assert!(
            column_type(&too_wide, false)
                .unwrap_err()
                .to_string()
                .contains("at most 38 digits")
        );
        let negative = Field::new("d", DataType::Decimal128(10, -2), true);
        assert!(matches!(
            column_type(&negative, false),
            Err(ColumnTypeError::Scale { scale: -2, .. })
        ));
        let scale38 = Field::new("d", DataType::Decimal128(38, 38), true);
        assert!(matches!(
            column_type(&scale38, false),
            Err(ColumnTypeError::Scale { scale: 38, .. })
        ));
        let list = Field::new(
            "l",
            DataType::List(std::sync::Arc::new(Field::new(
                "item",
                DataType::Int32,
                true,
            ))),
            true,
        );
        assert!(matches!(
            column_type(&list, false),
            Err(ColumnTypeError::Unsupported {
                data_type: DataType::List(_),
                ..
            })
        ));
        let interval = Field::new(
            "i",
            DataType::Interval(arrow::datatypes::IntervalUnit::DayTime),
            true,
        );
        assert!(column_type(&interval, false).is_err());
    }
}
