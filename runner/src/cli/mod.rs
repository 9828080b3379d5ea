//! Command-line interface.

mod check;
mod crd;
mod files;
mod graph;
mod logs;
mod run;
mod runs;
mod state;
mod step;
mod validate;
mod vault;

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
        /// Vault keyring file that opens the sealed values of the Connections
        /// (`synqx vault keygen` writes one).
        #[arg(long, env = "SYNQX_VAULT_KEY")]
        vault_key: Option<PathBuf>,
        /// Namespace the sealed values were sealed for (default: the Pipeline's
        /// metadata.namespace, else `default`).
        #[arg(long)]
        namespace: Option<String>,
        /// Serve the web UI of this run at ADDR (e.g. 127.0.0.1:8089; port 0 picks one):
        /// the graph, live counters and each step's log, in namespace `local`. It stays up
        /// after the run until Ctrl-C.
        #[arg(long, value_name = "ADDR")]
        ui: Option<std::net::SocketAddr>,
        /// Let --ui listen on an address that is not loopback (the UI has no
        /// authentication: anyone who reaches the address sees the run).
        #[arg(long, requires = "ui")]
        ui_any_address: bool,
    },
    /// Run one attempt of one step of a PipelineRun, in the pod of its Job (the operator starts
    /// it, with the step's plan in $SYNQX_STEP_PLAN): report to the operator's gateway and
    /// write a termination message. Exit 0 when
    /// it succeeded, 1 when it failed, 130 when it was cancelled (SIGTERM or SIGINT).
    Step {
        /// Namespace of the PipelineRun (default: $POD_NAMESPACE).
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
        /// The ControllerRevision of the run's plan, as the operator pinned it: the plan in
        /// $SYNQX_STEP_PLAN must be of this revision.
        #[arg(long)]
        revision: Option<String>,
    },
    /// Check that Connections can be used: connect, authenticate and reach the target, without
    /// writing.
    ///
    /// With FILES, the Connections in them (credentials from their Secret documents or
    /// SYNQX_SECRET_<SECRET>__<KEY>) are checked here, one line each. Without, the Connection
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
        /// With FILES: vault keyring file that opens sealed values (sealed for --namespace,
        /// default `default`).
        #[arg(long, env = "SYNQX_VAULT_KEY")]
        vault_key: Option<PathBuf>,
    },
    /// Seal a value read from standard input for one field of one Connection: prints
    /// `sqx1:<key-id>:…`, safe to commit. Needs only the namespace's public key (from the
    /// cluster's ConfigMap synqx-vault, or --public-key FILE).
    ///
    /// Example: `printf %s "$PASSWORD" | synqx seal --namespace etl --connection warehouse
    /// --field postgres.password`.
    Seal {
        /// Namespace of the Connection.
        #[arg(long)]
        namespace: String,
        /// Name of the Connection.
        #[arg(long)]
        connection: String,
        /// The field's path below spec, e.g. postgres.password, s3.secretAccessKey.
        #[arg(long)]
        field: String,
        /// File holding the public key (`synqx vault pubkey` prints it) instead of the
        /// cluster's.
        #[arg(long)]
        public_key: Option<PathBuf>,
    },
    /// Vault keys: create a keyring file, print a public key, rotate, reseal files.
    Vault {
        #[command(subcommand)]
        action: VaultCommand,
    },
    /// Show, reset or set the runs and watermarks kept by `synqx run`.
    State {
        #[command(subcommand)]
        action: StateCommand,
        /// Where runs and watermarks are kept.
        #[arg(long, default_value = ".synqx", env = "SYNQX_STATE", global = true)]
        state: PathBuf,
    },
    /// Follow PipelineRuns on a cluster through the operator's gateway.
    Runs {
        #[command(subcommand)]
        action: RunsCommand,
    },
    /// Print a PipelineRun's step logs through the operator's gateway: from its log store
    /// after the pods are gone, and live with -f until the run ends. Lines print as
    /// `time step level text` (without the step when one step is asked for).
    Logs {
        #[command(flatten)]
        target: runs::RunOnGateway,
        /// Only this step (default: every step, each its latest attempt).
        #[arg(long)]
        step: Option<String>,
        /// Follow the run's new lines live until it ends.
        #[arg(long, short = 'f')]
        follow: bool,
    },
    /// Print every CustomResourceDefinition as YAML, ready for `kubectl apply -f -`.
    Crd {
        /// Write one file per CRD into this directory instead.
        #[arg(long)]
        dir: Option<PathBuf>,
    },
}

