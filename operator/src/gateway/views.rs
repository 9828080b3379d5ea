//! The JSON of the list routes: what a UI needs of a Pipeline (last run, schedule,
//! watermarks, layers) and of a run (phase, steps, counters), read from the watch caches.

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::ResourceExt;
use serde::Serialize;
use synqx_api::pipeline::{RunReference, Schedule, Watermark};
use synqx_api::{Pipeline, PipelineRun};

use super::message::RunView;

/// A Pipeline as the gateway lists it.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PipelineView {
    pub name: String,
    /// Step names, in the order of the spec.
    pub steps: Vec<String>,
    /// Steps of each parallel layer, in execution order (once compiled).
    pub layers: Vec<Vec<String>>,
    /// `True` (compiled, Connections ready), `False` (with `reason` and `message`), or
    /// absent before the first compile.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ready: Option<Ready>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub schedule: Option<Schedule>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_schedule_time: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_run: Option<RunReference>,
    pub watermarks: BTreeMap<String, Watermark>,
}

/// The Ready condition of a Pipeline.
#[derive(Debug, Serialize)]
pub struct Ready {
    pub status: String,
    pub reason: String,
    pub message: String,
}

pub fn pipeline(p: &Pipeline) -> PipelineView {
    let status = p.status.clone().unwrap_or_default();
    PipelineView {
        name: p.name_any(),
        steps: p.spec.steps.iter().map(|s| s.name.clone()).collect(),
        layers: status.layers,
        ready: status
            .conditions
            .into_iter()
            .find(|c| c.r#type == "Ready")
            .map(|c| Ready {
                status: c.status,
                reason: c.reason,
                message: c.message,
            }),
        schedule: p.spec.schedule.clone(),
        next_schedule_time: status.next_schedule_time,
        last_run: status.last_run,
        watermarks: status.watermarks,
    }
}

/// The Pipelines of `namespace`, by name.
pub fn pipelines<'a>(
    all: impl IntoIterator<Item = &'a Pipeline>,
    namespace: &str,
) -> Vec<PipelineView> {
    let mut items: Vec<PipelineView> = all
        .into_iter()
        .filter(|p| p.namespace().as_deref() == Some(namespace))
        .map(pipeline)
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
