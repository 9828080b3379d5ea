//! Compiling a Pipeline on the cluster: the objects go straight to the checks of
//! `synqx validate` ([`validate_objects`]) and then to the connectors' own checks of each
//! step (an FQN a database cannot name, a format a store cannot write, a statement a
//! connector refuses), so the problems read the same on the cluster as on a laptop, without
//! the file name, and a Pipeline a connector would refuse is Invalid before any run.

use kube::ResourceExt;
use synqx_api::dag::Plan;
use synqx_api::validate::{Problem, validate_objects};
use synqx_api::{Connection, Pipeline};

use crate::context::Settings;

/// Compiles `pipeline` with the namespace's Connections; returns the problems that concern
/// this Pipeline or a Connection it uses, each as `synqx validate` prints it.
pub fn compile(pipeline: &Pipeline, connections: &[Connection]) -> Result<Plan, Vec<String>> {
    let name = pipeline.name_any();
    let used = pipeline.spec.connections();
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

/// Compiles `pipeline` ([`compile`]) and holds it to this operator's policy: the plan, or
/// every problem either found.
pub fn admit(
    pipeline: &Pipeline,
    connections: &[Connection],
    settings: &Settings,
) -> Result<Plan, Vec<String>> {
    let plan = compile(pipeline, connections)?;
    let mut problems = runner_policy(pipeline, settings);
    problems.extend(
        keyring_policy(pipeline, &plan, &settings.runner_image)
            .err()
            .into_iter()
            .flatten(),
    );
    if problems.is_empty() {
        Ok(plan)
    } else {
        Err(problems)
    }
}

/// What this operator allows in `spec.runner` besides what `synqx validate` checks: its
/// runner images, service accounts and `hostPath` volumes ([`crate::policy`]).
fn runner_policy(pipeline: &Pipeline, settings: &Settings) -> Vec<String> {
    crate::policy::runner_problems(
        &pipeline.name_any(),
        pipeline.spec.runner.as_ref(),
        &settings.runner_image,
        &settings.policy,
        settings.pods.allow_host_path,
    )
}

/// The namespace's vault keyring goes only into pods that run the operator's runner image:
/// an image of the Pipeline's own choosing could read it and open every sealed value of the
/// namespace.
fn keyring_policy(
    pipeline: &Pipeline,
    plan: &Plan,
    runner_image: &str,
) -> std::result::Result<(), Vec<String>> {
    let Some(image) = pipeline
        .spec
        .runner
        .as_ref()
        .and_then(|r| r.image.as_deref())
        .filter(|image| *image != runner_image)
    else {
        return Ok(());
    };
    let sealed: Vec<&str> = plan
        .connections
        .iter()
        .filter(|(_, spec)| crate::vault::needs_keyring(spec))
        .map(|(name, _)| name.as_str())
        .collect();
    if sealed.is_empty() {
        return Ok(());
    }
    Err(vec![format!(
        "Pipeline/{}: spec.runner.image: \"{image}\" cannot open sealed values: only the operator's runner image ({runner_image}) receives the namespace's vault keyring, and Connection {} holds sealed values; remove spec.runner.image, or use secretKeyRef for these Connections",
        pipeline.name_any(),
        sealed
            .iter()
            .map(|n| format!("\"{n}\""))
            .collect::<Vec<_>>()
            .join(", ")
    )])
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;
    use synqx_api::validate::{InputFile, Report, validate};

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

    /// The problems `synqx validate` prints for the file `p.yaml`, without the file's name.
    fn without_file(files: &Report) -> Vec<String> {
        files
            .problems
            .iter()
            .map(|p| {
                let text = p.to_string();
                text.strip_prefix("p.yaml: ").unwrap_or(&text).to_string()
            })
            .collect()
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
        let mut from_files = without_file(&files);
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
        assert_eq!(on_cluster, without_file(&files));
        assert_eq!(on_cluster.len(), 1, "{on_cluster:?}");
        assert!(
            on_cluster[0].contains("step \"copy\"")
                && on_cluster[0].contains("spec.steps[0].sync.source")
                && on_cluster[0].contains("asset \"other.orders\" is not a SQLite table"),
            "{on_cluster:?}"
        );
    }

    const OPERATOR_IMAGE: &str = "ghcr.io/synqx/synqx:0.1.0";

    fn keyring_problems(password: &str, image: &str) -> Result<(), Vec<String>> {
        let yaml = format!(
            "apiVersion: synqx.io/v1alpha1\nkind: Connection\nmetadata: {{name: db, namespace: etl}}\nspec:\n  postgres: {{host: h, database: d, user: {{value: u}}, password: {password}}}\n---\n\
             apiVersion: synqx.io/v1alpha1\nkind: Pipeline\nmetadata: {{name: p, namespace: etl}}\nspec:\n  runner: {{image: \"{image}\"}}\n  steps:\n    - {{name: a, sql: {{connection: db, statements: [\"select 1\"]}}}}\n"
        );
        let report = validate(&[InputFile {
            name: "p.yaml",
            text: &yaml,
        }]);
        assert!(report.is_valid(), "{:?}", report.problems);
        let pipeline = &report.bundle.pipelines[0].object;
        keyring_policy(pipeline, &report.plans["p"], OPERATOR_IMAGE)
    }

    #[test]
    fn only_the_operators_runner_image_may_open_sealed_values() {
        let sealed = "{sealed: \"sqx1:k1:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA:BBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBB\"}";
        let problems = keyring_problems(sealed, "attacker.example/dump:1").unwrap_err();
        assert_eq!(
            problems,
            vec![format!(
                "Pipeline/p: spec.runner.image: \"attacker.example/dump:1\" cannot open sealed values: only the operator's runner image ({OPERATOR_IMAGE}) receives the namespace's vault keyring, and Connection \"db\" holds sealed values; remove spec.runner.image, or use secretKeyRef for these Connections"
            )]
        );
        assert_eq!(keyring_problems(sealed, OPERATOR_IMAGE), Ok(()));
        let referenced = "{secretKeyRef: {name: s, key: k}}";
        assert_eq!(
            keyring_problems(referenced, "attacker.example/dump:1"),
            Ok(())
        );
    }
}
