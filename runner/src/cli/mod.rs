//! Command-line interface.

mod check;
mod crd;
mod files;
mod graph;
mod run;
mod state;
mod step;
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
    /// Run a pipeline here, in-process, layer by layer; keep runs and watermarks in the state
    /// directory.
    Run {
        /// YAML files (multi-document) or directories of them: Connections, the Pipeline and
        /// any v1 Secrets it needs.
        #[arg(required = true)]
        files: Vec<PathBuf>,
        /// The pipeline to run (needed when the files hold several).
        #[arg(long)]
        pipeline: Option<String>,
        /// Run only this step (repeatable); its upstream steps are assumed done.
        #[arg(long = "step")]
        steps: Vec<String>,
        /// Where runs and watermarks are kept.
        #[arg(long, default_value = ".synqx", env = "SYNQX_STATE")]
        state: PathBuf,
        /// Ignore stored watermarks and read everything.
        #[arg(long)]
        full_refresh: bool,
        /// Steps running at once, replacing the pipeline's parallelism (default: every step
        /// whose upstream steps succeeded, as on a cluster).
        #[arg(long)]
        parallelism: Option<usize>,
        /// Threads that parse, encode and run transforms at once (default: the machine's
        /// cores).
        #[arg(long, env = "SYNQX_THREADS", value_parser = clap::value_parser!(u16).range(1..))]
        threads: Option<u16>,
    },
    /// Run one attempt of one step of a PipelineRun, in the pod of its Job (the operator starts
    /// it): write the step's entry of the run's status and a termination message. Exit 0 when
    /// it succeeded, 1 when it failed, 130 when it was cancelled (SIGTERM or SIGINT).
    Step {
        /// Namespace of the PipelineRun (default: $POD_NAMESPACE, else the kube client's).
        #[arg(long, env = "POD_NAMESPACE")]
        namespace: Option<String>,
        /// Name of the PipelineRun.
        #[arg(long)]
        run: String,
        /// Name of the step in the run's plan.
        #[arg(long)]
        step: String,
        /// Attempt number, from 1.
        #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..))]
        attempt: u32,
    },
    /// Check that Connections can be used: connect, authenticate and reach the target, without
    /// writing.
    ///
    /// With FILES, the Connections in them (credentials from their Secret documents or
    /// SYNQX_SECRET_<SECRET>_<KEY>) are checked here, one line each. Without, the Connection
    /// named by --connection is read from the cluster, as a check Job does (the operator starts
    /// it), and its report goes to the termination message. Exit 0 when every Connection is
    /// ready, 1 otherwise.
    Check {
        /// YAML files (multi-document) or directories of them: Connections and any v1 Secrets
        /// they need.
        files: Vec<PathBuf>,
        /// Namespace of the Connection in the cluster (default: $POD_NAMESPACE, else the kube
        /// client's).
        #[arg(long, env = "POD_NAMESPACE")]
        namespace: Option<String>,
        /// The Connection to check (with FILES, default: every Connection in them).
        #[arg(long)]
        connection: Option<String>,
    },
    /// Show, reset or set the runs and watermarks kept by `synqx run`.
    State {
        #[command(subcommand)]
        action: StateCommand,
        /// Where runs and watermarks are kept.
        #[arg(long, default_value = ".synqx", env = "SYNQX_STATE", global = true)]
        state: PathBuf,
    },
    /// Print every CustomResourceDefinition as YAML, ready for `kubectl apply -f -`.
    Crd {
        /// Write one file per CRD into this directory instead.
        #[arg(long)]
        dir: Option<PathBuf>,
    },
}

#[derive(Subcommand, Debug)]
enum StateCommand {
    /// Watermarks and recent runs.
    Show {
        #[arg(long)]
        pipeline: Option<String>,
    },
    /// Forget watermarks: the next run reads everything.
    Reset {
        #[arg(long)]
        pipeline: String,
        #[arg(long)]
        step: Option<String>,
    },
    /// Set a step's watermark on purpose.
    Set {
        #[arg(long)]
        pipeline: String,
        #[arg(long)]
        step: String,
        #[arg(long)]
        watermark: String,
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
        Command::Run {
            files,
            pipeline,
            steps,
            state,
            full_refresh,
            parallelism,
            threads,
        } => run::run(run::Args {
            files,
            pipeline,
            steps,
            state,
            full_refresh,
            parallelism,
            threads: threads.map(usize::from),
        }),
        Command::State { action, state: dir } => {
            let action = match action {
                StateCommand::Show { pipeline } => state::Action::Show { pipeline },
                StateCommand::Reset { pipeline, step } => state::Action::Reset { pipeline, step },
                StateCommand::Set {
                    pipeline,
                    step,
                    watermark,
                } => state::Action::Set {
                    pipeline,
                    step,
                    watermark,
                },
            };
            state::run(&dir, action)
        }
        Command::Step {
            namespace,
            run,
            step,
            attempt,
        } => step::run(step::Args {
            namespace,
            run,
            step,
            attempt,
        }),
        Command::Check {
            files,
            namespace,
            connection,
        } => check::run(check::Args {
            files,
            namespace,
            connection,
        }),
        Command::Crd { dir } => crd::run(dir.as_deref()),
    }
}
