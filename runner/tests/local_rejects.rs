//! `synqx run` with a bad row whose value is distinctive: under `onError: fail` and `skip`, the
//! value is in the step's rejected file and in nothing else the run printed or kept.
//!
//! `sync.rejects`: a step's rejected rows appended, once the step ends, to a destination of
//! their own (a folder of JSON lines, a table), where they outlive the step's pod; a retry
//! does not keep them twice; and a destination that cannot take them fails the step.

mod support;

use std::path::{Path, PathBuf};

use support::{INBOX_AND_DB, synqx, text};

/// A value no message, state or counter may show.
const SECRET: &str = "Zebulon-Quartz-7731";
/// A value the sink (not the source) refuses: above SQLite's largest INTEGER.
const TOO_BIG: &str = "18446744073709551615";

fn pipeline(on_error: &str, column: &str, kind: &str) -> String {
    format!(
        r#"{INBOX_AND_DB}apiVersion: synqx.io/v1alpha1
kind: Pipeline
metadata: {{name: rejects}}
spec:
  steps:
    - name: load
      sync:
        onError: {on_error}
        source:
          connection: inbox
          asset: {{fqn: orders.csv}}
          columns: {{{column}: {kind}}}
        destination: {{connection: db, asset: {{fqn: orders}}}}
"#
    )
}

/// A file and its bytes.
type File = (PathBuf, Vec<u8>);

/// Every file below `dir`, with its bytes.
fn files(dir: &Path) -> Vec<File> {
    let mut out = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return out;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            out.extend(files(&path));
        } else {
            let bytes = std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            out.push((path, bytes));
        }
    }
    out
}

fn holds(bytes: &[u8], text: &str) -> bool {
    bytes.windows(text.len()).any(|w| w == text.as_bytes())
}

/// Runs the pipeline on `csv` and returns what it printed, its exit code and its state folder.
fn run(dir: &Path, on_error: &str, csv: &str, column: &str, kind: &str) -> (String, Option<i32>) {
    run_pipeline(dir, &pipeline(on_error, column, kind), csv)
}

/// Runs `pipeline` on `csv` and returns what it printed and its exit code.
fn run_pipeline(dir: &Path, pipeline: &str, csv: &str) -> (String, Option<i32>) {
    std::fs::create_dir_all(dir.join("data")).unwrap_or_else(|e| panic!("{e}"));
    std::fs::write(dir.join("data/orders.csv"), csv).unwrap_or_else(|e| panic!("{e}"));
    std::fs::write(dir.join("pipeline.yaml"), pipeline).unwrap_or_else(|e| panic!("{e}"));
    let out = synqx(dir, &["run", "pipeline.yaml", "--state", "state"]);
    (text(&out), out.status.code())
}

/// The rejected files of the run, and every other file of its state folder.
fn state(dir: &Path) -> (Vec<File>, Vec<File>) {
    files(&dir.join("state"))
        .into_iter()
        .partition(|(p, _)| p.starts_with(dir.join("state/rejected")))
}

fn assert_kept_only_in_the_rejected_file(dir: &Path, printed: &str, value: &str) -> PathBuf {
    assert!(
        !printed.contains(value),
        "the run printed the value: {printed}"
    );
    let (rejected, others) = state(dir);
    assert_eq!(rejected.len(), 1, "one rejected file: {rejected:?}");
    let (path, bytes) = &rejected[0];
    assert!(holds(bytes, value), "the rejected file lacks the value");
    for (other, bytes) in &others {
        assert!(!holds(bytes, value), "{} holds the value", other.display());
    }
    path.clone()
}

#[test]
fn under_fail_the_bad_value_is_only_in_the_rejected_file_the_error_names() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let d = dir.path();
    let csv = format!("id,amount\n1,10\n2,{SECRET}\n3,30\n");
    let (out, code) = run(d, "fail", &csv, "amount", "int64");
    assert_eq!(code, Some(1), "{out}");
    assert!(
        out.contains("orders.csv: line 3, column \"amount\": cannot parse the value as int64"),
        "{out}"
    );
    let path = assert_kept_only_in_the_rejected_file(d, &out, SECRET);
    let relative = path.strip_prefix(d).unwrap_or(&path).display().to_string();
    assert!(
        out.contains(&format!("; the row is in the rejected file {relative};")),
        "the error does not name {relative}: {out}"
    );
    let record: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&path).unwrap_or_else(|e| panic!("{e}")))
            .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(record["location"], "orders.csv: line 3");
    assert_eq!(record["column"], "amount");
    assert_eq!(record["value"], SECRET);
    assert_eq!(record["row"], format!("2,{SECRET}"));
}

