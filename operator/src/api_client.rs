//! The operator's client of the Kubernetes API. Its requests take from a
//! [`Budget`](crate::request_budget::Budget): `--api-burst` at once, then `--api-qps` a
//! second, status writes behind everything else that waits. So a thousand runs starting
//! together queue in the operator rather than at the API server, which every other client
//! shares, and their Jobs are not created behind their status writes. Answers 429 (and 503,
//! 504) are retried with exponential backoff, after the server's `Retry-After` when it sends
//! one: kube's default retry policy, kept on.

use anyhow::Context as _;
use hyper::Request;
use kube::Client;
use kube::client::{Body, ClientBuilder};
use tower::BoxError;
use tower::buffer::Buffer;

use crate::request_budget::{Budget, BudgetLayer, Budgeted};

/// The default of `--api-qps`.
pub const DEFAULT_QPS: u32 = 50;
/// The default of `--api-burst`: what 200 runs starting together need before their first
/// Jobs (a read of the plan, the record, the create), with room to spare.
pub const DEFAULT_BURST: u32 = 600;

/// A client of the current kubeconfig or service account, within its own budget of `qps`
/// requests a second after a first `burst`.
pub async fn connect(qps: u32, burst: u32) -> anyhow::Result<Client> {
    let mut config = kube::Config::infer()
        .await
        .context("reading the Kubernetes configuration (kubeconfig or in-cluster)")?;
    config.default_retry = true;
    let builder = ClientBuilder::try_from(config)
        .context("building the Kubernetes API client (kubeconfig or in-cluster)")?;
    Ok(limited(builder, Budget::new(qps, burst)).build())
}

/// `builder` with its requests taking from `budget`.
pub fn limited<S>(builder: ClientBuilder<S>, budget: Budget) -> ClientBuilder<Budgeted<Buffered<S>>>
where
    S: tower::Service<Request<Body>> + Send + 'static,
    S::Future: Send,
    S::Error: Into<BoxError> + Send + Sync,
{
    builder.with_layer(&BudgetLayer(budget))
}

/// The service under a budget, shared through its buffer.
type Buffered<S> = Buffer<Request<Body>, <S as tower::Service<Request<Body>>>::Future>;

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use hyper::body::Bytes;
    use k8s_openapi::api::core::v1::ConfigMap;
    use kube::Api;
    use kube::api::{Patch, PatchParams, PostParams};
    use tokio::time::Instant;

    use super::*;

    const MAP: &str = r#"{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"x"}}"#;

    type Sent = Arc<Mutex<Vec<(String, u128)>>>;

    /// A client of a fake API server at `qps` and `burst`, and what reached the server:
    /// the method and the milliseconds since the start.
    fn client(qps: u32, burst: u32) -> (Client, Sent) {
        let sent: Sent = Arc::default();
        let record = sent.clone();
        let start = Instant::now();
        let server = crate::fake_api::service(move |method, _| {
            if let Ok(mut sent) = record.lock() {
                sent.push((method, (Instant::now() - start).as_millis()));
            }
            std::future::ready((200, Bytes::from(MAP)))
        });
        let client = limited(
            ClientBuilder::new(server, "default"),
            Budget::new(qps, burst),
        );
        (client.build(), sent)
    }

    fn seen(sent: &Sent) -> Vec<(String, u128)> {
        sent.lock().map(|s| s.clone()).unwrap_or_default()
    }

    #[tokio::test(start_paused = true)]
    async fn requests_beyond_the_burst_wait_for_the_rate() {
        let (client, sent) = client(3, 3);
        let maps: Api<ConfigMap> = Api::namespaced(client, "default");
        for _ in 0..7 {
            let map = maps.get("x").await;
            assert!(map.is_ok(), "{map:?}");
        }
        let millis: Vec<u128> = seen(&sent).into_iter().map(|(_, ms)| ms).collect();
        assert_eq!(millis[..3], [0, 0, 0], "the burst goes at once: {millis:?}");
        for pair in millis[2..].windows(2) {
            // A third of a second apart, give or take the timer's millisecond.
            assert!((333..=335).contains(&(pair[1] - pair[0])), "{millis:?}");
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_create_that_waits_goes_before_status_writes_that_waited_longer() {
        let (client, sent) = client(1, 1);
        let maps: Api<ConfigMap> = Api::namespaced(client, "default");
        assert!(maps.get("x").await.is_ok(), "the burst's one token");
        let status = tokio::spawn({
            let maps = maps.clone();
            async move {
                let patch = Patch::Merge(serde_json::json!({"status": {}}));
                maps.patch_status("x", &PatchParams::default(), &patch)
                    .await
                    .map(|_| ())
            }
        });
        // The status write queues first; the create comes after it and still goes first.
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        let body: ConfigMap = serde_json::from_str(MAP).unwrap_or_default();
        let create = maps.create(&PostParams::default(), &body).await;
        assert!(create.is_ok(), "{create:?}");
        let status = status.await;
        assert!(matches!(status, Ok(Ok(()))), "{status:?}");
        let sent = seen(&sent);
        let methods: Vec<&str> = sent.iter().map(|(m, _)| m.as_str()).collect();
        assert_eq!(methods, ["GET", "POST", "PATCH"]);
        let seconds: Vec<u128> = sent.iter().map(|(_, ms)| (ms + 10) / 1000).collect();
        assert_eq!(seconds, [0, 1, 2], "one token a second: {sent:?}");
    }
}
