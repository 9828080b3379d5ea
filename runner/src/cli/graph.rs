//! `synqx graph`: a pipeline's DAG as text, Graphviz DOT or Mermaid, layers visible in each.

use std::fmt::Write as _;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::bail;
use synqx_api::Step;
use synqx_api::dag::{EdgeKind, Plan};

use super::GraphFormat;
use super::files::load_and_validate;

pub fn run(
    paths: &[PathBuf],
    pipeline: Option<&str>,
    format: GraphFormat,
) -> anyhow::Result<ExitCode> {
    let (report, _) = load_and_validate(paths);
    if !report.is_valid() {
        for problem in &report.problems {
            eprintln!("{problem}");
        }
        eprintln!("fix these problems first (synqx validate shows the same list)");
        return Ok(ExitCode::FAILURE);
    }
    let names: Vec<&String> = report.plans.keys().collect();
    let name = match (pipeline, names.as_slice()) {
        (Some(p), _) if report.plans.contains_key(p) => p.to_string(),
        (Some(p), _) => bail!(
            "no Pipeline named \"{p}\" in the files (pipelines: {})",
            join(&names)
        ),
        (None, [one]) => one.to_string(),
        (None, []) => bail!("the files hold no Pipeline"),
        (None, _) => bail!(
            "the files hold several pipelines: choose one with --pipeline ({})",
            join(&names)
        ),
    };
    let plan = &report.plans[&name];
    let out = match format {
        GraphFormat::Text => text(&name, plan),
        GraphFormat::Dot => dot(&name, plan),
        GraphFormat::Mermaid => mermaid(&name, plan),
    };
    print!("{out}");
    Ok(ExitCode::SUCCESS)
}

fn join(names: &[&String]) -> String {
    names
        .iter()
        .map(|s| s.as_str())
        .collect::<Vec<_>>()
        .join(", ")
}

/// What a step does, in one line: `warehouse:public.orders -> lake:raw/orders/`.
fn describe(step: &Step) -> String {
    match (&step.sync, &step.sql) {
        (Some(s), _) => format!(
            "{}:{} -> {}:{}",
            s.source.connection,
            s.source.asset.fqn,
            s.destination.connection,
            s.destination.asset.fqn
        ),
        (None, Some(q)) => {
            let n = q.statements.len();
            format!(
                "sql on {} ({n} statement{})",
                q.connection,
                if n == 1 { "" } else { "s" }
            )
        }
        (None, None) => String::new(),
    }
}

/// What the step named `step_name` does: empty for a name the plan does not hold.
fn describe_named(plan: &Plan, step_name: &str) -> String {
    plan.step(step_name)
        .map(|s| describe(&s.step))
        .unwrap_or_default()
}

fn edge_label(kind: &EdgeKind) -> String {
    match kind {
        EdgeKind::DependsOn => "dependsOn".to_string(),
        EdgeKind::Lineage { connection, fqn } => format!("lineage {connection}:{fqn}"),
    }
}

pub fn text(name: &str, plan: &Plan) -> String {
    let mut out = format!(
        "Pipeline {name} (plan {}): {} steps, {} edges, {} layers\n",
        plan.short_hash(),
        plan.steps.len(),
        plan.edges.len(),
        plan.layers.len()
    );
    let width = plan
        .steps
        .iter()
        .map(|s| s.step.name.len())
        .max()
        .unwrap_or(0);
    for (i, layer) in plan.layers.iter().enumerate() {
        let _ = writeln!(out, "layer {i}");
        for step_name in layer {
            let Some(planned) = plan.step(step_name) else {
                continue;
            };
            let _ = writeln!(out, "  {step_name:<width$}  {}", describe(&planned.step));
            for e in plan.edges.iter().filter(|e| &e.to == step_name) {
                let _ = writeln!(
                    out,
                    "  {:<width$}    <- {} ({})",
                    "",
                    e.from,
                    edge_label(&e.kind)
                );
            }
        }
    }
    let _ = writeln!(out, "critical path: {}", plan.critical_path.join(" -> "));
    out
}

fn dot_escape(s: &str) -> String {
    s.replace('\\', "\\\\").replace('"', "\\\"")
}

