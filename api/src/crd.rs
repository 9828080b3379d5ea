//! The CustomResourceDefinitions of SynqX, and a check that their schemas are structural.

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::CustomResourceExt;
use serde_json::Value;

use crate::{Connection, Pipeline, PipelineRun};

/// Every CRD, in a stable order, each integer bounded by its type ([`bound_integers`]).
pub fn all() -> Vec<CustomResourceDefinition> {
    let mut crds = vec![Connection::crd(), Pipeline::crd(), PipelineRun::crd()];
    for crd in &mut crds {
        for version in &mut crd.spec.versions {
            let schema = version
                .schema
                .as_mut()
                .and_then(|s| s.open_api_v3_schema.as_mut());
            if let Some(schema) = schema
                && let Ok(mut value) = serde_json::to_value(&*schema)
            {
                bound_integers(&mut value);
                if let Ok(bounded) = serde_json::from_value(value) {
                    *schema = bounded;
                }
            }
        }
    }
    crds
}

/// Gives every integer of a schema the range of the Rust type it is read into. The API server
/// knows no `uint32` or `uint64` format: without bounds, it stores a `parallelism` of 2^40 or
/// a run's `rowsRead` of -1, which the operator then cannot decode, and one such object fails
/// the operator's list of every object of its kind, in every namespace.
pub fn bound_integers(node: &mut Value) {
    if let Some(obj) = node.as_object_mut() {
        let integer = obj.get("type").and_then(Value::as_str) == Some("integer");
        let range = match obj.get("format").and_then(Value::as_str) {
            Some("uint8") => Some((0.0, f64::from(u8::MAX))),
            Some("uint16") => Some((0.0, f64::from(u16::MAX))),
            Some("uint32") => Some((0.0, f64::from(u32::MAX))),
            Some("int32") => Some((f64::from(i32::MIN), f64::from(i32::MAX))),
            // The API server keeps integers as int64: only the sign needs saying.
            Some("uint64") => Some((0.0, f64::INFINITY)),
            _ => None,
        };
        if let Some((low, high)) = range.filter(|_| integer) {
            let min = obj
                .get("minimum")
                .and_then(Value::as_f64)
                .map_or(low, |m| m.max(low));
            let max = obj
                .get("maximum")
                .and_then(Value::as_f64)
                .map_or(high, |m| m.min(high));
            obj.insert("minimum".into(), Value::from(min));
            if max.is_finite() {
                obj.insert("maximum".into(), Value::from(max));
            }
        }
        for child in obj.values_mut() {
            bound_integers(child);
        }
    } else if let Some(items) = node.as_array_mut() {
        for item in items {
            bound_integers(item);
        }
    }
}

/// The file name of a CRD under `crds/`: `<plural>.<group>.yaml`.
pub fn file_name(crd: &CustomResourceDefinition) -> String {
    format!("{}.yaml", crd.metadata.name.as_deref().unwrap_or("unnamed"))
}

/// One CRD as YAML, as checked in under `crds/`.
pub fn to_yaml(crd: &CustomResourceDefinition) -> Result<String, serde_yaml::Error> {
    serde_yaml::to_string(crd)
}

/// Every CRD as one multi-document YAML stream, ready for `kubectl apply -f -`.
pub fn all_to_yaml() -> Result<String, serde_yaml::Error> {
    let docs = all().iter().map(to_yaml).collect::<Result<Vec<_>, _>>()?;
    Ok(docs.into_iter().map(|d| format!("---\n{d}")).collect())
}

/// The openAPIV3Schema of every version of a CRD.
pub fn schemas(crd: &CustomResourceDefinition) -> Vec<Value> {
    crd.spec
        .versions
        .iter()
        .filter_map(|v| v.schema.as_ref()?.open_api_v3_schema.as_ref())
        .filter_map(|s| serde_json::to_value(s).ok())
        .collect()
}

/// Every place where a schema is not structural in the sense of the Kubernetes API server
/// (`apiextensions.k8s.io/v1`): each node has a type unless it preserves unknown fields or is
/// int-or-string; no `$ref`; logical junctors (`allOf`, `anyOf`, `oneOf`, `not`) carry only
/// value validations, never types, defaults, descriptions or `nullable`, and no empty arms.
pub fn structural_problems(schema: &Value) -> Vec<String> {
    let mut problems = Vec::new();
    walk(schema, "", false, &mut problems);
    problems
}

