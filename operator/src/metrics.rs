//! Prometheus metrics, and the HTTP endpoint that serves them with `/healthz` and `/readyz`.
//!
//! Counters and histograms of things that happen (reconciliations, runs and steps that end)
//! are recorded through the small methods below, called by one line in the controllers.
//! Gauges of state (watermarks, stale thresholds, last successes, running steps) are derived
//! from the controllers' caches at scrape time by [`crate::cache_metrics`], so they are
//! always current and vanish with the objects they describe. Every label set is bounded by
//! the objects in the cluster: namespace, pipeline, step, phase, controller.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use http_body_util::Full;
use hyper::body::Bytes;
use hyper::{Request, Response, StatusCode};
use prometheus::core::Collector;
use prometheus::{
    Encoder, GaugeVec, HistogramOpts, HistogramVec, IntCounterVec, IntGauge, IntGaugeVec, Opts,
    Registry, TextEncoder,
};
use synqx_api::run::{RunPhase, StepPhase, StepReport};

use crate::cache_metrics::{Caches, Observed};

const STEP: [&str; 3] = ["namespace", "pipeline", "step"];
const PIPELINE: [&str; 2] = ["namespace", "pipeline"];

/// Every metric the operator exports, registered in its own registry.
pub struct Metrics {
    registry: Registry,
    pub reconciles: IntCounterVec,
    pub reconcile_errors: IntCounterVec,
    pub reconcile_seconds: HistogramVec,
    pub runs: IntCounterVec,
    run_seconds: HistogramVec,
    pub step_seconds: HistogramVec,
    pub rows_read: IntCounterVec,
    pub rows_written: IntCounterVec,
    rows_rejected: IntCounterVec,
    pub bytes_read: IntCounterVec,
    pub bytes_written: IntCounterVec,
    pub watermark_age: GaugeVec,
    watermark_timestamp: GaugeVec,
    stale_after: GaugeVec,
    last_success: GaugeVec,
    step_start_time: GaugeVec,
    pub active_jobs: IntGaugeVec,
    pending_jobs: IntGaugeVec,
    pending_job_age: GaugeVec,
    pub leader: IntGauge,
    /// Kubernetes Events by result: published, failed, dropped (the queue was full).
    pub events: IntCounterVec,
    /// Set once the controllers run (or this replica stands by, healthy, for the lease).
    pub ready: AtomicBool,
    /// The controllers' caches (one set per namespace served), once they run on this replica.
    caches: Mutex<Vec<Caches>>,
    /// Pipelines seen at the last scrape: the series of those deleted since are dropped.
    /// Held through a whole refresh and render, so two scrapes at once never interleave.
    seen: Mutex<Vec<(String, String)>>,
}

/// Registers metrics of one kind in `registry`.
struct Builder<'a>(&'a Registry);

impl Builder<'_> {
    fn register<M: Collector + Clone + 'static>(&self, metric: M) -> Result<M, prometheus::Error> {
        self.0.register(Box::new(metric.clone()))?;
        Ok(metric)
    }
    fn counter(
        &self,
        name: &str,
        help: &str,
        labels: &[&str],
    ) -> Result<IntCounterVec, prometheus::Error> {
        self.register(IntCounterVec::new(Opts::new(name, help), labels)?)
    }
    fn gauge(
        &self,
        name: &str,
        help: &str,
        labels: &[&str],
    ) -> Result<GaugeVec, prometheus::Error> {
        self.register(GaugeVec::new(Opts::new(name, help), labels)?)
    }
    fn int_gauge(
        &self,
        name: &str,
        help: &str,
        labels: &[&str],
    ) -> Result<IntGaugeVec, prometheus::Error> {
        self.register(IntGaugeVec::new(Opts::new(name, help), labels)?)
    }
    fn histogram(
        &self,
        name: &str,
        help: &str,
        labels: &[&str],
        buckets: Vec<f64>,
    ) -> Result<HistogramVec, prometheus::Error> {
        self.register(HistogramVec::new(
            HistogramOpts::new(name, help).buckets(buckets),
            labels,
        )?)
    }
}

