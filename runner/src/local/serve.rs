//! `synqx run --ui ADDR`: the web UI of the operator's gateway and its API shapes, served for
//! local runs. The run in progress comes from its live view ([`super::live`]); earlier runs,
//! last runs and watermarks from the state database. Everything is in the namespace
//! [`NAMESPACE`]. There is no authentication, so only a loopback address is served unless
//! the user asks for another one explicitly.

use std::collections::{BTreeMap, HashSet};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use axum::Router;
use axum::extract::ws::WebSocketUpgrade;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use kube::ResourceExt;
use synqx_api::gateway::{GraphView, PROTOCOL, PipelineView, Ready, RunView};
use synqx_api::pipeline::{RunReference, Watermark};
use synqx_api::run::{PipelineRunStatus, StepStatus, WatermarkRange};
use synqx_api::{Pipeline, dag};
use synqx_web::assets::UiConfig;
use synqx_web::follow::Always;
use synqx_web::{FollowError, Hub, RunsQuery, StepFilter, WatchQuery, failure};
use tokio::task::JoinHandle;

use super::live::NAMESPACE;
use crate::state::{RunRow, StateStore};

/// Earlier runs listed next to the current one.
const HISTORY: u32 = 50;
/// The revision a local run's graph names: it is planned from the files, not a stored plan.
const LOCAL_REVISION: &str = "local";

/// Why the UI cannot be served.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error(
        "--ui {addr}: a local run's web UI has no authentication, so it listens only on a \
         loopback address (127.0.0.1:PORT or [::1]:PORT); add --ui-any-address to serve it \
         to every host that can reach {addr}"
    )]
    NotLoopback { addr: SocketAddr },
    #[error("--ui {addr}: cannot listen there: {source}")]
    Bind {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
}

/// What the routes read.
struct Local {
    hub: Arc<Hub>,
    state: StateStore,
    pipelines: Vec<Pipeline>,
    /// Earlier runs the hub took from the state database for a watch: their plan is not
    /// kept, so their graph is not the files' graph.
    earlier: Mutex<HashSet<String>>,
}

/// The UI's server; it stops when dropped.
pub struct UiServer {
    pub addr: SocketAddr,
    tasks: Vec<JoinHandle<()>>,
}

impl Drop for UiServer {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

/// Listens on `addr` (a loopback address unless `any_address`) and serves the UI of the
/// runs `hub` follows and of `pipelines`, with their history from `state`.
pub async fn start(
    addr: SocketAddr,
    any_address: bool,
    hub: Arc<Hub>,
    state: StateStore,
    pipelines: Vec<Pipeline>,
) -> Result<UiServer, ServeError> {
    if !addr.ip().is_loopback() && !any_address {
        return Err(ServeError::NotLoopback { addr });
    }
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|source| ServeError::Bind { addr, source })?;
    let bound = listener
        .local_addr()
        .map_err(|source| ServeError::Bind { addr, source })?;
    let local = Arc::new(Local {
        hub: hub.clone(),
        state,
        pipelines,
        earlier: Mutex::default(),
    });
    let ui = UiConfig {
        namespace: Some(NAMESPACE.to_string()),
        token: false,
        title: "local run".into(),
    };
    let router = Router::new()
        .route(synqx_web::LIST_PIPELINES, get(list_pipelines))
        .route(synqx_web::LIST_RUNS, get(list_runs))
        .route(synqx_web::WATCH_RUN, get(watch_run))
        .route(synqx_web::RUN_GRAPH, get(run_graph))
        .merge(synqx_web::assets::routes(ui))
        .fallback(|| async { synqx_web::no_route() })
        .with_state(local);
    let serve = tokio::spawn(async move {
        if let Err(error) = axum::serve(listener, router).await {
            eprintln!("the web UI stopped serving: {error}");
        }
    });
    // Counters are coalesced to one message a second, as the operator's gateway sends them.
    let flush = tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        loop {
            tick.tick().await;
            hub.flush_counters();
        }
    });
    Ok(UiServer {
        addr: bound,
        tasks: vec![serve, flush],
    })
}

