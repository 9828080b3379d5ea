//! Arrow <-> SQLite types.
//!
//! SQLite stores five classes (NULL, INTEGER, REAL, TEXT, BLOB); the declared type of a column
//! only sets its affinity. SynqX therefore picks declared types that say which Arrow type a
//! column holds, so that reading a table gives back the types that were written:
//!
//! | Arrow (written)                     | Declared type        | Stored as              | Arrow (read)              |
//! |-------------------------------------|----------------------|------------------------|---------------------------|
//! | Boolean                             | `BOOLEAN`            | INTEGER 0/1            | Boolean                   |
//! | Int8 / Int16 / Int32                | `TINYINT` / `SMALLINT` / `INT` | INTEGER      | Int8 / Int16 / Int32      |
//! | Int64, UInt8, UInt16, UInt32        | `INTEGER`            | INTEGER                | Int64                     |
//! | UInt64                              | `INTEGER`            | INTEGER (≤ i64::MAX)   | Int64                     |
//! | Float16 / Float32                   | `FLOAT4`             | REAL                   | Float32                   |
//! | Float64                             | `DOUBLE`             | REAL                   | Float64                   |
//! | Decimal32/64/128(p,s), p ≤ 38       | `DECIMAL TEXT(p,s)`  | TEXT, the exact decimal| Decimal128(p,s)           |
//! | Utf8 / LargeUtf8 / Utf8View         | `TEXT`               | TEXT                   | Utf8                      |
//! | Binary / LargeBinary / FixedSize…   | `BLOB`               | BLOB                   | Binary                    |
//! | Date32 / Date64                     | `DATE`               | TEXT `YYYY-MM-DD`      | Date32                    |
//! | Time32 / Time64                     | `TIME`               | TEXT `HH:MM:SS.ffffff` | Time64(µs)                |
//! | Timestamp(any unit, None)           | `TIMESTAMP`          | TEXT `YYYY-MM-DD HH:MM:SS.ffffff` | Timestamp(µs)  |
//! | Timestamp(any unit, Some(tz))       | `TIMESTAMPTZ`        | TEXT RFC 3339 UTC `…T…Z` | Timestamp(µs, "+00:00") |
//! | List / Struct / Map                 | `JSON`               | TEXT, JSON             | Utf8                      |
//! | Dictionary                          | its value type       |                        |                           |
//! | Null, Duration, Interval, Decimal256 with p > 38 | `TEXT` | TEXT (Arrow's display) | Utf8                   |
//!
//! Why not plain `REAL` and `DECIMAL(p,s)`: SQLite's `REAL` is 8 bytes, so tables of other
//! tools declare doubles as `REAL` and reading them as Float32 would lose digits; `FLOAT4`
//! keeps Float32 recognisable. `DECIMAL(p,s)` has NUMERIC affinity, which turns the text
//! `'12345678901234567890.12'` into a REAL with 15 significant digits; the word `TEXT` in
//! `DECIMAL TEXT(p,s)` gives the column TEXT affinity, so the exact digits are kept.
//!
//! Other time units are converted to microseconds (nanoseconds are truncated). Fixed-width
//! text keeps SQL comparisons (`WHERE cursor > ?`) in time order. A NaN float is stored as NULL
//! by SQLite.
//!
//! Reading maps declared types of other tools too: `BIGINT`, `INT8`, `MEDIUMINT`, `INT2`,
//! `INT4` and any other name containing `INT` (Int64, as SQLite's affinity rule), `REAL`,
//! `FLOAT`, `DOUBLE PRECISION` (Float64), `DECIMAL(p,s)` / `NUMERIC(p,s)` (Decimal128, from
//! text, integer or real values), `DATETIME` (Timestamp), `VARCHAR(n)`, `CLOB` and other
//! names containing `CHAR`, `CLOB` or `TEXT` (Utf8), `BYTEA` and names containing `BLOB`
//! (Binary). A column without a declared type takes the class of the first row's value;
//! any other name is read as Utf8.

