//! Arrow types of the logical type names users write (`cast`, `columns` overrides).

use arrow::datatypes::{DataType, TimeUnit};
use synqx_api::types::LogicalType;

/// The Arrow type a logical type maps to. Times carry microseconds; `timestamptz` is UTC.
pub fn to_arrow(t: LogicalType) -> DataType {
    match t {
        LogicalType::Boolean => DataType::Boolean,
        LogicalType::Int8 => DataType::Int8,
        LogicalType::Int16 => DataType::Int16,
        LogicalType::Int32 => DataType::Int32,
        LogicalType::Int64 => DataType::Int64,
        LogicalType::UInt8 => DataType::UInt8,
        LogicalType::UInt16 => DataType::UInt16,
        LogicalType::UInt32 => DataType::UInt32,
        LogicalType::UInt64 => DataType::UInt64,
        LogicalType::Float32 => DataType::Float32,
        LogicalType::Float64 => DataType::Float64,
        LogicalType::Decimal { precision, scale } => DataType::Decimal128(precision, scale as i8),
        LogicalType::String | LogicalType::Json => DataType::Utf8,
        LogicalType::Binary => DataType::Binary,
        LogicalType::Date => DataType::Date32,
        LogicalType::Time => DataType::Time64(TimeUnit::Microsecond),
        LogicalType::Timestamp => DataType::Timestamp(TimeUnit::Microsecond, None),
        LogicalType::TimestampTz => {
            DataType::Timestamp(TimeUnit::Microsecond, Some("+00:00".into()))
        }
    }
}

/// Parses a type name straight to Arrow, with the error of `LogicalType::parse`.
pub fn parse_arrow(name: &str) -> Result<DataType, synqx_api::types::TypeError> {
    LogicalType::parse(name).map(to_arrow)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_map_to_arrow() {
        assert_eq!(
            parse_arrow("decimal(12,2)"),
            Ok(DataType::Decimal128(12, 2))
        );
        assert_eq!(
            parse_arrow("timestamptz"),
            Ok(DataType::Timestamp(
                TimeUnit::Microsecond,
                Some("+00:00".into())
            ))
        );
        assert!(parse_arrow("money").is_err());
    }
}
