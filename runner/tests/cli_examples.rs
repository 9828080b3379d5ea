//! The CLI against the checked-in examples: valid ones pass, every invalid one fails with the
//! error text written in its `# expect:` lines, graphs render and `synqx crd` matches `crds/`.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn synqx(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_synqx"))
        .args(args)
        .current_dir(root())
        .output()
        .unwrap_or_else(|e| panic!("cannot run synqx: {e}"))
}

fn yaml_files(dir: &str) -> Vec<String> {
    let mut files: Vec<String> = std::fs::read_dir(root().join(dir))
        .unwrap_or_else(|e| panic!("{dir}: {e}"))
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().to_string())
        .filter(|n| n.ends_with(".yaml"))
        .map(|n| format!("{dir}/{n}"))
        .collect();
    files.sort();
    files
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).to_string()
}

#[test]
fn valid_examples_validate() {
    let files = yaml_files("examples");
    assert!(
        files.len() >= 3,
        "expected at least three examples, found {files:?}"
    );
    let mut args = vec!["validate"];
    args.extend(files.iter().map(String::as_str));
    let out = synqx(&args);
    let stdout = text(&out.stdout);
    assert!(
        out.status.success(),
        "stdout:\n{stdout}\nstderr:\n{}",
        text(&out.stderr)
    );
    for file in &files {
        assert!(
            stdout.contains(&format!("{file}: Pipeline/")),
            "{file} has no pipeline line:\n{stdout}"
        );
    }
    assert!(stdout.contains("plan "), "{stdout}");
}

#[test]
fn the_quickstart_validates() {
    let out = synqx(&["validate", "examples/quickstart/pipeline.yaml"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(
        text(&out.stdout).contains("Pipeline/quickstart: 4 steps, 3 edges, 3 layers"),
        "{}",
        text(&out.stdout)
    );
}

#[test]
fn the_examples_use_every_connector_type() {
    let all =
        std::fs::read_to_string(root().join("examples/all-connectors.yaml")).unwrap_or_default();
    for block in synqx_api::ConnectorKind::ALL {
        assert!(
            all.contains(&format!("\n  {}:", block.block_name())),
            "no {block} Connection in all-connectors.yaml"
        );
    }
}

#[test]
fn every_invalid_example_fails_with_its_expected_text() {
    fails_with_expected_text("examples/invalid", 20);
}

/// What someone who may only write Pipelines and Connections in a namespace would try: huge
/// numbers in every count and duration, names that collide or climb out, statements in a
/// `sql` transform, files outside a Connection's folder, deep nesting. Each is refused with
/// its own message; none panics. `tests/tests/operator_hostile.rs` applies the same files to a
/// cluster.
#[test]
fn every_hostile_pipeline_is_refused_with_its_expected_text() {
    fails_with_expected_text("tests/hostile", 30);
}

/// Every file of `dir` fails `synqx validate` with exactly the problems of its `# expect:`
/// lines.
fn fails_with_expected_text(dir: &str, at_least: usize) {
    let files = yaml_files(dir);
    assert!(
        files.len() >= at_least,
        "expected at least {at_least} files in {dir}, found {}",
        files.len()
    );
    for file in files {
        let source = std::fs::read_to_string(root().join(&file)).unwrap_or_default();
        let expected: Vec<&str> = source
            .lines()
            .filter_map(|l| l.strip_prefix("# expect: "))
            .collect();
        assert!(!expected.is_empty(), "{file} has no `# expect:` line");
        let out = synqx(&["validate", &file]);
        let stderr = text(&out.stderr);
        assert_eq!(
            out.status.code(),
            Some(1),
            "{file} did not fail:\n{}{stderr}",
            text(&out.stdout)
        );
        assert!(!stderr.contains("panicked"), "{file} panicked:\n{stderr}");
        for line in expected {
            assert!(
                stderr.contains(line),
                "{file}: expected\n  {line}\nin\n{stderr}"
            );
        }
        let reported = stderr.lines().filter(|l| l.starts_with(&file)).count();
        assert_eq!(
            reported,
            source
                .lines()
                .filter(|l| l.starts_with("# expect: "))
                .count(),
            "{file}: unexpected extra problems:\n{stderr}"
        );
    }
}

#[test]
fn graphs_render_in_every_format_with_layers() {
    for file in yaml_files("examples") {
        let text_out = synqx(&["graph", &file, "--format", "text"]);
        assert!(
            text_out.status.success(),
            "{file}: {}",
            text(&text_out.stderr)
        );
        assert!(text(&text_out.stdout).contains("layer 0\n"), "{file}");
        let dot = synqx(&["graph", &file, "--format", "dot"]);
        assert!(
            text(&dot.stdout).contains("subgraph cluster_layer_0"),
            "{file}"
        );
        let mermaid = synqx(&["graph", &file, "--format", "mermaid"]);
        assert!(
            text(&mermaid.stdout).contains("flowchart LR")
                && text(&mermaid.stdout).contains("layer 0"),
            "{file}"
        );
    }
}

#[test]
fn graph_asks_which_pipeline_when_there_are_several() {
    let out = synqx(&["graph", "examples/orders.yaml", "examples/local-files.yaml"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("choose one with --pipeline (inbox-to-sqlite, orders)"),
        "{}",
        text(&out.stderr)
    );
    let out = synqx(&[
        "graph",
        "examples/orders.yaml",
        "examples/local-files.yaml",
        "--pipeline",
        "orders",
    ]);
    assert!(out.status.success());
    let out = synqx(&["graph", "examples/orders.yaml", "--pipeline", "nope"]);
    assert!(text(&out.stderr).contains("no Pipeline named \"nope\""));
}

#[test]
fn crd_output_matches_the_checked_in_crds() {
    let out = synqx(&["crd"]);
    assert!(out.status.success());
    let mut expected = String::new();
    for crd in synqx_api::crd::all() {
        let file = root().join("crds").join(synqx_api::crd::file_name(&crd));
        expected.push_str("---\n");
        expected.push_str(
            &std::fs::read_to_string(&file).unwrap_or_else(|e| panic!("{}: {e}", file.display())),
        );
    }
    assert!(
        text(&out.stdout) == expected,
        "synqx crd differs from crds/: regenerate with `synqx crd --dir crds`"
    );
}

#[test]
fn missing_files_are_reported() {
    let out = synqx(&["validate", "examples/does-not-exist.yaml"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("examples/does-not-exist.yaml: cannot read"),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn version_is_printed() {
    let out = synqx(&["--version"]);
    assert!(text(&out.stdout).starts_with(&format!("synqx {}", env!("CARGO_PKG_VERSION"))));
}
