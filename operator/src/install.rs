//! `manifests/install.yaml`, the one file users apply to install SynqX: the CRDs followed by
//! `manifests/operator.yaml` and `manifests/runner.yaml`. A test keeps it in step with them.

/// The install manifest as it must read.
pub fn manifest(crds: &str, operator: &str, runner: &str) -> String {
    format!(
        "# SynqX {}: CustomResourceDefinitions, the operator, and the runner identity in `default`.\n\
         # Generated from crds/, manifests/operator.yaml and manifests/runner.yaml.\n{}\n---\n{}---\n{}",
        env!("CARGO_PKG_VERSION"),
        crds.trim_end(),
        operator,
        runner.replace("NAMESPACE", "default")
    )
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    #[test]
    fn install_manifest_is_current() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
        let crds = synqx_api::crd::all_to_yaml().expect("CRD YAML");
        let operator = std::fs::read_to_string(root.join("manifests/operator.yaml"))
            .expect("manifests/operator.yaml");
        let runner = std::fs::read_to_string(root.join("manifests/runner.yaml"))
            .expect("manifests/runner.yaml");
        let expected = super::manifest(&crds, &operator, &runner);
        let path = root.join("manifests/install.yaml");
        if std::env::var_os("UPDATE_MANIFESTS").is_some() {
            std::fs::write(&path, &expected).expect("write install.yaml");
        }
        let actual = std::fs::read_to_string(&path).unwrap_or_default();
        assert!(
            actual == expected,
            "manifests/install.yaml is stale: run `UPDATE_MANIFESTS=1 cargo test -p synqx-operator install_manifest`"
        );
    }
}
