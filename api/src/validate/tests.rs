use super::*;

fn run(text: &str) -> Report {
    validate(&[InputFile {
        name: "test.yaml",
        text,
    }])
}

fn messages(text: &str) -> Vec<String> {
    run(text).problems.iter().map(ToString::to_string).collect()
}

const DB: &str = "apiVersion: synqx.io/v1alpha1\nkind: Connection\nmetadata: {name: db}\nspec:\n  sqlite: {path: a.db}\n---\n";

#[test]
fn a_valid_bundle_compiles() {
    let report = run(&format!(
        "{DB}apiVersion: synqx.io/v1alpha1\nkind: Pipeline\nmetadata: {{name: p}}\nspec:\n  steps:\n  - name: a\n    sql: {{connection: db, statements: [x]}}\n"
    ));
    assert!(report.is_valid(), "{:?}", report.problems);
    let plan = &report.plans["p"];
    assert_eq!(plan.layers, vec![vec!["a".to_string()]]);
    assert!(plan.connections.contains_key("db"));
}

#[test]
fn every_unknown_field_is_reported_with_its_path_and_step() {
    let found = messages(&format!(
        "{DB}apiVersion: synqx.io/v1alpha1\nkind: Pipeline\nmetadata: {{name: p, labls: {{}}}}\nspec:\n  stpes: []\n  steps:\n  - name: a\n    sql: {{connection: db, statements: [x], statment: y}}\n"
    ));
    assert!(
        found
            .iter()
            .any(|m| m.contains("Pipeline/p: metadata: unknown field \"labls\"")),
        "{found:?}"
    );
    assert!(
        found
            .iter()
            .any(|m| m
                .contains("Pipeline/p: spec: unknown field \"stpes\" (did you mean \"steps\"?)")),
        "{found:?}"
    );
    assert!(found.iter().any(|m| m.contains("step \"a\": spec.steps[0].sql: unknown field \"statment\" (did you mean \"statements\"?)")), "{found:?}");
}

#[test]
fn references_are_only_checked_against_documents_given() {
    // No Connection in the files: references may resolve in the cluster.
    let report = run(
        "apiVersion: synqx.io/v1alpha1\nkind: Pipeline\nmetadata: {name: p}\nspec:\n  steps:\n  - name: a\n    sql: {connection: elsewhere, statements: [x]}\n",
    );
    assert!(report.is_valid(), "{:?}", report.problems);
}

#[test]
fn secret_keys_are_checked_when_the_secret_is_given() {
    let conn = "apiVersion: synqx.io/v1alpha1\nkind: Connection\nmetadata: {name: pg}\nspec:\n  postgres: {host: h, database: d, user: {value: u}, password: {secretKeyRef: {name: s, key: pw}}}\n";
    assert!(run(conn).is_valid());
    let with_secret = format!(
        "apiVersion: v1\nkind: Secret\nmetadata: {{name: s}}\ndata: {{password: cHc=}}\n---\n{conn}"
    );
    assert_eq!(
        messages(&with_secret),
        vec![
            "test.yaml: Connection/pg: spec.postgres.password: Secret \"s\" has no key \"pw\" (keys: password)"
        ]
    );
}

#[test]
fn syntax_errors_carry_line_and_column() {
    let report = run("kind: Pipeline\nmetadata: [unclosed\n");
    assert_eq!(report.problems.len(), 1);
    assert_eq!(report.problems[0].position.map(|p| p.0), Some(3));
    assert!(report.problems[0].message.starts_with("YAML syntax error"));
}

#[test]
fn non_mapping_documents_are_rejected() {
    assert_eq!(
        messages("- just\n- a list\n"),
        vec![
            "test.yaml: document 1 is not a mapping (expected a Kubernetes resource with apiVersion, kind and metadata)"
        ]
    );
}

#[test]
fn references_to_unreadable_documents_are_not_reported_twice() {
    let found = messages(&format!(
        "{DB}apiVersion: synqx.io/v1alpha1\nkind: Connection\nmetadata: {{name: broken}}\nspec:\n  sqlite: 3\n---\napiVersion: synqx.io/v1alpha1\nkind: Pipeline\nmetadata: {{name: p}}\nspec:\n  steps:\n  - name: a\n    sql: {{connection: broken, statements: [x]}}\n"
    ));
    assert_eq!(found.len(), 1, "{found:?}");
    assert!(
        found[0].contains("Connection/broken: spec.sqlite: invalid type"),
        "{found:?}"
    );
}

#[test]
fn truncated_input_never_panics() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples");
    let mut files: Vec<std::path::PathBuf> = std::fs::read_dir(&dir)
        .into_iter()
        .flatten()
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "yaml"))
        .collect();
    files.sort();
    assert!(files.len() >= 3);
    for path in files {
        let text = std::fs::read_to_string(&path).unwrap_or_default();
        for cut in (0..text.len())
            .step_by(13)
            .filter(|c| text.is_char_boundary(*c))
        {
            let _ = run(&text[..cut]);
        }
    }
}

#[test]
fn rejects_are_a_destination_of_their_own_only_appended_to() {
    let lake = "apiVersion: synqx.io/v1alpha1\nkind: Connection\nmetadata: {name: lake}\nspec:\n  filesystem: {path: /lake}\n---\n";
    let pipeline = |rejects: &str| {
        format!(
            "{DB}{lake}apiVersion: synqx.io/v1alpha1\nkind: Pipeline\nmetadata: {{name: p}}\nspec:\n  steps:\n  - name: load\n    sync:\n      source: {{connection: db, asset: {{fqn: orders}}}}\n      destination: {{connection: lake, asset: {{fqn: orders/}}, format: parquet}}\n      rejects: {rejects}\n"
        )
    };
    let fine = run(&pipeline(
        "{connection: lake, asset: {fqn: rejected/orders/}, format: jsonl}",
    ));
    assert!(fine.is_valid(), "{:?}", fine.problems);
    assert_eq!(fine.plans["p"].connections.len(), 2);
    for (rejects, problem) in [
        (
            "{connection: lake, asset: {fqn: rejected/}, mode: overwrite, format: jsonl}",
            "step \"load\": sync.rejects.mode: rejected rows are only ever appended: remove mode, or set it to append",
        ),
        (
            "{connection: lake, asset: {fqn: orders/}, format: jsonl}",
            "step \"load\": sync.rejects.asset.fqn: \"orders/\" on Connection \"lake\" is the step's destination: keep rejected rows in an asset of their own",
        ),
        (
            "{connection: lake, asset: {fqn: rejected/}}",
            "step \"load\": sync.rejects.format: destination asset \"rejected/\" on filesystem Connection \"lake\" needs a format",
        ),
        (
            "{connection: db, asset: {fqn: rejected}, format: jsonl}",
            "step \"load\": sync.rejects.format: applies only to files; \"db\" is a sqlite Connection",
        ),
        (
            "{connection: nowhere, asset: {fqn: rejected}}",
            "rejects connection \"nowhere\" does not exist (connections: db, lake)",
        ),
    ] {
        let found = messages(&pipeline(rejects));
        assert!(
            found.iter().any(|m| m.contains(problem)),
            "{problem}\nnot in {found:?}"
        );
    }
}
