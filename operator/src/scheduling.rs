//! When a Pipeline's schedule fires and what it does then, as CronJobs do: decided from the
//! clock passed in, the last fire time handled and the active runs, so every rule is tested
//! with an injected clock.

use chrono::{DateTime, Duration, Utc};
use synqx_api::pipeline::{ConcurrencyPolicy, Schedule};
use synqx_api::schedule::{ScheduleError, next_fire_time};

/// What the schedule does now.
#[derive(Debug, PartialEq)]
pub enum Fire {
    /// Nothing is due.
    Nothing,
    /// Create the run for fire time `at`, after cancelling `cancel` (Replace).
    Run { at: DateTime<Utc>, cancel: bool },
    /// The fire time `at` is handled without a run, for `reason`.
    Skip { at: DateTime<Utc>, reason: String },
}

#[derive(Debug, PartialEq)]
pub struct ScheduleDecision {
    pub fire: Fire,
    /// The next fire time after now: when to look again.
    pub next: Option<DateTime<Utc>>,
}

/// Decides for a schedule at `now`. `last` is the last fire time handled (or the Pipeline's
/// creation); only the most recent missed fire time counts, as for CronJobs.
pub fn decide(
    schedule: &Schedule,
    last: DateTime<Utc>,
    now: DateTime<Utc>,
    active_runs: usize,
) -> Result<ScheduleDecision, ScheduleError> {
    let next = next_fire_time(schedule, now)?;
    if schedule.suspend == Some(true) {
        return Ok(ScheduleDecision {
            fire: Fire::Nothing,
            next: None,
        });
    }
    // The most recent fire time in (last, now].
    let mut due = None;
    let mut at = next_fire_time(schedule, last)?;
    let mut steps = 0;
    while at <= now {
        due = Some(at);
        at = next_fire_time(schedule, at)?;
        steps += 1;
        if steps > 100_000 {
            // A very old `last` (months of minutes): jump close to now and keep looking.
            at = next_fire_time(schedule, now - Duration::days(1))?;
            steps = 0;
        }
    }
    let Some(due) = due else {
        return Ok(ScheduleDecision {
            fire: Fire::Nothing,
            next: Some(next),
        });
    };
    // A deadline too long for the clock to hold is never missed (validation refuses it; an
    // object from before that still must not panic here).
    if let Some(deadline) = schedule.starting_deadline_seconds
        && Duration::try_seconds(deadline).is_some_and(|limit| now - due > limit)
    {
        let reason =
            format!("missed the fire time by more than startingDeadlineSeconds ({deadline}s)");
        return Ok(ScheduleDecision {
            fire: Fire::Skip { at: due, reason },
            next: Some(next),
        });
    }
    let fire = match (schedule.concurrency_policy.unwrap_or_default(), active_runs) {
        (_, 0) | (ConcurrencyPolicy::Allow, _) => Fire::Run {
            at: due,
            cancel: false,
        },
        (ConcurrencyPolicy::Forbid, n) => Fire::Skip {
            at: due,
            reason: format!("{n} run(s) still active (concurrencyPolicy: Forbid)"),
        },
        (ConcurrencyPolicy::Replace, _) => Fire::Run {
            at: due,
            cancel: true,
        },
    };
    Ok(ScheduleDecision {
        fire,
        next: Some(next),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn utc(y: i32, mo: u32, d: u32, h: u32, mi: u32, s: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(y, mo, d, h, mi, s)
            .single()
            .unwrap_or_default()
    }

    fn schedule(cron: &str) -> Schedule {
        Schedule {
            cron: cron.into(),
            ..Default::default()
        }
    }

    #[test]
    fn fires_once_per_due_time_and_waits_for_the_next() {
        let s = schedule("*/15 * * * *");
        let created = utc(2026, 11, 27, 10, 3, 0);
        let d = decide(&s, created, utc(2026, 11, 27, 10, 10, 0), 0).expect("decide");
        assert_eq!(
            d,
            ScheduleDecision {
                fire: Fire::Nothing,
                next: Some(utc(2026, 11, 27, 10, 15, 0))
            }
        );

        let d = decide(&s, created, utc(2026, 11, 27, 10, 15, 2), 0).expect("decide");
        assert_eq!(
            d.fire,
            Fire::Run {
                at: utc(2026, 11, 27, 10, 15, 0),
                cancel: false
            }
        );
        // Once handled, the same time never fires again.
        let d = decide(
            &s,
            utc(2026, 11, 27, 10, 15, 0),
            utc(2026, 11, 27, 10, 16, 0),
            0,
        )
        .expect("decide");
        assert_eq!(d.fire, Fire::Nothing);
    }

    #[test]
    fn only_the_most_recent_missed_time_runs_unless_past_the_deadline() {
        let mut s = schedule("0 * * * *");
        let last = utc(2026, 11, 27, 6, 0, 0);
        let now = utc(2026, 11, 27, 10, 0, 30);
        let d = decide(&s, last, now, 0).expect("decide");
        assert_eq!(
            d.fire,
            Fire::Run {
                at: utc(2026, 11, 27, 10, 0, 0),
                cancel: false
            }
        );

        s.starting_deadline_seconds = Some(20);
        let d = decide(&s, last, now, 0).expect("decide");
        assert!(
            matches!(d.fire, Fire::Skip { at, .. } if at == utc(2026, 11, 27, 10, 0, 0)),
            "{d:?}"
        );
    }

    #[test]
    fn a_deadline_too_long_for_the_clock_is_never_missed() {
        let mut s = schedule("0 * * * *");
        let last = utc(2026, 11, 27, 6, 0, 0);
        let now = utc(2026, 11, 27, 10, 0, 30);
        for deadline in [i64::MAX, i64::MAX / 1000, i64::MIN] {
            s.starting_deadline_seconds = Some(deadline);
            let d = decide(&s, last, now, 0).expect("decide");
            assert!(matches!(d.fire, Fire::Run { .. }), "{deadline}: {d:?}");
        }
    }

    #[test]
    fn concurrency_policies() {
        let mut s = schedule("* * * * *");
        let last = utc(2026, 11, 27, 10, 0, 0);
        let now = utc(2026, 11, 27, 10, 1, 1);
        let at = utc(2026, 11, 27, 10, 1, 0);
        s.concurrency_policy = Some(ConcurrencyPolicy::Allow);
        assert_eq!(
            decide(&s, last, now, 1).expect("decide").fire,
            Fire::Run { at, cancel: false }
        );
        s.concurrency_policy = Some(ConcurrencyPolicy::Forbid);
        assert!(matches!(
            decide(&s, last, now, 1).expect("decide").fire,
            Fire::Skip { .. }
        ));
        assert_eq!(
            decide(&s, last, now, 0).expect("decide").fire,
            Fire::Run { at, cancel: false }
        );
        s.concurrency_policy = Some(ConcurrencyPolicy::Replace);
        assert_eq!(
            decide(&s, last, now, 2).expect("decide").fire,
            Fire::Run { at, cancel: true }
        );
        // Forbid is the default.
        s.concurrency_policy = None;
        assert!(matches!(
            decide(&s, last, now, 1).expect("decide").fire,
            Fire::Skip { .. }
        ));
    }

    #[test]
    fn suspended_schedules_create_nothing() {
        let mut s = schedule("* * * * *");
        s.suspend = Some(true);
        let d = decide(
            &s,
            utc(2026, 11, 27, 10, 0, 0),
            utc(2026, 11, 27, 11, 0, 0),
            0,
        )
        .expect("decide");
        assert_eq!(
            d,
            ScheduleDecision {
                fire: Fire::Nothing,
                next: None
            }
        );
    }

    #[test]
    fn time_zones_and_daylight_saving_time() {
        // 02:30 every day in Berlin: on 2026-03-29 clocks jump from 02:00 to 03:00, so that
        // day has no 02:30; the next day fires at 02:30 CEST = 00:30 UTC.
        let mut s = schedule("30 2 * * *");
        s.time_zone = Some("Europe/Berlin".into());
        let last = utc(2026, 3, 28, 1, 30, 0);
        let d = decide(&s, last, utc(2026, 3, 28, 12, 0, 0), 0).expect("decide");
        let next = d.next.expect("next");
        assert!(
            next > utc(2026, 3, 28, 12, 0, 0) && next <= utc(2026, 3, 30, 0, 30, 0),
            "{next}"
        );
        let d = decide(&s, last, utc(2026, 3, 30, 0, 31, 0), 0).expect("decide");
        assert_eq!(
            d.fire,
            Fire::Run {
                at: utc(2026, 3, 30, 0, 30, 0),
                cancel: false
            }
        );

        // In winter the same expression is 01:30 UTC.
        let d = decide(
            &s,
            utc(2026, 11, 27, 0, 0, 0),
            utc(2026, 11, 27, 1, 30, 5),
            0,
        )
        .expect("decide");
        assert_eq!(
            d.fire,
            Fire::Run {
                at: utc(2026, 11, 27, 1, 30, 0),
                cancel: false
            }
        );
    }

    #[test]
    fn a_long_outage_still_finds_the_latest_time_quickly() {
        let s = schedule("* * * * *");
        let d = decide(
            &s,
            utc(2025, 1, 1, 0, 0, 0),
            utc(2026, 11, 27, 10, 0, 30),
            0,
        )
        .expect("decide");
        assert_eq!(
            d.fire,
            Fire::Run {
                at: utc(2026, 11, 27, 10, 0, 0),
                cancel: false
            }
        );
    }
}
