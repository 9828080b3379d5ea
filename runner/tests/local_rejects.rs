//! `synqx run` with a bad row whose value is distinctive: under `onError: fail` and `skip`, the
//! value is in the step's rejected file and in nothing else the run printed or kept.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// A value no message, state or counter may show.
const SECRET: &str = "Zebulon-Quartz-7731";
/// A value the sink (not the source) refuses: above SQLite's largest INTEGER.
const TOO_BIG: &str = "18446744073709551615";

fn synqx(dir: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_synqx"))
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap_or_else(|e| panic!("cannot run synqx: {e}"))
}

fn printed(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

fn pipeline(on_error: &str, column: &str, kind: &str) -> String {
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
    std::fs::create_dir_all(dir.join("data")).unwrap_or_else(|e| panic!("{e}"));
    std::fs::write(dir.join("data/orders.csv"), csv).unwrap_or_else(|e| panic!("{e}"));
    std::fs::write(dir.join("pipeline.yaml"), pipeline(on_error, column, kind))
        .unwrap_or_else(|e| panic!("{e}"));
    let out = synqx(dir, &["run", "pipeline.yaml", "--state", "state"]);
    (printed(&out), out.status.code())
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