use arrow::datatypes::{DataType, TimeUnit};
use chrono::{DateTime, Datelike, NaiveDate, NaiveDateTime, NaiveTime, Timelike};

/// The time zone of timestamps read from `TIMESTAMPTZ` columns.
pub(super) const UTC: &str = "+00:00";
/// Days from 0001-01-01 (day 1 of the common era) to 1970-01-01.
const EPOCH_DAYS_FROM_CE: i32 = 719_163;

/// How the values of a written column are bound.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Storage {
    Boolean,
    Integer,
    /// INTEGER, but values above `i64::MAX` are an error.
    UInt64,
    Real,
    Decimal(u8, i8),
    Text,
    Blob,
    Date,
    Time,
    Timestamp {
        utc: bool,
    },
    /// Nested values as JSON text.
    Json,
}

impl Storage {
    /// The Arrow type a column is cast to before its values are bound.
    pub(super) fn arrow_type(self) -> DataType {
        match self {
            Self::Boolean => DataType::Boolean,
            Self::Integer => DataType::Int64,
            Self::UInt64 => DataType::UInt64,
            Self::Real => DataType::Float64,
            Self::Decimal(p, s) => DataType::Decimal128(p, s),
            Self::Text | Self::Json => DataType::Utf8,
            Self::Blob => DataType::Binary,
            Self::Date => DataType::Date32,
            Self::Time => DataType::Time64(TimeUnit::Microsecond),
            Self::Timestamp { utc: false } => DataType::Timestamp(TimeUnit::Microsecond, None),
            Self::Timestamp { utc: true } => {
                DataType::Timestamp(TimeUnit::Microsecond, Some(UTC.into()))
            }
        }
    }
}

/// The declared type and storage of a column of Arrow type `data_type`, or `None` when SQLite
/// cannot hold it.
pub(super) fn declared_type(data_type: &DataType) -> Option<(String, Storage)> {
    use DataType as D;
    let simple = |name: &str, storage| Some((name.to_string(), storage));
    match data_type {
        D::Boolean => simple("BOOLEAN", Storage::Boolean),
        D::Int8 => simple("TINYINT", Storage::Integer),
        D::Int16 => simple("SMALLINT", Storage::Integer),
        D::Int32 => simple("INT", Storage::Integer),
        D::Int64 | D::UInt8 | D::UInt16 | D::UInt32 => simple("INTEGER", Storage::Integer),
        D::UInt64 => simple("INTEGER", Storage::UInt64),
        D::Float16 | D::Float32 => simple("FLOAT4", Storage::Real),
        D::Float64 => simple("DOUBLE", Storage::Real),
        D::Decimal32(p, s) | D::Decimal64(p, s) | D::Decimal128(p, s) => {
            Some((format!("DECIMAL TEXT({p},{s})"), Storage::Decimal(*p, *s)))
        }
        D::Decimal256(p, s) if *p <= 38 => {
            Some((format!("DECIMAL TEXT({p},{s})"), Storage::Decimal(*p, *s)))
        }
        D::Utf8 | D::LargeUtf8 | D::Utf8View => simple("TEXT", Storage::Text),
        D::Binary | D::LargeBinary | D::BinaryView | D::FixedSizeBinary(_) => {
            simple("BLOB", Storage::Blob)
        }
        D::Date32 | D::Date64 => simple("DATE", Storage::Date),
        D::Time32(_) | D::Time64(_) => simple("TIME", Storage::Time),
        D::Timestamp(_, None) => simple("TIMESTAMP", Storage::Timestamp { utc: false }),
        D::Timestamp(_, Some(_)) => simple("TIMESTAMPTZ", Storage::Timestamp { utc: true }),
        D::List(_)
        | D::LargeList(_)
        | D::FixedSizeList(..)
        | D::ListView(_)
        | D::LargeListView(_)
        | D::Struct(_)
        | D::Map(..) => simple("JSON", Storage::Json),
        D::Dictionary(_, value) => declared_type(value),
        D::Null | D::Duration(_) | D::Interval(_) | D::Decimal256(..) => {
            simple("TEXT", Storage::Text)
        }
        D::Union(..) | D::RunEndEncoded(..) => None,
    }
}

