//! PostgreSQL column types and the Arrow types binary COPY moves them as.
//!
//! | PostgreSQL                              | Arrow                                              |
//! |-----------------------------------------|----------------------------------------------------|
//! | `smallint`                              | `Int16`                                            |
//! | `integer`                               | `Int32`                                            |
//! | `bigint`                                | `Int64`                                            |
//! | `real`                                  | `Float32` (NaN and ±Infinity kept)                 |
//! | `double precision`                      | `Float64` (NaN and ±Infinity kept)                 |
//! | `numeric(p,s)`, `p <= 38`, `0 <= s <= p`| `Decimal128(p,s)` (NaN and ±Infinity: bad row)    |
//! | `numeric`, `numeric(p,s)` otherwise     | `Utf8`, the exact decimal text (`NaN` kept)        |
//! | `text`, `character varying(n)`, `name` | `Utf8`                                             |
//! | `character(n)`                          | `Utf8`, with its padding                           |
//! | `boolean`                               | `Boolean`                                          |
//! | `date`                                  | `Date32` (±infinity: bad row)                      |
//! | `time without time zone`                | `Time64(Microsecond)`                              |
//! | `timestamp without time zone`           | `Timestamp(Microsecond, None)` (±infinity: bad row)|
//! | `timestamp with time zone`              | `Timestamp(Microsecond, "+00:00")`                 |
//! | `interval`                              | `Interval(MonthDayNano)`                           |
//! | `uuid`                                  | `FixedSizeBinary(16)`, extension `arrow.uuid`      |
//! | `json`, `jsonb`                         | `Utf8`, extension `arrow.json`                     |
//! | `bytea`                                 | `Binary`                                           |
//! | one-dimensional array of any of these   | `List` of the element type, items nullable         |
//! | any other type                          | none: the source reads `column::text` as `Utf8`    |
//!
//! Multi-dimensional arrays are bad rows (Arrow lists have no shape); an empty array is an
//! empty list. PostgreSQL counts dates and timestamps from 2000-01-01, Arrow from 1970-01-01;
//! timestamps after 294247 AD (PostgreSQL's go to 294276 AD) do not fit Arrow's 64-bit
//! microseconds from 1970 and are bad rows too. Written intervals keep microseconds, as
//! PostgreSQL does: nanoseconds below that are dropped.
//!
//! Writing, the column type a table created from an Arrow schema gets ([`ddl_type`]):
//!
//! | Arrow                                         | PostgreSQL                     |
//! |-----------------------------------------------|--------------------------------|
//! | `Boolean`                                     | `boolean`                      |
//! | `Int8`, `Int16`, `UInt8`                      | `smallint`                     |
//! | `Int32`, `UInt16`                             | `integer`                      |
//! | `Int64`, `UInt32`                             | `bigint`                       |
//! | `UInt64`                                      | `numeric(20,0)`                |
//! | `Float16`, `Float32`                          | `real`                         |
//! | `Float64`                                     | `double precision`             |
//! | `Decimal128(p,s)`, `Decimal256(p,s)`          | `numeric(p,s)`                 |
//! | `Utf8`, `LargeUtf8`, `Utf8View`               | `text` (`jsonb` with `arrow.json`) |
//! | `Binary`, `LargeBinary`, `BinaryView`         | `bytea`                        |
//! | `FixedSizeBinary(16)` with `arrow.uuid`       | `uuid` (other widths: `bytea`) |
//! | `Date32`, `Date64`                            | `date`                         |
//! | `Time32`, `Time64`                            | `time`                         |
//! | `Timestamp(_, None)`                          | `timestamp`                    |
//! | `Timestamp(_, Some(tz))`                      | `timestamp with time zone`     |
//! | `Interval`, `Duration`                        | `interval`                     |
//! | `List(T)`, `LargeList(T)`                     | the type of `T` followed by `[]` (nested lists: error) |
//! | `Null`                                        | `text`                         |
//! | `Struct`, `Map`, `Union` and others           | error                          |

use std::collections::HashMap;
use std::sync::Arc;

use arrow::datatypes::{DataType, Field, IntervalUnit, TimeUnit};

/// The field metadata key naming an Arrow extension type.
pub const EXTENSION_NAME: &str = "ARROW:extension:name";
/// The canonical extension of a 16-byte UUID.
pub const UUID_EXTENSION: &str = "arrow.uuid";
/// The canonical extension of JSON text.
pub const JSON_EXTENSION: &str = "arrow.json";

