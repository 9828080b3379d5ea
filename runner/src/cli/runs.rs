//! `synqx runs watch`: follows a PipelineRun through the operator's gateway and prints the
//! table `synqx run` prints, redrawn as steps move (on a terminal; otherwise once per
//! transition). A dropped connection resumes after the last message seen (`?since=`), so
//! nothing is shown twice or skipped; a snapshot the gateway marks as a reset replaces
//! what is shown, and says so.

use std::io::{IsTerminal, Write};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, bail};
use chrono::{DateTime, Utc};
use futures::StreamExt;
use secrecy::ExposeSecret;
use synqx_api::gateway::{
    Body, CLOSE_FORBIDDEN, CLOSE_UNAUTHORIZED, Message, PROTOCOL, Reset, RunView,
};
use synqx_api::run::{RunPhase, StepPhase, StepStatus};
use synqx_runner::engine::CounterSnapshot;
use synqx_runner::local::{RunSummary, StepSummary, render};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::{Error as WsError, Message as Frame};

/// Connection attempts in a row that may fail before the watch gives up.
const RECONNECTS: u32 = 5;

/// The run a gateway command reads, and how it reaches the gateway.
#[derive(clap::Args, Debug)]
pub struct RunOnGateway {
    /// Name of the PipelineRun.
    pub run: String,
    /// Namespace of the run (default: the kubeconfig's).
    #[arg(long, short = 'n')]
    pub namespace: Option<String>,
    /// URL of the operator's gateway, e.g. after `kubectl port-forward -n synqx-system
    /// svc/synqx-gateway 8081`.
    #[arg(long, env = "SYNQX_GATEWAY", default_value = "http://127.0.0.1:8081")]
    pub gateway: String,
    /// Bearer token of a user who may get the run (default: the kubeconfig's token),
    /// e.g. from `kubectl create token`.
    #[arg(long, env = "SYNQX_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
}

pub struct WatchArgs {
    pub target: RunOnGateway,
    pub step: Option<String>,
}

pub fn watch(args: WatchArgs) -> anyhow::Result<ExitCode> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the runtime")?;
    runtime.block_on(follow(args))
}

/// Why one connection ended.
enum Ended {
    /// The run finished: the watch is done.
    Finished(RunPhase),
    /// The connection dropped (or the gateway closed it for a reason one may resume from).
    Dropped(String),
    /// The gateway does not know the run.
    Unknown(String),
}

/// The namespace and bearer token of a gateway command: the flags, else the kubeconfig's.
pub(super) async fn credentials(target: &RunOnGateway) -> anyhow::Result<(String, String)> {
    let config = kube::Config::infer().await.ok();
    let namespace = target
        .namespace
        .clone()
        .or_else(|| config.as_ref().map(|c| c.default_namespace.clone()))
        .unwrap_or_else(|| "default".into());
    let token = match (
        &target.token,
        config.as_ref().and_then(|c| c.auth_info.token.as_ref()),
    ) {
        (Some(token), _) => token.clone(),
        (None, Some(token)) => token.expose_secret().to_string(),
        (None, None) => bail!(
            "no token for the gateway: pass --token (or set SYNQX_TOKEN), e.g. --token \"$(kubectl create token NAME -n {namespace})\" for a service account that may get pipelineruns"
        ),
    };
    Ok((namespace, token))
}

/// What takes a followed run's messages.
pub(super) trait Follower {
    /// Takes a message; returns the run's phase once it finished.
    fn take(&mut self, message: Message) -> anyhow::Result<Option<RunPhase>>;
    /// The last message taken, to resume after.
    fn seq(&self) -> Option<u64>;
}

/// The run a gateway command follows.
pub(super) struct FollowTarget<'a> {
    pub command: &'a str,
    pub gateway: &'a str,
    pub namespace: &'a str,
    pub run: &'a str,
    pub token: &'a str,
    pub step: Option<&'a str>,
}

/// How following a run ended.
pub(super) enum Followed {
    Finished(RunPhase),
    /// The gateway does not know the run (404): deleted, or never created.
    Unknown(String),
}

