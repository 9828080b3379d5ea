//! `synqx run` end to end on the quickstart: files through transforms into Parquet and SQLite,
//! incremental runs, state commands and failure semantics.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use sqlx::Connection;

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn synqx(dir: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_synqx"))
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap_or_else(|e| panic!("cannot run synqx: {e}"))
}

fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap_or_else(|e| panic!("{e}"));
    for entry in std::fs::read_dir(from)
        .unwrap_or_else(|e| panic!("{e}"))
        .flatten()
    {
        let target = to.join(entry.file_name());
        if entry.path().is_dir() {
            if entry.file_name() != "out" {
                copy_dir(&entry.path(), &target);
            }
        } else {
            std::fs::copy(entry.path(), target).unwrap_or_else(|e| panic!("{e}"));
        }
    }
}

/// A private copy of the quickstart, so runs do not touch the checkout.
fn quickstart() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    copy_dir(&root().join("examples/quickstart"), dir.path());
    dir
}

/// Rows of an orders CSV whose status is not `test`.
fn kept_orders(path: &Path) -> i64 {
    let csv = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{e}"));
    csv.lines()
        .skip(1)
        .filter(|l| l.split(',').nth(2) != Some("test"))
        .count() as i64
}

fn query(db: &Path, sql: &str) -> i64 {
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap_or_else(|e| panic!("{e}"));
    rt.block_on(async {
        let mut conn = sqlx::SqliteConnection::connect(&format!("sqlite://{}", db.display()))
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        sqlx::query_scalar::<_, i64>(sqlx::AssertSqlSafe(sql.to_string()))
            .fetch_one(&mut conn)
            .await
            .unwrap_or_else(|e| panic!("{sql}: {e}"))
    })
}

/// The summary line of one step: `name  status  rows-read  rows-written …`.
fn step_line<'a>(out: &'a str, step: &str) -> Vec<&'a str> {
    out.lines()
        .find(|l| l.split_whitespace().next() == Some(step))
        .map(|l| l.split_whitespace().collect())
        .unwrap_or_default()
}

#[test]
fn the_quickstart_runs_incrementally() {
    let dir = quickstart();
    let d = dir.path();
    let db = d.join("out/warehouse.db");
    let expected = kept_orders(&d.join("data/orders/orders-2024-01.csv"))
        + kept_orders(&d.join("data/orders/orders-2024-02.csv"));

    let first = synqx(d, &["run", "pipeline.yaml", "--state", "state"]);
    let out = text(&first);
    assert!(first.status.success(), "{out}");
    assert!(out.contains("Pipeline quickstart run "), "{out}");
    assert_eq!(
        step_line(&out, "orders-to-lake")[1..4],
        ["Succeeded", "5,000", &group(expected)],
        "{out}"
    );
    assert_eq!(query(&db, "SELECT count(*) FROM orders"), expected);
    assert_eq!(query(&db, "SELECT count(*) FROM customers"), 500);
    assert_eq!(
        query(
            &db,
            "SELECT count(*) FROM customers WHERE length(email) = 64"
        ),
        500,
        "e-mails are hashed"
    );
    assert!(query(&db, "SELECT count(*) FROM daily_revenue") > 0);
    assert_eq!(
        query(&db, "SELECT count(*) FROM orders WHERE status = 'test'"),
        0
    );
    let parts = std::fs::read_dir(d.join("out/lake/orders"))
        .map(|r| r.count())
        .unwrap_or(0);
    assert!(parts >= 1, "no Parquet part written");

    // Nothing new: no rows move, the watermark stays.
    let second = synqx(d, &["run", "pipeline.yaml", "--state", "state"]);
    let out = text(&second);
    assert!(second.status.success(), "{out}");
    assert_eq!(
        step_line(&out, "orders-to-lake")[1..4],
        ["Succeeded", "0", "0"],
        "{out}"
    );
    assert_eq!(
        step_line(&out, "orders-to-warehouse")[1..4],
        ["Succeeded", "0", "0"],
        "{out}"
    );

    // A new month arrives: only its rows move.
    std::fs::copy(
        d.join("extra/orders-2024-03.csv"),
        d.join("data/orders/orders-2024-03.csv"),
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let more = kept_orders(&d.join("extra/orders-2024-03.csv"));
    let third = synqx(d, &["run", "pipeline.yaml", "--state", "state"]);
    let out = text(&third);
    assert!(third.status.success(), "{out}");
    assert_eq!(
        step_line(&out, "orders-to-lake")[1..4],
        ["Succeeded", "1,000", &group(more)],
        "{out}"
    );
    assert_eq!(query(&db, "SELECT count(*) FROM orders"), expected + more);

    // The state shows the watermarks; a reset makes the next run read everything again, and
    // the upsert keeps the warehouse exact.
    let shown = text(&synqx(d, &["state", "show", "--state", "state"]));
    assert!(
        shown.contains("quickstart/orders-to-lake: 2024-03-"),
        "{shown}"
    );
    let reset = synqx(
        d,
        &[
            "state",
            "reset",
            "--pipeline",
            "quickstart",
            "--step",
            "orders-to-lake",
            "--state",
            "state",
        ],
    );
    assert!(
        text(&reset).contains("removed 1 watermark"),
        "{}",
        text(&reset)
    );
    let fourth = synqx(
        d,
        &[
            "run",
            "pipeline.yaml",
            "--state",
            "state",
            "--step",
            "orders-to-lake",
        ],
    );
    let out = text(&fourth);
    assert_eq!(
        step_line(&out, "orders-to-lake")[1..3],
        ["Succeeded", "6,000"],
        "{out}"
    );
    assert_eq!(
        step_line(&out, "orders-to-warehouse"),
        Vec::<&str>::new(),
        "only the chosen step runs: {out}"
    );
}

fn group(n: i64) -> String {
    synqx_runner::local::group(n.max(0) as u64)
}

#[test]
fn a_failed_step_stops_the_run_and_keeps_the_watermark() {
    let dir = quickstart();
    let d = dir.path();
    let yaml = std::fs::read_to_string(d.join("pipeline.yaml")).unwrap_or_default();
    let broken = yaml.replace("- rename: {total: amount}", "- rename: {totl: amount}");
    assert_ne!(yaml, broken);
    std::fs::write(d.join("broken.yaml"), broken).unwrap_or_else(|e| panic!("{e}"));
    let run = synqx(d, &["run", "broken.yaml", "--state", "state"]);
    let out = text(&run);
    assert_eq!(run.status.code(), Some(1), "{out}");
    assert_eq!(step_line(&out, "orders-to-lake")[1], "Failed", "{out}");
    assert_eq!(
        step_line(&out, "orders-to-warehouse")[1],
        "Skipped",
        "{out}"
    );
    assert_eq!(step_line(&out, "daily-revenue")[1], "Skipped", "{out}");
    assert!(
        out.contains("step \"orders-to-lake\": transforms[1] (rename): column \"totl\" not found"),
        "{out}"
    );
    let shown = text(&synqx(d, &["state", "show", "--state", "state"]));
    assert!(
        !shown.contains("quickstart/orders-to-lake:"),
        "a failed step moved its watermark: {shown}"
    );
}

#[test]
fn invalid_files_run_nothing() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let run = synqx(
        dir.path(),
        &[
            "run",
            &root()
                .join("examples/invalid/06-cycle.yaml")
                .display()
                .to_string(),
            "--state",
            "state",
        ],
    );
    let out = text(&run);
    assert_eq!(run.status.code(), Some(1));
    assert!(out.contains("dependency cycle: a -> b -> c -> a"), "{out}");
    assert!(out.contains("nothing ran"), "{out}");
    assert!(!dir.path().join("state").exists());
}

