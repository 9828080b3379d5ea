//! An API server in memory, for unit tests: each request's method and body go to a handler,
//! whose status and body are the answer.

use std::convert::Infallible;
use std::future::Future;

use http_body_util::{BodyExt, Full};
use hyper::StatusCode;
use hyper::body::Bytes;
use kube::Client;
use kube::client::{Body, ClientBuilder};
use tower::util::BoxCloneService;

/// The service a fake client sends its requests to.
pub type Service = BoxCloneService<hyper::Request<Body>, hyper::Response<Full<Bytes>>, Infallible>;

/// A service answering each request with what `handler` returns for its method and body.
pub fn service<F, Fut>(handler: F) -> Service
where
    F: Fn(String, Bytes) -> Fut + Clone + Send + 'static,
    Fut: Future<Output = (u16, Bytes)> + Send + 'static,
{
    BoxCloneService::new(tower::service_fn(move |request: hyper::Request<Body>| {
        let handler = handler.clone();
        async move {
            let method = request.method().as_str().to_string();
            let body = request
                .into_body()
                .collect()
                .await
                .map(|b| b.to_bytes())
                .unwrap_or_default();
            let (status, body) = handler(method, body).await;
            let mut response = hyper::Response::new(Full::new(body));
            *response.status_mut() = StatusCode::from_u16(status).unwrap_or(StatusCode::OK);
            Ok::<_, Infallible>(response)
        }
    }))
}

/// A client of a fake API server answering with `handler`.
pub fn client<F, Fut>(handler: F) -> Client
where
    F: Fn(String, Bytes) -> Fut + Clone + Send + 'static,
    Fut: Future<Output = (u16, Bytes)> + Send + 'static,
{
    ClientBuilder::new(service(handler), "default").build()
}
