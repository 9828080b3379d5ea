//! YAML text to typed documents: syntax, kinds, unknown fields and type errors.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::Secret;
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_yaml::Value;

use super::{Bundle, Doc, InputFile, Problem, suggest};
use crate::API_VERSION;

/// Parses every document of every file. Documents that cannot be read become problems; the
/// rest are returned, so later checks still run on them.
pub fn load(files: &[InputFile<'_>]) -> (Bundle, Vec<Problem>) {
    let mut bundle = Bundle::default();
    let mut problems = Vec::new();
    let mut seen: BTreeMap<(String, String), String> = BTreeMap::new();
    for file in files {
        for (index, value) in documents(file, &mut problems) {
            let mut problem = |resource: Option<String>, field: Option<String>, message: String| {
                problems.push(Problem {
                    file: file.name.to_string(),
                    resource,
                    field,
                    message,
                    ..Default::default()
                })
            };
            let Some(map) = value.as_mapping() else {
                problem(
                    None,
                    None,
                    format!(
                        "document {} is not a mapping (expected a Kubernetes resource with apiVersion, kind and metadata)",
                        index + 1
                    ),
                );
                continue;
            };
            let text = |key: &str| map.get(key).and_then(Value::as_str).map(str::to_string);
            let (Some(api_version), Some(kind)) = (text("apiVersion"), text("kind")) else {
                problem(
                    None,
                    None,
                    format!("document {} has no apiVersion or kind", index + 1),
                );
                continue;
            };
            let name = map
                .get("metadata")
                .and_then(|m| m.get("name"))
                .and_then(Value::as_str)
                .map(str::to_string);
            let resource = format!("{kind}/{}", name.as_deref().unwrap_or("<unnamed>"));
            let supported = matches!(
                (api_version.as_str(), kind.as_str()),
                (API_VERSION, "Connection" | "Pipeline" | "PipelineRun") | ("v1", "Secret")
            );
            if !supported {
                let hint = if kind == "Connection" || kind == "Pipeline" || kind == "PipelineRun" {
                    format!("apiVersion must be {API_VERSION}")
                } else {
                    format!(
                        "expected {API_VERSION} Connection, Pipeline or PipelineRun, or v1 Secret"
                    )
                };
                problem(
                    Some(resource),
                    None,
                    format!("{api_version} {kind} is not a SynqX document ({hint})"),
                );
                continue;
            }
            let Some(name) = name.filter(|n| !n.is_empty()) else {
                problem(
                    Some(resource),
                    Some("metadata.name".into()),
                    "is required".into(),
                );
                continue;
            };
            if let Some(other) = seen.insert((kind.clone(), name.clone()), file.name.to_string()) {
                problem(
                    Some(resource.clone()),
                    None,
                    format!("is defined twice (also in {other}); names of one kind must be unique"),
                );
                continue;
            }
            if let Some(message) = name_problem(&name) {
                problem(
                    Some(resource.clone()),
                    Some("metadata.name".into()),
                    message,
                );
            }
            let decoded = match kind.as_str() {
                "Connection" => decode(file, &resource, &kind, value).map(|o| {
                    bundle.connections.push(Doc {
                        file: file.name.to_string(),
                        index,
                        object: o,
                    })
                }),
                "Pipeline" => decode(file, &resource, &kind, value).map(|o| {
                    bundle.pipelines.push(Doc {
                        file: file.name.to_string(),
                        index,
                        object: o,
                    })
                }),
                "PipelineRun" => decode(file, &resource, &kind, value).map(|o| {
                    bundle.runs.push(Doc {
                        file: file.name.to_string(),
                        index,
                        object: o,
                    })
                }),
                _ => decode::<Secret>(file, &resource, &kind, value).map(|o| {
                    bundle.secrets.push(Doc {
                        file: file.name.to_string(),
                        index,
                        object: o,
                    })
                }),
            };
            if let Err(found) = decoded {
                bundle.unreadable.push((kind, name));
                problems.extend(found);
            }
        }
    }
    (bundle, problems)
}

/// Kubernetes object names: a DNS-1123 subdomain (lower-case letters, digits, `-`, `.`).
pub(super) fn name_problem(name: &str) -> Option<String> {
    let valid = name.len() <= 253
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.')
        && name.starts_with(|c: char| c.is_ascii_alphanumeric())
        && name.ends_with(|c: char| c.is_ascii_alphanumeric());
    (!valid).then(|| {
        format!(
            "\"{name}\" is not a valid name (lower-case letters, digits, '-' and '.', starting and ending with a letter or digit)"
        )
    })
}

/// The documents of one file, with their index; a syntax error ends the file.
fn documents(file: &InputFile<'_>, problems: &mut Vec<Problem>) -> Vec<(usize, Value)> {
    let mut out = Vec::new();
    for (index, doc) in serde_yaml::Deserializer::from_str(file.text).enumerate() {
        match Value::deserialize(doc) {
            Ok(Value::Null) => {}
            Ok(value) => out.push((index, value)),
            Err(e) => {
                let position = e.location().map(|l| (l.line(), l.column()));
                let mut message = e.to_string();
                // serde_yaml appends " at line L column C"; the position is shown in front.
                if let Some(cut) = message.find(" at line ") {
                    message.truncate(cut);
                }
                problems.push(Problem {
                    file: file.name.to_string(),
                    position,
                    message: format!("YAML syntax error: {message}"),
                    ..Default::default()
                });
                break;
            }
        }
    }
    out
}

/// Deserializes one document, reporting every unknown field (typos are errors, never dropped
/// in silence) and the first type error, each with its path.
fn decode<T: DeserializeOwned>(
    file: &InputFile<'_>,
    resource: &str,
    kind: &str,
    value: Value,
) -> Result<T, Vec<Problem>> {
    let steps = step_names(&value);
    let mut unknown: Vec<Vec<Segment>> = Vec::new();
    let result: Result<T, _> = {
        let mut record = |path: serde_ignored::Path<'_>| unknown.push(segments_of(&path));
        let ignored = serde_ignored::Deserializer::new(value, &mut record);
        serde_path_to_error::deserialize(ignored)
    };
    let problem = |path: &[Segment], message: String| {
        let step = match path {
            [
                Segment::Field(spec),
                Segment::Field(steps_key),
                Segment::Index(i),
                ..,
            ] if spec == "spec" && steps_key == "steps" => steps.get(*i).cloned().flatten(),
            _ => None,
        };
        Problem {
            file: file.name.to_string(),
            resource: Some(resource.to_string()),
            step,
            field: (!path.is_empty()).then(|| render(path)),
            message,
            ..Default::default()
        }
    };
    let mut problems: Vec<Problem> = unknown
        .iter()
        .filter_map(|path| {
            let (field, parent) = path.split_last()?;
            let Segment::Field(field) = field else {
                return None;
            };
            // Kubernetes bookkeeping fields are the API server's business.
            if matches!(field.as_str(), "apiVersion" | "kind") && parent.is_empty() {
                return None;
            }
            Some(problem(
                parent,
                format!(
                    "unknown field \"{field}\"{}",
                    suggest::hint(kind, parent, field)
                ),
            ))
        })
        .collect();
    match result {
        Ok(object) if problems.is_empty() => Ok(object),
        Ok(_) => Err(problems),
        Err(e) => {
            let path: Vec<Segment> = e.path().iter().filter_map(segment_of_error).collect();
            let message = e.into_inner().to_string();
            let message = message
                .split(" at line ")
                .next()
                .unwrap_or(&message)
                .to_string();
            problems.push(problem(&path, message));
            Err(problems)
        }
    }
}

/// Step names by index, read from the raw document (so they are known even when the step
/// itself does not deserialize).
fn step_names(value: &Value) -> Vec<Option<String>> {
    value
        .get("spec")
        .and_then(|s| s.get("steps"))
        .and_then(Value::as_sequence)
        .map(|steps| {
            steps
                .iter()
                .map(|s| s.get("name").and_then(Value::as_str).map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

/// One step of a field path.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) enum Segment {
    Field(String),
    Index(usize),
}

/// `spec.steps[1].sync.destination`.
pub(super) fn render(path: &[Segment]) -> String {
    let mut out = String::new();
    for seg in path {
        match seg {
            Segment::Field(f) => {
                if !out.is_empty() {
                    out.push('.');
                }
                out.push_str(f);
            }
            Segment::Index(i) => out.push_str(&format!("[{i}]")),
        }
    }
    out
}

fn segments_of(path: &serde_ignored::Path<'_>) -> Vec<Segment> {
    use serde_ignored::Path;
    let mut out = Vec::new();
    let mut cur = path;
    loop {
        match cur {
            Path::Root => break,
            Path::Seq { parent, index } => {
                out.push(Segment::Index(*index));
                cur = parent;
            }
            Path::Map { parent, key } => {
                out.push(Segment::Field(key.to_string()));
                cur = parent;
            }
            Path::Some { parent }
            | Path::NewtypeStruct { parent }
            | Path::NewtypeVariant { parent } => cur = parent,
        }
    }
    out.reverse();
    out
}

fn segment_of_error(seg: &serde_path_to_error::Segment) -> Option<Segment> {
    use serde_path_to_error::Segment as S;
    match seg {
        S::Seq { index } => Some(Segment::Index(*index)),
        S::Map { key } => Some(Segment::Field(key.clone())),
        S::Enum { variant } => Some(Segment::Field(variant.clone())),
        S::Unknown => None,
    }
}
