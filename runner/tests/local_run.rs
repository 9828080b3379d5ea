//! `synqx run` end to end on the quickstart: files through transforms into Parquet and SQLite,
//! incremental runs, state commands and failure semantics, and the run's web UI as a client
//! of its API sees it (`--ui`: the graph with asset names, last run and watermarks, a watch
//! whose snapshot holds each step's log lines, other namespaces refused).

mod support;

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use futures::StreamExt;
use synqx_api::gateway::{Body, Message, PROTOCOL};
use synqx_api::run::{RunPhase, StepPhase};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio_tungstenite::tungstenite::Message as Frame;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;

use arrow::array::Int64Array;
use parquet::basic::Compression;
use support::{INBOX_AND_DB, run_ok, synqx, synqx_command, text};
use synqx_testkit::{files, sqlite};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
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

/// The orders of a CSV whose status is not `test`: `(order_id, amount in cents)`.
fn kept_orders(path: &Path) -> Vec<(i64, i64)> {
    let csv = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{e}"));
    csv.lines()
        .skip(1)
        .map(|l| l.split(',').collect::<Vec<_>>())
        .filter(|f| f.get(2) != Some(&"test"))
        .map(|f| {
            let id = f[0].parse().unwrap_or_else(|e| panic!("{f:?}: {e}"));
            let (units, cents) = f[3].split_once('.').unwrap_or((f[3], "0"));
            let cents = format!("{cents:0<2}");
            let amount = units
                .parse::<i64>()
                .unwrap_or_else(|e| panic!("{f:?}: {e}"))
                * 100
                + cents
                    .parse::<i64>()
                    .unwrap_or_else(|e| panic!("{f:?}: {e}"));
            (id, amount)
        })
        .collect()
}

/// The quickstart's `daily_revenue`, computed from its CSV files (every month in
/// `data/orders`): orders neither `test` nor `refunded`, by day of `created_at` and the
/// customer's country, as (day, country, orders, revenue in cents), ordered by day and country
/// as the table is read.
fn expected_revenue(data: &Path) -> Vec<(String, String, i64, i64)> {
    let read = |path: &Path| std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{e}"));
    let customers = read(&data.join("customers.csv"));
    let country: std::collections::HashMap<&str, &str> = customers
        .lines()
        .skip(1)
        .map(|l| l.split(',').collect::<Vec<_>>())
        .map(|f| (f[0], f[3]))
        .collect();
    let mut days = std::collections::BTreeMap::<(String, String), (i64, i64)>::new();
    let mut months: Vec<PathBuf> = std::fs::read_dir(data.join("orders"))
        .unwrap_or_else(|e| panic!("{e}"))
        .map(|entry| entry.unwrap_or_else(|e| panic!("{e}")).path())
        .collect();
    months.sort();
    for path in months {
        let amounts: std::collections::HashMap<i64, i64> = kept_orders(&path).into_iter().collect();
        for line in read(&path).lines().skip(1) {
            let f: Vec<&str> = line.split(',').collect();
            if matches!(f[2], "test" | "refunded") {
                continue;
            }
            let id: i64 = f[0].parse().unwrap_or_else(|e| panic!("{f:?}: {e}"));
            let cents = amounts[&id];
            let to = country
                .get(f[1])
                .unwrap_or_else(|| panic!("order {id}: no customer {}", f[1]));
            let day = days
                .entry((f[5][..10].to_string(), to.to_string()))
                .or_default();
            *day = (day.0 + 1, day.1 + cents);
        }
    }
    days.into_iter()
        .map(|((day, country), (orders, cents))| (day, country, orders, cents))
        .collect()
}