impl Metrics {
    pub fn new() -> Result<Self, prometheus::Error> {
        let registry = Registry::new_custom(Some("synqx".into()), None)?;
        let m = Builder(&registry);
        // Steps and runs take from seconds to a day: 0.5 s doubling up to about 18 h.
        let long = || prometheus::exponential_buckets(0.5, 2.0, 18);
        let metrics = Self {
            reconciles: m.counter(
                "reconcile_total",
                "Reconciliations by controller.",
                &["controller"],
            )?,
            reconcile_errors: m.counter(
                "reconcile_errors_total",
                "Failed reconciliations by controller and kind of error (forbidden, conflict, unreachable, api, revision, schedule, resume_from, vault, panic, name_taken).",
                &["controller", "kind"],
            )?,
            reconcile_seconds: m.histogram(
                "reconcile_duration_seconds",
                "Time one reconciliation took.",
                &["controller"],
                prometheus::exponential_buckets(0.001, 4.0, 9)?,
            )?,
            runs: m.counter(
                "runs_total",
                "PipelineRuns that ended, by phase (Succeeded, Failed, Cancelled).",
                &["namespace", "pipeline", "phase"],
            )?,
            run_seconds: m.histogram(
                "run_duration_seconds",
                "Wall time of PipelineRuns that ended, from start to end, by phase.",
                &["namespace", "pipeline", "phase"],
                long()?,
            )?,
            step_seconds: m.histogram(
                "step_duration_seconds",
                "Wall time of step attempts that ended, by phase.",
                &["namespace", "pipeline", "step", "phase"],
                long()?,
            )?,
            rows_read: m.counter("rows_read_total", "Rows read by steps that succeeded.", &STEP)?,
            rows_written: m.counter(
                "rows_written_total",
                "Rows written by steps that succeeded.",
                &STEP,
            )?,
            rows_rejected: m.counter(
                "rows_rejected_total",
                "Rows rejected by steps that succeeded with `onError: skip`.",
                &STEP,
            )?,
            bytes_read: m.counter(
                "bytes_read_total",
                "Bytes read by steps that succeeded.",
                &STEP,
            )?,
            bytes_written: m.counter(
                "bytes_written_total",
                "Bytes written by steps that succeeded.",
                &STEP,
            )?,
            watermark_age: m.gauge(
                "watermark_age_seconds",
                "Seconds since each incremental step's watermark was last committed.",
                &STEP,
            )?,
            watermark_timestamp: m.gauge(
                "watermark_timestamp_seconds",
                "Unix time each incremental step's watermark was last committed.",
                &STEP,
            )?,
            stale_after: m.gauge(
                "pipeline_stale_after_seconds",
                "How long a watermark of the Pipeline may stand still before it is stale \
                 (annotation synqx.io/stale-after, default 24h).",
                &PIPELINE,
            )?,
            last_success: m.gauge(
                "pipeline_last_success_timestamp_seconds",
                "Unix time the newest Succeeded run of the Pipeline ended.",
                &PIPELINE,
            )?,
            step_start_time: m.gauge(
                "step_start_time_seconds",
                "Unix time the oldest running attempt of each step started; absent while none runs.",
                &STEP,
            )?,
            active_jobs: m.int_gauge(
                "active_jobs",
                "Step Jobs not yet ended, by namespace.",
                &["namespace"],
            )?,
            pending_jobs: m.int_gauge(
                "pending_jobs",
                "Step Jobs not yet ended whose pod is not running yet (waiting for capacity), by namespace.",
                &["namespace"],
            )?,
            pending_job_age: m.gauge(
                "pending_job_max_age_seconds",
                "Age of the oldest step Job whose pod is not running yet, by namespace.",
                &["namespace"],
            )?,
            leader: m.register(IntGauge::new(
                "leader",
                "1 while this replica holds the leader lease.",
            )?)?,
            events: m.counter(
                "events_total",
                "Kubernetes Events by result: published, failed, or dropped because more than \
                 the queue holds waited (--events-qps).",
                &["result"],
            )?,
            ready: AtomicBool::new(false),
            caches: Mutex::new(Vec::new()),
            seen: Mutex::new(Vec::new()),
            registry,
        };
        Ok(metrics)
    }

    /// Counts what a step that succeeded moved.
    pub fn step_succeeded(&self, namespace: &str, pipeline: &str, step: &str, report: &StepReport) {
        let labels = [namespace, pipeline, step];
        self.rows_read
            .with_label_values(&labels)
            .inc_by(report.rows_read);
        self.rows_written
            .with_label_values(&labels)
            .inc_by(report.rows_written);
        self.rows_rejected
            .with_label_values(&labels)
            .inc_by(report.rows_rejected);
        self.bytes_read
            .with_label_values(&labels)
            .inc_by(report.bytes_read);
        self.bytes_written
            .with_label_values(&labels)
            .inc_by(report.bytes_written);
    }

