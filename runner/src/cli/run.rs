//! `synqx run`: a pipeline on this machine, no cluster.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context;
use synqx_runner::local::{Live, LocalRun, Progress, RunOptions, choose_pipeline, render, serve};
use synqx_runner::secrets::Secrets;
use synqx_runner::state::StateStore;
use synqx_runner::vault::Vault;
use tokio_util::sync::CancellationToken;

use super::files::load_and_check;

pub struct Args {
    pub files: Vec<PathBuf>,
    pub pipeline: Option<String>,
    pub steps: Vec<String>,
    pub state: PathBuf,
    pub full_refresh: bool,
    pub parallelism: Option<usize>,
    pub threads: Option<usize>,
    pub vault_key: Option<PathBuf>,
    pub namespace: Option<String>,
    pub ui: Option<SocketAddr>,
    pub ui_any_address: bool,
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let (report, _) = load_and_check(&args.files);
    if !report.is_valid() {
        for problem in &report.problems {
            eprintln!("{problem}");
        }
        eprintln!("nothing ran: fix these problems first (synqx validate shows the same list)");
        return Ok(ExitCode::FAILURE);
    }
    let (pipeline, _) = choose_pipeline(&report, args.pipeline.as_deref())?;
    let mut secrets = Secrets::new(
        report.bundle.secrets.iter().map(|d| &d.object),
        std::env::vars(),
    );
    if let Some(threads) = args.threads {
        synqx_runner::engine::threads::set(threads);
    }
    if let Some(path) = &args.vault_key {
        let namespace = args
            .namespace
            .clone()
            .or_else(|| {
                report
                    .bundle
                    .pipelines
                    .iter()
                    .find(|d| d.object.metadata.name.as_deref() == Some(pipeline))
                    .and_then(|d| d.object.metadata.namespace.clone())
            })
            .unwrap_or_else(|| "default".into());
        secrets = secrets.with_vault(Vault::from_file(path, namespace)?);
    }
    // What the engine and connectors say (notes, retries) goes to stderr, redacted.
    synqx_runner::pod::step_log::install(None, secrets.redactor());
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(synqx_runner::engine::threads::count())
        .enable_all()
        .build()
        .context("starting the runtime")?;
    runtime.block_on(async {
        let state = StateStore::open(&args.state).await?;
        let ui = match args.ui {
            Some(addr) => {
                let hub = Arc::new(synqx_web::Hub::new(synqx_web::Limits::default()));
                let pipelines = report.bundle.pipelines.iter().map(|d| d.object.clone());
                let server = serve::start(
                    addr,
                    args.ui_any_address,
                    hub.clone(),
                    state.clone(),
                    pipelines.collect(),
                )
                .await?;
                eprintln!("web UI: http://{}/", server.addr);
                Some((server, Live::new(hub)))
            }
            None => None,
        };
        let cancel = CancellationToken::new();
        let on_signal = cancel.clone();
        tokio::spawn(async move {
            if tokio::signal::ctrl_c().await.is_ok() {
                eprintln!("interrupted: cancelling running steps (destinations stay as they were)");
                on_signal.cancel();
            }
        });
        let local = LocalRun {
            report: &report,
            pipeline,
            secrets: &secrets,
            state: &state,
            options: RunOptions {
                steps: args.steps,
                full_refresh: args.full_refresh,
                parallelism: args.parallelism,
            },
            cancel,
            progress: Progress::stderr(),
            live: ui.as_ref().map(|(_, live)| live.clone()),
        };
        let summary = local.run().await?;
        print!("{}", render(&summary));
        println!(
            "state: {}",
            display(&args.state.join(synqx_runner::state::STATE_FILE))
        );
        if let Some((server, _)) = &ui {
            eprintln!("the web UI stays at http://{}/ until Ctrl-C", server.addr);
            // Printed before the wait: a reader of a pipe sees the summary now.
            use std::io::Write as _;
            let _ = std::io::stdout().flush();
            let _ = tokio::signal::ctrl_c().await;
        }
        Ok(if summary.succeeded() {
            ExitCode::SUCCESS
        } else {
            ExitCode::FAILURE
        })
    })
}

fn display(p: &Path) -> String {
    p.display().to_string()
}
