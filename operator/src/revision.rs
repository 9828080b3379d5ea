//! Compiled plans as `apps/v1 ControllerRevision`s owned by their Pipeline: immutable, one
//! per distinct plan, so a run pinned to one keeps it however the Pipeline changes.

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex};

use k8s_openapi::api::apps::v1::ControllerRevision;
use k8s_openapi::apimachinery::pkg::runtime::RawExtension;
use kube::api::{DeleteParams, ObjectMeta, PostParams};
use kube::{Api, Resource};
use synqx_api::Pipeline;
use synqx_api::dag::Plan;

use crate::caches::Caches;
use crate::error::{Error, Result, is_conflict, is_not_found};
use crate::job::LABEL_PIPELINE;
use crate::names;

/// Stores `plan` for `pipeline` unless a revision of it exists; returns the revision's name.
/// What exists comes from the cache; a revision created meanwhile answers 409, which is the
/// same outcome. A plan stored here is kept in `plans` as written.
pub async fn store(
    api: &Api<ControllerRevision>,
    caches: &Caches,
    plans: &Plans,
    pipeline: &Pipeline,
    plan: &Plan,
) -> Result<String> {
    let pipeline_name = pipeline.metadata.name.clone().unwrap_or_default();
    let namespace = pipeline.metadata.namespace.clone().unwrap_or_default();
    let name = names::revision_name(&pipeline_name, &plan.hash);
    if Caches::get(&caches.revisions, &namespace, &name).is_some() {
        return Ok(name);
    }
    let existing = caches.revisions_of(&namespace, &names::fit(&pipeline_name));
    let number = existing
        .iter()
        .map(|r| r.revision)
        .max()
        .unwrap_or(0)
        .saturating_add(1);
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
        Ok(_) => {
            plans.remember(&namespace, &name, plan);
            Ok(name)
        }
        Err(error) if is_conflict(&error) => Ok(name),
        Err(error) => Err(error.into()),
    }
}

/// Most plans kept in memory; beyond, the cache starts over (plans are read again on use).
const PLANS_KEPT: usize = 512;

/// The plans of revisions read so far. A revision never changes, so a plan read once is
/// good for every later reconcile of every run that pinned it.
#[derive(Default)]
pub struct Plans {
    read: Mutex<HashMap<(String, String), Arc<Plan>>>,
}

impl Plans {
    /// The plan revision `name` of `namespace` holds; `None` when the revision is gone.
    pub async fn load(
        &self,
        api: &Api<ControllerRevision>,
        namespace: &str,
        name: &str,
    ) -> Result<Option<Arc<Plan>>> {
        let key = (namespace.to_string(), name.to_string());
        if let Some(plan) = self.lock().get(&key) {
            return Ok(Some(plan.clone()));
        }
        let Some(plan) = load(api, name).await? else {
            return Ok(None);
        };
        let plan = Arc::new(plan);
        self.keep(key, plan.clone());
        Ok(Some(plan))
    }

    /// Keeps the plan just written as revision `name`, so the first pass of each run that
    /// pins it reads no revision from the API server (a wave of runs starting together would
    /// otherwise spend one request each before their first Job). Only a plan this operator
    /// wrote itself: the hash in a revision's name ignores the order of steps, so a plan
    /// compiled later may differ from the stored one in that order.
    fn remember(&self, namespace: &str, name: &str, plan: &Plan) {
        let key = (namespace.to_string(), name.to_string());
        if !self.lock().contains_key(&key) {
            self.keep(key, Arc::new(plan.clone()));
        }
    }

    fn keep(&self, key: (String, String), plan: Arc<Plan>) {
        let mut read = self.lock();
        if read.len() >= PLANS_KEPT {
            read.clear();
        }
        read.insert(key, plan);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<(String, String), Arc<Plan>>> {
        self.read
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// The plan a revision holds.
async fn load(api: &Api<ControllerRevision>, name: &str) -> Result<Option<Plan>> {
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

/// Deletes the oldest revisions beyond `keep`, never the current one or one a run still uses.
pub async fn prune(
    api: &Api<ControllerRevision>,
    caches: &Caches,
    namespace: &str,
    pipeline: &str,
    keep: usize,
    in_use: &BTreeSet<String>,
) -> Result<()> {
    let mut revisions = caches.revisions_of(namespace, &names::fit(pipeline));
    revisions.sort_by_key(|r| std::cmp::Reverse(r.revision));
    for old in revisions.into_iter().skip(keep.max(1)) {
        let name = old.metadata.name.clone().unwrap_or_default();
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

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use hyper::body::Bytes;
    use synqx_api::validate::{InputFile, validate};

    use super::*;
    use crate::caches::Feeds;

    const YAML: &str = r#"
apiVersion: synqx.io/v1alpha1
kind: Connection
metadata: {name: lake}
spec:
  filesystem: {path: /lake}
---
apiVersion: synqx.io/v1alpha1
kind: Pipeline
metadata: {name: orders, namespace: etl, uid: uid-orders}
spec:
  steps:
    - name: copy
      sync:
        source: {connection: lake, asset: {fqn: in.csv}}
        destination: {connection: lake, asset: {fqn: out.csv}}
"#;

    /// A run's first pass after its Pipeline's plan was stored reads the plan from memory,
    /// not from the API server: the fake server counts every GET, and would answer one with
    /// a revision whose plan differs.
    #[tokio::test]
    async fn a_stored_plan_is_read_without_asking_the_api_server() {
        let report = validate(&[InputFile {
            name: "p.yaml",
            text: YAML,
        }]);
        assert!(report.is_valid(), "{:?}", report.problems);
        let plan = &report.plans["orders"];
        let pipeline = report.bundle.pipeline("orders").cloned();
        let pipeline = pipeline.unwrap_or_else(|| panic!("no Pipeline orders in {YAML}"));
        let gets = Arc::new(AtomicUsize::new(0));
        let seen = gets.clone();
        let client = crate::fake_api::client(move |method: String, body: Bytes| {
            let seen = seen.clone();
            async move {
                if method == "GET" {
                    seen.fetch_add(1, Ordering::SeqCst);
                    let gone = br#"{"kind":"Status","apiVersion":"v1","status":"Failure","reason":"NotFound","code":404,"message":"not found"}"#;
                    return (404, Bytes::from_static(gone));
                }
                // The created revision, as the API server echoes it.
                (201, body)
            }
        });
        let api: Api<ControllerRevision> = Api::namespaced(client, "etl");
        let caches = Feeds::new().caches();
        let plans = Plans::default();
        let name = store(&api, &caches, &plans, &pipeline, plan)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        let read = plans
            .load(&api, "etl", &name)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(read.as_deref(), Some(plan));
        assert_eq!(gets.load(Ordering::SeqCst), 0, "the plan was asked for");
        // A revision this operator did not write is read from the API server.
        let other = plans
            .load(&api, "etl", "orders-other")
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        assert!(other.is_none());
        assert_eq!(gets.load(Ordering::SeqCst), 1);
    }
}