/// The time zone of `timestamp with time zone` values: PostgreSQL sends them in UTC.
pub const UTC: &str = "+00:00";

/// pg_type oids of the built-in types this codec knows.
pub mod oid {
    pub const BOOL: u32 = 16;
    pub const BYTEA: u32 = 17;
    pub const NAME: u32 = 19;
    pub const INT8: u32 = 20;
    pub const INT2: u32 = 21;
    pub const INT4: u32 = 23;
    pub const TEXT: u32 = 25;
    pub const JSON: u32 = 114;
    pub const FLOAT4: u32 = 700;
    pub const FLOAT8: u32 = 701;
    pub const BPCHAR: u32 = 1042;
    pub const VARCHAR: u32 = 1043;
    pub const DATE: u32 = 1082;
    pub const TIME: u32 = 1083;
    pub const TIMESTAMP: u32 = 1114;
    pub const TIMESTAMPTZ: u32 = 1184;
    pub const INTERVAL: u32 = 1186;
    pub const NUMERIC: u32 = 1700;
    pub const UUID: u32 = 2950;
    pub const JSONB: u32 = 3802;
}

/// Each mapped scalar type: oid, array type oid, and the name format_type prints.
const SCALARS: &[(u32, u32, &str)] = &[
    (oid::BOOL, 1000, "boolean"),
    (oid::BYTEA, 1001, "bytea"),
    (oid::NAME, 1003, "name"),
    (oid::INT8, 1016, "bigint"),
    (oid::INT2, 1005, "smallint"),
    (oid::INT4, 1007, "integer"),
    (oid::TEXT, 1009, "text"),
    (oid::JSON, 199, "json"),
    (oid::FLOAT4, 1021, "real"),
    (oid::FLOAT8, 1022, "double precision"),
    (oid::BPCHAR, 1014, "character"),
    (oid::VARCHAR, 1015, "character varying"),
    (oid::DATE, 1182, "date"),
    (oid::TIME, 1183, "time without time zone"),
    (oid::TIMESTAMP, 1115, "timestamp without time zone"),
    (oid::TIMESTAMPTZ, 1185, "timestamp with time zone"),
    (oid::INTERVAL, 1187, "interval"),
    (oid::NUMERIC, 1231, "numeric"),
    (oid::UUID, 2951, "uuid"),
    (oid::JSONB, 3807, "jsonb"),
];

/// Other spellings PostgreSQL accepts for the same types.
const ALIASES: &[(&str, &str)] = &[
    ("bool", "boolean"),
    ("int2", "smallint"),
    ("int", "integer"),
    ("int4", "integer"),
    ("int8", "bigint"),
    ("float4", "real"),
    ("float8", "double precision"),
    ("float", "double precision"),
    ("decimal", "numeric"),
    ("varchar", "character varying"),
    ("char", "character"),
    ("bpchar", "character"),
    ("time", "time without time zone"),
    ("timestamp", "timestamp without time zone"),
    ("timestamptz", "timestamp with time zone"),
];

/// A column type as PostgreSQL's catalog describes it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PgType {
    /// pg_type oid (atttypid).
    pub oid: u32,
    /// atttypmod, -1 when none.
    pub typmod: i32,
    /// Element type oid of an array type (pg_type.typelem), None otherwise.
    pub element: Option<u32>,
    /// format_type(oid, typmod): "numeric(12,2)", "integer[]", "character varying(20)".
    pub name: String,
}

impl PgType {
    /// The built-in type of a name as format_type prints it ("bigint", "numeric(12,2)",
    /// "text[]", "timestamp with time zone", "uuid", "jsonb", ...); None when unknown. Common
    /// aliases (`int4`, `varchar(20)`, `timestamptz`) are accepted too; `name` is always the
    /// format_type spelling.
    pub fn builtin(name: &str) -> Option<PgType> {
        let lower = name.trim().to_ascii_lowercase();
        if let Some(elem) = lower.strip_suffix("[]") {
            let scalar = PgType::builtin(elem)?;
            let array = SCALARS.iter().find(|s| s.0 == scalar.oid)?.1;
            return Some(PgType {
                oid: array,
                typmod: scalar.typmod,
                element: Some(scalar.oid),
                name: format!("{}[]", scalar.name),
            });
        }
        let (base, args) = split_modifier(&lower)?;
        let base = ALIASES
            .iter()
            .find(|a| a.0 == base)
            .map_or(base.as_str(), |a| a.1);
        let &(oid, _, canonical) = SCALARS.iter().find(|s| s.2 == base)?;
        let (typmod, name) = match (oid, args.as_slice()) {
            (_, []) => (-1, canonical.to_string()),
            (oid::NUMERIC, [p]) => (numeric_typmod(*p, 0)?, format!("numeric({p},0)")),
            (oid::NUMERIC, [p, s]) => (numeric_typmod(*p, *s)?, format!("numeric({p},{s})")),
            (oid::VARCHAR | oid::BPCHAR, [n]) if *n > 0 => {
                (n.checked_add(4)?, format!("{canonical}({n})"))
            }
            (oid::TIME | oid::TIMESTAMP | oid::TIMESTAMPTZ, [p]) if (0..=6).contains(p) => {
                let (head, tail) = canonical.split_once(' ')?;
                (*p, format!("{head}({p}) {tail}"))
            }
            _ => return None,
        };
        Some(PgType {
            oid,
            typmod,
            element: None,
            name,
        })
    }

