//! Cron schedules read in an IANA time zone.

use std::str::FromStr;

use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use croner::Cron;
use croner::parser::{CronParser, Seconds, Year};

use crate::pipeline::Schedule;

/// Why a schedule cannot be evaluated.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ScheduleError {
    #[error(
        "invalid cron expression `{expression}`: {reason} (five fields: minute hour day-of-month month day-of-week, e.g. `*/15 * * * *`)"
    )]
    InvalidCron { expression: String, reason: String },
    #[error("unknown time zone `{name}` (use an IANA name such as `UTC` or `Europe/Berlin`)")]
    UnknownTimeZone { name: String },
    #[error("cron expression `{expression}` never fires: {reason}")]
    NeverFires { expression: String, reason: String },
}

/// Parses a five-field cron expression (or a macro such as `@hourly`), as Kubernetes CronJobs
/// accept them: no seconds field, no year field.
pub fn parse_cron(expression: &str) -> Result<Cron, ScheduleError> {
    CronParser::builder()
        .seconds(Seconds::Disallowed)
        .year(Year::Disallowed)
        .build()
        .parse(expression)
        .map_err(|e| ScheduleError::InvalidCron {
            expression: expression.into(),
            reason: e.to_string(),
        })
}

/// Parses an IANA time zone name such as `Europe/Berlin`.
pub fn parse_time_zone(name: &str) -> Result<Tz, ScheduleError> {
    Tz::from_str(name).map_err(|_| ScheduleError::UnknownTimeZone { name: name.into() })
}

/// The first time strictly after `after` at which the schedule fires.
pub fn next_fire_time(
    schedule: &Schedule,
    after: DateTime<Utc>,
) -> Result<DateTime<Utc>, ScheduleError> {
    let cron = parse_cron(&schedule.cron)?;
    let tz = parse_time_zone(schedule.time_zone.as_deref().unwrap_or("UTC"))?;
    let local = after.with_timezone(&tz);
    cron.find_next_occurrence(&local, false)
        .map(|t| t.with_timezone(&Utc))
        .map_err(|e| ScheduleError::NeverFires {
            expression: schedule.cron.clone(),
            reason: e.to_string(),
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn cron_takes_five_fields_and_macros() {
        assert!(parse_cron("*/15 * * * *").is_ok());
        assert!(parse_cron("@hourly").is_ok());
        assert!(parse_cron("0 */15 * * * *").is_err());
        assert!(
            parse_cron("61 * * * *")
                .is_err_and(|e| e.to_string().contains("invalid cron expression"))
        );
        assert!(parse_cron("").is_err());
    }

    #[test]
    fn time_zones_are_iana() {
        assert!(parse_time_zone("Europe/Berlin").is_ok());
        assert!(
            parse_time_zone("Mars/Olympus")
                .is_err_and(|e| e.to_string().contains("unknown time zone"))
        );
    }

    #[test]
    fn next_fire_time_respects_the_time_zone() {
        let schedule = Schedule {
            cron: "0 9 * * *".into(),
            time_zone: Some("Europe/Berlin".into()),
            ..Default::default()
        };
        // 2026-07-01 is summer time in Berlin (UTC+2): 09:00 local is 07:00 UTC.
        let after = Utc
            .with_ymd_and_hms(2026, 7, 1, 0, 0, 0)
            .single()
            .unwrap_or_default();
        let next = next_fire_time(&schedule, after);
        assert_eq!(
            next,
            Ok(Utc
                .with_ymd_and_hms(2026, 7, 1, 7, 0, 0)
                .single()
                .unwrap_or_default())
        );
    }
}
