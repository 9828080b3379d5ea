//! Step pods report to the operator's gateway with no Kubernetes credentials: the telemetry
//! route refuses every token but the projected one of the pod that runs that very attempt
//! (forged, of another pod, for another audience, expired); a run whose pods hold no
//! service-account token ends with its exact counters and watermark range; and a gateway
//! restarted while a step runs gets the step's reports again, with the final numbers right.

use std::path::{Path, PathBuf};
use std::time::Duration;

use base64::Engine as _;
use k8s_openapi::api::core::v1::{Pod, ServiceAccount};
use kube::api::ListParams;
use serde_json::json;
use synqx_api::gateway::Body;
use synqx_api::run::{PipelineRun, StepReport};
use synqx_api::telemetry::{AUDIENCE, PATH};
use synqx_e2e::audit::{AuditLog, OPERATOR_USER, tally};
use synqx_e2e::cluster::{Cluster, TestNamespace, wait_for_value, wait_until};
use synqx_e2e::gateway::{Auth, Gate, Next, connect, next, post, wait_until_served, watch_path};
use synqx_e2e::own_operator::{kill_pod, lease_holder};
use synqx_e2e::runs::{
    apply, container_statuses, folder, pods_of_job, setup, sqlite, start_run, step, succeeded,
};

/// The tests that restart the operator must not overlap the others of this file.
static GATEWAY: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// A Pipeline whose steps each read the [`Gate`]'s API into a SQLite database of their own
/// (the Connection `<step>-db`: parallel writers of one SQLite file would lock each other out),
/// with those Connections.
fn gated(name: &str, steps: &[&str], data: &Path) -> String {
    let mut yaml: String = steps
        .iter()
        .map(|s| sqlite(&format!("{s}-db"), &data.join(format!("{s}.sqlite"))))
        .collect();
    yaml.push_str(&format!(
        "apiVersion: synqx.io/v1alpha1\nkind: Pipeline\nmetadata: {{name: {name}}}\nspec:\n  steps:\n"
    ));
    for s in steps {
        yaml.push_str(&format!(
            "    - {{name: {s}, sync: {{source: {{connection: api, asset: {{fqn: records}}}}, destination: {{connection: {s}-db, asset: {{fqn: {s}}}, mode: overwrite}}}}}}\n"
        ));
    }
    yaml
}

/// The pod running `step` of `run`, once the kubelet runs it.
async fn running_pod(ns: &TestNamespace, run: &str, step: &str) -> Pod {
    let pods: kube::Api<Pod> = ns.api();
    let selector = format!("synqx.io/run={run},synqx.io/step={step}");
    let what = format!("a running pod of step {step} of {run}");
    wait_for_value(Duration::from_secs(120), &what, || async {
        pods.list(&ListParams::default().labels(&selector))
            .await
            .unwrap_or_else(|e| panic!("listing pods {selector}: {e}"))
            .items
            .into_iter()
            .find(|p| p.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Running"))
    })
    .await
}

/// Seconds since the Unix epoch.
fn epoch_seconds() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

/// The pod's folder in the process kubelet.
fn pod_dir(cluster: &Cluster, pod: &Pod) -> PathBuf {
    synqx_e2e::kubelet::pod::pod_dir(&cluster.run_dir.join("kubelet"), pod)
}

/// The projected token the kubelet wrote for the pod (the gateway's audience).
fn projected_token(cluster: &Cluster, pod: &Pod) -> String {
    let path = pod_dir(cluster, pod).join("volumes/synqx-gateway-token/token");
    std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("reading the pod's projected token {}: {e}", path.display()))
}

