//! `synqx step`: one attempt of one step of a PipelineRun, in the pod of its Job.
//!
//! The runner reads its step's part of the run's plan and the watermark from the environment
//! the operator gave its pod, which holds no Kubernetes credentials, executes the step with the engine `synqx run` uses ([`crate::step::execute`]),
//! reports its counters and log lines to the operator's gateway while it runs and once at
//! the end ([`telemetry`]), and leaves a [`StepReport`] in the termination message.

mod error;
mod plan;
mod report;
mod status;
pub mod step_log;
mod telemetry;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use indicatif::HumanBytes;
use synqx_api::dag::Plan;
use synqx_api::run::{StepPhase, StepReport, watermark_too_long};
pub use synqx_api::step_plan::STEP_PLAN_ENV;
use synqx_api::step_plan::StepPlan;
use tokio_util::sync::CancellationToken;

pub use error::{PlanError, StatusWriteError};
pub(crate) use error::{explain, is_not_found};
pub use plan::{choose_step, plan_connection};
pub use report::{TerminationMessage, exit_code, write_termination_message};
pub use status::{NoStatus, StatusWriter, final_entry, progress_entry};
pub use step_log::StepLog;
use synqx_api::telemetry::{CONNECTION_ENV, GATEWAY_ENV, TOKEN_FILE_ENV};
pub use telemetry::{TELEMETRY_EVERY, Telemetry};

use crate::engine::Counters;
use crate::local::group;
use crate::secrets::{AMBIENT_CREDENTIALS_ENV, AmbientCredentials, Secrets};
use crate::step::{self, StepInputs};
use crate::vault::{self, Vault};
use synqx_api::vault::Zeroizing;

/// The environment variable that carries the step's committed watermark.
pub const WATERMARK_ENV: &str = "SYNQX_WATERMARK";
/// The environment variable that names the termination-message file.
pub const TERMINATION_MESSAGE_ENV: &str = "SYNQX_TERMINATION_MESSAGE_PATH";
/// The termination-message file when [`TERMINATION_MESSAGE_ENV`] is not set.
pub const DEFAULT_TERMINATION_MESSAGE_PATH: &str = "/dev/termination-log";
/// Shortest time between two progress writes of the run's status.
pub const PROGRESS_EVERY: Duration = Duration::from_secs(5);

/// Which attempt of which step of which run this pod executes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Attempt {
    pub namespace: String,
    pub run: String,
    pub step: String,
    pub attempt: u32,
}

impl std::fmt::Display for Attempt {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.namespace.is_empty() {
            write!(f, "PipelineRun {}", self.run)?;
        } else {
            write!(f, "PipelineRun {}/{}", self.namespace, self.run)?;
        }
        write!(f, " step \"{}\" attempt {}", self.step, self.attempt)
    }
}

/// What the pod's environment gives the step.
pub struct PodEnv {
    /// The step's part of the plan (`SYNQX_STEP_PLAN`), as JSON.
    pub step_plan: Option<String>,
    /// The operator's gateway (`SYNQX_GATEWAY`), where progress and log lines go.
    pub gateway: Option<String>,
    /// The projected token for the gateway (`SYNQX_TOKEN_FILE`).
    pub token_file: Option<PathBuf>,
    /// The spec of the Connection a check pod checks (`SYNQX_CONNECTION`), as JSON.
    pub connection: Option<String>,
    /// The committed watermark (`SYNQX_WATERMARK`); `None` reads everything.
    pub watermark: Option<String>,
    /// Credentials from `SYNQX_SECRET_<SECRET>__<KEY>` variables, and the namespace's vault
    /// keyring from `SYNQX_VAULT_KEYRING` when the operator gave the pod one.
    pub secrets: Secrets,
    /// Where relative paths of Connections start, and where `rejects/` goes.
    pub work_dir: PathBuf,
    /// Where the [`StepReport`] is written at the end.
    pub termination_path: PathBuf,
    /// The lines the step logs, for the gateway; [`step_log::install`] feeds it.
    pub log: StepLog,
}