/// The Arrow type of a declared column type; `None` for an empty declared type, whose values
/// decide.
pub(super) fn arrow_type(declared: &str) -> Option<DataType> {
    let upper = declared.trim().to_ascii_uppercase();
    if upper.is_empty() {
        return None;
    }
    let (base, args) = match upper.split_once('(') {
        Some((base, rest)) => (base.trim(), rest.trim_end_matches(')')),
        None => (upper.as_str(), ""),
    };
    let base = base.split_whitespace().collect::<Vec<_>>().join(" ");
    let numbers: Vec<i64> = args
        .split(',')
        .filter_map(|a| a.trim().parse().ok())
        .collect();
    Some(match base.as_str() {
        "BOOLEAN" | "BOOL" => DataType::Boolean,
        "TINYINT" => DataType::Int8,
        "SMALLINT" | "INT2" => DataType::Int16,
        "INT" | "INT4" | "MEDIUMINT" => DataType::Int32,
        "DECIMAL TEXT" | "DECIMAL" | "NUMERIC" => decimal(&numbers).unwrap_or(DataType::Float64),
        "FLOAT4" => DataType::Float32,
        "DATE" => DataType::Date32,
        "TIME" => DataType::Time64(TimeUnit::Microsecond),
        "TIMESTAMP" | "DATETIME" | "TIMESTAMP WITHOUT TIME ZONE" => {
            DataType::Timestamp(TimeUnit::Microsecond, None)
        }
        "TIMESTAMPTZ" | "TIMESTAMP WITH TIME ZONE" => {
            DataType::Timestamp(TimeUnit::Microsecond, Some(UTC.into()))
        }
        "JSON" => DataType::Utf8,
        "BYTEA" => DataType::Binary,
        // SQLite's own affinity rules, in their order.
        b if b.contains("INT") => DataType::Int64,
        b if b.contains("CHAR") || b.contains("CLOB") || b.contains("TEXT") => DataType::Utf8,
        b if b.contains("BLOB") => DataType::Binary,
        b if b.contains("REAL") || b.contains("FLOA") || b.contains("DOUB") => DataType::Float64,
        _ => DataType::Utf8,
    })
}

fn decimal(numbers: &[i64]) -> Option<DataType> {
    let precision = u8::try_from(*numbers.first()?)
        .ok()
        .filter(|p| (1..=38).contains(p))?;
    let scale = i8::try_from(numbers.get(1).copied().unwrap_or(0)).ok()?;
    (i16::from(scale) <= i16::from(precision)).then_some(DataType::Decimal128(precision, scale))
}

/// The name of a type in messages, in the vocabulary of `columns` overrides.
pub(super) fn type_name(data_type: &DataType) -> String {
    match data_type {
        DataType::Utf8 => "string".into(),
        DataType::Date32 => "date".into(),
        DataType::Time64(_) => "time".into(),
        DataType::Timestamp(_, None) => "timestamp".into(),
        DataType::Timestamp(_, Some(_)) => "timestamptz".into(),
        DataType::Decimal128(p, s) => format!("decimal({p},{s})"),
        other => other.to_string().to_ascii_lowercase(),
    }
}

pub(super) fn format_date(days: i32) -> Option<String> {
    let date = NaiveDate::from_num_days_from_ce_opt(days.checked_add(EPOCH_DAYS_FROM_CE)?)?;
    Some(date.format("%Y-%m-%d").to_string())
}

pub(super) fn parse_date(text: &str) -> Option<i32> {
    let date = NaiveDate::parse_from_str(text.trim(), "%Y-%m-%d").ok()?;
    Some(date.num_days_from_ce() - EPOCH_DAYS_FROM_CE)
}

