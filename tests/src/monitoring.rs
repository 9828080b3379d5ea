//! The monitoring files SynqX ships, as the tests read them: the alert rules and Grafana
//! dashboard (sources in the chart, plain copies under `manifests/`), the example scrape
//! config, the checks of Grafana's dashboard-linter, promtool, and the ArgoCD health-check
//! harness (gopher-lua, `tests/argocd-health`).

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::Value;

/// The repository's root folder.
pub fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| panic!("{} has no parent", env!("CARGO_MANIFEST_DIR")))
}

/// The alert rules' source, which the chart's PrometheusRule includes.
pub const RULES_SOURCE: &str = "charts/synqx/files/synqx-rules.yaml";
/// The rules for Prometheus without the operator, generated from [`RULES_SOURCE`].
pub const RULES_PLAIN: &str = "manifests/prometheus/synqx-rules.yaml";
/// The dashboard's source, which the chart's dashboard ConfigMap includes.
pub const DASHBOARD_SOURCE: &str = "charts/synqx/files/synqx-dashboard.json";
/// The dashboard to import by hand, a copy of [`DASHBOARD_SOURCE`].
pub const DASHBOARD_PLAIN: &str = "manifests/grafana/synqx-dashboard.json";
/// The example scrape config.
pub const SCRAPE_CONFIG: &str = "manifests/prometheus/prometheus.yml";
/// The kinds with an ArgoCD health check under `manifests/argocd/synqx.io/<Kind>/`.
pub const HEALTH_KINDS: [&str; 3] = ["Connection", "Pipeline", "PipelineRun"];
/// The scrape job every rule and the dashboard select.
pub const JOB: &str = "synqx-operator";

pub fn read(relative: &str) -> String {
    std::fs::read_to_string(repo().join(relative))
        .unwrap_or_else(|e| panic!("reading {relative}: {e}"))
}

/// Each plain file with the text it must have, generated from its source in the chart.
pub fn plain_files() -> Vec<(&'static str, String)> {
    let rules = format!(
        "# Generated from {RULES_SOURCE} (the chart's PrometheusRule has the same rules);\n\
         # edit that file, then `UPDATE_MANIFESTS=1 cargo test -p synqx-e2e --features control-plane --test monitoring_files`.\n{}",
        read(RULES_SOURCE)
    );
    vec![
        (RULES_PLAIN, rules),
        (DASHBOARD_PLAIN, read(DASHBOARD_SOURCE)),
        (ARGOCD_CM, argocd_cm()),
    ]
}

/// The ConfigMap that installs the health checks in ArgoCD.
pub const ARGOCD_CM: &str = "manifests/argocd/argocd-cm.yaml";

/// `argocd-cm` with every health check of `manifests/argocd/synqx.io/<Kind>/health.lua`.
fn argocd_cm() -> String {
    let mut text = String::from(
        "# ArgoCD health checks for SynqX: a failed run shows Degraded with its failed step, a\n\
         # running one Progressing with its progress, an invalid Pipeline Degraded with why.\n\
         # Merge into the argocd-cm ConfigMap of your ArgoCD (`kubectl -n argocd patch configmap\n\
         # argocd-cm --patch-file manifests/argocd/argocd-cm.yaml`). Generated from\n\
         # manifests/argocd/synqx.io/<Kind>/health.lua by\n\
         # `UPDATE_MANIFESTS=1 cargo test -p synqx-e2e --features control-plane --test monitoring_files`.\n\
         apiVersion: v1\n\
         kind: ConfigMap\n\
         metadata:\n\
         \x20 name: argocd-cm\n\
         \x20 namespace: argocd\n\
         \x20 labels:\n\
         \x20   app.kubernetes.io/name: argocd-cm\n\
         \x20   app.kubernetes.io/part-of: argocd\n\
         data:\n",
    );
    for kind in HEALTH_KINDS {
        text.push_str(&format!(
            "  resource.customizations.health.synqx.io_{kind}: |\n"
        ));
        for line in read(&format!("manifests/argocd/synqx.io/{kind}/health.lua")).lines() {
            match line.is_empty() {
                true => text.push('\n'),
                false => text.push_str(&format!("    {line}\n")),
            }
        }
    }
    text
}

