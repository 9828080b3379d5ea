//! The JSON of the list routes, read from the watch caches: Pipelines as
//! [`PipelineView`]s, runs as [`RunView`]s (phase, steps, counters).

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::ResourceExt;
use synqx_api::gateway::{PipelineView, RunView};
use synqx_api::{Pipeline, PipelineRun};

/// The Pipelines of `namespace`, by name.
pub fn pipelines<'a>(
    all: impl IntoIterator<Item = &'a Pipeline>,
    namespace: &str,
) -> Vec<PipelineView> {
    let mut items: Vec<PipelineView> = all
        .into_iter()
        .filter(|p| p.namespace().as_deref() == Some(namespace))
        .map(PipelineView::of)
        .collect();
    items.sort_by(|a, b| a.name.cmp(&b.name));
    items
}

/// The runs of `namespace` (of one Pipeline when given), newest first.
pub fn runs<'a>(
    all: impl IntoIterator<Item = &'a PipelineRun>,
    namespace: &str,
    pipeline: Option<&str>,
) -> Vec<RunView> {
    let mut items: Vec<(Option<Time>, RunView)> = all
        .into_iter()
        .filter(|r| r.namespace().as_deref() == Some(namespace))
        .filter(|r| pipeline.is_none_or(|p| r.spec.pipeline_ref.name == p))
        .map(|r| (r.metadata.creation_timestamp.clone(), super::feed::view(r)))
        .collect();
    items.sort_by(|(a_time, a), (b_time, b)| b_time.cmp(a_time).then_with(|| a.name.cmp(&b.name)));
    items.into_iter().map(|(_, view)| view).collect()
}