/// A pipeline of two independent branches where one fails, under a given onFailure.
fn branches(on_failure: &str) -> String {
    format!(
        r#"apiVersion: synqx.io/v1alpha1
kind: Connection
metadata: {{name: inbox}}
spec: {{filesystem: {{path: ./data}}}}
---
apiVersion: synqx.io/v1alpha1
kind: Connection
metadata: {{name: db}}
spec: {{sqlite: {{path: ./out/db.sqlite}}}}
---
apiVersion: synqx.io/v1alpha1
kind: Pipeline
metadata: {{name: branches}}
spec:
  parallelism: 1
  onFailure: {on_failure}
  steps:
    - name: broken
      sync:
        source: {{connection: inbox, asset: {{fqn: customers.csv}}}}
        transforms: [{{select: [no_such_column]}}]
        destination: {{connection: db, asset: {{fqn: broken}}}}
    - name: after-broken
      dependsOn: [broken]
      sql: {{connection: db, statements: ["SELECT 1"]}}
    - name: healthy
      sync:
        source: {{connection: inbox, asset: {{fqn: customers.csv}}}}
        destination: {{connection: db, asset: {{fqn: customers}}, mode: overwrite}}
    - name: after-healthy
      dependsOn: [healthy]
      sql: {{connection: db, statements: ["CREATE TABLE IF NOT EXISTS done AS SELECT count(*) AS n FROM customers"]}}
"#
    )
}

#[test]
fn on_failure_continue_finishes_independent_branches() {
    let dir = quickstart();
    let d = dir.path();
    std::fs::write(d.join("continue.yaml"), branches("Continue")).unwrap_or_else(|e| panic!("{e}"));
    let run = synqx(d, &["run", "continue.yaml", "--state", "state"]);
    let out = text(&run);
    assert_eq!(run.status.code(), Some(1), "{out}");
    assert_eq!(step_line(&out, "broken")[1], "Failed", "{out}");
    assert_eq!(step_line(&out, "after-broken")[1], "Skipped", "{out}");
    assert_eq!(step_line(&out, "healthy")[1], "Succeeded", "{out}");
    assert_eq!(step_line(&out, "after-healthy")[1], "Succeeded", "{out}");
    assert_eq!(query(&d.join("out/db.sqlite"), "SELECT n FROM done"), 500);

    // Stop: after the failure nothing new starts, even on the other branch.
    std::fs::write(d.join("stop.yaml"), branches("Stop")).unwrap_or_else(|e| panic!("{e}"));
    let run = synqx(d, &["run", "stop.yaml", "--state", "state2"]);
    let out = text(&run);
    assert_eq!(step_line(&out, "broken")[1], "Failed", "{out}");
    assert_eq!(step_line(&out, "healthy")[1], "Skipped", "{out}");
    assert!(
        out.contains("not started: a step failed (onFailure: Stop)"),
        "{out}"
    );
}