/// The refusal of a namespace other than [`NAMESPACE`].
fn not_served(namespace: &str) -> Option<Response> {
    if namespace == NAMESPACE {
        return None;
    }
    Some(failure(
        StatusCode::NOT_FOUND,
        "NotFound",
        format!(
            "namespace {namespace} is not served here: local runs are in namespace {NAMESPACE}"
        ),
    ))
}

fn state_failure(error: &crate::error::Error) -> Response {
    failure(
        StatusCode::INTERNAL_SERVER_ERROR,
        "InternalError",
        format!("reading the local state database: {error}"),
    )
}

async fn list_pipelines(
    State(local): State<Arc<Local>>,
    Path(namespace): Path<String>,
) -> Response {
    if let Some(refused) = not_served(&namespace) {
        return refused;
    }
    let mut views = Vec::new();
    for pipeline in &local.pipelines {
        let mut view = PipelineView::of(pipeline);
        // `synqx run` starts only when every file is valid: each pipeline compiled.
        view.ready = Some(Ready {
            status: "True".into(),
            reason: "Compiled".into(),
            message: "compiled from the given files".into(),
        });
        match pipeline_state(&local.state, &view.name).await {
            Ok((last_run, watermarks)) => {
                view.last_run = last_run;
                view.watermarks = watermarks;
            }
            Err(error) => return state_failure(&error),
        }
        views.push(view);
    }
    views.sort_by(|a, b| a.name.cmp(&b.name));
    synqx_web::items(&views)
}

/// A pipeline's last run and watermarks, as the operator records them in its status.
async fn pipeline_state(
    state: &StateStore,
    pipeline: &str,
) -> crate::error::Result<(
    Option<RunReference>,
    std::collections::BTreeMap<String, Watermark>,
)> {
    let last = state.runs(Some(pipeline), 1).await?.into_iter().next();
    let watermarks = state
        .watermarks(Some(pipeline))
        .await?
        .into_iter()
        .map(|w| {
            let mark = Watermark {
                value: w.value,
                run: w.run_id,
                updated_at: Some(w.updated_at),
            };
            (w.step, mark)
        })
        .collect();
    let last_run = last.map(|r| RunReference {
        name: r.id,
        phase: phase(&r.status),
        start_time: Some(r.started_at),
    });
    Ok((last_run, watermarks))
}

async fn list_runs(
    State(local): State<Arc<Local>>,
    Path(namespace): Path<String>,
    Query(query): Query<RunsQuery>,
) -> Response {
    if let Some(refused) = not_served(&namespace) {
        return refused;
    }
    let pipeline = query.pipeline.as_deref();
    let mut views: Vec<RunView> = local
        .hub
        .runs_of(NAMESPACE)
        .into_iter()
        .filter(|r| pipeline.is_none_or(|p| r.pipeline == p))
        .collect();
    let records = match local.state.runs(pipeline, HISTORY).await {
        Ok(records) => records,
        Err(error) => return state_failure(&error),
    };
    for record in records {
        if views.iter().any(|v| v.name == record.id) {
            continue;
        }
        match past_run(&local.state, record).await {
            Ok(view) => views.push(view),
            Err(error) => return state_failure(&error),
        }
    }
    views.sort_by(|a, b| b.created.cmp(&a.created).then_with(|| a.name.cmp(&b.name)));
    synqx_web::items(&views)
}

