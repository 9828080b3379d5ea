//! The delay between attempts of a step, from its retry policy. Written once: `synqx run`
//! sleeps it, the operator requeues for it.

use std::time::Duration;

use crate::duration::parse_duration;
use crate::pipeline::RetryPolicy;

/// The first delay when the policy names none.
pub const DEFAULT_INITIAL: Duration = Duration::from_secs(10);
/// The longest delay when the policy names none.
pub const DEFAULT_MAX: Duration = Duration::from_secs(300);
/// The growth per attempt when the policy names none.
pub const DEFAULT_FACTOR: f64 = 2.0;

/// The delay before attempt `next` (2, 3, ...): `initial × factor^(next-2)`, at most `max`.
/// Durations that do not parse (validation reports them) fall back to the defaults.
pub fn backoff(policy: Option<&RetryPolicy>, next: u32) -> Duration {
    let backoff = policy.and_then(|p| p.backoff.as_ref());
    let parsed = |text: Option<&String>, default: Duration| {
        text.and_then(|d| parse_duration(d).ok()).unwrap_or(default)
    };
    let initial = parsed(backoff.and_then(|b| b.initial.as_ref()), DEFAULT_INITIAL);
    let max = parsed(backoff.and_then(|b| b.max.as_ref()), DEFAULT_MAX);
    let factor = backoff
        .and_then(|b| b.factor)
        .filter(|f| f.is_finite())
        .unwrap_or(DEFAULT_FACTOR)
        .max(1.0);
    exponential(initial, factor, max, next)
}

/// The delay before attempt `next` (2, 3, ...) of an exponential backoff: `initial ×
/// factor^(next-2)`, at most `max`; no input overflows. The one formula of every retry in
/// SynqX: a step's retry policy here, a connector's retry of a transient failure
/// (`RetrySchedule` of the runner's connectors).
pub fn exponential(initial: Duration, factor: f64, max: Duration, next: u32) -> Duration {
    let exponent = i32::try_from(next.saturating_sub(2).min(64)).unwrap_or(64);
    let seconds = (initial.as_secs_f64() * factor.powi(exponent)).min(max.as_secs_f64());
    Duration::try_from_secs_f64(seconds).unwrap_or(max)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pipeline::Backoff;

    fn policy(initial: &str, factor: f64, max: &str) -> RetryPolicy {
        RetryPolicy {
            limit: 10,
            backoff: Some(Backoff {
                initial: Some(initial.into()),
                factor: Some(factor),
                max: Some(max.into()),
            }),
        }
    }

    #[test]
    fn backoff_grows_by_factor_up_to_max() {
        let p = policy("1s", 2.0, "5s");
        let delays: Vec<u64> = (2..=6).map(|n| backoff(Some(&p), n).as_secs()).collect();
        assert_eq!(delays, [1, 2, 4, 5, 5]);
    }

    #[test]
    fn defaults_are_10s_doubling_up_to_5m() {
        let delays: Vec<u64> = [2, 3, 4, 7, 100]
            .iter()
            .map(|n| backoff(None, *n).as_secs())
            .collect();
        assert_eq!(delays, [10, 20, 40, 300, 300]);
    }

    #[test]
    fn factors_below_one_and_huge_exponents_stay_in_bounds() {
        let p = policy("3s", 0.5, "1m");
        assert_eq!(backoff(Some(&p), 5), Duration::from_secs(3));
        let p = policy("3s", 1e300, "1m");
        assert_eq!(backoff(Some(&p), u32::MAX), Duration::from_secs(60));
    }
}
