//! Durations and byte sizes as users write them: `30m`, `1h30m`, `500ms`; `8MiB`, `256MB`.

use std::time::Duration;

/// Why a duration does not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DurationError {
    #[error("empty duration (write e.g. `30s`, `5m`, `1h30m`)")]
    Empty,
    #[error("`{text}` is not a duration (write e.g. `30s`, `5m`, `1h30m`)")]
    NotADuration { text: String },
    #[error("`{text}`: number too large")]
    TooLarge { text: String },
    #[error("`{text}` is longer than 3650d (ten years)")]
    TooLong { text: String },
    #[error("`{text}`: missing unit after {number} (ms, s, m, h or d)")]
    MissingUnit { text: String, number: u64 },
    #[error("`{text}`: unknown unit `{unit}` (ms, s, m, h or d)")]
    UnknownUnit { text: String, unit: String },
}

/// Why a byte size does not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SizeError {
    #[error("`{text}` is not a size (write e.g. `8MiB`, `256MB`)")]
    NotASize { text: String },
    #[error("`{text}`: unknown size unit `{unit}` (B, KiB, MiB, GiB, KB, MB, GB)")]
    UnknownUnit { text: String, unit: String },
    #[error("`{text}` is out of range: a size is at least 1 byte and below 16 EiB")]
    OutOfRange { text: String },
}

/// The longest duration anything takes: ten years. Every duration a user writes stays within
/// what a timer, a clock and a Job field can add without overflowing.
pub const MAX_DURATION: Duration = Duration::from_secs(3650 * 86_400);

/// Parses a duration such as `10s`, `5m`, `1h30m`, `250ms` or `2d`. A bare number is seconds.
/// Durations longer than [`MAX_DURATION`] are refused.
pub fn parse_duration(text: &str) -> Result<Duration, DurationError> {
    let parsed = parse_unbounded(text)?;
    if parsed > MAX_DURATION {
        return Err(DurationError::TooLong {
            text: text.trim().into(),
        });
    }
    Ok(parsed)
}

fn parse_unbounded(text: &str) -> Result<Duration, DurationError> {
    let text = text.trim();
    if text.is_empty() {
        return Err(DurationError::Empty);
    }
    if let Ok(secs) = text.parse::<u64>() {
        return Ok(Duration::from_secs(secs));
    }
    let mut total = Duration::ZERO;
    let mut rest = text;
    while !rest.is_empty() {
        let digits = rest
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(rest.len());
        if digits == 0 {
            return Err(DurationError::NotADuration { text: text.into() });
        }
        let number: u64 = rest[..digits]
            .parse()
            .map_err(|_| DurationError::TooLarge { text: text.into() })?;
        rest = &rest[digits..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit())
            .unwrap_or(rest.len());
        let unit = rest[..unit_len].trim();
        rest = &rest[unit_len..];
        let part = match unit {
            "ms" => Duration::from_millis(number),
            "s" => Duration::from_secs(number),
            "m" => Duration::from_secs(number.saturating_mul(60)),
            "h" => Duration::from_secs(number.saturating_mul(3600)),
            "d" => Duration::from_secs(number.saturating_mul(86_400)),
            "" => {
                return Err(DurationError::MissingUnit {
                    text: text.into(),
                    number,
                });
            }
            other => {
                return Err(DurationError::UnknownUnit {
                    text: text.into(),
                    unit: other.into(),
                });
            }
        };
        total = total.saturating_add(part);
    }
    Ok(total)
}

/// Formats a duration compactly: `1h2m3s`, `450ms`.
pub fn format_duration(d: Duration) -> String {
    let ms = d.as_millis();
    if ms < 1000 {
        return format!("{ms}ms");
    }
    let secs = d.as_secs();
    let (h, m, s) = (secs / 3600, (secs % 3600) / 60, secs % 60);
    let mut out = String::new();
    if h > 0 {
        out.push_str(&format!("{h}h"));
    }
    if m > 0 {
        out.push_str(&format!("{m}m"));
    }
    if s > 0 || out.is_empty() {
        if h == 0 && m == 0 && secs < 10 {
            out.push_str(&format!("{:.1}s", d.as_secs_f64()));
        } else {
            out.push_str(&format!("{s}s"));
        }
    }
    out
}

