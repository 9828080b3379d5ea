//! The type map, both ways (the table is in `mod.rs`). Pure functions of type names.

use std::collections::HashMap;

use arrow::datatypes::{DataType, Field, TimeUnit};

/// Field metadata key of Arrow extension types.
pub(super) const EXTENSION: &str = "ARROW:extension:name";
pub(super) const JSON: &str = "arrow.json";
pub(super) const UUID: &str = "arrow.uuid";

/// How the text of a value of one column becomes an Arrow value.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Kind {
    /// `tinyint(1)`: `0` is false, any other number true.
    BoolNumber,
    /// `bit(1)`: one raw byte.
    BoolBit,
    Int8,
    Int16,
    Int32,
    Int64,
    UInt8,
    UInt16,
    UInt32,
    UInt64,
    Float32,
    Float64,
    Decimal(u8, i8),
    Date,
    Time,
    /// `datetime` and `timestamp`: the session's time zone is UTC.
    Timestamp,
    Utf8,
    Binary,
    /// MariaDB's `uuid`: canonical text to 16 bytes.
    Uuid,
}

/// A column as read: its Arrow field and how its values are decoded.
#[derive(Clone, Debug)]
pub(super) struct ReadType {
    pub data_type: DataType,
    pub kind: Kind,
    /// `arrow.json` or `arrow.uuid`.
    pub extension: Option<&'static str>,
}

impl ReadType {
    fn new(data_type: DataType, kind: Kind) -> Self {
        Self {
            data_type,
            kind,
            extension: None,
        }
    }

    pub fn field(&self, name: &str) -> Field {
        let field = Field::new(name, self.data_type.clone(), true);
        match self.extension {
            Some(ext) => field.with_metadata(HashMap::from([(EXTENSION.into(), ext.into())])),
            None => field,
        }
    }
}

/// The Arrow type of a column from its `COLUMN_TYPE` (`bigint(20) unsigned`, `decimal(10,2)`,
/// `datetime(6)`, `enum('a','b')`); `json` when the column is JSON (MySQL's `json` type or
/// MariaDB's longtext with a `json_valid` check). `None` for types SynqX cannot read (spatial
/// types): the caller names the column.
pub(super) fn read_type(column_type: &str, json: bool) -> Option<ReadType> {
    let text = column_type.trim().to_ascii_lowercase();
    let unsigned = text.contains(" unsigned");
    let base_end = text.find(['(', ' ']).unwrap_or(text.len());
    let base = &text[..base_end];
    let args: Vec<u32> = text[base_end..]
        .strip_prefix('(')
        .and_then(|rest| rest.split_once(')'))
        .map(|(inside, _)| {
            inside
                .split(',')
                .filter_map(|a| a.trim().parse().ok())
                .collect()
        })
        .unwrap_or_default();
    let int = |signed: (DataType, Kind), unsigned_type: (DataType, Kind)| {
        let (data_type, kind) = if unsigned { unsigned_type } else { signed };
        Some(ReadType::new(data_type, kind))
    };
    let mut read = match base {
        "tinyint" if args.first() == Some(&1) && !unsigned => {
            Some(ReadType::new(DataType::Boolean, Kind::BoolNumber))
        }
        "bool" | "boolean" => Some(ReadType::new(DataType::Boolean, Kind::BoolNumber)),
        "tinyint" => int((DataType::Int8, Kind::Int8), (DataType::UInt8, Kind::UInt8)),
        "smallint" => int(
            (DataType::Int16, Kind::Int16),
            (DataType::UInt16, Kind::UInt16),
        ),
        "mediumint" | "int" | "integer" => int(
            (DataType::Int32, Kind::Int32),
            (DataType::UInt32, Kind::UInt32),
        ),
        "bigint" => int(
            (DataType::Int64, Kind::Int64),
            (DataType::UInt64, Kind::UInt64),
        ),
        "float" => Some(ReadType::new(DataType::Float32, Kind::Float32)),
        "double" | "real" => Some(ReadType::new(DataType::Float64, Kind::Float64)),
        "decimal" | "numeric" | "dec" | "fixed" => {
            let precision = args.first().copied().unwrap_or(10);
            let scale = args.get(1).copied().unwrap_or(0);
            match (u8::try_from(precision), i8::try_from(scale)) {
                (Ok(p), Ok(s)) if p <= 38 => Some(ReadType::new(
                    DataType::Decimal128(p, s),
                    Kind::Decimal(p, s),
                )),
                // Wider than Decimal128: exact as text.
                _ => Some(ReadType::new(DataType::Utf8, Kind::Utf8)),
            }
        }
        "bit" if args.first().copied().unwrap_or(1) == 1 => {
            Some(ReadType::new(DataType::Boolean, Kind::BoolBit))
        }
        "bit" => Some(ReadType::new(DataType::Binary, Kind::Binary)),
        "year" => Some(ReadType::new(DataType::Int16, Kind::Int16)),
        "char" | "varchar" | "tinytext" | "text" | "mediumtext" | "longtext" | "enum" | "set"
        | "json" | "inet4" | "inet6" => Some(ReadType::new(DataType::Utf8, Kind::Utf8)),
        "binary" | "varbinary" | "tinyblob" | "blob" | "mediumblob" | "longblob" => {
            Some(ReadType::new(DataType::Binary, Kind::Binary))
        }
        "uuid" => Some(ReadType {
            data_type: DataType::FixedSizeBinary(16),
            kind: Kind::Uuid,
            extension: Some(UUID),
        }),
        "date" => Some(ReadType::new(DataType::Date32, Kind::Date)),
        "time" => Some(ReadType::new(
            DataType::Time64(TimeUnit::Microsecond),
            Kind::Time,
        )),
        "datetime" => Some(ReadType::new(
            DataType::Timestamp(TimeUnit::Microsecond, None),
            Kind::Timestamp,
        )),
        "timestamp" => Some(ReadType::new(
            DataType::Timestamp(TimeUnit::Microsecond, Some("+00:00".into())),
            Kind::Timestamp,
        )),
        _ => None,
    };
    if let Some(r) = read.as_mut()
        && (json || base == "json")
        && r.kind == Kind::Utf8
    {
        r.extension = Some(JSON);
    }
    read
}

