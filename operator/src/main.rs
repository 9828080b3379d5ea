//! `synqx-operator`: the SynqX control plane. `run` starts the controllers (behind a leader
//! Lease when asked), `crd` prints the CustomResourceDefinitions.

mod allocator;
mod api_client;
mod cache_metrics;
mod caches;
mod condition;
mod connection_controller;
mod contained;
mod context;
mod controllers;
mod error;
mod event_reason;
mod events;
#[cfg(test)]
mod fake_api;
mod gateway;
mod job;
mod job_slots;
mod leader;
mod metrics;
mod names;
mod own_writes;
mod pipeline_controller;
mod policy;
mod request_budget;
mod revision;
mod run_controller;
mod scheduling;
mod secret_opt_in;
mod start_failure;
mod step_pod;
mod termination;
mod vault;
mod watermark;

use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use anyhow::Context as _;
use clap::{Args, Parser, Subcommand};
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::ResourceRequirements;
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use kube::{Api, Client};
use synqx_api::duration::parse_duration;
use tokio::sync::watch;

use crate::context::{Operator, Settings};
use crate::event_reason::StepEvents;
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
    /// Address of the gateway: the client API (lists, and WebSocket watches of runs) that
    /// `synqx runs watch` and UIs read, authorised by TokenReview and SubjectAccessReview.
    #[arg(long, default_value = "0.0.0.0:8081", conflicts_with = "no_gateway")]
    gateway_addr: SocketAddr,
    /// Serve no gateway.
    #[arg(long)]
    no_gateway: bool,
    /// Directory where the gateway keeps each step attempt's log (gzip JSON lines), so
    /// `synqx logs` reads it after the pod is gone: the chart mounts a PersistentVolume
    /// here (default: no store; only the last lines, in memory, while the run is followed).
    #[arg(long, env = "SYNQX_LOGS_DIR")]
    logs_dir: Option<std::path::PathBuf>,
    /// Keep step logs in object storage instead: the bucket of this `s3` Connection in the
    /// operator's namespace, below --logs-prefix (a Pipeline's `spec.logs` names its own).
    #[arg(long, env = "SYNQX_LOGS_CONNECTION", conflicts_with = "logs_dir")]
    logs_connection: Option<String>,
    /// Key prefix of the logs below the --logs-connection's own prefix.
    #[arg(long, default_value = gateway::logs::connection::DEFAULT_PREFIX)]
    logs_prefix: String,
    /// Most bytes (uncompressed) kept of one step attempt's log; later lines are dropped
    /// and a marker line says how many.
    #[arg(long, default_value = "64Mi", value_parser = synqx_api::duration::parse_bytes)]
    logs_max_bytes: u64,
    /// Most bytes (of JSON) of a run's last messages the gateway keeps in memory for
    /// watches that resume with `?since=`; older ones are evicted (the stored log keeps
    /// every line). The newest message is kept whatever its size.
    #[arg(long, default_value = "16Mi", value_parser = synqx_api::duration::parse_bytes)]
    watch_buffer_bytes: u64,
    /// The gateway's URL as step pods reach it, for their telemetry (default: the
    /// `synqx-gateway` Service of the operator's namespace on the --gateway-addr port; none
    /// with --no-gateway, when pods report through their termination message only).
    #[arg(long)]
    gateway_url: Option<String>,
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
    /// Most requests a second to the Kubernetes API, after a first --api-burst; status
    /// writes wait behind Job creates and reads. Answers 429 are retried with backoff.
    #[arg(long, default_value_t = api_client::DEFAULT_QPS, value_parser = clap::value_parser!(u32).range(1..))]
    api_qps: u32,
    /// Requests to the Kubernetes API that may go at once before --api-qps holds them.
    #[arg(long, default_value_t = api_client::DEFAULT_BURST, value_parser = clap::value_parser!(u32).range(1..))]
    api_burst: u32,
    /// Most Kubernetes Events published a second, through a client of their own; Events
    /// are queued and published in the background, the newest dropped when too many wait.
    #[arg(long, default_value_t = events::DEFAULT_QPS, value_parser = clap::value_parser!(u32).range(1..))]
    events_qps: u32,
    /// Which step transitions become Events on their run: `failures` (default: retries,
    /// failures, cancellations) or `all` (each step's start and success too).
    #[arg(long, value_enum, default_value_t = StepEvents::default())]
    step_events: StepEvents,
    /// Let Pipelines mount `hostPath` volumes into step pods.
    #[arg(long)]
    allow_host_path: bool,
    /// Images a Pipeline's `spec.runner.image` may name besides --runner-image: image
    /// references, or prefixes ending in `*`, comma-separated or repeated (default: none,
    /// only --runner-image).
    #[arg(long, value_delimiter = ',', value_parser = policy::parse_image_pattern)]
    allowed_runner_images: Vec<String>,
    /// Let a Pipeline's `spec.runner.serviceAccountName` name another service account than
    /// synqx-runner (its pods act with that account's rights).
    #[arg(long)]
    allow_service_account_override: bool,
    /// Lend the cloud credentials of the pods' environment (AWS variables, web identity,
    /// instance metadata) to Connections that ask with `useAmbientCredentials: true`.
    #[arg(long)]
    allow_ambient_credentials: bool,
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

