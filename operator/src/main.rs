//! `synqx-operator`: the SynqX control plane. `run` starts the controllers (behind a leader
//! Lease when asked), `crd` prints the CustomResourceDefinitions.

mod cache_metrics;
mod condition;
mod connection_controller;
mod context;
mod error;
mod job;
mod leader;
mod metrics;
mod names;
mod pipeline_controller;
mod revision;
mod run_controller;
mod scheduling;
mod start_failure;
mod step_pod;
mod termination;
mod watermark;

use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use anyhow::Context as _;
use clap::{Args, Parser, Subcommand};
use futures::StreamExt;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::ResourceRequirements;
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use kube::runtime::reflector::ObjectRef;
use kube::runtime::{Controller, watcher};
use kube::{Api, Client, ResourceExt};
use synqx_api::duration::parse_duration;
use synqx_api::{Connection, Pipeline, PipelineRun};
use tokio::sync::watch;

use crate::context::{Operator, Settings};
use crate::metrics::Metrics;

/// The SynqX operator: runs Pipelines declared as Kubernetes resources.
#[derive(Parser, Debug)]
#[command(name = "synqx-operator", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Run the controllers against the cluster of the current kubeconfig or service account.
    Run(Box<RunArgs>),
    /// Print every CustomResourceDefinition as YAML, ready for `kubectl apply -f -`.
    Crd,
}

#[derive(Args, Debug)]
struct RunArgs {
    /// Serve only this namespace; repeat for several (default: the current context's
    /// namespace).
    #[arg(long, conflicts_with = "all_namespaces")]
    namespace: Vec<String>,
    /// Serve every namespace.
    #[arg(long, short = 'A')]
    all_namespaces: bool,
    /// Address of /metrics, /healthz and /readyz.
    #[arg(long, default_value = "0.0.0.0:8080")]
    metrics_addr: SocketAddr,
    /// Reconcile only while holding the leader Lease (run several replicas for HA).
    #[arg(long)]
    leader_elect: bool,
    /// Namespace of the leader Lease (default: the operator's own, from POD_NAMESPACE).
    #[arg(long, env = "POD_NAMESPACE")]
    lease_namespace: Option<String>,
    /// Image of step Jobs when a Pipeline's `spec.runner.image` is not set.
    #[arg(long, default_value = concat!("ghcr.io/synqx/synqx:", env!("CARGO_PKG_VERSION")))]
    runner_image: String,
    /// Most step Jobs running at once across every namespace served (default: no limit).
    #[arg(long)]
    max_concurrent_jobs: Option<u32>,
    /// Plan revisions of each Pipeline kept besides the ones runs use.
    #[arg(long, default_value_t = 10)]
    revision_history: usize,
    /// `json` (default) or `text` log lines.
    #[arg(long, default_value = "json")]
    log_format: String,
    /// Resource requests and limits (JSON) of step and check containers whose Pipeline sets
    /// no `spec.runner.resources`.
    #[arg(long, default_value = step_pod::DEFAULT_RESOURCES, value_parser = step_pod::parse_resources)]
    step_resources: ResourceRequirements,
    /// Size limit of each step pod's scratch volume (working directory and TMPDIR).
    #[arg(long, default_value = step_pod::DEFAULT_SCRATCH_SIZE_LIMIT, value_parser = step_pod::parse_quantity)]
    scratch_size_limit: Quantity,
    /// Deadline of a step Job whose step sets no `timeout`, e.g. `6h`.
    #[arg(long, default_value = "6h", value_parser = parse_duration)]
    default_step_timeout: Duration,
    /// How long a step pod may fail to start (image pull, missing Secret key, no node,
    /// missing service account) before the step fails with that reason.
    #[arg(long, default_value = "5m", value_parser = parse_duration)]
    pod_start_timeout: Duration,
    /// Let Pipelines mount `hostPath` volumes into step pods.
    #[arg(long)]
    allow_host_path: bool,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Crd => synqx_api::crd::all_to_yaml()
            .context("serializing the CRDs")
            .map(|yaml| print!("{yaml}")),
        Command::Run(args) => tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()
            .context("starting the async runtime")
            .and_then(|runtime| runtime.block_on(run(*args))),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn init_logs(format: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| "info,kube=warn".into());
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    if format == "text" {
        builder.init();
    } else {
        builder
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .init();
    }
}

