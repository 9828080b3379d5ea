//! The test control plane is real: CRDs are admitted by a real API server, Jobs run their
//! pods through the process kubelet, RBAC denies what it should, the garbage collector
//! collects. Everything goes through `kubectl apply`, as users do.

use std::collections::BTreeSet;
use std::time::Duration;

use k8s_openapi::api::apps::v1::{Deployment, DeploymentStatus};
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::Api;
use synqx_e2e::cluster::{
    Cluster, TestNamespace, background, never_within, wait_for_value, wait_until,
};
use synqx_e2e::runs::pods_of_job;

const WAIT: Duration = Duration::from_secs(60);

fn apply(cluster: &Cluster, namespace: &str, yaml: &str) -> std::process::Output {
    cluster.kubectl(&["apply", "--namespace", namespace, "-f", "-"], Some(yaml))
}

fn apply_ok(cluster: &Cluster, namespace: &str, yaml: &str) {
    let out = apply(cluster, namespace, yaml);
    assert!(
        out.status.success(),
        "kubectl apply failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A namespace of the shared cluster with `yaml` applied in it, as a test starts.
async fn applied(prefix: &str, yaml: &str) -> (&'static Cluster, TestNamespace) {
    let cluster = Cluster::shared();
    let ns = cluster.namespace(prefix).await;
    apply_ok(cluster, &ns.name, yaml);
    (cluster, ns)
}

/// A Job of one container in the SynqX image, with the given command (if any) and args.
fn job(name: &str, command: &[&str], args: &[&str], extra_spec: &str) -> String {
    let list = |items: &[&str]| serde_json::to_string(items).unwrap_or_default();
    format!(
        r#"apiVersion: batch/v1
kind: Job
metadata: {{name: {name}}}
spec:
  backoffLimit: 0
  {extra_spec}
  template:
    spec:
      restartPolicy: Never
      containers:
        - name: main
          image: ghcr.io/synqx/synqx:dev
          {command}
          args: {args}
"#,
        command = if command.is_empty() {
            String::new()
        } else {
            format!("command: {}", list(command))
        },
        args = list(args),
    )
}

/// Waits until the Job has a `Complete` or `Failed` condition and returns it.
async fn finished(ns: &TestNamespace, name: &str) -> (Job, String) {
    let jobs: Api<Job> = ns.api();
    wait_for_value(WAIT, &format!("job {name} to finish"), || async {
        let job = jobs
            .get(name)
            .await
            .unwrap_or_else(|e| panic!("reading Job {name}: {e}"));
        let done = job
            .status
            .as_ref()
            .and_then(|s| s.conditions.as_ref())
            .and_then(|c| {
                c.iter()
                    .find(|c| (c.type_ == "Complete" || c.type_ == "Failed") && c.status == "True")
            })
            .map(|c| c.type_.clone());
        done.map(|kind| (job, kind))
    })
    .await
}

/// What the first pod of Job `job` logged; the Job must have a pod.
async fn job_logs(cluster: &Cluster, ns: &TestNamespace, job: &str) -> String {
    let pod = pods_of_job(ns, job).await.into_iter().next().expect("pod");
    cluster.pod_logs(&ns.name, &pod.metadata.name.unwrap_or_default())
}

/// Waits until Deployment `name` has `want` replicas as `count` reads them from its status
/// (`what` says which, for the message); reading it must work.
async fn wait_for_replicas(
    deployments: &Api<Deployment>,
    name: &str,
    what: &str,
    count: fn(&DeploymentStatus) -> Option<i32>,
    want: i32,
) {
    let description = format!("Deployment {name} to have {want} {what} replicas");
    wait_until(WAIT, &description, || async {
        deployments
            .get(name)
            .await
            .unwrap_or_else(|e| panic!("reading Deployment {name}: {e}"))
            .status
            .as_ref()
            .and_then(count)
            == Some(want)
    })
    .await;
}

/// Pid files the kubelet keeps for live processes of pods whose name starts with `prefix`.
/// The folder exists once the kubelet has started a pod; reading it must work, or a count of
/// zero would prove nothing.
fn live_processes(cluster: &Cluster, prefix: &str) -> usize {
    let dir = cluster.run_dir.join("kubelet/pids");
    let entries =
        std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("reading {}: {e}", dir.display()));
    let mut live = 0;
    for entry in entries {
        let path = entry
            .unwrap_or_else(|e| panic!("reading {}: {e}", dir.display()))
            .path();
        let pod_dir = match std::fs::read_to_string(&path) {
            Ok(pod_dir) => pod_dir,
            // The process ended between the listing and the read: not live.
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => panic!("reading {}: {e}", path.display()),
        };
        if pod_dir
            .rsplit('/')
            .next()
            .is_some_and(|pod| pod.starts_with(prefix))
        {
            live += 1;
        }
    }
    live
}

#[tokio::test]
async fn every_crd_is_established_explained_and_has_its_columns() {
    let cluster = Cluster::shared();
    let ns = cluster.namespace("crds").await;
    let crds: Api<CustomResourceDefinition> = Api::all(ns.client.clone());
    let mut files: Vec<_> = std::fs::read_dir(cluster.repo.join("crds"))
        .expect("crds/")
        .filter_map(Result::ok)
        .collect();
    files.sort_by_key(|f| f.path());
    assert_eq!(files.len(), 3, "crds/ holds one file per resource");
    for file in files {
        let text = std::fs::read_to_string(file.path()).expect("read crd");
        let crd: CustomResourceDefinition = serde_yaml::from_str(&text).expect("parse crd");
        let name = crd.metadata.name.clone().unwrap_or_default();
        let live = crds
            .get(&name)
            .await
            .unwrap_or_else(|e| panic!("{name} is not installed: {e}"));
        let established = live
            .status
            .and_then(|s| s.conditions)
            .unwrap_or_default()
            .iter()
            .any(|c| c.type_ == "Established" && c.status == "True");
        assert!(established, "{name} is not Established");
    }

    let explain = cluster.kubectl(&["explain", "pipeline.spec.steps"], None);
    let text = String::from_utf8_lossy(&explain.stdout);
    assert!(
        explain.status.success(),
        "{}",
        String::from_utf8_lossy(&explain.stderr)
    );
    assert!(
        text.contains("The steps of the pipeline"),
        "kubectl explain lacks our description:\n{text}"
    );
    assert!(
        text.contains("dependsOn"),
        "kubectl explain lacks the step fields:\n{text}"
    );

    apply_ok(
        cluster,
        &ns.name,
        "apiVersion: synqx.io/v1alpha1\nkind: Pipeline\nmetadata: {name: columns}\nspec:\n  schedule: {cron: \"0 3 * * *\"}\n  steps:\n    - name: tidy\n      sql: {connection: db, statements: [\"vacuum\"]}\n",
    );
    let get = cluster.kubectl(&["get", "sqp", "--namespace", &ns.name], None);
    let table = String::from_utf8_lossy(&get.stdout);
    let header: Vec<&str> = table
        .lines()
        .next()
        .unwrap_or_default()
        .split_whitespace()
        .collect();
    assert_eq!(
        header,
        [
            "NAME", "READY", "STEPS", "LAYERS", "SCHEDULE", "LAST", "RUN", "AGE"
        ],
        "{table}"
    );
    assert!(
        table.contains("0 3 * * *"),
        "the Schedule column shows the cron:\n{table}"
    );
}

#[tokio::test]
async fn each_validation_rule_rejects_a_bad_object_with_its_message() {
    let cluster = Cluster::shared();
    let ns = cluster.namespace("cel").await;
    let mut fixtures: Vec<_> = std::fs::read_dir(cluster.repo.join("tests/fixtures/cel"))
        .expect("tests/fixtures/cel")
        .filter_map(Result::ok)
        .map(|entry| entry.path())
        .collect();
    fixtures.sort();
    let mut expected_messages = Vec::new();
    for fixture in &fixtures {
        let text = std::fs::read_to_string(fixture).expect("read fixture");
        let expect = text
            .lines()
            .next()
            .and_then(|line| line.strip_prefix("# expect: "))
            .unwrap_or_else(|| panic!("{} lacks a first `# expect:` line", fixture.display()));
        let out = apply(cluster, &ns.name, &text);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{} was admitted", fixture.display());
        assert!(
            stderr.contains(expect),
            "{}: expected `{expect}`, got:\n{stderr}",
            fixture.display()
        );
        expected_messages.push(expect.to_string());
    }

    // Every rule in the CRDs has a fixture: a new rule without one fails here.
    let mut rules = BTreeSet::new();
    for file in std::fs::read_dir(cluster.repo.join("crds"))
        .expect("crds/")
        .filter_map(Result::ok)
    {
        let text = std::fs::read_to_string(file.path()).expect("read crd");
        for line in text.lines() {
            if let Some(message) = line.trim().strip_prefix("- message: ") {
                rules.insert(message.trim_matches('\'').to_string());
            }
        }
    }
    assert!(rules.len() >= 6, "found too few rules: {rules:?}");
    for rule in rules {
        assert!(
            expected_messages.iter().any(|m| m.contains(&rule)),
            "no fixture in tests/fixtures/cel exercises the rule `{rule}`"
        );
    }
}

#[tokio::test]
async fn a_job_running_synqx_completes_with_its_output_logged() {
    let (cluster, ns) = applied("version", &job("version", &[], &["--version"], "")).await;
    let (_, outcome) = finished(&ns, "version").await;
    assert_eq!(outcome, "Complete");
    let pods = pods_of_job(&ns, "version").await;
    let pod = pods.first().expect("the job's pod");
    let name = pod.metadata.name.clone().unwrap_or_default();
    assert_eq!(
        pod.status.as_ref().and_then(|s| s.phase.as_deref()),
        Some("Succeeded")
    );
    assert!(
        cluster
            .pod_logs(&ns.name, &name)
            .contains(&format!("synqx {}", env!("CARGO_PKG_VERSION")))
    );
    let out = cluster.kubectl(
        &[
            "get",
            "pod",
            &name,
            "--namespace",
            &ns.name,
            "-o",
            "jsonpath={.spec.nodeName}",
        ],
        None,
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout), "synqx-process-node");
}

