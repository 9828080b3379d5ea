//! `synqx step`: one attempt of one step of a PipelineRun, in the pod of its Job.

use std::process::ExitCode;

use anyhow::Context;
use synqx_runner::pod::{self, PodEnv};
use tokio_util::sync::CancellationToken;

pub struct Args {
    pub namespace: Option<String>,
    pub run: String,
    pub step: String,
    pub attempt: u32,
    pub revision: Option<String>,
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let env = PodEnv::from_process();
    // Every message of the step, to stderr and the gateway, redacted.
    pod::step_log::install(Some(env.log.clone()), env.secrets.redactor());
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the runtime")?;
    let report = runtime.block_on(async {
        let cancel = CancellationToken::new();
        let on_signal = cancel.clone();
        let step = args.step.clone();
        tokio::spawn(async move {
            let signal = tokio::select! {
                () = interrupted() => "SIGINT",
                () = terminated() => "SIGTERM",
            };
            tracing::warn!(
                "synqx step: step \"{step}\": {signal} received: cancelling (nothing is committed)"
            );
            on_signal.cancel();
        });
        pod::run(
            args.namespace,
            args.run,
            args.step,
            args.attempt,
            args.revision,
            &env,
            cancel,
        )
        .await
    });
    // The engine's tasks are not waited for: the step has ended, committed or not.
    runtime.shutdown_background();
    Ok(ExitCode::from(pod::exit_code(report.phase)))
}

/// Returns when SIGINT arrives; never when it cannot be listened for.
async fn interrupted() {
    if tokio::signal::ctrl_c().await.is_err() {
        std::future::pending::<()>().await;
    }
}

/// Returns when SIGTERM arrives (the kubelet stopping the pod); never elsewhere.
#[cfg(unix)]
async fn terminated() {
    use tokio::signal::unix::{SignalKind, signal};
    match signal(SignalKind::terminate()) {
        Ok(mut s) => {
            s.recv().await;
        }
        Err(_) => std::future::pending::<()>().await,
    }
}

#[cfg(not(unix))]
async fn terminated() {
    std::future::pending::<()>().await;
}
