//! Column type names users write in `cast` transforms and `columns` overrides.

use std::fmt;

/// A column type, independent of any system. The runner maps it to Arrow; connectors map
/// Arrow to their own types.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LogicalType {
    Boolean,
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
    /// Fixed-point number with precision (1..=38) and scale (0..=precision).
    Decimal {
        precision: u8,
        scale: u8,
    },
    String,
    Binary,
    Date,
    Time,
    /// Timestamp without time zone, microseconds.
    Timestamp,
    /// Timestamp in UTC, microseconds.
    TimestampTz,
    /// JSON text.
    Json,
}

/// Why a type name does not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TypeError {
    #[error("unknown type `{text}` (known: {TYPE_NAMES})")]
    Unknown { text: String },
    #[error("type `{text}`: write decimal(precision,scale), e.g. decimal(12,2)")]
    DecimalSyntax { text: String },
    #[error("type `{text}`: precision must be a number from 1 to 38")]
    PrecisionNotANumber { text: String },
    #[error("type `{text}`: scale must be a number")]
    ScaleNotANumber { text: String },
    #[error("type `{text}`: decimal takes two arguments, precision and scale")]
    TooManyArguments { text: String },
    #[error("type `{text}`: precision must be from 1 to 38")]
    Precision { text: String },
    #[error("type `{text}`: scale {scale} exceeds precision {precision}")]
    ScaleAbovePrecision {
        text: String,
        scale: u8,
        precision: u8,
    },
}

/// The type names accepted, for error messages.
pub const TYPE_NAMES: &str = "boolean, int8, int16, int32 (int), int64 (bigint), uint8..uint64, float32 (real), float64 (double), decimal(p,s), string (text), binary, date, time, timestamp, timestamptz, json";

impl LogicalType {
    /// Parses a type name such as `bigint`, `decimal(12,2)` or `timestamp with time zone`.
    pub fn parse(text: &str) -> Result<Self, TypeError> {
        let name = text.trim().to_ascii_lowercase();
        let name = name.split_whitespace().collect::<Vec<_>>().join(" ");
        if let Some(args) = name
            .strip_prefix("decimal")
            .or_else(|| name.strip_prefix("numeric"))
        {
            return parse_decimal(args.trim(), text);
        }
        Ok(match name.as_str() {
            "bool" | "boolean" => Self::Boolean,
            "int8" | "tinyint" => Self::Int8,
            "int16" | "smallint" => Self::Int16,
            "int32" | "int" | "integer" => Self::Int32,
            "int64" | "bigint" | "long" => Self::Int64,
            "uint8" => Self::UInt8,
            "uint16" => Self::UInt16,
            "uint32" => Self::UInt32,
            "uint64" => Self::UInt64,
            "float32" | "real" | "float" => Self::Float32,
            "float64" | "double" | "double precision" => Self::Float64,
            "string" | "text" | "varchar" | "utf8" => Self::String,
            "binary" | "bytes" | "bytea" | "blob" => Self::Binary,
            "date" => Self::Date,
            "time" => Self::Time,
            "timestamp" | "datetime" | "timestamp without time zone" => Self::Timestamp,
            "timestamptz" | "timestamp with time zone" => Self::TimestampTz,
            "json" | "jsonb" => Self::Json,
            _ => return Err(TypeError::Unknown { text: text.into() }),
        })
    }
}

fn parse_decimal(args: &str, text: &str) -> Result<LogicalType, TypeError> {
    if args.is_empty() {
        return Ok(LogicalType::Decimal {
            precision: 38,
            scale: 10,
        });
    }
    let inner = args
        .strip_prefix('(')
        .and_then(|a| a.strip_suffix(')'))
        .ok_or_else(|| TypeError::DecimalSyntax { text: text.into() })?;
    let mut parts = inner.split(',').map(str::trim);
    let precision: u8 = parts
        .next()
        .and_then(|p| p.parse().ok())
        .ok_or_else(|| TypeError::PrecisionNotANumber { text: text.into() })?;
    let scale: u8 = match parts.next() {
        None => 0,
        Some(s) => s
            .parse()
            .map_err(|_| TypeError::ScaleNotANumber { text: text.into() })?,
    };
    if parts.next().is_some() {
        return Err(TypeError::TooManyArguments { text: text.into() });
    }
    if !(1..=38).contains(&precision) {
        return Err(TypeError::Precision { text: text.into() });
    }
    if scale > precision {
        return Err(TypeError::ScaleAbovePrecision {
            text: text.into(),
            scale,
            precision,
        });
    }
    Ok(LogicalType::Decimal { precision, scale })
}

impl fmt::Display for LogicalType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Boolean => f.write_str("boolean"),
            Self::Int8 => f.write_str("int8"),
            Self::Int16 => f.write_str("int16"),
            Self::Int32 => f.write_str("int32"),
            Self::Int64 => f.write_str("int64"),
            Self::UInt8 => f.write_str("uint8"),
            Self::UInt16 => f.write_str("uint16"),
            Self::UInt32 => f.write_str("uint32"),
            Self::UInt64 => f.write_str("uint64"),
            Self::Float32 => f.write_str("float32"),
            Self::Float64 => f.write_str("float64"),
            Self::Decimal { precision, scale } => write!(f, "decimal({precision},{scale})"),
            Self::String => f.write_str("string"),
            Self::Binary => f.write_str("binary"),
            Self::Date => f.write_str("date"),
            Self::Time => f.write_str("time"),
            Self::Timestamp => f.write_str("timestamp"),
            Self::TimestampTz => f.write_str("timestamptz"),
            Self::Json => f.write_str("json"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_parse() {
        assert_eq!(LogicalType::parse("BIGINT"), Ok(LogicalType::Int64));
        assert_eq!(
            LogicalType::parse("decimal(12, 2)"),
            Ok(LogicalType::Decimal {
                precision: 12,
                scale: 2
            })
        );
        assert_eq!(
            LogicalType::parse("timestamp  with time zone"),
            Ok(LogicalType::TimestampTz)
        );
        assert!(
            LogicalType::parse("decimal(40,2)").is_err_and(|e| e.to_string().contains("precision"))
        );
        assert!(
            LogicalType::parse("decimal(5,6)").is_err_and(|e| e.to_string().contains("exceeds"))
        );
        assert!(LogicalType::parse("money").is_err_and(|e| e.to_string().contains("unknown type")));
    }

    #[test]
    fn display_round_trips() {
        for name in [
            "boolean",
            "int64",
            "decimal(12,2)",
            "timestamptz",
            "json",
            "uint16",
        ] {
            let t = LogicalType::parse(name).unwrap_or(LogicalType::Json);
            assert_eq!(t.to_string(), name);
        }
    }
}