/// `daily_revenue` as read back, in the shape of [`expected_revenue`].
fn revenue_rows(rows: &[Vec<Option<String>>]) -> Vec<(String, String, i64, i64)> {
    let text = |row: &[Option<String>], i: usize| {
        row.get(i)
            .cloned()
            .flatten()
            .unwrap_or_else(|| panic!("daily_revenue row {row:?}: no column {i}"))
    };
    rows.iter()
        .map(|row| {
            let orders = text(row, 2)
                .parse()
                .unwrap_or_else(|e| panic!("{row:?}: {e}"));
            let revenue: f64 = text(row, 3)
                .parse()
                .unwrap_or_else(|e| panic!("{row:?}: {e}"));
            (
                text(row, 0),
                text(row, 1),
                orders,
                (revenue * 100.0).round() as i64,
            )
        })
        .collect()
}

fn query(db: &Path, sql: &str) -> i64 {
    sqlite::int(db, sql)
}

/// `(customer_id, hex SHA-256 of the e-mail)` of every customer in the CSV.
fn hashed_customers(path: &Path) -> Vec<Vec<Option<String>>> {
    let csv = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{e}"));
    csv.lines()
        .skip(1)
        .map(|l| l.split(',').collect::<Vec<_>>())
        .map(|f| {
            let digest = ring::digest::digest(&ring::digest::SHA256, f[2].as_bytes());
            let hex: String = digest.as_ref().iter().map(|b| format!("{b:02x}")).collect();
            vec![Some(f[0].to_string()), Some(hex)]
        })
        .collect()
}

/// What the quickstart wrote: the warehouse's tables and the lake's Parquet parts.
#[derive(Debug, PartialEq)]
struct Outputs {
    customers: Vec<Vec<Option<String>>>,
    orders: Vec<Vec<Option<String>>>,
    revenue: Vec<Vec<Option<String>>>,
    lake_parts: Vec<PathBuf>,
    lake_orders: Vec<i64>,
}

