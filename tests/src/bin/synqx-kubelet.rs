//! `synqx-kubelet`: runs pods of a real API server as local processes. Started by
//! `tests/cluster/up`; run it by hand against any cluster you may schedule pods on.

use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use clap::Parser;
use kube::config::{KubeConfigOptions, Kubeconfig};
use synqx_e2e::kubelet::{self, ClusterAccess};

#[derive(Parser)]
#[command(version, about = "A kubelet that runs containers as local processes")]
struct Args {
    /// Kubeconfig of an identity that may manage nodes, leases, pods and tokens.
    #[arg(long, env = "KUBECONFIG")]
    kubeconfig: PathBuf,
    /// Name of the Node to register.
    #[arg(long, default_value = "synqx-process-node")]
    node_name: String,
    /// Folder for pod logs, tokens and pid files.
    #[arg(long)]
    run_dir: PathBuf,
    /// Folder of the built synqx binaries that images map to (default: this binary's folder).
    #[arg(long)]
    bin_dir: Option<PathBuf>,
}

#[tokio::main]
async fn main() -> Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let args = Args::parse();
    let bin_dir = match args.bin_dir {
        Some(dir) => dir,
        None => std::env::current_exe()?
            .parent()
            .context("locating this binary's folder")?
            .to_path_buf(),
    };
    std::fs::create_dir_all(&args.run_dir)
        .with_context(|| format!("creating {}", args.run_dir.display()))?;
    let file = Kubeconfig::read_from(&args.kubeconfig)
        .with_context(|| format!("reading {}", args.kubeconfig.display()))?;
    let access = access(&file, &args.run_dir)?;
    let config = kube::Config::from_custom_kubeconfig(file, &KubeConfigOptions::default())
        .await
        .with_context(|| format!("using {}", args.kubeconfig.display()))?;
    let client = kube::Client::try_from(config)?;

    let config = kubelet::Config {
        node_name: args.node_name,
        run_dir: args.run_dir,
        bin_dir,
        access,
        path_var: std::env::var("PATH").unwrap_or_default(),
    };
    kubelet::run(client, config, shutdown_signal()).await?;
    Ok(())
}

/// The server and CA pods must trust, from the current context of the kubeconfig.
fn access(file: &Kubeconfig, run_dir: &std::path::Path) -> Result<ClusterAccess> {
    let context = file
        .current_context
        .as_deref()
        .context("the kubeconfig has no current-context")?;
    let cluster_name = file
        .contexts
        .iter()
        .find(|c| c.name == context)
        .and_then(|c| c.context.as_ref())
        .map(|c| c.cluster.clone())
        .context("the current context names no cluster")?;
    let Some(cluster) = file
        .clusters
        .iter()
        .find(|c| c.name == cluster_name)
        .and_then(|c| c.cluster.as_ref())
    else {
        bail!("cluster {cluster_name} is not in the kubeconfig");
    };
    let server = cluster
        .server
        .clone()
        .context("the cluster has no server")?;
    let ca_file = match (
        &cluster.certificate_authority,
        &cluster.certificate_authority_data,
    ) {
        (Some(path), _) => PathBuf::from(path),
        (None, Some(data)) => {
            use base64::Engine;
            let pem = base64::engine::general_purpose::STANDARD
                .decode(data)
                .context("decoding certificate-authority-data")?;
            let path = run_dir.join("ca.crt");
            std::fs::write(&path, pem)?;
            path
        }
        (None, None) => bail!("the cluster {cluster_name} has no certificate authority"),
    };
    Ok(ClusterAccess { server, ca_file })
}

async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut term), Ok(mut int)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        return std::future::pending().await;
    };
    tokio::select! {
        _ = term.recv() => {}
        _ = int.recv() => {}
    }
}
