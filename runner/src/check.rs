//! `synqx check`: whether a Connection can be used. Each connector probes its system
//! ([`crate::connectors::check`]): it connects, authenticates and reaches the target, quickly
//! and without writing data. The outcome is a [`CheckReport`]: in a check Job (the operator
//! starts it) the report goes to the termination message, which the operator reads into the
//! Connection's `Ready` condition.

use std::time::{Duration, Instant};

use kube::{Api, Client};
use synqx_api::Connection;
use synqx_api::connection::CheckReport;
use synqx_api::connection::ConnectionSpec;
use synqx_api::telemetry::CONNECTION_ENV;

use crate::connectors::{self, ConnectionRef};
use crate::error::Error;
use crate::pod::{PodEnv, TerminationMessage, explain, is_not_found, write_termination_message};

/// Longest wait for the Kubernetes API to return the Connection.
const API_TIMEOUT: Duration = Duration::from_secs(20);

pub use synqx_api::connection::CheckReason;

/// A report: ready exactly when `reason` is [`CheckReason::Connected`].
pub fn report(reason: CheckReason, message: impl Into<String>) -> CheckReport {
    CheckReport {
        ready: reason == CheckReason::Connected,
        reason,
        message: message.into(),
    }
}

/// The report of a Connection that cannot be opened as written (a configuration error of its
/// connector: a bad field or a missing secret).
pub fn invalid(error: &Error) -> CheckReport {
    report(CheckReason::Invalid, error.to_string())
}

/// 0 when the Connection is ready, 1 otherwise.
pub fn exit_code(report: &CheckReport) -> u8 {
    if report.ready { 0 } else { 1 }
}

/// One line: `LABEL: OK: message` or `LABEL: REASON: message`, the message without the
/// `Connection "NAME": ` it starts with (the label names the Connection already).
pub fn summary(label: &str, name: &str, report: &CheckReport) -> String {
    let prefix = format!("Connection \"{name}\": ");
    let message = report
        .message
        .strip_prefix(&prefix)
        .unwrap_or(&report.message);
    let outcome = if report.ready {
        "OK"
    } else {
        report.reason.as_str()
    };
    format!("{label}: {outcome}: {message}")
}

/// Checks the Connection `name` of the cluster: takes its spec from `$SYNQX_CONNECTION`
/// (else, run by hand, reads it from the cluster with the kube client's credentials), probes it with the
/// credentials of the environment, writes the report to the termination message and a line
/// to stderr. `namespace` defaults to the kube client's. Never fails: every error ends in a
/// report that is not ready.
pub async fn in_cluster(namespace: Option<String>, name: &str, env: &PodEnv) -> CheckReport {
    let started = Instant::now();
    let given = env
        .connection
        .as_deref()
        .map(serde_json::from_str::<ConnectionSpec>);
    let (namespace, report) = match given {
        // The operator's check Jobs: the spec comes with the pod, which holds no credentials.
        Some(Ok(spec)) => (namespace.unwrap_or_default(), probe(name, &spec, env).await),
        Some(Err(e)) => (
            namespace.unwrap_or_default(),
            report(
                CheckReason::Invalid,
                format!(
                    "Connection \"{name}\": ${CONNECTION_ENV} does not hold a Connection spec: {e} (the operator and the runner image are of different SynqX versions)"
                ),
            ),
        ),
        None => from_api(namespace, name, env).await,
    };
    let label = if namespace.is_empty() {
        format!("synqx check: Connection \"{name}\"")
    } else {
        format!("synqx check: Connection \"{namespace}/{name}\"")
    };
    eprintln!(
        "{} ({:.1}s)",
        summary(&label, name, &report),
        started.elapsed().as_secs_f64()
    );
    if let Err(e) = write_termination_message(&env.termination_path, &report) {
        eprintln!(
            "{label}: cannot write the termination message to {}: {e} (the line above is the outcome)",
            env.termination_path.display()
        );
    }
    report
}

/// Probes the Connection `name` with the credentials of the environment.
async fn probe(name: &str, spec: &ConnectionSpec, env: &PodEnv) -> CheckReport {
    let conn = ConnectionRef {
        name,
        spec,
        base_dir: env.work_dir.clone(),
        secrets: &env.secrets,
    };
    connectors::check(&conn).await
}

/// The Connection read from the API (`synqx check --connection NAME` run by hand), probed.
async fn from_api(namespace: Option<String>, name: &str, env: &PodEnv) -> (String, CheckReport) {
    match Client::try_default().await {
        Err(e) => (
            namespace.unwrap_or_default(),
            report(
                CheckReason::Unreachable,
                format!(
                    "Connection \"{name}\": cannot reach the Kubernetes API to read the Connection: {e} (in a pod this needs the service account token; elsewhere set KUBECONFIG)"
                ),
            ),
        ),
        Ok(client) => {
            let namespace = namespace
                .filter(|n| !n.is_empty())
                .unwrap_or_else(|| client.default_namespace().to_string());
            let report = match read(client, &namespace, name).await {
                Ok(connection) => probe(name, &connection.spec, env).await,
                Err(report) => report,
            };
            (namespace, report)
        }
    }
}