#[tokio::test]
async fn a_pod_exiting_3_fails_its_job_with_the_code_and_termination_message() {
    let cluster = Cluster::shared();
    let ns = cluster.namespace("exit").await;
    let script = "echo about to fail >&2; printf 'step load: 3 rows rejected' > \"$SYNQX_TERMINATION_MESSAGE_PATH\"; exit 3";
    apply_ok(
        cluster,
        &ns.name,
        &job("exit", &["sh", "-c"], &[script], ""),
    );
    let (job, outcome) = finished(&ns, "exit").await;
    assert_eq!(outcome, "Failed");
    assert_eq!(job.status.and_then(|s| s.failed), Some(1));
    let pods = pods_of_job(&ns, "exit").await;
    let pod = pods.first().expect("the job's pod");
    let status = pod.status.clone().unwrap_or_default();
    assert_eq!(status.phase.as_deref(), Some("Failed"));
    let terminated = status
        .container_statuses
        .unwrap_or_default()
        .first()
        .and_then(|c| c.state.clone())
        .and_then(|s| s.terminated)
        .expect("a terminated state");
    assert_eq!(terminated.exit_code, 3);
    assert_eq!(terminated.reason.as_deref(), Some("Error"));
    assert_eq!(
        terminated.message.as_deref(),
        Some("step load: 3 rows rejected")
    );
    let name = pod.metadata.name.clone().unwrap_or_default();
    assert!(cluster.pod_logs(&ns.name, &name).contains("about to fail"));
}