/// An earlier run as the state database recorded it.
async fn past_run(state: &StateStore, record: RunRow) -> crate::error::Result<RunView> {
    let steps = state.steps(&record.id).await?;
    let steps = steps
        .into_iter()
        .map(|s| StepStatus {
            phase: phase(&s.status),
            rows_read: Some(s.counters.rows_read),
            rows_written: Some(s.counters.rows_written),
            rows_rejected: Some(s.counters.rows_rejected),
            bytes_read: Some(s.counters.bytes_read),
            bytes_written: Some(s.counters.bytes_written),
            started_at: s.started_at,
            finished_at: s.finished_at,
            watermark: (s.watermark_from.is_some() || s.watermark_to.is_some()).then_some(
                WatermarkRange {
                    from: s.watermark_from,
                    to: s.watermark_to,
                },
            ),
            message: s.message,
            name: s.step,
            ..Default::default()
        })
        .collect();
    Ok(RunView {
        name: record.id,
        namespace: NAMESPACE.to_string(),
        pipeline: record.pipeline,
        created: Some(record.started_at.clone()),
        status: PipelineRunStatus {
            phase: phase(&record.status),
            start_time: Some(record.started_at),
            completion_time: record.finished_at,
            steps,
            ..Default::default()
        },
    })
}

/// A phase as the state database writes it (`Succeeded`); `None` for a word it does not know.
fn phase<P: serde::de::DeserializeOwned>(word: &str) -> Option<P> {
    serde_json::from_value(serde_json::Value::String(word.to_string())).ok()
}

/// The graph of the run this process runs: the plan compiled from the given files, as the
/// operator's gateway serves a run's pinned plan. Earlier runs' plans are not kept: 404, and
/// the page draws their pipeline as it is now.
async fn run_graph(
    State(local): State<Arc<Local>>,
    Path((namespace, name)): Path<(String, String)>,
) -> Response {
    if let Some(refused) = not_served(&namespace) {
        return refused;
    }
    let earlier = local
        .earlier
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .contains(&name);
    let run = local
        .hub
        .runs_of(NAMESPACE)
        .into_iter()
        .find(|r| r.name == name);
    let plan = run
        .filter(|_| !earlier)
        .and_then(|run| {
            local
                .pipelines
                .iter()
                .find(|p| p.name_any() == run.pipeline)
        })
        .and_then(|pipeline| dag::compile(&pipeline.spec, &BTreeMap::new()).ok());
    match plan {
        Some(plan) => axum::Json(GraphView::of_plan(&plan, LOCAL_REVISION)).into_response(),
        None => failure(
            StatusCode::NOT_FOUND,
            "NotFound",
            format!(
                "run {name} is not the run this synqx run runs: the plan of an earlier run is not kept"
            ),
        ),
    }
}

async fn watch_run(
    State(local): State<Arc<Local>>,
    Path((namespace, name)): Path<(String, String)>,
    Query(query): Query<WatchQuery>,
    upgrade: WebSocketUpgrade,
) -> Response {
    if let Some(refused) = not_served(&namespace) {
        return refused;
    }
    let mut follow = local.hub.follow(NAMESPACE, &name, query.since);
    // An earlier run is not in the hub: its record becomes a run that does not change.
    if let Err(FollowError::NotFound { .. }) = follow {
        let records = match local.state.runs(None, HISTORY).await {
            Ok(records) => records,
            Err(error) => return state_failure(&error),
        };
        if let Some(record) = records.into_iter().find(|r| r.id == name) {
            match past_run(&local.state, record).await {
                Ok(view) => {
                    local
                        .earlier
                        .lock()
                        .unwrap_or_else(PoisonError::into_inner)
                        .insert(view.name.clone());
                    local.hub.observe(view);
                }
                Err(error) => return state_failure(&error),
            }
            follow = local.hub.follow(NAMESPACE, &name, query.since);
        }
    }
    let follow = match follow {
        Ok(follow) => follow,
        Err(refused) => return synqx_web::refused_follow(&refused),
    };
    let filter = StepFilter::parse(query.step.as_deref());
    upgrade
        .protocols([PROTOCOL])
        .on_upgrade(move |socket| synqx_web::follow::stream(socket, follow, filter, Always))
        .into_response()
}