pub(super) fn format_time(micros: i64) -> Option<String> {
    let secs = u32::try_from(micros.div_euclid(1_000_000)).ok()?;
    let nanos = u32::try_from(micros.rem_euclid(1_000_000) * 1000).ok()?;
    let time = NaiveTime::from_num_seconds_from_midnight_opt(secs, nanos)?;
    Some(time.format("%H:%M:%S%.6f").to_string())
}

pub(super) fn parse_time(text: &str) -> Option<i64> {
    let text = text.trim();
    let time = NaiveTime::parse_from_str(text, "%H:%M:%S%.f")
        .or_else(|_| NaiveTime::parse_from_str(text, "%H:%M"))
        .ok()?;
    Some(
        i64::from(time.num_seconds_from_midnight()) * 1_000_000
            + i64::from(time.nanosecond() / 1000),
    )
}

/// A timestamp as stored: `YYYY-MM-DD HH:MM:SS.ffffff`, or RFC 3339 in UTC when `utc`.
pub(super) fn format_timestamp(micros: i64, utc: bool) -> Option<String> {
    let t = DateTime::from_timestamp_micros(micros)?.naive_utc();
    let format = if utc {
        "%Y-%m-%dT%H:%M:%S%.6fZ"
    } else {
        "%Y-%m-%d %H:%M:%S%.6f"
    };
    Some(t.format(format).to_string())
}

/// Microseconds since the epoch of a timestamp text. Text with an offset is converted to UTC;
/// text without one is taken as UTC (as SQLite's `CURRENT_TIMESTAMP` is).
pub(super) fn parse_timestamp(text: &str) -> Option<i64> {
    let text = text.trim();
    if let Ok(t) = DateTime::parse_from_rfc3339(text) {
        return Some(t.timestamp_micros());
    }
    for format in [
        "%Y-%m-%d %H:%M:%S%.f%:z",
        "%Y-%m-%d %H:%M:%S%.f%#z",
        "%Y-%m-%dT%H:%M:%S%.f%#z",
    ] {
        if let Ok(t) = DateTime::parse_from_str(text, format) {
            return Some(t.timestamp_micros());
        }
    }
    for format in [
        "%Y-%m-%d %H:%M:%S%.f",
        "%Y-%m-%dT%H:%M:%S%.f",
        "%Y-%m-%d %H:%M",
        "%Y-%m-%dT%H:%M",
    ] {
        if let Ok(t) = NaiveDateTime::parse_from_str(text, format) {
            return Some(t.and_utc().timestamp_micros());
        }
    }
    let date = NaiveDate::parse_from_str(text, "%Y-%m-%d").ok()?;
    Some(date.and_hms_opt(0, 0, 0)?.and_utc().timestamp_micros())
}

/// The exact decimal text of an unscaled value.
pub(super) fn format_decimal(value: i128, scale: i8) -> String {
    let digits = value.unsigned_abs().to_string();
    let sign = if value < 0 { "-" } else { "" };
    if scale <= 0 {
        let zeros = if value == 0 {
            0
        } else {
            usize::from(scale.unsigned_abs())
        };
        return format!("{sign}{digits}{}", "0".repeat(zeros));
    }
    let scale = usize::from(scale.unsigned_abs());
    let padded = format!("{digits:0>width$}", width = scale + 1);
    let (int, frac) = padded.split_at(padded.len() - scale);
    format!("{sign}{int}.{frac}")
}

