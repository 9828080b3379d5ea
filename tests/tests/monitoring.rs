//! A real Prometheus (Debian's package, on loopback) scrapes the operator during runs on the
//! test control plane with the shipped scrape config and alert rules: the rows it counts
//! equal the runs' status, SynqXRunFailed, SynqXWatermarkStale and SynqXOperatorDown fire,
//! and every query of the Grafana dashboard evaluates, the main panels with data.
//!
//! One test, in order: stopping the operator at the end must not disturb other tests.

use std::time::Duration;

use serde_json::Value;
use synqx_api::run::RunPhase;
use synqx_e2e::cluster::Cluster;
use synqx_e2e::monitoring::{self, DASHBOARD_SOURCE, JOB, RULES_PLAIN, SCRAPE_CONFIG, read};
use synqx_e2e::prometheus::{Prometheus, value};
use synqx_e2e::runs::{apply, finished, folder, setup, sqlite, start_run};

const ALERT_TIMEOUT: Duration = Duration::from_secs(120);
/// The host port of the operator pod of manifests/install.yaml (process pods share the host).
const OPERATOR: &str = "127.0.0.1:8080";

/// The example scrape config with its pod discovery swapped for the test cluster's one
/// operator, scraped and evaluated every second.
fn prometheus_config() -> String {
    let mut config: serde_yaml::Value =
        serde_yaml::from_str(&read(SCRAPE_CONFIG)).expect("scrape config YAML");
    config["global"]["scrape_interval"] = "1s".into();
    config["global"]["evaluation_interval"] = "1s".into();
    let job = config["scrape_configs"][0]
        .as_mapping_mut()
        .expect("a scrape job");
    job.remove("kubernetes_sd_configs");
    job.remove("relabel_configs");
    let targets: serde_yaml::Value =
        serde_yaml::from_str(&format!("[{{targets: ['{OPERATOR}']}}]")).expect("targets");
    job.insert("static_configs".into(), targets);
    serde_yaml::to_string(&config).expect("config YAML")
}

/// The shipped rules, with every `for:` cut to 3 s so a test need not wait minutes.
fn test_rules() -> String {
    read(RULES_PLAIN)
        .lines()
        .map(|line| match line.trim_start().strip_prefix("for: ") {
            Some(_) => format!("{}for: 3s", &line[..line.len() - line.trim_start().len()]),
            None => line.to_string(),
        })
        .collect::<Vec<_>>()
        .join("\n")
}

fn pipelines(data: &std::path::Path) -> String {
    std::fs::create_dir_all(data.join("inbox")).expect("mkdir inbox");
    let mut csv = String::from("id,amount\n");
    for id in 1..=7 {
        csv.push_str(&format!("{id},{}.25\n", id * 3));
    }
    std::fs::write(data.join("inbox/orders.csv"), csv).expect("write orders");
    [
        folder("inbox", &data.join("inbox")),
        folder("lake", &data.join("lake")),
        sqlite("stats", &data.join("stats.db")),
    ]
    .concat()
        + r#"apiVersion: synqx.io/v1alpha1
kind: Pipeline
metadata:
  name: moves
  annotations: {synqx.io/stale-after: 20s}
spec:
  steps:
    - name: orders
      sync:
        source: {connection: inbox, asset: {fqn: orders.csv}, incremental: {cursor: id}}
        destination: {connection: lake, asset: {fqn: orders/}, format: csv, mode: append}
    - name: copy
      sync:
        source: {connection: lake, asset: {fqn: orders/}, format: csv}
        destination: {connection: stats, asset: {fqn: orders}, mode: overwrite}
    - name: count
      dependsOn: [copy]
      sql:
        connection: stats
        statements: ["CREATE TABLE IF NOT EXISTS counted AS SELECT count(*) AS n FROM orders"]
---
apiVersion: synqx.io/v1alpha1
kind: Pipeline
metadata: {name: breaks}
spec:
  steps:
    - name: load
      sql:
        connection: stats
        statements: ["INSERT INTO no_such_table VALUES (1)"]
"#
}