fn walk(node: &Value, path: &str, in_junctor: bool, problems: &mut Vec<String>) {
    let Some(obj) = node.as_object() else {
        problems.push(format!("{path}: schema node is not an object"));
        return;
    };
    let here = if path.is_empty() { "<root>" } else { path };
    let flag = |k: &str| obj.get(k).and_then(Value::as_bool).unwrap_or(false);
    if obj.contains_key("$ref") || obj.contains_key("definitions") || obj.contains_key("$defs") {
        problems.push(format!("{here}: $ref or definitions are not allowed"));
    }
    if in_junctor {
        for key in [
            "type",
            "default",
            "description",
            "nullable",
            "additionalProperties",
        ] {
            if obj.contains_key(key) {
                problems.push(format!("{here}: `{key}` inside allOf/anyOf/oneOf/not"));
            }
        }
        if obj.keys().any(|k| k.starts_with("x-kubernetes-")) {
            problems.push(format!(
                "{here}: x-kubernetes extension inside allOf/anyOf/oneOf/not"
            ));
        }
    } else {
        let typed = obj
            .get("type")
            .and_then(Value::as_str)
            .is_some_and(|t| !t.is_empty());
        if !typed
            && !flag("x-kubernetes-int-or-string")
            && !flag("x-kubernetes-preserve-unknown-fields")
        {
            problems.push(format!(
                "{here}: no type (and not x-kubernetes-preserve-unknown-fields)"
            ));
        }
        if obj.get("type").is_some_and(Value::is_array) {
            problems.push(format!("{here}: type must be a single string, not a list"));
        }
        if obj.contains_key("properties") && obj.contains_key("additionalProperties") {
            problems.push(format!("{here}: both properties and additionalProperties"));
        }
    }
    if let Some(props) = obj.get("properties").and_then(Value::as_object) {
        for (name, child) in props {
            walk(child, &format!("{path}.{name}"), in_junctor, problems);
        }
    }
    if let Some(items) = obj.get("items") {
        walk(items, &format!("{path}[]"), in_junctor, problems);
    }
    if let Some(extra) = obj.get("additionalProperties").filter(|v| v.is_object()) {
        walk(extra, &format!("{path}{{}}"), in_junctor, problems);
    }
    for junctor in ["allOf", "anyOf", "oneOf"] {
        if let Some(arms) = obj.get(junctor) {
            let Some(arms) = arms.as_array() else {
                problems.push(format!("{here}: {junctor} is not a list"));
                continue;
            };
            for (i, arm) in arms.iter().enumerate() {
                if arm.as_object().is_some_and(|a| a.is_empty()) {
                    problems.push(format!("{here}: {junctor}[{i}] is empty"));
                }
                walk(arm, &format!("{path}.{junctor}[{i}]"), true, problems);
            }
        }
    }
    if let Some(not) = obj.get("not") {
        walk(not, &format!("{path}.not"), true, problems);
    }
}

