//! Kubernetes Events, published in the background. A reconcile hands its Event to a bounded
//! queue and goes on; one task publishes the queue in order through a client of its own,
//! limited to `--events-qps` requests a second.
//!
//! Why not inline: under fan-out Events were about 40 % of the operator's requests. Each
//! one held its reconcile for a round trip and spent the `--api-qps` budget that creating
//! Jobs and writing status need, so a burst of runs starting together delayed their Jobs.
//! An Event is a note for people reading `kubectl describe`: when the queue is full the
//! newest is dropped and counted (`synqx_events_total{result="dropped"}`), never waited for.

use std::time::Duration;

use k8s_openapi::api::core::v1::ObjectReference;
use kube::Client;
use kube::runtime::events::{Event, Recorder, Reporter};
use prometheus::IntCounterVec;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;

/// The default of `--events-qps`.
pub const DEFAULT_QPS: u32 = 20;
/// Events waiting to be published; a burst beyond it (a thousand runs failing at once) loses
/// its newest Events rather than memory or time.
pub const QUEUED: usize = 1024;
/// How long a stopping operator keeps publishing what is queued.
const FLUSH: Duration = Duration::from_secs(5);

/// Where reconciles send Events. Cheap to clone: every scope's controllers share one queue.
#[derive(Clone)]
pub struct Events {
    queue: mpsc::Sender<(Event, ObjectReference)>,
    counts: IntCounterVec,
}

/// The task that publishes the queue, until `finish`.
pub struct Publisher {
    task: JoinHandle<()>,
    stop: oneshot::Sender<()>,
}

impl Events {
    /// Starts publishing through `client` (which carries the rate limit), `queued` at most
    /// waiting. `counts` is labelled by result: published, failed, dropped.
    pub fn spawn(
        client: Client,
        reporter: Reporter,
        queued: usize,
        counts: IntCounterVec,
    ) -> (Self, Publisher) {
        let (queue, receiver) = mpsc::channel(queued.max(1));
        let (stop, stopped) = oneshot::channel();
        let recorder = Recorder::new(client, reporter);
        let task = tokio::spawn(publish(recorder, receiver, stopped, counts.clone()));
        (Self { queue, counts }, Publisher { task, stop })
    }

    /// Queues an Event about `object`; a full queue drops it.
    pub fn send(&self, object: &ObjectReference, event: Event) {
        if let Err(e) = self.queue.try_send((event, object.clone())) {
            self.counts.with_label_values(&["dropped"]).inc();
            let why = match &e {
                mpsc::error::TrySendError::Full(_) => "the Event queue is full",
                mpsc::error::TrySendError::Closed(_) => "Events are no longer published",
            };
            let (event, _) = e.into_inner();
            tracing::debug!(reason = %event.reason, "{why}; dropping the Event");
        }
    }
}

impl Publisher {
    /// Publishes what is queued now, for at most [`FLUSH`], then stops.
    pub async fn finish(self) {
        let _ = self.stop.send(());
        let mut task = self.task;
        if tokio::time::timeout(FLUSH, &mut task).await.is_err() {
            tracing::warn!("stopped before every queued Event was published");
            task.abort();
        }
    }
}