#[tokio::test]
async fn prometheus_scrapes_the_operator_and_the_shipped_alerts_fire() {
    let (cluster, ns) = setup("monitoring").await;
    let prometheus =
        Prometheus::start(&prometheus_config(), &[("synqx-rules.yaml", test_rules())]).await;
    prometheus
        .wait_for(
            &format!("up{{job=\"{JOB}\"}} == 1"),
            Duration::from_secs(60),
            "Prometheus to scrape the operator",
            |series| !series.is_empty(),
        )
        .await;

    let data = tempfile::tempdir().expect("tempdir");
    apply(cluster, &ns, &pipelines(data.path()));
    start_run(cluster, &ns, "moves", "moves-1", "");
    start_run(cluster, &ns, "breaks", "breaks-1", "");
    let moved = finished(&ns, "moves-1").await;
    let broken = finished(&ns, "breaks-1").await;
    let status = moved.status.clone().unwrap_or_default();
    assert_eq!(status.phase, Some(RunPhase::Succeeded), "{status:?}");
    assert_eq!(
        broken.status.as_ref().and_then(|s| s.phase),
        Some(RunPhase::Failed)
    );

    // Rows written per step, as Prometheus scraped them, equal the run's status.
    let expected: Vec<(String, f64)> = status
        .steps
        .iter()
        .map(|s| (s.name.clone(), s.rows_written.unwrap_or(0) as f64))
        .collect();
    assert!(
        expected.iter().any(|(_, rows)| *rows == 7.0),
        "the orders step wrote the 7 rows: {expected:?}"
    );
    let query = format!(
        "synqx_rows_written_total{{job=\"{JOB}\",namespace=\"{}\",pipeline=\"moves\"}}",
        ns.name
    );
    prometheus
        .wait_for(
            &query,
            ALERT_TIMEOUT,
            "rows written per step to equal the run's status",
            |series| {
                series.len() == expected.len()
                    && expected.iter().all(|(step, rows)| {
                        series.iter().any(|s| {
                            s["metric"]["step"].as_str() == Some(step) && value(s) == Some(*rows)
                        })
                    })
            },
        )
        .await;

    // The failed run raises SynqXRunFailed for its Pipeline, and only for it.
    prometheus
        .wait_firing(
            "SynqXRunFailed",
            &[("namespace", &ns.name), ("pipeline", "breaks")],
            ALERT_TIMEOUT,
        )
        .await;
    let others = prometheus
        .query(&format!(
            "ALERTS{{alertname=\"SynqXRunFailed\",namespace=\"{}\",pipeline!=\"breaks\"}}",
            ns.name
        ))
        .expect("ALERTS");
    assert!(others.is_empty(), "{others:?}");

    // The watermark of `orders` stands still past the Pipeline's 20 s threshold.
    prometheus
        .wait_firing(
            "SynqXWatermarkStale",
            &[
                ("namespace", &ns.name),
                ("pipeline", "moves"),
                ("step", "orders"),
            ],
            ALERT_TIMEOUT,
        )
        .await;

    dashboard_queries_evaluate_with_data(&prometheus, &ns.name);

    // A stopped operator raises SynqXOperatorDown; then it is started again.
    scale_operator(cluster, 0);
    prometheus
        .wait_firing("SynqXOperatorDown", &[], ALERT_TIMEOUT)
        .await;
    scale_operator(cluster, 1);
    prometheus
        .wait_for(
            &format!("up{{job=\"{JOB}\"}} == 1"),
            ALERT_TIMEOUT,
            "the operator to be scraped again",
            |series| !series.is_empty(),
        )
        .await;
}

/// The panels that may show nothing right after the runs: no step is running then.
const MAY_BE_EMPTY: [&str; 1] = ["Running steps"];

fn dashboard_queries_evaluate_with_data(prometheus: &Prometheus, namespace: &str) {
    let dashboard: Value = serde_json::from_str(&read(DASHBOARD_SOURCE)).expect("dashboard JSON");
    let substitute = |query: &str| {
        query
            .replace("$job", JOB)
            .replace("$namespace", namespace)
            .replace("$pipeline", ".+")
            .replace("$__rate_interval", "5m")
    };
    // The template variables list the test's namespace and Pipelines.
    for (variable, wanted) in [
        ("job", JOB),
        ("namespace", namespace),
        ("pipeline", "moves"),
    ] {
        let query = dashboard["templating"]["list"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|v| v["name"] == variable)
            .and_then(|v| v["query"].as_str())
            .unwrap_or_else(|| panic!("no variable {variable}"));
        let inner = query
            .strip_prefix("label_values(")
            .and_then(|q| q.strip_suffix(&format!(", {variable})")))
            .unwrap_or_else(|| panic!("variable {variable}: {query}"));
        let promql = format!("count by ({variable}) ({})", substitute(inner));
        let values = prometheus.query(&promql).unwrap_or_else(|e| panic!("{e}"));
        assert!(
            values
                .iter()
                .any(|s| s["metric"][variable].as_str() == Some(wanted)),
            "variable {variable} does not offer {wanted}: {values:?}"
        );
    }
    let mut panels: std::collections::BTreeMap<String, bool> = Default::default();
    for (panel, query) in monitoring::dashboard_queries(&dashboard) {
        let series = prometheus
            .query(&substitute(&query))
            .unwrap_or_else(|e| panic!("panel {panel:?}: {e}"));
        *panels.entry(panel).or_default() |= !series.is_empty();
    }
    let empty: Vec<&String> = panels
        .iter()
        .filter(|(panel, data)| !**data && !MAY_BE_EMPTY.contains(&panel.as_str()))
        .map(|(panel, _)| panel)
        .collect();
    assert!(empty.is_empty(), "panels without data: {empty:?}");
}

fn scale_operator(cluster: &Cluster, replicas: u32) {
    let replicas = format!("--replicas={replicas}");
    let scale = cluster.kubectl(
        &[
            "scale",
            "-n",
            "synqx-system",
            "deployment/synqx-operator",
            &replicas,
        ],
        None,
    );
    assert!(
        scale.status.success(),
        "kubectl scale {replicas}: {}",
        String::from_utf8_lossy(&scale.stderr)
    );
}