impl PodEnv {
    /// The environment of this process. Variables that are not valid UTF-8 are ignored; an
    /// empty `SYNQX_WATERMARK` counts as none.
    pub fn from_process() -> Self {
        let mut vars: Vec<(String, String)> = std::env::vars_os()
            .filter_map(|(k, v)| Some((k.into_string().ok()?, v.into_string().ok()?)))
            .collect();
        let get = |name: &str| {
            vars.iter()
                .find(|(k, _)| k == name)
                .map(|(_, v)| v.clone())
                .filter(|v| !v.is_empty())
        };
        let watermark = get(WATERMARK_ENV);
        let step_plan = get(STEP_PLAN_ENV);
        let gateway = get(GATEWAY_ENV);
        let token_file = get(TOKEN_FILE_ENV).map(PathBuf::from);
        let connection = get(CONNECTION_ENV);
        let termination_path = get(TERMINATION_MESSAGE_ENV)
            .map_or_else(|| DEFAULT_TERMINATION_MESSAGE_PATH.into(), PathBuf::from);
        let namespace = get(vault::NAMESPACE_ENV);
        // Ambient cloud credentials only when the operator said it lends them.
        let ambient = AmbientCredentials::of_pod(get(AMBIENT_CREDENTIALS_ENV).as_deref());
        // The keyring is kept only as the vault, never among the variables.
        let keyring = vars
            .iter()
            .position(|(k, _)| k == vault::KEYRING_ENV)
            .map(|i| Zeroizing::new(vars.swap_remove(i).1));
        let mut secrets = Secrets::new(std::iter::empty(), vars).with_ambient_credentials(ambient);
        if let Some(text) = keyring {
            secrets = match Vault::from_pod_env(&text, namespace.as_deref()) {
                Ok(vault) => secrets.with_vault(vault),
                Err(e) => secrets.with_unusable_vault(e),
            };
        }
        Self {
            step_plan,
            gateway,
            token_file,
            connection,
            watermark,
            termination_path,
            work_dir: std::env::current_dir().unwrap_or_else(|_| PathBuf::from(".")),
            secrets,
            log: StepLog::default(),
        }
    }
}

/// Runs one attempt of a step and reports it: counters and log lines to the operator's
/// gateway, the termination message and stderr. `revision`, the Job's `--revision`, must be
/// the one of the plan in [`STEP_PLAN_ENV`]. Never fails: every error ends in a `Failed`
/// report.
pub async fn run(
    namespace: Option<String>,
    run: String,
    step: String,
    attempt: u32,
    revision: Option<String>,
    env: &PodEnv,
    cancel: CancellationToken,
) -> StepReport {
    let started = Instant::now();
    let target = Attempt {
        namespace: namespace.unwrap_or_default(),
        run,
        step,
        attempt,
    };
    // The plan and the gateway come with the pod, which holds no Kubernetes credentials: it
    // makes no API call, and writes nothing but to the gateway and its termination message.
    let report = match &env.step_plan {
        Some(text) => {
            let status = reporter(&target, env);
            let loaded = plan_from_env(text).and_then(|loaded| pinned(loaded, revision));
            run_loaded(&target, loaded, env, status, cancel, started).await
        }
        None => {
            let report =
                report::failed(&target.step, format!("{target}: {}", PlanError::NoStepPlan));
            tracing::error!("{}", end_line(&target, &report, started.elapsed()));
            report
        }
    };
    if let Err(e) = write_termination_message(&env.termination_path, &report) {
        tracing::error!(
            "synqx step: {target}: cannot write the termination message to {}: {e} (the run's status still has the counters)",
            env.termination_path.display()
        );
    }
    report
}

/// Where the step's counters and lines go: the gateway when the pod was given one and its
/// token, else only the termination message.
fn reporter(target: &Attempt, env: &PodEnv) -> Arc<dyn StatusWriter> {
    let (Some(gateway), Some(token_file)) = (&env.gateway, &env.token_file) else {
        tracing::warn!(
            "synqx step: {target}: no gateway to report progress to (${GATEWAY_ENV}, ${TOKEN_FILE_ENV}): the operator learns the final numbers from the termination message"
        );
        return Arc::new(NoStatus);
    };
    match Telemetry::new(gateway, token_file.clone(), target.clone(), env.log.clone()) {
        Ok(telemetry) => Arc::new(telemetry),
        Err(e) => {
            tracing::warn!(
                "synqx step: {target}: {e}; reporting only through the termination message"
            );
            Arc::new(NoStatus)
        }
    }
}

/// Executes the step of a loaded plan and reports its end.
async fn run_loaded(
    target: &Attempt,
    loaded: Result<(String, Plan), PlanError>,
    env: &PodEnv,
    status: Arc<dyn StatusWriter>,
    cancel: CancellationToken,
    started: Instant,
) -> StepReport {
    let (report, known) = match loaded {
        Ok((revision, plan)) => (
            execute_planned(target, &revision, &plan, env, status.clone(), cancel).await,
            plan.step(&target.step).is_some(),
        ),
        Err(e) => (report::failed(&target.step, format!("{target}: {e}")), true),
    };
    if known {
        finish(target, &report, status.as_ref(), started.elapsed()).await;
    } else {
        // A step the plan does not have gets no entry in the run's status.
        tracing::error!("{}", end_line(target, &report, started.elapsed()));
    }
    report
}

/// The plan, when it is of the revision the Job's `--revision` names (when it names one): a
/// Job whose two disagree was not made by one operator, and runs nothing.
fn pinned(
    (revision, plan): (String, Plan),
    named: Option<String>,
) -> Result<(String, Plan), PlanError> {
    match named.filter(|n| !n.is_empty()) {
        Some(named) if named != revision => Err(PlanError::OtherRevision {
            named,
            carried: revision,
        }),
        _ => Ok((revision, plan)),
    }
}

