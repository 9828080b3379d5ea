//! The ArgoCD health checks against real resources: Connections, Pipelines and runs are
//! driven into every state on the test control plane, captured as `kubectl get -o yaml`
//! shows them, and judged by `manifests/argocd/synqx.io/<Kind>/health.lua` in gopher-lua
//! (the engine ArgoCD uses), one case per health state, in ArgoCD's `health_test.yaml`
//! format. `UPDATE_ARGOCD_TESTDATA=1` writes the captures into `manifests/argocd` as the
//! checked-in cases that `monitoring_files` runs without a cluster.

use std::path::Path;
use std::time::Duration;

use kube::Api;
use kube::api::{Patch, PatchParams};
use serde_yaml::Value;
use synqx_api::run::{RunPhase, StepPhase};
use synqx_api::{Connection, Pipeline, PipelineRun};
use synqx_e2e::cluster::{Cluster, TestNamespace, wait_until};
use synqx_e2e::monitoring::{HEALTH_KINDS, argocd_health, repo, run};
use synqx_e2e::runs::{
    apply, connection, finished, folder, setup, slow_query, sqlite, start_run, step_reaches,
};

const WAIT: Duration = Duration::from_secs(90);

/// One captured resource and the health ArgoCD must report for it.
struct Case {
    kind: &'static str,
    file: &'static str,
    status: &'static str,
    message: String,
    object: Value,
}

/// What tests must not depend on: the namespace and data folder of this run, and the
/// bookkeeping of the API server.
struct Normalize<'a> {
    namespace: &'a str,
    data: &'a Path,
}

impl Normalize<'_> {
    fn apply(&self, yaml: &str) -> Value {
        let text = yaml
            .replace(self.namespace, "etl")
            .replace(&self.data.display().to_string(), "/data");
        let mut object: Value = serde_yaml::from_str(&text).expect("captured YAML");
        if let Some(metadata) = object["metadata"].as_mapping_mut() {
            for noise in ["managedFields", "uid", "resourceVersion"] {
                metadata.remove(noise);
            }
        }
        object
    }
}

