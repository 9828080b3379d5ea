//! Values of the binary protocol (the rows of a prepared statement) as Arrow values, read in
//! place from the row's bytes: integers and floats little-endian, dates and times in their
//! packed form, decimals, strings and bytes as they are.
//!
//! Integers are decoded by the width they arrive in, not the width the catalog announced, so a
//! query column whose wire type differs from its probed type (a literal `1` is sent as a
//! BIGINT) still decodes; the value must fit the column's Arrow type.

use super::decode::{Value, ValueError, parse_decimal};
use super::types::Kind;

const MICROS_PER_SECOND: i64 = 1_000_000;
const MICROS_PER_DAY: i64 = 86_400 * MICROS_PER_SECOND;
/// Days from 0001-01-01 (day 1 of the common era) to 1970-01-01.
const UNIX_EPOCH_FROM_CE: i32 = 719_163;

/// Why a value cannot be converted, and the value as the user would write it.
#[derive(Debug, PartialEq, Eq)]
pub(super) struct Bad {
    pub reason: ValueError,
    pub shown: String,
}

fn bad(reason: ValueError, shown: impl Into<String>) -> Bad {
    Bad {
        reason,
        shown: shown.into(),
    }
}

/// The integer of a 1-, 2-, 4- or 8-byte little-endian value.
fn signed(bytes: &[u8]) -> Option<i64> {
    Some(match bytes.len() {
        1 => i64::from(bytes[0] as i8),
        2 => i64::from(i16::from_le_bytes([bytes[0], bytes[1]])),
        4 => i64::from(i32::from_le_bytes(bytes.try_into().ok()?)),
        8 => i64::from_le_bytes(bytes.try_into().ok()?),
        _ => return None,
    })
}

fn unsigned(bytes: &[u8]) -> Option<u64> {
    Some(match bytes.len() {
        1 => u64::from(bytes[0]),
        2 => u64::from(u16::from_le_bytes([bytes[0], bytes[1]])),
        4 => u64::from(u32::from_le_bytes(bytes.try_into().ok()?)),
        8 => u64::from_le_bytes(bytes.try_into().ok()?),
        _ => return None,
    })
}

fn text(bytes: &[u8]) -> Result<&str, Bad> {
    std::str::from_utf8(bytes).map_err(|_| {
        bad(
            ValueError::NotUtf8,
            String::from_utf8_lossy(&bytes[..bytes.len().min(200)]),
        )
    })
}

/// Decodes one non-NULL value of a column of `kind`.
pub(super) fn decode(kind: Kind, bytes: &[u8]) -> Result<Value<'_>, Bad> {
    let int = |lo: i64, hi: i64, type_name: &'static str| {
        let v =
            signed(bytes).ok_or_else(|| bad(ValueError::NotANumber { type_name }, hex(bytes)))?;
        if (lo..=hi).contains(&v) {
            Ok(Value::Int(v))
        } else {
            Err(bad(ValueError::DoesNotFit { type_name }, v.to_string()))
        }
    };
    let uint = |hi: u64, type_name: &'static str| {
        let v =
            unsigned(bytes).ok_or_else(|| bad(ValueError::NotANumber { type_name }, hex(bytes)))?;
        if v <= hi {
            Ok(Value::UInt(v))
        } else {
            Err(bad(ValueError::DoesNotFit { type_name }, v.to_string()))
        }
    };
    let not_a_float = || {
        let type_name = if kind == Kind::Float32 {
            "Float32"
        } else {
            "Float64"
        };
        bad(ValueError::NotANumber { type_name }, hex(bytes))
    };
    match kind {
        Kind::BoolNumber | Kind::BoolBit => Ok(Value::Bool(bytes.iter().any(|b| *b != 0))),
        Kind::Int8 => int(i8::MIN.into(), i8::MAX.into(), "Int8"),
        Kind::Int16 => int(i16::MIN.into(), i16::MAX.into(), "Int16"),
        Kind::Int32 => int(i32::MIN.into(), i32::MAX.into(), "Int32"),
        Kind::Int64 => int(i64::MIN, i64::MAX, "Int64"),
        Kind::UInt8 => uint(u8::MAX.into(), "UInt8"),
        Kind::UInt16 => uint(u16::MAX.into(), "UInt16"),
        Kind::UInt32 => uint(u32::MAX.into(), "UInt32"),
        Kind::UInt64 => uint(u64::MAX, "UInt64"),
        Kind::Float32 | Kind::Float64 => match bytes.len() {
            4 => Ok(Value::Float(
                f32::from_le_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]).into(),
            )),
            8 => Ok(Value::Float(f64::from_le_bytes(
                bytes.try_into().map_err(|_| not_a_float())?,
            ))),
            _ => Err(not_a_float()),
        },
        Kind::Decimal(p, s) => {
            let t = text(bytes)?;
            parse_decimal(t, p, s)
                .map(Value::Decimal)
                .map_err(|reason| bad(reason, t))
        }
        Kind::Date => Ok(match date(bytes)? {
            Some(days) => Value::Temporal(days.into()),
            None => Value::Null,
        }),
        Kind::Timestamp => {
            let Some(days) = date(bytes)? else {
                return Ok(Value::Null);
            };
            let part = |i: usize| i64::from(bytes.get(i).copied().unwrap_or(0));
            let micros = match bytes.get(8..12) {
                Some(m) => i64::from(u32::from_le_bytes([m[0], m[1], m[2], m[3]])),
                None => 0,
            };
            let clock = ((part(5) * 60 + part(6)) * 60 + part(7)) * MICROS_PER_SECOND + micros;
            Ok(Value::Temporal(i64::from(days) * MICROS_PER_DAY + clock))
        }
        Kind::Time => {
            // [length, negative, days (4 bytes), hours, minutes, seconds, microseconds (4)]
            let part = |i: usize| i64::from(bytes.get(i).copied().unwrap_or(0));
            let days = match bytes.get(2..6) {
                Some(d) => i64::from(u32::from_le_bytes([d[0], d[1], d[2], d[3]])),
                None => 0,
            };
            let micros = match bytes.get(9..13) {
                Some(m) => i64::from(u32::from_le_bytes([m[0], m[1], m[2], m[3]])),
                None => 0,
            };
            let negative = part(1) != 0;
            let total = ((days * 24 + part(6)) * 60 + part(7)) * 60 * MICROS_PER_SECOND
                + part(8) * MICROS_PER_SECOND
                + micros;
            if negative || total >= MICROS_PER_DAY {
                let hours = days * 24 + part(6);
                let mut shown = format!(
                    "{}{hours:02}:{:02}:{:02}",
                    if negative { "-" } else { "" },
                    part(7),
                    part(8)
                );
                if micros > 0 {
                    shown.push_str(&format!(".{micros:06}"));
                }
                return Err(bad(ValueError::NotATimeOfDay, shown));
            }
            Ok(Value::Temporal(total))
        }
        Kind::Utf8 => text(bytes).map(Value::Str),
        Kind::Binary => Ok(Value::Bytes(bytes)),
        Kind::Uuid => {
            if bytes.len() == 16 {
                let mut out = [0u8; 16];
                out.copy_from_slice(bytes);
                return Ok(Value::Uuid(out));
            }
            let t = text(bytes)?;
            super::decode::parse_uuid(t)
                .map(Value::Uuid)
                .map_err(|reason| bad(reason, t))
        }
    }
}

