//! The route against a fake API server that counts what it is asked: a pod's reports cost one
//! review and one read of its pod and Job, until its pod is gone.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::sync::{Arc, Mutex, PoisonError};

use axum::http::{HeaderValue, header::AUTHORIZATION};
use http_body_util::Full;
use hyper::body::Bytes;
use k8s_openapi::api::authentication::v1::{TokenReview, TokenReviewStatus, UserInfo};
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::Pod;
use kube::runtime::reflector::{self, store::Writer};
use kube::runtime::watcher::Event;
use synqx_api::PipelineRun;
use synqx_api::telemetry::{AUDIENCE, TelemetryReport};

use super::{attempt, run};
use crate::gateway::feed::{Scope, Stores};
use crate::gateway::telemetry::*;
use crate::gateway::{Hub, Limits, RECHECK};

/// What the fake API server holds and how often it was asked.
#[derive(Default)]
struct Server {
    pod: Option<Pod>,
    job: Option<Job>,
    reviews: usize,
    reads: usize,
}

type Shared = Arc<Mutex<Server>>;

fn lock(server: &Shared) -> std::sync::MutexGuard<'_, Server> {
    server.lock().unwrap_or_else(PoisonError::into_inner)
}

/// The answer to one request: a TokenReview that binds the token to the pod while the pod
/// exists (as the API server does for a projected token), or the pod or Job asked for.
fn answer(server: &Shared, method: &str, path: &str) -> (u16, String) {
    let mut server = lock(server);
    let not_found = || {
        let status = r#"{"kind":"Status","apiVersion":"v1","status":"Failure","reason":"NotFound","code":404,"message":"not found"}"#;
        (404, status.to_string())
    };
    if method == "POST" && path.ends_with("/tokenreviews") {
        server.reviews += 1;
        let status = match &server.pod {
            Some(pod) => TokenReviewStatus {
                authenticated: Some(true),
                audiences: Some(vec![AUDIENCE.into()]),
                user: Some(UserInfo {
                    username: Some("system:serviceaccount:etl:synqx-runner".into()),
                    extra: Some(BTreeMap::from([
                        (
                            POD_NAME.into(),
                            vec![pod.metadata.name.clone().unwrap_or_default()],
                        ),
                        (
                            POD_UID.into(),
                            vec![pod.metadata.uid.clone().unwrap_or_default()],
                        ),
                    ])),
                    ..Default::default()
                }),
                ..Default::default()
            },
            None => TokenReviewStatus {
                authenticated: Some(false),
                error: Some("pod not found".into()),
                ..Default::default()
            },
        };
        let review = TokenReview {
            status: Some(status),
            ..Default::default()
        };
        return (201, serde_json::to_string(&review).unwrap_or_default());
    }
    server.reads += 1;
    let found = if path.contains("/pods/") {
        server.pod.as_ref().map(serde_json::to_string)
    } else if path.contains("/jobs/") {
        server.job.as_ref().map(serde_json::to_string)
    } else {
        None
    };
    match found {
        Some(Ok(body)) => (200, body),
        _ => not_found(),
    }
}

fn client(server: &Shared) -> Client {
    let server = server.clone();
    let service = tower::service_fn(move |request: hyper::Request<kube::client::Body>| {
        let (code, body) = answer(&server, request.method().as_str(), request.uri().path());
        async move {
            let mut response = hyper::Response::new(Full::new(Bytes::from(body)));
            *response.status_mut() = StatusCode::from_u16(code).unwrap_or(StatusCode::OK);
            Ok::<_, Infallible>(response)
        }
    });
    Client::new(service, "etl")
}

/// A store that has listed `objects`.
fn listed<K>(objects: Vec<K>) -> (reflector::Store<K>, Writer<K>)
where
    K: kube::Resource<DynamicType = ()> + Clone,
{
    let (store, mut writer) = reflector::store();
    writer.apply_watcher_event(&Event::Init);
    for object in objects {
        writer.apply_watcher_event(&Event::InitApply(object));
    }
    writer.apply_watcher_event(&Event::InitDone);
    (store, writer)
}

fn request(token: &str) -> HeaderMap {
    let mut headers = HeaderMap::new();
    if let Ok(value) = HeaderValue::from_str(&format!("Bearer {token}")) {
        headers.insert(AUTHORIZATION, value);
    }
    headers
}

fn body(report: &TelemetryReport) -> Bytes {
    Bytes::from(serde_json::to_vec(report).unwrap_or_default())
}

#[tokio::test]
async fn a_pods_reports_cost_one_review_until_the_pod_is_gone() {
    let run: PipelineRun = run();
    let (job, pod) = attempt("load", 2);
    let server: Shared = Arc::new(Mutex::new(Server {
        pod: Some(pod.clone()),
        job: Some(job),
        ..Default::default()
    }));
    let (pipelines, _) = listed(Vec::new());
    let (runs, _) = listed(vec![run]);
    let (pods, mut pods_writer) = listed(vec![pod.clone()]);
    let gateway = Arc::new(Gateway {
        client: client(&server),
        hub: Arc::new(Hub::new(Limits::default())),
        stores: Stores::of_scopes(vec![Scope {
            namespace: Some("etl".into()),
            pipelines,
            runs,
            pods,
        }]),
        recheck: RECHECK,
        counters: Arc::default(),
        logs: None,
        bindings: Bindings::default(),
        plans: crate::revision::Plans::default(),
    });
    let report = TelemetryReport {
        namespace: "etl".into(),
        run: "orders-1".into(),
        step: "load".into(),
        attempt: 2,
        ..Default::default()
    };
    let token = "header.payload.signature";
    for n in 1..=10 {
        let response = receive(State(gateway.clone()), request(token), body(&report)).await;
        assert_eq!(response.status(), StatusCode::NO_CONTENT, "report {n}");
    }
    {
        let server = lock(&server);
        assert_eq!(
            (server.reviews, server.reads),
            (1, 2),
            "one review, one pod and one Job read"
        );
    }

    // The same token reporting for another attempt of the run is bound anew, and refused.
    let other = TelemetryReport {
        attempt: 3,
        ..report.clone()
    };
    let response = receive(State(gateway.clone()), request(token), body(&other)).await;
    assert_eq!(response.status(), StatusCode::FORBIDDEN);

    // The pod is deleted: the watch drops it, the API server refuses its token.
    lock(&server).pod = None;
    pods_writer.apply_watcher_event(&Event::Delete(pod));
    let response = receive(State(gateway.clone()), request(token), body(&report)).await;
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(lock(&server).reviews, 2, "the token was reviewed again");
}