/// The schema node below `path` (e.g. `["spec", "steps", "[]", "sync"]`), following
/// `properties`, `items` (`[]`) and `additionalProperties` (`{}`).
pub fn schema_at<'a>(root: &'a Value, path: &[&str]) -> Option<&'a Value> {
    let mut node = root;
    for seg in path {
        node = match *seg {
            "[]" => node.get("items")?,
            "{}" => node.get("additionalProperties")?,
            name => node.get("properties")?.get(name)?,
        };
    }
    Some(node)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_generated_schema_is_structural() {
        for crd in all() {
            let schemas = schemas(&crd);
            assert!(!schemas.is_empty(), "{} has no schema", file_name(&crd));
            for schema in schemas {
                let problems = structural_problems(&schema);
                assert!(
                    problems.is_empty(),
                    "{}:\n{}",
                    file_name(&crd),
                    problems.join("\n")
                );
            }
        }
    }

    /// Every integer below `node` that the API server would store beyond its Rust type.
    fn unbounded(node: &Value, path: &str, out: &mut Vec<String>) {
        if let Some(obj) = node.as_object() {
            let format = obj
                .get("format")
                .and_then(Value::as_str)
                .unwrap_or_default();
            let integer = obj.get("type").and_then(Value::as_str) == Some("integer");
            let bound = match format {
                "int64" => true,
                "uint64" => obj.get("minimum").and_then(Value::as_f64) == Some(0.0),
                _ => obj.contains_key("minimum") && obj.contains_key("maximum"),
            };
            if integer && !bound {
                out.push(format!("{path} ({format})"));
            }
            for (key, child) in obj {
                unbounded(child, &format!("{path}.{key}"), out);
            }
        }
    }

    #[test]
    fn every_integer_is_bounded_by_the_type_it_is_read_into() {
        let mut out = Vec::new();
        for crd in all() {
            for schema in schemas(&crd) {
                unbounded(&schema, &file_name(&crd), &mut out);
            }
        }
        assert!(out.is_empty(), "unbounded integers:\n{}", out.join("\n"));
        let pipelines = all()
            .into_iter()
            .find(|c| file_name(c) == "pipelines.synqx.io.yaml")
            .map(|c| schemas(&c))
            .unwrap_or_default();
        let parallelism = pipelines
            .first()
            .and_then(|s| schema_at(s, &["spec", "parallelism"]))
            .and_then(|p| Some((p.get("minimum")?.as_f64()?, p.get("maximum")?.as_f64()?)));
        assert_eq!(
            parallelism,
            Some((1.0, f64::from(u32::MAX))),
            "a minimum of the field's own stays"
        );
    }

    #[test]
    fn the_walker_finds_non_structural_nodes() {
        let bad = serde_json::json!({
            "type": "object",
            "properties": {
                "untyped": {"description": "no type"},
                "free": {"x-kubernetes-preserve-unknown-fields": true},
                "either": {"type": "object", "anyOf": [{}, {"type": "string"}]},
                "nullable": {"type": ["string", "null"]},
                "ref": {"$ref": "#/definitions/X"}
            }
        });
        let problems = structural_problems(&bad);
        let joined = problems.join("\n");
        assert!(joined.contains(".untyped: no type"), "{joined}");
        assert!(!joined.contains(".free"), "{joined}");
        assert!(joined.contains(".either: anyOf[0] is empty"), "{joined}");
        assert!(
            joined.contains(".either.anyOf[1]: `type` inside"),
            "{joined}"
        );
        assert!(
            joined.contains(".nullable: type must be a single string"),
            "{joined}"
        );
        assert!(joined.contains(".ref: $ref"), "{joined}");
    }

    #[test]
    fn crds_carry_names_columns_and_rules() {
        let yaml = all_to_yaml().unwrap_or_default();
        for needle in [
            "shortNames:\n    - sqp",
            "- sqr",
            "- sqc",
            "categories:\n    - synqx",
            "name: Progress",
            "name: Last Run",
            "exactly one connector block must be set",
            "mode upsert requires primaryKey",
            "x-kubernetes-list-type: map",
        ] {
            assert!(yaml.contains(needle), "CRDs lack `{needle}`");
        }
    }

    #[test]
    fn checked_in_crds_are_current() {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
        // crds/ for kubectl, and the Helm chart's copy it templates (charts/synqx/files/crds).
        let dirs = [root.join("crds"), root.join("charts/synqx/files/crds")];
        for (dir, crd) in dirs
            .iter()
            .flat_map(|d| all().into_iter().map(move |c| (d, c)))
        {
            let path = dir.join(file_name(&crd));
            let expected = to_yaml(&crd).unwrap_or_default();
            // Under CI the files are compared, never rewritten (a rewritten file always
            // matches): asking for an update there fails.
            if synqx_testkit::golden::update_requested("SYNQX_UPDATE_CRDS") {
                std::fs::write(&path, &expected)
                    .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            }
            let found = std::fs::read_to_string(&path).unwrap_or_default();
            assert!(
                found == expected,
                "{} is stale: regenerate with `cargo run --bin synqx -- crd --dir crds` (or SYNQX_UPDATE_CRDS=1 cargo test -p synqx-api crd)",
                path.display()
            );
        }
    }
}
