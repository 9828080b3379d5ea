//! Reading the YAML files named on the command line.

use std::path::{Path, PathBuf};

use synqx_api::validate::{InputFile, Problem, Report, validate};

/// The text of every file named, with directories expanded to their `*.yaml`/`*.yml` files
/// (sorted). Files that cannot be read become problems.
pub fn read_all(paths: &[PathBuf]) -> (Vec<(String, String)>, Vec<Problem>) {
    let mut out = Vec::new();
    let mut problems = Vec::new();
    for path in paths {
        let mut unreadable = |p: &Path, e: std::io::Error| {
            problems.push(Problem {
                file: p.display().to_string(),
                message: format!("cannot read: {e}"),
                ..Default::default()
            })
        };
        if path.is_dir() {
            let entries = match std::fs::read_dir(path) {
                Ok(entries) => entries,
                Err(e) => {
                    unreadable(path, e);
                    continue;
                }
            };
            let mut files: Vec<PathBuf> = entries
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.is_file() && p.extension().is_some_and(|x| x == "yaml" || x == "yml"))
                .collect();
            files.sort();
            for file in files {
                match std::fs::read_to_string(&file) {
                    Ok(text) => out.push((file.display().to_string(), text)),
                    Err(e) => unreadable(&file, e),
                }
            }
        } else {
            match std::fs::read_to_string(path) {
                Ok(text) => out.push((path.display().to_string(), text)),
                Err(e) => unreadable(path, e),
            }
        }
    }
    (out, problems)
}

/// Reads and validates the files, and checks every Connection and step with its connector
/// (no I/O): what `synqx validate` reports and what `synqx run` refuses to start with.
pub fn load_and_check(paths: &[PathBuf]) -> (Report, usize) {
    let (mut report, files) = load_and_validate(paths);
    let mut connector_problems = synqx_runner::connectors::validate::problems(&report);
    report.problems.append(&mut connector_problems);
    (report, files)
}

/// Reads and validates the files; unreadable files are reported like other problems.
pub fn load_and_validate(paths: &[PathBuf]) -> (Report, usize) {
    let (texts, read_problems) = read_all(paths);
    let inputs: Vec<InputFile<'_>> = texts
        .iter()
        .map(|(name, text)| InputFile { name, text })
        .collect();
    let mut report = validate(&inputs);
    let mut problems = read_problems;
    problems.append(&mut report.problems);
    report.problems = problems;
    (report, texts.len())
}