/// Where the gateway keeps step logs: the operator's store (a directory, or an `s3`
/// Connection of its namespace) unless a Pipeline names its own.
fn log_store(args: &RunArgs, client: &kube::Client) -> gateway::logs::Select {
    use gateway::logs::select::OperatorStore;
    let default = match (&args.logs_dir, &args.logs_connection) {
        (Some(dir), _) => OperatorStore::Store(Arc::new(gateway::logs::DirStore::new(dir.clone()))),
        (None, Some(connection)) => OperatorStore::Connection(gateway::logs::StoreRef {
            namespace: args
                .lease_namespace
                .clone()
                .unwrap_or_else(|| client.default_namespace().to_string()),
            connection: connection.clone(),
            prefix: args.logs_prefix.clone(),
            named_by: "--logs-connection".into(),
            // The administrator chose this Connection for the operator itself.
            ambient: true,
        }),
        (None, None) => OperatorStore::None,
    };
    gateway::logs::Select::new(
        default,
        Some(client.clone()),
        args.allow_ambient_credentials,
    )
}

async fn run(args: RunArgs) -> anyhow::Result<()> {
    init_logs(&args.log_format);
    let client = api_client::connect(args.api_qps, args.api_burst).await?;
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
    // The watches run on every replica, leader or not: the gateway on every replica reads
    // them. The controllers' subscriptions pass events on only once this replica leads.
    let (leader_tx, mut leader) = watch::channel(!args.leader_elect);
    let mut feeds: Vec<caches::Feeds> = scopes.iter().map(|_| caches::Feeds::new()).collect();
    let scope_caches: Vec<caches::Caches> = feeds.iter().map(caches::Feeds::caches).collect();
    let triggers: Vec<caches::Triggers> = feeds.iter().map(|f| f.triggers(&leader)).collect();
    let gateway = if args.no_gateway {
        Vec::new()
    } else {
        let listener = tokio::net::TcpListener::bind(args.gateway_addr)
            .await
            .with_context(|| format!("listening on --gateway-addr {}", args.gateway_addr))?;
        let logs_client = api_client::connect(args.api_qps, args.api_burst).await?;
        let review_client = api_client::connect(args.api_qps, args.api_burst).await?;
        let logs = Some(Arc::new(gateway::logs::Logs::new(
            Arc::new(log_store(&args, &logs_client)),
            args.logs_max_bytes,
        )));
        let followed = feeds
            .iter_mut()
            .zip(&scope_caches)
            .zip(&scopes)
            .map(|((feeds, caches), namespace)| {
                let scope = gateway::Scope {
                    namespace: namespace.clone(),
                    pipelines: caches.pipelines.clone(),
                    runs: caches.runs.clone(),
                    pods: caches.pods.clone(),
                };
                (scope, feeds.runs.tap(gateway::RUN_EVENTS))
            })
            .collect();
        gateway::start(
            listener,
            review_client,
            followed,
            gateway::Limits {
                log_bytes: args.watch_buffer_bytes,
                ..gateway::Limits::default()
            },
            logs,
        )
    };
    let mut watches = Vec::new();
    for (feeds, scope) in feeds.into_iter().zip(&scopes) {
        watches.extend(feeds.watch(&client, scope));
    }
    let settings = Settings {
        runner_image: args.runner_image.clone(),
        max_concurrent_jobs: args.max_concurrent_jobs,
        revision_history: args.revision_history,
        pods: step_pod::PodDefaults {
            resources: args.step_resources.clone(),
            scratch_size_limit: args.scratch_size_limit.clone(),
            step_deadline: args.default_step_timeout,
            allow_host_path: args.allow_host_path,
            start_timeout: args.pod_start_timeout,
            gateway_url: gateway_url(&args, &client),
        },
        policy: policy::Policy {
            allowed_images: args.allowed_runner_images.clone(),
            allow_service_account_override: args.allow_service_account_override,
            allow_ambient_credentials: args.allow_ambient_credentials,
        },
        step_events: args.step_events,
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
    let mut election = None;
    if args.leader_elect {
        election = Some(
            leader::Elector::new(leases.clone(), "synqx-operator", &identity).spawn(leader_tx),
        );
        metrics.ready.store(true, Ordering::SeqCst);
        tracing::info!(%identity, lease = %format!("{lease_namespace}/synqx-operator"), "waiting for the leader Lease");
        loop {
            if *leader.borrow_and_update() {
                break;
            }
            tokio::select! {
                changed = leader.changed() => changed.context("the leader election stopped")?,
                () = &mut shutdown => {
                    // An attempt in flight may have taken the Lease this instant.
                    if let Some(election) = election.take() {
                        election.resign().await;
                    }
                    return Ok(());
                }
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
    // Namespaces named on the command line get their vault at once, so values can be sealed
    // before the first Connection exists; others get it with their first Connection.
    for namespace in &served {
        if let Err(error) = vault::ensure(&client, namespace).await {
            tracing::warn!(%namespace, %error, "cannot set up the vault; retried with the namespace's next Connection");
        }
    }

    let (stop_tx, stop_rx) = watch::channel(false);
    let all_jobs: Vec<_> = scope_caches.iter().map(|c| c.jobs.clone()).collect();
    for caches in &scope_caches {
        caches
            .wait_until_ready()
            .await
            .context("a watch stopped before its first list")?;
        metrics.observe_caches(cache_metrics::Caches {
            pipelines: caches.pipelines.clone(),
            runs: caches.runs.clone(),
        });
    }
    let counter = tokio::spawn(metrics::count_active_jobs(
        all_jobs.clone(),
        metrics.clone(),
    ));
    let slots = Arc::new(job_slots::JobSlots::new(
        settings.max_concurrent_jobs,
        all_jobs.clone(),
    ));
    let (events, publisher) = events::Events::spawn(
        api_client::connect(args.events_qps, args.events_qps).await?,
        kube::runtime::events::Reporter {
            controller: "synqx-operator".into(),
            instance: std::env::var("POD_NAME").ok(),
        },
        events::QUEUED,
        metrics.events.clone(),
    );
    let controllers = futures::future::join_all(scope_caches.into_iter().zip(triggers).map(
        |(caches, triggers)| {
            let ctx = Arc::new(Operator::new(
                client.clone(),
                settings.clone(),
                metrics.clone(),
                caches.clone(),
                slots.clone(),
                events.clone(),
            ));
            let wakes = slots.wakes();
            controllers::run(
                triggers,
                &caches,
                reconcilers(),
                ctx,
                wakes,
                stop_rx.clone(),
            )
        },
    ));
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
            publisher.finish().await;
            if let Some(election) = election.take() {
                election.resign().await;
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
    for task in gateway {
        task.abort();
    }
    for watch in watches {
        watch.abort();
    }
    Ok(())
}

/// The operator's reconcile functions.
fn reconcilers() -> controllers::Reconcilers<Operator> {
    use controllers::Reconciler;
    controllers::Reconcilers {
        pipelines: Reconciler {
            reconcile: |pipeline, ctx| Box::pin(pipeline_controller::reconcile(pipeline, ctx)),
            error_policy: pipeline_controller::error_policy,
            panicked: contained::pipeline_failed,
        },
        runs: Reconciler {
            reconcile: |run, ctx| Box::pin(run_controller::reconcile(run, ctx)),
            error_policy: run_controller::error_policy,
            panicked: contained::run_failed,
        },
        connections: Reconciler {
            reconcile: |connection, ctx| {
                Box::pin(connection_controller::reconcile(connection, ctx))
            },
            error_policy: connection_controller::error_policy,
            panicked: contained::connection_failed,
        },
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

/// Where step pods send their telemetry: `--gateway-url`, else the `synqx-gateway` Service of
/// the operator's namespace on the gateway's port; none without a gateway and a URL.
fn gateway_url(args: &RunArgs, client: &Client) -> Option<String> {
    if let Some(url) = &args.gateway_url {
        return Some(url.clone());
    }
    if args.no_gateway {
        return None;
    }
    let namespace = args
        .lease_namespace
        .clone()
        .unwrap_or_else(|| client.default_namespace().to_string());
    Some(format!(
        "http://synqx-gateway.{namespace}.svc:{}",
        args.gateway_addr.port()
    ))
}