#[tokio::test]
async fn a_job_past_its_active_deadline_is_killed() {
    let (cluster, ns) = applied(
        "deadline",
        &job("deadline", &["sleep"], &["300"], "activeDeadlineSeconds: 3"),
    )
    .await;
    let (job, outcome) = finished(&ns, "deadline").await;
    assert_eq!(outcome, "Failed");
    let reason = job
        .status
        .and_then(|s| s.conditions)
        .unwrap_or_default()
        .into_iter()
        .find(|c| c.type_ == "Failed")
        .and_then(|c| c.reason);
    assert_eq!(reason.as_deref(), Some("DeadlineExceeded"));
    wait_until(WAIT, "the deadline job's process to end", || async {
        live_processes(cluster, "deadline-") == 0
    })
    .await;
    wait_until(WAIT, "the deadline job's pod to be deleted", || async {
        pods_of_job(&ns, "deadline").await.is_empty()
    })
    .await;
}

#[tokio::test]
async fn a_pod_gets_its_environment_as_a_kubelet_resolves_it() {
    let (cluster, ns) = applied("env", r#"apiVersion: v1
kind: Secret
metadata: {name: db}
stringData: {password: hunter2}
---
apiVersion: v1
kind: ConfigMap
metadata: {name: settings}
data: {region: eu-west}
---
apiVersion: batch/v1
kind: Job
metadata: {name: env}
spec:
  backoffLimit: 0
  template:
    spec:
      restartPolicy: Never
      containers:
        - name: main
          image: ghcr.io/synqx/synqx:dev
          command: [sh, -c, 'echo "password=$PASSWORD region=$REGION ns=$NS url=$URL kubeconfig=${KUBECONFIG:+set}"']
          env:
            - name: PASSWORD
              valueFrom: {secretKeyRef: {name: db, key: password}}
            - name: REGION
              valueFrom: {configMapKeyRef: {name: settings, key: region}}
            - name: NS
              valueFrom: {fieldRef: {fieldPath: metadata.namespace}}
            - name: URL
              value: "postgres://etl:$(PASSWORD)@db"
"#).await;
    let (_, outcome) = finished(&ns, "env").await;
    assert_eq!(outcome, "Complete");
    let logs = job_logs(cluster, &ns, "env").await;
    let expected = format!(
        "password=hunter2 region=eu-west ns={} url=postgres://etl:hunter2@db kubeconfig=set",
        ns.name
    );
    assert!(logs.contains(&expected), "{logs}");
}

#[tokio::test]
async fn rbac_applies_to_a_pods_service_account() {
    let (cluster, ns) = applied(
        "rbac",
        r#"apiVersion: v1
kind: ServiceAccount
metadata: {name: reader}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: Role
metadata: {name: read-configmaps}
rules:
  - apiGroups: [""]
    resources: [configmaps]
    verbs: [get, list]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata: {name: reader-reads-configmaps}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: Role, name: read-configmaps}
subjects:
  - {kind: ServiceAccount, name: reader}
"#,
    )
    .await;
    for (name, resource) in [("allowed", "configmaps"), ("denied", "secrets")] {
        let spec = job(name, &["kubectl", "get"], &[resource], "").replace(
            "      restartPolicy: Never",
            "      restartPolicy: Never\n      serviceAccountName: reader",
        );
        apply_ok(cluster, &ns.name, &spec);
    }
    let (_, allowed) = finished(&ns, "allowed").await;
    let (_, denied) = finished(&ns, "denied").await;
    assert_eq!(allowed, "Complete");
    assert_eq!(denied, "Failed");
    let logs = job_logs(cluster, &ns, "denied").await;
    let who = format!("system:serviceaccount:{}:reader", ns.name);
    assert!(
        logs.contains("Forbidden") || logs.contains("forbidden"),
        "{logs}"
    );
    assert!(
        logs.contains(&who),
        "the 403 names the pod's service account:\n{logs}"
    );
}

