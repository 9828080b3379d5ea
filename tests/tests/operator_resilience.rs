//! The operator killed, replaced and scheduled: runs survive restarts without duplicate Jobs
//! or rows, a standby replica takes over a dead leader's Lease, and a cron schedule fires
//! once per minute and respects `Forbid`.

use std::collections::BTreeSet;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::Pod;
use kube::Api;
use kube::api::ListParams;
use synqx_api::PipelineRun;
use synqx_api::run::RunPhase;
use synqx_e2e::cluster::{Cluster, never_within, wait_for_value, wait_until};
use synqx_e2e::own_operator::{OwnOperator, kill_pod, lease_holder};
use synqx_e2e::runs::{
    apply, csv_rows, finished, folder, get_run, job_names, jobs_of, readable_job_name, setup,
    slow_query, sqlite, start_run, step, succeeded, wait_for_events,
};

/// Tests that kill the shared operator must not overlap.
static OPERATOR: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// Whether the operator's pod of this name exists.
async fn operator_pod_exists(cluster: &Cluster, pod: &str) -> bool {
    let pods: Api<Pod> = Api::namespaced(cluster.client().await, "synqx-system");
    pods.get_opt(pod)
        .await
        .unwrap_or_else(|e| panic!("reading pod synqx-system/{pod}: {e}"))
        .is_some()
}

/// The operator pod that leads now: it holds the Lease and exists.
async fn leading_pod(cluster: &Cluster) -> String {
    wait_for_value(
        Duration::from_secs(60),
        "an operator pod to lead",
        || async {
            let holder = lease_holder(cluster)
                .await
                .filter(|h| h.starts_with("synqx-operator-"))?;
            operator_pod_exists(cluster, &holder)
                .await
                .then_some(holder)
        },
    )
    .await
}

/// Kills the leading operator pod and waits until another pod leads; returns the killed one.
async fn kill_the_leader(cluster: &Cluster) -> String {
    let leader = leading_pod(cluster).await;
    kill_pod(cluster, &leader);
    // The kill hit the leader: its pod is gone while the Lease still names it, since a
    // process killed with SIGKILL never gives it back.
    wait_until(
        Duration::from_secs(30),
        "the killed leader's pod to be gone",
        || async { !operator_pod_exists(cluster, &leader).await },
    )
    .await;
    assert_eq!(
        lease_holder(cluster).await.as_deref(),
        Some(leader.as_str()),
        "the pod killed held the Lease"
    );
    wait_until(
        Duration::from_secs(60),
        "a new leader after the kill",
        || async {
            lease_holder(cluster)
                .await
                .is_some_and(|h| h != leader && h.starts_with("synqx-operator-"))
        },
    )
    .await;
    leader
}

fn pipeline(data: &Path, name: &str) -> String {
    let connections = [
        folder("inbox", &data.join("inbox")),
        folder("lake", &data.join("lake")),
        sqlite("scratch", &data.join(format!("scratch-{name}.db"))),
    ]
    .concat();
    connections
        + &format!(
            r#"apiVersion: synqx.io/v1alpha1
kind: Pipeline
metadata: {{name: {name}}}
spec:
  steps:
    - name: load
      sync:
        source: {{connection: inbox, asset: {{fqn: "{name}/*.csv"}}, incremental: {{cursor: id}}}}
        destination: {{connection: lake, asset: {{fqn: {name}/}}, format: csv, mode: append}}
    - {{name: crunch-1, dependsOn: [load], sql: {{connection: scratch, statements: ["{slow}"]}}}}
    - {{name: crunch-2, dependsOn: [crunch-1], sql: {{connection: scratch, statements: ["{slow}"]}}}}
    - {{name: crunch-3, dependsOn: [crunch-2], sql: {{connection: scratch, statements: ["{slow}"]}}}}
    - {{name: crunch-4, dependsOn: [crunch-3], sql: {{connection: scratch, statements: ["{slow}"]}}}}
"#,
            slow = slow_query(2_000_000)
        )
}

/// A small pseudo-random sequence, seeded from the clock and printed, so a failure can be
/// replayed with `SYNQX_TEST_SEED`.
fn kill_delays() -> Vec<Duration> {
    let mut seed: u64 = std::env::var("SYNQX_TEST_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(7, |d| d.as_nanos() as u64)
        });
    println!("kill schedule seed: {seed}");
    (0..5)
        .map(|_| {
            seed = seed
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            Duration::from_millis(500 + (seed >> 33) % 3500)
        })
        .collect()
}