    /// Times a step attempt that ended (succeeded, failed, or failed and is retrying).
    pub fn step_ended(
        &self,
        namespace: &str,
        pipeline: &str,
        step: &str,
        phase: StepPhase,
        seconds: f64,
    ) {
        self.step_seconds
            .with_label_values(&[namespace, pipeline, step, phase.as_str()])
            .observe(seconds);
    }

    /// Counts a run that ended, and times it when it had started.
    pub fn run_ended(
        &self,
        namespace: &str,
        pipeline: &str,
        phase: RunPhase,
        started: Option<&str>,
    ) {
        let labels = [namespace, pipeline, phase.as_str()];
        self.runs.with_label_values(&labels).inc();
        let took = started
            .and_then(crate::context::parse_time)
            .map(|start| (chrono::Utc::now() - start).num_milliseconds().max(0) as f64 / 1000.0);
        if let Some(seconds) = took {
            self.run_seconds.with_label_values(&labels).observe(seconds);
        }
    }

    /// From now on, scrapes derive the state gauges from these caches too.
    pub fn observe_caches(&self, caches: Caches) {
        lock(&self.caches).push(caches);
    }

    pub fn render(&self) -> String {
        let mut seen = lock(&self.seen);
        let caches = lock(&self.caches);
        if !caches.is_empty() {
            let observed = crate::cache_metrics::observe_all(&caches, chrono::Utc::now());
            self.apply(&observed, &mut seen);
        }
        drop(caches);
        let mut buffer = Vec::new();
        let encoder = TextEncoder::new();
        if let Err(error) = encoder.encode(&self.registry.gather(), &mut buffer) {
            tracing::warn!(%error, "encoding metrics");
        }
        String::from_utf8_lossy(&buffer).into_owned()
    }

    /// Replaces the state gauges with what the caches hold now, starts the counters of every
    /// Pipeline, step and namespace at zero (so the first failure, the first rows, are an
    /// increase Prometheus can see), and drops every series of Pipelines deleted since the
    /// last scrape.
    fn apply(&self, observed: &Observed, seen: &mut Vec<(String, String)>) {
        for gauge in [
            &self.stale_after,
            &self.last_success,
            &self.watermark_timestamp,
            &self.watermark_age,
            &self.step_start_time,
        ] {
            gauge.reset();
        }
        for ((namespace, pipeline), seconds) in &observed.stale_after {
            self.stale_after
                .with_label_values(&[namespace, pipeline])
                .set(*seconds);
            for phase in [RunPhase::Succeeded, RunPhase::Failed, RunPhase::Cancelled] {
                let phase = format!("{phase:?}");
                self.runs.with_label_values(&[namespace, pipeline, &phase]);
            }
            self.active_jobs.with_label_values(&[namespace]);
            self.pending_jobs.with_label_values(&[namespace]);
        }
        for (namespace, pipeline, step) in &observed.steps {
            let labels = [namespace.as_str(), pipeline, step];
            for counter in self.step_counters() {
                counter.with_label_values(&labels);
            }
        }
        for ((namespace, pipeline), at) in &observed.last_success {
            self.last_success
                .with_label_values(&[namespace, pipeline])
                .set(*at);
        }
        for ((namespace, pipeline, step), at) in &observed.watermarks {
            let labels = [namespace.as_str(), pipeline, step];
            self.watermark_timestamp.with_label_values(&labels).set(*at);
            self.watermark_age
                .with_label_values(&labels)
                .set((observed.now - at).max(0.0));
        }
        for ((namespace, pipeline, step), at) in &observed.step_started {
            self.step_start_time
                .with_label_values(&[namespace, pipeline, step])
                .set(*at);
        }
        let now: Vec<(String, String)> = observed.stale_after.keys().cloned().collect();
        for gone in seen
            .iter()
            .filter(|p| !observed.stale_after.contains_key(*p))
        {
            self.forget(&gone.0, &gone.1);
        }
        *seen = now;
        // A step renamed or removed keeps no series: edits cannot grow the label sets.
        let steps: std::collections::BTreeSet<&(String, String, String)> =
            observed.steps.iter().collect();
        self.forget_where(|labels| {
            let get = |name: &str| labels.get(name).cloned().unwrap_or_default();
            let (namespace, pipeline) = (get("namespace"), get("pipeline"));
            let step = (namespace.clone(), pipeline.clone(), get("step"));
            labels.contains_key("step")
                && observed.stale_after.contains_key(&(namespace, pipeline))
                && !steps.contains(&step)
        });
    }

