//! Prometheus metrics, and the HTTP endpoint that serves them with `/healthz` and `/readyz`.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use http_body_util::Full;
use hyper::body::Bytes;
use hyper::{Request, Response, StatusCode};
use prometheus::{
    Encoder, GaugeVec, HistogramOpts, HistogramVec, IntCounterVec, IntGauge, IntGaugeVec, Opts,
    Registry, TextEncoder,
};

/// Every metric the operator exports, registered in its own registry.
pub struct Metrics {
    registry: Registry,
    pub reconciles: IntCounterVec,
    pub reconcile_errors: IntCounterVec,
    pub reconcile_seconds: HistogramVec,
    pub runs: IntCounterVec,
    pub step_seconds: HistogramVec,
    pub rows_read: IntCounterVec,
    pub rows_written: IntCounterVec,
    pub bytes_read: IntCounterVec,
    pub bytes_written: IntCounterVec,
    pub watermark_age: GaugeVec,
    pub active_jobs: IntGaugeVec,
    pub leader: IntGauge,
    /// Set once the controllers run (or this replica stands by, healthy, for the lease).
    pub ready: AtomicBool,
}

impl Metrics {
    pub fn new() -> Result<Self, prometheus::Error> {
        let registry = Registry::new_custom(Some("synqx".into()), None)?;
        let counter =
            |name: &str, help: &str, labels: &[&str]| -> Result<IntCounterVec, prometheus::Error> {
                let metric = IntCounterVec::new(Opts::new(name, help), labels)?;
                registry.register(Box::new(metric.clone()))?;
                Ok(metric)
            };
        let histogram = |name: &str,
                         help: &str,
                         labels: &[&str],
                         buckets: Vec<f64>|
         -> Result<HistogramVec, prometheus::Error> {
            let metric =
                HistogramVec::new(HistogramOpts::new(name, help).buckets(buckets), labels)?;
            registry.register(Box::new(metric.clone()))?;
            Ok(metric)
        };
        let step_labels = ["namespace", "pipeline", "step"];
        let metrics = Self {
            reconciles: counter(
                "reconcile_total",
                "Reconciliations by controller.",
                &["controller"],
            )?,
            reconcile_errors: counter(
                "reconcile_errors_total",
                "Failed reconciliations by controller.",
                &["controller"],
            )?,
            reconcile_seconds: histogram(
                "reconcile_duration_seconds",
                "Time one reconciliation took.",
                &["controller"],
                prometheus::exponential_buckets(0.001, 4.0, 9)?,
            )?,
            runs: counter(
                "runs_total",
                "PipelineRuns that ended, by phase.",
                &["namespace", "pipeline", "phase"],
            )?,
            step_seconds: histogram(
                "step_duration_seconds",
                "Wall time of step attempts that ended, by phase.",
                &["namespace", "pipeline", "step", "phase"],
                prometheus::exponential_buckets(0.5, 2.0, 14)?,
            )?,
            rows_read: counter(
                "rows_read_total",
                "Rows read by steps that succeeded.",
                &step_labels,
            )?,
            rows_written: counter(
                "rows_written_total",
                "Rows written by steps that succeeded.",
                &step_labels,
            )?,
            bytes_read: counter(
                "bytes_read_total",
                "Bytes read by steps that succeeded.",
                &step_labels,
            )?,
            bytes_written: counter(
                "bytes_written_total",
                "Bytes written by steps that succeeded.",
                &step_labels,
            )?,
            watermark_age: {
                let metric = GaugeVec::new(
                    Opts::new(
                        "watermark_age_seconds",
                        "Seconds since each step's watermark was last committed.",
                    ),
                    &step_labels,
                )?;
                registry.register(Box::new(metric.clone()))?;
                metric
            },
            active_jobs: {
                let metric = IntGaugeVec::new(
                    Opts::new("active_jobs", "Step Jobs running now, by namespace."),
                    &["namespace"],
                )?;
                registry.register(Box::new(metric.clone()))?;
                metric
            },
            leader: {
                let metric =
                    IntGauge::new("leader", "1 while this replica holds the leader lease.")?;
                registry.register(Box::new(metric.clone()))?;
                metric
            },
            ready: AtomicBool::new(false),
            registry,
        };
        Ok(metrics)
    }

    pub fn render(&self) -> String {
        let mut buffer = Vec::new();
        let encoder = TextEncoder::new();
        if let Err(error) = encoder.encode(&self.registry.gather(), &mut buffer) {
            tracing::warn!(%error, "encoding metrics");
        }
        String::from_utf8_lossy(&buffer).into_owned()
    }
}

