//! The monitoring files users install, checked with the real tools and no cluster: the alert
//! rules (promtool check and unit tests), the plain copies of the chart's sources, the
//! example scrape config, the Grafana dashboard (the dashboard-linter's rules) and the
//! ArgoCD health checks (gopher-lua against statuses captured from end-to-end runs).

use serde_json::Value;
use synqx_e2e::monitoring::{
    self, DASHBOARD_SOURCE, HEALTH_KINDS, JOB, RULES_PLAIN, SCRAPE_CONFIG, argocd_health,
    lint_dashboard, promtool, read, repo, run,
};

#[test]
fn plain_monitoring_files_are_generated_from_the_chart_sources() {
    let mut stale = Vec::new();
    for (path, expected) in monitoring::plain_files() {
        let file = repo().join(path);
        if synqx_testkit::golden::update_requested("UPDATE_MANIFESTS") {
            std::fs::write(&file, &expected).unwrap_or_else(|e| panic!("writing {path}: {e}"));
        }
        if std::fs::read_to_string(&file).unwrap_or_default() != expected {
            stale.push(path);
        }
    }
    assert!(
        stale.is_empty(),
        "{stale:?} differ from their sources in charts/synqx/files: run \
         `UPDATE_MANIFESTS=1 cargo test -p synqx-e2e --features control-plane --test monitoring_files`"
    );
}

#[test]
fn promtool_accepts_the_plain_rules() {
    let out = run(&promtool(), &["check", "rules", RULES_PLAIN], &repo());
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "promtool check rules {RULES_PLAIN}:\n{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(text.contains("SUCCESS: 7 rules found"), "{text}");
}

