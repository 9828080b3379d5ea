//! SynqX on a real control plane, installed with `manifests/install.yaml`: the operator runs
//! as a pod under its own RBAC, steps run as Jobs through the process kubelet, and every
//! resource is created with `kubectl apply`, as users do.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use k8s_openapi::api::batch::v1::Job;
use kube::Api;
use kube::api::ListParams;
use synqx_api::pipeline::PipelineStatus;
use synqx_api::run::{RunPhase, StepPhase};
use synqx_api::{Pipeline, PipelineRun};
use synqx_e2e::cluster::{never_within, wait_until};
use synqx_e2e::runs::{
    apply, connection, csv_rows, events_of_succeeded_run, finished, folder, get_run, http_get,
    jobs_of, setup, sqlite, start_run, step, succeeded,
};

fn write_orders(dir: &Path, file: &str, ids: std::ops::RangeInclusive<u32>) {
    let mut csv = String::from("id,customer_id,amount\n");
    for id in ids {
        csv.push_str(&format!("{id},{},{}.50\n", id % 3 + 1, id * 10));
    }
    std::fs::create_dir_all(dir.join("orders")).expect("mkdir");
    std::fs::write(dir.join("orders").join(file), csv).expect("write orders");
}

/// Whether Pipeline `name` holds the condition `kind` with status `True`; an error reading
/// it fails the test.
async fn pipeline_holds(pipelines: &Api<Pipeline>, name: &str, kind: &str) -> bool {
    synqx_e2e::runs::read(pipelines, name)
        .await
        .status
        .is_some_and(|s| {
            s.conditions
                .iter()
                .any(|c| c.r#type == kind && c.status == "True")
        })
}

/// Pipeline `name`'s status as it is now.
async fn pipeline_status(pipelines: &Api<Pipeline>, name: &str) -> PipelineStatus {
    pipelines
        .get(name)
        .await
        .expect("pipeline")
        .status
        .unwrap_or_default()
}

/// Six steps in three layers: `orders` fans out to `orders-db` (through lineage: it reads
/// what `orders` writes) and `orders-count`; `report` fans in.
fn six_step_pipeline(data: &Path) -> String {
    let connections = [
        folder("inbox", &data.join("inbox")),
        folder("lake", &data.join("lake")),
        sqlite("customers-db", &data.join("customers.db")),
        sqlite("orders-db", &data.join("orders.db")),
        sqlite("stats-db", &data.join("stats.db")),
    ]
    .concat();
    connections
        + r#"apiVersion: synqx.io/v1alpha1
kind: Pipeline
metadata: {name: shop}
spec:
  steps:
    - name: orders
      sync:
        source: {connection: inbox, asset: {fqn: "orders/*.csv"}, incremental: {cursor: id}}
        destination: {connection: lake, asset: {fqn: orders/}, format: csv, mode: append}
    - name: customers
      sync:
        source: {connection: inbox, asset: {fqn: customers.csv}}
        destination: {connection: customers-db, asset: {fqn: customers}, mode: overwrite}
    - name: orders-db
      sync:
        source: {connection: lake, asset: {fqn: orders/}, format: csv, incremental: {cursor: id}}
        destination: {connection: orders-db, asset: {fqn: orders}, mode: append}
    - name: customers-copy
      dependsOn: [customers]
      sync:
        source: {connection: customers-db, asset: {fqn: customers}}
        destination: {connection: lake, asset: {fqn: customers/}, format: csv, mode: overwrite}
    - name: orders-count
      dependsOn: [orders]
      sql:
        connection: stats-db
        statements: ["CREATE TABLE IF NOT EXISTS runs (at TEXT)", "INSERT INTO runs VALUES (datetime('now'))"]
    - name: report
      dependsOn: [orders-db, customers-copy, orders-count]
      sql:
        connection: orders-db
        statements: ["DROP TABLE IF EXISTS report", "CREATE TABLE report AS SELECT customer_id, count(*) AS n FROM orders GROUP BY 1"]
"#
}

#[tokio::test]
async fn a_six_step_pipeline_runs_layer_by_layer_and_moves_only_new_rows_the_second_time() {
    let (cluster, ns) = setup("dag").await;
    let data = tempfile::tempdir().expect("tempdir");
    let inbox = data.path().join("inbox");
    write_orders(&inbox, "1.csv", 1..=5);
    std::fs::write(
        inbox.join("customers.csv"),
        "customer_id,name\n1,Ada\n2,Grace\n3,Edsger\n",
    )
    .expect("write");
    apply(cluster, &ns, &six_step_pipeline(data.path()));

    let pipelines: Api<Pipeline> = ns.api();
    wait_until(Duration::from_secs(60), "the pipeline to be Ready", || {
        pipeline_holds(&pipelines, "shop", "Ready")
    })
    .await;
    let status = pipeline_status(&pipelines, "shop").await;
    assert_eq!(
        status.layers,
        [
            vec!["customers", "orders"],
            vec!["customers-copy", "orders-count", "orders-db"],
            vec!["report"]
        ]
    );

    start_run(cluster, &ns, "shop", "shop-1", "");
    let run = finished(&ns, "shop-1").await;
    let phase = run.status.as_ref().and_then(|s| s.phase);
    assert_eq!(phase, Some(RunPhase::Succeeded), "{:?}", run.status);
    assert_eq!(
        run.status.as_ref().and_then(|s| s.progress.as_deref()),
        Some("6/6")
    );

    // No Job was created before the Jobs of its upstream steps completed.
    let jobs: Api<Job> = ns.api();
    let all = jobs
        .list(&ListParams::default().labels("synqx.io/run=shop-1"))
        .await
        .expect("jobs")
        .items;
    assert_eq!(all.len(), 6, "one Job per step");
    let by_step: BTreeMap<String, &Job> = all
        .iter()
        .map(|j| {
            (
                j.metadata.labels.clone().unwrap_or_default()["synqx.io/step"].clone(),
                j,
            )
        })
        .collect();
    let upstream: [(&str, &[&str]); 4] = [
        ("orders-db", &["orders"]),
        ("customers-copy", &["customers"]),
        ("orders-count", &["orders"]),
        ("report", &["orders-db", "customers-copy", "orders-count"]),
    ];
    for (step, ups) in upstream {
        let created = by_step[step]
            .metadata
            .creation_timestamp
            .as_ref()
            .map(|t| t.0)
            .expect("created");
        for up in ups {
            let done = by_step[*up]
                .status
                .as_ref()
                .and_then(|s| s.completion_time.as_ref())
                .map(|t| t.0)
                .expect("completed");
            assert!(
                created >= done,
                "{step} was created at {created} before {up} completed at {done}"
            );
        }
    }

    // Row counts in status are what the destinations hold.
    assert_eq!(step(&run, "orders").rows_written, Some(5));
    assert_eq!(csv_rows(&data.path().join("lake/orders")), 5);
    assert_eq!(step(&run, "orders-db").rows_written, Some(5));
    assert_eq!(step(&run, "customers").rows_written, Some(3));
    assert_eq!(step(&run, "customers-copy").rows_written, Some(3));
    assert_eq!(csv_rows(&data.path().join("lake/customers")), 3);

    let watermarks = pipeline_status(&pipelines, "shop").await.watermarks;
    assert_eq!(
        watermarks.get("orders").map(|w| w.value.as_str()),
        Some("5")
    );
    assert_eq!(
        watermarks.get("orders").and_then(|w| w.run.as_deref()),
        Some("shop-1")
    );
    assert_eq!(
        watermarks.get("orders-db").map(|w| w.value.as_str()),
        Some("5")
    );

    // The second run moves only the rows added in between.
    write_orders(&inbox, "2.csv", 6..=8);
    start_run(cluster, &ns, "shop", "shop-2", "");
    let run = succeeded(&ns, "shop-2").await;
    assert_eq!(step(&run, "orders").rows_read, Some(3));
    assert_eq!(step(&run, "orders").rows_written, Some(3));
    assert_eq!(step(&run, "orders-db").rows_written, Some(3));
    assert_eq!(csv_rows(&data.path().join("lake/orders")), 8);
    let orders = step(&run, "orders").watermark.clone().unwrap_or_default();
    assert_eq!(
        (orders.from.as_deref(), orders.to.as_deref()),
        (Some("5"), Some("8"))
    );
    let watermarks = pipeline_status(&pipelines, "shop").await.watermarks;
    assert_eq!(
        watermarks.get("orders").map(|w| w.value.as_str()),
        Some("8")
    );

    // Every Connection passed its check Job, and the Pipeline says so.
    let connections: Api<synqx_api::Connection> = ns.api();
    wait_until(
        Duration::from_secs(60),
        "every Connection to be Ready",
        || async {
            connections
                .list(&ListParams::default())
                .await
                .is_ok_and(|l| {
                    l.items.iter().all(|c| {
                        c.status.as_ref().is_some_and(|s| {
                            s.conditions
                                .iter()
                                .any(|c| c.r#type == "Ready" && c.status == "True")
                        })
                    })
                })
        },
    )
    .await;
    wait_until(
        Duration::from_secs(60),
        "the pipeline's ConnectionsReady condition",
        || pipeline_holds(&pipelines, "shop", "ConnectionsReady"),
    )
    .await;

    // Events tell the story of each run; /metrics counts it.
    let reasons = events_of_succeeded_run(cluster, &ns, "shop-2").await;
    // The run's Events came in order, RunSucceeded last: with the default --step-events,
    // steps that started and succeeded have none (their Jobs and the status tell that).
    assert!(
        reasons.iter().any(|r| r == "RunStarted"),
        "no RunStarted event in {reasons:?}"
    );
    for unwanted in ["StepPending", "StepRunning", "StepSucceeded"] {
        assert!(
            !reasons.iter().any(|r| r == unwanted),
            "a {unwanted} event in {reasons:?}"
        );
    }
    let metrics = http_get(8080, "/metrics").expect("the operator serves /metrics on port 8080");
    let labels = format!("namespace=\"{}\",pipeline=\"shop\"", ns.name);
    assert!(
        metrics.contains(&format!(
            "synqx_runs_total{{namespace=\"{}\",phase=\"Succeeded\",pipeline=\"shop\"}} 2",
            ns.name
        )),
        "{metrics}"
    );
    assert!(
        metrics.contains(&format!(
            "synqx_rows_written_total{{{labels},step=\"orders\"}} 8"
        )),
        "{metrics}"
    );
    assert!(
        metrics.contains(&format!(
            "synqx_watermark_age_seconds{{{labels},step=\"orders\"}}"
        )),
        "{metrics}"
    );
    assert!(metrics.contains("synqx_leader 1"), "{metrics}");
    // The Events above went out through the operator's Event queue, counted.
    let published = metrics
        .lines()
        .find_map(|l| l.strip_prefix("synqx_events_total{result=\"published\"} "))
        .and_then(|v| v.trim().parse::<f64>().ok())
        .unwrap_or_else(|| panic!("no count of published Events in {metrics}"));
    assert!(
        published >= reasons.len() as f64,
        "{published} Events counted as published, {} seen: {reasons:?}",
        reasons.len()
    );
}

#[tokio::test]
async fn an_invalid_pipeline_says_why_runs_nothing_and_runs_once_fixed() {
    let (cluster, ns) = setup("invalid").await;
    let data = tempfile::tempdir().expect("tempdir");
    let db = data.path().join("db.sqlite");
    let pipeline = |first_depends: &str, connection: &str| {
        format!(
            "apiVersion: synqx.io/v1alpha1\nkind: Connection\nmetadata: {{name: db}}\nspec: {{sqlite: {{path: {}}}}}\n---\n\
             apiVersion: synqx.io/v1alpha1\nkind: Pipeline\nmetadata: {{name: broken}}\nspec:\n  steps:\n\
             \x20   - {{name: a, dependsOn: [{first_depends}], sql: {{connection: db, statements: [\"SELECT 1\"]}}}}\n\
             \x20   - {{name: b, dependsOn: [a], sql: {{connection: {connection}, statements: [\"SELECT 1\"]}}}}\n",
            db.display()
        )
    };
    apply(cluster, &ns, &pipeline("b", "nowhere"));
    let pipelines: Api<Pipeline> = ns.api();
    let mut message = String::new();
    wait_until(
        Duration::from_secs(60),
        "the pipeline to be Invalid",
        || {
            let pipelines = pipelines.clone();
            async move {
                synqx_e2e::runs::read(&pipelines, "broken")
                    .await
                    .status
                    .is_some_and(|s| {
                        s.conditions.iter().any(|c| {
                            c.r#type == "Ready" && c.status == "False" && c.reason == "Invalid"
                        })
                    })
            }
        },
    )
    .await;
    if let Some(c) = pipeline_status(&pipelines, "broken")
        .await
        .conditions
        .into_iter()
        .next()
    {
        message = c.message;
    }
    assert!(
        message.contains("dependency cycle: a -> b -> a"),
        "{message}"
    );
    assert!(
        message.contains("connection \"nowhere\" does not exist"),
        "{message}"
    );

    start_run(cluster, &ns, "broken", "broken-1", "");
    let runs: Api<PipelineRun> = ns.api();
    wait_until(
        Duration::from_secs(30),
        "the run to wait for its invalid Pipeline",
        || async {
            let status = get_run(&ns, "broken-1").await.status.unwrap_or_default();
            status.phase == Some(RunPhase::Pending)
                && status
                    .conditions
                    .iter()
                    .any(|c| c.r#type == "Waiting" && c.message.contains("dependency cycle"))
        },
    )
    .await;
    // It keeps waiting: it never starts while the Pipeline is invalid.
    never_within(
        runs,
        "broken-1",
        Duration::from_secs(6),
        "a run of an invalid Pipeline starting",
        |r| {
            let status = r.status.clone().unwrap_or_default();
            status.phase != Some(RunPhase::Pending) || status.revision.is_some()
        },
    )
    .await;
    assert!(jobs_of(&ns, "broken-1").await.is_empty());
    let jobs: Api<Job> = ns.api();
    let step_jobs = jobs
        .list(&ListParams::default().labels("synqx.io/run"))
        .await
        .expect("jobs")
        .items;
    assert!(step_jobs.is_empty(), "no step Job for an invalid pipeline");

    // Fixed, it becomes Ready and the waiting run goes on.
    apply(cluster, &ns, &pipeline("", "db"));
    let run = succeeded(&ns, "broken-1").await;
    assert_eq!(step(&run, "b").phase, Some(StepPhase::Succeeded));
}

/// The Pipeline applied before the only Connection it uses (`kubectl apply` of two files, or
/// a cache that has not seen the Connection yet): Invalid naming it, never a plan without
/// it; its run waits and succeeds once the Connection exists.
#[tokio::test]
async fn a_pipeline_applied_before_its_connection_waits_for_it() {
    let (cluster, ns) = setup("late-connection").await;
    let data = tempfile::tempdir().expect("tempdir");
    apply(
        cluster,
        &ns,
        "apiVersion: synqx.io/v1alpha1\nkind: Pipeline\nmetadata: {name: early}\nspec:\n  steps:\n\
         \x20   - {name: only, sql: {connection: late, statements: [\"SELECT 1\"]}}\n",
    );
    start_run(cluster, &ns, "early", "early-1", "");
    let pipelines: Api<Pipeline> = ns.api();
    wait_until(
        Duration::from_secs(60),
        "the pipeline to be Invalid for want of its Connection",
        || {
            let pipelines = pipelines.clone();
            async move {
                let status = pipeline_status(&pipelines, "early").await;
                status.conditions.iter().any(|c| {
                    c.r#type == "Ready"
                        && c.status == "False"
                        && c.message
                            .contains("connection \"late\" does not exist (connections: none)")
                })
            }
        },
    )
    .await;
    assert!(jobs_of(&ns, "early-1").await.is_empty());

    apply(
        cluster,
        &ns,
        &format!(
            "apiVersion: synqx.io/v1alpha1\nkind: Connection\nmetadata: {{name: late}}\nspec: {{sqlite: {{path: {}}}}}\n",
            data.path().join("late.sqlite").display()
        ),
    );
    succeeded(&ns, "early-1").await;
}

#[tokio::test]
async fn connections_are_checked_by_a_job_and_name_what_is_missing() {
    let (cluster, ns) = setup("conn").await;
    let data = tempfile::tempdir().expect("tempdir");
    let yaml = format!(
        "{}{}apiVersion: synqx.io/v1alpha1\nkind: Connection\nmetadata: {{name: lake}}\n\
         spec: {{s3: {{bucket: lake, endpoint: \"http://127.0.0.1:9\", forcePathStyle: true, accessKeyId: {{secretKeyRef: {{name: s3-keys, key: id}}}}, \
         secretAccessKey: {{secretKeyRef: {{name: s3-keys, key: secret}}}}}}}}\n",
        folder("present", data.path()),
        folder("absent", &data.path().join("no/such/folder")),
    );
    // Too large for the one environment variable a check pod gets it in.
    let big = connection(
        "big",
        &format!(
            "rest: {{baseUrl: \"http://127.0.0.1:9\", headers: {{X-Padding: {}}}}}",
            "x".repeat(140_000)
        ),
    );
    apply(cluster, &ns, &format!("{big}{yaml}"));
    let connections: Api<synqx_api::Connection> = ns.api();
    let ready = |name: &'static str| {
        let connections = connections.clone();
        async move {
            synqx_e2e::runs::read(&connections, name)
                .await
                .status
                .and_then(|s| {
                    let c = s.conditions.into_iter().find(|c| c.r#type == "Ready")?;
                    Some((c.status, c.reason, c.message, s.last_checked.is_some()))
                })
        }
    };
    wait_until(
        Duration::from_secs(60),
        "every Connection to have a verdict",
        || async {
            let done = |r: Option<(String, String, String, bool)>| {
                r.is_some_and(|(_, reason, _, _)| reason != "Checking")
            };
            done(ready("present").await)
                && done(ready("absent").await)
                && done(ready("lake").await)
                && done(ready("big").await)
        },
    )
    .await;

    let (status, reason, _, checked) = ready("present").await.expect("present");
    assert_eq!(
        (status.as_str(), reason.as_str(), checked),
        ("True", "Connected", true)
    );
    let (status, reason, message, _) = ready("absent").await.expect("absent");
    assert_eq!(
        (status.as_str(), reason.as_str()),
        ("False", "NotFound"),
        "{message}"
    );
    assert!(message.contains("no/such/folder"), "{message}");
    // No check Job runs before the Secret it needs exists.
    let (status, reason, message, _) = ready("lake").await.expect("lake");
    assert_eq!(
        (status.as_str(), reason.as_str()),
        ("False", "SecretNotFound"),
        "{message}"
    );
    assert!(
        message.contains("Secret \"s3-keys\" does not exist"),
        "{message}"
    );
    let jobs: Api<Job> = ns.api();
    let checks = jobs
        .list(&ListParams::default().labels("synqx.io/connection=lake"))
        .await
        .expect("jobs")
        .items;
    assert!(checks.is_empty(), "a check Job ran without its Secret");
    // The oversized Connection is refused by its size, with what to do, and no check Job
    // that could not start is made for it.
    let (status, reason, message, _) = ready("big").await.expect("big");
    assert_eq!(
        (status.as_str(), reason.as_str()),
        ("False", "Invalid"),
        "{message}"
    );
    assert!(
        message.contains("bytes as JSON, more than the 131008 bytes")
            && message.contains("move long values"),
        "{message}"
    );
    let big_checks = jobs
        .list(&ListParams::default().labels("synqx.io/connection=big"))
        .await
        .expect("jobs")
        .items;
    assert!(
        big_checks.is_empty(),
        "a check Job was made for the oversized Connection"
    );

    // With the Secret there, the check runs: nothing listens on the endpoint's port.
    apply(
        cluster,
        &ns,
        "apiVersion: v1\nkind: Secret\nmetadata: {name: s3-keys, labels: {synqx.io/connection-secret: \"true\"}}\nstringData: {id: AKIAEXAMPLE, secret: do-not-print}\n",
    );
    wait_until(
        Duration::from_secs(90),
        "the lake Connection to be checked",
        || async {
            ready("lake").await.is_some_and(|(_, reason, _, checked)| {
                reason != "SecretNotFound" && reason != "Checking" && checked
            })
        },
    )
    .await;
    let (_, reason, message, _) = ready("lake").await.expect("lake");
    assert_eq!(reason, "Unreachable", "{message}");
    assert!(
        !message.contains("do-not-print"),
        "credentials leaked into status: {message}"
    );
}