/// Days since 1970-01-01 of a packed date (`[length, year (2 bytes), month, day, …]`); `None`
/// for a zero date or one with a zero month or day.
fn date(bytes: &[u8]) -> Result<Option<i32>, Bad> {
    if bytes.len() < 5 {
        return Ok(None);
    }
    let year = i32::from(u16::from_le_bytes([bytes[1], bytes[2]]));
    let (month, day) = (u32::from(bytes[3]), u32::from(bytes[4]));
    if year == 0 || month == 0 || day == 0 {
        return Ok(None);
    }
    chrono::NaiveDate::from_ymd_opt(year, month, day)
        .map(|d| Some(chrono::Datelike::num_days_from_ce(&d) - UNIX_EPOCH_FROM_CE))
        .ok_or_else(|| {
            bad(
                ValueError::NotADate,
                format!("{year:04}-{month:02}-{day:02}"),
            )
        })
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn integers_decode_by_their_wire_width_and_must_fit() {
        assert_eq!(decode(Kind::Int8, &[0x80]), Ok(Value::Int(-128)));
        assert_eq!(
            decode(Kind::Int64, &(-5i64).to_le_bytes()),
            Ok(Value::Int(-5))
        );
        assert_eq!(decode(Kind::Int32, &1i64.to_le_bytes()), Ok(Value::Int(1)));
        assert_eq!(
            decode(Kind::Int8, &300i16.to_le_bytes()),
            Err(bad(ValueError::DoesNotFit { type_name: "Int8" }, "300"))
        );
        assert_eq!(
            decode(Kind::UInt64, &u64::MAX.to_le_bytes()),
            Ok(Value::UInt(u64::MAX))
        );
        assert_eq!(decode(Kind::BoolNumber, &[2]), Ok(Value::Bool(true)));
        assert_eq!(
            decode(Kind::Float32, &1.5f32.to_le_bytes()),
            Ok(Value::Float(1.5))
        );
    }

    #[test]
    fn packed_dates_and_times_decode_with_zero_dates_as_null() {
        let mut stamp = vec![11, 0xb2, 0x07, 1, 2, 3, 4, 5];
        stamp.extend_from_slice(&6u32.to_le_bytes());
        // 1970-01-02 03:04:05.000006
        assert_eq!(
            decode(Kind::Timestamp, &stamp),
            Ok(Value::Temporal(MICROS_PER_DAY + 11_045_000_006))
        );
        assert_eq!(decode(Kind::Timestamp, &[0]), Ok(Value::Null));
        assert_eq!(decode(Kind::Date, &[4, 0, 0, 0, 0]), Ok(Value::Null));
        assert_eq!(
            decode(Kind::Date, &[4, 0xb2, 0x07, 1, 1]),
            Ok(Value::Temporal(0))
        );
        let time = [8, 0, 0, 0, 0, 0, 23, 59, 58];
        assert_eq!(
            decode(Kind::Time, &time),
            Ok(Value::Temporal(86_398_000_000))
        );
        assert_eq!(decode(Kind::Time, &[0]), Ok(Value::Temporal(0)));
        let long = [8, 0, 1, 0, 0, 0, 1, 30, 0];
        assert_eq!(
            decode(Kind::Time, &long).map_err(|b| b.shown),
            Err("25:30:00".into())
        );
        let negative = [8, 1, 0, 0, 0, 0, 0, 0, 1];
        assert_eq!(
            decode(Kind::Time, &negative).map_err(|b| b.shown),
            Err("-00:00:01".into())
        );
    }
}
