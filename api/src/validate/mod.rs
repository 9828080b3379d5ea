//! Validation of SynqX documents: pure (no I/O), and reports every problem at once, each
//! naming the file, resource, step and field it is about.
//!
//! `synqx validate` and `synqx run` call [`validate`] on files; the operator calls
//! [`validate_objects`] on the objects it reads from the cluster. Both run the same checks
//! and so print the same messages.

mod connection;
mod limits;
mod load;
mod options;
mod pipeline;
mod query_text;
mod suggest;

use std::collections::BTreeMap;
use std::fmt;

use k8s_openapi::api::core::v1::Secret;

use crate::dag::Plan;
use crate::{Connection, ConnectionSpec, Pipeline, PipelineRun};

pub use load::load;

/// A file to validate: its name (as shown in messages) and its text.
#[derive(Clone, Copy, Debug)]
pub struct InputFile<'a> {
    pub name: &'a str,
    pub text: &'a str,
}

/// One problem, located as precisely as it can be.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Problem {
    /// File name as given.
    pub file: String,
    /// Line and column (1-based), for YAML syntax errors.
    pub position: Option<(usize, usize)>,
    /// `Kind/name` of the resource.
    pub resource: Option<String>,
    /// Name of the step within a Pipeline.
    pub step: Option<String>,
    /// Field path within the resource, e.g. `spec.steps[1].sync.destination.mode`.
    pub field: Option<String>,
    /// What is wrong, and where possible what to do.
    pub message: String,
}

/// `file:line:column: Kind/name: step "s": field: message`; a problem of an object read
/// from the cluster has no file and starts with its resource.
impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.file)?;
        if let Some((line, column)) = self.position {
            write!(f, ":{line}:{column}")?;
        }
        let mut separator = if self.file.is_empty() { "" } else { ": " };
        let parts = [
            self.resource.clone(),
            self.step.as_ref().map(|step| format!("step \"{step}\"")),
            self.field.clone(),
            Some(self.message.clone()),
        ];
        for part in parts.into_iter().flatten() {
            write!(f, "{separator}{part}")?;
            separator = ": ";
        }
        Ok(())
    }
}

/// A document with where it came from.
#[derive(Clone, Debug)]
pub struct Doc<T> {
    /// File name as given.
    pub file: String,
    /// Index of the document within its file, from 0.
    pub index: usize,
    pub object: T,
}

/// Every document found in the files, by kind.
#[derive(Clone, Debug, Default)]
pub struct Bundle {
    pub connections: Vec<Doc<Connection>>,
    pub pipelines: Vec<Doc<Pipeline>>,
    pub runs: Vec<Doc<PipelineRun>>,
    pub secrets: Vec<Doc<Secret>>,
    /// `(kind, name)` of documents that were found but could not be read; references to
    /// them are not reported again as missing.
    pub unreadable: Vec<(String, String)>,
    /// Whether `connections` is every Connection there is (a namespace read from the
    /// cluster), so a step naming another one is wrong even when the list is empty. Files
    /// may hold none and name Connections applied from elsewhere.
    pub connections_complete: bool,
}

fn name_of(meta: &kube::core::ObjectMeta) -> &str {
    meta.name.as_deref().unwrap_or_default()
}

impl Bundle {
    /// The Connection with this name.
    pub fn connection(&self, name: &str) -> Option<&Connection> {
        self.connections
            .iter()
            .map(|d| &d.object)
            .find(|c| name_of(&c.metadata) == name)
    }

    /// Whether a document of this kind and name exists but could not be read.
    pub fn is_unreadable(&self, kind: &str, name: &str) -> bool {
        self.unreadable.iter().any(|(k, n)| k == kind && n == name)
    }

    /// The Pipeline with this name.
    pub fn pipeline(&self, name: &str) -> Option<&Pipeline> {
        self.pipelines
            .iter()
            .map(|d| &d.object)
            .find(|p| name_of(&p.metadata) == name)
    }

    /// The Secret with this name.
    pub fn secret(&self, name: &str) -> Option<&Secret> {
        self.secrets
            .iter()
            .map(|d| &d.object)
            .find(|s| name_of(&s.metadata) == name)
    }

    /// Connection specs by name.
    pub fn connection_specs(&self) -> BTreeMap<String, ConnectionSpec> {
        self.connections
            .iter()
            .map(|d| {
                (
                    name_of(&d.object.metadata).to_string(),
                    d.object.spec.clone(),
                )
            })
            .collect()
    }
}

/// The outcome of validating a set of files.
#[derive(Clone, Debug, Default)]
pub struct Report {
    pub bundle: Bundle,
    /// The compiled plan of every valid Pipeline, by name.
    pub plans: BTreeMap<String, Plan>,
    /// Every problem found, in file order.
    pub problems: Vec<Problem>,
}

impl Report {
    /// Whether no problem was found.
    pub fn is_valid(&self) -> bool {
        self.problems.is_empty()
    }
}

/// Loads, checks and compiles every document of the files.
pub fn validate(files: &[InputFile<'_>]) -> Report {
    let (bundle, problems) = load(files);
    check(bundle, problems)
}

/// Checks and compiles objects read from the cluster, with the checks of [`validate`] past
/// reading YAML (the API server already parsed them, pruned unknown fields and checked
/// their names). Their problems have no file. `connections` are all the Connections the
/// Pipelines may use: a step naming any other is a problem, even when `connections` is empty.
pub fn validate_objects(connections: &[Connection], pipelines: &[Pipeline]) -> Report {
    let doc = |index, object| Doc {
        file: String::new(),
        index,
        object,
    };
    let bundle = Bundle {
        connections: connections
            .iter()
            .enumerate()
            .map(|(i, c)| doc(i, c.clone()))
            .collect(),
        pipelines: pipelines
            .iter()
            .enumerate()
            .map(|(i, p)| Doc {
                file: String::new(),
                index: i,
                object: p.clone(),
            })
            .collect(),
        connections_complete: true,
        ..Default::default()
    };
    check(bundle, Vec::new())
}

/// Every check past loading, and the plans of the valid Pipelines.
fn check(bundle: Bundle, mut problems: Vec<Problem>) -> Report {
    let mut plans = BTreeMap::new();
    connection::check_all(&bundle, &mut problems);
    for doc in &bundle.pipelines {
        if let Some(plan) = pipeline::check(&bundle, doc, &mut problems) {
            plans.insert(name_of(&doc.object.metadata).to_string(), plan);
        }
    }
    pipeline::check_runs(&bundle, &mut problems);
    Report {
        bundle,
        plans,
        problems,
    }
}

#[cfg(test)]
mod tests;
