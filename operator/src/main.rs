//! `synqx-operator`: the SynqX control plane.
//!
//! Today it prints the CustomResourceDefinitions it serves; the controllers that run pipelines
//! as Jobs build on the same API crate.

use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand};

/// The SynqX operator: runs Pipelines declared as Kubernetes resources.
#[derive(Parser, Debug)]
#[command(name = "synqx-operator", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Print every CustomResourceDefinition as YAML, ready for `kubectl apply -f -`.
    Crd,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Crd => synqx_api::crd::all_to_yaml()
            .context("serializing the CRDs")
            .map(|yaml| print!("{yaml}")),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