/// Why an Arrow field has no MySQL column type; the caller names the column.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(super) enum ColumnTypeError {
    #[error(
        "decimal({precision},{scale}) does not fit MySQL's decimal (precision up to 65, scale 0 to 30)"
    )]
    Decimal { precision: u8, scale: i8 },
    #[error(
        "the type {0} has no MySQL column type; cast it to a string or number in a transform first"
    )]
    Unsupported(DataType),
}

/// The column type a table created for an Arrow field gets. `key`: the column is part of the
/// primary key, which MySQL cannot index as longtext or longblob without a prefix length.
/// `uuid_type`: the server has MariaDB's `uuid`. Errors say why the type cannot be stored.
pub(super) fn declared_type(
    field: &Field,
    key: bool,
    uuid_type: bool,
) -> Result<String, ColumnTypeError> {
    let extension = field.metadata().get(EXTENSION).map(String::as_str);
    Ok(match field.data_type() {
        DataType::Null => "longtext".into(),
        DataType::Boolean => "tinyint(1)".into(),
        DataType::Int8 => "tinyint".into(),
        DataType::Int16 => "smallint".into(),
        DataType::Int32 => "int".into(),
        DataType::Int64 => "bigint".into(),
        DataType::UInt8 => "tinyint unsigned".into(),
        DataType::UInt16 => "smallint unsigned".into(),
        DataType::UInt32 => "int unsigned".into(),
        DataType::UInt64 => "bigint unsigned".into(),
        DataType::Float16 | DataType::Float32 => "float".into(),
        DataType::Float64 => "double".into(),
        DataType::Decimal32(p, s)
        | DataType::Decimal64(p, s)
        | DataType::Decimal128(p, s)
        | DataType::Decimal256(p, s) => {
            if *p > 65 || *s < 0 || *s > 30 {
                return Err(ColumnTypeError::Decimal {
                    precision: *p,
                    scale: *s,
                });
            }
            format!("decimal({p},{s})")
        }
        DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View => match extension {
            Some(JSON) if !key => "json".into(),
            _ if key => "varchar(255)".into(),
            _ => "longtext".into(),
        },
        DataType::Binary | DataType::LargeBinary | DataType::BinaryView => {
            if key {
                "varbinary(255)".into()
            } else {
                "longblob".into()
            }
        }
        DataType::FixedSizeBinary(16) if extension == Some(UUID) && uuid_type => "uuid".into(),
        DataType::FixedSizeBinary(n) if (1..=255).contains(n) => format!("binary({n})"),
        DataType::Date32 | DataType::Date64 => "date".into(),
        DataType::Time32(_) | DataType::Time64(_) => "time(6)".into(),
        // MySQL's timestamp ends in 2038: instants are stored as UTC in datetime(6).
        DataType::Timestamp(_, _) => "datetime(6)".into(),
        DataType::Dictionary(_, value) => {
            return declared_type(
                &Field::new(field.name(), value.as_ref().clone(), true)
                    .with_metadata(field.metadata().clone()),
                key,
                uuid_type,
            );
        }
        other => return Err(ColumnTypeError::Unsupported(other.clone())),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(text: &str) -> (DataType, Option<&'static str>) {
        let r = read_type(text, false).unwrap_or_else(|| panic!("{text} unmapped"));
        (r.data_type, r.extension)
    }

    #[test]
    fn mysql_types_map_to_arrow() {
        let cases = [
            ("tinyint(1)", DataType::Boolean),
            ("tinyint(4)", DataType::Int8),
            ("tinyint(3) unsigned", DataType::UInt8),
            ("smallint(6)", DataType::Int16),
            ("smallint unsigned", DataType::UInt16),
            ("mediumint(9)", DataType::Int32),
            ("int(11)", DataType::Int32),
            ("int(10) unsigned", DataType::UInt32),
            ("bigint(20)", DataType::Int64),
            ("bigint(20) unsigned", DataType::UInt64),
            ("float", DataType::Float32),
            ("double", DataType::Float64),
            ("decimal(10,2)", DataType::Decimal128(10, 2)),
            ("decimal(38,10) unsigned", DataType::Decimal128(38, 10)),
            ("decimal(65,30)", DataType::Utf8),
            ("bit(1)", DataType::Boolean),
            ("bit(12)", DataType::Binary),
            ("year(4)", DataType::Int16),
            ("varchar(255)", DataType::Utf8),
            ("enum('a','b')", DataType::Utf8),
            ("set('x','y')", DataType::Utf8),
            ("mediumtext", DataType::Utf8),
            ("varbinary(16)", DataType::Binary),
            ("longblob", DataType::Binary),
            ("date", DataType::Date32),
            ("time(6)", DataType::Time64(TimeUnit::Microsecond)),
            (
                "datetime(3)",
                DataType::Timestamp(TimeUnit::Microsecond, None),
            ),
            (
                "timestamp",
                DataType::Timestamp(TimeUnit::Microsecond, Some("+00:00".into())),
            ),
        ];
        for (text, expected) in cases {
            assert_eq!(read(text), (expected, None), "{text}");
        }
        assert_eq!(read("json"), (DataType::Utf8, Some(JSON)));
        assert_eq!(
            read_type("longtext", true).map(|r| r.extension),
            Some(Some(JSON))
        );
        assert_eq!(read("uuid"), (DataType::FixedSizeBinary(16), Some(UUID)));
        assert!(read_type("geometry", false).is_none());
    }

    #[test]
    fn arrow_types_map_to_mysql_with_keys_indexable() {
        let declared = |t: DataType, key: bool| {
            declared_type(&Field::new("c", t, true), key, true).unwrap_or_else(|e| panic!("{e}"))
        };
        assert_eq!(declared(DataType::Boolean, false), "tinyint(1)");
        assert_eq!(declared(DataType::UInt64, false), "bigint unsigned");
        assert_eq!(
            declared(DataType::Decimal128(38, 10), false),
            "decimal(38,10)"
        );
        assert_eq!(declared(DataType::Utf8, false), "longtext");
        assert_eq!(declared(DataType::Utf8, true), "varchar(255)");
        assert_eq!(declared(DataType::LargeBinary, true), "varbinary(255)");
        assert_eq!(declared(DataType::Binary, false), "longblob");
        assert_eq!(
            declared(
                DataType::Timestamp(TimeUnit::Nanosecond, Some("UTC".into())),
                false
            ),
            "datetime(6)"
        );
        assert_eq!(
            declared(DataType::Time32(TimeUnit::Second), false),
            "time(6)"
        );
        let json = Field::new("j", DataType::Utf8, true)
            .with_metadata(HashMap::from([(EXTENSION.into(), JSON.into())]));
        assert_eq!(declared_type(&json, false, true).as_deref(), Ok("json"));
        let uuid = Field::new("u", DataType::FixedSizeBinary(16), true)
            .with_metadata(HashMap::from([(EXTENSION.into(), UUID.into())]));
        assert_eq!(declared_type(&uuid, false, true).as_deref(), Ok("uuid"));
        assert_eq!(
            declared_type(&uuid, false, false).as_deref(),
            Ok("binary(16)")
        );
        assert!(
            declared_type(
                &Field::new("d", DataType::Decimal256(70, 2), true),
                false,
                true
            )
            .is_err_and(|e| e
                == ColumnTypeError::Decimal {
                    precision: 70,
                    scale: 2
                }
                && e.to_string().contains("precision up to 65"))
        );
        let list = DataType::List(std::sync::Arc::new(Field::new(
            "item",
            DataType::Int32,
            true,
        )));
        assert!(declared_type(&Field::new("l", list, true), false, true).is_err());
        assert!(
            declared_type(
                &Field::new("i", DataType::Duration(TimeUnit::Second), true),
                false,
                true
            )
            .is_err()
        );
    }
}
