//! The shared-cache wiring exactly as the operator runs it ([`Feeds`] and
//! [`crate::controllers::run`]), fed with events instead of watches and reconciled by
//! reconcilers that record what they see. More events than the fan-out buffer holds pass
//! through every watch: a subscription nobody polls stops its watch, and the caches and
//! controllers behind it with it. Time is paused, so a wait gives up only once nothing can
//! move any more.

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::Stream;
use k8s_openapi::api::apps::v1::ControllerRevision;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use kube::ResourceExt;
use kube::runtime::controller::Action;
use kube::runtime::watcher::{self, Event};
use synqx_api::{Connection, Pipeline, PipelineRun};
use tokio::sync::{mpsc, watch};

use super::*;
use crate::controllers::{Reconciler, Reconcilers};

/// Objects of each kind in the first list, and created after it: each more than the buffer.
const LISTED: usize = FAN_OUT_BUFFER + 100;
const CREATED: usize = FAN_OUT_BUFFER + 100;

#[derive(Default)]
struct Seen {
    pipelines: Mutex<BTreeSet<String>>,
    runs: Mutex<BTreeSet<String>>,
    connections: Mutex<BTreeSet<String>>,
    /// Objects whose reconciliation panicked, as the `panicked` hook was told.
    failed: Mutex<BTreeSet<String>>,
}

/// The object whose reconciliation panics in [`a_panicking_reconciliation_fails_its_object_and_the_rest_go_on`].
const PANICS: &str = "p7";

fn count(set: &Mutex<BTreeSet<String>>) -> usize {
    set.lock().map(|s| s.len()).unwrap_or_default()
}

fn note(set: &Mutex<BTreeSet<String>>, name: String) {
    if let Ok(mut set) = set.lock() {
        set.insert(name);
    }
}

/// Which record of [`Seen`] a kind's reconciler writes.
trait Recorded: kube::Resource + Send + Sync + 'static {
    fn record(seen: &Seen) -> &Mutex<BTreeSet<String>>;
}

impl Recorded for Pipeline {
    fn record(seen: &Seen) -> &Mutex<BTreeSet<String>> {
        &seen.pipelines
    }
}

impl Recorded for PipelineRun {
    fn record(seen: &Seen) -> &Mutex<BTreeSet<String>> {
        &seen.runs
    }
}

impl Recorded for Connection {
    fn record(seen: &Seen) -> &Mutex<BTreeSet<String>> {
        &seen.connections
    }
}

fn recorder<K: Recorded>() -> Reconciler<K, Seen> {
    Reconciler {
        reconcile: |object, seen| {
            Box::pin(async move {
                note(K::record(&seen), object.name_any());
                Ok(Action::await_change())
            })
        },
        error_policy: |_, _, _| Action::await_change(),
        panicked: |object, message, seen| {
            Box::pin(async move { note(&seen.failed, format!("{}: {message}", object.name_any())) })
        },
    }
}

fn recording() -> Reconcilers<Seen> {
    Reconcilers {
        pipelines: recorder(),
        runs: recorder(),
        connections: recorder(),
    }
}

/// Records like [`recording`], but the reconciliation of Pipeline [`PANICS`] panics after it
/// was recorded (as an arithmetic overflow on a hostile object would).
fn panicking() -> Reconcilers<Seen> {
    let mut reconcilers = recording();
    reconcilers.pipelines.reconcile = |object, seen| {
        Box::pin(async move {
            note(&seen.pipelines, object.name_any());
            tokio::task::yield_now().await;
            if object.name_any() == PANICS {
                panic!("attempt to add with overflow");
            }
            Ok(Action::await_change())
        })
    };
    reconcilers
}

fn meta(name: String) -> ObjectMeta {
    ObjectMeta {
        name: Some(name),
        namespace: Some("ns".into()),
        ..Default::default()
    }
}