#[tokio::test]
async fn runs_survive_the_operator_being_killed_five_times() {
    let _serial = OPERATOR.lock().await;
    let (cluster, ns) = setup("restart").await;
    let data = tempfile::tempdir().expect("tempdir");
    let mut expected = Vec::new();
    for (name, rows) in [("alpha", 40u32), ("beta", 25)] {
        let dir = data.path().join("inbox").join(name);
        std::fs::create_dir_all(&dir).expect("mkdir");
        let csv: String = std::iter::once("id,value\n".to_string())
            .chain((1..=rows).map(|i| format!("{i},{}\n", i * 7)))
            .collect();
        std::fs::write(dir.join("rows.csv"), csv).expect("write");
        apply(cluster, &ns, &pipeline(data.path(), name));
        expected.push((name, rows as usize));
    }
    let leader = leading_pod(cluster).await;
    start_run(cluster, &ns, "alpha", "alpha-1", "");
    start_run(cluster, &ns, "beta", "beta-1", "");

    let mut killed = Vec::new();
    for (i, delay) in kill_delays().into_iter().enumerate() {
        tokio::time::sleep(delay).await;
        if i == 0 {
            // The first kill lands while both runs are active.
            for run in ["alpha-1", "beta-1"] {
                let phase = get_run(&ns, run).await.status.and_then(|s| s.phase);
                assert!(!phase.is_some_and(|p| p.is_finished()), "{run} ended early");
            }
        }
        killed.push(kill_the_leader(cluster).await);
    }
    // Five different leaders were killed, the first being the one that led at the start.
    assert_eq!(killed.first(), Some(&leader));
    let distinct: BTreeSet<&String> = killed.iter().collect();
    assert_eq!(
        distinct.len(),
        5,
        "each kill hit the pod leading then: {killed:?}"
    );

    for (name, rows) in &expected {
        let run_name = format!("{name}-1");
        let run = succeeded(&ns, &run_name).await;
        assert_eq!(step(&run, "load").rows_written, Some(*rows as u64));
        assert_eq!(
            csv_rows(&data.path().join("lake").join(name)),
            *rows,
            "rows of {name} loaded exactly once"
        );
        // One Job per step, first attempts only: no Job was created twice, none retried.
        let expected_jobs: Vec<String> = ["crunch-1", "crunch-2", "crunch-3", "crunch-4", "load"]
            .iter()
            .map(|step| format!("{run_name}-{step}-1"))
            .collect();
        // Each name ends with the tag that hashes the run's UID, step and attempt.
        let jobs: Vec<String> = job_names(&ns, &run_name)
            .await
            .into_iter()
            .map(|name| readable_job_name(&name).to_string())
            .collect();
        assert_eq!(jobs, expected_jobs);
    }
}

/// A second operator, as a plain process with the admin identity, standing by for the Lease.
struct Standby {
    child: Child,
    log: std::path::PathBuf,
}

