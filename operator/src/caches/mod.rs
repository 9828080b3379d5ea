//! The operator's view of the cluster: one watch per kind and scope, owned here rather than
//! by a controller, cached in a store every controller reads, and fanned out to the
//! controllers it triggers. Reconciles read related objects from these caches (through an
//! [`Index`] where a scan would grow with runs × Jobs) and never list.
//!
//! The order matters, and [`Feeds`] enforces it by ownership: every subscription is taken
//! ([`Feeds::triggers`]) before the watches start ([`Feeds::watch`] consumes the feeds). A
//! subscriber that is never polled stops its watch once the fan-out buffer is full, and with
//! it every other subscriber of that kind: the wiring test drives more events than the
//! buffer holds through every controller.

mod gate;
mod index;
mod progress_only;
#[cfg(test)]
mod tests;

use std::sync::Arc;
use std::time::Duration;

use futures::{Stream, StreamExt, TryStreamExt};
use k8s_openapi::api::apps::v1::ControllerRevision;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{Pod, PodTemplateSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Client, Resource, ResourceExt};
use serde::de::DeserializeOwned;
use synqx_api::{Connection, Pipeline, PipelineRun};

pub use gate::Leading;
pub use index::Index;

use crate::job::{LABEL_PIPELINE, LABEL_RUN};

/// Events a watch may hold back for its slowest subscriber before it waits: enough for the
/// bursts of a relist (each cached object is announced once) to pass in a few rounds.
pub const FAN_OUT_BUFFER: usize = 1024;
/// Objects per page of the initial lists: bounds what a list holds in memory at once.
pub const PAGE_SIZE: u32 = 250;
/// The label of every Job and pod the operator creates.
pub const MANAGED: &str = "app.kubernetes.io/managed-by=synqx-operator";
/// The label the Job controller puts on the pods of a Job.
const JOB_NAME: &str = "job-name";
/// kubectl's copy of the applied object: as large as the spec, never read here.
const LAST_APPLIED: &str = "kubectl.kubernetes.io/last-applied-configuration";
/// How often a subscriber looks at its queue even without a wake-up (see [`subscribe`]).
const SUBSCRIBER_WAKE: Duration = Duration::from_secs(1);

/// The caches of one scope (a namespace, or all of them), as reconciles read them.
#[derive(Clone)]
pub struct Caches {
    pub pipelines: Store<Pipeline>,
    pub runs: Store<PipelineRun>,
    pub connections: Store<Connection>,
    /// The operator's Jobs (steps and connection checks), without their pod template.
    pub jobs: Store<Job>,
    /// The pods of those Jobs, metadata and status only.
    pub pods: Store<Pod>,
    /// Plan revisions, without the plan (`data`): what pruning and pinning need.
    pub revisions: Store<ControllerRevision>,
    runs_by_pipeline: Index<PipelineRun>,
    jobs_by_run: Index<Job>,
    pods_by_job: Index<Pod>,
    revisions_by_pipeline: Index<ControllerRevision>,
}

impl Caches {
    /// The runs of a Pipeline.
    pub fn runs_of(&self, namespace: &str, pipeline: &str) -> Vec<Arc<PipelineRun>> {
        lookup(&self.runs, &self.runs_by_pipeline, namespace, pipeline)
    }

    /// The step Jobs of a run (`run` as its label holds it: [`crate::names::fit`]).
    pub fn jobs_of(&self, namespace: &str, run: &str) -> Vec<Arc<Job>> {
        lookup(&self.jobs, &self.jobs_by_run, namespace, run)
    }

    /// The pods of a Job.
    pub fn pods_of(&self, namespace: &str, job: &str) -> Vec<Arc<Pod>> {
        lookup(&self.pods, &self.pods_by_job, namespace, job)
    }

    /// The plan revisions of a Pipeline (`pipeline` as its label holds it).
    pub fn revisions_of(&self, namespace: &str, pipeline: &str) -> Vec<Arc<ControllerRevision>> {
        lookup(
            &self.revisions,
            &self.revisions_by_pipeline,
            namespace,
            pipeline,
        )
    }

    /// One object of a store by namespace and name.
    pub fn get<K>(store: &Store<K>, namespace: &str, name: &str) -> Option<Arc<K>>
    where
        K: Resource<DynamicType = ()> + Clone,
    {
        store.get(&ObjectRef::new(name).within(namespace))
    }