fn get(cluster: &Cluster, ns: &TestNamespace, kind: &str, name: &str) -> String {
    let out = cluster.kubectl(&["get", kind, name, "-n", &ns.name, "-o", "yaml"], None);
    assert!(
        out.status.success(),
        "kubectl get {kind} {name}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// `kubectl create -o yaml`: the object as stored, before the operator saw it.
fn create(cluster: &Cluster, ns: &TestNamespace, yaml: &str) -> String {
    let out = cluster.kubectl(
        &["create", "-n", &ns.name, "-o", "yaml", "-f", "-"],
        Some(yaml),
    );
    assert!(
        out.status.success(),
        "kubectl create: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn condition<'a>(object: &'a Value, kind: &str) -> &'a Value {
    object["status"]["conditions"]
        .as_sequence()
        .into_iter()
        .flatten()
        .find(|c| c["type"].as_str() == Some(kind))
        .unwrap_or_else(|| panic!("no {kind} condition in {object:?}"))
}

fn text(value: &Value) -> String {
    value.as_str().map(String::from).unwrap_or_else(|| {
        serde_yaml::to_string(value)
            .unwrap_or_default()
            .trim()
            .to_string()
    })
}

fn resources(data: &Path) -> String {
    let slow = slow_query(500_000_000);
    [
        folder("inbox", &data.join("inbox")),
        sqlite("db", &data.join("db.sqlite")),
        connection(
            "warehouse",
            "postgres: {host: 127.0.0.1, port: 5432, database: dw, user: {value: etl}, password: {secretKeyRef: {name: absent-creds, key: password}}}",
        ),
    ]
    .concat()
        + &format!(
            r#"apiVersion: synqx.io/v1alpha1
kind: Pipeline
metadata: {{name: quick}}
spec:
  steps:
    - {{name: first, sql: {{connection: db, statements: ["CREATE TABLE IF NOT EXISTS t (x)"]}}}}
    - {{name: second, dependsOn: [first], sql: {{connection: db, statements: ["INSERT INTO t VALUES (1)"]}}}}
---
apiVersion: synqx.io/v1alpha1
kind: Pipeline
metadata: {{name: slow}}
spec:
  steps:
    - {{name: first, sql: {{connection: db, statements: ["SELECT 1"]}}}}
    - {{name: crunch, dependsOn: [first], sql: {{connection: db, statements: ["{slow}"]}}}}
---
apiVersion: synqx.io/v1alpha1
kind: Pipeline
metadata: {{name: breaks}}
spec:
  steps:
    - {{name: load, sql: {{connection: db, statements: ["INSERT INTO no_such_table VALUES (1)"]}}}}
---
apiVersion: synqx.io/v1alpha1
kind: Pipeline
metadata: {{name: broken}}
spec:
  steps:
    - {{name: load, dependsOn: [stage], sql: {{connection: db, statements: ["SELECT 1"]}}}}
---
apiVersion: synqx.io/v1alpha1
kind: Pipeline
metadata: {{name: paused}}
spec:
  schedule: {{cron: "0 3 * * *", suspend: true}}
  steps:
    - {{name: nightly, sql: {{connection: db, statements: ["SELECT 1"]}}}}
"#
        )
}

async fn pipeline_where(ns: &TestNamespace, name: &str, what: &str, check: fn(&Pipeline) -> bool) {
    let api: Api<Pipeline> = ns.api();
    wait_until(WAIT, &format!("Pipeline {name}: {what}"), || async {
        api.get(name).await.is_ok_and(|p| check(&p))
    })
    .await;
}

fn ready_is(pipeline: &Pipeline, status: &str) -> bool {
    pipeline.status.as_ref().is_some_and(|s| {
        s.observed_generation == pipeline.metadata.generation
            && s.conditions
                .iter()
                .any(|c| c.r#type == "Ready" && c.status == status)
    })
}

fn last_run_is(pipeline: &Pipeline, phase: &str) -> bool {
    pipeline
        .status
        .as_ref()
        .and_then(|s| s.last_run.as_ref())
        .is_some_and(|r| r.phase.is_some_and(|p| p.as_str() == phase))
}

#[tokio::test]
async fn argocd_health_checks_judge_captured_resources_in_every_state() {
    let (cluster, ns) = setup("argocd").await;
    let data = tempfile::tempdir().expect("tempdir");
    std::fs::create_dir_all(data.path().join("inbox")).expect("mkdir");
    let normalize = Normalize {
        namespace: &ns.name,
        data: data.path(),
    };
    let mut cases = Vec::new();

    // Objects as created, before the operator looked at them.
    let fresh_connection = create(
        cluster,
        &ns,
        &connection(
            "fresh",
            &format!("filesystem: {{path: {}}}", data.path().display()),
        )
        .replace("---\n", ""),
    );
    let fresh_pipeline = create(
        cluster,
        &ns,
        "apiVersion: synqx.io/v1alpha1\nkind: Pipeline\nmetadata: {name: fresh}\nspec:\n  steps:\n    - {name: a, sql: {connection: db, statements: [\"SELECT 1\"]}}\n",
    );
    cases.push(Case {
        kind: "Connection",
        file: "new",
        status: "Progressing",
        message: "Waiting for the operator to check the Connection".into(),
        object: normalize.apply(&fresh_connection),
    });
    cases.push(Case {
        kind: "Pipeline",
        file: "new",
        status: "Progressing",
        message: "Waiting for the operator to compile the Pipeline".into(),
        object: normalize.apply(&fresh_pipeline),
    });

    apply(cluster, &ns, &resources(data.path()));
    start_run(cluster, &ns, "quick", "quick-1", "");
    start_run(cluster, &ns, "breaks", "breaks-1", "");
    start_run(cluster, &ns, "slow", "slow-1", "");
    start_run(cluster, &ns, "broken", "broken-1", "");

    // Connections: checked and ready; a Secret that does not exist.
    let connections: Api<Connection> = ns.api();
    for (name, reason) in [("inbox", "Connected"), ("warehouse", "SecretNotFound")] {
        wait_until(WAIT, &format!("Connection {name}: {reason}"), || async {
            connections.get(name).await.is_ok_and(|c| {
                c.status
                    .is_some_and(|s| s.conditions.iter().any(|c| c.reason == reason))
            })
        })
        .await;
    }
    for (file, name, status) in [
        ("ready", "inbox", "Healthy"),
        ("missing-secret", "warehouse", "Degraded"),
    ] {
        let object = normalize.apply(&get(cluster, &ns, "connection", name));
        let ready = condition(&object, "Ready");
        let message = format!("{}: {}", text(&ready["reason"]), text(&ready["message"]));
        cases.push(Case {
            kind: "Connection",
            file,
            status,
            message,
            object,
        });
    }

    // A run while a step runs, then cancelled.
    let running = step_reaches(&ns, "slow-1", "crunch", StepPhase::Running).await;
    assert_eq!(
        running.status.as_ref().and_then(|s| s.phase),
        Some(RunPhase::Running)
    );
    let object = normalize.apply(&get(cluster, &ns, "pipelinerun", "slow-1"));
    cases.push(Case {
        kind: "PipelineRun",
        file: "running",
        status: "Progressing",
        message: format!(
            "Running: {} steps done; running crunch",
            text(&object["status"]["progress"])
        ),
        object,
    });
    let runs: Api<PipelineRun> = ns.api();
    runs.patch(
        "slow-1",
        &PatchParams::default(),
        &Patch::Merge(serde_json::json!({"spec": {"cancel": true}})),
    )
    .await
    .expect("cancel slow-1");

    // Runs that ended: succeeded, failed, cancelled; and one waiting for an invalid Pipeline.
    for run in ["quick-1", "breaks-1", "slow-1"] {
        finished(&ns, run).await;
    }
    let object = normalize.apply(&get(cluster, &ns, "pipelinerun", "quick-1"));
    cases.push(Case {
        kind: "PipelineRun",
        file: "succeeded",
        status: "Healthy",
        message: format!(
            "Succeeded: {} steps in {}",
            text(&object["status"]["progress"]),
            text(&object["status"]["duration"])
        ),
        object,
    });
    let object = normalize.apply(&get(cluster, &ns, "pipelinerun", "breaks-1"));
    let load = object["status"]["steps"]
        .as_sequence()
        .into_iter()
        .flatten()
        .find(|s| s["name"].as_str() == Some("load"))
        .cloned()
        .expect("step load");
    assert!(text(&load["message"]).contains("no_such_table"), "{load:?}");
    cases.push(Case {
        kind: "PipelineRun",
        file: "failed",
        status: "Degraded",
        message: format!(
            "Step load failed (attempt {}): {}",
            text(&load["attempt"]),
            text(&load["message"])
        ),
        object,
    });
    let object = normalize.apply(&get(cluster, &ns, "pipelinerun", "slow-1"));
    cases.push(Case {
        kind: "PipelineRun",
        file: "cancelled",
        status: "Suspended",
        message: format!(
            "Cancelled: {} steps done; a run with spec.resumeFrom: slow-1 goes on from here",
            text(&object["status"]["progress"])
        ),
        object,
    });
    wait_until(WAIT, "broken-1 to wait for its Pipeline", || async {
        runs.get("broken-1").await.is_ok_and(|r| {
            r.status.is_some_and(|s| {
                s.phase == Some(RunPhase::Pending)
                    && s.conditions.iter().any(|c| c.r#type == "Waiting")
            })
        })
    })
    .await;
    let object = normalize.apply(&get(cluster, &ns, "pipelinerun", "broken-1"));
    cases.push(Case {
        kind: "PipelineRun",
        file: "pending",
        status: "Progressing",
        message: format!(
            "Pending: {}",
            text(&condition(&object, "Waiting")["message"])
        ),
        object,
    });

    // Pipelines: healthy after a success, failing, invalid, suspended.
    pipeline_where(&ns, "quick", "last run Succeeded, Connections ready", |p| {
        last_run_is(p, "Succeeded")
            && p.status.as_ref().is_some_and(|s| {
                s.conditions
                    .iter()
                    .any(|c| c.r#type == "ConnectionsReady" && c.status == "True")
            })
    })
    .await;
    pipeline_where(&ns, "breaks", "last run Failed", |p| {
        last_run_is(p, "Failed")
    })
    .await;
    pipeline_where(&ns, "broken", "Invalid", |p| ready_is(p, "False")).await;
    pipeline_where(&ns, "paused", "Ready", |p| ready_is(p, "True")).await;
    let object = normalize.apply(&get(cluster, &ns, "pipeline", "quick"));
    let ready = text(&condition(&object, "Ready")["message"]);
    cases.push(Case {
        kind: "Pipeline",
        file: "healthy",
        status: "Healthy",
        message: format!("{ready}; last run quick-1 Succeeded"),
        object,
    });
    cases.push(Case {
        kind: "Pipeline",
        file: "last-run-failed",
        status: "Degraded",
        message: "Last run breaks-1 failed (kubectl describe pipelinerun breaks-1)".into(),
        object: normalize.apply(&get(cluster, &ns, "pipeline", "breaks")),
    });
    let object = normalize.apply(&get(cluster, &ns, "pipeline", "broken"));
    let invalid = condition(&object, "Ready");
    assert!(text(&invalid["message"]).contains("stage"), "{invalid:?}");
    cases.push(Case {
        kind: "Pipeline",
        file: "invalid",
        status: "Degraded",
        message: format!(
            "{}: {}",
            text(&invalid["reason"]),
            text(&invalid["message"])
        ),
        object,
    });
    let object = normalize.apply(&get(cluster, &ns, "pipeline", "paused"));
    let ready = text(&condition(&object, "Ready")["message"]);
    cases.push(Case {
        kind: "Pipeline",
        file: "suspended",
        status: "Suspended",
        message: format!("Schedule suspended (spec.schedule.suspend); {ready}"),
        object,
    });

    judge(&cases);
}

/// Writes the cases in ArgoCD's layout, runs the health checks on them in gopher-lua, and
/// checks the checked-in cases have the same files and states (or updates them).
fn judge(cases: &[Case]) {
    let scratch = tempfile::tempdir().expect("tempdir");
    let update = synqx_testkit::golden::update_requested("UPDATE_ARGOCD_TESTDATA");
    let mut folders = Vec::new();
    for kind in HEALTH_KINDS {
        let shipped = repo().join(format!("manifests/argocd/synqx.io/{kind}"));
        let folder = scratch.path().join(kind);
        std::fs::create_dir_all(folder.join("testdata")).expect("mkdir");
        std::fs::copy(shipped.join("health.lua"), folder.join("health.lua"))
            .expect("copy health.lua");
        let mut tests = String::from(
            "# Resources captured from end-to-end runs (tests/tests/argocd_health.rs; refresh with\n\
             # UPDATE_ARGOCD_TESTDATA=1 cargo test -p synqx-e2e --features control-plane --test argocd_health), in ArgoCD's\n\
             # health_test.yaml format.\ntests:\n",
        );
        for case in cases.iter().filter(|c| c.kind == kind) {
            let input = format!("testdata/{}.yaml", case.file);
            let yaml = serde_yaml::to_string(&case.object).expect("YAML");
            std::fs::write(folder.join(&input), &yaml).expect("write input");
            let message = serde_json::to_string(&case.message).expect("message");
            tests.push_str(&format!(
                "  - healthStatus:\n      status: {}\n      message: {message}\n    inputPath: {input}\n",
                case.status
            ));
        }
        std::fs::write(folder.join("health_test.yaml"), &tests).expect("write health_test.yaml");
        if update {
            let _ = std::fs::remove_dir_all(shipped.join("testdata"));
            copy_folder(&folder.join("testdata"), &shipped.join("testdata"));
            std::fs::copy(
                folder.join("health_test.yaml"),
                shipped.join("health_test.yaml"),
            )
            .expect("update health_test.yaml");
        }
        folders.push(folder.display().to_string());
    }
    let args: Vec<&str> = folders.iter().map(String::as_str).collect();
    let out = run(&argocd_health(), &args, scratch.path());
    let report = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{report}{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // The checked-in cases are captures of the same states.
    for case in cases {
        let shipped = repo().join(format!(
            "manifests/argocd/synqx.io/{}/health_test.yaml",
            case.kind
        ));
        let tests: Value =
            serde_yaml::from_str(&std::fs::read_to_string(&shipped).unwrap_or_default())
                .unwrap_or(Value::Null);
        let input = format!("testdata/{}.yaml", case.file);
        let found = tests["tests"]
            .as_sequence()
            .into_iter()
            .flatten()
            .find(|t| t["inputPath"].as_str() == Some(input.as_str()));
        assert_eq!(
            found.and_then(|t| t["healthStatus"]["status"].as_str()),
            Some(case.status),
            "{} has no {} case {input}: refresh with UPDATE_ARGOCD_TESTDATA=1",
            shipped.display(),
            case.status
        );
    }
}

fn copy_folder(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("mkdir");
    for entry in std::fs::read_dir(from).expect("read testdata").flatten() {
        std::fs::copy(entry.path(), to.join(entry.file_name())).expect("copy testdata");
    }
}