fn outputs(d: &Path) -> Outputs {
    let db = d.join("out/warehouse.db");
    let lake = d.join("out/lake/orders");
    let parts = files::parquet_parts(&lake);
    for part in &parts {
        let codecs = files::parquet_codecs(part);
        assert!(
            !codecs.is_empty() && codecs.iter().all(|c| matches!(c, Compression::ZSTD(_))),
            "{}: {codecs:?}",
            part.display()
        );
    }
    let rows = files::parquet_folder_rows(&lake);
    let ids = rows
        .column_by_name("order_id")
        .and_then(|c| c.as_any().downcast_ref::<Int64Array>())
        .map(|c| c.values().to_vec())
        .unwrap_or_else(|| panic!("no Int64 order_id in the lake"));
    let mut lake_orders = ids.clone();
    lake_orders.sort_unstable();
    assert_eq!(lake_orders.len(), ids.len());
    Outputs {
        customers: sqlite::rows(&db, "SELECT customer_id, email FROM customers ORDER BY 1"),
        orders: sqlite::rows(&db, "SELECT order_id, amount_cents FROM orders ORDER BY 1"),
        revenue: sqlite::rows(&db, "SELECT * FROM daily_revenue ORDER BY 1, 2"),
        lake_parts: parts,
        lake_orders,
    }
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
    let mut expected = kept_orders(&d.join("data/orders/orders-2024-01.csv"));
    expected.extend(kept_orders(&d.join("data/orders/orders-2024-02.csv")));
    expected.sort_unstable();

    let out = run_ok(d, &[]);
    assert!(out.contains("Pipeline quickstart run "), "{out}");
    assert_eq!(
        step_line(&out, "orders-to-lake")[1..4],
        ["Succeeded", "5,000", &group(expected.len() as i64)],
        "{out}"
    );
    let written = outputs(d);
    // Every kept order, with its amount in cents, in the lake and in the warehouse.
    let as_rows: Vec<Vec<Option<String>>> = expected
        .iter()
        .map(|(id, cents)| vec![Some(id.to_string()), Some(cents.to_string())])
        .collect();
    assert_eq!(written.orders, as_rows);
    let ids: Vec<i64> = expected.iter().map(|(id, _)| *id).collect();
    assert_eq!(written.lake_orders, ids);
    // E-mails are the hex SHA-256 of the addresses, per customer.
    assert_eq!(
        written.customers,
        hashed_customers(&d.join("data/customers.csv"))
    );
    // The SQL step's table: orders and revenue per day and country, to the cent.
    let revenue = expected_revenue(&d.join("data"));
    assert!(revenue.len() > 10, "{revenue:?}");
    assert_eq!(revenue_rows(&written.revenue), revenue);
    assert_eq!(
        query(&db, "SELECT count(*) FROM orders WHERE status = 'test'"),
        0
    );

    // Nothing new: no rows move, and the warehouse and the lake are as they were.
    let out = run_ok(d, &[]);
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
    assert_eq!(outputs(d), written);

    // A new month arrives: only its rows move.
    std::fs::copy(
        d.join("extra/orders-2024-03.csv"),
        d.join("data/orders/orders-2024-03.csv"),
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let more = kept_orders(&d.join("extra/orders-2024-03.csv")).len() as i64;
    let out = run_ok(d, &[]);
    assert_eq!(
        step_line(&out, "orders-to-lake")[1..4],
        ["Succeeded", "1,000", &group(more)],
        "{out}"
    );
    assert_eq!(
        query(&db, "SELECT count(*) FROM orders"),
        expected.len() as i64 + more
    );
    assert_eq!(
        revenue_rows(&outputs(d).revenue),
        expected_revenue(&d.join("data"))
    );

    // The state shows the watermarks; a reset makes the next run read everything again, and
    // the upsert keeps the warehouse exact.
    let shown = text(&synqx(d, &["state", "show", "--state", "state"]));
    assert!(
        shown.contains("quickstart/orders-to-lake: 2024-03-"),
        "{shown}"
    );
    let reset = orders_to_lake_state(d, &["reset"]);
    assert!(reset.contains("removed 1 watermark"), "{reset}");
    let out = run_ok(d, &["--step", "orders-to-lake"]);
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

/// `synqx state VERB` of the quickstart's step `orders-to-lake`, which must succeed: what it
/// printed.
fn orders_to_lake_state(d: &Path, verb: &[&str]) -> String {
    let step = ["--pipeline", "quickstart", "--step", "orders-to-lake"];
    let out = synqx(
        d,
        &[&["state"][..], verb, &step, &["--state", "state"]].concat(),
    );
    let t = text(&out);
    assert!(out.status.success(), "synqx state {verb:?} failed:\n{t}");
    t
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

#[test]
fn the_web_ui_serves_only_loopback_unless_asked() {
    let dir = quickstart();
    let pipeline = dir.path().join("pipeline.yaml").display().to_string();
    let run = synqx(
        dir.path(),
        &["run", &pipeline, "--state", "state", "--ui", "0.0.0.0:0"],
    );
    let out = text(&run);
    assert_ne!(run.status.code(), Some(0), "{out}");
    assert!(
        out.contains("--ui 0.0.0.0:0: a local run's web UI has no authentication"),
        "{out}"
    );
    assert!(out.contains("add --ui-any-address"), "{out}");
    // Refused before any step ran: nothing was written.
    assert!(!dir.path().join("out").exists());
}

/// A pipeline of two independent branches where one fails, under a given onFailure.
fn branches(on_failure: &str) -> String {
    format!(
        r#"{INBOX_AND_DB}apiVersion: synqx.io/v1alpha1
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
    run_ok(d, &["--step", "orders-to-lake"]);
    let again = run_ok(d, &["--step", "orders-to-lake", "--full-refresh"]);
    assert_eq!(
        step_line(&again, "orders-to-lake")[1..3],
        ["Succeeded", "5,000"],
        "{again}"
    );
    // Set the watermark to the end of January: only February's rows are read.
    orders_to_lake_state(d, &["set", "--watermark", "2024-02-01T00:00:00Z"]);
    let feb = run_ok(d, &["--step", "orders-to-lake"]);
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

/// Bytes of a file, 0 when there is none.
fn wal_size(path: &Path) -> u64 {
    std::fs::metadata(path).map(|m| m.len()).unwrap_or(0)
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
            "{INBOX_AND_DB}apiVersion: synqx.io/v1alpha1\nkind: Pipeline\nmetadata: {{name: big}}\nspec:\n  steps:\n    - name: load\n      sync:\n        source: {{connection: inbox, asset: {{fqn: {fqn}}}}}\n        destination: {{connection: db, asset: {{fqn: t}}, mode: {mode}}}\n"
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
    let wal = d.join("out/db.sqlite-wal");
    let before = wal_size(&wal);
    let mut child = synqx_command(d, &["run", "big.yaml", "--state", "state"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| panic!("{e}"));
    // The load has started once its uncommitted pages overflow SQLite's cache into the WAL.
    let started = Instant::now();
    while wal_size(&wal) < before + (4 << 20) {
        if let Ok(Some(status)) = child.try_wait() {
            panic!("the load ended ({status}) before it could be killed; make the input larger");
        }
        assert!(
            started.elapsed() < Duration::from_secs(120),
            "the load did not start writing within 120 s"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = child.kill();
    let _ = child.wait();
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

/// Bounds every wait of the web UI's test; each is on a condition.
const UI_WAIT: Duration = Duration::from_secs(120);

/// `GET path` of the web UI's API: the status and the JSON body.
async fn get(base: &str, path: &str) -> (u16, serde_json::Value) {
    let response = reqwest::get(format!("{base}{path}"))
        .await
        .unwrap_or_else(|e| panic!("GET {path}: {e}"));
    let code = response.status().as_u16();
    let text = response
        .text()
        .await
        .unwrap_or_else(|e| panic!("GET {path}: {e}"));
    let body = serde_json::from_str(&text).unwrap_or_else(|e| panic!("GET {path}: {e}: {text}"));
    (code, body)
}

#[tokio::test]
async fn the_web_ui_serves_a_local_run_with_its_graph_counters_and_logs() {
    let dir = quickstart();
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_synqx"))
        .args(["run", "pipeline.yaml", "--state", "state"])
        .args(["--ui", "127.0.0.1:0"])
        .current_dir(dir.path())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap_or_else(|e| panic!("starting synqx run --ui: {e}"));
    let Some(stderr) = child.stderr.take() else {
        panic!("stderr is not piped")
    };
    let mut lines = BufReader::new(stderr).lines();
    let mut said = Vec::new();
    let mut base = None;
    let mut served = false;
    // The address first, then the line that says the run ended and the UI stays.
    while let Ok(Ok(Some(line))) = tokio::time::timeout(UI_WAIT, lines.next_line()).await {
        if let Some(url) = line.strip_prefix("web UI: ") {
            base = Some(url.trim_end_matches('/').to_string());
        }
        served = line.starts_with("the web UI stays at");
        said.push(line);
        if served {
            break;
        }
    }
    let Some(base) = base.filter(|_| served) else {
        panic!("synqx run --ui did not serve and finish: {said:?}")
    };

    let (code, pipelines) = get(&base, "/api/v1/namespaces/local/pipelines").await;
    assert_eq!(code, 200, "{pipelines}");
    let quickstart = &pipelines["items"][0];
    assert_eq!(quickstart["name"], "quickstart", "{pipelines}");
    assert_eq!(quickstart["ready"]["status"], "True");
    let edges = quickstart["edges"].as_array().cloned().unwrap_or_default();
    let lineage = edges
        .iter()
        .find(|e| e["from"] == "orders-to-lake" && e["to"] == "orders-to-warehouse");
    assert_eq!(
        lineage.map(|e| (e["kind"].clone(), e["asset"].clone(), e["fqn"].clone())),
        Some((
            "lineage".into(),
            "Orders (Parquet)".into(),
            "orders/".into()
        )),
        "{edges:?}"
    );
    assert!(
        edges
            .iter()
            .any(|e| e["to"] == "daily-revenue" && e["kind"] == "dependsOn"),
        "{edges:?}"
    );
    assert_eq!(quickstart["lastRun"]["phase"], "Succeeded", "{quickstart}");
    assert!(
        quickstart["watermarks"]["orders-to-lake"]["value"].is_string(),
        "{quickstart}"
    );

    let (code, runs) = get(&base, "/api/v1/namespaces/local/pipelineruns").await;
    assert_eq!(code, 200, "{runs}");
    let run = &runs["items"][0];
    assert_eq!(run["name"], quickstart["lastRun"]["name"], "{runs}");
    assert_eq!(run["status"]["phase"], "Succeeded");
    assert_eq!(run["status"]["progress"], "4/4");
    let name = run["name"].as_str().unwrap_or_default().to_string();

    let (code, refused) = get(&base, "/api/v1/namespaces/etl/pipelines").await;
    assert_eq!((code, refused["reason"].as_str()), (404, Some("NotFound")));

    // The run's graph is the plan it ran, with the pipeline's layers and lineage edges.
    let (code, graph) = get(
        &base,
        &format!("/api/v1/namespaces/local/pipelineruns/{name}/graph"),
    )
    .await;
    assert_eq!(code, 200, "{graph}");
    assert_eq!(graph["layers"], quickstart["layers"], "{graph}");
    assert_eq!(graph["edges"], quickstart["edges"], "{graph}");
    let (code, unknown) = get(&base, "/api/v1/namespaces/local/pipelineruns/nope/graph").await;
    assert_eq!((code, unknown["reason"].as_str()), (404, Some("NotFound")));

    // The watch: a snapshot of the finished run with each step's log tail.
    let url = format!(
        "{}/api/v1/namespaces/local/pipelineruns/{name}/watch",
        base.replacen("http://", "ws://", 1)
    );
    let mut request = url.into_client_request().unwrap_or_else(|e| panic!("{e}"));
    request
        .headers_mut()
        .insert("Sec-WebSocket-Protocol", HeaderValue::from_static(PROTOCOL));
    let (mut socket, _) = tokio::time::timeout(UI_WAIT, tokio_tungstenite::connect_async(request))
        .await
        .unwrap_or_else(|_| panic!("the watch did not open"))
        .unwrap_or_else(|e| panic!("the watch was refused: {e}"));
    let first = loop {
        match tokio::time::timeout(UI_WAIT, socket.next()).await {
            Ok(Some(Ok(Frame::Text(text)))) => break text.to_string(),
            Ok(Some(Ok(_))) => continue,
            other => panic!("no snapshot: {other:?}"),
        }
    };
    let message: Message = serde_json::from_str(&first).unwrap_or_else(|e| panic!("{e}: {first}"));
    let Body::Snapshot { run, logs, .. } = message.body else {
        panic!("the first message is not a snapshot: {first}")
    };
    assert_eq!(run.status.phase, Some(RunPhase::Succeeded));
    let customers = run.status.steps.iter().find(|s| s.name == "customers");
    assert_eq!(
        customers.map(|s| (s.phase, s.attempt, s.rows_written)),
        Some((Some(StepPhase::Succeeded), Some(1), Some(500))),
        "{run:?}"
    );
    let texts: Vec<String> = logs
        .iter()
        .filter(|l| l.step == "customers" && l.attempt == 1)
        .flat_map(|l| l.lines.iter().map(|line| line.text.clone()))
        .collect();
    assert_eq!(
        texts.first().map(String::as_str),
        Some("attempt 1 started: reading inbox:customers.csv into warehouse:customers (upsert)"),
        "{texts:?}"
    );
    assert!(
        texts
            .iter()
            .any(|t| t.starts_with("succeeded in ")
                && t.contains(": 500 rows read, 500 rows written")),
        "{texts:?}"
    );

    let page = reqwest::get(format!("{base}/"))
        .await
        .unwrap_or_else(|e| panic!("GET /: {e}"));
    let csp = page
        .headers()
        .get("content-security-policy")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string();
    assert!(csp.contains("default-src 'none'"), "{csp}");
    let html = page.text().await.unwrap_or_default();
    assert!(html.contains("/ui/app.js"), "{html}");
    let _ = child.kill().await;
}
