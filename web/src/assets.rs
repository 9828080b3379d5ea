//! The web UI: plain HTML, CSS and JavaScript modules compiled into the binary, so a server
//! needs no files and no build toolchain at run time. `/` is the page; `/ui/…` its files and
//! `/ui/config.json` what the page needs to know of its server. None of it needs a token:
//! the data stays behind the API routes and their authorisation.

use axum::Router;
use axum::extract::Path;
use axum::http::{HeaderName, HeaderValue, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde::Serialize;

/// One embedded file.
struct Asset {
    name: &'static str,
    content_type: &'static str,
    body: &'static str,
}

const fn js(name: &'static str, body: &'static str) -> Asset {
    Asset {
        name,
        content_type: "text/javascript; charset=utf-8",
        body,
    }
}

const INDEX: &str = include_str!("../assets/index.html");

const FILES: &[Asset] = &[
    Asset {
        name: "style.css",
        content_type: "text/css; charset=utf-8",
        body: include_str!("../assets/style.css"),
    },
    js("app.js", include_str!("../assets/js/app.js")),
    js("api.js", include_str!("../assets/js/api.js")),
    js("dom.js", include_str!("../assets/js/dom.js")),
    js("format.js", include_str!("../assets/js/format.js")),
    js("dag.js", include_str!("../assets/js/dag.js")),
    js("pipelines.js", include_str!("../assets/js/pipelines.js")),
    js("run.js", include_str!("../assets/js/run.js")),
    js("follow.js", include_str!("../assets/js/follow.js")),
];

/// What the page needs to know of the server that serves it.
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct UiConfig {
    /// The namespace the page opens (the user can change it).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    /// Whether the API asks for a bearer token (the operator's gateway) or not (a local run
    /// on loopback).
    pub token: bool,
    /// Shown in the page's header: the cluster's gateway, or the local run.
    pub title: String,
}

/// The routes of the page and its files; merge them into a server's router.
pub fn routes<S: Clone + Send + Sync + 'static>(config: UiConfig) -> Router<S> {
    Router::new()
        .route(
            "/",
            get(|| async { page("text/html; charset=utf-8", INDEX) }),
        )
        .route(
            "/ui/config.json",
            get(move || {
                let config = config.clone();
                async move { with_headers(axum::Json(config).into_response()) }
            }),
        )
        .route("/ui/{file}", get(file))
}

async fn file(Path(name): Path<String>) -> Response {
    match FILES.iter().find(|a| a.name == name) {
        Some(asset) => page(asset.content_type, asset.body),
        None => crate::no_route(),
    }
}

fn page(content_type: &'static str, body: &'static str) -> Response {
    let response = ([(header::CONTENT_TYPE, content_type)], body).into_response();
    with_headers(response)
}

/// The page loads only its own files and talks only to its own server; nothing may frame it
/// (a token is pasted into it); the browser revalidates so an upgraded server's files apply.
fn with_headers(mut response: Response) -> Response {
    let headers = response.headers_mut();
    let set = [
        (
            header::CONTENT_SECURITY_POLICY,
            "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
             connect-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'",
        ),
        (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        (header::REFERRER_POLICY, "no-referrer"),
        (header::CACHE_CONTROL, "no-cache"),
        (HeaderName::from_static("x-frame-options"), "DENY"),
    ];
    for (name, value) in set {
        headers.insert(name, HeaderValue::from_static(value));
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_module_the_page_imports_is_served() {
        let served: Vec<&str> = FILES.iter().map(|a| a.name).collect();
        let sources = FILES.iter().map(|a| a.body).chain([INDEX]);
        for source in sources {
            for import in source.split("/ui/").skip(1) {
                let name: String = import
                    .chars()
                    .take_while(|c| c.is_ascii_alphanumeric() || *c == '.' || *c == '_')
                    .collect();
                if name.ends_with(".js") || name.ends_with(".css") {
                    assert!(served.contains(&name.as_str()), "{name} is not embedded");
                }
            }
        }
    }
}
