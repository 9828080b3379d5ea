//! A REST page far larger than the step's memory budget: `synqx run` fails as soon as the page
//! shows to be larger than a page may be within the budget, naming the step, the page, its URL
//! (without the API key) and the limit, and what to change; a page just under that limit is
//! read whole. Both stay within the budget, measured as the kernel's high-water mark of the
//! runner's process (`ru_maxrss` from `wait4`, its VmHWM when it ended).

mod support;

use std::path::Path;

use support::{LAKE, synqx_command};
use synqx_testkit::http::{Reply, StandIn};
use synqx_testkit::{files, run_with_peak};

/// The step's memory budget, and the page limit it gives: half of it over the 16 times its
/// size a parsed page takes.
const BUDGET_MIB: u64 = 256;
const LIMIT_MIB: u64 = BUDGET_MIB / 2 / 16;
const KEY: &str = "rest-memory-key-4b1f";

/// One record of exactly `RECORD_BYTES` bytes of JSON (with the comma after it).
fn record(i: u64) -> String {
    format!(
        r#"{{"id":{i:>10},"name":"record {i:>10}","score":{:>8}.5,"tag":"abcdefghijklmnop"}},"#,
        i % 99_999_999
    )
}
const RECORD_BYTES: u64 = 89;

/// An API answering every request with one page, a JSON array of `records` records, sent
/// as it is made in chunks of about a MiB (no `Content-Length`), so the server never holds
/// it either.
fn start_api(records: u64) -> StandIn {
    StandIn::start(move |_| {
        let mut next = 0;
        let chunks = std::iter::from_fn(move || {
            if next == records {
                return None;
            }
            let mut chunk = String::with_capacity(1 << 20);
            if next == 0 {
                chunk.push('[');
            }
            while next < records && chunk.len() < (1 << 20) - 100 {
                chunk.push_str(&record(next));
                next += 1;
            }
            if next == records {
                chunk.pop();
                chunk.push(']');
            }
            Some(chunk.into_bytes())
        });
        Reply::status(200)
            .with_header("content-type", "application/json")
            .streamed(chunks)
    })
}

fn write_pipeline(dir: &Path, port: u16) {
    let yaml = format!(
        r#"apiVersion: v1
kind: Secret
metadata: {{name: api-creds}}
stringData: {{key: "{KEY}"}}
---
apiVersion: synqx.io/v1alpha1
kind: Connection
metadata: {{name: api}}
spec:
  rest:
    baseUrl: "http://127.0.0.1:{port}/"
    auth: {{apiKey: {{query: api_key, value: {{secretKeyRef: {{name: api-creds, key: key}}}}}}}}
    pagination: {{kind: none}}
---
{LAKE}apiVersion: synqx.io/v1alpha1
kind: Pipeline
metadata: {{name: huge}}
spec:
  steps:
    - name: load
      sync:
        source: {{connection: api, asset: {{fqn: items}}}}
        destination: {{connection: lake, asset: {{fqn: items.parquet}}, mode: overwrite}}
"#
    );
    std::fs::write(dir.join("pipeline.yaml"), yaml).unwrap_or_else(|e| panic!("{e}"));
}

/// What a run against a page of `records` records left and did.
struct Run {
    dir: tempfile::TempDir,
    port: u16,
    status: std::process::ExitStatus,
    out: String,
    /// Peak RSS in bytes.
    peak: u64,
}

/// `synqx run` with the budget against a page of `records` records.
fn run(records: u64) -> Run {
    let api = start_api(records);
    let port = api.port;
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    write_pipeline(dir.path(), port);
    let mut command = synqx_command(dir.path(), &["run", "pipeline.yaml", "--state", "state"]);
    command.env("SYNQX_STEP_MEMORY", format!("{BUDGET_MIB}MiB"));
    let (status, out, peak) = run_with_peak(command, dir.path());
    eprintln!(
        "a page of {} MiB: peak RSS {} MiB",
        (records * RECORD_BYTES) >> 20,
        peak >> 20
    );
    Run {
        dir,
        port,
        status,
        out,
        peak,
    }
}

#[test]
fn a_page_far_above_the_budget_fails_naming_the_limit_within_the_budget() {
    let records = 2_400_000;
    assert!(
        records * RECORD_BYTES > 200 << 20,
        "the page must be over 200 MiB"
    );
    assert_eq!(record(records - 1).len() as u64, RECORD_BYTES);
    let Run {
        dir,
        port,
        status,
        out,
        peak,
    } = run(records);
    assert_eq!(status.code(), Some(1), "{out}");
    let expected =
        format!("failed load: Connection \"api\": page 1 (http://127.0.0.1:{port}/items");
    assert!(out.contains(&expected), "{out}");
    for part in [
        format!("is larger than {LIMIT_MIB} MiB, the most a page may be in half of the step's memory budget of {BUDGET_MIB} MiB from SYNQX_STEP_MEMORY, since a page is held whole and takes about 16 times its size once parsed"),
        "ask the API for smaller pages (pagination.size and sizeParam), or give the step more memory (SYNQX_STEP_MEMORY".to_string(),
    ] {
        assert!(out.contains(&part), "{part}\nnot in:\n{out}");
    }
    assert!(!out.contains(KEY), "the API key leaked:\n{out}");
    assert!(
        !dir.path().join("lake/items.parquet").exists(),
        "nothing is written"
    );
    assert!(
        peak < BUDGET_MIB << 20,
        "peak RSS {} MiB over the budget of {BUDGET_MIB} MiB",
        peak >> 20
    );
}

#[test]
fn a_page_just_under_the_limit_is_read_whole_within_the_budget() {
    // 95 % of the limit.
    let records = (LIMIT_MIB << 20) * 95 / 100 / RECORD_BYTES;
    let Run {
        dir,
        status,
        out,
        peak,
        ..
    } = run(records);
    assert!(status.success(), "{out}");
    let rows = files::parquet_rows(&dir.path().join("lake/items.parquet"));
    assert_eq!(rows.num_rows() as u64, records, "{out}");
    let ids = rows
        .column_by_name("id")
        .unwrap_or_else(|| panic!("no id: {:?}", rows.schema()));
    let ids = arrow::array::AsArray::as_primitive::<arrow::datatypes::Int64Type>(ids);
    assert_eq!(
        ids.iter().flatten().map(|i| i as u64).sum::<u64>(),
        records * (records - 1) / 2,
        "every record once"
    );
    assert!(
        peak < BUDGET_MIB << 20,
        "peak RSS {} MiB over the budget of {BUDGET_MIB} MiB",
        peak >> 20
    );
}
