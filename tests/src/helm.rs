//! Helm for the chart tests: built from tests/cluster/helm/go.mod by `tests/cluster/build
//! helm` (cached; cold about a minute), and the chart's renderings.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;

/// The chart, relative to the repository.
pub const CHART: &str = "charts/synqx";
/// The release name and namespace `manifests/install.yaml` is rendered for.
pub const RELEASE: &str = "synqx";
pub const NAMESPACE: &str = "synqx-system";

static HELM: OnceLock<Result<PathBuf, BuildError>> = OnceLock::new();

/// Why helm could not be built.
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    #[error("running tests/cluster/build helm: {0}")]
    Run(#[source] std::io::Error),
    #[error("tests/cluster/build helm failed: {stderr}")]
    Failed { stderr: String },
}

pub fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_default()
}

/// The helm binary; panics with the build's error when it cannot be built.
pub fn helm() -> &'static Path {
    let built = HELM.get_or_init(|| {
        let out = Command::new(repo().join("tests/cluster/build"))
            .arg("helm")
            .output()
            .map_err(BuildError::Run)?;
        if !out.status.success() {
            return Err(BuildError::Failed {
                stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
            });
        }
        let dir = String::from_utf8_lossy(&out.stdout).trim().to_string();
        Ok(PathBuf::from(dir).join("helm"))
    });
    match built {
        Ok(path) => path,
        Err(message) => panic!("{message}"),
    }
}

/// `helm ARGS` in the repository, with `kubeconfig` when given.
pub fn run(args: &[&str], kubeconfig: Option<&Path>) -> Output {
    let mut command = Command::new(helm());
    command.args(args).current_dir(repo());
    if let Some(kubeconfig) = kubeconfig {
        command.env("KUBECONFIG", kubeconfig);
    }
    command
        .output()
        .unwrap_or_else(|e| panic!("running helm {args:?}: {e}"))
}

/// `helm template` of the chart with `extra` arguments; panics with Helm's error.
pub fn template(namespace: &str, extra: &[&str]) -> String {
    let mut args = vec!["template", RELEASE, CHART, "--namespace", namespace];
    args.extend_from_slice(extra);
    let out = run(&args, None);
    assert!(
        out.status.success(),
        "helm {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// `manifests/install.yaml` as it must read: the namespace, then the chart with its
/// default values.
pub fn install_manifest() -> String {
    format!(
        "# SynqX: the namespace {NAMESPACE}, then `helm template {RELEASE} {CHART} --namespace {NAMESPACE}`\n\
         # with the chart's default values. Generated: edit the chart, then run\n\
         # `UPDATE_MANIFESTS=1 cargo test -p synqx-e2e --features control-plane --test chart`.\n\
         apiVersion: v1\nkind: Namespace\nmetadata:\n  name: {NAMESPACE}\n{}",
        template(NAMESPACE, &[])
    )
}

/// `manifests/runner.yaml`: the runner identity of the chart for one namespace, `NAMESPACE`
/// standing for it (`sed 's/NAMESPACE/etl/' manifests/runner.yaml | kubectl apply -f -`).
pub fn runner_manifest() -> String {
    let placeholder = "namespace-placeholder";
    let rendered = template(
        NAMESPACE,
        &[
            "--show-only",
            "templates/runner.yaml",
            "--set",
            &format!("runnerNamespaces={{{placeholder}}}"),
        ],
    );
    format!(
        "# The runner identity step and check Jobs use, for one namespace: generated from the chart\n\
         # (templates/runner.yaml). sed 's/NAMESPACE/etl/' manifests/runner.yaml | kubectl apply -f -\n{}",
        rendered.replace(placeholder, "NAMESPACE")
    )
}
