//! The operator's client of the Kubernetes API. It sends at most `--api-qps` requests a
//! second (as a burst within the second, then waits), so a thousand runs starting together
//! queue in the operator rather than at the API server, which every other client shares.
//! Answers 429 (and 503, 504) are retried with exponential backoff, after the server's
//! `Retry-After` when it sends one: kube's default retry policy, kept on.

use std::time::Duration;

use anyhow::Context as _;
use kube::Client;
use kube::client::ClientBuilder;
use tower::limit::{RateLimit, RateLimitLayer};

/// The default of `--api-qps`.
pub const DEFAULT_QPS: u32 = 50;

/// A client of the current kubeconfig or service account, limited to `qps` requests a second.
pub async fn connect(qps: u32) -> anyhow::Result<Client> {
    let mut config = kube::Config::infer()
        .await
        .context("reading the Kubernetes configuration (kubeconfig or in-cluster)")?;
    config.default_retry = true;
    let builder = ClientBuilder::try_from(config)
        .context("building the Kubernetes API client (kubeconfig or in-cluster)")?;
    Ok(limited(builder, qps).build())
}

/// `builder` with at most `qps` requests a second.
pub fn limited<S>(builder: ClientBuilder<S>, qps: u32) -> ClientBuilder<RateLimit<S>> {
    builder.with_layer(&RateLimitLayer::new(
        u64::from(qps.max(1)),
        Duration::from_secs(1),
    ))
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use hyper::body::Bytes;
    use k8s_openapi::api::core::v1::ConfigMap;
    use kube::Api;
    use tokio::time::Instant;

    use super::*;

    #[tokio::test(start_paused = true)]
    async fn requests_beyond_the_rate_wait_for_the_next_second() {
        let sent: Arc<Mutex<Vec<Instant>>> = Arc::default();
        let record = sent.clone();
        let server = crate::fake_api::service(move |_, _| {
            if let Ok(mut sent) = record.lock() {
                sent.push(Instant::now());
            }
            let body = r#"{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"x"}}"#;
            std::future::ready((200, Bytes::from(body)))
        });
        let client = limited(ClientBuilder::new(server, "default"), 3).build();
        let maps: Api<ConfigMap> = Api::namespaced(client, "default");
        let start = Instant::now();
        for _ in 0..7 {
            let map = maps.get("x").await;
            assert!(map.is_ok(), "{map:?}");
        }
        let seconds: Vec<u64> = sent
            .lock()
            .map(|s| s.iter().map(|t| (*t - start).as_secs()).collect())
            .unwrap_or_default();
        assert_eq!(seconds, [0, 0, 0, 1, 1, 1, 2]);
    }
}
