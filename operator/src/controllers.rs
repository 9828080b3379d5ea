//! The three controllers of one scope, built on the shared watches of [`crate::caches`]: each
//! reads its objects from the caches and is triggered by its subscriptions, every one of which
//! it polls. The reconcile functions are parameters so the wiring test can drive exactly this
//! wiring with reconcilers that record what they see.

use std::sync::Arc;

use futures::future::BoxFuture;
use futures::{FutureExt, Stream, StreamExt};
use kube::ResourceExt;
use kube::runtime::Controller;
use kube::runtime::controller::{Action, Config};
use kube::runtime::reflector::ObjectRef;
use synqx_api::{Connection, Pipeline, PipelineRun};
use tokio::sync::watch;

use crate::caches::{Caches, Triggers};
use crate::error::{Error, Result};

/// Reconciliations in flight at once, for Pipelines and Connections: bounds memory and API
/// load when hundreds of objects change together.
const CONCURRENCY: u16 = 16;
/// Reconciliations of runs in flight at once. Higher, because a run's pass reads only the
/// caches and then mostly waits: for its Job creates and then for its status write, which
/// queues behind every other run's Job creates (`request_budget`). With 16, passes waiting to
/// write a status held every slot, and the runs behind them could not create their Jobs.
/// The request budget, not this, bounds the API load.
const RUN_CONCURRENCY: u16 = 256;

/// How one controller reconciles objects of kind `K` with context `C`.
pub struct Reconciler<K, C> {
    pub reconcile: fn(Arc<K>, Arc<C>) -> BoxFuture<'static, Result<Action>>,
    pub error_policy: fn(Arc<K>, &Error, Arc<C>) -> Action,
    /// Reports on the object that its reconciliation panicked (see [`crate::contained`]).
    pub panicked: fn(Arc<K>, String, Arc<C>) -> BoxFuture<'static, ()>,
}

impl<K: Send + Sync + 'static, C: Send + Sync + 'static> Reconciler<K, C> {
    /// The reconcile function the controller runs: every panic in it is contained.
    fn contained(
        &self,
    ) -> impl FnMut(Arc<K>, Arc<C>) -> BoxFuture<'static, Result<Action>> + use<K, C> {
        let (reconcile, panicked) = (self.reconcile, self.panicked);
        move |object, ctx| crate::contained::contained(reconcile, panicked, object, ctx).boxed()
    }
}

pub struct Reconcilers<C> {
    pub pipelines: Reconciler<Pipeline, C>,
    pub runs: Reconciler<PipelineRun, C>,
    pub connections: Reconciler<Connection, C>,
}

