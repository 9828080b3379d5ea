//! The Helm chart: lint, its values schema, the manifests generated from it, and its
//! renderings applied to the real API server with a server-side dry run.

use synqx_e2e::cluster::Cluster;
use synqx_e2e::helm::{self, NAMESPACE, install_manifest, runner_manifest, template};

const NAMESPACED_VALUES: &str = "tests/fixtures/chart/namespaced-values.yaml";

fn stderr(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// `kind/name` of every document, in order.
fn objects(yaml: &str) -> Vec<String> {
    yaml.split("\n---")
        .filter_map(|doc| {
            let value: serde_yaml::Value = serde_yaml::from_str(doc).ok()?;
            let kind = value.get("kind")?.as_str()?.to_string();
            let name = value.get("metadata")?.get("name")?.as_str()?.to_string();
            let namespace = value
                .get("metadata")?
                .get("namespace")
                .and_then(|n| n.as_str())
                .map(|n| format!("{n}/"))
                .unwrap_or_default();
            Some(format!("{kind}/{namespace}{name}"))
        })
        .collect()
}

#[test]
fn the_chart_lints_strictly() {
    let out = helm::run(&["lint", "--strict", helm::CHART], None);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}{}", stderr(&out));
    assert!(
        text.contains("1 chart(s) linted, 0 chart(s) failed"),
        "{text}"
    );
}

#[test]
fn install_and_runner_manifests_are_the_rendered_chart() {
    let root = helm::repo();
    for (file, expected) in [
        ("manifests/install.yaml", install_manifest()),
        ("manifests/runner.yaml", runner_manifest()),
    ] {
        let path = root.join(file);
        if synqx_testkit::golden::update_requested("UPDATE_MANIFESTS") {
            std::fs::write(&path, &expected).unwrap_or_else(|e| panic!("{file}: {e}"));
        }
        let found = std::fs::read_to_string(&path).unwrap_or_default();
        assert!(
            found == expected,
            "{file} is not what the chart renders: run `UPDATE_MANIFESTS=1 cargo test -p synqx-e2e --features control-plane --test chart`"
        );
    }
}

#[test]
fn default_values_install_everything_cluster_wide() {
    let rendered = template(NAMESPACE, &[]);
    let found = objects(&rendered);
    for expected in [
        "CustomResourceDefinition/pipelines.synqx.io",
        "CustomResourceDefinition/pipelineruns.synqx.io",
        "CustomResourceDefinition/connections.synqx.io",
        "ClusterRole/synqx-operator",
        "ClusterRoleBinding/synqx-operator",
        "Role/synqx-system/synqx-operator-leader",
        "ServiceAccount/synqx-system/synqx-operator",
        "ServiceAccount/default/synqx-runner",
        "Deployment/synqx-system/synqx-operator",
        "Service/synqx-system/synqx-operator-metrics",
        "Service/synqx-system/synqx-gateway",
        "ClusterRole/synqx-operator-gateway",
        "ClusterRoleBinding/synqx-operator-gateway",
        "PodDisruptionBudget/synqx-system/synqx-operator",
    ] {
        assert!(
            found.contains(&expected.to_string()),
            "{expected} missing from {found:#?}"
        );
    }
    for expected in [
        "replicas: 2",
        "- --all-namespaces",
        "- --leader-elect",
        "image: ghcr.io/synqx/synqx:0.1.0",
        "imagePullPolicy: IfNotPresent",
        "helm.sh/resource-policy: keep",
        "- --pod-start-timeout=5m",
        "- --gateway-addr=0.0.0.0:8081",
        "- --gateway-url=http://synqx-gateway.synqx-system.svc:8081",
        "- {name: gateway, containerPort: 8081}",
    ] {
        assert!(
            rendered.contains(expected),
            "the default rendering lacks `{expected}`"
        );
    }
    // crds.install=false leaves the CRDs to whoever manages them.
    let without = objects(&template(NAMESPACE, &["--set", "crds.install=false"]));
    assert!(
        !without
            .iter()
            .any(|o| o.starts_with("CustomResourceDefinition/")),
        "{without:?}"
    );
}