#[test]
fn under_skip_the_bad_value_is_only_in_the_rejected_file_and_the_rest_loads() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let d = dir.path();
    let csv = format!("id,amount\n1,10\n2,{SECRET}\n3,30\n");
    let (out, code) = run(d, "skip", &csv, "amount", "int64");
    assert_eq!(code, Some(0), "{out}");
    assert_kept_only_in_the_rejected_file(d, &out, SECRET);
    let ids = synqx_testkit::sqlite::int(&d.join("out/db.sqlite"), "SELECT sum(id) FROM orders");
    assert_eq!(ids, 4, "rows 1 and 3 load");
}

#[test]
fn a_value_the_destination_refuses_is_kept_out_of_the_messages_too() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let d = dir.path();
    let csv = format!("id,n\n1,5\n2,{TOO_BIG}\n");
    let (out, code) = run(d, "fail", &csv, "n", "uint64");
    assert_eq!(code, Some(1), "{out}");
    assert!(
        out.contains("column \"n\": the value is above the largest SQLite INTEGER"),
        "{out}"
    );
    let path = assert_kept_only_in_the_rejected_file(d, &out, TOO_BIG);
    assert!(out.contains("the row is in the rejected file"), "{out}");
    let record: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&path).unwrap_or_else(|e| panic!("{e}")))
            .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(record["value"], TOO_BIG);
}

/// The pipeline of these tests, its step's rejected rows kept in `rejects` (a Connection `dlq`
/// is a folder for them).
fn kept_pipeline(on_error: &str, rejects: &str) -> String {
    let dlq = "apiVersion: synqx.io/v1alpha1\nkind: Connection\nmetadata: {name: dlq}\nspec: {filesystem: {path: ./dlq}}\n---\n";
    format!(
        "{dlq}{}        rejects: {rejects}\n",
        pipeline(on_error, "amount", "int64")
    )
}

fn run_kept(dir: &Path, on_error: &str, rejects: &str, csv: &str) -> (String, Option<i32>) {
    run_pipeline(dir, &kept_pipeline(on_error, rejects), csv)
}

/// Every JSON line of the files below `dir`, sorted by run, then location.
fn kept_lines(dir: &Path) -> Vec<serde_json::Value> {
    let mut out: Vec<serde_json::Value> = Vec::new();
    let entries = std::fs::read_dir(dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
    for entry in entries.flatten() {
        let text = std::fs::read_to_string(entry.path()).unwrap_or_else(|e| panic!("{e}"));
        for line in text.lines() {
            out.push(serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}")));
        }
    }
    out.sort_by_key(|v| {
        (
            v["run"].as_str().map(String::from),
            v["location"].as_str().map(String::from),
        )
    });
    out
}

/// The id of the run whose output `out` is (`Pipeline rejects run <id>: …`).
fn run_id(out: &str) -> String {
    out.split("Pipeline rejects run ")
        .nth(1)
        .and_then(|rest| rest.split(':').next())
        .unwrap_or_else(|| panic!("no run id in {out}"))
        .to_string()
}

const FOLDER: &str = "{connection: dlq, asset: {fqn: rejected/orders/}, format: jsonl}";

#[test]
fn skipped_rows_are_appended_to_a_folder_of_their_own_run_after_run() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let d = dir.path();
    let (out, code) = run_kept(d, "skip", FOLDER, "id,amount\n1,10\n2,ten\n3,30\n4,forty\n");
    assert_eq!(code, Some(0), "{out}");
    let first = run_id(&out);
    assert!(
        out.contains("2 rejected rows kept in Connection \"dlq\", asset \"rejected/orders/\""),
        "{out}"
    );
    let (out, code) = run_kept(d, "skip", FOLDER, "id,amount\n5,fifty\n6,60\n");
    assert_eq!(code, Some(0), "{out}");
    let second = run_id(&out);
    let mut expected = [
        (&first, "orders.csv: line 3", "ten", "2,ten"),
        (&first, "orders.csv: line 5", "forty", "4,forty"),
        (&second, "orders.csv: line 2", "fifty", "5,fifty"),
    ];
    expected.sort();
    let kept = kept_lines(&d.join("dlq/rejected/orders"));
    assert_eq!(kept.len(), expected.len(), "{kept:#?}");
    for (record, (run, location, value, row)) in kept.iter().zip(expected) {
        assert_eq!(record["run"], run.as_str(), "{record}");
        assert_eq!(record["step"], "load", "{record}");
        assert_eq!(record["location"], location, "{record}");
        assert_eq!(record["column"], "amount", "{record}");
        assert_eq!(
            record["problem"], "cannot parse the value as int64",
            "{record}"
        );
        assert_eq!(record["value"], value, "{record}");
        assert_eq!(record["row"], row, "{record}");
    }
    assert_eq!(
        synqx_testkit::sqlite::rows(
            &d.join("out/db.sqlite"),
            "SELECT id, amount FROM orders ORDER BY 1"
        ),
        [
            [Some("1"), Some("10")],
            [Some("3"), Some("30")],
            [Some("6"), Some("60")]
        ]
        .map(|r| r.map(|v| v.map(String::from)).to_vec())
    );
}

