//! The gateway: the operator's HTTP API for clients (the `synqx` CLI, the web UI), on its own
//! port. `GET /api/v1/namespaces/{ns}/pipelines` and `…/pipelineruns` list what a UI shows;
//! `…/pipelineruns/{name}/watch` is a WebSocket that follows one run, `…/logs` reads its
//! step logs, kept beyond the pods by [`logs`], and `…/graph` the graph of the plan it
//! pinned ([`graph`]); `/` is the web UI,
//! whose files need no token. Every API request is authorised as kubectl's would be
//! ([`auth`]). The message log, followers and UI are [`synqx_web`]'s, shared with
//! `synqx run --ui`. Step pods report their counters, phase and log lines to
//! `POST /internal/v1/telemetry` ([`telemetry`]), and the gateway writes the counters into
//! their runs' status ([`counters`]). docs/gateway.md has the routes and messages.

pub mod auth;
mod counters;
mod feed;
mod finisher;
mod graph;
pub mod logs;
mod telemetry;
mod views;
mod watch;

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::extract::ws::WebSocketUpgrade;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use kube::Client;
use kube::runtime::reflector::Store;
use synqx_api::gateway::PROTOCOL;
use synqx_api::{Pipeline, PipelineRun};
use synqx_web::assets::UiConfig;
use synqx_web::{Follow, FollowError, RunsQuery, StepFilter, WatchQuery, failure};
pub use synqx_web::{Hub, Limits};
use tokio::task::JoinHandle;

use self::auth::{Access, Denied};
use self::counters::CounterWriter;
pub use self::feed::Scope;
use self::feed::Stores;
use self::logs::Logs;
use crate::caches::Tap;

/// How often an open WebSocket's token and right are reviewed again.
pub const RECHECK: Duration = Duration::from_secs(60);
/// How long a request waits for the gateway's first list, or for a new run to reach it.
const CACHE_WAIT: Duration = Duration::from_secs(5);
/// Run events the runs' watch holds for the gateway before it waits: a relist's burst
/// passes in a few rounds, and a stuck log store shows as a late run, not as lost events.
pub const RUN_EVENTS: usize = 256;

/// What the routes share.
pub struct Gateway {
    client: Client,
    hub: Arc<Hub>,
    stores: Stores,
    recheck: Duration,
    /// Counters step pods reported, until written into their runs' status.
    counters: Arc<CounterWriter>,
    /// Where step logs are kept beyond the pods (none: only the lines in memory).
    logs: Option<Arc<Logs>>,
    /// Step pods' tokens bound lately to the attempts they report for.
    bindings: telemetry::Bindings,
    /// The plans of the revisions runs pinned, read once each.
    plans: crate::revision::Plans,
}

/// Follows `scopes` (the operator's caches of each and the events of its runs' watch) and
/// serves the routes on `listener` until aborted. Reviews and counter writes use
/// `review_client`, with its own request budget: a crowd of clients connecting at once must
/// not hold back the controllers' requests.
pub fn start(
    listener: tokio::net::TcpListener,
    review_client: Client,
    scopes: Vec<(Scope, Tap<PipelineRun>)>,
    limits: Limits,
    logs: Option<Arc<Logs>>,
) -> Vec<JoinHandle<()>> {
    let hub = Arc::new(Hub::new(limits));
    let (stores, mut tasks) = feed::start(scopes, hub.clone(), logs.clone());
    let gateway = Arc::new(Gateway {
        client: review_client,
        hub,
        stores,
        recheck: RECHECK,
        counters: Arc::default(),
        logs,
        bindings: telemetry::Bindings::default(),
        plans: crate::revision::Plans::default(),
    });
    // The counters step pods reported, written at most once a second per run.
    let writer = gateway.clone();
    tasks.push(tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            writer.counters.flush(&writer.client, &writer.stores).await;
        }
    }));
    if let Ok(addr) = listener.local_addr() {
        tracing::info!(%addr, "serving the gateway");
    }
    tasks.push(tokio::spawn(async move {
        if let Err(error) = axum::serve(listener, router(gateway)).await {
            tracing::error!(%error, "the gateway stopped serving");
        }
    }));
    tasks
}

fn router(gateway: Arc<Gateway>) -> Router {
    let ui = UiConfig {
        namespace: None,
        token: true,
        title: "cluster gateway".into(),
    };
    Router::new()
        .route(synqx_web::LIST_PIPELINES, get(list_pipelines))
        .route(synqx_web::LIST_RUNS, get(list_runs))
        .route(synqx_web::WATCH_RUN, get(watch_run))
        .route(synqx_web::RUN_LOGS, get(logs::route::get_logs))
        .route(synqx_web::RUN_GRAPH, get(graph::run_graph))
        .route(
            synqx_api::telemetry::PATH,
            post(telemetry::receive).layer(DefaultBodyLimit::max(telemetry::MAX_BODY_BYTES)),
        )
        .merge(synqx_web::assets::routes(ui))
        .fallback(|| async { synqx_web::no_route() })
        .with_state(gateway)
}