fn pipeline(i: usize) -> Pipeline {
    Pipeline {
        metadata: meta(format!("p{i}")),
        spec: Default::default(),
        status: None,
    }
}

fn run(i: usize) -> PipelineRun {
    let mut run = PipelineRun {
        metadata: meta(format!("r{i}")),
        spec: Default::default(),
        status: None,
    };
    run.spec.pipeline_ref.name = format!("p{i}");
    run
}

fn connection(i: usize) -> Connection {
    Connection {
        // Another namespace than the Pipelines: a Connection event maps to the Pipelines of
        // its namespace that name it, which is not what this test counts.
        metadata: ObjectMeta {
            namespace: Some("connections".into()),
            ..meta(format!("c{i}"))
        },
        spec: Default::default(),
        status: None,
    }
}

fn job(i: usize) -> Job {
    let owner = OwnerReference {
        api_version: "synqx.io/v1alpha1".into(),
        kind: "PipelineRun".into(),
        name: format!("r{i}"),
        uid: format!("uid-{i}"),
        controller: Some(true),
        ..Default::default()
    };
    Job {
        metadata: ObjectMeta {
            labels: Some([(crate::job::LABEL_RUN.to_string(), format!("r{i}"))].into()),
            owner_references: Some(vec![owner]),
            ..meta(format!("j{i}"))
        },
        ..Default::default()
    }
}

fn pod(i: usize) -> Pod {
    Pod {
        metadata: ObjectMeta {
            labels: Some([(JOB_NAME.to_string(), format!("j{i}"))].into()),
            ..meta(format!("j{i}-pod"))
        },
        ..Default::default()
    }
}

fn revision(i: usize) -> ControllerRevision {
    ControllerRevision {
        metadata: ObjectMeta {
            labels: Some([(LABEL_PIPELINE.to_string(), format!("p{i}"))].into()),
            ..meta(format!("p{i}-rev"))
        },
        data: None,
        revision: 1,
    }
}

/// A watch as the reflector sees it: a first list of `LISTED` objects, then `CREATED`
/// objects applied one by one, then silence (a watch does not end).
fn watch_of<K: Send + 'static>(
    make: fn(usize) -> K,
) -> impl Stream<Item = watcher::Result<Event<K>>> + Send + 'static {
    let (tx, rx) = mpsc::unbounded_channel();
    let mut events = vec![Event::Init];
    events.extend((0..LISTED).map(|i| Event::InitApply(make(i))));
    events.push(Event::InitDone);
    events.extend((LISTED..LISTED + CREATED).map(|i| Event::Apply(make(i))));
    for event in events {
        // The receiver is alive: it is returned below.
        let _ = tx.send(Ok(event));
    }
    // Keeping the sender open keeps the stream open.
    futures::stream::unfold((rx, tx), |(mut rx, tx)| async move {
        rx.recv().await.map(|event| (event, (rx, tx)))
    })
}