    /// Waits until every watch has listed once: a reconcile that read an empty cache would
    /// take a run's Jobs for missing.
    pub async fn wait_until_ready(&self) -> Result<(), reflector::store::WriterDropped> {
        self.pipelines.wait_until_ready().await?;
        self.runs.wait_until_ready().await?;
        self.connections.wait_until_ready().await?;
        self.jobs.wait_until_ready().await?;
        self.pods.wait_until_ready().await?;
        self.revisions.wait_until_ready().await
    }
}

fn lookup<K>(store: &Store<K>, index: &Index<K>, namespace: &str, key: &str) -> Vec<Arc<K>>
where
    K: Resource<DynamicType = ()> + Clone,
{
    index
        .names(namespace, key)
        .iter()
        .filter_map(|name| Caches::get(store, namespace, name))
        .collect()
}

/// The streams that trigger the controllers of one scope, each a subscription to a watch.
pub struct Triggers {
    pub pipelines: Subscription<Pipeline>,
    /// Runs, for the Pipeline controller (a run that starts or ends changes `lastRun`).
    pub runs_for_pipelines: Subscription<PipelineRun>,
    /// Connections, for the Pipeline controller (they make Pipelines valid or not).
    pub connections_for_pipelines: Subscription<Connection>,
    /// Runs, for their controller, without the changes that only moved step counters.
    pub runs: Subscription<PipelineRun>,
    pub jobs_for_runs: Subscription<Job>,
    pub connections: Subscription<Connection>,
    pub jobs_for_connections: Subscription<Job>,
}

/// A stream of the objects a watch applied, in order.
pub type Subscription<K> = std::pin::Pin<Box<dyn Stream<Item = Arc<K>> + Send>>;

/// Watch events as a reader outside the controllers gets them, after the store took them.
pub type Tap<K> = tokio::sync::mpsc::Receiver<watcher::Event<K>>;

/// One watch: the writer of its store, the index that follows it, what it strips, and who
/// else reads its events.
pub struct Feed<K>
where
    K: Resource<DynamicType = ()> + Clone + 'static,
{
    writer: reflector::store::Writer<K>,
    index: Option<Index<K>>,
    strip: fn(&mut K),
    tap: Option<tokio::sync::mpsc::Sender<watcher::Event<K>>>,
}

impl<K> Feed<K>
where
    K: Resource<DynamicType = ()> + Clone + std::fmt::Debug + Send + Sync + 'static,
{
    fn new(strip: fn(&mut K), index: Option<Index<K>>) -> Self {
        let (_, writer) = reflector::store_shared(FAN_OUT_BUFFER);
        Self {
            writer,
            index,
            strip,
            tap: None,
        }
    }

    /// Every event of the watch, in order, each once the store holds it: what the gateway
    /// turns into step transitions needs the deletions and the ends of relists too, which a
    /// subscription does not carry. `capacity` events wait for the reader before the watch
    /// does.
    pub fn tap(&mut self, capacity: usize) -> Tap<K> {
        let (tx, rx) = tokio::sync::mpsc::channel(capacity);
        self.tap = Some(tx);
        rx
    }

    fn reader(&self) -> Store<K> {
        self.writer.as_reader()
    }

    /// A new subscriber. kube's subscriber answers "pending" without asking to be woken when
    /// the object it was told about is already deleted from the store; the periodic wake-up
    /// makes it look at its queue again instead of stalling the watch for everyone.
    fn subscribe(&self) -> Subscription<K> {
        let handle = self
            .writer
            .subscribe()
            .expect("a writer made by store_shared always hands out subscriptions");
        let wake = futures::stream::unfold((), |()| async {
            tokio::time::sleep(SUBSCRIBER_WAKE).await;
            Some((None, ()))
        });
        Box::pin(futures::stream::select(handle.map(Some), wake).filter_map(futures::future::ready))
    }

    /// A subscription for a controller: nothing until this replica leads, then the store's
    /// objects and every change after.
    fn subscribe_when(&self, leading: &Leading) -> Subscription<K> {
        gate::until_leading(self.subscribe(), self.reader(), leading.clone())
    }

    /// Feeds `events` (a watch of the API server, or what a test sends) into the store, the
    /// index and the subscribers, until the events end.
    fn follow<S>(self, events: S) -> impl Future<Output = ()> + Send + 'static
    where
        S: Stream<Item = watcher::Result<watcher::Event<K>>> + Send + 'static,
    {
        let Feed {
            writer,
            index,
            strip,
            tap,
        } = self;
        events
            .modify(strip)
            .map_ok(move |event| {
                if let Some(index) = &index {
                    index.apply(&event);
                }
                event
            })
            .reflect_shared(writer)
            .for_each(move |event| {
                let tap = tap.clone();
                async move {
                    match event {
                        Ok(event) => {
                            if let Some(tap) = tap {
                                // A reader that went away takes nothing from the watch.
                                let _ = tap.send(event).await;
                            }
                        }
                        Err(error) => {
                            let kind = K::kind(&());
                            tracing::warn!(%error, %kind, "watch failed; retrying with backoff");
                        }
                    }
                }
            })
    }

    /// Watches `api` (label-selected when `labels` is set) with backoff on errors.
    fn watch(self, api: Api<K>, labels: Option<&str>) -> impl Future<Output = ()> + Send + 'static
    where
        K: DeserializeOwned,
    {
        let mut config = watcher::Config::default().page_size(PAGE_SIZE);
        if let Some(labels) = labels {
            config = config.labels(labels);
        }
        self.follow(watcher(api, config).default_backoff())
    }
}