/// promtool from Debian's `prometheus` package; a missing one fails the test that needs it.
pub fn promtool() -> PathBuf {
    find_on_path("promtool").unwrap_or_else(|| {
        panic!(
            "promtool is not on PATH: install Debian's prometheus package \
             (`apt-get install prometheus`; scripts/test-all.sh does)"
        )
    })
}

/// The Prometheus server from the same package.
pub fn prometheus() -> PathBuf {
    find_on_path("prometheus").unwrap_or_else(|| {
        panic!(
            "prometheus is not on PATH: install Debian's prometheus package \
             (`apt-get install prometheus`; scripts/test-all.sh does)"
        )
    })
}

fn find_on_path(name: &str) -> Option<PathBuf> {
    std::env::var_os("PATH").and_then(|path| {
        std::env::split_paths(&path)
            .map(|dir| dir.join(name))
            .find(|candidate| candidate.is_file())
    })
}

/// Runs `program args…` in `dir`, returning its output; a program that cannot start fails.
pub fn run(program: &Path, args: &[&str], dir: &Path) -> Output {
    Command::new(program)
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap_or_else(|e| panic!("running {}: {e}", program.display()))
}

/// Every query of the dashboard: (panel title, PromQL), targets of every panel and row.
pub fn dashboard_queries(dashboard: &Value) -> Vec<(String, String)> {
    panels(dashboard)
        .iter()
        .flat_map(|panel| {
            let title = panel["title"].as_str().unwrap_or_default().to_string();
            targets(panel)
                .iter()
                .filter_map(|t| t["expr"].as_str())
                .map(move |expr| (title.clone(), expr.to_string()))
                .collect::<Vec<_>>()
        })
        .collect()
}

fn panels(dashboard: &Value) -> Vec<&Value> {
    let mut all = Vec::new();
    for panel in dashboard["panels"].as_array().into_iter().flatten() {
        all.push(panel);
        all.extend(panel["panels"].as_array().into_iter().flatten());
    }
    all
}

fn targets(panel: &Value) -> Vec<&Value> {
    panel["targets"].as_array().into_iter().flatten().collect()
}

fn variables(dashboard: &Value) -> Vec<&Value> {
    dashboard["templating"]["list"]
        .as_array()
        .into_iter()
        .flatten()
        .collect()
}

fn uses_datasource_variable(datasource: &Value) -> bool {
    let uid = datasource["uid"].as_str().or(datasource.as_str());
    matches!(uid, Some("${datasource}" | "$datasource"))
}

/// What the rules of Grafana's dashboard-linter find wrong with `dashboard` (its Go module
/// cannot be fetched here, so its Prometheus rules are written out): a templated
/// datasource, a templated job that every query selects, the templated datasource on every
/// panel and target, `$__rate_interval` in every rate, irate and increase, templated
/// labels from `label_values` of the same datasource, and a title, description and unit
/// on every panel.
pub fn lint_dashboard(dashboard: &Value) -> Vec<String> {
    let mut problems = Vec::new();
    let vars = variables(dashboard);
    let datasources: Vec<&&Value> = vars.iter().filter(|v| v["type"] == "datasource").collect();
    match datasources.as_slice() {
        [one] if one["name"] == "datasource" && one["query"] == "prometheus" => {}
        _ => problems.push(
            "template-datasource-rule: the dashboard needs exactly one template variable \
             `datasource` of type datasource with query `prometheus`"
                .to_string(),
        ),
    }
    if !vars
        .iter()
        .any(|v| v["name"] == "job" && v["type"] == "query")
    {
        problems.push("template-job-rule: the dashboard needs a `job` query variable".into());
    }
    for var in vars.iter().filter(|v| v["type"] == "query") {
        let name = var["name"].as_str().unwrap_or_default();
        if !uses_datasource_variable(&var["datasource"]) {
            problems.push(format!(
                "template-label-promql-rule: variable {name} does not query ${{datasource}}"
            ));
        }
        let query = var["query"].as_str().unwrap_or_default();
        if !(query.starts_with("label_values(") && query.ends_with(')')) {
            problems.push(format!(
                "template-label-promql-rule: variable {name}: `{query}` is not label_values(selector, label)"
            ));
        }
        if var["refresh"] != 2 {
            problems.push(format!(
                "template-on-time-change-reload-rule: variable {name} must refresh on time range change (refresh: 2)"
            ));
        }
    }
    for panel in panels(dashboard) {
        let title = panel["title"].as_str().unwrap_or_default();
        if panel["type"] == "row" {
            continue;
        }
        if title.is_empty() || panel["description"].as_str().unwrap_or_default().is_empty() {
            problems.push(format!(
                "panel-title-description-rule: panel {title:?} needs a title and a description"
            ));
        }
        if panel["fieldConfig"]["defaults"]["unit"]
            .as_str()
            .unwrap_or_default()
            .is_empty()
        {
            problems.push(format!("panel-units-rule: panel {title:?} has no unit"));
        }
        if !uses_datasource_variable(&panel["datasource"]) {
            problems.push(format!(
                "panel-datasource-rule: panel {title:?} does not use ${{datasource}}"
            ));
        }
        let targets = targets(panel);
        if targets.is_empty() {
            problems.push(format!("panel {title:?} has no query"));
        }
        for target in targets {
            let expr = target["expr"].as_str().unwrap_or_default();
            if !uses_datasource_variable(&target["datasource"]) {
                problems.push(format!(
                    "panel-datasource-rule: a target of panel {title:?} does not use ${{datasource}}"
                ));
            }
            for range in rate_ranges(expr) {
                if range != "$__rate_interval" {
                    problems.push(format!(
                        "target-rate-interval-rule: panel {title:?}: `{expr}` uses [{range}], not [$__rate_interval]"
                    ));
                }
            }
            for selector in selectors(expr) {
                if !selector.contains("job=~\"$job\"") {
                    problems.push(format!(
                        "target-job-rule: panel {title:?}: selector {{{selector}}} has no job=~\"$job\""
                    ));
                }
            }
        }
    }
    problems
}