#[test]
fn namespaced_values_grant_roles_only_in_the_listed_namespaces() {
    let rendered = template("synqx-chart-system", &["--values", NAMESPACED_VALUES]);
    let found = objects(&rendered);
    // Cluster-wide only the gateway's reviews (TokenReview and SubjectAccessReview are
    // cluster-scoped kinds), and only those two rights.
    let cluster_wide: Vec<&String> = found
        .iter()
        .filter(|o| o.starts_with("ClusterRole"))
        .collect();
    assert_eq!(
        cluster_wide,
        [
            "ClusterRole/synqx-operator-gateway",
            "ClusterRoleBinding/synqx-operator-gateway"
        ],
        "{found:#?}"
    );
    let reviews = "rules:\n  - apiGroups: [authentication.k8s.io]\n    resources: [tokenreviews]\n    verbs: [create]\n  - apiGroups: [authorization.k8s.io]\n    resources: [subjectaccessreviews]\n    verbs: [create]\n---";
    assert!(rendered.contains(reviews), "{rendered}");
    // Without the gateway: nothing cluster-wide, no Service, and the operator is told so.
    let without = template(
        "synqx-chart-system",
        &[
            "--values",
            NAMESPACED_VALUES,
            "--set",
            "gateway.enabled=false",
        ],
    );
    let objects_without = objects(&without);
    assert!(
        !objects_without
            .iter()
            .any(|o| o.starts_with("ClusterRole") || o.ends_with("/synqx-gateway")),
        "{objects_without:#?}"
    );
    assert!(without.contains("- --no-gateway\n"), "{without}");
    for ns in ["synqx-chart-etl-a", "synqx-chart-etl-b"] {
        for kind in ["Role", "RoleBinding"] {
            let expected = format!("{kind}/{ns}/synqx-operator");
            assert!(
                found.contains(&expected),
                "{expected} missing from {found:#?}"
            );
            // The runner's identity has no rights: a service account and nothing else.
            let runner = format!("{kind}/{ns}/synqx-runner");
            assert!(!found.contains(&runner), "{runner} in {found:#?}");
        }
        assert!(
            found.contains(&format!("ServiceAccount/{ns}/synqx-runner")),
            "{found:#?}"
        );
        assert!(
            rendered.contains(&format!("- --namespace={ns}")),
            "{rendered}"
        );
    }
    assert!(!rendered.contains("--all-namespaces"));
    assert!(
        rendered.contains("- \"--revision-history\"\n            - \"5\""),
        "{rendered}"
    );
}

#[test]
fn the_policy_values_become_the_operators_flags_and_default_to_refusing() {
    // As arguments of the operator (the CRDs' descriptions name the flags too).
    let flags = [
        "- \"--allowed-runner-images=",
        "- --allow-service-account-override\n",
        "- --allow-ambient-credentials\n",
    ];
    let default = template(NAMESPACE, &[]);
    for flag in flags {
        assert!(
            !default.contains(flag),
            "the default rendering has `{flag}`"
        );
    }
    let allowing = template(
        NAMESPACE,
        &[
            "--set",
            "runner.allowedImages={registry.example.com/etl:2,registry.example.com/synqx:*}",
            "--set",
            "runner.allowServiceAccountOverride=true",
            "--set",
            "runner.allowAmbientCredentials=true",
        ],
    );
    for expected in [
        "- \"--allowed-runner-images=registry.example.com/etl:2\"\n",
        "- \"--allowed-runner-images=registry.example.com/synqx:*\"\n",
        "- --allow-service-account-override\n",
        "- --allow-ambient-credentials\n",
    ] {
        assert!(allowing.contains(expected), "`{expected}` missing");
    }
    // The schema refuses an image pattern with a `*` anywhere but at its end.
    let bad = helm::run(
        &[
            "template",
            "x",
            helm::CHART,
            "--set",
            "runner.allowedImages={registry.example.com/*/synqx}",
        ],
        None,
    );
    assert!(!bad.status.success());
    assert!(
        stderr(&bad).contains("/runner/allowedImages/0"),
        "{}",
        stderr(&bad)
    );
}

#[test]
fn the_values_schema_rejects_a_wrong_type_and_an_unknown_key() {
    let wrong_type = helm::run(
        &[
            "template",
            "x",
            helm::CHART,
            "--set",
            "operator.replicas=two",
        ],
        None,
    );
    assert!(!wrong_type.status.success());
    assert!(
        stderr(&wrong_type).contains("at '/operator/replicas': got string, want integer"),
        "{}",
        stderr(&wrong_type)
    );
    let unknown = helm::run(
        &["template", "x", helm::CHART, "--set", "operator.replica=2"],
        None,
    );
    assert!(!unknown.status.success());
    assert!(
        stderr(&unknown).contains("additional properties 'replica' not allowed"),
        "{}",
        stderr(&unknown)
    );
    let bad_enum = helm::run(
        &[
            "template",
            "x",
            helm::CHART,
            "--set",
            "image.pullPolicy=Sometimes",
        ],
        None,
    );
    assert!(!bad_enum.status.success());
    assert!(
        stderr(&bad_enum).contains("/image/pullPolicy"),
        "{}",
        stderr(&bad_enum)
    );
}

