//! Compiled plans as `apps/v1 ControllerRevision`s owned by their Pipeline: immutable, one
//! per distinct plan, so a run pinned to one keeps it however the Pipeline changes.

use std::collections::BTreeSet;

use k8s_openapi::api::apps::v1::ControllerRevision;
use k8s_openapi::apimachinery::pkg::runtime::RawExtension;
use kube::api::{DeleteParams, ListParams, ObjectMeta, PostParams};
use kube::{Api, Resource};
use synqx_api::Pipeline;
use synqx_api::dag::Plan;

use crate::error::{Error, Result, is_conflict, is_not_found};
use crate::job::LABEL_PIPELINE;
use crate::names;

/// Stores `plan` for `pipeline` unless a revision of it exists; returns the revision's name.
pub async fn store(
    api: &Api<ControllerRevision>,
    pipeline: &Pipeline,
    plan: &Plan,
) -> Result<String> {
    let pipeline_name = pipeline.metadata.name.clone().unwrap_or_default();
    let name = names::revision_name(&pipeline_name, &plan.hash);
    if api.get_opt(&name).await?.is_some() {
        return Ok(name);
    }
    let existing = list(api, &pipeline_name).await?;
    let number = existing.iter().map(|r| r.revision).max().unwrap_or(0) + 1;
    let data = serde_json::to_value(plan).map_err(|source| Error::Plan {
        pipeline: pipeline_name.clone(),
        source,
    })?;
    let revision = ControllerRevision {
        metadata: ObjectMeta {
            name: Some(name.clone()),
            labels: Some([(LABEL_PIPELINE.to_string(), names::fit(&pipeline_name))].into()),
            owner_references: pipeline.controller_owner_ref(&()).map(|r| vec![r]),
            ..Default::default()
        },
        data: Some(RawExtension(data)),
        revision: number,
    };
    match api.create(&PostParams::default(), &revision).await {
        Ok(_) => Ok(name),
        Err(error) if is_conflict(&error) => Ok(name),
        Err(error) => Err(error.into()),
    }
}

/// The plan a revision holds.
pub async fn load(api: &Api<ControllerRevision>, name: &str) -> Result<Option<Plan>> {
    let Some(revision) = api.get_opt(name).await? else {
        return Ok(None);
    };
    let data = revision.data.map(|d| d.0).unwrap_or_default();
    serde_json::from_value(data)
        .map(Some)
        .map_err(|source| Error::Revision {
            revision: name.to_string(),
            source,
        })
}

async fn list(api: &Api<ControllerRevision>, pipeline: &str) -> Result<Vec<ControllerRevision>> {
    let selector = format!("{LABEL_PIPELINE}={}", names::fit(pipeline));
    Ok(api
        .list(&ListParams::default().labels(&selector))
        .await?
        .items)
}

/// Deletes the oldest revisions beyond `keep`, never the current one or one a run still uses.
pub async fn prune(
    api: &Api<ControllerRevision>,
    pipeline: &str,
    keep: usize,
    in_use: &BTreeSet<String>,
) -> Result<()> {
    let mut revisions = list(api, pipeline).await?;
    revisions.sort_by_key(|r| std::cmp::Reverse(r.revision));
    for old in revisions.into_iter().skip(keep.max(1)) {
        let name = old.metadata.name.unwrap_or_default();
        if in_use.contains(&name) {
            continue;
        }
        match api.delete(&name, &DeleteParams::default()).await {
            Ok(_) => tracing::info!(pipeline, revision = %name, "pruned an old revision"),
            Err(error) if is_not_found(&error) => {}
            Err(error) => return Err(error.into()),
        }
    }
    Ok(())
}