/// Keeps `synqx_active_jobs` current: step Jobs not yet ended, per namespace, counted every
/// 15 s rather than on every reconciliation.
pub async fn count_active_jobs(
    scopes: Vec<kube::Api<k8s_openapi::api::batch::v1::Job>>,
    metrics: Arc<Metrics>,
) {
    let params = kube::api::ListParams::default().labels(crate::job::LABEL_RUN);
    loop {
        let mut by_namespace = std::collections::BTreeMap::<String, i64>::new();
        let mut complete = true;
        for jobs in &scopes {
            match jobs.list(&params).await {
                Ok(list) => {
                    for job in list.items.iter().filter(|j| !crate::job::is_finished(j)) {
                        *by_namespace
                            .entry(job.metadata.namespace.clone().unwrap_or_default())
                            .or_default() += 1;
                    }
                }
                Err(error) => {
                    complete = false;
                    tracing::warn!(%error, "counting active Jobs");
                }
            }
        }
        if complete {
            metrics.active_jobs.reset();
            for (namespace, count) in by_namespace {
                metrics
                    .active_jobs
                    .with_label_values(&[&namespace])
                    .set(count);
            }
        }
        tokio::time::sleep(std::time::Duration::from_secs(15)).await;
    }
}

/// Serves `/metrics`, `/healthz` and `/readyz` until the process ends.
pub async fn serve(
    listener: tokio::net::TcpListener,
    metrics: Arc<Metrics>,
) -> std::io::Result<()> {
    if let Ok(addr) = listener.local_addr() {
        tracing::info!(%addr, "serving /metrics, /healthz and /readyz");
    }
    loop {
        let (stream, _) = match listener.accept().await {
            Ok(accepted) => accepted,
            // A failed accept (too many open files) must not end the endpoint for good.
            Err(error) => {
                tracing::warn!(%error, "accepting a metrics connection");
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                continue;
            }
        };
        let metrics = metrics.clone();
        tokio::spawn(async move {
            let service =
                hyper::service::service_fn(move |request: Request<hyper::body::Incoming>| {
                    let metrics = metrics.clone();
                    async move {
                        Ok::<_, std::convert::Infallible>(respond(request.uri().path(), &metrics))
                    }
                });
            let io = hyper_util::rt::TokioIo::new(stream);
            if let Err(error) = hyper::server::conn::http1::Builder::new()
                .serve_connection(io, service)
                .await
            {
                tracing::debug!(%error, "metrics connection ended");
            }
        });
    }
}

fn respond(path: &str, metrics: &Metrics) -> Response<Full<Bytes>> {
    let (status, body, content_type) = match path {
        "/metrics" => (
            StatusCode::OK,
            metrics.render(),
            "text/plain; version=0.0.4",
        ),
        "/healthz" => (StatusCode::OK, "ok\n".to_string(), "text/plain"),
        "/readyz" if metrics.ready.load(Ordering::SeqCst) => {
            (StatusCode::OK, "ok\n".to_string(), "text/plain")
        }
        "/readyz" => (
            StatusCode::SERVICE_UNAVAILABLE,
            "starting\n".to_string(),
            "text/plain",
        ),
        _ => (
            StatusCode::NOT_FOUND,
            "not found: try /metrics, /healthz or /readyz\n".to_string(),
            "text/plain",
        ),
    };
    let mut response = Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = status;
    if let Ok(value) = hyper::header::HeaderValue::from_str(content_type) {
        response
            .headers_mut()
            .insert(hyper::header::CONTENT_TYPE, value);
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metrics_render_with_labels_and_endpoints_answer() {
        let metrics = Metrics::new().expect("metrics");
        metrics
            .rows_written
            .with_label_values(&["etl", "orders", "load"])
            .inc_by(42);
        metrics
            .runs
            .with_label_values(&["etl", "orders", "Succeeded"])
            .inc();
        let text = metrics.render();
        assert!(
            text.contains(
                r#"synqx_rows_written_total{namespace="etl",pipeline="orders",step="load"} 42"#
            ),
            "{text}"
        );
        assert!(
            text.contains(
                r#"synqx_runs_total{namespace="etl",phase="Succeeded",pipeline="orders"} 1"#
            ),
            "{text}"
        );
        assert_eq!(
            respond("/readyz", &metrics).status(),
            StatusCode::SERVICE_UNAVAILABLE
        );
        metrics.ready.store(true, Ordering::SeqCst);
        assert_eq!(respond("/readyz", &metrics).status(), StatusCode::OK);
        assert_eq!(respond("/healthz", &metrics).status(), StatusCode::OK);
        assert_eq!(respond("/nope", &metrics).status(), StatusCode::NOT_FOUND);
    }
}
