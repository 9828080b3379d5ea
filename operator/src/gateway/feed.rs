//! The gateway's own watches of Pipelines and PipelineRuns: on every replica (not only the
//! leader), so any replica behind the Service answers. Each change of a run's status goes
//! to the hub, which turns it into step transitions and counters, and ends the stored logs
//! of the step attempts that ended.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::core::v1::Pod;
use kube::core::PartialObjectMeta;
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Client, ResourceExt};
use synqx_api::{Pipeline, PipelineRun};
use tokio::task::JoinHandle;

use synqx_api::gateway::RunView;
use synqx_web::Hub;

use super::logs::Logs;
use crate::caches::MANAGED;

/// kubectl's copy of the applied object: as large as the spec, never shown.
const LAST_APPLIED: &str = "kubectl.kubernetes.io/last-applied-configuration";

/// What the gateway reads: one store of each kind per scope (a namespace, or all).
#[derive(Clone, Default)]
pub struct Stores {
    scopes: Vec<Scope>,
}

/// The stores of one scope.
#[derive(Clone)]
pub struct Scope {
    pub namespace: Option<String>,
    pub pipelines: Store<Pipeline>,
    pub runs: Store<PipelineRun>,
    /// The names and UIDs of the operator's pods: a token bound to a pod is trusted again
    /// without a review while its pod is here ([`super::telemetry`]).
    pub pods: Store<PartialObjectMeta<Pod>>,
}

impl Stores {
    fn scope(&self, namespace: &str) -> Option<&Scope> {
        self.scopes
            .iter()
            .find(|scope| scope.namespace.as_deref().is_none_or(|s| s == namespace))
    }

    /// The stores that hold `namespace`, if this operator serves it.
    pub fn of(&self, namespace: &str) -> Option<(&Store<Pipeline>, &Store<PipelineRun>)> {
        self.scope(namespace).map(|s| (&s.pipelines, &s.runs))
    }

    /// Whether the pod `name` of `namespace` with UID `uid` is in the pod watch.
    pub fn has_pod(&self, namespace: &str, name: &str, uid: &str) -> bool {
        self.scope(namespace)
            .and_then(|s| s.pods.get(&ObjectRef::new(name).within(namespace)))
            .is_some_and(|pod| pod.metadata.uid.as_deref() == Some(uid))
    }

    /// Waits until every store has listed once.
    pub async fn ready(&self) -> Result<(), reflector::store::WriterDropped> {
        for scope in &self.scopes {
            scope.pipelines.wait_until_ready().await?;
            scope.runs.wait_until_ready().await?;
        }
        Ok(())
    }

    /// Stores filled by a test rather than by watches.
    #[cfg(test)]
    pub fn of_scopes(scopes: Vec<Scope>) -> Self {
        Self { scopes }
    }
}

/// The view of a run followers get.
pub fn view(run: &PipelineRun) -> RunView {
    RunView {
        name: run.name_any(),
        namespace: run.namespace().unwrap_or_default(),
        pipeline: run.spec.pipeline_ref.name.clone(),
        created: run
            .metadata
            .creation_timestamp
            .as_ref()
            .map(|t| t.0.to_string()),
        status: run.status.clone().unwrap_or_default(),
    }
}

/// Starts the watches of every scope; their tasks run until aborted.
pub fn start(
    client: &Client,
    scopes: &[Option<String>],
    hub: Arc<Hub>,
    logs: Option<Arc<Logs>>,
) -> (Stores, Vec<JoinHandle<()>>) {
    let mut stores = Stores::default();
    let mut tasks = Vec::new();
    for scope in scopes {
        let (pipelines, pipelines_writer) = reflector::store();
        let (runs, runs_writer) = reflector::store();
        let pipeline_api: Api<Pipeline> = api(client, scope.as_deref());
        let pipeline_stream = watcher(pipeline_api, watcher::Config::default())
            .default_backoff()
            .modify(strip)
            .reflect(pipelines_writer);
        tasks.push(tokio::spawn(async move {
            let mut stream = std::pin::pin!(pipeline_stream);
            while let Some(event) = stream.next().await {
                if let Err(error) = event {
                    tracing::warn!(%error, "the gateway's watch of Pipelines failed; retrying");
                }
            }
        }));
        let run_api: Api<PipelineRun> = api(client, scope.as_deref());
        let run_stream = watcher(run_api, watcher::Config::default())
            .default_backoff()
            .modify(strip)
            .reflect(runs_writer);
        let feed_hub = hub.clone();
        let feed_logs = logs.clone();
        let namespace = scope.clone();
        tasks.push(tokio::spawn(async move {
            let mut stream = std::pin::pin!(run_stream);
            let mut listed = HashSet::new();
            while let Some(event) = stream.next().await {
                match event {
                    Ok(watcher::Event::Init) => listed.clear(),
                    Ok(watcher::Event::InitApply(run)) => {
                        let view = view(&run);
                        listed.insert((view.namespace.clone(), view.name.clone()));
                        feed_hub.observe(view);
                    }
                    Ok(watcher::Event::InitDone) => {
                        feed_hub.retain(namespace.as_deref(), &listed);
                        listed.clear();
                    }
                    Ok(watcher::Event::Apply(run)) => {
                        let view = view(&run);
                        if let Some(logs) = &feed_logs {
                            logs.finish_ended(&view.namespace, &view.name, Some(&view)).await;
                        }
                        feed_hub.observe(view);
                    }
                    Ok(watcher::Event::Delete(run)) => {
                        let (namespace, name) = (run.namespace().unwrap_or_default(), run.name_any());
                        if let Some(logs) = &feed_logs {
                            logs.finish_ended(&namespace, &name, None).await;
                        }
                        feed_hub.forget(&namespace, &name);
                    }
                    Err(error) => {
                        tracing::warn!(%error, "the gateway's watch of PipelineRuns failed; retrying");
                    }
                }
            }
        }));
        // Metadata only, of the operator's pods: all a binding needs, and small.
        let (pods, pods_writer) = reflector::store();
        let pod_api: Api<PartialObjectMeta<Pod>> = api(client, scope.as_deref());
        let pod_stream = watcher(pod_api, watcher::Config::default().labels(MANAGED))
            .default_backoff()
            .modify(strip)
            .reflect(pods_writer);
        tasks.push(tokio::spawn(async move {
            let mut stream = std::pin::pin!(pod_stream);
            while let Some(event) = stream.next().await {
                if let Err(error) = event {
                    tracing::warn!(%error, "the gateway's watch of step pods failed; retrying");
                }
            }
        }));
        stores.scopes.push(Scope {
            namespace: scope.clone(),
            pipelines,
            runs,
            pods,
        });
    }
    // Counters of every run, coalesced to one message a second at most.
    tasks.push(tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            hub.flush_counters();
        }
    }));
    (stores, tasks)
}

/// Drops what the gateway never shows and costs memory: managed fields and kubectl's copy.
fn strip<K: kube::Resource>(object: &mut K) {
    object.managed_fields_mut().clear();
    object.annotations_mut().remove(LAST_APPLIED);
}

fn api<K>(client: &Client, namespace: Option<&str>) -> Api<K>
where
    K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope>,
    K::DynamicType: Default,
{
    match namespace {
        Some(ns) => Api::namespaced(client.clone(), ns),
        None => Api::all(client.clone()),
    }
}