/// Follows a run until it finishes, resuming after dropped connections.
pub(super) async fn follow_run(
    target: &FollowTarget<'_>,
    follower: &mut impl Follower,
) -> anyhow::Result<Followed> {
    let base = websocket_base(target.gateway)?;
    let mut failures = 0;
    loop {
        let mut url = format!(
            "{base}/api/v1/namespaces/{}/pipelineruns/{}/watch",
            target.namespace, target.run
        );
        let mut query = Vec::new();
        if let Some(seq) = follower.seq() {
            query.push(format!("since={seq}"));
        }
        if let Some(step) = target.step {
            query.push(format!("step={step}"));
        }
        if !query.is_empty() {
            url = format!("{url}?{}", query.join("&"));
        }
        match watch_once(&url, target.token, follower).await? {
            Ended::Finished(phase) => return Ok(Followed::Finished(phase)),
            Ended::Unknown(why) => return Ok(Followed::Unknown(why)),
            Ended::Dropped(why) => {
                failures += 1;
                if failures > RECONNECTS {
                    bail!(
                        "following PipelineRun {}/{} through {}: {why} ({RECONNECTS} reconnections failed)",
                        target.namespace,
                        target.run,
                        target.gateway
                    );
                }
                eprintln!("{}: {why}; reconnecting", target.command);
                tokio::time::sleep(Duration::from_secs(1 << failures.min(4))).await;
            }
        }
        if follower.seq().is_some() {
            failures = 0;
        }
    }
}

async fn follow(args: WatchArgs) -> anyhow::Result<ExitCode> {
    let (namespace, token) = credentials(&args.target).await?;
    let target = FollowTarget {
        command: "synqx runs watch",
        gateway: &args.target.gateway,
        namespace: &namespace,
        run: &args.target.run,
        token: &token,
        step: args.step.as_deref(),
    };
    let mut shown = Shown::new(std::io::stdout().is_terminal());
    match follow_run(&target, &mut shown).await? {
        Followed::Finished(RunPhase::Succeeded) => Ok(ExitCode::SUCCESS),
        Followed::Finished(_) => Ok(ExitCode::FAILURE),
        Followed::Unknown(why) => bail!("{why}"),
    }
}

/// `http://host:port` as the WebSocket URL of the gateway.
fn websocket_base(gateway: &str) -> anyhow::Result<String> {
    let gateway = gateway.trim_end_matches('/');
    match gateway.split_once("://") {
        Some(("http" | "ws", rest)) => Ok(format!("ws://{rest}")),
        Some(("https" | "wss", _)) => bail!(
            "--gateway {gateway}: TLS is not supported by this client yet; reach the gateway with `kubectl port-forward -n synqx-system svc/synqx-gateway 8081` and --gateway http://127.0.0.1:8081"
        ),
        _ => bail!("--gateway {gateway}: expected http://HOST:PORT"),
    }
}

async fn watch_once(url: &str, token: &str, shown: &mut impl Follower) -> anyhow::Result<Ended> {
    let mut request = url
        .into_client_request()
        .with_context(|| format!("the gateway URL {url}"))?;
    let headers = request.headers_mut();
    headers.insert(
        "authorization",
        HeaderValue::from_str(&format!("Bearer {token}"))
            .context("the token is not valid in an HTTP header")?,
    );
    headers.insert("sec-websocket-protocol", HeaderValue::from_static(PROTOCOL));
    let (mut socket, _) = match tokio_tungstenite::connect_async(request).await {
        Ok(connected) => connected,
        Err(WsError::Http(response)) => {
            let status = response.status();
            let body = response.body().as_deref().unwrap_or_default();
            let message = serde_json::from_slice::<serde_json::Value>(body)
                .ok()
                .and_then(|v| v.get("message")?.as_str().map(String::from))
                .unwrap_or_else(|| String::from_utf8_lossy(body).into_owned());
            if status.is_server_error() {
                return Ok(Ended::Dropped(format!(
                    "the gateway answered {status}: {message}"
                )));
            }
            if status == tokio_tungstenite::tungstenite::http::StatusCode::NOT_FOUND {
                return Ok(Ended::Unknown(format!(
                    "the gateway refused {url}: {status}: {message}"
                )));
            }
            bail!("the gateway refused {url}: {status}: {message}");
        }
        Err(error) => {
            return Ok(Ended::Dropped(format!(
                "cannot reach the gateway at {url}: {error}"
            )));
        }
    };
    while let Some(frame) = socket.next().await {
        match frame {
            Ok(Frame::Text(text)) => {
                let message: Message = serde_json::from_str(text.as_str()).with_context(|| {
                    format!("the gateway sent a message this synqx does not read: {text}")
                })?;
                if let Some(phase) = shown.take(message)? {
                    return Ok(Ended::Finished(phase));
                }
            }
            Ok(Frame::Close(Some(close))) => {
                let code = u16::from(close.code);
                if code == CLOSE_UNAUTHORIZED || code == CLOSE_FORBIDDEN {
                    bail!("the gateway stopped the watch: {}", close.reason);
                }
                if close.code == CloseCode::Normal {
                    bail!("the gateway ended the watch: {}", close.reason);
                }
                return Ok(Ended::Dropped(format!(
                    "the gateway closed the watch: {}",
                    close.reason
                )));
            }
            Ok(_) => {}
            Err(error) => return Ok(Ended::Dropped(format!("the connection dropped: {error}"))),
        }
    }
    Ok(Ended::Dropped("the connection ended".into()))
}

