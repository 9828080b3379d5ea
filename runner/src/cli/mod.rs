//! Command-line interface.

mod crd;
mod files;
mod graph;
mod validate;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand, ValueEnum};

/// SynqX: Kubernetes-native ETL. Validate, inspect and run pipelines declared as YAML.
#[derive(Parser, Debug)]
#[command(name = "synqx", version, about, propagate_version = true)]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Check Connection, Pipeline, PipelineRun and Secret documents; print every problem.
    Validate {
        /// YAML files (multi-document) or directories of them.
        #[arg(required = true)]
        files: Vec<PathBuf>,
    },
    /// Show a pipeline's DAG with its parallel layers.
    Graph {
        /// YAML files (multi-document) or directories of them.
        #[arg(required = true)]
        files: Vec<PathBuf>,
        /// The pipeline to show (needed when the files hold several).
        #[arg(long)]
        pipeline: Option<String>,
        /// Output format.
        #[arg(long, value_enum, default_value_t = GraphFormat::Text)]
        format: GraphFormat,
    },
    /// Print every CustomResourceDefinition as YAML, ready for `kubectl apply -f -`.
    Crd {
        /// Write one file per CRD into this directory instead.
        #[arg(long)]
        dir: Option<PathBuf>,
    },
}

/// How `synqx graph` draws a DAG.
#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum GraphFormat {
    /// Layers and edges as plain text.
    Text,
    /// Graphviz DOT, one cluster per layer.
    Dot,
    /// A Mermaid flowchart, one subgraph per layer.
    Mermaid,
}

/// Runs a parsed command line.
pub fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Validate { files } => validate::run(&files),
        Command::Graph {
            files,
            pipeline,
            format,
        } => graph::run(&files, pipeline.as_deref(), format),
        Command::Crd { dir } => crd::run(dir.as_deref()),
    }
}
