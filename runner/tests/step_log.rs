//! A step in a pod-like environment logs through one path: its start and end, and its
//! connector's retry, reach a stand-in gateway as lines with their level, and the API key
//! the connector uses is in none of them. Its own test binary: the log subscriber is the
//! process's global one, which every thread of the engine uses.

use std::convert::Infallible;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use synqx_api::run::StepPhase;
use synqx_api::step_plan::StepPlan;
use synqx_api::telemetry::{PATH, Report};
use synqx_api::validate::{InputFile, validate};
use synqx_runner::pod::step_log::{self, StepLog};
use synqx_runner::pod::{PodEnv, run};
use synqx_runner::secrets::Secrets;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

const KEY: &str = "s3cr3t-key-4711";

/// What the stand-in server saw: every telemetry report.
type Reports = Arc<Mutex<Vec<Report>>>;

/// One loopback server that is both the step's REST API (`/records`: 503 first, then two
/// records) and the operator's gateway (collecting reports).
async fn server() -> (String, Reports) {
    let listener = TcpListener::bind("127.0.0.1:0")
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let addr = listener.local_addr().unwrap_or_else(|e| panic!("{e}"));
    let reports: Reports = Arc::default();
    let seen = reports.clone();
    let pages = Arc::new(AtomicUsize::new(0));
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let (seen, pages) = (seen.clone(), pages.clone());
            tokio::spawn(async move {
                let service = service_fn(move |request: hyper::Request<hyper::body::Incoming>| {
                    let (seen, pages) = (seen.clone(), pages.clone());
                    async move {
                        let path = request.uri().path().to_string();
                        let body = request
                            .into_body()
                            .collect()
                            .await
                            .map(|b| b.to_bytes())
                            .unwrap_or_default();
                        let (code, text) = if path == PATH {
                            if let Ok(report) = serde_json::from_slice::<Report>(&body) {
                                seen.lock()
                                    .unwrap_or_else(PoisonError::into_inner)
                                    .push(report);
                            }
                            (204, String::new())
                        } else if pages.fetch_add(1, Ordering::SeqCst) == 0 {
                            (503, "busy".to_string())
                        } else {
                            (200, r#"[{"id": 1}, {"id": 2}]"#.to_string())
                        };
                        let mut response = hyper::Response::new(Full::new(Bytes::from(text)));
                        *response.status_mut() = hyper::StatusCode::from_u16(code)
                            .unwrap_or(hyper::StatusCode::INTERNAL_SERVER_ERROR);
                        if code == 503 {
                            response.headers_mut().insert(
                                "retry-after",
                                hyper::header::HeaderValue::from_static("0"),
                            );
                        }
                        Ok::<_, Infallible>(response)
                    }
                });
                let _ = http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    (format!("http://{addr}"), reports)
}

/// The step's plan, as the operator puts it in the pod's environment.
fn step_plan(api: &str) -> String {
    let yaml = format!(
        r#"
apiVersion: v1
kind: Secret
metadata: {{name: api-creds}}
stringData: {{key: {KEY}}}
---
apiVersion: synqx.io/v1alpha1
kind: Connection
metadata: {{name: api}}
spec:
  rest:
    baseUrl: {api}/
    maxAttempts: 3
    auth: {{apiKey: {{query: key, value: {{secretKeyRef: {{name: api-creds, key: key}}}}}}}}
---
apiVersion: synqx.io/v1alpha1
kind: Connection
metadata: {{name: db}}
spec:
  sqlite: {{path: ./out.db}}
---
apiVersion: synqx.io/v1alpha1
kind: Pipeline
metadata: {{name: pull}}
spec:
  steps:
    - name: pull
      sync:
        source: {{connection: api, asset: {{fqn: records}}}}
        destination: {{connection: db, asset: {{fqn: records}}, mode: overwrite}}
"#
    );
    let report = validate(&[InputFile {
        name: "pull.yaml",
        text: &yaml,
    }]);
    assert!(report.is_valid(), "{:?}", report.problems);
    let plan = report
        .plans
        .get("pull")
        .cloned()
        .unwrap_or_else(|| panic!("no plan"));
    let step = StepPlan::of(&plan, "pull-5d8f", "pull").unwrap_or_else(|| panic!("no step"));
    step.to_env_value().unwrap_or_else(|e| panic!("{e}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_steps_retries_and_progress_reach_the_gateway_as_lines_without_the_key() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let token = dir.path().join("token");
    std::fs::write(&token, "tok").unwrap_or_else(|e| panic!("{e}"));
    let (url, reports) = server().await;
    let secret = (Secrets::env_name("api-creds", "key"), KEY.to_string());
    let env = PodEnv {
        step_plan: Some(step_plan(&url)),
        gateway: Some(url.clone()),
        token_file: Some(token),
        connection: None,
        watermark: None,
        secrets: Secrets::new(std::iter::empty(), vec![secret]),
        work_dir: dir.path().to_path_buf(),
        termination_path: dir.path().join("termination-log"),
        log: StepLog::default(),
    };
    step_log::install(Some(env.log.clone()), env.secrets.redactor());
    let report = run(
        Some("etl".into()),
        "pull-1".into(),
        "pull".into(),
        1,
        None,
        &env,
        CancellationToken::new(),
    )
    .await;
    assert_eq!(report.phase, StepPhase::Succeeded, "{:?}", report.message);
    assert_eq!(report.rows_written, 2);

    let reports = reports
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .clone();
    let lines: Vec<(String, String)> = reports
        .iter()
        .flat_map(|r| &r.lines)
        .map(|l| (l.level.clone().unwrap_or_default(), l.text.clone()))
        .collect();
    let has = |level: &str, parts: &[&str]| {
        lines
            .iter()
            .any(|(l, text)| l == level && parts.iter().all(|p| text.contains(p)))
    };
    assert!(has("INFO", &["step \"pull\"", "started"]), "{lines:#?}");
    assert!(
        has("WARN", &["page", "HTTP 503", "attempt 2 of 3"]),
        "{lines:#?}"
    );
    assert!(has("INFO", &["succeeded", "wrote 2 rows"]), "{lines:#?}");
    assert!(
        lines.iter().all(|(_, text)| !text.contains(KEY)),
        "{lines:#?}"
    );
    assert_eq!(
        reports.last().and_then(|r| r.phase),
        Some(StepPhase::Succeeded)
    );
}
