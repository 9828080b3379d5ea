//! `synqx logs RUN`: a run's step logs through the operator's gateway. The log comes from
//! `GET …/pipelineruns/{run}/logs` (the gateway's store, which outlives the pods, else its
//! memory); with `-f` the command then follows the run's watch (`?step=`) and prints new
//! lines until the run ends. Lines the watch repeats from what was already printed are
//! skipped, so a line shows once.

use std::collections::HashMap;
use std::io::Write;
use std::process::ExitCode;

use anyhow::{Context, bail};
use synqx_api::gateway::{Body, LogLine, Message, StepLog};
use synqx_api::run::RunPhase;

use super::runs::{FollowTarget, Followed, Follower, RunOnGateway, credentials, follow_run};

pub struct LogsArgs {
    pub target: RunOnGateway,
    pub step: Option<String>,
    pub follow: bool,
}

pub fn logs(args: LogsArgs) -> anyhow::Result<ExitCode> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the runtime")?;
    runtime.block_on(print(args))
}

async fn print(args: LogsArgs) -> anyhow::Result<ExitCode> {
    let (namespace, token) = credentials(&args.target).await?;
    let (gateway, run) = (&args.target.gateway, &args.target.run);
    let mut printer = Printer::new(args.step.as_deref(), std::io::stdout());
    let stored = fetch(&args, &namespace, &token).await;
    match (&stored, args.follow) {
        (Ok(Some(logs)), _) => printer.print_logs(logs, false)?,
        (Ok(None), false) => bail!(
            "the gateway at {gateway} has no log of PipelineRun {namespace}/{run}: is the name right, and was it run by an operator with a log store?"
        ),
        (Err(error), false) => bail!("{error:#}"),
        // Following: the watch says more, or tells why it cannot follow.
        (_, true) => {}
    }
    if !args.follow {
        return Ok(ExitCode::SUCCESS);
    }
    let target = FollowTarget {
        command: "synqx logs",
        gateway,
        namespace: &namespace,
        run,
        token: &token,
        step: args.step.as_deref(),
    };
    match follow_run(&target, &mut printer).await? {
        Followed::Finished(_) => Ok(ExitCode::SUCCESS),
        // The run and its pods are gone: what the store held is the whole log.
        Followed::Unknown(_) if matches!(stored, Ok(Some(_))) => Ok(ExitCode::SUCCESS),
        Followed::Unknown(why) => match stored {
            Err(error) => bail!("{error:#}; {why}"),
            Ok(_) => bail!("{why}"),
        },
    }
}

/// The run's logs from the logs route; `None` when the gateway has none (404).
async fn fetch(
    args: &LogsArgs,
    namespace: &str,
    token: &str,
) -> anyhow::Result<Option<Vec<StepLog>>> {
    let base = args.target.gateway.trim_end_matches('/');
    let mut url = format!(
        "{base}/api/v1/namespaces/{namespace}/pipelineruns/{}/logs",
        args.target.run
    );
    if let Some(step) = &args.step {
        url = format!("{url}?step={step}");
    }
    let response = reqwest::Client::new()
        .get(&url)
        .bearer_auth(token)
        .timeout(std::time::Duration::from_secs(60))
        .send()
        .await
        .with_context(|| format!("cannot reach the gateway at {url}"))?;
    let status = response.status();
    let body = response
        .bytes()
        .await
        .with_context(|| format!("reading the answer of {url}"))?;
    if status == reqwest::StatusCode::NOT_FOUND {
        return Ok(None);
    }
    if !status.is_success() {
        let message = serde_json::from_slice::<serde_json::Value>(&body)
            .ok()
            .and_then(|v| v.get("message")?.as_str().map(String::from))
            .unwrap_or_else(|| String::from_utf8_lossy(&body).into_owned());
        bail!("the gateway refused {url}: {status}: {message}");
    }
    #[derive(serde::Deserialize)]
    struct Items {
        items: Vec<StepLog>,
    }
    let items: Items = serde_json::from_slice(&body)
        .with_context(|| format!("the gateway's answer to {url} is not a list of step logs"))?;
    Ok(Some(items.items))
}

/// Prints lines as `time [step] [level] text`, each once.
struct Printer<W: Write> {
    out: W,
    /// Whether lines carry their step: unless one step is asked for.
    with_step: bool,
    seq: Option<u64>,
    /// Per step attempt: the newest time printed, and how often each text was printed at
    /// that time. The watch's first lines may repeat the stored log's last ones; times are
    /// in order within an attempt, so anything older, or a repeat at the newest time, was
    /// printed already.
    printed: HashMap<(String, u32), (String, HashMap<String, usize>)>,
}

impl<W: Write> Printer<W> {
    fn new(step: Option<&str>, out: W) -> Self {
        Self {
            out,
            with_step: step.is_none_or(|s| s.contains(',')),
            seq: None,
            printed: HashMap::new(),
        }
    }

    /// Prints step logs; `repeats` when they may repeat lines printed before (the watch's).
    fn print_logs(&mut self, logs: &[StepLog], repeats: bool) -> anyhow::Result<()> {
        for log in logs {
            self.print(&log.step, log.attempt, &log.lines, repeats)?;
        }
        Ok(())
    }

    fn print(
        &mut self,
        step: &str,
        attempt: u32,
        lines: &[LogLine],
        repeats: bool,
    ) -> anyhow::Result<()> {
        let (newest, at_newest) = self.printed.entry((step.to_string(), attempt)).or_default();
        for line in lines {
            if repeats {
                if line.time < *newest {
                    continue;
                }
                if line.time == *newest
                    && let Some(count) = at_newest.get_mut(&line.text)
                    && *count > 0
                {
                    *count -= 1;
                    continue;
                }
            }
            if line.time > *newest {
                newest.clone_from(&line.time);
                at_newest.clear();
            }
            // Only lines that may come again count: the watch never repeats its own.
            if !repeats {
                *at_newest.entry(line.text.clone()).or_default() += 1;
            }
            let mut text = line.time.clone();
            if self.with_step {
                text = format!("{text} {step}");
            }
            if let Some(level) = &line.level {
                text = format!("{text} {level:<5}");
            }
            writeln!(self.out, "{text} {}", line.text).context("writing to stdout")?;
        }
        self.out.flush().context("writing to stdout")?;
        Ok(())
    }
}

impl<W: Write> Follower for Printer<W> {
    fn take(&mut self, message: Message) -> anyhow::Result<Option<RunPhase>> {
        self.seq = Some(message.seq);
        match message.body {
            Body::Snapshot { run, logs, .. } => {
                self.print_logs(&logs, true)?;
                Ok(run.status.phase.filter(|p| p.is_finished()))
            }
            Body::Log {
                step,
                attempt,
                lines,
            } => {
                self.print(&step, attempt, &lines, true)?;
                Ok(None)
            }
            Body::Run { phase, .. } => Ok(phase.filter(|p| p.is_finished())),
            Body::Step { .. } | Body::Counters { .. } => Ok(None),
        }
    }

    fn seq(&self) -> Option<u64> {
        self.seq
    }
}

#[cfg(test)]
mod tests;