/// A step pod holds no credentials for the Kubernetes API: automount is off, no volume
/// holds an API token, and the kubelet gave its process no kubeconfig.
fn assert_no_credentials(cluster: &Cluster, pod: &Pod) {
    let spec = pod.spec.clone().unwrap_or_default();
    assert_eq!(spec.automount_service_account_token, Some(false));
    for volume in spec.volumes.iter().flatten() {
        for source in volume
            .projected
            .iter()
            .flat_map(|p| p.sources.iter().flatten())
        {
            if let Some(token) = &source.service_account_token {
                assert_eq!(
                    token.audience.as_deref(),
                    Some(AUDIENCE),
                    "volume {}: only the gateway's audience",
                    volume.name
                );
            }
        }
    }
    assert!(
        !pod_dir(cluster, pod).join("kubeconfig").exists(),
        "the kubelet gave the step no kubeconfig"
    );
}

/// A telemetry report of attempt 1 of `step`.
fn report(ns: &TestNamespace, run: &str, step: &str, rows: u64) -> String {
    json!({
        "namespace": ns.name, "run": run, "step": step, "attempt": 1, "phase": "Running",
        "counters": {"name": step, "rowsRead": rows},
    })
    .to_string()
}

/// A token signed with the control plane's service-account key, as the API server signs
/// the projected token of `pod`, expiring at `exp` (seconds since the epoch).
fn signed_token(
    cluster: &Cluster,
    ns: &TestNamespace,
    pod: &Pod,
    account_uid: &str,
    exp: i64,
) -> String {
    let now = epoch_seconds();
    let encode = |v: &serde_json::Value| {
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v.to_string())
    };
    let header = encode(&json!({"alg": "RS256", "typ": "JWT"}));
    let claims = encode(&json!({
        "aud": [AUDIENCE],
        "exp": exp,
        "iat": now - 1200,
        "nbf": now - 1200,
        "iss": "https://kubernetes.default.svc.cluster.local",
        "sub": format!("system:serviceaccount:{}:synqx-runner", ns.name),
        "kubernetes.io": {
            "namespace": ns.name,
            "pod": {"name": pod.metadata.name, "uid": pod.metadata.uid},
            "serviceaccount": {"name": "synqx-runner", "uid": account_uid},
        },
    }));
    let input = format!("{header}.{claims}");
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("input");
    std::fs::write(&data, &input).expect("write");
    let out = std::process::Command::new("openssl")
        .args(["dgst", "-sha256", "-sign"])
        .arg(cluster.run_dir.join("certs/sa.key"))
        .arg(&data)
        .output()
        .unwrap_or_else(|e| panic!("running openssl: {e}"));
    assert!(
        out.status.success(),
        "openssl dgst -sign: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let signature = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(out.stdout);
    format!("{input}.{signature}")
}

/// The report the step's pod left in its termination message.
async fn termination_report(ns: &TestNamespace, run: &PipelineRun, step_name: &str) -> StepReport {
    let job = step(run, step_name)
        .job_name
        .clone()
        .expect("the step's Job");
    let message = container_statuses(&pods_of_job(ns, &job).await)
        .find_map(|c| c.state.as_ref()?.terminated.as_ref()?.message.clone())
        .unwrap_or_else(|| panic!("no termination message in the pods of Job {job}"));
    serde_json::from_str(&message).unwrap_or_else(|e| {
        panic!("the termination message of Job {job} is no report ({e}): {message}")
    })
}

/// No field manager of a step pod wrote the run's status: its numbers are the operator's.
fn assert_written_by_the_operator(run: &PipelineRun) {
    let managers: Vec<&str> = run
        .metadata
        .managed_fields
        .iter()
        .flatten()
        .filter_map(|m| m.manager.as_deref())
        .collect();
    assert!(
        managers.iter().all(|m| !m.starts_with("synqx-step-")),
        "a step pod wrote the run's status: {managers:?}"
    );
}