async fn run(args: RunArgs) -> anyhow::Result<()> {
    init_logs(&args.log_format);
    let client = Client::try_default()
        .await
        .context("connecting to the Kubernetes API (kubeconfig or in-cluster)")?;
    let metrics = Arc::new(Metrics::new().context("registering metrics")?);
    // Bound before anything else: a taken port is an error to see at once, not a silent
    // operator without metrics or probes.
    let listener = tokio::net::TcpListener::bind(args.metrics_addr)
        .await
        .with_context(|| format!("listening on --metrics-addr {}", args.metrics_addr))?;
    let server = tokio::spawn(metrics::serve(listener, metrics.clone()));
    // Each scope is one namespace, or `None` for all of them.
    let scopes: Vec<Option<String>> = match (&args.namespace[..], args.all_namespaces) {
        (_, true) => vec![None],
        ([], false) => vec![Some(client.default_namespace().to_string())],
        (some, false) => some.iter().cloned().map(Some).collect(),
    };
    let served: Vec<String> = scopes.iter().flatten().cloned().collect();
    let settings = Settings {
        runner_image: args.runner_image.clone(),
        max_concurrent_jobs: args.max_concurrent_jobs,
        revision_history: args.revision_history,
        namespaces: served.clone(),
        pods: step_pod::PodDefaults {
            resources: args.step_resources.clone(),
            scratch_size_limit: args.scratch_size_limit.clone(),
            step_deadline: args.default_step_timeout,
            allow_host_path: args.allow_host_path,
            start_timeout: args.pod_start_timeout,
        },
    };
    let shutdown = shutdown_signal();
    let mut shutdown = std::pin::pin!(shutdown);

    let identity = std::env::var("POD_NAME")
        .or_else(|_| std::env::var("HOSTNAME"))
        .unwrap_or_else(|_| format!("synqx-operator-{}", std::process::id()));
    let lease_namespace = args
        .lease_namespace
        .clone()
        .unwrap_or_else(|| client.default_namespace().to_string());
    let leases: Api<Lease> = Api::namespaced(client.clone(), &lease_namespace);
    let (leader_tx, mut leader) = watch::channel(!args.leader_elect);
    if args.leader_elect {
        tokio::spawn(
            leader::Elector::new(leases.clone(), "synqx-operator", &identity).run(leader_tx),
        );
        metrics.ready.store(true, Ordering::SeqCst);
        tracing::info!(%identity, lease = %format!("{lease_namespace}/synqx-operator"), "waiting for the leader Lease");
        loop {
            if *leader.borrow_and_update() {
                break;
            }
            tokio::select! {
                changed = leader.changed() => changed.context("the leader election stopped")?,
                () = &mut shutdown => return Ok(()),
            }
        }
    }
    metrics.leader.set(1);
    let shown = if served.is_empty() {
        "*".to_string()
    } else {
        served.join(",")
    };
    tracing::info!(%identity, namespaces = %shown, "reconciling");

    let (stop_tx, stop_rx) = watch::channel(false);
    let counted: Vec<Api<Job>> = scopes.iter().map(|scope| scoped(&client, scope)).collect();
    let counter = tokio::spawn(metrics::count_active_jobs(counted, metrics.clone()));
    let ctx = Arc::new(Operator::new(client.clone(), settings, metrics.clone()));
    let controllers = futures::future::join_all(
        scopes
            .iter()
            .map(|scope| serve(&client, scope, ctx.clone(), stop_rx.clone())),
    );
    metrics.ready.store(true, Ordering::SeqCst);
    let mut controllers = std::pin::pin!(controllers);
    let lost = async {
        if !args.leader_elect {
            return std::future::pending().await;
        }
        while *leader.borrow_and_update() {
            if leader.changed().await.is_err() {
                break;
            }
        }
    };
    tokio::select! {
        () = &mut shutdown => {
            tracing::info!("shutting down: letting reconciliations in flight finish");
            let _ = stop_tx.send(true);
            controllers.await;
            if args.leader_elect {
                leader::Elector::release(&leases, "synqx-operator", &identity).await;
            }
        }
        () = lost => {
            server.abort();
            anyhow::bail!("lost the leader Lease to another replica; exiting so nothing reconciles twice");
        }
        _ = &mut controllers => anyhow::bail!("the controllers stopped"),
    }
    server.abort();
    counter.abort();
    Ok(())
}