#[test]
fn full_refresh_and_state_set_move_the_starting_point() {
    let dir = quickstart();
    let d = dir.path();
    let first = synqx(
        d,
        &[
            "run",
            "pipeline.yaml",
            "--state",
            "state",
            "--step",
            "orders-to-lake",
        ],
    );
    assert!(first.status.success(), "{}", text(&first));
    let again = text(&synqx(
        d,
        &[
            "run",
            "pipeline.yaml",
            "--state",
            "state",
            "--step",
            "orders-to-lake",
            "--full-refresh",
        ],
    ));
    assert_eq!(
        step_line(&again, "orders-to-lake")[1..3],
        ["Succeeded", "5,000"],
        "{again}"
    );
    // Set the watermark to the end of January: only February's rows are read.
    let set = synqx(
        d,
        &[
            "state",
            "set",
            "--pipeline",
            "quickstart",
            "--step",
            "orders-to-lake",
            "--watermark",
            "2024-02-01T00:00:00Z",
            "--state",
            "state",
        ],
    );
    assert!(set.status.success(), "{}", text(&set));
    let feb = text(&synqx(
        d,
        &[
            "run",
            "pipeline.yaml",
            "--state",
            "state",
            "--step",
            "orders-to-lake",
        ],
    ));
    let csv = std::fs::read_to_string(d.join("data/orders/orders-2024-02.csv")).unwrap_or_default();
    let expected = csv
        .lines()
        .skip(1)
        .filter(|l| {
            l.split(',')
                .nth(6)
                .is_some_and(|u| u > "2024-02-01T00:00:00Z")
        })
        .count() as i64;
    assert_eq!(
        step_line(&feb, "orders-to-lake")[1..3],
        ["Succeeded", &group(expected)],
        "{feb}"
    );
}

#[test]
fn a_run_killed_mid_overwrite_leaves_the_old_table() {
    let dir = quickstart();
    let d = dir.path();
    // A large input so the load is still running when the process is killed.
    let mut big = String::from("id,payload\n");
    for i in 0..400_000 {
        big.push_str(&format!("{i},row-{i}-{}\n", "x".repeat(40)));
    }
    std::fs::write(d.join("data/big.csv"), big).unwrap_or_else(|e| panic!("{e}"));
    let yaml = |mode: &str, fqn: &str| {
        format!(
            "apiVersion: synqx.io/v1alpha1\nkind: Connection\nmetadata: {{name: inbox}}\nspec: {{filesystem: {{path: ./data}}}}\n---\napiVersion: synqx.io/v1alpha1\nkind: Connection\nmetadata: {{name: db}}\nspec: {{sqlite: {{path: ./out/db.sqlite}}}}\n---\napiVersion: synqx.io/v1alpha1\nkind: Pipeline\nmetadata: {{name: big}}\nspec:\n  steps:\n    - name: load\n      sync:\n        source: {{connection: inbox, asset: {{fqn: {fqn}}}}}\n        destination: {{connection: db, asset: {{fqn: t}}, mode: {mode}}}\n"
        )
    };
    std::fs::write(d.join("small.yaml"), yaml("overwrite", "customers.csv"))
        .unwrap_or_else(|e| panic!("{e}"));
    let first = synqx(d, &["run", "small.yaml", "--state", "state"]);
    assert!(first.status.success(), "{}", text(&first));
    let db = d.join("out/db.sqlite");
    assert_eq!(query(&db, "SELECT count(*) FROM t"), 500);

    std::fs::write(d.join("big.yaml"), yaml("overwrite", "big.csv"))
        .unwrap_or_else(|e| panic!("{e}"));
    let mut child = Command::new(env!("CARGO_BIN_EXE_synqx"))
        .args(["run", "big.yaml", "--state", "state"])
        .current_dir(d)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap_or_else(|e| panic!("{e}"));
    std::thread::sleep(std::time::Duration::from_millis(400));
    let finished_early = child.try_wait().ok().flatten().is_some();
    let _ = child.kill();
    let _ = child.wait();
    assert!(
        !finished_early,
        "the load finished before it could be killed; make the input larger"
    );
    // Killed mid-load: the old table is intact, nothing half-written shows.
    assert_eq!(query(&db, "SELECT count(*) FROM t"), 500);
    assert_eq!(
        query(
            &db,
            "SELECT count(*) FROM sqlite_master WHERE name LIKE '%synqx_new%'"
        ),
        0
    );
    // And a complete run replaces it.
    let full = synqx(d, &["run", "big.yaml", "--state", "state"]);
    assert!(full.status.success(), "{}", text(&full));
    assert_eq!(query(&db, "SELECT count(*) FROM t"), 400_000);
}
