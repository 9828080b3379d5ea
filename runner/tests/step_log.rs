//! A step in a pod-like environment logs through one path: its start and end, and its
//! connector's retry, reach a stand-in gateway as lines with their level, and the API key
//! the connector uses is in none of them. Its own test binary: the log subscriber is the
//! process's global one, which every thread of the engine uses.

use std::sync::atomic::{AtomicUsize, Ordering};

use synqx_api::run::StepPhase;
use synqx_api::step_plan::StepPlan;
use synqx_api::telemetry::{PATH, TelemetryReport};
use synqx_api::validate::{InputFile, validate};
use synqx_runner::pod::step_log::{self, StepLog};
use synqx_runner::pod::{PodEnv, run};
use synqx_runner::secrets::Secrets;
use synqx_testkit::http::{Reply, StandIn};
use tokio_util::sync::CancellationToken;

const KEY: &str = "s3cr3t-key-4711";

/// One loopback server that is both the step's REST API (`/records`: 503 first, then two
/// records) and the operator's gateway (taking reports).
fn server() -> StandIn {
    let pages = AtomicUsize::new(0);
    StandIn::start(move |request| {
        if request.path() == PATH {
            Reply::status(204)
        } else if pages.fetch_add(1, Ordering::SeqCst) == 0 {
            Reply::status(503)
                .with_header("retry-after", "0")
                .with_body("busy")
        } else {
            Reply::json(200, serde_json::json!([{"id": 1}, {"id": 2}]))
        }
    })
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
    let server = server();
    let url = server.url();
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

    let reports: Vec<TelemetryReport> = server
        .requests()
        .iter()
        .filter(|r| r.path() == PATH)
        .map(|r| r.parse())
        .collect();
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