    /// The element type of an array type.
    pub fn element_type(&self) -> Option<PgType> {
        let element = self.element?;
        Some(PgType {
            oid: element,
            typmod: self.typmod,
            element: None,
            name: self
                .name
                .strip_suffix("[]")
                .unwrap_or(&self.name)
                .to_string(),
        })
    }

    /// Precision and scale of `numeric(p,s)`; None for unconstrained numeric.
    pub fn numeric_precision_scale(&self) -> Option<(u8, i8)> {
        if self.oid != oid::NUMERIC || self.typmod < 4 {
            return None;
        }
        let t = self.typmod - 4;
        let precision = (t >> 16) & 0xffff;
        // PostgreSQL 15 stores the scale as an 11-bit signed number (scales may be negative).
        let scale = ((t & 0x7ff) ^ 0x400) - 0x400;
        Some((u8::try_from(precision).ok()?, i8::try_from(scale).ok()?))
    }
}

/// "numeric(12,2)" -> ("numeric", [12, 2]); "timestamp(3) with time zone" ->
/// ("timestamp with time zone", [3]).
fn split_modifier(name: &str) -> Option<(String, Vec<i32>)> {
    let Some(open) = name.find('(') else {
        return Some((
            name.split_whitespace().collect::<Vec<_>>().join(" "),
            vec![],
        ));
    };
    let close = open + name[open..].find(')')?;
    let args = name[open + 1..close]
        .split(',')
        .map(|a| a.trim().parse::<i32>().ok())
        .collect::<Option<Vec<_>>>()?;
    let base = format!("{} {}", &name[..open], &name[close + 1..]);
    Some((base.split_whitespace().collect::<Vec<_>>().join(" "), args))
}

fn numeric_typmod(precision: i32, scale: i32) -> Option<i32> {
    if !(1..=1000).contains(&precision) || !(-1000..=1000).contains(&scale) {
        return None;
    }
    Some(((precision << 16) | (scale & 0x7ff)) + 4)
}

/// The Arrow type the source reads a column of this type as; None when there is no binary
/// mapping (the source then selects `col::text` and reads it as text).
pub fn arrow_type(t: &PgType) -> Option<DataType> {
    arrow_field("item", t, true).map(|f| f.data_type().clone())
}

/// The Arrow field of a column, with extension metadata where Arrow has one: uuid ->
/// FixedSizeBinary(16) with `ARROW:extension:name` = `arrow.uuid`; json/jsonb -> Utf8 with
/// `arrow.json`.
pub fn arrow_field(name: &str, t: &PgType, nullable: bool) -> Option<Field> {
    if t.element.is_some() {
        let item = arrow_field("item", &t.element_type()?, true)?;
        return Some(Field::new(name, DataType::List(Arc::new(item)), nullable));
    }
    let (data_type, extension) = match t.oid {
        oid::BOOL => (DataType::Boolean, None),
        oid::INT2 => (DataType::Int16, None),
        oid::INT4 => (DataType::Int32, None),
        oid::INT8 => (DataType::Int64, None),
        oid::FLOAT4 => (DataType::Float32, None),
        oid::FLOAT8 => (DataType::Float64, None),
        oid::NUMERIC => match t.numeric_precision_scale() {
            Some((p, s)) if p <= 38 && s >= 0 && s as u8 <= p => (DataType::Decimal128(p, s), None),
            _ => (DataType::Utf8, None),
        },
        oid::TEXT | oid::VARCHAR | oid::BPCHAR | oid::NAME => (DataType::Utf8, None),
        oid::JSON | oid::JSONB => (DataType::Utf8, Some(JSON_EXTENSION)),
        oid::BYTEA => (DataType::Binary, None),
        oid::UUID => (DataType::FixedSizeBinary(16), Some(UUID_EXTENSION)),
        oid::DATE => (DataType::Date32, None),
        oid::TIME => (DataType::Time64(TimeUnit::Microsecond), None),
        oid::TIMESTAMP => (DataType::Timestamp(TimeUnit::Microsecond, None), None),
        oid::TIMESTAMPTZ => (
            DataType::Timestamp(TimeUnit::Microsecond, Some(UTC.into())),
            None,
        ),
        oid::INTERVAL => (DataType::Interval(IntervalUnit::MonthDayNano), None),
        _ => return None,
    };
    let field = Field::new(name, data_type, nullable);
    Some(match extension {
        Some(ext) => field.with_metadata(HashMap::from([(
            EXTENSION_NAME.to_string(),
            ext.to_string(),
        )])),
        None => field,
    })
}

