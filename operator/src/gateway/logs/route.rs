//! `GET /api/v1/namespaces/{ns}/pipelineruns/{name}/logs?step=S&attempt=N`: a run's step logs
//! as JSON, `{"items": [{step, attempt, lines}]}`, one item per step (its latest attempt
//! unless `attempt` is given). A step attempt in the store is read whole from it; one the
//! store does not hold (no store configured, or nothing stored yet) comes from the lines
//! the gateway keeps in memory. Authorised as the watch is: `get pipelineruns` on the run.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use serde::Deserialize;
use synqx_api::gateway::StepLog;
use synqx_web::failure;

use super::{LogKey, gzip};
use crate::gateway::Gateway;
use crate::gateway::auth::Access;

/// The query of the logs route.
#[derive(Debug, Default, Deserialize)]
pub struct LogsQuery {
    /// Only this step.
    pub step: Option<String>,
    /// Only this attempt (default: each step's latest).
    pub attempt: Option<u32>,
}

/// Picks, per step, the attempt asked for (or the latest) among `logs`.
pub fn pick(logs: Vec<StepLog>, query: &LogsQuery) -> BTreeMap<String, StepLog> {
    let mut chosen: BTreeMap<String, StepLog> = BTreeMap::new();
    for log in logs {
        if !wanted(query, &log.step, log.attempt) {
            continue;
        }
        match chosen.get_mut(&log.step) {
            Some(kept) if kept.attempt == log.attempt => kept.lines.extend(log.lines),
            Some(kept) if kept.attempt > log.attempt => {}
            _ => {
                chosen.insert(log.step.clone(), log);
            }
        }
    }
    chosen
}

/// Whether the query asks for this step attempt.
fn wanted(query: &LogsQuery, step: &str, attempt: u32) -> bool {
    query.step.as_ref().is_none_or(|s| s == step) && query.attempt.is_none_or(|a| a == attempt)
}

pub async fn get_logs(
    State(gateway): State<Arc<Gateway>>,
    Path((namespace, name)): Path<(String, String)>,
    Query(query): Query<LogsQuery>,
    headers: HeaderMap,
) -> Response {
    let access = Access::get_run(&namespace, &name);
    if let Err(refused) = gateway.authorize(&headers, &access).await {
        return refused;
    }
    let live = gateway.hub.kept_logs(&namespace, &name);
    let mut items = pick(live.clone().unwrap_or_default(), &query);
    let mut stored_any = false;
    if let Some(logs) = &gateway.logs {
        let keys = match logs.store().attempts(&namespace, &name).await {
            Ok(keys) => keys,
            Err(error) => return unavailable(&error),
        };
        let mut chosen: BTreeMap<String, LogKey> = BTreeMap::new();
        for key in keys
            .into_iter()
            .filter(|k| wanted(&query, &k.step, k.attempt))
        {
            if chosen
                .get(&key.step)
                .is_none_or(|c| c.attempt < key.attempt)
            {
                chosen.insert(key.step.clone(), key);
            }
        }
        for (step, key) in chosen {
            // A later attempt only the gateway's memory holds yet wins over the store's.
            if items.get(&step).is_some_and(|l| l.attempt > key.attempt) {
                continue;
            }
            match logs.store().read(&key).await {
                Ok(Some(bytes)) => {
                    stored_any = true;
                    let lines = gzip::decode(&bytes);
                    let attempt = key.attempt;
                    items.insert(
                        step.clone(),
                        StepLog {
                            step,
                            attempt,
                            lines,
                        },
                    );
                }
                Ok(None) => {}
                Err(error) => return unavailable(&error),
            }
        }
    }
    if live.is_none() && !stored_any {
        let what = query
            .step
            .as_ref()
            .map(|s| format!("step \"{s}\" of "))
            .unwrap_or_default();
        let store = gateway
            .logs
            .as_ref()
            .map(|l| format!("the log store ({})", l.store().describe()))
            .unwrap_or_else(|| "no log store (the operator runs without --logs-dir)".into());
        return failure(
            StatusCode::NOT_FOUND,
            "NotFound",
            format!(
                "no log of {what}PipelineRun {namespace}/{name}: the gateway does not follow the run and {store} holds none of it"
            ),
        );
    }
    let items: Vec<StepLog> = items.into_values().collect();
    synqx_web::items(&items)
}

fn unavailable(error: &super::StoreError) -> Response {
    tracing::warn!(%error, "reading a step log failed");
    failure(
        StatusCode::SERVICE_UNAVAILABLE,
        "ServiceUnavailable",
        format!("{error}; try again"),
    )
}