/// Runs the three controllers until `stop` turns true (or their triggers end). `wake_runs`
/// names runs to reconcile now although nothing of theirs changed (a Job slot was set aside
/// for them, see [`crate::job_slots`]).
pub fn run<C, W>(
    triggers: Triggers,
    caches: &Caches,
    reconcilers: Reconcilers<C>,
    ctx: Arc<C>,
    wake_runs: W,
    stop: watch::Receiver<bool>,
) -> impl Future<Output = ()> + use<C, W>
where
    C: Send + Sync + 'static,
    W: Stream<Item = ObjectRef<PipelineRun>> + Send + 'static,
{
    let stopped = |mut rx: watch::Receiver<bool>| async move {
        while !*rx.borrow_and_update() {
            if rx.changed().await.is_err() {
                return;
            }
        }
    };
    let config = || Config::default().concurrency(CONCURRENCY);
    let pipelines = caches.pipelines.clone();
    let pipeline_controller =
        Controller::for_shared_stream(triggers.pipelines, caches.pipelines.clone())
            .with_config(config())
            // A changed Connection can make the Pipelines that name it valid or invalid.
            .watches_shared_stream(
                triggers.connections_for_pipelines,
                move |connection: Arc<Connection>| naming(&connection, &pipelines.state()),
            )
            // A run that starts or ends changes its Pipeline's `lastRun`, which only the
            // Pipeline controller writes; the progress of a running run does not (nor an end
            // only its status claims).
            .watches_shared_stream(triggers.runs_for_pipelines, |run: Arc<PipelineRun>| {
                let phase = synqx_api::run_record::trusted_phase(&run);
                let moved = phase.is_none_or(|p| p.is_finished());
                let pipeline = ObjectRef::<Pipeline>::new(&run.spec.pipeline_ref.name)
                    .within(&run.namespace().unwrap_or_default());
                moved.then_some(pipeline)
            })
            .graceful_shutdown_on(stopped(stop.clone()))
            .run(
                reconcilers.pipelines.contained(),
                reconcilers.pipelines.error_policy,
                ctx.clone(),
            )
            .for_each(|_| futures::future::ready(()));
    let run_controller = Controller::for_shared_stream(triggers.runs, caches.runs.clone())
        .with_config(Config::default().concurrency(RUN_CONCURRENCY))
        .owns_shared_stream(triggers.jobs_for_runs)
        .reconcile_on(wake_runs)
        .graceful_shutdown_on(stopped(stop.clone()))
        .run(
            reconcilers.runs.contained(),
            reconcilers.runs.error_policy,
            ctx.clone(),
        )
        .for_each(|_| futures::future::ready(()));
    let connection_controller =
        Controller::for_shared_stream(triggers.connections, caches.connections.clone())
            .with_config(config())
            .owns_shared_stream(triggers.jobs_for_connections)
            .graceful_shutdown_on(stopped(stop))
            .run(
                reconcilers.connections.contained(),
                reconcilers.connections.error_policy,
                ctx,
            )
            .for_each(|_| futures::future::ready(()));
    async move {
        futures::future::join3(pipeline_controller, run_controller, connection_controller).await;
    }
}

/// The Pipelines whose steps name `connection`, which its changes concern. Not every Pipeline
/// of its namespace: with 200 Pipelines of 200 Connections each check's status writes woke
/// all 200, some 40,000 reconciliations for nothing.
fn naming(connection: &Connection, pipelines: &[Arc<Pipeline>]) -> Vec<ObjectRef<Pipeline>> {
    let namespace = connection.namespace();
    let name = connection.name_any();
    pipelines
        .iter()
        .filter(|p| p.namespace() == namespace)
        .filter(|p| {
            p.spec
                .steps
                .iter()
                .any(|step| step.connections().contains(&name.as_str()))
        })
        .map(|p| ObjectRef::from_obj(p.as_ref()))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pipeline(namespace: &str, name: &str, connections: &[&str]) -> Arc<Pipeline> {
        let steps: Vec<String> = connections
            .iter()
            .enumerate()
            .map(|(i, c)| {
                format!(
                    "    - {{name: s{i}, sql: {{connection: {c}, statements: [\"select 1\"]}}}}"
                )
            })
            .collect();
        let yaml = format!(
            "apiVersion: synqx.io/v1alpha1\nkind: Pipeline\nmetadata: {{name: {name}, namespace: {namespace}}}\nspec:\n  steps:\n{}\n",
            steps.join("\n")
        );
        Arc::new(
            serde_yaml::from_str(&yaml)
                .unwrap_or_else(|error| panic!("a Pipeline: {error}\n{yaml}")),
        )
    }

    fn connection(namespace: &str, name: &str) -> Connection {
        let mut connection = Connection::new(name, Default::default());
        connection.metadata.namespace = Some(namespace.into());
        connection
    }

    #[test]
    fn a_connection_wakes_only_the_pipelines_of_its_namespace_that_name_it() {
        let pipelines = [
            pipeline("etl", "orders", &["db", "lake"]),
            pipeline("etl", "users", &["crm"]),
            pipeline("etl", "both", &["crm", "db"]),
            pipeline("other", "orders", &["db"]),
        ];
        let woken = |c: &Connection| -> Vec<String> {
            naming(c, &pipelines).into_iter().map(|r| r.name).collect()
        };
        assert_eq!(woken(&connection("etl", "db")), ["orders", "both"]);
        assert_eq!(woken(&connection("etl", "crm")), ["users", "both"]);
        assert_eq!(woken(&connection("other", "db")), ["orders"]);
        assert!(woken(&connection("etl", "unused")).is_empty());
    }
}
