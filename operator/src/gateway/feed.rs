//! What the gateway reads of the operator's watches ([`crate::caches`]), which run on every
//! replica (not only the leader) so that any replica behind the Service answers: the stores
//! of Pipelines, PipelineRuns and step pods, and every event of the runs' watch. Each change
//! of a run's status goes to the hub, which turns it into step transitions and counters,
//! after the stored logs of the step attempts that ended are finished ([`super::finisher`]).

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::Pod;
use kube::ResourceExt;
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::watcher;
use synqx_api::{Pipeline, PipelineRun};
use tokio::task::JoinHandle;

use synqx_api::gateway::RunView;
use synqx_web::Hub;

use super::finisher::{Change, Finisher};
use super::logs::Logs;
use crate::caches::Tap;

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
    /// The operator's pods: a token bound to a pod is trusted again without a review while
    /// its pod (by name and UID) is here ([`super::telemetry`]).
    pub pods: Store<Pod>,
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

/// Follows the run events of every scope (taps of the operator's watches, [`Feed::tap`]);
/// the tasks run until aborted.
///
/// [`Feed::tap`]: crate::caches::Feed::tap
pub fn start(
    scopes: Vec<(Scope, Tap<PipelineRun>)>,
    hub: Arc<Hub>,
    logs: Option<Arc<Logs>>,
) -> (Stores, Vec<JoinHandle<()>>) {
    let mut stores = Stores::default();
    let mut tasks = Vec::new();
    let finisher = Arc::new(Finisher::new(hub.clone(), logs));
    for (scope, mut events) in scopes {
        let finisher = finisher.clone();
        let namespace = scope.namespace.clone();
        tasks.push(tokio::spawn(async move {
            let mut listed = HashSet::new();
            while let Some(event) = events.recv().await {
                match event {
                    watcher::Event::Init => listed.clear(),
                    watcher::Event::InitApply(run) => {
                        let view = view(&run);
                        listed.insert((view.namespace.clone(), view.name.clone()));
                        finisher.apply(Change::seen(view));
                    }
                    watcher::Event::InitDone => {
                        finisher.retain(namespace.as_deref(), &listed);
                        listed.clear();
                    }
                    watcher::Event::Apply(run) => finisher.apply(Change::seen(view(&run))),
                    watcher::Event::Delete(run) => finisher.apply(Change::Gone {
                        namespace: run.namespace().unwrap_or_default(),
                        name: run.name_any(),
                    }),
                }
            }
        }));
        stores.scopes.push(scope);
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