#[derive(Subcommand, Debug)]
enum RunsCommand {
    /// Show a run's steps live, as the table `synqx run` prints: redrawn as they move on a
    /// terminal, printed at each transition otherwise. Exit 0 when the run succeeds, 1 when
    /// it fails or is cancelled.
    Watch {
        #[command(flatten)]
        target: runs::RunOnGateway,
        /// Only these steps (comma-separated).
        #[arg(long)]
        step: Option<String>,
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

/// Where a `synqx vault` command finds the keyring: a file, or a namespace's `synqx-vault`
/// Secret in the cluster.
#[derive(clap::Args, Debug)]
struct KeyringArgs {
    /// Keyring file.
    #[arg(long, env = "SYNQX_VAULT_KEY", conflicts_with = "namespace")]
    vault_key: Option<PathBuf>,
    /// Namespace whose keyring the cluster holds (Secret and ConfigMap synqx-vault).
    #[arg(long)]
    namespace: Option<String>,
}

impl KeyringArgs {
    fn source(self) -> anyhow::Result<vault::KeyringSource> {
        match (self.vault_key, self.namespace) {
            (Some(file), _) => Ok(vault::KeyringSource::File(file)),
            (None, Some(ns)) => Ok(vault::KeyringSource::Cluster(ns)),
            (None, None) => anyhow::bail!(
                "name the keyring: --vault-key FILE, or --namespace NS for the cluster's"
            ),
        }
    }
}

#[derive(Subcommand, Debug)]
enum VaultCommand {
    /// Write a new keyring file (private; never overwrites one) and print its public key.
    Keygen {
        #[arg(long)]
        out: PathBuf,
    },
    /// Print the public key that seals (`sqx1-pub:<key-id>:<key>`).
    Pubkey {
        #[command(flatten)]
        keyring: KeyringArgs,
    },
    /// Add a key that seals from now on; values sealed with older keys still open.
    Rotate {
        #[command(flatten)]
        keyring: KeyringArgs,
    },
    /// Rewrite every sealed value in the files with the newest key (nothing else changes).
    Reseal {
        #[command(flatten)]
        keyring: KeyringArgs,
        /// Namespace of Connections in the files that name none (default `default`).
        #[arg(long = "default-namespace", default_value = "default")]
        default_namespace: String,
        #[arg(required = true)]
        files: Vec<PathBuf>,
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
            vault_key,
            namespace,
            ui,
            ui_any_address,
        } => run::run(run::Args {
            files,
            pipeline,
            steps,
            state,
            full_refresh,
            parallelism,
            threads: threads.map(usize::from),
            vault_key,
            namespace,
            ui,
            ui_any_address,
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
            revision,
        } => step::run(step::Args {
            namespace,
            run,
            step,
            attempt,
            revision,
        }),
        Command::Check {
            files,
            namespace,
            connection,
            vault_key,
        } => check::run(check::Args {
            files,
            namespace,
            connection,
            vault_key,
        }),
        Command::Seal {
            namespace,
            connection,
            field,
            public_key,
        } => vault::seal_stdin(&namespace, &connection, &field, public_key.as_deref()),
        Command::Vault { action } => match action {
            VaultCommand::Keygen { out } => vault::keygen(&out),
            VaultCommand::Pubkey { keyring } => vault::pubkey(&keyring.source()?),
            VaultCommand::Rotate { keyring } => vault::rotate(&keyring.source()?),
            VaultCommand::Reseal {
                keyring,
                default_namespace,
                files,
            } => vault::reseal(&keyring.source()?, &default_namespace, &files),
        },
        Command::Runs {
            action: RunsCommand::Watch { target, step },
        } => runs::watch(runs::WatchArgs { target, step }),
        Command::Logs {
            target,
            step,
            follow,
        } => logs::logs(logs::LogsArgs {
            target,
            step,
            follow,
        }),
        Command::Crd { dir } => crd::run(dir.as_deref()),
    }
}