/// The unscaled value of a decimal text, exactly: `None` when it is not a plain decimal number,
/// has non-zero digits beyond `scale`, or does not fit `precision`.
pub(super) fn parse_decimal(text: &str, precision: u8, scale: i8) -> Option<i128> {
    let text = text.trim();
    let (negative, unsigned) = match text.as_bytes().first()? {
        b'-' => (true, &text[1..]),
        b'+' => (false, &text[1..]),
        _ => (false, text),
    };
    let (int, frac) = unsigned.split_once('.').unwrap_or((unsigned, ""));
    let all_digits = |s: &str| s.bytes().all(|b| b.is_ascii_digit());
    if (int.is_empty() && frac.is_empty()) || !all_digits(int) || !all_digits(frac) {
        return None;
    }
    // value = digits * 10^-frac.len(); unscaled = digits * 10^(scale - frac.len()).
    let mut digits = format!("{int}{frac}");
    let shift = i32::from(scale) - i32::try_from(frac.len()).ok()?;
    if shift < 0 {
        let cut = digits.len().saturating_sub(usize::try_from(-shift).ok()?);
        if !digits[cut..].bytes().all(|b| b == b'0') {
            return None;
        }
        digits.truncate(cut);
    }
    let trimmed = digits.trim_start_matches('0');
    let mut value: i128 = if trimmed.is_empty() {
        0
    } else {
        trimmed.parse().ok()?
    };
    if shift > 0 {
        value = value.checked_mul(10i128.checked_pow(u32::try_from(shift).ok()?)?)?;
    }
    fits(if negative { -value } else { value }, precision)
}

/// An integer as an unscaled decimal.
pub(super) fn decimal_from_i64(value: i64, precision: u8, scale: i8) -> Option<i128> {
    let v = i128::from(value);
    let unscaled = if scale >= 0 {
        v.checked_mul(10i128.checked_pow(u32::from(scale.unsigned_abs()))?)?
    } else {
        let divisor = 10i128.checked_pow(u32::from(scale.unsigned_abs()))?;
        if v % divisor != 0 {
            return None;
        }
        v / divisor
    };
    fits(unscaled, precision)
}

/// A float as an unscaled decimal, rounded to `scale` (a REAL is inexact anyway).
pub(super) fn decimal_from_f64(value: f64, precision: u8, scale: i8) -> Option<i128> {
    if !value.is_finite() {
        return None;
    }
    let text = format!(
        "{value:.prec$}",
        prec = usize::from(scale.max(0).unsigned_abs())
    );
    if scale >= 0 {
        parse_decimal(&text, precision, scale)
    } else {
        let rounded = (value / 10f64.powi(i32::from(-scale))).round();
        parse_decimal(&format!("{rounded:.0}"), precision, 0)
    }
}