/// The Connection from the API, or the report of why it cannot be read.
async fn read(client: Client, namespace: &str, name: &str) -> Result<Connection, CheckReport> {
    let connections: Api<Connection> = Api::namespaced(client, namespace);
    let Ok(got) = tokio::time::timeout(API_TIMEOUT, connections.get(name)).await else {
        return Err(report(
            CheckReason::Unreachable,
            format!(
                "Connection \"{name}\": the Kubernetes API did not return it within {}s: check the pod's network policy and the API server",
                API_TIMEOUT.as_secs()
            ),
        ));
    };
    got.map_err(|e| {
        if is_not_found(&e) {
            report(
                CheckReason::NotFound,
                format!(
                    "Connection \"{name}\" does not exist in namespace \"{namespace}\": it was deleted, so there is nothing to check"
                ),
            )
        } else {
            let reason = match &e {
                kube::Error::Api(s) if s.is_forbidden() || s.code == 401 => CheckReason::Unauthorized,
                _ => CheckReason::Unreachable,
            };
            report(
                reason,
                format!(
                    "Connection \"{name}\": cannot read it from the Kubernetes API: {}",
                    explain(&e, "get on connections.synqx.io")
                ),
            )
        }
    })
}

impl TerminationMessage for CheckReport {
    /// The report as JSON, its message cut to fit what Kubernetes keeps.
    fn to_termination_message(&self) -> String {
        let mut report = self.clone();
        loop {
            let json = serde_json::to_string(&report).unwrap_or_default();
            let excess = json.len().saturating_sub(Self::MAX_BYTES);
            if excess == 0 || report.message.is_empty() {
                return json;
            }
            // Escaped characters take more room in JSON than in the message: cut again until
            // it fits.
            let mut cut = report.message.len().saturating_sub(excess + 3);
            while !report.message.is_char_boundary(cut) {
                cut -= 1;
            }
            report.message.truncate(cut);
            if cut > 0 {
                report.message.push_str("...");
            }
        }
    }
}

/// Checks a Connection built from `spec`, its relative paths under `base`, with no secrets.
#[cfg(test)]
pub async fn check_spec(
    name: &str,
    spec: synqx_api::ConnectionSpec,
    base: &std::path::Path,
) -> CheckReport {
    let secrets = crate::secrets::Secrets::default();
    let conn = ConnectionRef {
        name,
        spec: &spec,
        base_dir: base.to_path_buf(),
        secrets: &secrets,
    };
    connectors::check(&conn).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reports_are_ready_only_when_connected() {
        let ok = report(CheckReason::Connected, "Connection \"lake\": listed /data");
        assert!(ok.ready);
        assert_eq!(ok.reason.as_str(), "Connected");
        assert_eq!(exit_code(&ok), 0);
        let down = report(CheckReason::Unreachable, "Connection \"lake\": refused");
        assert!(!down.ready);
        assert_eq!(down.reason.as_str(), "Unreachable");
        assert_eq!(exit_code(&down), 1);
        assert_eq!(
            invalid(&Error::Config(
                "Connection \"x\": s3.bucket is empty".into()
            )),
            report(CheckReason::Invalid, "Connection \"x\": s3.bucket is empty")
        );
    }

    #[test]
    fn the_summary_names_the_connection_once() {
        assert_eq!(
            summary(
                "lake",
                "lake",
                &report(CheckReason::Connected, "Connection \"lake\": listed /data")
            ),
            "lake: OK: listed /data"
        );
        assert_eq!(
            summary(
                "synqx check: Connection \"ns/db\"",
                "db",
                &report(CheckReason::NotFound, "Connection \"db\": no folder /x")
            ),
            "synqx check: Connection \"ns/db\": NotFound: no folder /x"
        );
    }

    #[test]
    fn the_termination_message_is_json_that_fits() {
        let small = report(CheckReason::NotFound, "Connection \"lake\": no bucket");
        assert_eq!(
            small.to_termination_message(),
            r#"{"ready":false,"reason":"NotFound","message":"Connection \"lake\": no bucket"}"#
        );
        // Quotes double in JSON, and a multi-byte character must not be split.
        let long = report(CheckReason::Unreachable, "\"é".repeat(3000));
        let json = long.to_termination_message();
        assert!(json.len() <= CheckReport::MAX_BYTES, "{}", json.len());
        let back: CheckReport = serde_json::from_str(&json).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(back.reason.as_str(), "Unreachable");
        assert!(back.message.ends_with("..."), "{}", back.message);
        assert!(back.message.len() > 1000, "{}", back.message.len());
    }
}