async fn publish(
    recorder: Recorder,
    mut queue: mpsc::Receiver<(Event, ObjectReference)>,
    mut stop: oneshot::Receiver<()>,
    counts: IntCounterVec,
) {
    let one = |event: Event, object: ObjectReference| {
        let recorder = &recorder;
        let counts = &counts;
        async move {
            match recorder.publish(&event, &object).await {
                Ok(()) => counts.with_label_values(&["published"]).inc(),
                Err(error) => {
                    counts.with_label_values(&["failed"]).inc();
                    tracing::warn!(%error, reason = %event.reason, "publishing an Event failed");
                }
            }
        }
    };
    loop {
        tokio::select! {
            biased;
            _ = &mut stop => break,
            next = queue.recv() => match next {
                Some((event, object)) => one(event, object).await,
                None => return,
            },
        }
    }
    // Stopping: what was queued before the stop is published; `finish` bounds how long.
    queue.close();
    while let Some((event, object)) = queue.recv().await {
        one(event, object).await;
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use hyper::body::Bytes;
    use kube::runtime::events::EventType;
    use prometheus::Opts;
    use tokio::sync::Semaphore;

    use super::*;

    fn event(reason: &str) -> Event {
        Event {
            type_: EventType::Normal,
            reason: reason.into(),
            note: None,
            action: reason.into(),
            secondary: None,
        }
    }

    fn run(name: &str) -> ObjectReference {
        crate::context::reference("synqx.io/v1alpha1", "PipelineRun", "team-a", name)
    }

    fn counts() -> IntCounterVec {
        IntCounterVec::new(Opts::new("events_total", "Events."), &["result"])
            .unwrap_or_else(|error| panic!("a metric: {error}"))
    }

    /// An API server that answers each request once `gate` lets it, echoing the Event it
    /// was sent, and records the Events' reasons in the order they arrived.
    fn server(
        gate: Arc<Semaphore>,
        seen: Arc<Mutex<Vec<String>>>,
        arrived: Arc<tokio::sync::Notify>,
    ) -> Client {
        crate::fake_api::client(move |_, body: Bytes| {
            let (gate, seen, arrived) = (gate.clone(), seen.clone(), arrived.clone());
            async move {
                let sent: serde_json::Value =
                    serde_json::from_slice(&body).unwrap_or(serde_json::Value::Null);
                let reason = sent["reason"].as_str().unwrap_or("?").to_string();
                arrived.notify_one();
                if let Ok(permit) = gate.acquire().await {
                    permit.forget();
                }
                if let Ok(mut seen) = seen.lock() {
                    seen.push(reason);
                }
                (200, body)
            }
        })
    }

    fn reporter() -> Reporter {
        Reporter {
            controller: "synqx-operator".into(),
            instance: None,
        }
    }

    #[tokio::test]
    async fn a_reconcile_never_waits_for_the_api_and_a_full_queue_drops_the_newest() {
        let gate = Arc::new(Semaphore::new(0));
        let seen: Arc<Mutex<Vec<String>>> = Arc::default();
        let arrived = Arc::new(tokio::sync::Notify::new());
        let client = server(gate.clone(), seen.clone(), arrived.clone());
        let counts = counts();
        let (events, publisher) = Events::spawn(client, reporter(), 2, counts.clone());

        // The first Event is taken off the queue and held at the server.
        events.send(&run("r1"), event("First"));
        arrived.notified().await;
        // Two fit in the queue; the server answers nothing, and yet none of these waits.
        for reason in ["Second", "Third", "Fourth", "Fifth"] {
            events.send(&run("r1"), event(reason));
        }
        assert_eq!(counts.with_label_values(&["dropped"]).get(), 2);

        gate.add_permits(10);
        publisher.finish().await;
        let seen = seen.lock().map(|s| s.clone()).unwrap_or_default();
        assert_eq!(seen, ["First", "Second", "Third"]);
        assert_eq!(counts.with_label_values(&["published"]).get(), 3);
        assert_eq!(counts.with_label_values(&["failed"]).get(), 0);
    }

    #[tokio::test]
    async fn a_stopping_operator_publishes_what_was_queued_and_later_events_are_dropped() {
        let gate = Arc::new(Semaphore::new(0));
        let seen: Arc<Mutex<Vec<String>>> = Arc::default();
        let arrived = Arc::new(tokio::sync::Notify::new());
        let client = server(gate.clone(), seen.clone(), arrived.clone());
        let counts = counts();
        let (events, publisher) = Events::spawn(client, reporter(), 8, counts.clone());
        events.send(&run("r1"), event("RunStarted"));
        arrived.notified().await;
        events.send(&run("r2"), event("RunStarted"));
        events.send(&run("r2"), event("RunSucceeded"));
        gate.add_permits(10);
        publisher.finish().await;
        events.send(&run("r3"), event("RunStarted"));

        let seen = seen.lock().map(|s| s.clone()).unwrap_or_default();
        assert_eq!(seen, ["RunStarted", "RunStarted", "RunSucceeded"]);
        assert_eq!(counts.with_label_values(&["published"]).get(), 3);
        assert_eq!(counts.with_label_values(&["dropped"]).get(), 1);
    }
}