/// An API of every namespace (`None`) or of one.
fn scoped<K>(client: &Client, scope: &Option<String>) -> Api<K>
where
    K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope>,
    <K as kube::Resource>::DynamicType: Default,
{
    match scope {
        Some(ns) => Api::namespaced(client.clone(), ns),
        None => Api::all(client.clone()),
    }
}

/// The three controllers for one scope, until `stop` turns true.
fn serve(
    client: &Client,
    scope: &Option<String>,
    ctx: Arc<Operator>,
    stop: watch::Receiver<bool>,
) -> impl Future<Output = ()> + use<> {
    let stopped = |mut rx: watch::Receiver<bool>| async move {
        while !*rx.borrow_and_update() {
            if rx.changed().await.is_err() {
                return;
            }
        }
    };
    // Reconciliations in flight at once, per controller: bounds memory and API load when
    // hundreds of objects change together.
    let config = || kube::runtime::controller::Config::default().concurrency(16);
    let pipeline_controller = Controller::new(
        scoped::<Pipeline>(client, scope),
        watcher::Config::default(),
    )
    .with_config(config());
    let pipeline_store = pipeline_controller.store();
    let caches_of_pipelines = pipeline_store.clone();
    let run_controller = Controller::new(
        scoped::<PipelineRun>(client, scope),
        watcher::Config::default(),
    )
    .with_config(config())
    .owns(
        scoped::<Job>(client, scope),
        watcher::Config::default().labels("app.kubernetes.io/managed-by=synqx-operator"),
    );
    let connection_controller = Controller::new(
        scoped::<Connection>(client, scope),
        watcher::Config::default(),
    )
    .with_config(config())
    .owns(
        scoped::<Job>(client, scope),
        watcher::Config::default().labels(connection_controller::LABEL_CONNECTION),
    );
    ctx.metrics.observe_caches(cache_metrics::Caches {
        pipelines: caches_of_pipelines,
        runs: run_controller.store(),
    });
    let pipeline_controller = pipeline_controller
        // A changed Connection can make any Pipeline of its namespace valid or invalid.
        .watches(
            scoped::<Connection>(client, scope),
            watcher::Config::default(),
            move |connection: Connection| {
                let namespace = connection.namespace();
                pipeline_store
                    .state()
                    .into_iter()
                    .filter(|p| p.namespace() == namespace)
                    .map(|p| ObjectRef::from_obj(p.as_ref()))
                    .collect::<Vec<_>>()
            },
        )
        // A run that starts or ends changes its Pipeline's `lastRun`, which only the Pipeline
        // controller writes; the progress of a running run does not.
        .watches(
            scoped::<PipelineRun>(client, scope),
            watcher::Config::default(),
            |run: PipelineRun| {
                let phase = run.status.as_ref().and_then(|s| s.phase);
                let moved = phase.is_none_or(|p| p.is_finished());
                let pipeline = ObjectRef::<Pipeline>::new(&run.spec.pipeline_ref.name)
                    .within(&run.namespace().unwrap_or_default());
                moved.then_some(pipeline)
            },
        )
        .graceful_shutdown_on(stopped(stop.clone()))
        .run(
            pipeline_controller::reconcile,
            pipeline_controller::error_policy,
            ctx.clone(),
        )
        .for_each(|_| futures::future::ready(()));
    let run_controller = run_controller
        .graceful_shutdown_on(stopped(stop.clone()))
        .run(
            run_controller::reconcile,
            run_controller::error_policy,
            ctx.clone(),
        )
        .for_each(|_| futures::future::ready(()));
    let connection_controller = connection_controller
        .graceful_shutdown_on(stopped(stop))
        .run(
            connection_controller::reconcile,
            connection_controller::error_policy,
            ctx,
        )
        .for_each(|_| futures::future::ready(()));
    async move {
        futures::future::join3(pipeline_controller, run_controller, connection_controller).await;
    }
}

async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut term), Ok(mut int)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        return std::future::pending().await;
    };
    tokio::select! {
        _ = term.recv() => {}
        _ = int.recv() => {}
    }
}