#[tokio::test]
async fn telemetry_is_taken_only_from_the_projected_token_of_the_pod_running_the_attempt() {
    let _serial = GATEWAY.lock().await;
    let (cluster, ns) = setup("telemetry-auth").await;
    let gate = Gate::start().await;
    let data = tempfile::tempdir().expect("tempdir");
    let yaml = format!(
        "{}{}",
        gate.connection("api"),
        gated("pair", &["a", "b"], data.path())
    );
    apply(cluster, &ns, &yaml);
    start_run(cluster, &ns, "pair", "pair-1", "");
    let pod_a = running_pod(&ns, "pair-1", "a").await;
    let pod_b = running_pod(&ns, "pair-1", "b").await;
    assert_no_credentials(cluster, &pod_a);
    assert_no_credentials(cluster, &pod_b);
    let token_a = projected_token(cluster, &pod_a);

    // The pod's own token, for its own attempt.
    let (code, body) = post(PATH, Some(&token_a), &report(&ns, "pair-1", "a", 0)).await;
    assert_eq!(code, 204, "{body}");
    // The same token, for the other step: another pod's attempt.
    let (code, body) = post(PATH, Some(&token_a), &report(&ns, "pair-1", "b", 1)).await;
    assert_eq!(code, 403, "{body}");
    let message = body["message"].as_str().unwrap_or_default();
    assert!(message.contains("is not run by Job"), "{message}");
    // No token; a forged one.
    let (code, _) = post(PATH, None, &report(&ns, "pair-1", "a", 1)).await;
    assert_eq!(code, 401);
    let forged = "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJzeXN0ZW06c2VydmljZWFjY291bnQifQ.c2lnbmF0dXJl";
    let (code, body) = post(PATH, Some(forged), &report(&ns, "pair-1", "a", 1)).await;
    assert_eq!(code, 401, "{body}");
    // A real token of the same pod, for the API server's audience.
    let uid = pod_a.metadata.uid.clone().unwrap_or_default();
    let name = pod_a.metadata.name.clone().unwrap_or_default();
    let out = cluster.kubectl(
        &[
            "create",
            "token",
            "synqx-runner",
            "-n",
            &ns.name,
            "--bound-object-kind",
            "Pod",
            "--bound-object-name",
            &name,
            "--bound-object-uid",
            &uid,
        ],
        None,
    );
    assert!(
        out.status.success(),
        "kubectl create token: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let api_token = String::from_utf8_lossy(&out.stdout).trim().to_string();
    let (code, body) = post(PATH, Some(&api_token), &report(&ns, "pair-1", "a", 1)).await;
    assert_eq!(code, 401, "{body}");
    assert!(
        body["message"]
            .as_str()
            .unwrap_or_default()
            .contains(AUDIENCE),
        "{body}"
    );
    // A token signed with the cluster's own key: taken while it is valid, refused expired.
    let accounts: kube::Api<ServiceAccount> = ns.api();
    let account = accounts
        .get("synqx-runner")
        .await
        .unwrap_or_else(|e| panic!("reading service account synqx-runner: {e}"));
    let account_uid = account.metadata.uid.unwrap_or_default();
    let now = epoch_seconds();
    let valid = signed_token(cluster, &ns, &pod_a, &account_uid, now + 600);
    let (code, body) = post(PATH, Some(&valid), &report(&ns, "pair-1", "a", 1)).await;
    assert_eq!(code, 204, "the signed token is well made: {body}");
    let expired = signed_token(cluster, &ns, &pod_a, &account_uid, now - 60);
    let (code, body) = post(PATH, Some(&expired), &report(&ns, "pair-1", "a", 1)).await;
    assert_eq!(code, 401, "{body}");

    gate.open();
    succeeded(&ns, "pair-1").await;
}

fn write_orders(dir: &Path, file: &str, ids: std::ops::RangeInclusive<u32>) {
    let rows: String = ids.map(|i| format!("{i},{}\n", i * 10)).collect();
    std::fs::write(dir.join(file), format!("id,amount\n{rows}")).expect("write orders");
}

#[tokio::test]
async fn a_run_whose_pods_hold_no_credentials_ends_with_exact_counters_and_watermarks() {
    let _serial = GATEWAY.lock().await;
    let (cluster, ns) = setup("telemetry-exact").await;
    let data = tempfile::tempdir().expect("tempdir");
    let inbox = data.path().join("inbox");
    std::fs::create_dir_all(&inbox).expect("mkdir");
    write_orders(&inbox, "1.csv", 1..=5);
    let yaml = format!(
        "{}{}apiVersion: synqx.io/v1alpha1\nkind: Pipeline\nmetadata: {{name: orders}}\nspec:\n  steps:\n    - {{name: load, sync: {{source: {{connection: inbox, asset: {{fqn: \"*.csv\"}}, columns: {{id: int64, amount: int64}}, incremental: {{cursor: id}}}}, destination: {{connection: db, asset: {{fqn: orders}}, mode: append}}}}}}\n",
        folder("inbox", &inbox),
        sqlite("db", &data.path().join("db.sqlite")),
    );
    apply(cluster, &ns, &yaml);
    let mut expected = vec![(5u64, None, "5"), (3, Some("5"), "8")];
    for (n, (rows, from, to)) in expected.drain(..).enumerate() {
        if n == 1 {
            write_orders(&inbox, "2.csv", 6..=8);
        }
        let name = format!("orders-{}", n + 1);
        start_run(cluster, &ns, "orders", &name, "");
        let run = succeeded(&ns, &name).await;
        let load = step(&run, "load");
        assert_eq!(
            (load.rows_read, load.rows_written),
            (Some(rows), Some(rows))
        );
        let watermark = load.watermark.clone().unwrap_or_default();
        assert_eq!(
            (watermark.from.as_deref(), watermark.to.as_deref()),
            (from, Some(to))
        );
        // Bytes as the pod itself counted them.
        let reported = termination_report(&ns, &run, "load").await;
        assert!(
            reported.bytes_read > 0 && reported.bytes_written > 0,
            "{reported:?}"
        );
        assert_eq!(
            (load.bytes_read, load.bytes_written, load.rows_rejected),
            (
                Some(reported.bytes_read),
                Some(reported.bytes_written),
                Some(0)
            )
        );
        assert_written_by_the_operator(&run);
        let job = load.job_name.clone().unwrap_or_default();
        for pod in pods_of_job(&ns, &job).await {
            assert_no_credentials(cluster, &pod);
        }
    }
}

#[tokio::test]
async fn a_gateway_restarted_while_a_step_runs_gets_its_reports_again() {
    let _serial = GATEWAY.lock().await;
    let (cluster, ns) = setup("telemetry-restart").await;
    let gate = Gate::start().await;
    let data = tempfile::tempdir().expect("tempdir");
    let viewer = "apiVersion: v1\nkind: ServiceAccount\nmetadata: {name: viewer}\n---\napiVersion: rbac.authorization.k8s.io/v1\nkind: Role\nmetadata: {name: run-viewer}\nrules: [{apiGroups: [synqx.io], resources: [pipelineruns], verbs: [get]}]\n---\napiVersion: rbac.authorization.k8s.io/v1\nkind: RoleBinding\nmetadata: {name: viewer}\nroleRef: {apiGroup: rbac.authorization.k8s.io, kind: Role, name: run-viewer}\nsubjects: [{kind: ServiceAccount, name: viewer}]\n---\n";
    let yaml = format!(
        "{viewer}{}{}",
        gate.connection("api"),
        gated("one", &["load"], data.path())
    );
    apply(cluster, &ns, &yaml);
    start_run(cluster, &ns, "one", "one-1", "");
    let pod = running_pod(&ns, "one-1", "load").await;
    assert_no_credentials(cluster, &pod);

    // The operator pod (and its gateway) is killed while the step waits on the gate.
    let leader = lease_holder(cluster).await.expect("an operator leads");
    kill_pod(cluster, &leader);
    wait_until(
        Duration::from_secs(120),
        "another operator pod to lead",
        || async { lease_holder(cluster).await.is_some_and(|h| h != leader) },
    )
    .await;
    wait_until_served(cluster).await;

    let token = cluster.service_account_token(&ns.name, "viewer");
    let (mut socket, _) = connect(&watch_path(&ns.name, "one-1", ""), Auth::Header(&token))
        .await
        .unwrap_or_else(|(code, body)| panic!("watching one-1: {code} {body}"));
    gate.open();
    let mut logged = Vec::new();
    loop {
        match next(&mut socket).await {
            Next::Message(message) => match message.body {
                Body::Log {
                    step,
                    attempt,
                    lines,
                } => {
                    assert_eq!((step.as_str(), attempt), ("load", 1));
                    logged.extend(lines.into_iter().map(|l| l.text));
                }
                Body::Run {
                    phase: Some(phase), ..
                } if phase.is_finished() => break,
                Body::Snapshot { run, .. } if run.status.phase.is_some_and(|p| p.is_finished()) => {
                    break;
                }
                _ => {}
            },
            other => panic!("the watch of one-1 ended before the run: {other:?}"),
        }
    }
    assert!(
        logged.iter().any(|l| l.contains("succeeded after")),
        "the step's last lines reached the restarted gateway: {logged:?}"
    );
    let run = succeeded(&ns, "one-1").await;
    let load = step(&run, "load");
    let reported = termination_report(&ns, &run, "load").await;
    assert_eq!((load.rows_read, load.rows_written), (Some(2), Some(2)));
    assert_eq!(
        (load.bytes_read, load.bytes_written),
        (Some(reported.bytes_read), Some(reported.bytes_written))
    );
    assert_written_by_the_operator(&run);
}

/// A step reporting once a second costs the API server one TokenReview for its pod, not one
/// per report: the gateway keeps a reviewed token for its pod's life (at most 2 minutes).
#[tokio::test]
async fn a_pod_reporting_every_second_is_reviewed_once() {
    let _serial = GATEWAY.lock().await;
    let (cluster, ns) = setup("telemetry-cache").await;
    let data = tempfile::tempdir().expect("tempdir");
    let rows = 3_000_000;
    let yaml = format!(
        "{}apiVersion: synqx.io/v1alpha1\nkind: Pipeline\nmetadata: {{name: many}}\nspec:\n  steps:\n    - {{name: load, sync: {{source: {{connection: db, asset: {{fqn: numbers}}, query: \"WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < {rows}) SELECT x AS id FROM c\"}}, destination: {{connection: db, asset: {{fqn: copied}}, mode: overwrite}}}}}}\n",
        sqlite("db", &data.path().join("db.sqlite")),
    );
    apply(cluster, &ns, &yaml);
    let audit = AuditLog::of(cluster);
    let from = audit.end();
    start_run(cluster, &ns, "many", "many-1", "");
    let run = succeeded(&ns, "many-1").await;
    assert_eq!(step(&run, "load").rows_written, Some(rows));
    let operator: Vec<_> = audit
        .since(from)
        .into_iter()
        .filter(|r| r.user.username == OPERATOR_USER)
        .collect();
    let count = |verb: &str, resource: &str, subresource: Option<&str>| {
        operator
            .iter()
            .filter(|r| {
                r.verb == verb && r.resource() == resource && r.subresource() == subresource
            })
            .count()
    };
    // Each status write of the counters is one report or more that reached the gateway.
    let writes = count("patch", "pipelineruns", Some("status"));
    assert!(
        writes >= 4,
        "the step reported too seldom to tell a cache: {:?}",
        tally(&operator)
    );
    assert_eq!(
        count("create", "tokenreviews", None),
        1,
        "one review for the step's one pod: {:?}",
        tally(&operator)
    );
}