#[tokio::test]
async fn deleting_a_job_removes_its_pods_and_processes() {
    let (cluster, ns) = applied("gc", &job("sleeper", &["sleep"], &["300"], "")).await;
    wait_until(WAIT, "the sleeper pod to run", || async {
        pods_of_job(&ns, "sleeper")
            .await
            .iter()
            .any(|p| p.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Running"))
    })
    .await;
    assert_eq!(live_processes(cluster, "sleeper-"), 1);
    let jobs: Api<Job> = ns.api();
    jobs.delete("sleeper", &background())
        .await
        .expect("delete job");
    wait_until(WAIT, "the garbage collector to delete the pod", || async {
        pods_of_job(&ns, "sleeper").await.is_empty()
    })
    .await;
    assert_eq!(live_processes(cluster, "sleeper-"), 0);
}

#[tokio::test]
async fn a_deployment_runs_its_pods() {
    let (cluster, ns) = applied(
        "deploy",
        r#"apiVersion: apps/v1
kind: Deployment
metadata: {name: idle}
spec:
  replicas: 2
  selector: {matchLabels: {app: idle}}
  template:
    metadata: {labels: {app: idle}}
    spec:
      containers:
        - {name: main, image: ghcr.io/synqx/synqx:dev, command: [sleep, "300"]}
"#,
    )
    .await;
    let deployments: Api<Deployment> = ns.api();
    wait_for_replicas(
        &deployments,
        "idle",
        "available",
        |s| s.available_replicas,
        2,
    )
    .await;
    assert_eq!(live_processes(cluster, "idle-"), 2);
}

#[tokio::test]
async fn a_pod_is_ready_only_once_its_readiness_probe_answers() {
    let cluster = Cluster::shared();
    let ns = cluster.namespace("probe").await;
    let free = || {
        std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .expect("a free port")
    };
    let (served, other, silent) = (free(), free(), free());
    let deployment = |name: &str, serve_on: u16, probe_on: u16| {
        format!(
            "apiVersion: apps/v1\nkind: Deployment\nmetadata: {{name: {name}}}\nspec:\n  replicas: 1\n\
             \x20 selector: {{matchLabels: {{app: {name}}}}}\n  template:\n    metadata: {{labels: {{app: {name}}}}}\n    spec:\n\
             \x20     containers:\n        - name: web\n          image: ghcr.io/synqx/synqx:dev\n\
             \x20         command: [python3, -m, http.server, \"{serve_on}\", --bind, 127.0.0.1]\n\
             \x20         ports: [{{name: http, containerPort: {probe_on}}}]\n\
             \x20         readinessProbe: {{httpGet: {{path: /, port: http}}, periodSeconds: 1}}\n"
        )
    };
    apply_ok(cluster, &ns.name, &deployment("served", served, served));
    apply_ok(cluster, &ns.name, &deployment("silent", other, silent));
    let deployments: Api<Deployment> = ns.api();
    wait_for_replicas(
        &deployments,
        "served",
        "available",
        |s| s.available_replicas,
        1,
    )
    .await;
    // The other one's probe asks a port nobody serves: its pod runs, and is never ready while
    // its probe is asked a few times over.
    wait_for_replicas(&deployments, "silent", "non-terminated", |s| s.replicas, 1).await;
    never_within(
        ns.api::<Deployment>(),
        "silent",
        Duration::from_secs(5),
        "the silent deployment becoming available",
        |d| {
            d.status
                .as_ref()
                .and_then(|s| s.available_replicas)
                .unwrap_or(0)
                > 0
        },
    )
    .await;
}
