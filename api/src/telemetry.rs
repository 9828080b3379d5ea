//! What a step's pod sends the operator's gateway while it runs (`POST` [`PATH`]): its
//! identity, its counters as absolute values (a report sent twice, or again after the
//! gateway restarted, changes nothing), its phase and the lines it logged since the last
//! report. The pod authenticates with a projected service-account token of audience
//! [`AUDIENCE`], which the gateway binds to the pod, its Job, run, step and attempt.

use serde::{Deserialize, Serialize};

use crate::connection::ConnectionSpec;
use crate::gateway::LogLine;
use crate::run::{StepPhase, StepStatus};
use crate::step_plan::MAX_STEP_PLAN_BYTES;

/// The gateway's route for step telemetry.
pub const PATH: &str = "/internal/v1/telemetry";
/// The audience of the tokens step pods send: a token for the API server is refused.
pub const AUDIENCE: &str = "synqx";
/// The environment variable that gives a step pod the gateway's URL.
pub const GATEWAY_ENV: &str = "SYNQX_GATEWAY";
/// The environment variable that names the file holding the pod's token for the gateway.
pub const TOKEN_FILE_ENV: &str = "SYNQX_TOKEN_FILE";
/// The environment variable that gives a Connection's check pod the Connection's spec (JSON),
/// so it reads nothing from the Kubernetes API.
pub const CONNECTION_ENV: &str = "SYNQX_CONNECTION";
/// The longest JSON the operator puts in [`CONNECTION_ENV`]: one environment variable, so
/// the same Linux limit as a step's plan (`MAX_ARG_STRLEN` less room for the name).
pub const MAX_CONNECTION_BYTES: usize = MAX_STEP_PLAN_BYTES;
/// Where the operator mounts that token in step pods.
pub const TOKEN_DIR: &str = "/var/run/secrets/synqx.io/gateway";
/// The token's file name in [`TOKEN_DIR`].
pub const TOKEN_FILE: &str = "token";
/// The most log lines one report carries; a pod that logs faster sends more reports.
pub const MAX_LINES: usize = 500;
/// The longest log line kept, in bytes; longer ones are cut with a marker.
pub const MAX_LINE_BYTES: usize = 8192;
/// The most bytes of line text one report carries (at least one line).
pub const MAX_LINES_BYTES: usize = 1024 * 1024;

/// One report of a step attempt.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TelemetryReport {
    pub namespace: String,
    pub run: String,
    pub step: String,
    pub attempt: u32,
    /// `Running` while it runs; its outcome in the last report.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<StepPhase>,
    /// The counters and watermark range as of this report (`name` is the step).
    pub counters: StepStatus,
    /// Lines logged since the previous report that reached the gateway.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub lines: Vec<LogLine>,
}

/// Why a Connection's spec cannot travel in its check pod's environment.
#[derive(Debug, thiserror::Error)]
pub enum ConnectionEnvError {
    #[error(
        "Connection \"{connection}\" is {size} bytes as JSON, more than the {max} bytes one environment variable of its check pod (${CONNECTION_ENV}) can hold: move long values (a certificate, headers, a key) into a Secret and reference it with secretKeyRef, which is not part of that size"
    )]
    TooLarge {
        connection: String,
        size: usize,
        max: usize,
    },
    #[error("Connection \"{connection}\" cannot be written as JSON: {source}")]
    Encode {
        connection: String,
        #[source]
        source: serde_json::Error,
    },
}

/// The value of [`CONNECTION_ENV`] for the Connection `connection`: compact JSON of its spec
/// (secret references, never values) of at most [`MAX_CONNECTION_BYTES`].
pub fn connection_env_value(
    connection: &str,
    spec: &ConnectionSpec,
) -> Result<String, ConnectionEnvError> {
    let text = serde_json::to_string(spec).map_err(|source| ConnectionEnvError::Encode {
        connection: connection.to_string(),
        source,
    })?;
    if text.len() > MAX_CONNECTION_BYTES {
        return Err(ConnectionEnvError::TooLarge {
            connection: connection.to_string(),
            size: text.len(),
            max: MAX_CONNECTION_BYTES,
        });
    }
    Ok(text)
}

/// A line cut to [`MAX_LINE_BYTES`] on a character boundary, with a marker when cut.
pub fn bounded_line(text: &str) -> String {
    if text.len() <= MAX_LINE_BYTES {
        return text.to_string();
    }
    let mut cut = MAX_LINE_BYTES;
    while !text.is_char_boundary(cut) {
        cut -= 1;
    }
    format!("{}… [cut at {MAX_LINE_BYTES} bytes]", &text[..cut])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_report_reads_back_as_written() {
        let report = TelemetryReport {
            namespace: "etl".into(),
            run: "orders-1".into(),
            step: "load".into(),
            attempt: 2,
            phase: Some(StepPhase::Running),
            counters: StepStatus {
                name: "load".into(),
                rows_read: Some(10),
                ..Default::default()
            },
            lines: vec![LogLine {
                time: "2026-12-02T07:30:00Z".into(),
                level: None,
                text: "started".into(),
            }],
        };
        let json = serde_json::to_string(&report).unwrap_or_default();
        assert!(json.contains("\"rowsRead\":10"), "{json}");
        let back: Result<TelemetryReport, _> = serde_json::from_str(&json);
        assert_eq!(back.ok(), Some(report));
    }

    #[test]
    fn a_connection_too_large_for_an_environment_variable_is_refused_with_its_size() {
        let spec = |path: String| -> ConnectionSpec {
            serde_json::from_value(serde_json::json!({"filesystem": {"path": path}}))
                .unwrap_or_else(|e| panic!("a filesystem Connection: {e}"))
        };
        let small = connection_env_value("files", &spec("/data".into()));
        assert!(small.is_ok_and(|text| text.contains("/data")));
        let e = connection_env_value("files", &spec("x".repeat(MAX_CONNECTION_BYTES)))
            .err()
            .unwrap_or_else(|| panic!("128 KiB of path does not fit"));
        let text = e.to_string();
        assert!(text.starts_with("Connection \"files\" is 131"), "{text}");
        assert!(text.contains(&MAX_CONNECTION_BYTES.to_string()), "{text}");
        assert!(text.contains("$SYNQX_CONNECTION"), "{text}");
        assert!(text.contains("secretKeyRef"), "{text}");
    }

    #[test]
    fn long_lines_are_cut_on_a_character_boundary_with_a_marker() {
        assert_eq!(bounded_line("short"), "short");
        let long = "é".repeat(MAX_LINE_BYTES);
        let cut = bounded_line(&long);
        assert!(cut.ends_with(&format!("… [cut at {MAX_LINE_BYTES} bytes]")));
        assert!(cut.len() < MAX_LINE_BYTES + 40);
    }
}