impl Standby {
    fn start(cluster: &Cluster, dir: &Path) -> Self {
        let log = dir.join("standby.log");
        let file = std::fs::File::create(&log).expect("log file");
        let child = Command::new(cluster.bin_dir.join("synqx-operator"))
            .args([
                "run",
                "--all-namespaces",
                "--leader-elect",
                "--lease-namespace",
                "synqx-system",
            ])
            .args(["--metrics-addr", "127.0.0.1:0", "--log-format", "text"])
            .args(["--gateway-addr", "127.0.0.1:0"])
            .env("KUBECONFIG", &cluster.kubeconfig)
            .env("POD_NAME", "standby-replica")
            .stdout(Stdio::null())
            .stderr(file)
            .spawn()
            .expect("start a standby operator");
        Self { child, log }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// SIGTERM, as Kubernetes stops a pod: the standby gives the Lease back on its way out.
    fn stop(&mut self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if matches!(self.child.try_wait(), Ok(Some(_))) {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let _ = self.child.kill();
    }
}

impl Drop for Standby {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[tokio::test]
async fn a_standby_replica_takes_over_a_dead_leaders_lease() {
    let _serial = OPERATOR.lock().await;
    let (cluster, ns) = setup("ha").await;
    let dir = tempfile::tempdir().expect("tempdir");
    let leader = leading_pod(cluster).await;
    let mut standby = Standby::start(cluster, dir.path());
    wait_until(
        Duration::from_secs(30),
        "the standby to wait for the Lease",
        || async { standby.log().contains("waiting for the leader Lease") },
    )
    .await;
    let leases: Api<Lease> = Api::namespaced(cluster.client().await, "synqx-system");
    never_within(
        leases.clone(),
        "synqx-operator",
        Duration::from_secs(6),
        "the Lease changing hands while its leader lives",
        |l| l.spec.as_ref().and_then(|s| s.holder_identity.as_deref()) != Some(leader.as_str()),
    )
    .await;
    assert!(
        !standby.log().contains("reconciling"),
        "the standby reconciles nothing:\n{}",
        standby.log()
    );

    let killed = Instant::now();
    kill_pod(cluster, &leader);
    // The standby and the pod the Deployment starts in place of the dead one race for the
    // expired Lease: either may win, but only one.
    wait_until(
        Duration::from_secs(40),
        "another replica to take the Lease",
        || async { lease_holder(cluster).await.is_some_and(|h| h != leader) },
    )
    .await;
    let takeover = killed.elapsed();
    // The Lease lasts 15 s and is looked at every 4 s. A leader killed with SIGKILL never
    // gives it back: the others wait for it to expire.
    assert!(
        takeover <= Duration::from_secs(15 + 4 + 3),
        "takeover took {takeover:?}"
    );
    assert!(
        takeover >= Duration::from_secs(8),
        "the killed leader released its Lease: {takeover:?}"
    );
    let holder = lease_holder(cluster).await.unwrap_or_default();
    if holder == "standby-replica" {
        wait_until(
            Duration::from_secs(15),
            "the standby to reconcile",
            || async { standby.log().contains("reconciling") },
        )
        .await;
    } else {
        never_within(
            leases,
            "synqx-operator",
            Duration::from_secs(3),
            "the Lease leaving the new pod",
            |l| l.spec.as_ref().and_then(|s| s.holder_identity.as_deref()) != Some(holder.as_str()),
        )
        .await;
        assert!(
            !standby.log().contains("reconciling"),
            "two leaders:\n{}",
            standby.log()
        );
    }

    // The new leader runs pipelines.
    let db = dir.path().join("ha.db");
    apply(
        cluster,
        &ns,
        &format!(
            "apiVersion: synqx.io/v1alpha1\nkind: Connection\nmetadata: {{name: db}}\nspec: {{sqlite: {{path: {}}}}}\n---\n\
             apiVersion: synqx.io/v1alpha1\nkind: Pipeline\nmetadata: {{name: ha}}\nspec:\n  steps:\n\
             \x20   - {{name: only, sql: {{connection: db, statements: [\"CREATE TABLE t (x)\"]}}}}\n",
            db.display()
        ),
    );
    start_run(cluster, &ns, "ha", "ha-1", "");
    let run = finished(&ns, "ha-1").await;
    assert_eq!(
        run.status.as_ref().and_then(|s| s.phase),
        Some(RunPhase::Succeeded)
    );

    // Stopped gracefully, a leading standby hands the Lease back at once.
    standby.stop();
    wait_until(
        Duration::from_secs(15),
        "the operator pod to lead again",
        || async {
            lease_holder(cluster)
                .await
                .is_some_and(|h| h.starts_with("synqx-operator-"))
        },
    )
    .await;
}

#[tokio::test]
async fn a_minutely_schedule_creates_one_run_per_minute_and_forbid_skips_while_one_is_active() {
    let _serial = OPERATOR.lock().await;
    let (cluster, ns) = setup("cron").await;
    let data = tempfile::tempdir().expect("tempdir");
    // The step waits 75 s between attempts for a file that never comes, so the first run is
    // still active when the next minute fires.
    apply(
        cluster,
        &ns,
        &format!(
            "apiVersion: synqx.io/v1alpha1\nkind: Connection\nmetadata: {{name: never}}\nspec: {{filesystem: {{path: {d}/never}}}}\n---\n\
             apiVersion: synqx.io/v1alpha1\nkind: Connection\nmetadata: {{name: db}}\nspec: {{sqlite: {{path: {d}/db.sqlite}}}}\n---\n\
             apiVersion: synqx.io/v1alpha1\nkind: Pipeline\nmetadata: {{name: ticker}}\nspec:\n\
             \x20 schedule: {{cron: \"* * * * *\", concurrencyPolicy: Forbid}}\n  steps:\n\
             \x20   - name: wait\n      retry: {{limit: 1, backoff: {{initial: 75s}}}}\n      sync:\n\
             \x20       source: {{connection: never, asset: {{fqn: x.csv}}}}\n        destination: {{connection: db, asset: {{fqn: x}}}}\n",
            d = data.path().display()
        ),
    );
    let runs: Api<PipelineRun> = ns.api();
    let list = || async {
        let mut names: Vec<String> = runs
            .list(&ListParams::default())
            .await
            .unwrap_or_else(|e| panic!("listing the runs: {e}"))
            .items
            .into_iter()
            .filter_map(|r| r.metadata.name)
            .collect();
        names.sort();
        names
    };
    wait_until(
        Duration::from_secs(75),
        "the first scheduled run",
        || async { !list().await.is_empty() },
    )
    .await;
    let first = list().await;
    assert_eq!(first.len(), 1, "{first:?}");
    let minute = |name: &str| {
        name.rsplit('-')
            .next()
            .and_then(|m| m.parse::<i64>().ok())
            .unwrap_or_default()
    };
    let m0 = minute(&first[0]);

    // The next minute finds the first run active: Forbid skips it. The one after runs.
    wait_until(
        Duration::from_secs(190),
        "the second scheduled run",
        || async { list().await.len() >= 2 },
    )
    .await;
    let names = list().await;
    assert_eq!(names.len(), 2, "{names:?}");
    assert_eq!(
        minute(&names[1]) - m0,
        2,
        "the minute in between was skipped: {names:?}"
    );
    // Each scheduled run has an Event of its own (related to the run), published right
    // after the run was created, and the skipped minute one too.
    wait_for_events(
        cluster,
        &ns,
        "ticker",
        "an Event for each scheduled run and one for the skipped minute",
        |r| {
            r.iter().filter(|r| *r == "RunScheduled").count() == 2
                && r.iter().any(|r| r == "ScheduleSkipped")
        },
    )
    .await;
    let first_run = runs.get(&names[0]).await.expect("first run");
    assert_eq!(
        first_run.status.and_then(|s| s.phase),
        Some(RunPhase::Failed)
    );

    // Suspended, it creates nothing more.
    apply(
        cluster,
        &ns,
        "apiVersion: synqx.io/v1alpha1\nkind: Pipeline\nmetadata: {name: ticker}\nspec:\n  schedule: {cron: \"* * * * *\", suspend: true}\n  steps:\n    - {name: wait, sql: {connection: db, statements: [\"SELECT 1\"]}}\n",
    );
    let pipelines: Api<synqx_api::Pipeline> = ns.api();
    wait_until(
        Duration::from_secs(30),
        "the suspended schedule to show no next time",
        || async {
            pipelines
                .get("ticker")
                .await
                .unwrap_or_else(|e| panic!("reading Pipeline ticker: {e}"))
                .status
                .is_some_and(|s| s.next_schedule_time.is_none())
        },
    )
    .await;
}

#[tokio::test]
async fn max_concurrent_jobs_caps_step_jobs_across_runs() {
    let _serial = OPERATOR.lock().await;
    let (cluster, ns) = setup("capped").await;
    let dir = tempfile::tempdir().expect("tempdir");
    // This test's operator, as a process with --max-concurrent-jobs 1, stands in for the pod.
    let capped = OwnOperator::start(
        cluster,
        &["--max-concurrent-jobs", "1"],
        &dir.path().join("capped.log"),
    )
    .await;
    let steps: String = (1..=3)
        .map(|i| {
            format!(
                "    - {{name: s{i}, sql: {{connection: db, statements: [\"{}\"]}}}}\n",
                slow_query(2_000_000)
            )
        })
        .collect();
    apply(
        cluster,
        &ns,
        &format!(
            "{}apiVersion: synqx.io/v1alpha1\nkind: Pipeline\nmetadata: {{name: wide}}\nspec:\n  steps:\n{steps}",
            sqlite("db", &dir.path().join("db.sqlite"))
        ),
    );
    // Two runs of three independent steps each: six Jobs that could all run at once.
    start_run(cluster, &ns, "wide", "wide-1", "");
    start_run(cluster, &ns, "wide", "wide-2", "");
    let first = finished(&ns, "wide-1").await;
    let second = finished(&ns, "wide-2").await;
    drop(capped);
    for run in [&first, &second] {
        assert_eq!(
            run.status.as_ref().and_then(|s| s.phase),
            Some(RunPhase::Succeeded),
            "{:?}",
            run.status
        );
    }

    // One Job at a time across both runs: each starts after the one before ended.
    let mut jobs = jobs_of(&ns, "wide-1").await;
    jobs.extend(jobs_of(&ns, "wide-2").await);
    let mut spans: Vec<(i64, i64)> = jobs
        .iter()
        .filter_map(|j| {
            let created = j.metadata.creation_timestamp.as_ref()?.0.as_second();
            let done = j.status.as_ref()?.completion_time.as_ref()?.0.as_second();
            Some((created, done))
        })
        .collect();
    spans.sort();
    assert_eq!(spans.len(), 6, "{spans:?}");
    for pair in spans.windows(2) {
        assert!(
            pair[1].0 >= pair[0].1,
            "two step Jobs ran at once: {spans:?}"
        );
    }
}