    /// The counters with namespace, pipeline and step labels.
    fn step_counters(&self) -> [&IntCounterVec; 5] {
        [
            &self.rows_read,
            &self.rows_written,
            &self.rows_rejected,
            &self.bytes_read,
            &self.bytes_written,
        ]
    }

    /// Drops every counter and histogram series of one Pipeline.
    fn forget(&self, namespace: &str, pipeline: &str) {
        self.forget_where(|labels| {
            labels.get("namespace").map(String::as_str) == Some(namespace)
                && labels.get("pipeline").map(String::as_str) == Some(pipeline)
        });
    }

    /// Drops every counter and histogram series whose labels `gone` picks.
    fn forget_where(&self, gone: impl Fn(&HashMap<String, String>) -> bool) {
        for counter in std::iter::once(&self.runs).chain(self.step_counters()) {
            for labels in label_sets(counter, &gone) {
                let _ = counter.remove(&as_refs(&labels));
            }
        }
        for histogram in [&self.run_seconds, &self.step_seconds] {
            for labels in label_sets(histogram, &gone) {
                let _ = histogram.remove(&as_refs(&labels));
            }
        }
    }
}

/// A lock whose holder panicked still guards consistent data here (gauges are rebuilt on
/// every scrape), so it is used as it is.
fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// The label sets of `metric`'s series that `pick` picks.
fn label_sets(
    metric: &dyn Collector,
    pick: &impl Fn(&HashMap<String, String>) -> bool,
) -> Vec<HashMap<String, String>> {
    metric
        .collect()
        .iter()
        .flat_map(|family| family.get_metric())
        .map(|series| {
            series
                .get_label()
                .iter()
                .map(|pair| (pair.name().to_string(), pair.value().to_string()))
                .collect::<HashMap<_, _>>()
        })
        .filter(|labels| pick(labels))
        .collect()
}

fn as_refs(labels: &HashMap<String, String>) -> HashMap<&str, &str> {
    labels
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect()
}

/// Keeps `synqx_active_jobs`, `synqx_pending_jobs` and `synqx_pending_job_max_age_seconds`
/// current: step Jobs not yet ended, and those of them whose pod is not running yet, per
/// namespace, counted from the Job caches every 15 s rather than on every reconciliation.
pub async fn count_active_jobs(
    caches: Vec<kube::runtime::reflector::Store<k8s_openapi::api::batch::v1::Job>>,
    metrics: Arc<Metrics>,
) {
    loop {
        let jobs: Vec<k8s_openapi::api::batch::v1::Job> = caches
            .iter()
            .flat_map(|cache| cache.state())
            .filter(|job| {
                kube::ResourceExt::labels(job.as_ref()).contains_key(crate::job::LABEL_RUN)
            })
            .map(|job| job.as_ref().clone())
            .collect();
        metrics.jobs_counted(&count_jobs(&jobs, chrono::Utc::now()));
        tokio::time::sleep(std::time::Duration::from_secs(15)).await;
    }
}

/// Step Jobs of one namespace that have not ended.
#[derive(Debug, Default, PartialEq)]
pub struct JobCount {
    pub active: i64,
    pub pending: i64,
    /// Seconds the oldest pending Job has waited.
    pub oldest_pending: f64,
}

/// Counts unfinished Jobs per namespace; a Job is pending while none of its pods is ready
/// (not yet scheduled, not yet created, or its image still being pulled).
pub fn count_jobs(
    jobs: &[k8s_openapi::api::batch::v1::Job],
    now: chrono::DateTime<chrono::Utc>,
) -> std::collections::BTreeMap<String, JobCount> {
    let mut by_namespace = std::collections::BTreeMap::<String, JobCount>::new();
    for job in jobs.iter().filter(|j| !crate::job::job_ended(j)) {
        let count = by_namespace
            .entry(job.metadata.namespace.clone().unwrap_or_default())
            .or_default();
        count.active += 1;
        let ready = job.status.as_ref().and_then(|s| s.ready).unwrap_or(0);
        if ready == 0 {
            count.pending += 1;
            let created = job
                .metadata
                .creation_timestamp
                .as_ref()
                .and_then(|t| chrono::DateTime::from_timestamp(t.0.as_second(), 0));
            if let Some(created) = created {
                let waited = (now - created).num_milliseconds().max(0) as f64 / 1000.0;
                count.oldest_pending = count.oldest_pending.max(waited);
            }
        }
    }
    by_namespace
}

