//! `synqx validate`.

use std::path::PathBuf;
use std::process::ExitCode;

use super::files::load_and_check;

pub fn run(paths: &[PathBuf]) -> anyhow::Result<ExitCode> {
    let (report, file_count) = load_and_check(paths);
    if !report.is_valid() {
        for problem in &report.problems {
            eprintln!("{problem}");
        }
        let n = report.problems.len();
        eprintln!("{n} problem{} found", if n == 1 { "" } else { "s" });
        return Ok(ExitCode::FAILURE);
    }
    for doc in &report.bundle.pipelines {
        let name = doc.object.metadata.name.as_deref().unwrap_or_default();
        if let Some(plan) = report.plans.get(name) {
            println!(
                "{}: Pipeline/{name}: {} step{}, {} edge{}, {} layer{}, critical path {}, plan {}",
                doc.file,
                plan.steps.len(),
                plural(plan.steps.len()),
                plan.edges.len(),
                plural(plan.edges.len()),
                plan.layers.len(),
                plural(plan.layers.len()),
                plan.critical_path.len(),
                plan.short_hash()
            );
        }
    }
    let b = &report.bundle;
    println!(
        "valid: {file_count} file{}, {} connection{}, {} pipeline{}, {} run{}, {} secret{}",
        plural(file_count),
        b.connections.len(),
        plural(b.connections.len()),
        b.pipelines.len(),
        plural(b.pipelines.len()),
        b.runs.len(),
        plural(b.runs.len()),
        b.secrets.len(),
        plural(b.secrets.len()),
    );
    Ok(ExitCode::SUCCESS)
}

fn plural(n: usize) -> &'static str {
    if n == 1 { "" } else { "s" }
}
