//! The body of a server-side apply of a resource's status, typed: `apiVersion`, `kind`, an
//! optional resourceVersion precondition and the status fields the writer owns. Every writer
//! (each controller, each step's runner, each watermark commit) applies only its own fields
//! under its own field manager, so no two writers ever own the same field.

use kube::Resource;
use serde::Serialize;

#[derive(Serialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct StatusApply<S> {
    pub api_version: String,
    pub kind: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub metadata: Option<Precondition>,
    pub status: S,
}

/// Applies only when the object still has this resourceVersion.
#[derive(Serialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct Precondition {
    pub resource_version: String,
}

impl<S: Serialize> StatusApply<S> {
    /// The apply of `status` to an object of kind `K`.
    pub fn of<K: Resource<DynamicType = ()>>(status: S) -> Self {
        Self {
            api_version: K::api_version(&()).into_owned(),
            kind: K::kind(&()).into_owned(),
            metadata: None,
            status,
        }
    }

    /// Only while the object is at `resource_version`: a concurrent write makes it fail.
    pub fn at(mut self, resource_version: Option<String>) -> Self {
        self.metadata = resource_version.map(|resource_version| Precondition { resource_version });
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::run::{PipelineRun, PipelineRunStatus, StepStatus};

    #[test]
    fn the_body_names_the_kind_and_carries_only_the_given_fields() {
        let status = PipelineRunStatus {
            steps: vec![StepStatus {
                name: "load".into(),
                rows_read: Some(3),
                ..Default::default()
            }],
            ..Default::default()
        };
        let body =
            serde_json::to_value(StatusApply::of::<PipelineRun>(status).at(Some("7".into())))
                .unwrap_or_default();
        assert_eq!(
            body,
            serde_json::json!({
                "apiVersion": "synqx.io/v1alpha1",
                "kind": "PipelineRun",
                "metadata": {"resourceVersion": "7"},
                "status": {"steps": [{"name": "load", "rowsRead": 3}]},
            })
        );
    }
}