/// Wiring that stopped moving: of `of` objects of each kind, how many each cache holds and
/// each controller reconciled.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
#[error("stuck, of {of} each: {reached:?}")]
struct Stuck {
    of: usize,
    reached: Vec<(&'static str, usize)>,
}

/// Runs the wiring until every cache holds every object and every controller reconciled
/// every object of its kind; `Err` with what was reached when nothing moves any more.
async fn drive(feeds: Feeds) -> Result<(), Stuck> {
    let (_lead, leading) = watch::channel(true);
    drive_with(feeds, recording(), Arc::new(Seen::default()), leading).await
}

/// How many objects each cache holds.
fn cached(caches: &Caches) -> [(&'static str, usize); 6] {
    [
        ("Pipelines cached", caches.pipelines.state().len()),
        ("runs cached", caches.runs.state().len()),
        ("Connections cached", caches.connections.state().len()),
        ("Jobs cached", caches.jobs.state().len()),
        ("pods cached", caches.pods.state().len()),
        ("revisions cached", caches.revisions.state().len()),
    ]
}

async fn drive_with(
    feeds: Feeds,
    reconcilers: Reconcilers<Seen>,
    seen: Arc<Seen>,
    leading: Leading,
) -> Result<(), Stuck> {
    let caches = feeds.caches();
    let triggers = feeds.triggers(&leading);
    let watches = feeds.follow(Sources {
        pipelines: watch_of(pipeline),
        runs: watch_of(run),
        connections: watch_of(connection),
        jobs: watch_of(job),
        pods: watch_of(pod),
        revisions: watch_of(revision),
    });
    let (_stop_tx, stop) = watch::channel(false);
    let controllers = tokio::spawn(crate::controllers::run(
        triggers,
        &caches,
        reconcilers,
        seen.clone(),
        futures::stream::pending(),
        stop,
    ));
    let all = LISTED + CREATED;
    let state = || {
        let mut state = cached(&caches).to_vec();
        state.extend([
            ("Pipelines reconciled", count(&seen.pipelines)),
            ("runs reconciled", count(&seen.runs)),
            ("Connections reconciled", count(&seen.connections)),
        ]);
        state
    };
    let done = async {
        while state().iter().any(|(_, n)| *n < all) {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    };
    let outcome = tokio::time::timeout(Duration::from_secs(60), done).await;
    controllers.abort();
    for watch in watches {
        watch.abort();
    }
    outcome.map_err(|_| Stuck {
        of: all,
        reached: state(),
    })
}

#[tokio::test(start_paused = true)]
async fn every_subscription_is_polled_so_no_watch_stalls() {
    let feeds = Feeds::new();
    let result = drive(feeds).await;
    assert_eq!(result, Ok(()));
}

#[tokio::test(start_paused = true)]
async fn a_panicking_reconciliation_fails_its_object_and_the_rest_go_on() {
    let seen = Arc::new(Seen::default());
    let (_lead, leading) = watch::channel(true);
    let result = drive_with(Feeds::new(), panicking(), seen.clone(), leading).await;
    assert_eq!(result, Ok(()), "every other object is still reconciled");
    let failed: Vec<String> = seen
        .failed
        .lock()
        .map(|f| f.iter().cloned().collect())
        .unwrap_or_default();
    assert_eq!(failed, [format!("{PANICS}: attempt to add with overflow")]);
}

#[tokio::test(start_paused = true)]
async fn a_subscription_nobody_polls_stalls_its_watch_and_the_test_sees_it() {
    let feeds = Feeds::new();
    let unpolled = feeds.runs.subscribe();
    let result = drive(feeds).await;
    drop(unpolled);
    let error = result.expect_err("an unpolled subscription must stall the runs' watch");
    // The list reached the cache; nothing after the buffer filled did.
    assert!(error.reached.contains(&("runs cached", LISTED)), "{error}");
}

#[tokio::test(start_paused = true)]
async fn a_standby_keeps_its_caches_current_and_reconciles_everything_once_it_leads() {
    let feeds = Feeds::new();
    let caches = feeds.caches();
    let seen = Arc::new(Seen::default());
    let (lead, leading) = watch::channel(false);
    let reconciled_before_leading = tokio::spawn({
        let seen = seen.clone();
        async move {
            // More events than the buffer holds went through every watch although no
            // controller reads its subscriptions yet.
            while cached(&caches).iter().any(|(_, n)| *n < LISTED + CREATED) {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            // Time is paused: this sleep ends only once every task is idle, the
            // controllers included, so whatever they would reconcile they have.
            tokio::time::sleep(Duration::from_secs(5)).await;
            let reconciled = [&seen.pipelines, &seen.runs, &seen.connections].map(count);
            let _ = lead.send(true);
            reconciled
        }
    });
    let result = drive_with(feeds, recording(), seen, leading).await;
    assert_eq!(result, Ok(()), "once it leads, every object is reconciled");
    assert_eq!(reconciled_before_leading.await.ok(), Some([0, 0, 0]));
}

#[tokio::test(start_paused = true)]
async fn the_runs_tap_gets_every_event_in_order_once_the_store_holds_it() {
    let mut feeds = Feeds::new();
    // A small tap: a slow reader holds the watch back rather than losing events.
    let mut tap = feeds.runs.tap(8);
    let runs = feeds.caches().runs;
    let read = tokio::spawn(async move {
        let mut events = Vec::new();
        while events.len() < LISTED + CREATED + 2 {
            let Some(event) = tap.recv().await else { break };
            let cached = |run: &PipelineRun| Caches::get(&runs, "ns", &run.name_any()).is_some();
            events.push(match event {
                Event::Init => "init".to_string(),
                // A relist's objects reach the store together, at its end.
                Event::InitApply(run) => format!("listed {}", run.name_any()),
                Event::InitDone => format!(
                    "listed, r0 cached {}",
                    Caches::get(&runs, "ns", "r0").is_some()
                ),
                Event::Apply(run) => format!("applied {} cached {}", run.name_any(), cached(&run)),
                Event::Delete(run) => format!("deleted {}", run.name_any()),
            });
        }
        events
    });
    assert_eq!(drive(feeds).await, Ok(()));
    let mut expected = vec!["init".to_string()];
    expected.extend((0..LISTED).map(|i| format!("listed r{i}")));
    expected.push("listed, r0 cached true".into());
    expected.extend((LISTED..LISTED + CREATED).map(|i| format!("applied r{i} cached true")));
    assert_eq!(read.await.ok(), Some(expected));
}

#[tokio::test(start_paused = true)]
async fn the_indexes_find_a_runs_jobs_and_pods_and_a_pipelines_runs_and_revisions() {
    let feeds = Feeds::new();
    let caches = feeds.caches();
    assert_eq!(drive(feeds).await, Ok(()));
    let names = |objects: Vec<String>| objects;
    let jobs = names(
        caches
            .jobs_of("ns", "r7")
            .iter()
            .map(|j| j.name_any())
            .collect(),
    );
    assert_eq!(jobs, ["j7"]);
    let pods = names(
        caches
            .pods_of("ns", "j7")
            .iter()
            .map(|p| p.name_any())
            .collect(),
    );
    assert_eq!(pods, ["j7-pod"]);
    let runs = names(
        caches
            .runs_of("ns", "p7")
            .iter()
            .map(|r| r.name_any())
            .collect(),
    );
    assert_eq!(runs, ["r7"]);
    assert_eq!(caches.revisions_of("ns", "p7").len(), 1);
    assert!(caches.jobs_of("other", "r7").is_empty());
}

#[test]
fn cached_objects_lose_what_no_reconcile_reads() {
    let mut job = job(1);
    job.metadata.managed_fields = Some(vec![Default::default()]);
    job.metadata.annotations = Some([(LAST_APPLIED.to_string(), "{}".to_string())].into());
    let mut spec = k8s_openapi::api::batch::v1::JobSpec::default();
    spec.template.spec = Some(Default::default());
    job.spec = Some(spec);
    strip_job(&mut job);
    assert_eq!(job.metadata.managed_fields, None);
    assert_eq!(job.metadata.annotations, Some(Default::default()));
    assert_eq!(job.spec.map(|s| s.template.spec), Some(None));
    assert!(job.metadata.labels.is_some(), "labels index the Job");

    let mut pod = pod(1);
    pod.spec = Some(Default::default());
    strip_pod(&mut pod);
    assert_eq!(pod.spec, None);

    let mut revision = revision(1);
    revision.data = Some(k8s_openapi::apimachinery::pkg::runtime::RawExtension(
        serde_json::json!({"steps": []}),
    ));
    strip_revision(&mut revision);
    assert_eq!(revision.data, None);
    assert_eq!(revision.revision, 1);
}