fn fits(value: i128, precision: u8) -> Option<i128> {
    let limit = 10i128.checked_pow(u32::from(precision))?;
    (value.unsigned_abs() < limit.unsigned_abs()).then_some(value)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_written_type_reads_back_as_documented() {
        let cases = [
            (DataType::Boolean, DataType::Boolean),
            (DataType::Int8, DataType::Int8),
            (DataType::Int16, DataType::Int16),
            (DataType::Int32, DataType::Int32),
            (DataType::Int64, DataType::Int64),
            (DataType::UInt32, DataType::Int64),
            (DataType::UInt64, DataType::Int64),
            (DataType::Float32, DataType::Float32),
            (DataType::Float64, DataType::Float64),
            (DataType::Decimal128(38, 10), DataType::Decimal128(38, 10)),
            (DataType::Decimal128(5, -2), DataType::Decimal128(5, -2)),
            (DataType::LargeUtf8, DataType::Utf8),
            (DataType::Binary, DataType::Binary),
            (DataType::Date32, DataType::Date32),
            (
                DataType::Time32(TimeUnit::Millisecond),
                DataType::Time64(TimeUnit::Microsecond),
            ),
            (
                DataType::Timestamp(TimeUnit::Nanosecond, None),
                DataType::Timestamp(TimeUnit::Microsecond, None),
            ),
            (
                DataType::Timestamp(TimeUnit::Second, Some("Europe/Paris".into())),
                DataType::Timestamp(TimeUnit::Microsecond, Some(UTC.into())),
            ),
            (DataType::new_list(DataType::Int32, true), DataType::Utf8),
        ];
        for (written, read) in cases {
            let (declared, _) = declared_type(&written).unwrap_or_else(|| panic!("{written}"));
            assert_eq!(
                arrow_type(&declared),
                Some(read),
                "{written} declared as {declared}"
            );
        }
    }

    #[test]
    fn declared_types_of_other_tools() {
        let t = |s: &str| arrow_type(s);
        assert_eq!(t("bigint"), Some(DataType::Int64));
        assert_eq!(t("int(11)"), Some(DataType::Int32));
        assert_eq!(t("UNSIGNED BIG INT"), Some(DataType::Int64));
        assert_eq!(t("REAL"), Some(DataType::Float64));
        assert_eq!(t("double precision"), Some(DataType::Float64));
        assert_eq!(t("NUMERIC(12, 2)"), Some(DataType::Decimal128(12, 2)));
        assert_eq!(t("decimal(10)"), Some(DataType::Decimal128(10, 0)));
        assert_eq!(t("NUMERIC"), Some(DataType::Float64));
        assert_eq!(t("VARCHAR(20)"), Some(DataType::Utf8));
        assert_eq!(
            t("datetime"),
            Some(DataType::Timestamp(TimeUnit::Microsecond, None))
        );
        assert_eq!(t("bytea"), Some(DataType::Binary));
        assert_eq!(t("UUID"), Some(DataType::Utf8));
        assert_eq!(t(""), None);
    }

    #[test]
    fn decimals_are_exact() {
        assert_eq!(format_decimal(12345, 2), "123.45");
        assert_eq!(format_decimal(-5, 3), "-0.005");
        assert_eq!(format_decimal(0, 2), "0.00");
        assert_eq!(format_decimal(7, -2), "700");
        assert_eq!(
            format_decimal(i128::MAX, 10),
            "17014118346046923173168730371.5884105727"
        );
        assert_eq!(parse_decimal("123.45", 5, 2), Some(12345));
        assert_eq!(parse_decimal("-0.005", 5, 3), Some(-5));
        assert_eq!(parse_decimal("1.5", 5, 2), Some(150));
        assert_eq!(parse_decimal("1.230", 5, 2), Some(123));
        assert_eq!(parse_decimal("1.235", 5, 2), None);
        assert_eq!(parse_decimal("1000.00", 5, 2), None);
        assert_eq!(parse_decimal("700", 5, -2), Some(7));
        assert_eq!(parse_decimal("750", 5, -2), None);
        assert_eq!(parse_decimal("0", 5, -2), Some(0));
        assert_eq!(parse_decimal("5", 5, -2), None);
        assert_eq!(parse_decimal("abc", 5, 2), None);
        assert_eq!(parse_decimal(".", 5, 2), None);
        let max = "9".repeat(38);
        assert_eq!(parse_decimal(&max, 38, 0), Some(10i128.pow(38) - 1));
        assert_eq!(decimal_from_f64(0.1 + 0.2, 10, 2), Some(30));
        assert_eq!(decimal_from_i64(-3, 10, 2), Some(-300));
    }

    #[test]
    fn times_round_trip_through_their_text() {
        assert_eq!(format_date(0).as_deref(), Some("1970-01-01"));
        assert_eq!(format_date(-719_162).as_deref(), Some("0001-01-01"));
        assert_eq!(parse_date("9999-12-31"), Some(2_932_896));
        assert_eq!(format_date(i32::MAX), None);
        assert_eq!(
            format_time(45_296_000_001).as_deref(),
            Some("12:34:56.000001")
        );
        assert_eq!(parse_time("12:34:56.000001"), Some(45_296_000_001));
        assert_eq!(parse_time("12:34"), Some(45_240_000_000));
        assert_eq!(format_time(86_400_000_000), None);
        let t = 1_700_000_000_123_456;
        assert_eq!(
            format_timestamp(t, false).as_deref(),
            Some("2023-11-14 22:13:20.123456")
        );
        assert_eq!(
            format_timestamp(t, true).as_deref(),
            Some("2023-11-14T22:13:20.123456Z")
        );
        assert_eq!(parse_timestamp("2023-11-14 22:13:20.123456"), Some(t));
        assert_eq!(parse_timestamp("2023-11-14T23:13:20.123456+01:00"), Some(t));
        assert_eq!(parse_timestamp("2023-11-14"), Some(1_699_920_000_000_000));
        assert_eq!(parse_timestamp("yesterday"), None);
    }
}