pub fn dot(name: &str, plan: &Plan) -> String {
    let mut out = format!(
        "digraph \"{}\" {{\n  rankdir=LR;\n  node [shape=box, style=rounded];\n",
        dot_escape(name)
    );
    for (i, layer) in plan.layers.iter().enumerate() {
        let _ = writeln!(
            out,
            "  subgraph cluster_layer_{i} {{\n    label=\"layer {i}\";\n    style=dashed;"
        );
        for step_name in layer {
            let _ = writeln!(
                out,
                "    \"{0}\" [label=\"{0}\\n{1}\"];",
                dot_escape(step_name),
                dot_escape(&describe_named(plan, step_name))
            );
        }
        out.push_str("  }\n");
    }
    for e in &plan.edges {
        let style = match e.kind {
            EdgeKind::DependsOn => "solid",
            EdgeKind::Lineage { .. } => "dashed",
        };
        let _ = writeln!(
            out,
            "  \"{}\" -> \"{}\" [style={style}, tooltip=\"{}\"];",
            dot_escape(&e.from),
            dot_escape(&e.to),
            dot_escape(&edge_label(&e.kind))
        );
    }
    out.push_str("}\n");
    out
}

fn mermaid_escape(s: &str) -> String {
    s.replace('"', "#quot;")
}

pub fn mermaid(name: &str, plan: &Plan) -> String {
    // Mermaid ids are kept to `s<N>` so step names never clash with its syntax.
    let id = |step: &str| {
        plan.steps
            .iter()
            .position(|s| s.step.name == step)
            .map(|i| format!("s{i}"))
            .unwrap_or_default()
    };
    let mut out = format!("---\ntitle: {}\n---\nflowchart LR\n", mermaid_escape(name));
    for (i, layer) in plan.layers.iter().enumerate() {
        let _ = writeln!(out, "  subgraph layer{i}[\"layer {i}\"]");
        for step_name in layer {
            let _ = writeln!(
                out,
                "    {}[\"{}<br/><small>{}</small>\"]",
                id(step_name),
                mermaid_escape(step_name),
                mermaid_escape(&describe_named(plan, step_name))
            );
        }
        out.push_str("  end\n");
    }
    for e in &plan.edges {
        let arrow = match e.kind {
            EdgeKind::DependsOn => "-->",
            EdgeKind::Lineage { .. } => "-.->",
        };
        let _ = writeln!(out, "  {} {arrow} {}", id(&e.from), id(&e.to));
    }
    out
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use synqx_api::dag::compile;
    use synqx_api::pipeline::{PipelineSpec, SqlStep};

    use super::*;

    fn plan() -> Plan {
        let step = |name: &str, deps: &[&str]| Step {
            name: name.into(),
            depends_on: deps.iter().map(|d| d.to_string()).collect(),
            sql: Some(SqlStep {
                connection: "db".into(),
                statements: vec!["select 1".into()],
            }),
            ..Default::default()
        };
        let spec = PipelineSpec {
            steps: vec![step("a", &[]), step("b", &["a"]), step("c", &[])],
            ..Default::default()
        };
        compile(&spec, &BTreeMap::new()).unwrap_or_else(|e| panic!("{e:?}"))
    }

    #[test]
    fn text_lists_layers_and_edges() {
        let out = text("p", &plan());
        assert!(
            out.contains("layer 0\n  a  sql on db (1 statement)\n  c  sql on db"),
            "{out}"
        );
        assert!(
            out.contains("layer 1\n  b  sql on db (1 statement)\n       <- a (dependsOn)"),
            "{out}"
        );
        assert!(out.ends_with("critical path: a -> b\n"), "{out}");
    }

    #[test]
    fn dot_has_a_cluster_per_layer() {
        let out = dot("p", &plan());
        assert!(out.contains("subgraph cluster_layer_0"));
        assert!(out.contains("subgraph cluster_layer_1"));
        assert!(out.contains("\"a\" -> \"b\" [style=solid"));
        assert!(out.trim_end().ends_with('}'));
    }

    #[test]
    fn mermaid_has_a_subgraph_per_layer() {
        let out = mermaid("p", &plan());
        assert!(out.contains("subgraph layer0[\"layer 0\"]"), "{out}");
        assert!(out.contains("subgraph layer1[\"layer 1\"]"), "{out}");
        assert!(
            out.contains("s0 --> s2") || out.contains("s0 --> s1"),
            "{out}"
        );
    }
}