/// Parses a byte size such as `8MiB`, `256MB`, `1GiB`, `4096` (bytes) or `64k`.
pub fn parse_bytes(text: &str) -> Result<u64, SizeError> {
    let text = text.trim();
    let split = text
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let number: f64 = number
        .parse()
        .map_err(|_| SizeError::NotASize { text: text.into() })?;
    let factor: f64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1.0,
        "k" | "kb" => 1e3,
        "ki" | "kib" => 1024.0,
        "m" | "mb" => 1e6,
        "mi" | "mib" => 1024.0 * 1024.0,
        "g" | "gb" => 1e9,
        "gi" | "gib" => 1024.0 * 1024.0 * 1024.0,
        other => {
            return Err(SizeError::UnknownUnit {
                text: text.into(),
                unit: other.into(),
            });
        }
    };
    let bytes = number * factor;
    if !(bytes.is_finite() && bytes >= 1.0 && bytes < u64::MAX as f64) {
        return Err(SizeError::OutOfRange { text: text.into() });
    }
    Ok(bytes as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_parse() {
        assert_eq!(parse_duration("30m"), Ok(Duration::from_secs(1800)));
        assert_eq!(parse_duration("1h30m"), Ok(Duration::from_secs(5400)));
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration("45"), Ok(Duration::from_secs(45)));
        assert!(parse_duration("5 minutes").is_err_and(|e| e.to_string().contains("unknown unit")));
        assert!(parse_duration("m5").is_err());
        assert!(parse_duration("").is_err());
        assert!(parse_duration("10").is_ok());
        assert!(parse_duration("1h5").is_err_and(|e| e.to_string().contains("missing unit")));
    }

    #[test]
    fn durations_beyond_ten_years_are_refused_not_saturated() {
        assert_eq!(parse_duration("3650d"), Ok(MAX_DURATION));
        for huge in [
            "3651d",
            "999999999999999d",
            "18446744073709551615",
            "99999999999h",
        ] {
            assert_eq!(
                parse_duration(huge).map_err(|e| e.to_string()),
                Err(format!("`{huge}` is longer than 3650d (ten years)"))
            );
        }
    }

    #[test]
    fn durations_format() {
        assert_eq!(format_duration(Duration::from_millis(450)), "450ms");
        assert_eq!(format_duration(Duration::from_millis(2500)), "2.5s");
        assert_eq!(format_duration(Duration::from_secs(3723)), "1h2m3s");
        assert_eq!(format_duration(Duration::from_secs(120)), "2m");
    }

    #[test]
    fn sizes_parse() {
        assert_eq!(parse_bytes("8MiB"), Ok(8 * 1024 * 1024));
        assert_eq!(parse_bytes("256MB"), Ok(256_000_000));
        assert_eq!(parse_bytes("4096"), Ok(4096));
        assert_eq!(parse_bytes("1.5KiB"), Ok(1536));
        assert_eq!(parse_bytes("64Mi"), Ok(64 << 20));
        assert_eq!(parse_bytes("2G"), Ok(2_000_000_000));
        assert!(parse_bytes("8 parsecs").is_err());
        assert!(parse_bytes("12Xi").is_err());
        assert!(parse_bytes("-1").is_err());
        assert_eq!(
            parse_bytes("0").map_err(|e| e.to_string()),
            Err("`0` is out of range: a size is at least 1 byte and below 16 EiB".into())
        );
        assert!(matches!(
            parse_bytes("99999999999999Gi"),
            Err(SizeError::OutOfRange { .. })
        ));
    }
}
