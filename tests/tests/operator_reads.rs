//! The operator reads from its watches and writes only what changed: during a steady run it
//! never lists, reads nothing, and writes a run's status only when it changed, as the API
//! server's own audit log records what the operator's service account asked. The test runs
//! its own operator, as that service account, so it knows when the operator's watches
//! started and that no other replica acts meanwhile.

use std::process::{Child, Command, Stdio};

use synqx_api::run::RunPhase;
use synqx_e2e::audit::{AuditLog, OPERATOR_USER, tally};
use synqx_e2e::cluster::Cluster;
use synqx_e2e::runs::{apply, finished, sqlite, start_run};

/// Six `SELECT 1` steps in three layers.
fn pipeline(db: &std::path::Path) -> String {
    sqlite("db", db)
        + "apiVersion: synqx.io/v1alpha1\nkind: Pipeline\nmetadata: {name: layers}\nspec:\n  steps:\n"
        + &[
            ("a", ""),
            ("b", "a"),
            ("c", "a"),
            ("d", "a"),
            ("e", "b, c"),
            ("f", "d, e"),
        ]
        .iter()
        .map(|(step, after)| {
            format!(
                "    - {{name: {step}, dependsOn: [{after}], sql: {{connection: db, statements: [\"SELECT 1\"]}}}}\n"
            )
        })
        .collect::<String>()
}

/// The operator process of this test, stopped when dropped.
struct Operator(Child);

impl Drop for Operator {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[tokio::test]
async fn runs_in_a_steady_state_cost_the_operator_no_list_and_few_writes() {
    let cluster = Cluster::shared();
    cluster.install_synqx_without_operator();
    let ns = cluster.namespace("reads").await;
    cluster.serve_namespace(&ns.name);
    let audit = AuditLog::of(cluster);
    let dir = tempfile::tempdir().expect("tempdir");
    let kubeconfig =
        cluster.service_account_kubeconfig("synqx-system", "synqx-operator", dir.path());
    let log = std::fs::File::create(dir.path().join("operator.log")).expect("log");
    let _operator = Operator(
        Command::new(cluster.bin_dir.join("synqx-operator"))
            .args(["run", "--all-namespaces", "--metrics-addr", "127.0.0.1:0"])
            .args(["--gateway-addr", "127.0.0.1:0"])
            .args(["--log-format", "text"])
            .env("KUBECONFIG", &kubeconfig)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start the operator"),
    );
    apply(cluster, &ns, &pipeline(&dir.path().join("db.sqlite")));
    // One run end to end first: the operator's watches have listed and follow.
    start_run(cluster, &ns, "layers", "warm-up", "");
    let warm = finished(&ns, "warm-up").await;
    assert_eq!(
        warm.status.as_ref().and_then(|s| s.phase),
        Some(RunPhase::Succeeded),
        "warm-up: {:#?}; operator log: {}",
        warm.status,
        std::fs::read_to_string(dir.path().join("operator.log")).unwrap_or_default()
    );

    let from = audit.end();
    let runs = ["steady-1", "steady-2", "steady-3"];
    for run in runs {
        start_run(cluster, &ns, "layers", run, "");
    }
    for run in runs {
        let done = finished(&ns, run).await;
        assert_eq!(
            done.status.as_ref().and_then(|s| s.phase),
            Some(RunPhase::Succeeded),
            "{run}: {:#?}",
            done.status
        );
    }
    let operator: Vec<_> = audit
        .since(from)
        .into_iter()
        .filter(|r| r.user.username == OPERATOR_USER)
        .collect();
    let lists: Vec<&str> = operator
        .iter()
        .filter(|r| r.verb == "list")
        .map(|r| r.request_u_r_i.as_str())
        .collect();
    assert!(
        lists.is_empty(),
        "the operator listed during a steady run: {lists:#?}"
    );
    // The window holds the operator's work: one create per Job of the three runs.
    let job_creates = operator
        .iter()
        .filter(|r| r.verb == "create" && r.resource() == "jobs")
        .filter(|r| r.namespace() == Some(ns.name.as_str()))
        .count();
    assert_eq!(
        job_creates,
        runs.len() * 6,
        "Job creates of the operator; all its requests: {:?}",
        tally(&operator)
    );
    // Status only when it changed: at most two writes per step (it starts, it ends) and two
    // per run, not one per Job event.
    let status_writes = operator
        .iter()
        .filter(|r| r.verb == "patch" && r.resource() == "pipelineruns")
        .filter(|r| r.subresource() == Some("status"))
        .count();
    assert!(
        status_writes <= runs.len() * (2 * 6 + 2),
        "{status_writes} status writes for {} runs of 6 steps; all requests: {:?}",
        runs.len(),
        tally(&operator)
    );
    // Nothing read a Pipeline for a watermark none of these steps reports.
    let gets = operator.iter().filter(|r| r.verb == "get").count();
    assert_eq!(gets, 0, "all requests: {:?}", tally(&operator));
    eprintln!(
        "the operator's requests for 3 runs of 6 steps: {:?}",
        tally(&operator)
    );
}