#[tokio::test]
async fn both_renderings_pass_a_server_side_dry_run() {
    let cluster = Cluster::shared();
    let release = cluster.namespace("chart").await;
    for ns in ["synqx-chart-etl-a", "synqx-chart-etl-b"] {
        let yaml = format!("apiVersion: v1\nkind: Namespace\nmetadata: {{name: {ns}}}\n");
        let out = cluster.kubectl(&["apply", "-f", "-"], Some(&yaml));
        assert!(out.status.success(), "{}", stderr(&out));
    }
    for extra in [vec![], vec!["--values", NAMESPACED_VALUES]] {
        let rendered = template(&release.name, &extra);
        let out = cluster.kubectl(&["apply", "--dry-run=server", "-f", "-"], Some(&rendered));
        assert!(
            out.status.success(),
            "kubectl apply --dry-run=server of the chart with {extra:?}: {}",
            stderr(&out)
        );
        let applied = String::from_utf8_lossy(&out.stdout);
        assert!(
            applied.contains("deployment.apps/synqx-operator created (server dry run)"),
            "{applied}"
        );
    }
}

#[test]
fn step_logs_are_kept_on_a_volume_by_default_and_the_values_choose_it() {
    let rendered = template(NAMESPACE, &[]);
    assert!(
        objects(&rendered).contains(&"PersistentVolumeClaim/synqx-system/synqx-logs".to_string()),
        "{rendered}"
    );
    for expected in [
        "- --logs-dir=/var/lib/synqx/logs",
        "- --logs-max-bytes=64Mi",
        "- --watch-buffer-bytes=16Mi",
        "- {name: logs, mountPath: /var/lib/synqx/logs}",
        "claimName: synqx-logs",
        "storage: 8Gi",
        "fsGroup: 65532",
        // A ReadWriteOnce volume: both replicas on its node.
        "topologyKey: kubernetes.io/hostname",
    ] {
        assert!(
            rendered.contains(expected),
            "the default rendering lacks `{expected}`"
        );
    }
    assert!(
        !rendered.contains("storageClassName"),
        "the cluster's default class"
    );

    let chosen = template(
        NAMESPACE,
        &[
            "--set",
            "logs.persistence.storageClass=fast",
            "--set",
            "logs.persistence.size=50Gi",
            "--set",
            "logs.persistence.accessModes={ReadWriteMany}",
            "--set",
            "logs.maxBytes=1Gi",
            "--set",
            "gateway.watchBufferBytes=64Mi",
        ],
    );
    for expected in [
        "storageClassName: \"fast\"",
        "storage: 50Gi",
        "- ReadWriteMany",
        "- --logs-max-bytes=1Gi",
        "- --watch-buffer-bytes=64Mi",
    ] {
        assert!(chosen.contains(expected), "`{expected}` missing:\n{chosen}");
    }
    assert!(
        !chosen.contains("topologyKey: kubernetes.io/hostname"),
        "ReadWriteMany spreads the replicas"
    );

    let existing = template(
        NAMESPACE,
        &["--set", "logs.persistence.existingClaim=shared-logs"],
    );
    assert!(existing.contains("claimName: shared-logs"));
    assert!(
        !objects(&existing)
            .iter()
            .any(|o| o.starts_with("PersistentVolumeClaim/"))
    );

    let off = template(NAMESPACE, &["--set", "logs.persistence.enabled=false"]);
    assert!(
        !objects(&off)
            .iter()
            .any(|o| o.starts_with("PersistentVolumeClaim/"))
    );
    assert!(!off.contains("--logs-dir"), "no store without the volume");
    assert!(!off.contains("mountPath: /var/lib/synqx/logs"));

    // An object store instead: the Connection and prefix as flags, no volume, and the
    // right to read the Connection and its Secrets in the operator's namespace.
    let bucket = template(
        NAMESPACE,
        &[
            "--set",
            "logs.connection=lake",
            "--set",
            "logs.prefix=ops/logs",
        ],
    );
    for expected in [
        "- --logs-connection=lake",
        "- --logs-prefix=ops/logs",
        "resources: [connections]",
    ] {
        assert!(bucket.contains(expected), "`{expected}` missing:\n{bucket}");
    }
    assert!(!bucket.contains("--logs-dir"), "one store");
    assert!(!bucket.contains("mountPath: /var/lib/synqx/logs"));
    assert!(
        !objects(&bucket)
            .iter()
            .any(|o| o.starts_with("PersistentVolumeClaim/"))
    );

    let refused = helm::run(
        &[
            "template",
            helm::RELEASE,
            helm::CHART,
            "--set",
            "logs.maxBytes=lots",
        ],
        None,
    );
    assert!(
        !refused.status.success(),
        "a size that is no size is refused"
    );
}
