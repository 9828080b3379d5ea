//! The Connection's status as the Connection controller owns it, built by a pure function:
//! the connector type, the `Ready` condition with the check's verdict, the generation it
//! describes, and when the last check finished.

use chrono::{DateTime, Utc};
use synqx_api::connection::ConnectionStatus;

use crate::condition::{ConditionType, Reason, condition};
use crate::context::rfc3339;

/// A verdict on one generation of a Connection's spec.
pub struct Verdict<'a> {
    pub ready: bool,
    pub reason: Reason,
    pub message: &'a str,
    /// Whether a check Job gave it (then `lastChecked` moves to now).
    pub checked: bool,
}

pub fn connection_status(
    previous: &ConnectionStatus,
    kind: Option<String>,
    generation: Option<i64>,
    verdict: &Verdict<'_>,
    now: DateTime<Utc>,
) -> ConnectionStatus {
    let now = rfc3339(now);
    ConnectionStatus {
        r#type: kind,
        conditions: vec![condition(
            &previous.conditions,
            ConditionType::Ready,
            verdict.ready,
            verdict.reason,
            verdict.message,
            generation,
            &now,
        )],
        observed_generation: generation,
        last_checked: if verdict.checked {
            Some(now)
        } else {
            previous.last_checked.clone()
        },
    }
}

/// Whether the status already says this verdict about this generation.
pub fn says(previous: &ConnectionStatus, generation: Option<i64>, verdict: &Verdict<'_>) -> bool {
    previous.observed_generation == generation
        && previous
            .conditions
            .first()
            .is_some_and(|c| c.reason == verdict.reason.as_str() && c.message == verdict.message)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(seconds: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_800_000_000 + seconds, 0).unwrap_or_default()
    }

    #[test]
    fn a_check_moves_last_checked_and_a_missing_secret_keeps_it() {
        let checked = Verdict {
            ready: true,
            reason: Reason::Connected,
            message: "listed /lake",
            checked: true,
        };
        let first = connection_status(
            &ConnectionStatus::default(),
            Some("filesystem".into()),
            Some(2),
            &checked,
            at(0),
        );
        assert_eq!(first.last_checked.as_deref(), Some("2027-01-15T08:00:00Z"));
        assert_eq!(first.conditions[0].reason, "Connected");
        assert!(says(&first, Some(2), &checked));
        assert!(!says(&first, Some(3), &checked));

        let missing = Verdict {
            ready: false,
            reason: Reason::SecretNotFound,
            message: "password: Secret \"db\" does not exist",
            checked: false,
        };
        let second =
            connection_status(&first, Some("filesystem".into()), Some(3), &missing, at(60));
        assert_eq!(second.last_checked, first.last_checked);
        assert_eq!(
            (
                second.conditions[0].status.as_str(),
                second.conditions[0].reason.as_str()
            ),
            ("False", "SecretNotFound")
        );
        assert_eq!(
            second.conditions[0].last_transition_time.as_deref(),
            Some("2027-01-15T08:01:00Z")
        );
    }
}