fn extension(field: &Field) -> Option<&str> {
    field.metadata().get(EXTENSION_NAME).map(String::as_str)
}

/// Why an Arrow field has no PostgreSQL column type; the caller names the column.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DdlTypeError {
    #[error(
        "nested list {0} cannot be stored: PostgreSQL arrays of arrays must be rectangular; flatten it or serialize it to JSON text first"
    )]
    NestedList(DataType),
    #[error(
        "Arrow type {0} has no PostgreSQL column type; select its fields or serialize it to JSON text first"
    )]
    Unsupported(DataType),
}

/// The column type CREATE TABLE / ALTER TABLE ADD COLUMN uses for an Arrow field (reads the
/// extension metadata). Err says why the type cannot be stored (e.g. a struct or map).
pub fn ddl_type(field: &Field) -> Result<String, DdlTypeError> {
    use DataType as D;
    Ok(match field.data_type() {
        D::Boolean => "boolean".into(),
        D::Int8 | D::Int16 | D::UInt8 => "smallint".into(),
        D::Int32 | D::UInt16 => "integer".into(),
        D::Int64 | D::UInt32 => "bigint".into(),
        D::UInt64 => "numeric(20,0)".into(),
        D::Float16 | D::Float32 => "real".into(),
        D::Float64 => "double precision".into(),
        D::Decimal32(p, s) | D::Decimal64(p, s) | D::Decimal128(p, s) | D::Decimal256(p, s) => {
            format!("numeric({p},{s})")
        }
        D::Utf8 | D::LargeUtf8 | D::Utf8View => match extension(field) {
            Some(JSON_EXTENSION) => "jsonb".into(),
            _ => "text".into(),
        },
        D::Binary | D::LargeBinary | D::BinaryView => "bytea".into(),
        D::FixedSizeBinary(16) if extension(field) == Some(UUID_EXTENSION) => "uuid".into(),
        D::FixedSizeBinary(_) => "bytea".into(),
        D::Date32 | D::Date64 => "date".into(),
        D::Time32(_) | D::Time64(_) => "time".into(),
        D::Timestamp(_, None) => "timestamp".into(),
        D::Timestamp(_, Some(_)) => "timestamp with time zone".into(),
        D::Interval(_) | D::Duration(_) => "interval".into(),
        D::List(item) | D::LargeList(item) => match item.data_type() {
            D::List(_) | D::LargeList(_) | D::FixedSizeList(..) | D::ListView(_) => {
                return Err(DdlTypeError::NestedList(field.data_type().clone()));
            }
            _ => format!("{}[]", ddl_type(item)?),
        },
        D::Null => "text".into(),
        other => return Err(DdlTypeError::Unsupported(other.clone())),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builtin_names_parse_with_modifiers_and_aliases() {
        let n = PgType::builtin("numeric(12,2)").unwrap();
        assert_eq!((n.oid, n.name.as_str()), (oid::NUMERIC, "numeric(12,2)"));
        assert_eq!(n.numeric_precision_scale(), Some((12, 2)));
        assert_eq!(arrow_type(&n), Some(DataType::Decimal128(12, 2)));
        assert_eq!(PgType::builtin("numeric").unwrap().typmod, -1);
        assert_eq!(
            arrow_type(&PgType::builtin("numeric").unwrap()),
            Some(DataType::Utf8)
        );
        assert_eq!(
            arrow_type(&PgType::builtin("numeric(40,2)").unwrap()),
            Some(DataType::Utf8)
        );
        let v = PgType::builtin("varchar(20)").unwrap();
        assert_eq!((v.typmod, v.name.as_str()), (24, "character varying(20)"));
        let a = PgType::builtin("integer[]").unwrap();
        assert_eq!((a.oid, a.element), (1007, Some(oid::INT4)));
        let na = PgType::builtin("numeric(10,3)[]").unwrap();
        assert_eq!(na.name, "numeric(10,3)[]");
        assert_eq!(
            arrow_type(&na),
            Some(DataType::List(Arc::new(Field::new(
                "item",
                DataType::Decimal128(10, 3),
                true
            ))))
        );
        let ts = PgType::builtin("timestamp(3) with time zone").unwrap();
        assert_eq!((ts.oid, ts.typmod), (oid::TIMESTAMPTZ, 3));
        assert_eq!(ts.name, "timestamp(3) with time zone");
        assert_eq!(
            PgType::builtin("timestamptz").unwrap().oid,
            oid::TIMESTAMPTZ
        );
        assert_eq!(PgType::builtin("inet"), None);
        assert_eq!(PgType::builtin("numeric(x)"), None);
    }

    #[test]
    fn negative_or_oversized_scales_read_as_text() {
        let t = PgType {
            oid: oid::NUMERIC,
            typmod: numeric_typmod(5, -2).unwrap(),
            element: None,
            name: "numeric(5,-2)".into(),
        };
        assert_eq!(t.numeric_precision_scale(), Some((5, -2)));
        assert_eq!(arrow_type(&t), Some(DataType::Utf8));
    }

    #[test]
    fn uuid_and_json_fields_carry_their_extension() {
        let u = arrow_field("id", &PgType::builtin("uuid").unwrap(), false).unwrap();
        assert_eq!(u.data_type(), &DataType::FixedSizeBinary(16));
        assert_eq!(extension(&u), Some(UUID_EXTENSION));
        assert_eq!(ddl_type(&u).unwrap(), "uuid");
        let j = arrow_field("doc", &PgType::builtin("jsonb").unwrap(), true).unwrap();
        assert_eq!(extension(&j), Some(JSON_EXTENSION));
        assert_eq!(ddl_type(&j).unwrap(), "jsonb");
        let ua = arrow_field("ids", &PgType::builtin("uuid[]").unwrap(), true).unwrap();
        let DataType::List(item) = ua.data_type() else {
            panic!("{ua:?}")
        };
        assert_eq!(extension(item), Some(UUID_EXTENSION));
        assert_eq!(ddl_type(&ua).unwrap(), "uuid[]");
    }

    #[test]
    fn ddl_types_follow_the_table() {
        let ddl = |t: DataType| ddl_type(&Field::new("c", t, true));
        let list = |t: DataType| DataType::List(Arc::new(Field::new("item", t, true)));
        assert_eq!(ddl(DataType::UInt8).unwrap(), "smallint");
        assert_eq!(ddl(DataType::UInt32).unwrap(), "bigint");
        assert_eq!(ddl(DataType::UInt64).unwrap(), "numeric(20,0)");
        assert_eq!(ddl(DataType::Float16).unwrap(), "real");
        assert_eq!(ddl(DataType::Decimal256(50, 10)).unwrap(), "numeric(50,10)");
        assert_eq!(ddl(DataType::Utf8View).unwrap(), "text");
        assert_eq!(ddl(DataType::FixedSizeBinary(16)).unwrap(), "bytea");
        assert_eq!(ddl(DataType::Date64).unwrap(), "date");
        assert_eq!(
            ddl(DataType::Timestamp(
                TimeUnit::Nanosecond,
                Some("UTC".into())
            ))
            .unwrap(),
            "timestamp with time zone"
        );
        assert_eq!(
            ddl(DataType::Duration(TimeUnit::Second)).unwrap(),
            "interval"
        );
        assert_eq!(ddl(list(DataType::Int64)).unwrap(), "bigint[]");
        assert_eq!(ddl(DataType::Null).unwrap(), "text");
        let nested = list(list(DataType::Int64));
        assert_eq!(ddl(nested.clone()), Err(DdlTypeError::NestedList(nested)));
        let s = DataType::Struct(vec![Field::new("a", DataType::Int32, true)].into());
        assert!(
            ddl(s)
                .unwrap_err()
                .to_string()
                .contains("no PostgreSQL column type")
        );
    }
}