/// What is shown: the run as its messages built it, and the last message applied.
struct Shown {
    run: Option<RunView>,
    seq: Option<u64>,
    terminal: bool,
    drawn_lines: usize,
}

impl Follower for Shown {
    fn take(&mut self, message: Message) -> anyhow::Result<Option<RunPhase>> {
        Shown::take(self, message)
    }

    fn seq(&self) -> Option<u64> {
        self.seq
    }
}

impl Shown {
    fn new(terminal: bool) -> Self {
        Self {
            run: None,
            seq: None,
            terminal,
            drawn_lines: 0,
        }
    }

    /// Applies a message and shows the result; returns the phase once the run finished.
    fn take(&mut self, message: Message) -> anyhow::Result<Option<RunPhase>> {
        let transition = !matches!(message.body, Body::Counters { .. } | Body::Log { .. });
        if let Body::Snapshot {
            reset: Some(reset), ..
        } = &message.body
        {
            let why = match reset {
                Reset::NotKept => {
                    "the gateway no longer keeps the messages after the last one shown (or it restarted)"
                }
                Reset::Unknown => {
                    "the gateway does not know the last message shown (another replica, or it restarted)"
                }
            };
            eprintln!("synqx runs watch: {why}: showing the run afresh");
        }
        apply(&mut self.run, &message);
        self.seq = Some(message.seq);
        let Some(run) = &self.run else {
            return Ok(None);
        };
        let finished = run.status.phase.filter(|p| p.is_finished());
        if self.terminal || transition || finished.is_some() {
            let table = render(&summary(run, Utc::now()));
            let mut out = std::io::stdout().lock();
            if self.terminal && self.drawn_lines > 0 {
                // Back to the first line of the previous table, and clear below it.
                write!(out, "\x1b[{}F\x1b[J", self.drawn_lines)?;
            } else if self.drawn_lines > 0 {
                writeln!(out)?;
            }
            write!(out, "{table}")?;
            out.flush()?;
            self.drawn_lines = table.lines().count();
        }
        Ok(finished)
    }
}

/// The run after `message`.
fn apply(run: &mut Option<RunView>, message: &Message) {
    match &message.body {
        Body::Snapshot { run: snapshot, .. } => *run = Some(snapshot.clone()),
        Body::Run {
            phase,
            progress,
            completion_time,
            duration,
            ..
        } => {
            if let Some(run) = run {
                run.status.phase = *phase;
                run.status.progress.clone_from(progress);
                run.status.completion_time.clone_from(completion_time);
                run.status.duration.clone_from(duration);
            }
        }
        Body::Step { step, .. } => {
            if let Some(run) = run {
                match run.status.steps.iter_mut().find(|s| s.name == step.name) {
                    Some(entry) => *entry = step.clone(),
                    None => run.status.steps.push(step.clone()),
                }
            }
        }
        Body::Counters { steps } => {
            let Some(run) = run else { return };
            for counters in steps {
                if let Some(entry) = run
                    .status
                    .steps
                    .iter_mut()
                    .find(|s| s.name == counters.name)
                {
                    entry.take_counters(counters);
                }
            }
        }
        // The table shows no log; `synqx logs` does.
        Body::Log { .. } => {}
    }
}

/// The run as `synqx run` summarises one; what has not ended is timed up to `now`.
fn summary(run: &RunView, now: DateTime<Utc>) -> RunSummary {
    RunSummary {
        pipeline: run.pipeline.clone(),
        run_id: run.name.clone(),
        status: run.status.phase.unwrap_or_default(),
        duration: elapsed(
            run.status.start_time.as_deref(),
            run.status.completion_time.as_deref(),
            now,
        ),
        steps: run
            .status
            .steps
            .iter()
            .map(|s| step_summary(s, now))
            .collect(),
    }
}