#[test]
fn promtool_unit_tests_fire_and_silence_every_alert() {
    let tests = "manifests/prometheus/synqx-rules.test.yaml";
    let out = run(&promtool(), &["test", "rules", tests], &repo());
    assert!(
        out.status.success(),
        "promtool test rules {tests}:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    // Every alert has a case that fires (exp_alerts) and one that stays silent (none).
    let cases: serde_yaml::Value = serde_yaml::from_str(&read(tests)).expect("test YAML");
    let rules: serde_yaml::Value = serde_yaml::from_str(&read(RULES_PLAIN)).expect("rules YAML");
    let alerts: Vec<&str> = rules["groups"]
        .as_sequence()
        .into_iter()
        .flatten()
        .flat_map(|g| g["rules"].as_sequence().into_iter().flatten())
        .filter_map(|r| r["alert"].as_str())
        .collect();
    assert_eq!(alerts.len(), 7, "{alerts:?}");
    for alert in alerts {
        let checks: Vec<&serde_yaml::Value> = cases["tests"]
            .as_sequence()
            .into_iter()
            .flatten()
            .flat_map(|t| t["alert_rule_test"].as_sequence().into_iter().flatten())
            .filter(|c| c["alertname"].as_str() == Some(alert))
            .collect();
        let firing = |c: &&&serde_yaml::Value| {
            c["exp_alerts"]
                .as_sequence()
                .is_some_and(|alerts| !alerts.is_empty())
        };
        assert!(checks.iter().any(|c| firing(&c)), "{alert}: no firing case");
        assert!(
            checks.iter().any(|c| !firing(&c)),
            "{alert}: no silent case"
        );
    }
}

#[test]
fn the_example_scrape_config_finds_the_operator_of_the_install_manifest() {
    let config: serde_yaml::Value =
        serde_yaml::from_str(&read(SCRAPE_CONFIG)).expect("scrape config YAML");
    let job = &config["scrape_configs"][0];
    assert_eq!(job["job_name"].as_str(), Some(JOB));
    // The operator's own namespace/pipeline/step labels must win over target labels.
    assert_eq!(job["honor_labels"].as_bool(), Some(true));
    assert_eq!(
        config["rule_files"][0].as_str(),
        Some("synqx-rules.yaml"),
        "the rules sit beside the config"
    );
    let keep = |label: &str| {
        job["relabel_configs"]
            .as_sequence()
            .into_iter()
            .flatten()
            .find(|r| r["source_labels"][0].as_str() == Some(label))
            .and_then(|r| r["regex"].as_str())
            .map(String::from)
            .unwrap_or_else(|| panic!("no relabel rule keeps by {label}"))
    };
    let install: Vec<serde_yaml::Value> =
        serde_yaml::Deserializer::from_str(&read("manifests/install.yaml"))
            .map(|doc| serde::Deserialize::deserialize(doc).expect("install.yaml"))
            .collect();
    let deployment = install
        .iter()
        .find(|d| {
            d["kind"].as_str() == Some("Deployment")
                && d["metadata"]["name"].as_str() == Some("synqx-operator")
        })
        .expect("the operator's Deployment in manifests/install.yaml");
    let template = &deployment["spec"]["template"];
    assert_eq!(
        template["metadata"]["labels"]["app.kubernetes.io/name"].as_str(),
        Some(keep("__meta_kubernetes_pod_label_app_kubernetes_io_name").as_str())
    );
    let port = keep("__meta_kubernetes_pod_container_port_name");
    let ports: Vec<&str> = template["spec"]["containers"]
        .as_sequence()
        .into_iter()
        .flatten()
        .flat_map(|c| c["ports"].as_sequence().into_iter().flatten())
        .filter_map(|p| p["name"].as_str())
        .collect();
    assert!(
        ports.contains(&port.as_str()),
        "no port {port} in {ports:?}"
    );
}

fn dashboard() -> Value {
    serde_json::from_str(&read(DASHBOARD_SOURCE)).expect("dashboard JSON")
}

#[test]
fn the_dashboard_passes_the_dashboard_linter_rules() {
    let dashboard = dashboard();
    let problems = lint_dashboard(&dashboard);
    assert!(problems.is_empty(), "{}", problems.join("\n"));
    let queries = monitoring::dashboard_queries(&dashboard);
    assert!(queries.len() >= 20, "{queries:?}");
    // The panels the issue asks for, each with a query on its metric.
    for metric in [
        "synqx_runs_total",
        "synqx_rows_written_total",
        "synqx_rows_read_total",
        "synqx_bytes_written_total",
        "synqx_rows_rejected_total",
        "synqx_step_duration_seconds_bucket",
        "synqx_watermark_age_seconds",
        "synqx_pipeline_stale_after_seconds",
        "synqx_active_jobs",
        "synqx_pending_jobs",
        "synqx_reconcile_duration_seconds_bucket",
        "synqx_reconcile_errors_total",
        "synqx_leader",
    ] {
        assert!(
            queries.iter().any(|(_, q)| q.contains(metric)),
            "no panel queries {metric}"
        );
    }
}

#[test]
fn the_dashboard_linter_rules_catch_what_they_forbid() {
    let mut broken = dashboard();
    broken["templating"]["list"][0]["type"] = "custom".into();
    let panel = broken["panels"]
        .as_array_mut()
        .and_then(|p| p.iter_mut().find(|p| p["type"] != "row"))
        .expect("a panel");
    panel["datasource"]["uid"] = "prometheus-main".into();
    panel["fieldConfig"]["defaults"]["unit"] = "".into();
    panel["targets"][0]["expr"] = "sum(rate(synqx_runs_total{phase=\"Failed\"}[5m]))".into();
    let problems = lint_dashboard(&broken).join("\n");
    for rule in [
        "template-datasource-rule",
        "panel-datasource-rule",
        "panel-units-rule",
        "target-rate-interval-rule",
        "target-job-rule",
    ] {
        assert!(problems.contains(rule), "{rule} not reported:\n{problems}");
    }
}

#[test]
fn argocd_health_checks_pass_their_tests_in_gopher_lua() {
    let harness = argocd_health();
    let folders: Vec<String> = HEALTH_KINDS
        .iter()
        .map(|kind| format!("manifests/argocd/synqx.io/{kind}"))
        .collect();
    let args: Vec<&str> = folders.iter().map(String::as_str).collect();
    let out = run(&harness, &args, &repo());
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // One case per health state each kind can be in.
    for (kind, states) in [
        (
            "Pipeline",
            &["Healthy", "Progressing", "Degraded", "Suspended"][..],
        ),
        (
            "PipelineRun",
            &["Healthy", "Progressing", "Degraded", "Suspended"],
        ),
        ("Connection", &["Healthy", "Progressing", "Degraded"]),
    ] {
        for state in states {
            let case = format!("ok   manifests/argocd/synqx.io/{kind} ");
            assert!(
                text.lines()
                    .any(|l| l.starts_with(&case) && l.contains(&format!(": {state} "))),
                "{kind}: no {state} case\n{text}"
            );
        }
    }
}

#[test]
fn the_argocd_config_map_installs_every_health_check_verbatim() {
    let cm: serde_yaml::Value =
        serde_yaml::from_str(&read("manifests/argocd/argocd-cm.yaml")).expect("argocd-cm YAML");
    for kind in HEALTH_KINDS {
        let key = format!("resource.customizations.health.synqx.io_{kind}");
        let script = read(&format!("manifests/argocd/synqx.io/{kind}/health.lua"));
        assert_eq!(
            cm["data"][key.as_str()].as_str(),
            Some(script.as_str()),
            "{key} in manifests/argocd/argocd-cm.yaml differs from synqx.io/{kind}/health.lua: \
             run `UPDATE_MANIFESTS=1 cargo test -p synqx-e2e --features control-plane --test monitoring_files`"
        );
    }
}

#[test]
fn the_chart_renders_the_monitoring_objects_only_when_asked_from_the_same_sources() {
    use synqx_e2e::helm::{NAMESPACE, template};
    let documents = |yaml: &str| -> Vec<serde_yaml::Value> {
        serde_yaml::Deserializer::from_str(yaml)
            .map(|doc| serde::Deserialize::deserialize(doc).expect("rendered YAML"))
            .filter(|doc: &serde_yaml::Value| !doc.is_null())
            .collect()
    };
    let find = |docs: &[serde_yaml::Value], kind: &str, name: &str| {
        docs.iter()
            .find(|d| {
                d["kind"].as_str() == Some(kind) && d["metadata"]["name"].as_str() == Some(name)
            })
            .cloned()
    };
    let off = documents(&template(NAMESPACE, &[]));
    assert!(find(&off, "PrometheusRule", "synqx").is_none());
    assert!(find(&off, "ServiceMonitor", "synqx-operator").is_none());
    assert!(find(&off, "ConfigMap", "synqx-grafana-dashboard").is_none());

    let on = documents(&template(
        NAMESPACE,
        &[
            "--set",
            "prometheusRule.enabled=true,serviceMonitor.enabled=true,grafanaDashboard.enabled=true",
        ],
    ));
    // The PrometheusRule holds the plain file's rules, and promtool accepts them.
    let rule = find(&on, "PrometheusRule", "synqx").expect("the PrometheusRule");
    let plain: serde_yaml::Value = serde_yaml::from_str(&read(RULES_PLAIN)).expect("rules");
    assert_eq!(rule["spec"], plain);
    let dir = tempfile::tempdir().expect("tempdir");
    let rendered = dir.path().join("chart-rules.yaml");
    std::fs::write(
        &rendered,
        serde_yaml::to_string(&rule["spec"]).expect("YAML"),
    )
    .expect("write");
    let out = run(
        &promtool(),
        &["check", "rules", "chart-rules.yaml"],
        dir.path(),
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && text.contains("SUCCESS: 7 rules found"),
        "{text}"
    );

    // The ServiceMonitor selects the metrics Service, keeps the operator's labels and names
    // the job the rules select.
    let monitor = find(&on, "ServiceMonitor", "synqx-operator").expect("the ServiceMonitor");
    let service = on
        .iter()
        .find(|d| {
            d["kind"].as_str() == Some("Service")
                && d["spec"]["ports"][0]["name"].as_str() == Some("metrics")
        })
        .expect("the metrics Service");
    let selector = monitor["spec"]["selector"]["matchLabels"]
        .as_mapping()
        .expect("selector");
    for (label, value) in selector {
        assert_eq!(&service["metadata"]["labels"][label], value, "{label:?}");
    }
    let endpoint = &monitor["spec"]["endpoints"][0];
    assert_eq!(endpoint["port"].as_str(), Some("metrics"));
    assert_eq!(endpoint["honorLabels"].as_bool(), Some(true));
    assert_eq!(
        endpoint["relabelings"][0]["targetLabel"].as_str(),
        Some("job")
    );
    assert_eq!(
        endpoint["relabelings"][0]["replacement"].as_str(),
        Some(JOB)
    );

    // The dashboard ConfigMap carries the sidecar's label and the dashboard's source.
    let dashboard = find(&on, "ConfigMap", "synqx-grafana-dashboard").expect("the ConfigMap");
    assert_eq!(
        dashboard["metadata"]["labels"]["grafana_dashboard"].as_str(),
        Some("1")
    );
    let json: Value = serde_json::from_str(
        dashboard["data"]["synqx-dashboard.json"]
            .as_str()
            .expect("dashboard data"),
    )
    .expect("dashboard JSON");
    assert_eq!(json, self::dashboard());
}
