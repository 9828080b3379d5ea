//! Compiling a Pipeline on the cluster: the objects go straight to the checks of
//! `synqx validate` ([`validate_objects`]) and then to the connectors' own checks of each
//! step (an FQN a database cannot name, a format a store cannot write, a statement a
//! connector refuses), so the problems read the same on the cluster as on a laptop, without
//! the file name, and a Pipeline a connector would refuse is Invalid before any run.

use std::collections::BTreeSet;

use kube::ResourceExt;
use synqx_api::dag::Plan;
use synqx_api::validate::{Problem, validate_objects};
use synqx_api::{Connection, Pipeline, Step};

/// Compiles `pipeline` with the namespace's Connections; returns the problems that concern
/// this Pipeline or a Connection it uses, each as `synqx validate` prints it.
pub fn compile(pipeline: &Pipeline, connections: &[Connection]) -> Result<Plan, Vec<String>> {
    let name = pipeline.name_any();
    let used: BTreeSet<&str> = pipeline
        .spec
        .steps
        .iter()
        .flat_map(Step::connections)
        .collect();
    let used_connections: Vec<Connection> = connections
        .iter()
        .filter(|c| used.contains(c.name_any().as_str()))
        .cloned()
        .collect();
    let mut report = validate_objects(&used_connections, std::slice::from_ref(pipeline));
    let mut connector_problems = synqx_runner::connectors::validate::problems(&report);
    report.problems.append(&mut connector_problems);
    let relevant = |p: &Problem| match p.resource.as_deref() {
        Some(resource) => {
            resource == format!("Pipeline/{name}")
                || resource
                    .strip_prefix("Connection/")
                    .is_some_and(|c| used.contains(c))
        }
        None => true,
    };
    let problems: Vec<String> = report
        .problems
        .iter()
        .filter(|p| relevant(p))
        .map(Problem::to_string)
        .collect();
    match report.plans.remove(&name) {
        Some(plan) if problems.is_empty() => Ok(plan),
        _ if problems.is_empty() => Err(vec![format!("Pipeline/{name}: could not be compiled")]),
        _ => Err(problems),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;
    use synqx_api::validate::{InputFile, validate};

    fn objects(yaml: &str) -> (Pipeline, Vec<Connection>) {
        let mut pipeline = None;
        let mut connections = Vec::new();
        for doc in serde_yaml::Deserializer::from_str(yaml) {
            let value = serde_yaml::Value::deserialize(doc).expect("yaml");
            match value.get("kind").and_then(|k| k.as_str()) {
                Some("Pipeline") => {
                    pipeline = Some(serde_yaml::from_value(value).expect("pipeline"))
                }
                Some("Connection") => {
                    connections.push(serde_yaml::from_value(value).expect("connection"))
                }
                _ => {}
            }
        }
        (pipeline.expect("a pipeline"), connections)
    }

    const CONNECTIONS: &str = r#"
apiVersion: synqx.io/v1alpha1
kind: Connection
metadata: {name: db, namespace: etl}
spec: {sqlite: {path: /tmp/db.sqlite}}
---
apiVersion: synqx.io/v1alpha1
kind: Connection
metadata: {name: broken, namespace: etl}
spec: {sqlite: {path: /tmp/x.sqlite}, filesystem: {path: /tmp}}
"#;

    fn with_pipeline(steps: &str) -> String {
        format!(
            "{CONNECTIONS}---\napiVersion: synqx.io/v1alpha1\nkind: Pipeline\nmetadata: {{name: p, namespace: etl}}\nspec:\n  steps:\n{steps}"
        )
    }

    #[test]
    fn a_valid_pipeline_compiles_and_an_unrelated_broken_connection_does_not_matter() {
        let yaml =
            with_pipeline("    - {name: a, sql: {connection: db, statements: [\"select 1\"]}}\n");
        let (pipeline, connections) = objects(&yaml);
        let plan = compile(&pipeline, &connections).expect("compiles");
        assert_eq!(plan.steps.len(), 1);
        assert!(plan.connections.contains_key("db"));
    }

    /// A namespace with none of the Pipeline's Connections yet (the Pipeline applied first):
    /// invalid, naming each missing one, never a plan without them.
    #[test]
    fn a_pipeline_whose_connections_are_all_missing_does_not_compile() {
        let yaml = with_pipeline(
            "    - {name: a, sql: {connection: db, statements: [\"select 1\"]}}\n    - {name: b, sql: {connection: lake, statements: [\"select 1\"]}}\n",
        );
        let (pipeline, _) = objects(&yaml);
        let problems = compile(&pipeline, &[])
            .expect_err("no Connections")
            .join("\n");
        assert!(
            problems.contains("step \"a\"")
                && problems.contains("connection \"db\" does not exist (connections: none)"),
            "{problems}"
        );
        assert!(
            problems.contains("step \"b\"")
                && problems.contains("connection \"lake\" does not exist"),
            "{problems}"
        );
    }

    #[test]
    fn problems_read_as_synqx_validate_prints_them_without_the_file() {
        let yaml = with_pipeline(
            "    - {name: a, dependsOn: [b], sql: {connection: db, statements: [\"select 1\"]}}\n    - {name: b, dependsOn: [a], sql: {connection: nowhere, statements: [\"select 1\"]}}\n    - {name: c, sql: {connection: broken, statements: [\"select 1\"]}}\n",
        );
        let (pipeline, connections) = objects(&yaml);
        let mut on_cluster = compile(&pipeline, &connections).expect_err("invalid");
        let files = validate(&[InputFile {
            name: "p.yaml",
            text: &yaml,
        }]);
        let mut from_files: Vec<String> = files
            .problems
            .iter()
            .map(|p| {
                let text = p.to_string();
                text.strip_prefix("p.yaml: ").unwrap_or(&text).to_string()
            })
            .collect();
        on_cluster.sort();
        from_files.sort();
        assert_eq!(on_cluster, from_files);
        let all = on_cluster.join("\n");
        assert!(all.contains("dependency cycle: a -> b -> a"), "{all}");
        assert!(all.contains("Pipeline/p: step \"b\""), "{all}");
        assert!(
            all.contains("connection \"nowhere\" does not exist"),
            "{all}"
        );
        assert!(
            all.contains("Connection/broken"),
            "a used Connection's problem: {all}"
        );
    }

    /// A step only its connector can judge (an FQN SQLite cannot name): Invalid on the
    /// cluster with the message `synqx validate` prints, before any run starts a pod.
    #[test]
    fn a_step_its_connector_refuses_does_not_compile_and_reads_as_synqx_validate() {
        let yaml = with_pipeline(
            "    - name: copy\n      sync:\n        source: {connection: db, asset: {fqn: other.orders}}\n        destination: {connection: db, asset: {fqn: orders_copy}}\n",
        );
        let (pipeline, connections) = objects(&yaml);
        let on_cluster = compile(&pipeline, &connections).expect_err("refused by sqlite");
        let mut files = validate(&[InputFile {
            name: "p.yaml",
            text: &yaml,
        }]);
        assert!(
            files
                .problems
                .iter()
                .all(|p| p.resource.as_deref() == Some("Connection/broken")),
            "the API's own checks pass this step: {:?}",
            files.problems
        );
        let connector = synqx_runner::connectors::validate::problems(&files);
        files.problems = connector;
        let from_files: Vec<String> = files
            .problems
            .iter()
            .map(|p| {
                let text = p.to_string();
                text.strip_prefix("p.yaml: ").unwrap_or(&text).to_string()
            })
            .collect();
        assert_eq!(on_cluster, from_files);
        assert_eq!(on_cluster.len(), 1, "{on_cluster:?}");
        assert!(
            on_cluster[0].contains("step \"copy\"")
                && on_cluster[0].contains("spec.steps[0].sync.source")
                && on_cluster[0].contains("asset \"other.orders\" is not a SQLite table"),
            "{on_cluster:?}"
        );
    }
}