/// The six watches of one scope, before they start.
pub struct Feeds {
    pub pipelines: Feed<Pipeline>,
    pub runs: Feed<PipelineRun>,
    pub connections: Feed<Connection>,
    pub jobs: Feed<Job>,
    pub pods: Feed<Pod>,
    pub revisions: Feed<ControllerRevision>,
    runs_by_pipeline: Index<PipelineRun>,
    jobs_by_run: Index<Job>,
    pods_by_job: Index<Pod>,
    revisions_by_pipeline: Index<ControllerRevision>,
}

/// The sources of [`Feeds::follow`]: one event stream per kind.
#[cfg(test)]
pub struct Sources<P, R, C, J, D, V> {
    pub pipelines: P,
    pub runs: R,
    pub connections: C,
    pub jobs: J,
    pub pods: D,
    pub revisions: V,
}

impl Default for Feeds {
    fn default() -> Self {
        Self::new()
    }
}

impl Feeds {
    pub fn new() -> Self {
        let runs_by_pipeline = Index::new(pipeline_of_run);
        let jobs_by_run = Index::new(run_of_job);
        let pods_by_job = Index::new(job_of_pod);
        let revisions_by_pipeline = Index::new(pipeline_of_revision);
        Self {
            pipelines: Feed::new(strip_meta, None),
            runs: Feed::new(strip_meta, Some(runs_by_pipeline.clone())),
            connections: Feed::new(strip_meta, None),
            jobs: Feed::new(strip_job, Some(jobs_by_run.clone())),
            pods: Feed::new(strip_pod, Some(pods_by_job.clone())),
            revisions: Feed::new(strip_revision, Some(revisions_by_pipeline.clone())),
            runs_by_pipeline,
            jobs_by_run,
            pods_by_job,
            revisions_by_pipeline,
        }
    }

    /// What reconciles read. The stores fill once the watches run.
    pub fn caches(&self) -> Caches {
        Caches {
            pipelines: self.pipelines.reader(),
            runs: self.runs.reader(),
            connections: self.connections.reader(),
            jobs: self.jobs.reader(),
            pods: self.pods.reader(),
            revisions: self.revisions.reader(),
            runs_by_pipeline: self.runs_by_pipeline.clone(),
            jobs_by_run: self.jobs_by_run.clone(),
            pods_by_job: self.pods_by_job.clone(),
            revisions_by_pipeline: self.revisions_by_pipeline.clone(),
        }
    }

    /// Every subscription the controllers consume, each passed on once this replica leads
    /// ([`gate`]); from then on each must be polled by one of them.
    pub fn triggers(&self, leading: &Leading) -> Triggers {
        Triggers {
            pipelines: self.pipelines.subscribe_when(leading),
            runs_for_pipelines: self.runs.subscribe_when(leading),
            connections_for_pipelines: self.connections.subscribe_when(leading),
            runs: progress_only::skip_progress_only(self.runs.subscribe_when(leading)),
            jobs_for_runs: self.jobs.subscribe_when(leading),
            connections: self.connections.subscribe_when(leading),
            jobs_for_connections: self.jobs.subscribe_when(leading),
        }
    }

