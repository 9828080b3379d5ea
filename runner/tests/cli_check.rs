//! `synqx check`: Connections from files checked here, one line each, and the cluster mode's
//! report in the termination message when the cluster cannot be reached.

use std::path::Path;
use std::process::{Command, Output};

use synqx_api::connection::CheckReport;

fn synqx(dir: &Path, args: &[&str], env: &[(&str, &str)]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_synqx"))
        .args(args)
        .current_dir(dir)
        .envs(env.iter().copied())
        .env_remove("KUBERNETES_SERVICE_HOST")
        .env_remove("POD_NAMESPACE")
        .output()
        .unwrap_or_else(|e| panic!("cannot run synqx: {e}"))
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).to_string()
}

const CONNECTIONS: &str = r#"
apiVersion: v1
kind: Secret
metadata: {name: lake-keys}
stringData: {id: AKIDCHECKME, secret: check-me-secret}
---
apiVersion: synqx.io/v1alpha1
kind: Connection
metadata: {name: inbox}
spec:
  filesystem: {path: ./data/inbox}
---
apiVersion: synqx.io/v1alpha1
kind: Connection
metadata: {name: local-db}
spec:
  sqlite: {path: ./data/local.db}
---
apiVersion: synqx.io/v1alpha1
kind: Connection
metadata: {name: archive}
spec:
  sqlite: {path: ./no/such/folder/archive.db}
---
apiVersion: synqx.io/v1alpha1
kind: Connection
metadata: {name: warehouse}
spec:
  postgres:
    host: pg.data.svc
    database: app
    user: {value: etl}
---
apiVersion: synqx.io/v1alpha1
kind: Connection
metadata: {name: lake}
spec:
  s3:
    bucket: orders
    endpoint: http://127.0.0.1:9
    accessKeyId: {secretKeyRef: {name: lake-keys, key: id}}
    secretAccessKey: {secretKeyRef: {name: vault-keys, key: secret}}
"#;

/// A folder with `connections.yaml` and the `data/inbox` directory it names.
fn project() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    std::fs::create_dir_all(dir.path().join("data/inbox")).unwrap_or_else(|e| panic!("{e}"));
    std::fs::write(dir.path().join("connections.yaml"), CONNECTIONS)
        .unwrap_or_else(|e| panic!("{e}"));
    dir
}

#[test]
fn every_connection_of_the_files_gets_one_line() {
    let dir = project();
    let out = synqx(dir.path(), &["check", "connections.yaml"], &[]);
    let stdout = text(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}{}", text(&out.stderr));
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), 5, "{stdout}");
    assert_eq!(
        lines[0],
        "connections.yaml: Connection/inbox: OK: directory ./data/inbox exists and can be listed (empty)"
    );
    assert_eq!(
        lines[1],
        "connections.yaml: Connection/local-db: OK: database file ./data/local.db does not exist yet: it will be created on the first write (its folder exists)"
    );
    assert!(
        lines[2].starts_with(
            "connections.yaml: Connection/archive: NotFound: folder ./no/such/folder of database file"
        ),
        "{stdout}"
    );
    assert!(
        lines[3].starts_with(
            "connections.yaml: Connection/warehouse: Unreachable: cannot resolve host \"pg.data.svc\""
        ) && lines[3].contains("fix postgres.host"),
        "{stdout}"
    );
    assert!(
        lines[4].starts_with(
            "connections.yaml: Connection/lake: Invalid: s3.secretAccessKey: secret key \"secret\" of Secret \"vault-keys\" is missing"
        ) && lines[4].contains("export SYNQX_SECRET_VAULT_KEYS__SECRET"),
        "{stdout}"
    );
    assert!(!stdout.contains("AKIDCHECKME"), "{stdout}");
    assert!(!stdout.contains("check-me-secret"), "{stdout}");
    assert!(
        !dir.path().join("data/local.db").exists(),
        "the check wrote the database"
    );
}

#[test]
fn one_connection_can_be_chosen() {
    let dir = project();
    let out = synqx(dir.path(), &["check", ".", "--connection", "inbox"], &[]);
    let stdout = text(&out.stdout);
    assert!(out.status.success(), "{stdout}{}", text(&out.stderr));
    assert!(
        stdout.starts_with("./connections.yaml: Connection/inbox: OK: directory ")
            && stdout.ends_with("/data/inbox exists and can be listed (empty)\n")
            && stdout.lines().count() == 1,
        "{stdout}"
    );
    let out = synqx(
        dir.path(),
        &["check", "connections.yaml", "--connection", "nope"],
        &[],
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains(
            "no Connection \"nope\" in the files (connections: inbox, local-db, archive, warehouse, lake)"
        ),
        "{}",
        text(&out.stderr)
    );
    // With the missing key exported, the bucket is tried: nothing listens there.
    let out = synqx(
        dir.path(),
        &["check", "connections.yaml", "--connection", "lake"],
        &[("SYNQX_SECRET_VAULT_KEYS__SECRET", "exported-secret")],
    );
    let stdout = text(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}{}", text(&out.stderr));
    assert!(
        stdout
            .starts_with("connections.yaml: Connection/lake: Unreachable: listing s3://orders/: "),
        "{stdout}"
    );
    for secret in ["AKIDCHECKME", "exported-secret"] {
        assert!(!stdout.contains(secret), "{stdout}");
    }
}

#[test]
fn without_a_cluster_the_report_says_unreachable() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let termination = dir.path().join("termination-log");
    let missing = dir.path().join("no-kubeconfig");
    let out = synqx(
        dir.path(),
        &["check", "--namespace", "data", "--connection", "lake"],
        &[
            ("KUBECONFIG", &missing.display().to_string()),
            (
                "SYNQX_TERMINATION_MESSAGE_PATH",
                &termination.display().to_string(),
            ),
        ],
    );
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.starts_with(
            "synqx check: Connection \"data/lake\": Unreachable: cannot reach the Kubernetes API"
        ),
        "{stderr}"
    );
    let json = std::fs::read_to_string(&termination).unwrap_or_else(|e| panic!("{e}"));
    let report: CheckReport = serde_json::from_str(&json).unwrap_or_else(|e| panic!("{e}: {json}"));
    assert!(!report.ready);
    assert_eq!(report.reason.as_str(), "Unreachable");
    assert!(
        report
            .message
            .starts_with("Connection \"lake\": cannot reach the Kubernetes API"),
        "{json}"
    );
}
