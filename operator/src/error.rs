//! Why a reconciliation failed. Each error keeps its source and has a kind, the `kind` label
//! of `synqx_reconcile_errors_total`, so a dashboard tells an unreachable API server from a
//! missing permission or a corrupt revision.

use synqx_api::schedule::ScheduleError;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("Kubernetes API: {0}")]
    Api(#[from] kube::Error),
    #[error("ControllerRevision {revision} does not hold a plan: {source}")]
    Revision {
        revision: String,
        #[source]
        source: serde_json::Error,
    },
    #[error("the plan of Pipeline {pipeline} cannot be stored: {source}")]
    Plan {
        pipeline: String,
        #[source]
        source: serde_json::Error,
    },
    #[error("the schedule of Pipeline {pipeline}: {source}")]
    Schedule {
        pipeline: String,
        #[source]
        source: ScheduleError,
    },
    #[error("resumeFrom names run \"{run}\", which does not exist")]
    ResumeFrom { run: String },
    /// The vault of a namespace cannot be read (a damaged `synqx-vault` Secret).
    #[error("the vault of namespace {namespace}: {source}")]
    Vault {
        namespace: String,
        #[source]
        source: synqx_api::vault::VaultError,
    },
    /// An object of ours would take a name someone else's object holds.
    #[error("{kind} {name} exists and belongs to another object: delete or rename it")]
    NameTaken { kind: &'static str, name: String },
    /// The reconciliation panicked; the object failed, the operator serves the rest.
    #[error("the operator failed on this object: {message}")]
    Panicked { message: String },
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// The kind of a failed reconciliation, as a metric label.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ErrorKind {
    /// The API server refused for lack of permission (RBAC).
    Forbidden,
    /// A write lost a race with another writer.
    Conflict,
    /// The API server could not be reached or did not answer.
    Unreachable,
    /// Any other answer of the API server.
    Api,
    /// A ControllerRevision whose plan cannot be read or written.
    Revision,
    /// A schedule that cannot be evaluated.
    Schedule,
    /// A run that resumes from a run that does not exist.
    ResumeFrom,
    /// A namespace's vault keyring that cannot be read.
    Vault,
    /// A reconciliation that panicked.
    Panic,
    /// A name of ours held by someone else's object.
    NameTaken,
}

impl ErrorKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Forbidden => "forbidden",
            Self::Conflict => "conflict",
            Self::Unreachable => "unreachable",
            Self::Api => "api",
            Self::Revision => "revision",
            Self::Schedule => "schedule",
            Self::ResumeFrom => "resume_from",
            Self::Vault => "vault",
            Self::Panic => "panic",
            Self::NameTaken => "name_taken",
        }
    }
}

impl Error {
    pub fn kind(&self) -> ErrorKind {
        match self {
            Self::Api(kube::Error::Api(status)) if status.is_forbidden() => ErrorKind::Forbidden,
            Self::Api(kube::Error::Api(status)) if status.code == 409 => ErrorKind::Conflict,
            Self::Api(kube::Error::Api(_)) => ErrorKind::Api,
            Self::Api(kube::Error::HyperError(_) | kube::Error::Service(_)) => {
                ErrorKind::Unreachable
            }
            Self::Api(_) => ErrorKind::Api,
            Self::Revision { .. } | Self::Plan { .. } => ErrorKind::Revision,
            Self::Schedule { .. } => ErrorKind::Schedule,
            Self::ResumeFrom { .. } => ErrorKind::ResumeFrom,
            Self::Vault { .. } => ErrorKind::Vault,
            Self::Panicked { .. } => ErrorKind::Panic,
            Self::NameTaken { .. } => ErrorKind::NameTaken,
        }
    }
}

/// Whether the API server answered 404.
pub fn is_not_found(error: &kube::Error) -> bool {
    matches!(error, kube::Error::Api(status) if status.code == 404)
}

/// Whether the API server answered 409: the object exists already, or changed meanwhile.
pub fn is_conflict(error: &kube::Error) -> bool {
    matches!(error, kube::Error::Api(status) if status.code == 409)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn api(code: u16, reason: &str) -> Error {
        let status = kube::core::Status::failure("no", reason).with_code(code);
        Error::Api(kube::Error::Api(Box::new(status)))
    }

    #[test]
    fn api_answers_have_kinds_by_what_went_wrong() {
        assert_eq!(api(403, "Forbidden").kind(), ErrorKind::Forbidden);
        assert_eq!(api(409, "Conflict").kind(), ErrorKind::Conflict);
        assert_eq!(api(500, "InternalError").kind(), ErrorKind::Api);
        let missing = Error::ResumeFrom { run: "r".into() };
        assert_eq!(missing.kind().as_str(), "resume_from");
        assert_eq!(
            missing.to_string(),
            "resumeFrom names run \"r\", which does not exist"
        );
    }

    #[test]
    fn a_corrupt_revision_keeps_the_json_error_as_its_source() {
        let source = serde_json::from_str::<u32>("x").expect_err("not JSON");
        let error = Error::Revision {
            revision: "p-1".into(),
            source,
        };
        assert_eq!(error.kind(), ErrorKind::Revision);
        assert!(std::error::Error::source(&error).is_some());
    }
}