/// The revision and the plan of one step that [`STEP_PLAN_ENV`] holds.
pub fn plan_from_env(text: &str) -> Result<(String, Plan), PlanError> {
    let step_plan = StepPlan::from_env_value(text).map_err(PlanError::NotAStepPlan)?;
    Ok((step_plan.revision.clone(), step_plan.into_plan()))
}

/// Executes the step of a known plan: progress written every [`PROGRESS_EVERY`] while it
/// runs. Returns the report; the final status write is the caller's ([`finish`]).
pub async fn execute_planned(
    target: &Attempt,
    revision: &str,
    plan: &Plan,
    env: &PodEnv,
    status: Arc<dyn StatusWriter>,
    cancel: CancellationToken,
) -> StepReport {
    let step = match choose_step(plan, &target.run, &target.step) {
        Ok(step) => step,
        Err(e) => return report::failed(&target.step, format!("{target}: {e}")),
    };
    let incremental = step
        .sync
        .as_ref()
        .is_some_and(|s| s.source.incremental.is_some());
    let watermark = env.watermark.clone().filter(|_| incremental);
    if let Some(problem) = watermark.as_deref().and_then(watermark_too_long) {
        return report::failed(
            &target.step,
            format!(
                "{target}: the watermark it starts from {problem}: set a shorter one (synqx state set, or the Pipeline's status.watermarks)"
            ),
        );
    }
    tracing::info!(
        "synqx step: {target}: started (revision {revision}, plan {}, {})",
        plan.short_hash(),
        match &watermark {
            Some(w) => format!("rows with cursor > {w}"),
            None if incremental => "no watermark yet: reading everything".to_string(),
            None => "not incremental".to_string(),
        }
    );
    if cancel.is_cancelled() {
        return report::cancelled(
            &target.step,
            format!("{target}: cancelled before it started; nothing was written"),
        );
    }
    let counters = Arc::new(Counters::default());
    let stop = CancellationToken::new();
    let every = status.every();
    let progress = tokio::spawn(status::report_progress(
        status,
        target.clone(),
        counters.clone(),
        every,
        stop.clone(),
    ));
    let inputs = StepInputs {
        watermark: watermark.clone(),
        counters: counters.clone(),
        cancel: cancel.clone(),
        dead_letter: Some(env.work_dir.join("rejects").join(format!(
            "{}-{}-{}.jsonl",
            target.step, target.run, target.attempt
        ))),
        run: target.run.clone(),
    };
    let open = |name: &str| plan_connection(plan, name, &target.step, &env.secrets, &env.work_dir);
    let result = step::execute(step, open, inputs).await;
    // The last progress write ends before the final one starts, so it can never land after it.
    stop.cancel();
    let _ = progress.await;
    report::from_result(
        &target.step,
        result,
        counters.snapshot(),
        watermark,
        cancel.is_cancelled(),
    )
}

/// The final status write and the end line on stderr.
pub async fn finish(
    target: &Attempt,
    report: &StepReport,
    status: &dyn StatusWriter,
    elapsed: Duration,
) {
    // The end line goes with the last report.
    let line = end_line(target, report, elapsed);
    match report.phase {
        StepPhase::Succeeded => tracing::info!("{line}"),
        StepPhase::Cancelled => tracing::warn!("{line}"),
        _ => tracing::error!("{line}"),
    }
    if let Err(e) = status.finish(report).await {
        tracing::error!(
            "synqx step: {target}: could not report the end: {e} (the termination message still reports the outcome)"
        );
    }
}

fn end_line(target: &Attempt, report: &StepReport, elapsed: Duration) -> String {
    let phase = match report.phase {
        StepPhase::Succeeded => "succeeded",
        StepPhase::Cancelled => "cancelled",
        _ => "failed",
    };
    let watermark = report
        .watermark
        .as_ref()
        .filter(|_| report.phase == StepPhase::Succeeded)
        .map(|w| {
            format!(
                "; watermark {} -> {}",
                w.from.as_deref().unwrap_or("(none)"),
                w.to.as_deref().unwrap_or("(none)")
            )
        })
        .unwrap_or_default();
    // Messages of errors found before the step ran start with the attempt already.
    let prefix = format!("{target}: ");
    let message = report
        .message
        .as_deref()
        .map(|m| format!(": {}", m.strip_prefix(&prefix).unwrap_or(m)))
        .unwrap_or_default();
    format!(
        "synqx step: {target}: {phase} after {:.1}s: read {} rows ({}), wrote {} rows ({}), rejected {}{watermark}{message}",
        elapsed.as_secs_f64(),
        group(report.rows_read),
        HumanBytes(report.bytes_read),
        group(report.rows_written),
        HumanBytes(report.bytes_written),
        group(report.rows_rejected),
    )
}

#[cfg(test)]
mod tests;
