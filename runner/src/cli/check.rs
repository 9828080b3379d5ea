//! `synqx check`: whether Connections can be reached. With `--connection` alone, the one
//! Connection of the cluster a check Job names (the operator starts it); with files, the
//! Connections in them, here.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, bail};
use synqx_api::Connection;
use synqx_api::validate::Doc;
use synqx_runner::check::{self, summary};
use synqx_runner::connectors;
use synqx_runner::pod::{PodEnv, step_log};
use synqx_runner::secrets::Secrets;
use synqx_runner::vault::Vault;

use super::files::load_and_validate;

pub struct Args {
    pub files: Vec<PathBuf>,
    pub namespace: Option<String>,
    pub connection: Option<String>,
    pub vault_key: Option<PathBuf>,
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the runtime")?;
    match (args.files.is_empty(), args.connection) {
        (true, Some(name)) => {
            let env = PodEnv::from_process();
            // A connector's retries go to stderr, the check pod's log, redacted.
            step_log::install(None, env.secrets.redactor());
            let report = runtime.block_on(check::in_cluster(args.namespace, &name, &env));
            Ok(ExitCode::from(check::exit_code(&report)))
        }
        (true, None) => bail!(
            "name the Connection to check with --connection NAME (read from the cluster), or give the YAML files that hold it"
        ),
        (false, wanted) => {
            let vault = match &args.vault_key {
                Some(path) => Some(Vault::from_file(
                    path,
                    args.namespace.as_deref().unwrap_or("default"),
                )?),
                None => None,
            };
            in_files(&runtime, &args.files, wanted.as_deref(), vault)
        }
    }
}

/// Checks the Connections of the files (only `wanted` when given), all at once; prints one
/// line each.
fn in_files(
    runtime: &tokio::runtime::Runtime,
    paths: &[PathBuf],
    wanted: Option<&str>,
    vault: Option<Vault>,
) -> anyhow::Result<ExitCode> {
    let (report, _) = load_and_validate(paths);
    if !report.is_valid() {
        for problem in &report.problems {
            eprintln!("{problem}");
        }
        eprintln!("nothing checked: fix these problems first (synqx validate shows the same list)");
        return Ok(ExitCode::FAILURE);
    }
    let all = &report.bundle.connections;
    let chosen: Vec<_> = all
        .iter()
        .filter(|doc| wanted.is_none_or(|w| name_of(doc) == w))
        .collect();
    match (wanted, chosen.is_empty()) {
        (Some(w), true) => bail!(
            "no Connection \"{w}\" in the files (connections: {})",
            if all.is_empty() {
                "none".to_string()
            } else {
                all.iter().map(name_of).collect::<Vec<_>>().join(", ")
            }
        ),
        (None, true) => bail!("the files hold no Connection"),
        _ => {}
    }
    let mut secrets = Secrets::new(
        report.bundle.secrets.iter().map(|d| &d.object),
        std::env::vars(),
    );
    if let Some(vault) = vault {
        secrets = secrets.with_vault(vault);
    }
    step_log::install(None, secrets.redactor());
    let reports = runtime.block_on(futures::future::join_all(chosen.iter().map(|doc| async {
        connectors::check(&connectors::ConnectionRef::of_file(doc, &secrets)).await
    })));
    for (doc, report) in chosen.iter().zip(&reports) {
        let name = name_of(doc);
        let label = format!("{}: Connection/{name}", doc.file);
        println!("{}", summary(&label, name, report));
    }
    Ok(if reports.iter().all(|r| r.ready) {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

fn name_of(doc: &Doc<Connection>) -> &str {
    doc.object.metadata.name.as_deref().unwrap_or_default()
}
