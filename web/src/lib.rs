//! What both servers of the client API share: the operator's gateway and `synqx run --ui`.
//! The web UI's files, embedded in the binary ([`assets`]); each run's bounded message log
//! and its followers ([`hub`], [`log`]); a follower's step filter and WebSocket stream
//! ([`filter`], [`follow`]); and refusals in the API server's `Status` shape.
//! docs/gateway.md ("Gateway API") has the routes and messages.

pub mod assets;
pub mod filter;
pub mod follow;
pub mod hub;
pub mod log;

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};

pub use filter::StepFilter;
pub use hub::{Follow, FollowError, Hub, Limits};

/// The routes of the client API (axum path syntax).
pub const LIST_PIPELINES: &str = "/api/v1/namespaces/{namespace}/pipelines";
pub const LIST_RUNS: &str = "/api/v1/namespaces/{namespace}/pipelineruns";
pub const WATCH_RUN: &str = "/api/v1/namespaces/{namespace}/pipelineruns/{name}/watch";
pub const RUN_LOGS: &str = "/api/v1/namespaces/{namespace}/pipelineruns/{name}/logs";
pub const RUN_GRAPH: &str = "/api/v1/namespaces/{namespace}/pipelineruns/{name}/graph";

/// The query of the runs list: `?pipeline=P`.
#[derive(Debug, Default, Deserialize)]
pub struct RunsQuery {
    pub pipeline: Option<String>,
}

/// The query of the watch route: `?since=N&step=a,b`.
#[derive(Debug, Default, Deserialize)]
pub struct WatchQuery {
    pub since: Option<u64>,
    pub step: Option<String>,
}

/// A list answer: `{"items": […]}`, as the API server lists.
pub fn items<T: Serialize>(items: &[T]) -> Response {
    axum::Json(serde_json::json!({ "items": items })).into_response()
}

/// A refusal as the API server writes one (a `Status`), so clients read both alike.
pub fn failure(code: StatusCode, reason: &str, message: String) -> Response {
    let body = serde_json::json!({
        "kind": "Status",
        "apiVersion": "v1",
        "status": "Failure",
        "reason": reason,
        "message": message,
        "code": code.as_u16(),
    });
    let mut response = (code, axum::Json(body)).into_response();
    if code == StatusCode::UNAUTHORIZED {
        response
            .headers_mut()
            .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
    }
    response
}

/// The answer to a path no route serves.
pub fn no_route() -> Response {
    failure(
        StatusCode::NOT_FOUND,
        "NotFound",
        "no such route: see docs/gateway.md (\"Gateway API\") for the routes".into(),
    )
}

/// The answer to a follow the hub refuses: the run is unknown (404) or too many follow (429).
pub fn refused_follow(error: &FollowError) -> Response {
    match error {
        FollowError::NotFound { .. } => {
            failure(StatusCode::NOT_FOUND, "NotFound", error.to_string())
        }
        FollowError::RunFull { .. } | FollowError::Full { .. } => failure(
            StatusCode::TOO_MANY_REQUESTS,
            "TooManyRequests",
            error.to_string(),
        ),
    }
}