impl IntoResponse for Denied {
    fn into_response(self) -> Response {
        let (code, reason) = match &self {
            Denied::Unauthenticated(_) => (StatusCode::UNAUTHORIZED, "Unauthorized"),
            Denied::Forbidden { .. } => (StatusCode::FORBIDDEN, "Forbidden"),
            Denied::Unavailable { .. } => (StatusCode::SERVICE_UNAVAILABLE, "ServiceUnavailable"),
        };
        failure(code, reason, self.to_string())
    }
}

impl Gateway {
    /// The token of the request, reviewed for `access`.
    async fn authorize(&self, headers: &HeaderMap, access: &Access) -> Result<String, Response> {
        let token = auth::token(headers).map_err(IntoResponse::into_response)?;
        match auth::authorize(&self.client, &token, access).await {
            Ok(user) => {
                tracing::debug!(%user, %access, "gateway request allowed");
                Ok(token)
            }
            Err(denied) => {
                tracing::info!(%denied, "gateway request refused");
                Err(denied.into_response())
            }
        }
    }

    /// The caches of `namespace`, once listed.
    async fn stores(
        &self,
        namespace: &str,
    ) -> Result<(Store<Pipeline>, Store<PipelineRun>), Response> {
        let Some((pipelines, runs)) = self.stores.of(namespace) else {
            return Err(failure(
                StatusCode::NOT_FOUND,
                "NotFound",
                format!("namespace {namespace} is not served by this operator (--namespace)"),
            ));
        };
        match tokio::time::timeout(CACHE_WAIT, self.stores.ready()).await {
            Ok(Ok(())) => Ok((pipelines.clone(), runs.clone())),
            _ => Err(failure(
                StatusCode::SERVICE_UNAVAILABLE,
                "ServiceUnavailable",
                "the gateway has not listed Pipelines and PipelineRuns yet; try again".into(),
            )),
        }
    }

    /// The caches of `namespace` for a request whose token may list `resource` there.
    async fn listed(
        &self,
        headers: &HeaderMap,
        namespace: &str,
        resource: &'static str,
    ) -> Result<(Store<Pipeline>, Store<PipelineRun>), Response> {
        let access = Access {
            verb: "list",
            resource,
            namespace: namespace.to_string(),
            name: None,
        };
        self.authorize(headers, &access).await?;
        self.stores(namespace).await
    }

    /// Follows a run, waiting a little for a run so new the gateway's watch has not seen it.
    async fn follow(
        &self,
        namespace: &str,
        name: &str,
        since: Option<u64>,
    ) -> Result<Follow, Response> {
        self.stores(namespace).await?;
        let deadline = tokio::time::Instant::now() + CACHE_WAIT;
        loop {
            match self.hub.follow(namespace, name, since) {
                Ok(follow) => return Ok(follow),
                Err(e @ FollowError::NotFound { .. }) => {
                    if tokio::time::Instant::now() >= deadline {
                        return Err(synqx_web::refused_follow(&e));
                    }
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                Err(e) => return Err(synqx_web::refused_follow(&e)),
            }
        }
    }
}

async fn list_pipelines(
    State(gateway): State<Arc<Gateway>>,
    Path(namespace): Path<String>,
    headers: HeaderMap,
) -> Response {
    match gateway.listed(&headers, &namespace, "pipelines").await {
        Ok((pipelines, _)) => {
            let all = pipelines.state();
            synqx_web::items(&views::pipelines(all.iter().map(AsRef::as_ref), &namespace))
        }
        Err(refused) => refused,
    }
}

async fn list_runs(
    State(gateway): State<Arc<Gateway>>,
    Path(namespace): Path<String>,
    Query(query): Query<RunsQuery>,
    headers: HeaderMap,
) -> Response {
    match gateway.listed(&headers, &namespace, "pipelineruns").await {
        Ok((_, runs)) => {
            let all = runs.state();
            let pipeline = query.pipeline.as_deref();
            synqx_web::items(&views::runs(
                all.iter().map(AsRef::as_ref),
                &namespace,
                pipeline,
            ))
        }
        Err(refused) => refused,
    }
}

async fn watch_run(
    State(gateway): State<Arc<Gateway>>,
    Path((namespace, name)): Path<(String, String)>,
    Query(query): Query<WatchQuery>,
    headers: HeaderMap,
    upgrade: WebSocketUpgrade,
) -> Response {
    let access = Access::get_run(&namespace, &name);
    let token = match gateway.authorize(&headers, &access).await {
        Ok(token) => token,
        Err(refused) => return refused,
    };
    let follow = match gateway.follow(&namespace, &name, query.since).await {
        Ok(follow) => follow,
        Err(refused) => return refused,
    };
    let filter = StepFilter::parse(query.step.as_deref());
    let review = watch::Review {
        gateway,
        token,
        access,
    };
    // Selected when offered; the token's subprotocol is never echoed.
    upgrade
        .protocols([PROTOCOL])
        .on_upgrade(move |socket| synqx_web::follow::stream(socket, follow, filter, review))
}