fn step_summary(step: &StepStatus, now: DateTime<Utc>) -> StepSummary {
    let phase = step.phase.unwrap_or(StepPhase::Pending);
    let watermark = step.watermark.clone().unwrap_or_default();
    StepSummary {
        name: step.name.clone(),
        status: phase,
        attempt: step.attempt.unwrap_or(0),
        counters: CounterSnapshot {
            rows_read: step.rows_read.unwrap_or(0),
            rows_written: step.rows_written.unwrap_or(0),
            rows_rejected: step.rows_rejected.unwrap_or(0),
            bytes_read: step.bytes_read.unwrap_or(0),
            bytes_written: step.bytes_written.unwrap_or(0),
            ..CounterSnapshot::default()
        },
        started_at: time(step.started_at.as_deref()),
        duration: elapsed(step.started_at.as_deref(), step.finished_at.as_deref(), now),
        watermark_from: watermark.from,
        watermark_to: watermark.to,
        message: step.message.clone(),
        dead_letter: None,
    }
}

fn time(text: Option<&str>) -> Option<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(text?)
        .ok()
        .map(|t| t.with_timezone(&Utc))
}

/// From `start` to `end` (or `now`); zero before it started.
fn elapsed(start: Option<&str>, end: Option<&str>, now: DateTime<Utc>) -> Duration {
    let Some(start) = time(start) else {
        return Duration::ZERO;
    };
    let end = time(end).unwrap_or(now);
    (end - start).to_std().unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use synqx_api::run::PipelineRunStatus;

    use super::*;

    fn message(seq: u64, body: Body) -> Message {
        Message { seq, body }
    }

    #[test]
    fn messages_build_the_table_synqx_run_prints() {
        let mut run = None;
        let snapshot = RunView {
            name: "orders-1".into(),
            namespace: "etl".into(),
            pipeline: "orders".into(),
            created: None,
            status: PipelineRunStatus {
                phase: Some(RunPhase::Running),
                start_time: Some("2026-12-01T10:00:00Z".into()),
                steps: vec![StepStatus {
                    name: "extract".into(),
                    phase: Some(StepPhase::Running),
                    started_at: Some("2026-12-01T10:00:00Z".into()),
                    ..Default::default()
                }],
                ..Default::default()
            },
        };
        apply(
            &mut run,
            &message(
                1,
                Body::Snapshot {
                    reset: None,
                    run: snapshot,
                    logs: Vec::new(),
                },
            ),
        );
        apply(
            &mut run,
            &message(
                2,
                Body::Counters {
                    steps: vec![StepStatus {
                        name: "extract".into(),
                        rows_read: Some(1500),
                        ..Default::default()
                    }],
                },
            ),
        );
        let Some(shown) = &run else {
            panic!("the snapshot is shown")
        };
        let now = time(Some("2026-12-01T10:00:03Z")).unwrap_or_default();
        let table = render(&summary(shown, now));
        assert!(
            table.starts_with("Pipeline orders run orders-1: Running in 3.0s\n"),
            "{table}"
        );
        assert!(table.contains("extract  Running  1,500"), "{table}");
        let done = StepStatus {
            name: "extract".into(),
            phase: Some(StepPhase::Succeeded),
            rows_read: Some(2000),
            rows_written: Some(2000),
            started_at: Some("2026-12-01T10:00:00Z".into()),
            finished_at: Some("2026-12-01T10:00:04Z".into()),
            ..Default::default()
        };
        apply(
            &mut run,
            &message(
                3,
                Body::Step {
                    from: Some(StepPhase::Running),
                    step: done,
                },
            ),
        );
        apply(
            &mut run,
            &message(
                4,
                Body::Run {
                    from: Some(RunPhase::Running),
                    phase: Some(RunPhase::Succeeded),
                    progress: Some("1/1".into()),
                    completion_time: Some("2026-12-01T10:00:05Z".into()),
                    duration: Some("5s".into()),
                },
            ),
        );
        let Some(shown) = &run else {
            panic!("the run is shown")
        };
        let table = render(&summary(shown, now));
        assert!(
            table.starts_with("Pipeline orders run orders-1: Succeeded in 5.0s\n"),
            "{table}"
        );
        assert!(
            table.contains("extract  Succeeded  2,000      2,000"),
            "{table}"
        );
    }

    #[test]
    fn the_gateway_url_becomes_a_websocket_url() {
        assert_eq!(
            websocket_base("http://127.0.0.1:8081/").ok().as_deref(),
            Some("ws://127.0.0.1:8081")
        );
        assert!(websocket_base("https://gateway.example").is_err());
        assert!(websocket_base("127.0.0.1:8081").is_err());
    }
}
