//! `synqx`: validate, inspect and run SynqX pipelines.

mod cli;

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    if !synqx_runner::allocator::configure() {
        eprintln!("warning: the allocator did not take its settings; peak memory may be higher");
    }
    let args = cli::Cli::parse();
    match cli::run(args) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
