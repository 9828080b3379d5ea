//! Status conditions: their types and reasons, named once, and the helper that builds a
//! condition keeping its transition time while its status does not change.

use synqx_api::condition::Condition;
use synqx_api::connection::CheckReason;

/// The condition types the operator writes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ConditionType {
    /// Pipeline: compiled; Connection: its last check connected.
    Ready,
    /// Pipeline: every Connection its steps use passed its check.
    ConnectionsReady,
    /// PipelineRun: how it ended.
    Succeeded,
    /// PipelineRun: waiting for its Pipeline to become Ready.
    Waiting,
}

impl ConditionType {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Ready => "Ready",
            Self::ConnectionsReady => "ConnectionsReady",
            Self::Succeeded => "Succeeded",
            Self::Waiting => "Waiting",
        }
    }
}

/// The reasons of the conditions the operator writes (and the Events that go with them).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reason {
    /// Pipeline Ready: compiled into a plan.
    Compiled,
    /// Pipeline Ready, Connection Ready: the spec has a problem only an edit fixes.
    Invalid,
    /// Pipeline ConnectionsReady.
    ConnectionsReady,
    /// Pipeline ConnectionsReady: some Connection failed its check or was not checked yet.
    ConnectionsNotReady,
    /// PipelineRun Succeeded.
    Succeeded,
    /// PipelineRun Succeeded false: cancelled.
    Cancelled,
    /// PipelineRun Succeeded false: steps failed.
    StepsFailed,
    /// PipelineRun Succeeded false: its Pipeline does not exist.
    PipelineNotFound,
    /// PipelineRun Succeeded false: the revision it pinned was deleted.
    RevisionMissing,
    /// PipelineRun Waiting: the Pipeline is not Ready (or not compiled yet).
    PipelineNotReady,
    /// Connection Ready false: a check Job runs.
    Checking,
    /// Connection Ready false: a referenced Secret or key is missing.
    SecretNotFound,
    /// Connection Ready false: a referenced Secret has not opted in to Connections (label
    /// `synqx.io/connection-secret: "true"`).
    SecretNotLabeled,
    /// Connection Ready: the check connected, authenticated and reached the target.
    Connected,
    /// Connection Ready false: the system could not be reached in time.
    Unreachable,
    /// Connection Ready false: the credentials were refused.
    Unauthorized,
    /// Connection Ready false: the database, bucket or folder does not exist.
    NotFound,
    /// Connection Ready false: this connector cannot be checked.
    Unsupported,
    /// Connection Ready false: the check Job ended without a report.
    CheckFailed,
    /// Any kind: the operator's reconciliation of the object panicked.
    OperatorError,
}

impl Reason {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Compiled => "Compiled",
            Self::Invalid => "Invalid",
            Self::ConnectionsReady => "Ready",
            Self::ConnectionsNotReady => "NotReady",
            Self::Succeeded => "Succeeded",
            Self::Cancelled => "Cancelled",
            Self::StepsFailed => "StepsFailed",
            Self::PipelineNotFound => "PipelineNotFound",
            Self::RevisionMissing => "RevisionMissing",
            Self::PipelineNotReady => "PipelineNotReady",
            Self::Checking => "Checking",
            Self::SecretNotFound => "SecretNotFound",
            Self::SecretNotLabeled => "SecretNotLabeled",
            Self::Connected => "Connected",
            Self::Unreachable => "Unreachable",
            Self::Unauthorized => "Unauthorized",
            Self::NotFound => "NotFound",
            Self::Unsupported => "Unsupported",
            Self::CheckFailed => "CheckFailed",
            Self::OperatorError => "OperatorError",
        }
    }

    /// The condition's reason for the reason a check report names.
    pub fn of_check(reason: CheckReason) -> Self {
        match reason {
            CheckReason::Connected => Self::Connected,
            CheckReason::Unreachable => Self::Unreachable,
            CheckReason::Unauthorized => Self::Unauthorized,
            CheckReason::NotFound => Self::NotFound,
            CheckReason::Invalid => Self::Invalid,
            CheckReason::Unsupported => Self::Unsupported,
        }
    }
}

/// A condition of `kind`, keeping the transition time of the one in `existing` when its status
/// did not change; `now` otherwise.
pub fn condition(
    existing: &[Condition],
    kind: ConditionType,
    ok: bool,
    reason: Reason,
    message: &str,
    generation: Option<i64>,
    now: &str,
) -> Condition {
    let status = if ok { "True" } else { "False" };
    let since = existing
        .iter()
        .find(|c| c.r#type == kind.as_str())
        .filter(|c| c.status == status)
        .and_then(|c| c.last_transition_time.clone());
    Condition {
        r#type: kind.as_str().into(),
        status: status.into(),
        reason: reason.as_str().into(),
        message: message.chars().take(4000).collect(),
        last_transition_time: since.or_else(|| Some(now.to_string())),
        observed_generation: generation,
    }
}

/// The condition of `kind` in `conditions`.
pub fn find(conditions: &[Condition], kind: ConditionType) -> Option<&Condition> {
    conditions.iter().find(|c| c.r#type == kind.as_str())
}

/// Whether the condition of `kind` is `True`.
pub fn is_true(conditions: &[Condition], kind: ConditionType) -> bool {
    find(conditions, kind).is_some_and(|c| c.status == "True")
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: &str = "2026-12-01T10:00:00Z";
    const EARLIER: &str = "2026-01-01T00:00:00Z";

    #[test]
    fn conditions_keep_their_transition_time_while_unchanged() {
        let ready = ConditionType::Ready;
        let first = condition(&[], ready, true, Reason::Compiled, "ok", Some(1), EARLIER);
        assert_eq!(first.last_transition_time.as_deref(), Some(EARLIER));
        let again = condition(
            std::slice::from_ref(&first),
            ready,
            true,
            Reason::Compiled,
            "ok",
            Some(2),
            NOW,
        );
        assert_eq!(again.last_transition_time.as_deref(), Some(EARLIER));
        assert_eq!(again.observed_generation, Some(2));
        let flipped = condition(&[first], ready, false, Reason::Invalid, "bad", Some(2), NOW);
        assert_eq!(flipped.last_transition_time.as_deref(), Some(NOW));
        assert_eq!(
            (flipped.status.as_str(), flipped.reason.as_str()),
            ("False", "Invalid")
        );
    }

    /// Each reason of a check names the condition's reason of the same text; a report with a
    /// reason this version does not know is no report (the check then counts as failed,
    /// `CheckFailed`, like one that ended without a report).
    #[test]
    fn check_reasons_are_read_back_and_unknown_ones_are_no_report() {
        for reason in CheckReason::ALL {
            assert_eq!(Reason::of_check(reason).as_str(), reason.as_str());
            let text = format!(
                r#"{{"ready":false,"reason":"{}","message":"m"}}"#,
                reason.as_str()
            );
            let report: synqx_api::connection::CheckReport =
                serde_json::from_str(&text).unwrap_or_else(|e| panic!("{text}: {e}"));
            assert_eq!(report.reason, reason);
        }
        let unknown = r#"{"ready":false,"reason":"Exploded","message":"m"}"#;
        assert!(serde_json::from_str::<synqx_api::connection::CheckReport>(unknown).is_err());
    }
}