impl Metrics {
    fn jobs_counted(&self, counts: &std::collections::BTreeMap<String, JobCount>) {
        self.active_jobs.reset();
        self.pending_jobs.reset();
        self.pending_job_age.reset();
        for (namespace, count) in counts {
            self.active_jobs
                .with_label_values(&[namespace])
                .set(count.active);
            self.pending_jobs
                .with_label_values(&[namespace])
                .set(count.pending);
            if count.pending > 0 {
                self.pending_job_age
                    .with_label_values(&[namespace])
                    .set(count.oldest_pending);
            }
        }
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

    fn report(rows: u64, rejected: u64) -> StepReport {
        StepReport {
            rows_read: rows + rejected,
            rows_written: rows,
            rows_rejected: rejected,
            bytes_written: rows * 10,
            ..Default::default()
        }
    }

    #[test]
    fn metrics_render_with_labels_and_endpoints_answer() {
        let metrics = Metrics::new().expect("metrics");
        metrics.step_succeeded("etl", "orders", "load", &report(42, 3));
        metrics.step_ended("etl", "orders", "load", StepPhase::Succeeded, 3.0);
        metrics.run_ended(
            "etl",
            "orders",
            RunPhase::Succeeded,
            Some("2020-01-01T00:00:00Z"),
        );
        let text = metrics.render();
        for line in [
            r#"synqx_rows_written_total{namespace="etl",pipeline="orders",step="load"} 42"#,
            r#"synqx_rows_rejected_total{namespace="etl",pipeline="orders",step="load"} 3"#,
            r#"synqx_rows_read_total{namespace="etl",pipeline="orders",step="load"} 45"#,
            r#"synqx_bytes_written_total{namespace="etl",pipeline="orders",step="load"} 420"#,
            r#"synqx_runs_total{namespace="etl",phase="Succeeded",pipeline="orders"} 1"#,
            r#"synqx_run_duration_seconds_count{namespace="etl",phase="Succeeded",pipeline="orders"} 1"#,
            r#"synqx_step_duration_seconds_bucket{namespace="etl",phase="Succeeded",pipeline="orders",step="load",le="4"} 1"#,
        ] {
            assert!(text.contains(line), "{line} missing from\n{text}");
        }
        assert_eq!(
            respond("/readyz", &metrics).status(),
            StatusCode::SERVICE_UNAVAILABLE
        );
        metrics.ready.store(true, Ordering::SeqCst);
        assert_eq!(respond("/readyz", &metrics).status(), StatusCode::OK);
        assert_eq!(respond("/healthz", &metrics).status(), StatusCode::OK);
        assert_eq!(respond("/nope", &metrics).status(), StatusCode::NOT_FOUND);
    }

    fn observed(pipelines: &[(&str, f64)]) -> Observed {
        let mut observed = Observed {
            now: 1000.0,
            ..Default::default()
        };
        for (name, threshold) in pipelines {
            let key = ("etl".to_string(), name.to_string());
            observed.stale_after.insert(key.clone(), *threshold);
            observed.last_success.insert(key, 900.0);
            let step = ("etl".to_string(), name.to_string(), "extract".to_string());
            observed.watermarks.insert(step.clone(), 400.0);
            observed.steps.push(step.clone());
            observed.step_started.insert(step, 990.0);
        }
        observed
    }

    #[test]
    fn state_gauges_follow_the_caches_and_a_deleted_pipeline_leaves_no_series() {
        let metrics = Metrics::new().expect("metrics");
        let mut seen = Vec::new();
        metrics.step_succeeded("etl", "gone", "extract", &report(5, 0));
        metrics.run_ended("etl", "gone", RunPhase::Failed, None);
        metrics.apply(&observed(&[("orders", 60.0), ("gone", 86400.0)]), &mut seen);
        let text = metrics.render();
        for line in [
            r#"synqx_pipeline_stale_after_seconds{namespace="etl",pipeline="orders"} 60"#,
            r#"synqx_pipeline_last_success_timestamp_seconds{namespace="etl",pipeline="orders"} 900"#,
            r#"synqx_watermark_timestamp_seconds{namespace="etl",pipeline="orders",step="extract"} 400"#,
            r#"synqx_watermark_age_seconds{namespace="etl",pipeline="orders",step="extract"} 600"#,
            r#"synqx_step_start_time_seconds{namespace="etl",pipeline="orders",step="extract"} 990"#,
            // Every Pipeline's run counters exist from the start, at zero.
            r#"synqx_runs_total{namespace="etl",phase="Failed",pipeline="orders"} 0"#,
            r#"synqx_runs_total{namespace="etl",phase="Failed",pipeline="gone"} 1"#,
            r#"synqx_rows_written_total{namespace="etl",pipeline="gone",step="extract"} 5"#,
            r#"synqx_rows_rejected_total{namespace="etl",pipeline="orders",step="extract"} 0"#,
            r#"synqx_active_jobs{namespace="etl"} 0"#,
        ] {
            assert!(text.contains(line), "{line} missing from\n{text}");
        }
        metrics.apply(&observed(&[("orders", 60.0)]), &mut seen);
        let text = metrics.render();
        assert!(!text.contains(r#"pipeline="gone""#), "{text}");
        assert!(text.contains(r#"pipeline="orders""#), "{text}");
    }

    #[test]
    fn steps_renamed_away_leave_no_series_so_edits_cannot_grow_the_label_sets() {
        let metrics = Metrics::new().expect("metrics");
        let mut seen = Vec::new();
        for i in 0..50 {
            let step = format!("renamed-{i}");
            metrics.step_succeeded("etl", "orders", &step, &report(1, 0));
            metrics.step_ended("etl", "orders", &step, StepPhase::Failed, 1.0);
        }
        metrics.step_succeeded("etl", "orders", "extract", &report(7, 0));
        metrics.apply(&observed(&[("orders", 60.0)]), &mut seen);
        let text = metrics.render();
        assert!(!text.contains("renamed-"), "{text}");
        assert!(
            text.contains(
                r#"synqx_rows_written_total{namespace="etl",pipeline="orders",step="extract"} 7"#
            ),
            "{text}"
        );
        assert!(
            text.contains(
                r#"synqx_runs_total{namespace="etl",phase="Failed",pipeline="orders"} 0"#
            )
        );
    }

    fn job(namespace: &str, created: &str, ready: Option<i32>, finished: bool) -> Job {
        let conditions = finished.then(|| {
            vec![k8s_openapi::api::batch::v1::JobCondition {
                type_: "Complete".into(),
                status: "True".into(),
                ..Default::default()
            }]
        });
        serde_json::from_value(serde_json::json!({
            "metadata": {"name": "j", "namespace": namespace, "creationTimestamp": created},
            "status": {"ready": ready, "conditions": conditions},
        }))
        .expect("job")
    }
    use k8s_openapi::api::batch::v1::Job;

    #[test]
    fn jobs_whose_pods_do_not_run_yet_are_pending_with_the_age_of_the_oldest() {
        let now = crate::context::parse_time("2026-01-01T01:00:00Z").expect("time");
        let jobs = [
            job("a", "2026-01-01T00:50:00Z", Some(0), false),
            job("a", "2026-01-01T00:40:00Z", None, false),
            job("a", "2026-01-01T00:00:00Z", Some(1), false),
            job("a", "2026-01-01T00:00:00Z", None, true),
            job("b", "2026-01-01T00:59:00Z", Some(1), false),
        ];
        let counts = count_jobs(&jobs, now);
        assert_eq!(
            counts.get("a"),
            Some(&JobCount {
                active: 3,
                pending: 2,
                oldest_pending: 1200.0
            })
        );
        assert_eq!(
            counts.get("b"),
            Some(&JobCount {
                active: 1,
                pending: 0,
                oldest_pending: 0.0
            })
        );
        let metrics = Metrics::new().expect("metrics");
        metrics.jobs_counted(&counts);
        let text = metrics.render();
        assert!(
            text.contains(r#"synqx_pending_jobs{namespace="a"} 2"#),
            "{text}"
        );
        assert!(
            text.contains(r#"synqx_pending_job_max_age_seconds{namespace="a"} 1200"#),
            "{text}"
        );
        assert!(
            !text.contains(r#"synqx_pending_job_max_age_seconds{namespace="b"}"#),
            "{text}"
        );
        assert!(
            text.contains(r#"synqx_active_jobs{namespace="a"} 3"#),
            "{text}"
        );
    }
}
