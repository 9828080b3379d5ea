//! What the tests of the `synqx` binary share beyond `synqx-testkit` (the servers, a schema or
//! database per test): the binary run in a folder, the pipeline files it runs, the Connection
//! documents many of them start with (the database servers', a lake, an inbox), and the
//! watermarks it keeps.

#![allow(dead_code)]

use std::path::Path;
use std::process::{Child, Command, Output, Stdio};

// Not every test file talks to both servers.
#[allow(unused_imports)]
pub use synqx_testkit::{mysql, postgres, runtime};

/// Connection `inbox` (the files of `./data`) and `db` (SQLite at `./out/db.sqlite`), each
/// document ended: what a local pipeline from files into a database starts with.
pub const INBOX_AND_DB: &str = r#"apiVersion: synqx.io/v1alpha1
kind: Connection
metadata: {name: inbox}
spec: {filesystem: {path: ./data}}
---
apiVersion: synqx.io/v1alpha1
kind: Connection
metadata: {name: db}
spec: {sqlite: {path: ./out/db.sqlite}}
---
"#;

/// Connection `lake` (the folder `./lake`), the document ended.
pub const LAKE: &str = r#"apiVersion: synqx.io/v1alpha1
kind: Connection
metadata: {name: lake}
spec: {filesystem: {path: ./lake}}
---
"#;

/// The Secret and Connection documents: `pg` (the PostgreSQL test database), `my` (the
/// MariaDB database `mysql_database`, when given) and `lake` (a folder), passwords from a
/// Secret so that they are never written into a Connection.
pub fn connections(mysql_database: Option<&str>, lake: Option<&Path>) -> String {
    let pg = synqx_testkit::servers::postgres();
    let my = synqx_testkit::servers::mysql();
    let mut docs = format!(
        r#"apiVersion: v1
kind: Secret
metadata: {{name: dbs}}
stringData: {{pg: "{}", my: "{}"}}
---
apiVersion: synqx.io/v1alpha1
kind: Connection
metadata: {{name: pg}}
spec:
  postgres:
    host: "{}"
    port: {}
    database: "{}"
    user: {{value: "{}"}}
    password: {{secretKeyRef: {{name: dbs, key: pg}}}}
"#,
        pg.password, my.password, pg.host, pg.port, pg.database, pg.user
    );
    if let Some(db) = mysql_database {
        docs.push_str(&format!(
            r#"---
apiVersion: synqx.io/v1alpha1
kind: Connection
metadata: {{name: my}}
spec:
  mysql:
    host: "{}"
    port: {}
    database: "{db}"
    user: {{value: "{}"}}
    password: {{secretKeyRef: {{name: dbs, key: my}}}}
    sslMode: disable
"#,
            my.host, my.port, my.user
        ));
    }
    if let Some(path) = lake {
        docs.push_str(&format!(
            r#"---
apiVersion: synqx.io/v1alpha1
kind: Connection
metadata: {{name: lake}}
spec:
  filesystem: {{path: "{}"}}
"#,
            path.display()
        ));
    }
    docs
}

/// Writes `pipeline.yaml` (the connections, then `pipeline`) into `dir`.
pub fn write_pipeline(dir: &Path, connections: &str, pipeline: &str) {
    std::fs::write(
        dir.join("pipeline.yaml"),
        format!("{connections}---\n{pipeline}"),
    )
    .unwrap_or_else(|e| panic!("{e}"));
}

/// `synqx ARGS` in `dir`, not started; without `KUBERNETES_SERVICE_HOST`, as on a workstation,
/// so that the tests run the same when they run in a pod.
pub fn synqx_command(dir: &Path, args: &[&str]) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_synqx"));
    cmd.args(args)
        .current_dir(dir)
        .env_remove("KUBERNETES_SERVICE_HOST");
    cmd
}

/// `synqx ARGS` in `dir`, to completion.
pub fn synqx(dir: &Path, args: &[&str]) -> Output {
    synqx_command(dir, args)
        .output()
        .unwrap_or_else(|e| panic!("cannot run synqx: {e}"))
}

/// `synqx ARGS` in `dir`, started and left running.
pub fn spawn_synqx(dir: &Path, args: &[&str]) -> Child {
    synqx_command(dir, args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run synqx: {e}"))
}

/// What a run printed, stdout then stderr.
pub fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// `synqx run pipeline.yaml --state state` in `dir`, which must succeed.
pub fn run_ok(dir: &Path, extra: &[&str]) -> String {
    let mut args = vec!["run", "pipeline.yaml", "--state", "state"];
    args.extend_from_slice(extra);
    let out = synqx(dir, &args);
    let t = text(&out);
    assert!(out.status.success(), "synqx run failed:\n{t}");
    t
}

/// `synqx run pipeline.yaml --state state` in `dir`, which must fail: what it printed.
pub fn run_failing(dir: &Path) -> String {
    let out = synqx(dir, &["run", "pipeline.yaml", "--state", "state"]);
    let t = text(&out);
    assert!(!out.status.success(), "synqx run succeeded:\n{t}");
    t
}

/// The watermark `synqx state show` prints for `pipeline/step`, None when there is none.
pub fn watermark(dir: &Path, pipeline: &str, step: &str) -> Option<String> {
    let out = synqx(dir, &["state", "show", "--state", "state"]);
    let t = text(&out);
    assert!(out.status.success(), "synqx state show failed:\n{t}");
    let key = format!("{pipeline}/{step}: ");
    t.lines()
        .filter_map(|l| l.trim_start().strip_prefix(&key))
        .map(|rest| rest.split("  (").next().unwrap_or(rest).trim().to_string())
        .next()
}
