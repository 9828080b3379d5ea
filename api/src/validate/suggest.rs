//! "Did you mean …?" for unknown fields, from the CRD schemas.

use std::collections::BTreeMap;
use std::sync::OnceLock;

use serde_json::Value;

use super::load::Segment;
use crate::crd;

fn schemas() -> &'static BTreeMap<String, Value> {
    static SCHEMAS: OnceLock<BTreeMap<String, Value>> = OnceLock::new();
    SCHEMAS.get_or_init(|| {
        crd::all()
            .into_iter()
            .filter_map(|c| {
                let kind = c.spec.names.kind.clone();
                crd::schemas(&c).into_iter().next().map(|s| (kind, s))
            })
            .collect()
    })
}

/// The field names the schema of `kind` allows below `parent`.
pub(super) fn known_fields(kind: &str, parent: &[Segment]) -> Vec<String> {
    let Some(mut node) = schemas().get(kind) else {
        return Vec::new();
    };
    for seg in parent {
        let next = match seg {
            Segment::Field(f) => node.get("properties").and_then(|p| p.get(f)),
            Segment::Index(_) => node.get("items"),
        };
        match next {
            Some(n) => node = n,
            None => return Vec::new(),
        }
    }
    node.get("properties")
        .and_then(Value::as_object)
        .map(|p| p.keys().cloned().collect())
        .unwrap_or_default()
}

/// ` (did you mean "mode"?)`, or ` (expected one of: …)`, or nothing when the schema is silent.
pub(super) fn hint(kind: &str, parent: &[Segment], field: &str) -> String {
    let known = known_fields(kind, parent);
    if known.is_empty() {
        return String::new();
    }
    let lower = field.to_ascii_lowercase();
    let best = known
        .iter()
        .map(|k| (distance(&lower, &k.to_ascii_lowercase()), k))
        .min_by_key(|(d, _)| *d);
    match best {
        Some((d, k)) if d <= 2.max(field.len() / 3) => format!(" (did you mean \"{k}\"?)"),
        _ => format!(" (expected one of: {})", known.join(", ")),
    }
}

/// Levenshtein distance.
fn distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut prev = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let cur = row[j + 1];
            row[j + 1] = (prev + usize::from(ca != *cb)).min(row[j] + 1).min(cur + 1);
            prev = cur;
        }
    }
    row[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn distance_counts_edits() {
        assert_eq!(distance("mdoe", "mode"), 2);
        assert_eq!(distance("", "abc"), 3);
        assert_eq!(distance("dependson", "dependson"), 0);
    }

    #[test]
    fn hints_come_from_the_schema() {
        let parent = [
            Segment::Field("spec".into()),
            Segment::Field("steps".into()),
            Segment::Index(0),
        ];
        assert_eq!(
            hint("Pipeline", &parent, "dependOn"),
            " (did you mean \"dependsOn\"?)"
        );
        assert!(hint("Pipeline", &parent, "zzzzzzzz").contains("expected one of: dependsOn, name"));
        assert_eq!(hint("Secret", &[], "x"), "");
    }
}