    /// The watches of `scope` (a namespace, or `None` for all), one task each.
    pub fn watch(
        self,
        client: &Client,
        scope: &Option<String>,
    ) -> Vec<tokio::task::JoinHandle<()>> {
        vec![
            tokio::spawn(self.pipelines.watch(scoped(client, scope), None)),
            tokio::spawn(self.runs.watch(scoped(client, scope), None)),
            tokio::spawn(self.connections.watch(scoped(client, scope), None)),
            tokio::spawn(self.jobs.watch(scoped(client, scope), Some(MANAGED))),
            tokio::spawn(self.pods.watch(scoped(client, scope), Some(MANAGED))),
            tokio::spawn(
                self.revisions
                    .watch(scoped(client, scope), Some(LABEL_PIPELINE)),
            ),
        ]
    }

    /// Feeds the given event streams instead of watches, one task each.
    #[cfg(test)]
    pub fn follow<P, R, C, J, D, V>(
        self,
        sources: Sources<P, R, C, J, D, V>,
    ) -> Vec<tokio::task::JoinHandle<()>>
    where
        P: Stream<Item = watcher::Result<watcher::Event<Pipeline>>> + Send + 'static,
        R: Stream<Item = watcher::Result<watcher::Event<PipelineRun>>> + Send + 'static,
        C: Stream<Item = watcher::Result<watcher::Event<Connection>>> + Send + 'static,
        J: Stream<Item = watcher::Result<watcher::Event<Job>>> + Send + 'static,
        D: Stream<Item = watcher::Result<watcher::Event<Pod>>> + Send + 'static,
        V: Stream<Item = watcher::Result<watcher::Event<ControllerRevision>>> + Send + 'static,
    {
        vec![
            tokio::spawn(self.pipelines.follow(sources.pipelines)),
            tokio::spawn(self.runs.follow(sources.runs)),
            tokio::spawn(self.connections.follow(sources.connections)),
            tokio::spawn(self.jobs.follow(sources.jobs)),
            tokio::spawn(self.pods.follow(sources.pods)),
            tokio::spawn(self.revisions.follow(sources.revisions)),
        ]
    }
}

/// An API of every namespace (`None`) or of one.
pub fn scoped<K>(client: &Client, scope: &Option<String>) -> Api<K>
where
    K: Resource<Scope = k8s_openapi::NamespaceResourceScope>,
    <K as Resource>::DynamicType: Default,
{
    match scope {
        Some(ns) => Api::namespaced(client.clone(), ns),
        None => Api::all(client.clone()),
    }
}

fn pipeline_of_run(run: &PipelineRun) -> Option<String> {
    Some(run.spec.pipeline_ref.name.clone())
}

fn run_of_job(job: &Job) -> Option<String> {
    job.labels().get(LABEL_RUN).cloned()
}

fn job_of_pod(pod: &Pod) -> Option<String> {
    pod.labels().get(JOB_NAME).cloned()
}

fn pipeline_of_revision(revision: &ControllerRevision) -> Option<String> {
    revision.labels().get(LABEL_PIPELINE).cloned()
}

/// What no reconcile reads and every object carries: the field managers' records and
/// kubectl's copy of the applied object.
fn strip_meta<K: Resource>(obj: &mut K) {
    strip_metadata(obj.meta_mut());
}

fn strip_metadata(meta: &mut ObjectMeta) {
    meta.managed_fields = None;
    if let Some(annotations) = meta.annotations.as_mut() {
        annotations.remove(LAST_APPLIED);
    }
}

/// A Job as reconciles read it: labels, annotations, status; the pod template is the bulk.
fn strip_job(job: &mut Job) {
    strip_metadata(&mut job.metadata);
    if let Some(spec) = job.spec.as_mut() {
        spec.template = PodTemplateSpec::default();
    }
}

/// A pod as reconciles read it: labels and status (termination messages, waiting reasons).
fn strip_pod(pod: &mut Pod) {
    strip_metadata(&mut pod.metadata);
    pod.spec = None;
}

/// A revision as pinning and pruning read it: its name, number and labels; plans are loaded
/// on demand (and kept by [`crate::revision`]).
fn strip_revision(revision: &mut ControllerRevision) {
    strip_metadata(&mut revision.metadata);
    revision.data = None;
}
