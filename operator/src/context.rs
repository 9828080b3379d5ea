//! What every controller of a scope shares: the client, the operator's settings, metrics,
//! the queue of Events and the caches of the scope's watches.

use std::sync::Arc;

use k8s_openapi::api::core::v1::ObjectReference;
use kube::Client;
use kube::runtime::events::{Event, EventType};

use crate::caches::Caches;
use crate::error::{Error, Result};
use crate::event_reason::EventReason;
use crate::events::Events;
use crate::metrics::Metrics;

/// Settings from the command line.
#[derive(Clone, Debug)]
pub struct Settings {
    /// Image of step Jobs when a Pipeline names none.
    pub runner_image: String,
    /// Most step Jobs running at once across everything this operator serves.
    pub max_concurrent_jobs: Option<u32>,
    /// Revisions of a Pipeline's plan kept besides those runs still use.
    pub revision_history: usize,
    /// Scratch volume, resources, deadlines and start timeout of step and check pods.
    pub pods: crate::step_pod::PodDefaults,
    /// What Pipelines and Connections may ask for: images, service accounts, ambient
    /// credentials.
    pub policy: crate::policy::Policy,
    /// Which step transitions become Events.
    pub step_events: crate::event_reason::StepEvents,
}

/// The operator as the controllers of one scope see it.
pub struct Operator {
    pub client: Client,
    pub settings: Settings,
    pub metrics: Arc<Metrics>,
    /// What the scope's watches hold; reconciles read here and never list.
    pub caches: Caches,
    /// The step Jobs `--max-concurrent-jobs` lets start, counted over every scope and
    /// shared fairly between namespaces.
    pub slots: Arc<crate::job_slots::JobSlots>,
    /// Plans of the revisions runs pinned, read once each.
    pub plans: crate::revision::Plans,
    /// The newest version of each run this operator wrote, which a pass waits to see.
    pub own_writes: crate::own_writes::OwnWrites,
    /// The namespaces whose vault was ensured lately.
    pub vaults: crate::vault::Ensured,
    events: Events,
}

impl Operator {
    pub fn new(
        client: Client,
        settings: Settings,
        metrics: Arc<Metrics>,
        caches: Caches,
        slots: Arc<crate::job_slots::JobSlots>,
        events: Events,
    ) -> Self {
        Self {
            events,
            client,
            settings,
            metrics,
            caches,
            slots,
            plans: crate::revision::Plans::default(),
            own_writes: crate::own_writes::OwnWrites::default(),
            vaults: crate::vault::Ensured::default(),
        }
    }

    /// Runs one reconciliation of `controller`, counted and timed.
    pub async fn reconciled(
        &self,
        controller: &str,
        work: impl Future<Output = Result<kube::runtime::controller::Action>>,
    ) -> Result<kube::runtime::controller::Action> {
        let started = std::time::Instant::now();
        self.metrics
            .reconciles
            .with_label_values(&[controller])
            .inc();
        let result = work.await;
        let seconds = started.elapsed().as_secs_f64();
        self.metrics
            .reconcile_seconds
            .with_label_values(&[controller])
            .observe(seconds);
        result
    }

    /// Counts a failed reconciliation by controller and kind, logs it; the controller
    /// retries it after `delay`.
    pub fn retry_after(
        &self,
        controller: &str,
        object: &str,
        error: &Error,
        delay: std::time::Duration,
    ) -> kube::runtime::controller::Action {
        self.metrics
            .reconcile_errors
            .with_label_values(&[controller, error.kind().as_str()])
            .inc();
        let delay = match error {
            Error::Panicked { .. } => delay.max(crate::contained::RETRY_PANICKED),
            _ => delay,
        };
        let kind = error.kind().as_str();
        tracing::warn!(controller, object, kind, %error, "reconciliation failed; retrying");
        kube::runtime::controller::Action::requeue(delay)
    }

    /// Queues a Kubernetes Event about `object` (see `events`: published in the background,
    /// dropped when too many wait); never fails and never waits.
    pub fn event(
        &self,
        object: &ObjectReference,
        warning: bool,
        reason: EventReason,
        note: String,
    ) {
        self.event_about(object, None, warning, reason, note);
    }

    /// An Event about `object` that concerns `related` too (the Job of a step, the run a
    /// schedule created). Events with the same reason about the same objects are folded
    /// into one series, so `related` keeps the Events of different Jobs apart.
    pub fn event_about(
        &self,
        object: &ObjectReference,
        related: Option<ObjectReference>,
        warning: bool,
        reason: EventReason,
        note: String,
    ) {
        let event = Event {
            type_: if warning {
                EventType::Warning
            } else {
                EventType::Normal
            },
            reason: reason.as_str().into_owned(),
            note: Some(note.chars().take(1000).collect()),
            action: reason.as_str().into_owned(),
            secondary: related,
        };
        self.events.send(object, event);
    }
}

/// A reference to a namespaced object for an Event's `related` field.
pub fn reference(api_version: &str, kind: &str, namespace: &str, name: &str) -> ObjectReference {
    ObjectReference {
        api_version: Some(api_version.into()),
        kind: Some(kind.into()),
        namespace: Some(namespace.into()),
        name: Some(name.into()),
        ..Default::default()
    }
}

/// The current time as Kubernetes writes it in status fields.
pub fn now_rfc3339() -> String {
    rfc3339(chrono::Utc::now())
}

/// A time as Kubernetes writes it in status fields.
pub fn rfc3339(t: chrono::DateTime<chrono::Utc>) -> String {
    t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

/// A time Kubernetes wrote in a status field.
pub fn parse_time(text: &str) -> Option<chrono::DateTime<chrono::Utc>> {
    chrono::DateTime::parse_from_rfc3339(text)
        .ok()
        .map(|t| t.with_timezone(&chrono::Utc))
}
