use std::process::Command;

#[test]
fn crd_prints_the_same_yaml_as_the_api_crate() {
    let out = Command::new(env!("CARGO_BIN_EXE_synqx-operator"))
        .arg("crd")
        .output()
        .unwrap_or_else(|e| panic!("cannot run synqx-operator: {e}"));
    assert!(out.status.success());
    let expected = synqx_api::crd::all_to_yaml().unwrap_or_default();
    assert_eq!(String::from_utf8_lossy(&out.stdout), expected);
}

#[test]
fn version_is_printed() {
    let out = Command::new(env!("CARGO_BIN_EXE_synqx-operator"))
        .arg("--version")
        .output()
        .unwrap_or_else(|e| panic!("cannot run synqx-operator: {e}"));
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        format!("synqx-operator {}", env!("CARGO_PKG_VERSION"))
    );
}
