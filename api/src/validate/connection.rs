//! Checks of Connection documents and of the secret values they reference.

use super::{Bundle, Problem, name_of};
use crate::connection::ConnectorKind;
use crate::secret::{SecretValue, check_sealed_format};

/// Reports the problems of every Connection.
pub(super) fn check_all(bundle: &Bundle, problems: &mut Vec<Problem>) {
    for doc in &bundle.connections {
        let resource = format!("Connection/{}", name_of(&doc.object.metadata));
        let mut push = |field: &str, message: String| {
            problems.push(Problem {
                file: doc.file.clone(),
                resource: Some(resource.clone()),
                field: (!field.is_empty()).then(|| field.to_string()),
                message,
                ..Default::default()
            })
        };
        let spec = &doc.object.spec;
        let kinds = spec.kinds();
        let all = ConnectorKind::ALL
            .iter()
            .map(|k| k.block_name())
            .collect::<Vec<_>>()
            .join(", ");
        match kinds.as_slice() {
            [] => push(
                "spec",
                format!("exactly one connector block must be set, found none ({all})"),
            ),
            [_] => {}
            many => push(
                "spec",
                format!(
                    "exactly one connector block must be set, found {}: {}",
                    many.len(),
                    many.iter()
                        .map(|k| k.block_name())
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            ),
        }
        for (path, value) in spec.secret_values() {
            if let Some(message) = secret_value_problem(bundle, value) {
                push(&format!("spec.{path}"), message);
            }
        }
        for (field, message) in spec.block_problems() {
            push(&format!("spec.{field}"), message);
        }
    }
}

/// What is wrong with one secret value, given the Secrets in the files.
pub(super) fn secret_value_problem(bundle: &Bundle, value: &SecretValue) -> Option<String> {
    if value.alternatives_set() != 1 {
        return Some(format!(
            "set exactly one of value, secretKeyRef or sealed (found {})",
            value.alternatives_set()
        ));
    }
    if let Some(Err(problem)) = value.sealed.as_deref().map(check_sealed_format) {
        return Some(problem.to_string());
    }
    if let Some(r) = &value.secret_key_ref {
        if r.name.is_empty() || r.key.is_empty() {
            return Some("secretKeyRef needs both name and key".into());
        }
        if let Some(secret) = bundle.secret(&r.name) {
            let mut keys: Vec<&str> = secret
                .data
                .iter()
                .flat_map(|d| d.keys())
                .map(String::as_str)
                .collect();
            keys.extend(
                secret
                    .string_data
                    .iter()
                    .flat_map(|d| d.keys())
                    .map(String::as_str),
            );
            if !keys.contains(&r.key.as_str()) {
                keys.sort_unstable();
                return Some(format!(
                    "Secret \"{}\" has no key \"{}\" (keys: {})",
                    r.name,
                    r.key,
                    if keys.is_empty() {
                        "none".to_string()
                    } else {
                        keys.join(", ")
                    }
                ));
            }
        }
    }
    None
}
