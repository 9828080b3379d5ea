//! The connectors' part of `synqx validate` (and of `synqx run`, before anything runs): every
//! Connection's block through its connector's `config`, and every step's source, destination
//! and statements through the connector of the Connection it names. No I/O, and no secret
//! values: references resolve to placeholders, since the values exist only where steps run.
//!
//! What the API's validation already reported is not checked again: a Connection or a step
//! with a problem of its own is skipped, and so is a step whose Connection has one.

use std::collections::BTreeSet;

use synqx_api::Pipeline;
use synqx_api::pipeline::Step;
use synqx_api::validate::{Doc, Problem, Report};

use super::{CONNECTORS, ConnectionRef, Usage};
use crate::secrets::Secrets;

/// The problems the connectors find in the documents of a report.
pub fn problems(report: &Report) -> Vec<Problem> {
    let secrets = Secrets::placeholders();
    let reported: BTreeSet<(Option<&str>, Option<&str>)> = report
        .problems
        .iter()
        .map(|p| (p.resource.as_deref(), p.step.as_deref()))
        .collect();
    let mut problems = Vec::new();
    let mut broken = BTreeSet::new();
    for doc in &report.bundle.connections {
        let name = name_of(&doc.object);
        let resource = format!("Connection/{name}");
        if reported.contains(&(Some(resource.as_str()), None)) {
            broken.insert(name.to_string());
            continue;
        }
        let conn = ConnectionRef::of_file(doc, &secrets);
        if let Err(e) = registered(&conn).map_or(Ok(()), |c| c.validate_connection(&conn)) {
            broken.insert(name.to_string());
            let prefix = format!("Connection \"{name}\": ");
            let message = e.to_string();
            problems.push(Problem {
                file: doc.file.clone(),
                resource: Some(resource),
                field: doc.object.spec.kind().map(|k| format!("spec.{k}")),
                message: message
                    .strip_prefix(&prefix)
                    .unwrap_or(&message)
                    .to_string(),
                ..Default::default()
            });
        }
    }
    for doc in &report.bundle.pipelines {
        let resource = format!("Pipeline/{}", name_of(&doc.object));
        if reported.contains(&(Some(resource.as_str()), None)) {
            continue;
        }
        for (i, step) in doc.object.spec.steps.iter().enumerate() {
            if reported.contains(&(Some(resource.as_str()), Some(step.name.as_str()))) {
                continue;
            }
            for (field, connection, usage) in usages(step) {
                if broken.contains(connection) {
                    continue;
                }
                let Some(conn_doc) = report
                    .bundle
                    .connections
                    .iter()
                    .find(|c| name_of(&c.object) == connection)
                else {
                    continue;
                };
                let conn = ConnectionRef::of_file(conn_doc, &secrets);
                let Some(connector) = registered(&conn) else {
                    continue;
                };
                if let Err(e) = connector.validate(&conn, usage) {
                    problems.push(step_problem(doc, &resource, step, i, field, e.to_string()));
                }
            }
        }
    }
    problems
}

/// The Connections a step uses, how, and the field that says so.
fn usages(step: &Step) -> Vec<(&'static str, &str, Usage<'_>)> {
    let mut out = Vec::new();
    if let Some(sync) = &step.sync {
        out.push((
            "sync.source",
            sync.source.connection.as_str(),
            Usage::Source(&sync.source),
        ));
        out.push((
            "sync.destination",
            sync.destination.connection.as_str(),
            Usage::Destination(&sync.destination),
        ));
    }
    if let Some(sql) = &step.sql {
        out.push(("sql", sql.connection.as_str(), Usage::Sql(&sql.statements)));
    }
    out
}

fn step_problem(
    doc: &Doc<Pipeline>,
    resource: &str,
    step: &Step,
    index: usize,
    field: &str,
    message: String,
) -> Problem {
    Problem {
        file: doc.file.clone(),
        resource: Some(resource.to_string()),
        step: Some(step.name.clone()),
        field: Some(format!("spec.steps[{index}].{field}")),
        message,
        ..Default::default()
    }
}

/// The connector of a Connection; `None` for a kind this version has no connector for (such
/// a Connection validates, and `synqx check` reports it Unsupported).
fn registered(conn: &ConnectionRef<'_>) -> Option<&'static dyn super::Registered> {
    let kind = conn.spec.kind()?;
    CONNECTORS.iter().copied().find(|c| c.kind() == kind)
}

fn name_of<K: kube::Resource>(object: &K) -> &str {
    object.meta().name.as_deref().unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use synqx_api::validate::{InputFile, validate};

    use super::*;

    const FILES: &str = r#"
apiVersion: synqx.io/v1alpha1
kind: Connection
metadata: {name: lake}
spec:
  s3: {bucket: lake, prefix: "a/../b", accessKeyId: {secretKeyRef: {name: s3, key: id}}, secretAccessKey: {secretKeyRef: {name: s3, key: key}}}
---
apiVersion: synqx.io/v1alpha1
kind: Connection
metadata: {name: pg}
spec:
  postgres: {host: db, database: sales, user: {value: etl}, password: {secretKeyRef: {name: pg, key: password}}}
---
apiVersion: synqx.io/v1alpha1
kind: Connection
metadata: {name: files}
spec:
  filesystem: {path: data}
---
apiVersion: synqx.io/v1alpha1
kind: Connection
metadata: {name: local}
spec:
  sqlite: {path: local.db}
---
apiVersion: synqx.io/v1alpha1
kind: Pipeline
metadata: {name: orders}
spec:
  steps:
    - name: extract
      sync:
        source: {connection: pg, asset: {fqn: a.b.c}}
        destination: {connection: local, asset: {fqn: other.orders}}
    - name: archive
      sync:
        source: {connection: files, asset: {fqn: "../secrets/*.csv"}}
        destination: {connection: lake, asset: {fqn: orders/}, format: parquet}
    - name: fine
      sync:
        source: {connection: files, asset: {fqn: in/orders.csv}}
        destination: {connection: pg, asset: {fqn: public.orders}}
"#;

    #[test]
    fn connector_mistakes_are_reported_before_a_run_without_secret_values() {
        let report = validate(&[InputFile {
            name: "p.yaml",
            text: FILES,
        }]);
        assert!(report.problems.is_empty(), "{:?}", report.problems);
        let shown: Vec<String> = problems(&report).iter().map(|p| p.to_string()).collect();
        assert_eq!(
            shown,
            [
                "p.yaml: Connection/lake: spec.s3: s3.prefix `a/../b` may not contain `.` or `..`",
                "p.yaml: Pipeline/orders: step \"extract\": spec.steps[0].sync.source: Connection \"pg\": asset \"a.b.c\" has 3 parts; write `table` or `schema.table` (the database is the Connection's)",
                "p.yaml: Pipeline/orders: step \"extract\": spec.steps[0].sync.destination: Connection \"local\": asset \"other.orders\" is not a SQLite table (write `table` or `main.table`)",
                "p.yaml: Pipeline/orders: step \"archive\": spec.steps[1].sync.source: Connection \"files\": asset fqn `../secrets/*.csv` must stay below the connection's path (no `..`)",
            ]
        );
    }
}