/// The range of every `rate(`, `irate(` and `increase(` call in `expr`.
fn rate_ranges(expr: &str) -> Vec<String> {
    let mut ranges = Vec::new();
    for function in ["rate(", "irate(", "increase("] {
        let mut rest = expr;
        while let Some(at) = rest.find(function) {
            let preceded_by_name = rest[..at]
                .chars()
                .next_back()
                .is_some_and(|c| c.is_alphanumeric() || c == '_');
            let inside = &rest[at + function.len()..];
            let end = closing_paren(inside).unwrap_or(inside.len());
            if !preceded_by_name {
                match (inside[..end].rfind('['), inside[..end].rfind(']')) {
                    (Some(open), Some(close)) if open < close => {
                        ranges.push(inside[open + 1..close].to_string())
                    }
                    _ => ranges.push(String::new()),
                }
            }
            rest = &inside[end.min(inside.len())..];
        }
    }
    ranges
}

fn closing_paren(text: &str) -> Option<usize> {
    let mut depth = 0usize;
    for (i, c) in text.char_indices() {
        match c {
            '(' => depth += 1,
            ')' if depth == 0 => return Some(i),
            ')' => depth -= 1,
            _ => {}
        }
    }
    None
}

/// The label matchers inside every `{…}` of `expr`.
fn selectors(expr: &str) -> Vec<&str> {
    let mut found = Vec::new();
    let mut rest = expr;
    while let Some(open) = rest.find('{') {
        let Some(close) = rest[open..].find('}') else {
            break;
        };
        found.push(&rest[open + 1..open + close]);
        rest = &rest[open + close + 1..];
    }
    found
}

/// The ArgoCD health-check harness, built (once, cached) by `tests/argocd-health/build`.
pub fn argocd_health() -> PathBuf {
    let output = run(
        &repo().join("tests/argocd-health/build"),
        &[],
        &repo().join("tests/argocd-health"),
    );
    assert!(
        output.status.success(),
        "building the ArgoCD health harness failed:\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    PathBuf::from(String::from_utf8_lossy(&output.stdout).trim())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rate_ranges_and_selectors_are_found_in_nested_queries() {
        let expr = r#"histogram_quantile(0.5, sum by (le) (rate(x_bucket{job=~"$job", a="b"}[$__rate_interval]))) / increase(y{c="d"}[5m]) + sum_over_time(z[1h])"#;
        assert_eq!(rate_ranges(expr), ["$__rate_interval", "5m"]);
        assert_eq!(selectors(expr), [r#"job=~"$job", a="b""#, r#"c="d""#]);
        assert_eq!(rate_ranges("irate(q[1m])"), ["1m"]);
    }
}