#[test]
fn the_row_that_fails_a_step_is_kept_in_a_table_and_the_error_says_so() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let d = dir.path();
    let table = "{connection: db, asset: {fqn: rejected_rows}}";
    let (out, code) = run_kept(d, "fail", table, "id,amount\n1,10\n2,ten\n");
    assert_eq!(code, Some(1), "{out}");
    assert!(
        out.contains("it is kept in Connection \"db\", asset \"rejected_rows\" too"),
        "{out}"
    );
    assert!(!out.contains("2,ten"), "the run printed the row: {out}");
    let db = d.join("out/db.sqlite");
    let run = run_id(&out);
    assert_eq!(
        synqx_testkit::sqlite::rows(
            &db,
            "SELECT run, step, location, \"column\", value, row FROM rejected_rows"
        ),
        [[
            run.as_str(),
            "load",
            "orders.csv: line 3",
            "amount",
            "ten",
            "2,ten"
        ]
        .map(|v| Some(v.to_string()))
        .to_vec()]
    );
    // The step failed before its load committed: the destination has no table.
    assert_eq!(
        synqx_testkit::sqlite::int(
            &db,
            "SELECT count(*) FROM sqlite_master WHERE name = 'orders'"
        ),
        0
    );
}

#[test]
fn rejects_that_cannot_be_kept_fail_the_step_and_say_the_load_committed() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let d = dir.path();
    // The rejects' folder cannot be made: a file stands where it would be.
    std::fs::create_dir_all(d.join("dlq/rejected")).unwrap_or_else(|e| panic!("{e}"));
    std::fs::write(d.join("dlq/rejected/orders"), "not a folder").unwrap_or_else(|e| panic!("{e}"));
    let (out, code) = run_kept(d, "skip", FOLDER, "id,amount\n1,10\n2,ten\n");
    assert_eq!(code, Some(1), "{out}");
    assert!(
        out.contains("the load committed, but its rejected rows could not be kept in Connection \"dlq\", asset \"rejected/orders/\": "),
        "{out}"
    );
    assert!(
        out.contains("fix sync.rejects and run again (the watermark was not advanced)"),
        "{out}"
    );
    assert_eq!(
        synqx_testkit::sqlite::rows(&d.join("out/db.sqlite"), "SELECT id, amount FROM orders"),
        [vec![Some("1".to_string()), Some("10".to_string())]]
    );
    // What could not be kept is still in the step's rejected file.
    let file = d.join(format!(
        "state/rejected/rejects/load-{}.jsonl",
        run_id(&out)
    ));
    let text = std::fs::read_to_string(&file).unwrap_or_else(|e| panic!("{e}"));
    assert!(text.contains("\"value\":\"ten\""), "{text}");
}

/// A retry appends to the rejected file of its run: each attempt keeps the rows it rejected,
/// and no attempt keeps those of the one before again.
#[test]
fn each_attempt_keeps_its_own_rejects_once() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let d = dir.path();
    let retried = kept_pipeline("fail", FOLDER).replace(
        "    - name: load\n",
        "    - name: load\n      retry: {limit: 2, backoff: {initial: 1ms}}\n",
    );
    let (out, code) = run_pipeline(d, &retried, "id,amount\n1,10\n2,ten\n");
    assert_eq!(code, Some(1), "{out}");
    let run = run_id(&out);
    let file = d.join(format!("state/rejected/rejects/load-{run}.jsonl"));
    let text = std::fs::read_to_string(&file).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(text.lines().count(), 3, "three attempts: {text}");
    let kept = kept_lines(&d.join("dlq/rejected/orders"));
    assert_eq!(kept.len(), 3, "{kept:#?}");
    assert!(
        kept.iter()
            .all(|k| k["run"] == run.as_str() && k["value"] == "ten"),
        "{kept:#?}"
    );
}

/// A step without rows to reject leaves its rejects' destination untouched.
#[test]
fn a_clean_load_touches_no_rejects() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let d = dir.path();
    let (out, code) = run_kept(d, "skip", FOLDER, "id,amount\n1,10\n");
    assert_eq!(code, Some(0), "{out}");
    assert!(!out.contains("rejected rows kept"), "{out}");
    assert!(!d.join("dlq").exists() || !d.join("dlq/rejected").exists());
}
